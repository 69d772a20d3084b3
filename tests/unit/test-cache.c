/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The AEK cache without a daemon: digests separate blob from context,
 * lookups report fresh, stale and miss by age, CLOCK eviction spares the
 * entries used since the hand last passed, and dropping a key removes
 * exactly its entries (or only the named versions). Digests are keyed per
 * cache, the same from every thread and on every call (each thread's MAC
 * context restarts under its key), and another cache's key on the same
 * thread does not leak into them. An answer taken before a drop of its key
 * (or a clear) is not stored, one taken before a mark-stale is stored
 * stale: a Watch event that lands while an unwrap is in flight wins. A
 * confirmation of a key version re-validates exactly that version's entries.
 */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "client/cache.h"
#include "tests/lib/tap.h"

static kek_aek *aek(uint8_t b) {
        uint8_t v[32];
        kek_aek *a = NULL;

        memset(v, b, sizeof(v));
        (void) kek_aek_from_bytes(v, sizeof(v), &a);
        return a;
}

static int digest_failures;

static void digest_of(Cache *c, int i, uint8_t d[16]) {
        char blob[32];

        snprintf(blob, sizeof(blob), "blob-%d", i);
        if (cache_digest(c, (const uint8_t *) blob, strlen(blob), (const uint8_t *) "ctx", 3, d) < 0) {
                digest_failures++;
                memset(d, 0xff, 16);
        }
}

typedef struct DigestJob {
        Cache *c;
        uint8_t d[16];
        int r;
} DigestJob;

static void *digest_thread(void *p) {
        DigestJob *j = p;

        j->r = cache_digest(j->c, (const uint8_t *) "blob-7", 6, (const uint8_t *) "ctx", 3, j->d);
        return NULL;
}

/* Keys: per cache, stable across calls and threads, not carried from one cache to another. */
static void test_digest_keys(void) {
        Cache *a = NULL, *b = NULL;
        uint8_t a1[16], a2[16], a3[16], b1[16], b2[16];
        DigestJob job = {};
        pthread_t t;

        if (!ok(cache_new(4, &a) == 0 && cache_new(4, &b) == 0, "two caches"))
                goto out;
        /* OpenSSL 3.0 restarts a MAC under its key; were that lost, cache_new() would re-key every digest. */
        ok(cache_digest_restarts(a) && cache_digest_restarts(b), "digests take the fast path (the MAC restarts under its key)");
        digest_of(a, 7, a1);
        digest_of(a, 7, a2);
        ok(memcmp(a1, a2, 16) == 0, "a digest repeated on one thread is equal (the restarted MAC keeps the key)");
        digest_of(b, 7, b1);
        ok(memcmp(a1, b1, 16) != 0, "another cache digests the same input differently (its own key)");
        digest_of(a, 7, a3);
        digest_of(b, 7, b2);
        ok(memcmp(a1, a3, 16) == 0 && memcmp(b1, b2, 16) == 0, "alternating caches on one thread: each keeps its digest");
        job.c = a;
        ok(pthread_create(&t, NULL, digest_thread, &job) == 0 && pthread_join(t, NULL) == 0 && job.r == 0 &&
           memcmp(job.d, a1, 16) == 0, "another thread computes the same digest for the same cache");
        for (int i = 0; i < 16; i++)
                digest_of(a, 1000 + i, i % 2 ? a2 : a3);
        ok(memcmp(a2, a3, 16) != 0, "different blobs, different digests");
        is_int(digest_failures, 0, "every digest was computed");
out:
        cache_free(a);
        cache_free(b);
}

static bool cached(Cache *c, int i, uint64_t now) {
        uint8_t d[16];
        kek_aek *a = NULL;
        uint64_t last_ok;
        CacheResult r;

        digest_of(c, i, d);
        r = cache_lookup(c, d, now, 1000, &a, &last_ok);
        kek_aek_unref(a);
        return r != CACHE_MISS;
}

/* Stores digest i of key_id with the given epoch at time 100; what a lookup at 100 then finds. */
static CacheResult store_then_lookup(Cache *c, int i, uint64_t key_id, uint64_t epoch) {
        kek_aek *x = aek((uint8_t) i), *a = NULL;
        uint8_t d[16];
        uint64_t last_ok;
        CacheResult r;

        digest_of(c, i, d);
        cache_store(c, d, key_id, 1, x, 100, epoch);
        kek_aek_unref(x);
        r = cache_lookup(c, d, 100, 1000, &a, &last_ok);
        kek_aek_unref(a);
        return r;
}

/* The in-flight rule: the epoch taken before asking kekd decides whether its answer may be served fresh. */
static void test_epochs(void) {
        Cache *c = NULL;
        uint64_t e0, e1;

        if (!ok(cache_new(16, &c) == 0, "a cache for the epoch rule"))
                return;
        e0 = cache_epoch(c);
        is_int(store_then_lookup(c, 1, 1, e0), CACHE_FRESH, "an answer with no drop since its epoch is stored fresh");
        e0 = cache_epoch(c);
        (void) cache_drop_key(c, 1, NULL, 0);
        ok(cache_epoch(c) > e0, "dropping a key advances the epoch");
        is_int(store_then_lookup(c, 2, 1, e0), CACHE_MISS,
               "an answer in flight while its key was dropped is not stored (the revoked AEK is not served)");
        ok(!cache_holds(c, 1, 1), "... and its key is not held");
        /* Ids 1 and 2 use different drop slots (a shared slot would only cost a re-unwrap). */
        is_int(store_then_lookup(c, 3, 2, e0), CACHE_FRESH, "an answer of another key from the same epoch is stored fresh");
        is_int(store_then_lookup(c, 4, 1, cache_epoch(c)), CACHE_FRESH,
               "an answer asked for after the drop is stored fresh");
        {
                /* A newer answer stored meanwhile is left alone by the older one. */
                kek_aek *x = aek(5), *a = NULL;
                uint8_t d[16];
                uint64_t last_ok;

                digest_of(c, 4, d);
                cache_store(c, d, 1, 1, x, 100, e0);
                kek_aek_unref(x);
                ok(cache_lookup(c, d, 100, 1000, &a, &last_ok) == CACHE_FRESH && kek_aek_data(a)[0] == 4,
                   "... and an older answer does not replace it");
                kek_aek_unref(a);
        }
        e1 = cache_epoch(c);
        cache_mark_stale(c);
        is_int(store_then_lookup(c, 6, 2, e1), CACHE_STALE,
               "an answer in flight across a mark-stale is stored stale (re-validated at its next use)");
        is_int(store_then_lookup(c, 7, 2, cache_epoch(c)), CACHE_FRESH, "... one asked for after it is fresh");
        e1 = cache_epoch(c);
        cache_clear(c);
        is_int(store_then_lookup(c, 8, 2, e1), CACHE_MISS, "an answer in flight across a clear is not stored");
        cache_free(c);
}

/* Digest i of (key_id, version) stored at time 100. */
static void store_at(Cache *c, int i, uint64_t key_id, uint32_t version) {
        kek_aek *x = aek((uint8_t) i);
        uint8_t d[16];

        digest_of(c, i, d);
        cache_store(c, d, key_id, version, x, 100, cache_epoch(c));
        kek_aek_unref(x);
}

static CacheResult lookup_at(Cache *c, int i, uint64_t now, uint64_t *ret_last_ok) {
        kek_aek *a = NULL;
        uint8_t d[16];
        uint64_t last_ok = 0;
        CacheResult r;

        digest_of(c, i, d);
        r = cache_lookup(c, d, now, 1000, &a, &last_ok);
        kek_aek_unref(a);
        if (ret_last_ok)
                *ret_last_ok = last_ok;
        return r;
}

/*
 * Issue 18.1: a confirmation of (key, version) re-validates every entry of that version and no
 * other, counts each as refreshed once, feeds the grace's last-ok time, and obeys the epochs.
 */
static void test_confirm(void) {
        Cache *c = NULL;
        uint8_t d[16];
        uint64_t e, last_ok = 0;
        kek_stats s0, s1;
        int stale = 0, fresh = 0;

        if (!ok(cache_new(64, &c) == 0, "a cache for confirmations"))
                return;
        for (int i = 0; i < 10; i++)
                store_at(c, i, 1, 1);  /* key 1 version 1: 0..9 */
        store_at(c, 10, 1, 2);         /* key 1 version 2 */
        store_at(c, 11, 2, 1);         /* key 2 version 1 */
        for (int i = 0; i < 12; i++)
                stale += lookup_at(c, i, 2000, NULL) == CACHE_STALE;
        is_int(stale, 12, "past the refresh interval all 12 entries are stale");
        cache_stats(c, &s0);
        digest_of(c, 0, d);
        is_int(cache_confirm(c, d, 1, 1, 2000, cache_epoch(c)), 0, "key 1 version 1 confirmed at 2000");
        for (int i = 0; i < 10; i++)
                fresh += lookup_at(c, i, 2500, i == 5 ? &last_ok : NULL) == CACHE_FRESH;
        is_int(fresh, 10, "all 10 entries of key 1 version 1 are fresh again, without a store");
        ok(last_ok == 2000, "... their last-ok time is the confirmation's (%llu)", (unsigned long long) last_ok);
        cache_stats(c, &s1);
        is_int(s1.refreshes - s0.refreshes, 10, "... each counted once as refreshed");
        is_int(lookup_at(c, 10, 2500, NULL), CACHE_STALE, "key 1 version 2 is not confirmed by it");
        is_int(lookup_at(c, 11, 2500, NULL), CACHE_STALE, "key 2 version 1 is not confirmed by it");
        is_int(lookup_at(c, 3, 3001, NULL), CACHE_STALE, "refresh_sec after the confirmation the entries are due again");

        e = cache_epoch(c);
        cache_mark_stale(c);
        is_int(lookup_at(c, 3, 3001, NULL), CACHE_STALE, "a mark-stale makes the confirmed entries stale");
        is_int(cache_confirm(c, d, 1, 1, 3001, e), 0, "a confirmation in flight across a mark-stale is served once ...");
        is_int(lookup_at(c, 4, 3002, NULL), CACHE_STALE, "... but re-validates nothing");
        is_int(cache_confirm(c, d, 1, 1, 3002, cache_epoch(c)), 0, "one asked for after the mark-stale ...");
        is_int(lookup_at(c, 4, 3003, NULL), CACHE_FRESH, "... re-validates the entries");
        e = cache_epoch(c);
        (void) cache_drop_key(c, 1, NULL, 0);
        is_int(cache_confirm(c, d, 1, 1, 3004, e), -ESTALE, "a confirmation in flight across a drop of its key is refused");
        is_int(lookup_at(c, 4, 3005, NULL), CACHE_MISS, "... and the dropped entries stay dropped");
        digest_of(c, 11, d);
        is_int(cache_confirm(c, d, 2, 9, 3005, cache_epoch(c)), -ENOENT, "a version nothing is cached of: -ENOENT");
        cache_free(c);
}

int main(void) {
        Cache *c = NULL;
        uint8_t d1[16], d2[16];
        kek_aek *a = NULL;
        uint64_t last_ok;
        kek_stats st = {};

        if (!ok(cache_new(4, &c) == 0, "a cache of 4 entries"))
                return tap_done();
        ok(cache_digest(c, (const uint8_t *) "ab", 2, (const uint8_t *) "c", 1, d1) == 0 &&
           cache_digest(c, (const uint8_t *) "a", 1, (const uint8_t *) "bc", 2, d2) == 0, "digests computed");
        ok(memcmp(d1, d2, 16) != 0, "(blob ab, context c) and (blob a, context bc) have different digests");
        test_digest_keys();
        test_epochs();
        test_confirm();

        for (int i = 0; i < 4; i++) {
                kek_aek *x = aek((uint8_t) i);
                uint8_t d[16];

                digest_of(c, i, d);
                cache_store(c, d, i < 2 ? 1 : 2, 1, x, 100, cache_epoch(c));
                kek_aek_unref(x);
        }
        ok(cached(c, 0, 100) && cached(c, 1, 100), "entries 0 and 1 are hits (and now referenced)");
        digest_of(c, 2, d1);
        is_int(cache_lookup(c, d1, 1200, 1000, &a, &last_ok), CACHE_STALE, "an entry older than the refresh is stale");
        kek_aek_unref(a);
        /* entry 2 is referenced now too; entry 3 is the only one not used */
        {
                kek_aek *x = aek(4);
                uint8_t d[16];

                digest_of(c, 4, d);
                cache_store(c, d, 3, 1, x, 100, cache_epoch(c));
                kek_aek_unref(x);
        }
        ok(!cached(c, 3, 100), "a store into the full cache evicts the one entry not used since: 3");
        ok(cached(c, 0, 100) && cached(c, 1, 100) && cached(c, 2, 100) && cached(c, 4, 100),
           "... and keeps 0, 1, 2 and the new 4");
        cache_stats(c, &st);
        is_int(st.evictions, 1, "one eviction counted");
        is_int(st.entries, 4, "four entries");

        ok(cache_holds(c, 1, 1) && cache_holds(c, 2, 1) && cache_holds(c, 3, 1) && !cache_holds(c, 1, 2) &&
           !cache_holds(c, 4, 1), "the cache knows which (key, version) it holds entries of");
        is_int(cache_drop_key(c, 1, NULL, 0), 2, "dropping key 1 removes its two entries");
        ok(!cache_holds(c, 1, 1) && cache_holds(c, 2, 1), "... and no longer holds key 1, still key 2");
        ok(!cached(c, 0, 100) && !cached(c, 1, 100) && cached(c, 2, 100), "... 0 and 1 gone, 2 kept");
        {
                uint32_t v = 2;

                is_int(cache_drop_key(c, 2, &v, 1), 0, "dropping version 2 of key 2 removes nothing (its entry is version 1)");
        }
        for (int i = 10; i < 1000; i++) {
                kek_aek *x = aek((uint8_t) i);
                uint8_t d[16];

                digest_of(c, i, d);
                cache_store(c, d, 9, 1, x, 100, cache_epoch(c));
                kek_aek_unref(x);
                (void) cached(c, 2, 100); /* keep using entry 2 */
        }
        cache_stats(c, &st);
        is_int(st.entries, 4, "990 more stores keep the bound");
        ok(cached(c, 2, 100), "an entry used between every store is never evicted");
        ok(cache_holds(c, 9, 1) && cache_holds(c, 2, 1) && cache_holds(c, 3, 1) == cached(c, 4, 100),
           "through evictions the (key, version) counts follow the entries");
        cache_clear(c);
        ok(!cache_holds(c, 9, 1) && !cache_holds(c, 2, 1) && !cache_holds(c, 3, 1), "a cleared cache holds no version");
        {
                Cache *c2 = NULL;
                uint64_t a1 = 0, a2 = 0, b1 = 0;

                ok(cache_new(4, &c2) == 0 && cache_key_id(c, "acct", &a1) == 0 && cache_key_id(c, "acct", &a2) == 0 &&
                           cache_key_id(c2, "acct", &b1) == 0,
                   "key ids computed");
                ok(a1 == a2 && a1 != b1, "a key's id is stable in one cache and keyed: another cache gives another id");
                cache_free(c2);
        }
        cache_free(c);
        return tap_done();
}
