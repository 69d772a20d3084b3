/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Dual control's handlers (see handlers.h): submit a dual-controllable
 * request, approve (run it as its submitter asked, by another officer),
 * cancel, list. Pending requests live in the token (daemon/approval.h);
 * the one who approves is never the one who submitted, whatever their roles.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/kekerr.h"
#include "daemon/approval.h"
#include "daemon/handlers.h"
#include "proto/wirecheck.h"

static bool dual_controllable(Kek__Request__BodyCase t) {
        return t == KEK__REQUEST__BODY_PURGE_KEY || t == KEK__REQUEST__BODY_DELETE_KEY ||
               t == KEK__REQUEST__BODY_SET_GRANT || t == KEK__REQUEST__BODY_SET_VAULT_POLICY ||
               t == KEK__REQUEST__BODY_BACKUP || t == KEK__REQUEST__BODY_RESTORE;
}

static Kek__ApprovalInfo *approval_info(Request *req, const Approval *a) {
        Kek__ApprovalInfo *info = request_alloc(req, sizeof(*info));
        char *id = request_alloc(req, sizeof(a->id)), *op = request_alloc(req, sizeof(a->op)),
             *key = request_alloc(req, sizeof(a->key));

        if (!info || !id || !op || !key)
                return NULL;
        memcpy(id, a->id, sizeof(a->id));
        memcpy(op, a->op, sizeof(a->op));
        memcpy(key, a->key, sizeof(a->key));
        kek__approval_info__init(info);
        info->id = id;
        info->op = op;
        info->key = key;
        info->requester_uid = a->requester_uid;
        info->requester_pid = a->requester_pid;
        info->created_usec = a->created_usec;
        info->expires_usec = a->expires_usec;
        return info;
}

static void reply_set_approval(Request *req, const Approval *a) {
        memcpy(req->approval_id, a->id, sizeof(req->approval_id));
        req->approval = (AuditApproval) { req->approval_id, a->requester_uid };
}

int handle_submit_approval(Dispatcher *d, const Kek__Request *m, Request *req) {
        const Kek__Request *inner = m->submit_approval->request;
        _cleanup_free_ uint8_t *buf = NULL;
        const Route *h;
        uint64_t now = d->now_usec();
        Approval a = {};
        size_t len;
        int r;

        if (!inner || !dual_controllable(inner->body_case) || !(h = route_find(inner->body_case)))
                return request_error(req, -KEKERR_INVALID_ARGUMENT,
                                   "only purge-key, delete-key, set-grant, set-vault-policy, backup and restore can be submitted for approval");
        request_show_key(req->outcome.key, request_key(inner));
        if (!peer_has_role(req->peer, route_role(h)))
                return request_error(req, -KEKERR_PERMISSION_DENIED, "%s needs %s", route_op(h), access_role_text(route_role(h)));
        len = kek__request__get_packed_size(inner);
        buf = malloc(len ? len : 1);
        if (!buf)
                return -ENOMEM;
        kek__request__pack(inner, buf);
        (void) keystore_refresh(d->keystore, LISTING_MAX_AGE_USEC);
        snprintf(a.op, sizeof(a.op), "%s", route_op(h));
        snprintf(a.key, sizeof(a.key), "%s", req->outcome.key);
        a.requester_uid = (uint32_t) req->peer->uid;
        a.requester_pid = (uint32_t) req->peer->pid;
        a.created_usec = now;
        a.expires_usec = now + (uint64_t) keystore_vault(d->keystore)->approval_window_sec * USEC_PER_SEC;
        a.request = buf;
        a.request_len = len;
        r = approval_submit(keystore_hsm(d->keystore), now, &a);
        if (r == -KEKERR_LIMIT_EXCEEDED)
                return request_error(req, r, "%u requests are pending already; approve or cancel some first", APPROVALS_MAX);
        if (r < 0)
                return r;
        reply_set_approval(req, &a);
        req->resp.approval = approval_info(req, &a);
        if (!req->resp.approval)
                return -ENOMEM;
        req->resp.body_case = KEK__RESPONSE__BODY_APPROVAL;
        return 0;
}

/* Looks up a pending request for approve/cancel; the caller owns *ret. */
static int approval_lookup(Dispatcher *d, Request *req, const char *id, Approval *ret) {
        int r = approval_get(keystore_hsm(d->keystore), id, d->now_usec(), ret);

        if (r == -ENOENT)
                return request_error(req, -KEKERR_INVALID_ARGUMENT,
                                   "no such pending request: unknown, already approved, cancelled or expired");
        return r;
}

int handle_approve(Dispatcher *d, const Kek__Request *m, Request *req) {
        const Route *h;
        Kek__Request *inner;
        Approval a = {};
        int r;

        r = approval_lookup(d, req, m->approve->id, &a);
        if (r < 0)
                return r;
        request_show_key(req->outcome.key, a.key);
        reply_set_approval(req, &a);
        /* Stored by a kekd that checked it, but read from the token: checked again before it is unpacked. */
        inner = wirecheck_message(&kek__request__descriptor, a.request, a.request_len, NULL, NULL) == 0
                        ? kek__request__unpack(NULL, a.request_len, a.request)
                        : NULL;
        approval_done(&a);
        if (!inner)
                return request_error(req, -KEKERR_INTERNAL, "the stored request does not decode");
        req->inner = inner;
        h = route_find(inner->body_case);
        if (!h || !dual_controllable(inner->body_case))
                return request_error(req, -KEKERR_INTERNAL, "the stored request is not one that needs approval");
        req->outcome.op = route_op(h);
        /* The point of dual control: the approver is not the requester, whatever their roles. */
        if (a.requester_uid == (uint32_t) req->peer->uid)
                return request_error(req, -KEKERR_PERMISSION_DENIED,
                                   "request %s was submitted by uid %u: another officer must approve it", a.id,
                                   a.requester_uid);
        if (!peer_has_role(req->peer, route_role(h)))
                return request_error(req, -KEKERR_PERMISSION_DENIED, "approving %s needs %s", route_op(h),
                                   access_role_text(route_role(h)));
        r = approval_claim(keystore_hsm(d->keystore), &a);
        if (r == -ENOENT)
                return request_error(req, -KEKERR_CONFLICT, "request %s was approved or cancelled meanwhile", a.id);
        if (r < 0)
                return r;
        return route_run_approved(d, h, req, inner);
}

int handle_cancel_approval(Dispatcher *d, const Kek__Request *m, Request *req) {
        Approval a = {};
        int r;

        r = approval_lookup(d, req, m->cancel_approval->id, &a);
        if (r < 0)
                return r;
        request_show_key(req->outcome.key, a.key);
        reply_set_approval(req, &a);
        approval_done(&a);
        r = approval_claim(keystore_hsm(d->keystore), &a);
        if (r == -ENOENT)
                return request_error(req, -KEKERR_CONFLICT, "request %s was approved or cancelled meanwhile", a.id);
        if (r < 0)
                return r;
        return reply_empty(req);
}

int handle_list_approvals(Dispatcher *d, const Kek__Request *m, Request *req) {
        Kek__ApprovalList *l;
        Approval *list = NULL;
        size_t n = 0;
        int r;

        r = approval_list(keystore_hsm(d->keystore), d->now_usec(), &list, &n);
        if (r < 0)
                return r;
        l = request_alloc(req, sizeof(*l));
        if (l) {
                kek__approval_list__init(l);
                l->approvals = request_alloc(req, n * sizeof(*l->approvals));
        }
        if (!l || !l->approvals) {
                approvals_free(list, n);
                return -ENOMEM;
        }
        for (size_t i = 0; i < n; i++)
                if (!(l->approvals[i] = approval_info(req, &list[i]))) {
                        approvals_free(list, n);
                        return -ENOMEM;
                }
        l->n_approvals = n;
        approvals_free(list, n);
        req->resp.body_case = KEK__RESPONSE__BODY_APPROVALS;
        req->resp.approvals = l;
        return 0;
}

