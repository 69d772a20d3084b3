/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The AEK cache (see cache.h). A chained hash table sized to the next power
 * of two above the bound, plus an insertion-ordered list. The digest is
 * SipHash-2-4 with 128-bit output under a per-cache random key, over the
 * blob length, the blob and the context: lookups compare digests, so neither
 * blobs nor contexts are kept, which keeps an entry near 200 bytes all told.
 *
 * Why a keyed PRF is enough: an entry hands its AEK to whoever presents a
 * (blob, context) with the same digest, without asking kekd. Finding two
 * inputs with one digest needs the key, which never leaves this process
 * (whoever can read it can read the cached AEKs themselves); without it a
 * match is a 2^-128 guess per lookup, and digests are never shown. SipHash
 * costs 0.11 us for a 100-byte blob here against 0.23 us for salted
 * SHA-256 (docs/performance.md), and the hit path is a digest plus a few
 * cache misses. Where OpenSSL offers no SipHash (a FIPS-only
 * configuration), HMAC-SHA256 truncated to 128 bits takes its place.
 *
 * Eviction is CLOCK (second chance) over the insertion-ordered list: a hit
 * only sets the entry's referenced flag, in the cache line the lookup reads
 * anyway, instead of relinking neighbours as LRU would (three more cache
 * misses per hit with a million entries); a store that must evict sweeps
 * from the hand, clearing flags, to the first entry not used since the
 * last sweep. A hit costs one digest and one bucket walk. Each thread keeps
 * one MAC context, re-keyed only when it moves to another cache, so the hit
 * path neither allocates nor expands a key.
 *
 * The bucket array and the entries are two fixed tables sized by the bound
 * at creation (entries come from the table's free list, never from malloc),
 * mapped lazily and, from 2 MiB on, with transparent huge pages where the
 * kernel allows them (madvise mode): with a million entries a hit's random
 * accesses otherwise each miss the TLB as well as the cache. A bucket also
 * holds its first entry's AEK pointer, so the AEK's reference count is
 * fetched while the entry is, not after it (three dependent misses become
 * two). Measured with a million entries: 1.27-1.44 us per hit on 4 KiB
 * pages, 1.10-1.18 us with the tables on huge pages, below 1 us with the
 * MAC and the prefetch (docs/performance.md).
 *
 * Answers in flight: a thread that misses asks kekd without the lock, and
 * a Watch event may drop the key before the answer comes back. Every drop
 * of a key, clear and mark-stale advances an epoch; a key's drop records
 * it in one of DROP_SLOTS slots chosen by the key id, a clear (a drop of
 * every key) and a mark-stale each in a global one. cache_store() compares
 * the epoch its caller took before asking with those: an answer that
 * predates a drop of its key or a clear is not stored, one that predates a
 * mark-stale is stored stale. Two keys sharing a slot cost one extra
 * unwrap, never a revoked entry. The cost is one atomic load before each
 * round trip (a plain load on x86-64) and three compares under the lock the
 * store takes anyway; drops are rare events.
 *
 * Confirmations (cache_confirm()) are per (key, version): kekd said the
 * version's state allows an unwrap now, so every entry of it counts as
 * fetched then. The time goes into the version's node, which each entry
 * points to, and an entry takes it over at its next lookup (one node per
 * version, so with few keys the node stays in cache): one confirmation
 * re-validates a million entries without walking them. A mark-stale clears
 * the nodes' times with the entries'; a confirmation asked before a drop,
 * clear or mark-stale is not recorded, by the same epochs as stores.
 */
#include "config.h"

#include <errno.h>
#include <stdbool.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/rand.h>

#include "client/cache.h"
#include "common/macro.h"

typedef struct Entry {
        struct Entry *hnext;
        struct Entry *prev, *next;   /* insertion order: head is newest */
        bool referenced;             /* used since the clock hand last passed */
        uint8_t digest[16];
        uint64_t key_id;
        uint32_t version;
        uint64_t fetched_usec;       /* unwrapped or confirmed (0: re-validate at the next use) */
        uint64_t last_ok_usec;
        struct KeyVer *kv;           /* its (key, version): lives as long as the entry */
        kek_aek *aek;
} Entry;

/*
 * How many entries one (key, version) has: kek_unwrap() drops a whole key on
 * a refusal only if the version the blob names is one kekd confirmed for
 * this cache before (the header of a refused blob is not authenticated).
 * Nodes come from a fixed table of max slots, as entries do: there are never
 * more distinct versions than entries.
 */
typedef struct KeyVer {
        struct KeyVer *hnext;
        uint64_t key_id;
        uint32_t version;
        uint32_t count;
        uint64_t confirmed_usec;     /* kekd confirmed the version's state (0: not since the last mark-stale) */
        uint64_t last_ok_usec;       /* the last confirmation, for the grace (kept by mark-stale) */
} KeyVer;

/* Slots of per-key drop epochs: keys sharing one only re-ask kekd (see the top of the file). */
#define DROP_SLOTS 64u

typedef struct Bucket {
        Entry *head;
        kek_aek *aek;                /* head->aek, read with the head so both misses overlap */
} Bucket;

struct Cache {
        pthread_mutex_t lock;
        Bucket *buckets;
        size_t n_buckets;            /* power of two */
        Entry *slots;                /* max entries, handed out in order, then recycled through free */
        size_t slots_used;
        Entry *free;                 /* recycled slots, linked through hnext */
        size_t n, max;
        Entry *head, *tail;
        Entry *hand;                 /* CLOCK: the next eviction candidate, moving towards the head; NULL: tail */
        KeyVer **kv_buckets;         /* n_buckets chains of (key, version) counts */
        KeyVer *kv_slots;            /* max nodes, handed out in order, then recycled through kv_free */
        size_t kv_used;
        KeyVer *kv_free;
        uint8_t key[16];             /* SipHash key, random per cache */
        uint64_t serial;             /* tells the per-thread MAC contexts which key they hold */
        bool rekey;                  /* re-key on every digest: this OpenSSL does not restart under the old key */
        uint64_t hits, misses, refreshes, evictions, drops, stale_served;
        uint64_t epoch;              /* advanced by every drop of a key, clear and mark-stale (under lock) */
        uint64_t clear_epoch;        /* epoch of the last clear */
        uint64_t stale_epoch;        /* epoch of the last mark-stale */
        uint64_t drop_epoch[DROP_SLOTS]; /* epoch of the last drop of a key hashing to the slot */
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

static uint64_t cache_serial;

int cache_new(size_t max_entries, Cache **ret) {
        uint8_t d1[16], d2[16];
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
        c->kv_buckets = table_new(c->n_buckets * sizeof(*c->kv_buckets));
        c->kv_slots = table_new(c->max * sizeof(*c->kv_slots));
        c->serial = __atomic_add_fetch(&cache_serial, 1, __ATOMIC_RELAXED);
        if (!c->buckets || !c->slots || !c->kv_buckets || !c->kv_slots || RAND_bytes(c->key, sizeof(c->key)) != 1) {
                table_free(c->buckets, c->n_buckets * sizeof(*c->buckets));
                table_free(c->slots, c->max * sizeof(*c->slots));
                table_free(c->kv_buckets, c->n_buckets * sizeof(*c->kv_buckets));
                table_free(c->kv_slots, c->max * sizeof(*c->kv_slots));
                free(c);
                return -ENOMEM;
        }
        pthread_mutex_init(&c->lock, NULL);
        /*
         * The hit path restarts each thread's MAC under the key it holds (EVP_MAC_init
         * without a key), which saves re-expanding it; OpenSSL 3.0 does so, but only a
         * second digest equal to the first proves it, here, for this library.
         */
        if (cache_digest(c, (const uint8_t *) "kekd", 4, NULL, 0, d1) < 0) {
                cache_free(c);
                return -ENOTSUP; /* no MAC from this OpenSSL: no cache can be keyed safely */
        }
        if (cache_digest(c, (const uint8_t *) "kekd", 4, NULL, 0, d2) < 0 || memcmp(d1, d2, sizeof(d1)) != 0) {
                c->rekey = true;
                if (cache_digest(c, (const uint8_t *) "kekd", 4, NULL, 0, d2) < 0 || memcmp(d1, d2, sizeof(d1)) != 0) {
                        cache_free(c);
                        return -ENOTSUP;
                }
        }
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

static Bucket *bucket_of(const Cache *c, const uint8_t digest[16]) {
        uint64_t h;

        memcpy(&h, digest, sizeof(h));
        return &c->buckets[h & (c->n_buckets - 1)];
}

static void bucket_sync(Bucket *b) {
        b->aek = b->head ? b->head->aek : NULL;
}

static KeyVer **kv_find(Cache *c, uint64_t key_id, uint32_t version) {
        KeyVer **p = &c->kv_buckets[(key_id ^ (uint64_t) version * 0x9e3779b97f4a7c15ULL) & (c->n_buckets - 1)];

        while (*p && ((*p)->key_id != key_id || (*p)->version != version))
                p = &(*p)->hnext;
        return p;
}

/* Counts one more entry of (key, version); never fails, as there are at most max nodes in use. */
static KeyVer *kv_add(Cache *c, uint64_t key_id, uint32_t version) {
        KeyVer **p = kv_find(c, key_id, version), *kv = *p;

        if (!kv) {
                kv = c->kv_free;
                if (kv)
                        c->kv_free = kv->hnext;
                else
                        kv = &c->kv_slots[c->kv_used++]; /* kv_used <= n <= max */
                *kv = (KeyVer) { .key_id = key_id, .version = version };
                *p = kv;
        }
        kv->count++;
        return kv;
}

static void kv_sub(Cache *c, uint64_t key_id, uint32_t version) {
        KeyVer **p = kv_find(c, key_id, version), *kv = *p;

        if (!kv || --kv->count > 0)
                return;
        *p = kv->hnext;
        kv->hnext = c->kv_free;
        c->kv_free = kv;
}

/* Unlinks e from its bucket and the LRU, and frees it. */
static void entry_remove(Cache *c, Entry *e) {
        Bucket *b = bucket_of(c, e->digest);
        Entry **p = &b->head;

        while (*p && *p != e)
                p = &(*p)->hnext;
        if (*p)
                *p = e->hnext;
        bucket_sync(b);
        lru_unlink(c, e);
        kv_sub(c, e->key_id, e->version);
        c->n--;
        entry_free(c, e);
}

static size_t drop_slot(uint64_t key_id) {
        return (size_t) ((key_id * 0x9e3779b97f4a7c15ULL) >> 58); /* top 6 bits: DROP_SLOTS */
}

/*
 * Under the lock. cache_epoch() reads without it: a value older than the newest only makes a store
 * more cautious (skipped or stale), never one that predates a drop look newer.
 */
static uint64_t epoch_advance(Cache *c) {
        uint64_t e = c->epoch + 1;

        __atomic_store_n(&c->epoch, e, __ATOMIC_RELEASE);
        return e;
}

uint64_t cache_epoch(Cache *c) {
        return __atomic_load_n(&c->epoch, __ATOMIC_ACQUIRE);
}

void cache_clear(Cache *c) {
        pthread_mutex_lock(&c->lock);
        c->clear_epoch = epoch_advance(c); /* as a drop of every key: an answer in flight is not stored */
        while (c->head)
                entry_remove(c, c->head);
        pthread_mutex_unlock(&c->lock);
}

Cache *cache_free(Cache *c) {
        if (!c)
                return NULL;
        cache_clear(c);
        OPENSSL_cleanse(c->key, sizeof(c->key));
        table_free(c->buckets, c->n_buckets * sizeof(*c->buckets));
        table_free(c->slots, c->max * sizeof(*c->slots));
        table_free(c->kv_buckets, c->n_buckets * sizeof(*c->kv_buckets));
        table_free(c->kv_slots, c->max * sizeof(*c->kv_slots));
        pthread_mutex_destroy(&c->lock);
        free(c);
        return NULL;
}

/* One MAC context per thread, keyed for the cache it last served (freed when the thread exits). */
typedef struct DigestCtx {
        EVP_MAC_CTX *mac;
        uint64_t serial;
} DigestCtx;

static pthread_key_t digest_key;
static pthread_once_t digest_once = PTHREAD_ONCE_INIT;
static bool digest_key_ok;
static EVP_MAC *mac_alg;            /* SipHash; HMAC-SHA256 where only FIPS algorithms are offered */
static bool mac_is_hmac;

static void digest_ctx_free(void *p) {
        static const uint8_t zero[16];
        DigestCtx *d = p;

        /* The context holds a cache's key: overwrite it before OpenSSL frees it uncleansed. */
        if (d->mac && d->serial != 0)
                (void) EVP_MAC_init(d->mac, zero, sizeof(zero), NULL);
        EVP_MAC_CTX_free(d->mac);
        free(d);
}

static void digest_key_init(void) {
        mac_alg = EVP_MAC_fetch(NULL, "SIPHASH", NULL);
        if (!mac_alg) {
                mac_alg = EVP_MAC_fetch(NULL, "HMAC", NULL);
                mac_is_hmac = true;
        }
        digest_key_ok = mac_alg && pthread_key_create(&digest_key, digest_ctx_free) == 0;
}

static EVP_MAC_CTX *digest_ctx(const Cache *c) {
        DigestCtx *d;

        (void) pthread_once(&digest_once, digest_key_init);
        if (!digest_key_ok)
                return NULL;
        d = pthread_getspecific(digest_key);
        if (!d) {
                d = calloc(1, sizeof(*d));
                if (!d)
                        return NULL;
                d->mac = EVP_MAC_CTX_new(mac_alg);
                if (!d->mac || pthread_setspecific(digest_key, d) != 0) {
                        digest_ctx_free(d);
                        return NULL;
                }
        }
        if (d->serial != c->serial || c->rekey) {
                size_t size = 16;
                OSSL_PARAM params[] = { mac_is_hmac ? OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *) "SHA256", 0)
                                                    : OSSL_PARAM_construct_size_t(OSSL_MAC_PARAM_SIZE, &size),
                                        OSSL_PARAM_construct_end() };

                d->serial = 0;
                if (EVP_MAC_init(d->mac, c->key, sizeof(c->key), params) != 1)
                        return NULL;
                d->serial = c->serial;
                return d->mac;
        }
        /* Restarts under the key it holds (checked by cache_new(), else c->rekey). */
        return EVP_MAC_init(d->mac, NULL, 0, NULL) == 1 ? d->mac : NULL;
}

int cache_digest(const Cache *c, const uint8_t *blob, size_t blob_len, const uint8_t *ctx, size_t ctx_len,
                 uint8_t out[16]) {
        EVP_MAC_CTX *m = digest_ctx(c);
        uint8_t len[8], mac[32];
        size_t out_len = 0;

        for (int i = 0; i < 8; i++)
                len[i] = (uint8_t) (blob_len >> (8 * i));
        /* The length separates blob from context: (b, c) and (b', c') never hash alike by concatenation. */
        if (!m || EVP_MAC_update(m, len, sizeof(len)) != 1 || EVP_MAC_update(m, blob, blob_len) != 1 ||
            (ctx_len && EVP_MAC_update(m, ctx, ctx_len) != 1) || EVP_MAC_final(m, mac, &out_len, sizeof(mac)) != 1 ||
            out_len < 16)
                return -ENOMEM; /* no digest, no cache: the caller asks kekd and stores nothing */
        memcpy(out, mac, 16);
        return 0;
}

bool cache_digest_restarts(const Cache *c) {
        return !c->rekey;
}

int cache_key_id(const Cache *c, const char *name, uint64_t *ret) {
        static const uint8_t label[] = "kekd-cache-key-id";
        uint8_t d[16];
        int r;

        /*
         * Keyed like the entries, so nobody without the cache's key can pick a name whose id is
         * another key's: a refusal for that name would otherwise drop the other key's entries.
         */
        if (!name)
                return -EINVAL;
        r = cache_digest(c, (const uint8_t *) name, strlen(name), label, sizeof(label), d);
        if (r < 0)
                return r;
        memcpy(ret, d, sizeof(*ret));
        return 0;
}

bool cache_holds(Cache *c, uint64_t key_id, uint32_t version) {
        bool held;

        pthread_mutex_lock(&c->lock);
        held = *kv_find(c, key_id, version) != NULL;
        pthread_mutex_unlock(&c->lock);
        return held;
}

static Entry *find(Cache *c, const uint8_t digest[16]) {
        Bucket *b = bucket_of(c, digest);

        __builtin_prefetch(b->aek, 1);
        for (Entry *e = b->head; e; e = e->hnext)
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
        if (e->kv->confirmed_usec > e->fetched_usec) {
                /* Its version was confirmed since it was fetched (or marked stale): re-validated, no unwrap. */
                e->fetched_usec = e->kv->confirmed_usec;
                c->refreshes++;
        }
        res = now - e->fetched_usec < refresh_usec && e->fetched_usec != 0 ? CACHE_FRESH : CACHE_STALE;
        if (res == CACHE_FRESH)
                c->hits++;
        *ret_aek = kek_aek_ref(e->aek);
        *ret_last_ok = MAX(e->last_ok_usec, e->kv->last_ok_usec);
        pthread_mutex_unlock(&c->lock);
        return res;
}

void cache_store(Cache *c, const uint8_t digest[16], uint64_t key_id, uint32_t version, kek_aek *aek, uint64_t now,
                 uint64_t epoch) {
        uint64_t fetched = now;
        Entry *e;

        pthread_mutex_lock(&c->lock);
        if (c->drop_epoch[drop_slot(key_id)] > epoch || c->clear_epoch > epoch) {
                pthread_mutex_unlock(&c->lock); /* the key was dropped while this answer was in flight */
                return;
        }
        if (c->stale_epoch > epoch)
                fetched = 0; /* as cache_mark_stale() leaves it: re-validated at its next use */
        e = find(c, digest);
        if (e) {
                c->refreshes++;
                if (e->aek != aek) {
                        kek_aek_unref(e->aek);
                        e->aek = kek_aek_ref(aek);
                        bucket_sync(bucket_of(c, digest));
                }
                e->fetched_usec = fetched;
                e->last_ok_usec = now;
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
        e->fetched_usec = fetched;
        e->last_ok_usec = now;
        e->aek = kek_aek_ref(aek);
        e->kv = kv_add(c, key_id, version);
        e->hnext = bucket_of(c, digest)->head;
        bucket_of(c, digest)->head = e;
        bucket_sync(bucket_of(c, digest));
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
        c->drop_epoch[drop_slot(key_id)] = epoch_advance(c);
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
        c->stale_epoch = epoch_advance(c);
        for (Entry *e = c->head; e; e = e->next)
                e->fetched_usec = 0;
        for (size_t i = 0; i < c->kv_used; i++)
                c->kv_slots[i].confirmed_usec = 0; /* free nodes too: harmless, and no list to walk */
        pthread_mutex_unlock(&c->lock);
}

int cache_confirm(Cache *c, const uint8_t digest[16], uint64_t key_id, uint32_t version, uint64_t now, uint64_t epoch) {
        KeyVer *kv;
        Entry *e;
        int r = 0;

        pthread_mutex_lock(&c->lock);
        if (c->drop_epoch[drop_slot(key_id)] > epoch || c->clear_epoch > epoch)
                r = -ESTALE; /* the key was dropped while the confirmation was in flight: it must not revive */
        else if (!(kv = *kv_find(c, key_id, version)))
                r = -ENOENT; /* nothing of that version left (evicted) */
        else if (c->stale_epoch > epoch)
                r = 0;       /* events may have been missed since it was asked: served once, confirmed never */
        else {
                kv->confirmed_usec = kv->last_ok_usec = now;
                e = find(c, digest);
                if (e && e->kv == kv && e->fetched_usec < now) {
                        e->fetched_usec = now;
                        e->last_ok_usec = now;
                        c->refreshes++;
                }
        }
        pthread_mutex_unlock(&c->lock);
        return r;
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
