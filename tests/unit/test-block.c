/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libkek's block formats without a daemon (issue 20 items 3-6). A reference
 * implementation written from libkek(3), BLOCK FORMATS, with OpenSSL's
 * EVP_PKEY HKDF (libkek uses EVP_KDF) checks both generations of formats
 * byte for byte: what libkek seals the reference opens, and blocks the
 * reference seals under keys libkek now refuses are refused. Then: short keys
 * are refused for sealing and opening, block and platform keys alike; a
 * bound block opens only with its generation, index, length and final flag;
 * two generations derive different DEKs; the inner layer of a bound double
 * block is no single block; the formats of one generation do not open
 * through the functions of the other.
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/kdf.h>

#include "client/libkek.h"
#include "tests/lib/tap.h"

#define NONCE 12
#define TAG 16

static kek_aek *key_of(size_t len, uint8_t b) {
        uint8_t v[64];
        kek_aek *a = NULL;

        memset(v, b, sizeof(v));
        if (kek_aek_from_bytes(v, len, &a) < 0)
                abort();
        return a;
}

static void be64(uint8_t *p, uint64_t v) {
        for (int i = 0; i < 8; i++)
                p[i] = (uint8_t) (v >> (56 - 8 * i));
}

/* The documented binding: role | generation | index | total_len | flags. */
static size_t ref_bind(uint8_t role, const kek_block_params *p, uint8_t out[26]) {
        out[0] = role;
        be64(out + 1, p->generation);
        be64(out + 9, p->index);
        be64(out + 17, p->total_len);
        out[25] = (uint8_t) p->flags;
        return 26;
}

static void ref_dek(const kek_aek *k, const char *salt, const uint8_t *bind, size_t bind_len, const char *bctx,
                    uint8_t dek[32]) {
        EVP_PKEY_CTX *pc = EVP_PKEY_CTX_new_id(EVP_PKEY_HKDF, NULL);
        uint8_t info[256];
        size_t out_len = 32;

        if (bind_len > 0) /* the v1 formats bind nothing: bind may be NULL */
                memcpy(info, bind, bind_len);
        memcpy(info + bind_len, bctx, strlen(bctx));
        if (!pc || EVP_PKEY_derive_init(pc) != 1 || EVP_PKEY_CTX_set_hkdf_md(pc, EVP_sha256()) != 1 ||
            EVP_PKEY_CTX_set1_hkdf_salt(pc, (const uint8_t *) salt, (int) strlen(salt)) != 1 ||
            EVP_PKEY_CTX_set1_hkdf_key(pc, kek_aek_data(k), (int) kek_aek_size(k)) != 1 ||
            EVP_PKEY_CTX_add1_hkdf_info(pc, info, (int) (bind_len + strlen(bctx))) != 1 ||
            EVP_PKEY_derive(pc, dek, &out_len) != 1)
                abort();
        EVP_PKEY_CTX_free(pc);
}

/* Seals (in -> out) or opens with a given DEK: format byte | nonce | ct | tag, AAD = format | bind | context. */
static int ref_aead(bool seal, bool chacha, uint8_t fmt, const uint8_t dek[32], const uint8_t *bind, size_t bind_len,
                    const char *bctx, const uint8_t *in, size_t len, uint8_t *out) {
        EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
        const EVP_CIPHER *cipher = chacha ? EVP_chacha20_poly1305() : EVP_aes_256_gcm();
        int n, ok;

        if (seal) {
                out[0] = fmt;
                memset(out + 1, 0x5a, NONCE);
                ok = EVP_EncryptInit_ex(c, cipher, NULL, dek, out + 1) == 1 && EVP_EncryptUpdate(c, NULL, &n, &fmt, 1) == 1 &&
                     (!bind_len || EVP_EncryptUpdate(c, NULL, &n, bind, (int) bind_len) == 1) &&
                     EVP_EncryptUpdate(c, NULL, &n, (const uint8_t *) bctx, (int) strlen(bctx)) == 1 &&
                     EVP_EncryptUpdate(c, out + 1 + NONCE, &n, in, (int) len) == 1 &&
                     EVP_EncryptFinal_ex(c, out + 1 + NONCE + n, &n) == 1 &&
                     EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_GET_TAG, TAG, out + 1 + NONCE + len) == 1;
        } else {
                size_t ct = len - 1 - NONCE - TAG;

                ok = in[0] == fmt && EVP_DecryptInit_ex(c, cipher, NULL, dek, in + 1) == 1 &&
                     EVP_DecryptUpdate(c, NULL, &n, &fmt, 1) == 1 &&
                     (!bind_len || EVP_DecryptUpdate(c, NULL, &n, bind, (int) bind_len) == 1) &&
                     EVP_DecryptUpdate(c, NULL, &n, (const uint8_t *) bctx, (int) strlen(bctx)) == 1 &&
                     EVP_DecryptUpdate(c, out, &n, in + 1 + NONCE, (int) ct) == 1 &&
                     EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_SET_TAG, TAG, (void *) (in + 1 + NONCE + ct)) == 1 &&
                     EVP_DecryptFinal_ex(c, out + n, &n) == 1;
        }
        EVP_CIPHER_CTX_free(c);
        return ok ? 0 : -EBADMSG;
}

static const char BCTX[] = "acct-7/photo";
static uint8_t data[100], sealed[100 + 2 * 29 + 16], opened[100 + 29];

static void test_short_keys(void) {
        kek_aek *k1 = key_of(1, 1), *k16 = key_of(16, 2), *k31 = key_of(31, 3), *k32 = key_of(32, 4);
        kek_block_params p = { .generation = 1, .total_len = sizeof(data), .flags = KEK_BLOCK_FINAL };
        uint8_t dek[32];

        is_int(kek_block_seal(k1, (const uint8_t *) BCTX, strlen(BCTX), data, sizeof(data), sealed), -EINVAL,
               "sealing under a 1-byte AEK is refused");
        is_int(kek_block_seal(k16, (const uint8_t *) BCTX, strlen(BCTX), data, sizeof(data), sealed), -EINVAL,
               "sealing under a 16-byte AEK is refused (seals take exactly 32 bytes)");
        is_int(kek_block_seal(k31, (const uint8_t *) BCTX, strlen(BCTX), data, sizeof(data), sealed), -EINVAL,
               "sealing under a 31-byte AEK is refused");
        is_int(kek_block_seal2(k32, k1, (const uint8_t *) BCTX, strlen(BCTX), data, sizeof(data), sealed), -EINVAL,
               "double sealing with a 1-byte platform key is refused");
        is_int(kek_block_seal2(k1, k32, (const uint8_t *) BCTX, strlen(BCTX), data, sizeof(data), sealed), -EINVAL,
               "double sealing with a 1-byte AEK is refused");
        is_int(kek_block_seal_ex(k16, &p, (const uint8_t *) BCTX, strlen(BCTX), data, sizeof(data), sealed), -EINVAL,
               "a bound seal under a 16-byte AEK is refused");
        is_int(kek_block_seal2_ex(k32, k16, &p, (const uint8_t *) BCTX, strlen(BCTX), data, sizeof(data), sealed), -EINVAL,
               "a bound double seal with a 16-byte platform key is refused");

        /* Blocks of format 0x01 sealed elsewhere (by an older libkek) under short keys. */
        ref_dek(k1, "kekd-dek-v1", NULL, 0, BCTX, dek);
        ref_aead(true, false, 0x01, dek, NULL, 0, BCTX, data, sizeof(data), sealed);
        is_int(kek_block_open(k1, (const uint8_t *) BCTX, strlen(BCTX), sealed, sizeof(data) + KEK_BLOCK_OVERHEAD, opened),
               -EINVAL, "a format 0x01 block under a 1-byte AEK is not opened (guessable in 256 tries)");
        ref_dek(k16, "kekd-dek-v1", NULL, 0, BCTX, dek);
        ref_aead(true, false, 0x01, dek, NULL, 0, BCTX, data, sizeof(data), sealed);
        ok(kek_block_open(k16, (const uint8_t *) BCTX, strlen(BCTX), sealed, sizeof(data) + KEK_BLOCK_OVERHEAD, opened) == 0 &&
                   memcmp(opened, data, sizeof(data)) == 0,
           "one under a 16-byte AEK still opens (old blocks stay readable from 16 bytes on)");
        kek_aek_unref(k1);
        kek_aek_unref(k16);
        kek_aek_unref(k31);
        kek_aek_unref(k32);
}

static void test_v1_format(void) {
        kek_aek *k = key_of(32, 9);
        uint8_t dek[32];

        ok(kek_block_seal(k, (const uint8_t *) BCTX, strlen(BCTX), data, sizeof(data), sealed) == 0, "format 0x01 seal");
        ref_dek(k, "kekd-dek-v1", NULL, 0, BCTX, dek);
        ok(ref_aead(false, false, 0x01, dek, NULL, 0, BCTX, sealed, sizeof(data) + KEK_BLOCK_OVERHEAD, opened) == 0 &&
                   memcmp(opened, data, sizeof(data)) == 0,
           "format 0x01 is unchanged: the reference opens it");
        kek_aek_unref(k);
}

static void test_bound(void) {
        kek_aek *k = key_of(32, 5);
        kek_block_params p = { .generation = 7, .index = 2, .total_len = 10000, .flags = KEK_BLOCK_FINAL }, q;
        size_t n = sizeof(data) + KEK_BLOCK_OVERHEAD;
        uint8_t bind[26], dek7[32], dek8[32];
        const uint8_t *bc = (const uint8_t *) BCTX;

        ok(kek_block_seal_ex(k, &p, bc, strlen(BCTX), data, sizeof(data), sealed) == 0 && sealed[0] == 0x03,
           "a bound seal writes format 0x03");
        ok(kek_block_open_ex(k, &p, bc, strlen(BCTX), sealed, n, opened) == 0 && memcmp(opened, data, sizeof(data)) == 0,
           "... and opens with the same values");
        ref_dek(k, "kekd-dek-v2", bind, ref_bind(1, &p, bind), BCTX, dek7);
        ok(ref_aead(false, false, 0x03, dek7, bind, 26, BCTX, sealed, n, opened) == 0 && memcmp(opened, data, sizeof(data)) == 0,
           "the reference (EVP_PKEY HKDF, documented info and AAD) opens it: the generation is in the DEK derivation");
        q = p;
        q.generation = 8;
        ref_dek(k, "kekd-dek-v2", bind, ref_bind(1, &q, bind), BCTX, dek8);
        ok(memcmp(dek7, dek8, 32) != 0, "generations 7 and 8 derive different DEKs");
        is_int(kek_block_open_ex(k, &q, bc, strlen(BCTX), sealed, n, opened), -EBADMSG,
               "a block of generation 7 does not open as generation 8 (rollback)");
        q = p;
        q.index = 3;
        is_int(kek_block_open_ex(k, &q, bc, strlen(BCTX), sealed, n, opened), -EBADMSG, "... nor at another index");
        q = p;
        q.total_len = 9999;
        is_int(kek_block_open_ex(k, &q, bc, strlen(BCTX), sealed, n, opened), -EBADMSG,
               "... nor in an object of another length (truncation)");
        q = p;
        q.flags = 0;
        is_int(kek_block_open_ex(k, &q, bc, strlen(BCTX), sealed, n, opened), -EBADMSG,
               "... nor as a block that is not the last (final flag)");
        q = p;
        q.flags = 0x2;
        is_int(kek_block_open_ex(k, &q, bc, strlen(BCTX), sealed, n, opened), -EINVAL, "an unknown flag is refused");
        is_int(kek_block_open_ex(k, NULL, bc, strlen(BCTX), sealed, n, opened), -EINVAL, "no parameters is refused");
        is_int(kek_block_open(k, bc, strlen(BCTX), sealed, n, opened), -EBADMSG, "a 0x03 block does not open as 0x01");
        ok(kek_block_seal(k, bc, strlen(BCTX), data, sizeof(data), sealed) == 0, "a 0x01 block");
        is_int(kek_block_open_ex(k, &p, bc, strlen(BCTX), sealed, n, opened), -EBADMSG,
               "... does not open as 0x03 (no downgrade through the bound opener)");

        /* Two seals of one block in two generations: each DEK seals it once. */
        {
                uint8_t s7[sizeof(data) + KEK_BLOCK_OVERHEAD], s8[sizeof(data) + KEK_BLOCK_OVERHEAD];

                q = p;
                q.generation = 8;
                ok(kek_block_seal_ex(k, &p, bc, strlen(BCTX), data, sizeof(data), s7) == 0 &&
                           kek_block_seal_ex(k, &q, bc, strlen(BCTX), data, sizeof(data), s8) == 0 &&
                           ref_aead(false, false, 0x03, dek8, bind, 26, BCTX, s8, n, opened) == 0 &&
                           ref_aead(false, false, 0x03, dek8, bind, 26, BCTX, s7, n, opened) == -EBADMSG,
                   "generation 8's block is under generation 8's DEK, generation 7's is not");
        }
        kek_aek_unref(k);
}

static void test_double(void) {
        kek_aek *k = key_of(32, 6), *pk = key_of(32, 7);
        kek_block_params p = { .generation = 3, .index = 0, .total_len = sizeof(data), .flags = KEK_BLOCK_FINAL }, q;
        size_t n2 = sizeof(data) + KEK_BLOCK2_OVERHEAD, n1 = sizeof(data) + KEK_BLOCK_OVERHEAD;
        uint8_t bind[26], dek[32], inner[sizeof(data) + KEK_BLOCK_OVERHEAD];
        const uint8_t *bc = (const uint8_t *) BCTX;

        ok(kek_block_seal2_ex(k, pk, &p, bc, strlen(BCTX), data, sizeof(data), sealed) == 0 && sealed[0] == 0x04 &&
                   kek_block_open2_ex(k, pk, &p, bc, strlen(BCTX), sealed, n2, opened) == 0 &&
                   memcmp(opened, data, sizeof(data)) == 0,
           "a bound double block (0x04 around 0x03) round trips");
        q = p;
        q.generation = 4;
        is_int(kek_block_open2_ex(k, pk, &q, bc, strlen(BCTX), sealed, n2, opened), -EBADMSG, "... not in another generation");
        is_int(kek_block_open2(k, pk, bc, strlen(BCTX), sealed, n2, opened), -EBADMSG, "... not through the 0x02 opener");
        /* Whoever holds the platform key peels the outer layer (reference, role 3 = outer). */
        ref_dek(pk, "kekd-platform-v2", bind, ref_bind(3, &p, bind), BCTX, dek);
        ok(ref_aead(false, true, 0x04, dek, bind, 26, BCTX, sealed, n2, inner) == 0 && inner[0] == 0x03,
           "the reference removes the outer layer (platform key, ChaCha20-Poly1305, role 3)");
        is_int(kek_block_open_ex(k, &p, bc, strlen(BCTX), inner, n1, opened), -EBADMSG,
               "the inner layer does not open as a single bound block with the same values (role bound)");
        ref_dek(k, "kekd-dek-v2", bind, ref_bind(2, &p, bind), BCTX, dek);
        ok(ref_aead(false, false, 0x03, dek, bind, 26, BCTX, inner, n1, opened) == 0 && memcmp(opened, data, sizeof(data)) == 0,
           "... it is bound as an inner layer (role 2)");
        kek_aek_unref(k);
        kek_aek_unref(pk);
}

int main(void) {
        for (size_t i = 0; i < sizeof(data); i++)
                data[i] = (uint8_t) (i * 7 + 1);
        test_short_keys();
        test_v1_format();
        test_bound();
        test_double();
        return tap_done();
}
