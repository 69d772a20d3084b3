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
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/pin.h"
#include "pkcs11/hsm.h"

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
