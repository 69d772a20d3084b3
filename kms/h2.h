/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The HTTP/2 side of kek-kms-plugin: one nghttp2 server session per
 * connection, gRPC unary calls on its streams. A complete request becomes a
 * KmsJob handed to the submit hook (a worker pool in the daemon, a list in
 * the fuzzer); the job comes back through kms_server_complete() on the
 * event loop's thread, which alone touches sessions and streams. A stream
 * that closes or passes its deadline while its job runs is detached from
 * the job, whose result is then dropped.
 *
 * Memory is bounded by construction: at most max_conns connections, each
 * with at most max_streams concurrent streams (SETTINGS and enforced), each
 * buffering at most one message of KMS_MESSAGE_MAX bytes, and a total
 * budget over all streams and the jobs not yet completed; a request over a
 * bound gets RESOURCE_EXHAUSTED before its bytes are kept. A job counts
 * against max_jobs and max_buffered until it comes back, also after its
 * stream closed: a peer resetting its streams (or closing its connection)
 * does not free the workers' queue, so it cannot grow it without bound. A
 * request still being received after receive_ms is refused and its stream
 * reset: a slow peer cannot keep the request budget full. Output waits in at most one nghttp2 chunk per
 * connection: no more is produced while the peer does not read.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kms/grpc.h"
#include "kms/service.h"

typedef struct KmsServer KmsServer;
typedef struct KmsConn KmsConn;
typedef struct KmsStream KmsStream;

typedef struct KmsJob {
        KmsMethod method;
        uint8_t *req;          /* the request message (without prefix) */
        size_t len;
        uint64_t deadline_ms;  /* CLOCK_MONOTONIC ms, 0: none */
        uint64_t start_us;
        KmsReply reply;        /* filled by whoever runs the job */
        /* owned by the event loop */
        KmsStream *stream;
        struct KmsJob *next;
} KmsJob;

typedef struct KmsServerHooks {
        /* Takes the job; it must come back through kms_server_complete(). */
        void (*submit)(void *userdata, KmsJob *job);
        /* One finished call (for metrics); latency in microseconds. */
        void (*observe)(void *userdata, KmsMethod m, GrpcStatus s, uint64_t usec);
        void *userdata;
} KmsServerHooks;

typedef struct KmsServerLimits {
        unsigned max_conns;        /* 0: 64 */
        unsigned max_streams;      /* per connection; 0: 32 */
        size_t max_buffered;       /* request bytes over all streams and jobs; 0: 16 MiB */
        unsigned max_jobs;         /* jobs not yet completed, detached ones too; 0: max_conns * max_streams */
        unsigned receive_ms;       /* a request's headers and body must arrive within it; 0: 30 s */
        unsigned idle_ms;          /* a connection with no stream for this long is closed; 0: 120 s */
} KmsServerLimits;

uint64_t kms_now_ms(void);
uint64_t kms_now_us(void);

int kms_server_new(const KmsServerLimits *limits, const KmsServerHooks *hooks, KmsServer **ret);
KmsServer *kms_server_free(KmsServer *s);

/*
 * A connection on fd (non-blocking; -1 in the fuzzer: output is discarded). At max_conns an idle
 * connection (no stream) is closed to make room: freed here, so the caller holds no pointer to
 * any other connection across this call. -EMFILE at max_conns with none idle.
 */
int kms_conn_new(KmsServer *s, int fd, KmsConn **ret);
/* Whether kms_conn_new() would admit a connection now (below max_conns, or one is idle). */
bool kms_server_can_admit(KmsServer *s);
/* Bytes from the peer; -EPROTO (close it) on an HTTP/2 error. */
int kms_conn_feed(KmsConn *c, const uint8_t *data, size_t len);
/* Writes what the session has to send; -errno when the peer is gone. */
int kms_conn_flush(KmsConn *c);
bool kms_conn_wants_read(const KmsConn *c);
bool kms_conn_wants_write(const KmsConn *c);
/* True when the session has nothing more to do (then kms_conn_linger() it). */
bool kms_conn_finished(const KmsConn *c);
/*
 * For a finished connection: the first call shuts its write side and starts
 * the linger (see h2.c); true when the caller frees it now (broken, or the
 * linger is over). The peer's EOF is seen by the caller's read (recv() 0).
 */
#define KMS_LINGER_MS 2000u
bool kms_conn_linger(KmsConn *c, uint64_t now_ms);
int kms_conn_fd(const KmsConn *c);
KmsConn *kms_conn_free(KmsConn *c);

/* A job back from the submit hook (the event loop's thread only). Frees it. */
void kms_server_complete(KmsServer *s, KmsJob *job);
KmsJob *kms_job_free(KmsJob *j);
/*
 * Ends (GOAWAY NO_ERROR, then finished) every connection with no stream for idle_ms;
 * answers DEADLINE_EXCEEDED to every stream past its deadline, and RESOURCE_EXHAUSTED (then
 * RST_STREAM NO_ERROR) to every request not received within receive_ms, so a peer that sends
 * half a request holds no buffer and no stream slot for ever; returns the next expiry (0: none).
 */
uint64_t kms_server_expire(KmsServer *s, uint64_t now_ms);
/* GOAWAY on every connection: in-flight streams finish, new ones are refused. */
void kms_server_drain(KmsServer *s);
/* Streams with a job in flight, over all connections */
unsigned kms_server_in_flight(const KmsServer *s);
unsigned kms_server_conns(const KmsServer *s);
/* Iteration over the connections (kms_conn_free() of the current one is allowed after taking its next) */
KmsConn *kms_server_first_conn(KmsServer *s);
KmsConn *kms_conn_next(KmsConn *c);
