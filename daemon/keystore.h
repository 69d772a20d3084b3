/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The keystore: kekd's in-memory index of the keys held in the token, their
 * lifecycle, and the wrap/unwrap operations on them. The token is the
 * database (DESIGN.md): each key has a CKO_DATA metadata record (a
 * Kek__KeyRecord) and one AES secret key object per version (CKA_LABEL = key
 * name, CKA_ID = version); the vault policy is one more record. The index is
 * rebuilt from the token at start, every refresh interval and whenever the
 * HSM session had to be reopened, so changes made through another kekd on
 * the same token are honoured within that interval.
 *
 * Consistency invariants, whatever point a kekd dies at:
 *  - Records are never modified in place: a change writes generation N+1 as a
 *    new object and then destroys N. Readers take the highest readable
 *    generation, so a torn or missing write loses at most that change.
 *  - Adding a version writes the intent (pending_version) first, then
 *    generates the object, then records the version. Purging writes
 *    "purging" first, then destroys objects, then the record. Repair (at
 *    start and periodically) rolls back stale intents and finishes purges, so
 *    no version named by a record is ever missing and no object of ours is
 *    left without a record.
 *  - Wrap budgets are leases recorded before use: a crash over-counts.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/secret.h"
#include "pkcs11/hsm.h"
#include "proto/blob.h"

#define WRAP_BUDGET_DEFAULT (1ULL << 30)     /* far below the 2^32 random-IV bound of AES-GCM */
#define WRAP_BUDGET_MAX (1ULL << 32)         /* NIST SP 800-38D: at most 2^32 invocations with random IVs */
#define RETENTION_DAYS_MIN 7u
#define RETENTION_DAYS_MAX 90u
#define RETENTION_DAYS_DEFAULT 90u
#define OWNER_MAX 80u

typedef enum KeyStateValue {
        KEY_ENABLED = 1,
        KEY_DISABLED = 2,
        KEY_DELETED = 3,
} KeyStateValue;

typedef struct RotationPolicy {
        uint64_t rotate_after_sec;  /* 0: never by age */
        uint64_t max_wraps;         /* 0: WRAP_BUDGET_DEFAULT */
} RotationPolicy;

typedef struct VaultPolicy {
        uint32_t retention_days;
        bool purge_protection;
} VaultPolicy;

typedef struct KeyVersion {
        uint32_t id;
        uint64_t created_usec;
        bool enabled;
        bool present;              /* the key object exists in the token */
        HsmObject handle;
        /* usage as recorded in the token */
        uint64_t wraps_reserved;
        uint64_t unwraps;
        uint64_t last_use_usec;
        /* this kekd's share, not yet in the token */
        uint64_t lease_left;       /* reserved wraps not used yet */
        uint64_t unwraps_pending;
        uint64_t last_use_pending;
} KeyVersion;

typedef struct Key {
        char name[KEY_NAME_MAX + 1];
        uint64_t created_usec;
        uint32_t current_version;  /* 0 while the first version is being created */
        KeyStateValue state;
        KeyStateValue state_before_delete;
        KeyVersion *versions;      /* sorted by id */
        size_t n_versions;
        RotationPolicy policy;
        uint64_t deleted_usec;
        uint64_t scheduled_purge_usec;
        uint32_t pending_version;
        uint64_t pending_since_usec;
        char pending_owner[OWNER_MAX];
        bool purging;
        uint64_t generation;
        HsmObject meta_handle;
} Key;

typedef struct Keystore Keystore;

/*
 * Called after the index changed what a client may observe of a key: its
 * state, current version, a version's enabled flag, or its existence (k is
 * NULL when the key is gone). Drives the Watch stream.
 */
typedef void (*KeyChangeFn)(const char *name, const Key *k, void *userdata);
void keystore_set_change_callback(Keystore *ks, KeyChangeFn fn, void *userdata);

typedef struct CheckReport {
        unsigned keys, versions, repaired;
        char **problems;
        size_t n_problems;
} CheckReport;

/* owner: "host:pid", recorded with intents so repair knows whose they are. */
int keystore_new(Hsm *hsm, const char *owner, Keystore **ret);
Keystore *keystore_free(Keystore *ks);
DEFINE_TRIVIAL_CLEANUP_FUNC(Keystore, keystore_free);

/* Serve wraps although the vault is not recoverable (development only). */
void keystore_set_allow_unrecoverable(Keystore *ks, bool allow);
bool keystore_allow_unrecoverable(const Keystore *ks);

/* Rebuilds the index and vault policy from the token; the previous index stays on failure. */
int keystore_load(Keystore *ks);
/* keystore_load() unless the index is younger than max_age_usec: clients cannot force reload storms. */
int keystore_refresh(Keystore *ks, uint64_t max_age_usec);

size_t keystore_n_keys(const Keystore *ks);
const Key *keystore_key_at(const Keystore *ks, size_t i);
/* -KEKERR_UNKNOWN_KEY if absent. Pointers stay valid until the next keystore call. */
int keystore_find(Keystore *ks, const char *name, const Key **ret);
const KeyVersion *key_find_version(const Key *k, uint32_t version);
uint64_t key_max_wraps(const Key *k);

const VaultPolicy *keystore_vault(const Keystore *ks);
/* Soft delete is always on; the vault is recoverable when purge protection is on. */
bool keystore_recoverable(const Keystore *ks);

/* Lifecycle. All re-read the key's record from the token before changing it. */
int keystore_create(Keystore *ks, const char *name, const RotationPolicy *policy, uint64_t now, const Key **ret);
int keystore_rotate(Keystore *ks, const char *name, uint64_t now, const Key **ret);
int keystore_set_policy(Keystore *ks, const char *name, const RotationPolicy *policy, const Key **ret);
/* version 0: the whole key */
int keystore_set_enabled(Keystore *ks, const char *name, uint32_t version, bool enabled, const Key **ret);
int keystore_delete(Keystore *ks, const char *name, uint64_t now, const Key **ret);
int keystore_recover(Keystore *ks, const char *name, const Key **ret);
int keystore_purge(Keystore *ks, const char *name, uint64_t now);
/* retention_days 0: unchanged; purge_protection -1 unchanged, 1 on, 0 off (refused once on). */
int keystore_set_vault(Keystore *ks, uint32_t retention_days, int purge_protection);

/* Data plane. */
int keystore_wrap(Keystore *ks, const char *name, uint32_t version, const uint8_t *pt, size_t pt_len,
                  const uint8_t *ctx, size_t ctx_len, uint64_t now, uint8_t **ret_blob, size_t *ret_blob_len,
                  uint32_t *ret_version);
int keystore_unwrap(Keystore *ks, const uint8_t *blob, size_t blob_len, const uint8_t *ctx, size_t ctx_len,
                    uint64_t now, Secret **ret_plaintext, BlobView *ret_view);
/* Unwrap and wrap again under the current version; the plaintext never leaves this call. */
int keystore_rewrap(Keystore *ks, const uint8_t *blob, size_t blob_len, const uint8_t *ctx, size_t ctx_len,
                    uint64_t now, uint8_t **ret_blob, size_t *ret_blob_len, uint32_t *ret_version,
                    uint32_t *ret_old_version);

/* Writes this kekd's unflushed usage (unwrap counts, last use) of every key; at shutdown. */
int keystore_flush_usage(Keystore *ks);

/*
 * Periodic work: repair stale intents, purge keys past their purge date,
 * rotate by policy, flush usage. Returns the number of changes made.
 */
int keystore_maintain(Keystore *ks, uint64_t now);

/* Verifies the token against the records (after repairing what can be repaired). */
int keystore_check(Keystore *ks, uint64_t now, CheckReport *ret);
void check_report_done(CheckReport *r);
