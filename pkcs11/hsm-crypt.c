/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Encrypt and decrypt inside the token (see hsm.h). These calls change
 * nothing in the token, so after a lost session or login they return
 * -ESTALE and their caller may find the key again and call once more. They
 * do not take the token-object lock: any number run at once on different
 * sessions.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/kekerr.h"
#include "hsm-internal.h"

static CK_RV gcm_encrypt_once(Hsm *h, CK_MECHANISM *mech, HsmObject key, const uint8_t *pt, size_t pt_len,
                              uint8_t *out) {
        CK_ULONG out_len = pt_len + HSM_GCM_TAG_SIZE;
        CK_RV rv;

        rv = P11(h, C_EncryptInit, h->session, mech, key);
        if (rv != CKR_OK)
                return rv;
        rv = P11(h, C_Encrypt, h->session, (CK_BYTE_PTR) pt, pt_len, out, &out_len);
        if (rv == CKR_OK && out_len != pt_len + HSM_GCM_TAG_SIZE)
                rv = CKR_GENERAL_ERROR;
        return rv;
}

int hsm_encrypt_gcm(Hsm *h, HsmObject key, const uint8_t iv[HSM_GCM_IV_SIZE], const uint8_t *aad,
                    size_t aad_len, const uint8_t *pt, size_t pt_len, uint8_t *out) {
        CK_GCM_PARAMS params = {
                .pIv = (CK_BYTE_PTR) iv,
                .ulIvLen = HSM_GCM_IV_SIZE,
                .ulIvBits = HSM_GCM_IV_SIZE * 8,
                .pAAD = (CK_BYTE_PTR) aad,
                .ulAADLen = aad_len,
                .ulTagBits = HSM_GCM_TAG_SIZE * 8,
        };
        CK_MECHANISM mech = { CKM_AES_GCM, &params, sizeof(params) };
        CK_RV rv;
        int r;

        r = hsm_ensure_session(h);
        if (r < 0)
                return r;
        rv = gcm_encrypt_once(h, &mech, key, pt, pt_len, out);
        if (rv != CKR_OK)
                return hsm_idempotent_failed(h, rv);
        return 0;
}

/* out has room for ct_len bytes: some tokens (SoftHSM2) size a GCM decrypt by its input. */
static CK_RV gcm_decrypt_once(Hsm *h, CK_MECHANISM *mech, HsmObject key, const uint8_t *ct, size_t ct_len,
                              Secret *out) {
        CK_ULONG out_len = out->len;
        CK_RV rv;

        rv = P11(h, C_DecryptInit, h->session, mech, key);
        if (rv != CKR_OK)
                return rv;
        rv = P11(h, C_Decrypt, h->session, (CK_BYTE_PTR) ct, ct_len, out->data, &out_len);
        /* SoftHSM2 2.6 reports a GCM tag mismatch from C_Decrypt as CKR_GENERAL_ERROR (newer
         * tokens say CKR_ENCRYPTED_DATA_INVALID). Only this call's error means "does not
         * authenticate"; the same code from C_DecryptInit is an HSM failure. */
        if (rv == CKR_GENERAL_ERROR)
                return CKR_ENCRYPTED_DATA_INVALID;
        if (rv == CKR_OK) {
                if (out_len != ct_len - HSM_GCM_TAG_SIZE)
                        return CKR_GENERAL_ERROR;
                secret_truncate(out, out_len);
        }
        return rv;
}

int hsm_decrypt_gcm(Hsm *h, HsmObject key, const uint8_t iv[HSM_GCM_IV_SIZE], const uint8_t *aad,
                    size_t aad_len, const uint8_t *ct, size_t ct_len, Secret **ret) {
        CK_GCM_PARAMS params = {
                .pIv = (CK_BYTE_PTR) iv,
                .ulIvLen = HSM_GCM_IV_SIZE,
                .ulIvBits = HSM_GCM_IV_SIZE * 8,
                .pAAD = (CK_BYTE_PTR) aad,
                .ulAADLen = aad_len,
                .ulTagBits = HSM_GCM_TAG_SIZE * 8,
        };
        CK_MECHANISM mech = { CKM_AES_GCM, &params, sizeof(params) };
        _cleanup_secret_ Secret *pt = NULL;
        CK_RV rv;
        int r;

        if (ct_len <= HSM_GCM_TAG_SIZE)
                return -KEKERR_BLOB_INVALID;
        r = secret_new(ct_len, &pt);
        if (r < 0)
                return r;
        r = hsm_ensure_session(h);
        if (r < 0)
                return r;
        rv = gcm_decrypt_once(h, &mech, key, ct, ct_len, pt);
        if (rv != CKR_OK)
                return hsm_idempotent_failed(h, rv);
        *ret = TAKE_PTR(pt);
        return 0;
}
