/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Key versions leaving and entering tokens by trusted wrapping (see
 * hsm-transfer.h). Invariants: no key value ever passes through this
 * process (C_WrapKey / C_UnwrapKey only); what is unwrapped gets kekd's
 * template, never one derived from the input; calls that create objects are
 * never repeated; the mechanism follows the transfer key's type, never the
 * caller's wish, so a key cannot be wrapped under a weaker scheme by mistake.
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/kekerr.h"
#include "daemon/log.h"
#include "hsm-internal.h"
#include "hsm-transfer.h"

/* OAEP with SHA-256 and MGF1-SHA-256, no label (PKCS#11 2.40 2.1.8). */
static CK_RSA_PKCS_OAEP_PARAMS oaep_params = { CKM_SHA256, CKG_MGF1_SHA256, CKZ_DATA_SPECIFIED, NULL, 0 };

static void set_mechanism(const HsmTransferKey *k, CK_MECHANISM *m) {
        if (k->kind == HSM_TRANSFER_RSA_OAEP)
                *m = (CK_MECHANISM) { CKM_RSA_PKCS_OAEP, &oaep_params, sizeof(oaep_params) };
        else
                *m = (CK_MECHANISM) { CKM_AES_KEY_WRAP_PAD, NULL, 0 };
}

/* The one object tmpl finds; -ENOENT none, -ENOTUNIQ several. */
static int find_one(Hsm *h, CK_ATTRIBUTE *tmpl, CK_ULONG n_tmpl, HsmObject *ret) {
        _cleanup_free_ CK_OBJECT_HANDLE *objs = NULL;
        size_t n = 0;
        int r = hsm_find_all(h, tmpl, n_tmpl, &objs, &n);

        if (r < 0)
                return r;
        if (n == 0)
                return -ENOENT;
        if (n > 1)
                return -ENOTUNIQ;
        *ret = objs[0];
        return 0;
}

/*
 * A secret AES key first, then the RSA form (cls_rsa, CKK_RSA): a label that
 * names one of each is ambiguous and refused.
 */
static int find_transfer_key(Hsm *h, const char *label, CK_ATTRIBUTE_TYPE use, bool trusted, CK_OBJECT_CLASS cls_rsa,
                             HsmTransferKey *ret) {
        CK_OBJECT_CLASS cls_aes = CKO_SECRET_KEY;
        CK_KEY_TYPE aes = CKK_AES, rsa = CKK_RSA;
        CK_BBOOL yes = CK_TRUE;
        /* The last attribute: CKA_TRUSTED for a wrapping key, CKA_PRIVATE for an unwrapping one. */
        CK_ATTRIBUTE a[] = {
                { CKA_CLASS, &cls_aes, sizeof(cls_aes) }, { CKA_KEY_TYPE, &aes, sizeof(aes) },
                { CKA_LABEL, (void *) label, strlen(label) }, { use, &yes, sizeof(yes) },
                { trusted ? CKA_TRUSTED : CKA_PRIVATE, &yes, sizeof(yes) },
        };
        CK_ATTRIBUTE b[] = {
                { CKA_CLASS, &cls_rsa, sizeof(cls_rsa) }, { CKA_KEY_TYPE, &rsa, sizeof(rsa) },
                { CKA_LABEL, (void *) label, strlen(label) }, { use, &yes, sizeof(yes) },
                { trusted ? CKA_TRUSTED : CKA_PRIVATE, &yes, sizeof(yes) },
        };
        HsmObject o_aes = 0, o_rsa = 0;
        int r_aes, r_rsa;

        if (strlen(label) == 0 || strlen(label) > HSM_KEY_LABEL_MAX)
                return -EINVAL;
        r_aes = find_one(h, a, ELEMENTSOF(a), &o_aes);
        if (r_aes < 0 && r_aes != -ENOENT)
                return r_aes;
        r_rsa = find_one(h, b, ELEMENTSOF(b), &o_rsa);
        if (r_rsa < 0 && r_rsa != -ENOENT)
                return r_rsa;
        if (r_aes == 0 && r_rsa == 0)
                return -ENOTUNIQ;
        if (r_aes == 0)
                *ret = (HsmTransferKey) { .handle = o_aes, .kind = HSM_TRANSFER_AES_KWP };
        else if (r_rsa == 0)
                *ret = (HsmTransferKey) { .handle = o_rsa, .kind = HSM_TRANSFER_RSA_OAEP };
        else
                return -ENOENT;
        return 0;
}

int hsm_find_wrapping_key(Hsm *h, const char *label, HsmTransferKey *ret) {
        return find_transfer_key(h, label, CKA_WRAP, true, CKO_PUBLIC_KEY, ret);
}

int hsm_find_unwrapping_key(Hsm *h, const char *label, HsmTransferKey *ret) {
        return find_transfer_key(h, label, CKA_UNWRAP, false, CKO_PRIVATE_KEY, ret);
}

int hsm_wrap_object(Hsm *h, const HsmTransferKey *k, HsmObject key, uint8_t **ret, size_t *ret_len) {
        _cleanup_free_ uint8_t *out = NULL;
        CK_ULONG len = HSM_TRANSFER_WRAPPED_MAX;
        CK_MECHANISM m;
        CK_RV rv;
        int r;

        r = hsm_ensure_session(h);
        if (r < 0)
                return r;
        out = malloc(HSM_TRANSFER_WRAPPED_MAX);
        if (!out)
                return -ENOMEM;
        set_mechanism(k, &m);
        /* Changes nothing in the token: but the handles are the session's, so a loss is reported, not retried. */
        rv = store_call(h, P11(h, C_WrapKey, h->session, &m, k->handle, key, out, &len));
        if (rv == CKR_KEY_NOT_WRAPPABLE || rv == CKR_KEY_UNEXTRACTABLE) {
                (void) hsm_rv_to_errno(h, rv); /* counted and named for hsm_last_error() */
                return -EPERM;
        }
        if (rv != CKR_OK)
                return hsm_handle_failed(h, rv);
        if (len == 0 || len > HSM_TRANSFER_WRAPPED_MAX)
                return -EIO;
        *ret = TAKE_PTR(out);
        *ret_len = len;
        return 0;
}

int hsm_wrap_version(Hsm *h, const HsmTransferKey *k, const char *label, uint32_t version, HsmVersionPart part,
                     uint8_t **ret, size_t *ret_len) {
        HsmObject key;
        int r = part == HSM_PART_MAC ? hsm_find_mac_key(h, label, version, &key) : hsm_find_key(h, label, version, &key);

        if (r < 0)
                return r;
        return hsm_wrap_object(h, k, key, ret, ret_len);
}

/* Maps a failed C_UnwrapKey: bytes that are not a key wrapped under k are the input's fault. */
static int unwrap_failed(Hsm *h, CK_RV rv) {
        if (rv == CKR_WRAPPED_KEY_INVALID || rv == CKR_WRAPPED_KEY_LEN_RANGE || rv == CKR_ENCRYPTED_DATA_INVALID ||
            rv == CKR_ENCRYPTED_DATA_LEN_RANGE) {
                (void) hsm_rv_to_errno(h, rv);
                return -KEKERR_BLOB_INVALID;
        }
        return hsm_handle_failed(h, rv);
}

/*
 * What C_UnwrapKey made must be what tmpl asked (PKCS#11, C_UnwrapKey: the
 * template gives the new key's attributes): sensitive, its value unreadable,
 * extractable as asked, CKA_WRAP_WITH_TRUSTED if asked. openCryptoki 3.8.1's
 * soft token makes the key not sensitive and extractable whatever the
 * template says, its value readable (docs/tokens.md): such an object is
 * destroyed at once and the unwrap refused (-KEKERR_UNSUPPORTED; what it read
 * back is logged at debug), so a key kekd unwrapped never lies readable in a
 * token. 0 if it is as asked.
 */
static int check_unwrapped(Hsm *h, HsmObject o, const CK_ATTRIBUTE *tmpl, CK_ULONG n) {
        bool extractable = false, wwt = false;
        HsmKeyAttrs a = {};
        int r;

        for (CK_ULONG i = 0; i < n; i++)
                if (tmpl[i].type == CKA_EXTRACTABLE)
                        extractable = *(const CK_BBOOL *) tmpl[i].pValue == CK_TRUE;
                else if (tmpl[i].type == CKA_WRAP_WITH_TRUSTED)
                        wwt = *(const CK_BBOOL *) tmpl[i].pValue == CK_TRUE;
        r = hsm_key_attributes(h, o, &a);
        if (r >= 0 && a.sensitive && !a.value_readable && a.extractable == extractable && (!wwt || a.wrap_with_trusted))
                return 0;
        (void) (r >= 0 && !a.token ? hsm_destroy_session_object(h, o) : hsm_destroy_object(h, o));
        if (r < 0)
                return r;
        log_debug("C_UnwrapKey ignored the template: the key read back sensitive %d, extractable %d, value %s; "
                  "destroyed", a.sensitive, a.extractable, a.value_readable ? "readable" : "unreadable");
        return -KEKERR_UNSUPPORTED;
}

static int unwrap(Hsm *h, const HsmTransferKey *k, CK_ATTRIBUTE *tmpl, CK_ULONG n, bool optional_last,
                  const uint8_t *wrapped, size_t len, HsmObject *ret) {
        CK_OBJECT_HANDLE o;
        CK_MECHANISM m;
        CK_RV rv;
        int r;

        if (!wrapped || len == 0 || len > HSM_TRANSFER_WRAPPED_MAX)
                return -KEKERR_BLOB_INVALID;
        r = hsm_ensure_session(h);
        if (r < 0)
                return r;
        set_mechanism(k, &m);
        hsm_write_bump(h);
        rv = store_call(h, P11(h, C_UnwrapKey, h->session, &m, k->handle, (CK_BYTE_PTR) wrapped, len, tmpl, n, &o));
        /*
         * CKA_MODIFIABLE FALSE (last, optional_last) may be given when
         * unwrapping (PKCS#11 2.40 4.4), but SoftHSM2 2.6.1 answers
         * CKR_ATTRIBUTE_READ_ONLY: an answer about the template, so nothing
         * was created, and once more without it repeats no write. The
         * security attributes stay: CKA_SENSITIVE cannot be switched off,
         * nor CKA_EXTRACTABLE and CKA_WRAP_WITH_TRUSTED on or off.
         */
        if (optional_last && n > 1 && (rv == CKR_ATTRIBUTE_READ_ONLY || rv == CKR_ATTRIBUTE_TYPE_INVALID)) {
                hsm_write_bump(h);
                rv = store_call(h, P11(h, C_UnwrapKey, h->session, &m, k->handle, (CK_BYTE_PTR) wrapped, len, tmpl,
                                    n - 1, &o));
        }
        if (rv != CKR_OK)
                return unwrap_failed(h, rv);
        r = check_unwrapped(h, o, tmpl, n);
        if (r < 0)
                return r;
        *ret = o;
        return 0;
}

int hsm_unwrap_version(Hsm *h, const HsmTransferKey *k, const char *label, uint32_t version, HsmVersionPart part,
                       bool wrap_trusted, const uint8_t *wrapped, size_t len, HsmObject *ret) {
        CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
        CK_KEY_TYPE type = part == HSM_PART_MAC ? CKK_GENERIC_SECRET : CKK_AES;
        CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
        CK_BBOOL crypt = part == HSM_PART_AES ? CK_TRUE : CK_FALSE, mac = part == HSM_PART_MAC ? CK_TRUE : CK_FALSE;
        CK_BBOOL extractable = wrap_trusted ? CK_TRUE : CK_FALSE;
        uint8_t id[4] = { (uint8_t) (version >> 24), (uint8_t) (version >> 16), (uint8_t) (version >> 8),
                          (uint8_t) version };
        const CK_ATTRIBUTE attrs[] = {
                { CKA_CLASS, &cls, sizeof(cls) },
                { CKA_KEY_TYPE, &type, sizeof(type) },
                { CKA_LABEL, (void *) label, strlen(label) },
                { CKA_ID, id, sizeof(id) },
                { CKA_TOKEN, &yes, sizeof(yes) },
                { CKA_PRIVATE, &yes, sizeof(yes) },
                { CKA_SENSITIVE, &yes, sizeof(yes) },
                { CKA_EXTRACTABLE, &extractable, sizeof(extractable) },
                { CKA_ENCRYPT, &crypt, sizeof(crypt) },
                { CKA_DECRYPT, &crypt, sizeof(crypt) },
                { CKA_WRAP, &no, sizeof(no) },
                { CKA_UNWRAP, &no, sizeof(no) },
                { CKA_SIGN, &mac, sizeof(mac) },
                { CKA_VERIFY, &mac, sizeof(mac) },
                { CKA_DERIVE, &no, sizeof(no) },
                /* Last: only with wrap_trusted, never optional (as in hsm-objects.c). */
                { CKA_WRAP_WITH_TRUSTED, &yes, sizeof(yes) },
        };
        CK_ATTRIBUTE tmpl[ELEMENTSOF(attrs) + 1];
        CK_ULONG n = ELEMENTSOF(attrs) - !wrap_trusted;

        if (strlen(label) == 0 || strlen(label) > HSM_KEY_LABEL_MAX)
                return -EINVAL;
        memcpy(tmpl, attrs, n * sizeof(attrs[0]));
        tmpl[n++] = (CK_ATTRIBUTE) { CKA_MODIFIABLE, &no, sizeof(no) }; /* optional: see unwrap() */
        return unwrap(h, k, tmpl, n, true, wrapped, len, ret);
}

/* The transfer MAC key's template, as generated (with CKA_VALUE_LEN) or unwrapped (without). */
#define TRANSFER_MAC_TEMPLATE(cls, type, yes, no)                                                         \
        { CKA_CLASS, &(cls), sizeof(cls) }, { CKA_KEY_TYPE, &(type), sizeof(type) },                     \
        { CKA_TOKEN, &(no), sizeof(no) }, { CKA_PRIVATE, &(yes), sizeof(yes) },                          \
        { CKA_SENSITIVE, &(yes), sizeof(yes) }, { CKA_EXTRACTABLE, &(yes), sizeof(yes) },                \
        { CKA_WRAP_WITH_TRUSTED, &(yes), sizeof(yes) }, { CKA_SIGN, &(yes), sizeof(yes) },               \
        { CKA_VERIFY, &(yes), sizeof(yes) }, { CKA_ENCRYPT, &(no), sizeof(no) },                         \
        { CKA_DECRYPT, &(no), sizeof(no) }, { CKA_WRAP, &(no), sizeof(no) },                             \
        { CKA_UNWRAP, &(no), sizeof(no) }, { CKA_DERIVE, &(no), sizeof(no) }

int hsm_generate_transfer_mac_key(Hsm *h, HsmObject *ret) {
        CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
        CK_KEY_TYPE type = CKK_GENERIC_SECRET;
        CK_ULONG value_len = 32;
        CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
        CK_MECHANISM m = { CKM_GENERIC_SECRET_KEY_GEN, NULL, 0 };
        CK_ATTRIBUTE tmpl[] = {
                TRANSFER_MAC_TEMPLATE(cls, type, yes, no),
                { CKA_VALUE_LEN, &value_len, sizeof(value_len) },
        };
        CK_OBJECT_HANDLE o;
        CK_RV rv;
        int r;

        r = hsm_ensure_session(h);
        if (r < 0)
                return r;
        rv = P11(h, C_GenerateKey, h->session, &m, tmpl, ELEMENTSOF(tmpl), &o);
        if (rv != CKR_OK)
                return hsm_handle_failed(h, rv);
        *ret = o;
        return 0;
}

int hsm_unwrap_transfer_mac_key(Hsm *h, const HsmTransferKey *k, const uint8_t *wrapped, size_t len,
                                HsmObject *ret) {
        CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
        CK_KEY_TYPE type = CKK_GENERIC_SECRET;
        CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
        CK_ATTRIBUTE tmpl[] = { TRANSFER_MAC_TEMPLATE(cls, type, yes, no) };

        return unwrap(h, k, tmpl, ELEMENTSOF(tmpl), false, wrapped, len, ret);
}

int hsm_transfer_sign(Hsm *h, HsmObject key, const uint8_t *data, size_t len, uint8_t tag[HSM_TRANSFER_TAG_SIZE]) {
        CK_MECHANISM m = { CKM_SHA256_HMAC, NULL, 0 };
        CK_ULONG tag_len = HSM_TRANSFER_TAG_SIZE;
        CK_RV rv;
        int r;

        r = hsm_ensure_session(h);
        if (r < 0)
                return r;
        rv = P11(h, C_SignInit, h->session, &m, key);
        if (rv == CKR_OK)
                rv = P11(h, C_Sign, h->session, (CK_BYTE_PTR) data, len, tag, &tag_len);
        if (rv != CKR_OK)
                return hsm_handle_failed(h, rv);
        return tag_len == HSM_TRANSFER_TAG_SIZE ? 0 : -EIO;
}

int hsm_transfer_verify(Hsm *h, HsmObject key, const uint8_t *data, size_t len,
                        const uint8_t tag[HSM_TRANSFER_TAG_SIZE]) {
        CK_MECHANISM m = { CKM_SHA256_HMAC, NULL, 0 };
        CK_RV rv;
        int r;

        r = hsm_ensure_session(h);
        if (r < 0)
                return r;
        rv = P11(h, C_VerifyInit, h->session, &m, key);
        if (rv == CKR_OK)
                rv = P11(h, C_Verify, h->session, (CK_BYTE_PTR) data, len, (CK_BYTE_PTR) tag, HSM_TRANSFER_TAG_SIZE);
        if (rv == CKR_SIGNATURE_INVALID || rv == CKR_SIGNATURE_LEN_RANGE) {
                (void) hsm_rv_to_errno(h, rv);
                return -KEKERR_BLOB_INVALID;
        }
        if (rv != CKR_OK)
                return hsm_handle_failed(h, rv);
        return 0;
}
