/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The wrapped-AEK blob, version 1. Self-describing so that a blob alone tells
 * kekd which key and version unwrap it:
 *
 *   offset  size  field
 *   0       1     format (0x01)
 *   1       1     n = length of the key name (1..64)
 *   2       n     key name, [A-Za-z0-9._-], not starting with '.' or '-'
 *   2+n     4     version id, big-endian, >= 1
 *   6+n     12    IV (random, from a CSPRNG, one per wrap)
 *   18+n    m+16  AES-256-GCM ciphertext of the m-byte plaintext, then the tag
 *
 * The AAD is the header (bytes 0 .. 6+n), then the 4-byte big-endian length of
 * the caller's context, then the context. Any change to format, key, version
 * or context therefore fails authentication inside the HSM. Parsing is pure
 * and never allocates: the view points into the caller's buffer.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BLOB_FORMAT_V1 0x01
#define KEY_NAME_MAX 64u
#define BLOB_IV_SIZE 12u
#define BLOB_TAG_SIZE 16u
#define AEK_MAX_SIZE 1024u
#define CONTEXT_MAX_SIZE 1024u
#define BLOB_HEADER_MAX (2u + KEY_NAME_MAX + 4u)
#define BLOB_MAX_SIZE (BLOB_HEADER_MAX + BLOB_IV_SIZE + AEK_MAX_SIZE + BLOB_TAG_SIZE)
#define BLOB_AAD_MAX (BLOB_HEADER_MAX + 4u + CONTEXT_MAX_SIZE)

typedef struct BlobView {
        char key[KEY_NAME_MAX + 1];
        uint32_t version;
        const uint8_t *header;     /* bytes authenticated as AAD prefix */
        size_t header_len;
        const uint8_t *iv;         /* BLOB_IV_SIZE bytes */
        const uint8_t *ciphertext; /* ciphertext || tag */
        size_t ciphertext_len;
} BlobView;

bool key_name_valid(const char *name);

/* -KEKERR_BLOB_INVALID for anything that is not a well-formed v1 blob. */
int blob_parse(const uint8_t *blob, size_t len, BlobView *ret);

/* Writes the header for (key, version) into out (BLOB_HEADER_MAX bytes); returns its length. */
int blob_header(const char *key, uint32_t version, uint8_t *out);

/* Builds AAD = header || be32(ctx_len) || ctx into out (BLOB_AAD_MAX bytes); returns its length. */
int blob_aad(const uint8_t *header, size_t header_len, const uint8_t *ctx, size_t ctx_len, uint8_t *out);
