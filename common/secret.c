/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Secret storage on OpenSSL's secure heap (crypto/mem_sec.c: mmap'd arena,
 * mlock, MADV_DONTDUMP, guard pages, cleansed on free). We do not hand-write an
 * allocator for this. If the secure heap was never initialised OpenSSL would
 * silently fall back to malloc, so secret_new() refuses to run without it.
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

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

#define ARENA_CHUNK (64u * 1024u)

typedef struct ArenaChunk {
        struct ArenaChunk *next;
        uint8_t *mem;
} ArenaChunk;

struct SecretArena {
        ArenaChunk *chunks;
        void *free_list;     /* freed slots, linked through their first bytes (cleansed otherwise) */
        bool locked;
};

int secret_arena_new(SecretArena **ret) {
        SecretArena *a = calloc(1, sizeof(*a));

        if (!a)
                return -ENOMEM;
        a->locked = true;
        *ret = a;
        return 0;
}

SecretArena *secret_arena_free(SecretArena *a) {
        if (!a)
                return NULL;
        while (a->chunks) {
                ArenaChunk *c = a->chunks;

                a->chunks = c->next;
                OPENSSL_cleanse(c->mem, ARENA_CHUNK);
                (void) munlock(c->mem, ARENA_CHUNK);
                (void) munmap(c->mem, ARENA_CHUNK);
                free(c);
        }
        free(a);
        return NULL;
}

static int arena_grow(SecretArena *a) {
        ArenaChunk *c = calloc(1, sizeof(*c));
        uint8_t *m;

        if (!c)
                return -ENOMEM;
        m = mmap(NULL, ARENA_CHUNK, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (m == MAP_FAILED) {
                free(c);
                return -ENOMEM;
        }
        /* Never in a core dump; in RAM only if the limit allows (storage processes run with defaults). */
        (void) madvise(m, ARENA_CHUNK, MADV_DONTDUMP);
        if (mlock(m, ARENA_CHUNK) < 0)
                a->locked = false;
        c->mem = m;
        c->next = a->chunks;
        a->chunks = c;
        for (size_t off = 0; off < ARENA_CHUNK; off += SECRET_ARENA_SLOT) {
                *(void **) (m + off) = a->free_list;
                a->free_list = m + off;
        }
        return 0;
}

void *secret_arena_alloc(SecretArena *a) {
        void *slot;

        if (!a->free_list && arena_grow(a) < 0)
                return NULL;
        slot = a->free_list;
        a->free_list = *(void **) slot;
        memset(slot, 0, SECRET_ARENA_SLOT);
        return slot;
}

void secret_arena_release(SecretArena *a, void *slot) {
        if (!slot)
                return;
        OPENSSL_cleanse(slot, SECRET_ARENA_SLOT);
        *(void **) slot = a->free_list;
        a->free_list = slot;
}

bool secret_arena_locked(const SecretArena *a) {
        return a->locked;
}

/* Kept out of line and big enough to cover the frames of the calls that just returned. */
__attribute__((noinline)) static void burn_stack(void) {
        volatile uint8_t area[16384];

        OPENSSL_cleanse((void *) area, sizeof(area));
}

void secret_scrub_cpu_state(void) {
        burn_stack();
#if defined(__x86_64__)
        /* glibc's EVEX memcpy uses ymm16-31 precisely because vzeroall/vzeroupper leave them alone. */
        if (__builtin_cpu_supports("avx512f"))
                __asm__ volatile("vpxorq %%zmm16, %%zmm16, %%zmm16\n\tvpxorq %%zmm17, %%zmm17, %%zmm17\n\t"
                                 "vpxorq %%zmm18, %%zmm18, %%zmm18\n\tvpxorq %%zmm19, %%zmm19, %%zmm19\n\t"
                                 "vpxorq %%zmm20, %%zmm20, %%zmm20\n\tvpxorq %%zmm21, %%zmm21, %%zmm21\n\t"
                                 "vpxorq %%zmm22, %%zmm22, %%zmm22\n\tvpxorq %%zmm23, %%zmm23, %%zmm23\n\t"
                                 "vpxorq %%zmm24, %%zmm24, %%zmm24\n\tvpxorq %%zmm25, %%zmm25, %%zmm25\n\t"
                                 "vpxorq %%zmm26, %%zmm26, %%zmm26\n\tvpxorq %%zmm27, %%zmm27, %%zmm27\n\t"
                                 "vpxorq %%zmm28, %%zmm28, %%zmm28\n\tvpxorq %%zmm29, %%zmm29, %%zmm29\n\t"
                                 "vpxorq %%zmm30, %%zmm30, %%zmm30\n\tvpxorq %%zmm31, %%zmm31, %%zmm31" ::: "memory");
        if (__builtin_cpu_supports("avx"))
                __asm__ volatile("vzeroall" ::: "memory");
        else
                __asm__ volatile("pxor %%xmm0, %%xmm0\n\tpxor %%xmm1, %%xmm1\n\tpxor %%xmm2, %%xmm2\n\t"
                                 "pxor %%xmm3, %%xmm3\n\tpxor %%xmm4, %%xmm4\n\tpxor %%xmm5, %%xmm5\n\t"
                                 "pxor %%xmm6, %%xmm6\n\tpxor %%xmm7, %%xmm7\n\tpxor %%xmm8, %%xmm8\n\t"
                                 "pxor %%xmm9, %%xmm9\n\tpxor %%xmm10, %%xmm10\n\tpxor %%xmm11, %%xmm11\n\t"
                                 "pxor %%xmm12, %%xmm12\n\tpxor %%xmm13, %%xmm13\n\tpxor %%xmm14, %%xmm14\n\t"
                                 "pxor %%xmm15, %%xmm15" ::: "memory");
#endif
}
