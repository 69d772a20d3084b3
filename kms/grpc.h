/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * gRPC over HTTP/2, the parts that are not HTTP/2: status codes, the 5-byte
 * length-prefixed message framing, grpc-timeout and grpc-message encoding.
 * Pure functions over bytes, so the unit tests and the fuzzer reach them
 * without a socket. A message is never longer than the caller's limit: the
 * prefix is checked before anything is buffered or allocated.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

/* https://github.com/grpc/grpc/blob/master/doc/statuscodes.md */
typedef enum GrpcStatus {
        GRPC_OK = 0,
        GRPC_CANCELLED = 1,
        GRPC_UNKNOWN = 2,
        GRPC_INVALID_ARGUMENT = 3,
        GRPC_DEADLINE_EXCEEDED = 4,
        GRPC_NOT_FOUND = 5,
        GRPC_ALREADY_EXISTS = 6,
        GRPC_PERMISSION_DENIED = 7,
        GRPC_RESOURCE_EXHAUSTED = 8,
        GRPC_FAILED_PRECONDITION = 9,
        GRPC_ABORTED = 10,
        GRPC_OUT_OF_RANGE = 11,
        GRPC_UNIMPLEMENTED = 12,
        GRPC_INTERNAL = 13,
        GRPC_UNAVAILABLE = 14,
        GRPC_DATA_LOSS = 15,
        GRPC_UNAUTHENTICATED = 16,
        _GRPC_STATUS_MAX,
} GrpcStatus;

#define GRPC_PREFIX_SIZE 5u

const char *grpc_status_name(GrpcStatus s);

/*
 * The one message of a unary call's request body (prefix included, len
 * bytes): 0 and *ret_msg and *ret_len pointing into body on success;
 * -EMSGSIZE when the prefix announces more than max bytes; -EBADMSG when
 * the body is not exactly one prefix and its message (truncated, or
 * trailing bytes); -EPROTONOSUPPORT when the compressed flag is set (this
 * server announces no grpc-accept-encoding, so a peer must not compress).
 */
int grpc_unframe(const uint8_t *body, size_t len, size_t max, const uint8_t **ret_msg, size_t *ret_len);

/*
 * How many body bytes a stream may buffer before the message is known to
 * be too long: the prefix, then at most max. Returns 1 when len bytes
 * already seen (the body's start at body) exceed what a message of at most
 * max bytes can need, 0 otherwise.
 */
int grpc_body_too_long(const uint8_t *body, size_t len, size_t max);

/* Writes the 5-byte prefix for an uncompressed message of len bytes into out. */
void grpc_frame_prefix(size_t len, uint8_t out[GRPC_PREFIX_SIZE]);

/*
 * A grpc-timeout header value ("1-8 digits" then one of H M S m u n) in
 * milliseconds, rounded up so a short deadline is never 0: 0 and
 * *ret_ms, or -EINVAL when it does not parse.
 */
int grpc_timeout_parse(const char *value, size_t len, uint64_t *ret_ms);

/*
 * The grpc-message percent-encoding of msg (bytes outside 0x20..0x7E and
 * '%' become %XX) into out of size n (NUL-terminated, cut at n-1 on a
 * boundary). Returns the length written.
 */
size_t grpc_message_encode(const char *msg, char *out, size_t n);
