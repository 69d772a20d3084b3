/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The dispatch table and the request phases (see dispatch.h). The table is
 * the one place that says, for each operation, who may ask (role, grant),
 * how it is audited, whether its HSM calls may share a run with other
 * requests', and which handler (handlers.h) does its work; the phases apply
 * those columns to every request in the same order, before any handler runs.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/kekerr.h"
#include "daemon/audit.h"
#include "daemon/clock.h"
#include "daemon/cryptopool.h"
#include "daemon/failover.h"
#include "daemon/handlers.h"
#include "daemon/metrics.h"
#include "proto/wirecheck.h"

typedef enum AuditKind {
        AUDIT_NONE,        /* only refusals of the role or of approval (a batch audits its items itself) */
        AUDIT_DATA,        /* counted (audit_data()) */
        AUDIT_CONTROL,     /* one record per operation */
} AuditKind;

struct Route {
        Kek__Request__BodyCase type;
        const char *op;
        Role role;         /* who may ask at all */
        uint32_t grant;    /* GRANT_* the peer needs on the key the request (or each item) names; 0: none */
        AuditKind audit;
        bool shares_run;   /* data plane: the handler prepares items, whose HSM calls run with others' */
        Handler handler;
};

#define DATA(t, name, g, a) { .type = t, .op = name, .role = ROLE_CRYPTO_USER, .grant = g, .audit = a, .shares_run = true, .handler = handle_data_prepare }
#define CONTROL(t, name, r, h) { .type = t, .op = name, .role = r, .audit = AUDIT_CONTROL, .handler = h }

static const Route routes[] = {
        DATA(KEK__REQUEST__BODY_WRAP, "wrap", GRANT_WRAP, AUDIT_DATA),
        DATA(KEK__REQUEST__BODY_UNWRAP, "unwrap", GRANT_UNWRAP, AUDIT_DATA),
        DATA(KEK__REQUEST__BODY_REWRAP, "rewrap", GRANT_REWRAP, AUDIT_DATA),
        DATA(KEK__REQUEST__BODY_BATCH_WRAP, "batch-wrap", GRANT_WRAP, AUDIT_NONE),
        DATA(KEK__REQUEST__BODY_BATCH_UNWRAP, "batch-unwrap", GRANT_UNWRAP, AUDIT_NONE),
        DATA(KEK__REQUEST__BODY_BATCH_REWRAP, "batch-rewrap", GRANT_REWRAP, AUDIT_NONE),
        /* Any grant on the key lets a client ask for its current version. */
        { .type = KEK__REQUEST__BODY_GET_KEY_VERSION, .op = "get-key-version", .role = ROLE_CRYPTO_USER, .grant = GRANT_ALL,
          .audit = AUDIT_DATA, .handler = handle_get_key_version },
        { .type = KEK__REQUEST__BODY_GET_KEY, .op = "get-key", .role = ROLE_CRYPTO_USER, .grant = GRANT_GET,
          .handler = handle_get_key },
        { .type = KEK__REQUEST__BODY_LIST_KEYS, .op = "list-keys", .role = ROLE_CRYPTO_USER, .handler = handle_list_keys },
        { .type = KEK__REQUEST__BODY_GET_VAULT_POLICY, .op = "get-vault-policy", .role = ROLE_CRYPTO_USER,
          .handler = handle_get_vault_policy },
        { .type = KEK__REQUEST__BODY_WATCH, .op = "watch", .role = ROLE_CRYPTO_USER, .handler = handle_watch },
        /* The grant an unwrap of the confirmed version would need: a revoked one refuses the confirmation. */
        { .type = KEK__REQUEST__BODY_CONFIRM, .op = "confirm", .role = ROLE_CRYPTO_USER, .grant = GRANT_UNWRAP,
          .audit = AUDIT_DATA, .handler = handle_confirm },
        CONTROL(KEK__REQUEST__BODY_CREATE_KEY, "create-key", ROLE_OFFICER, handle_create_key),
        CONTROL(KEK__REQUEST__BODY_ROTATE_KEY, "rotate-key", ROLE_OFFICER, handle_rotate_key),
        CONTROL(KEK__REQUEST__BODY_SET_ROTATION_POLICY, "set-rotation-policy", ROLE_OFFICER, handle_set_rotation_policy),
        CONTROL(KEK__REQUEST__BODY_SET_ENABLED, "set-enabled", ROLE_OFFICER, handle_set_enabled),
        CONTROL(KEK__REQUEST__BODY_DELETE_KEY, "delete-key", ROLE_OFFICER, handle_delete_key),
        CONTROL(KEK__REQUEST__BODY_RECOVER_KEY, "recover-key", ROLE_OFFICER, handle_recover_key),
        CONTROL(KEK__REQUEST__BODY_PURGE_KEY, "purge-key", ROLE_OFFICER, handle_purge_key),
        CONTROL(KEK__REQUEST__BODY_SET_VAULT_POLICY, "set-vault-policy", ROLE_ADMIN, handle_set_vault_policy),
        CONTROL(KEK__REQUEST__BODY_CHECK, "check", ROLE_OFFICER, handle_check),
        CONTROL(KEK__REQUEST__BODY_BACKUP, "backup", ROLE_OFFICER, handle_backup),
        CONTROL(KEK__REQUEST__BODY_RESTORE, "restore", ROLE_OFFICER, handle_restore),
        CONTROL(KEK__REQUEST__BODY_SET_GRANT, "set-grant", ROLE_ADMIN, handle_set_grant),
        CONTROL(KEK__REQUEST__BODY_SUBMIT_APPROVAL, "submit-approval", ROLE_OFFICER, handle_submit_approval),
        CONTROL(KEK__REQUEST__BODY_APPROVE, "approve", ROLE_OFFICER, handle_approve),
        CONTROL(KEK__REQUEST__BODY_CANCEL_APPROVAL, "cancel-approval", ROLE_OFFICER, handle_cancel_approval),
        { .type = KEK__REQUEST__BODY_LIST_APPROVALS, .op = "list-approvals", .role = ROLE_OFFICER, .handler = handle_list_approvals },
        { .type = KEK__REQUEST__BODY_STATUS, .op = "status", .role = ROLE_OFFICER, .handler = handle_status },
};

const Route *route_find(Kek__Request__BodyCase type) {
        for (size_t i = 0; i < ELEMENTSOF(routes); i++)
                if (routes[i].type == type)
                        return &routes[i];
        return NULL;
}

const char *route_op(const Route *r) {
        return r->op;
}

Role route_role(const Route *r) {
        return r->role;
}

int route_run_approved(Dispatcher *d, const Route *route, Request *req, Kek__Request *inner) {
        req->approved = true;
        return route->handler(d, inner, req);
}

/* The key a request names (for refusals, audit and approvals), or "". */
const char *request_key(const Kek__Request *r) {
        switch (r->body_case) {
        case KEK__REQUEST__BODY_WRAP:
                return r->wrap->key;
        case KEK__REQUEST__BODY_GET_KEY_VERSION:
                return r->get_key_version->key;
        case KEK__REQUEST__BODY_CREATE_KEY:
                return r->create_key->key;
        case KEK__REQUEST__BODY_GET_KEY:
                return r->get_key->key;
        case KEK__REQUEST__BODY_ROTATE_KEY:
                return r->rotate_key->key;
        case KEK__REQUEST__BODY_SET_ROTATION_POLICY:
                return r->set_rotation_policy->key;
        case KEK__REQUEST__BODY_SET_ENABLED:
                return r->set_enabled->key;
        case KEK__REQUEST__BODY_PURGE_KEY:
                return r->purge_key->key;
        case KEK__REQUEST__BODY_DELETE_KEY:
                return r->delete_key->key;
        case KEK__REQUEST__BODY_RECOVER_KEY:
                return r->recover_key->key;
        case KEK__REQUEST__BODY_SET_GRANT:
                return r->set_grant->key;
        case KEK__REQUEST__BODY_CONFIRM:
                return r->confirm->key;
        default:
                return "";
        }
}



/*
 * Decode, first part: the frame's wire bytes are checked (proto/wirecheck.h:
 * nesting, strings, encoding; bounded, no recursion) and its operation and
 * key peeked from them; authorize, first part: the peer's role for that
 * operation, refused before anything is unpacked.
 */
static int phase_check(Request *req, WireCheckInfo *info) {
        const Route *route;
        WireCheckError e;

        /* Nothing recurses over the peer's bytes before they passed the bounded check. */
        if (wirecheck_message(&kek__request__descriptor, req->payload, req->len, info, &e) < 0) {
                wirecheck_error_text(&e, req->outcome.reason, sizeof(req->outcome.reason));
                return -KEKERR_MALFORMED_REQUEST;
        }
        req->outcome.id = info->id;
        route = req->route = route_find((Kek__Request__BodyCase) info->oneof_case);
        if (!route)
                return 0; /* unpacked to tell an unknown operation from none */
        req->outcome.op = route->op;
        req->outcome.control = route->audit == AUDIT_CONTROL;
        if (!peer_has_role(req->peer, route->role)) {
                char key[KEY_NAME_MAX + 1] = "";
                const char *shown = req->outcome.key;

                memcpy(key, info->key ? (const char *) info->key : "", MIN(info->key_len, sizeof(key) - 1));
                request_show_key(req->outcome.key, key);
                return request_fail(req, request_error(req, -KEKERR_PERMISSION_DENIED, "%s%s%s%s needs %s", route->op,
                                                       shown[0] ? " of key '" : "", shown, shown[0] ? "'" : "",
                                                       access_role_text(route->role)));
        }
        return 0;
}

/* Decode, second part: the message, unpacked once; a data-plane request's items (blobs parsed once). */
static int phase_decode(Request *req, const WireCheckInfo *info) {
        const Route *route = req->route;

        req->msg = kek__request__unpack(NULL, req->len, req->payload);
        if (!req->msg) {
                snprintf(req->outcome.reason, sizeof(req->outcome.reason), "not a decodable Request message");
                return -KEKERR_MALFORMED_REQUEST;
        }
        req->outcome.id = req->msg->id;
        if (req->msg->body_case != (Kek__Request__BodyCase) info->oneof_case) {
                /* The check and protobuf-c read the same bytes differently: trust neither. */
                snprintf(req->outcome.reason, sizeof(req->outcome.reason), "operation %u read as %u", info->oneof_case,
                         (unsigned) req->msg->body_case);
                kek__request__free_unpacked(req->msg, NULL);
                req->msg = NULL;
                return -KEKERR_MALFORMED_REQUEST;
        }
        if (!route && req->msg->base.n_unknown_fields > 0)
                return request_error(req, -KEKERR_UNSUPPORTED, "request type not supported by this kekd");
        if (!route)
                return request_error(req, -KEKERR_MALFORMED_REQUEST, "request has no operation");
        request_show_key(req->outcome.key, request_key(req->msg));
        return route->shares_run ? data_decode(req) : 0;
}

/*
 * One grant check: decided without the key when it can be (superusers,
 * officers' reads), else on the key, which then goes to *found (when not
 * NULL) for prepare, so the key is looked up once.
 */
static int check_grant(Dispatcher *d, Request *req, const char *name, const char *shown, uint32_t grant,
                       KeyLookup *found) {
        KeyLookup l = {};

        if (access_check_key(req->peer, NULL, grant) >= 0)
                return 0;
        (void) keystore_lookup(d->keystore, name, &l);
        if (access_check_key(req->peer, l.key, grant) >= 0) {
                if (found)
                        *found = l;
                return 0;
        }
        return request_error(req, -KEKERR_PERMISSION_DENIED, "uid %u has no %s grant on key '%s'",
                             (unsigned) req->peer->uid, access_op_name(grant), shown);
}

/*
 * Authorize, second part, from the row: the grant on the key the request
 * (or each of its items) names. A refused item does not refuse its batch.
 */
static int phase_authorize(Dispatcher *d, Request *req) {
        const Route *route = req->route;
        const char *key = req->outcome.key;

        if (!route->grant)
                return 0;
        if (!route->shares_run)
                return check_grant(d, req, request_key(req->msg), key, route->grant, &req->found);
        for (size_t i = 0; i < req->n_items; i++) {
                RequestItem *it = &req->items[i];
                int r;

                if (it->error < 0)
                        continue; /* refused at decode */
                r = check_grant(d, req, it->name, it->key, route->grant, &it->found);
                if (r < 0)
                        request_item_refuse(req, it, r);
        }
        return 0;
}

/* Decode and authorize; a refusal is the request's error. Returns whether its handler may run. */
static bool request_begin(Dispatcher *d, Request *req) {
        WireCheckInfo info;
        int r;

        req->start_usec = d->metrics ? clock_mono_usec() : 0;
        r = phase_check(req, &info);
        if (r >= 0)
                r = phase_decode(req, &info);
        if (r >= 0)
                r = phase_authorize(d, req);
        if (r < 0 && req->msg)
                (void) request_fail(req, r);
        return r >= 0;
}

/* Whether a data-plane request had HSM calls to run (then failover_run() noted their failures). */
static bool request_ran(const Request *req) {
        const Route *route = req->route;

        for (size_t j = 0; route && route->shares_run && j < req->n_items; j++)
                if (req->items[j].op.kind != 0)
                        return true;
        return false;
}

/* Whether an item was refused for its version's objects (two answer to it): no failure of the token's. */
static bool request_version_fault(const Request *req) {
        const Route *route = req->route;

        for (size_t j = 0; route && route->shares_run && j < req->n_items; j++)
                if (req->items[j].op.version_fault)
                        return true;
        return false;
}

/* Encode: audit, metrics, the reply frame, then the request's memory. */
static void request_end(Dispatcher *d, Request *req) {
        const Route *route = req->route;
        RequestOutcome *o = &req->outcome;
        int r;

        if (!req->msg && !req->answered) {
                char message[sizeof(o->reason) + 48];

                o->error = -KEKERR_MALFORMED_REQUEST;
                snprintf(message, sizeof(message), "frame is not a valid Request message: %s", o->reason);
                r = request_append_error(req->out, d->max_frame, 0, o->error, message);
                req->result = r < 0 ? r : -KEKERR_MALFORMED_REQUEST;
                request_done(req);
                return;
        }
        o->error = req->oom ? -ENOMEM : req->error;
        if (route && (route->audit == AUDIT_CONTROL || o->error == -KEKERR_PERMISSION_DENIED ||
                      o->error == -KEKERR_APPROVAL_REQUIRED))
                audit_control(d->audit, req->peer, o->op, o->key, o->version, o->error,
                              req->approval.id ? &req->approval : NULL);
        else if (route && route->audit == AUDIT_DATA)
                audit_data(d->audit, req->peer, o->op, o->key, o->version, o->error);
        if (d->metrics)
                metrics_request(d->metrics, o->op, o->key, o->error, clock_mono_usec() - req->start_usec, o->items);
        /*
         * A data-plane request's HSM calls noted their failures on the token each ran on (failover_run());
         * the rest of a request (prepare, control plane) runs on the preferred token: its failures are that token's.
         */
        if (!request_ran(req) && !request_version_fault(req))
                tokenset_request_done(d->tokens, 0, o->error);
        r = request_encode(req, d->max_frame);
        req->result = r < 0 ? r : 0;
        request_done(req);
}

static bool prepared(const Request *req) {
        return req->route && ((const Route *) req->route)->shares_run && !req->answered;
}

/* Run and answer: the HSM calls of the prepared requests in [from, to) together, then each reply in order. */
static void flush(Dispatcher *d, Request *reqs, size_t from, size_t to) {
        CryptoOp *few[16], **ops = few;
        _cleanup_free_ CryptoOp **many = NULL;
        size_t n = 0, calls = 0;

        for (size_t i = from; i < to; i++)
                for (size_t j = 0; prepared(&reqs[i]) && j < reqs[i].n_items; j++) {
                        n += reqs[i].items[j].op.kind != 0;
                        calls += reqs[i].items[j].op.kind == CRYPTO_REWRAP ? 2 : reqs[i].items[j].op.kind != 0;
                }
        metrics_hsm_crypto_ops(d->metrics, calls);
        if (n > ELEMENTSOF(few))
                ops = many = malloc(n * sizeof(*many));
        if (n > 0 && ops) {
                n = 0;
                for (size_t i = from; i < to; i++)
                        for (size_t j = 0; prepared(&reqs[i]) && j < reqs[i].n_items; j++)
                                if (reqs[i].items[j].op.kind != 0)
                                        ops[n++] = &reqs[i].items[j].op;
                failover_run(d->failover, d->keystore, d->pool, ops, n);
        } else if (n > 0)
                /* No memory to run them together: one at a time still answers everyone. */
                for (size_t i = from; i < to; i++)
                        for (size_t j = 0; prepared(&reqs[i]) && j < reqs[i].n_items; j++)
                                if (reqs[i].items[j].op.kind != 0) {
                                        CryptoOp *one = &reqs[i].items[j].op;

                                        failover_run(d->failover, d->keystore, d->pool, &one, 1);
                                }
        for (size_t i = from; i < to; i++) {
                if (prepared(&reqs[i]))
                        data_answer(d, &reqs[i]);
                request_end(d, &reqs[i]);
        }
}

void dispatch_requests(Dispatcher *d, Request *reqs, size_t n) {
        size_t from = 0;

        /*
         * Lost worker sessions reopen now, before any handle is taken for this call's runs; not while
         * the preferred token is down and a further one serves (failover.h): it would only wait on it.
         */
        if (!failover_begin(d->failover))
                crypto_pool_ready(d->pool);
        for (size_t i = 0; i < n; i++) {
                Request *req = &reqs[i];
                const Route *route;
                int r;

                if (request_begin(d, req) && (route = req->route)->shares_run) {
                        /* Prepare; run, answer and encode come with the rest of the group. */
                        r = route->handler(d, req->msg, req);
                        if (r < 0)
                                (void) request_fail(req, r);
                        continue;
                }
                /* Refused ones keep their place too; anything else runs on its own, after the requests before it. */
                if (req->route && ((const Route *) req->route)->shares_run)
                        continue;
                flush(d, reqs, from, i);
                if (req->msg && !req->answered) {
                        r = ((const Route *) req->route)->handler(d, req->msg, req);
                        if (r < 0)
                                (void) request_fail(req, r);
                }
                request_end(d, req);
                from = i + 1;
        }
        flush(d, reqs, from, n);
}

int dispatch_frame(Dispatcher *d, const Peer *peer, const uint8_t *payload, size_t len, FrameBuf *out,
                   RequestOutcome *ret_outcome) {
        Request req;

        request_init(&req, peer, payload, len, out);
        dispatch_requests(d, &req, 1);
        if (ret_outcome)
                *ret_outcome = req.outcome;
        return req.result;
}
