/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Metrics collection and exposition (see metrics.h). Request series live in
 * an open-addressing table keyed by (op, key, result); op and result are
 * static strings compared by pointer, so the hot path hashes only the key
 * name. Histograms are per operation with fixed buckets from 50 us to 1 s,
 * the range between a cached HSM operation and a stalled device.
 */
#include "config.h"

#include <errno.h>
#include <stddef.h>
#include <inttypes.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/kekerr.h"
#include "daemon/metrics.h"
#include "daemon/tokenset.h"

#define SLOTS (METRICS_SERIES_MAX * 2)
#define OPS_MAX 48u

static const uint64_t bucket_usec[] = { 50, 100, 250, 500, 1000, 2500, 5000, 10000, 25000, 100000, 250000, 1000000 };
#define N_BUCKETS ELEMENTSOF(bucket_usec)

typedef struct Series {
        const char *op;        /* NULL: free slot */
        const char *result;
        char key[KEY_NAME_MAX + 1];
        uint64_t count;
} Series;

typedef struct OpStats {
        const char *op;
        uint64_t buckets[N_BUCKETS];   /* non-cumulative; summed when rendered */
        uint64_t count;
        uint64_t sum_usec;
        uint64_t items;
} OpStats;

struct Metrics {
        uint64_t start_usec;
        Series *series;
        unsigned n_series;
        uint64_t series_dropped;   /* requests counted under key="_other" */
        OpStats ops[OPS_MAX];
        unsigned n_ops;
        unsigned clients, watchers;
        size_t output_queued;
        uint64_t output_drops;
        uint64_t hsm_crypto_ops;   /* encryptions and decryptions the data plane asked of the HSM */
        MetricsHsmFn hsm_fn;
        void *hsm_userdata;
        bool have_probe;
        ProbeResult probe;         /* the last capability probe: at start, then each `check` */
        TokenSet *tokens;          /* health of each token (daemon/tokenset.h), or NULL */
};

void metrics_set_tokens(Metrics *m, TokenSet *ts) {
        m->tokens = ts;
}

/* The per-token counters of TokenHealth, rendered alike. */
static const struct {
        const char *name, *help;
        size_t offset; /* of a uint64_t in TokenHealth; a counter if its name ends in _total, else a gauge */
} token_counters[] = {
        { "kekd_token_probes_total", "Health probes made, by token.", offsetof(TokenHealth, probes) },
        { "kekd_token_probe_failures_total", "Health probes failed, by token.", offsetof(TokenHealth, probe_failures) },
        { "kekd_token_request_errors_total", "Client requests that met HSM_UNAVAILABLE, by token.",
          offsetof(TokenHealth, request_errors) },
        { "kekd_token_serving", "1 for the token that runs the data plane's HSM calls now (failover).",
          offsetof(TokenHealth, serving) },
        { "kekd_token_failover_ops_total", "Data-plane calls a further token served for the preferred one, by token.",
          offsetof(TokenHealth, failover_ops) },
        { "kekd_token_syncs_total", "Syncs with the preferred token that completed, by further token.",
          offsetof(TokenHealth, syncs) },
        { "kekd_token_sync_failures_total", "Syncs with the preferred token that failed on the token, by further token.",
          offsetof(TokenHealth, sync_failures) },
};

/*
 * Each token's health: its state one-hot (as kube-state-metrics does), probe
 * counts and last probe time. Each token's status is read once, so all its
 * lines describe one moment.
 */
static void render_tokens(FILE *f, const Metrics *m) {
        static const TokenState states[] = { TOKEN_ACTIVE, TOKEN_DEGRADED, TOKEN_UNAVAILABLE };
        size_t n = tokenset_count(m->tokens), k = 0;
        _cleanup_free_ TokenStatus *st = NULL;

        if (n == 0)
                return;
        st = calloc(n, sizeof(*st));
        if (!st)
                return; /* the rest of the file is still written */
        for (size_t i = 0; i < n; i++)
                if (tokenset_status(m->tokens, i, &st[k]) >= 0)
                        k++;
        fputs("# HELP kekd_token_state Health of each token from its encrypt/decrypt probe: 1 for its state.\n"
              "# TYPE kekd_token_state gauge\n", f);
        for (size_t i = 0; i < k; i++)
                for (size_t s = 0; s < ELEMENTSOF(states); s++)
                        fprintf(f, "kekd_token_state{token=\"%s\",state=\"%s\"} %d\n", st[i].name,
                                token_state_name(states[s]), st[i].health.state == states[s]);
        for (size_t c = 0; c < ELEMENTSOF(token_counters); c++) {
                fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", token_counters[c].name, token_counters[c].help,
                        token_counters[c].name, strstr(token_counters[c].name, "_total") ? "counter" : "gauge");
                for (size_t i = 0; i < k; i++)
                        fprintf(f, "%s{token=\"%s\"} %llu\n", token_counters[c].name, st[i].name,
                                (unsigned long long) *(const uint64_t *) ((const char *) &st[i].health +
                                                                          token_counters[c].offset));
        }
        fputs("# HELP kekd_token_probe_seconds How long the last health probe took, by token.\n"
              "# TYPE kekd_token_probe_seconds gauge\n", f);
        for (size_t i = 0; i < k; i++)
                fprintf(f, "kekd_token_probe_seconds{token=\"%s\"} %.6f\n", st[i].name,
                        (double) st[i].health.last_probe_usec / 1e6);
        fputs("# HELP kekd_token_stale 1 while a token lacks the preferred token's current state and serves nothing.\n"
              "# TYPE kekd_token_stale gauge\n", f);
        for (size_t i = 0; i < k; i++)
                fprintf(f, "kekd_token_stale{token=\"%s\"} %d\n", st[i].name, st[i].health.stale ? 1 : 0);
}

void metrics_set_probe(Metrics *m, const ProbeResult *p) {
        m->probe = *p;
        m->have_probe = true;
}

static int answer_value(ProbeAnswer a) {
        return a == PROBE_YES ? 1 : 0;
}

/* The cached probe as info-style series (value 1, the facts in labels) and 0/1 capabilities. */
static void render_probe(FILE *f, const Metrics *m, const Keystore *ks) {
        static const char *const states[] = { "untried", "accepted", "dropped" };
        const ProbeResult *p = &m->probe;
        HsmTemplateAttr attrs[HSM_OPTIONAL_ATTRS];
        char flags[256];

        if (!m->have_probe)
                return;
        fputs("# HELP kekd_token_probe_ok Whether the last capability probe found a working profile (start, check).\n"
              "# TYPE kekd_token_probe_ok gauge\n", f);
        fprintf(f, "kekd_token_probe_ok{profile=\"%s\"} %d\n", p->profile ?: "", p->profile ? 1 : 0);
        probe_flags_text(p->token_flags, false, flags, sizeof(flags));
        fprintf(f, "# HELP kekd_token_info The token's flags (C_GetTokenInfo).\n# TYPE kekd_token_info gauge\n"
                   "kekd_token_info{flags=\"%s\"} 1\n", flags);
        fputs("# HELP kekd_token_mechanism Mechanisms kekd could use that the token offers, with flags and key sizes.\n"
              "# TYPE kekd_token_mechanism gauge\n", f);
        for (unsigned i = 0; i < PROBE_MECHANISMS; i++) {
                const ProbeMechanism *x = &p->mechanisms[i];

                if (!x->offered)
                        continue;
                probe_flags_text(x->info.flags, true, flags, sizeof(flags));
                fprintf(f, "kekd_token_mechanism{mechanism=\"%s\",flags=\"%s\",min_key_size=\"%lu\",max_key_size=\"%lu\"} 1\n",
                        x->name, flags, x->info.min_key_size, x->info.max_key_size);
        }
        fputs("# HELP kekd_token_capability What the probe tried with throwaway objects: 1 works, 0 refused.\n"
              "# TYPE kekd_token_capability gauge\n", f);
        if (p->private_data != PROBE_UNKNOWN)
                fprintf(f, "kekd_token_capability{capability=\"private_data_objects\"} %d\n", answer_value(p->private_data));
        if (p->public_data != PROBE_UNKNOWN)
                fprintf(f, "kekd_token_capability{capability=\"public_data_objects\"} %d\n", answer_value(p->public_data));
        if (p->key_objects != PROBE_UNKNOWN)
                fprintf(f, "kekd_token_capability{capability=\"record_key_objects\"} %d\n", answer_value(p->key_objects));
        if (p->key_template != PROBE_UNKNOWN)
                fprintf(f, "kekd_token_capability{capability=\"key_template\"} %d\n", answer_value(p->key_template));
        if (p->wrap_with_trusted != PROBE_UNKNOWN)
                fprintf(f, "kekd_token_capability{capability=\"wrap_with_trusted\"} %d\n",
                        answer_value(p->wrap_with_trusted));
        if (p->copy != PROBE_COPY_UNKNOWN) {
                fprintf(f, "# HELP kekd_token_key_copies What C_CopyObject does with a key made with the KEK template: "
                           "refused, kept (copies stay sensitive and unextractable) or unsafe (a copy can leave the "
                           "token).\n# TYPE kekd_token_key_copies gauge\n"
                           "kekd_token_key_copies{result=\"%s\",plain=\"%s\",extractable=\"%s\",sensitive=\"%s\"} 1\n",
                        probe_copy_name(p->copy), p->copy_ckr[0] ?: "", p->copy_ckr[1] ?: "", p->copy_ckr[2] ?: "");
                fprintf(f, "# HELP kekd_token_unsafe 1: the token lets anyone with the user PIN take keys out; kekd "
                           "runs on it only with [hsm] allow_unsafe_token.\n# TYPE kekd_token_unsafe gauge\n"
                           "kekd_token_unsafe %d\n", p->copy == PROBE_COPY_UNSAFE);
        }
        if (p->private_data != PROBE_UNKNOWN) {
                fprintf(f, "# HELP kekd_token_records How records are kept: private data objects, or public ones with "
                           "an HMAC tag computed in the token (a token that refuses private data objects).\n"
                           "# TYPE kekd_token_records gauge\nkekd_token_records{mode=\"%s\"} 1\n",
                        p->records == HSM_RECORDS_PUBLIC_MAC    ? "public+hmac"
                        : p->records == HSM_RECORDS_KEY_OBJECTS ? "keys+hmac"
                                                                : "private");
                fprintf(f, "# HELP kekd_record_mac_failures_total Data objects of kekd refused as records: their "
                           "HMAC tag did not verify.\n# TYPE kekd_record_mac_failures_total counter\n"
                           "kekd_record_mac_failures_total %" PRIu64 "\n", ks ? hsm_record_mac_failures(keystore_hsm(ks)) : 0);
        }
        /* Live, not the probe's copy: a KEK generated since may have settled an untried attribute. */
        if (ks)
                hsm_template_attrs(keystore_hsm(ks), attrs);
        else
                memcpy(attrs, p->attrs, sizeof(attrs));
        fputs("# HELP kekd_token_template_attribute Optional KEK template attributes: accepted, dropped (refused by the token) or untried.\n"
              "# TYPE kekd_token_template_attribute gauge\n", f);
        for (unsigned i = 0; i < HSM_OPTIONAL_ATTRS; i++)
                fprintf(f, "kekd_token_template_attribute{attribute=\"%s\",state=\"%s\"} 1\n", attrs[i].name,
                        states[attrs[i].state]);
}

void metrics_set_hsm_source(Metrics *m, MetricsHsmFn fn, void *userdata) {
        m->hsm_fn = fn;
        m->hsm_userdata = userdata;
}

int metrics_new(uint64_t start_realtime_usec, Metrics **ret) {
        Metrics *m = calloc(1, sizeof(*m));

        if (!m || !(m->series = calloc(SLOTS, sizeof(Series)))) {
                free(m);
                return -ENOMEM;
        }
        m->start_usec = start_realtime_usec;
        *ret = m;
        return 0;
}

Metrics *metrics_free(Metrics *m) {
        if (!m)
                return NULL;
        free(m->series);
        free(m);
        return NULL;
}

static const char *result_name(int result) {
        if (result == 0)
                return "OK";
        return kekerr_name(result) ?: "SYSTEM_ERROR";
}

static void count_series(Metrics *m, const char *op, const char *key, const char *result) {
        uint32_t h = 2166136261u;

        for (const char *c = key; *c; c++)
                h = (h ^ (uint8_t) *c) * 16777619u;
        h = (h ^ (uint32_t) (uintptr_t) op) * 16777619u;
        h = (h ^ (uint32_t) (uintptr_t) result) * 16777619u;
        for (uint32_t i = h % SLOTS;; i = (i + 1) % SLOTS) {
                Series *s = &m->series[i];

                if (!s->op) {
                        if (m->n_series >= METRICS_SERIES_MAX && strcmp(key, "_other") != 0) {
                                m->series_dropped++;
                                count_series(m, op, "_other", result);
                                return;
                        }
                        *s = (Series) { .op = op, .result = result };
                        snprintf(s->key, sizeof(s->key), "%s", key);
                        m->n_series++;
                }
                if (s->op == op && s->result == result && strcmp(s->key, key) == 0) {
                        s->count++;
                        return;
                }
        }
}

void metrics_request(Metrics *m, const char *op, const char *key, int result, uint64_t duration_usec, unsigned items) {
        OpStats *o = NULL;
        size_t b;

        if (!m || !op)
                return;
        count_series(m, op, key ? key : "", result_name(result));
        for (unsigned i = 0; i < m->n_ops; i++)
                if (m->ops[i].op == op) {
                        o = &m->ops[i];
                        break;
                }
        if (!o) {
                if (m->n_ops >= OPS_MAX)
                        return;
                o = &m->ops[m->n_ops++];
                o->op = op;
        }
        for (b = 0; b < N_BUCKETS && duration_usec > bucket_usec[b]; b++)
                ;
        if (b < N_BUCKETS)
                o->buckets[b]++;
        o->count++;
        o->sum_usec += duration_usec;
        o->items += items;
}

void metrics_hsm_crypto_ops(Metrics *m, uint64_t n) {
        if (m)
                m->hsm_crypto_ops += n;
}

void metrics_set_clients(Metrics *m, unsigned clients, unsigned watchers) {
        if (!m)
                return;
        m->clients = clients;
        m->watchers = watchers;
}

void metrics_set_output(Metrics *m, size_t queued_bytes, uint64_t budget_drops) {
        if (!m)
                return;
        m->output_queued = queued_bytes;
        m->output_drops = budget_drops;
}

unsigned metrics_clients(const Metrics *m) {
        return m ? m->clients : 0;
}

static void render_keys(FILE *f, const Metrics *m, const Keystore *ks) {
        size_t n[4] = {}, versions = 0;
        unsigned sessions = 1;
        HsmStats hs;

        for (size_t i = 0; i < keystore_n_keys(ks); i++) {
                const Key *k = keystore_key_at(ks, i);

                if (!key_exists(k))
                        continue; /* being created or purged */
                if (k->state >= KEY_ENABLED && k->state <= KEY_DELETED)
                        n[k->state]++;
                versions += k->n_versions;
        }
        fputs("# HELP kekd_keys Keys in the token, by state.\n# TYPE kekd_keys gauge\n", f);
        fprintf(f, "kekd_keys{state=\"enabled\"} %zu\nkekd_keys{state=\"disabled\"} %zu\nkekd_keys{state=\"deleted\"} %zu\n",
                n[KEY_ENABLED], n[KEY_DISABLED], n[KEY_DELETED]);
        fprintf(f, "# HELP kekd_key_versions Key versions in the token.\n# TYPE kekd_key_versions gauge\nkekd_key_versions %zu\n",
                versions);
        hsm_stats(keystore_hsm(ks), &hs);
        if (m->hsm_fn)
                sessions = m->hsm_fn(&hs, m->hsm_userdata);
        fprintf(f, "# HELP kekd_hsm_session_open Whether kekd holds a logged-in HSM session (all of them, with [hsm] sessions > 1).\n"
                   "# TYPE kekd_hsm_session_open gauge\nkekd_hsm_session_open %d\n", hs.session_open ? 1 : 0);
        fprintf(f, "# HELP kekd_hsm_session_reopens_total HSM sessions reopened after a failure.\n"
                   "# TYPE kekd_hsm_session_reopens_total counter\nkekd_hsm_session_reopens_total %llu\n",
                (unsigned long long) hs.reopens);
        fprintf(f, "# HELP kekd_hsm_sessions HSM sessions kekd uses ([hsm] sessions).\n"
                   "# TYPE kekd_hsm_sessions gauge\nkekd_hsm_sessions %u\n", sessions);
        fputs("# HELP kekd_hsm_errors_total PKCS#11 calls that did not return CKR_OK, by return value.\n"
              "# TYPE kekd_hsm_errors_total counter\n", f);
        for (unsigned i = 0; i < hs.n_errors; i++)
                fprintf(f, "kekd_hsm_errors_total{rv=\"%s\"} %llu\n", hs.errors[i].name,
                        (unsigned long long) hs.errors[i].count);
        /* Which call failed, and how: the CKR label is the function's latest failure (one series per function). */
        fputs("# HELP kekd_hsm_call_errors_total Failed PKCS#11 calls by function; error is the latest failure's CKR.\n"
              "# TYPE kekd_hsm_call_errors_total counter\n", f);
        for (unsigned i = 0; i < hs.n_calls; i++)
                fprintf(f, "kekd_hsm_call_errors_total{function=\"%s\",error=\"%s\"} %llu\n", hs.calls[i].function,
                        hs.calls[i].error, (unsigned long long) hs.calls[i].count);
        fputs("# HELP kekd_hsm_call_last_error_timestamp_seconds When each PKCS#11 function last failed.\n"
              "# TYPE kekd_hsm_call_last_error_timestamp_seconds gauge\n", f);
        for (unsigned i = 0; i < hs.n_calls; i++)
                fprintf(f, "kekd_hsm_call_last_error_timestamp_seconds{function=\"%s\"} %llu.%06llu\n",
                        hs.calls[i].function, (unsigned long long) (hs.calls[i].realtime_usec / 1000000),
                        (unsigned long long) (hs.calls[i].realtime_usec % 1000000));
}

int metrics_render(const Metrics *m, const Keystore *ks, char **ret, size_t *ret_len) {
        char *buf = NULL;
        size_t len = 0;
        FILE *f;

        f = open_memstream(&buf, &len);
        if (!f)
                return -errno;
        fprintf(f, "# HELP kekd_start_time_seconds When this kekd started, seconds since the epoch.\n"
                   "# TYPE kekd_start_time_seconds gauge\nkekd_start_time_seconds %llu\n",
                (unsigned long long) (m->start_usec / 1000000));
        fprintf(f, "# HELP kekd_clients Connected clients.\n# TYPE kekd_clients gauge\nkekd_clients %u\n", m->clients);
        fprintf(f, "# HELP kekd_watchers Clients subscribed to key events.\n# TYPE kekd_watchers gauge\nkekd_watchers %u\n",
                m->watchers);
        fprintf(f, "# HELP kekd_output_queued_bytes Memory held for replies and events not yet sent to their peers.\n"
                   "# TYPE kekd_output_queued_bytes gauge\nkekd_output_queued_bytes %zu\n", m->output_queued);
        fprintf(f, "# HELP kekd_output_budget_drops_total Connections closed because the output held for all peers "
                   "exceeded max_queued_output.\n# TYPE kekd_output_budget_drops_total counter\n"
                   "kekd_output_budget_drops_total %llu\n", (unsigned long long) m->output_drops);
        fprintf(f, "# HELP kekd_hsm_crypto_ops_total Encryptions and decryptions of wraps, unwraps and rewraps run in the "
                   "HSM (a rewrap counts two).\n# TYPE kekd_hsm_crypto_ops_total counter\nkekd_hsm_crypto_ops_total %llu\n",
                (unsigned long long) m->hsm_crypto_ops);
        fputs("# HELP kekd_requests_total Requests handled, by operation, key and result.\n"
              "# TYPE kekd_requests_total counter\n", f);
        for (uint32_t i = 0; i < SLOTS; i++) {
                const Series *s = &m->series[i];

                if (s->op)
                        fprintf(f, "kekd_requests_total{op=\"%s\",key=\"%s\",result=\"%s\"} %llu\n", s->op, s->key,
                                s->result, (unsigned long long) s->count);
        }
        fprintf(f, "# HELP kekd_requests_other_key_total Requests counted under key=\"_other\" (series limit reached).\n"
                   "# TYPE kekd_requests_other_key_total counter\nkekd_requests_other_key_total %llu\n",
                (unsigned long long) m->series_dropped);
        fputs("# HELP kekd_request_duration_seconds Time kekd spent on a request, by operation.\n"
              "# TYPE kekd_request_duration_seconds histogram\n", f);
        for (unsigned i = 0; i < m->n_ops; i++) {
                const OpStats *o = &m->ops[i];
                uint64_t cum = 0;

                for (size_t b = 0; b < N_BUCKETS; b++) {
                        cum += o->buckets[b];
                        fprintf(f, "kekd_request_duration_seconds_bucket{op=\"%s\",le=\"%g\"} %llu\n", o->op,
                                (double) bucket_usec[b] / 1e6, (unsigned long long) cum);
                }
                fprintf(f, "kekd_request_duration_seconds_bucket{op=\"%s\",le=\"+Inf\"} %llu\n", o->op,
                        (unsigned long long) o->count);
                fprintf(f, "kekd_request_duration_seconds_sum{op=\"%s\"} %.6f\n", o->op, (double) o->sum_usec / 1e6);
                fprintf(f, "kekd_request_duration_seconds_count{op=\"%s\"} %llu\n", o->op, (unsigned long long) o->count);
        }
        fputs("# HELP kekd_batch_items_total Items carried by batch requests, by operation.\n"
              "# TYPE kekd_batch_items_total counter\n", f);
        for (unsigned i = 0; i < m->n_ops; i++)
                if (m->ops[i].items > 0)
                        fprintf(f, "kekd_batch_items_total{op=\"%s\"} %llu\n", m->ops[i].op,
                                (unsigned long long) m->ops[i].items);
        if (ks)
                render_keys(f, m, ks);
        render_probe(f, m, ks);
        render_tokens(f, m);
        if (fclose(f) != 0) {
                free(buf);
                return -ENOMEM;
        }
        *ret = buf;
        *ret_len = len;
        return 0;
}

int metrics_write_file(const Metrics *m, const Keystore *ks, const char *path) {
        _cleanup_free_ char *text = NULL, *tmp = NULL;
        size_t len, done = 0;
        int fd, r;

        r = metrics_render(m, ks, &text, &len);
        if (r < 0)
                return r;
        if (asprintf(&tmp, "%s.XXXXXX", path) < 0)
                return -ENOMEM;
        fd = mkostemp(tmp, O_CLOEXEC);
        if (fd < 0)
                return -errno;
        /* Readable by the collector (node_exporter runs as another user). */
        if (fchmod(fd, 0644) < 0)
                r = -errno;
        while (r >= 0 && done < len) {
                ssize_t n = write(fd, text + done, len - done);

                if (n < 0)
                        r = errno == EINTR ? 0 : -errno;
                else
                        done += (size_t) n;
        }
        if (close(fd) < 0 && r >= 0)
                r = -errno;
        if (r >= 0 && rename(tmp, path) < 0)
                r = -errno;
        if (r < 0)
                (void) unlink(tmp);
        return r;
}
