/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Unit tests of replication's pure parts (daemon/replica.h), without a
 * token: the record written on a further token is the preferred token's
 * without intents, runtime shares, handles or record chain; a write is
 * worth doing when anything a client acts on or a record keeps differs
 * (state, versions and their flags, grants, policy, deletion, purging, an
 * intent left there), and not for usage or the record chain alone, which
 * would rewrite every further token at each usage flush.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "daemon/replica.h"
#include "tests/lib/tap.h"

static Key *make_key(void) {
        Key *k = calloc(1, sizeof(*k));

        strcpy(k->name, "k");
        k->created_usec = 1000;
        k->current_version = 2;
        k->state = KEY_ENABLED;
        k->n_versions = 2;
        k->versions = calloc(2, sizeof(*k->versions));
        for (unsigned i = 0; i < 2; i++)
                k->versions[i] = (KeyVersion) { .id = i + 1, .created_usec = 1000 + i, .enabled = true,
                                                .wrap_with_trusted = true, .present = true, .handle = 40 + i,
                                                .wraps_reserved = 100, .unwraps = 7, .lease_left = 50,
                                                .unwraps_pending = 3 };
        k->n_grants = 1;
        k->grants = calloc(1, sizeof(*k->grants));
        k->grants[0] = (Grant) { .id = 4242, .ops = 1 };
        k->generation = 9;
        k->writer = 77;
        k->n_ancestors = 1;
        k->ancestors[0] = 66;
        k->meta_handle = 5;
        return k;
}

static void test_wanted(void) {
        _cleanup_(key_freep) Key *src = make_key(), *w = NULL;

        src->pending_version = 3;
        src->pending_since_usec = 5;
        strcpy(src->pending_owner, "host:1");
        is_int(replica_wanted_key(src, &w), 0, "the wanted record is made");
        is_int(w->pending_version, 0, "no intent copied");
        ok(w->pending_owner[0] == 0 && w->pending_since_usec == 0, "nor its owner and time");
        ok(w->generation == 0 && w->writer == 0 && w->n_ancestors == 0 && w->meta_handle == 0,
           "no record chain or handle of the preferred token's");
        ok(w->versions != src->versions && w->grants != src->grants, "versions and grants are copies");
        is_int(w->n_versions, 2, "both versions");
        ok(!w->versions[0].present && w->versions[0].handle == 0, "no handle of the preferred token's");
        ok(w->versions[1].lease_left == 0 && w->versions[1].unwraps_pending == 0, "no runtime share of this kekd");
        is_int(w->versions[1].wraps_reserved, 100, "recorded usage copied (it may lag, never lead)");
        is_int(w->grants[0].id, 4242, "grants copied");
        src->versions[0].enabled = false;
        ok(w->versions[0].enabled, "changing the source later leaves the copy alone");
}

static void test_differs(void) {
        _cleanup_(key_freep) Key *src = make_key(), *want = NULL, *have = NULL;

        replica_wanted_key(src, &want);
        replica_wanted_key(src, &have);
        ok(replica_record_differs(want, NULL), "no record there: write");
        ok(!replica_record_differs(want, have), "the same record: nothing to write");
        have->generation = 3;
        have->writer = 1234;
        have->versions[0].unwraps = 999;
        have->versions[1].wraps_reserved = 1;
        have->versions[1].last_use_usec = 42;
        ok(!replica_record_differs(want, have), "usage and the record chain alone: nothing to write");

#define FLIP(what, stmt)                                                          \
        do {                                                                       \
                _cleanup_(key_freep) Key *h = NULL;                                \
                replica_wanted_key(src, &h);                                       \
                stmt;                                                              \
                ok(replica_record_differs(want, h), "differs: %s", what);          \
        } while (0)

        FLIP("key state", h->state = KEY_DISABLED);
        FLIP("current version", h->current_version = 1);
        FLIP("a version's enabled flag", h->versions[0].enabled = false);
        FLIP("a version's form (restored)", h->versions[1].restored = true);
        FLIP("a version's backup path", h->versions[1].wrap_with_trusted = false);
        FLIP("a version's profile", h->versions[0].profile = HSM_PROFILE_CTR_HMAC);
        FLIP("a version missing", h->n_versions = 1);
        FLIP("a grant's operations", h->grants[0].ops = 3);
        FLIP("a grant's principal", h->grants[0].id = 1);
        FLIP("a grant missing", h->n_grants = 0);
        FLIP("rotation policy", h->policy.rotate_after_sec = 60);
        FLIP("wrap budget", h->policy.max_wraps = 10);
        FLIP("deletion time", h->deleted_usec = 9);
        FLIP("purge date", h->scheduled_purge_usec = 9);
        FLIP("purging", h->purging = true);
        FLIP("an intent left on the further token", h->pending_version = 3);
        FLIP("state before delete", h->state_before_delete = KEY_DISABLED);
}

int main(void) {
        test_wanted();
        test_differs();
        return tap_done();
}
