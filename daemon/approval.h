/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Dual-control requests kept in the token (ApprovalRecord in
 * proto/kek.proto: private CKO_DATA objects, CKA_APPLICATION
 * "kekd-approval", CKA_LABEL = the request id), so a request submitted
 * through one kekd can be approved through another on the same token.
 *
 * Invariants: a record is never modified, only created and destroyed.
 * approval_claim() destroys the record before the caller runs the request:
 * whoever destroys it owns the approval, and a crash after the claim loses
 * the approval (the officers submit again) but never applies an operation
 * twice. Expired records are destroyed when seen. At most APPROVALS_MAX
 * requests are pending, so a peer cannot fill the token.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "common/macro.h"
#include "pkcs11/hsm.h"
#include "proto/blob.h"

#define APPROVAL_ID_LEN 32u     /* hex of 16 random bytes */
#define APPROVALS_MAX 64u
#define APPROVAL_OP_MAX 32u

typedef struct Approval {
        char id[APPROVAL_ID_LEN + 1];
        char op[APPROVAL_OP_MAX];
        char key[KEY_NAME_MAX + 1];
        uint32_t requester_uid;
        uint32_t requester_pid;
        uint64_t created_usec;
        uint64_t expires_usec;
        uint8_t *request;        /* the packed inner Request */
        size_t request_len;
        HsmObject handle;
        uint64_t generation;     /* hsm_generation() handle is valid at (hsm_destroy_listed()) */
} Approval;

void approval_done(Approval *a);
void approvals_free(Approval *a, size_t n);

/* Stores a request; fills a->id and a->handle. -KEKERR_LIMIT_EXCEEDED when APPROVALS_MAX are pending. */
int approval_submit(Hsm *h, uint64_t now, Approval *a);
/* The pending requests, oldest first; expired ones are destroyed and left out. */
int approval_list(Hsm *h, uint64_t now, Approval **ret, size_t *ret_n);
/* One pending request by id, without claiming it. -ENOENT if unknown or expired. */
int approval_get(Hsm *h, const char *id, uint64_t now, Approval *ret);
/*
 * Claims a (from approval_get()) by destroying its record. -ENOENT if another
 * claim won; -KEKERR_HSM_UNAVAILABLE, nothing destroyed, if the session was
 * reopened since a was read (its handle may name another object now).
 */
int approval_claim(Hsm *h, const Approval *a);
