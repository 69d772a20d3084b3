/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The client transport (see transport.h). Sockets are blocking; sends and
 * receives use MSG_DONTWAIT and poll() up to the deadline, so no call blocks
 * past it and a signal (EINTR) only restarts the wait.
 */
#include "config.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "client/transport.h"
#include "common/kekerr.h"
#include "common/secret.h"

#define RECV_CHUNK 16384u

struct timespec kek_deadline_after(uint64_t usec) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_sec += (time_t) (usec / 1000000ULL);
        ts.tv_nsec += (long) (usec % 1000000ULL) * 1000;
        if (ts.tv_nsec >= 1000000000L) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000L;
        }
        return ts;
}

int kek_ms_left(const struct timespec *deadline) {
        struct timespec now;
        int64_t ms;

        if (!deadline)
                return -1;
        clock_gettime(CLOCK_MONOTONIC, &now);
        ms = (int64_t) (deadline->tv_sec - now.tv_sec) * 1000 + (deadline->tv_nsec - now.tv_nsec) / 1000000;
        return ms < 0 ? 0 : ms > INT32_MAX ? INT32_MAX : (int) ms;
}

/* Waits for events on fd until the deadline: 0, -ETIMEDOUT, or -errno. EINTR just waits again. */
static int wait_fd(int fd, short events, const struct timespec *deadline) {
        struct pollfd p = { .fd = fd, .events = events };
        int r;

        do
                r = poll(&p, 1, kek_ms_left(deadline));
        while (r < 0 && errno == EINTR);
        if (r < 0)
                return -errno;
        return r == 0 ? -ETIMEDOUT : 0;
}

int kek_transport_connect(const char *socket_path) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        _cleanup_close_ int fd = -1;

        if (!socket_path || strlen(socket_path) >= sizeof(sa.sun_path))
                return -EINVAL;
        strcpy(sa.sun_path, socket_path);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        if (connect(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0)
                return -errno;
        return TAKE_FD(fd);
}

int kek_transport_send_buf(int fd, FrameBuf *out, const struct timespec *deadline) {
        int r = 0;

        while (r >= 0 && frame_buf_size(out) > 0) {
                ssize_t n = send(fd, frame_buf_head(out), frame_buf_size(out), MSG_NOSIGNAL | MSG_DONTWAIT);

                if (n >= 0)
                        frame_buf_consume(out, (size_t) n);
                else if (errno == EAGAIN)
                        r = wait_fd(fd, POLLOUT, deadline);
                else if (errno != EINTR)
                        r = -errno;
        }
        return r < 0 ? r : 0;
}

int kek_transport_send(int fd, const Kek__Request *req, const struct timespec *deadline) {
        FrameBuf out;
        int r;

        frame_buf_init(&out);
        r = frame_append_message(&out, &req->base, FRAME_MAX_LIMIT);
        if (r >= 0)
                r = kek_transport_send_buf(fd, &out, deadline);
        frame_buf_done(&out); /* cleansed: it may have carried an AEK */
        return r < 0 ? r : 0;
}

void kek_reader_init(KekReader *r, int fd) {
        *r = (KekReader) { .fd = fd };
        frame_buf_init(&r->buf);
}

void kek_reader_done(KekReader *r) {
        frame_buf_done(&r->buf);
}

/* Reads until one complete frame is buffered; its payload stays in r->buf. Errors are the caller's to make sticky. */
static int read_frame(KekReader *r, const struct timespec *deadline, const uint8_t **ret_payload, size_t *ret_len) {
        for (;;) {
                uint8_t *tail;
                ssize_t n;
                int q;

                q = frame_parse(frame_buf_head(&r->buf), frame_buf_size(&r->buf), FRAME_MAX_LIMIT, ret_payload, ret_len);
                if (q != 0)
                        return q < 0 ? -EBADMSG : 0;
                q = frame_buf_reserve(&r->buf, RECV_CHUNK, &tail);
                if (q < 0)
                        return q;
                n = recv(r->fd, tail, RECV_CHUNK, MSG_DONTWAIT);
                if (n > 0) {
                        frame_buf_commit(&r->buf, (size_t) n);
                        continue;
                }
                if (n == 0)
                        return -ECONNRESET;
                if (errno == EINTR)
                        continue;
                if (errno != EAGAIN)
                        return -errno;
                q = wait_fd(r->fd, POLLIN, deadline);
                if (q < 0)
                        return q;
        }
}

int kek_reader_next(KekReader *r, const struct timespec *deadline, Kek__Response **ret) {
        const uint8_t *payload;
        Kek__Response *resp;
        size_t len;
        int q;

        if (r->error < 0)
                return r->error;
        q = read_frame(r, deadline, &payload, &len);
        if (q == -ETIMEDOUT)
                return q;
        if (q >= 0) {
                resp = kek__response__unpack(NULL, len, payload);
                frame_buf_consume(&r->buf, FRAME_HEADER_SIZE + len);
                if (resp) {
                        *ret = resp;
                        return 0;
                }
                q = -EBADMSG;
        }
        r->error = q;
        return q;
}

void kek_response_free(Kek__Response *resp) {
        if (!resp)
                return;
        if (resp->body_case == KEK__RESPONSE__BODY_UNWRAP && resp->unwrap) {
                secret_cleanse(resp->unwrap->plaintext.data, resp->unwrap->plaintext.len);
                secret_scrub_cpu_state();
        }
        if (resp->body_case == KEK__RESPONSE__BODY_BATCH && resp->batch) {
                for (size_t i = 0; i < resp->batch->n_items; i++)
                        if (resp->batch->items[i]->unwrap)
                                secret_cleanse(resp->batch->items[i]->unwrap->plaintext.data,
                                               resp->batch->items[i]->unwrap->plaintext.len);
                secret_scrub_cpu_state();
        }
        kek__response__free_unpacked(resp, NULL);
}

int kek_response_result(const Kek__Response *resp, Kek__Response__BodyCase want) {
        if (resp->body_case == KEK__RESPONSE__BODY_ERROR)
                return kekerr_from_wire(resp->error ? (int) resp->error->code : KEK__ERROR_CODE__INTERNAL);
        if (want != KEK__RESPONSE__BODY__NOT_SET && resp->body_case != want)
                return -EBADMSG;
        return 0;
}

/* --- KekConn: one request at a time --------------------------------------------- */

struct KekConn {
        int fd;
        int timeout_ms;
        uint64_t next_id;
        KekReader in;
        char error[256];
};

int kek_conn_new_fd(int fd, int timeout_ms, KekConn **ret) {
        KekConn *c = calloc(1, sizeof(*c));

        if (!c) {
                safe_close(fd);
                return -ENOMEM;
        }
        c->fd = fd;
        c->timeout_ms = timeout_ms > 0 ? timeout_ms : 30000;
        c->next_id = 1;
        kek_reader_init(&c->in, fd);
        *ret = c;
        return 0;
}

int kek_conn_open(const char *socket_path, int timeout_ms, KekConn **ret) {
        int fd = kek_transport_connect(socket_path);

        if (fd < 0)
                return fd;
        return kek_conn_new_fd(fd, timeout_ms, ret);
}

KekConn *kek_conn_free(KekConn *c) {
        if (!c)
                return NULL;
        kek_reader_done(&c->in);
        safe_close(c->fd);
        free(c);
        return NULL;
}

const char *kek_conn_error_message(const KekConn *c) {
        return c->error;
}

int kek_conn_call(KekConn *c, Kek__Request *req, Kek__Response **ret) {
        struct timespec deadline = kek_deadline_after((uint64_t) c->timeout_ms * 1000);
        int r, sent;

        c->error[0] = 0;
        req->id = c->next_id++;
        sent = kek_transport_send(c->fd, req, &deadline);
        /* A refused connection (a limit) carries one error frame before kekd closes it: read the reason. */
        if (sent < 0 && sent != -EPIPE && sent != -ECONNRESET)
                return sent;

        for (;;) {
                Kek__Response *resp;

                deadline = kek_deadline_after((uint64_t) c->timeout_ms * 1000);
                r = kek_reader_next(&c->in, &deadline, &resp);
                if (r < 0)
                        return sent < 0 ? sent : r;
                if (resp->id != req->id && resp->id != 0) {
                        kek_response_free(resp);
                        continue; /* a late reply to an abandoned request */
                }
                if (resp->body_case == KEK__RESPONSE__BODY_ERROR) {
                        r = kek_response_result(resp, KEK__RESPONSE__BODY__NOT_SET);
                        snprintf(c->error, sizeof(c->error), "%s", resp->error && resp->error->message ? resp->error->message : "");
                        kek_response_free(resp);
                        return r;
                }
                if (resp->id == 0) {
                        kek_response_free(resp);
                        return -EBADMSG;
                }
                *ret = resp;
                return 0;
        }
}
