/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* libFuzzer target: blob_parse() on arbitrary bytes; a parsed view must lie inside the input. */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "proto/blob.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        uint8_t aad[BLOB_AAD_MAX];
        BlobView v;

        if (blob_parse(data, size, &v) < 0)
                return 0;
        if (v.header != data || v.iv < data || v.ciphertext + v.ciphertext_len != data + size ||
            strlen(v.key) == 0 || !key_name_valid(v.key) || v.version == 0)
                abort();
        if (blob_aad(v.header, v.header_len, data, size > CONTEXT_MAX_SIZE ? CONTEXT_MAX_SIZE : size, aad) < 0)
                abort();
        return 0;
}
