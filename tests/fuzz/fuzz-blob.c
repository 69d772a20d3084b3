/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* libFuzzer target: blob_parse() on arbitrary bytes; a parsed view must lie inside the input, with its format's sizes. */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "proto/blob.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        uint8_t aad[BLOB_AAD_MAX];
        size_t iv_len, tag_len;
        BlobView v;

        if (blob_parse(data, size, &v) < 0)
                return 0;
        if (v.header != data || v.iv < data || v.ciphertext + v.ciphertext_len != data + size ||
            strlen(v.key) == 0 || !key_name_valid(v.key) || v.version == 0)
                abort();
        if (blob_aad(v.header, v.header_len, data, size > CONTEXT_MAX_SIZE ? CONTEXT_MAX_SIZE : size, aad) < 0)
                abort();
        /* Each format's sizes: its profile's IV and tag, some ciphertext, cbc-hmac whole blocks. */
        if (blob_format_of_profile(v.profile) != data[0] || blob_profile_sizes(v.profile, &iv_len, &tag_len) < 0 ||
            v.iv_len != iv_len || v.tag_len != tag_len || v.iv + v.iv_len != v.ciphertext ||
            v.ciphertext_len < v.tag_len + 1 || (data[0] == BLOB_FORMAT_CBC_HMAC && (v.ciphertext_len - v.tag_len) % 16) ||
            v.ciphertext_len - v.tag_len > AEK_MAX_SIZE + (data[0] == BLOB_FORMAT_CBC_HMAC ? BLOB_PAD_MAX : 0))
                abort();
        return 0;
}
