/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The Key type and its stored form. A key's metadata lives in the token as a
 * Kek__KeyRecord (proto/kek.proto) in the CKA_VALUE of a private CKO_DATA
 * object; this module converts between that record and the in-memory Key,
 * and refuses records that are not sound (wrong format, a name that does
 * not match the object's label, duplicate or zero version ids, a current
 * version that does not exist, invalid grants), so the keystore never acts
 * on a half-understood record. Pure: no HSM calls.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/macro.h"
#include "daemon/access.h"
#include "proto/blob.h"
#include "pkcs11/hsm.h"

#define OWNER_MAX 80u
/* Writers a record names as its ancestors (KeyRecord.ancestors): 16 writes by others while we decide. */
#define ANCESTORS_MAX 16u

typedef enum KeyStateValue {
        KEY_ENABLED = 1,
        KEY_DISABLED = 2,
        KEY_DELETED = 3,
} KeyStateValue;

typedef struct RotationPolicy {
        uint64_t rotate_after_sec;  /* 0: never by age */
        uint64_t max_wraps;         /* 0: WRAP_BUDGET_DEFAULT */
} RotationPolicy;

typedef struct KeyVersion {
        uint32_t id;
        uint64_t created_usec;
        bool enabled;
        HsmProfile profile;        /* how it encrypts (pkcs11/hsm.h); its blobs carry the matching format */
        bool wrap_with_trusted;    /* its keys leave the token only wrapped under SO-trusted keys (a backup path) */
        bool restored;             /* its keys were unwrapped here by a restore: adopted only in the restored form */
        bool present;              /* the key object exists in the token */
        bool ambiguous;            /* more than one key object answers to it: none is used (pkcs11/hsm.h) */
        HsmObject handle;
        bool mac_present;          /* profiles with a MAC key: found (mac_handle valid at the index's generation) */
        HsmObject mac_handle;
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
        uint64_t writer;           /* nonce of the write that produced this record */
        uint64_t ancestors[ANCESTORS_MAX]; /* writers of the records it was built on, parent first */
        size_t n_ancestors;        /* 0: unknown (a record of an older kekd) */
        Grant *grants;             /* access for crypto users, at most GRANTS_MAX */
        size_t n_grants;
} Key;

Key *key_free(Key *k);
DEFINE_TRIVIAL_CLEANUP_FUNC(Key, key_free);

const KeyVersion *key_find_version(const Key *k, uint32_t version);
/* Sorts a key's versions by id (key_find_version() needs them sorted). */
void key_sort_versions(Key *k);

KeyStateValue key_state_from_wire(int wire);
int key_state_to_wire(KeyStateValue s);

/* Decodes one metadata object into a Key; -EBADMSG if it is not a sound record. */
int key_from_record(const HsmDataObject *d, Key **ret);
/* Serialises a key's record; the buffer is malloc'd. */
int key_to_record(const Key *k, uint8_t **ret, size_t *ret_len);
