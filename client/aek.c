/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * kek_aek: a plaintext AEK in protected memory, reference counted so the
 * cache can evict an entry while a caller still uses its AEK. Up to
 * SECRET_ARENA_SLOT bytes live in a slot of one process-wide SecretArena
 * (dump-excluded, locked when allowed, cleansed on release); larger ones get
 * their own dump-excluded mapping. The header holds no secret.
 */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <sys/mman.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "client/aek.h"
#include "client/libkek.h"
#include "common/secret.h"

#define _public_ __attribute__((visibility("default")))

struct kek_aek {
        unsigned refs;
        uint32_t len;
        size_t map_len;    /* 0: arena slot */
        uint8_t *data;
};

static pthread_mutex_t arena_lock = PTHREAD_MUTEX_INITIALIZER;
static SecretArena *arena;

int aek_new(size_t len, kek_aek **ret) {
        kek_aek *a;

        if (len == 0 || len > 1024)
                return -EINVAL;
        a = calloc(1, sizeof(*a));
        if (!a)
                return -ENOMEM;
        a->refs = 1;
        a->len = (uint32_t) len;
        if (len <= SECRET_ARENA_SLOT) {
                pthread_mutex_lock(&arena_lock);
                if (!arena && secret_arena_new(&arena) < 0)
                        arena = NULL;
                a->data = arena ? secret_arena_alloc(arena) : NULL;
                pthread_mutex_unlock(&arena_lock);
        } else {
                a->map_len = 4096;
                a->data = mmap(NULL, a->map_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
                if (a->data == MAP_FAILED)
                        a->data = NULL;
                else {
                        (void) madvise(a->data, a->map_len, MADV_DONTDUMP);
                        (void) mlock(a->data, a->map_len);
                }
        }
        if (!a->data) {
                free(a);
                return -ENOMEM;
        }
        *ret = a;
        return 0;
}

uint8_t *aek_data_mut(kek_aek *a) {
        return a->data;
}

_public_ int kek_aek_from_bytes(const uint8_t *data, size_t len, kek_aek **ret) {
        kek_aek *a;
        int r;

        if (!data || !ret)
                return -EINVAL;
        r = aek_new(len, &a);
        if (r < 0)
                return r;
        memcpy(a->data, data, len);
        *ret = a;
        return 0;
}

_public_ int kek_aek_generate(kek_aek **ret) {
        kek_aek *a;
        int r;

        if (!ret)
                return -EINVAL;
        r = aek_new(KEK_AEK_SIZE, &a);
        if (r < 0)
                return r;
        if (RAND_priv_bytes(a->data, KEK_AEK_SIZE) != 1) {
                kek_aek_unref(a);
                return -EIO;
        }
        *ret = a;
        return 0;
}

_public_ kek_aek *kek_aek_ref(kek_aek *a) {
        if (a)
                __atomic_add_fetch(&a->refs, 1, __ATOMIC_RELAXED);
        return a;
}

_public_ void kek_aek_unref(kek_aek *a) {
        if (!a || __atomic_sub_fetch(&a->refs, 1, __ATOMIC_ACQ_REL) > 0)
                return;
        if (a->map_len) {
                OPENSSL_cleanse(a->data, a->map_len);
                (void) munmap(a->data, a->map_len);
        } else {
                pthread_mutex_lock(&arena_lock);
                secret_arena_release(arena, a->data);
                pthread_mutex_unlock(&arena_lock);
        }
        free(a);
}

_public_ const uint8_t *kek_aek_data(const kek_aek *a) {
        return a ? a->data : NULL;
}

_public_ size_t kek_aek_size(const kek_aek *a) {
        return a ? a->len : 0;
}
