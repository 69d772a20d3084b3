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

#define ROWS_MAX 32

/* One labelled series of the capability probe or the per-function errors: up to four label values. */
typedef struct InfoRow {
        char v[4][64];
        unsigned long long value;
        double last;               /* calls: kekd_hsm_call_last_error_timestamp_seconds */
} InfoRow;

typedef struct Parsed {
        OpRow ops[OPS_MAX];
        unsigned n_ops;
        unsigned long long watchers, reopens, hsm_errors;
        char errors_text[256];
        InfoRow calls[ROWS_MAX], mechs[ROWS_MAX], caps[ROWS_MAX], attrs[ROWS_MAX];
        unsigned n_calls, n_mechs, n_caps, n_attrs;
        bool have_probe;
        unsigned long long probe_ok;
        char profile[64], token_flags[256], records[32];
        unsigned long long record_mac_failures;
        bool have_copies;
        unsigned long long token_unsafe;
        char copies[16], copy_ckr[3][48];  /* kekd_token_key_copies: result; plain, extractable, sensitive */
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

/* Copies label name's value into dst (empty if absent). */
static void label_copy(const char *line, const char *end, const char *name, char *dst, size_t size) {
        size_t len;
        const char *v = label(line, end, name, &len);

        if (!v)
                len = 0;
        snprintf(dst, size, "%.*s", (int) len, v ? v : "");
}

/* A series with up to four labels (names, NULL-padded) into rows[*n]; false if it is not one. */
static bool info_row(const char *line, const char *end, const char *val, const char *metric, const char *const names[4],
                     InfoRow *rows, unsigned *n) {
        size_t l = strlen(metric);

        if (strncmp(line, metric, l) != 0 || line[l] != '{')
                return false;
        if (*n >= ROWS_MAX)
                return true;
        for (unsigned i = 0; i < 4; i++)
                if (names[i])
                        label_copy(line, end, names[i], rows[*n].v[i], sizeof(rows[*n].v[i]));
        rows[*n].value = strtoull(val, NULL, 10);
        (*n)++;
        return true;
}

static void parse(const char *text, Parsed *p) {
        static const char *const call_labels[4] = { "function", "error" },
                             *const mech_labels[4] = { "mechanism", "flags", "min_key_size", "max_key_size" },
                             *const cap_labels[4] = { "capability" }, *const attr_labels[4] = { "attribute", "state" };

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
                else if (info_row(line, end, val, "kekd_hsm_call_errors_total", call_labels, p->calls, &p->n_calls) ||
                         info_row(line, end, val, "kekd_token_mechanism", mech_labels, p->mechs, &p->n_mechs) ||
                         info_row(line, end, val, "kekd_token_capability", cap_labels, p->caps, &p->n_caps) ||
                         info_row(line, end, val, "kekd_token_template_attribute", attr_labels, p->attrs, &p->n_attrs))
                        ;
                else if (strncmp(line, "kekd_hsm_call_last_error_timestamp_seconds{", 43) == 0 &&
                         (v = label(line, end, "function", &vlen))) {
                        for (unsigned i = 0; i < p->n_calls; i++)
                                if (strlen(p->calls[i].v[0]) == vlen && strncmp(p->calls[i].v[0], v, vlen) == 0)
                                        p->calls[i].last = strtod(val, NULL);
                } else if (strncmp(line, "kekd_token_probe_ok{", 20) == 0) {
                        p->have_probe = true;
                        p->probe_ok = strtoull(val, NULL, 10);
                        label_copy(line, end, "profile", p->profile, sizeof(p->profile));
                } else if (strncmp(line, "kekd_token_key_copies{", 22) == 0) {
                        p->have_copies = true;
                        label_copy(line, end, "result", p->copies, sizeof(p->copies));
                        label_copy(line, end, "plain", p->copy_ckr[0], sizeof(p->copy_ckr[0]));
                        label_copy(line, end, "extractable", p->copy_ckr[1], sizeof(p->copy_ckr[1]));
                        label_copy(line, end, "sensitive", p->copy_ckr[2], sizeof(p->copy_ckr[2]));
                } else if (strncmp(line, "kekd_token_unsafe ", 18) == 0)
                        p->token_unsafe = strtoull(val, NULL, 10);
                else if (strncmp(line, "kekd_token_records{", 19) == 0)
                        label_copy(line, end, "mode", p->records, sizeof(p->records));
                else if (strncmp(line, "kekd_record_mac_failures_total ", 31) == 0)
                        p->record_mac_failures = strtoull(val, NULL, 10);
                else if (strncmp(line, "kekd_token_info{", 16) == 0)
                        label_copy(line, end, "flags", p->token_flags, sizeof(p->token_flags));
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

/* The per-function errors and the capability probe, from the metrics (kekd_hsm_call_*, kekd_token_*). */
static void json_add_probe(json_object *o, const Parsed *p) {
        json_object *calls = json_object_new_array(), *probe, *mechs, *caps, *attrs;

        for (unsigned i = 0; i < p->n_calls; i++) {
                json_object *j = json_object_new_object();

                json_object_object_add(j, "function", json_object_new_string(p->calls[i].v[0]));
                json_object_object_add(j, "error", json_object_new_string(p->calls[i].v[1]));
                json_object_object_add(j, "count", json_object_new_uint64(p->calls[i].value));
                json_object_object_add(j, "last_usec", json_object_new_uint64((uint64_t) (p->calls[i].last * 1e6)));
                json_object_array_add(calls, j);
        }
        json_object_object_add(o, "hsm_call_errors", calls);
        if (!p->have_probe)
                return;
        probe = json_object_new_object();
        mechs = json_object_new_array();
        caps = json_object_new_object();
        attrs = json_object_new_object();
        json_object_object_add(probe, "ok", json_object_new_boolean(p->probe_ok == 1));
        json_object_object_add(probe, "profile", json_object_new_string(p->profile));
        json_object_object_add(probe, "token_flags", json_object_new_string(p->token_flags));
        json_object_object_add(probe, "records", json_object_new_string(p->records));
        json_object_object_add(probe, "record_mac_failures", json_object_new_uint64(p->record_mac_failures));
        for (unsigned i = 0; i < p->n_mechs; i++) {
                json_object *j = json_object_new_object();

                json_object_object_add(j, "mechanism", json_object_new_string(p->mechs[i].v[0]));
                json_object_object_add(j, "flags", json_object_new_string(p->mechs[i].v[1]));
                json_object_object_add(j, "min_key_size", json_object_new_uint64(strtoull(p->mechs[i].v[2], NULL, 10)));
                json_object_object_add(j, "max_key_size", json_object_new_uint64(strtoull(p->mechs[i].v[3], NULL, 10)));
                json_object_array_add(mechs, j);
        }
        json_object_object_add(probe, "mechanisms", mechs);
        for (unsigned i = 0; i < p->n_caps; i++)
                json_object_object_add(caps, p->caps[i].v[0], json_object_new_boolean(p->caps[i].value == 1));
        json_object_object_add(probe, "capabilities", caps);
        for (unsigned i = 0; i < p->n_attrs; i++)
                json_object_object_add(attrs, p->attrs[i].v[0], json_object_new_string(p->attrs[i].v[1]));
        json_object_object_add(probe, "template_attributes", attrs);
        if (p->have_copies) {
                json_object *c = json_object_new_object();

                json_object_object_add(c, "result", json_object_new_string(p->copies));
                json_object_object_add(c, "plain", json_object_new_string(p->copy_ckr[0]));
                json_object_object_add(c, "extractable", json_object_new_string(p->copy_ckr[1]));
                json_object_object_add(c, "sensitive", json_object_new_string(p->copy_ckr[2]));
                json_object_object_add(probe, "key_copies", c);
                json_object_object_add(probe, "unsafe", json_object_new_boolean(p->token_unsafe == 1));
        }
        json_object_object_add(o, "probe", probe);
}

static void print_probe(const Parsed *p) {
        printf("HSM calls:    %s", p->n_calls ? "" : "no failures\n");
        for (unsigned i = 0; i < p->n_calls; i++) {
                time_t t = (time_t) p->calls[i].last;
                char when[32] = "?";
                struct tm tm;

                if (t > 0 && gmtime_r(&t, &tm))
                        strftime(when, sizeof(when), "%H:%M:%S UTC", &tm);
                printf("%s %s x%llu (last %s)%s", p->calls[i].v[0], p->calls[i].v[1], p->calls[i].value, when,
                       i + 1 < p->n_calls ? ", " : "\n");
        }
        if (!p->have_probe)
                return;
        printf("Token probe:  %s", p->probe_ok == 1 ? "profile " : "NO WORKING PROFILE");
        printf("%s", p->probe_ok == 1 ? p->profile : "");
        for (unsigned i = 0; i < p->n_caps; i++)
                printf("; %s %s", p->caps[i].v[0], p->caps[i].value == 1 ? "yes" : "REFUSED");
        for (unsigned i = 0; i < p->n_attrs; i++)
                printf("; %s %s", p->attrs[i].v[0], p->attrs[i].v[1]);
        printf("\nToken flags:  %s\n", p->token_flags[0] ? p->token_flags : "-");
        if (p->have_copies)
                printf("Key copies:   %s (C_CopyObject plain %s, extractable %s, sensitive %s)\n",
                       strcmp(p->copies, "unsafe") == 0  ? "UNSAFE: a copy can leave the token"
                       : strcmp(p->copies, "kept") == 0  ? "made, kept sensitive and unextractable; a copy outlives purge"
                       : strcmp(p->copies, "refused") == 0 ? "refused"
                                                           : p->copies,
                       p->copy_ckr[0], p->copy_ckr[1], p->copy_ckr[2]);
        if (p->token_unsafe == 1)
                printf("Warning:      this token lets anyone with the user PIN take keys out; kekd runs on it only "
                       "because of [hsm] allow_unsafe_token (development or test tokens only)\n");
        if (p->records[0])
                printf("Records:      %s%s",
                       strcmp(p->records, "public+hmac") == 0 ? "public objects + HMAC (token refuses private data objects)"
                       : strcmp(p->records, "keys+hmac") == 0
                               ? "private key objects + HMAC (token refuses token data objects)"
                               : "private data objects",
                       p->record_mac_failures ? "" : "\n");
        if (p->records[0] && p->record_mac_failures)
                printf("; %llu object(s) failed their MAC and are not used\n", p->record_mac_failures);
        printf("Mechanisms:   %s", p->n_mechs ? "" : "none kekd could use\n");
        for (unsigned i = 0; i < p->n_mechs; i++)
                printf("%s (%s; key %s-%s)%s", p->mechs[i].v[0], p->mechs[i].v[1], p->mechs[i].v[2], p->mechs[i].v[3],
                       i + 1 < p->n_mechs ? ", " : "\n");
}

static const char *token_state_text(Kek__TokenState s) {
        switch (s) {
        case KEK__TOKEN_STATE__TOKEN_ACTIVE:
                return "active";
        case KEK__TOKEN_STATE__TOKEN_DEGRADED:
                return "degraded";
        case KEK__TOKEN_STATE__TOKEN_UNAVAILABLE:
                return "unavailable";
        default:
                return "unknown";
        }
}

/* StatusResponse.tokens (a kekd before them sends none: nothing is shown). */
static json_object *json_tokens(const Kek__StatusResponse *st) {
        json_object *a = json_object_new_array();

        for (size_t i = 0; i < st->n_tokens; i++) {
                const Kek__TokenHealth *t = st->tokens[i];
                json_object *j = json_object_new_object();

                json_object_object_add(j, "name", json_object_new_string(t->name ? t->name : ""));
                json_object_object_add(j, "label", json_object_new_string(t->label ? t->label : ""));
                json_object_object_add(j, "state", json_object_new_string(token_state_text(t->state)));
                json_object_object_add(j, "preferred", json_object_new_boolean(t->preferred));
                json_object_object_add(j, "probes", json_object_new_uint64(t->probes));
                json_object_object_add(j, "probe_failures", json_object_new_uint64(t->probe_failures));
                json_object_object_add(j, "request_errors", json_object_new_uint64(t->request_errors));
                json_object_object_add(j, "changed_usec", json_object_new_uint64(t->changed_usec));
                json_object_object_add(j, "error", json_object_new_string(t->error ? t->error : ""));
                json_object_object_add(j, "capability", json_object_new_string(t->capability ? t->capability : ""));
                json_object_object_add(j, "serving", json_object_new_boolean(t->serving));
                json_object_object_add(j, "failover_ops", json_object_new_uint64(t->failover_ops));
                json_object_object_add(j, "stale", json_object_new_boolean(t->stale));
                json_object_object_add(j, "synced_usec", json_object_new_uint64(t->synced_usec));
                json_object_array_add(a, j);
        }
        return a;
}

static void print_tokens(const Kek__StatusResponse *st) {
        for (size_t i = 0; i < st->n_tokens; i++) {
                const Kek__TokenHealth *t = st->tokens[i];
                time_t when = (time_t) (t->changed_usec / 1000000), synced = (time_t) (t->synced_usec / 1000000);
                char since[32] = "?", sync[64] = "";
                struct tm tm;

                if (when > 0 && gmtime_r(&when, &tm))
                        strftime(since, sizeof(since), "%H:%M:%S UTC", &tm);
                /* Replication: a further token is stale, or in sync since its last complete sync (none from an older kekd). */
                if (t->stale)
                        snprintf(sync, sizeof(sync), ", STALE");
                else if (synced > 0 && gmtime_r(&synced, &tm))
                        strftime(sync, sizeof(sync), ", in sync since %H:%M:%S UTC", &tm);
                printf("%s %s ('%s'%s%s): %s since %s, %llu of %llu probes failed%s%s%s%s%s\n", i == 0 ? "Tokens:      " : "             ",
                       t->name ? t->name : "?", t->label ? t->label : "", t->preferred ? ", preferred" : "",
                       t->serving ? ", serving" : "",
                       t->state == KEK__TOKEN_STATE__TOKEN_ACTIVE ? "active" : t->state == KEK__TOKEN_STATE__TOKEN_DEGRADED ? "DEGRADED" : "UNAVAILABLE",
                       since, (unsigned long long) t->probe_failures, (unsigned long long) t->probes, sync,
                       t->capability && t->capability[0] ? "; capability: " : "", t->capability ? t->capability : "",
                       t->error && t->error[0] ? "; last: " : "", t->error ? t->error : "");
        }
        /* As for [hsm] (print_probe()): a further token used although a copy of a key can leave it. */
        for (size_t i = 0; i < st->n_tokens; i++) {
                const Kek__TokenHealth *t = st->tokens[i];

                if (!t->preferred && t->capability && strcmp(t->capability, "unsafe (allowed)") == 0)
                        printf("Warning:      token %s lets anyone with the user PIN take keys out; kekd uses it only "
                               "because of [hsm.%s] allow_unsafe_token (development or test tokens only)\n",
                               t->name ? t->name : "?", t->name ? t->name : "?");
        }
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
                json_object_object_add(o, "backup", json_object_new_string(st->backup == KEK__BACKUP_MODE__BACKUP_TRUSTED_WRAP
                                                                                   ? "trusted-wrap" : "none"));
                json_object_object_add(o, "versions_without_backup", json_object_new_int64(st->versions_without_backup));
                {
                        json_object *wb = json_object_new_array();

                        for (size_t i = 0; i < st->n_without_backup; i++) {
                                json_object *v = json_object_new_object();

                                json_object_object_add(v, "key", json_object_new_string(st->without_backup[i]->key));
                                json_object_object_add(v, "version", json_object_new_int64(st->without_backup[i]->version));
                                json_object_array_add(wb, v);
                        }
                        json_object_object_add(o, "without_backup", wb);
                }
                json_object_object_add(o, "clients", json_object_new_int64(st->clients));
                json_object_object_add(o, "watchers", json_object_new_uint64(p->watchers));
                json_object_object_add(o, "hsm_session_open", json_object_new_boolean(st->hsm_session_open));
                json_object_object_add(o, "hsm_session_reopens", json_object_new_uint64(p->reopens));
                json_object_object_add(o, "hsm_errors", json_object_new_uint64(p->hsm_errors));
                json_object_object_add(o, "tokens", json_tokens(st));
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
                json_add_probe(o, p);
                puts(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE));
                json_object_put(o);
                return 0;
        }

        printf("kekd %s on token '%s', started %s\n", st->version ? st->version : "?", st->token ? st->token : "?", started);
        printf("HSM session:  %s, %llu reopened after failures\n", st->hsm_session_open ? "open" : "CLOSED",
               p->reopens);
        printf("HSM errors:   %s\n", p->errors_text[0] ? p->errors_text : "none");
        print_probe(p);
        print_tokens(st);
        printf("Keys:         %u (%u versions)\n", st->keys, st->versions);
        if (st->backup == KEK__BACKUP_MODE__BACKUP_TRUSTED_WRAP) {
                printf("Backup:       trusted-wrap, %u versions without a backup path\n", st->versions_without_backup);
                for (size_t i = 0; i < st->n_without_backup; i++)
                        printf("              key '%s' version %u is never extractable: it would be lost with the "
                               "token; rotate it\n", st->without_backup[i]->key, st->without_backup[i]->version);
        } else
                printf("Backup:       none, %u versions never extractable (lost with the token)\n",
                       st->versions_without_backup);
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
