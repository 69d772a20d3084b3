/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Rendering of kekd's status (see status.h). The metrics text is read line
 * by line; unknown lines are skipped, so a newer kekd with more metrics
 * still works with this kekctl.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <json-c/json.h>

#include "common/macro.h"
#include "kekctl/status.h"

#define OPS_MAX 64
#define BUCKETS_MAX 16

typedef struct OpRow {
        char op[40];
        unsigned long long ok, errors, count;
        double sum;
        double le[BUCKETS_MAX];
        unsigned long long cum[BUCKETS_MAX];
        unsigned n_buckets;
} OpRow;

typedef struct Parsed {
        OpRow ops[OPS_MAX];
        unsigned n_ops;
        unsigned long long watchers, reopens, hsm_errors;
        char errors_text[256];
} Parsed;

static OpRow *row(Parsed *p, const char *op, size_t len) {
        for (unsigned i = 0; i < p->n_ops; i++)
                if (strlen(p->ops[i].op) == len && strncmp(p->ops[i].op, op, len) == 0)
                        return &p->ops[i];
        if (p->n_ops >= OPS_MAX || len >= sizeof(p->ops[0].op))
                return NULL;
        memcpy(p->ops[p->n_ops].op, op, len);
        p->ops[p->n_ops].op[len] = 0;
        return &p->ops[p->n_ops++];
}

/* The value of label name in a {a="x",b="y"} set; *ret_len is its length. */
static const char *label(const char *line, const char *end, const char *name, size_t *ret_len) {
        char pat[32];
        const char *v, *q;

        snprintf(pat, sizeof(pat), "%s=\"", name);
        v = strstr(line, pat);
        if (!v || v >= end)
                return NULL;
        v += strlen(pat);
        q = memchr(v, '"', (size_t) (end - v));
        if (!q)
                return NULL;
        *ret_len = (size_t) (q - v);
        return v;
}

static void parse(const char *text, Parsed *p) {
        const char *line = text;

        while (line && *line) {
                const char *nl = strchr(line, '\n'), *end = nl ? nl : line + strlen(line), *op, *v, *val = NULL;
                size_t len, vlen;
                OpRow *r;

                for (const char *c = line; c < end; c++)
                        if (*c == ' ')
                                val = c; /* the sample value follows the line's last space */
                if (line[0] == '#' || !val)
                        goto next;
                val++;
                if (strncmp(line, "kekd_requests_total{", 20) == 0 && (op = label(line, end, "op", &len)) &&
                    (v = label(line, end, "result", &vlen)) && (r = row(p, op, len))) {
                        if (vlen == 2 && strncmp(v, "OK", 2) == 0)
                                r->ok += strtoull(val, NULL, 10);
                        else
                                r->errors += strtoull(val, NULL, 10);
                } else if (strncmp(line, "kekd_request_duration_seconds_bucket{", 37) == 0 &&
                           (op = label(line, end, "op", &len)) && (v = label(line, end, "le", &vlen)) && (r = row(p, op, len)) &&
                           r->n_buckets < BUCKETS_MAX && strncmp(v, "+Inf", 4) != 0) {
                        r->le[r->n_buckets] = strtod(v, NULL);
                        r->cum[r->n_buckets++] = strtoull(val, NULL, 10);
                } else if (strncmp(line, "kekd_request_duration_seconds_sum{", 34) == 0 && (op = label(line, end, "op", &len)) &&
                           (r = row(p, op, len)))
                        r->sum = strtod(val, NULL);
                else if (strncmp(line, "kekd_request_duration_seconds_count{", 36) == 0 &&
                         (op = label(line, end, "op", &len)) && (r = row(p, op, len)))
                        r->count = strtoull(val, NULL, 10);
                else if (strncmp(line, "kekd_watchers ", 14) == 0)
                        p->watchers = strtoull(val, NULL, 10);
                else if (strncmp(line, "kekd_hsm_session_reopens_total ", 31) == 0)
                        p->reopens = strtoull(val, NULL, 10);
                else if (strncmp(line, "kekd_hsm_errors_total{", 22) == 0 && (v = label(line, end, "rv", &vlen))) {
                        size_t l = strlen(p->errors_text);

                        p->hsm_errors += strtoull(val, NULL, 10);
                        snprintf(p->errors_text + l, sizeof(p->errors_text) - l, "%s%.*s %llu", l ? ", " : "", (int) vlen, v,
                                 strtoull(val, NULL, 10));
                }
        next:
                line = nl ? nl + 1 : NULL;
        }
}

/* Upper bound (seconds) of the bucket holding quantile q; -1 if beyond the last bucket or no data. */
static double quantile_le(const OpRow *r, double q) {
        unsigned long long want;

        if (r->count == 0)
                return -1;
        want = (unsigned long long) (q * (double) r->count + 0.999999);
        for (unsigned i = 0; i < r->n_buckets; i++)
                if (r->cum[i] >= want)
                        return r->le[i];
        return -1;
}

static void format_usec(double sec, char *buf, size_t size) {
        if (sec < 0)
                snprintf(buf, size, ">1 s");
        else if (sec < 1e-3)
                snprintf(buf, size, "%.0f us", sec * 1e6);
        else
                snprintf(buf, size, "%.1f ms", sec * 1e3);
}

int status_print(const Kek__StatusResponse *st, StatusFormat format) {
        _cleanup_free_ Parsed *p = calloc(1, sizeof(*p));
        char started[64] = "-";
        time_t t = (time_t) (st->started_usec / 1000000);
        struct tm tm;

        if (!p)
                return -ENOMEM;
        if (format == STATUS_PROMETHEUS) {
                fputs(st->metrics ? st->metrics : "", stdout);
                return 0;
        }
        parse(st->metrics ? st->metrics : "", p);
        if (st->started_usec && gmtime_r(&t, &tm))
                strftime(started, sizeof(started), "%Y-%m-%d %H:%M:%S UTC", &tm);

        if (format == STATUS_JSON) {
                json_object *o = json_object_new_object(), *ops = json_object_new_object();

                json_object_object_add(o, "version", json_object_new_string(st->version ? st->version : ""));
                json_object_object_add(o, "token", json_object_new_string(st->token ? st->token : ""));
                json_object_object_add(o, "started_usec", json_object_new_uint64(st->started_usec));
                json_object_object_add(o, "keys", json_object_new_int64(st->keys));
                json_object_object_add(o, "versions", json_object_new_int64(st->versions));
                json_object_object_add(o, "clients", json_object_new_int64(st->clients));
                json_object_object_add(o, "watchers", json_object_new_uint64(p->watchers));
                json_object_object_add(o, "hsm_session_open", json_object_new_boolean(st->hsm_session_open));
                json_object_object_add(o, "hsm_session_reopens", json_object_new_uint64(p->reopens));
                json_object_object_add(o, "hsm_errors", json_object_new_uint64(p->hsm_errors));
                for (unsigned i = 0; i < p->n_ops; i++) {
                        json_object *j = json_object_new_object();
                        const OpRow *r = &p->ops[i];

                        json_object_object_add(j, "ok", json_object_new_uint64(r->ok));
                        json_object_object_add(j, "errors", json_object_new_uint64(r->errors));
                        json_object_object_add(j, "mean_seconds", json_object_new_double(r->count ? r->sum / (double) r->count : 0));
                        json_object_object_add(j, "p50_le_seconds", json_object_new_double(quantile_le(r, 0.5)));
                        json_object_object_add(j, "p99_le_seconds", json_object_new_double(quantile_le(r, 0.99)));
                        json_object_object_add(ops, r->op, j);
                }
                json_object_object_add(o, "operations", ops);
                puts(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE));
                json_object_put(o);
                return 0;
        }

        printf("kekd %s on token '%s', started %s\n", st->version ? st->version : "?", st->token ? st->token : "?", started);
        printf("HSM session:  %s, %llu reopened after failures\n", st->hsm_session_open ? "open" : "CLOSED",
               p->reopens);
        printf("HSM errors:   %s\n", p->errors_text[0] ? p->errors_text : "none");
        printf("Keys:         %u (%u versions)\n", st->keys, st->versions);
        printf("Clients:      %u (%llu watching key events)\n", st->clients, p->watchers);
        printf("\n%-20s %12s %10s %10s %10s %10s\n", "OPERATION", "OK", "ERRORS", "MEAN", "P50 <=", "P99 <=");
        for (unsigned i = 0; i < p->n_ops; i++) {
                const OpRow *r = &p->ops[i];
                char mean[32], p50[32], p99[32];

                format_usec(r->count ? r->sum / (double) r->count : 0, mean, sizeof(mean));
                format_usec(quantile_le(r, 0.5), p50, sizeof(p50));
                format_usec(quantile_le(r, 0.99), p99, sizeof(p99));
                printf("%-20s %12llu %10llu %10s %10s %10s\n", r->op, r->ok, r->errors, mean, p50, p99);
        }
        return 0;
}
