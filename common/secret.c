/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Secret storage on OpenSSL's secure heap (crypto/mem_sec.c: mmap'd arena,
 * mlock, MADV_DONTDUMP, guard pages, cleansed on free). We do not hand-write an
 * allocator for this. If the secure heap was never initialised OpenSSL would
 * silently fall back to malloc, so secret_new() refuses to run without it.
 */
#include "config.h"

#include <errno.h>
#include <string.h>

#include <openssl/crypto.h>

#include "common/secret.h"

int secret_heap_init(size_t heap_size) {
        int r;

        if (CRYPTO_secure_malloc_initialized())
                return 1;
        r = CRYPTO_secure_malloc_init(heap_size, 16);
        if (r == 0)
                return -ENOMEM;
        return r == 1 ? 1 : 0;
}

int secret_new(size_t len, Secret **ret) {
        Secret *s;

        if (len == 0)
                return -EINVAL;
        if (!CRYPTO_secure_malloc_initialized())
                return -EPERM;
        s = OPENSSL_secure_zalloc(sizeof(*s) + len);
        if (!s)
                return -ENOMEM;
        s->len = s->capacity = len;
        s->data = (uint8_t *) (s + 1);
        *ret = s;
        return 0;
}

int secret_new_copy(const void *buf, size_t len, Secret **ret) {
        Secret *s;
        int r;

        r = secret_new(len, &s);
        if (r < 0)
                return r;
        memcpy(s->data, buf, len);
        *ret = s;
        return 0;
}

void secret_truncate(Secret *s, size_t len) {
        if (len >= s->len)
                return;
        OPENSSL_cleanse(s->data + len, s->len - len);
        s->len = len;
}

Secret *secret_free(Secret *s) {
        if (!s)
                return NULL;
        OPENSSL_secure_clear_free(s, sizeof(*s) + s->capacity);
        return NULL;
}

void secret_cleanse(void *p, size_t len) {
        if (p && len > 0)
                OPENSSL_cleanse(p, len);
}
