/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Encrypt and decrypt inside the token (see hsm.h). These calls change
 * nothing in the token, so after a lost session or login they return
 * -ESTALE and their caller may find the key again and call once more. They
 * do not take the token-object lock: any number run at once on different
 * sessions.
 *
 * The mechanism profiles (hsm.h, docs/profiles.md) are built here from
 * single-part calls only: a profile's encryption is a fixed, short sequence
 * of C_*Init/C_* pairs on one session, each an operation of its own, so a
 * failure in the middle leaves no operation active. In ctr-hmac the
 * keystream exists only in secure memory (a Secret) for the length of one
 * call: with the ciphertext it gives the plaintext, so it is as secret as
 * the plaintext, but it says nothing of the KEK (AES outputs under an
 * unknown key). The tag is compared in constant time.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "common/kekerr.h"
#include "daemon/log.h"
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

/* AES-GCM parameters: a 96-bit IV (given, or a zeroed buffer the token fills), the AAD, a 128-bit tag. */
static CK_GCM_PARAMS gcm_params(uint8_t *iv, const uint8_t *aad, size_t aad_len) {
        return (CK_GCM_PARAMS) {
                .pIv = iv,
                .ulIvLen = HSM_GCM_IV_SIZE,
                .ulIvBits = HSM_GCM_IV_SIZE * 8,
                .pAAD = (CK_BYTE_PTR) aad,
                .ulAADLen = aad_len,
                .ulTagBits = HSM_GCM_TAG_SIZE * 8,
        };
}

/* iv is read (the caller's IV) or written (by a token that generates it): see encrypt_gcm_token_iv(). */
static int gcm_encrypt(Hsm *h, HsmObject key, uint8_t iv[HSM_GCM_IV_SIZE], const uint8_t *aad, size_t aad_len,
                       const uint8_t *pt, size_t pt_len, uint8_t *out) {
        CK_GCM_PARAMS params = gcm_params(iv, aad, aad_len);
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

int hsm_encrypt_gcm(Hsm *h, HsmObject key, const uint8_t iv[HSM_GCM_IV_SIZE], const uint8_t *aad,
                    size_t aad_len, const uint8_t *pt, size_t pt_len, uint8_t *out) {
        uint8_t used_iv[HSM_GCM_IV_SIZE];
        int r;

        /*
         * A copy, because the mechanism's IV is not const: a token that writes an IV of its own
         * into it (FIPS mode) would otherwise leave a blob carrying an IV it was not made with,
         * which nothing could unwrap. Such a wrap is refused; profile gcm-token-iv serves it.
         */
        memcpy(used_iv, iv, sizeof(used_iv));
        r = gcm_encrypt(h, key, used_iv, aad, aad_len, pt, pt_len, out);
        if (r >= 0 && memcmp(used_iv, iv, sizeof(used_iv)) != 0) {
                memset(out, 0, pt_len + HSM_GCM_TAG_SIZE);
                log_debug("C_Encrypt(CKM_AES_GCM) replaced the caller's IV: the token generates IVs");
                return -KEKERR_UNSUPPORTED;
        }
        return r;
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
        CK_GCM_PARAMS params = gcm_params((uint8_t *) iv, aad, aad_len);
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

/* --- mechanism profiles ------------------------------------------------------- */

static const char *const profile_names[_HSM_PROFILE_MAX] = {
        [HSM_PROFILE_GCM] = "gcm",
        [HSM_PROFILE_CTR_HMAC] = "ctr-hmac",
        [HSM_PROFILE_GCM_TOKEN_IV] = "gcm-token-iv",
        [HSM_PROFILE_CBC_HMAC] = "cbc-hmac",
};

const char *hsm_profile_name(HsmProfile p) {
        return (unsigned) p < _HSM_PROFILE_MAX ? profile_names[p] : NULL;
}

int hsm_profile_from_name(const char *s, HsmProfile *ret) {
        for (unsigned i = 0; s && i < _HSM_PROFILE_MAX; i++)
                if (strcmp(s, profile_names[i]) == 0) {
                        *ret = (HsmProfile) i;
                        return 0;
                }
        return -EINVAL;
}

bool hsm_profile_has_mac_key(HsmProfile p) {
        return p == HSM_PROFILE_CTR_HMAC || p == HSM_PROFILE_CBC_HMAC;
}

size_t hsm_profile_iv_size(HsmProfile p) {
        return hsm_profile_has_mac_key(p) ? HSM_CTR_IV_SIZE : HSM_GCM_IV_SIZE;
}

#define AES_BLOCK 16u

size_t hsm_profile_overhead(HsmProfile p) {
        return p == HSM_PROFILE_CBC_HMAC ? AES_BLOCK + HSM_HMAC_TAG_SIZE
               : p == HSM_PROFILE_CTR_HMAC ? HSM_HMAC_TAG_SIZE
                                            : HSM_GCM_TAG_SIZE;
}

size_t hsm_profile_ct_size(HsmProfile p, size_t pt_len) {
        if (p == HSM_PROFILE_CBC_HMAC)
                return (pt_len / AES_BLOCK + 1) * AES_BLOCK + HSM_HMAC_TAG_SIZE; /* PKCS#7 pads 1..16 bytes */
        return pt_len + hsm_profile_overhead(p);
}

typedef struct MechNeed {
        CK_MECHANISM_TYPE mech;
        CK_FLAGS flags;
        const char *name;
} MechNeed;

int hsm_profile_available(Hsm *h, HsmProfile p, const char **ret_missing) {
        static const MechNeed gcm[] = {
                { CKM_AES_KEY_GEN, CKF_GENERATE, "CKM_AES_KEY_GEN" },
                { CKM_AES_GCM, CKF_ENCRYPT | CKF_DECRYPT, "CKM_AES_GCM" },
        };
        static const MechNeed ctr_hmac[] = {
                { CKM_AES_KEY_GEN, CKF_GENERATE, "CKM_AES_KEY_GEN" },
                { CKM_AES_ECB, CKF_ENCRYPT, "CKM_AES_ECB" },
                { CKM_GENERIC_SECRET_KEY_GEN, CKF_GENERATE, "CKM_GENERIC_SECRET_KEY_GEN" },
                { CKM_SHA256_HMAC, CKF_SIGN, "CKM_SHA256_HMAC" },
        };
        static const MechNeed cbc_hmac[] = {
                { CKM_AES_KEY_GEN, CKF_GENERATE, "CKM_AES_KEY_GEN" },
                { CKM_AES_CBC_PAD, CKF_ENCRYPT | CKF_DECRYPT, "CKM_AES_CBC_PAD" },
                { CKM_GENERIC_SECRET_KEY_GEN, CKF_GENERATE, "CKM_GENERIC_SECRET_KEY_GEN" },
                { CKM_SHA256_HMAC, CKF_SIGN, "CKM_SHA256_HMAC" },
        };
        const MechNeed *need;
        size_t n;

        switch (p) {
        case HSM_PROFILE_GCM:
        case HSM_PROFILE_GCM_TOKEN_IV:
                need = gcm, n = ELEMENTSOF(gcm);
                break;
        case HSM_PROFILE_CTR_HMAC:
                need = ctr_hmac, n = ELEMENTSOF(ctr_hmac);
                break;
        case HSM_PROFILE_CBC_HMAC:
                need = cbc_hmac, n = ELEMENTSOF(cbc_hmac);
                break;
        default:
                return -EINVAL;
        }
        for (size_t i = 0; i < n; i++) {
                HsmMechanismInfo mi;
                int r = hsm_mechanism_info(h, need[i].mech, &mi);

                if (r < 0 && r != -ENOENT)
                        return r;
                if (r == -ENOENT || (mi.flags & need[i].flags) != need[i].flags) {
                        if (ret_missing)
                                *ret_missing = need[i].name;
                        return 0;
                }
        }
        return 1;
}

/* Bounds every profile's buffers; kekd's AEKs are far smaller (AEK_MAX_SIZE). */
#define PROFILE_PT_MAX (64u * 1024u)

/*
 * The AES-CTR keystream for len bytes from the initial counter block iv: the
 * counter blocks iv, iv+1, ... (one 128-bit big-endian number, as OpenSSL's
 * AES-CTR counts) encrypted in one C_Encrypt(CKM_AES_ECB) under key. The
 * counter blocks are not secret; the keystream goes to ks (a Secret).
 */
static CK_RV ctr_keystream(Hsm *h, HsmObject key, const uint8_t iv[HSM_CTR_IV_SIZE], size_t len, Secret *ks,
                           int *ret_errno) {
        CK_MECHANISM mech = { CKM_AES_ECB, NULL, 0 };
        size_t n_blocks = (len + AES_BLOCK - 1) / AES_BLOCK;
        _cleanup_free_ uint8_t *ctr = NULL;
        uint8_t c[AES_BLOCK];
        CK_ULONG out_len = n_blocks * AES_BLOCK;
        CK_RV rv;

        ctr = malloc(n_blocks * AES_BLOCK);
        if (!ctr) {
                *ret_errno = -ENOMEM;
                return CKR_HOST_MEMORY;
        }
        memcpy(c, iv, AES_BLOCK);
        for (size_t i = 0; i < n_blocks; i++) {
                memcpy(ctr + i * AES_BLOCK, c, AES_BLOCK);
                for (int j = AES_BLOCK - 1; j >= 0 && ++c[j] == 0; j--)
                        ;
        }
        rv = P11(h, C_EncryptInit, h->session, &mech, key);
        if (rv != CKR_OK)
                return rv;
        rv = P11(h, C_Encrypt, h->session, ctr, n_blocks * AES_BLOCK, ks->data, &out_len);
        if (rv == CKR_OK && out_len != n_blocks * AES_BLOCK)
                rv = CKR_GENERAL_ERROR;
        return rv;
}

/* HMAC-SHA256 in the token over be32(aad_len) || aad || iv || ct. */
static CK_RV ctr_hmac_tag(Hsm *h, HsmObject mac_key, const uint8_t iv[HSM_CTR_IV_SIZE], const uint8_t *aad,
                          size_t aad_len, const uint8_t *ct, size_t ct_len, uint8_t tag[HSM_HMAC_TAG_SIZE],
                          int *ret_errno) {
        CK_MECHANISM mech = { CKM_SHA256_HMAC, NULL, 0 };
        size_t len = 4 + aad_len + HSM_CTR_IV_SIZE + ct_len;
        _cleanup_free_ uint8_t *buf = NULL;
        CK_ULONG tag_len = HSM_HMAC_TAG_SIZE;
        CK_RV rv;
        uint8_t *p;

        buf = malloc(len);
        if (!buf) {
                *ret_errno = -ENOMEM;
                return CKR_HOST_MEMORY;
        }
        p = buf;
        *p++ = (uint8_t) (aad_len >> 24);
        *p++ = (uint8_t) (aad_len >> 16);
        *p++ = (uint8_t) (aad_len >> 8);
        *p++ = (uint8_t) aad_len;
        if (aad_len > 0)
                memcpy(p, aad, aad_len);
        p += aad_len;
        memcpy(p, iv, HSM_CTR_IV_SIZE);
        p += HSM_CTR_IV_SIZE;
        memcpy(p, ct, ct_len);
        rv = P11(h, C_SignInit, h->session, &mech, mac_key);
        if (rv != CKR_OK)
                return rv;
        rv = P11(h, C_Sign, h->session, buf, len, tag, &tag_len);
        if (rv == CKR_OK && tag_len != HSM_HMAC_TAG_SIZE)
                rv = CKR_GENERAL_ERROR;
        return rv;
}

int hsm_encrypt_ctr_hmac(Hsm *h, HsmObject key, HsmObject mac_key, const uint8_t iv[HSM_CTR_IV_SIZE],
                         const uint8_t *aad, size_t aad_len, const uint8_t *pt, size_t pt_len, uint8_t *out) {
        _cleanup_secret_ Secret *ks = NULL;
        int err = 0, r;
        CK_RV rv;

        if (pt_len == 0 || pt_len > PROFILE_PT_MAX || aad_len > PROFILE_PT_MAX)
                return -EINVAL;
        r = secret_new((pt_len + AES_BLOCK - 1) / AES_BLOCK * AES_BLOCK, &ks);
        if (r < 0)
                return r;
        r = hsm_ensure_session(h);
        if (r < 0)
                return r;
        rv = ctr_keystream(h, key, iv, pt_len, ks, &err);
        if (rv == CKR_OK) {
                for (size_t i = 0; i < pt_len; i++)
                        out[i] = pt[i] ^ ks->data[i];
                rv = ctr_hmac_tag(h, mac_key, iv, aad, aad_len, out, pt_len, out + pt_len, &err);
        }
        if (err < 0)
                return err;
        if (rv != CKR_OK)
                return hsm_idempotent_failed(h, rv);
        return 0;
}

/*
 * The tag of ct (len bytes, the tag after them) computed in the token and
 * compared in constant time: 0, -KEKERR_BLOB_INVALID, or the failure.
 */
static int tag_verify(Hsm *h, HsmObject mac_key, const uint8_t iv[HSM_CTR_IV_SIZE], const uint8_t *aad, size_t aad_len,
                      const uint8_t *ct, size_t len) {
        uint8_t tag[HSM_HMAC_TAG_SIZE];
        int err = 0;
        CK_RV rv;

        rv = ctr_hmac_tag(h, mac_key, iv, aad, aad_len, ct, len, tag, &err);
        if (err < 0)
                return err;
        if (rv != CKR_OK)
                return hsm_idempotent_failed(h, rv);
        if (CRYPTO_memcmp(tag, ct + len, HSM_HMAC_TAG_SIZE) != 0)
                return -KEKERR_BLOB_INVALID;
        return 0;
}

int hsm_decrypt_ctr_hmac(Hsm *h, HsmObject key, HsmObject mac_key, const uint8_t iv[HSM_CTR_IV_SIZE],
                         const uint8_t *aad, size_t aad_len, const uint8_t *ct, size_t ct_len, Secret **ret) {
        _cleanup_secret_ Secret *ks = NULL, *pt = NULL;
        size_t len;
        int err = 0, r;
        CK_RV rv;

        if (ct_len <= HSM_HMAC_TAG_SIZE || ct_len - HSM_HMAC_TAG_SIZE > PROFILE_PT_MAX || aad_len > PROFILE_PT_MAX)
                return -KEKERR_BLOB_INVALID;
        len = ct_len - HSM_HMAC_TAG_SIZE;
        r = hsm_ensure_session(h);
        if (r < 0)
                return r;
        /* Encrypt-then-MAC: nothing is decrypted before the tag authenticates. */
        r = tag_verify(h, mac_key, iv, aad, aad_len, ct, len);
        if (r < 0)
                return r;
        r = secret_new((len + AES_BLOCK - 1) / AES_BLOCK * AES_BLOCK, &ks);
        if (r >= 0)
                r = secret_new(len, &pt);
        if (r < 0)
                return r;
        rv = ctr_keystream(h, key, iv, len, ks, &err);
        if (err < 0)
                return err;
        if (rv != CKR_OK)
                return hsm_idempotent_failed(h, rv);
        for (size_t i = 0; i < len; i++)
                pt->data[i] = ct[i] ^ ks->data[i];
        *ret = TAKE_PTR(pt);
        return 0;
}

/*
 * cbc-hmac: AES-256-CBC with PKCS#7 padding, whole in the token, then the
 * same tag as ctr-hmac. Unwrap authenticates before it decrypts, so a
 * padding error can only follow a forged tag: there is no padding oracle.
 */
int hsm_encrypt_cbc_hmac(Hsm *h, HsmObject key, HsmObject mac_key, const uint8_t iv[HSM_CTR_IV_SIZE],
                         const uint8_t *aad, size_t aad_len, const uint8_t *pt, size_t pt_len, uint8_t *out) {
        CK_MECHANISM mech = { CKM_AES_CBC_PAD, (CK_BYTE_PTR) iv, HSM_CTR_IV_SIZE };
        size_t len = (pt_len / AES_BLOCK + 1) * AES_BLOCK;
        CK_ULONG out_len = len;
        int err = 0, r;
        CK_RV rv;

        if (pt_len == 0 || pt_len > PROFILE_PT_MAX || aad_len > PROFILE_PT_MAX)
                return -EINVAL;
        r = hsm_ensure_session(h);
        if (r < 0)
                return r;
        rv = P11(h, C_EncryptInit, h->session, &mech, key);
        if (rv == CKR_OK)
                rv = P11(h, C_Encrypt, h->session, (CK_BYTE_PTR) pt, pt_len, out, &out_len);
        if (rv == CKR_OK && out_len != len)
                rv = CKR_GENERAL_ERROR;
        if (rv == CKR_OK)
                rv = ctr_hmac_tag(h, mac_key, iv, aad, aad_len, out, len, out + len, &err);
        if (err < 0)
                return err;
        if (rv != CKR_OK)
                return hsm_idempotent_failed(h, rv);
        return 0;
}

int hsm_decrypt_cbc_hmac(Hsm *h, HsmObject key, HsmObject mac_key, const uint8_t iv[HSM_CTR_IV_SIZE],
                         const uint8_t *aad, size_t aad_len, const uint8_t *ct, size_t ct_len, Secret **ret) {
        CK_MECHANISM mech = { CKM_AES_CBC_PAD, (CK_BYTE_PTR) iv, HSM_CTR_IV_SIZE };
        _cleanup_secret_ Secret *pt = NULL;
        CK_ULONG out_len;
        size_t len;
        int r;
        CK_RV rv;

        if (ct_len < AES_BLOCK + HSM_HMAC_TAG_SIZE || (ct_len - HSM_HMAC_TAG_SIZE) % AES_BLOCK != 0 ||
            ct_len - HSM_HMAC_TAG_SIZE > PROFILE_PT_MAX + AES_BLOCK || aad_len > PROFILE_PT_MAX)
                return -KEKERR_BLOB_INVALID;
        len = ct_len - HSM_HMAC_TAG_SIZE;
        r = hsm_ensure_session(h);
        if (r < 0)
                return r;
        /* Encrypt-then-MAC: nothing is decrypted before the tag authenticates. */
        r = tag_verify(h, mac_key, iv, aad, aad_len, ct, len);
        if (r < 0)
                return r;
        r = secret_new(len, &pt); /* some tokens size the output by the input, padding included */
        if (r < 0)
                return r;
        out_len = len;
        rv = P11(h, C_DecryptInit, h->session, &mech, key);
        if (rv == CKR_OK)
                rv = P11(h, C_Decrypt, h->session, (CK_BYTE_PTR) ct, len, pt->data, &out_len);
        /* Only a forged tag gets here with bad padding; say so as for any blob that does not authenticate. */
        if (rv == CKR_ENCRYPTED_DATA_INVALID || rv == CKR_ENCRYPTED_DATA_LEN_RANGE)
                return -KEKERR_BLOB_INVALID;
        if (rv == CKR_OK && (out_len == 0 || out_len > len - 1 || out_len < len - AES_BLOCK))
                rv = CKR_GENERAL_ERROR;
        if (rv != CKR_OK)
                return hsm_idempotent_failed(h, rv);
        secret_truncate(pt, out_len);
        *ret = TAKE_PTR(pt);
        return 0;
}

/*
 * gcm-token-iv: the IV buffer is given zeroed and the token writes the IV it
 * generated into it (as FIPS-mode HSMs do with CK_GCM_PARAMS.pIv). A token
 * that used the zero IV instead would reuse it on every wrap: an IV still
 * all zero afterwards refuses the wrap (its ciphertext is dropped, never
 * returned), and names the reason.
 */
static int encrypt_gcm_token_iv(Hsm *h, HsmObject key, uint8_t iv[HSM_GCM_IV_SIZE], const uint8_t *aad,
                                size_t aad_len, const uint8_t *pt, size_t pt_len, uint8_t *out) {
        uint8_t token_iv[HSM_GCM_IV_SIZE] = {}, zero[HSM_GCM_IV_SIZE] = {};
        int r;

        r = gcm_encrypt(h, key, token_iv, aad, aad_len, pt, pt_len, out);
        if (r < 0)
                return r;
        if (memcmp(token_iv, zero, sizeof(zero)) == 0) {
                memset(out, 0, pt_len + HSM_GCM_TAG_SIZE);
                log_debug("C_Encrypt(CKM_AES_GCM) left the IV buffer zero: the token does not generate IVs");
                return -KEKERR_UNSUPPORTED;
        }
        memcpy(iv, token_iv, HSM_GCM_IV_SIZE);
        return 0;
}

int hsm_profile_encrypt(Hsm *h, HsmProfile p, HsmObject key, HsmObject mac_key, uint8_t *iv, const uint8_t *aad,
                        size_t aad_len, const uint8_t *pt, size_t pt_len, uint8_t *out) {
        switch (p) {
        case HSM_PROFILE_GCM:
                return hsm_encrypt_gcm(h, key, iv, aad, aad_len, pt, pt_len, out);
        case HSM_PROFILE_CTR_HMAC:
                return hsm_encrypt_ctr_hmac(h, key, mac_key, iv, aad, aad_len, pt, pt_len, out);
        case HSM_PROFILE_GCM_TOKEN_IV:
                return encrypt_gcm_token_iv(h, key, iv, aad, aad_len, pt, pt_len, out);
        case HSM_PROFILE_CBC_HMAC:
                return hsm_encrypt_cbc_hmac(h, key, mac_key, iv, aad, aad_len, pt, pt_len, out);
        default:
                return -EINVAL;
        }
}

int hsm_profile_decrypt(Hsm *h, HsmProfile p, HsmObject key, HsmObject mac_key, const uint8_t *iv,
                        const uint8_t *aad, size_t aad_len, const uint8_t *ct, size_t ct_len, Secret **ret) {
        switch (p) {
        case HSM_PROFILE_GCM:
        case HSM_PROFILE_GCM_TOKEN_IV:
                return hsm_decrypt_gcm(h, key, iv, aad, aad_len, ct, ct_len, ret);
        case HSM_PROFILE_CTR_HMAC:
                return hsm_decrypt_ctr_hmac(h, key, mac_key, iv, aad, aad_len, ct, ct_len, ret);
        case HSM_PROFILE_CBC_HMAC:
                return hsm_decrypt_cbc_hmac(h, key, mac_key, iv, aad, aad_len, ct, ct_len, ret);
        default:
                return -EINVAL;
        }
}
