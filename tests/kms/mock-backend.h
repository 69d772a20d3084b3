/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * An in-memory KmsBackend for the unit tests and the fuzzer: one key with a
 * current version, a state and recoverability; a "blob" has kekd's header
 * (proto/blob.h: format, key name, version) and IV and tag sizes, its
 * "ciphertext" a 1-byte context length, the context and the plaintext XORed
 * with 0x5a, so a wrong context or a disabled key fails as kekd would. Calls and
 * the last context are counted, so a test sees whether the backend was asked.
 * Not thread-safe: the tests call it from one thread.
 */
#pragma once

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/libkek.h"
#include "kms/service.h"
#include "proto/blob.h"

typedef struct MockKek {
        KmsKeyState st;
        int fail;               /* returned by every call when non-zero */
        size_t pad;             /* extra blob bytes, to make a blob too long */
        unsigned calls;
        char last_ctx[256];
} MockKek;

static int mock_wrap(void *ud, const char *key, const uint8_t *pt, size_t len, const uint8_t *ctx, size_t ctx_len,
                     uint8_t **ret_blob, size_t *ret_blob_len, uint32_t *ret_version) {
        MockKek *m = ud;
        m->calls++;
        snprintf(m->last_ctx, sizeof(m->last_ctx), "%.*s", (int) ctx_len, (const char *) ctx);
        if (m->fail)
                return m->fail;
        if (m->st.state != 1)
                return -(KEK_ERROR_BASE + (m->st.state == 2 ? KEK_E_KEY_DISABLED : KEK_E_KEY_DELETED));
        if (ctx_len > 255)
                return -(KEK_ERROR_BASE + KEK_E_INVALID_ARGUMENT);
        uint8_t h[BLOB_HEADER_MAX];
        int hl = blob_header(key, m->st.current_version, h);
        if (hl < 0)
                return -(KEK_ERROR_BASE + KEK_E_INVALID_ARGUMENT);
        size_t off = (size_t) hl + BLOB_IV_SIZE, n = off + 1 + ctx_len + len + m->pad + BLOB_TAG_SIZE;
        uint8_t *b = calloc(1, n);
        if (!b)
                return -ENOMEM;
        memcpy(b, h, (size_t) hl);
        b[off] = (uint8_t) ctx_len;
        memcpy(b + off + 1, ctx, ctx_len);
        for (size_t i = 0; i < len; i++)
                b[off + 1 + ctx_len + i] = pt[i] ^ 0x5a;
        *ret_blob = b;
        *ret_blob_len = n;
        *ret_version = m->st.current_version;
        return 0;
}

static int mock_unwrap(void *ud, const uint8_t *blob, size_t len, const uint8_t *ctx, size_t ctx_len, Secret **ret) {
        MockKek *m = ud;
        m->calls++;
        snprintf(m->last_ctx, sizeof(m->last_ctx), "%.*s", (int) ctx_len, (const char *) ctx);
        if (m->fail)
                return m->fail;
        if (m->st.state != 1)
                return -(KEK_ERROR_BASE + (m->st.state == 2 ? KEK_E_KEY_DISABLED : KEK_E_KEY_DELETED));
        BlobView v;
        if (blob_parse(blob, len, &v) < 0)
                return -(KEK_ERROR_BASE + KEK_E_BLOB_INVALID);
        const uint8_t *c = v.ciphertext;
        size_t cl = v.ciphertext_len - v.tag_len;
        if (cl < 2 + ctx_len || c[0] != ctx_len || memcmp(c + 1, ctx, ctx_len) != 0)
                return -(KEK_ERROR_BASE + KEK_E_BLOB_INVALID);
        size_t n = cl - 1 - ctx_len;
        int r = secret_new(n, ret);
        if (r < 0)
                return r;
        for (size_t i = 0; i < n; i++)
                (*ret)->data[i] = c[1 + ctx_len + i] ^ 0x5a;
        return 0;
}

static int mock_key_state(void *ud, const char *key, KmsKeyState *ret) {
        MockKek *m = ud;
        (void) key;
        m->calls++;
        if (m->fail)
                return m->fail;
        *ret = m->st;
        return 0;
}

static const char *mock_strerror(int r) {
        return r == -ECONNREFUSED ? "connection refused" : "mock error";
}
