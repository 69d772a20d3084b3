/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * kek-dr: the bulk client of tests/integration/dr.sh, through libkek's batch
 * calls (one request per key and round), so 1000 AEKs take seconds.
 *
 *   kek-dr SOCKET wrap FILE N KEY...
 *       wraps N random AEKs, spread round-robin over the KEYs (their current
 *       versions), context "dr-I"; appends "I HEX(AEK) HEX(BLOB)" lines to
 *       FILE (test data: these AEKs protect nothing)
 *   kek-dr SOCKET unwrap FILE
 *       unwraps every blob of FILE (cache off) and compares it with its AEK;
 *       prints "unwrapped X of N" and each failure; exit 0 only if X == N
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/libkek.h"

#define LINE_MAX_LEN 4096
#define CHUNK 100

static void hex(FILE *f, const uint8_t *p, size_t n) {
        for (size_t i = 0; i < n; i++)
                fprintf(f, "%02x", p[i]);
}

static size_t unhex(const char *s, uint8_t *out, size_t max) {
        size_t n = strlen(s), k = 0;

        if (n % 2 || n / 2 > max)
                return 0;
        for (size_t i = 0; i < n; i += 2) {
                unsigned v;

                if (sscanf(s + i, "%2x", &v) != 1)
                        return 0;
                out[k++] = (uint8_t) v;
        }
        return k;
}

static int do_wrap(kek_client *c, const char *file, unsigned n, char **keys, unsigned n_keys) {
        FILE *f = fopen(file, "ae");
        unsigned done = 0;
        static unsigned base;

        if (!f)
                return 2;
        /* Indexes continue across runs that append to the same file. */
        {
                FILE *r = fopen(file, "re");
                char line[LINE_MAX_LEN];

                base = 0;
                while (r && fgets(line, sizeof(line), r))
                        base++;
                if (r)
                        fclose(r);
        }
        for (unsigned k = 0; k < n_keys; k++) {
                unsigned mine = n / n_keys + (k < n % n_keys);

                for (unsigned off = 0; off < mine; off += CHUNK) {
                        unsigned m = mine - off < CHUNK ? mine - off : CHUNK;
                        kek_aek *aeks[CHUNK];
                        kek_blob ctxs[CHUNK], blobs[CHUNK];
                        char ctxbuf[CHUNK][32];
                        int results[CHUNK], r;

                        for (unsigned i = 0; i < m; i++) {
                                if (kek_aek_generate(&aeks[i]) < 0)
                                        return 2;
                                snprintf(ctxbuf[i], sizeof(ctxbuf[i]), "dr-%u", base + done + i);
                                ctxs[i] = (kek_blob) { (uint8_t *) ctxbuf[i], strlen(ctxbuf[i]) };
                        }
                        r = kek_wrap_batch(c, keys[k], m, aeks, ctxs, blobs, results);
                        if (r < 0) {
                                fprintf(stderr, "kek-dr: wrap under %s: %s\n", keys[k], kek_strerror(r));
                                return 1;
                        }
                        for (unsigned i = 0; i < m; i++) {
                                if (results[i] < 0) {
                                        fprintf(stderr, "kek-dr: wrap %u: %s\n", base + done + i, kek_strerror(results[i]));
                                        return 1;
                                }
                                fprintf(f, "%u ", base + done + i);
                                hex(f, kek_aek_data(aeks[i]), kek_aek_size(aeks[i]));
                                fputc(' ', f);
                                hex(f, blobs[i].data, blobs[i].len);
                                fputc('\n', f);
                                free(blobs[i].data);
                                kek_aek_unref(aeks[i]);
                        }
                        done += m;
                }
        }
        fclose(f);
        printf("wrapped %u\n", done);
        return 0;
}

static int do_unwrap(kek_client *c, const char *file) {
        FILE *f = fopen(file, "re");
        char line[LINE_MAX_LEN];
        unsigned n = 0, good = 0;

        if (!f)
                return 2;
        while (fgets(line, sizeof(line), f)) {
                char aek_hex[256], blob_hex[LINE_MAX_LEN], ctx[32];
                uint8_t aek[128], blob[LINE_MAX_LEN / 2];
                unsigned idx;
                size_t aek_len, blob_len;
                kek_aek *got = NULL;
                int r;

                if (sscanf(line, "%u %255s %4095s", &idx, aek_hex, blob_hex) != 3)
                        continue;
                n++;
                aek_len = unhex(aek_hex, aek, sizeof(aek));
                blob_len = unhex(blob_hex, blob, sizeof(blob));
                snprintf(ctx, sizeof(ctx), "dr-%u", idx);
                r = kek_unwrap(c, blob, blob_len, (const uint8_t *) ctx, strlen(ctx), &got);
                if (r == 0 && kek_aek_size(got) == aek_len && memcmp(kek_aek_data(got), aek, aek_len) == 0)
                        good++;
                else if (n - good <= 5)
                        printf("failed %u: %s\n", idx, r < 0 ? kek_strerror(r) : "another AEK");
                if (got)
                        kek_aek_unref(got);
        }
        fclose(f);
        printf("unwrapped %u of %u\n", good, n);
        return good == n && n > 0 ? 0 : 1;
}

int main(int argc, char *argv[]) {
        kek_options o = { .timeout_ms = 30000, .cache_disabled = true, .watch_disabled = true };
        kek_client *c = NULL;
        int r;

        if (argc < 4 || (strcmp(argv[2], "wrap") == 0 && argc < 6)) {
                fprintf(stderr, "usage: kek-dr SOCKET wrap FILE N KEY... | kek-dr SOCKET unwrap FILE\n");
                return 2;
        }
        o.socket_path = argv[1];
        r = kek_client_new(&o, &c);
        if (r < 0) {
                fprintf(stderr, "kek-dr: %s\n", kek_strerror(r));
                return 2;
        }
        if (strcmp(argv[2], "wrap") == 0)
                r = do_wrap(c, argv[3], (unsigned) strtoul(argv[4], NULL, 10), argv + 5, (unsigned) (argc - 5));
        else
                r = do_unwrap(c, argv[3]);
        kek_client_free(c);
        return r;
}
