/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The Request object (see request.h): its memory, its error and its
 * encoding. Pure: no keystore, no socket, so tests/unit/test-request drives
 * it alone.
 */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/kekerr.h"
#include "daemon/request.h"
#include "pkcs11/hsm.h"

/* No credentials: no role and no grant. */
static const Peer nobody = { .uid = (uid_t) -1, .gid = (gid_t) -1, .pid = 0 };

void request_init(Request *req, const Peer *peer, const uint8_t *payload, size_t len, FrameBuf *out) {
        *req = (Request) { .peer = peer ? peer : &nobody, .payload = payload, .len = len, .out = out };
        req->outcome.op = "invalid";
        kek__response__init(&req->resp);
}

/* Wipes the request fields that can hold an AEK before protobuf-c frees them. */
static void msg_cleanse(Kek__Request *m) {
        if (m->body_case == KEK__REQUEST__BODY_WRAP && m->wrap)
                secret_cleanse(m->wrap->plaintext.data, m->wrap->plaintext.len);
        if (m->body_case == KEK__REQUEST__BODY_BATCH_WRAP && m->batch_wrap)
                for (size_t i = 0; i < m->batch_wrap->n_items; i++)
                        secret_cleanse(m->batch_wrap->items[i]->plaintext.data, m->batch_wrap->items[i]->plaintext.len);
}

void request_done(Request *req) {
        if (!req)
                return;
        for (size_t i = 0; i < req->n_items; i++)
                crypto_op_done(&req->items[i].op);
        free(req->items);
        req->items = NULL;
        req->n_items = 0;
        for (size_t i = 0; i < req->n_owned; i++)
                req->owned[i].release(req->owned[i].p);
        free(req->owned);
        req->owned = NULL;
        req->n_owned = 0;
        if (req->inner)
                kek__request__free_unpacked(req->inner, NULL);
        req->inner = NULL;
        if (req->msg) {
                msg_cleanse(req->msg);
                kek__request__free_unpacked(req->msg, NULL);
        }
        req->msg = NULL;
}

/* Records p to be released with release; releases it at once (and fails) if it cannot be recorded. */
static void *own(Request *req, void *p, void (*release)(void *p)) {
        RequestOwned *owned;

        if (!p) {
                req->oom = true;
                return NULL;
        }
        owned = reallocarray(req->owned, req->n_owned + 1, sizeof(*owned));
        if (!owned) {
                release(p);
                req->oom = true;
                return NULL;
        }
        req->owned = owned;
        req->owned[req->n_owned++] = (RequestOwned) { p, release };
        return p;
}

void *request_own(Request *req, void *p) {
        return own(req, p, free);
}

static void release_secret(void *p) {
        secret_free(p);
}

void *request_alloc(Request *req, size_t size) {
        if (req->oom)
                return NULL; /* sticky: the reply is ENOMEM anyway */
        return request_own(req, calloc(1, size ? size : 1));
}

char *request_strdup(Request *req, const char *s) {
        char *p = request_alloc(req, strlen(s) + 1);

        if (p)
                strcpy(p, s);
        return p;
}

Secret *request_own_secret(Request *req, Secret *s) {
        return own(req, s, release_secret);
}

int request_error(Request *req, int r, const char *fmt, ...) {
        va_list ap;

        va_start(ap, fmt);
        (void) vsnprintf(req->message, sizeof(req->message), fmt, ap);
        va_end(ap);
        return r;
}

int request_fail(Request *req, int r) {
        if (r == -ENOMEM)
                req->oom = true;
        req->error = r;
        req->answered = true;
        return r;
}

void request_item_refuse(Request *req, RequestItem *it, int r) {
        it->error = r;
        it->message = req->message[0] ? request_strdup(req, req->message) : NULL;
        req->message[0] = 0;
}

void request_show_key(char dst[static KEY_NAME_MAX + 1], const char *key) {
        static const char alphabet[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-";
        size_t i;

        for (i = 0; key && key[i] && i < KEY_NAME_MAX; i++)
                dst[i] = strchr(alphabet, key[i]) ? key[i] : '?';
        dst[i] = 0;
}

const char *request_default_message(int r) {
        switch (r) {
        case -KEKERR_HSM_UNAVAILABLE:
                return "the HSM is not reachable at the moment; retry";
        case -KEKERR_BLOB_INVALID:
                return "blob does not authenticate: tampered, truncated, or wrong context";
        case -KEKERR_MALFORMED_REQUEST:
                return "malformed request";
        case -KEKERR_UNSUPPORTED: {
                /* Only the token refuses without a message of its own (dispatch names unknown requests). */
                static __thread char text[160];
                char ckr[96];

                if (!hsm_last_refusal(ckr, sizeof(ckr)))
                        return "the token refuses this operation";
                snprintf(text, sizeof(text), "the token refuses this operation (%s)", ckr);
                return text;
        }
        case -KEKERR_KEY_NOT_RECOVERABLE:
                return "key isn't recoverable: the vault must have purge protection on (soft delete is always on)";
        case -KEKERR_CONFLICT:
                return "another change to this key is in progress; retry";
        case -ENOMEM:
                return "kekd is out of memory";
        default:
                return kekerr_name(r) ? kekerr_name(r) : "internal error";
        }
}

int request_append_error(FrameBuf *out, size_t max_frame, uint64_t id, int error, const char *message) {
        Kek__Response resp = KEK__RESPONSE__INIT;
        Kek__Error err = KEK__ERROR__INIT;

        err.code = (Kek__ErrorCode) kekerr_to_wire(error);
        err.message = (char *) (message && message[0] ? message : request_default_message(error));
        resp.id = id;
        resp.body_case = KEK__RESPONSE__BODY_ERROR;
        resp.error = &err;
        return frame_append_message(out, &resp.base, max_frame);
}

int request_encode(Request *req, size_t max_frame) {
        RequestOutcome *o = &req->outcome;
        int r;

        if (req->oom) {
                /* Whatever the handler made of it: a reply built from failed allocations is not sent. */
                req->error = -ENOMEM;
                req->message[0] = 0;
        }
        o->error = req->error;
        if (req->error < 0)
                return request_append_error(req->out, max_frame, o->id, req->error, req->message);
        req->resp.id = o->id;
        r = frame_append_message(req->out, &req->resp.base, max_frame);
        if (r == -EMSGSIZE) {
                o->error = -KEKERR_INVALID_ARGUMENT;
                r = request_append_error(req->out, max_frame, o->id, o->error,
                                         "response would exceed the maximum frame size; send smaller batches");
        }
        return r;
}
