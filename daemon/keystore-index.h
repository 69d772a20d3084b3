/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * KeyIndex: the keys kekd knows, a name-sorted array of Key pointers that it
 * owns, and how one is built from a reading of the token (the key records,
 * the vault records and the key objects, TOKEN LAYOUT in kekd-protocol(7)).
 * It knows nothing of the keystore above it: who owns the index, when it is
 * read again, what a change means to watchers and which reading may replace
 * which are the keystore's (keystore.c).
 *
 * Invariants: names are unique and sorted by strcmp(); a Key pointer stays
 * valid until its entry is replaced or removed or the index cleared; a
 * reading touches only itself and the Hsm it is given, so it may be taken on
 * any thread that owns that Hsm.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pkcs11/hsm.h"
#include "daemon/record.h"

typedef char KeyName[KEY_NAME_MAX + 1];

typedef struct KeyIndex {
        Key **keys;
        size_t n;
} KeyIndex;

/* Position of name in the index, or where it would go; *ret_found says which. */
size_t key_index_pos(const KeyIndex *ix, const char *name, bool *ret_found);
/* The entry of name, or NULL. */
Key *key_index_get(const KeyIndex *ix, const char *name);
/* Puts k (taken) in place of the entry of its name, which is freed, or inserts it; -ENOMEM frees k. */
int key_index_put(KeyIndex *ix, Key *k);
/* Removes and frees the entry of name, if any. */
void key_index_remove(KeyIndex *ix, const char *name);
/* Frees every entry; the index is empty after. */
void key_index_clear(KeyIndex *ix);

/* The names in the index, a copy (the index may change while they are worked through). */
int key_index_names(const KeyIndex *ix, KeyName **ret, size_t *ret_n);
/* Whether a and b (either may be NULL) differ in anything a data-plane client acts on. */
bool key_index_differs(const Key *a, const Key *b);

/* A version of a key the index holds, for the runtime state kept in it (leases, usage, handles). */
KeyVersion *key_index_version(Key *k, uint32_t version);
/*
 * Takes this kekd's unflushed usage and leases from old into k (a newer
 * record of the same key). Never handles or presence: those come from the
 * token each time, so an object destroyed behind our back is seen as
 * missing, not served through a stale handle.
 */
void key_index_carry_runtime(Key *k, const Key *old);

/* One reading of the token, as an index is built from it. */
typedef struct KeyIndexReading {
        HsmDataObject *data;          /* key records and vault records */
        size_t n_data;
        HsmKeyRef *refs;              /* key objects */
        size_t n_refs;
} KeyIndexReading;

/* Lists the records and the key objects through h; on failure rd is empty. */
int key_index_read(KeyIndexReading *rd, Hsm *h);
void key_index_reading_clear(KeyIndexReading *rd);

/*
 * Builds an index from rd: for each name the readable key record of the
 * highest generation (torn or foreign records are skipped: kekd check
 * reports them), its versions' handles from the key objects found. Also the
 * names with more than one record object (a crash between writing a record
 * and destroying its predecessor leaves two; repair removes the older), and
 * the vault records (pointers into rd, valid while rd is). Reorders
 * rd->data. Nothing is carried over from an older index: that is the
 * caller's (key_index_carry_runtime()).
 */
int key_index_build(KeyIndexReading *rd, KeyIndex *ret, KeyName **ret_dups, size_t *ret_n_dups,
                    const HsmDataObject **ret_vault, size_t *ret_n_vault);
