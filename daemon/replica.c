/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Replication of the preferred token to a further token: see replica.h. The
 * key material only moves as C_WrapKey / C_UnwrapKey output under the SO's
 * trusted keys (daemon/backup.h's helpers); this file decides what to copy,
 * write and purge, in the order that keeps the further token consistent at
 * every step.
 */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/kekerr.h"
#include "daemon/backup.h"
#include "daemon/keystore-index.h"
#include "daemon/keystore.h"
#include "daemon/keystore-records.h"
#include "daemon/log.h"
#include "daemon/replica.h"
#include "daemon/vault.h"

int replica_wanted_key(const Key *src, Key **ret) {
        _cleanup_(key_freep) Key *k = calloc(1, sizeof(*k));

        if (!k)
                return -ENOMEM;
        *k = *src;
        k->versions = NULL;
        k->grants = NULL;
        if (src->n_versions) {
                k->versions = calloc(src->n_versions, sizeof(*k->versions));
                if (!k->versions)
                        return -ENOMEM;
                memcpy(k->versions, src->versions, src->n_versions * sizeof(*k->versions));
        }
        if (src->n_grants) {
                k->grants = calloc(src->n_grants, sizeof(*k->grants));
                if (!k->grants)
                        return -ENOMEM;
                memcpy(k->grants, src->grants, src->n_grants * sizeof(*k->grants));
        }
        /* An intent is the preferred token's writer's business; the further token gets only what is done. */
        k->pending_version = 0;
        k->pending_since_usec = 0;
        k->pending_owner[0] = 0;
        k->purging = false;
        k->meta_handle = 0;
        k->generation = 0;
        k->writer = 0;
        k->n_ancestors = 0;
        for (size_t i = 0; i < k->n_versions; i++) {
                KeyVersion *v = &k->versions[i];

                v->present = v->mac_present = false;
                v->handle = v->mac_handle = 0;
                v->lease_left = v->unwraps_pending = v->last_use_pending = 0;
        }
        *ret = TAKE_PTR(k);
        return 0;
}

bool replica_record_differs(const Key *want, const Key *have) {
        if (!have)
                return true;
        if (strcmp(want->name, have->name) != 0 || want->created_usec != have->created_usec ||
            want->current_version != have->current_version || want->state != have->state ||
            want->state_before_delete != have->state_before_delete || want->deleted_usec != have->deleted_usec ||
            want->scheduled_purge_usec != have->scheduled_purge_usec || want->purging != have->purging ||
            want->policy.rotate_after_sec != have->policy.rotate_after_sec ||
            want->policy.max_wraps != have->policy.max_wraps || want->n_versions != have->n_versions ||
            want->n_grants != have->n_grants || have->pending_version != 0)
                return true;
        for (size_t i = 0; i < want->n_versions; i++) {
                const KeyVersion *a = &want->versions[i], *b = &have->versions[i];

                if (a->id != b->id || a->created_usec != b->created_usec || a->enabled != b->enabled ||
                    a->profile != b->profile || a->wrap_with_trusted != b->wrap_with_trusted ||
                    a->restored != b->restored)
                        return true;
        }
        for (size_t i = 0; i < want->n_grants; i++) {
                const Grant *a = &want->grants[i], *b = &have->grants[i];

                if (a->group != b->group || a->id != b->id || a->ops != b->ops)
                        return true;
        }
        return false;
}

_printf_(2, 3) static void note(ReplicaOutcome *o, const char *fmt, ...) {
        va_list ap;

        if (o->note[0])
                return; /* the first one says the most */
        va_start(ap, fmt);
        vsnprintf(o->note, sizeof(o->note), fmt, ap);
        va_end(ap);
}

static const HsmKeyRef *find_ref(const HsmKeyRef *refs, size_t n, const char *label, uint32_t version) {
        for (size_t i = 0; i < n; i++)
                if (refs[i].version == version && strcmp(refs[i].label, label) == 0)
                        return &refs[i];
        return NULL;
}

/* How many objects (of any form) answer to label and version in refs: a whole copy has one. */
static size_t count_refs(const HsmKeyRef *refs, size_t n, const char *label, uint32_t version) {
        size_t c = 0;

        for (size_t i = 0; i < n; i++)
                c += refs[i].version == version && strcmp(refs[i].label, label) == 0;
        return c;
}

typedef struct Side {
        KeyIndexReading rd;
        KeyIndex ix;
        KeyName *dups;
        size_t n_dups;
        const HsmDataObject *vault;
        size_t n_vault;
} Side;

static void side_done(Side *s) {
        key_index_clear(&s->ix);
        free(s->dups);
        key_index_reading_clear(&s->rd);
}

static int side_read(Side *s, Hsm *h) {
        int r = key_index_read(&s->rd, h);

        if (r < 0)
                return r;
        return key_index_build(&s->rd, &s->ix, &s->dups, &s->n_dups, &s->vault, &s->n_vault);
}

/*
 * Version v of key name on dst, copied from src unless there (fresh: copied whatever is there); on return
 * v->restored is the form dst holds it in. 0 there or copied (*copied says which), 1 cannot leave src
 * (noted), <0 failed (noted).
 */
static int copy_version(Hsm *src, Hsm *dst, const HsmTransferKey *wk, const HsmTransferKey *uk, const char *name,
                        KeyVersion *v, bool fresh, const HsmKeyRef *aes, size_t n_aes, const HsmKeyRef *mac,
                        size_t n_mac, bool *copied, ReplicaOutcome *o) {
        bool has_mac = hsm_profile_has_mac_key(v->profile);
        const HsmKeyRef *a = find_ref(aes, n_aes, name, v->id), *m = has_mac ? find_ref(mac, n_mac, name, v->id) : NULL;
        _cleanup_free_ uint8_t *wa = NULL, *wm = NULL;
        size_t la = 0, lm = 0;
        int r;

        *copied = false;
        /*
         * The AES key goes in last: with it there (and the MAC key, when the profile has one) the copy is whole.
         * A second object beside it (planted, or two syncs copying at once) makes the version serve nothing
         * there (pkcs11/hsm.h): it is copied again, which destroys every object of the version first.
         * So is one the token did not generate in a generated form (not_local: refused there as well).
         */
        if (!fresh && a && !a->not_local && count_refs(aes, n_aes, name, v->id) == 1 &&
            (!has_mac || (m && !m->not_local && m->restored == a->restored &&
                          count_refs(mac, n_mac, name, v->id) == 1))) {
                v->restored = a->restored;
                return 0;
        }
        r = has_mac ? backup_wrap_part(src, wk, name, v, HSM_PART_MAC, &wm, &lm) : 0;
        if (r >= 0)
                r = backup_wrap_part(src, wk, name, v, HSM_PART_AES, &wa, &la);
        if (r == -EPERM || r == -ENOENT || r == -ENOTUNIQ) {
                o->not_copied++;
                note(o, "key '%s' version %u not copied: %s", name, v->id,
                     r == -EPERM     ? "never extractable"
                     : r == -ENOENT ? "its key object is missing from the preferred token"
                                    : "more than one key object answers to it on the preferred token");
                return 1;
        }
        if (r < 0) {
                o->src_failed = true;
                note(o, "key '%s' version %u did not wrap on the preferred token: %s", name, v->id,
                     hsm_last_error(src));
                return r;
        }
        r = backup_unwrap_version(dst, uk, name, v, wm, lm, wa, la);
        if (r < 0) {
                note(o, "key '%s' version %u did not unwrap: %s", name, v->id, hsm_last_error(dst));
                return r;
        }
        backup_restored_version(v);
        *copied = true;
        o->copied++;
        return 0;
}

/* Writes want on dst as the next generation of dst's own record of it (none: the first). */
static int write_record(Hsm *dst, Key *want, ReplicaOutcome *o) {
        _cleanup_(key_freep) Key *fetched = NULL;
        _cleanup_free_ HsmObject *old = NULL;
        size_t n_old = 0;
        bool reload = false;
        int r;

        r = records_fetch(dst, want->name, &fetched, &old, &n_old);
        if (r == -KEKERR_UNKNOWN_KEY)
                r = 0;
        if (r < 0) {
                note(o, "the record of key '%s' could not be read: %s", want->name, hsm_last_error(dst));
                return r;
        }
        /* Built on the record it replaces (keystore-records.h): its generation, writer and ancestors. */
        want->generation = fetched ? fetched->generation : 0;
        want->writer = fetched ? fetched->writer : 0;
        want->n_ancestors = fetched ? fetched->n_ancestors : 0;
        if (fetched && fetched->n_ancestors)
                memcpy(want->ancestors, fetched->ancestors, fetched->n_ancestors * sizeof(want->ancestors[0]));
        r = records_write(dst, want, old, n_old, hsm_generation(dst), &reload);
        if (r < 0) {
                note(o, "the record of key '%s' could not be written: %s", want->name,
                     r == -EAGAIN ? "another writer" : hsm_last_error(dst));
                return r == -EAGAIN ? -KEKERR_CONFLICT : r;
        }
        o->written++;
        return 0;
}

static int purge_key(Hsm *dst, const char *name, const Key *dk, ReplicaOutcome *o);

/* One key of src onto dst: versions first, then the record. 0, or <0 (noted). */
static int sync_key(Hsm *src, Hsm *dst, const HsmTransferKey *wk, const HsmTransferKey *uk, const Key *sk,
                    const Key *dk, const HsmKeyRef *aes, size_t n_aes, const HsmKeyRef *mac, size_t n_mac,
                    ReplicaOutcome *o) {
        _cleanup_(key_freep) Key *want = NULL;
        size_t kept = 0;
        bool current_missing = false, fresh;
        int r;

        /* Another key of the same name there (purged and made again here meanwhile): its objects are not ours. */
        if (dk && dk->created_usec != sk->created_usec) {
                r = purge_key(dst, sk->name, dk, o);
                if (r < 0)
                        return r;
                dk = NULL;
        }
        /*
         * Only a version the further token's own record names is kept as it is there: that record was
         * written by a sync after it copied the version. Any other object of this name and version is an
         * interrupted copy's, an older key's of the same name, or one a holder of that token's PIN
         * imported (the restored form every copy has is also what C_CreateObject makes, with a value
         * its maker knows): copied again over it, never adopted.
         */
        fresh = !dk;
        r = replica_wanted_key(sk, &want);
        if (r < 0)
                return r;
        for (size_t i = 0; i < want->n_versions; i++) {
                KeyVersion v = want->versions[i];
                bool copied;

                r = copy_version(src, dst, wk, uk, want->name, &v, fresh || !key_find_version(dk, v.id), aes, n_aes,
                                 mac, n_mac, &copied, o);
                if (r < 0)
                        return r;
                if (r > 0) {
                        /* A record names only versions whose objects are there. */
                        current_missing = current_missing || v.id == want->current_version;
                        continue;
                }
                if (copied)
                        log_debug("Replica: copied key '%s' version %u", want->name, v.id);
                want->versions[kept++] = v;
        }
        want->n_versions = kept;
        /* Without its current version the key would wrap under another one there: no record until it is. */
        if (kept == 0 || current_missing)
                return 0;
        if (!replica_record_differs(want, dk))
                return 0;
        r = write_record(dst, want, o);
        if (r >= 0)
                log_debug("Replica: wrote the record of key '%s'", want->name);
        return r;
}

/* Key name is gone from src: purged on dst in the purge order. */
static int purge_key(Hsm *dst, const char *name, const Key *dk, ReplicaOutcome *o) {
        int r;

        if (dk && !dk->purging) {
                _cleanup_(key_freep) Key *k = NULL;

                /* "purging" first, so an interruption leaves a key no one serves and repair finishes. */
                r = replica_wanted_key(dk, &k);
                if (r < 0)
                        return r;
                k->purging = true;
                r = write_record(dst, k, o);
                if (r < 0)
                        return r;
                o->written--; /* counted as a purge */
        }
        r = records_destroy_all(dst, name);
        if (r < 0) {
                note(o, "key '%s' could not be purged: %s", name, hsm_last_error(dst));
                return r;
        }
        log_debug("Replica: purged key '%s'", name);
        o->purged++;
        return 0;
}

static bool policy_equal(const VaultPolicy *a, const VaultPolicy *b) {
        return a->retention_days == b->retention_days && a->purge_protection == b->purge_protection &&
               a->dual_control == b->dual_control && a->approval_window_sec == b->approval_window_sec &&
               a->trusted_wrap == b->trusted_wrap;
}

static int sync_vault(Hsm *dst, const Side *s, const Side *d, ReplicaOutcome *o) {
        Vault sv = {}, dv = {};
        VaultPolicy after;
        VaultChange c;
        int r;

        if (s->n_vault == 0)
                return 0; /* the preferred token has no policy record yet: its defaults are everyone's */
        r = vault_apply(&sv, s->vault, s->n_vault);
        if (r >= 0)
                r = vault_apply(&dv, d->vault, d->n_vault);
        if (r < 0) {
                note(o, "the vault policy could not be read");
                return r;
        }
        /* The one-way settings (purge protection, trusted-wrap) are only ever switched on. */
        c = (VaultChange) {
                .retention_days = sv.policy.retention_days,
                .purge_protection = sv.policy.purge_protection ? 1 : -1,
                .set_dual_control = true,
                .dual_control = sv.policy.dual_control,
                .approval_window_sec = sv.policy.approval_window_sec,
                .trusted_wrap = sv.policy.trusted_wrap ? 1 : -1,
        };
        after = sv.policy;
        after.purge_protection = sv.policy.purge_protection || dv.policy.purge_protection;
        after.trusted_wrap = sv.policy.trusted_wrap || dv.policy.trusted_wrap;
        if (dv.generation > 0 && policy_equal(&after, &dv.policy))
                return 0;
        r = vault_set(&dv, dst, &c);
        if (r == -KEKERR_PERMISSION_DENIED) {
                /* Stricter there (purge protection with a longer retention): it serves nothing the preferred would not. */
                log_debug("Replica: the vault policy there is stricter than the preferred token's: kept");
                return 0;
        }
        if (r < 0)
                note(o, "the vault policy could not be written: %s", hsm_last_error(dst));
        else
                o->vault_written = true;
        return r;
}

int replica_sync(Hsm *src, Hsm *dst, const char *wrapping_key, const char *unwrapping_key, ReplicaProgressFn progress,
                 void *userdata, ReplicaOutcome *ret) {
        _cleanup_free_ HsmKeyRef *mac = NULL;
        ReplicaOutcome o = {};
        HsmTransferKey wk, uk;
        Side s = {}, d = {};
        size_t n_mac = 0;
        int r;

        if (!wrapping_key || !wrapping_key[0] || !unwrapping_key || !unwrapping_key[0]) {
                note(&o, "not copied: no trusted wrapping key configured ([backup] wrapping_key, unwrapping_key)");
                r = -KEKERR_INVALID_ARGUMENT;
                goto finish;
        }
        r = hsm_find_wrapping_key(src, wrapping_key, &wk);
        if (r < 0) {
                note(&o, "not copied: %s trusted wrapping key '%s' on the preferred token",
                     r == -ENOTUNIQ ? "more than one" : "no", wrapping_key);
                r = r == -ENOENT || r == -ENOTUNIQ ? -KEKERR_INVALID_ARGUMENT : r;
                goto finish;
        }
        r = hsm_find_unwrapping_key(dst, unwrapping_key, &uk);
        if (r < 0) {
                note(&o, "not copied: %s unwrapping key '%s' on this token", r == -ENOTUNIQ ? "more than one" : "no",
                     unwrapping_key);
                r = r == -ENOENT || r == -ENOTUNIQ || r == -EINVAL ? -KEKERR_INVALID_ARGUMENT : r;
                goto finish;
        }
        r = side_read(&s, src);
        if (r < 0) {
                o.src_failed = true;
                note(&o, "the preferred token could not be read: %s", hsm_last_error(src));
                goto finish;
        }
        r = side_read(&d, dst);
        if (r >= 0)
                r = hsm_list_mac_keys(dst, &mac, &n_mac);
        if (r < 0) {
                note(&o, "it could not be read: %s", hsm_last_error(dst));
                goto finish;
        }
        for (size_t i = 0; i < s.ix.n; i++) {
                const Key *sk = s.ix.keys[i];

                /* Being purged: below. Being created (no version recorded yet): not a key until it is. */
                if (!key_exists(sk))
                        continue;
                o.keys++;
                r = sync_key(src, dst, &wk, &uk, sk, key_index_get(&d.ix, sk->name), d.rd.refs, d.rd.n_refs, mac, n_mac,
                             &o);
                if (r < 0)
                        goto finish;
                if (progress && progress(sk->name, &o, userdata) != 0) {
                        r = -ECANCELED;
                        goto finish;
                }
        }
        /* Keys the preferred token no longer has, or is purging; objects of keys it never had. */
        for (size_t i = 0; i < d.ix.n; i++) {
                const Key *sk = key_index_get(&s.ix, d.ix.keys[i]->name);

                if (sk && !sk->purging)
                        continue;
                r = purge_key(dst, d.ix.keys[i]->name, d.ix.keys[i], &o);
                if (r < 0)
                        goto finish;
        }
        for (size_t i = 0; i < d.rd.n_refs; i++) {
                const char *name = d.rd.refs[i].label;
                bool seen = false;

                if (key_index_get(&s.ix, name) || key_index_get(&d.ix, name))
                        continue;
                for (size_t j = 0; j < i && !seen; j++) /* orphans are few: once per name */
                        seen = strcmp(d.rd.refs[j].label, name) == 0;
                if (seen)
                        continue;
                r = purge_key(dst, name, NULL, &o);
                if (r < 0)
                        goto finish;
        }
        r = sync_vault(dst, &s, &d, &o);
        if (r < 0)
                goto finish;
        r = o.not_copied > 0;
finish:
        side_done(&s);
        side_done(&d);
        *ret = o;
        return r;
}
