/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * kekload: a load and soak test of kekd and libkek. T client threads (default
 * 64) each run N operations (default 100000) against one running kekd, drawn
 * from a weighted mix: unwraps served from the libkek AEK cache (hits),
 * unwraps with the cache off (each one a round trip and an HSM decrypt),
 * wraps, rewraps, GetKeyVersion and batch unwraps, spread over several keys.
 * Every result is checked (an unwrapped AEK must be the one that was
 * wrapped), errors are counted per operation type, and kekd's resident
 * memory is sampled from /proc every second, so a leak or a slow growth
 * under sustained load shows as a failure instead of a slow death in
 * production. tests/load/load.sh starts kekd on a fresh SoftHSM2 token and
 * runs this; "make load" runs the full size. Never part of make check.
 *
 *   kekload --kekd-pid PID [--socket PATH] [--kekd-log FILE] [--threads T] [--ops N]
 *           [--keys K1,K2,..] [--mix hit=W,nocache=W,wrap=W,rewrap=W,version=W,batch=W]
 *           [--batch B] [--threads-per-client S] [--cache-entries E] [--timeout-ms MS]
 *           [--max-seconds S] [--warmup-seconds S] [--rss-factor F] [--rss-slack-mb MB] [--seed N]
 *
 * Exit status: 0 when every operation succeeded, every thread connected,
 * kekd's RSS stayed within last <= first * F + MB (first: the first sample
 * after the warm-up) and the run finished within --max-seconds; 1 otherwise;
 * 2 on a usage error.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include "client/libkek.h"

#define HOT_SLOTS 8u              /* per thread: blobs unwrapped through the cache */
#define SCRATCH_SLOTS 8u          /* per thread: blobs re-wrapped and unwrapped without the cache */
#define MAX_THREADS 1024u
#define MAX_KEYS 64u
#define MAX_BATCH 256u
#define MAX_SAMPLES 100000u       /* RSS samples kept: one a second */
#define MAX_ERROR_LINES 20u       /* errors printed; all are counted */
#define CONNECT_TRIES 50u         /* first request of a thread: 50 tries 100 ms apart */
#define WATCH_WAIT_MS 10000u      /* how long a thread waits to see its Watch stream up */

typedef enum OpType {
        OP_HIT,
        OP_NOCACHE,
        OP_WRAP,
        OP_REWRAP,
        OP_VERSION,
        OP_BATCH,
        _OP_MAX,
} OpType;

static const char *const op_name[_OP_MAX] = {
        [OP_HIT] = "hit",
        [OP_NOCACHE] = "nocache",
        [OP_WRAP] = "wrap",
        [OP_REWRAP] = "rewrap",
        [OP_VERSION] = "version",
        [OP_BATCH] = "batch",
};

static const char *const op_what[_OP_MAX] = {
        [OP_HIT] = "unwrap via the libkek cache",
        [OP_NOCACHE] = "unwrap, cache off",
        [OP_WRAP] = "wrap, current version",
        [OP_REWRAP] = "rewrap to current",
        [OP_VERSION] = "GetKeyVersion",
        [OP_BATCH] = "batch unwrap",
};

/*
 * The default mix, per 10000 operations: a quarter of them reach kekd, about
 * 0.38 HSM operations per operation (a rewrap is two, a batch of 8 is eight),
 * which keeps kekd saturated on 2 cores while the cache hits stay the
 * common case: 64 x 100000 take about two minutes there.
 */
static unsigned mix[_OP_MAX] = {
        [OP_HIT] = 7500, [OP_NOCACHE] = 800, [OP_WRAP] = 600, [OP_REWRAP] = 400, [OP_VERSION] = 500, [OP_BATCH] = 200,
};

static struct {
        const char *socket_path;
        pid_t kekd_pid;
        const char *kekd_log;
        unsigned threads, threads_per_client, batch, timeout_ms, max_seconds, warmup_seconds;
        uint64_t ops;
        size_t cache_entries;
        double rss_factor, rss_slack_mb;
        uint64_t seed;
        const char *keys[MAX_KEYS];
        unsigned n_keys;
} arg = {
        .threads = 64,
        .threads_per_client = 1,
        .batch = 8,
        .timeout_ms = 30000,
        .max_seconds = 600,
        .warmup_seconds = 5,
        .ops = 100000,
        .cache_entries = 256,
        .rss_factor = 1.5,
        .rss_slack_mb = 8,
        .seed = 1,
};

typedef struct Slot {
        const char *key;
        char ctx[48];
        kek_aek *aek;
        kek_blob blob;
} Slot;

typedef struct Client {
        kek_client *cached, *uncached;
} Client;

typedef struct Worker {
        unsigned index;
        pthread_t thread;
        bool started;
        Client *client;
        Slot hot[HOT_SLOTS], scratch[SCRATCH_SLOTS];
        uint64_t rng;
        uint64_t ops[_OP_MAX], errors[_OP_MAX], sum_ns[_OP_MAX], max_ns[_OP_MAX];
        uint64_t done;
        bool connect_failed, setup_failed, watch_seen, timed_out;
} Worker;

static Worker *workers;
static Client *clients;
static unsigned n_clients;
/* The start gate: timing begins when every thread has connected and wrapped its blobs. */
static pthread_mutex_t gate_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate_cond;
static unsigned gate_ready;
static bool gate_open;
static atomic_uint_fast64_t ops_done;
static atomic_uint error_lines;
static atomic_bool stop_now;
static uint64_t deadline_ns;
static uint64_t mix_total;

static pthread_mutex_t done_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t done_cond;
static bool workers_done;

typedef struct Sample {
        double t;
        long rss_kb;
} Sample;

static Sample samples[MAX_SAMPLES];
static size_t n_samples;
static bool kekd_vanished;

static uint64_t now_ns(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000000ULL + (uint64_t) ts.tv_nsec;
}

static uint64_t splitmix64(uint64_t *state) {
        uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);

        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        return z ^ (z >> 31);
}

/* VmRSS of pid in kB, or -ENOENT once the process is gone. */
static long rss_kb(pid_t pid) {
        char path[64], line[256];
        long kb = -ENOENT;
        FILE *f;

        snprintf(path, sizeof(path), "/proc/%d/status", (int) pid);
        f = fopen(path, "re");
        if (!f)
                return -ENOENT;
        while (fgets(line, sizeof(line), f))
                if (sscanf(line, "VmRSS: %ld kB", &kb) == 1)
                        break;
        fclose(f);
        return kb;
}

static const char *err_text(int r) {
        if (r == -EPROTO)
                return "result differs from what was wrapped";
        if (r == -ERANGE)
                return "unexpected key version or state";
        return kek_strerror(r);
}

static void report_error(const Worker *w, OpType t, int r) {
        unsigned n = atomic_fetch_add(&error_lines, 1);

        if (n < MAX_ERROR_LINES)
                fprintf(stderr, "kekload: thread %u: %s: %s (%d)\n", w->index, op_name[t], err_text(r), r);
        else if (n == MAX_ERROR_LINES)
                fprintf(stderr, "kekload: further errors only counted\n");
}

static int aek_is(const kek_aek *got, const kek_aek *want) {
        if (!got || kek_aek_size(got) != kek_aek_size(want) ||
            memcmp(kek_aek_data(got), kek_aek_data(want), kek_aek_size(want)) != 0)
                return -EPROTO;
        return 0;
}

static int slot_wrap(kek_client *c, Slot *s) {
        uint8_t *blob = NULL;
        size_t len = 0;
        uint32_t version = 0;
        int r;

        r = kek_wrap(c, s->key, 0, kek_aek_data(s->aek), kek_aek_size(s->aek), (const uint8_t *) s->ctx, strlen(s->ctx),
                     &blob, &len, &version);
        if (r < 0)
                return r;
        if (version == 0) {
                free(blob);
                return -ERANGE;
        }
        free(s->blob.data);
        s->blob = (kek_blob) { blob, len };
        return 0;
}

static int slot_unwrap(kek_client *c, const Slot *s) {
        kek_aek *got = NULL;
        int r;

        r = kek_unwrap(c, s->blob.data, s->blob.len, (const uint8_t *) s->ctx, strlen(s->ctx), &got);
        if (r < 0)
                return r;
        r = aek_is(got, s->aek);
        kek_aek_unref(got);
        return r;
}

static int slot_rewrap(kek_client *c, Slot *s) {
        uint8_t *blob = NULL;
        size_t len = 0;
        uint32_t version = 0;
        int r;

        r = kek_rewrap(c, s->blob.data, s->blob.len, (const uint8_t *) s->ctx, strlen(s->ctx), &blob, &len, &version);
        if (r < 0)
                return r;
        if (version == 0) {
                free(blob);
                return -ERANGE;
        }
        free(s->blob.data);
        s->blob = (kek_blob) { blob, len };
        return 0;
}

static int key_version_ok(kek_client *c, const char *key) {
        kek_key_version v;
        int r;

        r = kek_get_key_version(c, key, &v);
        if (r < 0)
                return r;
        if (v.current_version == 0 || v.state != 1)
                return -ERANGE;
        return 0;
}

/* Batch unwrap of the scratch slots (cycling when the batch is larger) through the caching client. */
static int batch_unwrap(kek_client *c, Worker *w, unsigned first) {
        kek_blob blobs[MAX_BATCH], ctxs[MAX_BATCH];
        kek_aek *got[MAX_BATCH] = {};
        int res[MAX_BATCH], r;

        for (unsigned i = 0; i < arg.batch; i++) {
                const Slot *s = &w->scratch[(first + i) % SCRATCH_SLOTS];

                blobs[i] = s->blob;
                ctxs[i] = (kek_blob) { (uint8_t *) s->ctx, strlen(s->ctx) };
        }
        r = kek_unwrap_batch(c, arg.batch, blobs, ctxs, got, res);
        if (r < 0)
                return r;
        for (unsigned i = 0; i < arg.batch; i++) {
                int q = res[i] < 0 ? res[i] : aek_is(got[i], w->scratch[(first + i) % SCRATCH_SLOTS].aek);

                if (q < 0 && r >= 0)
                        r = q;
                kek_aek_unref(got[i]);
        }
        return r;
}

static int run_op(Worker *w, OpType t, uint64_t rnd) {
        Client *c = w->client;
        Slot *scratch = &w->scratch[rnd % SCRATCH_SLOTS];

        switch (t) {
        case OP_HIT:
                return slot_unwrap(c->cached, &w->hot[rnd % HOT_SLOTS]);
        case OP_NOCACHE:
                return slot_unwrap(c->uncached, scratch);
        case OP_WRAP:
                return slot_wrap(c->uncached, scratch);
        case OP_REWRAP:
                return slot_rewrap(c->uncached, scratch);
        case OP_VERSION:
                return key_version_ok(c->uncached, arg.keys[rnd % arg.n_keys]);
        case OP_BATCH:
                return batch_unwrap(c->cached, w, (unsigned) (rnd % SCRATCH_SLOTS));
        default:
                return -EINVAL;
        }
}

static OpType pick_op(uint64_t rnd) {
        uint64_t x = rnd % mix_total;

        for (OpType t = 0; t < _OP_MAX; t++) {
                if (x < mix[t])
                        return t;
                x -= mix[t];
        }
        return OP_HIT;
}

/* The first request of a thread, on both of its connections; kekd may still be busy accepting others. */
static int connect_probe(Worker *w) {
        int r = -EIO;

        for (unsigned i = 0; i < CONNECT_TRIES; i++) {
                r = key_version_ok(w->client->uncached, arg.keys[0]);
                if (r >= 0)
                        r = key_version_ok(w->client->cached, arg.keys[0]);
                if (r >= 0 || !kek_error_is_transient(r))
                        return r;
                usleep(100 * 1000);
        }
        return r;
}

static int worker_setup(Worker *w) {
        Slot *all[HOT_SLOTS + SCRATCH_SLOTS];
        unsigned n = 0;
        int r;

        for (unsigned i = 0; i < HOT_SLOTS; i++)
                all[n++] = &w->hot[i];
        for (unsigned i = 0; i < SCRATCH_SLOTS; i++)
                all[n++] = &w->scratch[i];
        for (unsigned i = 0; i < n; i++) {
                Slot *s = all[i];

                s->key = arg.keys[(w->index + i) % arg.n_keys];
                snprintf(s->ctx, sizeof(s->ctx), "load/t%u/%s%u", w->index, i < HOT_SLOTS ? "hot" : "scratch",
                         i % HOT_SLOTS);
                r = kek_aek_generate(&s->aek);
                if (r < 0)
                        return r;
                r = slot_wrap(w->client->uncached, s);
                if (r < 0)
                        return r;
        }
        /* The hot blobs go into the cache now, so that the timed "hit" operations are hits. */
        for (unsigned i = 0; i < HOT_SLOTS; i++) {
                r = slot_unwrap(w->client->cached, &w->hot[i]);
                if (r < 0)
                        return r;
        }
        return 0;
}

static void watch_poll(Worker *w) {
        kek_stats st;

        if (w->watch_seen)
                return;
        kek_stats_get(w->client->cached, &st);
        w->watch_seen = st.watch_connected;
}

static void *worker_main(void *userdata) {
        Worker *w = userdata;
        uint64_t t_watch;
        int r;

        r = connect_probe(w);
        if (r < 0) {
                w->connect_failed = true;
                fprintf(stderr, "kekload: thread %u: cannot reach kekd at %s: %s\n", w->index, arg.socket_path,
                        kek_strerror(r));
        } else {
                r = worker_setup(w);
                if (r < 0) {
                        w->setup_failed = true;
                        fprintf(stderr, "kekload: thread %u: set-up wraps failed: %s\n", w->index, err_text(r));
                }
        }
        pthread_mutex_lock(&gate_lock);
        gate_ready++;
        pthread_cond_broadcast(&gate_cond);
        while (!gate_open)
                pthread_cond_wait(&gate_cond, &gate_lock);
        pthread_mutex_unlock(&gate_lock);
        if (w->connect_failed || w->setup_failed)
                return NULL;

        t_watch = now_ns() + (uint64_t) WATCH_WAIT_MS * 1000000ULL;
        for (uint64_t i = 0; i < arg.ops; i++) {
                uint64_t rnd = splitmix64(&w->rng), t0, dt;
                OpType t = pick_op(rnd);

                if (atomic_load_explicit(&stop_now, memory_order_relaxed))
                        break;
                t0 = now_ns();
                if (t0 > deadline_ns) {
                        w->timed_out = true;
                        atomic_store(&stop_now, true);
                        break;
                }
                r = run_op(w, t, rnd >> 16);
                dt = now_ns() - t0;
                w->ops[t]++;
                w->sum_ns[t] += dt;
                if (dt > w->max_ns[t])
                        w->max_ns[t] = dt;
                if (r < 0) {
                        w->errors[t]++;
                        report_error(w, t, r);
                }
                w->done++;
                if ((i & 1023) == 1023) {
                        atomic_fetch_add_explicit(&ops_done, 1024, memory_order_relaxed);
                        if (!w->watch_seen && t0 < t_watch)
                                watch_poll(w);
                }
        }
        atomic_fetch_add_explicit(&ops_done, w->done & 1023, memory_order_relaxed);
        /* A short run may end before the stream is up: wait for it, bounded. */
        for (unsigned i = 0; !w->watch_seen && i < WATCH_WAIT_MS / 50 && now_ns() < t_watch; i++) {
                watch_poll(w);
                if (!w->watch_seen)
                        usleep(50 * 1000);
        }
        return NULL;
}

/* Samples kekd's RSS once a second until the workers are done; bounded by the deadline. */
static void *sampler_main(void *userdata) {
        uint64_t t0 = *(const uint64_t *) userdata, last_progress = t0;

        pthread_mutex_lock(&done_lock);
        for (size_t i = 0; !workers_done && i < MAX_SAMPLES; i++) {
                struct timespec ts;
                uint64_t now;
                long kb;

                pthread_mutex_unlock(&done_lock);
                now = now_ns();
                kb = rss_kb(arg.kekd_pid);
                if (kb < 0) {
                        kekd_vanished = true;
                        atomic_store(&stop_now, true);
                        fprintf(stderr, "kekload: kekd (pid %d) is gone\n", (int) arg.kekd_pid);
                        pthread_mutex_lock(&done_lock);
                        break;
                }
                if (n_samples < MAX_SAMPLES)
                        samples[n_samples++] = (Sample) { (double) (now - t0) / 1e9, kb };
                if (now - last_progress >= 10ULL * 1000000000ULL) {
                        uint64_t done = atomic_load(&ops_done);

                        fprintf(stderr, "kekload: %5.0f s: %" PRIu64 " ops (%.0f ops/s), kekd RSS %.1f MB\n",
                                (double) (now - t0) / 1e9, done, (double) done * 1e9 / (double) (now - t0), kb / 1024.0);
                        last_progress = now;
                }
                if (now > deadline_ns + 60ULL * 1000000000ULL)
                        atomic_store(&stop_now, true);
                clock_gettime(CLOCK_MONOTONIC, &ts);
                ts.tv_sec += 1;
                pthread_mutex_lock(&done_lock);
                while (!workers_done && pthread_cond_timedwait(&done_cond, &done_lock, &ts) != ETIMEDOUT)
                        ;
        }
        pthread_mutex_unlock(&done_lock);
        return NULL;
}

/* Lines of the kekd log that contain needle, or -errno. */
static long count_in_file(const char *path, const char *needle) {
        char line[2048];
        long n = 0;
        FILE *f;

        f = fopen(path, "re");
        if (!f)
                return -errno;
        while (fgets(line, sizeof(line), f))
                n += strstr(line, needle) != NULL;
        fclose(f);
        return n;
}

static int parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *ret) {
        char *end;
        unsigned long long v;

        errno = 0;
        v = strtoull(s, &end, 10);
        if (errno != 0 || end == s || *end || s[0] == '-' || v < min || v > max)
                return -EINVAL;
        *ret = v;
        return 0;
}

static int parse_unsigned(const char *s, unsigned min, unsigned max, unsigned *ret) {
        uint64_t v;
        int r = parse_u64(s, min, max, &v);

        if (r >= 0)
                *ret = (unsigned) v;
        return r;
}

static int parse_double(const char *s, double min, double max, double *ret) {
        char *end;
        double v;

        errno = 0;
        v = strtod(s, &end);
        if (errno != 0 || end == s || *end || !(v >= min && v <= max))
                return -EINVAL;
        *ret = v;
        return 0;
}

/* "hit=9700,nocache=80,...": names not given keep their default weight. */
static int parse_mix(char *s) {
        uint64_t total = 0;

        for (char *tok = strtok(s, ","); tok; tok = strtok(NULL, ",")) {
                char *eq = strchr(tok, '=');
                OpType t;

                if (!eq)
                        return -EINVAL;
                *eq = 0;
                for (t = 0; t < _OP_MAX; t++)
                        if (strcmp(tok, op_name[t]) == 0)
                                break;
                if (t == _OP_MAX || parse_unsigned(eq + 1, 0, 1000000, &mix[t]) < 0)
                        return -EINVAL;
        }
        for (OpType t = 0; t < _OP_MAX; t++)
                total += mix[t];
        return total > 0 ? 0 : -EINVAL;
}

static int parse_keys(char *s) {
        arg.n_keys = 0;
        for (char *tok = strtok(s, ","); tok; tok = strtok(NULL, ",")) {
                if (arg.n_keys >= MAX_KEYS || !*tok)
                        return -EINVAL;
                arg.keys[arg.n_keys++] = tok;
        }
        return arg.n_keys > 0 ? 0 : -EINVAL;
}

static void usage(FILE *f) {
        fprintf(f,
                "usage: kekload --kekd-pid PID [--socket PATH] [--kekd-log FILE] [--threads T] [--ops N]\n"
                "               [--keys K1,K2,..] [--mix hit=W,nocache=W,wrap=W,rewrap=W,version=W,batch=W]\n"
                "               [--batch B] [--threads-per-client S] [--cache-entries E] [--timeout-ms MS]\n"
                "               [--max-seconds S] [--warmup-seconds S] [--rss-factor F] [--rss-slack-mb MB] [--seed N]\n");
}

static int parse_args(int argc, char *argv[]) {
        static char default_keys[] = "load-0,load-1,load-2,load-3";
        uint64_t v;
        int r = 0;

        arg.socket_path = getenv("KEKD_SOCKET");
        for (int i = 1; i < argc && r >= 0; i++) {
                const char *o = argv[i];
                char *val = i + 1 < argc ? argv[i + 1] : NULL;

                if (strcmp(o, "--help") == 0) {
                        usage(stdout);
                        exit(0);
                }
                if (!val)
                        return -EINVAL;
                i++;
                if (strcmp(o, "--socket") == 0)
                        arg.socket_path = val;
                else if (strcmp(o, "--kekd-pid") == 0) {
                        r = parse_u64(val, 1, INT32_MAX, &v);
                        arg.kekd_pid = (pid_t) v;
                } else if (strcmp(o, "--kekd-log") == 0)
                        arg.kekd_log = val;
                else if (strcmp(o, "--threads") == 0)
                        r = parse_unsigned(val, 1, MAX_THREADS, &arg.threads);
                else if (strcmp(o, "--ops") == 0)
                        r = parse_u64(val, 1, UINT64_C(1) << 40, &arg.ops);
                else if (strcmp(o, "--keys") == 0)
                        r = parse_keys(val);
                else if (strcmp(o, "--mix") == 0)
                        r = parse_mix(val);
                else if (strcmp(o, "--batch") == 0)
                        r = parse_unsigned(val, 1, MAX_BATCH, &arg.batch);
                else if (strcmp(o, "--threads-per-client") == 0)
                        r = parse_unsigned(val, 1, MAX_THREADS, &arg.threads_per_client);
                else if (strcmp(o, "--cache-entries") == 0) {
                        r = parse_u64(val, HOT_SLOTS + SCRATCH_SLOTS, 10000000, &v);
                        arg.cache_entries = (size_t) v;
                } else if (strcmp(o, "--timeout-ms") == 0)
                        r = parse_unsigned(val, 100, 600000, &arg.timeout_ms);
                else if (strcmp(o, "--max-seconds") == 0)
                        r = parse_unsigned(val, 1, 7 * 86400, &arg.max_seconds);
                else if (strcmp(o, "--warmup-seconds") == 0)
                        r = parse_unsigned(val, 0, 3600, &arg.warmup_seconds);
                else if (strcmp(o, "--rss-factor") == 0)
                        r = parse_double(val, 1.0, 100.0, &arg.rss_factor);
                else if (strcmp(o, "--rss-slack-mb") == 0)
                        r = parse_double(val, 0.0, 1e6, &arg.rss_slack_mb);
                else if (strcmp(o, "--seed") == 0)
                        r = parse_u64(val, 0, UINT64_MAX, &arg.seed);
                else
                        r = -EINVAL;
        }
        if (r < 0)
                return r;
        if (arg.n_keys == 0)
                (void) parse_keys(default_keys);
        if (!arg.socket_path || arg.kekd_pid <= 0)
                return -EINVAL;
        mix_total = 0;
        for (OpType t = 0; t < _OP_MAX; t++)
                mix_total += mix[t];
        return 0;
}

static int clients_new(void) {
        n_clients = (arg.threads + arg.threads_per_client - 1) / arg.threads_per_client;
        clients = calloc(n_clients, sizeof(*clients));
        if (!clients)
                return -ENOMEM;
        for (unsigned i = 0; i < n_clients; i++) {
                kek_options cached = { .socket_path = arg.socket_path, .timeout_ms = arg.timeout_ms,
                                       .cache_entries = arg.cache_entries };
                kek_options uncached = { .socket_path = arg.socket_path, .timeout_ms = arg.timeout_ms,
                                         .cache_disabled = true, .watch_disabled = true };
                int r;

                r = kek_client_new(&cached, &clients[i].cached);
                if (r >= 0)
                        r = kek_client_new(&uncached, &clients[i].uncached);
                if (r < 0)
                        return r;
        }
        return 0;
}

static void clients_free(void) {
        for (unsigned i = 0; clients && i < n_clients; i++) {
                kek_client_free(clients[i].cached);
                kek_client_free(clients[i].uncached);
        }
        free(clients);
        clients = NULL;
}

static void workers_free(void) {
        for (unsigned i = 0; workers && i < arg.threads; i++) {
                Slot *all[] = { workers[i].hot, workers[i].scratch };
                unsigned n[] = { HOT_SLOTS, SCRATCH_SLOTS };

                for (unsigned a = 0; a < 2; a++)
                        for (unsigned j = 0; j < n[a]; j++) {
                                kek_aek_unref(all[a][j].aek);
                                free(all[a][j].blob.data);
                        }
        }
        free(workers);
        workers = NULL;
}

/* RSS figures: first is the first sample at or after the warm-up (the first sample if none is). */
static bool rss_check(long *ret_first, long *ret_max, long *ret_last, double *ret_first_t, long *ret_bound) {
        size_t first = 0;
        long max = 0;

        if (n_samples == 0)
                return true;
        while (first < n_samples && samples[first].t < (double) arg.warmup_seconds)
                first++;
        if (first == n_samples)
                first = 0;
        for (size_t i = 0; i < n_samples; i++)
                max = samples[i].rss_kb > max ? samples[i].rss_kb : max;
        *ret_first = samples[first].rss_kb;
        *ret_first_t = samples[first].t;
        *ret_max = max;
        *ret_last = samples[n_samples - 1].rss_kb;
        *ret_bound = (long) ((double) samples[first].rss_kb * arg.rss_factor + arg.rss_slack_mb * 1024.0);
        return *ret_last <= *ret_bound;
}

int main(int argc, char *argv[]) {
        uint64_t t0, t_end, total_ops = 0, total_errors = 0, sums[_OP_MAX] = {}, errs[_OP_MAX] = {},
                                           sum_ns[_OP_MAX] = {}, max_ns[_OP_MAX] = {};
        unsigned connect_failed = 0, setup_failed = 0, watch_missing = 0, timed_out = 0;
        kek_stats st_total = {};
        long rss_first = 0, rss_max = 0, rss_last = 0, rss_bound = 0, rss_start;
        double rss_first_t = 0, wall;
        pthread_condattr_t ca;
        pthread_t sampler;
        unsigned started = 0;
        bool rss_ok, failed = false;
        int r;

        r = parse_args(argc, argv);
        if (r < 0) {
                usage(stderr);
                return 2;
        }
        signal(SIGPIPE, SIG_IGN);
        rss_start = rss_kb(arg.kekd_pid);
        if (rss_start < 0) {
                fprintf(stderr, "kekload: no process %d (--kekd-pid)\n", (int) arg.kekd_pid);
                return 1;
        }
        fprintf(stderr, "kekload: %u threads x %" PRIu64 " ops, %u per client, keys", arg.threads, arg.ops,
                arg.threads_per_client);
        for (unsigned i = 0; i < arg.n_keys; i++)
                fprintf(stderr, "%s%s", i ? "," : " ", arg.keys[i]);
        fprintf(stderr, ", batch %u, mix", arg.batch);
        for (OpType t = 0; t < _OP_MAX; t++)
                fprintf(stderr, "%s%s=%u", t ? "," : " ", op_name[t], mix[t]);
        fprintf(stderr, ", at most %u s\n", arg.max_seconds);

        r = clients_new();
        workers = calloc(arg.threads, sizeof(*workers));
        if (r < 0 || !workers) {
                fprintf(stderr, "kekload: cannot create libkek clients: %s\n", kek_strerror(r < 0 ? r : -ENOMEM));
                clients_free();
                free(workers);
                return 1;
        }
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&done_cond, &ca);
        pthread_cond_init(&gate_cond, &ca);
        pthread_condattr_destroy(&ca);

        /* The wall-clock cap covers set-up too: it is what a stuck kekd would stretch. */
        t0 = now_ns();
        deadline_ns = t0 + (uint64_t) arg.max_seconds * 1000000000ULL;
        for (unsigned i = 0; i < arg.threads; i++) {
                Worker *w = &workers[i];

                w->index = i;
                w->client = &clients[i / arg.threads_per_client];
                w->rng = arg.seed * 0x100000001b3ULL + i;
                if (pthread_create(&w->thread, NULL, worker_main, w) != 0) {
                        fprintf(stderr, "kekload: cannot start thread %u\n", i);
                        w->connect_failed = true;
                        continue;
                }
                w->started = true;
                started++;
        }
        /* Set-up is bounded by the request timeouts; the gate wait by the deadline as well. */
        pthread_mutex_lock(&gate_lock);
        while (gate_ready < started) {
                struct timespec ts = { .tv_sec = (time_t) (deadline_ns / 1000000000ULL),
                                       .tv_nsec = (long) (deadline_ns % 1000000000ULL) };

                if (pthread_cond_timedwait(&gate_cond, &gate_lock, &ts) == ETIMEDOUT) {
                        atomic_store(&stop_now, true);
                        break;
                }
        }
        gate_open = true;
        pthread_cond_broadcast(&gate_cond);
        pthread_mutex_unlock(&gate_lock);
        t0 = now_ns();
        fprintf(stderr, "kekload: set-up done (%u threads, %u clients); running\n", arg.threads, n_clients);
        if (pthread_create(&sampler, NULL, sampler_main, &t0) != 0) {
                fprintf(stderr, "kekload: cannot start the RSS sampler\n");
                atomic_store(&stop_now, true);
                failed = true;
        }
        for (unsigned i = 0; i < arg.threads; i++)
                if (workers[i].started)
                        pthread_join(workers[i].thread, NULL);
        t_end = now_ns();
        pthread_mutex_lock(&done_lock);
        workers_done = true;
        pthread_cond_broadcast(&done_cond);
        pthread_mutex_unlock(&done_lock);
        if (!failed)
                pthread_join(sampler, NULL);
        /* One last sample, after the load. */
        {
                long kb = rss_kb(arg.kekd_pid);

                if (kb >= 0 && n_samples < MAX_SAMPLES)
                        samples[n_samples++] = (Sample) { (double) (t_end - t0) / 1e9, kb };
                else if (kb < 0)
                        kekd_vanished = true;
        }
        wall = (double) (t_end - t0) / 1e9;

        for (unsigned i = 0; i < arg.threads; i++) {
                const Worker *w = &workers[i];

                for (OpType t = 0; t < _OP_MAX; t++) {
                        sums[t] += w->ops[t];
                        errs[t] += w->errors[t];
                        sum_ns[t] += w->sum_ns[t];
                        max_ns[t] = w->max_ns[t] > max_ns[t] ? w->max_ns[t] : max_ns[t];
                }
                connect_failed += w->connect_failed;
                setup_failed += w->setup_failed;
                timed_out += w->timed_out;
                watch_missing += !w->connect_failed && !w->setup_failed && !w->watch_seen;
        }
        for (unsigned i = 0; i < n_clients; i++) {
                kek_stats s;

                kek_stats_get(clients[i].cached, &s);
                st_total.hits += s.hits;
                st_total.misses += s.misses;
                st_total.refreshes += s.refreshes;
                st_total.evictions += s.evictions;
                st_total.drops += s.drops;
                st_total.stale_served += s.stale_served;
                st_total.requests += s.requests;
                st_total.watch_events += s.watch_events;
                kek_stats_get(clients[i].uncached, &s);
                st_total.requests += s.requests;
        }

        printf("| %-8s | %-28s | %11s | %7s | %10s | %10s | %10s |\n", "op", "what", "ops", "errors", "ops/s", "mean us",
               "max ms");
        printf("|----------|------------------------------|-------------|---------|------------|------------|------------|\n");
        for (OpType t = 0; t < _OP_MAX; t++) {
                printf("| %-8s | %-28s | %11" PRIu64 " | %7" PRIu64 " | %10.0f | %10.1f | %10.1f |\n", op_name[t],
                       op_what[t], sums[t], errs[t], wall > 0 ? (double) sums[t] / wall : 0,
                       sums[t] ? (double) sum_ns[t] / (double) sums[t] / 1e3 : 0, (double) max_ns[t] / 1e6);
                total_ops += sums[t];
                total_errors += errs[t];
        }
        printf("| %-8s | %-28s | %11" PRIu64 " | %7" PRIu64 " | %10.0f | %10s | %10s |\n", "total", "", total_ops,
               total_errors, wall > 0 ? (double) total_ops / wall : 0, "", "");
        printf("wall time: %.1f s for %u threads x %" PRIu64 " ops (%" PRIu64 " requests to kekd, %.0f/s)\n", wall,
               arg.threads, arg.ops, st_total.requests, wall > 0 ? (double) st_total.requests / wall : 0);
        printf("libkek cache: %" PRIu64 " hits, %" PRIu64 " misses, %" PRIu64 " refreshes, %" PRIu64 " evictions, %" PRIu64
               " drops, %" PRIu64 " served stale; %" PRIu64 " watch events\n",
               st_total.hits, st_total.misses, st_total.refreshes, st_total.evictions, st_total.drops,
               st_total.stale_served, st_total.watch_events);

        rss_ok = rss_check(&rss_first, &rss_max, &rss_last, &rss_first_t, &rss_bound);
        printf("kekd RSS: %.1f MB before, first %.1f MB (at %.0f s), max %.1f MB, last %.1f MB; bound %.1f MB "
               "(first x %.2f + %.0f MB): %s\n",
               rss_start / 1024.0, rss_first / 1024.0, rss_first_t, rss_max / 1024.0, rss_last / 1024.0,
               rss_bound / 1024.0, arg.rss_factor, arg.rss_slack_mb, rss_ok ? "ok" : "EXCEEDED");
        printf("connections: %u threads on %u libkek clients (%u data + %u Watch connections at least)\n", arg.threads,
               n_clients, 2 * n_clients, n_clients);
        if (arg.kekd_log) {
                long served = count_in_file(arg.kekd_log, "Connection from"),
                     refused = count_in_file(arg.kekd_log, "Refusing connection"),
                     dropped = count_in_file(arg.kekd_log, "Dropping watcher");

                if (served < 0)
                        printf("connections served by kekd: unknown (%s: %s)\n", arg.kekd_log, strerror((int) -served));
                else {
                        printf("connections served by kekd (its log, whole life): %ld; refused %ld; watchers dropped %ld\n",
                               served, refused, dropped);
                        if (refused > 0) {
                                fprintf(stderr, "kekload: FAIL: kekd refused %ld connections\n", refused);
                                failed = true;
                        }
                }
        }

        if (total_errors > 0) {
                fprintf(stderr, "kekload: FAIL: %" PRIu64 " operations failed\n", total_errors);
                failed = true;
        }
        if (connect_failed > 0 || setup_failed > 0) {
                fprintf(stderr, "kekload: FAIL: %u threads could not connect, %u could not set up\n", connect_failed,
                        setup_failed);
                failed = true;
        }
        if (watch_missing > 0) {
                fprintf(stderr, "kekload: FAIL: %u threads never saw their client's Watch stream up\n", watch_missing);
                failed = true;
        }
        if (st_total.stale_served > 0 || st_total.drops > 0) {
                fprintf(stderr, "kekload: FAIL: the cache served stale AEKs or dropped entries: kekd had trouble\n");
                failed = true;
        }
        if (timed_out > 0 || atomic_load(&stop_now)) {
                fprintf(stderr, "kekload: FAIL: stopped before the end (--max-seconds %u exceeded or kekd gone)\n",
                        arg.max_seconds);
                failed = true;
        }
        if (kekd_vanished) {
                fprintf(stderr, "kekload: FAIL: kekd (pid %d) exited during the run\n", (int) arg.kekd_pid);
                failed = true;
        }
        if (!rss_ok) {
                fprintf(stderr, "kekload: FAIL: kekd RSS grew from %ld kB to %ld kB (bound %ld kB)\n", rss_first, rss_last,
                        rss_bound);
                failed = true;
        }
        if (total_ops != arg.ops * (uint64_t) (arg.threads - connect_failed - setup_failed) && !failed) {
                fprintf(stderr, "kekload: FAIL: %" PRIu64 " operations done, expected %" PRIu64 "\n", total_ops,
                        arg.ops * (uint64_t) arg.threads);
                failed = true;
        }
        printf("result: %s\n", failed ? "FAIL" : "PASS");

        workers_free();
        clients_free();
        pthread_cond_destroy(&gate_cond);
        pthread_cond_destroy(&done_cond);
        return failed ? 1 : 0;
}
