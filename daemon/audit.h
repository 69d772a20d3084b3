/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The audit trail. Every control-plane operation and every refusal becomes
 * one structured record at once; data-plane operations (wrap, unwrap,
 * rewrap, get-key-version) are counted per (op, key, version, peer, result)
 * and written as one record per group by audit_flush(), which kekd runs on
 * a timer and at shutdown, so 100k operations a second do not flood the
 * journal. Records go to the journal under systemd and to stderr otherwise
 * (daemon/log.c), whatever the log level.
 *
 * Fields: MESSAGE_ID (one per record kind, below), KEK_OP, KEK_KEY,
 * KEK_VERSION, PEER_UID, PEER_GID, PEER_PID, RESULT ("OK" or the error
 * name), and KEK_COUNT for data-plane groups, KEK_APPROVAL_ID and
 * KEK_REQUESTER_UID for operations run by an approval. Key names are
 * already restricted to [A-Za-z0-9._-] (anything else shows as '?'). No
 * field ever holds an AEK, a blob, a context or the PIN.
 */
#pragma once

#include <stdint.h>

#include "common/macro.h"
#include "daemon/access.h"

#define AUDIT_MESSAGE_ID_CONTROL "9997bd01c757492e8ad55ad887875b8d"
#define AUDIT_MESSAGE_ID_REFUSAL "2c3270d8e879488283d2a88db52ca5f1"
#define AUDIT_MESSAGE_ID_DATA "fbcba23065a44a9bbf6701391ac040ee"

typedef struct Audit Audit;

typedef struct AuditApproval {
        const char *id;
        uint32_t requester_uid;
} AuditApproval;

int audit_new(Audit **ret);
Audit *audit_free(Audit *a);
DEFINE_TRIVIAL_CLEANUP_FUNC(Audit, audit_free);

/* A control-plane operation (result 0 or negative) or a refusal: one record now. approval may be NULL. */
void audit_control(Audit *a, const Peer *p, const char *op, const char *key, uint32_t version, int result,
                   const AuditApproval *approval);

/* A data-plane operation: counted; a refusal (PERMISSION_DENIED) is also written at once. */
void audit_data(Audit *a, const Peer *p, const char *op, const char *key, uint32_t version, int result);

/* Writes and resets the data-plane counts. Returns the number of records written. */
int audit_flush(Audit *a);

/* Operations counted but not yet flushed (for tests and status). */
uint64_t audit_pending(const Audit *a);
