/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The descriptor-guided pre-check of protobuf wire bytes (see wirecheck.h).
 * walk() reads one message's fields and calls itself for a sub-message only
 * after checking the depth, so the C stack holds at most WIRECHECK_DEPTH_MAX + 1
 * frames whatever the input. Every read is checked against the end of the
 * enclosing message first; lengths are compared as uint64_t, never added.
 */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "common/kekerr.h"
#include "wirecheck.h"

typedef struct Walk {
        const uint8_t *buf;                                          /* the whole input, for offsets */
        const ProtobufCMessageDescriptor *path[WIRECHECK_DEPTH_MAX + 1]; /* the message types above */
        WireCheckInfo info;
        WireCheckError error;
} Walk;

static int refuse(Walk *w, const char *reason, const ProtobufCMessageDescriptor *desc,
                  const ProtobufCFieldDescriptor *field, const uint8_t *at) {
        w->error = (WireCheckError) {
                .reason = reason,
                .message = desc->short_name,
                .field = field ? field->name : NULL,
                .offset = (size_t) (at - w->buf),
        };
        return -KEKERR_MALFORMED_REQUEST;
}

/* Reads a varint of at most 10 bytes from [*p, end); false if it does not end there. */
static bool read_varint(const uint8_t **p, const uint8_t *end, uint64_t *ret) {
        uint64_t v = 0;

        for (unsigned i = 0; i < 10 && *p + i < end; i++) {
                v |= (uint64_t) ((*p)[i] & 0x7f) << (7 * i);
                if (!((*p)[i] & 0x80)) {
                        *p += i + 1;
                        *ret = v;
                        return true;
                }
        }
        return false;
}

bool wirecheck_text_valid(const uint8_t *s, size_t len) {
        size_t i = 0;

        while (i < len) {
                uint8_t c = s[i];
                size_t n;
                uint32_t cp, min;

                if (c == 0)
                        return false;
                if (c < 0x80) {
                        i++;
                        continue;
                }
                if (c >= 0xc2 && c <= 0xdf)
                        n = 1, cp = c & 0x1f, min = 0x80;
                else if (c >= 0xe0 && c <= 0xef)
                        n = 2, cp = c & 0x0f, min = 0x800;
                else if (c >= 0xf0 && c <= 0xf4)
                        n = 3, cp = c & 0x07, min = 0x10000;
                else
                        return false; /* continuation byte, C0/C1 (overlong 2-byte) or F5..FF */
                if (len - i - 1 < n)
                        return false;
                for (size_t k = 1; k <= n; k++) {
                        if ((s[i + k] & 0xc0) != 0x80)
                                return false;
                        cp = (cp << 6) | (s[i + k] & 0x3f);
                }
                if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
                        return false; /* overlong, beyond Unicode, or a UTF-16 surrogate */
                i += n + 1;
        }
        return true;
}

/* The wire type a field of this type is sent with, unpacked. */
static unsigned wire_type_of(ProtobufCType type) {
        switch (type) {
        case PROTOBUF_C_TYPE_SFIXED32:
        case PROTOBUF_C_TYPE_FIXED32:
        case PROTOBUF_C_TYPE_FLOAT:
                return PROTOBUF_C_WIRE_TYPE_32BIT;
        case PROTOBUF_C_TYPE_SFIXED64:
        case PROTOBUF_C_TYPE_FIXED64:
        case PROTOBUF_C_TYPE_DOUBLE:
                return PROTOBUF_C_WIRE_TYPE_64BIT;
        case PROTOBUF_C_TYPE_STRING:
        case PROTOBUF_C_TYPE_BYTES:
        case PROTOBUF_C_TYPE_MESSAGE:
                return PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED;
        default:
                return PROTOBUF_C_WIRE_TYPE_VARINT;
        }
}

/* A packed repeated scalar in [p, end): whole elements only, as protobuf-c requires. */
static bool packed_valid(unsigned wire, const uint8_t *p, const uint8_t *end) {
        uint64_t v;

        if (wire == PROTOBUF_C_WIRE_TYPE_32BIT)
                return (end - p) % 4 == 0;
        if (wire == PROTOBUF_C_WIRE_TYPE_64BIT)
                return (end - p) % 8 == 0;
        while (p < end)
                if (!read_varint(&p, end, &v))
                        return false;
        return true;
}

/*
 * Checks the message of type desc in [p, end), depth levels below the top.
 * in_body: it is the top-level message's oneof member (for WireCheckInfo.key).
 */
static int walk(Walk *w, const ProtobufCMessageDescriptor *desc, const uint8_t *p, const uint8_t *end,
                unsigned depth, bool in_body) {
        uint64_t once = 0; /* singular message fields met in this message, by index in desc->fields */

        w->path[depth] = desc;
        while (p < end) {
                const uint8_t *at = p, *value;
                const ProtobufCFieldDescriptor *f;
                uint64_t tag, v;
                uint32_t num;
                int r;

                if (!read_varint(&p, end, &tag))
                        return refuse(w, "truncated or overlong tag", desc, NULL, at);
                if (tag >> 3 == 0 || tag >> 3 > UINT32_MAX)
                        return refuse(w, "invalid field number", desc, NULL, at);
                num = (uint32_t) (tag >> 3);
                f = protobuf_c_message_descriptor_get_field(desc, num);
                /* A known field in another wire type than its own (or packed, if repeated) fails protobuf-c. */
                if (f && (tag & 7) != wire_type_of(f->type) &&
                    !(f->label == PROTOBUF_C_LABEL_REPEATED && (tag & 7) == PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED))
                        return refuse(w, "wrong wire type", desc, f, at);
                switch (tag & 7) {
                case PROTOBUF_C_WIRE_TYPE_VARINT:
                        if (!read_varint(&p, end, &v))
                                return refuse(w, "truncated or overlong varint", desc, f, at);
                        if (depth == 0 && f && strcmp(f->name, "id") == 0)
                                w->info.id = v;
                        break;
                case PROTOBUF_C_WIRE_TYPE_64BIT:
                        if (end - p < 8)
                                return refuse(w, "truncated fixed64", desc, f, at);
                        p += 8;
                        break;
                case PROTOBUF_C_WIRE_TYPE_32BIT:
                        if (end - p < 4)
                                return refuse(w, "truncated fixed32", desc, f, at);
                        p += 4;
                        break;
                case PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED:
                        if (!read_varint(&p, end, &v))
                                return refuse(w, "truncated or overlong length", desc, f, at);
                        if (v > (uint64_t) (end - p))
                                return refuse(w, "length beyond the end of the message", desc, f, at);
                        value = p;
                        p += v;
                        if (!f)
                                break; /* unknown field: protobuf-c keeps its bytes, never descends */
                        if (f->type == PROTOBUF_C_TYPE_STRING) {
                                if (memchr(value, 0, v))
                                        return refuse(w, "NUL byte in string", desc, f, value);
                                if (!wirecheck_text_valid(value, v))
                                        return refuse(w, "invalid UTF-8 in string", desc, f, value);
                                if (in_body && strcmp(f->name, "key") == 0) {
                                        w->info.key = value;
                                        w->info.key_len = v;
                                }
                                break;
                        }
                        if (wire_type_of(f->type) != PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED) {
                                if (!packed_valid(wire_type_of(f->type), value, p))
                                        return refuse(w, "partial element in a packed field", desc, f, value);
                                break;
                        }
                        if (f->type != PROTOBUF_C_TYPE_MESSAGE)
                                break; /* bytes */
                        /*
                         * A singular sub-message given twice is merged by protobuf; protobuf-c 1.4
                         * fails to merge some (two approval Requests), so such a frame would pass here
                         * and fail to unpack. No client sends one: refused, so that what passes unpacks.
                         */
                        if (f->label != PROTOBUF_C_LABEL_REPEATED) {
                                size_t idx = (size_t) (f - desc->fields);

                                if (idx < 64 && (once & (UINT64_C(1) << idx)))
                                        return refuse(w, "sub-message given twice", desc, f, at);
                                if (idx < 64)
                                        once |= UINT64_C(1) << idx;
                        }
                        if (depth == 0 && (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF)) {
                                /* protobuf-c keeps the last oneof member; a different one replaces the earlier */
                                if (w->info.oneof_case != num) {
                                        w->info.key = NULL;
                                        w->info.key_len = 0;
                                }
                                w->info.oneof_case = num;
                        }
                        if (depth + 1 > WIRECHECK_DEPTH_MAX)
                                return refuse(w, "messages nested too deep", desc, f, at);
                        {
                                const ProtobufCMessageDescriptor *sub = f->descriptor;
                                unsigned seen = 1;

                                for (unsigned i = 0; i <= depth; i++)
                                        seen += w->path[i] == sub;
                                if (seen > WIRECHECK_TYPE_REPEAT_MAX)
                                        return refuse(w, "message nested within its own type more than once", desc, f, at);
                                r = walk(w, sub, value, value + v, depth + 1,
                                         depth == 0 && (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF));
                                if (r < 0)
                                        return r;
                        }
                        break;
                default:
                        return refuse(w, "unsupported wire type", desc, f, at);
                }
        }
        return 0;
}

int wirecheck_message(const ProtobufCMessageDescriptor *desc, const uint8_t *buf, size_t len,
                      WireCheckInfo *ret_info, WireCheckError *ret_error) {
        Walk w = { .buf = buf };
        int r;

        r = len > 0 ? walk(&w, desc, buf, buf + len, 0, false) : 0;
        if (r < 0) {
                if (ret_error)
                        *ret_error = w.error;
                return r;
        }
        if (ret_info)
                *ret_info = w.info;
        return 0;
}

const char *wirecheck_error_text(const WireCheckError *e, char *buf, size_t size) {
        if (e->reason == NULL)
                snprintf(buf, size, "not a decodable message");
        else if (e->field)
                snprintf(buf, size, "%s in field %s.%s at byte %zu", e->reason, e->message, e->field, e->offset);
        else
                snprintf(buf, size, "%s in %s at byte %zu", e->reason, e->message, e->offset);
        return buf;
}
