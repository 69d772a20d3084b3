/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * What hsm_unwrap_version() (pkcs11/hsm-transfer.c) leaves in a token when the
 * token ignores the unwrap template, as openCryptoki 3.8.1's soft token does
 * (the key comes out not sensitive and extractable, its value readable):
 * nothing, and -KEKERR_UNSUPPORTED. Run on SoftHSM2 behind tests/p11-fault
 * with $P11_FAULT_UNWRAP_EXPOSED=1 (read by the module at each call), then
 * without it, where the same bytes unwrap into a key that is sensitive, not
 * extractable and unreadable. The key to move and the AES-KWP transfer key
 * are session objects made here through the Hsm's own session.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/kekerr.h"
#include "daemon/pin.h"
#include "pkcs11/hsm-internal.h"
#include "pkcs11/hsm-transfer.h"
#include "tests/lib/tap.h"
#include "tests/lib/token.h"

#define LABEL "moved"

/* Key objects of LABEL in the token, AES or MAC, any form. */
static size_t objects_of_label(Hsm *h) {
        CK_ATTRIBUTE t = { CKA_LABEL, (void *) LABEL, strlen(LABEL) };
        _cleanup_free_ CK_OBJECT_HANDLE *objs = NULL;
        size_t n = 0;

        return hsm_find_all(h, &t, 1, &objs, &n) < 0 ? (size_t) -1 : n;
}

static void test_unwrap_kept(Hsm *h) {
        CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
        CK_ULONG len = 32;
        CK_ATTRIBUTE kw[] = {
                { CKA_TOKEN, &no, sizeof(no) },     { CKA_VALUE_LEN, &len, sizeof(len) },
                { CKA_WRAP, &yes, sizeof(yes) },    { CKA_UNWRAP, &yes, sizeof(yes) },
                { CKA_SENSITIVE, &yes, sizeof(yes) }, { CKA_PRIVATE, &yes, sizeof(yes) },
        };
        CK_ATTRIBUTE key[] = {
                { CKA_TOKEN, &no, sizeof(no) },         { CKA_VALUE_LEN, &len, sizeof(len) },
                { CKA_ENCRYPT, &yes, sizeof(yes) },     { CKA_DECRYPT, &yes, sizeof(yes) },
                { CKA_SENSITIVE, &yes, sizeof(yes) },   { CKA_EXTRACTABLE, &yes, sizeof(yes) },
        };
        CK_MECHANISM gen = { CKM_AES_KEY_GEN, NULL, 0 };
        CK_OBJECT_HANDLE hkw, hkey;
        _cleanup_free_ uint8_t *wrapped = NULL;
        size_t wlen = 0;
        HsmTransferKey tk;
        HsmKeyAttrs a = {};
        HsmObject o = 0;
        int r;

        if (!ok(hsm_ensure_session(h) >= 0, "session open") ||
            !ok(h->module->C_GenerateKey(h->session, &gen, kw, ELEMENTSOF(kw), &hkw) == CKR_OK,
                "a session AES-KWP transfer key") ||
            !ok(h->module->C_GenerateKey(h->session, &gen, key, ELEMENTSOF(key), &hkey) == CKR_OK,
                "a session AES key to move, extractable"))
                return;
        tk = (HsmTransferKey) { .handle = hkw, .kind = HSM_TRANSFER_AES_KWP };
        if (!ok(hsm_wrap_object(h, &tk, hkey, &wrapped, &wlen) >= 0, "wrapped under AES-KWP (%zu bytes)", wlen))
                return;

        /* The token ignores the template: kekd destroys what it made and refuses. */
        setenv("P11_FAULT_UNWRAP_EXPOSED", "1", 1);
        r = hsm_unwrap_version(h, &tk, LABEL, 1, HSM_PART_AES, false, wrapped, wlen, &o);
        unsetenv("P11_FAULT_UNWRAP_EXPOSED");
        is_int(r, -KEKERR_UNSUPPORTED, "a token that ignores the unwrap template: refused");
        is_int(objects_of_label(h), 0, "and nothing of it is left in the token");

        /* The same bytes on a token that keeps the template: a key that stays in. */
        r = hsm_unwrap_version(h, &tk, LABEL, 1, HSM_PART_AES, false, wrapped, wlen, &o);
        is_int(r, 0, "the token keeps the template: unwrapped");
        ok(r >= 0 && hsm_key_attributes(h, o, &a) >= 0 && a.sensitive && !a.extractable && !a.value_readable,
           "sensitive %d, extractable %d, value readable %d", a.sensitive, a.extractable, a.value_readable);
        is_int(objects_of_label(h), 1, "one object");
        ok(hsm_destroy_version_keys(h, LABEL, 1) >= 0 && objects_of_label(h) == 0, "destroyed again");
}

int main(void) {
        const char *lib = getenv("P11_FAULT_LIB"), *why = NULL;
        TestToken token;
        Secret *pin = NULL;
        Hsm *h = NULL;

        if (!lib || !getenv("P11_FAULT_MODULE")) {
                tap_skip_all("P11_FAULT_LIB and P11_FAULT_MODULE not set (make check sets them)");
                return 0;
        }
        if (token_setup(&token, "unwrapkept") < 0) {
                ok(false, "set up a SoftHSM2 token");
                return tap_done();
        }
        unsetenv("P11_FAULT_UNWRAP_EXPOSED");
        ok(secret_heap_init(1 << 20) >= 0, "secure heap initialised");
        if (ok(pin_read(token.pin_file, &pin, &why) == 0, "PIN read") &&
            ok(hsm_open(lib, token.uri, pin, &h, &why) >= 0, "HSM opened through p11-fault (%s)", why ? why : "ok"))
                test_unwrap_kept(h);
        h = hsm_free(h);
        secret_free(pin);
        token_done(&token);
        return tap_done();
}
