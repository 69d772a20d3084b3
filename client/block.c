/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Block encryption helpers of libkek (formats in libkek.h). Everything is
 * OpenSSL: HKDF through EVP_KDF, AES-256-GCM and ChaCha20-Poly1305 through
 * EVP_CIPHER. Derived DEKs live on the stack for one call and are cleansed.
 * Nonces are random per seal; one DEK per block context keeps the number of
 * seals under one key far below the random-nonce bound.
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
#define NONCE 12
#define TAG 16

static int derive(const kek_aek *key, const char *salt, const uint8_t *info, size_t info_len, uint8_t out[32]) {
        EVP_KDF *kdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
        EVP_KDF_CTX *kctx = kdf ? EVP_KDF_CTX_new(kdf) : NULL;
        OSSL_PARAM params[5];
        int ok;

        EVP_KDF_free(kdf);
        if (!kctx)
                return -ENOMEM;
        params[0] = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *) "SHA256", 0);
        params[1] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void *) kek_aek_data(key), kek_aek_size(key));
        params[2] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, (void *) salt, strlen(salt));
        params[3] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, (void *) info, info_len);
        params[4] = OSSL_PARAM_construct_end();
        ok = EVP_KDF_derive(kctx, out, 32, params) == 1;
        EVP_KDF_CTX_free(kctx);
        return ok ? 0 : -EIO;
}

static int aead(bool seal, int fmt, const uint8_t key[32], const uint8_t *aad, size_t aad_len, const uint8_t *in,
                size_t len, uint8_t *out) {
        const EVP_CIPHER *cipher = fmt == FMT_GCM ? EVP_aes_256_gcm() : EVP_chacha20_poly1305();
        EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
        uint8_t hdr = (uint8_t) fmt;
        int n = 0, r = -EIO;

        if (!ctx)
                return -ENOMEM;
        if (seal) {
                out[0] = hdr;
                if (RAND_bytes(out + 1, NONCE) != 1)
                        goto finish;
                if (EVP_EncryptInit_ex(ctx, cipher, NULL, key, out + 1) != 1 ||
                    EVP_EncryptUpdate(ctx, NULL, &n, &hdr, 1) != 1 ||
                    (aad_len && EVP_EncryptUpdate(ctx, NULL, &n, aad, (int) aad_len) != 1) ||
                    EVP_EncryptUpdate(ctx, out + 1 + NONCE, &n, in, (int) len) != 1 ||
                    EVP_EncryptFinal_ex(ctx, out + 1 + NONCE + n, &n) != 1 ||
                    EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, TAG, out + 1 + NONCE + len) != 1)
                        goto finish;
                r = 0;
        } else {
                size_t ct_len = len - 1 - NONCE - TAG;

                r = -EBADMSG;
                if (in[0] != hdr)
                        goto finish;
                if (EVP_DecryptInit_ex(ctx, cipher, NULL, key, in + 1) != 1 ||
                    EVP_DecryptUpdate(ctx, NULL, &n, &hdr, 1) != 1 ||
                    (aad_len && EVP_DecryptUpdate(ctx, NULL, &n, aad, (int) aad_len) != 1) ||
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

static int layer(bool seal, int fmt, const kek_aek *key, const char *salt, const uint8_t *bctx, size_t bctx_len,
                 const uint8_t *in, size_t len, uint8_t *out) {
        uint8_t dek[32];
        int r;

        if (!key || !in || !out || (!bctx && bctx_len) || len > INT32_MAX - 64 ||
            (!seal && len < KEK_BLOCK_OVERHEAD))
                return -EINVAL;
        r = derive(key, salt, bctx, bctx_len, dek);
        if (r >= 0)
                r = aead(seal, fmt, dek, bctx, bctx_len, in, len, out);
        OPENSSL_cleanse(dek, sizeof(dek));
        return r;
}

_public_ int kek_block_seal(const kek_aek *aek, const uint8_t *bctx, size_t bctx_len, const uint8_t *in, size_t len,
                            uint8_t *out) {
        return layer(true, FMT_GCM, aek, "kekd-dek-v1", bctx, bctx_len, in, len, out);
}

_public_ int kek_block_open(const kek_aek *aek, const uint8_t *bctx, size_t bctx_len, const uint8_t *in, size_t len,
                            uint8_t *out) {
        return layer(false, FMT_GCM, aek, "kekd-dek-v1", bctx, bctx_len, in, len, out);
}

_public_ int kek_block_seal2(const kek_aek *aek, const kek_aek *platform_key, const uint8_t *bctx, size_t bctx_len,
                             const uint8_t *in, size_t len, uint8_t *out) {
        int r;

        /* inner (AEK, AES-GCM) into out + outer header room, then outer (platform key, ChaCha20-Poly1305) */
        r = kek_block_seal(aek, bctx, bctx_len, in, len, out + 1 + NONCE);
        if (r < 0)
                return r;
        {
                size_t inner = len + KEK_BLOCK_OVERHEAD;
                uint8_t *tmp = OPENSSL_malloc(inner);

                if (!tmp)
                        return -ENOMEM;
                memcpy(tmp, out + 1 + NONCE, inner);
                r = layer(true, FMT_CHACHA, platform_key, "kekd-platform-v1", bctx, bctx_len, tmp, inner, out);
                OPENSSL_clear_free(tmp, inner);
        }
        return r;
}

_public_ int kek_block_open2(const kek_aek *aek, const kek_aek *platform_key, const uint8_t *bctx, size_t bctx_len,
                             const uint8_t *in, size_t len, uint8_t *out) {
        size_t inner;
        uint8_t *tmp;
        int r;

        if (len < KEK_BLOCK2_OVERHEAD)
                return -EINVAL;
        inner = len - KEK_BLOCK_OVERHEAD;
        tmp = OPENSSL_malloc(inner);
        if (!tmp)
                return -ENOMEM;
        r = layer(false, FMT_CHACHA, platform_key, "kekd-platform-v1", bctx, bctx_len, in, len, tmp);
        if (r >= 0)
                r = kek_block_open(aek, bctx, bctx_len, tmp, inner, out);
        OPENSSL_clear_free(tmp, inner);
        return r;
}
