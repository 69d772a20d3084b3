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
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/pin.h"
#include "pkcs11/hsm.h"
#include "pkcs11/records-mac.h"

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
