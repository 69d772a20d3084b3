/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libkek's coalescing (issue 18.2) against a real kekd on tests/p11-fault
 * (started by tests/integration/coalesce.sh; paths from its environment),
 * counted in kekd's own metrics (`kekctl status --prometheus`: requests by
 * op, so frames; batch items):
 *  - a lone request goes out at once as a plain frame (an Unwrap, not a
 *    BatchUnwrap), and so do sequential ones from one thread;
 *  - 16 threads on one client: kekd receives fewer frames than requests,
 *    every item is counted, every caller gets its own AEK back;
 *  - behind a request held by a slow HSM, a batch of unwraps with a
 *    tampered blob, a wrong context and a disabled key: each of those fails
 *    alone with its own code, the good ones get their AEKs, and the disabled
 *    key's refusal drops that key's cached AEK (revocation) and only it;
 *  - per-caller deadlines: a batch that the slow HSM holds past its callers'
 *    timeout gives each -ETIMEDOUT while the request before it succeeds; the
 *    late answer is discarded and the next request gets its own AEK.
 * Elapsed time is never asserted: the HSM's delays are lower bounds, and
 * waits are for a condition, bounded. Prints TAP.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "client/libkek.h"
#include "tests/lib/tap.h"

extern char **environ;

static const char *kekctl_path, *sock, *faults;

/* `kekctl status --prometheus` into buf; false when it failed. */
static bool metrics_text(char *buf, size_t size) {
        char *argv[] = { (char *) kekctl_path, "-s", (char *) sock, "status", "--prometheus", NULL };
        posix_spawn_file_actions_t fa;
        size_t len = 0;
        int pfd[2], st;
        pid_t pid;
        ssize_t n;

        if (pipe2(pfd, O_CLOEXEC) < 0)
                return false;
        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_adddup2(&fa, pfd[1], STDOUT_FILENO);
        posix_spawn_file_actions_addopen(&fa, STDERR_FILENO, "/dev/null", O_WRONLY, 0);
        if (posix_spawn(&pid, argv[0], &fa, NULL, argv, environ) != 0)
                pid = -1;
        posix_spawn_file_actions_destroy(&fa);
        close(pfd[1]);
        while (pid > 0 && len + 1 < size && (n = read(pfd[0], buf + len, size - 1 - len)) > 0)
                len += (size_t) n;
        close(pfd[0]);
        buf[len] = 0;
        return pid > 0 && waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

typedef struct Counts {
        unsigned long long wrap, unwrap, batch_wrap, batch_unwrap; /* frames, any key and result */
        unsigned long long wrap_items, unwrap_items;              /* items in batches */
} Counts;

static unsigned long long sum_of(const char *text, const char *prefix) {
        unsigned long long total = 0;

        for (const char *p = text; (p = strstr(p, prefix)); p++) {
                const char *v = strchr(p, ' ');

                if (v && (p == text || p[-1] == '\n'))
                        total += strtoull(v + 1, NULL, 10);
        }
        return total;
}

static bool counts(Counts *ret) {
        static char text[256 * 1024];

        if (!metrics_text(text, sizeof(text)))
                return false;
        *ret = (Counts) {
                .wrap = sum_of(text, "kekd_requests_total{op=\"wrap\","),
                .unwrap = sum_of(text, "kekd_requests_total{op=\"unwrap\","),
                .batch_wrap = sum_of(text, "kekd_requests_total{op=\"batch-wrap\","),
                .batch_unwrap = sum_of(text, "kekd_requests_total{op=\"batch-unwrap\","),
                .wrap_items = sum_of(text, "kekd_batch_items_total{op=\"batch-wrap\"}"),
                .unwrap_items = sum_of(text, "kekd_batch_items_total{op=\"batch-unwrap\"}"),
        };
        return true;
}

static void fault_set(const char *rules) {
        char tmp[4200];
        FILE *f;

        snprintf(tmp, sizeof(tmp), "%s.tmp", faults);
        f = fopen(tmp, "we");
        if (!f)
                return;
        fprintf(f, "%s\n", rules);
        fclose(f);
        (void) rename(tmp, faults);
}

static int kekctl(const char *a, const char *b) {
        char *argv[] = { (char *) kekctl_path, "-s", (char *) sock, (char *) a, (char *) b, NULL };
        posix_spawn_file_actions_t fa;
        pid_t pid;
        int st;

        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
        posix_spawn_file_actions_addopen(&fa, STDERR_FILENO, "/dev/null", O_WRONLY, 0);
        if (posix_spawn(&pid, argv[0], &fa, NULL, argv, environ) != 0) {
                posix_spawn_file_actions_destroy(&fa);
                return -1;
        }
        posix_spawn_file_actions_destroy(&fa);
        return waitpid(pid, &st, 0) == pid && WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static kek_client *new_client(bool cache, unsigned timeout_ms) {
        kek_options o = { .socket_path = sock, .cache_disabled = !cache, .watch_disabled = true, .timeout_ms = timeout_ms };
        kek_client *c = NULL;

        return kek_client_new(&o, &c) < 0 ? NULL : c;
}

static bool same_aek(const kek_aek *a, const kek_aek *b) {
        return a && b && kek_aek_size(a) == kek_aek_size(b) && memcmp(kek_aek_data(a), kek_aek_data(b), kek_aek_size(a)) == 0;
}

/* Waits (<= 30 s) until this client has made n requests: the one before them is on its way. */
static bool requests_reach(kek_client *c, uint64_t n) {
        for (int i = 0; i < 3000; i++) {
                kek_stats s;

                kek_stats_get(c, &s);
                if (s.requests >= n)
                        return true;
                usleep(10 * 1000);
        }
        return false;
}

/* --- a lone request ---------------------------------------------------------- */

static void test_lone(void) {
        kek_client *c = new_client(false, 10000);
        kek_aek *aek = NULL, *got = NULL;
        kek_blob b = {};
        Counts a0, a1, a2;
        int errors = 0;

        kek_aek_generate(&aek);
        ok(c && counts(&a0), "a client; kekd's metrics read");
        ok(c && kek_wrap(c, "k", 0, kek_aek_data(aek), KEK_AEK_SIZE, (const uint8_t *) "lone", 4, &b.data, &b.len, NULL) == 0 &&
                   kek_unwrap(c, b.data, b.len, (const uint8_t *) "lone", 4, &got) == 0 && same_aek(aek, got),
           "an idle client's wrap and unwrap round trip");
        ok(counts(&a1) && a1.wrap == a0.wrap + 1 && a1.unwrap == a0.unwrap + 1 && a1.batch_wrap == a0.batch_wrap &&
                   a1.batch_unwrap == a0.batch_unwrap,
           "kekd saw a plain Wrap and a plain Unwrap frame, no batch (wrap +%llu, unwrap +%llu, batches +%llu)",
           a1.wrap - a0.wrap, a1.unwrap - a0.unwrap, a1.batch_wrap + a1.batch_unwrap - a0.batch_wrap - a0.batch_unwrap);
        kek_aek_unref(got);
        for (int i = 0; c && i < 20; i++) {
                got = NULL;
                errors += kek_unwrap(c, b.data, b.len, (const uint8_t *) "lone", 4, &got) < 0 || !same_aek(aek, got);
                kek_aek_unref(got);
        }
        ok(errors == 0 && counts(&a2) && a2.unwrap == a1.unwrap + 20 && a2.batch_unwrap == a1.batch_unwrap,
           "20 sequential unwraps from one thread: 20 plain frames, each sent at once (no batch: %llu)",
           a2.batch_unwrap - a1.batch_unwrap);
        free(b.data);
        kek_aek_unref(aek);
        kek_client_free(c);
}

/* --- many threads on one client ------------------------------------------------- */

#define THREADS 16
#define ROUNDS 20

typedef struct Worker {
        kek_client *c;
        int index, errors, requests;
} Worker;

static void *worker_main(void *userdata) {
        Worker *w = userdata;
        kek_aek *aek = NULL;
        char ctx[32];

        kek_aek_generate(&aek);
        for (int i = 0; i < ROUNDS; i++) {
                kek_blob b = {};
                kek_aek *got = NULL;
                uint32_t version = 0;

                snprintf(ctx, sizeof(ctx), "t%d-%d", w->index, i);
                if (kek_wrap(w->c, "k", 0, kek_aek_data(aek), KEK_AEK_SIZE, (const uint8_t *) ctx, strlen(ctx), &b.data,
                             &b.len, &version) < 0 || version != 1 ||
                    kek_unwrap(w->c, b.data, b.len, (const uint8_t *) ctx, strlen(ctx), &got) < 0 || !same_aek(aek, got))
                        w->errors++;
                w->requests += 2;
                kek_aek_unref(got);
                free(b.data);
        }
        kek_aek_unref(aek);
        return NULL;
}

static void test_threads(void) {
        kek_client *c = new_client(false, 30000);
        pthread_t th[THREADS];
        Worker w[THREADS];
        Counts a0, a1;
        int errors = 0, requests = 0;
        unsigned long long frames, items;

        /* A few milliseconds per HSM call: requests overlap however the threads are scheduled. */
        fault_set("C_Encrypt:delay_ms=3\nC_Decrypt:delay_ms=3");
        ok(c && counts(&a0), "a client for %d threads", THREADS);
        for (int i = 0; c && i < THREADS; i++) {
                w[i] = (Worker) { .c = c, .index = i };
                pthread_create(&th[i], NULL, worker_main, &w[i]);
        }
        for (int i = 0; c && i < THREADS; i++) {
                pthread_join(th[i], NULL);
                errors += w[i].errors;
                requests += w[i].requests;
        }
        fault_set("");
        is_int(errors, 0, "%d threads x %d wrap+unwrap on one client: every caller got its own AEK back", THREADS, ROUNDS);
        ok(counts(&a1), "kekd's metrics read");
        frames = a1.wrap + a1.unwrap + a1.batch_wrap + a1.batch_unwrap - a0.wrap - a0.unwrap - a0.batch_wrap - a0.batch_unwrap;
        items = a1.wrap + a1.unwrap + a1.wrap_items + a1.unwrap_items - a0.wrap - a0.unwrap - a0.wrap_items - a0.unwrap_items;
        is_int((int) items, requests, "kekd handled every request once (%llu items)", items);
        ok(frames < (unsigned long long) requests && a1.batch_unwrap > a0.batch_unwrap && a1.batch_wrap > a0.batch_wrap,
           "... in fewer frames than requests: %llu frames for %d requests (%llu batch wraps, %llu batch unwraps)", frames,
           requests, a1.batch_wrap - a0.batch_wrap, a1.batch_unwrap - a0.batch_unwrap);
        kek_client_free(c);
}

/* --- per-item errors in one batch --------------------------------------------------- */

typedef struct Unwrapper {
        pthread_t thread;
        kek_client *c;
        kek_blob blob;
        const char *ctx;
        kek_aek *got;
        int r;
} Unwrapper;

static void *unwrapper_main(void *userdata) {
        Unwrapper *u = userdata;

        u->r = kek_unwrap(u->c, u->blob.data, u->blob.len, (const uint8_t *) u->ctx, strlen(u->ctx), &u->got);
        return NULL;
}

#define GOOD 6

static void test_item_errors(void) {
        static const char *const gctx[GOOD] = { "g0", "g1", "g2", "g3", "g4", "g5" };
        kek_client *c = new_client(true, 30000);
        kek_aek *aek[GOOD] = {}, *raek = NULL, *cached = NULL;
        kek_blob blob[GOOD] = {}, rb[2] = {}, tampered = {};
        Unwrapper gate = {}, u[GOOD + 3] = {};
        kek_stats s0, s1;
        Counts a0, a1;
        bool set_up = c != NULL;
        int good = 0;

        for (int i = 0; set_up && i < GOOD; i++)
                set_up = kek_aek_generate(&aek[i]) == 0 &&
                         kek_wrap(c, "k", 0, kek_aek_data(aek[i]), KEK_AEK_SIZE, (const uint8_t *) gctx[i], 2, &blob[i].data,
                                  &blob[i].len, NULL) == 0;
        set_up = set_up && kek_aek_generate(&raek) == 0;
        for (int i = 0; set_up && i < 2; i++)
                set_up = kek_wrap(c, "rev", 0, kek_aek_data(raek), KEK_AEK_SIZE, (const uint8_t *) "r", 1, &rb[i].data,
                                  &rb[i].len, NULL) == 0;
        if (set_up) {
                tampered.len = blob[1].len;
                tampered.data = malloc(tampered.len);
                set_up = tampered.data != NULL;
        }
        if (set_up) {
                memcpy(tampered.data, blob[1].data, tampered.len);
                tampered.data[tampered.len - 1] ^= 1; /* the tag: only kekd can tell */
        }
        /* The cache holds key 'rev' version 1 (rb[0]); then 'rev' is disabled. Watch is off: only an answer can revoke. */
        ok(set_up && kek_unwrap(c, rb[0].data, rb[0].len, (const uint8_t *) "r", 1, &cached) == 0 && same_aek(raek, cached) &&
                   kekctl("disable", "rev") == 0,
           "blobs of keys 'k' and 'rev'; rev's AEK cached, then 'rev' disabled");
        kek_aek_unref(cached);
        if (!set_up)
                goto out;

        kek_stats_get(c, &s0);
        ok(counts(&a0), "kekd's metrics read");
        /* The gate: one unwrap the HSM holds for a second; the others queue behind it and go out together. */
        fault_set("C_Decrypt:delay_ms=1000:count=1");
        gate = (Unwrapper) { .c = c, .blob = blob[0], .ctx = gctx[0] };
        pthread_create(&gate.thread, NULL, unwrapper_main, &gate);
        ok(requests_reach(c, s0.requests + 1), "the first unwrap is on its way");
        for (int i = 1; i < GOOD; i++)
                u[i] = (Unwrapper) { .c = c, .blob = blob[i], .ctx = gctx[i] };
        u[0] = (Unwrapper) { .c = c, .blob = tampered, .ctx = gctx[1] };
        u[GOOD] = (Unwrapper) { .c = c, .blob = blob[2], .ctx = "wrong" };
        u[GOOD + 1] = (Unwrapper) { .c = c, .blob = rb[1], .ctx = "r" };
        u[GOOD + 2] = (Unwrapper) { .c = c, .blob = blob[3], .ctx = gctx[3] };
        for (int i = 0; i < GOOD + 3; i++)
                pthread_create(&u[i].thread, NULL, unwrapper_main, &u[i]);
        pthread_join(gate.thread, NULL);
        for (int i = 0; i < GOOD + 3; i++)
                pthread_join(u[i].thread, NULL);
        fault_set("");

        ok(gate.r == 0 && same_aek(gate.got, aek[0]), "the first unwrap: its AEK");
        for (int i = 1; i < GOOD; i++)
                good += u[i].r == 0 && same_aek(u[i].got, aek[i]);
        good += u[GOOD + 2].r == 0 && same_aek(u[GOOD + 2].got, aek[3]);
        is_int(good, GOOD, "the %d good unwraps beside the bad ones: each its own AEK", GOOD);
        ok(u[0].r == -(KEK_ERROR_BASE + KEK_E_BLOB_INVALID) && !u[0].got, "the tampered blob alone fails: %s",
           kek_strerror(u[0].r));
        ok(u[GOOD].r == -(KEK_ERROR_BASE + KEK_E_BLOB_INVALID) && !u[GOOD].got, "the wrong context alone fails: %s",
           kek_strerror(u[GOOD].r));
        ok(u[GOOD + 1].r == -(KEK_ERROR_BASE + KEK_E_KEY_DISABLED) && !u[GOOD + 1].got, "the disabled key alone fails: %s",
           kek_strerror(u[GOOD + 1].r));
        ok(counts(&a1) && a1.batch_unwrap > a0.batch_unwrap && a1.unwrap_items - a0.unwrap_items >= 2,
           "they went to kekd in batches (%llu batch frames, %llu items; %llu plain)", a1.batch_unwrap - a0.batch_unwrap,
           a1.unwrap_items - a0.unwrap_items, a1.unwrap - a0.unwrap);
        kek_stats_get(c, &s1);
        ok(s1.drops > s0.drops && s1.entries == s0.entries - 1 + GOOD,
           "the disabled key's refusal dropped its cached AEK, and only it (%llu drop(s), %llu entries: the %d good ones)",
           (unsigned long long) (s1.drops - s0.drops), (unsigned long long) s1.entries, GOOD);
        kek_aek_unref(gate.got);
        for (int i = 0; i < GOOD + 3; i++)
                kek_aek_unref(u[i].got);
out:
        for (int i = 0; i < GOOD; i++) {
                kek_aek_unref(aek[i]);
                free(blob[i].data);
        }
        free(rb[0].data);
        free(rb[1].data);
        free(tampered.data);
        kek_aek_unref(raek);
        kek_client_free(c);
}

/* --- per-caller deadlines ------------------------------------------------------------ */

/*
 * Three late unwraps: with one in flight, the first of them goes alone (as
 * many queued as in flight), the next two as one batch (two queued, two in
 * flight). Every C_Decrypt takes 4 s: the first unwrap's answer comes at
 * 4 s, within its 6 s; the late ones' at 8 and 16 s, after theirs (2 s of
 * slack either way, for a loaded machine).
 */
#define LATE 3

static void test_timeouts(void) {
        kek_client *c = new_client(false, 6000);
        kek_aek *aek = NULL, *got = NULL;
        kek_blob b[LATE + 2] = {};
        Unwrapper first = {}, late[LATE] = {};
        bool set_up = c && kek_aek_generate(&aek) == 0;
        int timed_out = 0;
        Counts a0, a1 = {};
        kek_stats s0;

        for (int i = 0; set_up && i < LATE + 2; i++)
                set_up = kek_wrap(c, "k", 0, kek_aek_data(aek), KEK_AEK_SIZE, (const uint8_t *) "d", 1, &b[i].data, &b[i].len,
                                  NULL) == 0;
        ok(set_up && counts(&a0), "a client with a 6 s timeout; %d blobs", LATE + 2);
        if (!set_up)
                goto out;
        kek_stats_get(c, &s0);
        fault_set("C_Decrypt:delay_ms=4000");
        first = (Unwrapper) { .c = c, .blob = b[0], .ctx = "d" };
        pthread_create(&first.thread, NULL, unwrapper_main, &first);
        ok(requests_reach(c, s0.requests + 1), "the first unwrap is on its way");
        for (int i = 0; i < LATE; i++) {
                late[i] = (Unwrapper) { .c = c, .blob = b[i + 1], .ctx = "d" };
                pthread_create(&late[i].thread, NULL, unwrapper_main, &late[i]);
        }
        pthread_join(first.thread, NULL);
        for (int i = 0; i < LATE; i++) {
                pthread_join(late[i].thread, NULL);
                timed_out += late[i].r == -ETIMEDOUT && !late[i].got;
        }
        fault_set("");
        ok(first.r == 0 && same_aek(first.got, aek), "the first unwrap: its AEK within its own deadline");
        is_int(timed_out, LATE, "the %d unwraps queued behind it: each -ETIMEDOUT at its own deadline", LATE);
        /* The late answer: wait (<= 60 s) until kekd has sent it, so the next request meets it on the connection. */
        for (int i = 0; i < 600 && counts(&a1) && a1.unwrap - a0.unwrap + a1.unwrap_items - a0.unwrap_items < 1 + LATE; i++)
                usleep(100 * 1000);
        ok(a1.batch_unwrap > a0.batch_unwrap && a1.unwrap - a0.unwrap + a1.unwrap_items - a0.unwrap_items == 1 + LATE,
           "kekd answered them late, in batches (%llu batch frames, %llu items; %llu plain)", a1.batch_unwrap - a0.batch_unwrap,
           a1.unwrap_items - a0.unwrap_items, a1.unwrap - a0.unwrap);
        ok(kek_unwrap(c, b[LATE + 1].data, b[LATE + 1].len, (const uint8_t *) "d", 1, &got) == 0 && same_aek(got, aek),
           "the next unwrap on the client gets its own answer (the late one was discarded)");
        kek_aek_unref(first.got);
        kek_aek_unref(got);
out:
        for (int i = 0; i < LATE + 2; i++)
                free(b[i].data);
        kek_aek_unref(aek);
        kek_client_free(c);
}

int main(void) {
        kekctl_path = getenv("KEKCTL");
        sock = getenv("KEKD_SOCKET");
        faults = getenv("FAULTS");
        if (!kekctl_path || !sock || !faults) {
                printf("Bail out! KEKCTL, KEKD_SOCKET, FAULTS must be set\n");
                return 1;
        }
        signal(SIGPIPE, SIG_IGN);
        test_lone();
        test_threads();
        test_item_errors();
        test_timeouts();
        return tap_done();
}
