/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Known-answer tests of the mechanism profiles (pkcs11/hsm.h) on a SoftHSM2
 * token, cross-checked with OpenSSL: a key of KNOWN value is put into the
 * token with C_CreateObject (test-only: this file reaches into pkcs11/'s
 * internal header for the Hsm's session; kekd itself only generates keys in
 * the token), the profile's hsm_* encryption runs in the token, and OpenSSL's
 * EVP (AES-256-CTR, HMAC-SHA256, AES-256-GCM) computes the same from the same
 * key, IV and AAD; then the token decrypts what OpenSSL produced, and refuses
 * it once any byte of ciphertext, tag, IV or AAD changed. Also: the MAC key
 * kekd generates is sensitive and never extractable, and the AES-key
 * listings and searches never see it.
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "common/kekerr.h"
#include "common/secret.h"
#include "pkcs11/hsm-internal.h"
#include "pkcs11/hsm.h"
#include "pkcs11/probe.h"
#include "daemon/record.h"
#include "proto/blob.h"
#include "proto/kek.pb-c.h"
#include "tests/lib/tap.h"
#include "tests/lib/token.h"

static const uint8_t K_AES[32] = {
        0x60, 0x3d, 0xeb, 0x10, 0x15, 0xca, 0x71, 0xbe, 0x2b, 0x73, 0xae, 0xf0, 0x85, 0x7d, 0x77, 0x81,
        0x1f, 0x35, 0x2c, 0x07, 0x3b, 0x61, 0x08, 0xd7, 0x2d, 0x98, 0x10, 0xa3, 0x09, 0x14, 0xdf, 0xf4,
};
static const uint8_t K_MAC[32] = {
        0x0b, 0x0b, 0x0b, 0x0b, 0x0b, 0x0b, 0x0b, 0x0b, 0x0b, 0x0b, 0x0b, 0x0b, 0x0b, 0x0b, 0x0b, 0x0b,
        0xc0, 0xff, 0xee, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd,
};
/* The low bytes make the 128-bit counter carry across bytes within the first blocks. */
static const uint8_t CTR_IV[16] = {
        0xf0, 0xf1, 0xf2, 0xf3, 0xf4, 0xf5, 0xf6, 0xf7, 0xf8, 0xf9, 0xfa, 0xfb, 0xfc, 0xfd, 0xff, 0xfe,
};
static const uint8_t GCM_IV[12] = { 0xca, 0xfe, 0xba, 0xbe, 0xfa, 0xce, 0xdb, 0xad, 0xde, 0xca, 0xf8, 0x88 };

/* Test-only: a session key of known value, through the Hsm's own session (handles are per application). */
static int create_known_key(Hsm *h, CK_KEY_TYPE type, const uint8_t value[32], HsmObject *ret) {
        CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
        CK_BBOOL yes = CK_TRUE, no = CK_FALSE, aes = type == CKK_AES;
        CK_BBOOL mac = !aes;
        CK_ATTRIBUTE tmpl[] = {
                { CKA_CLASS, &cls, sizeof(cls) },
                { CKA_KEY_TYPE, &type, sizeof(type) },
                { CKA_VALUE, (void *) value, 32 },
                { CKA_TOKEN, &no, sizeof(no) },
                { CKA_SENSITIVE, &yes, sizeof(yes) },
                { CKA_ENCRYPT, &aes, sizeof(aes) },
                { CKA_DECRYPT, &aes, sizeof(aes) },
                { CKA_SIGN, &mac, sizeof(mac) },
                { CKA_VERIFY, &mac, sizeof(mac) },
        };
        CK_OBJECT_HANDLE o;

        if (hsm_ensure_session(h) < 0)
                return -EIO;
        if (h->module->C_CreateObject(h->session, tmpl, ELEMENTSOF(tmpl), &o) != CKR_OK)
                return -EIO;
        *ret = o;
        return 0;
}

/* OpenSSL's AES-256-CTR then HMAC-SHA256 over be32(aad_len) || aad || iv || ct: out is ct || tag. */
static void ref_ctr_hmac(const uint8_t *iv, const uint8_t *aad, size_t aad_len, const uint8_t *pt, size_t len,
                         uint8_t *out) {
        EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
        uint8_t *mac_in = malloc(4 + aad_len + 16 + len);
        size_t tag_len = 32;
        int n = 0, m = 0;

        EVP_EncryptInit_ex(c, EVP_aes_256_ctr(), NULL, K_AES, iv);
        EVP_EncryptUpdate(c, out, &n, pt, (int) len);
        EVP_EncryptFinal_ex(c, out + n, &m);
        EVP_CIPHER_CTX_free(c);
        mac_in[0] = (uint8_t) (aad_len >> 24);
        mac_in[1] = (uint8_t) (aad_len >> 16);
        mac_in[2] = (uint8_t) (aad_len >> 8);
        mac_in[3] = (uint8_t) aad_len;
        memcpy(mac_in + 4, aad, aad_len);
        memcpy(mac_in + 4 + aad_len, iv, 16);
        memcpy(mac_in + 4 + aad_len + 16, out, len);
        (void) EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, K_MAC, sizeof(K_MAC), mac_in, 4 + aad_len + 16 + len,
                         out + len, 32, &tag_len);
        free(mac_in);
}

/* OpenSSL's AES-256-CBC with PKCS#7 padding, then the same HMAC: out is ct || tag; returns the ct length. */
static size_t ref_cbc_hmac(const uint8_t *iv, const uint8_t *aad, size_t aad_len, const uint8_t *pt, size_t len,
                           uint8_t *out) {
        EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
        size_t ct_len, tag_len = 32;
        uint8_t *mac_in;
        int n = 0, m = 0;

        EVP_EncryptInit_ex(c, EVP_aes_256_cbc(), NULL, K_AES, iv);
        EVP_EncryptUpdate(c, out, &n, pt, (int) len);
        EVP_EncryptFinal_ex(c, out + n, &m);
        EVP_CIPHER_CTX_free(c);
        ct_len = (size_t) (n + m);
        mac_in = malloc(4 + aad_len + 16 + ct_len);
        mac_in[0] = (uint8_t) (aad_len >> 24);
        mac_in[1] = (uint8_t) (aad_len >> 16);
        mac_in[2] = (uint8_t) (aad_len >> 8);
        mac_in[3] = (uint8_t) aad_len;
        memcpy(mac_in + 4, aad, aad_len);
        memcpy(mac_in + 4 + aad_len, iv, 16);
        memcpy(mac_in + 4 + aad_len + 16, out, ct_len);
        (void) EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, K_MAC, sizeof(K_MAC), mac_in, 4 + aad_len + 16 + ct_len,
                         out + ct_len, 32, &tag_len);
        free(mac_in);
        return ct_len;
}

static void test_cbc_hmac_kat(Hsm *h, HsmObject key, HsmObject mac) {
        static const size_t lens[] = { 1, 15, 16, 40, AEK_MAX_SIZE };
        uint8_t header[BLOB_HEADER_MAX], aad[BLOB_AAD_MAX], pt[AEK_MAX_SIZE];
        uint8_t got[AEK_MAX_SIZE + 48], want[AEK_MAX_SIZE + 48];
        int hl = blob_header_profile(HSM_PROFILE_CBC_HMAC, "kat", 7, header), al;
        size_t cl;

        for (size_t i = 0; i < sizeof(pt); i++)
                pt[i] = (uint8_t) (i * 13 + 5);
        al = blob_aad(header, (size_t) hl, (const uint8_t *) "ctx", 3, aad);
        for (size_t t = 0; t < ELEMENTSOF(lens); t++) {
                size_t len = lens[t];
                _cleanup_secret_ Secret *dec = NULL;
                int r;

                memset(got, 0, sizeof(got));
                cl = ref_cbc_hmac(CTR_IV, aad, (size_t) al, pt, len, want);
                is_int(cl + 32, hsm_profile_ct_size(HSM_PROFILE_CBC_HMAC, len), "cbc-hmac: %zu bytes: ciphertext size as OpenSSL's", len);
                r = hsm_encrypt_cbc_hmac(h, key, mac, CTR_IV, aad, (size_t) al, pt, len, got);
                is_int(r, 0, "cbc-hmac: %zu bytes encrypted in the token", len);
                ok(memcmp(got, want, cl + 32) == 0, "cbc-hmac: %zu bytes: ciphertext and tag equal OpenSSL's", len);
                r = hsm_decrypt_cbc_hmac(h, key, mac, CTR_IV, aad, (size_t) al, want, cl + 32, &dec);
                ok(r == 0 && dec && dec->len == len && memcmp(dec->data, pt, len) == 0,
                   "cbc-hmac: %zu bytes: OpenSSL's ciphertext decrypts to the plaintext (%d)", len, r);
        }
        cl = ref_cbc_hmac(CTR_IV, aad, (size_t) al, pt, 40, want);
        for (int what = 0; what < 3; what++) {
                _cleanup_secret_ Secret *dec = NULL;
                uint8_t ct[48 + 32], iv[16];
                static const char *names[] = { "the last ciphertext byte (padding)", "a tag byte", "an IV byte" };

                memcpy(ct, want, sizeof(ct));
                memcpy(iv, CTR_IV, sizeof(iv));
                if (what == 0)
                        ct[47] ^= 1;
                else if (what == 1)
                        ct[48] ^= 1;
                else
                        iv[0] ^= 1;
                is_int(hsm_decrypt_cbc_hmac(h, key, mac, iv, aad, (size_t) al, ct, sizeof(ct), &dec), -KEKERR_BLOB_INVALID,
                       "cbc-hmac: %s changed: refused", names[what]);
                ok(!dec, "cbc-hmac: %s changed: no plaintext", names[what]);
        }
        {
                _cleanup_secret_ Secret *dec = NULL;

                is_int(hsm_decrypt_cbc_hmac(h, key, mac, CTR_IV, aad, (size_t) al, want, 47 + 32, &dec), -KEKERR_BLOB_INVALID,
                       "cbc-hmac: a ciphertext that is not whole blocks is refused");
        }
}

/* OpenSSL's AES-256-GCM: out is ct || 16-byte tag. */
static void ref_gcm(const uint8_t *iv, const uint8_t *aad, size_t aad_len, const uint8_t *pt, size_t len, uint8_t *out) {
        EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
        int n = 0, m = 0;

        EVP_EncryptInit_ex(c, EVP_aes_256_gcm(), NULL, K_AES, iv);
        EVP_EncryptUpdate(c, NULL, &n, aad, (int) aad_len);
        EVP_EncryptUpdate(c, out, &n, pt, (int) len);
        EVP_EncryptFinal_ex(c, out + n, &m);
        EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, 16, out + len);
        EVP_CIPHER_CTX_free(c);
}

static void test_names(void) {
        HsmProfile p = _HSM_PROFILE_MAX;

        for (unsigned i = 0; i < _HSM_PROFILE_MAX; i++)
                ok(hsm_profile_name((HsmProfile) i) && hsm_profile_from_name(hsm_profile_name((HsmProfile) i), &p) == 0 &&
                           p == (HsmProfile) i,
                   "profile %u is named '%s' and back", i, hsm_profile_name((HsmProfile) i) ?: "(null)");
        is_int(hsm_profile_from_name("auto", &p), -EINVAL, "'auto' is not a profile");
        is_int(hsm_profile_from_name("GCM", &p), -EINVAL, "names are exact");
        ok(hsm_profile_name(_HSM_PROFILE_MAX) == NULL, "no name past the last profile");
        ok(hsm_profile_iv_size(HSM_PROFILE_CTR_HMAC) == 16 && hsm_profile_overhead(HSM_PROFILE_CTR_HMAC) == 32 &&
                   hsm_profile_iv_size(HSM_PROFILE_GCM) == 12 && hsm_profile_overhead(HSM_PROFILE_GCM) == 16,
           "IV and tag sizes per profile");
}

static void test_ctr_hmac_kat(Hsm *h, HsmObject key, HsmObject mac) {
        static const size_t lens[] = { 1, 15, 16, 40, AEK_MAX_SIZE };
        uint8_t header[BLOB_HEADER_MAX], aad[BLOB_AAD_MAX], pt[AEK_MAX_SIZE];
        uint8_t got[AEK_MAX_SIZE + 32], want[AEK_MAX_SIZE + 32], iv[16];
        int hl = blob_header("kat", 7, header), al;

        for (size_t i = 0; i < sizeof(pt); i++)
                pt[i] = (uint8_t) (i * 7 + 3);
        header[0] = 0x02;
        al = blob_aad(header, (size_t) hl, (const uint8_t *) "ctx", 3, aad);
        for (size_t t = 0; t < ELEMENTSOF(lens); t++) {
                size_t len = lens[t];
                _cleanup_secret_ Secret *dec = NULL;
                int r;

                memset(got, 0, sizeof(got));
                ref_ctr_hmac(CTR_IV, aad, (size_t) al, pt, len, want);
                r = hsm_encrypt_ctr_hmac(h, key, mac, CTR_IV, aad, (size_t) al, pt, len, got);
                is_int(r, 0, "ctr-hmac: %zu bytes encrypted in the token", len);
                ok(memcmp(got, want, len) == 0, "ctr-hmac: %zu bytes: ciphertext equals OpenSSL's AES-256-CTR", len);
                ok(memcmp(got + len, want + len, 32) == 0, "ctr-hmac: %zu bytes: tag equals OpenSSL's HMAC-SHA256", len);

                /* A blob OpenSSL produced, decrypted by the token. */
                r = hsm_decrypt_ctr_hmac(h, key, mac, CTR_IV, aad, (size_t) al, want, len + 32, &dec);
                ok(r == 0 && dec && dec->len == len && memcmp(dec->data, pt, len) == 0,
                   "ctr-hmac: %zu bytes: OpenSSL's ciphertext decrypts to the plaintext (%d)", len, r);
        }

        /* Any change refuses; nothing is decrypted then. */
        ref_ctr_hmac(CTR_IV, aad, (size_t) al, pt, 40, want);
        for (int what = 0; what < 5; what++) {
                _cleanup_secret_ Secret *dec = NULL;
                uint8_t ct[72], a2[BLOB_AAD_MAX];
                static const char *names[] = { "a ciphertext byte", "a tag byte", "an IV byte", "an AAD byte",
                                               "the AAD length" };

                memcpy(ct, want, sizeof(ct));
                memcpy(iv, CTR_IV, sizeof(iv));
                memcpy(a2, aad, (size_t) al);
                if (what == 0)
                        ct[5] ^= 1;
                else if (what == 1)
                        ct[40 + 31] ^= 0x80;
                else if (what == 2)
                        iv[15] ^= 1;
                else if (what == 3)
                        a2[0] = 0x01; /* the same blob read as format 0x01 */
                is_int(hsm_decrypt_ctr_hmac(h, key, mac, iv, a2, (size_t) al - (what == 4), ct, sizeof(ct), &dec),
                       -KEKERR_BLOB_INVALID, "ctr-hmac: %s changed: refused", names[what]);
                ok(!dec, "ctr-hmac: %s changed: no plaintext", names[what]);
        }
        {
                _cleanup_secret_ Secret *dec = NULL;

                is_int(hsm_decrypt_ctr_hmac(h, key, mac, CTR_IV, aad, (size_t) al, want, 32, &dec), -KEKERR_BLOB_INVALID,
                       "ctr-hmac: a tag alone is refused");
        }
        /* The MAC key must be the version's: the AES key in its place is refused by the token or the tag. */
        {
                _cleanup_secret_ Secret *dec = NULL;
                int r = hsm_decrypt_ctr_hmac(h, key, key, CTR_IV, aad, (size_t) al, want, 72, &dec);

                ok(r < 0 && !dec, "ctr-hmac: the AES key as MAC key authenticates nothing (%d)", r);
        }
}

static void test_gcm_kat(Hsm *h, HsmObject key) {
        uint8_t aad[64], pt[48], got[64], want[64];
        _cleanup_secret_ Secret *dec = NULL;
        int r;

        for (size_t i = 0; i < sizeof(pt); i++)
                pt[i] = (uint8_t) (0xa0 + i);
        for (size_t i = 0; i < sizeof(aad); i++)
                aad[i] = (uint8_t) i;
        ref_gcm(GCM_IV, aad, sizeof(aad), pt, sizeof(pt), want);
        r = hsm_profile_encrypt(h, HSM_PROFILE_GCM, key, 0, (uint8_t *) GCM_IV, aad, sizeof(aad), pt, sizeof(pt), got);
        is_int(r, 0, "gcm: encrypted in the token");
        ok(memcmp(got, want, sizeof(got)) == 0, "gcm: ciphertext and tag equal OpenSSL's AES-256-GCM");
        r = hsm_profile_decrypt(h, HSM_PROFILE_GCM, key, 0, GCM_IV, aad, sizeof(aad), want, sizeof(want), &dec);
        ok(r == 0 && dec && dec->len == sizeof(pt) && memcmp(dec->data, pt, sizeof(pt)) == 0,
           "gcm: OpenSSL's ciphertext decrypts in the token");
        dec = secret_free(dec);
        want[3] ^= 1;
        is_int(hsm_profile_decrypt(h, HSM_PROFILE_GCM, key, 0, GCM_IV, aad, sizeof(aad), want, sizeof(want), &dec),
               -KEKERR_BLOB_INVALID, "gcm: a changed ciphertext is refused");

        /* A token that uses the zeroed IV buffer as the IV (SoftHSM2) is refused for gcm-token-iv. */
        {
                uint8_t iv[12] = { 0x55 };

                r = hsm_profile_encrypt(h, HSM_PROFILE_GCM_TOKEN_IV, key, 0, iv, aad, sizeof(aad), pt, sizeof(pt), got);
                is_int(r, -KEKERR_UNSUPPORTED, "gcm-token-iv: a token that does not generate the IV is refused");
                ok(iv[0] == 0x55, "gcm-token-iv: the caller's IV buffer is left alone on refusal");
        }
}

/* The MAC key kekd generates: never readable, and never taken for a KEK. */
static void test_mac_key(Hsm *h) {
        HsmObject aes, mac, found;
        HsmKeyAttrs a;
        _cleanup_free_ HsmKeyRef *refs = NULL;
        size_t n = 0;
        bool in_aes = false, in_mac = false;
        uint8_t iv[16] = { 9 }, aad[8] = { 1 }, pt[33] = { 2 }, ct[33 + 32];
        _cleanup_secret_ Secret *dec = NULL;
        int r;

        ok(hsm_generate_aes_key(h, "prof", 3, &aes) == 0, "AES key of version 3 generated");
        is_int(hsm_generate_mac_key(h, "prof", 3, &mac), 0, "MAC key of version 3 generated in the token");
        r = hsm_key_attributes(h, mac, &a);
        ok(r == 0 && a.token && a.private_ && a.sensitive && a.always_sensitive && !a.extractable &&
                   a.never_extractable && !a.value_readable && a.value_len == 32,
           "MAC key: token, private, sensitive, never extractable, value unreadable, 32 bytes");
        ok(hsm_find_mac_key(h, "prof", 3, &found) == 0 && found == mac, "hsm_find_mac_key finds it");
        is_int(hsm_find_mac_key(h, "prof", 4, &found), -ENOENT, "no MAC key of version 4");
        ok(hsm_find_key(h, "prof", 3, &found) == 0 && found == aes, "hsm_find_key still finds the AES key, not the MAC key");
        ok(hsm_list_keys(h, &refs, &n) == 0, "AES keys listed");
        for (size_t i = 0; i < n; i++)
                in_aes |= refs[i].handle == mac;
        ok(!in_aes, "hsm_list_keys does not list the MAC key");
        free(refs);
        refs = NULL;
        ok(hsm_list_mac_keys(h, &refs, &n) == 0, "MAC keys listed");
        for (size_t i = 0; i < n; i++)
                in_mac |= refs[i].handle == mac && refs[i].version == 3 && strcmp(refs[i].label, "prof") == 0;
        ok(in_mac, "hsm_list_mac_keys lists it with label and version");

        r = hsm_profile_encrypt(h, HSM_PROFILE_CTR_HMAC, aes, mac, iv, aad, sizeof(aad), pt, sizeof(pt), ct);
        is_int(r, 0, "ctr-hmac with generated keys: encrypted");
        r = hsm_profile_decrypt(h, HSM_PROFILE_CTR_HMAC, aes, mac, iv, aad, sizeof(aad), ct, sizeof(ct), &dec);
        ok(r == 0 && dec->len == sizeof(pt) && memcmp(dec->data, pt, sizeof(pt)) == 0, "ctr-hmac with generated keys: round trip");
        ok(memcmp(ct, pt, sizeof(pt)) != 0, "ctr-hmac: the ciphertext is not the plaintext");
        ok(hsm_destroy_object(h, mac) == 0 && hsm_find_mac_key(h, "prof", 3, &found) == -ENOENT,
           "MAC key destroyed, then not found");
}

/*
 * gcm-token-iv on tests/p11-fault's FIPS emulation ($P11_FAULT_TOKEN_IV=1):
 * a caller's IV is refused, the token's IV comes back, differs per wrap, and
 * OpenSSL's AES-256-GCM under that IV gives the same ciphertext and tag.
 */
static void test_token_iv(const TestToken *t, const char *lib, const Secret *pin) {
        _cleanup_(hsm_freep) Hsm *h = NULL;
        uint8_t aad[20], pt[32], got[48], want[48], iv1[12] = {}, iv2[12] = {}, zero[12] = {}, mine[12] = { 7 };
        _cleanup_secret_ Secret *dec = NULL;
        const char *why = NULL;
        HsmObject key;
        int r;

        setenv("P11_FAULT_MODULE", t->module, 1);
        r = hsm_open(lib, t->uri, pin, &h, &why);
        if (!ok(r == 0, "token-iv: the token opens through p11-fault (%s)", why ?: "ok"))
                return;
        setenv("P11_FAULT_TOKEN_IV", "1", 1); /* read at each C_EncryptInit */
        ok(create_known_key(h, CKK_AES, K_AES, &key) == 0, "token-iv: test-only AES key of known value created");
        memset(aad, 0x3c, sizeof(aad));
        memset(pt, 0x5a, sizeof(pt));
        is_int(hsm_profile_encrypt(h, HSM_PROFILE_GCM, key, 0, mine, aad, sizeof(aad), pt, sizeof(pt), got),
               -KEKERR_UNSUPPORTED, "token-iv: the token refuses a caller's IV (CKR_MECHANISM_PARAM_INVALID)");
        r = hsm_profile_encrypt(h, HSM_PROFILE_GCM_TOKEN_IV, key, 0, iv1, aad, sizeof(aad), pt, sizeof(pt), got);
        is_int(r, 0, "token-iv: gcm-token-iv encrypts");
        ok(memcmp(iv1, zero, sizeof(zero)) != 0, "token-iv: the token's IV came back");
        ref_gcm(iv1, aad, sizeof(aad), pt, sizeof(pt), want);
        ok(memcmp(got, want, sizeof(want)) == 0, "token-iv: ciphertext and tag equal OpenSSL's AES-256-GCM under that IV");
        r = hsm_profile_decrypt(h, HSM_PROFILE_GCM_TOKEN_IV, key, 0, iv1, aad, sizeof(aad), want, sizeof(want), &dec);
        ok(r == 0 && dec && dec->len == sizeof(pt) && memcmp(dec->data, pt, sizeof(pt)) == 0,
           "token-iv: OpenSSL's ciphertext decrypts with the token's IV");
        r = hsm_profile_encrypt(h, HSM_PROFILE_GCM_TOKEN_IV, key, 0, iv2, aad, sizeof(aad), pt, sizeof(pt), got);
        ok(r == 0 && memcmp(iv1, iv2, sizeof(iv1)) != 0, "token-iv: the next wrap gets another IV");
        unsetenv("P11_FAULT_TOKEN_IV");
}

/*
 * A token that silently replaces a caller's GCM IV ($P11_FAULT_TOKEN_IV=replace):
 * the gcm wrap is refused and its ciphertext not returned, since a blob
 * carrying the caller's IV could never be unwrapped.
 */
static void test_token_iv_replaced(const TestToken *t, const char *lib, const Secret *pin) {
        _cleanup_(hsm_freep) Hsm *h = NULL;
        uint8_t aad[20], pt[32], got[48], zero[48] = {}, mine[12] = { 7 }, before[12];
        const char *why = NULL;
        HsmObject key;
        int r;

        setenv("P11_FAULT_MODULE", t->module, 1);
        r = hsm_open(lib, t->uri, pin, &h, &why);
        if (!ok(r == 0, "token-iv replace: the token opens through p11-fault (%s)", why ?: "ok"))
                return;
        setenv("P11_FAULT_TOKEN_IV", "replace", 1); /* read at each C_EncryptInit */
        ok(create_known_key(h, CKK_AES, K_AES, &key) == 0, "token-iv replace: test-only AES key of known value created");
        memset(aad, 0x3c, sizeof(aad));
        memset(pt, 0x5a, sizeof(pt));
        memset(got, 0xee, sizeof(got));
        memcpy(before, mine, sizeof(before));
        is_int(hsm_profile_encrypt(h, HSM_PROFILE_GCM, key, 0, mine, aad, sizeof(aad), pt, sizeof(pt), got),
               -KEKERR_UNSUPPORTED, "token-iv replace: a gcm wrap whose IV the token replaced is refused");
        ok(memcmp(got, zero, sizeof(got)) == 0, "token-iv replace: its ciphertext is not returned");
        ok(memcmp(mine, before, sizeof(mine)) == 0, "token-iv replace: the caller's IV is left as it was");
        unsetenv("P11_FAULT_TOKEN_IV");
}

static void test_available(Hsm *h) {
        const char *missing = NULL;

        is_int(hsm_profile_available(h, HSM_PROFILE_GCM, &missing), 1, "SoftHSM2 offers gcm");
        is_int(hsm_profile_available(h, HSM_PROFILE_CTR_HMAC, &missing), 1, "SoftHSM2 offers ctr-hmac");
        is_int(hsm_profile_available(h, HSM_PROFILE_CBC_HMAC, &missing), 1, "SoftHSM2 offers cbc-hmac");
        is_int(hsm_profile_available(h, (HsmProfile) 77, &missing), -EINVAL, "an unknown profile is an error");
}

/* VersionInfo.profile in the key record: kept per version; absent (an older kekd's record) is gcm. */
static void test_record(void) {
        KeyVersion vs[3] = {
                { .id = 1, .enabled = true, .profile = HSM_PROFILE_GCM },
                { .id = 2, .enabled = true, .profile = HSM_PROFILE_CTR_HMAC },
                { .id = 3, .enabled = true, .profile = (HsmProfile) 9 }, /* a newer kekd's profile */
        };
        Key k = { .name = "rec", .current_version = 2, .state = KEY_ENABLED, .versions = vs, .n_versions = 3 };
        Kek__VersionInfo vi = KEK__VERSION_INFO__INIT, *vp[] = { &vi };
        Kek__KeyRecord rec = KEK__KEY_RECORD__INIT;
        HsmDataObject d = { .label = "rec" };
        _cleanup_(key_freep) Key *back = NULL, *old = NULL;
        _cleanup_free_ uint8_t *buf = NULL;
        uint8_t old_buf[256];
        size_t len = 0;

        ok(key_to_record(&k, &buf, &len) == 0, "record with profiles serialised");
        d.value = buf;
        d.value_len = len;
        ok(key_from_record(&d, &back) == 0 && back->n_versions == 3, "record with profiles read back");
        ok(back && back->versions[0].profile == HSM_PROFILE_GCM && back->versions[1].profile == HSM_PROFILE_CTR_HMAC &&
                   back->versions[2].profile == (HsmProfile) 9,
           "each version keeps its profile, an unknown one too");
        {
                Kek__KeyRecord *r = kek__key_record__unpack(NULL, len, buf);

                ok(r && r->format == 2, "a record with a version not under gcm is format 2 (older kekd refuse it whole)");
                kek__key_record__free_unpacked(r, NULL);
        }
        {
                _cleanup_free_ uint8_t *gbuf = NULL;
                size_t glen = 0;
                Kek__KeyRecord *r;

                k.n_versions = 1;
                k.current_version = 1;
                ok(key_to_record(&k, &gbuf, &glen) == 0, "a record with gcm versions only serialised");
                r = kek__key_record__unpack(NULL, glen, gbuf);
                ok(r && r->format == 1, "a record with gcm versions only stays format 1");
                kek__key_record__free_unpacked(r, NULL);
        }

        /* A record as an older kekd wrote it: VersionInfo has no field 7. */
        vi.id = 1;
        vi.enabled = true;
        rec.format = 1;
        rec.name = (char *) "rec";
        rec.current_version = 1;
        rec.n_versions = 1;
        rec.versions = vp;
        len = kek__key_record__pack(&rec, old_buf);
        d.value = old_buf;
        d.value_len = len;
        ok(key_from_record(&d, &old) == 0 && old->versions[0].profile == HSM_PROFILE_GCM,
           "a record without profiles reads as gcm");
        {
                _cleanup_(key_freep) Key *future = NULL;

                rec.format = 5; /* 3: trusted-wrap versions, 4: restored ones (tests/unit/test-backup-mode.c) */
                len = kek__key_record__pack(&rec, old_buf);
                d.value_len = len;
                is_int(key_from_record(&d, &future), -EBADMSG, "a record of format 5 is refused");
        }
}

/*
 * The health probe of several tokens (daemon/tokenset.h): a round trip under
 * each profile SoftHSM2 offers, an unknown profile refused, and its session
 * objects are no writes to the token (hsm_writes()), or every probe would
 * make the background reading of the token start again.
 */
static void test_health(Hsm *h) {
        uint64_t writes = hsm_writes(h);

        is_int(probe_health(h, HSM_PROFILE_GCM), 0, "health probe: gcm");
        is_int(probe_health(h, HSM_PROFILE_CBC_HMAC), 0, "health probe: cbc-hmac (a MAC key too)");
        is_int(probe_health(h, HSM_PROFILE_CTR_HMAC), 0, "health probe: ctr-hmac");
        is_int(probe_health(h, 99), -EINVAL, "health probe: an unknown profile is refused");
        is_int(hsm_writes(h), writes, "health probe: its session objects are no writes to the token");
}

int main(void) {
        _cleanup_secret_ Secret *pin = NULL;
        _cleanup_(hsm_freep) Hsm *h = NULL;
        HsmObject key = 0, mac = 0;
        const char *why = NULL;
        TestToken t;

        test_names();
        test_record();
        if (token_setup(&t, "profiles") < 0) {
                printf("Bail out! no SoftHSM2 token\n");
                return 99;
        }
        if (secret_heap_init(1 << 20) < 0 || secret_new_copy(t.pin, strlen(t.pin), &pin) < 0 ||
            hsm_open(t.module, t.uri, pin, &h, &why) < 0) {
                printf("Bail out! cannot open the token: %s\n", why ?: "?");
                return 99;
        }
        ok(create_known_key(h, CKK_AES, K_AES, &key) == 0, "test-only AES key of known value created");
        ok(create_known_key(h, CKK_GENERIC_SECRET, K_MAC, &mac) == 0, "test-only HMAC key of known value created");
        test_available(h);
        test_ctr_hmac_kat(h, key, mac);
        test_cbc_hmac_kat(h, key, mac);
        test_gcm_kat(h, key);
        test_mac_key(h);
        test_health(h);
        h = hsm_free(h);
        if (getenv("P11_FAULT_LIB") && access(getenv("P11_FAULT_LIB"), R_OK) == 0) {
                test_token_iv(&t, getenv("P11_FAULT_LIB"), pin);
                test_token_iv_replaced(&t, getenv("P11_FAULT_LIB"), pin);
        } else
                tap_skip("token-iv: P11_FAULT_LIB not built (run through make check)");
        token_done(&t);
        return tap_done();
}
