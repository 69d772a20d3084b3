/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The documented domain error space. Functions return >= 0 on success and a
 * negative number on failure: either -errno (an operating-system condition) or
 * -KEKERR_* (a decision of kekd that a client must act on). The KEKERR values
 * are placed above any errno value so the two never collide, and each one maps
 * 1:1 onto the wire enum Kek__ErrorCode (value - KEKERR_BASE), which is the
 * stable contract described in kekd-protocol(7).
 */
#pragma once

#include <stdbool.h>

#define KEKERR_BASE 0x10000

typedef enum KekErr {
        KEKERR_OK = KEKERR_BASE + 0,
        KEKERR_MALFORMED_REQUEST = KEKERR_BASE + 1,  /* undecodable frame or missing field */
        KEKERR_FRAME_TOO_LARGE = KEKERR_BASE + 2,    /* declared length above max_frame */
        KEKERR_UNKNOWN_KEY = KEKERR_BASE + 3,        /* no key of that name */
        KEKERR_UNKNOWN_VERSION = KEKERR_BASE + 4,    /* key exists, version does not */
        KEKERR_BLOB_INVALID = KEKERR_BASE + 5,       /* blob tampered, truncated or wrong context */
        KEKERR_HSM_UNAVAILABLE = KEKERR_BASE + 6,    /* transient: retry later */
        KEKERR_KEY_EXISTS = KEKERR_BASE + 7,         /* create of an existing name */
        KEKERR_INVALID_ARGUMENT = KEKERR_BASE + 8,   /* well-formed but unacceptable value */
        KEKERR_KEY_DISABLED = KEKERR_BASE + 9,
        KEKERR_KEY_DELETED = KEKERR_BASE + 10,
        KEKERR_KEY_NOT_RECOVERABLE = KEKERR_BASE + 11,
        KEKERR_PERMISSION_DENIED = KEKERR_BASE + 12,
        KEKERR_INTERNAL = KEKERR_BASE + 13,          /* a bug or resource exhaustion in kekd */
        KEKERR_UNSUPPORTED = KEKERR_BASE + 14,       /* request type this kekd does not serve */
        KEKERR_CONFLICT = KEKERR_BASE + 15,          /* concurrent change to the same key; retry */
        KEKERR_PURGE_PROTECTED = KEKERR_BASE + 16,   /* purge before the scheduled date under purge protection */
        KEKERR_APPROVAL_REQUIRED = KEKERR_BASE + 17, /* dual control: submit for a second officer's approval */
        KEKERR_LIMIT_EXCEEDED = KEKERR_BASE + 18,    /* a per-peer limit is reached */
        _KEKERR_MAX,
} KekErr;

/* Stable upper-case name of a domain error ("UNKNOWN_KEY"), or NULL if r is not one. */
const char *kekerr_name(int r);

/* Wire code (Kek__ErrorCode value) for any negative return value; errno values map to INTERNAL. */
int kekerr_to_wire(int r);

/* Negative return value for a wire code; unknown codes map to -KEKERR_INTERNAL. */
int kekerr_from_wire(int code);

/* Whether the condition may clear by itself (a client should retry, a cache may keep serving). */
bool kekerr_is_transient(int r);
