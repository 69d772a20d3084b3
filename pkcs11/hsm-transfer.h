/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Moving key versions between tokens by trusted wrapping (issue 17, items 2
 * and 3; docs/backup.md): a version's AES key and MAC key leave a token only
 * as C_WrapKey output under a key the SO marked CKA_TRUSTED, and enter
 * another token only by C_UnwrapKey, so their plaintext never leaves
 * hardware. Also the per-transfer HMAC key that authenticates what is moved
 * (generated in the source token, carried wrapped under the same trusted
 * key, used by C_Sign / C_Verify).
 *
 * Transfer keys, found by label:
 *   a secret AES key   CKM_AES_KEY_WRAP_PAD (RFC 5649), the scheme that
 *                      also authenticates: only holders of the shared key
 *                      (the two tokens of the SO's ceremony) can make or
 *                      open what is wrapped under it;
 *   an RSA key pair    CKM_RSA_PKCS_OAEP with SHA-256 and MGF1-SHA-256
 *                      (PKCS#11 2.40 2.1.8): the public half wraps, the
 *                      private half unwraps. Confidentiality only: anyone
 *                      can wrap under a public key, so nothing wrapped
 *                      under it proves its origin. SoftHSM2 2.6.1 takes only
 *                      SHA-1 OAEP for C_WrapKey and refuses this
 *                      (-KEKERR_UNSUPPORTED).
 * Invariants: as in the rest of pkcs11/ (hsm.h); what is unwrapped is always
 * private, sensitive, not modifiable or copyable, and extractable only with
 * CKA_WRAP_WITH_TRUSTED. PKCS#11 gives an unwrapped key
 * CKA_ALWAYS_SENSITIVE and CKA_NEVER_EXTRACTABLE FALSE: hsm-objects.c adopts
 * such a version only in its own "restored" form, which the key's record
 * must name (daemon/record.h).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hsm.h"

typedef enum HsmTransferKind {
        HSM_TRANSFER_AES_KWP,          /* CKM_AES_KEY_WRAP_PAD under a shared secret AES key */
        HSM_TRANSFER_RSA_OAEP,         /* CKM_RSA_PKCS_OAEP, SHA-256 */
} HsmTransferKind;

typedef struct HsmTransferKey {
        HsmObject handle;
        HsmTransferKind kind;
} HsmTransferKey;

/* Which of a version's two key objects (hsm.h: the MAC key exists for the HMAC profiles only). */
typedef enum HsmVersionPart {
        HSM_PART_AES,
        HSM_PART_MAC,
} HsmVersionPart;

#define HSM_TRANSFER_WRAPPED_MAX 1024u  /* bytes of one wrapped key at most (an RSA-8192 block) */
#define HSM_TRANSFER_TAG_SIZE 32u       /* HMAC-SHA256 */

/*
 * The wrapping key labelled label: CKA_WRAP and CKA_TRUSTED TRUE, a secret
 * AES key or an RSA public key. -ENOENT if none, -ENOTUNIQ if more than one.
 */
int hsm_find_wrapping_key(Hsm *h, const char *label, HsmTransferKey *ret);
/*
 * The unwrapping key labelled label: private, CKA_UNWRAP TRUE, a secret AES
 * key or an RSA private key (a public unwrapping key would let anyone who can
 * open a session unwrap into a template of their choosing, so it is never
 * used). -ENOENT if none, -ENOTUNIQ if more than one.
 */
int hsm_find_unwrapping_key(Hsm *h, const char *label, HsmTransferKey *ret);

/*
 * C_WrapKey of the version's part (found by the KEK search rules) under k;
 * *ret is malloc()ed. -ENOENT: no such key object. -EPERM: the token will
 * not let it leave (CKR_KEY_NOT_WRAPPABLE, CKR_KEY_UNEXTRACTABLE: a
 * never-extractable version, or a key that is not trusted).
 */
int hsm_wrap_version(Hsm *h, const HsmTransferKey *k, const char *label, uint32_t version, HsmVersionPart part,
                     uint8_t **ret, size_t *ret_len);
/* The same for any key object (the transfer MAC key). */
int hsm_wrap_object(Hsm *h, const HsmTransferKey *k, HsmObject key, uint8_t **ret, size_t *ret_len);

/*
 * C_UnwrapKey of wrapped under k into a token object (label, version) of
 * part, in the restored form: private, sensitive, not modifiable or copyable,
 * the part's usage only; with wrap_trusted extractable under trusted keys
 * only (CKA_WRAP_WITH_TRUSTED), otherwise not extractable. 32-byte keys only.
 * -KEKERR_BLOB_INVALID: the bytes do not unwrap under k (tampered, or another
 * key's). -KEKERR_UNSUPPORTED: the token made the key otherwise than asked
 * (not sensitive, its value readable, or extractable when it should not be:
 * openCryptoki 3.8.1); the object is destroyed again (what it read back is
 * logged at debug). Never repeated after a failure (it may have created the
 * object).
 */
int hsm_unwrap_version(Hsm *h, const HsmTransferKey *k, const char *label, uint32_t version, HsmVersionPart part,
                       bool wrap_trusted, const uint8_t *wrapped, size_t len, HsmObject *ret);

/*
 * The transfer MAC key: a session HMAC key (CKK_GENERIC_SECRET, 32 bytes)
 * generated in the token, sensitive, sign/verify only, extractable only
 * under trusted keys. Destroy it with hsm_destroy_object() when done.
 */
int hsm_generate_transfer_mac_key(Hsm *h, HsmObject *ret);
/* The transfer MAC key back from its wrapped bytes, as a session object. -KEKERR_BLOB_INVALID, -KEKERR_UNSUPPORTED as above. */
int hsm_unwrap_transfer_mac_key(Hsm *h, const HsmTransferKey *k, const uint8_t *wrapped, size_t len,
                                HsmObject *ret);
/* HMAC-SHA256 of data under key, computed in the token. */
int hsm_transfer_sign(Hsm *h, HsmObject key, const uint8_t *data, size_t len, uint8_t tag[HSM_TRANSFER_TAG_SIZE]);
/* 0 if tag is data's HMAC-SHA256 under key (C_Verify), -KEKERR_BLOB_INVALID if not. */
int hsm_transfer_verify(Hsm *h, HsmObject key, const uint8_t *data, size_t len,
                        const uint8_t tag[HSM_TRANSFER_TAG_SIZE]);
