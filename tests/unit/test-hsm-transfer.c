/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Unit tests of pkcs11/hsm-transfer.c on a fresh SoftHSM2 token: the SO's
 * ceremony (contrib/kekd-trust-key --import-aes, --import-aes-unwrap) puts
 * both halves of a shared AES backup key in the token; a trusted-wrap
 * version's AES and MAC keys wrap under it and unwrap (under another label,
 * as on a DR token) into keys that decrypt what the originals encrypted; a
 * never-extractable version and an untrusted wrapping key are refused
 * (-EPERM); tampered wrapped bytes are refused (-KEKERR_BLOB_INVALID); the
 * transfer MAC key signs here and verifies once unwrapped, and a flipped
 * byte fails it; the restored objects have the restored form.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/kekerr.h"
#include "daemon/pin.h"
#include "pkcs11/hsm-transfer.h"
#include "tests/lib/tap.h"
#include "tests/lib/token.h"

/* Runs the SO's tool; so: log in as SO (else as user). */
static int ceremony(const TestToken *t, bool so, const char *mode, const char *label, const char *key_file) {
        char cmd[4 * PATH_MAX], pin_file[PATH_MAX + 8];
        FILE *f;

        snprintf(pin_file, sizeof(pin_file), "%s/so-pin", t->dir);
        f = fopen(pin_file, "we");
        if (!f)
                return -1;
        fprintf(f, "87654321\n");
        fclose(f);
        snprintf(cmd, sizeof(cmd), "%s '%s' '%s' '%s' %s '%s' '%s' >/dev/null",
                 getenv("KEKD_TRUST_KEY") ?: "contrib/kekd-trust-key", t->module, t->label,
                 so ? pin_file : t->pin_file, mode, label, key_file);
        return system(cmd) == 0 ? 0 : -1;
}

static void test_transfer(Hsm *h, const TestToken *t) {
        static const uint8_t aad[] = "context";
        static const uint8_t pt[32] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 };
        uint8_t iv[HSM_CTR_IV_SIZE] = { 9 }, ct[sizeof(pt) + HSM_HMAC_TAG_SIZE], tag[HSM_TRANSFER_TAG_SIZE];
        _cleanup_free_ uint8_t *w_aes = NULL, *w_mac = NULL, *w_never = NULL, *w_tk = NULL;
        size_t l_aes = 0, l_mac = 0, l_never = 0, l_tk = 0;
        char key_file[PATH_MAX + 8];
        HsmTransferKey wrap_k, unwrap_k, untrusted;
        HsmObject aes, mac, never, c_aes = 0, c_mac = 0, tk, tk2 = 0, tampered;
        HsmKeyAttrs attrs;
        Secret *out = NULL;
        FILE *f;
        int r;

        snprintf(key_file, sizeof(key_file), "%s/backup-key", t->dir);
        f = fopen(key_file, "we");
        for (int i = 0; f && i < 32; i++)
                fputc(0x40 + i, f);
        if (f)
                fclose(f);
        is_int(hsm_find_wrapping_key(h, "bk", &wrap_k), -ENOENT, "no wrapping key before the ceremony");
        ok(ceremony(t, true, "--import-aes", "bk", key_file) == 0, "SO imports the wrapping half, trusted");
        ok(ceremony(t, false, "--import-aes-unwrap", "bk", key_file) == 0, "user imports the unwrapping half");
        ok(ceremony(t, false, "--import-aes-unwrap", "plain", key_file) == 0, "an untrusted AES key 'plain'");
        ok(hsm_find_wrapping_key(h, "bk", &wrap_k) == 0 && wrap_k.kind == HSM_TRANSFER_AES_KWP,
           "the trusted wrapping key is found, AES key wrap");
        ok(hsm_find_unwrapping_key(h, "bk", &unwrap_k) == 0 && unwrap_k.handle != wrap_k.handle,
           "the private unwrapping half is found, another object");
        is_int(hsm_find_wrapping_key(h, "plain", &untrusted), -ENOENT, "an untrusted key is no wrapping key");

        if (!ok(hsm_generate_version_key(h, "acct", 1, true, &aes) == 0 &&
                    hsm_generate_version_mac_key(h, "acct", 1, true, &mac) == 0 &&
                    hsm_generate_version_key(h, "acct", 2, false, &never) == 0,
                "versions 1 (trusted-wrap, AES + MAC) and 2 (never extractable)"))
                return;
        ok(hsm_wrap_version(h, &wrap_k, "acct", 1, HSM_PART_AES, &w_aes, &l_aes) == 0 && l_aes == 40,
           "version 1's AES key wraps: 40 bytes (RFC 5649 of 32)");
        ok(hsm_wrap_version(h, &wrap_k, "acct", 1, HSM_PART_MAC, &w_mac, &l_mac) == 0 && l_mac == 40,
           "version 1's MAC key wraps");
        is_int(hsm_wrap_version(h, &wrap_k, "acct", 2, HSM_PART_AES, &w_never, &l_never), -EPERM,
               "a never-extractable version is refused: -EPERM");
        is_int(hsm_wrap_version(h, &wrap_k, "acct", 9, HSM_PART_AES, &w_never, &l_never), -ENOENT,
               "a version that does not exist: -ENOENT");
        /* The unwrapping half is private and not trusted: wrapping under it as a thief would. */
        untrusted = (HsmTransferKey) { .handle = unwrap_k.handle, .kind = HSM_TRANSFER_AES_KWP };
        ok(hsm_find_unwrapping_key(h, "plain", &untrusted) == 0, "the untrusted key is found as an unwrapping key");
        /* (An untrusted key that may wrap gets CKR_KEY_NOT_WRAPPABLE: tests/integration/backup-mode.sh.) */
        is_int(hsm_wrap_object(h, &untrusted, aes, &w_never, &l_never), -KEKERR_UNSUPPORTED,
               "wrapping under a key that may not wrap: refused");
        ok(strstr(hsm_last_error(h), "CKR_KEY_FUNCTION_NOT_PERMITTED") != NULL, "... C_WrapKey: CKR_KEY_FUNCTION_NOT_PERMITTED");

        if (!ok(w_aes && w_mac, "both wrapped"))
                return;
        w_aes[5] ^= 1;
        /* SoftHSM2 2.6.1 answers a failed RFC 5649 check with CKR_GENERAL_ERROR (transient to hsm.c). */
        r = hsm_unwrap_version(h, &unwrap_k, "copy", 1, HSM_PART_AES, true, w_aes, l_aes, &tampered);
        ok(r == -KEKERR_BLOB_INVALID || r == -KEKERR_HSM_UNAVAILABLE, "a flipped byte does not unwrap");
        diag("%s", hsm_last_error(h));
        is_int(hsm_find_key(h, "copy", 1, &tampered), -ENOENT, "... and left no key object");
        w_aes[5] ^= 1;
        is_int(hsm_unwrap_version(h, &unwrap_k, "copy", 1, HSM_PART_AES, true, w_aes, 0, &tampered),
               -KEKERR_BLOB_INVALID, "empty wrapped bytes: -KEKERR_BLOB_INVALID");
        ok(hsm_unwrap_version(h, &unwrap_k, "copy", 1, HSM_PART_AES, true, w_aes, l_aes, &c_aes) == 0 &&
                   hsm_unwrap_version(h, &unwrap_k, "copy", 1, HSM_PART_MAC, true, w_mac, l_mac, &c_mac) == 0,
           "both unwrap under label 'copy'");
        ok(hsm_encrypt_ctr_hmac(h, aes, mac, iv, aad, sizeof(aad), pt, sizeof(pt), ct) == 0 &&
                   hsm_decrypt_ctr_hmac(h, c_aes, c_mac, iv, aad, sizeof(aad), ct, sizeof(ct), &out) == 0 &&
                   out->len == sizeof(pt) && memcmp(out->data, pt, sizeof(pt)) == 0,
           "what the originals encrypted (ctr-hmac: AES and MAC key), the copies decrypt");
        out = secret_free(out);
        ok(hsm_key_attributes(h, c_aes, &attrs) == 0 && attrs.token && attrs.private_ && attrs.sensitive &&
                   attrs.extractable && attrs.wrap_with_trusted && !attrs.always_sensitive &&
                   !attrs.never_extractable && !attrs.value_readable,
           "restored form: token, private, sensitive, extractable only under trusted, never ALWAYS_SENSITIVE");
        is_int(hsm_find_key(h, "copy", 1, &tampered), -ENOENT, "the restored form is not adopted as generated");
        ok(hsm_find_version_key(h, "copy", 1, true, &tampered) == 0 && tampered == c_aes &&
                   hsm_find_version_mac_key(h, "copy", 1, true, &tampered) == 0 && tampered == c_mac,
           "... only where the record says restored (AES and MAC key)");
        is_int(hsm_find_version_key(h, "acct", 1, true, &tampered), -ENOENT,
               "a generated version is not found in the restored form either");
        {
                _cleanup_free_ HsmKeyRef *refs = NULL;
                size_t n = 0;
                int restored = -1, generated = -1;

                if (hsm_list_keys(h, &refs, &n) == 0)
                        for (size_t i = 0; i < n; i++) {
                                if (strcmp(refs[i].label, "copy") == 0 && refs[i].version == 1)
                                        restored = refs[i].restored && refs[i].wrap_with_trusted;
                                if (strcmp(refs[i].label, "acct") == 0 && refs[i].version == 1)
                                        generated = !refs[i].restored;
                        }
                ok(restored == 1 && generated == 1,
                   "the listing flags the restored copy (the index adopts it only for a restored version)");
        }
        ok(hsm_unwrap_version(h, &unwrap_k, "copy2", 1, HSM_PART_AES, false, w_aes, l_aes, &c_aes) == 0 &&
                   hsm_key_attributes(h, c_aes, &attrs) == 0 && !attrs.extractable && attrs.sensitive,
           "restored without wrap_trusted: not extractable");
        {
                /* A second restored object under a version (as a PIN holder could import one): the other form */
                HsmObject dup, found;

                ok(hsm_unwrap_version(h, &unwrap_k, "copy", 1, HSM_PART_AES, false, w_aes, l_aes, &dup) == 0 &&
                           dup != c_aes,
                   "a second object in the restored forms under 'copy' version 1");
                is_int(hsm_find_version_key(h, "copy", 1, true, &found), -ENOTUNIQ,
                       "two objects answer to the version: neither is found (-ENOTUNIQ), whichever form each has");
                ok(hsm_destroy_version_keys(h, "copy", 1) == 0 &&
                           hsm_find_version_key(h, "copy", 1, true, &found) == -ENOENT,
                   "destroying the version's objects takes both");
        }

        ok(hsm_generate_transfer_mac_key(h, &tk) == 0 && hsm_wrap_object(h, &wrap_k, tk, &w_tk, &l_tk) == 0,
           "a transfer MAC key, generated and wrapped");
        ok(hsm_transfer_sign(h, tk, pt, sizeof(pt), tag) == 0, "it signs");
        ok(hsm_unwrap_transfer_mac_key(h, &unwrap_k, w_tk, l_tk, &tk2) == 0 && tk2 != tk, "unwrapped again");
        is_int(hsm_transfer_verify(h, tk2, pt, sizeof(pt), tag), 0, "the unwrapped copy verifies the tag");
        tag[0] ^= 0x80;
        is_int(hsm_transfer_verify(h, tk2, pt, sizeof(pt), tag), -KEKERR_BLOB_INVALID,
               "a flipped tag byte: -KEKERR_BLOB_INVALID");
        (void) hsm_destroy_object(h, tk);
        (void) hsm_destroy_object(h, tk2);
}

int main(void) {
        TestToken token;
        Secret *pin = NULL;
        const char *why = NULL;
        Hsm *h = NULL;

        if (token_setup(&token, "transfer") < 0) {
                ok(false, "set up a SoftHSM2 token");
                return tap_done();
        }
        ok(secret_heap_init(1 << 20) >= 0, "secure heap initialised");
        if (ok(pin_read(token.pin_file, &pin, &why) == 0, "PIN read") &&
            ok(hsm_open(token.module, token.uri, pin, &h, &why) >= 0, "HSM opened"))
                test_transfer(h, &token);
        h = hsm_free(h);
        secret_free(pin);
        token_done(&token);
        return tap_done();
}
