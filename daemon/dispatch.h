/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Request dispatch: pure functions from request frames to reply frames. No
 * socket I/O and no per-connection state, so the unit tests and fuzzers drive
 * it in-process. Every request takes the same fixed phases (dispatch.c):
 *
 *   decode     the frame's wire bytes are checked (proto/wirecheck.h) and
 *              its operation peeked; after the role check it is unpacked,
 *              once; a batch's items (and their blobs) are parsed once, and
 *              every size (plaintext, context, items) is checked here only;
 *   authorize  from the table's columns: the role before the frame is
 *              unpacked, then the grant on each key named, before any
 *              handler runs; every decision is access.c's; the key looked
 *              up for a grant is kept (KeyLookup) for the handler;
 *   prepare    the handler: a control-plane handler does its whole work; a
 *              data-plane one prepares its items' HSM calls (keystore.h),
 *              from the key authorize found while the index is unchanged;
 *   run        the HSM calls of all prepared items of the requests handed
 *              over together, spread over the HSM sessions;
 *   answer     each item's result into the reply;
 *   encode     the reply frame, audit, metrics.
 *
 * Contract of dispatch_requests(): each request gets exactly one reply frame
 * appended to its out, in order. req->result is 0 when the connection may
 * continue, or -KEKERR_MALFORMED_REQUEST when the payload was not a
 * decodable Request or broke a rule of proto/wirecheck.h (nesting, a NUL or
 * invalid UTF-8 in a string), which is checked before anything is decoded;
 * then the caller sends the reply and closes that connection (never the
 * daemon), and outcome.reason says why. A request
 * that is not a wrap, unwrap or rewrap (or a batch of them) runs on its own,
 * after the HSM work of the requests before it. Request bytes that carried a
 * plaintext are cleansed by request_done().
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "daemon/access.h"
#include "daemon/keystore.h"
#include "daemon/request.h"
#include "daemon/tokenset.h"
#include "proto/frame.h"

typedef struct Audit Audit;
typedef struct Metrics Metrics;
typedef struct CryptoPool CryptoPool;
typedef struct Failover Failover;

typedef struct Dispatcher {
        Keystore *keystore;
        Audit *audit;                  /* NULL: no audit records (tests, fuzzers) */
        Metrics *metrics;              /* NULL: no metrics */
        CryptoPool *pool;              /* NULL: every HSM call on the keystore's session */
        TokenSet *tokens;              /* health of the tokens for status (daemon/tokenset.h); NULL: none */
        Failover *failover;            /* data-plane failover across tokens (daemon/failover.h); NULL: none */
        uint64_t started_usec;         /* wall clock at start, for status */
        size_t max_frame;
        uint64_t (*now_usec)(void);    /* wall clock, see daemon/clock.h; replaceable in tests */
        /* [backup] (docs/backup.md): the directory backup files live in (NULL: none), the transfer keys' labels. */
        const char *backup_directory, *backup_wrapping_key, *backup_unwrapping_key;
        /* Confirm vouches only from an index read from the token this recently; 0: never (always unconfirmed). */
        uint64_t confirm_max_age_usec;
} Dispatcher;

/*
 * The n requests (n >= 1, each from request_init()) through every phase,
 * their data-plane HSM calls together. Each is request_done() after.
 */
void dispatch_requests(Dispatcher *d, Request *reqs, size_t n);

/* One frame: dispatch_requests() of one. Returns req.result; *ret_outcome (if given) is its outcome. */
int dispatch_frame(Dispatcher *d, const Peer *peer, const uint8_t *payload, size_t len, FrameBuf *out,
                   RequestOutcome *ret_outcome);

/* Appends one Watch event for key name (k NULL: the key is gone) with the subscription's id. */
int dispatch_append_event(FrameBuf *out, size_t max_frame, uint64_t id, const char *name, const Key *k);
