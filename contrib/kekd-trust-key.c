/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * kekd-trust-key: the security officer's side of backup mode trusted-wrap
 * (docs/backup.md). Logged in as SO, it marks a wrapping key CKA_TRUSTED, so
 * that kekd's KEK versions (CKA_WRAP_WITH_TRUSTED) may leave the token
 * wrapped under it and under no other key:
 *
 *   kekd-trust-key MODULE TOKEN_LABEL SO_PIN_FILE --import-rsa LABEL MODULUS_HEX EXPONENT
 *       creates a token RSA public key object (the DR token's key, for
 *       CKM_RSA_PKCS_OAEP), wrap only, with CKA_TRUSTED=TRUE;
 *   kekd-trust-key MODULE TOKEN_LABEL SO_PIN_FILE --trust LABEL
 *       marks the one existing wrapping key (public or secret) LABEL trusted;
 *   kekd-trust-key MODULE TOKEN_LABEL SO_PIN_FILE --import-aes LABEL KEY_FILE
 *       the source token's half of the shared AES-256 backup key of the key
 *       ceremony (KEY_FILE: its 32 bytes, raw): a public secret key, wrap
 *       only (CKM_AES_KEY_WRAP_PAD), sensitive, not extractable, CKA_TRUSTED;
 *   kekd-trust-key MODULE TOKEN_LABEL USER_PIN_FILE --import-aes-unwrap LABEL KEY_FILE
 *       the target token's half, logged in as USER (a private object; the
 *       SO can create none): unwrap only, sensitive, not extractable. Never
 *       public: a public unwrapping key would let anyone who can open a
 *       session unwrap a backup into a template of their choosing.
 *   The ceremony then destroys KEY_FILE; kekd never sees the key's value.
 *
 * Invariants: only the SO can set CKA_TRUSTED (PKCS#11 2.40 4.8, 4.9), so
 * this tool is the SO's and kekd never sees the SO PIN: it is read from a
 * file (never argv, which ps shows), used for one C_Login and wiped. It
 * refuses a LABEL that names no key or more than one, and a key that cannot
 * wrap; it reads CKA_TRUSTED back and fails unless the token says TRUE.
 * Standalone (dlopen of the module), so an SO can run it without kekd.
 */
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <p11-kit/pkcs11.h>

static CK_FUNCTION_LIST_PTR p11;

static int fail(const char *what, CK_RV rv) {
        fprintf(stderr, "kekd-trust-key: %s failed: CKR 0x%08lx\n", what, (unsigned long) rv);
        return 1;
}

/* The SO PIN, first line of path; at most 255 bytes. */
static int read_pin(const char *path, char pin[256], size_t *ret_len) {
        FILE *f = fopen(path, "re");
        size_t n;

        if (!f)
                return -errno;
        n = fread(pin, 1, 255, f);
        fclose(f);
        while (n > 0 && (pin[n - 1] == '\n' || pin[n - 1] == '\r'))
                n--;
        if (n == 0)
                return -EINVAL;
        *ret_len = n;
        return 0;
}

static int find_slot(const char *label, CK_SLOT_ID *ret) {
        CK_SLOT_ID slots[64];
        CK_ULONG n = 64;
        size_t len = strlen(label);

        if (p11->C_GetSlotList(CK_TRUE, slots, &n) != CKR_OK)
                return -EIO;
        for (CK_ULONG i = 0; i < n; i++) {
                CK_TOKEN_INFO ti;
                size_t l = sizeof(ti.label);

                if (p11->C_GetTokenInfo(slots[i], &ti) != CKR_OK)
                        continue;
                while (l > 0 && ti.label[l - 1] == ' ')
                        l--;
                if (l == len && memcmp(ti.label, label, len) == 0) {
                        *ret = slots[i];
                        return 0;
                }
        }
        return -ENOENT;
}

static size_t unhex(const char *s, unsigned char *out, size_t max) {
        size_t n = strlen(s), k = 0;

        if (n % 2 || n / 2 > max)
                return 0;
        for (size_t i = 0; i < n; i += 2) {
                unsigned v;

                if (sscanf(s + i, "%2x", &v) != 1)
                        return 0;
                out[k++] = (unsigned char) v;
        }
        return k;
}

static int import_rsa(CK_SESSION_HANDLE s, const char *label, const char *mod_hex, const char *exp_dec) {
        static unsigned char mod[1024];
        unsigned char exp[8];
        unsigned long e = strtoul(exp_dec, NULL, 10);
        size_t mod_len = unhex(mod_hex, mod, sizeof(mod)), exp_len = 0;
        CK_OBJECT_CLASS cls = CKO_PUBLIC_KEY;
        CK_KEY_TYPE type = CKK_RSA;
        CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
        CK_OBJECT_HANDLE o;
        CK_RV rv;

        if (mod_len < 256 || e < 3) {
                fprintf(stderr, "kekd-trust-key: an RSA modulus of at least 2048 bits and an exponent are needed\n");
                return 2;
        }
        for (int i = 7; i >= 0; i--)
                if ((e >> (8 * i)) & 0xff || exp_len > 0)
                        exp[exp_len++] = (unsigned char) (e >> (8 * i));
        {
                CK_ATTRIBUTE t[] = {
                        { CKA_CLASS, &cls, sizeof(cls) },
                        { CKA_KEY_TYPE, &type, sizeof(type) },
                        { CKA_TOKEN, &yes, sizeof(yes) },
                        { CKA_PRIVATE, &no, sizeof(no) },
                        { CKA_LABEL, (void *) label, strlen(label) },
                        { CKA_MODULUS, mod, mod_len },
                        { CKA_PUBLIC_EXPONENT, exp, exp_len },
                        { CKA_WRAP, &yes, sizeof(yes) },
                        { CKA_ENCRYPT, &no, sizeof(no) },
                        { CKA_VERIFY, &no, sizeof(no) },
                        { CKA_TRUSTED, &yes, sizeof(yes) },
                };

                rv = p11->C_CreateObject(s, t, sizeof(t) / sizeof(t[0]), &o);
        }
        return rv == CKR_OK ? 0 : fail("C_CreateObject (the trusted RSA public key)", rv);
}

/* The shared AES-256 backup key (see the header): wrap-only and public (SO), or unwrap-only and private (user). */
static int import_aes(CK_SESSION_HANDLE s, const char *label, const char *key_file, int unwrap_side) {
        unsigned char v[33];
        CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
        CK_KEY_TYPE type = CKK_AES;
        CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
        CK_BBOOL wrap = unwrap_side ? CK_FALSE : CK_TRUE, unwrap = unwrap_side ? CK_TRUE : CK_FALSE;
        CK_OBJECT_HANDLE o;
        FILE *f = fopen(key_file, "re");
        size_t n = f ? fread(v, 1, sizeof(v), f) : 0;
        CK_ATTRIBUTE t[] = {
                { CKA_CLASS, &cls, sizeof(cls) },
                { CKA_KEY_TYPE, &type, sizeof(type) },
                { CKA_TOKEN, &yes, sizeof(yes) },
                { CKA_PRIVATE, unwrap_side ? &yes : &no, sizeof(yes) },
                { CKA_LABEL, (void *) label, strlen(label) },
                { CKA_VALUE, v, 32 },
                { CKA_SENSITIVE, &yes, sizeof(yes) },
                { CKA_EXTRACTABLE, &no, sizeof(no) },
                { CKA_MODIFIABLE, &no, sizeof(no) },
                { CKA_WRAP, &wrap, sizeof(wrap) },
                { CKA_UNWRAP, &unwrap, sizeof(unwrap) },
                { CKA_ENCRYPT, &no, sizeof(no) },
                { CKA_DECRYPT, &no, sizeof(no) },
                { CKA_SIGN, &no, sizeof(no) },
                { CKA_VERIFY, &no, sizeof(no) },
                { CKA_DERIVE, &no, sizeof(no) },
                { CKA_TRUSTED, &yes, sizeof(yes) }, /* last: the wrapping side only */
        };
        CK_RV rv;

        if (f)
                fclose(f);
        if (n != 32) {
                explicit_bzero(v, sizeof(v));
                fprintf(stderr, "kekd-trust-key: %s does not hold exactly 32 bytes (an AES-256 key)\n", key_file);
                return 2;
        }
        rv = p11->C_CreateObject(s, t, sizeof(t) / sizeof(t[0]) - (unwrap_side ? 1 : 0), &o);
        explicit_bzero(v, sizeof(v));
        return rv == CKR_OK ? 0 : fail("C_CreateObject (the shared AES backup key)", rv);
}

static int trust(CK_SESSION_HANDLE s, const char *label) {
        CK_ATTRIBUTE t[] = { { CKA_LABEL, (void *) label, strlen(label) } };
        CK_OBJECT_HANDLE objs[4], o;
        CK_ULONG n = 0;
        CK_OBJECT_CLASS cls = 0;
        CK_BBOOL wrap = CK_FALSE, yes = CK_TRUE;
        CK_ATTRIBUTE a[] = { { CKA_CLASS, &cls, sizeof(cls) }, { CKA_WRAP, &wrap, sizeof(wrap) } };
        CK_ATTRIBUTE set = { CKA_TRUSTED, &yes, sizeof(yes) };
        CK_RV rv;

        if ((rv = p11->C_FindObjectsInit(s, t, 1)) != CKR_OK)
                return fail("C_FindObjectsInit", rv);
        rv = p11->C_FindObjects(s, objs, 4, &n);
        (void) p11->C_FindObjectsFinal(s);
        if (rv != CKR_OK)
                return fail("C_FindObjects", rv);
        if (n != 1) {
                fprintf(stderr, "kekd-trust-key: '%s' names %lu objects the SO can see, not one\n", label,
                        (unsigned long) n);
                return 1;
        }
        o = objs[0];
        if (p11->C_GetAttributeValue(s, o, a, 2) != CKR_OK || (cls != CKO_PUBLIC_KEY && cls != CKO_SECRET_KEY) || !wrap) {
                fprintf(stderr, "kekd-trust-key: '%s' is not a key with CKA_WRAP TRUE\n", label);
                return 1;
        }
        rv = p11->C_SetAttributeValue(s, o, &set, 1);
        return rv == CKR_OK ? 0 : fail("C_SetAttributeValue(CKA_TRUSTED)", rv);
}

/* Reads CKA_TRUSTED of label back: 0 only if exactly one object has it TRUE. */
static int verify(CK_SESSION_HANDLE s, const char *label) {
        CK_BBOOL yes = CK_TRUE;
        CK_ATTRIBUTE t[] = { { CKA_LABEL, (void *) label, strlen(label) }, { CKA_TRUSTED, &yes, sizeof(yes) } };
        CK_OBJECT_HANDLE objs[2];
        CK_ULONG n = 0;
        CK_RV rv;

        if ((rv = p11->C_FindObjectsInit(s, t, 2)) != CKR_OK)
                return fail("C_FindObjectsInit", rv);
        rv = p11->C_FindObjects(s, objs, 2, &n);
        (void) p11->C_FindObjectsFinal(s);
        if (rv != CKR_OK || n != 1) {
                fprintf(stderr, "kekd-trust-key: the token does not report '%s' as trusted\n", label);
                return 1;
        }
        printf("'%s' is trusted: kekd's trusted-wrap key versions can be wrapped under it\n", label);
        return 0;
}

int main(int argc, char *argv[]) {
        CK_RV (*get)(CK_FUNCTION_LIST_PTR_PTR);
        CK_SESSION_HANDLE s;
        CK_SLOT_ID slot;
        char pin[256];
        size_t pin_len = 0;
        void *lib;
        int r;

        int aes_unwrap = argc > 4 && strcmp(argv[4], "--import-aes-unwrap") == 0;

        if (argc < 6 || (strcmp(argv[4], "--trust") == 0 ? argc != 6
                         : strcmp(argv[4], "--import-rsa") == 0 ? argc != 8
                         : strcmp(argv[4], "--import-aes") == 0 || aes_unwrap ? argc != 7 : 1)) {
                fprintf(stderr, "usage: kekd-trust-key MODULE TOKEN_LABEL SO_PIN_FILE --trust LABEL\n"
                                "       kekd-trust-key MODULE TOKEN_LABEL SO_PIN_FILE --import-rsa LABEL MODULUS_HEX EXPONENT\n"
                                "       kekd-trust-key MODULE TOKEN_LABEL SO_PIN_FILE --import-aes LABEL KEY_FILE\n"
                                "       kekd-trust-key MODULE TOKEN_LABEL USER_PIN_FILE --import-aes-unwrap LABEL KEY_FILE\n");
                return 2;
        }
        lib = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
        get = lib ? (CK_RV(*)(CK_FUNCTION_LIST_PTR_PTR)) dlsym(lib, "C_GetFunctionList") : NULL;
        if (!get || get(&p11) != CKR_OK || p11->C_Initialize(NULL) != CKR_OK) {
                fprintf(stderr, "kekd-trust-key: cannot load PKCS#11 module %s\n", argv[1]);
                return 2;
        }
        if (find_slot(argv[2], &slot) < 0) {
                fprintf(stderr, "kekd-trust-key: no token labelled '%s'\n", argv[2]);
                return 2;
        }
        if (read_pin(argv[3], pin, &pin_len) < 0) {
                fprintf(stderr, "kekd-trust-key: cannot read the SO PIN from %s\n", argv[3]);
                return 2;
        }
        if (p11->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &s) != CKR_OK)
                return fail("C_OpenSession", CKR_GENERAL_ERROR);
        r = p11->C_Login(s, aes_unwrap ? CKU_USER : CKU_SO, (CK_UTF8CHAR_PTR) pin, pin_len) == CKR_OK ? 0 : -EACCES;
        explicit_bzero(pin, sizeof(pin));
        if (r < 0) {
                fprintf(stderr, "kekd-trust-key: %s login refused\n", aes_unwrap ? "user" : "SO");
                return 1;
        }
        if (aes_unwrap) {
                /* The unwrapping half is not marked trusted (only wrapping keys need to be). */
                r = import_aes(s, argv[5], argv[6], 1);
                if (r == 0)
                        printf("'%s' imported: backups wrapped under its other half can be restored here\n", argv[5]);
        } else {
                r = strcmp(argv[4], "--trust") == 0      ? trust(s, argv[5])
                    : strcmp(argv[4], "--import-aes") == 0 ? import_aes(s, argv[5], argv[6], 0)
                                                           : import_rsa(s, argv[5], argv[6], argv[7]);
                if (r == 0)
                        r = verify(s, argv[5]);
        }
        (void) p11->C_Logout(s);
        (void) p11->C_CloseSession(s);
        (void) p11->C_Finalize(NULL);
        return r;
}
