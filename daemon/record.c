/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Key <-> Kek__KeyRecord conversion (see record.h). A record is accepted
 * only whole: any inconsistency makes it -EBADMSG, and the keystore then
 * prefers another generation of the same key or reports the key in check.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/record.h"
#include "proto/blob.h"
#include "proto/kek.pb-c.h"

Key *key_free(Key *k) {
        if (!k)
                return NULL;
        free(k->versions);
        free(k->grants);
        free(k);
        return NULL;
}

static int version_cmp(const void *a, const void *b) {
        uint32_t x = ((const KeyVersion *) a)->id, y = ((const KeyVersion *) b)->id;

        return x < y ? -1 : x > y;
}

const KeyVersion *key_find_version(const Key *k, uint32_t version) {
        KeyVersion needle = { .id = version };

        return bsearch(&needle, k->versions, k->n_versions, sizeof(KeyVersion), version_cmp);
}

void key_sort_versions(Key *k) {
        qsort(k->versions, k->n_versions, sizeof(KeyVersion), version_cmp);
}

KeyStateValue key_state_from_wire(int s) {
        return s == KEK__KEY_STATE__DISABLED ? KEY_DISABLED : s == KEK__KEY_STATE__DELETED ? KEY_DELETED : KEY_ENABLED;
}

int key_state_to_wire(KeyStateValue s) {
        return s == KEY_DISABLED ? KEK__KEY_STATE__DISABLED : s == KEY_DELETED ? KEK__KEY_STATE__DELETED : KEK__KEY_STATE__ENABLED;
}

/* Decodes one metadata object into a Key; -EBADMSG if it is not a sound record. */
int key_from_record(const HsmDataObject *d, Key **ret) {
        _cleanup_(key_freep) Key *k = NULL;
        Kek__KeyRecord *rec;
        int r = -EBADMSG;

        rec = kek__key_record__unpack(NULL, d->value_len, d->value);
        if (!rec)
                return -EBADMSG;
        /* Formats 2, 3 and 4: versions of other profiles than gcm, trusted-wrap or restored ones (see key_to_record()). */
        if (rec->format < 1 || rec->format > 4 || !key_name_valid(rec->name) || strcmp(rec->name, d->label) != 0 ||
            (rec->n_versions == 0 && rec->pending_version == 0 && !rec->purging))
                goto finish;

        k = calloc(1, sizeof(*k));
        if (!k || !(k->versions = calloc(rec->n_versions ? rec->n_versions : 1, sizeof(KeyVersion)))) {
                r = -ENOMEM;
                goto finish;
        }
        strcpy(k->name, rec->name);
        k->created_usec = rec->created_usec;
        k->current_version = rec->current_version;
        k->state = key_state_from_wire(rec->state);
        k->state_before_delete = key_state_from_wire(rec->state_before_delete);
        if (rec->policy) {
                k->policy.rotate_after_sec = rec->policy->rotate_after_seconds;
                k->policy.max_wraps = rec->policy->max_wraps;
        }
        k->deleted_usec = rec->deleted_usec;
        k->scheduled_purge_usec = rec->scheduled_purge_usec;
        k->pending_version = rec->pending_version;
        k->pending_since_usec = rec->pending_since_usec;
        snprintf(k->pending_owner, sizeof(k->pending_owner), "%s", rec->pending_owner ?: "");
        k->purging = rec->purging;
        k->generation = rec->generation;
        k->writer = rec->writer;
        /* Only the nearest ancestors matter; a longer list (a future kekd) is cut, not refused. */
        k->n_ancestors = MIN(rec->n_ancestors, (size_t) ANCESTORS_MAX);
        if (k->n_ancestors > 0)
                memcpy(k->ancestors, rec->ancestors, k->n_ancestors * sizeof(uint64_t));
        k->meta_handle = d->handle;
        for (size_t i = 0; i < rec->n_versions; i++) {
                const Kek__VersionInfo *v = rec->versions[i];

                /* A profile this kekd does not know (a newer kekd's) is kept as it is, and that
                 * version refused when used (keystore-data.c), so its other versions still serve. */
                if (v->id == 0)
                        goto finish;
                k->versions[i] = (KeyVersion) {
                        .id = v->id,
                        .created_usec = v->created_usec,
                        .enabled = v->enabled,
                        .profile = (HsmProfile) v->profile,
                        .wrap_with_trusted = v->wrap_with_trusted,
                        .restored = v->restored,
                        .wraps_reserved = v->wraps,
                        .unwraps = v->unwraps,
                        .last_use_usec = v->last_use_usec,
                };
        }
        k->n_versions = rec->n_versions;
        key_sort_versions(k);
        if (rec->n_grants > GRANTS_MAX)
                goto finish;
        if (rec->n_grants > 0) {
                k->grants = calloc(rec->n_grants, sizeof(Grant));
                if (!k->grants) {
                        r = -ENOMEM;
                        goto finish;
                }
        }
        for (size_t i = 0; i < rec->n_grants; i++) {
                const Kek__Grant *g = rec->grants[i];

                if (g->ops == 0 || (g->ops & ~(uint32_t) GRANT_ALL))
                        goto finish;
                k->grants[i] = (Grant) { .group = g->group, .id = g->id, .ops = g->ops };
        }
        k->n_grants = rec->n_grants;
        for (size_t i = 1; i < k->n_versions; i++)
                if (k->versions[i].id == k->versions[i - 1].id)
                        goto finish;
        if (k->n_versions > 0 && !key_find_version(k, k->current_version))
                goto finish;

        *ret = TAKE_PTR(k);
        r = 0;
finish:
        kek__key_record__free_unpacked(rec, NULL);
        return r;
}

/* Serialises a key's record; the buffer is malloc'd. */
int key_to_record(const Key *k, uint8_t **ret, size_t *ret_len) {
        _cleanup_free_ Kek__VersionInfo *vi = NULL;
        _cleanup_free_ Kek__VersionInfo **vp = NULL;
        _cleanup_free_ Kek__Grant *gi = NULL;
        _cleanup_free_ Kek__Grant **gp = NULL;
        Kek__KeyRecord rec = KEK__KEY_RECORD__INIT;
        Kek__RotationPolicy pol = KEK__ROTATION_POLICY__INIT;
        uint8_t *buf;
        size_t n;

        vi = calloc(k->n_versions ? k->n_versions : 1, sizeof(*vi));
        vp = calloc(k->n_versions ? k->n_versions : 1, sizeof(*vp));
        gi = calloc(k->n_grants ? k->n_grants : 1, sizeof(*gi));
        gp = calloc(k->n_grants ? k->n_grants : 1, sizeof(*gp));
        if (!vi || !vp || !gi || !gp)
                return -ENOMEM;
        for (size_t i = 0; i < k->n_grants; i++) {
                kek__grant__init(&gi[i]);
                gi[i].group = k->grants[i].group;
                gi[i].id = k->grants[i].id;
                gi[i].ops = k->grants[i].ops;
                gp[i] = &gi[i];
        }
        for (size_t i = 0; i < k->n_versions; i++) {
                const KeyVersion *v = &k->versions[i];

                kek__version_info__init(&vi[i]);
                vi[i].id = v->id;
                vi[i].created_usec = v->created_usec;
                vi[i].enabled = v->enabled;
                vi[i].profile = (uint32_t) v->profile;
                vi[i].wrap_with_trusted = v->wrap_with_trusted;
                vi[i].restored = v->restored;
                vi[i].wraps = v->wraps_reserved;
                vi[i].unwraps = v->unwraps;
                vi[i].last_use_usec = v->last_use_usec;
                vp[i] = &vi[i];
        }
        pol.rotate_after_seconds = k->policy.rotate_after_sec;
        pol.max_wraps = k->policy.max_wraps;
        /*
         * A kekd that predates mechanism profiles ignores VersionInfo.profile: it would take a
         * ctr-hmac version for gcm, use its AES key under GCM, and write the record back without
         * the field. Format 2 makes it refuse such a record whole instead (it accepts only 1).
         */
        rec.format = 1;
        for (size_t i = 0; i < k->n_versions; i++)
                if (k->versions[i].profile != HSM_PROFILE_GCM)
                        rec.format = 2;
        /*
         * Format 3: a version in the trusted-wrap form, which a kekd that predates it does not find
         * (it searches never-extractable keys only) and would take for missing; it refuses the
         * record whole instead, and never writes it back without VersionInfo.wrap_with_trusted.
         */
        for (size_t i = 0; i < k->n_versions; i++)
                if (k->versions[i].wrap_with_trusted)
                        rec.format = 3;
        /*
         * Format 4: a restored version (docs/backup.md), whose keys no search of an older kekd
         * adopts (an unwrapped key is never ALWAYS_SENSITIVE): it would take the version for
         * missing and write the record back without VersionInfo.restored; it refuses it instead.
         */
        for (size_t i = 0; i < k->n_versions; i++)
                if (k->versions[i].restored)
                        rec.format = 4;
        rec.name = (char *) k->name;
        rec.created_usec = k->created_usec;
        rec.current_version = k->current_version;
        rec.state = (Kek__KeyState) key_state_to_wire(k->state);
        rec.state_before_delete = (Kek__KeyState) key_state_to_wire(k->state_before_delete);
        rec.n_versions = k->n_versions;
        rec.versions = vp;
        rec.policy = &pol;
        rec.deleted_usec = k->deleted_usec;
        rec.scheduled_purge_usec = k->scheduled_purge_usec;
        rec.pending_version = k->pending_version;
        rec.pending_since_usec = k->pending_since_usec;
        rec.pending_owner = (char *) k->pending_owner;
        rec.purging = k->purging;
        rec.generation = k->generation;
        rec.writer = k->writer;
        rec.n_ancestors = k->n_ancestors;
        rec.ancestors = (uint64_t *) k->ancestors;
        rec.n_grants = k->n_grants;
        rec.grants = gp;

        n = kek__key_record__get_packed_size(&rec);
        buf = malloc(n ? n : 1);
        if (!buf)
                return -ENOMEM;
        kek__key_record__pack(&rec, buf);
        *ret = buf;
        *ret_len = n;
        return 0;
}
