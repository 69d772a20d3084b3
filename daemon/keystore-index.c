/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * KeyIndex (see keystore-index.h): the sorted array of keys, and building
 * one from a reading of the token. The keystore (keystore.c) decides when a
 * reading is taken and whether it may replace the index it has.
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/keystore-index.h"
#include "daemon/keystore-records.h"
#include "daemon/vault.h"

size_t key_index_pos(const KeyIndex *ix, const char *name, bool *ret_found) {
        size_t lo = 0, hi = ix->n;

        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                int c = strcmp(name, ix->keys[mid]->name);

                if (c == 0) {
                        *ret_found = true;
                        return mid;
                }
                if (c < 0)
                        hi = mid;
                else
                        lo = mid + 1;
        }
        *ret_found = false;
        return lo;
}

Key *key_index_get(const KeyIndex *ix, const char *name) {
        bool found;
        size_t i = key_index_pos(ix, name, &found);

        return found ? ix->keys[i] : NULL;
}

int key_index_put(KeyIndex *ix, Key *k) {
        bool found;
        size_t pos = key_index_pos(ix, k->name, &found);
        Key **keys;

        if (found) {
                key_free(ix->keys[pos]);
                ix->keys[pos] = k;
                return 0;
        }
        keys = reallocarray(ix->keys, ix->n + 1, sizeof(*keys));
        if (!keys) {
                key_free(k);
                return -ENOMEM;
        }
        ix->keys = keys;
        memmove(ix->keys + pos + 1, ix->keys + pos, (ix->n - pos) * sizeof(*ix->keys));
        ix->keys[pos] = k;
        ix->n++;
        return 0;
}

void key_index_remove(KeyIndex *ix, const char *name) {
        bool found;
        size_t pos = key_index_pos(ix, name, &found);

        if (!found)
                return;
        key_free(ix->keys[pos]);
        memmove(ix->keys + pos, ix->keys + pos + 1, (ix->n - pos - 1) * sizeof(*ix->keys));
        ix->n--;
}

void key_index_clear(KeyIndex *ix) {
        for (size_t i = 0; i < ix->n; i++)
                key_free(ix->keys[i]);
        free(ix->keys);
        *ix = (KeyIndex) {};
}

KeyVersion *key_index_version(Key *k, uint32_t version) {
        return (KeyVersion *) key_find_version(k, version);
}

void key_index_carry_runtime(Key *k, const Key *old) {
        /* A key purged and created again under the same name is another key: nothing of ours is in its record. */
        if (old && old->created_usec != k->created_usec)
                return;
        for (size_t i = 0; old && i < k->n_versions; i++) {
                const KeyVersion *ov = key_find_version(old, k->versions[i].id);

                if (!ov || ov->created_usec != k->versions[i].created_usec)
                        continue;
                k->versions[i].lease_left = ov->lease_left;
                k->versions[i].unwraps_pending = ov->unwraps_pending;
                k->versions[i].last_use_pending = ov->last_use_pending;
        }
}

bool key_index_differs(const Key *a, const Key *b) {
        if (!a || !b)
                return a != b;
        /*
         * A key purged and created again under the name (by another kekd, between two readings) may look the
         * same in every field below, yet its versions are other key material: a further token's copies of
         * the old ones must serve nothing, and watchers must drop what they hold of the old key.
         */
        if (a->created_usec != b->created_usec)
                return true;
        if (a->state != b->state || a->current_version != b->current_version || a->n_versions != b->n_versions ||
            a->purging != b->purging)
                return true;
        for (size_t i = 0; i < a->n_versions; i++)
                if (a->versions[i].id != b->versions[i].id || a->versions[i].enabled != b->versions[i].enabled)
                        return true;
        /* Grants decide who may see the key's events and use it (a revocation must reach the client). */
        if (a->n_grants != b->n_grants)
                return true;
        for (size_t i = 0; i < a->n_grants; i++)
                if (a->grants[i].group != b->grants[i].group || a->grants[i].id != b->grants[i].id ||
                    a->grants[i].ops != b->grants[i].ops)
                        return true;
        return false;
}

int key_index_names(const KeyIndex *ix, KeyName **ret, size_t *ret_n) {
        KeyName *names = calloc(ix->n ? ix->n : 1, sizeof(*names));

        if (!names)
                return -ENOMEM;
        for (size_t i = 0; i < ix->n; i++)
                strcpy(names[i], ix->keys[i]->name);
        *ret = names;
        *ret_n = ix->n;
        return 0;
}

void key_index_reading_clear(KeyIndexReading *rd) {
        hsm_data_objects_free(rd->data, rd->n_data);
        free(rd->refs);
        *rd = (KeyIndexReading) {};
}

int key_index_read(KeyIndexReading *rd, Hsm *h) {
        int r;

        key_index_reading_clear(rd);
        /* Key records and vault records in one scan of the token; the key objects in another. */
        r = hsm_list_data_multi(h, (const char *const[]) { RECORDS_APP, VAULT_APP }, 2, &rd->data, &rd->n_data);
        if (r >= 0)
                r = hsm_list_keys(h, &rd->refs, &rd->n_refs);
        if (r < 0)
                key_index_reading_clear(rd);
        return r;
}

static int label_cmp(const void *a, const void *b) {
        return strcmp(((const HsmDataObject *) a)->label, ((const HsmDataObject *) b)->label);
}

/* The names with more than one record object (readable or not), for repair. Sorts d by label. */
static int find_dup_names(HsmDataObject *d, size_t n, KeyName **ret, size_t *ret_n) {
        KeyName *names = NULL;
        size_t m = 0;

        qsort(d, n, sizeof(*d), label_cmp);
        for (size_t i = 1; i < n; i++)
                if (strcmp(d[i].label, d[i - 1].label) == 0 && (i + 1 == n || strcmp(d[i].label, d[i + 1].label) != 0) &&
                    key_name_valid(d[i].label)) {
                        KeyName *p = reallocarray(names, m + 1, sizeof(*names));

                        if (!p) {
                                free(names);
                                return -ENOMEM;
                        }
                        names = p;
                        strcpy(names[m++], d[i].label);
                }
        *ret = names;
        *ret_n = m;
        return 0;
}

static int load_cmp(const void *a, const void *b) {
        const Key *x = *(Key *const *) a, *y = *(Key *const *) b;
        int c = strcmp(x->name, y->name);

        if (c != 0)
                return c;
        return x->generation > y->generation ? -1 : x->generation < y->generation; /* highest first */
}

int key_index_build(KeyIndexReading *rd, KeyIndex *ret, KeyName **ret_dups, size_t *ret_n_dups,
                    const HsmDataObject **ret_vault, size_t *ret_n_vault) {
        HsmDataObject *data = rd->data;
        KeyName *dups = NULL;
        KeyIndex ix = {};
        size_t n_data = 0, m = 0, n_dups = 0;
        int r;

        /* Key records first. */
        for (size_t i = 0; i < rd->n_data; i++)
                if (data[i].app == 0) {
                        HsmDataObject t = data[n_data];

                        data[n_data++] = data[i];
                        data[i] = t;
                }
        r = find_dup_names(data, n_data, &dups, &n_dups);
        if (r < 0)
                return r;
        ix.keys = calloc(n_data ? n_data : 1, sizeof(*ix.keys));
        if (!ix.keys) {
                r = -ENOMEM;
                goto fail;
        }
        for (size_t i = 0; i < n_data; i++) {
                r = key_from_record(&data[i], &ix.keys[ix.n]);
                if (r == -EBADMSG)
                        continue; /* torn or foreign record: kekd check reports it */
                if (r < 0)
                        goto fail;
                ix.n++;
        }
        /* One entry per name: the highest generation wins; older ones are repaired away. */
        qsort(ix.keys, ix.n, sizeof(*ix.keys), load_cmp);
        for (size_t i = 0; i < ix.n; i++) {
                if (m > 0 && strcmp(ix.keys[m - 1]->name, ix.keys[i]->name) == 0) {
                        key_free(ix.keys[i]);
                        continue;
                }
                ix.keys[m++] = ix.keys[i];
        }
        ix.n = m;
        for (size_t i = 0; i < rd->n_refs; i++) {
                Key *k = key_index_get(&ix, rd->refs[i].label);
                KeyVersion *v;

                if (!k)
                        continue; /* not a kekd key */
                v = key_index_version(k, rd->refs[i].version);
                if (!v)
                        continue; /* pending or orphaned: repair and check deal with it */
                /*
                 * The restored form only where the record says "restored", and only there:
                 * an unwrapped or imported key is never taken for a generated one (check names it).
                 */
                if (rd->refs[i].restored != v->restored)
                        continue;
                /*
                 * In a generated form but not generated on the token (CKA_LOCAL FALSE on a token that
                 * reports it: derived, its value possibly known): refused as a second object is.
                 */
                if (rd->refs[i].not_local) {
                        v->ambiguous = true;
                        v->present = false;
                        continue;
                }
                /*
                 * A second object in the version's forms is not kekd's, and nothing tells which
                 * one is (hsm_find_key() in pkcs11/hsm.h): the version serves neither.
                 */
                if (v->present && v->handle == rd->refs[i].handle)
                        continue; /* one object a token listed twice */
                if (v->present || v->ambiguous) {
                        v->ambiguous = true;
                        v->present = false;
                        continue;
                }
                v->handle = rd->refs[i].handle;
                v->present = true;
        }
        *ret = ix;
        *ret_dups = dups;
        *ret_n_dups = n_dups;
        *ret_vault = data + n_data;
        *ret_n_vault = rd->n_data - n_data;
        return 0;
fail:
        key_index_clear(&ix);
        free(dups);
        return r;
}
