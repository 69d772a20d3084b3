/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Encoding and parsing of blobs (layout and formats in blob.h). No crypto
 * here: the profile's operations run inside the HSM; this file only decides
 * which bytes are authenticated and rejects malformed input before the HSM
 * sees it.
 */
#include "config.h"

#include <errno.h>
#include <string.h>

#include "blob.h"
#include "common/kekerr.h"
#include "common/macro.h"

bool key_name_valid(const char *name) {
        size_t n;

        if (!name)
                return false;
        n = strlen(name);
        if (n == 0 || n > KEY_NAME_MAX || name[0] == '.' || name[0] == '-')
                return false;
        for (size_t i = 0; i < n; i++) {
                char c = name[i];

                if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
                      c == '_' || c == '-'))
                        return false;
        }
        return true;
}

/* The formats by profile number (pkcs11/hsm.h HsmProfile: 0 gcm, 1 ctr-hmac, 2 gcm-token-iv, 3 cbc-hmac). */
static const struct {
        uint8_t format;
        uint8_t iv_len, tag_len;
        uint8_t block;             /* cbc-hmac: the ciphertext is whole blocks, padding included */
} formats[] = {
        [0] = { BLOB_FORMAT_V1, BLOB_IV_SIZE, BLOB_TAG_SIZE, 0 },
        [1] = { BLOB_FORMAT_CTR_HMAC, 16, 32, 0 },
        [2] = { BLOB_FORMAT_GCM_TOKEN_IV, BLOB_IV_SIZE, BLOB_TAG_SIZE, 0 },
        [3] = { BLOB_FORMAT_CBC_HMAC, 16, 32, 16 },
};

int blob_format_of_profile(unsigned profile) {
        return profile < ELEMENTSOF(formats) ? formats[profile].format : -EINVAL;
}

int blob_profile_sizes(unsigned profile, size_t *ret_iv_len, size_t *ret_tag_len) {
        if (profile >= ELEMENTSOF(formats))
                return -EINVAL;
        *ret_iv_len = formats[profile].iv_len;
        *ret_tag_len = formats[profile].tag_len;
        return 0;
}

int blob_parse(const uint8_t *blob, size_t len, BlobView *ret) {
        BlobView v = {};
        size_t n, off;
        unsigned p;

        if (!blob || len < 2 || len > BLOB_MAX_SIZE)
                return -KEKERR_BLOB_INVALID;
        for (p = 0; p < ELEMENTSOF(formats) && formats[p].format != blob[0]; p++)
                ;
        if (p == ELEMENTSOF(formats))
                return -KEKERR_BLOB_INVALID;
        v.format = blob[0];
        v.profile = p;
        v.iv_len = formats[p].iv_len;
        v.tag_len = formats[p].tag_len;
        /* Each format's bound: the longest name and AEK (1122 bytes for v1, as always). */
        if (len > BLOB_HEADER_MAX + v.iv_len + AEK_MAX_SIZE + formats[p].block + v.tag_len)
                return -KEKERR_BLOB_INVALID;
        n = blob[1];
        if (n == 0 || n > KEY_NAME_MAX)
                return -KEKERR_BLOB_INVALID;
        /* header, IV, at least one byte of ciphertext, tag */
        if (len < 2 + n + 4 + v.iv_len + 1 + v.tag_len)
                return -KEKERR_BLOB_INVALID;
        memcpy(v.key, blob + 2, n);
        v.key[n] = 0;
        /* A NUL inside the name would make the C string differ from the authenticated bytes. */
        if (strlen(v.key) != n || !key_name_valid(v.key))
                return -KEKERR_BLOB_INVALID;
        off = 2 + n;
        v.version = (uint32_t) blob[off] << 24 | (uint32_t) blob[off + 1] << 16 | (uint32_t) blob[off + 2] << 8 |
                    blob[off + 3];
        if (v.version == 0)
                return -KEKERR_BLOB_INVALID;
        off += 4;
        v.header = blob;
        v.header_len = off;
        v.iv = blob + off;
        off += v.iv_len;
        v.ciphertext = blob + off;
        v.ciphertext_len = len - off;
        if (formats[p].block && (v.ciphertext_len - v.tag_len) % formats[p].block != 0)
                return -KEKERR_BLOB_INVALID;
        /* The bound above allows the longest name: with a shorter one, no more than an AEK's ciphertext either. */
        if (v.ciphertext_len - v.tag_len > AEK_MAX_SIZE + formats[p].block)
                return -KEKERR_BLOB_INVALID;
        *ret = v;
        return 0;
}

int blob_header(const char *key, uint32_t version, uint8_t *out) {
        return blob_header_profile(0, key, version, out);
}

int blob_header_profile(unsigned profile, const char *key, uint32_t version, uint8_t *out) {
        int format = blob_format_of_profile(profile);
        size_t n;

        if (format < 0 || !key_name_valid(key) || version == 0)
                return -EINVAL;
        n = strlen(key);
        out[0] = (uint8_t) format;
        out[1] = (uint8_t) n;
        memcpy(out + 2, key, n);
        out[2 + n] = (uint8_t) (version >> 24);
        out[3 + n] = (uint8_t) (version >> 16);
        out[4 + n] = (uint8_t) (version >> 8);
        out[5 + n] = (uint8_t) version;
        return (int) (6 + n);
}

int blob_aad(const uint8_t *header, size_t header_len, const uint8_t *ctx, size_t ctx_len, uint8_t *out) {
        if (header_len > BLOB_HEADER_MAX || ctx_len > CONTEXT_MAX_SIZE)
                return -EINVAL;
        memcpy(out, header, header_len);
        out[header_len] = (uint8_t) (ctx_len >> 24);
        out[header_len + 1] = (uint8_t) (ctx_len >> 16);
        out[header_len + 2] = (uint8_t) (ctx_len >> 8);
        out[header_len + 3] = (uint8_t) ctx_len;
        if (ctx_len > 0)
                memcpy(out + header_len + 4, ctx, ctx_len);
        return (int) (header_len + 4 + ctx_len);
}
