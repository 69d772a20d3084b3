/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Block encryption helpers of libkek (formats in libkek.h and libkek(3),
 * BLOCK FORMATS). Everything is OpenSSL: HKDF through EVP_KDF, AES-256-GCM
 * and ChaCha20-Poly1305 through EVP_CIPHER. Derived DEKs live on the stack
 * for one call and are cleansed.
 *
 * Two generations of formats:
 *  - 0x01 (AES-256-GCM) and 0x02 (ChaCha20-Poly1305 outer layer): DEK per
 *    (key, block context), AAD = format byte | context. Still written by
 *    kek_block_seal()/seal2() and opened by kek_block_open()/open2(); they
 *    bind neither the object's end nor a generation, nor a layer's role.
 *  - 0x03 / 0x04, the _ex functions: the caller's kek_block_params (role,
 *    generation, index, object length, final flag) are encoded in a fixed
 *    26-byte "binding" that goes into the HKDF info and the AAD, as Tink's
 *    streaming AEAD and the AWS Encryption SDK's framed format bind segment
 *    number and last-segment flag: a block opens only at its place, in its
 *    generation, in an object of its length, in its layer. A new generation
 *    per rewrite gives a new DEK, so random nonces never approach the 2^32
 *    seals per key of NIST SP 800-38D.
 * Invariants: a seal takes keys of exactly KEK_AEK_SIZE bytes; opening takes
 * at least 16 (v1 blocks sealed under 16..31-byte keys before that rule) or
 * exactly 32 (v2); an opener never accepts a format of the other generation.
 */
#include "config.h"

#include <errno.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/params.h>
#include <openssl/rand.h>

#include "client/libkek.h"

#define _public_ __attribute__((visibility("default")))

#define FMT_GCM 0x01
#define FMT_CHACHA 0x02
#define FMT_GCM_BOUND 0x03
#define FMT_CHACHA_BOUND 0x04
#define NONCE 12
#define TAG 16
#define OPEN_KEY_MIN 16        /* v1 blocks: below this a key is guessable */
#define BIND_SIZE 26

/* The role of a layer in the v2 binding: the inner layer of seal2 is not a single block. */
enum { ROLE_SINGLE = 1, ROLE_INNER = 2, ROLE_OUTER = 3 };

typedef struct Layer {
        uint8_t fmt;
        bool chacha;
        const char *salt;
        const uint8_t *bind;   /* NULL: v1, context only */
} Layer;

static const char SALT_V1[] = "kekd-dek-v1", SALT_V1_PLATFORM[] = "kekd-platform-v1";
static const char SALT_V2[] = "kekd-dek-v2", SALT_V2_PLATFORM[] = "kekd-platform-v2";

static void put_be64(uint8_t *p, uint64_t v) {
        for (int i = 0; i < 8; i++)
                p[i] = (uint8_t) (v >> (56 - 8 * i));
}

/* role | generation | index | total_len (big-endian 64-bit each) | flags: the v2 binding. */
static int bind_encode(const kek_block_params *p, uint8_t role, uint8_t out[BIND_SIZE]) {
        if (!p || (p->flags & ~KEK_BLOCK_FINAL) != 0)
                return -EINVAL;
        out[0] = role;
        put_be64(out + 1, p->generation);
        put_be64(out + 9, p->index);
        put_be64(out + 17, p->total_len);
        out[25] = (uint8_t) p->flags;
        return 0;
}

static int derive(const kek_aek *key, const Layer *l, const uint8_t *bctx, size_t bctx_len, uint8_t out[32]) {
        size_t bind_len = l->bind ? BIND_SIZE : 0;
        EVP_KDF *kdf;
        EVP_KDF_CTX *kctx;
        OSSL_PARAM params[5];
        uint8_t *info;
        int ok;

        /* info = binding | context, one buffer: OpenSSL versions differ on repeated INFO parameters. */
        info = OPENSSL_malloc(bind_len + bctx_len + 1);
        if (!info)
                return -ENOMEM;
        if (bind_len)
                memcpy(info, l->bind, bind_len);
        if (bctx_len)
                memcpy(info + bind_len, bctx, bctx_len);
        kdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
        kctx = kdf ? EVP_KDF_CTX_new(kdf) : NULL;
        EVP_KDF_free(kdf);
        if (!kctx) {
                OPENSSL_free(info);
                return -ENOMEM;
        }
        params[0] = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *) "SHA256", 0);
        params[1] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void *) kek_aek_data(key), kek_aek_size(key));
        params[2] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, (void *) l->salt, strlen(l->salt));
        params[3] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, info, bind_len + bctx_len);
        params[4] = OSSL_PARAM_construct_end();
        ok = EVP_KDF_derive(kctx, out, 32, params) == 1;
        EVP_KDF_CTX_free(kctx);
        OPENSSL_free(info);
        return ok ? 0 : -EIO;
}

/* AAD = format byte | binding (v2) | block context, fed in pieces. */
static bool aad_update(EVP_CIPHER_CTX *ctx, bool seal, const Layer *l, const uint8_t *bctx, size_t bctx_len) {
        int (*update)(EVP_CIPHER_CTX *, unsigned char *, int *, const unsigned char *, int) =
                seal ? EVP_EncryptUpdate : EVP_DecryptUpdate;
        int n = 0;

        return update(ctx, NULL, &n, &l->fmt, 1) == 1 &&
               (!l->bind || update(ctx, NULL, &n, l->bind, BIND_SIZE) == 1) &&
               (!bctx_len || update(ctx, NULL, &n, bctx, (int) bctx_len) == 1);
}

static int aead(bool seal, const Layer *l, const uint8_t key[32], const uint8_t *bctx, size_t bctx_len, const uint8_t *in,
                size_t len, uint8_t *out) {
        const EVP_CIPHER *cipher = l->chacha ? EVP_chacha20_poly1305() : EVP_aes_256_gcm();
        EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
        int n = 0, r = -EIO;

        if (!ctx)
                return -ENOMEM;
        if (seal) {
                out[0] = l->fmt;
                if (RAND_bytes(out + 1, NONCE) != 1)
                        goto finish;
                if (EVP_EncryptInit_ex(ctx, cipher, NULL, key, out + 1) != 1 || !aad_update(ctx, true, l, bctx, bctx_len) ||
                    EVP_EncryptUpdate(ctx, out + 1 + NONCE, &n, in, (int) len) != 1 ||
                    EVP_EncryptFinal_ex(ctx, out + 1 + NONCE + n, &n) != 1 ||
                    EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, TAG, out + 1 + NONCE + len) != 1)
                        goto finish;
                r = 0;
        } else {
                size_t ct_len = len - 1 - NONCE - TAG;

                r = -EBADMSG;
                if (in[0] != l->fmt)
                        goto finish;
                if (EVP_DecryptInit_ex(ctx, cipher, NULL, key, in + 1) != 1 || !aad_update(ctx, false, l, bctx, bctx_len) ||
                    EVP_DecryptUpdate(ctx, out, &n, in + 1 + NONCE, (int) ct_len) != 1 ||
                    EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, TAG, (void *) (in + 1 + NONCE + ct_len)) != 1 ||
                    EVP_DecryptFinal_ex(ctx, out + n, &n) != 1) {
                        OPENSSL_cleanse(out, ct_len);
                        goto finish;
                }
                r = 0;
        }
finish:
        EVP_CIPHER_CTX_free(ctx);
        return r;
}

static int layer(bool seal, const Layer *l, const kek_aek *key, const uint8_t *bctx, size_t bctx_len, const uint8_t *in,
                 size_t len, uint8_t *out) {
        size_t key_len = kek_aek_size(key);
        uint8_t dek[32];
        int r;

        if (!key || !in || !out || (!bctx && bctx_len) || len > INT32_MAX - 64 || bctx_len > INT32_MAX - 64 ||
            (!seal && len < KEK_BLOCK_OVERHEAD))
                return -EINVAL;
        /* A short key makes the DEK guessable (a 1-byte AEK falls to 256 tries): refuse it. */
        if ((seal || l->bind) ? key_len != KEK_AEK_SIZE : key_len < OPEN_KEY_MIN)
                return -EINVAL;
        r = derive(key, l, bctx, bctx_len, dek);
        if (r >= 0)
                r = aead(seal, l, dek, bctx, bctx_len, in, len, out);
        OPENSSL_cleanse(dek, sizeof(dek));
        return r;
}

/* Single (or inner) AES-GCM layer: v1 when bind is NULL. */
static int aek_layer(bool seal, const uint8_t *bind, const kek_aek *aek, const uint8_t *bctx, size_t bctx_len,
                     const uint8_t *in, size_t len, uint8_t *out) {
        Layer l = bind ? (Layer) { FMT_GCM_BOUND, false, SALT_V2, bind } : (Layer) { FMT_GCM, false, SALT_V1, NULL };

        return layer(seal, &l, aek, bctx, bctx_len, in, len, out);
}

static int platform_layer(bool seal, const uint8_t *bind, const kek_aek *pk, const uint8_t *bctx, size_t bctx_len,
                          const uint8_t *in, size_t len, uint8_t *out) {
        Layer l = bind ? (Layer) { FMT_CHACHA_BOUND, true, SALT_V2_PLATFORM, bind }
                       : (Layer) { FMT_CHACHA, true, SALT_V1_PLATFORM, NULL };

        return layer(seal, &l, pk, bctx, bctx_len, in, len, out);
}

_public_ int kek_block_seal(const kek_aek *aek, const uint8_t *bctx, size_t bctx_len, const uint8_t *in, size_t len,
                            uint8_t *out) {
        return aek_layer(true, NULL, aek, bctx, bctx_len, in, len, out);
}

_public_ int kek_block_open(const kek_aek *aek, const uint8_t *bctx, size_t bctx_len, const uint8_t *in, size_t len,
                            uint8_t *out) {
        return aek_layer(false, NULL, aek, bctx, bctx_len, in, len, out);
}

_public_ int kek_block_seal_ex(const kek_aek *aek, const kek_block_params *p, const uint8_t *bctx, size_t bctx_len,
                               const uint8_t *in, size_t len, uint8_t *out) {
        uint8_t bind[BIND_SIZE];
        int r = bind_encode(p, ROLE_SINGLE, bind);

        return r < 0 ? r : aek_layer(true, bind, aek, bctx, bctx_len, in, len, out);
}

_public_ int kek_block_open_ex(const kek_aek *aek, const kek_block_params *p, const uint8_t *bctx, size_t bctx_len,
                               const uint8_t *in, size_t len, uint8_t *out) {
        uint8_t bind[BIND_SIZE];
        int r = bind_encode(p, ROLE_SINGLE, bind);

        return r < 0 ? r : aek_layer(false, bind, aek, bctx, bctx_len, in, len, out);
}

/* Inner layer (AEK, AES-GCM) into out + the outer header's room, then the outer one (platform key, ChaCha20-Poly1305). */
static int seal2(const kek_block_params *p, const kek_aek *aek, const kek_aek *pk, const uint8_t *bctx, size_t bctx_len,
                 const uint8_t *in, size_t len, uint8_t *out) {
        uint8_t inner_bind[BIND_SIZE], outer_bind[BIND_SIZE];
        size_t inner;
        uint8_t *tmp;
        int r;

        if (p && (bind_encode(p, ROLE_INNER, inner_bind) < 0 || bind_encode(p, ROLE_OUTER, outer_bind) < 0))
                return -EINVAL;
        if (!pk || kek_aek_size(pk) != KEK_AEK_SIZE || !out || len > INT32_MAX - 64)
                return -EINVAL; /* checked before the inner layer is written */
        r = aek_layer(true, p ? inner_bind : NULL, aek, bctx, bctx_len, in, len, out + 1 + NONCE);
        if (r < 0)
                return r;
        inner = len + KEK_BLOCK_OVERHEAD;
        tmp = OPENSSL_malloc(inner);
        if (!tmp)
                return -ENOMEM;
        memcpy(tmp, out + 1 + NONCE, inner);
        r = platform_layer(true, p ? outer_bind : NULL, pk, bctx, bctx_len, tmp, inner, out);
        OPENSSL_clear_free(tmp, inner);
        return r;
}

static int open2(const kek_block_params *p, const kek_aek *aek, const kek_aek *pk, const uint8_t *bctx, size_t bctx_len,
                 const uint8_t *in, size_t len, uint8_t *out) {
        uint8_t inner_bind[BIND_SIZE], outer_bind[BIND_SIZE];
        size_t inner;
        uint8_t *tmp;
        int r;

        if (p && (bind_encode(p, ROLE_INNER, inner_bind) < 0 || bind_encode(p, ROLE_OUTER, outer_bind) < 0))
                return -EINVAL;
        if (len < KEK_BLOCK2_OVERHEAD)
                return -EINVAL;
        inner = len - KEK_BLOCK_OVERHEAD;
        tmp = OPENSSL_malloc(inner);
        if (!tmp)
                return -ENOMEM;
        r = platform_layer(false, p ? outer_bind : NULL, pk, bctx, bctx_len, in, len, tmp);
        if (r >= 0)
                r = aek_layer(false, p ? inner_bind : NULL, aek, bctx, bctx_len, tmp, inner, out);
        OPENSSL_clear_free(tmp, inner);
        return r;
}

_public_ int kek_block_seal2(const kek_aek *aek, const kek_aek *platform_key, const uint8_t *bctx, size_t bctx_len,
                             const uint8_t *in, size_t len, uint8_t *out) {
        return seal2(NULL, aek, platform_key, bctx, bctx_len, in, len, out);
}

_public_ int kek_block_open2(const kek_aek *aek, const kek_aek *platform_key, const uint8_t *bctx, size_t bctx_len,
                             const uint8_t *in, size_t len, uint8_t *out) {
        return open2(NULL, aek, platform_key, bctx, bctx_len, in, len, out);
}

_public_ int kek_block_seal2_ex(const kek_aek *aek, const kek_aek *platform_key, const kek_block_params *p,
                                const uint8_t *bctx, size_t bctx_len, const uint8_t *in, size_t len, uint8_t *out) {
        return p ? seal2(p, aek, platform_key, bctx, bctx_len, in, len, out) : -EINVAL;
}

_public_ int kek_block_open2_ex(const kek_aek *aek, const kek_aek *platform_key, const kek_block_params *p,
                                const uint8_t *bctx, size_t bctx_len, const uint8_t *in, size_t len, uint8_t *out) {
        return p ? open2(p, aek, platform_key, bctx, bctx_len, in, len, out) : -EINVAL;
}
