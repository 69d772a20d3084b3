/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The keystore index and its crypto operations (see keystore.h). The index is
 * a name-sorted array of Key pointers: lookups are a binary search, and the
 * whole array is replaced atomically by keystore_load(), so a failed reload
 * never leaves a half-built index behind.
 */
#include "config.h"

#include <errno.h>
#include <string.h>
#include <time.h>

#include <openssl/rand.h>

#include "common/kekerr.h"
#include "keystore.h"
#include "log.h"
#include "proto/kek.pb-c.h"

/* A lookup miss may mean another node created the key: re-read the token, but not more often than this. */
#define MISS_RELOAD_INTERVAL_USEC (1000 * 1000ULL)

struct Keystore {
        Hsm *hsm;
        Key **keys;
        size_t n_keys;
        uint64_t generation;          /* hsm_generation() the index was built at */
        uint64_t last_load_mono_usec;
};

static uint64_t mono_usec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000ULL + (uint64_t) ts.tv_nsec / 1000;
}

static Key *key_free(Key *k) {
        if (!k)
                return NULL;
        free(k->versions);
        free(k);
        return NULL;
}
DEFINE_TRIVIAL_CLEANUP_FUNC(Key, key_free);

static void keys_free(Key **keys, size_t n) {
        for (size_t i = 0; i < n; i++)
                key_free(keys[i]);
        free(keys);
}

static int key_cmp(const void *a, const void *b) {
        return strcmp((*(Key *const *) a)->name, (*(Key *const *) b)->name);
}

static int version_cmp(const void *a, const void *b) {
        uint32_t x = ((const KeyVersion *) a)->id, y = ((const KeyVersion *) b)->id;

        return x < y ? -1 : x > y;
}

static Key **index_find(Key **keys, size_t n, const char *name) {
        size_t lo = 0, hi = n;

        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                int c = strcmp(name, keys[mid]->name);

                if (c == 0)
                        return &keys[mid];
                if (c < 0)
                        hi = mid;
                else
                        lo = mid + 1;
        }
        return NULL;
}

const KeyVersion *key_find_version(const Key *k, uint32_t version) {
        KeyVersion needle = { .id = version };

        return bsearch(&needle, k->versions, k->n_versions, sizeof(KeyVersion), version_cmp);
}

/* Decodes one metadata object into a Key; -EBADMSG if it is not a sound record. */
static int key_from_record(const HsmDataObject *d, Key **ret) {
        _cleanup_(key_freep) Key *k = NULL;
        Kek__KeyRecord *rec;
        int r = -EBADMSG;

        rec = kek__key_record__unpack(NULL, d->value_len, d->value);
        if (!rec)
                return -EBADMSG;
        if (rec->format != 1 || !key_name_valid(rec->name) || strcmp(rec->name, d->label) != 0 ||
            rec->n_versions == 0)
                goto finish;

        k = calloc(1, sizeof(*k));
        if (!k) {
                r = -ENOMEM;
                goto finish;
        }
        k->versions = calloc(rec->n_versions, sizeof(KeyVersion));
        if (!k->versions) {
                r = -ENOMEM;
                goto finish;
        }
        strcpy(k->name, rec->name);
        k->created_usec = rec->created_usec;
        k->current_version = rec->current_version;
        k->meta_handle = d->handle;
        switch (rec->state) {
        case KEK__KEY_STATE__DISABLED:
                k->state = KEY_DISABLED;
                break;
        case KEK__KEY_STATE__DELETED:
                k->state = KEY_DELETED;
                break;
        default:
                k->state = KEY_ENABLED;
        }
        for (size_t i = 0; i < rec->n_versions; i++) {
                if (rec->versions[i]->id == 0)
                        goto finish;
                k->versions[i] = (KeyVersion) {
                        .id = rec->versions[i]->id,
                        .created_usec = rec->versions[i]->created_usec,
                        .enabled = rec->versions[i]->enabled,
                };
        }
        k->n_versions = rec->n_versions;
        qsort(k->versions, k->n_versions, sizeof(KeyVersion), version_cmp);
        for (size_t i = 1; i < k->n_versions; i++)
                if (k->versions[i].id == k->versions[i - 1].id)
                        goto finish;
        if (!key_find_version(k, k->current_version))
                goto finish;

        *ret = TAKE_PTR(k);
        r = 0;
finish:
        kek__key_record__free_unpacked(rec, NULL);
        return r;
}

/* Serialises a key's metadata record; the buffer is malloc'd. */
static int key_to_record(const Key *k, uint8_t **ret, size_t *ret_len) {
        _cleanup_free_ Kek__VersionInfo *vi = NULL;
        _cleanup_free_ Kek__VersionInfo **vp = NULL;
        Kek__KeyRecord rec = KEK__KEY_RECORD__INIT;
        uint8_t *buf;
        size_t n;

        vi = calloc(k->n_versions, sizeof(*vi));
        vp = calloc(k->n_versions, sizeof(*vp));
        if (!vi || !vp)
                return -ENOMEM;
        for (size_t i = 0; i < k->n_versions; i++) {
                kek__version_info__init(&vi[i]);
                vi[i].id = k->versions[i].id;
                vi[i].created_usec = k->versions[i].created_usec;
                vi[i].enabled = k->versions[i].enabled;
                vp[i] = &vi[i];
        }
        rec.format = 1;
        rec.name = (char *) k->name;
        rec.created_usec = k->created_usec;
        rec.current_version = k->current_version;
        rec.state = k->state == KEY_DISABLED ? KEK__KEY_STATE__DISABLED
                    : k->state == KEY_DELETED ? KEK__KEY_STATE__DELETED
                                              : KEK__KEY_STATE__ENABLED;
        rec.n_versions = k->n_versions;
        rec.versions = vp;

        n = kek__key_record__get_packed_size(&rec);
        buf = malloc(n ? n : 1);
        if (!buf)
                return -ENOMEM;
        kek__key_record__pack(&rec, buf);
        *ret = buf;
        *ret_len = n;
        return 0;
}

int keystore_new(Hsm *hsm, Keystore **ret) {
        _cleanup_(keystore_freep) Keystore *ks = NULL;
        int r;

        ks = calloc(1, sizeof(*ks));
        if (!ks)
                return -ENOMEM;
        ks->hsm = hsm;
        r = keystore_load(ks);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(ks);
        return 0;
}

Keystore *keystore_free(Keystore *ks) {
        if (!ks)
                return NULL;
        keys_free(ks->keys, ks->n_keys);
        free(ks);
        return NULL;
}

int keystore_load(Keystore *ks) {
        HsmDataObject *data = NULL;
        _cleanup_free_ HsmKeyRef *refs = NULL;
        Key **keys = NULL;
        size_t n_data = 0, n_refs = 0, n = 0;
        uint64_t gen = hsm_generation(ks->hsm);
        int r;

        r = hsm_list_data(ks->hsm, &data, &n_data);
        if (r < 0)
                return r;
        r = hsm_list_keys(ks->hsm, &refs, &n_refs);
        if (r < 0)
                goto fail;

        keys = calloc(n_data ? n_data : 1, sizeof(*keys));
        if (!keys) {
                r = -ENOMEM;
                goto fail;
        }
        for (size_t i = 0; i < n_data; i++) {
                r = key_from_record(&data[i], &keys[n]);
                if (r == -EBADMSG) {
                        log_warning("Ignoring unreadable key metadata object labelled '%s'", data[i].label);
                        continue;
                }
                if (r < 0)
                        goto fail;
                n++;
        }
        qsort(keys, n, sizeof(*keys), key_cmp);
        for (size_t i = 1; i < n; i++)
                if (strcmp(keys[i]->name, keys[i - 1]->name) == 0)
                        log_warning("Key '%s' has more than one metadata object; using one of them", keys[i]->name);

        for (size_t i = 0; i < n_refs; i++) {
                Key **k = index_find(keys, n, refs[i].label);
                KeyVersion *v;

                if (!k)
                        continue; /* not a kekd key, or an orphan of an interrupted create */
                v = (KeyVersion *) key_find_version(*k, refs[i].version);
                if (!v)
                        continue; /* orphan of an interrupted rotation */
                v->handle = refs[i].handle;
                v->present = true;
        }
        for (size_t i = 0; i < n; i++)
                for (size_t j = 0; j < keys[i]->n_versions; j++)
                        if (!keys[i]->versions[j].present)
                                log_warning("Key '%s' version %u is named in its metadata but missing from the token",
                                            keys[i]->name, keys[i]->versions[j].id);

        keys_free(ks->keys, ks->n_keys);
        ks->keys = keys;
        ks->n_keys = n;
        /* If the session was reopened while we listed, handles may predate it; hsm_generation() then differs and the next op reloads. */
        ks->generation = gen;
        ks->last_load_mono_usec = mono_usec();
        hsm_data_objects_free(data, n_data);
        return 0;
fail:
        keys_free(keys, n);
        hsm_data_objects_free(data, n_data);
        return r;
}

/* Reloads when the HSM session was reopened since the index was built (handles may be stale). */
static int keystore_sync(Keystore *ks) {
        if (hsm_generation(ks->hsm) == ks->generation)
                return 0;
        return keystore_load(ks);
}

size_t keystore_n_keys(const Keystore *ks) {
        return ks->n_keys;
}

const Key *keystore_key_at(const Keystore *ks, size_t i) {
        return i < ks->n_keys ? ks->keys[i] : NULL;
}

int keystore_find(Keystore *ks, const char *name, const Key **ret) {
        Key **k;
        int r;

        if (!key_name_valid(name))
                return -KEKERR_UNKNOWN_KEY;
        r = keystore_sync(ks);
        if (r < 0)
                return r;
        k = index_find(ks->keys, ks->n_keys, name);
        if (!k && mono_usec() - ks->last_load_mono_usec >= MISS_RELOAD_INTERVAL_USEC) {
                r = keystore_load(ks);
                if (r < 0)
                        return r;
                k = index_find(ks->keys, ks->n_keys, name);
        }
        if (!k)
                return -KEKERR_UNKNOWN_KEY;
        *ret = *k;
        return 0;
}

int keystore_create(Keystore *ks, const char *name, uint64_t now_usec, const Key **ret) {
        _cleanup_(key_freep) Key *k = NULL;
        _cleanup_free_ uint8_t *rec = NULL;
        Key **keys;
        size_t rec_len, pos;
        HsmObject key_obj;
        int r;

        if (!key_name_valid(name))
                return -KEKERR_INVALID_ARGUMENT;
        /* Re-read the token: another node may have created this name since our last load. */
        r = keystore_load(ks);
        if (r < 0)
                return r;
        if (index_find(ks->keys, ks->n_keys, name))
                return -KEKERR_KEY_EXISTS;

        k = calloc(1, sizeof(*k));
        if (!k)
                return -ENOMEM;
        k->versions = calloc(1, sizeof(KeyVersion));
        if (!k->versions)
                return -ENOMEM;
        strcpy(k->name, name);
        k->created_usec = now_usec;
        k->current_version = 1;
        k->state = KEY_ENABLED;
        k->n_versions = 1;
        k->versions[0] = (KeyVersion) { .id = 1, .created_usec = now_usec, .enabled = true, .present = true };

        r = key_to_record(k, &rec, &rec_len);
        if (r < 0)
                return r;
        keys = reallocarray(ks->keys, ks->n_keys + 1, sizeof(*keys));
        if (!keys)
                return -ENOMEM;
        ks->keys = keys;

        /* Key object first: a crash before the metadata leaves an unnamed orphan, never a named hole. */
        r = hsm_generate_aes_key(ks->hsm, name, 1, &key_obj);
        if (r < 0)
                return r;
        k->versions[0].handle = key_obj;
        r = hsm_create_data(ks->hsm, name, rec, rec_len, &k->meta_handle);
        if (r < 0) {
                (void) hsm_destroy_object(ks->hsm, key_obj);
                return r;
        }

        for (pos = 0; pos < ks->n_keys && strcmp(ks->keys[pos]->name, name) < 0; pos++)
                ;
        memmove(ks->keys + pos + 1, ks->keys + pos, (ks->n_keys - pos) * sizeof(*ks->keys));
        ks->keys[pos] = TAKE_PTR(k);
        ks->n_keys++;
        *ret = ks->keys[pos];
        return 0;
}

/* Refuses keys and versions that are not in service. */
static int check_usable(const Key *k, const KeyVersion *v) {
        if (k->state == KEY_DELETED)
                return -KEKERR_KEY_DELETED;
        if (k->state == KEY_DISABLED || !v->enabled)
                return -KEKERR_KEY_DISABLED;
        if (!v->present)
                return -KEKERR_UNKNOWN_VERSION;
        return 0;
}

/* An object vanished under us (purged through another node): re-read and report the version as unknown. */
static int handle_gone(Keystore *ks, int r) {
        if (r == -ENOENT) {
                (void) keystore_load(ks);
                return -KEKERR_UNKNOWN_VERSION;
        }
        return r;
}

int keystore_wrap(Keystore *ks, const char *name, uint32_t version, const uint8_t *pt, size_t pt_len,
                  const uint8_t *ctx, size_t ctx_len, uint8_t **ret_blob, size_t *ret_blob_len,
                  uint32_t *ret_version) {
        uint8_t header[BLOB_HEADER_MAX], aad[BLOB_AAD_MAX];
        _cleanup_free_ uint8_t *blob = NULL;
        const KeyVersion *v;
        const Key *k;
        int hlen, alen, r;
        size_t len;

        if (pt_len == 0 || pt_len > AEK_MAX_SIZE || ctx_len > CONTEXT_MAX_SIZE)
                return -KEKERR_INVALID_ARGUMENT;
        r = keystore_find(ks, name, &k);
        if (r < 0)
                return r;
        v = key_find_version(k, version == 0 ? k->current_version : version);
        if (!v)
                return -KEKERR_UNKNOWN_VERSION;
        r = check_usable(k, v);
        if (r < 0)
                return r;

        hlen = blob_header(k->name, v->id, header);
        if (hlen < 0)
                return hlen;
        alen = blob_aad(header, (size_t) hlen, ctx, ctx_len, aad);
        if (alen < 0)
                return alen;

        len = (size_t) hlen + BLOB_IV_SIZE + pt_len + BLOB_TAG_SIZE;
        blob = malloc(len);
        if (!blob)
                return -ENOMEM;
        memcpy(blob, header, (size_t) hlen);
        /* A fresh random 96-bit IV per wrap; the per-version wrap budget (rotation policy) keeps collisions negligible. */
        if (RAND_bytes(blob + hlen, BLOB_IV_SIZE) != 1)
                return -EIO;
        r = hsm_encrypt_gcm(ks->hsm, v->handle, blob + hlen, aad, (size_t) alen, pt, pt_len,
                            blob + hlen + BLOB_IV_SIZE);
        if (r < 0)
                return handle_gone(ks, r);

        *ret_version = v->id;
        *ret_blob_len = len;
        *ret_blob = TAKE_PTR(blob);
        return 0;
}

int keystore_unwrap(Keystore *ks, const uint8_t *blob, size_t blob_len, const uint8_t *ctx, size_t ctx_len,
                    Secret **ret_plaintext, BlobView *ret_view) {
        uint8_t aad[BLOB_AAD_MAX];
        Secret *pt = NULL;
        const KeyVersion *v;
        const Key *k;
        BlobView view;
        int alen, r;

        if (ctx_len > CONTEXT_MAX_SIZE)
                return -KEKERR_INVALID_ARGUMENT;
        r = blob_parse(blob, blob_len, &view);
        if (r < 0)
                return r;
        r = keystore_find(ks, view.key, &k);
        if (r < 0)
                return r;
        v = key_find_version(k, view.version);
        if (!v)
                return -KEKERR_UNKNOWN_VERSION;
        r = check_usable(k, v);
        if (r < 0)
                return r;
        alen = blob_aad(view.header, view.header_len, ctx, ctx_len, aad);
        if (alen < 0)
                return alen;
        r = hsm_decrypt_gcm(ks->hsm, v->handle, view.iv, aad, (size_t) alen, view.ciphertext,
                            view.ciphertext_len, &pt);
        if (r < 0)
                return handle_gone(ks, r);
        *ret_plaintext = pt;
        *ret_view = view;
        return 0;
}
