/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The keystore: the index it owns (a KeyIndex, keystore-index.h) and when
 * it is read from the token, the lifecycle, maintenance and the data plane's
 * lease renewals (see keystore.h for the consistency invariants). Every
 * change to a key goes through mutate(): read the freshest record from the
 * token, change it, write generation+1, destroy the old object, and put the
 * result in the index, carrying this kekd's unflushed usage across (the
 * reading and writing of records, with the contest rule, are in
 * keystore-records.c). The data plane (keystore-data.c) sits on top and
 * uses only keystore.h.
 * Key and KeyVersion pointers handed out are therefore valid only until the
 * next keystore call that may change the index.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/rand.h>

#include "common/kekerr.h"
#include "daemon/clock.h"
#include "daemon/keystore.h"
#include "daemon/keystore-index.h"
#include "daemon/keystore-profile.h"
#include "daemon/keystore-records.h"
#include "daemon/log.h"
#include "daemon/vault.h"

#define LEASE_MAX (1u << 20)

#define MISS_RELOAD_INTERVAL_USEC (1 * USEC_PER_SEC)
#define PENDING_STALE_USEC (60 * USEC_PER_SEC)
/*
 * Unwrap counts and last-use times are written at most this often (and at
 * shutdown): each write replaces a record object, and SoftHSM2 keeps the
 * memory of replaced objects until C_Finalize, so writing them every refresh
 * grew kekd by kilobytes a second.
 */
#define USAGE_FLUSH_INTERVAL_USEC (60 * USEC_PER_SEC)
/* Maintenance reuses an index at most this old instead of reading the token again (start-up: just loaded). */
#define REPAIR_FRESH_USEC (500 * 1000ULL)

struct Keystore {
        Hsm *hsm;
        KeyIndex index;
        uint64_t epoch;               /* moves whenever a Key in the index is replaced or freed (KeyLookup) */
        uint64_t lookups;             /* keystore_lookups() */
        uint64_t generation;          /* hsm_generation() the index was built at */
        uint64_t last_load_mono_usec;
        uint64_t index_read_mono_usec; /* when the reading the index was built from began */
        uint64_t last_usage_flush_mono_usec;
        Vault vault;
        bool reload_needed;           /* a write's outcome is unknown: re-read the token before answering */
        bool allow_unrecoverable;
        bool token_down;              /* keystore_set_token_down(): serve from the last index, write nothing */
        ProfileChoice profile;        /* [hsm] profile, and the one new versions get */
        char owner[OWNER_MAX];
        KeyChangeFn on_change;
        void *on_change_userdata;
        KeyName *dup_names;           /* names with more than one record object, as the last load found them */
        size_t n_dup_names;
};

/* Changes one key: fresh read, fn, write generation+1, index (see mutate()). */
typedef int (*MutateFn)(Keystore *ks, Key *k, void *userdata);
static int key_mutate(Keystore *ks, const char *name, MutateFn fn, void *userdata, const Key **ret);

void keystore_set_change_callback(Keystore *ks, KeyChangeFn fn, void *userdata) {
        ks->on_change = fn;
        ks->on_change_userdata = userdata;
}

bool key_exists(const Key *k) {
        return k && !k->purging && k->n_versions > 0;
}

static void notify_change(Keystore *ks, const char *name, const Key *old, const Key *new) {
        /* A key being created or purged is no key to watchers either. */
        if (!key_exists(old))
                old = NULL;
        if (!key_exists(new))
                new = NULL;
        if (ks->on_change && key_index_differs(old, new))
                ks->on_change(name, old, new, ks->on_change_userdata);
}


/* The key of name in the index, or NULL: no lookup counted, no reload. */
static Key *index_get(Keystore *ks, const char *name) {
        return key_index_get(&ks->index, name);
}

uint64_t key_max_wraps(const Key *k) {
        return k->policy.max_wraps ? k->policy.max_wraps : WRAP_BUDGET_DEFAULT;
}

static uint64_t lease_size(const Key *k) {
        return MIN((uint64_t) LEASE_MAX, MAX((uint64_t) 1, key_max_wraps(k) / 16));
}

/* Puts a freshly written key into the index in place of its old entry; takes ownership. */
static Key *index_put(Keystore *ks, Key *k) {
        const Key *old = index_get(ks, k->name);

        key_index_carry_runtime(k, old);
        notify_change(ks, k->name, old, k);
        for (size_t i = 0; i < k->n_versions; i++) {
                const KeyVersion *ov = old ? key_find_version(old, k->versions[i].id) : NULL;

                /* Handles of this session stay valid; new versions are looked up. */
                if (ov && ov->present && hsm_generation(ks->hsm) == ks->generation) {
                        k->versions[i].handle = ov->handle;
                        k->versions[i].present = true;
                        k->versions[i].mac_handle = ov->mac_handle;
                        k->versions[i].mac_present = ov->mac_present;
                } else {
                        int r = hsm_find_version_key(ks->hsm, k->name, k->versions[i].id, k->versions[i].restored,
                                                     &k->versions[i].handle);

                        k->versions[i].present = r >= 0;
                        k->versions[i].ambiguous = r == -ENOTUNIQ;
                }
        }
        ks->epoch++;
        if (key_index_put(&ks->index, k) < 0)
                return NULL;
        return k;
}

static void index_remove(Keystore *ks, const char *name) {
        const Key *old = index_get(ks, name);

        if (!old)
                return;
        notify_change(ks, name, old, NULL);
        ks->epoch++;
        key_index_remove(&ks->index, name);
}

#define MUTATE_ATTEMPTS 4

/*
 * Fresh read, change, write, index. fn returns <0 to refuse, 0 to write; it
 * may run more than once (when another kekd wrote concurrently), each time on
 * the freshest record, so it must derive everything from that record. A key
 * that is not fully created is UNKNOWN_KEY, unless half_made: only the
 * rollback of its creation may change it.
 */
static int mutate(Keystore *ks, const char *name, MutateFn fn, void *userdata, bool half_made, const Key **ret) {
        _cleanup_(key_freep) Key *k = NULL;
        Key *put;
        int r = -EAGAIN;

        if (!key_name_valid(name))
                return -KEKERR_UNKNOWN_KEY;
        for (unsigned attempt = 0; attempt < MUTATE_ATTEMPTS && r == -EAGAIN; attempt++) {
                _cleanup_free_ HsmObject *old = NULL;
                size_t n_old = 0;
                uint64_t old_gen;

                if (attempt > 0) {
                        uint8_t jitter = 0;

                        /* Two writers that both yielded must not collide again in lockstep. */
                        (void) RAND_bytes(&jitter, 1);
                        (void) usleep(1000 + (useconds_t) jitter * 40);
                }
                k = key_free(k);
                r = records_fetch(ks->hsm, name, &k, &old, &n_old);
                if (r < 0)
                        return r;
                old_gen = hsm_generation(ks->hsm);
                /* Being purged: as good as gone. Being created: not there yet. */
                if (k->purging || (!key_exists(k) && !half_made))
                        return -KEKERR_UNKNOWN_KEY;
                r = fn(ks, k, userdata);
                if (r < 0)
                        return r;
                r = records_write(ks->hsm, k, old, n_old, old_gen, &ks->reload_needed);
        }
        if (r == -EAGAIN)
                return -KEKERR_CONFLICT;
        if (r < 0)
                return r;
        put = index_put(ks, TAKE_PTR(k));
        if (!put)
                return -ENOMEM;
        if (ret)
                *ret = put;
        return 0;
}

static int key_mutate(Keystore *ks, const char *name, MutateFn fn, void *userdata, const Key **ret) {
        return mutate(ks, name, fn, userdata, false, ret);
}

int keystore_new(Hsm *hsm, const char *owner, Keystore **ret) {
        _cleanup_(keystore_freep) Keystore *ks = NULL;
        int r;

        ks = calloc(1, sizeof(*ks));
        if (!ks)
                return -ENOMEM;
        ks->hsm = hsm;
        ks->profile = PROFILE_CHOICE_AUTO; /* until keystore_set_profile() */
        snprintf(ks->owner, sizeof(ks->owner), "%s", owner);
        r = keystore_load(ks);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(ks);
        return 0;
}

Keystore *keystore_free(Keystore *ks) {
        if (!ks)
                return NULL;
        key_index_clear(&ks->index);
        free(ks->dup_names);
        free(ks);
        return NULL;
}

void keystore_set_allow_unrecoverable(Keystore *ks, bool allow) {
        ks->allow_unrecoverable = allow;
}

bool keystore_allow_unrecoverable(const Keystore *ks) {
        return ks->allow_unrecoverable;
}

void keystore_set_profile(Keystore *ks, int profile) {
        ks->profile = PROFILE_CHOICE_AUTO;
        ks->profile.pin = profile;
}

int keystore_profile(const Keystore *ks) {
        return ks->profile.pin;
}

/*
 * Reading the token into the index. A reading is taken on the keystore's
 * session (keystore_load()) or on another thread's session
 * (keystore_read_*(), the periodic refresh). Invariant: a reading becomes
 * the index only if nothing that could make it wrong happened since it
 * began: no write of this process (a disable would be undone), no session
 * reopened (its handles), no doubt about a write's outcome, and no newer
 * reading already in place (another node's change would be undone).
 */
struct KeystoreRead {
        KeyIndexReading reading;
        uint64_t generation;          /* hsm_generation() before the reading: its handles' */
        uint64_t writes;              /* hsm_writes() before the reading */
        uint64_t started_mono_usec;
        bool reload_needed;           /* ks->reload_needed before the reading */
};

static void read_begin(Keystore *ks, KeystoreRead *rd) {
        *rd = (KeystoreRead) {
                .generation = hsm_generation(ks->hsm),
                .writes = hsm_writes(ks->hsm),
                .started_mono_usec = clock_mono_usec(),
                .reload_needed = ks->reload_needed,
        };
}

/* The reading becomes the index, this kekd's runtime state carried over; on failure the previous index stays. */
static int index_apply(Keystore *ks, KeystoreRead *rd) {
        KeyIndex ix;
        KeyName *dups;
        const HsmDataObject *vault;
        size_t n_dups, n_vault;
        int r;

        r = key_index_build(&rd->reading, &ix, &dups, &n_dups, &vault, &n_vault);
        if (r < 0)
                return r;
        for (size_t i = 0; i < ix.n; i++)
                key_index_carry_runtime(ix.keys[i], index_get(ks, ix.keys[i]->name));
        r = vault_apply(&ks->vault, vault, n_vault);
        if (r < 0) {
                key_index_clear(&ix);
                free(dups);
                return r;
        }
        /* Changes made through other kekd instances, as this refresh finds them. */
        if (ks->on_change) {
                for (size_t i = 0; i < ix.n; i++)
                        notify_change(ks, ix.keys[i]->name, index_get(ks, ix.keys[i]->name), ix.keys[i]);
                for (size_t i = 0; i < ks->index.n; i++)
                        if (!key_index_get(&ix, ks->index.keys[i]->name))
                                notify_change(ks, ks->index.keys[i]->name, ks->index.keys[i], NULL);
        }

        if (ks->last_load_mono_usec != 0 && rd->generation != ks->generation)
                log_notice("The HSM session was lost and reopened; the key index was read again");
        key_index_clear(&ks->index);
        ks->epoch++;
        ks->index = ix;
        free(ks->dup_names);
        ks->dup_names = dups;
        ks->n_dup_names = n_dups;
        ks->generation = rd->generation;
        ks->last_load_mono_usec = clock_mono_usec();
        ks->index_read_mono_usec = rd->started_mono_usec;
        ks->reload_needed = false;
        return 0;
}

static int load_index(Keystore *ks) {
        KeystoreRead rd;
        int r;

        read_begin(ks, &rd);
        r = key_index_read(&rd.reading, ks->hsm);
        if (r >= 0)
                r = index_apply(ks, &rd);
        key_index_reading_clear(&rd.reading);
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
        r = key_index_read(&rd->reading, h);

        /* h lost its session during the reading: what was listed before may name other objects. */
        if (r >= 0 && hsm_generation(h) != gen) {
                key_index_reading_clear(&rd->reading);
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
                key_index_reading_clear(&rd->reading);
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

/*
 * Reloads when the HSM session was reopened since the index was built (handles may be stale). The
 * data plane finds its handles again where it runs (keystore-data.c), so while the token is down, or
 * when this re-read meets it down, the last index keeps serving (docs/tokens-ha.md, failover).
 */
static int keystore_sync(Keystore *ks) {
        int r;

        if ((hsm_generation(ks->hsm) == ks->generation && !ks->reload_needed) || ks->token_down)
                return 0;
        r = keystore_load(ks);
        return r == -KEKERR_HSM_UNAVAILABLE && ks->last_load_mono_usec != 0 ? 0 : r;
}

void keystore_set_token_down(Keystore *ks, bool down) {
        ks->token_down = down;
}

Hsm *keystore_hsm(const Keystore *ks) {
        return ks->hsm;
}

size_t keystore_n_keys(const Keystore *ks) {
        return ks->index.n;
}

const Key *keystore_key_at(const Keystore *ks, size_t i) {
        return i < ks->index.n ? ks->index.keys[i] : NULL;
}

const VaultPolicy *keystore_vault(const Keystore *ks) {
        return &ks->vault.policy;
}

bool keystore_recoverable(const Keystore *ks) {
        return ks->vault.policy.purge_protection;
}

static int find_mutable(Keystore *ks, const char *name, Key **ret) {
        Key *k;
        int r;

        ks->lookups++;
        if (!key_name_valid(name))
                return -KEKERR_UNKNOWN_KEY;
        r = keystore_sync(ks);
        if (r < 0)
                return r;
        k = index_get(ks, name);
        if (!k && clock_mono_usec() - ks->last_load_mono_usec >= MISS_RELOAD_INTERVAL_USEC) {
                /* Maybe created through another kekd since our last refresh: not known while the token is down. */
                r = ks->token_down ? -KEKERR_HSM_UNAVAILABLE : keystore_load(ks);
                if (r < 0)
                        return r;
                k = index_get(ks, name);
        }
        if (!key_exists(k))
                return -KEKERR_UNKNOWN_KEY;
        *ret = k;
        return 0;
}

void keystore_count(const Keystore *ks, size_t *ret_keys, size_t *ret_versions) {
        size_t keys = 0, versions = 0;

        for (size_t i = 0; i < ks->index.n; i++) {
                if (!key_exists(ks->index.keys[i]))
                        continue; /* being created or purged */
                keys++;
                versions += ks->index.keys[i]->n_versions;
        }
        *ret_keys = keys;
        *ret_versions = versions;
}

int keystore_find(Keystore *ks, const char *name, const Key **ret) {
        Key *k;
        int r = find_mutable(ks, name, &k);

        if (r >= 0)
                *ret = k;
        return r;
}

int keystore_lookup(Keystore *ks, const char *name, KeyLookup *ret) {
        Key *k;
        int r = find_mutable(ks, name, &k);

        if (r >= 0)
                *ret = (KeyLookup) { .key = k, .epoch = ks->epoch };
        return r;
}

uint64_t keystore_lookups(const Keystore *ks) {
        return ks->lookups;
}

int keystore_refind(Keystore *ks, const KeyLookup *found, const char *name, const Key **ret) {
        Key *k;
        int r = keystore_key(ks, found, name, &k);

        if (r >= 0)
                *ret = k;
        return r;
}

uint64_t keystore_index_read_usec(const Keystore *ks) {
        return ks->index_read_mono_usec;
}

uint64_t keystore_generation(const Keystore *ks) {
        return ks->generation;
}

Key *keystore_key_runtime(Keystore *ks, const char *name) {
        return index_get(ks, name);
}

/*
 * What find_mutable() would answer, without looking again when found is
 * from this index: the same epoch (no Key replaced or freed since) and no
 * reason to re-read the token (a session reopened, a write in doubt).
 */
int keystore_key(Keystore *ks, const KeyLookup *found, const char *name, Key **ret) {
        if (found && found->key && found->epoch == ks->epoch && hsm_generation(ks->hsm) == ks->generation &&
            !ks->reload_needed && strcmp(found->key->name, name) == 0) {
                *ret = (Key *) found->key; /* the index's own, found for this request */
                return 0;
        }
        return find_mutable(ks, name, ret);
}

static bool policy_valid(const RotationPolicy *p) {
        return !p || (p->rotate_after_sec <= 100ULL * 365 * 86400 && p->max_wraps <= WRAP_BUDGET_MAX);
}

/* --- lifecycle ----------------------------------------------------------------- */


/* An intent as a record holds it: which version, since when, whose. */
typedef struct Intent {
        char name[KEY_NAME_MAX + 1];
        uint32_t version;
        uint64_t since_usec;
        char owner[OWNER_MAX];
} Intent;

/* 1 rolled back, 0 nothing to do (the token's record no longer holds that intent), <0 error. */
static int intent_rollback(Keystore *ks, const Intent *in);
static int repair_pending(Keystore *ks, const Key *k);

/*
 * A create that failed once its intent may be in the token: rolled back
 * before it answers, so the name is free again at once. Only while the
 * name's records are all our intent's (writer): another record means another
 * kekd's create or our commit, whose version-1 object must not be destroyed
 * here. What cannot be rolled back now stays for repair; until then the key
 * does not exist for any request (key_exists()). Returns err.
 */
static int create_rollback(Keystore *ks, const Intent *in, uint64_t writer, int err) {
        HsmObject mine;
        uint64_t mine_gen;
        int r;

        r = records_contested(ks->hsm, in->name, writer, 0, &mine, &mine_gen);
        if (r > 0) {
                log_debug("Not rolling back the failed creation of key '%s': the token holds another record of it",
                          in->name);
                return err;
        }
        if (r == 0)
                r = intent_rollback(ks, in);
        if (r < 0)
                log_debug("Cannot roll back the failed creation of key '%s' now (%s); repair will",
                          in->name, error_text(r));
        return err;
}

int keystore_create(Keystore *ks, const char *name, const RotationPolicy *policy, uint64_t now, const Key **ret) {
        _cleanup_(key_freep) Key *k = NULL;
        _cleanup_free_ uint8_t *buf = NULL;
        Key *existing = NULL;
        HsmObject obj, mac;
        HsmProfile profile;
        Intent in = { .version = 1, .since_usec = now };
        uint64_t writer, intent_gen = 0;
        size_t len;
        int r;

        if (!key_name_valid(name) || !policy_valid(policy))
                return -KEKERR_INVALID_ARGUMENT;
        /* A deleted key keeps its name until it is purged, as in the cloud service. */
        r = records_fetch(ks->hsm, name, &existing, NULL, NULL);
        if (r >= 0 && !existing->purging && !key_exists(existing)) {
                /* A creation that failed and could not be rolled back then: finish that first. */
                if (keystore_intent_stale(ks, existing, now))
                        r = repair_pending(ks, existing);
                else
                        r = -KEKERR_CONFLICT; /* another kekd is creating it right now */
                existing = key_free(existing);
                if (r < 0)
                        return r;
                if (r == 0)
                        return -KEKERR_CONFLICT;
                r = records_fetch(ks->hsm, name, &existing, NULL, NULL);
        }
        key_free(existing);
        if (r >= 0)
                return -KEKERR_KEY_EXISTS;
        if (r != -KEKERR_UNKNOWN_KEY)
                return r;

        k = calloc(1, sizeof(*k));
        if (!k || !(k->versions = calloc(1, sizeof(KeyVersion))))
                return -ENOMEM;
        strcpy(k->name, name);
        k->created_usec = now;
        k->state = k->state_before_delete = KEY_ENABLED;
        if (policy)
                k->policy = *policy;
        /* Intent first: a record with no version and a pending one says "being created". */
        k->pending_version = 1;
        k->pending_since_usec = now;
        snprintf(k->pending_owner, sizeof(k->pending_owner), "%s", ks->owner);
        k->writer = writer = records_writer_nonce();
        strcpy(in.name, name);
        strcpy(in.owner, k->pending_owner);
        r = key_to_record(k, &buf, &len);
        if (r < 0)
                return r;
        r = hsm_create_data(ks->hsm, RECORDS_APP, name, buf, len, &k->meta_handle);
        if (r < 0) {
                ks->reload_needed = true; /* the intent may exist all the same (a lost reply) */
                return create_rollback(ks, &in, writer, r);
        }
        /* Another kekd creating the same name at the same moment: both back off rather than make two KEKs. */
        r = records_contested(ks->hsm, name, k->writer, 0, &k->meta_handle, &intent_gen);
        if (r > 0) {
                if (k->meta_handle)
                        (void) hsm_destroy_listed(ks->hsm, k->meta_handle, intent_gen);
                return -KEKERR_CONFLICT;
        }
        if (r < 0)
                return create_rollback(ks, &in, writer, r);
        if (!k->meta_handle)
                return create_rollback(ks, &in, writer, -KEKERR_HSM_UNAVAILABLE);

        /* A version-1 object without a record can only be an orphan of an earlier failed attempt. */
        r = records_destroy_version(ks->hsm, name, 1);
        if (r < 0)
                return create_rollback(ks, &in, writer, r);
        r = profile_version_generate(&ks->profile, ks->hsm, name, 1, ks->vault.policy.trusted_wrap, &profile, &obj, &mac);
        if (r < 0)
                return create_rollback(ks, &in, writer, r); /* the object may exist all the same (a lost reply) */
        k->versions[0] = (KeyVersion) { .id = 1, .created_usec = now, .enabled = true, .profile = profile, .present = true,
                                        .handle = obj, .mac_present = mac != 0, .mac_handle = mac,
                                        .wrap_with_trusted = ks->vault.policy.trusted_wrap };
        k->n_versions = 1;
        k->current_version = 1;
        k->pending_version = 0;
        k->pending_since_usec = 0;
        k->pending_owner[0] = 0;
        {
                HsmObject old = k->meta_handle;

                r = records_write(ks->hsm, k, &old, 1, intent_gen, &ks->reload_needed);
        }
        if (r < 0) {
                /*
                 * The commit may have happened all the same (a lost reply): only a fresh read
                 * tells. If it did not, the object and the intent go.
                 */
                Key *fresh = NULL;

                if (records_fetch(ks->hsm, name, &fresh, NULL, NULL) >= 0 && key_find_version(fresh, 1) && !fresh->pending_version) {
                        if (!(*ret = index_put(ks, fresh)))
                                return -ENOMEM;
                        return 0;
                }
                key_free(fresh);
                return create_rollback(ks, &in, writer, r == -EAGAIN ? -KEKERR_CONFLICT : r);
        }
        if (!(*ret = index_put(ks, TAKE_PTR(k))))
                return -ENOMEM;
        return 0;
}

bool keystore_intent_stale(const Keystore *ks, const Key *k, uint64_t now) {
        char host[OWNER_MAX];
        const char *colon;
        long pid;

        if (!k->pending_version)
                return false;
        /* We are single-threaded: an intent of ours seen here belongs to an operation that failed. */
        if (strcmp(k->pending_owner, ks->owner) == 0)
                return true;
        colon = strrchr(k->pending_owner, ':');
        if (colon && gethostname(host, sizeof(host)) == 0 && strlen(host) == (size_t) (colon - k->pending_owner) &&
            strncmp(host, k->pending_owner, strlen(host)) == 0) {
                pid = strtol(colon + 1, NULL, 10);
                if (pid > 0 && kill((pid_t) pid, 0) < 0 && errno == ESRCH)
                        return true; /* a kekd of this host that is gone */
        }
        return now > k->pending_since_usec && now - k->pending_since_usec > PENDING_STALE_USEC;
}

typedef struct RotateIntent {
        const Keystore *ks;
        uint64_t now;
        uint32_t version;
        HsmProfile profile;        /* of the new version, once its objects exist */
        bool wrap_trusted;         /* its keys are wrappable under SO-trusted keys only (backup mode trusted-wrap) */
} RotateIntent;

static int rotate_begin(Keystore *ks, Key *k, void *userdata) {
        RotateIntent *ri = userdata;

        if (k->state == KEY_DELETED)
                return -KEKERR_KEY_DELETED;
        /*
         * Any intent still here is another operation's, live or not rolled back yet: never
         * overwrite it, or the object it may have made would be orphaned (keystore_rotate()
         * rolls back a stale one first).
         */
        if (k->pending_version)
                return -KEKERR_CONFLICT;
        ri->version = k->n_versions ? k->versions[k->n_versions - 1].id + 1 : 1;
        if (k->pending_version >= ri->version)
                ri->version = k->pending_version + 1; /* never reuse an id an interrupted rotation may have left */
        if (ri->version == 0)
                return -KEKERR_INVALID_ARGUMENT;
        k->pending_version = ri->version;
        k->pending_since_usec = ri->now;
        snprintf(k->pending_owner, sizeof(k->pending_owner), "%s", ks->owner);
        return 0;
}

static int rotate_commit(Keystore *ks, Key *k, void *userdata) {
        RotateIntent *ri = userdata;
        KeyVersion *vs;

        if (k->pending_version != ri->version || strcmp(k->pending_owner, ks->owner) != 0)
                return -KEKERR_CONFLICT; /* rolled back by a repair meanwhile */
        vs = reallocarray(k->versions, k->n_versions + 1, sizeof(*vs));
        if (!vs)
                return -ENOMEM;
        k->versions = vs;
        k->versions[k->n_versions++] = (KeyVersion) { .id = ri->version, .created_usec = ri->now, .enabled = true,
                                                      .profile = ri->profile, .wrap_with_trusted = ri->wrap_trusted };
        k->current_version = ri->version;
        k->pending_version = 0;
        k->pending_since_usec = 0;
        k->pending_owner[0] = 0;
        return 0;
}

static int pending_clear(Keystore *ks, Key *k, void *userdata) {
        uint32_t *version = userdata;

        if (k->pending_version != *version)
                return -ESTALE;
        k->pending_version = 0;
        k->pending_since_usec = 0;
        k->pending_owner[0] = 0;
        return 0;
}

int keystore_rotate(Keystore *ks, const char *name, uint64_t now, const Key **ret) {
        RotateIntent ri = { .ks = ks, .now = now, .wrap_trusted = ks->vault.policy.trusted_wrap };
        HsmObject obj, mac;
        int r;

        {
                /*
                 * An interrupted change left its intent: finish its rollback before starting ours.
                 * The index knows our own (it is re-read after any write of unknown outcome); one
                 * it does not know makes rotate_begin() refuse, never overwrite.
                 */
                Key *cur;

                r = find_mutable(ks, name, &cur);
                if (r < 0)
                        return r;
                if (cur->pending_version && keystore_intent_stale(ks, cur, now)) {
                        r = repair_pending(ks, cur);
                        if (r < 0)
                                return r;
                }
        }

        r = key_mutate(ks, name, rotate_begin, &ri, NULL);
        if (r < 0)
                return r;
        /*
         * From here on the record holds our intent for ri.version. The intent is cleared only
         * once no object of that version is left, so an id is never used twice; whatever we
         * cannot confirm stays for repair to finish.
         */
        r = records_destroy_version(ks->hsm, name, ri.version);
        if (r >= 0)
                r = profile_version_generate(&ks->profile, ks->hsm, name, ri.version, ri.wrap_trusted, &ri.profile, &obj,
                                             &mac);
        if (r >= 0)
                r = key_mutate(ks, name, rotate_commit, &ri, ret);
        if (r >= 0)
                return 0;
        {
                /* The commit may have happened all the same (a lost reply): only a fresh read tells. */
                _cleanup_(key_freep) Key *fresh = NULL;
                int q = records_fetch(ks->hsm, name, &fresh, NULL, NULL);

                if (q >= 0 && key_find_version(fresh, ri.version) && fresh->pending_version != ri.version) {
                        const Key *put = index_put(ks, TAKE_PTR(fresh));

                        if (!put)
                                return -ENOMEM;
                        if (ret)
                                *ret = put;
                        return 0;
                }
                /* Not recorded: the object goes, and then our intent, if it is still there. */
                if (q >= 0 && !key_find_version(fresh, ri.version) && records_destroy_version(ks->hsm, name, ri.version) >= 0 &&
                    fresh->pending_version == ri.version)
                        (void) key_mutate(ks, name, pending_clear, &ri.version, NULL);
        }
        return r;
}

static int set_policy_fn(Keystore *ks, Key *k, void *userdata) {
        if (k->state == KEY_DELETED)
                return -KEKERR_KEY_DELETED;
        k->policy = *(const RotationPolicy *) userdata;
        return 0;
}

int keystore_set_policy(Keystore *ks, const char *name, const RotationPolicy *policy, const Key **ret) {
        if (!policy_valid(policy))
                return -KEKERR_INVALID_ARGUMENT;
        return key_mutate(ks, name, set_policy_fn, (void *) policy, ret);
}

typedef struct EnableArgs {
        uint32_t version;
        bool enabled;
} EnableArgs;

static int set_enabled_fn(Keystore *ks, Key *k, void *userdata) {
        const EnableArgs *a = userdata;
        KeyVersion *v;

        if (k->state == KEY_DELETED)
                return -KEKERR_KEY_DELETED;
        if (a->version == 0) {
                k->state = a->enabled ? KEY_ENABLED : KEY_DISABLED;
                return 0;
        }
        v = key_index_version(k, a->version);
        if (!v)
                return -KEKERR_UNKNOWN_VERSION;
        v->enabled = a->enabled;
        return 0;
}

int keystore_set_enabled(Keystore *ks, const char *name, uint32_t version, bool enabled, const Key **ret) {
        EnableArgs a = { version, enabled };

        return key_mutate(ks, name, set_enabled_fn, &a, ret);
}

typedef struct DeleteArgs {
        uint64_t now;
        uint32_t retention_days;
} DeleteArgs;

static int delete_fn(Keystore *ks, Key *k, void *userdata) {
        const DeleteArgs *a = userdata;

        if (k->state == KEY_DELETED)
                return -KEKERR_KEY_DELETED;
        k->state_before_delete = k->state;
        k->state = KEY_DELETED;
        k->deleted_usec = a->now;
        k->scheduled_purge_usec = a->now + (uint64_t) a->retention_days * USEC_PER_DAY;
        return 0;
}

int keystore_delete(Keystore *ks, const char *name, uint64_t now, const Key **ret) {
        DeleteArgs a = { .now = now };
        int r;

        r = vault_load(&ks->vault, ks->hsm); /* the retention in force now, not at our last refresh */
        if (r < 0)
                return r;
        a.retention_days = ks->vault.policy.retention_days;
        return key_mutate(ks, name, delete_fn, &a, ret);
}

static int recover_fn(Keystore *ks, Key *k, void *userdata) {
        if (k->state != KEY_DELETED)
                return -KEKERR_INVALID_ARGUMENT;
        k->state = k->state_before_delete == KEY_DISABLED ? KEY_DISABLED : KEY_ENABLED;
        k->deleted_usec = 0;
        k->scheduled_purge_usec = 0;
        return 0;
}

int keystore_recover(Keystore *ks, const char *name, const Key **ret) {
        return key_mutate(ks, name, recover_fn, NULL, ret);
}

typedef struct GrantChange {
        Grant grant;
        bool revoke;
} GrantChange;

static int set_grant_fn(Keystore *ks, Key *k, void *userdata) {
        const GrantChange *c = userdata;
        int r;

        if (k->purging)
                return -KEKERR_UNKNOWN_KEY;
        r = grants_apply(&k->grants, &k->n_grants, &c->grant, c->revoke);
        if (r == -EINVAL || r == -E2BIG || r == -ENOENT)
                return -KEKERR_INVALID_ARGUMENT;
        return r;
}

int keystore_set_grant(Keystore *ks, const char *name, const Grant *grant, bool revoke, const Key **ret) {
        GrantChange c = { *grant, revoke };

        return key_mutate(ks, name, set_grant_fn, &c, ret);
}

/* Destroys every object of a key whose record says purging, then its index entry; idempotent. */
static int purge_finish(Keystore *ks, const char *name) {
        int r = records_destroy_all(ks->hsm, name);

        if (r < 0)
                return r;
        index_remove(ks, name);
        return 0;
}

static int purge_begin(Keystore *ks, Key *k, void *userdata) {
        k->purging = true;
        return 0;
}


int keystore_purge(Keystore *ks, const char *name, uint64_t now) {
        _cleanup_(key_freep) Key *k = NULL;
        int r;

        if (!key_name_valid(name))
                return -KEKERR_UNKNOWN_KEY;
        r = records_fetch(ks->hsm, name, &k, NULL, NULL);
        if (r < 0)
                return r;
        if (!k->purging) {
                if (!key_exists(k))
                        return -KEKERR_UNKNOWN_KEY; /* being created: repair rolls a failed creation back */
                if (k->state != KEY_DELETED)
                        return -KEKERR_INVALID_ARGUMENT;
                r = vault_load(&ks->vault, ks->hsm);
                if (r < 0)
                        return r;
                if (ks->vault.policy.purge_protection && now < k->scheduled_purge_usec)
                        return -KEKERR_PURGE_PROTECTED;
                r = key_mutate(ks, name, purge_begin, NULL, NULL);
                if (r < 0)
                        return r;
        }
        return purge_finish(ks, name);
}

int keystore_set_vault(Keystore *ks, const VaultChange *c) {
        return vault_set(&ks->vault, ks->hsm, c);
}

/* --- maintenance and check ----------------------------------------------------- */

typedef struct UsageFlush {
        const Key *mine;   /* a snapshot of this kekd's runtime state of the key */
        bool settle;
} UsageFlush;

/*
 * Adds this kekd's unflushed usage to the freshest record; with settle, also
 * takes this kekd's unused lease off the version's wrap count. Reservations
 * in a record are the sum of every kekd's leases, so taking off our own
 * unused part leaves another kekd's reservation whole however the writes
 * interleave (key_mutate() re-applies this to the freshest record).
 */
static int usage_flush_fn(Keystore *ks, Key *k, void *userdata) {
        const UsageFlush *a = userdata;

        for (size_t i = 0; i < k->n_versions; i++) {
                KeyVersion *v = &k->versions[i];
                const KeyVersion *m = key_find_version(a->mine, v->id);

                if (!m)
                        continue;
                v->unwraps += m->unwraps_pending;
                v->last_use_usec = MAX(v->last_use_usec, m->last_use_pending);
                if (a->settle)
                        v->wraps_reserved -= MIN(v->wraps_reserved, m->lease_left);
        }
        return 0;
}

static bool usage_pending(const Key *k) {
        for (size_t i = 0; i < k->n_versions; i++)
                if (k->versions[i].unwraps_pending > 0 || k->versions[i].last_use_pending > k->versions[i].last_use_usec)
                        return true;
        return false;
}

static bool lease_pending(const Key *k) {
        for (size_t i = 0; i < k->n_versions; i++)
                if (k->versions[i].lease_left > 0)
                        return true;
        return false;
}

/*
 * Writes this kekd's unwrap counts and last-use times of one key into its
 * record; with settle (at shutdown, after the last wrap) also gives back the
 * unused part of its leases. Not retried when the write's outcome is unknown:
 * it may have been applied, and applying it twice would under-count.
 */
static int usage_flush(Keystore *ks, const char *name, bool settle) {
        _cleanup_(key_freep) Key *mine = NULL;
        Key *cur = index_get(ks, name), *k;
        UsageFlush a = { .settle = settle };
        int r;

        if (!cur)
                return 0;
        /* Snapshot what we flush: the index entry is replaced by key_mutate(). */
        mine = calloc(1, sizeof(*mine));
        if (!mine || !(mine->versions = calloc(cur->n_versions ? cur->n_versions : 1, sizeof(KeyVersion))))
                return -ENOMEM;
        memcpy(mine->versions, cur->versions, cur->n_versions * sizeof(KeyVersion));
        mine->n_versions = cur->n_versions;
        a.mine = mine;
        r = key_mutate(ks, name, usage_flush_fn, &a, NULL);
        if (r < 0)
                return r;
        k = index_get(ks, name);
        for (size_t i = 0; k && i < k->n_versions; i++) {
                const KeyVersion *m = key_find_version(mine, k->versions[i].id);

                if (m) {
                        k->versions[i].unwraps_pending -= MIN(k->versions[i].unwraps_pending, m->unwraps_pending);
                        if (k->versions[i].last_use_pending <= m->last_use_pending)
                                k->versions[i].last_use_pending = 0;
                        if (settle)
                                k->versions[i].lease_left -= MIN(k->versions[i].lease_left, m->lease_left);
                }
        }
        return 0;
}


/*
 * A copy of the names in the index, for loops whose steps replace or remove
 * index entries (repair, maintenance, usage flushes): they look each key up
 * again by name instead of holding pointers into the index.
 */

/* Rolls back an intent: the pending object (never used) goes, then the intent. */
static int intent_rollback(Keystore *ks, const Intent *in) {
        uint32_t version = in->version;
        bool same, created;
        Key *cur = NULL;
        int r;

        /*
         * The index may come from a reading that began seconds ago (the refresh reads on its
         * own thread): the intent's owner may have committed the version since. Destroy only
         * what the token's record still names as the same intent.
         */
        r = records_fetch(ks->hsm, in->name, &cur, NULL, NULL);
        if (r == -KEKERR_UNKNOWN_KEY)
                return 0;
        if (r < 0)
                return r;
        same = cur->pending_version == version && cur->pending_since_usec == in->since_usec &&
               strcmp(cur->pending_owner, in->owner) == 0;
        created = cur->n_versions == 0;
        key_free(cur);
        if (!same) {
                ks->reload_needed = true; /* the index is behind the token */
                return 0;
        }
        r = records_destroy_version(ks->hsm, in->name, version);
        if (r < 0)
                return r;
        if (created) {
                /* An interrupted create: nothing was ever served, the whole key goes. */
                r = mutate(ks, in->name, purge_begin, NULL, true, NULL);
                if (r < 0)
                        return r;
                r = purge_finish(ks, in->name);
                return r < 0 ? r : 1;
        }
        r = key_mutate(ks, in->name, pending_clear, &version, NULL);
        return r < 0 ? r : 1;
}

/* Rolls back a stale intent the index holds (repair). */
static int repair_pending(Keystore *ks, const Key *k) {
        Intent in = { .version = k->pending_version, .since_usec = k->pending_since_usec };

        snprintf(in.name, sizeof(in.name), "%s", k->name);
        snprintf(in.owner, sizeof(in.owner), "%s", k->pending_owner);
        return intent_rollback(ks, &in);
}


/*
 * Repairs what the token needs; returns the number of repairs. Reads the
 * token unless the index is younger than max_age_usec (at start-up it was
 * just loaded): that one load also names the keys with duplicate records.
 */
static int repair(Keystore *ks, uint64_t now, uint64_t max_age_usec) {
        _cleanup_free_ KeyName *names = NULL, *dups = NULL;
        size_t n_names, n_dups;
        int repaired = 0, r;

        r = keystore_refresh(ks, max_age_usec);
        if (r < 0)
                return r;
        /* Names with more than one record object: a copy, the reload below replaces the list. */
        n_dups = ks->n_dup_names;
        dups = calloc(n_dups ? n_dups : 1, sizeof(*dups));
        if (!dups)
                return -ENOMEM;
        if (n_dups > 0)
                memcpy(dups, ks->dup_names, n_dups * sizeof(*dups));
        for (size_t i = 0; i < n_dups; i++)
                if (records_drop_superseded(ks->hsm, dups[i]) > 0)
                        repaired++;
        if (repaired > 0) {
                r = keystore_load(ks);
                if (r < 0)
                        return r;
        }
        r = key_index_names(&ks->index, &names, &n_names);
        if (r < 0)
                return r;
        for (size_t i = 0; i < n_names; i++) {
                Key *k = index_get(ks, names[i]);

                if (!k)
                        continue;
                if (k->purging) {
                        r = purge_finish(ks, names[i]);
                        if (r < 0)
                                log_warning_errno(r, "Cannot finish the purge of key '%s'", names[i]);
                        else {
                                log_notice("Finished the interrupted purge of key '%s'", names[i]);
                                repaired++;
                        }
                } else if (keystore_intent_stale(ks, k, now)) {
                        uint32_t version = k->pending_version;

                        r = repair_pending(ks, k);
                        if (r < 0)
                                log_warning_errno(r, "Cannot roll back the interrupted change of key '%s'", names[i]);
                        else if (r > 0) {
                                log_notice("Rolled back an interrupted change of key '%s': version %u was never recorded", names[i], version);
                                repaired++;
                        }
                }
        }
        return repaired;
}

int keystore_settle(Keystore *ks) {
        _cleanup_free_ KeyName *names = NULL;
        size_t n_names;
        int ret = 0;

        ret = key_index_names(&ks->index, &names, &n_names);
        if (ret < 0)
                return ret;
        for (size_t i = 0; i < n_names; i++) {
                Key *k = index_get(ks, names[i]);
                int r;

                if (!k || (!usage_pending(k) && !lease_pending(k)))
                        continue;
                r = usage_flush(ks, names[i], true);
                if (r < 0 && ret >= 0)
                        ret = r;
        }
        return ret;
}

int keystore_maintain(Keystore *ks, uint64_t now) {
        _cleanup_free_ KeyName *names = NULL;
        bool flush_usage = clock_mono_usec() - ks->last_usage_flush_mono_usec >= USAGE_FLUSH_INTERVAL_USEC;
        size_t n_names;
        int changes, r;

        if (ks->token_down)
                return -KEKERR_HSM_UNAVAILABLE; /* it writes the token: after the token is back */
        changes = repair(ks, now, REPAIR_FRESH_USEC);
        if (changes < 0)
                return changes;
        r = key_index_names(&ks->index, &names, &n_names);
        if (r < 0)
                return r;

        for (size_t i = 0; i < n_names; i++) {
                Key *k = index_get(ks, names[i]);
                const KeyVersion *cur;

                if (!k)
                        continue;
                if (k->state == KEY_DELETED && k->scheduled_purge_usec <= now) {
                        r = keystore_purge(ks, names[i], now);
                        if (r < 0)
                                log_warning_errno(r, "Cannot purge key '%s' past its purge date", names[i]);
                        else {
                                log_notice("Purged key '%s': deleted and past its scheduled purge date", names[i]);
                                changes++;
                        }
                        continue;
                }
                cur = key_find_version(k, k->current_version);
                if (k->state == KEY_ENABLED && cur && !k->pending_version) {
                        const char *why = NULL;

                        if (k->policy.rotate_after_sec &&
                            now >= cur->created_usec + k->policy.rotate_after_sec * USEC_PER_SEC)
                                why = "age";
                        else if (key_max_wraps(k) - MIN(key_max_wraps(k), cur->wraps_reserved) < lease_size(k))
                                why = "wrap budget";
                        if (why) {
                                r = keystore_rotate(ks, names[i], now, NULL);
                                if (r < 0)
                                        log_warning_errno(r, "Cannot rotate key '%s' (%s policy)", names[i], why);
                                else {
                                        log_notice("Rotated key '%s' by its %s policy", names[i], why);
                                        changes++;
                                }
                        }
                }
                k = index_get(ks, names[i]);
                if (k && usage_pending(k) && flush_usage) {
                        r = usage_flush(ks, names[i], false);
                        if (r < 0)
                                log_debug("Cannot record usage of key '%s': %s", names[i], error_text(r));
                }
        }
        if (flush_usage)
                ks->last_usage_flush_mono_usec = clock_mono_usec();
        return changes;
}

int keystore_repair(Keystore *ks, uint64_t now) {
        return repair(ks, now, 0);
}

typedef struct LeaseArgs {
        uint32_t version;
        uint64_t granted;
} LeaseArgs;

static int lease_fn(Keystore *ks, Key *k, void *userdata) {
        LeaseArgs *a = userdata;
        KeyVersion *v = key_index_version(k, a->version);
        uint64_t max = key_max_wraps(k);

        if (!v)
                return -KEKERR_UNKNOWN_VERSION;
        if (v->wraps_reserved >= max)
                return -ENOSPC;
        a->granted = MIN(lease_size(k), max - v->wraps_reserved);
        v->wraps_reserved += a->granted;
        return 0;
}

/* Makes sure this kekd may do one more wrap with (name, version); -ENOSPC when the budget is spent. */
static int lease_take(Keystore *ks, const char *name, uint32_t version) {
        LeaseArgs a = { .version = version };
        const Key *k;
        KeyVersion *v;
        int r;

        r = key_mutate(ks, name, lease_fn, &a, &k);
        if (r < 0)
                return r;
        v = key_index_version((Key *) k, version);
        if (!v)
                return -KEKERR_UNKNOWN_VERSION;
        v->lease_left += a.granted;
        return 0;
}


/*
 * The renewal step of a wrap, on its own (it writes the token): the version
 * wrapped under (0: the current one) gets a new lease of wrap budget, or, when
 * the current version has spent its budget before the timer rotated it, the
 * key is rotated. -ENOSPC for a pinned version past its budget.
 */
int keystore_wrap_renew(Keystore *ks, const char *name, uint32_t version, uint64_t now) {
        const Key *k;
        uint32_t id;
        int r;

        r = ks->token_down ? -KEKERR_HSM_UNAVAILABLE : keystore_find(ks, name, &k); /* writes need the token */
        if (r < 0)
                return r;
        id = version == 0 ? k->current_version : version;
        r = lease_take(ks, name, id);
        if (r != -ENOSPC)
                return r;
        if (version != 0)
                return -ENOSPC; /* a pinned version past its budget: the caller must follow the current one */
        log_info("Key '%s' version %u used its wrap budget; rotating", name, id);
        return keystore_rotate(ks, name, now, NULL);
}
