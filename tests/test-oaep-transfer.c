/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * test-oaep-transfer plain|trusted MODULE TOKEN_URI PIN_FILE [SO_PIN_FILE]:
 * the RSA-OAEP SHA-256 path of pkcs11/hsm-transfer.c (HSM_TRANSFER_RSA_OAEP)
 * for the token matrix (tests/tokens/scenario.sh, steps oaep-plain and
 * oaep-trusted; docs/tokens.md). One token plays both ends of a DR move, as
 * two labels of it.
 *
 * plain: the mechanism alone, on a token without CKA_TRUSTED: a session RSA
 * key pair and a session AES key (and MAC key, for the HMAC profiles) made
 * extractable by this tool, through the Hsm's own session; the key moved by
 * hsm_wrap_object() under the public half (an HsmTransferKey of kind
 * RSA-OAEP) and hsm_unwrap_version() into kekd-oaep-dst version 1; then as
 * step 2 below from "wrap" on.
 *
 * trusted: kekd's whole DR path:
 *   1. set-up, straight through PKCS#11 (the module dlopen()ed, finalised
 *      before kekd's code opens it): the DR key pair is generated, its
 *      private half a token key with CKA_UNWRAP (the target's), its public
 *      half a session object whose modulus and exponent the SO imports as a
 *      token public key with CKA_WRAP and CKA_TRUSTED (the source's; what
 *      contrib/kekd-trust-key --import-rsa does). Only the SO can set
 *      CKA_TRUSTED, so this needs the SO PIN: test tokens only.
 *   2. through kekd's own code (hsm_open() on TOKEN_URI): a version (label
 *      kekd-oaep-src, version 1) generated wrappable under trusted keys only,
 *      under the first profile the token offers (gcm, cbc-hmac, ctr-hmac);
 *      a random plaintext encrypted under it; hsm_find_wrapping_key() must
 *      find the RSA key (kind RSA-OAEP); hsm_wrap_version() of each part;
 *      hsm_unwrap_version() of each part into kekd-oaep-dst version 1
 *      (restored form); the restored version must decrypt what the source
 *      encrypted; last, the wrapped AES part with one byte flipped must not
 *      unwrap (the CKR is printed: PKCS#11 names CKR_ENCRYPTED_DATA_INVALID,
 *      kekd's -KEKERR_BLOB_INVALID). Every object made is destroyed.
 * MODULE as kekd.conf names it (a path, or a p11-kit module name: then
 * $TEST_OAEP_RAW_MODULE is the path the set-up dlopen()s).
 * One line per step, "STEP ok ..." or "STEP FAILED: why" (the PKCS#11
 * function and CKR); exit 0 only if every step passed, 1 if one failed, 2
 * on bad arguments.
 */
#include "config.h"

#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/kekerr.h"
#include "common/macro.h"
#include "common/secret.h"
#include "daemon/log.h"
#include "daemon/pin.h"
#include "pkcs11/ckr.h"
#include "pkcs11/hsm-internal.h"
#include "pkcs11/hsm-transfer.h"
#include "pkcs11/hsm.h"

#define DR_LABEL "kekd-oaep-dr"
#define SRC_LABEL "kekd-oaep-src"
#define DST_LABEL "kekd-oaep-dst"
#define BAD_LABEL "kekd-oaep-bad"

static int failed(const char *step, const char *why) {
        printf("%s FAILED: %s\n", step, why);
        return 1;
}

static int failed_rv(const char *step, const char *call, CK_RV rv) {
        printf("%s FAILED: %s: %s\n", step, call, ckr_name(rv));
        return 1;
}

/* The slot whose token label is label; CK_INVALID_HANDLE-like (ULONG_MAX) if none. */
static CK_SLOT_ID find_slot(CK_FUNCTION_LIST_PTR p, const char *label) {
        CK_SLOT_ID slots[64];
        CK_ULONG n = 64;

        if (p->C_GetSlotList(CK_TRUE, slots, &n) != CKR_OK)
                return (CK_SLOT_ID) -1;
        for (CK_ULONG i = 0; i < n; i++) {
                CK_TOKEN_INFO ti;
                size_t len = strlen(label);

                if (p->C_GetTokenInfo(slots[i], &ti) != CKR_OK || len > sizeof(ti.label))
                        continue;
                if (memcmp(ti.label, label, len) == 0 && (len == sizeof(ti.label) || ti.label[len] == ' '))
                        return slots[i];
        }
        return (CK_SLOT_ID) -1;
}

/* Step 1: the DR key pair, its public half imported by the SO as a trusted wrapping key. */
static int setup_dr_key(const char *module, const char *token, const Secret *pin, const Secret *so_pin) {
        CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
        CK_ULONG bits = 2048;
        CK_BYTE e[] = { 1, 0, 1 }, modulus[1024], exponent[16];
        CK_OBJECT_CLASS pub_class = CKO_PUBLIC_KEY;
        CK_KEY_TYPE rsa = CKK_RSA;
        CK_ATTRIBUTE pub[] = {
                { CKA_TOKEN, &no, sizeof(no) },           { CKA_WRAP, &yes, sizeof(yes) },
                { CKA_MODULUS_BITS, &bits, sizeof(bits) }, { CKA_PUBLIC_EXPONENT, e, sizeof(e) },
        };
        CK_ATTRIBUTE prv[] = {
                { CKA_TOKEN, &yes, sizeof(yes) },     { CKA_PRIVATE, &yes, sizeof(yes) },
                { CKA_SENSITIVE, &yes, sizeof(yes) }, { CKA_EXTRACTABLE, &no, sizeof(no) },
                { CKA_UNWRAP, &yes, sizeof(yes) },    { CKA_DECRYPT, &no, sizeof(no) },
                { CKA_SIGN, &no, sizeof(no) },        { CKA_LABEL, (void *) DR_LABEL, strlen(DR_LABEL) },
        };
        CK_ATTRIBUTE read[] = { { CKA_MODULUS, modulus, sizeof(modulus) },
                                { CKA_PUBLIC_EXPONENT, exponent, sizeof(exponent) } };
        CK_MECHANISM gen = { CKM_RSA_PKCS_KEY_PAIR_GEN, NULL, 0 };
        CK_OBJECT_HANDLE hpub, hprv, imported;
        CK_RV (*get)(CK_FUNCTION_LIST_PTR_PTR);
        CK_FUNCTION_LIST_PTR p = NULL;
        CK_SESSION_HANDLE s;
        CK_SLOT_ID slot;
        CK_RV rv;
        void *dl;
        int r = 1;

        dl = dlopen(module, RTLD_NOW | RTLD_LOCAL);
        get = dl ? (CK_RV(*)(CK_FUNCTION_LIST_PTR_PTR)) dlsym(dl, "C_GetFunctionList") : NULL;
        if (!get || get(&p) != CKR_OK)
                return failed("setup", "cannot load the module");
        rv = p->C_Initialize(NULL);
        if (rv != CKR_OK)
                return failed_rv("setup", "C_Initialize", rv);
        slot = find_slot(p, token);
        if (slot == (CK_SLOT_ID) -1) {
                (void) p->C_Finalize(NULL);
                return failed("setup", "no such token");
        }
        rv = p->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &s);
        if (rv != CKR_OK) {
                (void) p->C_Finalize(NULL);
                return failed_rv("setup", "C_OpenSession", rv);
        }
        if ((rv = p->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR) pin->data, pin->len)) != CKR_OK)
                r = failed_rv("keypair", "C_Login(USER)", rv);
        else if ((rv = p->C_GenerateKeyPair(s, &gen, pub, ELEMENTSOF(pub), prv, ELEMENTSOF(prv), &hpub, &hprv)) !=
                 CKR_OK)
                r = failed_rv("keypair", "C_GenerateKeyPair", rv);
        else if ((rv = p->C_GetAttributeValue(s, hpub, read, ELEMENTSOF(read))) != CKR_OK)
                r = failed_rv("keypair", "C_GetAttributeValue(CKA_MODULUS)", rv);
        else {
                CK_ATTRIBUTE imp[] = {
                        { CKA_CLASS, &pub_class, sizeof(pub_class) },
                        { CKA_KEY_TYPE, &rsa, sizeof(rsa) },
                        { CKA_TOKEN, &yes, sizeof(yes) },
                        { CKA_PRIVATE, &no, sizeof(no) },
                        { CKA_WRAP, &yes, sizeof(yes) },
                        { CKA_ENCRYPT, &no, sizeof(no) },
                        { CKA_VERIFY, &no, sizeof(no) },
                        { CKA_TRUSTED, &yes, sizeof(yes) }, /* only the SO may set it */
                        { CKA_LABEL, (void *) DR_LABEL, strlen(DR_LABEL) },
                        { CKA_MODULUS, modulus, read[0].ulValueLen },
                        { CKA_PUBLIC_EXPONENT, exponent, read[1].ulValueLen },
                };
                CK_BBOOL trusted = CK_FALSE;
                CK_ATTRIBUTE t = { CKA_TRUSTED, &trusted, sizeof(trusted) };

                printf("keypair ok: RSA-%lu, private half a token key with CKA_UNWRAP\n", (unsigned long) bits);
                (void) p->C_DestroyObject(s, hpub);
                (void) p->C_Logout(s);
                if ((rv = p->C_Login(s, CKU_SO, (CK_UTF8CHAR_PTR) so_pin->data, so_pin->len)) != CKR_OK)
                        r = failed_rv("trust", "C_Login(SO)", rv);
                else if ((rv = p->C_CreateObject(s, imp, ELEMENTSOF(imp), &imported)) != CKR_OK)
                        r = failed_rv("trust", "C_CreateObject(CKA_TRUSTED)", rv);
                else if ((rv = p->C_GetAttributeValue(s, imported, &t, 1)) != CKR_OK || trusted != CK_TRUE)
                        r = rv != CKR_OK ? failed_rv("trust", "C_GetAttributeValue(CKA_TRUSTED)", rv)
                                         : failed("trust", "CKA_TRUSTED reads back FALSE");
                else {
                        printf("trust ok: the SO imported the public half with CKA_TRUSTED\n");
                        r = 0;
                }
                (void) p->C_Logout(s);
        }
        (void) p->C_CloseSession(s);
        (void) p->C_Finalize(NULL);
        return r;
}

static int hsm_failed(const char *step, Hsm *h, int r) {
        char why[256];

        snprintf(why, sizeof(why), "%s (%s)", error_text(r), hsm_last_error(h));
        return failed(step, why);
}

/*
 * plain: the DR key pair and the key to move as session objects of h's session, made here
 * (kekd makes no extractable key but under CKA_WRAP_WITH_TRUSTED); the public half is used
 * without CKA_TRUSTED, which the token then does not check.
 */
static int plain_keys(Hsm *h, bool has_mac, HsmObject *key, HsmObject *mac, HsmTransferKey *wk, HsmTransferKey *uk) {
        CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
        CK_ULONG bits = 2048, len = 32;
        CK_BYTE e[] = { 1, 0, 1 };
        CK_ATTRIBUTE pub[] = {
                { CKA_TOKEN, &no, sizeof(no) },           { CKA_WRAP, &yes, sizeof(yes) },
                { CKA_MODULUS_BITS, &bits, sizeof(bits) }, { CKA_PUBLIC_EXPONENT, e, sizeof(e) },
        };
        CK_ATTRIBUTE prv[] = {
                { CKA_TOKEN, &no, sizeof(no) },       { CKA_PRIVATE, &yes, sizeof(yes) },
                { CKA_SENSITIVE, &yes, sizeof(yes) }, { CKA_UNWRAP, &yes, sizeof(yes) },
        };
        CK_ATTRIBUTE aes[] = {
                { CKA_TOKEN, &no, sizeof(no) },         { CKA_VALUE_LEN, &len, sizeof(len) },
                { CKA_SENSITIVE, &yes, sizeof(yes) },   { CKA_EXTRACTABLE, &yes, sizeof(yes) },
                { CKA_ENCRYPT, &yes, sizeof(yes) },     { CKA_DECRYPT, &yes, sizeof(yes) },
        };
        CK_ATTRIBUTE hmac[] = {
                { CKA_TOKEN, &no, sizeof(no) },         { CKA_VALUE_LEN, &len, sizeof(len) },
                { CKA_SENSITIVE, &yes, sizeof(yes) },   { CKA_EXTRACTABLE, &yes, sizeof(yes) },
                { CKA_SIGN, &yes, sizeof(yes) },        { CKA_VERIFY, &yes, sizeof(yes) },
        };
        CK_MECHANISM gen_rsa = { CKM_RSA_PKCS_KEY_PAIR_GEN, NULL, 0 }, gen_aes = { CKM_AES_KEY_GEN, NULL, 0 },
                     gen_mac = { CKM_GENERIC_SECRET_KEY_GEN, NULL, 0 };
        CK_OBJECT_HANDLE hpub, hprv;
        CK_RV rv;

        if (hsm_ensure_session(h) < 0)
                return failed("keypair", hsm_last_error(h));
        rv = h->module->C_GenerateKeyPair(h->session, &gen_rsa, pub, ELEMENTSOF(pub), prv, ELEMENTSOF(prv), &hpub,
                                          &hprv);
        if (rv != CKR_OK)
                return failed_rv("keypair", "C_GenerateKeyPair", rv);
        printf("keypair ok: RSA-%lu session key pair, not trusted\n", (unsigned long) bits);
        rv = h->module->C_GenerateKey(h->session, &gen_aes, aes, ELEMENTSOF(aes), key);
        if (rv == CKR_OK && has_mac)
                rv = h->module->C_GenerateKey(h->session, &gen_mac, hmac, ELEMENTSOF(hmac), mac);
        if (rv != CKR_OK)
                return failed_rv("version", "C_GenerateKey(extractable)", rv);
        *wk = (HsmTransferKey) { .handle = hpub, .kind = HSM_TRANSFER_RSA_OAEP };
        *uk = (HsmTransferKey) { .handle = hprv, .kind = HSM_TRANSFER_RSA_OAEP };
        return 0;
}

/*
 * "kept": what kekd's unwrap left in the token is as hsm-transfer.h promises, whatever the token did
 * with the template: each key object sensitive, not extractable, its value unreadable; or, when
 * the unwrap was refused (-KEKERR_UNSUPPORTED: the token ignored the template), no key object of
 * DST_LABEL at all. r is the unwrap's result, key and mac (0: none) what it made.
 */
static int kept(Hsm *h, int r, HsmObject key, HsmObject mac) {
        _cleanup_free_ HsmKeyRef *refs = NULL;
        size_t n = 0;
        HsmObject o;

        if (r >= 0) {
                HsmObject objs[2] = { key, mac };

                for (size_t i = 0; i < 2 && objs[i]; i++) {
                        HsmKeyAttrs a = {};

                        if (hsm_key_attributes(h, objs[i], &a) < 0)
                                return hsm_failed("kept", h, -EIO);
                        if (!a.sensitive || a.extractable || a.value_readable) {
                                printf("kept FAILED: an unwrapped key reads sensitive %d, extractable %d, value %s\n",
                                       a.sensitive, a.extractable, a.value_readable ? "readable" : "unreadable");
                                return 1;
                        }
                }
                printf("kept ok: the unwrapped keys are sensitive, not extractable, their values unreadable\n");
                return 0;
        }
        if (r != -KEKERR_UNSUPPORTED)
                return 0; /* another failure: the unwrap step says so */
        if (hsm_list_keys(h, &refs, &n) < 0)
                return hsm_failed("kept", h, -EIO);
        for (size_t i = 0; i < n; i++)
                if (strcmp(refs[i].label, DST_LABEL) == 0)
                        return failed("kept", "the refused unwrap left a key object in the token");
        if (hsm_find_mac_key(h, DST_LABEL, 1, &o) >= 0)
                return failed("kept", "the refused unwrap left a MAC key object in the token");
        printf("kept ok: the unwrap was refused (the token ignored the template) and left nothing\n");
        return 0;
}

/* Step 2: a version moved by kekd's RSA-OAEP SHA-256 transfer, and checked by decrypting. */
static int move_version(Hsm *h, bool trusted) {
        static const HsmProfile order[] = { HSM_PROFILE_GCM, HSM_PROFILE_CBC_HMAC, HSM_PROFILE_CTR_HMAC };
        uint8_t pt[64], iv[HSM_PROFILE_IV_MAX] = {}, ct[64 + 64], aad[] = "kekd oaep transfer";
        _cleanup_free_ uint8_t *w_aes = NULL, *w_mac = NULL;
        size_t l_aes = 0, l_mac = 0, ct_len;
        HsmObject key = 0, mac = 0, dkey, dmac = 0, bad;
        HsmTransferKey wk, uk;
        Secret *back = NULL;
        HsmProfile p = _HSM_PROFILE_MAX;
        bool has_mac;
        int r;

        for (size_t i = 0; i < ELEMENTSOF(order) && p == _HSM_PROFILE_MAX; i++)
                if (hsm_profile_available(h, order[i], NULL) == 1)
                        p = order[i];
        if (p == _HSM_PROFILE_MAX)
                return failed("version", "the token offers no profile");
        has_mac = hsm_profile_has_mac_key(p);
        if (!trusted) {
                if (plain_keys(h, has_mac, &key, &mac, &wk, &uk) != 0)
                        return 1;
        } else {
                r = hsm_generate_version_key(h, SRC_LABEL, 1, true, &key);
                if (r >= 0 && has_mac)
                        r = hsm_generate_version_mac_key(h, SRC_LABEL, 1, true, &mac);
                if (r < 0)
                        return hsm_failed("version", h, r);
        }
        for (size_t i = 0; i < sizeof(pt); i++)
                pt[i] = (uint8_t) (i * 7 + 1);
        for (size_t i = 0; i < sizeof(iv); i++)
                iv[i] = (uint8_t) (0xa0 + i);
        ct_len = hsm_profile_ct_size(p, sizeof(pt));
        r = hsm_profile_encrypt(h, p, key, mac, iv, aad, sizeof(aad), pt, sizeof(pt), ct);
        if (r < 0)
                return hsm_failed("version", h, r);
        printf("version ok: profile %s, %s, %zu bytes encrypted\n", hsm_profile_name(p),
               trusted ? "wrappable under trusted keys only" : "extractable", sizeof(pt));
        if (!trusted) {
                r = hsm_wrap_object(h, &wk, key, &w_aes, &l_aes);
                if (r >= 0 && has_mac)
                        r = hsm_wrap_object(h, &wk, mac, &w_mac, &l_mac);
                if (r < 0)
                        return hsm_failed("wrap", h, r);
                goto wrapped;
        }

        r = hsm_find_wrapping_key(h, DR_LABEL, &wk);
        if (r < 0)
                return hsm_failed("find", h, r);
        if (wk.kind != HSM_TRANSFER_RSA_OAEP)
                return failed("find", "the wrapping key is not taken as RSA-OAEP");
        r = hsm_find_unwrapping_key(h, DR_LABEL, &uk);
        if (r < 0)
                return hsm_failed("find", h, r);
        if (uk.kind != HSM_TRANSFER_RSA_OAEP)
                return failed("find", "the unwrapping key is not taken as RSA-OAEP");
        printf("find ok: trusted RSA public key to wrap, private RSA key to unwrap\n");

        r = hsm_wrap_version(h, &wk, SRC_LABEL, 1, HSM_PART_AES, &w_aes, &l_aes);
        if (r >= 0 && has_mac)
                r = hsm_wrap_version(h, &wk, SRC_LABEL, 1, HSM_PART_MAC, &w_mac, &l_mac);
        if (r < 0)
                return hsm_failed("wrap", h, r);
wrapped:
        printf("wrap ok: CKM_RSA_PKCS_OAEP SHA-256, %zu bytes%s\n", l_aes, has_mac ? " (and the MAC key)" : "");

        r = hsm_unwrap_version(h, &uk, DST_LABEL, 1, HSM_PART_AES, false, w_aes, l_aes, &dkey);
        if (r >= 0 && has_mac)
                r = hsm_unwrap_version(h, &uk, DST_LABEL, 1, HSM_PART_MAC, false, w_mac, l_mac, &dmac);
        if (kept(h, r, dkey, has_mac ? dmac : 0) != 0)
                return 1;
        if (r == -KEKERR_UNSUPPORTED)
                return failed("unwrap", "C_UnwrapKey: template ignored (the key came out not sensitive or "
                                        "extractable): kekd destroyed it and refused");
        if (r < 0)
                return hsm_failed("unwrap", h, r);
        printf("unwrap ok: %s version 1\n", DST_LABEL);
        /*
         * kekd adopts an unwrapped version only in the restored form PKCS#11 gives it (C_UnwrapKey:
         * CKA_ALWAYS_SENSITIVE and CKA_NEVER_EXTRACTABLE FALSE). Required of the trusted path, which
         * is kekd's; reported for plain, which only shows the mechanism.
         */
        HsmObject found = 0, found_mac = 0;
        r = hsm_find_version_key(h, DST_LABEL, 1, true, &found);
        if (r >= 0 && has_mac)
                r = hsm_find_version_mac_key(h, DST_LABEL, 1, true, &found_mac);
        if (r < 0) {
                HsmKeyAttrs a = {};
                char why[256];

                (void) hsm_key_attributes(h, dkey, &a);
                snprintf(why, sizeof(why), "the unwrapped key is not in kekd's restored form (%s): TOKEN=%d PRIVATE=%d "
                         "SENSITIVE=%d ALWAYS_SENSITIVE=%d EXTRACTABLE=%d NEVER_EXTRACTABLE=%d VALUE_READABLE=%d", error_text(r), a.token,
                         a.private_, a.sensitive, a.always_sensitive, a.extractable, a.never_extractable, a.value_readable);
                if (trusted)
                        return failed("adopt", why);
                printf("adopt not asserted (plain): %s\n", why);
        } else {
                printf("adopt ok: found in the restored form\n");
                dkey = found;
                dmac = found_mac;
        }

        r = hsm_profile_decrypt(h, p, dkey, dmac, iv, aad, sizeof(aad), ct, ct_len, &back);
        if (r < 0)
                return hsm_failed("decrypt", h, r);
        r = back->len == sizeof(pt) && memcmp(back->data, pt, sizeof(pt)) == 0;
        back = secret_free(back);
        if (!r)
                return failed("decrypt", "the moved version decrypts to other bytes");
        printf("decrypt ok: the moved version decrypts what the source encrypted\n");

        /*
         * Last, since a token may take the failure for a lost session (openCryptoki 3.8.1 answers
         * CKR_FUNCTION_FAILED, which kekd treats as the device's) and the session's objects with it.
         */
        w_aes[l_aes / 2] ^= 0x01;
        r = hsm_unwrap_version(h, &uk, BAD_LABEL, 1, HSM_PART_AES, false, w_aes, l_aes, &bad);
        if (r >= 0) {
                (void) hsm_destroy_object(h, bad);
                return failed("tamper", "a wrapped key with one byte flipped unwrapped");
        }
        /* PKCS#11 names CKR_ENCRYPTED_DATA_INVALID or CKR_WRAPPED_KEY_INVALID (-KEKERR_BLOB_INVALID). */
        printf("tamper ok: one byte flipped does not unwrap (%s%s)\n", hsm_last_error(h),
               r == -KEKERR_BLOB_INVALID ? "" : "; not the CKR PKCS#11 names, so not taken for bad input");
        return 0;
}

int main(int argc, char *argv[]) {
        _cleanup_(secret_freep) Secret *pin = NULL, *so_pin = NULL;
        _cleanup_(hsm_freep) Hsm *h = NULL;
        const char *why = NULL, *label;
        char token[HSM_KEY_LABEL_MAX + 1];
        HsmTransferKey k;
        bool trusted;
        int r;

        trusted = argc == 6 && strcmp(argv[1], "trusted") == 0;
        if (!(trusted || (argc == 5 && strcmp(argv[1], "plain") == 0)) || strncmp(argv[3], "pkcs11:token=", 13) != 0) {
                fprintf(stderr, "usage: %s plain|trusted MODULE pkcs11:token=LABEL PIN_FILE [SO_PIN_FILE]\n",
                        argv[0]);
                return 2;
        }
        argv++; /* MODULE is argv[1] from here */
        argc--;
        /* The label as the URI gives it, up to the next attribute; %20 is the one escape the matrix uses. */
        label = argv[2] + 13;
        size_t n = 0;
        for (const char *c = label; *c && *c != ';' && n < HSM_KEY_LABEL_MAX; c++) {
                if (strncmp(c, "%20", 3) == 0) {
                        token[n++] = ' ';
                        c += 2;
                } else
                        token[n++] = *c;
        }
        token[n] = 0;
        if (secret_heap_init(1 << 20) < 0 || pin_read(argv[3], &pin, &why) < 0 ||
            (trusted && pin_read(argv[4], &so_pin, &why) < 0)) {
                fprintf(stderr, "%s: %s\n", argv[0], why ? why : "cannot read a PIN");
                return 2;
        }
        /* $TEST_OAEP_RAW_MODULE: a path for dlopen() where MODULE is a p11-kit module name (NSS). */
        if (trusted && setup_dr_key(getenv("TEST_OAEP_RAW_MODULE") ?: argv[1], token, pin, so_pin) != 0)
                return 1;
        r = hsm_open(argv[1], argv[2], pin, &h, &why);
        if (r < 0)
                return failed("open", why ? why : error_text(r));
        r = move_version(h, trusted);
        /* Leave nothing behind: the versions and both halves of the DR key. */
        (void) hsm_destroy_version_keys(h, SRC_LABEL, 1);
        (void) hsm_destroy_version_keys(h, DST_LABEL, 1);
        (void) hsm_destroy_version_keys(h, BAD_LABEL, 1);
        if (hsm_find_wrapping_key(h, DR_LABEL, &k) >= 0)
                (void) hsm_destroy_object(h, k.handle);
        if (hsm_find_unwrapping_key(h, DR_LABEL, &k) >= 0)
                (void) hsm_destroy_object(h, k.handle);
        return r;
}
