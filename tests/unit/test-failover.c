/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Unit tests of the pure parts of data-plane failover (daemon/failover.h),
 * without a token: which token a pass runs on (the preferred one while it can
 * serve, else the first further one in list order that can, else the
 * preferred one as without failover); where a call that met HSM_UNAVAILABLE
 * runs once more (the first further token after the one it failed on, never
 * the preferred one, none past the end); and the per-token handle cache (a
 * hit only for the same key, version and form at the same session
 * generation; an entry of another generation is dropped, so is one a
 * failed call cleared; a slot reused by another key is a miss, never another
 * key's handle).
 */
#include "config.h"

#include <errno.h>
#include <string.h>

#include "daemon/failover.h"
#include "tests/lib/tap.h"

static void test_choose(void) {
        bool all[] = { true, true, true }, a_down[] = { false, true, true }, a_b_down[] = { false, false, true };
        bool none[] = { false, false, false }, b_only_down[] = { true, false, true };

        is_int(failover_choose(all, 3), 0, "every token can serve: the preferred one");
        is_int(failover_choose(b_only_down, 3), 0, "a further token down changes nothing");
        is_int(failover_choose(a_down, 3), 1, "the preferred token down: the first further one");
        is_int(failover_choose(a_b_down, 3), 2, "the preferred and the first further down: the next in list order");
        is_int(failover_choose(none, 3), 0, "none can serve: the preferred one, as without failover");
        is_int(failover_choose(all, 1), 0, "a single token");
}

static void test_next(void) {
        bool all[] = { true, true, true }, b_down[] = { true, false, true }, only_a[] = { true, false, false };

        is_int(failover_next(all, 3, 0), 1, "failed on the preferred token: the first further one");
        is_int(failover_next(b_down, 3, 0), 2, "... skipping one that cannot serve");
        is_int(failover_next(all, 3, 1), 2, "failed on a further token: the next one after it");
        is_int(failover_next(all, 3, 2), 3, "failed on the last one: none (n)");
        is_int(failover_next(only_a, 3, 0), 3, "no further token can serve: none");
        is_int(failover_next(all, 1, 0), 1, "a single token: none");
}

static void test_cache(void) {
        _cleanup_(failover_cache_freep) FailoverCache *c = failover_cache_new();
        CryptoOpObject k1v1 = { .key = "k1", .version = 1 }, k1v2 = { .key = "k1", .version = 2 };
        CryptoOpObject k1v1r = { .key = "k1", .version = 1, .restored = true };
        CryptoOpHandles h = { .valid = true, .generation = 7, .object = 42, .mac = 43 }, got;
        unsigned collisions = 0;

        if (!ok(c != NULL, "a cache"))
                return;
        got = failover_cache_get(c, &k1v1, 7);
        ok(!got.valid, "empty: a miss");
        failover_cache_put(c, &k1v1, &h);
        got = failover_cache_get(c, &k1v1, 7);
        ok(got.valid && got.object == 42 && got.mac == 43, "the same key, version and generation: a hit");
        got = failover_cache_get(c, &k1v2, 7);
        ok(!got.valid, "another version: a miss");
        got = failover_cache_get(c, &k1v1r, 7);
        ok(!got.valid, "the other form: a miss");
        got = failover_cache_get(c, &k1v1, 8);
        ok(!got.valid, "the token's session generation moved: a miss");
        got = failover_cache_get(c, &k1v1, 7);
        ok(!got.valid, "... and the entry was dropped, not kept for the old generation");
        failover_cache_put(c, &k1v1, &h);
        failover_cache_put(c, &k1v1, &(CryptoOpHandles) {});
        got = failover_cache_get(c, &k1v1, 7);
        ok(!got.valid, "an invalid put (the call failed there) clears the entry: a stale handle is not kept");

        /* Many keys: a slot taken over by another key never answers for the first. */
        for (unsigned i = 0; i < 4 * FAILOVER_CACHE_SLOTS; i++) {
                char name[32];
                CryptoOpObject o = { .key = name, .version = 1 };
                CryptoOpHandles hi = { .valid = true, .generation = 1, .object = i };

                snprintf(name, sizeof(name), "key-%u", i);
                failover_cache_put(c, &o, &hi);
        }
        for (unsigned i = 0; i < 4 * FAILOVER_CACHE_SLOTS; i++) {
                char name[32];
                CryptoOpObject o = { .key = name, .version = 1 };

                snprintf(name, sizeof(name), "key-%u", i);
                got = failover_cache_get(c, &o, 1);
                if (got.valid && got.object != i)
                        collisions++;
        }
        is_int(collisions, 0, "after 4096 keys in 1024 slots, every hit is the key's own handle");
        {
                char name[32] = "key-4095";
                CryptoOpObject o = { .key = name, .version = 1 };

                got = failover_cache_get(c, &o, 1);
                ok(got.valid && got.object == 4095, "the last key put is found");
        }
}

int main(void) {
        test_choose();
        test_next();
        test_cache();
        return tap_done();
}
