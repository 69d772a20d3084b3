/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Unit tests of daemon/keystore-index.c, without a token: the KeyIndex keeps
 * its keys sorted and unique through put (insert and replace), remove and
 * clear; runtime state is carried to a newer record of the same key and not
 * to a key created again under the name; what counts as an observable
 * change; and an index built from a synthetic reading: the highest
 * generation per name, torn records skipped, duplicate names reported,
 * handles attached to recorded versions only, vault records handed back;
 * a version whose one object is in a generated form but not generated on
 * the token (not_local: CKA_LOCAL FALSE where the token reports it) is
 * refused as one with two objects is.
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/macro.h"
#include "daemon/keystore-index.h"
#include "tests/lib/tap.h"

static Key *key_new(const char *name, uint64_t generation, uint32_t n_versions) {
        Key *k = calloc(1, sizeof(*k));

        snprintf(k->name, sizeof(k->name), "%s", name);
        k->generation = generation;
        k->created_usec = 1000;
        k->state = KEY_ENABLED;
        k->state_before_delete = KEY_ENABLED;
        k->versions = calloc(n_versions ? n_versions : 1, sizeof(*k->versions));
        for (uint32_t i = 0; i < n_versions; i++)
                k->versions[i] = (KeyVersion) { .id = i + 1, .created_usec = 2000 + i, .enabled = true };
        k->n_versions = n_versions;
        k->current_version = n_versions;
        return k;
}

static bool sorted_unique(const KeyIndex *ix) {
        for (size_t i = 1; i < ix->n; i++)
                if (strcmp(ix->keys[i - 1]->name, ix->keys[i]->name) >= 0)
                        return false;
        return true;
}

static void test_put_remove(void) {
        const char *names[] = { "m", "c", "x", "a", "q" };
        KeyIndex ix = {};
        bool found;
        Key *k;

        for (size_t i = 0; i < ELEMENTSOF(names); i++)
                if (key_index_put(&ix, key_new(names[i], 1, 1)) < 0)
                        break;
        ok(ix.n == 5 && sorted_unique(&ix), "five puts: five keys, sorted by name");
        ok(key_index_get(&ix, "q") && strcmp(key_index_get(&ix, "q")->name, "q") == 0 && !key_index_get(&ix, "b"),
           "get finds a present name and not an absent one");
        is_int((int) key_index_pos(&ix, "b", &found), 1, "pos of an absent name is where it would go");
        ok(!found, "... and says it is absent");
        is_int((int) key_index_pos(&ix, "x", &found), 4, "pos of the last name");
        ok(found, "... and says it is present");

        k = key_new("c", 7, 2);
        ok(key_index_put(&ix, k) >= 0 && ix.n == 5 && key_index_get(&ix, "c") == k && k->generation == 7,
           "put of an existing name replaces its entry (no duplicate)");
        key_index_remove(&ix, "m");
        ok(ix.n == 4 && sorted_unique(&ix) && !key_index_get(&ix, "m"), "remove drops the entry, order kept");
        key_index_remove(&ix, "zz");
        is_int((int) ix.n, 4, "remove of an absent name changes nothing");
        {
                KeyName *n = NULL;
                size_t nn = 0;

                ok(key_index_names(&ix, &n, &nn) >= 0 && nn == 4 && strcmp(n[0], "a") == 0 && strcmp(n[3], "x") == 0,
                   "names: a copy, in order");
                free(n);
        }
        key_index_clear(&ix);
        ok(ix.n == 0 && !ix.keys, "clear empties the index");
        key_index_clear(&ix);
        ok(ix.n == 0, "clear of an empty index is harmless");
}

static void test_carry_and_differs(void) {
        Key *old = key_new("k", 1, 2), *fresh = key_new("k", 2, 2), *again = key_new("k", 3, 2);

        old->versions[0].lease_left = 5;
        old->versions[1].unwraps_pending = 3;
        old->versions[1].last_use_pending = 99;
        old->versions[0].handle = 42;
        key_index_carry_runtime(fresh, old);
        ok(fresh->versions[0].lease_left == 5 && fresh->versions[1].unwraps_pending == 3 &&
                   fresh->versions[1].last_use_pending == 99,
           "a newer record of the key gets this kekd's leases and unflushed usage");
        is_int((int) fresh->versions[0].handle, 0, "... never its handles");
        again->created_usec = 5000; /* purged and created again under the name */
        key_index_carry_runtime(again, old);
        is_int((int) again->versions[0].lease_left, 0, "a key created again under the name gets nothing");
        key_index_carry_runtime(again, NULL);
        ok(true, "carrying from no key is harmless");

        ok(!key_index_differs(old, fresh), "same state, versions and grants: no observable change");
        fresh->versions[1].enabled = false;
        ok(key_index_differs(old, fresh), "a version disabled: observable");
        fresh->versions[1].enabled = true;
        fresh->state = KEY_DISABLED;
        ok(key_index_differs(old, fresh), "the key disabled: observable");
        fresh->state = KEY_ENABLED;
        ok(key_index_differs(old, again),
           "a key purged and created again under the name, same state, versions and grants: observable");
        ok(key_index_differs(NULL, fresh) && key_index_differs(old, NULL) && !key_index_differs(NULL, NULL),
           "appearing and vanishing are observable, nothing to nothing is not");
        key_free(old);
        key_free(fresh);
        key_free(again);
}

static void record_of(HsmDataObject *d, const Key *k, unsigned app, HsmObject handle) {
        *d = (HsmDataObject) { .app = app, .handle = handle };
        snprintf(d->label, sizeof(d->label), "%s", k->name);
        if (key_to_record(k, &d->value, &d->value_len) < 0)
                d->value = NULL;
}

static void test_build(void) {
        Key *a1 = key_new("alpha", 1, 1), *a2 = key_new("alpha", 2, 2), *b = key_new("beta", 4, 2);
        KeyIndexReading rd = {};
        const HsmDataObject *vault = NULL;
        size_t n_vault = 0, n_dups = 0;
        KeyName *dups = NULL;
        KeyIndex ix = {};
        Key *k;
        int r;

        rd.data = calloc(5, sizeof(*rd.data));
        rd.n_data = 5;
        record_of(&rd.data[0], a1, 0, 10);
        record_of(&rd.data[1], b, 0, 11);
        rd.data[2] = (HsmDataObject) { .app = 1, .handle = 12 }; /* a vault record */
        snprintf(rd.data[2].label, sizeof(rd.data[2].label), "vault");
        record_of(&rd.data[3], a2, 0, 13);
        rd.data[4] = (HsmDataObject) { .app = 0, .handle = 14, .value = malloc(3), .value_len = 3 }; /* torn */
        memcpy(rd.data[4].value, "\xff\xff\xff", 3);
        snprintf(rd.data[4].label, sizeof(rd.data[4].label), "gamma");
        rd.refs = calloc(7, sizeof(*rd.refs));
        rd.n_refs = 7;
        rd.refs[0] = (HsmKeyRef) { .label = "alpha", .version = 2, .handle = 21 };
        rd.refs[1] = (HsmKeyRef) { .label = "alpha", .version = 9, .handle = 22 }; /* not in the record */
        rd.refs[2] = (HsmKeyRef) { .label = "beta", .version = 1, .handle = 23 };
        rd.refs[3] = (HsmKeyRef) { .label = "other", .version = 1, .handle = 24 }; /* not a kekd key */
        rd.refs[4] = (HsmKeyRef) { .label = "beta", .version = 1, .handle = 23 }; /* listed twice: one object */
        rd.refs[5] = (HsmKeyRef) { .label = "beta", .version = 2, .handle = 25 };
        rd.refs[6] = (HsmKeyRef) { .label = "beta", .version = 2, .handle = 26 }; /* a second object: planted */

        r = key_index_build(&rd, &ix, &dups, &n_dups, &vault, &n_vault);
        is_int(r, 0, "an index is built from a reading");
        ok(ix.n == 2 && sorted_unique(&ix), "one entry per readable name (the torn record skipped)");
        k = key_index_get(&ix, "alpha");
        ok(k && k->generation == 2 && k->n_versions == 2, "alpha: the record of the highest generation");
        ok(k && key_index_version(k, 2) && key_index_version(k, 2)->present && key_index_version(k, 2)->handle == 21,
           "alpha version 2: the handle of its key object");
        ok(k && key_index_version(k, 1) && !key_index_version(k, 1)->present,
           "alpha version 1: recorded, no object found, not present");
        k = key_index_get(&ix, "beta");
        ok(k && key_index_version(k, 1)->present && key_index_version(k, 1)->handle == 23 &&
                   !key_index_version(k, 1)->ambiguous,
           "beta version 1: its handle (one object listed twice is one)");
        ok(k && key_index_version(k, 2) && !key_index_version(k, 2)->present && key_index_version(k, 2)->ambiguous,
           "beta version 2: two objects answer to it, so neither is used (ambiguous, not present)");
        ok(n_dups == 1 && strcmp(dups[0], "alpha") == 0, "the name with two records is reported for repair");
        ok(n_vault == 1 && vault && vault->handle == 12, "the vault record is handed back");

        key_index_clear(&ix);
        free(dups);
        key_index_reading_clear(&rd);
        ok(!rd.data && !rd.refs && rd.n_data == 0, "a cleared reading is empty");
        key_free(a1);
        key_free(a2);
        key_free(b);
}

/* A lone not_local object (pkcs11/hsm.h: a derived key planted in a generated form) serves nothing. */
static void test_build_not_local(void) {
        Key *d = key_new("delta", 1, 3);
        KeyIndexReading rd = {};
        const HsmDataObject *vault = NULL;
        size_t n_vault = 0, n_dups = 0;
        KeyName *dups = NULL;
        KeyIndex ix = {};
        Key *k;
        int r;

        rd.data = calloc(1, sizeof(*rd.data));
        rd.n_data = 1;
        record_of(&rd.data[0], d, 0, 10);
        rd.refs = calloc(4, sizeof(*rd.refs));
        rd.n_refs = 4;
        rd.refs[0] = (HsmKeyRef) { .label = "delta", .version = 1, .handle = 31 };
        rd.refs[1] = (HsmKeyRef) { .label = "delta", .version = 2, .handle = 32, .not_local = true };
        rd.refs[2] = (HsmKeyRef) { .label = "delta", .version = 3, .handle = 33 };
        rd.refs[3] = (HsmKeyRef) { .label = "delta", .version = 3, .handle = 34, .not_local = true };

        r = key_index_build(&rd, &ix, &dups, &n_dups, &vault, &n_vault);
        is_int(r, 0, "an index is built from a reading with not-local objects");
        k = key_index_get(&ix, "delta");
        ok(k && key_index_version(k, 1)->present && key_index_version(k, 1)->handle == 31 &&
                   !key_index_version(k, 1)->ambiguous,
           "delta version 1: its generated object is used");
        ok(k && !key_index_version(k, 2)->present && key_index_version(k, 2)->ambiguous,
           "delta version 2: its only object was not generated on the token: refused (ambiguous, not present)");
        ok(k && !key_index_version(k, 3)->present && key_index_version(k, 3)->ambiguous,
           "delta version 3: a generated object and a not-local one: neither is used");
        key_index_clear(&ix);
        free(dups);
        key_index_reading_clear(&rd);
        key_free(d);
}

int main(void) {
        test_put_remove();
        test_carry_and_differs();
        test_build();
        test_build_not_local();
        return tap_done();
}
