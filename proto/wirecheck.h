/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Checks the protobuf wire bytes of a message before protobuf-c unpacks them,
 * guided by the message's protobuf-c descriptors, so that it covers every
 * message and field of the schema, now and after schema changes:
 *
 *  - nesting: a sub-message more than WIRECHECK_DEPTH_MAX levels below the
 *    top, or a message type met a third time on one path (nested within its
 *    own type more than once), is refused before anything recurses. protobuf-c
 *    unpacks recursively without a bound: Request -> SubmitApprovalRequest ->
 *    Request -> ... at 4-6 bytes a level overflowed kekd's stack.
 *  - strings: a string field holding a NUL byte or anything but strict UTF-8
 *    (no overlong forms, no surrogates, nothing above U+10FFFF) is refused;
 *    protobuf-c would hand the C string cut at the NUL to its caller.
 *  - duplicates: a singular sub-message given twice in one message (protobuf
 *    would merge them; protobuf-c fails to for some) is refused.
 *  - framing: every varint ends within 10 bytes and the message, every length
 *    stays inside its parent, field number 0 and wire types 3, 4, 6 and 7
 *    (groups, which protobuf-c does not decode, and undefined ones) are refused.
 *
 * Pure: no allocation, no I/O, recursion bounded by WIRECHECK_DEPTH_MAX; the
 * work is linear in the length of the input. A refusal names the rule and the
 * message and field by their schema names, never the field's content.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

/*
 * The deepest sub-message the schema needs: Request (0) -> SubmitApprovalRequest
 * (1) -> Request (2) -> SetGrantRequest (3) -> Grant (4).
 */
#define WIRECHECK_DEPTH_MAX 4u
/* How often one message type may appear on a path from the top: once in itself (the approval's inner Request). */
#define WIRECHECK_TYPE_REPEAT_MAX 2u

typedef struct WireCheckError {
        const char *reason;     /* static text: "nesting deeper than 4 messages", "NUL byte in string", ... */
        const char *message;    /* short name of the message being read, e.g. "WrapRequest" */
        const char *field;      /* name of the field, or NULL for an unknown field or the framing */
        size_t offset;          /* byte offset in the input where it was found */
} WireCheckError;

/* What dispatch can learn of a message before unpacking it. Pointers point into the input. */
typedef struct WireCheckInfo {
        uint64_t id;            /* the top-level varint field named "id" (last one), or 0 */
        uint32_t oneof_case;    /* field number of the last top-level oneof member, or 0 */
        const uint8_t *key;     /* the string field named "key" directly in that member (last one), or NULL */
        size_t key_len;
} WireCheckInfo;

/*
 * Checks buf[0..len) as a packed message of type desc. Returns 0 if it may be
 * unpacked (ret_info filled, if not NULL), or -KEKERR_MALFORMED_REQUEST with
 * ret_error (if not NULL) saying why.
 */
int wirecheck_message(const ProtobufCMessageDescriptor *desc, const uint8_t *buf, size_t len,
                      WireCheckInfo *ret_info, WireCheckError *ret_error);

/* Whether s[0..len) is strict UTF-8 (RFC 3629) without a NUL byte. */
bool wirecheck_text_valid(const uint8_t *s, size_t len);

/* "NUL byte in string field WrapRequest.key" into buf; returns buf. */
const char *wirecheck_error_text(const WireCheckError *e, char *buf, size_t size);
