/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Names and wire mapping of the domain error enum (see kekerr.h). The names are
 * part of the CLI and protocol contract: tests and operators match on them.
 */
#include "config.h"

#include <errno.h>

#include "common/kekerr.h"
#include "common/macro.h"

static const char *const names[] = {
        [0] = "OK",
        [1] = "MALFORMED_REQUEST",
        [2] = "FRAME_TOO_LARGE",
        [3] = "UNKNOWN_KEY",
        [4] = "UNKNOWN_VERSION",
        [5] = "BLOB_INVALID",
        [6] = "HSM_UNAVAILABLE",
        [7] = "KEY_EXISTS",
        [8] = "INVALID_ARGUMENT",
        [9] = "KEY_DISABLED",
        [10] = "KEY_DELETED",
        [11] = "KEY_NOT_RECOVERABLE",
        [12] = "PERMISSION_DENIED",
        [13] = "INTERNAL",
        [14] = "UNSUPPORTED",
        [15] = "CONFLICT",
        [16] = "PURGE_PROTECTED",
        [17] = "APPROVAL_REQUIRED",
        [18] = "LIMIT_EXCEEDED",
};

_Static_assert(ELEMENTSOF(names) == _KEKERR_MAX - KEKERR_BASE, "every KekErr has a name");

const char *kekerr_name(int r) {
        int v = r < 0 ? -r : r;

        if (v < KEKERR_BASE || v >= _KEKERR_MAX)
                return NULL;
        return names[v - KEKERR_BASE];
}

int kekerr_to_wire(int r) {
        int v = r < 0 ? -r : r;

        if (r >= 0)
                return 0;
        if (v >= KEKERR_BASE && v < _KEKERR_MAX)
                return v - KEKERR_BASE;
        return KEKERR_INTERNAL - KEKERR_BASE;
}

int kekerr_from_wire(int code) {
        if (code == 0)
                return 0;
        if (code > 0 && code < _KEKERR_MAX - KEKERR_BASE)
                return -(KEKERR_BASE + code);
        return -KEKERR_INTERNAL;
}

bool kekerr_is_transient(int r) {
        return r == -KEKERR_HSM_UNAVAILABLE || r == -KEKERR_CONFLICT || r == -KEKERR_LIMIT_EXCEEDED || r == -ECONNREFUSED || r == -ENOENT || r == -ECONNRESET ||
               r == -EPIPE || r == -ETIMEDOUT || r == -EAGAIN;
}
