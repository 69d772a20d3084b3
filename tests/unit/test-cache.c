/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The AEK cache without a daemon: digests separate blob from context,
 * lookups report fresh, stale and miss by age, CLOCK eviction spares the
 * entries used since the hand last passed, and dropping a key removes
 * exactly its entries (or only the named versions).
 */
#include "config.h"

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

static void digest_of(Cache *c, int i, uint8_t d[16]) {
        char blob[32];

        snprintf(blob, sizeof(blob), "blob-%d", i);
        cache_digest(c, (const uint8_t *) blob, strlen(blob), (const uint8_t *) "ctx", 3, d);
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

int main(void) {
        Cache *c = NULL;
        uint8_t d1[16], d2[16];
        kek_aek *a = NULL;
        uint64_t last_ok;
        kek_stats st = {};

        if (!ok(cache_new(4, &c) == 0, "a cache of 4 entries"))
                return tap_done();
        cache_digest(c, (const uint8_t *) "ab", 2, (const uint8_t *) "c", 1, d1);
        cache_digest(c, (const uint8_t *) "a", 1, (const uint8_t *) "bc", 2, d2);
        ok(memcmp(d1, d2, 16) != 0, "(blob ab, context c) and (blob a, context bc) have different digests");

        for (int i = 0; i < 4; i++) {
                kek_aek *x = aek((uint8_t) i);
                uint8_t d[16];

                digest_of(c, i, d);
                cache_store(c, d, i < 2 ? 1 : 2, 1, x, 100);
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
                cache_store(c, d, 3, 1, x, 100);
                kek_aek_unref(x);
        }
        ok(!cached(c, 3, 100), "a store into the full cache evicts the one entry not used since: 3");
        ok(cached(c, 0, 100) && cached(c, 1, 100) && cached(c, 2, 100) && cached(c, 4, 100),
           "... and keeps 0, 1, 2 and the new 4");
        cache_stats(c, &st);
        is_int(st.evictions, 1, "one eviction counted");
        is_int(st.entries, 4, "four entries");

        is_int(cache_drop_key(c, 1, NULL, 0), 2, "dropping key 1 removes its two entries");
        ok(!cached(c, 0, 100) && !cached(c, 1, 100) && cached(c, 2, 100), "... 0 and 1 gone, 2 kept");
        {
                uint32_t v = 2;

                is_int(cache_drop_key(c, 2, &v, 1), 0, "dropping version 2 of key 2 removes nothing (its entry is version 1)");
        }
        for (int i = 10; i < 1000; i++) {
                kek_aek *x = aek((uint8_t) i);
                uint8_t d[16];

                digest_of(c, i, d);
                cache_store(c, d, 9, 1, x, 100);
                kek_aek_unref(x);
                (void) cached(c, 2, 100); /* keep using entry 2 */
        }
        cache_stats(c, &st);
        is_int(st.entries, 4, "990 more stores keep the bound");
        ok(cached(c, 2, 100), "an entry used between every store is never evicted");
        cache_free(c);
        return tap_done();
}
