/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * kek-failover: the 64 clients of tests/integration/failover.sh (issue 17,
 * "Failover"). Each of THREADS threads has a kek_client of its own (its own
 * connection to kekd, cache off, so every unwrap reaches kekd) and loops: wrap
 * a fresh random AEK under KEY, unwrap the blob, compare. It stops when the
 * phase file says "stop", after MAX_SEC seconds, or after 10^7 rounds per
 * thread, whichever comes first.
 *
 *   kek-failover SOCKET KEY DIR THREADS MAX_SEC
 *
 * DIR/phase names the current phase (the test renames a new file over it); a
 * monitor thread reads it every 10 ms. Each operation counts in the phase
 * that was current when it started. Each thread keeps the first 4 blobs it
 * made in each phase and appends them at the end to DIR/blobs-PHASE as
 * kek-dr lines ("I HEX(AEK) HEX(BLOB)", context "dr-I"), so `kek-dr SOCKET
 * unwrap FILE` checks later which token can still open them.
 *
 * Output, one line per phase in order of first appearance:
 *   phase NAME ok=N failed=F seconds=S ops_per_sec=R max_ms=M
 * (ok counts wraps and unwraps that succeeded and matched), then each
 * failure's first occurrences as "fail PHASE OP ERROR". Exit 0 when it ran.
 * Test data: these AEKs protect nothing.
 */
#include "config.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "client/libkek.h"

#define PHASES_MAX 16
#define PHASE_NAME_MAX 32
#define KEEP 4
#define ROUNDS_MAX 10000000u          /* ids t * ROUNDS_MAX + round stay below 2^32 (kek-dr reads them so) */
#define FAILS_SHOWN 20

typedef struct Phase {
        char name[PHASE_NAME_MAX];
        atomic_uint_fast64_t ok, failed, max_usec;
        uint64_t first_usec, last_usec;  /* under lock */
} Phase;

static const char *sock, *key, *dir;
static Phase phases[PHASES_MAX];
static atomic_int current = -1;     /* index into phases */
static atomic_bool stop;
static int n_phases;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned fails_shown;

static uint64_t now_usec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000u + (uint64_t) ts.tv_nsec / 1000u;
}

static void hex(FILE *f, const uint8_t *p, size_t n) {
        for (size_t i = 0; i < n; i++)
                fprintf(f, "%02x", p[i]);
}

/* The phase named in DIR/phase; a new one is added. "stop" stops. */
static void read_phase(void) {
        char path[4096], name[PHASE_NAME_MAX] = "";
        FILE *f;

        snprintf(path, sizeof(path), "%s/phase", dir);
        f = fopen(path, "re");
        if (!f)
                return;
        if (!fgets(name, sizeof(name), f))
                name[0] = 0;
        fclose(f);
        name[strcspn(name, "\n")] = 0;
        if (!name[0])
                return;
        if (strcmp(name, "stop") == 0) {
                stop = true;
                return;
        }
        pthread_mutex_lock(&lock);
        for (int i = 0; i < n_phases; i++)
                if (strcmp(phases[i].name, name) == 0) {
                        current = i;
                        pthread_mutex_unlock(&lock);
                        return;
                }
        if (n_phases < PHASES_MAX) {
                snprintf(phases[n_phases].name, PHASE_NAME_MAX, "%s", name);
                current = n_phases++;
        }
        pthread_mutex_unlock(&lock);
}

static void count(int p, bool good, uint64_t start, const char *op, int r) {
        Phase *ph = &phases[p];
        uint64_t took = now_usec() - start, m = atomic_load(&ph->max_usec);

        while (took > m && !atomic_compare_exchange_weak(&ph->max_usec, &m, took))
                ;
        if (good)
                atomic_fetch_add(&ph->ok, 1);
        else {
                atomic_fetch_add(&ph->failed, 1);
                pthread_mutex_lock(&lock);
                if (fails_shown++ < FAILS_SHOWN)
                        printf("fail %s %s %s\n", ph->name, op, r < 0 ? kek_strerror(r) : "mismatch");
                pthread_mutex_unlock(&lock);
        }
        pthread_mutex_lock(&lock);
        if (!ph->first_usec || start < ph->first_usec)
                ph->first_usec = start;
        if (now_usec() > ph->last_usec)
                ph->last_usec = now_usec();
        pthread_mutex_unlock(&lock);
}

typedef struct Kept {
        uint64_t id;
        uint8_t aek[32];
        uint8_t *blob;
        size_t blob_len;
} Kept;

static void *client_thread(void *userdata) {
        unsigned t = (unsigned) (uintptr_t) userdata;
        kek_options o = { .socket_path = sock, .timeout_ms = 30000, .cache_disabled = true, .watch_disabled = true };
        static Kept kept_all[256][PHASES_MAX][KEEP];
        Kept (*kept)[KEEP] = kept_all[t];
        unsigned n_kept[PHASES_MAX] = { 0 };
        kek_client *c = NULL;
        int r;

        r = kek_client_new(&o, &c);
        if (r < 0) {
                fprintf(stderr, "thread %u: kek_client_new: %s\n", t, kek_strerror(r));
                return NULL;
        }
        for (unsigned round = 0; round < ROUNDS_MAX && !stop; round++) {
                uint64_t id = (uint64_t) t * ROUNDS_MAX + round, start;
                uint8_t aek[32], *blob = NULL;
                size_t blob_len = 0;
                uint32_t version;
                char ctx[32];
                kek_aek *back = NULL;
                int p = current;

                if (p < 0) {
                        usleep(10000);
                        continue;
                }
                snprintf(ctx, sizeof(ctx), "dr-%llu", (unsigned long long) id);
                if (kek_aek_generate(&back) < 0)
                        break;
                memcpy(aek, kek_aek_data(back), sizeof(aek));
                kek_aek_unref(back);
                back = NULL;
                start = now_usec();
                r = kek_wrap(c, key, 0, aek, sizeof(aek), (const uint8_t *) ctx, strlen(ctx), &blob, &blob_len, &version);
                count(p, r >= 0, start, "wrap", r);
                if (r < 0)
                        continue;
                p = current;
                start = now_usec();
                r = kek_unwrap(c, blob, blob_len, (const uint8_t *) ctx, strlen(ctx), &back);
                count(p, r >= 0 && kek_aek_size(back) == sizeof(aek) && memcmp(kek_aek_data(back), aek, sizeof(aek)) == 0,
                      start, "unwrap", r);
                if (back)
                        kek_aek_unref(back);
                if (r >= 0 && n_kept[p] < KEEP) {
                        Kept *k = &kept[p][n_kept[p]++];

                        k->id = id;
                        memcpy(k->aek, aek, sizeof(aek));
                        k->blob = blob;
                        k->blob_len = blob_len;
                        blob = NULL;
                }
                free(blob);
        }
        kek_client_free(c);
        pthread_mutex_lock(&lock);
        for (int p = 0; p < n_phases; p++) {
                char path[4096];
                FILE *f;

                if (n_kept[p] == 0)
                        continue;
                snprintf(path, sizeof(path), "%s/blobs-%s", dir, phases[p].name);
                f = fopen(path, "ae");
                for (unsigned i = 0; f && i < n_kept[p]; i++) {
                        fprintf(f, "%llu ", (unsigned long long) kept[p][i].id);
                        hex(f, kept[p][i].aek, sizeof(kept[p][i].aek));
                        fputc(' ', f);
                        hex(f, kept[p][i].blob, kept[p][i].blob_len);
                        fputc('\n', f);
                }
                if (f)
                        fclose(f);
                for (unsigned i = 0; i < n_kept[p]; i++)
                        free(kept[p][i].blob);
        }
        pthread_mutex_unlock(&lock);
        return NULL;
}

int main(int argc, char *argv[]) {
        pthread_t threads[256];
        unsigned n, max_sec;
        uint64_t deadline;

        if (argc != 6) {
                fprintf(stderr, "usage: kek-failover SOCKET KEY DIR THREADS MAX_SEC\n");
                return 2;
        }
        sock = argv[1];
        key = argv[2];
        dir = argv[3];
        n = (unsigned) atoi(argv[4]);
        max_sec = (unsigned) atoi(argv[5]);
        if (n == 0 || n > 256 || max_sec == 0)
                return 2;
        setvbuf(stdout, NULL, _IOLBF, 0);
        read_phase();
        for (unsigned i = 0; i < n; i++)
                if (pthread_create(&threads[i], NULL, client_thread, (void *) (uintptr_t) i) != 0)
                        return 2;
        deadline = now_usec() + (uint64_t) max_sec * 1000000u;
        while (!stop && now_usec() < deadline) {
                usleep(10000);
                read_phase();
        }
        stop = true;
        for (unsigned i = 0; i < n; i++)
                pthread_join(threads[i], NULL);
        for (int p = 0; p < n_phases; p++) {
                Phase *ph = &phases[p];
                double sec = ph->last_usec > ph->first_usec ? (double) (ph->last_usec - ph->first_usec) / 1e6 : 0;
                uint64_t ok = atomic_load(&ph->ok);

                printf("phase %s ok=%llu failed=%llu seconds=%.2f ops_per_sec=%.0f max_ms=%.1f\n", ph->name,
                       (unsigned long long) ok, (unsigned long long) atomic_load(&ph->failed), sec,
                       sec > 0 ? (double) ok / sec : 0, (double) atomic_load(&ph->max_usec) / 1000.0);
        }
        return 0;
}
