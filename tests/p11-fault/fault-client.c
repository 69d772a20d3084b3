/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * fault-client: one long-lived libkek client for tests/integration/fault.sh,
 * so a test can fill its AEK cache, break the HSM behind kekd (p11-fault) and
 * see what the same client then gets. It reads one command per line on stdin
 * and answers each with exactly one line on stdout (flushed):
 *
 *   wrap KEY CTX IN OUT      wrap the bytes of file IN, blob to file OUT
 *   unwrap CTX BLOB EXPECT   unwrap file BLOB; the AEK must equal file EXPECT
 *   rewrap CTX IN OUT        rewrap blob IN under the current version, to OUT
 *   stats                    the client's cache counters
 *   quit
 *
 * Answers: "ok ..." or "err NAME transient|definitive", where NAME is
 * kek_strerror()'s; wrap, unwrap and rewrap also give how the call was served
 * (" sent=N hit=N stale=N": requests sent to kekd, cache hits, stale entries
 * served through a transient error). Options: -s SOCKET, -r REFRESH_SEC,
 * -g GRACE_SEC, -t TIMEOUT_MS, -W (no Watch stream). The process ends by
 * itself after 120 s (alarm) so a test can never hang on it.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "client/libkek.h"

static int read_file(const char *path, uint8_t **ret, size_t *ret_len) {
        uint8_t *buf = NULL;
        size_t len = 0, cap = 0;
        FILE *f = fopen(path, "re");

        if (!f)
                return -errno;
        for (;;) {
                size_t n;

                if (cap - len < 4096) {
                        uint8_t *p = realloc(buf, cap + 65536);

                        if (!p) {
                                free(buf);
                                fclose(f);
                                return -ENOMEM;
                        }
                        buf = p;
                        cap += 65536;
                }
                n = fread(buf + len, 1, cap - len, f);
                len += n;
                if (n == 0)
                        break;
        }
        fclose(f);
        *ret = buf;
        *ret_len = len;
        return 0;
}

static int write_file(const char *path, const uint8_t *data, size_t len) {
        FILE *f = fopen(path, "we");
        int r = 0;

        if (!f)
                return -errno;
        if (fwrite(data, 1, len, f) != len)
                r = -EIO;
        if (fclose(f) != 0 && r == 0)
                r = -errno;
        return r;
}

static void answer_error(int r, const kek_stats *before, kek_client *c) {
        kek_stats s;

        kek_stats_get(c, &s);
        printf("err %s %s sent=%llu hit=%llu stale=%llu\n", kek_strerror(r),
               kek_error_is_transient(r) ? "transient" : "definitive",
               (unsigned long long) (s.requests - before->requests), (unsigned long long) (s.hits - before->hits),
               (unsigned long long) (s.stale_served - before->stale_served));
}

static void answer_ok(const char *extra, const kek_stats *before, kek_client *c) {
        kek_stats s;

        kek_stats_get(c, &s);
        printf("ok%s sent=%llu hit=%llu stale=%llu\n", extra, (unsigned long long) (s.requests - before->requests),
               (unsigned long long) (s.hits - before->hits),
               (unsigned long long) (s.stale_served - before->stale_served));
}

static void cmd_wrap(kek_client *c, char **a, size_t n) {
        uint8_t *in = NULL, *blob = NULL;
        size_t in_len = 0, blob_len = 0;
        uint32_t version = 0;
        char extra[32];
        kek_stats before;
        int r;

        if (n != 5) {
                printf("err usage definitive\n");
                return;
        }
        r = read_file(a[3], &in, &in_len);
        if (r < 0) {
                printf("err %s definitive\n", strerror(-r));
                return;
        }
        kek_stats_get(c, &before);
        r = kek_wrap(c, a[1], 0, in, in_len, (const uint8_t *) a[2], strlen(a[2]), &blob, &blob_len, &version);
        free(in);
        if (r < 0) {
                answer_error(r, &before, c);
                return;
        }
        r = write_file(a[4], blob, blob_len);
        free(blob);
        if (r < 0) {
                printf("err %s definitive\n", strerror(-r));
                return;
        }
        snprintf(extra, sizeof(extra), " version=%u", version);
        answer_ok(extra, &before, c);
}

static void cmd_unwrap(kek_client *c, char **a, size_t n) {
        uint8_t *blob = NULL, *expect = NULL;
        size_t blob_len = 0, expect_len = 0;
        kek_stats before;
        kek_aek *aek = NULL;
        int r;

        if (n != 4) {
                printf("err usage definitive\n");
                return;
        }
        r = read_file(a[2], &blob, &blob_len);
        if (r >= 0)
                r = read_file(a[3], &expect, &expect_len);
        if (r < 0) {
                free(blob);
                printf("err %s definitive\n", strerror(-r));
                return;
        }
        kek_stats_get(c, &before);
        r = kek_unwrap(c, blob, blob_len, (const uint8_t *) a[1], strlen(a[1]), &aek);
        free(blob);
        if (r < 0) {
                free(expect);
                answer_error(r, &before, c);
                return;
        }
        if (kek_aek_size(aek) != expect_len || memcmp(kek_aek_data(aek), expect, expect_len) != 0)
                printf("err MISMATCH definitive\n");
        else
                answer_ok("", &before, c);
        kek_aek_unref(aek);
        free(expect);
}

static void cmd_rewrap(kek_client *c, char **a, size_t n) {
        uint8_t *in = NULL, *blob = NULL;
        size_t in_len = 0, blob_len = 0;
        uint32_t version = 0;
        char extra[32];
        kek_stats before;
        int r;

        if (n != 4) {
                printf("err usage definitive\n");
                return;
        }
        r = read_file(a[2], &in, &in_len);
        if (r < 0) {
                printf("err %s definitive\n", strerror(-r));
                return;
        }
        kek_stats_get(c, &before);
        r = kek_rewrap(c, in, in_len, (const uint8_t *) a[1], strlen(a[1]), &blob, &blob_len, &version);
        free(in);
        if (r < 0) {
                answer_error(r, &before, c);
                return;
        }
        r = write_file(a[3], blob, blob_len);
        free(blob);
        if (r < 0) {
                printf("err %s definitive\n", strerror(-r));
                return;
        }
        snprintf(extra, sizeof(extra), " version=%u", version);
        answer_ok(extra, &before, c);
}

int main(int argc, char *argv[]) {
        kek_options opts = { .timeout_ms = 3000 };
        kek_client *c = NULL;
        char line[8192];
        int opt, r;

        while ((opt = getopt(argc, argv, "s:r:g:t:W")) != -1)
                switch (opt) {
                case 's':
                        opts.socket_path = optarg;
                        break;
                case 'r':
                        opts.refresh_sec = (unsigned) strtoul(optarg, NULL, 10);
                        break;
                case 'g':
                        opts.grace_sec = (unsigned) strtoul(optarg, NULL, 10);
                        break;
                case 't':
                        opts.timeout_ms = (unsigned) strtoul(optarg, NULL, 10);
                        break;
                case 'W':
                        opts.watch_disabled = true;
                        break;
                default:
                        fprintf(stderr, "usage: fault-client [-s SOCKET] [-r REFRESH_SEC] [-g GRACE_SEC] [-t TIMEOUT_MS] [-W]\n");
                        return 2;
                }
        alarm(120);
        setvbuf(stdout, NULL, _IOLBF, 0);
        r = kek_client_new(&opts, &c);
        if (r < 0) {
                printf("err %s definitive\n", kek_strerror(r));
                return 1;
        }
        printf("ready\n");
        while (fgets(line, sizeof(line), stdin)) {
                char *a[8], *save = NULL, *p;
                size_t n = 0;

                for (p = strtok_r(line, " \t\n", &save); p && n < 8; p = strtok_r(NULL, " \t\n", &save))
                        a[n++] = p;
                if (n == 0) {
                        printf("err usage definitive\n");
                        continue;
                }
                if (strcmp(a[0], "wrap") == 0)
                        cmd_wrap(c, a, n);
                else if (strcmp(a[0], "unwrap") == 0)
                        cmd_unwrap(c, a, n);
                else if (strcmp(a[0], "rewrap") == 0)
                        cmd_rewrap(c, a, n);
                else if (strcmp(a[0], "stats") == 0) {
                        kek_stats s;

                        kek_stats_get(c, &s);
                        printf("ok hits=%llu misses=%llu refreshes=%llu stale_served=%llu requests=%llu entries=%llu watch=%d\n",
                               (unsigned long long) s.hits, (unsigned long long) s.misses,
                               (unsigned long long) s.refreshes, (unsigned long long) s.stale_served,
                               (unsigned long long) s.requests, (unsigned long long) s.entries, s.watch_connected);
                } else if (strcmp(a[0], "quit") == 0) {
                        printf("ok bye\n");
                        break;
                } else
                        printf("err usage definitive\n");
        }
        kek_client_free(c);
        return 0;
}
