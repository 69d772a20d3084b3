/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * test-attrs MODULE URI PIN_FILE NAME...: reads every AES key object of the
 * named kekd keys back from the token and checks the Managed-HSM invariants:
 * CKA_TOKEN, CKA_PRIVATE, CKA_SENSITIVE, CKA_ALWAYS_SENSITIVE TRUE,
 * CKA_EXTRACTABLE FALSE, CKA_NEVER_EXTRACTABLE TRUE, CKA_VALUE_LEN 32, and
 * CKA_VALUE refused. Prints one line per object; exits 1 if any object breaks
 * an invariant or a named key has no object, 0 otherwise. Used by
 * tests/integration/attributes.sh, next to the same check with pkcs11-tool.
 *
 * test-attrs MODULE URI PIN_FILE --mac NAME...: the same for the MAC keys of
 * the encrypt-then-MAC profiles (hsm_list_mac_keys()).
 * test-attrs MODULE URI PIN_FILE --destroy-mac NAME VERSION: destroys the MAC
 * key of one version, for tests of a token that lost it; --generate-mac NAME
 * VERSION makes one no record names (tests/integration/profiles.sh).
 *
 * Records in the modes without private data objects (pkcs11/hsm-records.c,
 * tests/integration/public-records.sh); MODE is public or keys:
 * test-attrs MODULE URI PIN_FILE --plant-record MODE APP FROM TO flip|copy
 * reads FROM's record and writes its exact bytes (value and tag) under TO
 * ("copy": a record moved to another name), or, with TO equal to FROM, in
 * place of it with one byte of the value changed ("flip": an altered
 * record); --bad-records MODE APP... prints "record object 'x' fails its
 * MAC" for each record object of APPs whose tag fails (hsm_list_bad_records()).
 *
 * test-attrs MODULE URI PIN_FILE --plant-derived NAME VERSION: what a
 * holder of the user PIN can do (tests/integration/derived-plant.sh):
 * destroys the version's AES key object, if the token has one, and makes, with C_DeriveKey
 * (CKM_AES_ECB_ENCRYPT_DATA) from a sensitive, never extractable session AES
 * key it generates, a token key under the version's label and ID with kekd's
 * KEK attributes; PKCS#11 gives it CKA_ALWAYS_SENSITIVE and
 * CKA_NEVER_EXTRACTABLE from its base key. Its maker knows its value: the base
 * key can also encrypt, and C_Encrypt of the derivation data under it with
 * CKM_AES_ECB is that value, which is printed in hex, with the plant's
 * always_sensitive, never_extractable and local flags and its own AES-ECB
 * encryption of a zero block (so a test can check the value with openssl).
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/pin.h"
#include "pkcs11/hsm-internal.h"
#include "pkcs11/hsm.h"
#include "pkcs11/records-mac.h"

/* --plant-derived NAME VERSION (see above); raw PKCS#11 calls, as a PIN holder's program would make. */
static int plant_derived(Hsm *h, const char *name, uint32_t version) {
        CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
        CK_KEY_TYPE type = CKK_AES;
        CK_ULONG len = 32;
        CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
        uint8_t id[4] = { (uint8_t) (version >> 24), (uint8_t) (version >> 16), (uint8_t) (version >> 8),
                          (uint8_t) version };
        uint8_t data[32], value[32], zero[16] = {}, block[16];
        CK_ULONG value_len = sizeof(value), block_len = sizeof(block);
        CK_ATTRIBUTE base_tmpl[] = {
                { CKA_CLASS, &cls, sizeof(cls) },         { CKA_KEY_TYPE, &type, sizeof(type) },
                { CKA_VALUE_LEN, &len, sizeof(len) },     { CKA_TOKEN, &no, sizeof(no) },
                { CKA_PRIVATE, &yes, sizeof(yes) },       { CKA_SENSITIVE, &yes, sizeof(yes) },
                { CKA_EXTRACTABLE, &no, sizeof(no) },     { CKA_DERIVE, &yes, sizeof(yes) },
                { CKA_ENCRYPT, &yes, sizeof(yes) },
        };
        CK_ATTRIBUTE plant_tmpl[] = {
                { CKA_CLASS, &cls, sizeof(cls) },         { CKA_KEY_TYPE, &type, sizeof(type) },
                { CKA_VALUE_LEN, &len, sizeof(len) },     { CKA_TOKEN, &yes, sizeof(yes) },
                { CKA_PRIVATE, &yes, sizeof(yes) },       { CKA_SENSITIVE, &yes, sizeof(yes) },
                { CKA_EXTRACTABLE, &no, sizeof(no) },     { CKA_ENCRYPT, &yes, sizeof(yes) },
                { CKA_DECRYPT, &yes, sizeof(yes) },       { CKA_LABEL, (void *) name, strlen(name) },
                { CKA_ID, id, sizeof(id) },
        };
        CK_MECHANISM gen = { CKM_AES_KEY_GEN, NULL, 0 }, ecb = { CKM_AES_ECB, NULL, 0 };
        CK_KEY_DERIVATION_STRING_DATA params = { data, sizeof(data) };
        CK_MECHANISM derive = { CKM_AES_ECB_ENCRYPT_DATA, &params, sizeof(params) };
        CK_BBOOL asens = CK_FALSE, nextr = CK_FALSE, local = CK_TRUE;
        CK_ATTRIBUTE got[] = {
                { CKA_ALWAYS_SENSITIVE, &asens, sizeof(asens) },
                { CKA_NEVER_EXTRACTABLE, &nextr, sizeof(nextr) },
                { CKA_LOCAL, &local, sizeof(local) },
        };
        CK_OBJECT_HANDLE base, plant, old;
        CK_FUNCTION_LIST *m;
        CK_RV rv;
        int r;

        for (size_t i = 0; i < sizeof(data); i++)
                data[i] = (uint8_t) (0x5a ^ i);
        if (hsm_ensure_session(h) < 0)
                return 2;
        m = h->module;
        /* None on a further token that holds no copy of the version: the plant is then its only object. */
        r = hsm_find_key(h, name, version, &old);
        if ((r < 0 && r != -ENOENT) || (r >= 0 && hsm_destroy_object(h, old) < 0)) {
                fprintf(stderr, "test-attrs: no key object of %s v%u destroyed\n", name, version);
                return 1;
        }
        rv = m->C_GenerateKey(h->session, &gen, base_tmpl, ELEMENTSOF(base_tmpl), &base);
        if (rv == CKR_OK)
                rv = m->C_DeriveKey(h->session, &derive, base, plant_tmpl, ELEMENTSOF(plant_tmpl), &plant);
        if (rv == CKR_OK)
                rv = m->C_GetAttributeValue(h->session, plant, got, ELEMENTSOF(got));
        /* The value, known to the maker: the same AES-ECB encryption under the base key. */
        if (rv == CKR_OK)
                rv = m->C_EncryptInit(h->session, &ecb, base);
        if (rv == CKR_OK)
                rv = m->C_Encrypt(h->session, data, sizeof(data), value, &value_len);
        if (rv == CKR_OK)
                rv = m->C_EncryptInit(h->session, &ecb, plant);
        if (rv == CKR_OK)
                rv = m->C_Encrypt(h->session, zero, sizeof(zero), block, &block_len);
        if (rv != CKR_OK) {
                fprintf(stderr, "test-attrs: cannot plant a derived key: 0x%lx\n", (unsigned long) rv);
                return 1;
        }
        printf("planted %s v%u: always_sensitive=%d never_extractable=%d local=%d value=", name, version, asens, nextr,
               local);
        for (size_t i = 0; i < value_len; i++)
                printf("%02x", value[i]);
        printf(" zero_block=");
        for (size_t i = 0; i < block_len; i++)
                printf("%02x", block[i]);
        printf("\n");
        return 0;
}

/* --plant-record MODE APP FROM TO flip|copy (see above). */
static int plant_record(Hsm *h, HsmRecordMode mode, int argc, char *argv[]) {
        HsmDataObject *d = NULL;
        _cleanup_free_ uint8_t *buf = NULL;
        CK_OBJECT_HANDLE key;
        HsmObject o;
        size_t n = 0;
        bool flip;
        int r;

        if (argc != 10 || (strcmp(argv[9], "flip") != 0 && strcmp(argv[9], "copy") != 0)) {
                fprintf(stderr, "test-attrs: --plant-record MODE APP FROM TO flip|copy\n");
                return 2;
        }
        flip = strcmp(argv[9], "flip") == 0;
        r = hsm_list_data(h, argv[6], argv[7], &d, &n);
        if (r < 0 || n != 1) {
                fprintf(stderr, "test-attrs: no single record '%s' (%zu)\n", argv[7], n);
                hsm_data_objects_free(d, n);
                return 1;
        }
        /* The tag FROM's record carries: HMAC is deterministic, so this is its exact stored bytes. */
        buf = malloc(d[0].value_len + RECORD_TAG_SIZE);
        r = buf ? record_key_for_signing(h, &key) : -ENOMEM;
        if (r >= 0)
                r = record_tag(h, key, argv[6], strlen(argv[6]), argv[7], d[0].value, d[0].value_len,
                               buf + d[0].value_len);
        if (r >= 0) {
                memcpy(buf, d[0].value, d[0].value_len);
                if (flip)
                        buf[d[0].value_len / 3] ^= 1;
                if (strcmp(argv[7], argv[8]) == 0)
                        r = hsm_destroy_object(h, d[0].handle);
        }
        if (r >= 0)
                r = hsm_create_record_object(h, mode, argv[6], argv[8], buf, d[0].value_len + RECORD_TAG_SIZE, &o);
        hsm_data_objects_free(d, n);
        if (r < 0) {
                fprintf(stderr, "test-attrs: cannot plant record '%s': %d\n", argv[8], r);
                return 1;
        }
        return 0;
}

int main(int argc, char *argv[]) {
        _cleanup_secret_ Secret *pin = NULL;
        _cleanup_free_ HsmKeyRef *refs = NULL;
        _cleanup_(hsm_freep) Hsm *h = NULL;
        const char *why = NULL;
        size_t n = 0;
        int bad = 0;
        bool mac;

        if (argc < 5) {
                fprintf(stderr, "usage: test-attrs MODULE URI PIN_FILE NAME...\n");
                return 2;
        }
        if (secret_heap_init(65536) < 0 || pin_read(argv[3], &pin, &why) < 0) {
                fprintf(stderr, "test-attrs: cannot read PIN: %s\n", why ?: "secure heap");
                return 2;
        }
        if (hsm_open(argv[1], argv[2], pin, &h, &why) < 0) {
                fprintf(stderr, "test-attrs: cannot open token: %s\n", why ?: "?");
                return 2;
        }
        if (strcmp(argv[4], "--generate-mac") == 0) {
                HsmObject o;

                if (argc != 7 || hsm_generate_mac_key(h, argv[5], (uint32_t) strtoul(argv[6], NULL, 10), &o) < 0) {
                        fprintf(stderr, "test-attrs: no MAC key %s v%s generated\n", argv[5], argc == 7 ? argv[6] : "?");
                        return 1;
                }
                return 0;
        }
        if (strcmp(argv[4], "--plant-record") == 0 || strcmp(argv[4], "--bad-records") == 0) {
                HsmRecordMode mode = argc > 5 && strcmp(argv[5], "keys") == 0 ? HSM_RECORDS_KEY_OBJECTS
                                                                              : HSM_RECORDS_PUBLIC_MAC;

                hsm_set_record_mode(h, mode);
                if (strcmp(argv[4], "--bad-records") == 0) {
                        _cleanup_free_ HsmKeyIssue *issues = NULL;
                        size_t n_issues = 0;

                        if (argc < 7 || hsm_list_bad_records(h, (const char *const *) argv + 6, (size_t) argc - 6, &issues,
                                                             &n_issues) < 0) {
                                fprintf(stderr, "test-attrs: cannot list bad records\n");
                                return 2;
                        }
                        for (size_t i = 0; i < n_issues; i++)
                                printf("%s '%s'\n", issues[i].reason, issues[i].label);
                        return 0;
                }
                return plant_record(h, mode, argc, argv);
        }
        if (strcmp(argv[4], "--plant-derived") == 0) {
                if (argc != 7) {
                        fprintf(stderr, "test-attrs: --plant-derived NAME VERSION\n");
                        return 2;
                }
                return plant_derived(h, argv[5], (uint32_t) strtoul(argv[6], NULL, 10));
        }
        if (strcmp(argv[4], "--destroy-mac") == 0) {
                HsmObject o;

                if (argc != 7 || hsm_find_mac_key(h, argv[5], (uint32_t) strtoul(argv[6], NULL, 10), &o) < 0 ||
                    hsm_destroy_object(h, o) < 0) {
                        fprintf(stderr, "test-attrs: no MAC key %s v%s destroyed\n", argv[5], argc == 7 ? argv[6] : "?");
                        return 1;
                }
                return 0;
        }
        mac = strcmp(argv[4], "--mac") == 0;
        if ((mac ? hsm_list_mac_keys(h, &refs, &n) : hsm_list_keys(h, &refs, &n)) < 0) {
                fprintf(stderr, "test-attrs: cannot list keys\n");
                return 2;
        }
        for (int a = 4 + mac; a < argc; a++) {
                unsigned found = 0;

                for (size_t i = 0; i < n; i++) {
                        HsmKeyAttrs at;
                        bool good;

                        if (strcmp(refs[i].label, argv[a]) != 0)
                                continue;
                        found++;
                        if (hsm_key_attributes(h, refs[i].handle, &at) < 0) {
                                printf("%s v%u: cannot read attributes\n", argv[a], refs[i].version);
                                bad++;
                                continue;
                        }
                        good = at.token && at.private_ && at.sensitive && at.always_sensitive && !at.extractable &&
                               at.never_extractable && !at.value_readable && at.value_len == 32;
                        printf("%s v%u: token=%d private=%d sensitive=%d always_sensitive=%d extractable=%d "
                               "never_extractable=%d value_len=%lu value_readable=%d %s\n",
                               argv[a], refs[i].version, at.token, at.private_, at.sensitive, at.always_sensitive,
                               at.extractable, at.never_extractable, at.value_len, at.value_readable,
                               good ? "OK" : "VIOLATION");
                        bad += !good;
                }
                if (found == 0) {
                        printf("%s: no key object in the token\n", argv[a]);
                        bad++;
                }
        }
        return bad ? 1 : 0;
}
