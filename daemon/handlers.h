/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The handlers of the dispatch table (daemon/dispatch.c), one file per
 * family: handle-data.c (wrap, unwrap, rewrap, their batches, the current
 * version), handle-key.c (key lifecycle, listing, vault policy, grants,
 * check), handle-approval.c (dual control), handle-status.c (status, watch).
 *
 * A handler runs after its request was decoded and authorized by the table's
 * columns. It fills req->resp (memory from request_alloc(), sticky on
 * failure, see request.h) and returns 0, or returns a negative error whose
 * text it described with request_error() (else the default text is sent).
 * A data-plane handler only prepares its items; dispatch.c runs them and
 * calls data_answer().
 */
#pragma once

#include "daemon/dispatch.h"
#include "daemon/clock.h"
#include "daemon/request.h"

/* Listings may be this old; a client asking more often gets the same snapshot, not a token scan. */
#define LISTING_MAX_AGE_USEC (1 * USEC_PER_SEC)

typedef int (*Handler)(Dispatcher *d, const Kek__Request *m, Request *req);

/* handle-data.c */
#define BATCH_MAX_ITEMS 1024u
/* Decode: the request's items (one, or a batch's), blobs parsed; refusals land in the items. */
int data_decode(Request *req);
/* Grant bit of the request's data-plane kind, for authorize. */
uint32_t data_grant(const Request *req);
int handle_data_prepare(Dispatcher *d, const Kek__Request *m, Request *req);
/* After the run: the items' results into the reply (a single response, or the batch's). */
void data_answer(Dispatcher *d, Request *req);
int handle_get_key_version(Dispatcher *d, const Kek__Request *m, Request *req);
/* Whether cached AEKs of a key version may still be served, from the index alone (no HSM call). */
int handle_confirm(Dispatcher *d, const Kek__Request *m, Request *req);

/* handle-key.c */
int handle_create_key(Dispatcher *d, const Kek__Request *m, Request *req);
int handle_list_keys(Dispatcher *d, const Kek__Request *m, Request *req);
int handle_get_key(Dispatcher *d, const Kek__Request *m, Request *req);
int handle_rotate_key(Dispatcher *d, const Kek__Request *m, Request *req);
int handle_set_rotation_policy(Dispatcher *d, const Kek__Request *m, Request *req);
int handle_set_enabled(Dispatcher *d, const Kek__Request *m, Request *req);
int handle_delete_key(Dispatcher *d, const Kek__Request *m, Request *req);
int handle_recover_key(Dispatcher *d, const Kek__Request *m, Request *req);
int handle_purge_key(Dispatcher *d, const Kek__Request *m, Request *req);
int handle_get_vault_policy(Dispatcher *d, const Kek__Request *m, Request *req);
int handle_set_vault_policy(Dispatcher *d, const Kek__Request *m, Request *req);
int handle_set_grant(Dispatcher *d, const Kek__Request *m, Request *req);
int handle_check(Dispatcher *d, const Kek__Request *m, Request *req);
/* Names the key (and version) in the message of a key-related refusal; returns r. */
int key_error(Dispatcher *d, Request *req, int r, uint32_t version);
/* Dual control: whether this operation must go through submit/approve (DUAL_CONTROL_* bit). */
bool needs_approval(Dispatcher *d, Request *req, uint32_t bit);
int approval_required(Request *req, const char *op);
int reply_empty(Request *req);

/* handle-backup.c (daemon/backup.h) */
int handle_backup(Dispatcher *d, const Kek__Request *m, Request *req);
int handle_restore(Dispatcher *d, const Kek__Request *m, Request *req);

/* handle-approval.c */
int handle_submit_approval(Dispatcher *d, const Kek__Request *m, Request *req);
int handle_approve(Dispatcher *d, const Kek__Request *m, Request *req);
int handle_cancel_approval(Dispatcher *d, const Kek__Request *m, Request *req);
int handle_list_approvals(Dispatcher *d, const Kek__Request *m, Request *req);

/* handle-status.c */
int handle_status(Dispatcher *d, const Kek__Request *m, Request *req);
int handle_watch(Dispatcher *d, const Kek__Request *m, Request *req);

/* dispatch.c, for approvals: the table row of an operation, and running an approved request's handler. */
typedef struct Route Route;
const Route *route_find(Kek__Request__BodyCase type);
const char *route_op(const Route *r);
Role route_role(const Route *r);
/* The key a decoded request names (for refusals, audit and approvals), or "". */
const char *request_key(const Kek__Request *m);
/* Runs the approved request inner under req (its handler, with req->approved set). */
int route_run_approved(Dispatcher *d, const Route *route, Request *req, Kek__Request *inner);
