/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The AEK cache (see cache.h). A chained hash table sized to the next power
 * of two above the bound, plus an LRU list. The digest is SHA-256 over a
 * per-cache random salt, the blob length, the blob and the context,
 * truncated to 128 bits: lookups compare digests, so neither blobs nor
 * contexts are kept, which keeps an entry near 180 bytes all told.
 *
 * Eviction is CLOCK (second chance) over the insertion-ordered list: a hit
 * only sets the entry's referenced flag, in the cache line the lookup reads
 * anyway, instead of relinking neighbours as LRU would (three more cache
 * misses per hit with a million entries); a store that must evict sweeps
 * from the hand, clearing flags, to the first entry not used since the
 * last sweep. A hit costs one digest and one bucket walk; the digest starts from a
 * context that has absorbed the salt already and is copied into a
 * per-thread context, so no allocation and no re-initialisation of the
 * hash happens on the hit path.
 *
 * The bucket array and the entries are two fixed tables sized by the bound
 * at creation (entries come from the table's free list, never from malloc),
 * mapped lazily and, from 2 MiB on, with transparent huge pages where the
 * kernel allows them (madvise mode): with a million entries a hit's three
 * random accesses otherwise each miss the TLB as well as the cache
 * (measured with a million entries: 1.27-1.44 us per hit before, 1.10-1.18
 * us with these tables on huge pages; docs/performance.md).
 */
#include "config.h"

#include <errno.h>
#include <stdbool.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <openssl/evp.h>
#include <openssl/rand.h>

#include "client/cache.h"

typedef struct Entry {
        struct Entry *hnext;
        struct Entry *prev, *next;   /* insertion order: head is newest */
        bool referenced;             /* used since the clock hand last passed */
        uint8_t digest[16];
        uint64_t key_id;
        uint32_t version;
        uint64_t fetched_usec;
        uint64_t last_ok_usec;
        kek_aek *aek;
} Entry;

struct Cache {
        pthread_mutex_t lock;
        Entry **buckets;
        size_t n_buckets;            /* power of two */
        Entry *slots;                /* max entries, handed out in order, then recycled through free */
        size_t slots_used;
        Entry *free;                 /* recycled slots, linked through hnext */
        size_t n, max;
        Entry *head, *tail;
        Entry *hand;                 /* CLOCK: the next eviction candidate, moving towards the head; NULL: tail */
        uint8_t salt[16];
        EVP_MD *sha256;
        EVP_MD_CTX *salted;          /* SHA-256 after the salt; never updated after cache_new() */
        uint64_t hits, misses, refreshes, evictions, drops, stale_served;
};

/* Zeroed memory for a table, touched only as it is used; huge pages from 2 MiB on where allowed. */
static void *table_new(size_t size) {
        void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);

        if (p == MAP_FAILED)
                return NULL;
        if (size >= (2u << 20))
                (void) madvise(p, size, MADV_HUGEPAGE); /* a hint: without it, 4 KiB pages */
        return p;
}

static void table_free(void *p, size_t size) {
        if (p)
                (void) munmap(p, size);
}

int cache_new(size_t max_entries, Cache **ret) {
        Cache *c;

        if (max_entries == 0 || max_entries > (1u << 26))
                return -EINVAL;
        c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        c->n_buckets = 16;
        while (c->n_buckets < max_entries)
                c->n_buckets <<= 1;
        c->max = max_entries;
        c->buckets = table_new(c->n_buckets * sizeof(*c->buckets));
        c->slots = table_new(c->max * sizeof(*c->slots));
        c->sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
        c->salted = EVP_MD_CTX_new();
        if (!c->buckets || !c->slots || !c->sha256 || !c->salted || RAND_bytes(c->salt, sizeof(c->salt)) != 1 ||
            EVP_DigestInit_ex(c->salted, c->sha256, NULL) != 1 ||
            EVP_DigestUpdate(c->salted, c->salt, sizeof(c->salt)) != 1) {
                EVP_MD_CTX_free(c->salted);
                EVP_MD_free(c->sha256);
                table_free(c->buckets, c->n_buckets * sizeof(*c->buckets));
                table_free(c->slots, c->max * sizeof(*c->slots));
                free(c);
                return -ENOMEM;
        }
        pthread_mutex_init(&c->lock, NULL);
        *ret = c;
        return 0;
}

/* A zeroed slot; NULL only if all max are in use (the caller evicts first). */
static Entry *entry_new(Cache *c) {
        Entry *e = c->free;

        if (e) {
                c->free = e->hnext;
                memset(e, 0, sizeof(*e));
                return e;
        }
        return c->slots_used < c->max ? &c->slots[c->slots_used++] : NULL;
}

static void entry_free(Cache *c, Entry *e) {
        kek_aek_unref(e->aek);
        memset(e, 0, sizeof(*e));
        e->hnext = c->free;
        c->free = e;
}

static void lru_unlink(Cache *c, Entry *e) {
        if (c->hand == e)
                c->hand = e->prev;
        if (e->prev)
                e->prev->next = e->next;
        else
                c->head = e->next;
        if (e->next)
                e->next->prev = e->prev;
        else
                c->tail = e->prev;
        e->prev = e->next = NULL;
}

static void lru_push(Cache *c, Entry *e) {
        e->prev = NULL;
        e->next = c->head;
        if (c->head)
                c->head->prev = e;
        c->head = e;
        if (!c->tail)
                c->tail = e;
}

static size_t bucket_of(const Cache *c, const uint8_t digest[16]) {
        uint64_t h;

        memcpy(&h, digest, sizeof(h));
        return (size_t) (h & (c->n_buckets - 1));
}

/* Unlinks e from its bucket and the LRU, and frees it. */
static void entry_remove(Cache *c, Entry *e) {
        Entry **p = &c->buckets[bucket_of(c, e->digest)];

        while (*p && *p != e)
                p = &(*p)->hnext;
        if (*p)
                *p = e->hnext;
        lru_unlink(c, e);
        c->n--;
        entry_free(c, e);
}

void cache_clear(Cache *c) {
        pthread_mutex_lock(&c->lock);
        while (c->head)
                entry_remove(c, c->head);
        pthread_mutex_unlock(&c->lock);
}

Cache *cache_free(Cache *c) {
        if (!c)
                return NULL;
        cache_clear(c);
        EVP_MD_CTX_free(c->salted);
        EVP_MD_free(c->sha256);
        table_free(c->buckets, c->n_buckets * sizeof(*c->buckets));
        table_free(c->slots, c->max * sizeof(*c->slots));
        pthread_mutex_destroy(&c->lock);
        free(c);
        return NULL;
}

/* One hash context per thread, reused by every digest the thread computes (freed when it exits). */
static pthread_key_t digest_key;
static pthread_once_t digest_once = PTHREAD_ONCE_INIT;
static bool digest_key_ok;

static void digest_ctx_free(void *p) {
        EVP_MD_CTX_free(p);
}

static void digest_key_init(void) {
        digest_key_ok = pthread_key_create(&digest_key, digest_ctx_free) == 0;
}

static EVP_MD_CTX *digest_ctx(void) {
        EVP_MD_CTX *m;

        (void) pthread_once(&digest_once, digest_key_init);
        if (!digest_key_ok)
                return NULL;
        m = pthread_getspecific(digest_key);
        if (!m) {
                m = EVP_MD_CTX_new();
                if (m && pthread_setspecific(digest_key, m) != 0) {
                        EVP_MD_CTX_free(m);
                        m = NULL;
                }
        }
        return m;
}

void cache_digest(const Cache *c, const uint8_t *blob, size_t blob_len, const uint8_t *ctx, size_t ctx_len,
                  uint8_t out[16]) {
        EVP_MD_CTX *m = digest_ctx();
        uint8_t md[32], len[8];
        unsigned md_len = 0;

        for (int i = 0; i < 8; i++)
                len[i] = (uint8_t) (blob_len >> (8 * i));
        /* The length separates blob from context: (b, c) and (b', c') never hash alike by concatenation. */
        if (!m || EVP_MD_CTX_copy_ex(m, c->salted) != 1 || EVP_DigestUpdate(m, len, sizeof(len)) != 1 ||
            EVP_DigestUpdate(m, blob, blob_len) != 1 || (ctx_len && EVP_DigestUpdate(m, ctx, ctx_len) != 1) ||
            EVP_DigestFinal_ex(m, md, &md_len) != 1)
                memset(md, 0, sizeof(md)); /* unreachable in practice; a zero digest only ever misses */
        memcpy(out, md, 16);
}

uint64_t cache_key_id(const char *name) {
        uint64_t h = 1469598103934665603ULL;

        /* FNV-1a: a collision can only drop more entries on revocation, never fewer. */
        for (; name && *name; name++)
                h = (h ^ (uint8_t) *name) * 1099511628211ULL;
        return h;
}

static Entry *find(Cache *c, const uint8_t digest[16]) {
        for (Entry *e = c->buckets[bucket_of(c, digest)]; e; e = e->hnext)
                if (memcmp(e->digest, digest, 16) == 0)
                        return e;
        return NULL;
}

CacheResult cache_lookup(Cache *c, const uint8_t digest[16], uint64_t now, uint64_t refresh_usec, kek_aek **ret_aek,
                         uint64_t *ret_last_ok) {
        CacheResult res;
        Entry *e;

        pthread_mutex_lock(&c->lock);
        e = find(c, digest);
        if (!e) {
                c->misses++;
                pthread_mutex_unlock(&c->lock);
                return CACHE_MISS;
        }
        e->referenced = true;
        res = now - e->fetched_usec < refresh_usec && e->fetched_usec != 0 ? CACHE_FRESH : CACHE_STALE;
        if (res == CACHE_FRESH)
                c->hits++;
        *ret_aek = kek_aek_ref(e->aek);
        *ret_last_ok = e->last_ok_usec;
        pthread_mutex_unlock(&c->lock);
        return res;
}

void cache_store(Cache *c, const uint8_t digest[16], uint64_t key_id, uint32_t version, kek_aek *aek, uint64_t now) {
        Entry *e;

        pthread_mutex_lock(&c->lock);
        e = find(c, digest);
        if (e) {
                c->refreshes++;
                if (e->aek != aek) {
                        kek_aek_unref(e->aek);
                        e->aek = kek_aek_ref(aek);
                }
                e->fetched_usec = e->last_ok_usec = now;
                pthread_mutex_unlock(&c->lock);
                return;
        }
        if (c->n >= c->max) {
                Entry *victim = c->hand ? c->hand : c->tail;

                /* Second chance: at most one full turn, since every flag passed is cleared. */
                for (size_t i = 0; i < c->n && victim->referenced; i++) {
                        victim->referenced = false;
                        victim = victim->prev ? victim->prev : c->tail;
                }
                c->evictions++;
                c->hand = victim->prev;
                entry_remove(c, victim);
        }
        e = entry_new(c);
        if (!e) {
                pthread_mutex_unlock(&c->lock); /* not cached: the next use unwraps again */
                return;
        }
        memcpy(e->digest, digest, 16);
        e->key_id = key_id;
        e->version = version;
        e->fetched_usec = e->last_ok_usec = now;
        e->aek = kek_aek_ref(aek);
        e->hnext = c->buckets[bucket_of(c, digest)];
        c->buckets[bucket_of(c, digest)] = e;
        lru_push(c, e);
        c->n++;
        pthread_mutex_unlock(&c->lock);
}

void cache_drop_entry(Cache *c, const uint8_t digest[16]) {
        Entry *e;

        pthread_mutex_lock(&c->lock);
        e = find(c, digest);
        if (e) {
                c->drops++;
                entry_remove(c, e);
        }
        pthread_mutex_unlock(&c->lock);
}

size_t cache_drop_key(Cache *c, uint64_t key_id, const uint32_t *versions, size_t n_versions) {
        size_t dropped = 0;

        pthread_mutex_lock(&c->lock);
        for (Entry *e = c->head, *next; e; e = next) {
                bool match = e->key_id == key_id;

                next = e->next;
                if (match && n_versions > 0) {
                        match = false;
                        for (size_t i = 0; i < n_versions; i++)
                                match = match || versions[i] == e->version;
                }
                if (match) {
                        entry_remove(c, e);
                        dropped++;
                }
        }
        c->drops += dropped;
        pthread_mutex_unlock(&c->lock);
        return dropped;
}

void cache_mark_stale(Cache *c) {
        pthread_mutex_lock(&c->lock);
        for (Entry *e = c->head; e; e = e->next)
                e->fetched_usec = 0;
        pthread_mutex_unlock(&c->lock);
}

void cache_count_stale_served(Cache *c) {
        pthread_mutex_lock(&c->lock);
        c->stale_served++;
        pthread_mutex_unlock(&c->lock);
}

void cache_stats(Cache *c, kek_stats *s) {
        pthread_mutex_lock(&c->lock);
        s->hits = c->hits;
        s->misses = c->misses;
        s->refreshes = c->refreshes;
        s->evictions = c->evictions;
        s->drops = c->drops;
        s->stale_served = c->stale_served;
        s->entries = c->n;
        pthread_mutex_unlock(&c->lock);
}
