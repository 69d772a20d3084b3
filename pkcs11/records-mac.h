/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Record mode "public + MAC" (issue 16), for tokens that refuse private
 * CKO_DATA objects (NSS softokn) but store public ones: kekd's records are
 * then public token data objects whose CKA_VALUE is the record followed by
 * an HMAC-SHA256 tag computed in the token under a record key. Internal to
 * pkcs11/ (hsm-objects.c and probe.c use it); the daemon sees only
 * hsm_record_mode() and the plain record values.
 *
 * The record key: CKK_GENERIC_SECRET, 32 bytes, generated in the token,
 * CKA_TOKEN, CKA_PRIVATE, sensitive, never extractable, sign/verify only,
 * labelled RECORD_KEY_LABEL (a space: no key name has one) with a CKA_ID of
 * RECORD_KEY_ID_PREFIX and 16 random bytes (longer than the 4-byte version
 * IDs: no KEK or MAC-key search adopts it, and hsm_list_unclassified() skips
 * exactly this scheme). Several kekd may share the token; two starting at
 * once may each generate one. Then every record key verifies, and the one
 * with the lowest CKA_ID (bytewise) signs: a rule all of them reach from
 * the token alone, so once both keys are visible every kekd signs with the
 * same one, and a record signed by the other still verifies.
 *
 * The tag covers "kekd record mac v1\0", then the application, the label
 * and the value, each length-prefixed (be32), so a record cannot be moved
 * under another key name or application, nor shortened or lengthened.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hsm-internal.h"

#define RECORD_KEY_LABEL "kekd records"
#define RECORD_KEY_ID_PREFIX "kekd-record-key:"
#define RECORD_KEY_ID_SIZE (sizeof(RECORD_KEY_ID_PREFIX) - 1 + 16)
#define RECORD_TAG_SIZE HSM_HMAC_TAG_SIZE

/* The record keys on the token, lowest CKA_ID first. */
typedef struct RecordKeys {
        CK_OBJECT_HANDLE *handles;
        size_t n;
} RecordKeys;

void record_keys_done(RecordKeys *k);
/* Finds the record keys (none is not an error: k->n == 0). */
int record_keys_find(Hsm *h, RecordKeys *ret);
/* The key that signs new records: the lowest CKA_ID, generated first if there is none. */
int record_key_for_signing(Hsm *h, CK_OBJECT_HANDLE *ret);
/* The tag of (application, label, value) under key, computed in the token (C_Sign, CKM_SHA256_HMAC). */
int record_tag(Hsm *h, CK_OBJECT_HANDLE key, const char *app, size_t app_len, const char *label, const uint8_t *value,
               size_t len, uint8_t tag[RECORD_TAG_SIZE]);
/*
 * Whether value (len bytes: record || tag) carries a tag of one of keys:
 * 0 if so, -EBADMSG if not (too short, no key, or no tag matches), another
 * -errno if the token failed.
 */
int record_verify(Hsm *h, const RecordKeys *keys, const uint8_t *app, size_t app_len, const char *label,
                  const uint8_t *value, size_t len);
/*
 * Record mode "key objects" labels a record's object with this prefix, the
 * application, ':' and the record's label ("kekd-record:kekd:acct"): never
 * a key name (':' is not allowed in one), so no KEK or MAC-key search and
 * no report of `kekctl check` takes it for a version.
 */
#define RECORD_OBJECT_ID_PREFIX "kekd-record:"
bool record_object_label(const char *label, size_t label_len);
/* Whether a secret key's label and CKA_ID are a record key's (hsm_list_unclassified() skips those). */
bool record_key_ids(const char *label, size_t label_len, const uint8_t *id, size_t id_len);
