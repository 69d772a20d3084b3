/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * kekstore: an example storage program on libkek. It keeps files in a
 * directory as encrypted blocks: each account has its own AEK, stored only
 * wrapped by a kekd key (ACCOUNT/aek.blob, context "kekstore:ACCOUNT"), and
 * every 4 KiB block of a file is sealed with kek_block_seal_ex() under the
 * block context "ACCOUNT/NAME" and the file's generation, the block's index,
 * the file's length and a final flag on its last block: blocks cannot be
 * swapped between files, positions or accounts, dropped from the end, or
 * replaced by a copy from an earlier write, unnoticed.
 *
 *   kekstore [-s SOCKET] DIR put ACCOUNT NAME KEY < data   (KEY wraps a new account's AEK)
 *   kekstore [-s SOCKET] DIR get ACCOUNT NAME > data
 *   kekstore [-s SOCKET] DIR rewrap ACCOUNT                 (AEK re-wrapped under the key's current version)
 *   kekstore [-s SOCKET] DIR info ACCOUNT
 *
 * File format: "KST2", the generation and the plaintext length (8 bytes
 * big-endian each), then per block a 4-byte big-endian length and the sealed
 * block (format 0x03, libkek(3)); a file has at least one block, so that even
 * an empty one has a final block. Every put takes the next generation and
 * records it in ACCOUNT/NAME.gen after the file: get refuses a file whose
 * generation is not the record's (a whole file put back, or a forged header).
 * The record stands in for what a real storage system keeps in metadata the
 * storage cannot roll back, and is the only authority: the header is not
 * authenticated until its blocks open, so put takes the next generation from
 * the record alone (a forged header must not make it jump or wrap) and
 * refuses to go past 2^64-1.
 * "KST1" files (format 0x01 blocks, context "ACCOUNT/NAME/N", which detect
 * neither truncation nor rollback) are still read, with a warning, unless a
 * record shows that a KST2 file was written since (a downgrade).
 * get writes nothing until every block has opened. Exit status 0 ok,
 * 1 refused or corrupt, 2 usage, 3 kekd unreachable, 4 local I/O.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "client/libkek.h"

#define BLOCK 4096u
#define MAGIC_V1 "KST1"
#define MAGIC "KST2"
#define HEADER 20u             /* magic, generation, length */

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

static void put_be64(uint8_t *p, uint64_t v) {
        for (int i = 0; i < 8; i++)
                p[i] = (uint8_t) (v >> (56 - 8 * i));
}

static uint64_t get_be64(const uint8_t *p) {
        uint64_t v = 0;

        for (int i = 0; i < 8; i++)
                v = v << 8 | p[i];
        return v;
}

/* The generation last written for ACCOUNT/NAME, 0 if none is recorded. */
static int read_generation(const char *dir, const char *account, const char *name, uint64_t *ret) {
        char path[4096];
        uint8_t *buf = NULL;
        size_t len = 0;
        int r;

        snprintf(path, sizeof(path), "%s/%s/%s.gen", dir, account, name);
        r = read_file(path, &buf, &len);
        if (r == -ENOENT) {
                *ret = 0;
                return 0;
        }
        if (r < 0)
                return r;
        r = len == 8 ? 0 : -EBADMSG;
        if (r >= 0)
                *ret = get_be64(buf);
        free(buf);
        return r;
}

static int write_generation(const char *dir, const char *account, const char *name, uint64_t gen) {
        char path[4096];
        uint8_t buf[8];

        snprintf(path, sizeof(path), "%s/%s/%s.gen", dir, account, name);
        put_be64(buf, gen);
        return write_file(path, buf, sizeof(buf));
}

static int read_stdin(uint8_t **ret, size_t *ret_len) {
        uint8_t *buf = NULL, *p;
        size_t len = 0, cap = 0, n;

        do {
                if (cap - len < BLOCK) {
                        p = realloc(buf, cap + 65536);
                        if (!p) {
                                free(buf);
                                return -ENOMEM;
                        }
                        buf = p;
                        cap += 65536;
                }
                n = fread(buf + len, 1, cap - len, stdin);
                len += n;
        } while (n > 0);
        if (ferror(stdin)) {
                free(buf);
                return -EIO;
        }
        *ret = buf;
        *ret_len = len;
        return 0;
}

/* Blocks a plaintext of total bytes takes; never wraps (total comes from an unauthenticated header). */
static uint64_t n_blocks(uint64_t total) {
        return total == 0 ? 1 : total / BLOCK + (total % BLOCK != 0);
}

static int cmd_put(kek_client *c, const char *dir, const char *account, const char *name, const char *key) {
        char path[4096], bctx[1024];
        uint8_t *in = NULL, *out = NULL;
        size_t len = 0, n, off = HEADER;
        uint64_t gen = 0;
        kek_aek *aek = NULL;
        int r;

        r = account_aek(c, dir, account, key, &aek);
        if (r < 0)
                return fail(r, "account key");
        snprintf(path, sizeof(path), "%s/%s/%s.kst", dir, account, name);
        /*
         * The next generation comes from the record only: the file's header is not authenticated, and
         * trusting it let a forged 2^64-1 wrap the counter to 0 (every old file then passed, KST1 too).
         * A put that crashed before its record left a file of record + 1, which this put replaces.
         */
        r = read_generation(dir, account, name, &gen);
        if (r >= 0 && gen == UINT64_MAX)
                r = -EOVERFLOW;
        if (r >= 0)
                r = read_stdin(&in, &len);
        if (r < 0) {
                kek_aek_unref(aek);
                return fail(r, "put");
        }
        gen++;
        n = (size_t) n_blocks(len);
        out = malloc(HEADER + len + n * (4 + KEK_BLOCK_OVERHEAD));
        if (!out)
                r = -ENOMEM;
        else {
                memcpy(out, MAGIC, 4);
                put_be64(out + 4, gen);
                put_be64(out + 12, len);
        }
        snprintf(bctx, sizeof(bctx), "%s/%s", account, name);
        for (size_t i = 0; r >= 0 && i < n; i++) {
                size_t chunk = i + 1 < n ? BLOCK : len - i * BLOCK, sealed = chunk + KEK_BLOCK_OVERHEAD;
                kek_block_params p = { .generation = gen, .index = i, .total_len = len,
                                       .flags = i + 1 == n ? KEK_BLOCK_FINAL : 0 };

                out[off] = (uint8_t) (sealed >> 24);
                out[off + 1] = (uint8_t) (sealed >> 16);
                out[off + 2] = (uint8_t) (sealed >> 8);
                out[off + 3] = (uint8_t) sealed;
                r = kek_block_seal_ex(aek, &p, (const uint8_t *) bctx, strlen(bctx), in + i * BLOCK, chunk, out + off + 4);
                off += 4 + sealed;
        }
        kek_aek_unref(aek);
        free(in);
        if (r >= 0)
                r = write_file(path, out, off);
        if (r >= 0)
                r = write_generation(dir, account, name, gen);
        free(out);
        return r < 0 ? fail(r, "put") : 0;
}

/* Opens the blocks of a KST1 file (no length, no generation) into plain. */
static int open_v1(kek_aek *aek, const char *account, const char *name, const uint8_t *data, size_t len, uint8_t *plain,
                   size_t *ret_len) {
        char bctx[1024];
        size_t off = 4, out = 0;
        int r = 0;

        for (unsigned idx = 0; off < len && r >= 0; idx++) {
                size_t sealed;

                if (len - off < 4)
                        return -EBADMSG;
                sealed = (size_t) data[off] << 24 | (size_t) data[off + 1] << 16 | (size_t) data[off + 2] << 8 | data[off + 3];
                off += 4;
                if (sealed < KEK_BLOCK_OVERHEAD || sealed > BLOCK + KEK_BLOCK_OVERHEAD || sealed > len - off)
                        return -EBADMSG;
                snprintf(bctx, sizeof(bctx), "%s/%s/%u", account, name, idx);
                r = kek_block_open(aek, (const uint8_t *) bctx, strlen(bctx), data + off, sealed, plain + out);
                out += sealed - KEK_BLOCK_OVERHEAD;
                off += sealed;
        }
        *ret_len = out;
        return r;
}

/*
 * Opens the blocks of a KST2 file into plain, each with the values the reader expects: the header's
 * generation and length (which every block binds), its index, and the final flag on the last one the
 * length calls for. Returns -ENODATA when blocks are missing, -EBADMSG when one does not open.
 */
static int open_v2(kek_aek *aek, const char *account, const char *name, const uint8_t *data, size_t len, uint8_t *plain,
                   size_t *ret_len, size_t *ret_blocks_found) {
        uint64_t gen = get_be64(data + 4), total = get_be64(data + 12), n;
        size_t off = HEADER, i;
        char bctx[1024];
        int r = 0;

        /*
         * total comes from the header, unchecked: n stays 64-bit and never wraps (in size_t,
         * n_blocks(2^64-1) was 0, a file without blocks passed and 2^64-1 bytes were written
         * from plain), so a total the file cannot hold is a file with blocks missing. Each block
         * must be in the file before it is opened, so i * BLOCK stays within plain.
         */
        n = n_blocks(total);
        snprintf(bctx, sizeof(bctx), "%s/%s", account, name);
        for (i = 0; i < n && r >= 0; i++) {
                size_t chunk = i + 1 < n ? BLOCK : (size_t) (total - i * BLOCK), sealed;
                kek_block_params p = { .generation = gen, .index = i, .total_len = total,
                                       .flags = i + 1 == n ? KEK_BLOCK_FINAL : 0 };

                if (off == len)
                        break;
                if (len - off < 4)
                        return -EBADMSG;
                sealed = (size_t) data[off] << 24 | (size_t) data[off + 1] << 16 | (size_t) data[off + 2] << 8 | data[off + 3];
                off += 4;
                if (sealed != chunk + KEK_BLOCK_OVERHEAD || sealed > len - off)
                        return -EBADMSG;
                r = kek_block_open_ex(aek, &p, (const uint8_t *) bctx, strlen(bctx), data + off, sealed, plain + i * BLOCK);
                off += sealed;
        }
        *ret_blocks_found = i;
        if (r < 0)
                return r;
        if (i < n)
                return -ENODATA;
        if (off != len)
                return -EBADMSG; /* bytes after the final block */
        *ret_len = (size_t) total;
        return 0;
}

static int cmd_get(kek_client *c, const char *dir, const char *account, const char *name) {
        char path[4096];
        uint8_t *data = NULL, *plain = NULL;
        kek_aek *aek = NULL;
        size_t len = 0, plain_len = 0, found = 0;
        uint64_t recorded = 0;
        bool v1;
        int r;

        snprintf(path, sizeof(path), "%s/%s/%s.kst", dir, account, name);
        r = read_file(path, &data, &len);
        if (r < 0)
                return fail(r, path);
        v1 = len >= 4 && memcmp(data, MAGIC_V1, 4) == 0;
        if (!v1 && (len < HEADER || memcmp(data, MAGIC, 4) != 0)) {
                free(data);
                fprintf(stderr, "kekstore: %s: not a kekstore file\n", path);
                return 1;
        }
        r = read_generation(dir, account, name, &recorded);
        if (r < 0) {
                free(data);
                return fail(r, "generation record");
        }
        if (v1 && recorded > 0) {
                free(data);
                fprintf(stderr, "kekstore: %s: an old-format (KST1) file where generation %" PRIu64
                                " was written: refused (rolled back)\n", path, recorded);
                return 1;
        }
        if (!v1 && get_be64(data + 4) != recorded) {
                /* Newer than the record: a forged header, or a put that never recorded its file. */
                fprintf(stderr, "kekstore: %s: generation %" PRIu64 " is not the last one written, %" PRIu64
                                ": refused (%s)\n", path, get_be64(data + 4), recorded,
                        get_be64(data + 4) < recorded ? "rolled back" : "corrupt");
                free(data);
                return 1;
        }
        r = account_aek(c, dir, account, NULL, &aek);
        if (r < 0) {
                free(data);
                return fail(r, "account key");
        }
        plain = malloc(len + 1); /* plaintext is never longer than the file */
        if (!plain)
                r = -ENOMEM;
        else if (v1) {
                fprintf(stderr, "kekstore: %s: old format (KST1): truncation and rollback are not detected; put it again\n",
                        path);
                r = open_v1(aek, account, name, data, len, plain, &plain_len);
        } else
                r = open_v2(aek, account, name, data, len, plain, &plain_len, &found);
        kek_aek_unref(aek);
        if (r >= 0 && fwrite(plain, 1, plain_len, stdout) != plain_len)
                r = -EIO;
        if (plain)
                explicit_bzero(plain, len + 1);
        free(plain);
        if (r == -ENODATA)
                fprintf(stderr, "kekstore: %s: truncated: %zu of %" PRIu64 " blocks\n", path, found,
                        n_blocks(get_be64(data + 12)));
        else if (r == -EBADMSG)
                fprintf(stderr, "kekstore: %s: a block does not authenticate (corrupt, truncated, moved, from an "
                                "earlier write or from another account)\n", path);
        free(data);
        if (r == -ENODATA || r == -EBADMSG)
                return 1;
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
