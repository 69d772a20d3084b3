/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A libkek client that holds one AEK in its cache and watches for it to be
 * taken away, for the grant-revocation test (tests/integration/access.sh):
 *
 *   kek-cache-probe BLOBFILE CONTEXT READYFILE SECONDS
 *
 * It waits for its Watch stream, unwraps the blob once (a round trip), checks that the next unwrap is a
 * cache hit (no round trip), creates READYFILE, then unwraps every 20 ms. It
 * prints "dropped after N ms: ERROR" and exits 0 as soon as an unwrap fails
 * with a definitive error and the cache holds no entry any more; it exits 1
 * if that does not happen within SECONDS, 2 on setup failures.
 */
#include "config.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "client/libkek.h"

static uint64_t mono_ms(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000 + (uint64_t) ts.tv_nsec / 1000000;
}

int main(int argc, char *argv[]) {
        kek_options opts = { .refresh_sec = 60 };
        uint8_t blob[4096];
        kek_client *c = NULL;
        kek_aek *aek = NULL;
        kek_stats st;
        uint64_t start, requests;
        ssize_t n;
        int fd, r;

        if (argc != 5)
                return 2;
        fd = open(argv[1], O_RDONLY | O_CLOEXEC);
        if (fd < 0 || (n = read(fd, blob, sizeof(blob))) <= 0)
                return 2;
        close(fd);
        if (kek_client_new(&opts, &c) < 0)
                return 2;
        /* The Watch subscription's first event marks the whole cache stale (events may have
         * been missed): wait for it, bounded, so it cannot land between the two unwraps below. */
        start = mono_ms();
        do {
                kek_stats_get(c, &st);
                if (!st.watch_connected)
                        usleep(10 * 1000);
        } while (!st.watch_connected && mono_ms() - start < 20000);
        if (!st.watch_connected) {
                fprintf(stderr, "the Watch stream did not connect within 20 s\n");
                return 2;
        }
        r = kek_unwrap(c, blob, (size_t) n, (const uint8_t *) argv[2], strlen(argv[2]), &aek);
        if (r < 0) {
                fprintf(stderr, "first unwrap: %s\n", kek_strerror(r));
                return 2;
        }
        kek_aek_unref(aek);
        kek_stats_get(c, &st);
        requests = st.requests;
        r = kek_unwrap(c, blob, (size_t) n, (const uint8_t *) argv[2], strlen(argv[2]), &aek);
        kek_stats_get(c, &st);
        if (r < 0 || st.requests != requests || st.entries != 1) {
                fprintf(stderr, "second unwrap was not a cache hit\n");
                return 2;
        }
        kek_aek_unref(aek);
        fd = open(argv[3], O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
        if (fd < 0)
                return 2;
        close(fd);

        start = mono_ms();
        while (mono_ms() - start < (uint64_t) atoi(argv[4]) * 1000) {
                r = kek_unwrap(c, blob, (size_t) n, (const uint8_t *) argv[2], strlen(argv[2]), &aek);
                if (r >= 0)
                        kek_aek_unref(aek);
                else if (!kek_error_is_transient(r)) {
                        kek_stats_get(c, &st);
                        printf("dropped after %llu ms: %s; cache entries %llu, drops %llu\n",
                               (unsigned long long) (mono_ms() - start), kek_strerror(r),
                               (unsigned long long) st.entries, (unsigned long long) st.drops);
                        kek_client_free(c);
                        return st.entries == 0 ? 0 : 1;
                }
                usleep(20 * 1000);
        }
        printf("still served from the cache after %s s\n", argv[4]);
        kek_client_free(c);
        return 1;
}
