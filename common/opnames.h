/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The names of operation bit sets, written in one table each and shared by
 * kekd and kekctl: grant operations (GrantOp in proto/kek.proto) and the
 * operations under dual control (DualControl). Both are shown and parsed as
 * comma lists in table order ("wrap,unwrap"); "all" names every grant op,
 * "none" no dual-control op. Pure: no allocation, no I/O.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

/* Grant operation bits (GrantOp in proto/kek.proto). */
enum {
        GRANT_GET = 1u << 0,
        GRANT_WRAP = 1u << 1,
        GRANT_UNWRAP = 1u << 2,
        GRANT_REWRAP = 1u << 3,
        GRANT_ALL = GRANT_GET | GRANT_WRAP | GRANT_UNWRAP | GRANT_REWRAP,
};

/* Long enough for every name of either table, comma-separated, and the NUL. */
#define OP_NAMES_MAX 64u

/* "get,wrap,unwrap,rewrap" for ops; "" for none. Bits without a name are left out. */
const char *grant_ops_to_string(uint32_t ops, char buf[static 32]);
/* Parses "wrap,unwrap", "all"; -EINVAL on anything else (empty, unknown names, empty items). */
int grant_ops_from_string(const char *s, uint32_t *ret);

/* "purge,delete,last-grant,vault-policy" for the DualControl bits; "none" for 0. */
const char *dual_control_to_string(uint32_t bits, char buf[static OP_NAMES_MAX]);
/* Parses a comma list of those names, or "none" (0); -EINVAL on anything else. */
int dual_control_from_string(const char *s, uint32_t *ret);

/* The i-th name of a table, NULL past its end: for shell completion. */
const char *grant_op_name_at(size_t i);
const char *dual_control_name_at(size_t i);
