/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Building the keystore's index from the token (see keystore.h): one
 * reading lists the key and vault records and the key objects, and
 * index_apply() turns it into the index, carrying this kekd's runtime state
 * (leases, unflushed usage) over from the old one. A reading is taken on
 * the keystore's session (keystore_load()) or on another thread's session
 * (keystore_read_*(), the periodic refresh). Invariant: a reading becomes
 * the index only if nothing that could make it wrong happened since it
 * began: no write of this process (a disable would be undone), no session
 * reopened (its handles), no doubt about a write's outcome, and no newer
 * reading already in place (another node's change would be undone).
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/clock.h"
#include "daemon/keystore-internal.h"
#include "daemon/log.h"

static int label_cmp(const void *a, const void *b) {
        return strcmp(((const HsmDataObject *) a)->label, ((const HsmDataObject *) b)->label);
}

/*
 * The names with more than one record object (readable or not), for repair:
 * a crash between writing a record and destroying its predecessor leaves two.
 * Sorts d by label.
 */
static int find_dup_names(HsmDataObject *d, size_t n, char (**ret)[KEY_NAME_MAX + 1], size_t *ret_n) {
        char (*names)[KEY_NAME_MAX + 1] = NULL;
        size_t m = 0;

        qsort(d, n, sizeof(*d), label_cmp);
        for (size_t i = 1; i < n; i++)
                if (strcmp(d[i].label, d[i - 1].label) == 0 && (i + 1 == n || strcmp(d[i].label, d[i + 1].label) != 0) &&
                    key_name_valid(d[i].label)) {
                        char (*p)[KEY_NAME_MAX + 1] = reallocarray(names, m + 1, sizeof(*names));

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

/*
 * One reading of the token: the records and the key objects, as the index is
 * built from them. Taken by load_index() on the keystore's session, or by
 * keystore_read_token() on a thread with a session of its own (the periodic
 * refresh, so the loop keeps serving while a large token is listed); the
 * counters say whether the reading may still become the index.
 */
struct KeystoreRead {
        HsmDataObject *data;
        size_t n_all;
        HsmKeyRef *refs;
        size_t n_refs;
        uint64_t generation;          /* hsm_generation() before the reading: its handles' */
        uint64_t writes;              /* hsm_writes() before the reading */
        uint64_t started_mono_usec;
        bool reload_needed;           /* ks->reload_needed before the reading */
};

static void read_clear(KeystoreRead *rd) {
        hsm_data_objects_free(rd->data, rd->n_all);
        free(rd->refs);
        rd->data = NULL;
        rd->refs = NULL;
        rd->n_all = rd->n_refs = 0;
}

static void read_begin(Keystore *ks, KeystoreRead *rd) {
        *rd = (KeystoreRead) {
                .generation = hsm_generation(ks->hsm),
                .writes = hsm_writes(ks->hsm),
                .started_mono_usec = clock_mono_usec(),
                .reload_needed = ks->reload_needed,
        };
}

/* Touches only rd and h: runs on any thread that owns h. */
static int read_token(KeystoreRead *rd, Hsm *h) {
        int r;

        read_clear(rd);
        /* Key records and vault records in one scan of the token; the key objects in another. */
        r = hsm_list_data_multi(h, (const char *const[]) { APP_KEYS, VAULT_APP }, 2, &rd->data, &rd->n_all);
        if (r >= 0)
                r = hsm_list_keys(h, &rd->refs, &rd->n_refs);
        if (r < 0)
                read_clear(rd);
        return r;
}

/* The reading becomes the index; on failure the previous index stays. */
static int index_apply(Keystore *ks, KeystoreRead *rd) {
        HsmDataObject *data = rd->data;
        HsmKeyRef *refs = rd->refs;
        char (*dups)[KEY_NAME_MAX + 1] = NULL;
        Key **keys = NULL;
        size_t n_all = rd->n_all, n_data = 0, n_refs = rd->n_refs, n = 0, m = 0, n_dups = 0;
        int r;

        /* Key records first. */
        for (size_t i = 0; i < n_all; i++)
                if (data[i].app == 0) {
                        HsmDataObject t = data[n_data];

                        data[n_data++] = data[i];
                        data[i] = t;
                }
        r = find_dup_names(data, n_data, &dups, &n_dups);
        if (r < 0)
                goto fail;
        keys = calloc(n_data ? n_data : 1, sizeof(*keys));
        if (!keys) {
                r = -ENOMEM;
                goto fail;
        }
        for (size_t i = 0; i < n_data; i++) {
                r = key_from_record(&data[i], &keys[n]);
                if (r == -EBADMSG)
                        continue; /* torn or foreign record: kekd check reports it */
                if (r < 0)
                        goto fail;
                n++;
        }
        /* One entry per name: the highest generation wins; older ones are repaired away. */
        qsort(keys, n, sizeof(*keys), load_cmp);
        for (size_t i = 0; i < n; i++) {
                if (m > 0 && strcmp(keys[m - 1]->name, keys[i]->name) == 0) {
                        key_free(keys[i]);
                        continue;
                }
                keys[m++] = keys[i];
        }
        n = m;
        for (size_t i = 0; i < n_refs; i++) {
                bool found;
                size_t pos = index_pos(keys, n, refs[i].label, &found);
                KeyVersion *v;

                if (!found)
                        continue; /* not a kekd key */
                v = key_version(keys[pos], refs[i].version);
                if (!v)
                        continue; /* pending or orphaned: repair and check deal with it */
                v->handle = refs[i].handle;
                v->present = true;
        }
        for (size_t i = 0; i < n; i++)
                carry_runtime(keys[i], index_get(ks, keys[i]->name));
        r = vault_apply(&ks->vault, data + n_data, n_all - n_data);
        if (r < 0)
                goto fail;
        /* Changes made through other kekd instances, as this refresh finds them. */
        if (ks->on_change) {
                for (size_t i = 0; i < n; i++)
                        notify_change(ks, keys[i]->name, index_get(ks, keys[i]->name), keys[i]);
                for (size_t i = 0; i < ks->n_keys; i++) {
                        bool found;

                        (void) index_pos(keys, n, ks->keys[i]->name, &found);
                        if (!found)
                                notify_change(ks, ks->keys[i]->name, ks->keys[i], NULL);
                }
        }

        if (ks->last_load_mono_usec != 0 && rd->generation != ks->generation)
                log_notice("The HSM session was lost and reopened; the key index was read again");
        keys_free(ks->keys, ks->n_keys);
        ks->epoch++;
        ks->keys = keys;
        ks->n_keys = n;
        free(ks->dup_names);
        ks->dup_names = dups;
        ks->n_dup_names = n_dups;
        ks->generation = rd->generation;
        ks->last_load_mono_usec = clock_mono_usec();
        ks->index_read_mono_usec = rd->started_mono_usec;
        ks->reload_needed = false;
        return 0;
fail:
        keys_free(keys, n);
        free(dups);
        return r;
}

static int load_index(Keystore *ks) {
        KeystoreRead rd;
        int r;

        read_begin(ks, &rd);
        r = read_token(&rd, ks->hsm);
        if (r >= 0)
                r = index_apply(ks, &rd);
        read_clear(&rd);
        return r;
}

int keystore_load(Keystore *ks) {
        int r = load_index(ks);

        /*
         * The index holds handles valid at ks->generation, which the data plane stamps on
         * its ops (keystore-data.c). A session reopened during the listing (at its start,
         * after a loss) may have renumbered what was listed before it: list once more, so
         * the generation is exact and the first request after a loss is served.
         */
        if (r >= 0 && hsm_generation(ks->hsm) != ks->generation)
                r = load_index(ks);
        return r;
}

int keystore_read_new(Keystore *ks, KeystoreRead **ret) {
        KeystoreRead *rd = calloc(1, sizeof(*rd));

        if (!rd)
                return -ENOMEM;
        read_begin(ks, rd);
        *ret = rd;
        return 0;
}

int keystore_read_token(KeystoreRead *rd, Hsm *h) {
        uint64_t gen;
        int r;

        r = hsm_ready(h); /* a session lost in an earlier reading reopens before the count is taken */
        if (r < 0)
                return r;
        gen = hsm_generation(h);
        r = read_token(rd, h);

        /* h lost its session during the reading: what was listed before may name other objects. */
        if (r >= 0 && hsm_generation(h) != gen) {
                read_clear(rd);
                r = -ESTALE;
        }
        return r;
}

int keystore_read_apply(Keystore *ks, KeystoreRead *rd) {
        int r;

        /* Never an older reading over a newer index: that could undo another node's disable. */
        if (ks->index_read_mono_usec >= rd->started_mono_usec)
                return 0;
        /*
         * A write of ours, a session reopened or a write's outcome in doubt since the reading
         * began: it may predate the change (a disable done here would be undone), or its
         * handles the reopen. Read again.
         */
        if (hsm_generation(ks->hsm) != rd->generation || hsm_writes(ks->hsm) != rd->writes ||
            (ks->reload_needed && !rd->reload_needed))
                return -ESTALE;
        r = index_apply(ks, rd);
        return r < 0 ? r : 1;
}

KeystoreRead *keystore_read_free(KeystoreRead *rd) {
        if (rd) {
                read_clear(rd);
                free(rd);
        }
        return NULL;
}

int keystore_refresh(Keystore *ks, uint64_t max_age_usec) {
        if (hsm_generation(ks->hsm) == ks->generation && !ks->reload_needed &&
            clock_mono_usec() - ks->last_load_mono_usec < max_age_usec)
                return 0;
        return keystore_load(ks);
}
