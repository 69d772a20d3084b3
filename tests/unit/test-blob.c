/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Unit tests of proto/blob.c: key name validation, the v1 blob header layout,
 * the AAD construction, and blob_parse() of valid blobs (every view field) and
 * of every kind of malformed or truncated blob.
 */
#include "config.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/kekerr.h"
#include "common/macro.h"
#include "proto/blob.h"
#include "tests/lib/tap.h"

/* 64 valid characters: the longest acceptable name. */
#define NAME64 "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-"
/* Minimum blob: header, IV, one byte of ciphertext, tag. */
#define BLOB_MIN(n) (2u + (n) + 4u + BLOB_IV_SIZE + 1u + BLOB_TAG_SIZE)

static bool all_bytes(const uint8_t *p, size_t n, uint8_t v) {
        for (size_t i = 0; i < n; i++)
                if (p[i] != v)
                        return false;
        return true;
}

/* The name as printable ASCII for a TAP line (\xNN escapes); a few rotating buffers. */
static const char *esc(const char *s) {
        static char bufs[4][4 * (KEY_NAME_MAX + 2) + 1];
        static unsigned k;
        char *b = bufs[k++ % ELEMENTSOF(bufs)], *p = b;

        for (; *s && p < b + sizeof(bufs[0]) - 5; s++) {
                unsigned char c = (unsigned char) *s;

                if (c < 0x20 || c >= 0x7f || c == '\\')
                        p += sprintf(p, "\\x%02x", c);
                else
                        *p++ = (char) c;
        }
        *p = 0;
        return b;
}

/* Builds a blob by hand, without blob_header(): returns its length. */
static size_t build_blob(uint8_t *out, uint8_t format, size_t name_len_byte, const char *name, uint32_t version,
                         size_t ct_len) {
        size_t n = strlen(name), off = 0;

        out[off++] = format;
        out[off++] = (uint8_t) name_len_byte;
        memcpy(out + off, name, n);
        off += n;
        out[off++] = (uint8_t) (version >> 24);
        out[off++] = (uint8_t) (version >> 16);
        out[off++] = (uint8_t) (version >> 8);
        out[off++] = (uint8_t) version;
        for (size_t i = 0; i < BLOB_IV_SIZE; i++)
                out[off++] = (uint8_t) (0xa0 + i);
        for (size_t i = 0; i < ct_len; i++)
                out[off++] = (uint8_t) (i * 31 + 1);
        return off;
}

static void test_key_name(void) {
        static const char *const good[] = {
                "a", "Z", "0", "9abc", "a.b_c-D9", "a.", "a-", "a_", "_a", "key.v2", NAME64,
        };
        static const char *const bad[] = {
                "", ".x", "-x", ".", "-", "a b", "a/b", "\xc3\xa4", "a\xc3\xa4", "a\tb", "a\nb", "a:b", "a+b",
                "a@b", "a\\b", " a", "a ", "a\x7f", NAME64 "x",
        };

        for (size_t i = 0; i < ELEMENTSOF(good); i++)
                ok(key_name_valid(good[i]), "key_name_valid('%s') is true", esc(good[i]));
        for (size_t i = 0; i < ELEMENTSOF(bad); i++)
                ok(!key_name_valid(bad[i]), "key_name_valid('%s') is false", esc(bad[i]));
        ok(!key_name_valid(NULL), "key_name_valid(NULL) is false");
        is_int(strlen(NAME64), 64, "the 64-character name has 64 characters");
}

static void test_header(void) {
        uint8_t out[BLOB_HEADER_MAX + 8];
        static const uint8_t want[] = { 0x01, 8, 'a', '.', 'b', '_', 'c', '-', 'D', '9', 0x12, 0x34, 0x56, 0x78 };

        memset(out, 0xee, sizeof(out));
        is_int(blob_header("a.b_c-D9", 0x12345678, out), (int) sizeof(want), "header: length 6 + 8");
        ok(memcmp(out, want, sizeof(want)) == 0, "header: format, name length, name, big-endian version");
        ok(all_bytes(out + sizeof(want), sizeof(out) - sizeof(want), 0xee), "header: nothing written past it");

        memset(out, 0xee, sizeof(out));
        is_int(blob_header("k", 1, out), 7, "header: one-character name");
        ok(memcmp(out, "\x01\x01k\x00\x00\x00\x01", 7) == 0, "header: bytes for ('k', 1)");

        memset(out, 0xee, sizeof(out));
        is_int(blob_header("k", UINT32_MAX, out), 7, "header: version UINT32_MAX");
        ok(memcmp(out, "\x01\x01k\xff\xff\xff\xff", 7) == 0, "header: bytes for ('k', 0xffffffff)");

        memset(out, 0xee, sizeof(out));
        is_int(blob_header(NAME64, 0x00000100, out), (int) BLOB_HEADER_MAX, "header: 64-char name gives BLOB_HEADER_MAX");
        ok(out[0] == 0x01 && out[1] == 64 && memcmp(out + 2, NAME64, 64) == 0 &&
                   memcmp(out + 66, "\x00\x00\x01\x00", 4) == 0,
           "header: bytes for the 64-char name");
        ok(all_bytes(out + BLOB_HEADER_MAX, 8, 0xee), "header: longest header stays within BLOB_HEADER_MAX");

        /* Refusals, with nothing written. */
        static const char *const bad[] = { "", ".x", "-x", "a b", "a/b", "\xc3\xa4", NAME64 "x" };
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                memset(out, 0xee, sizeof(out));
                is_int(blob_header(bad[i], 1, out), -EINVAL, "header: name '%s' refused", esc(bad[i]));
                ok(all_bytes(out, sizeof(out), 0xee), "header: nothing written for '%s'", esc(bad[i]));
        }
        memset(out, 0xee, sizeof(out));
        is_int(blob_header(NULL, 1, out), -EINVAL, "header: NULL name refused");
        is_int(blob_header("good", 0, out), -EINVAL, "header: version 0 refused");
        ok(all_bytes(out, sizeof(out), 0xee), "header: nothing written for version 0");
}

static void test_aad(void) {
        uint8_t header[BLOB_HEADER_MAX], out[BLOB_AAD_MAX + 8], ctx[CONTEXT_MAX_SIZE + 1];
        int hl;

        for (size_t i = 0; i < sizeof(ctx); i++)
                ctx[i] = (uint8_t) (i * 5 + 2);
        hl = blob_header("key", 0x01020304, header);
        is_int(hl, 9, "aad: header for ('key', 0x01020304)");

        memset(out, 0xee, sizeof(out));
        is_int(blob_aad(header, 9, ctx, 3, out), 9 + 4 + 3, "aad: length header + 4 + ctx");
        ok(memcmp(out, "\x01\x03key\x01\x02\x03\x04", 9) == 0, "aad: starts with the header");
        ok(memcmp(out + 9, "\x00\x00\x00\x03", 4) == 0, "aad: big-endian context length 3");
        ok(memcmp(out + 13, ctx, 3) == 0, "aad: ends with the context");
        ok(all_bytes(out + 16, sizeof(out) - 16, 0xee), "aad: nothing written past it");

        memset(out, 0xee, sizeof(out));
        is_int(blob_aad(header, 9, NULL, 0, out), 13, "aad: empty context");
        ok(memcmp(out, header, 9) == 0 && memcmp(out + 9, "\x00\x00\x00\x00", 4) == 0,
           "aad: empty context gives header || 00000000");
        ok(out[13] == 0xee, "aad: nothing after the zero length");

        memset(out, 0xee, sizeof(out));
        is_int(blob_aad(header, 9, ctx, 258, out), 9 + 4 + 258, "aad: 258-byte context");
        ok(memcmp(out + 9, "\x00\x00\x01\x02", 4) == 0, "aad: length 258 is 00 00 01 02");
        ok(memcmp(out + 13, ctx, 258) == 0, "aad: 258-byte context copied");

        /* The limits. */
        hl = blob_header(NAME64, 7, header);
        memset(out, 0xee, sizeof(out));
        is_int(blob_aad(header, (size_t) hl, ctx, CONTEXT_MAX_SIZE, out), (int) BLOB_AAD_MAX,
               "aad: longest header and CONTEXT_MAX_SIZE context fill BLOB_AAD_MAX");
        ok(memcmp(out, header, BLOB_HEADER_MAX) == 0 && memcmp(out + BLOB_HEADER_MAX, "\x00\x00\x04\x00", 4) == 0 &&
                   memcmp(out + BLOB_HEADER_MAX + 4, ctx, CONTEXT_MAX_SIZE) == 0,
           "aad: content of the maximal AAD");
        ok(all_bytes(out + BLOB_AAD_MAX, 8, 0xee), "aad: maximal AAD stays within BLOB_AAD_MAX");

        memset(out, 0xee, sizeof(out));
        is_int(blob_aad(header, 9, ctx, CONTEXT_MAX_SIZE + 1, out), -EINVAL, "aad: context of 1025 bytes refused");
        ok(all_bytes(out, sizeof(out), 0xee), "aad: nothing written for an oversized context");
        is_int(blob_aad(header, BLOB_HEADER_MAX + 1, ctx, 0, out), -EINVAL, "aad: header longer than BLOB_HEADER_MAX refused");
        is_int(blob_aad(header, 9, ctx, SIZE_MAX, out), -EINVAL, "aad: context length SIZE_MAX refused");
}

static void test_parse_valid(void) {
        uint8_t blob[BLOB_MAX_SIZE + 16], header[BLOB_HEADER_MAX];
        BlobView v;
        size_t len;

        /* "vol.key_1-A" (11 chars), version 0x12345678, 32-byte AEK + tag. */
        len = build_blob(blob, 0x01, 11, "vol.key_1-A", 0x12345678, 32 + BLOB_TAG_SIZE);
        is_int(len, 2 + 11 + 4 + 12 + 48, "parse: hand-built blob length");
        memset(&v, 0xee, sizeof(v));
        is_int(blob_parse(blob, len, &v), 0, "parse: valid blob accepted");
        ok(strcmp(v.key, "vol.key_1-A") == 0, "parse: key '%s'", v.key);
        ok(v.version == 0x12345678, "parse: version 0x%08x", v.version);
        ok(v.header == blob, "parse: header points at the blob");
        is_int(v.header_len, 17, "parse: header_len 6 + 11");
        ok(v.iv == blob + 17, "parse: iv right after the header");
        ok(memcmp(v.iv, "\xa0\xa1\xa2\xa3\xa4\xa5\xa6\xa7\xa8\xa9\xaa\xab", BLOB_IV_SIZE) == 0, "parse: iv bytes");
        ok(v.ciphertext == blob + 29, "parse: ciphertext right after the iv");
        is_int(v.ciphertext_len, 48, "parse: ciphertext_len includes the tag");
        is_int(blob_header("vol.key_1-A", 0x12345678, header), 17, "parse: blob_header of the same key");
        ok(memcmp(header, v.header, v.header_len) == 0, "parse: parsed header equals blob_header()");

        /* Minimum: one byte of ciphertext. */
        len = build_blob(blob, 0x01, 1, "k", 1, 1 + BLOB_TAG_SIZE);
        is_int(len, BLOB_MIN(1), "parse: minimum blob for a 1-char name is 36 bytes");
        memset(&v, 0xee, sizeof(v));
        is_int(blob_parse(blob, len, &v), 0, "parse: minimum blob accepted");
        ok(strcmp(v.key, "k") == 0 && v.version == 1, "parse: minimum blob key and version");
        ok(v.header_len == 7 && v.iv == blob + 7 && v.ciphertext == blob + 19 && v.ciphertext_len == 17,
           "parse: minimum blob offsets");

        /* Maximum: 64-char name and a 1024-byte AEK is exactly BLOB_V1_MAX_SIZE (1122). */
        len = build_blob(blob, 0x01, 64, NAME64, UINT32_MAX, AEK_MAX_SIZE + BLOB_TAG_SIZE);
        is_int(len, BLOB_V1_MAX_SIZE, "parse: largest v1 blob is BLOB_V1_MAX_SIZE");
        is_int(BLOB_V1_MAX_SIZE, 1122, "parse: the v1 bound is still 1122 bytes");
        memset(&v, 0xee, sizeof(v));
        is_int(blob_parse(blob, len, &v), 0, "parse: BLOB_V1_MAX_SIZE blob accepted");
        ok(strcmp(v.key, NAME64) == 0, "parse: 64-char key NUL-terminated in the view");
        ok(v.version == UINT32_MAX, "parse: version 0xffffffff");
        ok(v.header_len == 70 && v.iv == blob + 70 && v.ciphertext == blob + 82 &&
                   v.ciphertext_len == AEK_MAX_SIZE + BLOB_TAG_SIZE,
           "parse: largest blob offsets");
}

static void test_parse_invalid(void) {
        uint8_t blob[BLOB_MAX_SIZE + 64];
        BlobView v;
        size_t len;

#define INVALID(l, what)                                                                                   \
        do {                                                                                               \
                memset(&v, 0xee, sizeof(v));                                                               \
                is_int(blob_parse(blob, (l), &v), -KEKERR_BLOB_INVALID, "invalid: %s", what);              \
        } while (0)

        len = build_blob(blob, 0x01, 3, "abc", 1, 32 + BLOB_TAG_SIZE);
        is_int(blob_parse(blob, len, &v), 0, "invalid: the base blob is valid");

        INVALID(0, "empty");
        INVALID(1, "1 byte");
        INVALID(2, "2 bytes (format and name length only)");
        memset(&v, 0xee, sizeof(v));
        is_int(blob_parse(NULL, 0, &v), -KEKERR_BLOB_INVALID, "invalid: NULL");

        static const uint8_t formats[] = { 0x00, 0x05, 0x10, 0x81, 0xff };
        for (size_t i = 0; i < ELEMENTSOF(formats); i++) {
                len = build_blob(blob, formats[i], 3, "abc", 1, 32 + BLOB_TAG_SIZE);
                memset(&v, 0xee, sizeof(v));
                is_int(blob_parse(blob, len, &v), -KEKERR_BLOB_INVALID, "invalid: format byte 0x%02x", formats[i]);
        }

        /* Name length 0: the bytes of "abc" would then be read as the version. */
        len = build_blob(blob, 0x01, 0, "abc", 1, 32 + BLOB_TAG_SIZE);
        INVALID(len, "name length 0");

        /* Name length 65, with 65 valid characters present. */
        len = build_blob(blob, 0x01, 65, NAME64 "x", 1, 32 + BLOB_TAG_SIZE);
        INVALID(len, "name length 65");
        len = build_blob(blob, 0x01, 255, NAME64, 1, 300);
        INVALID(len, "name length 255");

        /* Name length larger than the bytes that follow. */
        len = build_blob(blob, 0x01, 60, "abc", 1, 0);
        INVALID(len, "name length beyond the end of the blob");

        static const char *const bad_names[] = { ".ab", "-ab", "a b", "a/b", "\xc3\xa4", "a:b", "ab\x7f" };
        for (size_t i = 0; i < ELEMENTSOF(bad_names); i++) {
                len = build_blob(blob, 0x01, strlen(bad_names[i]), bad_names[i], 1, 32 + BLOB_TAG_SIZE);
                memset(&v, 0xee, sizeof(v));
                is_int(blob_parse(blob, len, &v), -KEKERR_BLOB_INVALID, "invalid: name '%s'", esc(bad_names[i]));
        }

        /* A NUL inside the name: "a\0b" is not [A-Za-z0-9._-]{3}, and must not parse as key "a". */
        len = build_blob(blob, 0x01, 3, "abc", 1, 32 + BLOB_TAG_SIZE);
        blob[3] = 0;
        memset(&v, 0xee, sizeof(v));
        if (!is_int(blob_parse(blob, len, &v), -KEKERR_BLOB_INVALID, "invalid: name with an embedded NUL ('a\\0c')"))
                diag("accepted as key '%s' (header_len %zu)", v.key, v.header_len);
        len = build_blob(blob, 0x01, 3, "abc", 1, 32 + BLOB_TAG_SIZE);
        blob[4] = 0;
        memset(&v, 0xee, sizeof(v));
        if (!is_int(blob_parse(blob, len, &v), -KEKERR_BLOB_INVALID, "invalid: name with a trailing NUL ('ab\\0')"))
                diag("accepted as key '%s' (header_len %zu)", v.key, v.header_len);

        len = build_blob(blob, 0x01, 3, "abc", 0, 32 + BLOB_TAG_SIZE);
        INVALID(len, "version 0");

        /* Too short to hold IV + 1 byte + tag: 16 bytes after the IV (tag only). */
        len = build_blob(blob, 0x01, 3, "abc", 1, BLOB_TAG_SIZE);
        is_int(len, BLOB_MIN(3) - 1, "invalid: tag-only blob is one byte below the minimum");
        INVALID(len, "too short for IV + 1 byte + tag");
        len = build_blob(blob, 0x01, 3, "abc", 1, 0);
        INVALID(len, "header and IV only");

        /* Longer than BLOB_V1_MAX_SIZE, with a valid header. */
        len = build_blob(blob, 0x01, 64, NAME64, 1, AEK_MAX_SIZE + BLOB_TAG_SIZE + 1);
        is_int(len, BLOB_V1_MAX_SIZE + 1, "invalid: built BLOB_V1_MAX_SIZE + 1 bytes");
        INVALID(len, "longer than BLOB_V1_MAX_SIZE");
        len = build_blob(blob, 0x01, 1, "k", 1, BLOB_V1_MAX_SIZE + 1 - 7 - BLOB_IV_SIZE);
        is_int(len, BLOB_V1_MAX_SIZE + 1, "invalid: built BLOB_V1_MAX_SIZE + 1 bytes with a short name");
        INVALID(len, "longer than BLOB_V1_MAX_SIZE with a short name");
        /* A v1 blob as long as the largest ctr-hmac blob: v1's own bound applies. */
        len = build_blob(blob, 0x01, 64, NAME64, 1, BLOB_MAX_SIZE - 70 - BLOB_IV_SIZE);
        is_int(len, BLOB_MAX_SIZE, "invalid: built a BLOB_MAX_SIZE v1 blob");
        INVALID(len, "a v1 blob past v1's bound");
        len = build_blob(blob, 0x02, 64, NAME64, 1, BLOB_MAX_SIZE + 1 - 70 - BLOB_IV_SIZE);
        INVALID(len, "a ctr-hmac blob longer than BLOB_MAX_SIZE");
        /* Within the bound of the longest name, yet more ciphertext than a 1024-byte AEK gives. */
        len = build_blob(blob, 0x01, 1, "k", 1, AEK_MAX_SIZE + 1 + BLOB_TAG_SIZE);
        ok(len < BLOB_V1_MAX_SIZE, "invalid: built a short-name v1 blob under the v1 bound");
        INVALID(len, "a v1 blob whose ciphertext is longer than a 1024-byte AEK's");
        len = build_blob(blob, 0x04, 1, "k", 1, 4 + AEK_MAX_SIZE + 32 + 32);
        ok(len < BLOB_MAX_SIZE, "invalid: built a short-name cbc-hmac blob under its bound");
        INVALID(len, "a cbc-hmac blob with more than a 1024-byte AEK and a block of padding");
        len = build_blob(blob, 0x01, 1, "k", 1, AEK_MAX_SIZE + BLOB_TAG_SIZE);
        is_int(blob_parse(blob, len, &(BlobView) {}), 0, "a short-name v1 blob of a 1024-byte AEK is accepted");
        INVALID(SIZE_MAX, "length SIZE_MAX");
#undef INVALID
}

static void test_parse_truncated(void) {
        static const char *const names[] = { "k", "a.b_c-D9", NAME64 };
        uint8_t blob[BLOB_MAX_SIZE];
        BlobView v;

        for (size_t i = 0; i < ELEMENTSOF(names); i++) {
                size_t n = strlen(names[i]), len, min = BLOB_MIN(n);
                unsigned wrong = 0;

                len = build_blob(blob, 0x01, n, names[i], 42, 1 + BLOB_TAG_SIZE);
                is_int(len, min, "truncated: '%s' blob is %zu bytes", names[i], min);
                for (size_t l = 0; l < min; l++) {
                        int r = blob_parse(blob, l, &v);

                        if (r != -KEKERR_BLOB_INVALID) {
                                diag("length %zu: got %d", l, r);
                                wrong++;
                        }
                }
                is_int(wrong, 0, "truncated: every length 0..%zu of the '%s' blob is BLOB_INVALID", min - 1,
                       names[i]);
                is_int(blob_parse(blob, min, &v), 0, "truncated: the full %zu bytes parse", min);
                is_int(v.ciphertext_len, 1 + BLOB_TAG_SIZE, "truncated: full blob has 17 bytes of ciphertext");
        }
}

/* The profile formats (issue 16): 0x02 ctr-hmac (16-byte IV, 32-byte tag), 0x03 gcm-token-iv (as v1). */
static void test_parse_profiles(void) {
        uint8_t blob[BLOB_MAX_SIZE + 16], header[BLOB_HEADER_MAX];
        BlobView v;
        size_t len;

        is_int(blob_format_of_profile(0), 0x01, "profile gcm is format 0x01");
        is_int(blob_format_of_profile(1), 0x02, "profile ctr-hmac is format 0x02");
        is_int(blob_format_of_profile(2), 0x03, "profile gcm-token-iv is format 0x03");
        is_int(blob_format_of_profile(3), 0x04, "profile cbc-hmac is format 0x04");
        is_int(blob_format_of_profile(4), -EINVAL, "no format for an unknown profile");
        is_int(blob_header_profile(1, "k", 2, header), 7, "header of a ctr-hmac version");
        ok(header[0] == 0x02 && header[1] == 1 && header[2] == 'k' && header[6] == 2, "its format byte is 0x02");
        is_int(blob_header_profile(9, "k", 2, header), -EINVAL, "header of an unknown profile refused");

        /* ctr-hmac: the IV is 16 bytes (build_blob writes 12; the next 4 count as IV too). */
        len = build_blob(blob, 0x02, 3, "abc", 5, 4 + 40 + 32);
        memset(&v, 0xee, sizeof(v));
        is_int(blob_parse(blob, len, &v), 0, "ctr-hmac blob accepted");
        ok(v.format == 0x02 && v.profile == 1 && v.iv_len == 16 && v.tag_len == 32, "ctr-hmac: format, profile, sizes");
        ok(v.header_len == 9 && v.iv == blob + 9 && v.ciphertext == blob + 25 && v.ciphertext_len == 72,
           "ctr-hmac: offsets");
        ok(strcmp(v.key, "abc") == 0 && v.version == 5, "ctr-hmac: key and version");
        /* Minimum: header, 16-byte IV, 1 byte, 32-byte tag. */
        len = build_blob(blob, 0x02, 1, "k", 1, 4 + 1 + 32);
        is_int(blob_parse(blob, len, &v), 0, "ctr-hmac: minimum blob accepted");
        is_int(blob_parse(blob, len - 1, &v), -KEKERR_BLOB_INVALID, "ctr-hmac: one byte less is refused");
        /* Maximum: 1142 bytes. */
        len = build_blob(blob, 0x02, 64, NAME64, 1, 4 + AEK_MAX_SIZE + 32);
        is_int(len, 1142, "ctr-hmac: largest blob is 1142 bytes");
        is_int(blob_parse(blob, len, &v), 0, "ctr-hmac: largest blob accepted");
        is_int(blob_parse(blob, len + 1, &v), -KEKERR_BLOB_INVALID, "ctr-hmac: one byte more is refused");

        /* cbc-hmac: 16-byte IV, whole blocks of ciphertext (padding included), 32-byte tag. */
        len = build_blob(blob, 0x04, 3, "abc", 5, 4 + 48 + 32);
        memset(&v, 0xee, sizeof(v));
        is_int(blob_parse(blob, len, &v), 0, "cbc-hmac blob accepted");
        ok(v.format == 0x04 && v.profile == 3 && v.iv_len == 16 && v.tag_len == 32 && v.ciphertext_len == 80,
           "cbc-hmac: format, profile, sizes");
        len = build_blob(blob, 0x04, 3, "abc", 5, 4 + 47 + 32);
        is_int(blob_parse(blob, len, &v), -KEKERR_BLOB_INVALID, "cbc-hmac: a ciphertext that is not whole blocks is refused");
        len = build_blob(blob, 0x04, 3, "abc", 5, 4 + 16 + 32);
        is_int(blob_parse(blob, len, &v), 0, "cbc-hmac: minimum blob (one block) accepted");
        len = build_blob(blob, 0x04, 3, "abc", 5, 4 + 32);
        is_int(blob_parse(blob, len, &v), -KEKERR_BLOB_INVALID, "cbc-hmac: a tag alone is refused");
        len = build_blob(blob, 0x04, 64, NAME64, 1, 4 + AEK_MAX_SIZE + 16 + 32);
        is_int(len, BLOB_MAX_SIZE, "cbc-hmac: largest blob (1024-byte AEK, a block of padding) is BLOB_MAX_SIZE");
        is_int(BLOB_MAX_SIZE, 1158, "BLOB_MAX_SIZE is 1158 bytes");
        is_int(blob_parse(blob, len, &v), 0, "cbc-hmac: largest blob accepted");

        len = build_blob(blob, 0x03, 3, "abc", 5, 32 + BLOB_TAG_SIZE);
        is_int(blob_parse(blob, len, &v), 0, "gcm-token-iv blob accepted");
        ok(v.format == 0x03 && v.profile == 2 && v.iv_len == 12 && v.tag_len == 16 && v.ciphertext_len == 48,
           "gcm-token-iv: format, profile, sizes");
        len = build_blob(blob, 0x01, 3, "abc", 5, 32 + BLOB_TAG_SIZE);
        ok(blob_parse(blob, len, &v) == 0 && v.format == 0x01 && v.profile == 0 && v.iv_len == 12 && v.tag_len == 16,
           "v1: profile gcm, sizes 12 and 16");
}

int main(void) {
        test_key_name();
        test_parse_profiles();
        test_header();
        test_aad();
        test_parse_valid();
        test_parse_invalid();
        test_parse_truncated();
        return tap_done();
}
