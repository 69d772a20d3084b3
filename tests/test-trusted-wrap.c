/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * test-trusted-wrap MODULE TOKEN_LABEL PIN_FILE NAME VERSION [TRUSTED_LABEL]:
 * what the token lets a user do with the AES key object of kekd key NAME,
 * version VERSION, asked directly through PKCS#11 as a thief with the user
 * PIN would (tests/integration/backup-mode.sh). One line per attempt,
 * "WHAT CKR_NAME" (or an attribute's value), asserted by the script:
 *   attrs EXTRACTABLE=x SENSITIVE=x ALWAYS_SENSITIVE=x NEVER_EXTRACTABLE=x WRAP_WITH_TRUSTED=x
 *   value                  C_GetAttributeValue(CKA_VALUE)
 *   wrap-untrusted-aes     C_WrapKey under a session AES key of the user's (CKM_AES_KEY_WRAP)
 *   wrap-untrusted-rsa     C_WrapKey under the user's own copy of the trusted RSA key (CKM_RSA_PKCS_OAEP)
 *   set-trusted            C_SetAttributeValue(CKA_TRUSTED=TRUE) on the user's AES key
 *   unset-wrap-with-trusted C_SetAttributeValue(CKA_WRAP_WITH_TRUSTED=FALSE) on a modifiable
 *                          session key generated with it TRUE, then its value read back
 *   wrap-trusted           C_WrapKey under TRUSTED_LABEL (CKM_RSA_PKCS_OAEP), and the length
 * Exit 0 once all were asked, 1 if NAME/VERSION has no key object, 2 on set-up errors.
 */
#include "config.h"

#include <dlfcn.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pkcs11/ckr.h"

static CK_FUNCTION_LIST_PTR p11;

static CK_OBJECT_HANDLE find_one(CK_SESSION_HANDLE s, CK_ATTRIBUTE *t, CK_ULONG n) {
        CK_OBJECT_HANDLE o[2];
        CK_ULONG got = 0;

        if (p11->C_FindObjectsInit(s, t, n) != CKR_OK)
                return CK_INVALID_HANDLE;
        if (p11->C_FindObjects(s, o, 2, &got) != CKR_OK)
                got = 0;
        (void) p11->C_FindObjectsFinal(s);
        return got == 1 ? o[0] : CK_INVALID_HANDLE;
}

static void print_wrap(const char *what, CK_SESSION_HANDLE s, CK_MECHANISM *m, CK_OBJECT_HANDLE wrapping,
                       CK_OBJECT_HANDLE key) {
        unsigned char out[1024];
        CK_ULONG len = sizeof(out);
        CK_RV rv = p11->C_WrapKey(s, m, wrapping, key, out, &len);

        printf("%s %s", what, ckr_name(rv));
        if (rv == CKR_OK)
                printf(" %lu", (unsigned long) len);
        printf("\n");
}

int main(int argc, char *argv[]) {
        CK_RV (*get)(CK_FUNCTION_LIST_PTR_PTR);
        CK_SLOT_ID slots[64];
        CK_ULONG n_slots = 64;
        CK_SESSION_HANDLE s = 0;
        CK_OBJECT_CLASS sk = CKO_SECRET_KEY, pk = CKO_PUBLIC_KEY;
        CK_KEY_TYPE aes = CKK_AES;
        CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
        CK_ULONG len32 = 32;
        CK_MECHANISM gen = { CKM_AES_KEY_GEN, NULL, 0 }, kw = { CKM_AES_KEY_WRAP, NULL, 0 };
        /* SHA-1 OAEP: what SoftHSM2 2.6.1 takes for C_WrapKey (it answers CKR_ARGUMENTS_BAD to SHA-256). */
        CK_RSA_PKCS_OAEP_PARAMS oaep = { CKM_SHA_1, CKG_MGF1_SHA1, CKZ_DATA_SPECIFIED, NULL, 0 };
        CK_MECHANISM om = { CKM_RSA_PKCS_OAEP, &oaep, sizeof(oaep) };
        CK_OBJECT_HANDLE kek, mine, wwt, trusted;
        unsigned char id[4], value[64];
        char pin[256];
        size_t pin_len;
        bool found = false;
        uint32_t version;
        FILE *f;
        void *lib;

        if (argc != 6 && argc != 7) {
                fprintf(stderr, "usage: test-trusted-wrap MODULE TOKEN_LABEL PIN_FILE NAME VERSION [TRUSTED_LABEL]\n");
                return 2;
        }
        lib = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
        get = lib ? (CK_RV(*)(CK_FUNCTION_LIST_PTR_PTR)) dlsym(lib, "C_GetFunctionList") : NULL;
        if (!get || get(&p11) != CKR_OK || p11->C_Initialize(NULL) != CKR_OK ||
            p11->C_GetSlotList(CK_TRUE, slots, &n_slots) != CKR_OK)
                return 2;
        for (CK_ULONG i = 0; i < n_slots && !found; i++) {
                CK_TOKEN_INFO ti;
                size_t l = sizeof(ti.label);

                if (p11->C_GetTokenInfo(slots[i], &ti) != CKR_OK)
                        continue;
                while (l > 0 && ti.label[l - 1] == ' ')
                        l--;
                found = l == strlen(argv[2]) && memcmp(ti.label, argv[2], l) == 0 &&
                        p11->C_OpenSession(slots[i], CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &s) == CKR_OK;
        }
        f = fopen(argv[3], "re");
        pin_len = f ? fread(pin, 1, sizeof(pin) - 1, f) : 0;
        if (f)
                fclose(f);
        while (pin_len > 0 && (pin[pin_len - 1] == '\n' || pin[pin_len - 1] == '\r'))
                pin_len--;
        if (!found || p11->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR) pin, pin_len) != CKR_OK) {
                fprintf(stderr, "test-trusted-wrap: no token '%s' or login refused\n", argv[2]);
                return 2;
        }
        version = (uint32_t) strtoul(argv[5], NULL, 10);
        id[0] = (unsigned char) (version >> 24), id[1] = (unsigned char) (version >> 16);
        id[2] = (unsigned char) (version >> 8), id[3] = (unsigned char) version;
        {
                CK_ATTRIBUTE t[] = {
                        { CKA_CLASS, &sk, sizeof(sk) },
                        { CKA_KEY_TYPE, &aes, sizeof(aes) },
                        { CKA_LABEL, argv[4], strlen(argv[4]) },
                        { CKA_ID, id, sizeof(id) },
                };

                kek = find_one(s, t, 4);
        }
        if (kek == CK_INVALID_HANDLE) {
                fprintf(stderr, "test-trusted-wrap: no single AES key object '%s' version %u\n", argv[4], version);
                return 1;
        }
        {
                CK_BBOOL e = 9, se = 9, as = 9, ne = 9, w = 9;
                CK_ATTRIBUTE a[] = {
                        { CKA_EXTRACTABLE, &e, 1 }, { CKA_SENSITIVE, &se, 1 }, { CKA_ALWAYS_SENSITIVE, &as, 1 },
                        { CKA_NEVER_EXTRACTABLE, &ne, 1 }, { CKA_WRAP_WITH_TRUSTED, &w, 1 },
                };

                (void) p11->C_GetAttributeValue(s, kek, a, 5);
                printf("attrs EXTRACTABLE=%u SENSITIVE=%u ALWAYS_SENSITIVE=%u NEVER_EXTRACTABLE=%u WRAP_WITH_TRUSTED=%u\n",
                       e, se, as, ne, w);
        }
        {
                CK_ATTRIBUTE v = { CKA_VALUE, value, sizeof(value) };

                printf("value %s\n", ckr_name(p11->C_GetAttributeValue(s, kek, &v, 1)));
        }
        {
                /* The thief's own wrapping key: a session AES key, wrap allowed, not trusted. */
                CK_ATTRIBUTE t[] = {
                        { CKA_CLASS, &sk, sizeof(sk) }, { CKA_KEY_TYPE, &aes, sizeof(aes) },
                        { CKA_VALUE_LEN, &len32, sizeof(len32) }, { CKA_TOKEN, &no, sizeof(no) },
                        { CKA_WRAP, &yes, sizeof(yes) }, { CKA_MODIFIABLE, &yes, sizeof(yes) },
                };
                CK_ATTRIBUTE set = { CKA_TRUSTED, &yes, sizeof(yes) };

                if (p11->C_GenerateKey(s, &gen, t, 6, &mine) != CKR_OK)
                        return 2;
                print_wrap("wrap-untrusted-aes", s, &kw, mine, kek);
                printf("set-trusted %s\n", ckr_name(p11->C_SetAttributeValue(s, mine, &set, 1)));
        }
        {
                /* A modifiable key with CKA_WRAP_WITH_TRUSTED: the flag itself cannot be switched off. */
                CK_ATTRIBUTE t[] = {
                        { CKA_CLASS, &sk, sizeof(sk) }, { CKA_KEY_TYPE, &aes, sizeof(aes) },
                        { CKA_VALUE_LEN, &len32, sizeof(len32) }, { CKA_TOKEN, &no, sizeof(no) },
                        { CKA_SENSITIVE, &yes, sizeof(yes) }, { CKA_EXTRACTABLE, &yes, sizeof(yes) },
                        { CKA_MODIFIABLE, &yes, sizeof(yes) }, { CKA_WRAP_WITH_TRUSTED, &yes, sizeof(yes) },
                };
                CK_ATTRIBUTE set = { CKA_WRAP_WITH_TRUSTED, &no, sizeof(no) };
                CK_BBOOL w = 9;
                CK_ATTRIBUTE get_w = { CKA_WRAP_WITH_TRUSTED, &w, 1 };
                CK_RV rv;

                if (p11->C_GenerateKey(s, &gen, t, 8, &wwt) != CKR_OK)
                        return 2;
                rv = p11->C_SetAttributeValue(s, wwt, &set, 1);
                (void) p11->C_GetAttributeValue(s, wwt, &get_w, 1);
                printf("unset-wrap-with-trusted %s WRAP_WITH_TRUSTED=%u\n", ckr_name(rv), w);
        }
        if (argc == 7) {
                CK_ATTRIBUTE t[] = { { CKA_CLASS, &pk, sizeof(pk) }, { CKA_LABEL, argv[6], strlen(argv[6]) } };
                unsigned char mod[1024], exp[16];
                CK_KEY_TYPE rsa = CKK_RSA;
                CK_ATTRIBUTE ma[] = { { CKA_MODULUS, mod, sizeof(mod) }, { CKA_PUBLIC_EXPONENT, exp, sizeof(exp) } };
                CK_OBJECT_HANDLE copy;

                trusted = find_one(s, t, 2);
                if (trusted == CK_INVALID_HANDLE || p11->C_GetAttributeValue(s, trusted, ma, 2) != CKR_OK) {
                        fprintf(stderr, "test-trusted-wrap: no public key '%s'\n", argv[6]);
                        return 2;
                }
                {
                        /* The same RSA key, imported by the user: only the SO's mark makes a key trusted. */
                        CK_ATTRIBUTE c[] = {
                                { CKA_CLASS, &pk, sizeof(pk) }, { CKA_KEY_TYPE, &rsa, sizeof(rsa) },
                                { CKA_TOKEN, &no, sizeof(no) }, { CKA_WRAP, &yes, sizeof(yes) },
                                { CKA_MODULUS, mod, ma[0].ulValueLen }, { CKA_PUBLIC_EXPONENT, exp, ma[1].ulValueLen },
                        };

                        if (p11->C_CreateObject(s, c, 6, &copy) != CKR_OK)
                                return 2;
                }
                print_wrap("wrap-untrusted-rsa", s, &om, copy, kek);
                print_wrap("wrap-trusted", s, &om, trusted, kek);
        }
        (void) p11->C_Logout(s);
        (void) p11->C_CloseSession(s);
        (void) p11->C_Finalize(NULL);
        return 0;
}
