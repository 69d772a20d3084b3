/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libFuzzer target: backup_file_parse() (daemon/backup-file.c) on arbitrary
 * bytes, the gate a restore's file passes before its tag is checked in the
 * token. A parsed file must have its tag inside the input, sound keys sorted
 * by name, and wrapped versions that their records name, of valid lengths.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "daemon/backup-file.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        BackupContents c = {};
        const char *why = NULL;

        if (backup_file_parse(data, size, &c, &why) < 0) {
                if (!why)
                        abort(); /* every refusal has its reason */
                return 0;
        }
        if (c.tag != data + size - HSM_TRANSFER_TAG_SIZE || c.signed_len != size - HSM_TRANSFER_TAG_SIZE)
                abort();
        for (size_t i = 0; i < c.n_keys; i++) {
                const BackupKeyEntry *e = &c.keys[i];

                if (!key_name_valid(e->key->name) || (i > 0 && strcmp(c.keys[i - 1].key->name, e->key->name) >= 0))
                        abort();
                for (size_t j = 0; j < e->n_versions; j++)
                        if (!key_find_version(e->key, e->versions[j].id) || e->versions[j].aes_key_len == 0 ||
                            e->versions[j].aes_key_len > HSM_TRANSFER_WRAPPED_MAX ||
                            e->versions[j].mac_key_len > HSM_TRANSFER_WRAPPED_MAX)
                                abort();
        }
        backup_contents_done(&c);
        return 0;
}
