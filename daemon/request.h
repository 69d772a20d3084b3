/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * One request's state, from the frame a peer sent to the reply frame kekd
 * sends back: the only object the request path passes between its phases
 * (daemon/dispatch.h: decode, authorize, prepare, run, answer, encode).
 *
 * Invariants:
 *  - Everything the reply points to is owned by the Request (request_alloc(),
 *    request_own(), request_own_secret()) and released by request_done();
 *    plaintexts are Secrets, cleansed there. No handler frees reply memory.
 *  - Running out of memory is sticky (as p11-kit's buffer failure flag): an
 *    allocation that fails sets req->oom and returns NULL, later ones keep
 *    failing cheaply, and the reply is the ENOMEM error whatever the handler
 *    returned. Handlers need not check each allocation to be correct.
 *  - A wire batch is one Request with N items; a single wrap, unwrap or
 *    rewrap is a Request with one item. Items carry what their HSM call
 *    needs (a CryptoOp) and their own refusal, so one refused item does not
 *    fail the others.
 *  - Bytes that carried a plaintext in the decoded message are cleansed by
 *    request_done().
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/secret.h"
#include "daemon/access.h"
#include "daemon/approval.h"
#include "daemon/audit.h"
#include "daemon/keystore.h"
#include "proto/blob.h"
#include "proto/frame.h"
#include "proto/kek.pb-c.h"

#define REQUEST_MESSAGE_MAX 256u
#define REQUEST_REASON_MAX 160u

/* What happened, for the transport's log line, metrics and audit; no secret ever lands here. */
typedef struct RequestOutcome {
        const char *op;            /* "wrap", "create-key", ... or "invalid" */
        char key[KEY_NAME_MAX + 1];/* the key it names, reduced to the key alphabet */
        uint32_t version;
        int error;                 /* 0 or negative */
        bool control;              /* a control-plane operation (lifecycle, vault, check) */
        unsigned items;            /* batch: number of items */
        bool watch;                /* the peer subscribed to key events (Watch) */
        uint64_t id;               /* the request's id */
        char reason[REQUEST_REASON_MAX]; /* a refused frame (MALFORMED_REQUEST): why, by rule and field, never content */
} RequestOutcome;

/* One wrap, unwrap or rewrap: a single request's only item, or one item of a wire batch. */
typedef struct RequestItem {
        const void *wire;          /* its Kek__WrapRequest, Kek__UnwrapRequest or Kek__RewrapRequest */
        const char *name;          /* the key it names, as sent (in wire, or in the blob) */
        char key[KEY_NAME_MAX + 1];/* shown in refusals, audit and logs */
        uint32_t version;
        BlobView view;             /* unwrap, rewrap: the blob, parsed once at decode */
        KeyLookup found;           /* its key as authorize found it, for prepare (NULL key: not looked up) */
        bool renew;                /* wrap: prepare found no lease left; the renewal step comes next */
        CryptoOp op;               /* prepared, run and finished by the keystore */
        int error;                 /* refused before or after the HSM run; 0 while it may run */
        const char *message;       /* the refusal's text (the Request owns it), or NULL for the default */
} RequestItem;

typedef struct RequestOwned {
        void *p;
        void (*release)(void *p);  /* free(), or a Secret's cleansing free */
} RequestOwned;

typedef struct Request {
        /* in: set by the transport */
        const Peer *peer;          /* never NULL once dispatched */
        const uint8_t *payload;
        size_t len;
        FrameBuf *out;             /* the reply frame is appended here */
        int result;                /* out: 0, or -KEKERR_MALFORMED_REQUEST (close the connection), or <0 */

        /* decoded once */
        Kek__Request *msg;         /* NULL: not decoded (malformed, or refused before decoding) */
        const void *route;         /* its row in the dispatch table (daemon/dispatch.c) */
        KeyLookup found;           /* the key it names as authorize found it (NULL key: not looked up) */
        RequestItem *items;        /* data plane: one, or a wire batch's */
        size_t n_items;
        bool batch;

        /* the reply */
        Kek__Response resp;
        char message[REQUEST_MESSAGE_MAX]; /* an error's text, as the handler described it */
        int error;                 /* the request's error, 0 while it succeeds */
        bool oom;                  /* an allocation failed: the reply is ENOMEM */
        bool answered;             /* resp holds the answer (or error is set) */
        RequestOwned *owned;       /* what the reply points to, released by request_done() */
        size_t n_owned;

        /* dual control */
        bool approved;             /* running an approved request: its gate is passed */
        Kek__Request *inner;       /* the approved request, freed by request_done() */
        AuditApproval approval;
        char approval_id[APPROVAL_ID_LEN + 1];

        RequestOutcome outcome;
        uint64_t start_usec;       /* monotonic, for metrics */
} Request;

/* A fresh request for one frame's payload; the reply goes to out. */
void request_init(Request *req, const Peer *peer, const uint8_t *payload, size_t len, FrameBuf *out);
/* Releases what the request owns and cleanses its plaintexts; req may be reused after request_init(). */
void request_done(Request *req);

/* Zeroed memory that lives until request_done(); NULL (and req->oom) on failure. */
void *request_alloc(Request *req, size_t size);
/* A copy of s owned by the request; NULL (and req->oom) on failure. */
char *request_strdup(Request *req, const char *s);
/* Takes ownership of a malloc'd p (freed at once if it cannot be recorded); returns p or NULL. */
void *request_own(Request *req, void *p);
/* Takes ownership of a plaintext, cleansed by request_done(); returns s or NULL. */
Secret *request_own_secret(Request *req, Secret *s);

/* Describes an error for the reply (never with secret content); returns r. */
_printf_(3, 4) int request_error(Request *req, int r, const char *fmt, ...);
/* Marks the reply as the error r with the message already described (or the default). */
int request_fail(Request *req, int r);

/* Refuses one item with r; the text described with request_error() becomes the item's. */
void request_item_refuse(Request *req, RequestItem *it, int r);

/* Copies a peer-supplied name into a key field; anything outside the key alphabet becomes '?'. */
void request_show_key(char dst[static KEY_NAME_MAX + 1], const char *key);

/* Default text for an error nobody described. */
const char *request_default_message(int r);

/*
 * Appends the reply frame to req->out: the error (req->error or, sticky,
 * ENOMEM) or resp. A reply past the frame limit becomes an error telling
 * the peer to send smaller batches. Returns what frame_append_*() did.
 */
int request_encode(Request *req, size_t max_frame);

/* Appends an error response (for framing failures detected by the transport). */
int request_append_error(FrameBuf *out, size_t max_frame, uint64_t id, int error, const char *message);
