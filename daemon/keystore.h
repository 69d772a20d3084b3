/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The keystore: kekd's in-memory index of the keys held in the token, and the
 * wrap/unwrap operations on them. The token is the database (DESIGN.md): each
 * key has one CKO_DATA metadata object (a Kek__KeyRecord) and one AES secret
 * key object per version (CKA_LABEL = key name, CKA_ID = version). The index is
 * rebuilt from the token at start and whenever the HSM session had to be
 * reopened, so a restarted daemon serves every key it served before.
 *
 * Write order keeps the token consistent if kekd dies at any point: a version's
 * key object is created before the metadata that names it; a key object that no
 * metadata names is an orphan, never a lost version.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/secret.h"
#include "pkcs11/hsm.h"
#include "proto/blob.h"

typedef enum KeyStateValue {
        KEY_ENABLED = 1,
        KEY_DISABLED = 2,
        KEY_DELETED = 3,
} KeyStateValue;

typedef struct KeyVersion {
        uint32_t id;
        uint64_t created_usec;
        bool enabled;
        bool present;          /* the key object exists in the token */
        HsmObject handle;
} KeyVersion;

typedef struct Key {
        char name[KEY_NAME_MAX + 1];
        uint64_t created_usec;
        uint32_t current_version;
        KeyStateValue state;
        KeyVersion *versions;  /* sorted by id */
        size_t n_versions;
        HsmObject meta_handle;
} Key;

typedef struct Keystore Keystore;

int keystore_new(Hsm *hsm, Keystore **ret);
Keystore *keystore_free(Keystore *ks);
DEFINE_TRIVIAL_CLEANUP_FUNC(Keystore, keystore_free);

/* Rebuilds the index from the token. On failure the previous index stays. */
int keystore_load(Keystore *ks);

size_t keystore_n_keys(const Keystore *ks);
const Key *keystore_key_at(const Keystore *ks, size_t i);
/* -KEKERR_UNKNOWN_KEY if absent. */
int keystore_find(Keystore *ks, const char *name, const Key **ret);
const KeyVersion *key_find_version(const Key *k, uint32_t version);

/* Generates version 1 in the HSM, then writes the metadata. -KEKERR_KEY_EXISTS, -KEKERR_INVALID_ARGUMENT. */
int keystore_create(Keystore *ks, const char *name, uint64_t now_usec, const Key **ret);

/*
 * Wraps pt under (name, version or current if 0) with ctx bound; the blob is
 * malloc'd. Returns the version used in *ret_version.
 */
int keystore_wrap(Keystore *ks, const char *name, uint32_t version, const uint8_t *pt, size_t pt_len,
                  const uint8_t *ctx, size_t ctx_len, uint8_t **ret_blob, size_t *ret_blob_len,
                  uint32_t *ret_version);

/* Unwraps a blob; the plaintext is a Secret. *ret_view tells key and version. */
int keystore_unwrap(Keystore *ks, const uint8_t *blob, size_t blob_len, const uint8_t *ctx, size_t ctx_len,
                    Secret **ret_plaintext, BlobView *ret_view);
