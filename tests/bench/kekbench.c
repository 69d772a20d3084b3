/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * kekbench: the throughput, latency and cache figures of kekd, measured side
 * by side in one run on one fresh SoftHSM2 token, printed as one table with
 * the ratios the targets are stated in (docs/performance.md). Built by make,
 * never run by make check: it prints figures, it asserts nothing.
 *
 *   kekbench [--quick] [--cache-only] [--ops N] [--only PHASE,...] [--startup-keys N]
 *            [--confirm AEKS KEYS THREADS SECONDS] [--keep-token]
 *
 * Rows: raw in-process PKCS#11 (the C_EncryptInit/C_Encrypt and
 * C_DecryptInit/C_Decrypt pairs kekd issues, via pkcs11/hsm.c) with 1, 2 and
 * 4 threads; kekd over its socket through libkek with the cache off, 1/4/16/64
 * clients, single ops and pipelined batches of 64; 16 threads sharing one
 * client with plain single ops (s16: libkek coalesces them into batches;
 * s16-alone: the same with coalescing off); the same with kekd
 * restarted at [hsm] sessions = 1, 2, 4; libkek cache hits with 1k/100k/1M
 * cached AEKs; rewrap of 100k blobs in batches; kekd start-up with 1,000
 * keys x 10 versions in the token, exec to READY=1 against the raw floor
 * (tests/bench/startup-raw, bench-startup.h: issue 18's ratio, alternated
 * three times), then 16 clients on that token with the
 * default refresh interval (the slowest request shows whether the periodic
 * reading of the token held them up); per mechanism profile (docs/profiles.md,
 * phase "profiles"), the raw PKCS#11 calls of one wrap+unwrap in-process
 * (hsm_profile_encrypt/decrypt) beside kekd with [hsm] profile pinned, 16
 * clients in batches of 64; in-HSM session copies (phase "copies",
 * docs/session-copies.md): AES-GCM encrypt+decrypt with a token key and with
 * its session copy, alternated twice, on SoftHSM2 and through p11-fault with
 * 1 ms on C_Encrypt/C_Decrypt, then kekd without and with the prototype
 * ($P11_FAULT_SESSION_COPIES); re-validation of cached AEKs (phase "confirm",
 * issue 18.1): HSM operations per second in kekd while 16 threads read
 * 100,000 AEKs of 100 keys at random for 60 s with refresh_sec 6, per key
 * version confirmations against KEK_CONFIRM=off (one unwrap per AEK), Watch
 * off and on (--confirm 1000000 1000 16 300 for the full size). Environment: KEKD, KEKCTL, KEKBENCH_MODULE
 * (another PKCS#11 module, e.g. tests/p11-fault with a delay), KEKBENCH_CONFIRM_MODES
 * (digits 0-3 of the confirm rows to run: bit 0 per-AEK, bit 1 Watch), KEKBENCH_SESSIONS,
 * KEKBENCH_KEKD_CPU / KEKBENCH_CLIENT_CPU (placement), KEKBENCH_KEKD_INSTANCES=2,
 * KEKBENCH_FAULT_MODULE (p11-fault.so for "copies").
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <sched.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <p11-kit/p11-kit.h>

#include "client/libkek.h"
#include "daemon/keystore.h"
#include "daemon/pin.h"
#include "proto/kek.pb-c.h"
#include "pkcs11/hsm.h"
#include "tests/lib/token.h"
#include "bench-startup.h"

extern char **environ;

static TestToken tok;
/*
 * The PKCS#11 module of the raw rows and of kekd: SoftHSM2, or $KEKBENCH_MODULE,
 * e.g. tests/p11-fault's pass-through with P11_FAULT='C_Encrypt:delay_ms=1;...'
 * to stand in for a network HSM whose calls take a millisecond.
 */
static const char *module;
static unsigned sessions = 1;        /* [hsm] sessions of the benchmark's kekd (KEKBENCH_SESSIONS) */
static char sock_path[4200], conf_path[4200];
static pid_t kekd_pid = -1;
/* KEKBENCH_KEKD_INSTANCES=2: a second kekd on the same token; clients alternate (an HSM pool's best case) */
static char sock2_path[4200], conf2_path[4200];
static pid_t kekd2_pid = -1;
static const char *kekd_bin;
static unsigned n_ops = 20000;
static bool quick, cache_only;
static const char *only;        /* comma-separated phases, NULL: all */
static unsigned startup_keys;
static unsigned refresh_interval = 60; /* [keys] refresh_interval: out of the way but in the "refresh" row */
static bool keep_token;

static bool phase(const char *name) {
        const char *p;
        size_t n = strlen(name);

        if (!only)
                return true;
        for (p = only; (p = strstr(p, name)); p += n)
                if ((p == only || p[-1] == ',') && (p[n] == 0 || p[n] == ','))
                        return true;
        return false;
}

static uint64_t now_ns(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000000ULL + (uint64_t) ts.tv_nsec;
}

static long rss_kb(pid_t pid) {
        char path[64], line[256];
        long kb = -1;
        FILE *f;

        snprintf(path, sizeof(path), "/proc/%d/status", (int) pid);
        f = fopen(path, "re");
        while (f && fgets(line, sizeof(line), f))
                if (sscanf(line, "VmRSS: %ld kB", &kb) == 1)
                        break;
        if (f)
                fclose(f);
        return kb;
}

typedef struct Row {
        char name[64];
        double ops_per_s;
        double p50_us, p99_us, p999_us, max_us;
        long rss_kb;
        char ratio[64];
} Row;

static Row rows[96];

/* CPU time (us) of a process, all its threads ([hsm] sessions > 1 adds workers), and of this process. */
static double proc_cpu_us(pid_t pid) {
        char path[64];
        unsigned long long total = 0;
        struct dirent *de;
        DIR *dir;

        if (pid <= 0)
                return 0;
        snprintf(path, sizeof(path), "/proc/%d/task", (int) pid);
        dir = opendir(path);
        if (!dir)
                return 0;
        while ((de = readdir(dir))) {
                char p[320];
                unsigned long long ns;
                FILE *f;

                if (de->d_name[0] == '.')
                        continue;
                /* precise run time in ns, per thread */
                snprintf(p, sizeof(p), "/proc/%d/task/%s/schedstat", (int) pid, de->d_name);
                f = fopen(p, "re");
                if (!f)
                        continue;
                if (fscanf(f, "%llu", &ns) == 1)
                        total += ns;
                fclose(f);
        }
        closedir(dir);
        return (double) total / 1e3;
}

static double self_cpu_us(void) {
        struct timespec ts;

        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
        return (double) ts.tv_sec * 1e6 + (double) ts.tv_nsec / 1e3;
}

/* System-wide busy CPU (us) from /proc/stat: busy minus ours is what others used. */
static double sys_busy_us(void) {
        unsigned long long u, n, s, i, w, irq, sirq;
        FILE *f = fopen("/proc/stat", "re");
        double r = 0;

        if (f && fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu", &u, &n, &s, &i, &w, &irq, &sirq) == 7)
                r = (double) (u + n + s + irq + sirq) * 1e6 / (double) sysconf(_SC_CLK_TCK);
        if (f)
                fclose(f);
        return r;
}

static double cpu0_kekd, cpu0_self, cpu0_sys;

static void cpu_mark(void) {
        cpu0_kekd = proc_cpu_us(kekd_pid) + proc_cpu_us(kekd2_pid);
        cpu0_self = self_cpu_us();
        cpu0_sys = sys_busy_us();
}

/* Appends "CPU us/op: kekd K, client C, others O" to the stderr progress. */
static void cpu_report(const char *name, double ops) {
        double k = proc_cpu_us(kekd_pid) + proc_cpu_us(kekd2_pid) - cpu0_kekd, c = self_cpu_us() - cpu0_self, sys = sys_busy_us() - cpu0_sys;

        fprintf(stderr, "kekbench: cpu %s: kekd %.1f us/op, kekbench %.1f us/op, others %.0f%% of machine\n", name,
                k / ops, c / ops, sys > 0 ? 100.0 * MAX(sys - k - c, 0.0) / sys : 0.0);
}
static size_t n_rows;

static int cmp_u64(const void *a, const void *b) {
        uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;

        return x < y ? -1 : x > y;
}

/* Adds a row from per-op latencies (ns) over a wall time. */
static void print_row(const Row *r, const char *note) {
        printf("| %-40s | %10.0f | %9.2f | %9.2f | %9.2f | %9.1f | %-22s |\n", r->name, r->ops_per_s, r->p50_us, r->p99_us,
               r->p999_us, r->rss_kb / 1024.0, note);
        fflush(stdout);
}

static Row *add_row(const char *name, uint64_t *lat, size_t n, uint64_t wall_ns, long rss) {
        Row *r = &rows[n_rows++];

        qsort(lat, n, sizeof(*lat), cmp_u64);
        snprintf(r->name, sizeof(r->name), "%s", name);
        r->ops_per_s = wall_ns ? (double) n * 1e9 / (double) wall_ns : 0;
        r->p50_us = n ? lat[n / 2] / 1e3 : 0;
        r->p99_us = n ? lat[(size_t) ((double) n * 0.99)] / 1e3 : 0;
        r->p999_us = n ? lat[(size_t) ((double) n * 0.999)] / 1e3 : 0;
        r->max_us = n ? lat[n - 1] / 1e3 : 0;
        r->rss_kb = rss;
        return r;
}

/* --- raw PKCS#11 --------------------------------------------------------------- */

typedef struct RawArg {
        unsigned ops;
        uint64_t *lat;
        int error;
        HsmProfile profile;            /* the calls of this profile (gcm: C_EncryptInit/C_Encrypt, C_DecryptInit/C_Decrypt) */
        const char *key;               /* its key, version 1 ("bench" when NULL) */
} RawArg;

/* The key of the kekd rows ("bench"; the profile rows use one key per profile). */
static const char *bench_key = "bench";
/* [hsm] profile of the benchmark's kekd; NULL: not set (auto). */
static const char *conf_profile;

static void *raw_worker(void *userdata) {
        RawArg *a = userdata;
        Secret *pin = NULL;
        Hsm *h = NULL;
        HsmObject key, mac = 0;
        uint8_t iv[HSM_PROFILE_IV_MAX] = { 1 }, aad[64] = { 2 }, pt[32] = { 3 }, ct[32 + 16 + HSM_HMAC_TAG_SIZE];
        size_t ct_len = hsm_profile_ct_size(a->profile, sizeof(pt));
        const char *name = a->key ?: "bench";

        if (pin_read(tok.pin_file, &pin, NULL) < 0 || hsm_open(module, tok.uri, pin, &h, NULL) < 0 ||
            hsm_find_key(h, name, 1, &key) < 0 ||
            (hsm_profile_has_mac_key(a->profile) && hsm_find_mac_key(h, name, 1, &mac) < 0)) {
                a->error = 1;
                goto finish;
        }
        for (unsigned i = 0; i < a->ops; i++) {
                Secret *out = NULL;
                uint64_t t0 = now_ns();

                iv[0] = (uint8_t) i;
                if (hsm_profile_encrypt(h, a->profile, key, mac, iv, aad, sizeof(aad), pt, sizeof(pt), ct) < 0 ||
                    hsm_profile_decrypt(h, a->profile, key, mac, iv, aad, sizeof(aad), ct, ct_len, &out) < 0) {
                        a->error = 1;
                        break;
                }
                secret_free(out);
                a->lat[i] = now_ns() - t0;
        }
finish:
        hsm_free(h);
        secret_free(pin);
        return NULL;
}

static double bench_raw_profile(unsigned threads, HsmProfile profile, const char *key) {
        pthread_t th[8];
        RawArg a[8];
        uint64_t *lat = calloc((size_t) n_ops * threads, sizeof(uint64_t)), t0, wall;
        char name[64];
        Row *r;

        cpu_mark();
        t0 = now_ns();
        for (unsigned i = 0; i < threads; i++) {
                a[i] = (RawArg) { .ops = n_ops, .lat = lat + (size_t) i * n_ops, .profile = profile, .key = key };
                pthread_create(&th[i], NULL, raw_worker, &a[i]);
        }
        for (unsigned i = 0; i < threads; i++)
                pthread_join(th[i], NULL);
        wall = now_ns() - t0;
        if (key)
                snprintf(name, sizeof(name), "raw PKCS#11 %s wrap+unwrap, %u thr", hsm_profile_name(profile), threads);
        else
                snprintf(name, sizeof(name), "raw PKCS#11 wrap+unwrap, %u thr", threads);
        cpu_report(name, (double) n_ops * threads);
        r = add_row(name, lat, (size_t) n_ops * threads, wall, rss_kb(getpid()));
        for (unsigned i = 0; i < threads; i++)
                if (a[i].error)
                        snprintf(r->ratio, sizeof(r->ratio), "ERRORS");
        free(lat);
        return r->ops_per_s;
}

static double bench_raw(unsigned threads) {
        return bench_raw_profile(threads, HSM_PROFILE_GCM, NULL);
}

/* --- kekd ------------------------------------------------------------------------ */

static bool kekd_up(void) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        bool up;

        snprintf(sa.sun_path, sizeof(sa.sun_path), "%.107s", sock_path);
        up = fd >= 0 && connect(fd, (struct sockaddr *) &sa, sizeof(sa)) == 0;
        if (fd >= 0)
                close(fd);
        return up;
}

/* kekd's configuration; sessions: [hsm] sessions (the HSM worker pool). */
static int write_conf(const char *path, const char *sock, unsigned n_sessions) {
        FILE *f = fopen(path, "we");

        if (!f)
                return -errno;
        fprintf(f, "[hsm]\nmodule = %s\ntoken = %s\npin_file = %s\nsessions = %u\n%s%s%s[server]\nsocket = %s\n"
                   "max_frame = 1048576\n[keys]\nallow_unrecoverable = yes\nrefresh_interval = %u\n"
                   "[log]\nlevel = warning\n",
                module, tok.uri, tok.pin_file, n_sessions, conf_profile ? "profile = " : "", conf_profile ?: "",
                conf_profile ? "\n" : "", sock, refresh_interval);
        return fclose(f) == 0 ? 0 : -errno;
}

/* Starts kekd; returns the microseconds until its socket answers. */
static double kekd_start(void) {
        char *argv[] = { (char *) kekd_bin, "-c", conf_path, NULL };
        posix_spawn_file_actions_t fa;
        uint64_t t0 = now_ns();

        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_addopen(&fa, STDERR_FILENO, "/dev/null", O_WRONLY, 0);
        if (posix_spawn(&kekd_pid, kekd_bin, &fa, NULL, argv, environ) != 0)
                kekd_pid = -1;
        posix_spawn_file_actions_destroy(&fa);
        if (kekd_pid > 0 && getenv("KEKBENCH_KEKD_CPU")) {
                /* placement experiments: pin kekd to one CPU */
                cpu_set_t set;

                CPU_ZERO(&set);
                CPU_SET(atoi(getenv("KEKBENCH_KEKD_CPU")), &set);
                (void) sched_setaffinity(kekd_pid, sizeof(set), &set);
        }
        for (int i = 0; kekd_pid > 0 && i < 60000; i++) {
                if (kekd_up())
                        return (double) (now_ns() - t0) / 1e3;
                usleep(200);
        }
        return -1;
}

static void kekd_stop(void) {
        if (kekd_pid > 0) {
                kill(kekd_pid, SIGTERM);
                waitpid(kekd_pid, NULL, 0);
        }
        kekd_pid = -1;
}

static bool no_coalesce;        /* the shared-client row without coalescing (phase s16-alone) */

static kek_client *client_at(bool cache, const char *path) {
        kek_options o = { .socket_path = path, .cache_disabled = !cache, .watch_disabled = true,
                          .timeout_ms = 60000, .cache_entries = 2000000, .coalesce_disabled = no_coalesce };
        kek_client *c = NULL;

        if (kek_client_new(&o, &c) < 0) {
                fprintf(stderr, "kekbench: cannot create a libkek client\n");
                exit(1);
        }
        return c;
}

static kek_client *client(bool cache) {
        return client_at(cache, sock_path);
}

typedef struct DArg {
        kek_client *c;
        unsigned ops, batch;
        uint64_t *lat;
        int error;
} DArg;

static void *daemon_worker(void *userdata) {
        DArg *a = userdata;
        kek_aek *aek = NULL;
        kek_aek *aeks[64];
        kek_blob ctxs[64], blobs[64];
        int res[64];

        kek_aek_generate(&aek);
        for (unsigned i = 0; i < 64; i++) {
                aeks[i] = aek;
                ctxs[i] = (kek_blob) { (uint8_t *) "bench", 5 };
        }
        for (unsigned i = 0; i < a->ops; i += a->batch) {
                uint64_t t0 = now_ns();

                if (a->batch == 1) {
                        uint8_t *blob = NULL;
                        size_t len = 0;
                        kek_aek *back = NULL;

                        if (kek_wrap(a->c, bench_key, 0, kek_aek_data(aek), KEK_AEK_SIZE, (const uint8_t *) "bench", 5, &blob,
                                     &len, NULL) < 0 ||
                            kek_unwrap(a->c, blob, len, (const uint8_t *) "bench", 5, &back) < 0)
                                a->error = 1;
                        kek_aek_unref(back);
                        free(blob);
                        a->lat[i] = now_ns() - t0;
                } else {
                        /* a batch wrap, then a batch unwrap: one encryption and one decryption per op, like raw */
                        if (kek_wrap_batch(a->c, bench_key, a->batch, aeks, ctxs, blobs, res) < 0)
                                a->error = 1;
                        else {
                                kek_aek *got[64];

                                for (unsigned j = 0; j < a->batch; j++)
                                        a->error |= res[j] < 0;
                                if (kek_unwrap_batch(a->c, a->batch, blobs, ctxs, got, res) < 0)
                                        a->error = 1;
                                else
                                        for (unsigned j = 0; j < a->batch; j++) {
                                                a->error |= res[j] < 0;
                                                kek_aek_unref(res[j] < 0 ? NULL : got[j]);
                                        }
                                for (unsigned j = 0; j < a->batch; j++)
                                        free(blobs[j].data);
                        }
                        for (unsigned j = 0; j < a->batch && i + j < a->ops; j++)
                                a->lat[i + j] = (now_ns() - t0) / a->batch;
                }
        }
        kek_aek_unref(aek);
        return NULL;
}

/*
 * clients threads, each with its own libkek client, or (shared) all on one
 * client, as a storage process's threads are: libkek then coalesces what they
 * send at the same time into batch frames (issue 18.2).
 */
static double bench_daemon_on(unsigned clients, unsigned batch, bool shared) {
        pthread_t th[64];
        DArg a[64];
        unsigned per = MAX(n_ops / clients, batch);
        uint64_t *lat = calloc((size_t) per * clients, sizeof(uint64_t)), t0, wall;
        kek_client *one = shared ? client(false) : NULL;
        char name[64];
        int errors = 0;
        Row *r;

        for (unsigned i = 0; i < clients; i++)
                a[i] = (DArg) { .c = one ?: client_at(false, kekd2_pid > 0 && i % 2 ? sock2_path : sock_path), .ops = per, .batch = batch, .lat = lat + (size_t) i * per };
        cpu_mark();
        t0 = now_ns();
        for (unsigned i = 0; i < clients; i++)
                pthread_create(&th[i], NULL, daemon_worker, &a[i]);
        for (unsigned i = 0; i < clients; i++) {
                pthread_join(th[i], NULL);
                errors += a[i].error;
                if (!one)
                        kek_client_free(a[i].c);
        }
        wall = now_ns() - t0;
        kek_client_free(one);
        if (shared)
                snprintf(name, sizeof(name), "kekd wrap+unwrap, %u thr on 1 client%s", clients, no_coalesce ? ", alone" : "");
        else
                snprintf(name, sizeof(name), "kekd wrap+unwrap, %u cl%s%s", clients, batch > 1 ? ", batch " : "",
                         batch > 1 ? "64" : "");
        cpu_report(name, (double) per * clients);
        r = add_row(name, lat, (size_t) per * clients, wall, rss_kb(kekd_pid));
        if (errors)
                snprintf(r->ratio, sizeof(r->ratio), "%d ERRORS", errors);
        free(lat);
        return r->ops_per_s;
}

static double bench_daemon(unsigned clients, unsigned batch) {
        return bench_daemon_on(clients, batch, false);
}

/*
 * Fills a cache with n AEKs (distinct contexts), then times hits. Filling
 * uses batch unwraps, and hits are sampled only among entries fetched within
 * the last 50 s: an entry older than the refresh interval (60 s at most) is
 * due for re-validation, which is a round trip to kekd, not a hit. The
 * memory figure is the growth while the cache fills, after the blobs exist.
 */
static void bench_cache(size_t n) {
        kek_client *c = client(true);
        kek_blob *blobs = calloc(n, sizeof(*blobs)), ctxs[64], ctx64[64];
        char (*ctxbuf)[24] = calloc(n, sizeof(*ctxbuf));
        kek_aek *aek = NULL, *aeks[64], *got64[64];
        uint64_t *fetched = calloc(n / 64 + 1, sizeof(uint64_t));
        size_t samples = MIN(n, (size_t) 200000), done = 0, first_fresh = 0;
        uint64_t *lat = calloc(samples, sizeof(uint64_t)), t0, wall;
        long rss0, rss1;
        int res[64];
        char name[64];
        Row *r;

        kek_aek_generate(&aek);
        for (size_t i = 0; i < 64; i++)
                aeks[i] = aek;
        for (size_t i = 0; i < n; i += 64) {
                size_t m = MIN((size_t) 64, n - i);

                for (size_t j = 0; j < m; j++) {
                        snprintf(ctxbuf[i + j], sizeof(ctxbuf[i + j]), "acct-%zu", i + j);
                        ctxs[j] = (kek_blob) { (uint8_t *) ctxbuf[i + j], strlen(ctxbuf[i + j]) };
                }
                if (kek_wrap_batch(c, "bench", m, aeks, ctxs, blobs + i, res) < 0) {
                        fprintf(stderr, "kekbench: batch wrap failed\n");
                        exit(1);
                }
        }
        rss0 = rss_kb(getpid());
        for (size_t i = 0; i < n; i += 64) {
                size_t m = MIN((size_t) 64, n - i);

                for (size_t j = 0; j < m; j++)
                        ctx64[j] = (kek_blob) { (uint8_t *) ctxbuf[i + j], strlen(ctxbuf[i + j]) };
                if (kek_unwrap_batch(c, m, blobs + i, ctx64, got64, res) == 0)
                        for (size_t j = 0; j < m; j++) {
                                done += res[j] == 0;
                                kek_aek_unref(got64[j]);
                        }
                fetched[i / 64] = now_ns();
        }
        rss1 = rss_kb(getpid());
        while (first_fresh < n && now_ns() - fetched[first_fresh / 64] > 50ULL * 1000000000ULL)
                first_fresh += 64;
        if (first_fresh >= n)
                first_fresh = n - 1;
        t0 = now_ns();
        for (size_t s = 0; s < samples; s++) {
                size_t i = first_fresh + (s * 2654435761u) % (n - first_fresh);
                kek_aek *got = NULL;
                uint64_t t = now_ns();

                (void) kek_unwrap(c, blobs[i].data, blobs[i].len, (const uint8_t *) ctxbuf[i], strlen(ctxbuf[i]), &got);
                kek_aek_unref(got);
                lat[s] = now_ns() - t;
        }
        wall = now_ns() - t0;
        snprintf(name, sizeof(name), "libkek cache hit, %zu AEKs", n);
        r = add_row(name, lat, samples, wall, rss1);
        snprintf(r->ratio, sizeof(r->ratio), "+%ld MB for %zu cached", (rss1 - rss0) / 1024, done);
        for (size_t i = 0; i < n; i++)
                free(blobs[i].data);
        free(blobs);
        free(ctxbuf);
        free(fetched);
        free(lat);
        kek_aek_unref(aek);
        kek_client_free(c);
}

static double bench_rewrap(size_t n) {
        kek_client *c = client(false);
        kek_blob *blobs = calloc(n, sizeof(*blobs)), *out = calloc(n, sizeof(*out)), ctxs[64];
        kek_aek *aek = NULL, *aeks[64];
        uint64_t *lat = calloc(n / 64 + 1, sizeof(uint64_t)), t0, wall;
        size_t k = 0;
        int res[64], errors = 0;
        Row *r;

        kek_aek_generate(&aek);
        for (size_t i = 0; i < 64; i++) {
                aeks[i] = aek;
                ctxs[i] = (kek_blob) { (uint8_t *) "rewrap", 6 };
        }
        for (size_t i = 0; i < n; i += 64)
                (void) kek_wrap_batch(c, "bench", MIN((size_t) 64, n - i), aeks, ctxs, blobs + i, res);
        t0 = now_ns();
        for (size_t i = 0; i < n; i += 64, k++) {
                uint64_t t = now_ns();
                size_t m = MIN((size_t) 64, n - i);

                if (kek_rewrap_batch(c, m, blobs + i, ctxs, out + i, res) < 0)
                        errors++;
                for (size_t j = 0; j < m; j++)
                        errors += res[j] < 0;
                lat[k] = now_ns() - t;
        }
        wall = now_ns() - t0;
        r = add_row("kekd rewrap, batches of 64", lat, k, wall, rss_kb(kekd_pid));
        r->ops_per_s = (double) n * 1e9 / (double) wall;
        r->p50_us /= 64;
        r->p99_us /= 64;
        r->p999_us /= 64;
        if (errors)
                snprintf(r->ratio, sizeof(r->ratio), "%d ERRORS", errors);
        for (size_t i = 0; i < n; i++) {
                free(blobs[i].data);
                free(out[i].data);
        }
        free(blobs);
        free(out);
        free(lat);
        kek_aek_unref(aek);
        kek_client_free(c);
        return r->ops_per_s;
}

/*
 * Issue 18's start-up target (bench-startup.h): kekd's time from exec to
 * READY=1 against the raw floor, tests/bench/startup-raw, alternated
 * STARTUP_ROUNDS times on the same token; the medians make the ratios.
 */
#define STARTUP_ROUNDS 3

/*
 * 1,000 keys x 10 versions written straight into the token (the version
 * objects, then one record naming them, as kekd itself leaves them), then
 * kekd's start-up timed against the raw floor. Straight, because going
 * through kekd's lifecycle operations costs SoftHSM2 a scan of every object
 * per lookup: the set-up would take longer than everything else here together.
 */
static void bench_startup(unsigned keys, unsigned versions) {
        Kek__VersionInfo vi[16], *vp[16];
        Secret *pin = NULL;
        Hsm *h = NULL;
        char name[64];
        double us[STARTUP_ROUNDS], raw_us[STARTUP_ROUNDS], cpu[STARTUP_ROUNDS], raw_cpu[STARTUP_ROUNDS];
        double m, m_cpu, m_raw, m_raw_cpu;
        size_t n_records = 0, n_keys = 0;
        Row *r;

        kekd_stop();
        if (versions > 16 || pin_read(tok.pin_file, &pin, NULL) < 0 || hsm_open(module, tok.uri, pin, &h, NULL) < 0) {
                fprintf(stderr, "kekbench: cannot open the token for the start-up test\n");
                return;
        }
        for (unsigned i = 0; i < keys; i++) {
                Kek__KeyRecord rec = KEK__KEY_RECORD__INIT;
                uint8_t buf[2048];
                HsmObject o;

                snprintf(name, sizeof(name), "startup-%04u", i);
                for (unsigned v = 0; v < versions; v++) {
                        if (hsm_generate_aes_key(h, name, v + 1, &o) < 0)
                                goto finish;
                        kek__version_info__init(&vi[v]);
                        vi[v].id = v + 1;
                        vi[v].created_usec = 1;
                        vi[v].enabled = true;
                        vp[v] = &vi[v];
                }
                rec.format = 1;
                rec.name = name;
                rec.created_usec = 1;
                rec.current_version = versions;
                rec.state = KEK__KEY_STATE__ENABLED;
                rec.state_before_delete = KEK__KEY_STATE__ENABLED;
                rec.n_versions = versions;
                rec.versions = vp;
                rec.generation = 1;
                if (kek__key_record__get_packed_size(&rec) > sizeof(buf) ||
                    hsm_create_data(h, "kekd", name, buf, kek__key_record__pack(&rec, buf), &o) < 0)
                        goto finish;
        }
finish:
        hsm_free(h);
        secret_free(pin);
        /* raw, kekd, raw, kekd, ...: the same token and page cache; kekd stays up after the last round. */
        for (unsigned i = 0; i < STARTUP_ROUNDS; i++) {
                kekd_stop(); /* the raw floor runs alone too */
                raw_us[i] = startup_raw_run(getenv("KEKBENCH_STARTUP_RAW") ?: "tests/bench/startup-raw", module,
                                            tok.uri, tok.pin_file, &n_records, &n_keys, &raw_cpu[i]);
                us[i] = startup_kekd_ready(kekd_bin, conf_path, tok.dir, proc_cpu_us, &kekd_pid, &cpu[i]);
                fprintf(stderr, "kekbench: start-up round %u: raw list %.1f ms, CPU %.1f ms (%zu records, %zu key "
                                "objects); kekd to READY %.1f ms, CPU %.1f ms\n", i + 1, raw_us[i] / 1000,
                        raw_cpu[i] / 1000, n_records, n_keys, us[i] / 1000, cpu[i] / 1000);
                if (raw_us[i] < 0 || us[i] < 0) {
                        fprintf(stderr, "kekbench: the start-up rounds failed (startup-raw or kekd)\n");
                        if (kekd_pid < 0)
                                (void) kekd_start();
                        return;
                }
        }
        /* Medians. The wall-clock ratio is the target; the CPU ratio is what a shared machine disturbs least. */
        m_raw = startup_median(raw_us, STARTUP_ROUNDS);
        m_raw_cpu = startup_median(raw_cpu, STARTUP_ROUNDS);
        m = startup_median(us, STARTUP_ROUNDS);
        m_cpu = startup_median(cpu, STARTUP_ROUNDS);
        snprintf(name, sizeof(name), "raw list, %u keys x %u versions", keys, versions);
        r = add_row(name, NULL, 0, 0, 0);
        snprintf(r->ratio, sizeof(r->ratio), "%.0f ms, CPU %.0f ms", m_raw / 1000, m_raw_cpu / 1000);
        snprintf(name, sizeof(name), "kekd start, %u keys x %u versions", keys, versions);
        r = add_row(name, NULL, 0, 0, rss_kb(kekd_pid));
        snprintf(r->ratio, sizeof(r->ratio), "READY %.0f ms: %.2f x raw, CPU %.2f x", m / 1000, m / m_raw,
                 m_cpu / m_raw_cpu);
}

/*
 * Serving while kekd refreshes a large token: 16 single-op clients on the
 * start-up phase's token (1,000 keys x 10 versions), kekd restarted with
 * the default refresh_interval of 5 s, for about three intervals. Reading
 * that token takes kekd 0.7-1 s; the slowest request says whether clients
 * waited for it.
 */
static void bench_refresh(unsigned keys) {
        unsigned saved = n_ops;
        char name[64];
        Row *r;

        refresh_interval = 5;
        kekd_stop();
        if (write_conf(conf_path, sock_path, sessions) < 0 || kekd_start() < 0) {
                fprintf(stderr, "kekbench: cannot restart kekd for the refresh row\n");
                return;
        }
        n_ops = 200000; /* about three refresh intervals, quick or not */
        (void) bench_daemon(16, 1);
        n_ops = saved;
        r = &rows[n_rows - 1];
        snprintf(name, sizeof(name), "kekd 16 cl, %u keys, refresh 5 s", keys);
        snprintf(r->name, sizeof(r->name), "%s", name);
        if (!r->ratio[0])
                snprintf(r->ratio, sizeof(r->ratio), "slowest %.0f ms", r->max_us / 1000);
}

/* kekctl create NAME on the benchmark's kekd. */
static int create_key(const char *name) {
        char *cargv[] = { (char *) (getenv("KEKCTL") ?: "kekctl/kekctl"), "-s", sock_path, "create", (char *) name, NULL };
        posix_spawn_file_actions_t fa;
        int r, status = 0;
        pid_t p;

        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
        r = posix_spawn(&p, cargv[0], &fa, NULL, cargv, environ);
        posix_spawn_file_actions_destroy(&fa);
        if (r != 0 || waitpid(p, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
                return -1;
        return 0;
}

/* kekd's kekd_hsm_crypto_ops_total (kekctl status --prometheus, up to 5 tries on a busy machine); -1 if unreadable. */
static double kekd_hsm_ops(void) {
        char cmd[9000], line[512];
        double n = -1;

        snprintf(cmd, sizeof(cmd), "'%s' -s '%s' status --prometheus 2>/dev/null", getenv("KEKCTL") ?: "kekctl/kekctl",
                 sock_path);
        for (int attempt = 0; attempt < 5 && n < 0; attempt++) {
                FILE *f = popen(cmd, "r");

                if (!f)
                        return -1;
                while (fgets(line, sizeof(line), f))
                        (void) sscanf(line, "kekd_hsm_crypto_ops_total %lf", &n);
                pclose(f);
                if (n < 0)
                        usleep(200 * 1000);
        }
        return n;
}

/*
 * Re-validation at scale (issue 18.1, phase "confirm"): n AEKs cached over k keys, t threads
 * reading them at random for d seconds with refresh_sec 6; the row's ops/s is the HSM operations
 * per second kekd ran meanwhile (its metrics), the note the reads served. Each setting runs with
 * this libkek's per-key-version confirmations and with KEK_CONFIRM=off (one unwrap per AEK, the
 * previous design), Watch off and on, in the same run on the same kekd.
 */
static size_t confirm_aeks = 100000, confirm_keys = 100, confirm_threads = 16, confirm_secs = 60;

typedef struct CArg {
        kek_client *c;
        const kek_blob *blobs;
        char (*ctx)[24];
        size_t n;
        uint64_t until_ns, reads, failures;
        unsigned seed;
} CArg;

static void *confirm_worker(void *userdata) {
        CArg *a = userdata;

        while (now_ns() < a->until_ns)
                for (int k = 0; k < 64; k++) {
                        size_t i = (((size_t) rand_r(&a->seed) << 16) ^ (size_t) rand_r(&a->seed)) % a->n;
                        kek_aek *got = NULL;

                        if (kek_unwrap(a->c, a->blobs[i].data, a->blobs[i].len, (const uint8_t *) a->ctx[i],
                                       strlen(a->ctx[i]), &got) < 0)
                                a->failures++;
                        else
                                a->reads++;
                        kek_aek_unref(got);
                }
        return NULL;
}

static void bench_confirm(void) {
        size_t n = confirm_aeks, k = confirm_keys;
        kek_blob *blobs = calloc(n, sizeof(*blobs)), ctxs[64];
        char (*ctx)[24] = calloc(n, sizeof(*ctx));
        kek_aek *aek = NULL, *aeks[64], *got[64];
        char name[64];
        int res[64];

        if (!blobs || !ctx)
                exit(1);
        for (size_t j = 0; j < k; j++) {
                snprintf(name, sizeof(name), "confirm-%zu", j);
                if (create_key(name) < 0) {
                        fprintf(stderr, "kekbench: cannot create key %s\n", name);
                        exit(1);
                }
        }
        kek_aek_generate(&aek);
        for (size_t i = 0; i < 64; i++)
                aeks[i] = aek;
        {
                kek_client *c = client(false);

                /* AEK i under key i mod k, wrapped 64 at a time (one key per batch). */
                for (size_t j = 0; j < k; j++) {
                        size_t idx[64], m = 0;

                        snprintf(name, sizeof(name), "confirm-%zu", j);
                        for (size_t i = j; i < n; i += k) {
                                snprintf(ctx[i], sizeof(ctx[i]), "acct-%zu", i);
                                idx[m] = i;
                                ctxs[m++] = (kek_blob) { (uint8_t *) ctx[i], strlen(ctx[i]) };
                                if (m == 64 || i + k >= n) {
                                        kek_blob out[64];
                                        int wr = -EAGAIN;

                                        /* A busy machine may time a batch out: three tries. */
                                        for (int attempt = 0; attempt < 3 && wr < 0; attempt++)
                                                wr = kek_wrap_batch(c, name, m, aeks, ctxs, out, res);
                                        if (wr < 0) {
                                                fprintf(stderr, "kekbench: batch wrap failed: %s\n", kek_strerror(wr));
                                                exit(1);
                                        }
                                        for (size_t q = 0; q < m; q++)
                                                blobs[idx[q]] = out[q];
                                        m = 0;
                                }
                        }
                }
                kek_client_free(c);
        }
        /* KEKBENCH_CONFIRM_MODES: which rows, as digits (bit 0 per-AEK, bit 1 Watch); all four by default. */
        const char *modes = getenv("KEKBENCH_CONFIRM_MODES");

        for (int mode = 0; mode < 4; mode++) {
                bool off = mode & 1, watch = mode & 2;

                if (modes && !strchr(modes, '0' + mode))
                        continue;
                kek_options o = { .socket_path = sock_path, .refresh_sec = 6, .watch_disabled = !watch,
                                  .timeout_ms = 60000, .cache_entries = n + 1024 };
                pthread_t th[64];
                CArg args[64];
                size_t t = MIN(confirm_threads, (size_t) 64), cached = 0;
                uint64_t reads = 0, failures = 0, t0;
                double ops0, ops1, secs;
                kek_stats s0, s1;
                kek_client *c = NULL;
                Row *r;

                if (off)
                        setenv("KEK_CONFIRM", "off", 1);
                if (kek_client_new(&o, &c) < 0)
                        exit(1);
                unsetenv("KEK_CONFIRM");
                for (size_t i = 0; i < n; i += 64) {
                        size_t m = MIN((size_t) 64, n - i);

                        for (size_t j = 0; j < m; j++)
                                ctxs[j] = (kek_blob) { (uint8_t *) ctx[i + j], strlen(ctx[i + j]) };
                        if (kek_unwrap_batch(c, m, blobs + i, ctxs, got, res) == 0)
                                for (size_t j = 0; j < m; j++) {
                                        cached += res[j] == 0;
                                        kek_aek_unref(got[j]);
                                }
                }
                ops0 = kekd_hsm_ops();
                kek_stats_get(c, &s0);
                t0 = now_ns();
                for (size_t i = 0; i < t; i++) {
                        args[i] = (CArg) { .c = c, .blobs = blobs, .ctx = ctx, .n = n,
                                           .until_ns = t0 + (uint64_t) confirm_secs * 1000000000ULL, .seed = (unsigned) i + 1 };
                        pthread_create(&th[i], NULL, confirm_worker, &args[i]);
                }
                for (size_t i = 0; i < t; i++) {
                        pthread_join(th[i], NULL);
                        reads += args[i].reads;
                        failures += args[i].failures;
                }
                secs = (double) (now_ns() - t0) / 1e9;
                kek_stats_get(c, &s1);
                ops1 = kekd_hsm_ops();
                kek_client_free(c);
                r = &rows[n_rows++];
                *r = (Row) {};
                snprintf(r->name, sizeof(r->name), "HSM ops/s, %zu AEKs/%zu keys %s%s", cached, k,
                         off ? "per-AEK" : "confirm", watch ? " +W" : "");
                r->ops_per_s = ops0 >= 0 && ops1 >= 0 ? (ops1 - ops0) / secs : -1;
                snprintf(r->ratio, sizeof(r->ratio), "%.0f reads/s, %.0f req/s%s", (double) reads / secs,
                         (double) (s1.requests - s0.requests) / secs, failures ? ", FAILURES" : "");
                fprintf(stderr, "kekbench: %s: %.1f HSM ops/s over %.0f s, %zu threads, %.0f reads/s, %.1f requests/s to kekd, "
                                "%llu failed reads\n", r->name, r->ops_per_s, secs, t, (double) reads / secs,
                        (double) (s1.requests - s0.requests) / secs, (unsigned long long) failures);
        }
        for (size_t i = 0; i < n; i++)
                free(blobs[i].data);
        free(blobs);
        free(ctx);
        kek_aek_unref(aek);
}

/*
 * Per mechanism profile: kekd restarted with [hsm] profile pinned, a key of
 * that profile, the raw calls of one wrap+unwrap in-process on one session
 * (what kekd's single session makes per op), then kekd with 16 clients in
 * batches of 64; the ratio is the issue-16 target (>= 0.85 x raw).
 */
static int bench_profiles(void) {
        static const HsmProfile ps[] = { HSM_PROFILE_GCM, HSM_PROFILE_CBC_HMAC, HSM_PROFILE_CTR_HMAC };

        for (size_t i = 0; i < ELEMENTSOF(ps); i++) {
                char key[32];
                double raw, d;
                Row *row;

                snprintf(key, sizeof(key), "bench-%s", hsm_profile_name(ps[i]));
                conf_profile = hsm_profile_name(ps[i]);
                kekd_stop();
                if (write_conf(conf_path, sock_path, 1) < 0 || kekd_start() < 0 || create_key(key) < 0) {
                        fprintf(stderr, "kekbench: no kekd with profile %s\n", conf_profile);
                        return -1;
                }
                raw = bench_raw_profile(1, ps[i], key);
                fprintf(stderr, "kekbench: %s: %.0f ops/s\n", rows[n_rows - 1].name, raw);
                bench_key = key;
                d = bench_daemon(16, 64);
                bench_key = "bench";
                row = &rows[n_rows - 1];
                snprintf(row->name, sizeof(row->name), "kekd %s 16 cl, batch 64", conf_profile);
                if (!row->ratio[0])
                        snprintf(row->ratio, sizeof(row->ratio), "%.2f x raw %s", raw > 0 ? d / raw : 0, conf_profile);
                fprintf(stderr, "kekbench: %s: %.0f ops/s\n", row->name, d);
        }
        conf_profile = NULL;
        kekd_stop();
        return write_conf(conf_path, sock_path, sessions) < 0 || kekd_start() < 0 ? -1 : 0;
}

/* --- in-HSM session copies (issue 18 item 3, docs/session-copies.md) ----------- */

/*
 * One token, the PKCS#11 calls themselves (not pkcs11/hsm.c, which has no
 * C_CopyObject): a token AES-256 key as kekd makes it but with CKA_COPYABLE
 * and CKA_MODIFIABLE TRUE (what a copy needs on SoftHSM2), its
 * session copy (C_CopyObject, CKA_TOKEN FALSE), and AES-GCM encrypt+decrypt
 * single operations (C_EncryptInit/C_Encrypt, C_DecryptInit/C_Decrypt, one
 * thread) with each, alternated twice in the same run. path: the module
 * (SoftHSM2, or p11-fault with a delay: $P11_FAULT is read when it loads).
 */
typedef struct CopiesP11 {
        CK_FUNCTION_LIST *f;
        CK_SESSION_HANDLE s;
        CK_OBJECT_HANDLE token_key, session_key;
} CopiesP11;

static int copies_open(const char *path, CopiesP11 *c) {
        CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
        CK_KEY_TYPE type = CKK_AES;
        CK_ULONG len = 32, n = 0;
        CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
        CK_MECHANISM gen = { CKM_AES_KEY_GEN, NULL, 0 };
        CK_ATTRIBUTE tmpl[] = {
                { CKA_CLASS, &cls, sizeof(cls) },         { CKA_KEY_TYPE, &type, sizeof(type) },
                { CKA_VALUE_LEN, &len, sizeof(len) },     { CKA_LABEL, "bench-raw-copy", 14 },
                { CKA_TOKEN, &yes, sizeof(yes) },         { CKA_PRIVATE, &yes, sizeof(yes) },
                { CKA_SENSITIVE, &yes, sizeof(yes) },     { CKA_EXTRACTABLE, &no, sizeof(no) },
                { CKA_ENCRYPT, &yes, sizeof(yes) },       { CKA_DECRYPT, &yes, sizeof(yes) },
                { CKA_WRAP, &no, sizeof(no) },            { CKA_UNWRAP, &no, sizeof(no) },
                { CKA_DERIVE, &no, sizeof(no) },          { CKA_ID, "\0\0\0\1", 4 },
                /* kekd's KEK has both FALSE; SoftHSM2 copies only a modifiable object (test-copies) */
                { CKA_COPYABLE, &yes, sizeof(yes) },      { CKA_MODIFIABLE, &yes, sizeof(yes) },
        };
        CK_ATTRIBUTE to_session = { CKA_TOKEN, &no, sizeof(no) };
        CK_SLOT_ID slots[16];
        CK_TOKEN_INFO ti;

        *c = (CopiesP11) {};
        c->f = p11_kit_module_load(path, 0);
        if (!c->f || p11_kit_module_initialize(c->f) != CKR_OK) {
                fprintf(stderr, "kekbench: copies: cannot load %s\n", path);
                if (c->f)
                        p11_kit_module_release(c->f);
                c->f = NULL;
                return -1;
        }
        n = ELEMENTSOF(slots);
        if (c->f->C_GetSlotList(CK_TRUE, slots, &n) != CKR_OK)
                n = 0;
        for (CK_ULONG i = 0; i < n; i++)
                if (c->f->C_GetTokenInfo(slots[i], &ti) == CKR_OK &&
                    strncmp((const char *) ti.label, tok.label, strlen(tok.label)) == 0 &&
                    c->f->C_OpenSession(slots[i], CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &c->s) == CKR_OK)
                        break;
        if (!c->s || c->f->C_Login(c->s, CKU_USER, (CK_UTF8CHAR_PTR) tok.pin, strlen(tok.pin)) != CKR_OK ||
            c->f->C_GenerateKey(c->s, &gen, tmpl, ELEMENTSOF(tmpl), &c->token_key) != CKR_OK ||
            c->f->C_CopyObject(c->s, c->token_key, &to_session, 1, &c->session_key) != CKR_OK) {
                fprintf(stderr, "kekbench: copies: no token key and session copy on %s\n", path);
                return -1;
        }
        return 0;
}

static void copies_close(CopiesP11 *c) {
        if (!c->f)
                return;
        if (c->token_key)
                (void) c->f->C_DestroyObject(c->s, c->token_key);
        if (c->s)
                (void) c->f->C_CloseSession(c->s);
        (void) p11_kit_module_finalize(c->f);
        p11_kit_module_release(c->f);
        *c = (CopiesP11) {};
}

/* ops encrypt+decrypt pairs with key; a row named name; its ops/s (0 on a failed call: the row says ERRORS). */
static double copies_raw_row(CopiesP11 *c, CK_OBJECT_HANDLE key, unsigned ops, const char *name) {
        uint8_t iv[12] = { 1 }, aad[64] = { 2 }, pt[32] = { 3 }, ct[48], back[48];
        CK_GCM_PARAMS gcm = { iv, sizeof(iv), sizeof(iv) * 8, aad, sizeof(aad), 128 };
        CK_MECHANISM m = { CKM_AES_GCM, &gcm, sizeof(gcm) };
        uint64_t *lat = calloc(ops, sizeof(uint64_t)), t0 = now_ns();
        bool failed = false;
        Row *r;

        for (unsigned i = 0; i < ops && !failed; i++) {
                CK_ULONG ct_len = sizeof(ct), back_len = sizeof(back);
                uint64_t t = now_ns();

                iv[0] = (uint8_t) i;
                failed = c->f->C_EncryptInit(c->s, &m, key) != CKR_OK ||
                         c->f->C_Encrypt(c->s, pt, sizeof(pt), ct, &ct_len) != CKR_OK ||
                         c->f->C_DecryptInit(c->s, &m, key) != CKR_OK ||
                         c->f->C_Decrypt(c->s, ct, ct_len, back, &back_len) != CKR_OK || back_len != sizeof(pt) ||
                         memcmp(back, pt, sizeof(pt)) != 0;
                lat[i] = now_ns() - t;
        }
        r = add_row(name, lat, ops, now_ns() - t0, rss_kb(getpid()));
        if (failed)
                snprintf(r->ratio, sizeof(r->ratio), "ERRORS");
        free(lat);
        return failed ? 0 : r->ops_per_s;
}

/* The rows of one module: token, session, token, session; the ratio of the sums. */
static int copies_raw(const char *path, const char *what, unsigned ops) {
        CopiesP11 c;
        double tk = 0, sk = 0;
        char name[64];

        if (copies_open(path, &c) < 0) {
                copies_close(&c);
                return -1;
        }
        for (int round = 1; round <= 2; round++) {
                snprintf(name, sizeof(name), "raw GCM %s, token key (%d)", what, round);
                tk += copies_raw_row(&c, c.token_key, ops, name);
                fprintf(stderr, "kekbench: %s: %.0f ops/s\n", name, rows[n_rows - 1].ops_per_s);
                snprintf(name, sizeof(name), "raw GCM %s, session copy (%d)", what, round);
                sk += copies_raw_row(&c, c.session_key, ops, name);
                fprintf(stderr, "kekbench: %s: %.0f ops/s\n", name, rows[n_rows - 1].ops_per_s);
                if (!rows[n_rows - 1].ratio[0] && tk > 0)
                        snprintf(rows[n_rows - 1].ratio, sizeof(rows[0].ratio), "%.2f x token key", sk / tk);
        }
        copies_close(&c);
        return 0;
}

/*
 * The same through kekd (the figure a client sees), single wrap+unwrap with
 * 1 client and batches of 64 with 16: kekd on p11-fault without and with
 * $P11_FAULT_SESSION_COPIES=1 (the prototype: the module substitutes a
 * session copy in every C_EncryptInit/C_DecryptInit), alternated twice. The
 * key "bench-copies" is created under the prototype, so it is copyable.
 * delay: $P11_FAULT for both (NULL: none).
 */
static int copies_kekd(const char *fault, const char *delay, const char *what, unsigned ops) {
        static bool key_made;
        const char *saved_module = module;
        unsigned saved_ops = n_ops;
        double sum[2][2] = {};
        int r = -1;

        module = fault;
        n_ops = ops;
        if (delay)
                setenv("P11_FAULT", delay, 1);
        if (!key_made) {
                setenv("P11_FAULT_SESSION_COPIES", "1", 1);
                kekd_stop();
                if (write_conf(conf_path, sock_path, sessions) < 0 || kekd_start() < 0 || create_key("bench-copies") < 0) {
                        fprintf(stderr, "kekbench: copies: no key bench-copies through %s\n", fault);
                        goto finish;
                }
                key_made = true;
        }
        for (int round = 1; round <= 2; round++)
                for (int on = 0; on <= 1; on++) {
                        setenv("P11_FAULT_SESSION_COPIES", on ? "1" : "0", 1);
                        kekd_stop();
                        if (write_conf(conf_path, sock_path, sessions) < 0 || kekd_start() < 0) {
                                fprintf(stderr, "kekbench: copies: kekd did not start on %s\n", fault);
                                goto finish;
                        }
                        bench_key = "bench-copies";
                        for (int batch = 0; batch <= 1; batch++) {
                                Row *row;
                                double v = batch ? bench_daemon(16, 64) : bench_daemon(1, 1);

                                row = &rows[n_rows - 1];
                                snprintf(row->name, sizeof(row->name), "kekd %s %s, %s (%d)", batch ? "16 cl b64" : "1 cl",
                                         what, on ? "copies" : "token key", round);
                                sum[batch][on] += v;
                                if (on && !row->ratio[0] && sum[batch][0] > 0)
                                        snprintf(row->ratio, sizeof(row->ratio), "%.2f x token key",
                                                 sum[batch][1] / sum[batch][0]);
                                fprintf(stderr, "kekbench: %s: %.0f ops/s\n", row->name, v);
                        }
                        bench_key = "bench";
                }
        r = 0;
finish:
        bench_key = "bench";
        unsetenv("P11_FAULT_SESSION_COPIES");
        if (delay)
                unsetenv("P11_FAULT");
        module = saved_module;
        n_ops = saved_ops;
        kekd_stop();
        if (write_conf(conf_path, sock_path, sessions) < 0 || kekd_start() < 0)
                r = -1;
        return r;
}

/*
 * Phase "copies": raw on SoftHSM2, raw through p11-fault with a 1 ms delay on
 * C_Encrypt and C_Decrypt (a network HSM's round trip on the operation;
 * the init calls are not delayed), then both through kekd.
 * $KEKBENCH_FAULT_MODULE: p11-fault.so (default: the build tree's).
 */
static int bench_copies(void) {
        static const char delay[] = "C_Encrypt:delay_ms=1;C_Decrypt:delay_ms=1";
        const char *fault = getenv("KEKBENCH_FAULT_MODULE") ?: "tests/p11-fault/.libs/p11-fault.so";
        char fault_abs[PATH_MAX];
        unsigned slow_ops = quick ? 200 : 1000;

        if (!realpath(fault, fault_abs)) {
                fprintf(stderr, "kekbench: copies: no p11-fault module at %s (make check builds it)\n", fault);
                return -1;
        }
        setenv("P11_FAULT_MODULE", tok.module, 0);
        if (copies_raw(tok.module, "SoftHSM2", n_ops) < 0)
                return -1;
        setenv("P11_FAULT", delay, 1);
        if (copies_raw(fault_abs, "1 ms HSM", slow_ops) < 0)
                return -1;
        unsetenv("P11_FAULT");
        if (copies_kekd(fault_abs, NULL, "SoftHSM2", quick ? 2000 : n_ops) < 0)
                return -1;
        return copies_kekd(fault_abs, delay, "1 ms HSM", slow_ops);
}

int main(int argc, char *argv[]) {
        double raw1 = 0, raw2 = 0, d1 = 0, d16 = 0, d64 = 0, rw = 0;

        for (int i = 1; i < argc; i++) {
                if (strcmp(argv[i], "--quick") == 0)
                        quick = true;
                else if (strcmp(argv[i], "--cache-only") == 0)
                        cache_only = true;
                else if (strcmp(argv[i], "--keep-token") == 0)
                        keep_token = true;
                else if (strcmp(argv[i], "--only") == 0 && i + 1 < argc)
                        only = argv[++i];
                else if (strcmp(argv[i], "--startup-keys") == 0 && i + 1 < argc)
                        startup_keys = (unsigned) strtoul(argv[++i], NULL, 10);
                else if (strcmp(argv[i], "--ops") == 0 && i + 1 < argc)
                        n_ops = (unsigned) strtoul(argv[++i], NULL, 10);
                else if (strcmp(argv[i], "--confirm") == 0 && i + 4 < argc) {
                        /* phase confirm: AEKs, keys, threads, seconds */
                        confirm_aeks = strtoul(argv[++i], NULL, 10);
                        confirm_keys = strtoul(argv[++i], NULL, 10);
                        confirm_threads = strtoul(argv[++i], NULL, 10);
                        confirm_secs = strtoul(argv[++i], NULL, 10);
                        if (!confirm_aeks || !confirm_keys || confirm_keys > confirm_aeks || !confirm_threads)
                                return 2;
                }
                else {
                        fprintf(stderr, "usage: kekbench [--quick] [--cache-only] [--ops N] [--only PHASE,...] [--startup-keys N] "
                                        "[--confirm AEKS KEYS THREADS SECONDS] [--keep-token]\n");
                        return 2;
                }
        }
        if (quick)
                n_ops = MIN(n_ops, 5000u);
        kekd_bin = getenv("KEKD") ?: "daemon/kekd";
        if (getenv("KEKBENCH_CLIENT_CPU")) {
                /* placement experiments: pin this process (client threads) to one CPU */
                cpu_set_t set;

                CPU_ZERO(&set);
                CPU_SET(atoi(getenv("KEKBENCH_CLIENT_CPU")), &set);
                (void) sched_setaffinity(0, sizeof(set), &set);
        }
        signal(SIGPIPE, SIG_IGN);
        if (secret_heap_init(1 << 20) < 0 || token_setup(&tok, "bench") < 0)
                return 1;
        snprintf(sock_path, sizeof(sock_path), "%s/kekd.sock", tok.dir);
        snprintf(conf_path, sizeof(conf_path), "%s/kekd.conf", tok.dir);
        module = getenv("KEKBENCH_MODULE") ?: tok.module;
        sessions = getenv("KEKBENCH_SESSIONS") ? (unsigned) atoi(getenv("KEKBENCH_SESSIONS")) : 1;
        if (write_conf(conf_path, sock_path, sessions) < 0)
                return 1;
        if (kekd_start() < 0) {
                fprintf(stderr, "kekbench: kekd did not start (KEKD=%s)\n", kekd_bin);
                return 1;
        }
        if (create_key("bench") < 0)
                return 1;
        if (getenv("KEKBENCH_KEKD_INSTANCES") && atoi(getenv("KEKBENCH_KEKD_INSTANCES")) == 2) {
                char *argv2[] = { (char *) kekd_bin, "-c", conf2_path, NULL };
                posix_spawn_file_actions_t fa;

                snprintf(sock2_path, sizeof(sock2_path), "%s/kekd2.sock", tok.dir);
                snprintf(conf2_path, sizeof(conf2_path), "%s/kekd2.conf", tok.dir);
                if (write_conf(conf2_path, sock2_path, sessions) < 0)
                        return 1;
                posix_spawn_file_actions_init(&fa);
                posix_spawn_file_actions_addopen(&fa, STDERR_FILENO, "/dev/null", O_WRONLY, 0);
                if (posix_spawn(&kekd2_pid, kekd_bin, &fa, NULL, argv2, environ) != 0)
                        kekd2_pid = -1;
                posix_spawn_file_actions_destroy(&fa);
                for (int i = 0; i < 10000 && access(sock2_path, F_OK) < 0; i++)
                        usleep(1000);
                usleep(100000);
        }
        fprintf(stderr, "kekbench: kekd pid %d\n", (int) kekd_pid);
        fprintf(stderr, "kekbench: %u ops per row%s; SoftHSM2 token in %s\n", n_ops, quick ? " (quick)" : "", tok.dir);

#define PROGRESS() fprintf(stderr, "kekbench: %s: %.0f ops/s\n", rows[n_rows - 1].name, rows[n_rows - 1].ops_per_s)
        if (cache_only) {
                bench_cache(1000);
                bench_cache(100000);
                bench_cache(1000000);
                goto print;
        }
        if (phase("raw1") || phase("d1") || phase("d4") || phase("d16") || phase("d64") || phase("b16") || phase("rewrap") ||
            phase("sessions") || phase("s16") || phase("s16-alone")) {
                raw1 = bench_raw(1);
                PROGRESS();
        }
        if (phase("raw2")) {
                raw2 = bench_raw(2);
                PROGRESS();
                snprintf(rows[n_rows - 1].ratio, sizeof(rows[0].ratio), "%.2f x 1 thread", raw2 / raw1);
        }
        if (phase("raw4")) {
                double raw4 = bench_raw(4);

                PROGRESS();
                snprintf(rows[n_rows - 1].ratio, sizeof(rows[0].ratio), "%.2f x 1 thread", raw4 / raw1);
        }
        if (phase("d1")) {
                d1 = bench_daemon(1, 1);
                PROGRESS();
                snprintf(rows[n_rows - 1].ratio, sizeof(rows[0].ratio), "%.2f x raw, p50 %.1f x",
                         d1 / raw1, rows[n_rows - 1].p50_us / rows[0].p50_us);
        }
        if (phase("d4")) {
                (void) bench_daemon(4, 1);
                PROGRESS();
                snprintf(rows[n_rows - 1].ratio, sizeof(rows[0].ratio), "%.2f x raw", rows[n_rows - 1].ops_per_s / raw1);
        }
        if (phase("d16")) {
                d16 = bench_daemon(16, 1);
                PROGRESS();
                snprintf(rows[n_rows - 1].ratio, sizeof(rows[0].ratio), "%.2f x raw", d16 / raw1);
        }
        if (phase("d64")) {
                d64 = bench_daemon(64, 1);
                PROGRESS();
                snprintf(rows[n_rows - 1].ratio, sizeof(rows[0].ratio), "%.2f x raw", d64 / raw1);
        }
        if (phase("s16")) {
                /* 16 threads on one client, plain kek_wrap/kek_unwrap: coalesced into batches by libkek */
                double v = bench_daemon_on(16, 1, true);

                PROGRESS();
                snprintf(rows[n_rows - 1].ratio, sizeof(rows[0].ratio), "%.2f x raw", v / raw1);
        }
        if (phase("s16-alone")) {
                /* the same with coalescing off (kek_options.coalesce_disabled): one frame per request */
                double v;

                no_coalesce = true;
                v = bench_daemon_on(16, 1, true);
                no_coalesce = false;
                PROGRESS();
                snprintf(rows[n_rows - 1].ratio, sizeof(rows[0].ratio), "%.2f x raw", v / raw1);
        }
        if (phase("b16")) {
                (void) bench_daemon(16, 64);
                PROGRESS();
                snprintf(rows[n_rows - 1].ratio, sizeof(rows[0].ratio), "%.2f x raw", rows[n_rows - 1].ops_per_s / raw1);
        }
        if (phase("sessions")) {
                /*
                 * The HSM worker pool: kekd restarted with 1, 2 and 4 sessions; 16 clients
                 * single and batched, and batch rewrap.
                 */
                static const unsigned ns[] = { 1, 2, 4 };
                static const char *const what[] = { "kekd 16 cl", "kekd 16 cl, batch 64", "kekd rewrap batch 64" };
                double base[3] = {};

                for (size_t i = 0; i < ELEMENTSOF(ns); i++) {
                        kekd_stop();
                        if (write_conf(conf_path, sock_path, ns[i]) < 0 || kekd_start() < 0) {
                                fprintf(stderr, "kekbench: kekd did not start with %u sessions\n", ns[i]);
                                return 1;
                        }
                        for (size_t j = 0; j < ELEMENTSOF(what); j++) {
                                double v = j == 0 ? bench_daemon(16, 1) : j == 1 ? bench_daemon(16, 64) : bench_rewrap(n_ops);
                                Row *row = &rows[n_rows - 1];

                                base[j] = base[j] ?: v;
                                snprintf(row->name, sizeof(row->name), "%s, %u session%s", what[j], ns[i],
                                         ns[i] > 1 ? "s" : "");
                                snprintf(row->ratio, sizeof(row->ratio), "%.2f x raw, %.2f x 1 sess",
                                         raw1 > 0 ? v / raw1 : 0, v / base[j]);
                                PROGRESS();
                        }
                }
                kekd_stop();
                if (write_conf(conf_path, sock_path, sessions) < 0 || kekd_start() < 0)
                        return 1;
        }
        if (phase("cache")) {
                bench_cache(1000);
                PROGRESS();
                bench_cache(quick ? 10000 : 100000);
                PROGRESS();
                if (!quick)
                        bench_cache(1000000);
        }
        if (phase("rewrap")) {
                rw = bench_rewrap(quick ? 10000 : 100000);
                /* A rewrap is one unwrap and one wrap: the raw row does exactly that pair. */
                if (!rows[n_rows - 1].ratio[0])
                        snprintf(rows[n_rows - 1].ratio, sizeof(rows[0].ratio), "%.2f x raw", rw / raw1);
        }
        if (phase("profiles") && bench_profiles() < 0)
                return 1;
        if (phase("copies") && bench_copies() < 0)
                return 1;
        if (phase("confirm"))
                bench_confirm();
        if (phase("startup") || phase("refresh"))
                bench_startup(startup_keys ? startup_keys : quick ? 100 : 1000, 10);
        if (phase("refresh"))
                bench_refresh(startup_keys ? startup_keys : quick ? 100 : 1000);
        (void) raw2;
        (void) d16;
        (void) d64;

print:
        printf("| %-40s | %10s | %9s | %9s | %9s | %9s | %-22s |\n", "benchmark", "ops/s", "p50 us", "p99 us", "p999 us",
               "RSS MB", "ratio / note");
        printf("|%s|%s|%s|%s|%s|%s|%s|\n", "------------------------------------------", "------------", "-----------",
               "-----------", "-----------", "-----------", "------------------------");
        for (size_t i = 0; i < n_rows; i++)
                print_row(&rows[i], rows[i].ratio);
        kekd_stop();
        if (kekd2_pid > 0) {
                kill(kekd2_pid, SIGTERM);
                waitpid(kekd2_pid, NULL, 0);
        }
        if (keep_token)
                fprintf(stderr, "kekbench: kept token %s (SOFTHSM2_CONF=%s, config %s)\n", tok.dir, tok.conf, conf_path);
        else
                token_done(&tok);
        return 0;
}
