/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libkek against a real kekd (started, killed and restarted here by PID;
 * paths from the environment set by tests/integration/libkek.sh): round
 * trips and block sealing, cache hits without round trips (counted),
 * re-validation after the refresh interval, serving through a kekd outage
 * for the grace period and failing after it, revocation push (disable seen
 * within 1 s through Watch, and within the refresh interval with Watch off),
 * enable resuming, a disable whose Watch event lands while an unwrap's answer
 * is on its way (held by a relay) not undone when that answer is cached
 * (issue F3), blobs forged to name another version dropping nothing
 * beyond their own entry (issue 20.1), many threads at once, and no plaintext AEK in a core file
 * of a client process (gcore). Prints TAP.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "client/libkek.h"
#include "tests/lib/tap.h"

extern char **environ;

static const char *kekd_path, *kekctl_path, *conf, *sock, *testdir;
static pid_t kekd_pid = -1;

static uint64_t mono_ms(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000 + (uint64_t) ts.tv_nsec / 1000000;
}

static int run_quiet(char *const argv[]) {
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
        if (waitpid(pid, &st, 0) < 0)
                return -1;
        return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static int kekctl(const char *a, const char *b, const char *c, const char *d) {
        char *argv[] = { (char *) kekctl_path, "-s", (char *) sock, (char *) a, (char *) b, (char *) c, (char *) d, NULL };

        return run_quiet(argv);
}

static bool socket_up(void) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        bool up;

        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock);
        up = fd >= 0 && connect(fd, (struct sockaddr *) &sa, sizeof(sa)) == 0;
        if (fd >= 0)
                close(fd);
        return up;
}

static bool kekd_start(void) {
        char log[4096];
        char *argv[] = { (char *) kekd_path, "-c", (char *) conf, NULL };
        /* As lib.sh's kekd_start: $KEKD_START_TIMEOUT seconds (default 10); make memcheck sets 60,
         * since kekd under valgrind on a busy machine can take longer than 10 s to serve. */
        const char *t = getenv("KEKD_START_TIMEOUT");
        int tenths = (t && atoi(t) > 0 ? atoi(t) : 10) * 10;
        posix_spawn_file_actions_t fa;

        snprintf(log, sizeof(log), "%s/kekd.log", testdir);
        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_addopen(&fa, STDERR_FILENO, log, O_WRONLY | O_APPEND | O_CREAT, 0600);
        if (posix_spawn(&kekd_pid, kekd_path, &fa, NULL, argv, environ) != 0)
                kekd_pid = -1;
        posix_spawn_file_actions_destroy(&fa);
        for (int i = 0; kekd_pid > 0 && i < tenths; i++) {
                if (socket_up())
                        return true;
                usleep(100 * 1000);
        }
        return false;
}

static void kekd_kill(int sig) {
        if (kekd_pid <= 0)
                return;
        kill(kekd_pid, sig);
        waitpid(kekd_pid, NULL, 0);
        kekd_pid = -1;
}

static void cleanup(void) {
        kekd_kill(SIGKILL);
}

static int new_client(unsigned refresh, unsigned grace, bool watch, kek_client **ret) {
        kek_options o = { .socket_path = sock, .refresh_sec = refresh, .grace_sec = grace, .watch_disabled = !watch,
                          .timeout_ms = 2000 };

        return kek_client_new(&o, ret);
}

static int wrap_new(kek_client *c, const char *key, const char *ctx, kek_aek **ret_aek, kek_blob *ret_blob) {
        int r = kek_aek_generate(ret_aek);

        if (r < 0)
                return r;
        return kek_wrap(c, key, 0, kek_aek_data(*ret_aek), kek_aek_size(*ret_aek), (const uint8_t *) ctx, strlen(ctx),
                        &ret_blob->data, &ret_blob->len, NULL);
}

static bool unwrap_is(kek_client *c, const kek_blob *b, const char *ctx, const kek_aek *want, int *ret_r) {
        kek_aek *got = NULL;
        int r = kek_unwrap(c, b->data, b->len, (const uint8_t *) ctx, strlen(ctx), &got);
        bool same = r == 0 && kek_aek_size(got) == kek_aek_size(want) &&
                    memcmp(kek_aek_data(got), kek_aek_data(want), kek_aek_size(want)) == 0;

        kek_aek_unref(got);
        if (ret_r)
                *ret_r = r;
        return same;
}

static void test_roundtrip_and_blocks(void) {
        kek_client *c = NULL;
        kek_aek *aek = NULL, *platform = NULL, *other = NULL;
        kek_blob blob = {}, blob2 = {};
        uint8_t data[1000], sealed[1000 + KEK_BLOCK2_OVERHEAD], opened[1000];
        uint32_t version = 0;
        int r;

        ok(new_client(0, 0, true, &c) == 0, "client created");
        ok(wrap_new(c, "acct", "account-1", &aek, &blob) == 0, "wrap of a generated AEK");
        ok(unwrap_is(c, &blob, "account-1", aek, &r), "unwrap returns the same AEK");
        ok(!unwrap_is(c, &blob, "account-2", aek, &r) && r == -(KEK_ERROR_BASE + KEK_E_BLOB_INVALID),
           "another context is refused with BLOB_INVALID (%s)", kek_strerror(r));
        ok(kek_rewrap(c, blob.data, blob.len, (const uint8_t *) "account-1", 9, &blob2.data, &blob2.len, &version) == 0 &&
                   version == 1 && unwrap_is(c, &blob2, "account-1", aek, NULL),
           "rewrap gives a blob that unwraps to the same AEK");

        for (size_t i = 0; i < sizeof(data); i++)
                data[i] = (uint8_t) i;
        ok(kek_block_seal(aek, (const uint8_t *) "block-7", 7, data, sizeof(data), sealed) == 0 &&
                   kek_block_open(aek, (const uint8_t *) "block-7", 7, sealed, sizeof(data) + KEK_BLOCK_OVERHEAD, opened) == 0 &&
                   memcmp(opened, data, sizeof(data)) == 0,
           "a block sealed with a DEK of the AEK opens again");
        ok(kek_block_open(aek, (const uint8_t *) "block-8", 7, sealed, sizeof(data) + KEK_BLOCK_OVERHEAD, opened) == -EBADMSG,
           "a block opened under another block context fails");
        sealed[40] ^= 1;
        ok(kek_block_open(aek, (const uint8_t *) "block-7", 7, sealed, sizeof(data) + KEK_BLOCK_OVERHEAD, opened) == -EBADMSG,
           "a changed block fails");
        kek_aek_generate(&platform);
        kek_aek_generate(&other);
        ok(kek_block_seal2(aek, platform, (const uint8_t *) "b", 1, data, sizeof(data), sealed) == 0 &&
                   kek_block_open2(aek, platform, (const uint8_t *) "b", 1, sealed, sizeof(data) + KEK_BLOCK2_OVERHEAD, opened) == 0 &&
                   memcmp(opened, data, sizeof(data)) == 0,
           "double encryption (AES-GCM inside ChaCha20-Poly1305) round trips");
        ok(sealed[0] == 0x02, "the outer layer is ChaCha20-Poly1305 (format 0x02)");
        ok(kek_block_open2(aek, other, (const uint8_t *) "b", 1, sealed, sizeof(data) + KEK_BLOCK2_OVERHEAD, opened) == -EBADMSG,
           "double encryption with another platform key fails");
        ok(kek_block_open2(other, platform, (const uint8_t *) "b", 1, sealed, sizeof(data) + KEK_BLOCK2_OVERHEAD, opened) == -EBADMSG,
           "double encryption with another AEK fails");

        {
                kek_blob blobs[3] = { blob, blob2, blob }, ctxs[3] = { { (uint8_t *) "account-1", 9 },
                                                                      { (uint8_t *) "account-1", 9 },
                                                                      { (uint8_t *) "wrong", 5 } };
                kek_aek *got[3] = {};
                int res[3] = { 1, 1, 1 };

                ok(kek_unwrap_batch(c, 3, blobs, ctxs, got, res) == 0 && res[0] == 0 && res[1] == 0 &&
                           res[2] == -(KEK_ERROR_BASE + KEK_E_BLOB_INVALID) && !got[2] &&
                           memcmp(kek_aek_data(got[0]), kek_aek_data(aek), KEK_AEK_SIZE) == 0 &&
                           memcmp(kek_aek_data(got[1]), kek_aek_data(aek), KEK_AEK_SIZE) == 0,
                   "batch unwrap: two AEKs back, the wrong context fails alone");
                for (int i = 0; i < 3; i++)
                        kek_aek_unref(got[i]);
        }
        kek_aek_unref(aek);
        kek_aek_unref(platform);
        kek_aek_unref(other);
        free(blob.data);
        free(blob2.data);
        kek_client_free(c);
}

static void test_cache_hits(void) {
        kek_client *c = NULL;
        kek_aek *aek = NULL;
        kek_blob blob = {};
        kek_stats s0, s1;
        int bad = 0;

        new_client(0, 0, false, &c);
        wrap_new(c, "acct", "hits", &aek, &blob);
        kek_stats_get(c, &s0);
        for (int i = 0; i < 1000; i++)
                bad += !unwrap_is(c, &blob, "hits", aek, NULL);
        kek_stats_get(c, &s1);
        is_int(bad, 0, "1000 unwraps of one blob all return the AEK");
        is_int(s1.requests - s0.requests, 1, "only the first went to kekd (requests counted)");
        is_int(s1.hits - s0.hits, 999, "999 cache hits");
        is_int(s1.misses - s0.misses, 1, "1 miss");
        kek_aek_unref(aek);
        free(blob.data);
        kek_client_free(c);
}

static void test_refresh_and_grace(void) {
        kek_client *c = NULL;
        kek_aek *aek = NULL;
        kek_blob blob = {};
        kek_stats s;
        int r;

        /* refresh 6 s (the minimum), grace 10 s */
        new_client(6, 10, false, &c);
        wrap_new(c, "acct", "grace", &aek, &blob);
        ok(unwrap_is(c, &blob, "grace", aek, NULL), "AEK cached");
        sleep(7);
        ok(unwrap_is(c, &blob, "grace", aek, NULL), "after the refresh interval the AEK is served");
        kek_stats_get(c, &s);
        is_int(s.refreshes, 1, "... after one re-validation with kekd");

        kekd_kill(SIGKILL);
        ok(unwrap_is(c, &blob, "grace", aek, &r), "kekd killed: a fresh entry is served from the cache");
        sleep(7);
        ok(unwrap_is(c, &blob, "grace", aek, &r), "kekd still down past the refresh interval: served within the grace");
        kek_stats_get(c, &s);
        ok(s.stale_served >= 1, "... counted as served stale (%llu)", (unsigned long long) s.stale_served);
        sleep(4);
        ok(!unwrap_is(c, &blob, "grace", aek, &r) && kek_error_is_transient(r),
           "past the grace the unwrap fails with a transient error (%s)", kek_strerror(r));
        ok(kekd_start(), "kekd restarted");
        ok(unwrap_is(c, &blob, "grace", aek, &r), "after the restart the client reconnects and unwraps (%s)",
           r ? kek_strerror(r) : "ok");
        kek_aek_unref(aek);
        free(blob.data);
        kek_client_free(c);
}

/* Polls until the blob is refused; returns the milliseconds it took, or -1 after limit_ms. */
static long ms_until_refused(kek_client *c, const kek_blob *b, const char *ctx, const kek_aek *aek, long limit_ms,
                             int *ret_r) {
        uint64_t t0 = mono_ms();

        while ((long) (mono_ms() - t0) < limit_ms) {
                if (!unwrap_is(c, b, ctx, aek, ret_r))
                        return (long) (mono_ms() - t0);
                usleep(5 * 1000);
        }
        return -1;
}

static void test_revocation(void) {
        kek_client *w = NULL, *t = NULL;
        kek_aek *aek = NULL;
        kek_blob blob = {};
        kek_stats s;
        long ms;
        int r = 0;

        new_client(6, 300, true, &w);
        new_client(6, 300, false, &t);
        wrap_new(w, "rev", "r", &aek, &blob);
        ok(unwrap_is(w, &blob, "r", aek, NULL) && unwrap_is(t, &blob, "r", aek, NULL), "both clients cache the AEK");
        for (int i = 0; i < 100; i++) {
                kek_stats_get(w, &s);
                if (s.watch_connected)
                        break;
                usleep(20 * 1000);
        }
        ok(s.watch_connected, "the watching client is subscribed");

        ok(kekctl("disable", "rev", NULL, NULL) == 0, "disable key 'rev'");
        ms = ms_until_refused(w, &blob, "r", aek, 1000, &r);
        ok(ms >= 0 && r == -(KEK_ERROR_BASE + KEK_E_KEY_DISABLED), "with Watch, the client stops serving within 1 s (%ld ms, %s)",
           ms, kek_strerror(r));
        ok(unwrap_is(t, &blob, "r", aek, NULL), "without Watch, the cached AEK is still served before the refresh interval");
        ms = ms_until_refused(t, &blob, "r", aek, 8000, &r);
        ok(ms >= 0 && r == -(KEK_ERROR_BASE + KEK_E_KEY_DISABLED), "without Watch, it stops within the 6 s refresh interval (%ld ms)",
           ms);
        kek_stats_get(w, &s);
        ok(s.drops >= 1 && s.watch_events >= 1, "the revocation dropped cached entries (%llu) on an event (%llu)",
           (unsigned long long) s.drops, (unsigned long long) s.watch_events);
        ok(kekctl("enable", "rev", NULL, NULL) == 0, "enable key 'rev'");
        ok(unwrap_is(w, &blob, "r", aek, &r), "enable resumes service at once (%s)", r ? kek_strerror(r) : "ok");
        ok(unwrap_is(t, &blob, "r", aek, &r), "... for both clients");

        kek_aek_unref(aek);
        free(blob.data);
        kek_client_free(w);
        kek_client_free(t);
}

/* kekd's kekd_hsm_crypto_ops_total, from kekctl status --prometheus; -1 if not found. */
static long long hsm_ops(void) {
        char cmd[1024], line[512];
        long long n = -1;
        FILE *f;

        snprintf(cmd, sizeof(cmd), "'%s' -s '%s' status --prometheus 2>/dev/null", kekctl_path, sock);
        f = popen(cmd, "r");
        if (!f)
                return -1;
        while (fgets(line, sizeof(line), f))
                if (sscanf(line, "kekd_hsm_crypto_ops_total %lld", &n) == 1)
                        break;
        while (fgets(line, sizeof(line), f))
                ;
        pclose(f);
        return n;
}

/*
 * Issue 18.1: past refresh_sec, many cached AEKs of few key versions are re-validated by one
 * confirmation per key version, with no HSM operation; with KEK_CONFIRM=off (the comparison mode)
 * each by its own unwrap. Revocation still drops them within the bound, with and without Watch.
 */
#define CONFIRM_AEKS 40
static void test_confirm(bool watch, bool per_aek) {
        static const char *const keys[] = { "cf1", "cf2" };
        const char *what = per_aek ? "per-AEK (KEK_CONFIRM=off)" : watch ? "Watch on" : "Watch off";
        kek_client *c = NULL;
        kek_aek *aeks[CONFIRM_AEKS] = {};
        kek_blob blobs[CONFIRM_AEKS] = {};
        char ctx[CONFIRM_AEKS][16];
        kek_stats s0, s1;
        long long ops0, ops1;
        long ms;
        int bad = 0, r = 0;

        if (per_aek)
                setenv("KEK_CONFIRM", "off", 1);
        new_client(6, 300, watch, &c);
        unsetenv("KEK_CONFIRM");
        for (int i = 0; i < CONFIRM_AEKS; i++) {
                snprintf(ctx[i], sizeof(ctx[i]), "cf-%d", i);
                bad += wrap_new(c, keys[i % 2], ctx[i], &aeks[i], &blobs[i]) < 0 || !unwrap_is(c, &blobs[i], ctx[i], aeks[i], NULL);
        }
        is_int(bad, 0, "%s: %d AEKs over 2 keys wrapped and cached", what, CONFIRM_AEKS);
        sleep(7); /* past refresh_sec: every entry is due */
        kek_stats_get(c, &s0);
        ops0 = hsm_ops();
        for (int i = 0; i < CONFIRM_AEKS; i++)
                bad += !unwrap_is(c, &blobs[i], ctx[i], aeks[i], NULL);
        ops1 = hsm_ops();
        kek_stats_get(c, &s1);
        is_int(bad, 0, "%s: past refresh_sec every AEK is served again", what);
        ok(ops0 >= 0 && ops1 >= 0, "%s: kekd counts HSM operations (%lld, %lld)", what, ops0, ops1);
        is_int(s1.refreshes - s0.refreshes, CONFIRM_AEKS, "%s: all %d entries re-validated", what, CONFIRM_AEKS);
        if (per_aek) {
                is_int(ops1 - ops0, CONFIRM_AEKS, "%s: one HSM unwrap per cached AEK", what);
                is_int(s1.requests - s0.requests, CONFIRM_AEKS, "%s: one request per cached AEK", what);
        } else {
                is_int(ops1 - ops0, 0, "%s: no HSM operation for the re-validation (confirmed from kekd's index)", what);
                is_int(s1.requests - s0.requests, 2, "%s: one confirmation per key version", what);
        }
        ok(kekctl("disable", "cf1", NULL, NULL) == 0, "%s: disable key 'cf1'", what);
        ms = ms_until_refused(c, &blobs[0], ctx[0], aeks[0], watch ? 1000 : 8000, &r);
        ok(ms >= 0 && r == -(KEK_ERROR_BASE + KEK_E_KEY_DISABLED), "%s: a cached AEK of 'cf1' is refused within %s (%ld ms, %s)",
           what, watch ? "1 s" : "the 6 s refresh", ms, kek_strerror(r));
        bad = 0;
        for (int i = 0; i < CONFIRM_AEKS; i += 2)
                bad += unwrap_is(c, &blobs[i], ctx[i], aeks[i], NULL);
        is_int(bad, 0, "%s: ... and every other AEK of 'cf1' with it", what);
        ok(unwrap_is(c, &blobs[1], ctx[1], aeks[1], &r), "%s: 'cf2' is still served (%s)", what, r ? kek_strerror(r) : "ok");
        ok(kekctl("enable", "cf1", NULL, NULL) == 0, "%s: enable key 'cf1'", what);
        for (int i = 0; i < CONFIRM_AEKS; i++) {
                kek_aek_unref(aeks[i]);
                free(blobs[i].data);
        }
        kek_client_free(c);
}

/*
 * A relay between a client and kekd, on its own socket, that can hold kekd's answers on one
 * connection: armed, it holds every answer on the next connection the client sends a request on,
 * until released. Other connections (the Watch stream) pass through. This stands for a client
 * thread that has its answer from kekd but has not stored it yet, as a breakpoint in cache_store()
 * would, without touching the library.
 */
#define RELAY_MAX 8

typedef struct Relay {
        char path[108];
        int lfd;
        pthread_t thread;
        pthread_mutex_t lock;
        bool armed, release, stop;   /* under lock */
        size_t held_bytes;           /* under lock: answer bytes held so far */
        int cfd[RELAY_MAX], kfd[RELAY_MAX];
        bool held[RELAY_MAX];
        uint8_t buf[65536];          /* what the held connection's answers hold back */
        size_t buf_len;
} Relay;

static bool write_all(int fd, const uint8_t *p, size_t n) {
        while (n > 0) {
                ssize_t w = write(fd, p, n);

                if (w <= 0)
                        return false;
                p += w;
                n -= (size_t) w;
        }
        return true;
}

static void relay_close(Relay *r, int i) {
        close(r->cfd[i]);
        close(r->kfd[i]);
        r->cfd[i] = r->kfd[i] = -1;
        r->held[i] = false;
}

static void *relay_main(void *userdata) {
        Relay *r = userdata;

        for (;;) {
                struct pollfd p[1 + 2 * RELAY_MAX];
                uint8_t b[4096];
                bool stop, release;

                pthread_mutex_lock(&r->lock);
                stop = r->stop;
                release = r->release;
                pthread_mutex_unlock(&r->lock);
                if (stop)
                        break;
                for (int i = 0; i < RELAY_MAX; i++)
                        if (release && r->held[i]) {
                                (void) write_all(r->cfd[i], r->buf, r->buf_len);
                                r->buf_len = 0;
                                r->held[i] = false;
                        }
                p[0] = (struct pollfd) { .fd = r->lfd, .events = POLLIN };
                for (int i = 0; i < RELAY_MAX; i++) {
                        p[1 + 2 * i] = (struct pollfd) { .fd = r->cfd[i], .events = POLLIN };
                        p[2 + 2 * i] = (struct pollfd) { .fd = r->kfd[i], .events = POLLIN };
                }
                if (poll(p, 1 + 2 * RELAY_MAX, 10) < 0)
                        continue;
                if (p[0].revents & POLLIN) {
                        struct sockaddr_un sa = { .sun_family = AF_UNIX };
                        int c = accept4(r->lfd, NULL, NULL, SOCK_CLOEXEC), k = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0), i;

                        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock);
                        for (i = 0; i < RELAY_MAX && r->cfd[i] >= 0; i++)
                                ;
                        if (c >= 0 && k >= 0 && i < RELAY_MAX && connect(k, (struct sockaddr *) &sa, sizeof(sa)) == 0) {
                                r->cfd[i] = c;
                                r->kfd[i] = k;
                        } else {
                                if (c >= 0)
                                        close(c);
                                if (k >= 0)
                                        close(k);
                        }
                }
                for (int i = 0; i < RELAY_MAX; i++) {
                        ssize_t n;

                        if (r->cfd[i] >= 0 && p[1 + 2 * i].revents) {
                                n = read(r->cfd[i], b, sizeof(b));
                                if (n <= 0 || !write_all(r->kfd[i], b, (size_t) n)) {
                                        relay_close(r, i);
                                        continue;
                                }
                                pthread_mutex_lock(&r->lock);
                                if (r->armed) {
                                        r->armed = false;
                                        r->held[i] = true;
                                }
                                pthread_mutex_unlock(&r->lock);
                        }
                        if (r->kfd[i] >= 0 && p[2 + 2 * i].revents) {
                                n = read(r->kfd[i], b, sizeof(b));
                                if (n <= 0) {
                                        relay_close(r, i);
                                        continue;
                                }
                                if (r->held[i] && r->buf_len + (size_t) n <= sizeof(r->buf)) {
                                        memcpy(r->buf + r->buf_len, b, (size_t) n);
                                        r->buf_len += (size_t) n;
                                        pthread_mutex_lock(&r->lock);
                                        r->held_bytes = r->buf_len;
                                        pthread_mutex_unlock(&r->lock);
                                } else if (r->held[i] || !write_all(r->cfd[i], b, (size_t) n))
                                        relay_close(r, i);
                        }
                }
        }
        for (int i = 0; i < RELAY_MAX; i++)
                if (r->cfd[i] >= 0)
                        relay_close(r, i);
        return NULL;
}

static bool relay_start(Relay *r) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };

        pthread_mutex_init(&r->lock, NULL);
        for (int i = 0; i < RELAY_MAX; i++)
                r->cfd[i] = r->kfd[i] = -1;
        snprintf(r->path, sizeof(r->path), "%s/relay.sock", testdir);
        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", r->path);
        (void) unlink(r->path);
        r->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (r->lfd < 0 || bind(r->lfd, (struct sockaddr *) &sa, sizeof(sa)) < 0 || listen(r->lfd, 8) < 0 ||
            pthread_create(&r->thread, NULL, relay_main, r) != 0) {
                if (r->lfd >= 0)
                        close(r->lfd);
                return false;
        }
        return true;
}

static void relay_stop(Relay *r) {
        pthread_mutex_lock(&r->lock);
        r->stop = true;
        pthread_mutex_unlock(&r->lock);
        pthread_join(r->thread, NULL);
        close(r->lfd);
        (void) unlink(r->path);
        pthread_mutex_destroy(&r->lock);
}

static void relay_set(Relay *r, bool *flag) {
        pthread_mutex_lock(&r->lock);
        *flag = true;
        pthread_mutex_unlock(&r->lock);
}

static size_t relay_held(Relay *r) {
        size_t n;

        pthread_mutex_lock(&r->lock);
        n = r->held_bytes;
        pthread_mutex_unlock(&r->lock);
        return n;
}

typedef struct Inflight {
        kek_client *c;
        const kek_blob *blob;
        bool batch;
        int r;
} Inflight;

static void *inflight_main(void *userdata) {
        Inflight *f = userdata;
        kek_blob ctx = { (uint8_t *) "if", 2 };
        kek_aek *got = NULL;
        int r;

        if (f->batch)
                f->r = kek_unwrap_batch(f->c, 1, f->blob, &ctx, &got, &r) < 0 ? -EIO : r;
        else
                f->r = kek_unwrap(f->c, f->blob->data, f->blob->len, ctx.data, ctx.len, &got);
        kek_aek_unref(got);
        return NULL;
}

/*
 * Issue F3: kekd has answered an unwrap (the relay holds the answer), then the key is disabled and
 * the client applies the Watch event, and only then does the answer reach the unwrapping thread.
 * It must not be cached as fresh: the next unwrap goes to kekd and is refused, instead of being
 * served from the cache for refresh_sec (60 s here).
 */
static void test_inflight_revocation(bool batch) {
        static Relay relay;
        const char *key = batch ? "inflight-b" : "inflight";
        kek_options o = { .refresh_sec = 60, .grace_sec = 300, .timeout_ms = 30000 };
        kek_client *c = NULL;
        kek_aek *aek = NULL, *got = NULL;
        kek_blob blob = {};
        Inflight f = { .blob = &blob, .batch = batch };
        pthread_t t;
        kek_stats s = {};
        uint64_t events0, requests0, t0;
        bool held = false, event = false;
        int r;

        memset(&relay, 0, sizeof(relay));
        if (!ok(relay_start(&relay), "%s: a relay to kekd", batch ? "kek_unwrap_batch()" : "kek_unwrap()"))
                return;
        o.socket_path = relay.path;
        if (!ok(kekctl("create", key, NULL, NULL) == 0 && kek_client_new(&o, &c) == 0 &&
                        wrap_new(c, key, "if", &aek, &blob) == 0,
                "key '%s' created, a blob wrapped under it through the relay", key))
                goto out;
        for (t0 = mono_ms(); !s.watch_connected && mono_ms() - t0 < 10000; usleep(10 * 1000))
                kek_stats_get(c, &s);
        events0 = s.watch_events;
        f.c = c;
        relay_set(&relay, &relay.armed);
        if (!ok(s.watch_connected && pthread_create(&t, NULL, inflight_main, &f) == 0,
                "subscribed; an unwrap started, its answer to be held"))
                goto out;
        for (t0 = mono_ms(); !held && mono_ms() - t0 < 20000; usleep(10 * 1000))
                held = relay_held(&relay) > 0;
        ok(held, "kekd has answered; the relay holds the answer");
        ok(kekctl("disable", key, NULL, NULL) == 0, "key '%s' disabled meanwhile", key);
        for (t0 = mono_ms(); !event && mono_ms() - t0 < 20000; usleep(10 * 1000)) {
                kek_stats_get(c, &s);
                event = s.watch_events > events0;
        }
        ok(event, "the client applied the Watch event before the answer reached it");
        relay_set(&relay, &relay.release);
        pthread_join(t, NULL);
        ok(f.r == 0, "the held unwrap succeeds (kekd answered before the disable: %s)", f.r ? kek_strerror(f.r) : "ok");
        kek_stats_get(c, &s);
        requests0 = s.requests;
        r = kek_unwrap(c, blob.data, blob.len, (const uint8_t *) "if", 2, &got);
        kek_aek_unref(got);
        kek_stats_get(c, &s);
        ok(r == -(KEK_ERROR_BASE + KEK_E_KEY_DISABLED) && s.requests == requests0 + 1,
           "the answer was not cached: the next unwrap asks kekd and is refused (%s, %llu request(s))",
           r ? kek_strerror(r) : "ok", (unsigned long long) (s.requests - requests0));
out:
        kek_aek_unref(aek);
        free(blob.data);
        kek_client_free(c);
        relay_stop(&relay);
}

typedef struct Worker {
        kek_client *c;
        const kek_blob *blobs;
        kek_aek *const *aeks;
        int n_blobs, index, errors, ops;
} Worker;

static void *worker_main(void *userdata) {
        Worker *w = userdata;
        char ctx[32];

        for (int i = 0; i < 500; i++) {
                int k = (i * 7 + w->index) % w->n_blobs;

                snprintf(ctx, sizeof(ctx), "c%d", k);
                if (i % 10 == 0) {
                        kek_blob b = {};

                        if (kek_wrap(w->c, "acct", 0, kek_aek_data(w->aeks[k]), KEK_AEK_SIZE, (const uint8_t *) ctx,
                                     strlen(ctx), &b.data, &b.len, NULL) < 0 ||
                            !unwrap_is(w->c, &b, ctx, w->aeks[k], NULL))
                                w->errors++;
                        free(b.data);
                } else if (!unwrap_is(w->c, &w->blobs[k], ctx, w->aeks[k], NULL))
                        w->errors++;
                w->ops++;
        }
        return NULL;
}

static void test_threads(void) {
        enum { THREADS = 16, BLOBS = 64 };
        kek_client *c = NULL;
        kek_aek *aeks[BLOBS];
        kek_blob blobs[BLOBS];
        pthread_t th[THREADS];
        Worker w[THREADS];
        int errors = 0, ops = 0;

        new_client(0, 0, true, &c);
        for (int i = 0; i < BLOBS; i++) {
                char ctx[32];

                snprintf(ctx, sizeof(ctx), "c%d", i);
                blobs[i] = (kek_blob) {};
                wrap_new(c, "acct", ctx, &aeks[i], &blobs[i]);
        }
        kek_cache_clear(c);
        for (int i = 0; i < THREADS; i++) {
                w[i] = (Worker) { .c = c, .blobs = blobs, .aeks = aeks, .n_blobs = BLOBS, .index = i };
                pthread_create(&th[i], NULL, worker_main, &w[i]);
        }
        for (int i = 0; i < THREADS; i++) {
                pthread_join(th[i], NULL);
                errors += w[i].errors;
                ops += w[i].ops;
        }
        is_int(errors, 0, "%d threads x 500 mixed wrap/unwrap on one client: %d ops, no error", THREADS, ops);
        for (int i = 0; i < BLOBS; i++) {
                kek_aek_unref(aeks[i]);
                free(blobs[i].data);
        }
        kek_client_free(c);
}

/* Child of the core-dump test: caches an AEK, says so, and waits to be dumped. */
static int core_child(const char *blobfile) {
        kek_client *c = NULL;
        kek_aek *aek = NULL;
        uint8_t blob[2048];
        ssize_t n;
        int fd = open(blobfile, O_RDONLY | O_CLOEXEC);

        if (fd < 0 || (n = read(fd, blob, sizeof(blob))) <= 0)
                return 1;
        close(fd);
        if (new_client(0, 0, true, &c) < 0 || kek_unwrap(c, blob, (size_t) n, (const uint8_t *) "core", 4, &aek) < 0)
                return 2;
        /* The AEK stays cached and referenced; the process now waits. */
        if (write(STDOUT_FILENO, "ready\n", 6) != 6)
                return 3;
        pause();
        return 0;
}

static bool file_contains(const char *path, const uint8_t *needle, size_t len) {
        FILE *f = fopen(path, "re");
        uint8_t buf[1 << 16];
        size_t have = 0, n;
        bool found = false;

        if (!f)
                return false;
        while (!found && (n = fread(buf + have, 1, sizeof(buf) - have, f)) > 0) {
                have += n;
                found = memmem(buf, have, needle, len) != NULL;
                if (have > len) {
                        memmove(buf, buf + have - len, len);
                        have = len;
                }
        }
        fclose(f);
        return found;
}

static void test_core(const char *self) {
        char blobfile[4096], core[4096], corefile[4200], pidstr[32];
        kek_client *c = NULL;
        kek_aek *aek = NULL;
        kek_blob blob = {};
        int pipefd[2], fd;
        pid_t child;
        char buf[8] = {};

        if (access("/usr/bin/gcore", X_OK) != 0) {
                tap_skip("gcore (gdb) not installed");
                return;
        }
#if defined(__SANITIZE_ADDRESS__)
        /* gcore would write out ASan's terabytes of reserved shadow memory. */
        tap_skip("under AddressSanitizer");
        return;
#endif
        new_client(0, 0, false, &c);
        wrap_new(c, "acct", "core", &aek, &blob);
        snprintf(blobfile, sizeof(blobfile), "%s/core-blob", testdir);
        fd = open(blobfile, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (fd < 0 || write(fd, blob.data, blob.len) != (ssize_t) blob.len)
                return;
        close(fd);

        /* A fresh process (exec, not fork): it shares no memory with this one. */
        if (pipe(pipefd) < 0)
                return;
        child = fork();
        if (child == 0) {
                dup2(pipefd[1], STDOUT_FILENO);
                execl(self, self, "core-child", blobfile, (char *) NULL);
                _exit(127);
        }
        close(pipefd[1]);
        ok(read(pipefd[0], buf, 6) == 6 && strncmp(buf, "ready\n", 6) == 0, "client process holds the AEK in its cache");
        close(pipefd[0]);
        snprintf(core, sizeof(core), "%s/core", testdir);
        snprintf(pidstr, sizeof(pidstr), "%d", (int) child);
        ok(run_quiet((char *[]) { "/usr/bin/gcore", "-o", core, pidstr, NULL }) == 0, "gcore wrote a core file of it");
        kill(child, SIGKILL);
        waitpid(child, NULL, 0);
        snprintf(corefile, sizeof(corefile), "%s.%s", core, pidstr);
        {
                struct stat st;

                ok(stat(corefile, &st) == 0 && st.st_size > 100000, "the core file is real (%lld bytes)",
                   (long long) (stat(corefile, &st) == 0 ? st.st_size : 0));
        }
        ok(!file_contains(corefile, kek_aek_data(aek), kek_aek_size(aek)), "the plaintext AEK is nowhere in the core file");
        ok(file_contains(corefile, blob.data, 16), "(the check can find bytes: the blob's header is in the core file)");
        unlink(corefile);
        kek_aek_unref(aek);
        free(blob.data);
        kek_client_free(c);
}

/*
 * Issue 20.1: a blob's key and version are refused by kekd before anything
 * authenticates them, so a forged version must not empty the cache. N
 * accounts cached under v2 of "fv" (v1 disabled, Watch off so that only the
 * refusals themselves act on the cache), then blobs claiming version
 * 2147483647 and the disabled v1: nothing beyond their own entries goes and
 * the next N reads are all hits. A refusal of the held v2 drops them all.
 */
#define FORGED_N 1000
#define FORGED_BATCH 250

static void unwrap_all(kek_client *c, const kek_blob *blobs, const kek_blob *ctxs, kek_aek *const *aeks, size_t *ret_same) {
        size_t same = 0;

        for (size_t i = 0; i < FORGED_N; i++) {
                kek_aek *got = NULL;

                if (kek_unwrap(c, blobs[i].data, blobs[i].len, ctxs[i].data, ctxs[i].len, &got) == 0 &&
                    memcmp(kek_aek_data(got), kek_aek_data(aeks[i]), KEK_AEK_SIZE) == 0)
                        same++;
                kek_aek_unref(got);
        }
        *ret_same = same;
}

static void forged_check(kek_client *c, const kek_blob *good, uint32_t version, int want, const char *what,
                         const kek_blob *blobs, const kek_blob *ctxs, kek_aek *const *aeks) {
        uint8_t *f = malloc(good->len);
        size_t off = 2 + (size_t) good->data[1], same = 0;
        kek_aek *got = NULL;
        kek_stats s0, s1, s2;
        int r;

        memcpy(f, good->data, good->len);
        f[off] = (uint8_t) (version >> 24);
        f[off + 1] = (uint8_t) (version >> 16);
        f[off + 2] = (uint8_t) (version >> 8);
        f[off + 3] = (uint8_t) version;
        kek_stats_get(c, &s0);
        r = kek_unwrap(c, f, good->len, ctxs[0].data, ctxs[0].len, &got);
        kek_aek_unref(got);
        kek_stats_get(c, &s1);
        ok(r == want, "a blob forged to claim %s is refused (%s)", what, kek_strerror(r));
        ok(s1.entries == FORGED_N && s1.drops == s0.drops, "... and drops no cached entry (%llu of %d left, %llu drops)",
           (unsigned long long) s1.entries, FORGED_N, (unsigned long long) (s1.drops - s0.drops));
        unwrap_all(c, blobs, ctxs, aeks, &same);
        kek_stats_get(c, &s2);
        ok(same == FORGED_N && s2.requests == s1.requests && s2.hits - s1.hits == FORGED_N,
           "... the next %d reads are all cache hits (%zu right, %llu requests to kekd, %llu hits)", FORGED_N, same,
           (unsigned long long) (s2.requests - s1.requests), (unsigned long long) (s2.hits - s1.hits));
        free(f);
}

static void test_forged_version(void) {
        kek_options o = { .socket_path = sock, .refresh_sec = 60, .watch_disabled = true, .timeout_ms = 60000 };
        kek_client *c = NULL;
        kek_aek *aeks[FORGED_N] = {}, *got[FORGED_N] = {};
        kek_blob blobs[FORGED_N] = {}, ctxs[FORGED_N] = {}, spare = {};
        kek_aek *spare_aek = NULL;
        char ctxbuf[FORGED_N][16];
        int res[FORGED_N];
        size_t wrapped = 0, cached = 0;
        kek_stats s0, s1;
        int r;

        ok(kekctl("create", "fv", NULL, NULL) == 0 && kekctl("rotate", "fv", NULL, NULL) == 0 &&
                   kekctl("disable", "fv", "--key-version", "1") == 0,
           "key 'fv' rotated to version 2, version 1 disabled");
        ok(kek_client_new(&o, &c) == 0, "a client without Watch");
        for (size_t i = 0; i < FORGED_N; i++) {
                snprintf(ctxbuf[i], sizeof(ctxbuf[i]), "acct-%zu", i);
                ctxs[i] = (kek_blob) { (uint8_t *) ctxbuf[i], strlen(ctxbuf[i]) };
                (void) kek_aek_generate(&aeks[i]);
        }
        for (size_t i = 0; i < FORGED_N; i += FORGED_BATCH)
                if (kek_wrap_batch(c, "fv", FORGED_BATCH, aeks + i, ctxs + i, blobs + i, res + i) == 0)
                        for (size_t j = i; j < i + FORGED_BATCH; j++)
                                wrapped += res[j] == 0;
        for (size_t i = 0; i < FORGED_N; i += FORGED_BATCH)
                if (kek_unwrap_batch(c, FORGED_BATCH, blobs + i, ctxs + i, got + i, res + i) == 0)
                        for (size_t j = i; j < i + FORGED_BATCH; j++)
                                cached += res[j] == 0;
        for (size_t i = 0; i < FORGED_N; i++)
                kek_aek_unref(got[i]);
        kek_stats_get(c, &s0);
        ok(wrapped == FORGED_N && cached == FORGED_N && s0.entries == FORGED_N, "%d accounts wrapped under v2 and cached (%llu)",
           FORGED_N, (unsigned long long) s0.entries);
        if (s0.entries == FORGED_N) {
                forged_check(c, &blobs[0], 2147483647u, -(KEK_ERROR_BASE + KEK_E_UNKNOWN_VERSION), "version 2147483647", blobs,
                             ctxs, aeks);
                forged_check(c, &blobs[0], 1, -(KEK_ERROR_BASE + KEK_E_KEY_DISABLED), "the disabled version 1", blobs, ctxs,
                             aeks);
        }

        /* An authenticated signal: kekd refuses version 2 itself, which this cache holds. */
        r = wrap_new(c, "fv", "spare", &spare_aek, &spare);
        ok(r == 0 && kekctl("disable", "fv", NULL, NULL) == 0, "a spare blob under v2, then key 'fv' disabled");
        r = kek_unwrap(c, spare.data, spare.len, (const uint8_t *) "spare", 5, &got[0]);
        kek_stats_get(c, &s1);
        ok(r == -(KEK_ERROR_BASE + KEK_E_KEY_DISABLED) && s1.entries == 0 && s1.drops - s0.drops == FORGED_N,
           "a refusal of the held version 2 drops every entry of the key (%s, %llu left, %llu drops)", kek_strerror(r),
           (unsigned long long) s1.entries, (unsigned long long) (s1.drops - s0.drops));

        for (size_t i = 0; i < FORGED_N; i++) {
                kek_aek_unref(aeks[i]);
                free(blobs[i].data);
        }
        kek_aek_unref(spare_aek);
        free(spare.data);
        kek_client_free(c);
}

int main(int argc, char *argv[]) {
        if (argc == 3 && strcmp(argv[1], "core-child") == 0) {
                sock = getenv("KEKD_SOCKET");
                return core_child(argv[2]);
        }
        kekd_path = getenv("KEKD");
        kekctl_path = getenv("KEKCTL");
        conf = getenv("CONF");
        sock = getenv("KEKD_SOCKET");
        testdir = getenv("TESTDIR");
        if (!kekd_path || !kekctl_path || !conf || !sock || !testdir) {
                printf("Bail out! KEKD, KEKCTL, CONF, KEKD_SOCKET, TESTDIR must be set\n");
                return 1;
        }
        atexit(cleanup);
        signal(SIGPIPE, SIG_IGN);
        if (!ok(kekd_start(), "kekd started")) {
                return tap_done();
        }
        ok(kekctl("create", "acct", NULL, NULL) == 0 && kekctl("create", "rev", NULL, NULL) == 0 &&
           kekctl("create", "cf1", NULL, NULL) == 0 && kekctl("create", "cf2", NULL, NULL) == 0, "keys created");
        test_roundtrip_and_blocks();
        test_cache_hits();
        test_threads();
        test_revocation();
        test_confirm(false, false);
        test_confirm(true, false);
        test_confirm(false, true);
        test_inflight_revocation(false);
        test_inflight_revocation(true);
        test_forged_version();
        test_core(argv[0]);
        test_refresh_and_grace();
        kekd_kill(SIGTERM);
        return tap_done();
}
