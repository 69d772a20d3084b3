/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * gRPC framing and header values (see grpc.h). Everything here is bounded by
 * the lengths given; nothing allocates.
 */
#include "config.h"

#include <errno.h>
#include <string.h>

#include "kms/grpc.h"

static const char *const status_names[_GRPC_STATUS_MAX] = {
        "OK",           "CANCELLED",         "UNKNOWN",          "INVALID_ARGUMENT",  "DEADLINE_EXCEEDED",
        "NOT_FOUND",    "ALREADY_EXISTS",    "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
        "ABORTED",      "OUT_OF_RANGE",      "UNIMPLEMENTED",    "INTERNAL",          "UNAVAILABLE",
        "DATA_LOSS",    "UNAUTHENTICATED",
};

const char *grpc_status_name(GrpcStatus s) {
        if ((unsigned) s >= _GRPC_STATUS_MAX)
                return "UNKNOWN";
        return status_names[s];
}

static uint32_t prefix_len(const uint8_t *p) {
        return (uint32_t) p[1] << 24 | (uint32_t) p[2] << 16 | (uint32_t) p[3] << 8 | p[4];
}

int grpc_unframe(const uint8_t *body, size_t len, size_t max, const uint8_t **ret_msg, size_t *ret_len) {
        if (len < GRPC_PREFIX_SIZE)
                return -EBADMSG;
        if (body[0] & 1)
                return -EPROTONOSUPPORT;
        if (body[0] != 0)
                return -EBADMSG;
        uint32_t n = prefix_len(body);
        if (n > max)
                return -EMSGSIZE;
        if (len - GRPC_PREFIX_SIZE != n)
                return -EBADMSG;
        *ret_msg = body + GRPC_PREFIX_SIZE;
        *ret_len = n;
        return 0;
}

int grpc_body_too_long(const uint8_t *body, size_t len, size_t max) {
        /* A unary request holds one message: the prefix and max bytes at most. */
        if (len > GRPC_PREFIX_SIZE + max)
                return 1;
        if (len >= GRPC_PREFIX_SIZE && prefix_len(body) > max)
                return 1;
        return 0;
}

void grpc_frame_prefix(size_t len, uint8_t out[GRPC_PREFIX_SIZE]) {
        out[0] = 0;
        out[1] = (uint8_t) (len >> 24);
        out[2] = (uint8_t) (len >> 16);
        out[3] = (uint8_t) (len >> 8);
        out[4] = (uint8_t) len;
}

int grpc_timeout_parse(const char *value, size_t len, uint64_t *ret_ms) {
        /* TimeoutValue is at most 8 ASCII digits (the gRPC HTTP/2 protocol spec). */
        if (len < 2 || len > 9)
                return -EINVAL;
        uint64_t v = 0;
        for (size_t i = 0; i + 1 < len; i++) {
                if (value[i] < '0' || value[i] > '9')
                        return -EINVAL;
                v = v * 10 + (uint64_t) (value[i] - '0');
        }
        uint64_t ms;
        switch (value[len - 1]) {
        case 'H':
                ms = v * 3600000u;
                break;
        case 'M':
                ms = v * 60000u;
                break;
        case 'S':
                ms = v * 1000u;
                break;
        case 'm':
                ms = v;
                break;
        case 'u':
                ms = (v + 999u) / 1000u;
                break;
        case 'n':
                ms = (v + 999999u) / 1000000u;
                break;
        default:
                return -EINVAL;
        }
        *ret_ms = ms;
        return 0;
}

size_t grpc_message_encode(const char *msg, char *out, size_t n) {
        static const char hex[] = "0123456789ABCDEF";
        size_t o = 0;

        if (n == 0)
                return 0;
        for (const unsigned char *p = (const unsigned char *) msg; *p; p++) {
                if (*p >= 0x20 && *p <= 0x7e && *p != '%') {
                        if (o + 1 >= n)
                                break;
                        out[o++] = (char) *p;
                } else {
                        if (o + 3 >= n)
                                break;
                        out[o++] = '%';
                        out[o++] = hex[*p >> 4];
                        out[o++] = hex[*p & 15];
                }
        }
        out[o] = 0;
        return o;
}
