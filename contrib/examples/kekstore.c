/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * kekstore: an example storage program on libkek. It keeps files in a
 * directory as encrypted blocks: each account has its own AEK, stored only
 * wrapped by a kekd key (ACCOUNT/aek.blob, context "kekstore:ACCOUNT"), and
 * every 4 KiB block of a file is sealed with a DEK derived from the AEK and
 * the block's context "ACCOUNT/NAME/N", so blocks cannot be swapped between
 * files, positions or accounts unnoticed.
 *
 *   kekstore [-s SOCKET] DIR put ACCOUNT NAME KEY < data   (KEY wraps a new account's AEK)
 *   kekstore [-s SOCKET] DIR get ACCOUNT NAME > data
 *   kekstore [-s SOCKET] DIR rewrap ACCOUNT                 (AEK re-wrapped under the key's current version)
 *   kekstore [-s SOCKET] DIR info ACCOUNT
 *
 * File format: "KST1", then per block a 4-byte big-endian length and the
 * sealed block (see kek_block_seal()). Exit status 0 ok, 1 refused or
 * corrupt, 2 usage, 3 kekd unreachable, 4 local I/O.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "client/libkek.h"

#define BLOCK 4096u
#define MAGIC "KST1"

static int fail(int r, const char *what) {
        fprintf(stderr, "kekstore: %s: %s\n", what, kek_strerror(r));
        if (r <= -KEK_ERROR_BASE)
                return kek_error_is_transient(r) ? 3 : 1;
        return r == -ECONNREFUSED || r == -ENOENT || r == -ECONNRESET || r == -ETIMEDOUT ? 3 : 4;
}

static int read_file(const char *path, uint8_t **ret, size_t *ret_len) {
        FILE *f = fopen(path, "re");
        uint8_t *buf = NULL;
        size_t len = 0, cap = 0;

        if (!f)
                return -errno;
        for (;;) {
                size_t n;

                if (cap - len < BLOCK) {
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
        char tmp[4096];
        int fd;

        /* Write aside, then rename: a crash never leaves a half-written file under the real name. */
        snprintf(tmp, sizeof(tmp), "%s.tmp", path);
        fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (fd < 0)
                return -errno;
        while (len > 0) {
                ssize_t n = write(fd, data, len);

                if (n < 0) {
                        int r = -errno;

                        close(fd);
                        unlink(tmp);
                        return r;
                }
                data += n;
                len -= (size_t) n;
        }
        if (fsync(fd) < 0 || close(fd) < 0 || rename(tmp, path) < 0)
                return -errno;
        return 0;
}

static void ctx_of(const char *account, char *buf, size_t size) {
        snprintf(buf, size, "kekstore:%s", account);
}

/* The account's AEK: unwrapped from ACCOUNT/aek.blob, or made and wrapped with key when new. */
static int account_aek(kek_client *c, const char *dir, const char *account, const char *key, kek_aek **ret) {
        char path[4096], ctx[512];
        uint8_t *blob = NULL;
        size_t len = 0;
        int r;

        snprintf(path, sizeof(path), "%s/%s/aek.blob", dir, account);
        ctx_of(account, ctx, sizeof(ctx));
        r = read_file(path, &blob, &len);
        if (r == -ENOENT && key) {
                kek_aek *aek = NULL;
                char acct[4096];

                snprintf(acct, sizeof(acct), "%s/%s", dir, account);
                if (mkdir(acct, 0700) < 0 && errno != EEXIST)
                        return -errno;
                r = kek_aek_generate(&aek);
                if (r >= 0)
                        r = kek_wrap(c, key, 0, kek_aek_data(aek), kek_aek_size(aek), (const uint8_t *) ctx, strlen(ctx),
                                     &blob, &len, NULL);
                if (r >= 0)
                        r = write_file(path, blob, len);
                free(blob);
                if (r < 0) {
                        kek_aek_unref(aek);
                        return r;
                }
                *ret = aek;
                return 0;
        }
        if (r < 0)
                return r;
        r = kek_unwrap(c, blob, len, (const uint8_t *) ctx, strlen(ctx), ret);
        free(blob);
        return r;
}

static int cmd_put(kek_client *c, const char *dir, const char *account, const char *name, const char *key) {
        uint8_t in[BLOCK], *out = NULL, *p;
        char path[4096], bctx[1024];
        kek_aek *aek = NULL;
        size_t n, len = 4, cap = 4;
        int r;

        r = account_aek(c, dir, account, key, &aek);
        if (r < 0)
                return fail(r, "account key");
        out = malloc(cap);
        if (!out)
                return 4;
        memcpy(out, MAGIC, 4);
        for (unsigned idx = 0; (n = fread(in, 1, sizeof(in), stdin)) > 0; idx++) {
                size_t sealed = n + KEK_BLOCK_OVERHEAD;

                p = realloc(out, cap + 4 + sealed);
                if (!p) {
                        r = -ENOMEM;
                        break;
                }
                out = p;
                cap += 4 + sealed;
                out[len] = (uint8_t) (sealed >> 24);
                out[len + 1] = (uint8_t) (sealed >> 16);
                out[len + 2] = (uint8_t) (sealed >> 8);
                out[len + 3] = (uint8_t) sealed;
                snprintf(bctx, sizeof(bctx), "%s/%s/%u", account, name, idx);
                r = kek_block_seal(aek, (const uint8_t *) bctx, strlen(bctx), in, n, out + len + 4);
                if (r < 0)
                        break;
                len += 4 + sealed;
        }
        kek_aek_unref(aek);
        if (r >= 0) {
                snprintf(path, sizeof(path), "%s/%s/%s.kst", dir, account, name);
                r = write_file(path, out, len);
        }
        free(out);
        return r < 0 ? fail(r, "put") : 0;
}

static int cmd_get(kek_client *c, const char *dir, const char *account, const char *name) {
        char path[4096], bctx[1024];
        uint8_t *data = NULL, plain[BLOCK];
        kek_aek *aek = NULL;
        size_t len = 0, off = 4;
        int r;

        snprintf(path, sizeof(path), "%s/%s/%s.kst", dir, account, name);
        r = read_file(path, &data, &len);
        if (r < 0)
                return fail(r, path);
        if (len < 4 || memcmp(data, MAGIC, 4) != 0) {
                free(data);
                fprintf(stderr, "kekstore: %s: not a kekstore file\n", path);
                return 1;
        }
        r = account_aek(c, dir, account, NULL, &aek);
        if (r < 0) {
                free(data);
                return fail(r, "account key");
        }
        for (unsigned idx = 0; off < len && r >= 0; idx++) {
                size_t sealed;

                if (len - off < 4) {
                        r = -EBADMSG;
                        break;
                }
                sealed = (size_t) data[off] << 24 | (size_t) data[off + 1] << 16 | (size_t) data[off + 2] << 8 | data[off + 3];
                off += 4;
                if (sealed < KEK_BLOCK_OVERHEAD || sealed > BLOCK + KEK_BLOCK_OVERHEAD || sealed > len - off) {
                        r = -EBADMSG;
                        break;
                }
                snprintf(bctx, sizeof(bctx), "%s/%s/%u", account, name, idx);
                r = kek_block_open(aek, (const uint8_t *) bctx, strlen(bctx), data + off, sealed, plain);
                if (r >= 0 && fwrite(plain, 1, sealed - KEK_BLOCK_OVERHEAD, stdout) != sealed - KEK_BLOCK_OVERHEAD)
                        r = -EIO;
                off += sealed;
        }
        kek_aek_unref(aek);
        free(data);
        if (r == -EBADMSG) {
                fprintf(stderr, "kekstore: %s: a block does not authenticate (corrupt, moved or from another account)\n", path);
                return 1;
        }
        return r < 0 ? fail(r, "get") : 0;
}

static int cmd_rewrap(kek_client *c, const char *dir, const char *account) {
        char path[4096], ctx[512];
        uint8_t *blob = NULL, *fresh = NULL;
        size_t len = 0, fresh_len = 0;
        uint32_t version = 0;
        int r;

        snprintf(path, sizeof(path), "%s/%s/aek.blob", dir, account);
        ctx_of(account, ctx, sizeof(ctx));
        r = read_file(path, &blob, &len);
        if (r < 0)
                return fail(r, path);
        r = kek_rewrap(c, blob, len, (const uint8_t *) ctx, strlen(ctx), &fresh, &fresh_len, &version);
        free(blob);
        if (r >= 0)
                r = write_file(path, fresh, fresh_len);
        free(fresh);
        if (r < 0)
                return fail(r, "rewrap");
        printf("account %s: AEK now wrapped under version %u\n", account, version);
        return 0;
}

static int cmd_info(const char *dir, const char *account) {
        char path[4096];
        uint8_t *blob = NULL;
        size_t len = 0;
        int r;

        snprintf(path, sizeof(path), "%s/%s/aek.blob", dir, account);
        r = read_file(path, &blob, &len);
        if (r < 0)
                return fail(r, path);
        /* The blob names its key and version in clear (kekd-protocol(7)): format, name length, name, version. */
        if (len < 7 || blob[0] != 1 || len < 6u + blob[1]) {
                free(blob);
                fprintf(stderr, "kekstore: %s: not a kekd blob\n", path);
                return 1;
        }
        printf("account %s: key %.*s version %u\n", account, blob[1], (const char *) blob + 2,
               (unsigned) blob[2 + blob[1]] << 24 | (unsigned) blob[3 + blob[1]] << 16 | (unsigned) blob[4 + blob[1]] << 8 |
                       blob[5 + blob[1]]);
        free(blob);
        return 0;
}

static int usage(void) {
        fprintf(stderr, "usage: kekstore [-s SOCKET] DIR put ACCOUNT NAME KEY < data\n"
                        "       kekstore [-s SOCKET] DIR get ACCOUNT NAME > data\n"
                        "       kekstore [-s SOCKET] DIR rewrap ACCOUNT\n"
                        "       kekstore [-s SOCKET] DIR info ACCOUNT\n");
        return 2;
}

static int valid_component(const char *s) {
        return s && s[0] && s[0] != '.' && !strchr(s, '/') && strlen(s) < 200;
}

int main(int argc, char *argv[]) {
        kek_options o = { .watch_disabled = true }; /* one-shot process: no push subscription needed */
        kek_client *c = NULL;
        int a = 1, r;

        if (argc > 2 && strcmp(argv[1], "-s") == 0) {
                o.socket_path = argv[2];
                a = 3;
        }
        if (argc - a < 3 || !valid_component(argv[a + 2]))
                return usage();
        if (strcmp(argv[a + 1], "info") == 0)
                return cmd_info(argv[a], argv[a + 2]);
        r = kek_client_new(&o, &c);
        if (r < 0)
                return fail(r, "libkek");
        if (strcmp(argv[a + 1], "put") == 0 && argc - a == 5 && valid_component(argv[a + 3]))
                r = cmd_put(c, argv[a], argv[a + 2], argv[a + 3], argv[a + 4]);
        else if (strcmp(argv[a + 1], "get") == 0 && argc - a == 4 && valid_component(argv[a + 3]))
                r = cmd_get(c, argv[a], argv[a + 2], argv[a + 3]);
        else if (strcmp(argv[a + 1], "rewrap") == 0 && argc - a == 3)
                r = cmd_rewrap(c, argv[a], argv[a + 2]);
        else
                r = usage();
        kek_client_free(c);
        return r;
}
