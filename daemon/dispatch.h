/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Request dispatch: a pure function from one request frame's payload to one
 * response frame. It does no socket I/O and keeps no per-connection state, so
 * the unit tests and fuzzers drive it in-process. Each request type is one row
 * of a table {type, handler, required_role}; the row decides which code runs.
 *
 * Contract of dispatch_frame(): it always appends exactly one response frame to
 * out. It returns 0 when the connection may continue, or
 * -KEKERR_MALFORMED_REQUEST when the payload was not a decodable Request or
 * broke a rule of proto/wirecheck.h (nesting, a NUL or invalid UTF-8 in a
 * string), which is checked before anything is decoded; then the caller sends
 * the reply and closes that connection (never the daemon), and
 * DispatchOutcome.reason says why. Request bytes that carried a plaintext are cleansed before return.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "daemon/access.h"
#include "keystore.h"
#include "proto/frame.h"


typedef struct DispatchOutcome {
        const char *op;            /* "wrap", "create-key", ... or "invalid" */
        char key[KEY_NAME_MAX + 1];
        uint32_t version;
        int error;                 /* 0 or negative */
        bool control;              /* a control-plane operation (lifecycle, vault, check) */
        unsigned items;            /* batch: number of items */
        bool watch;                /* the peer subscribed to key events (Watch) */
        uint64_t id;               /* the request's id */
        char reason[160];          /* a refused frame (MALFORMED_REQUEST): why, by rule and field name, never content */
} DispatchOutcome;

typedef struct Audit Audit;
typedef struct Metrics Metrics;
typedef struct CryptoPool CryptoPool;

typedef struct Dispatcher {
        Keystore *keystore;
        Audit *audit;                  /* NULL: no audit records (tests, fuzzers) */
        Metrics *metrics;              /* NULL: no metrics */
        CryptoPool *pool;              /* NULL: every HSM call on the keystore's session */
        uint64_t started_usec;         /* wall clock at start, for status */
        size_t max_frame;
        uint64_t (*now_usec)(void);    /* wall clock, see daemon/clock.h; replaceable in tests */
} Dispatcher;

int dispatch_frame(Dispatcher *d, const Peer *peer, const uint8_t *payload, size_t len, FrameBuf *out,
                   DispatchOutcome *ret_outcome);

/*
 * Several frames at once, typically one from each connection that had one
 * ready: each job is answered exactly as dispatch_frame() would answer it,
 * in order, into its own out, but the HSM calls of the single wrap, unwrap
 * and rewrap requests among them run together on the HSM sessions
 * (daemon/cryptopool.h). Any other request runs on its own, after the
 * requests before it. result is what dispatch_frame() would return.
 */
typedef struct DispatchJob {
        const Peer *peer;
        const uint8_t *payload;
        size_t len;
        FrameBuf *out;
        DispatchOutcome outcome;       /* out */
        int result;                    /* out */
} DispatchJob;

void dispatch_frames(Dispatcher *d, DispatchJob *jobs, size_t n);

/* Whether p may see (GRANT_GET) or use (other GRANT_* bits, any of them) key k; for Watch events. */
bool dispatch_peer_may(Dispatcher *d, const Peer *p, const Key *k, uint32_t ops);

/* Appends one Watch event for key name (k NULL: the key is gone) with the subscription's id. */
int dispatch_append_event(FrameBuf *out, size_t max_frame, uint64_t id, const char *name, const Key *k);

/* Appends an error response (for framing failures detected by the transport). */
int dispatch_append_error(FrameBuf *out, size_t max_frame, uint64_t id, int error, const char *message);

