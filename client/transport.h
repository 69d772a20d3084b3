/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The client side of the kekd protocol, shared by libkek and kekctl:
 * connecting to the socket, sending a Request frame and reading Response
 * frames, with deadlines on CLOCK_MONOTONIC (NULL: none), and the mapping of
 * a response to a result. Frames are checked against FRAME_MAX_LIMIT before
 * any buffer grows, as on the daemon side; buffers that may have held a
 * plaintext AEK are cleansed.
 *
 * KekReader fails stickily, like p11-kit's buffers: after the first error
 * (EOF, I/O error, an oversized or undecodable frame) every later read
 * returns that error without touching the socket, so a caller checks once
 * and the stream is never read past a point where it lost its framing. A
 * timeout is not a failure: the partial frame stays buffered for the next
 * read.
 *
 * KekConn is the simple blocking client on top (kekctl): one request at a
 * time, the response matched by id. libkek builds its multi-threaded
 * pipelining on the same pieces. Library code: it never logs above debug
 * and never prints; the daemon's message of a refusal is kept in the
 * KekConn.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "common/macro.h"
#include "proto/frame.h"
#include "proto/kek.pb-c.h"

#define KEK_DEFAULT_SOCKET "/run/kekd/kekd.sock"

/* CLOCK_MONOTONIC now + usec. */
struct timespec kek_deadline_after(uint64_t usec);
/* Milliseconds left until deadline, at least 0; -1 (forever) for NULL. */
int kek_ms_left(const struct timespec *deadline);

/* A connected SOCK_STREAM Unix socket (close-on-exec), or -errno; -EINVAL for a path too long. */
int kek_transport_connect(const char *socket_path);
/* Packs req into one frame and writes all of it by the deadline; the packed copy is cleansed. */
int kek_transport_send(int fd, const Kek__Request *req, const struct timespec *deadline);
/* Writes out's bytes (frames packed already, e.g. a batch of coalesced requests) by the deadline; the caller cleanses out. */
int kek_transport_send_buf(int fd, FrameBuf *out, const struct timespec *deadline);

typedef struct KekReader {
        int fd;          /* not owned */
        FrameBuf buf;
        int error;       /* sticky: the first failure, 0 while healthy */
} KekReader;

void kek_reader_init(KekReader *r, int fd);
/* Cleanses and frees the buffer; the fd is the caller's. Accepts a zeroed KekReader. */
void kek_reader_done(KekReader *r);
/*
 * The next Response. -ETIMEDOUT at the deadline (not sticky); -ECONNRESET
 * at EOF, -EBADMSG for an oversized or undecodable frame, -errno for an
 * I/O error: sticky. The caller frees *ret with kek_response_free().
 */
int kek_reader_next(KekReader *r, const struct timespec *deadline, Kek__Response **ret);

/* Cleanses the plaintexts a response may carry (unwrap, batch items), then frees it. Accepts NULL. */
void kek_response_free(Kek__Response *resp);
/* 0 when resp carries body want; -KEKERR_<code> for an Error body; -EBADMSG for another body. */
int kek_response_result(const Kek__Response *resp, Kek__Response__BodyCase want);

typedef struct KekConn KekConn;

int kek_conn_open(const char *socket_path, int timeout_ms, KekConn **ret);
/* Takes over a connected socket fd (closed by kek_conn_free(), also on failure). */
int kek_conn_new_fd(int fd, int timeout_ms, KekConn **ret);
KekConn *kek_conn_free(KekConn *c);
DEFINE_TRIVIAL_CLEANUP_FUNC(KekConn, kek_conn_free);

/*
 * Sends req (its id is assigned here) and waits for the matching response;
 * timeout_ms bounds each step (sending, then each frame read). A Response
 * carrying an Error is returned as -KEKERR_<code>; its text is then in
 * kek_conn_error_message(). Responses with another id (late replies to
 * abandoned requests) are skipped; an Error with id 0 (kekd refusing the
 * connection or the frame) answers any request. On success the caller
 * frees *ret with kek_response_free().
 */
int kek_conn_call(KekConn *c, Kek__Request *req, Kek__Response **ret);
const char *kek_conn_error_message(const KekConn *c);
