/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Blocking request/response over the kekd socket (see conn.h). Frames are
 * checked against FRAME_MAX_LIMIT before any payload buffer grows, exactly
 * as on the daemon side. Response buffers may hold a plaintext AEK and are
 * cleansed as they are consumed.
 */
#include "config.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "common/kekerr.h"
#include "common/secret.h"
#include "conn.h"
#include "proto/frame.h"

struct KekConn {
        int fd;
        int timeout_ms;
        uint64_t next_id;
        FrameBuf in, out;
        char error[256];
};

int kek_conn_open(const char *socket_path, int timeout_ms, KekConn **ret) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        _cleanup_close_ int fd = -1;
        KekConn *c;

        if (!socket_path || strlen(socket_path) >= sizeof(sa.sun_path))
                return -EINVAL;
        strcpy(sa.sun_path, socket_path);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        if (connect(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0)
                return -errno;
        c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        c->fd = TAKE_FD(fd);
        c->timeout_ms = timeout_ms > 0 ? timeout_ms : 30000;
        c->next_id = 1;
        frame_buf_init(&c->in);
        frame_buf_init(&c->out);
        *ret = c;
        return 0;
}

KekConn *kek_conn_free(KekConn *c) {
        if (!c)
                return NULL;
        safe_close(c->fd);
        frame_buf_done(&c->in);
        frame_buf_done(&c->out);
        free(c);
        return NULL;
}

const char *kek_conn_error_message(const KekConn *c) {
        return c->error;
}

static int wait_fd(KekConn *c, short events) {
        struct pollfd p = { .fd = c->fd, .events = events };
        int r;

        do
                r = poll(&p, 1, c->timeout_ms);
        while (r < 0 && errno == EINTR);
        if (r < 0)
                return -errno;
        if (r == 0)
                return -ETIMEDOUT;
        return 0;
}

static int send_all(KekConn *c) {
        while (frame_buf_size(&c->out) > 0) {
                ssize_t n = send(c->fd, frame_buf_head(&c->out), frame_buf_size(&c->out), MSG_NOSIGNAL | MSG_DONTWAIT);

                if (n < 0) {
                        int r;

                        if (errno == EINTR)
                                continue;
                        if (errno != EAGAIN)
                                return -errno;
                        r = wait_fd(c, POLLOUT);
                        if (r < 0)
                                return r;
                        continue;
                }
                frame_buf_consume(&c->out, (size_t) n);
        }
        return 0;
}

/* Reads until one complete frame is buffered; returns its payload. */
static int recv_frame(KekConn *c, const uint8_t **ret_payload, size_t *ret_len) {
        for (;;) {
                uint8_t *tail;
                ssize_t n;
                int r;

                r = frame_parse(frame_buf_head(&c->in), frame_buf_size(&c->in), FRAME_MAX_LIMIT, ret_payload, ret_len);
                if (r != 0)
                        return r < 0 ? -EBADMSG : 0;
                r = frame_buf_reserve(&c->in, 16384, &tail);
                if (r < 0)
                        return r;
                r = wait_fd(c, POLLIN);
                if (r < 0)
                        return r;
                n = recv(c->fd, tail, 16384, MSG_DONTWAIT);
                if (n < 0) {
                        if (errno == EAGAIN || errno == EINTR)
                                continue;
                        return -errno;
                }
                if (n == 0)
                        return -ECONNRESET;
                frame_buf_commit(&c->in, (size_t) n);
        }
}

void kek_conn_response_free(Kek__Response *resp) {
        if (!resp)
                return;
        if (resp->body_case == KEK__RESPONSE__BODY_UNWRAP && resp->unwrap)
                secret_cleanse(resp->unwrap->plaintext.data, resp->unwrap->plaintext.len);
        kek__response__free_unpacked(resp, NULL);
}

int kek_conn_call(KekConn *c, Kek__Request *req, Kek__Response **ret) {
        int r, sent;

        c->error[0] = 0;
        req->id = c->next_id++;
        r = frame_append_message(&c->out, &req->base, FRAME_MAX_LIMIT);
        if (r < 0)
                return r;
        r = send_all(c);
        if (r < 0 && r != -EPIPE && r != -ECONNRESET)
                return r;
        /* A refused connection (a limit) carries one error frame before kekd closes it: read the reason. */
        sent = r;

        for (;;) {
                const uint8_t *payload;
                Kek__Response *resp;
                size_t len;

                r = recv_frame(c, &payload, &len);
                if (r < 0)
                        return sent < 0 ? sent : r;
                resp = kek__response__unpack(NULL, len, payload);
                frame_buf_consume(&c->in, FRAME_HEADER_SIZE + len);
                if (!resp)
                        return -EBADMSG;
                if (resp->id != req->id && resp->id != 0) {
                        kek_conn_response_free(resp);
                        continue; /* a late reply to an abandoned request */
                }
                if (resp->body_case == KEK__RESPONSE__BODY_ERROR) {
                        r = kekerr_from_wire(resp->error ? (int) resp->error->code : KEK__ERROR_CODE__INTERNAL);
                        snprintf(c->error, sizeof(c->error), "%s", resp->error && resp->error->message ? resp->error->message : "");
                        kek_conn_response_free(resp);
                        return r;
                }
                if (resp->id == 0) {
                        kek_conn_response_free(resp);
                        return -EBADMSG;
                }
                *ret = resp;
                return 0;
        }
}
