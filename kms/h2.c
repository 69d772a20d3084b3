/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * nghttp2 server sessions carrying gRPC unary calls (see h2.h). The session
 * is driven with nghttp2_session_mem_recv/mem_send so the same code runs on
 * a socket and in the fuzzer. Streams are kept on their connection's list;
 * a stream's state moves RECEIVING -> PENDING (job submitted) -> REPLIED
 * (response submitted), or straight to REPLIED on a refusal, after which
 * its further DATA is dropped unbuffered.
 *
 * A connection with no stream is idle from its last stream's end (or its
 * accept): past idle_ms it is ended with GOAWAY NO_ERROR, and at max_conns
 * a new connection takes the slot of an idle one, so connections that send
 * nothing cannot keep kube-apiserver out. Only streams count as activity:
 * PINGs and SETTINGS keep no connection (grpc-go reconnects on its next call).
 * The idle connection given up first is one being closed, then one that
 * never carried a stream (oldest first), then the least recently used.
 *
 * A finished connection lingers before its close (kms_conn_linger): its
 * write side is shut, so the peer reads every answer and then EOF, and what
 * the peer still sends (a WINDOW_UPDATE, a PING) is read and dropped until
 * it closes or KMS_LINGER_MS pass. Closing a socket with unread input makes
 * the kernel reset the peer's side, and a gRPC client that meets the reset
 * before it has read the last answers fails those calls UNAVAILABLE: calls
 * answered during a drain were lost that way.
 */
#include "config.h"

#include <errno.h>
#include <nghttp2/nghttp2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "common/macro.h"
#include "kms/h2.h"

enum { ST_RECEIVING, ST_PENDING, ST_REPLIED };

struct KmsStream {
        KmsConn *conn;
        int32_t id;
        int state;
        KmsMethod method;
        bool post, grpc_ct, bad_timeout;
        bool reset_after_reply;    /* RST_STREAM NO_ERROR once the answer is out (a request cut short) */
        uint64_t deadline_ms;
        uint64_t start_us;
        uint8_t *body;
        size_t len;
        KmsJob *job;
        Secret *out;           /* prefix + message of the response */
        size_t out_off;
        GrpcStatus status;
        char message[256];     /* percent-encoded */
        KmsStream *prev, *next;
};

struct KmsConn {
        KmsServer *server;
        int fd;
        nghttp2_session *session;
        unsigned streams;
        KmsStream *first;
        const uint8_t *pending;   /* unsent part of the last mem_send chunk */
        size_t pending_len;
        bool broken;
        bool used;                /* it carried a stream */
        bool closing;             /* GOAWAY submitted for idleness: finished once it is out */
        uint64_t linger_until;    /* set once finished and shut for writing: close at the peer's EOF or then */
        uint64_t active_ms;       /* CLOCK_MONOTONIC ms of the accept or of the last stream's start or end */
        KmsConn *prev, *next;
};

struct KmsServer {
        KmsServerLimits limits;
        KmsServerHooks hooks;
        KmsConn *conns;
        unsigned nconns;
        size_t buffered;        /* bodies being received and the messages of jobs not yet completed */
        unsigned in_flight;     /* jobs whose stream waits for them */
        unsigned jobs;          /* jobs not yet completed, attached or detached */
};

static uint64_t now_ns(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000000u + (uint64_t) ts.tv_nsec;
}
uint64_t kms_now_ms(void) {
        return now_ns() / 1000000u;
}
uint64_t kms_now_us(void) {
        return now_ns() / 1000u;
}

KmsJob *kms_job_free(KmsJob *j) {
        if (!j)
                return NULL;
        if (j->req)
                secret_cleanse(j->req, j->len);
        free(j->req);
        kms_reply_done(&j->reply);
        free(j);
        return NULL;
}

static void body_drop(KmsStream *st) {
        if (st->body) {
                secret_cleanse(st->body, st->len);
                st->conn->server->buffered -= st->len;
        }
        free(st->body);
        st->body = NULL;
        st->len = 0;
}

static KmsStream *stream_free(KmsStream *st) {
        if (!st)
                return NULL;
        KmsConn *c = st->conn;
        body_drop(st);
        if (st->job) {
                /* the job runs on; its result is dropped when it comes back */
                st->job->stream = NULL;
                st->job = NULL;
                c->server->in_flight--;
        }
        st->out = secret_free(st->out);
        if (st->prev)
                st->prev->next = st->next;
        else
                c->first = st->next;
        if (st->next)
                st->next->prev = st->prev;
        c->streams--;
        c->active_ms = kms_now_ms();
        free(st);
        return NULL;
}

static ssize_t read_body(nghttp2_session *session, int32_t stream_id, uint8_t *buf, size_t length,
                         uint32_t *data_flags, nghttp2_data_source *source, void *user_data) {
        KmsStream *st = source->ptr;
        size_t n = MIN(length, st->out->len - st->out_off);
        (void) user_data;

        memcpy(buf, st->out->data + st->out_off, n);
        st->out_off += n;
        if (st->out_off == st->out->len) {
                char code[4];
                nghttp2_nv trailers[] = {
                        { (uint8_t *) "grpc-status", (uint8_t *) code, 11, 0, NGHTTP2_NV_FLAG_NONE },
                };
                (void) snprintf(code, sizeof(code), "%d", GRPC_OK);
                trailers[0].valuelen = strlen(code);
                *data_flags |= NGHTTP2_DATA_FLAG_EOF | NGHTTP2_DATA_FLAG_NO_END_STREAM;
                if (nghttp2_submit_trailer(session, stream_id, trailers, ELEMENTSOF(trailers)) != 0)
                        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
        }
        return (ssize_t) n;
}

#define NV(n, v) { (uint8_t *) (n), (uint8_t *) (v), sizeof(n) - 1, strlen(v), NGHTTP2_NV_FLAG_NONE }

/* The call's one answer: a message and trailers, or trailers only. */
static void respond(KmsStream *st, GrpcStatus status, const char *message, Secret *msg) {
        KmsConn *c = st->conn;
        KmsServer *s = c->server;
        char code[4];

        if (st->state == ST_REPLIED) {
                secret_free(msg);
                return;
        }
        st->state = ST_REPLIED;
        st->status = status;
        body_drop(st);
        (void) snprintf(code, sizeof(code), "%d", (int) status);
        grpc_message_encode(message ? message : "", st->message, sizeof(st->message));
        if (s->hooks.observe)
                s->hooks.observe(s->hooks.userdata, st->method, status, kms_now_us() - st->start_us);

        if (status == GRPC_OK && msg) {
                int r = secret_new(msg->len + GRPC_PREFIX_SIZE, &st->out);
                if (r >= 0) {
                        grpc_frame_prefix(msg->len, st->out->data);
                        if (msg->len)
                                memcpy(st->out->data + GRPC_PREFIX_SIZE, msg->data, msg->len);
                        secret_free(msg);
                        nghttp2_nv hdrs[] = { NV(":status", "200"), NV("content-type", "application/grpc") };
                        nghttp2_data_provider prd = { .source.ptr = st, .read_callback = read_body };
                        if (nghttp2_submit_response(c->session, st->id, hdrs, ELEMENTSOF(hdrs), &prd) == 0)
                                return;
                        st->out = secret_free(st->out);
                } else
                        secret_free(msg);
                status = GRPC_INTERNAL;
                (void) snprintf(code, sizeof(code), "%d", (int) status);
                grpc_message_encode("out of memory", st->message, sizeof(st->message));
        } else
                secret_free(msg);

        nghttp2_nv hdrs[] = {
                NV(":status", "200"),
                NV("content-type", "application/grpc"),
                NV("grpc-status", code),
                NV("grpc-message", st->message),
        };
        if (nghttp2_submit_response(c->session, st->id, hdrs, ELEMENTSOF(hdrs), NULL) != 0)
                (void) nghttp2_submit_rst_stream(c->session, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_INTERNAL_ERROR);
}

static int on_begin_headers(nghttp2_session *session, const nghttp2_frame *frame, void *user_data) {
        KmsConn *c = user_data;
        KmsStream *st;

        if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
                return 0;
        if (c->streams >= c->server->limits.max_streams) {
                /* a peer ignoring SETTINGS_MAX_CONCURRENT_STREAMS: nghttp2 resets the stream */
                return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
        }
        st = calloc(1, sizeof(*st));
        if (!st)
                return NGHTTP2_ERR_CALLBACK_FAILURE;
        st->conn = c;
        st->id = frame->hd.stream_id;
        st->method = KMS_METHOD_INVALID;
        st->start_us = kms_now_us();
        st->next = c->first;
        if (c->first)
                c->first->prev = st;
        c->first = st;
        c->streams++;
        c->used = true;
        c->active_ms = kms_now_ms();
        nghttp2_session_set_stream_user_data(session, st->id, st);
        return 0;
}

static bool starts_with(const uint8_t *v, size_t len, const char *p) {
        size_t n = strlen(p);
        return len >= n && memcmp(v, p, n) == 0;
}

static int on_header(nghttp2_session *session, const nghttp2_frame *frame, const uint8_t *name, size_t namelen,
                     const uint8_t *value, size_t valuelen, uint8_t flags, void *user_data) {
        KmsStream *st = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
        uint64_t ms;
        (void) flags;
        (void) user_data;

        if (!st || frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
                return 0;
        if (namelen == 5 && memcmp(name, ":path", 5) == 0)
                st->method = kms_method_from_path((const char *) value, valuelen);
        else if (namelen == 7 && memcmp(name, ":method", 7) == 0)
                st->post = valuelen == 4 && memcmp(value, "POST", 4) == 0;
        else if (namelen == 12 && memcmp(name, "content-type", 12) == 0)
                /* "application/grpc" or "application/grpc+proto", "application/grpc;..." */
                st->grpc_ct = starts_with(value, valuelen, "application/grpc") &&
                              (valuelen == 16 || value[16] == '+' || value[16] == ';');
        else if (namelen == 12 && memcmp(name, "grpc-timeout", 12) == 0) {
                if (grpc_timeout_parse((const char *) value, valuelen, &ms) < 0)
                        st->bad_timeout = true;
                else
                        st->deadline_ms = kms_now_ms() + ms;
        }
        return 0;
}

static void request_done(KmsStream *st) {
        KmsServer *s = st->conn->server;
        const uint8_t *msg;
        size_t len;
        KmsJob *j;
        int r;

        if (st->state != ST_RECEIVING)
                return;
        if (!st->post || !st->grpc_ct) {
                respond(st, GRPC_UNIMPLEMENTED, "not a gRPC request (POST, content-type application/grpc)", NULL);
                return;
        }
        if (st->bad_timeout) {
                respond(st, GRPC_INVALID_ARGUMENT, "grpc-timeout does not parse", NULL);
                return;
        }
        if (st->method == KMS_METHOD_INVALID) {
                respond(st, GRPC_UNIMPLEMENTED, "unknown method (v2.KeyManagementService: Status, Encrypt, Decrypt)",
                        NULL);
                return;
        }
        r = grpc_unframe(st->body, st->len, KMS_MESSAGE_MAX, &msg, &len);
        if (r == -EPROTONOSUPPORT) {
                respond(st, GRPC_UNIMPLEMENTED, "compressed messages are not accepted", NULL);
                return;
        }
        if (r == -EMSGSIZE) {
                respond(st, GRPC_RESOURCE_EXHAUSTED, "message too large", NULL);
                return;
        }
        if (r < 0) {
                respond(st, GRPC_INVALID_ARGUMENT, "the body is not one length-prefixed message", NULL);
                return;
        }
        if (st->deadline_ms && kms_now_ms() >= st->deadline_ms) {
                respond(st, GRPC_DEADLINE_EXCEEDED, "deadline exceeded before the call ran", NULL);
                return;
        }
        /* detached jobs count: a reset stream's job still queues and still asks kekd */
        if (s->jobs >= s->limits.max_jobs) {
                respond(st, GRPC_RESOURCE_EXHAUSTED, "server busy: too many calls queued", NULL);
                return;
        }
        j = calloc(1, sizeof(*j));
        if (!j) {
                respond(st, GRPC_RESOURCE_EXHAUSTED, "out of memory", NULL);
                return;
        }
        j->method = st->method;
        j->deadline_ms = st->deadline_ms;
        j->start_us = st->start_us;
        j->len = len;
        if (len) {
                j->req = malloc(len);
                if (!j->req) {
                        free(j);
                        respond(st, GRPC_RESOURCE_EXHAUSTED, "out of memory", NULL);
                        return;
                }
                memcpy(j->req, msg, len);
        }
        body_drop(st);
        /* the job's copy of the message stays in the budget until the job comes back */
        s->buffered += len;
        s->jobs++;
        j->stream = st;
        st->job = j;
        st->state = ST_PENDING;
        s->in_flight++;
        s->hooks.submit(s->hooks.userdata, j);
}

static int on_data_chunk(nghttp2_session *session, uint8_t flags, int32_t stream_id, const uint8_t *data, size_t len,
                         void *user_data) {
        KmsStream *st = nghttp2_session_get_stream_user_data(session, stream_id);
        KmsServer *s;
        uint8_t *b;
        (void) flags;
        (void) user_data;

        if (!st || st->state != ST_RECEIVING)
                return 0;
        s = st->conn->server;
        /* the bounds are checked before a byte is kept */
        if (st->len + len > GRPC_PREFIX_SIZE + KMS_MESSAGE_MAX) {
                respond(st, GRPC_RESOURCE_EXHAUSTED, "message too large", NULL);
                return 0;
        }
        if (s->buffered + len > s->limits.max_buffered) {
                respond(st, GRPC_RESOURCE_EXHAUSTED, "server busy: request buffer full", NULL);
                return 0;
        }
        b = realloc(st->body, st->len + len);
        if (!b) {
                respond(st, GRPC_RESOURCE_EXHAUSTED, "out of memory", NULL);
                return 0;
        }
        memcpy(b + st->len, data, len);
        st->body = b;
        st->len += len;
        s->buffered += len;
        if (grpc_body_too_long(st->body, st->len, KMS_MESSAGE_MAX))
                respond(st, GRPC_RESOURCE_EXHAUSTED, "message too large", NULL);
        return 0;
}

static int on_frame_recv(nghttp2_session *session, const nghttp2_frame *frame, void *user_data) {
        KmsStream *st;
        (void) user_data;

        if ((frame->hd.type != NGHTTP2_DATA && frame->hd.type != NGHTTP2_HEADERS) ||
            !(frame->hd.flags & NGHTTP2_FLAG_END_STREAM))
                return 0;
        st = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
        if (st)
                request_done(st);
        return 0;
}

/* A reset submitted with the answer would cancel it: it follows the answer's END_STREAM instead. */
static int on_frame_send(nghttp2_session *session, const nghttp2_frame *frame, void *user_data) {
        KmsStream *st;
        (void) user_data;

        if (frame->hd.type != NGHTTP2_HEADERS || !(frame->hd.flags & NGHTTP2_FLAG_END_STREAM))
                return 0;
        st = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
        if (st && st->reset_after_reply)
                (void) nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_NO_ERROR);
        return 0;
}

static int on_stream_close(nghttp2_session *session, int32_t stream_id, uint32_t error_code, void *user_data) {
        KmsStream *st = nghttp2_session_get_stream_user_data(session, stream_id);
        (void) error_code;
        (void) user_data;

        if (st) {
                /* a call the peer cancelled before its answer still counts */
                if (st->state != ST_REPLIED && st->conn->server->hooks.observe)
                        st->conn->server->hooks.observe(st->conn->server->hooks.userdata, st->method,
                                                        GRPC_CANCELLED, kms_now_us() - st->start_us);
                nghttp2_session_set_stream_user_data(session, stream_id, NULL);
                stream_free(st);
        }
        return 0;
}

int kms_server_new(const KmsServerLimits *limits, const KmsServerHooks *hooks, KmsServer **ret) {
        KmsServer *s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        if (limits)
                s->limits = *limits;
        if (!s->limits.max_conns)
                s->limits.max_conns = 64;
        if (!s->limits.max_streams)
                s->limits.max_streams = 32;
        if (!s->limits.max_buffered)
                s->limits.max_buffered = 16u << 20;
        if (!s->limits.max_jobs)
                s->limits.max_jobs = s->limits.max_conns * s->limits.max_streams;
        if (!s->limits.receive_ms)
                s->limits.receive_ms = 30000;
        if (!s->limits.idle_ms)
                s->limits.idle_ms = 120000;
        s->hooks = *hooks;
        *ret = s;
        return 0;
}

KmsServer *kms_server_free(KmsServer *s) {
        if (!s)
                return NULL;
        while (s->conns)
                kms_conn_free(s->conns);
        free(s);
        return NULL;
}

/* The idle connection to give up for a new one (see the top), NULL if every one has a stream. */
static KmsConn *idle_victim(KmsServer *s) {
        KmsConn *best = NULL;
        int best_rank = 0;

        for (KmsConn *c = s->conns; c; c = c->next) {
                int rank = c->closing || c->linger_until ? 0 : c->used ? 2 : 1;

                if (c->first && !c->closing)
                        continue;
                /* <=: the list is newest first, so of equal times the older connection wins */
                if (!best || rank < best_rank || (rank == best_rank && c->active_ms <= best->active_ms)) {
                        best = c;
                        best_rank = rank;
                }
        }
        return best;
}

bool kms_server_can_admit(KmsServer *s) {
        return s->nconns < s->limits.max_conns || idle_victim(s);
}

int kms_conn_new(KmsServer *s, int fd, KmsConn **ret) {
        nghttp2_session_callbacks *cb = NULL;
        nghttp2_option *opt = NULL;
        KmsConn *c;
        int r;

        if (s->nconns >= s->limits.max_conns) {
                KmsConn *victim = idle_victim(s);

                if (!victim)
                        return -EMFILE;
                /* a GOAWAY if the socket takes it now, so grpc-go knows no call of its was lost */
                if (!victim->closing && !victim->linger_until)
                        (void) nghttp2_session_terminate_session(victim->session, NGHTTP2_NO_ERROR);
                (void) kms_conn_flush(victim);
                kms_conn_free(victim);
        }
        c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        c->server = s;
        c->fd = fd;
        c->active_ms = kms_now_ms();
        if (nghttp2_session_callbacks_new(&cb) != 0 || nghttp2_option_new(&opt) != 0) {
                r = -ENOMEM;
                goto fail;
        }
        nghttp2_session_callbacks_set_on_begin_headers_callback(cb, on_begin_headers);
        nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
        nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data_chunk);
        nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame_recv);
        nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_stream_close);
        nghttp2_session_callbacks_set_on_frame_send_callback(cb, on_frame_send);
        /* bounds nghttp2 keeps itself: header block, deflate table, queued SETTINGS/PING acks */
        nghttp2_option_set_max_send_header_block_length(opt, 16384);
        nghttp2_option_set_max_deflate_dynamic_table_size(opt, 4096);
        nghttp2_option_set_max_outbound_ack(opt, 100);
        nghttp2_option_set_max_settings(opt, 32);
        /*
         * grpc-go (kube-apiserver's client) sends the socket path as :authority,
         * which nghttp2's HTTP checks reset as a PROTOCOL_ERROR. The checks that
         * matter for gRPC (:method, :path, content-type, the body's framing) are
         * made in request_done(); nghttp2 still checks framing and HPACK.
         */
        nghttp2_option_set_no_http_messaging(opt, 1);
        if (nghttp2_session_server_new2(&c->session, cb, c, opt) != 0) {
                r = -ENOMEM;
                goto fail;
        }
        nghttp2_settings_entry iv[] = {
                { NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, s->limits.max_streams },
                { NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, 16384 },
                { NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, GRPC_PREFIX_SIZE + KMS_MESSAGE_MAX },
        };
        if (nghttp2_submit_settings(c->session, NGHTTP2_FLAG_NONE, iv, ELEMENTSOF(iv)) != 0) {
                r = -ENOMEM;
                goto fail;
        }
        nghttp2_session_callbacks_del(cb);
        nghttp2_option_del(opt);
        c->next = s->conns;
        if (s->conns)
                s->conns->prev = c;
        s->conns = c;
        s->nconns++;
        *ret = c;
        return 0;
fail:
        nghttp2_session_callbacks_del(cb);
        nghttp2_option_del(opt);
        if (c->session)
                nghttp2_session_del(c->session);
        free(c);
        return r;
}

KmsConn *kms_conn_free(KmsConn *c) {
        if (!c)
                return NULL;
        KmsServer *s = c->server;
        /* nghttp2_session_del calls no stream-close callback: the streams are freed here */
        while (c->first) {
                if (c->first->state != ST_REPLIED && s->hooks.observe)
                        s->hooks.observe(s->hooks.userdata, c->first->method, GRPC_CANCELLED,
                                         kms_now_us() - c->first->start_us);
                stream_free(c->first);
        }
        nghttp2_session_del(c->session);
        if (c->prev)
                c->prev->next = c->next;
        else
                s->conns = c->next;
        if (c->next)
                c->next->prev = c->prev;
        s->nconns--;
        safe_close(c->fd);
        free(c);
        return NULL;
}

int kms_conn_feed(KmsConn *c, const uint8_t *data, size_t len) {
        if (c->linger_until)
                return 0; /* the session is over: only the peer's EOF is awaited */
        ssize_t n = nghttp2_session_mem_recv(c->session, data, len);
        if (n < 0 || (size_t) n != len) {
                c->broken = true;
                return -EPROTO;
        }
        return 0;
}

int kms_conn_flush(KmsConn *c) {
        if (c->linger_until)
                return 0; /* shut for writing: nothing more goes out */
        for (;;) {
                if (c->pending_len == 0) {
                        const uint8_t *p;
                        ssize_t n = nghttp2_session_mem_send(c->session, &p);
                        if (n < 0) {
                                c->broken = true;
                                return -EPROTO;
                        }
                        if (n == 0)
                                return 0;
                        c->pending = p;
                        c->pending_len = (size_t) n;
                }
                if (c->fd < 0) {
                        c->pending_len = 0;
                        continue;
                }
                ssize_t w = send(c->fd, c->pending, c->pending_len, MSG_NOSIGNAL | MSG_DONTWAIT);
                if (w < 0) {
                        if (errno == EAGAIN || errno == EINTR)
                                return 0;
                        c->broken = true;
                        return -errno;
                }
                c->pending += w;
                c->pending_len -= (size_t) w;
                if (c->pending_len > 0)
                        return 0;
        }
}

bool kms_conn_wants_read(const KmsConn *c) {
        return !c->broken && (c->linger_until || nghttp2_session_want_read(c->session));
}

bool kms_conn_wants_write(const KmsConn *c) {
        return !c->broken && !c->linger_until && (c->pending_len > 0 || nghttp2_session_want_write(c->session));
}

bool kms_conn_finished(const KmsConn *c) {
        return c->broken || (!nghttp2_session_want_read(c->session) && !kms_conn_wants_write(c));
}

bool kms_conn_linger(KmsConn *c, uint64_t now_ms) {
        if (c->broken || c->fd < 0)
                return true;
        if (!c->linger_until) {
                if (shutdown(c->fd, SHUT_WR) < 0)
                        return true;
                c->linger_until = now_ms + KMS_LINGER_MS;
                return false;
        }
        return now_ms >= c->linger_until;
}

int kms_conn_fd(const KmsConn *c) {
        return c->fd;
}

void kms_server_complete(KmsServer *s, KmsJob *job) {
        KmsStream *st = job->stream;

        s->buffered -= job->len;
        s->jobs--;
        if (st) {
                st->job = NULL;
                s->in_flight--;
                respond(st, job->reply.status, job->reply.message, TAKE_PTR(job->reply.body));
        }
        kms_job_free(job);
}

uint64_t kms_server_expire(KmsServer *s, uint64_t now_ms) {
        uint64_t next = 0;

        for (KmsConn *c = s->conns; c; c = c->next) {
                uint64_t idle_until = c->active_ms + s->limits.idle_ms;

                if (c->linger_until) {
                        if (!next || c->linger_until < next)
                                next = c->linger_until;
                        continue;
                }
                if (c->first || c->closing)
                        continue;
                if (idle_until > now_ms) {
                        if (!next || idle_until < next)
                                next = idle_until;
                        continue;
                }
                /* the caller's flush sends the GOAWAY; kms_conn_finished() is true once it is out */
                c->closing = true;
                if (nghttp2_session_terminate_session(c->session, NGHTTP2_NO_ERROR) != 0)
                        c->broken = true;
        }
        for (KmsConn *c = s->conns; c; c = c->next)
                for (KmsStream *st = c->first; st; st = st->next) {
                        uint64_t until = st->deadline_ms;

                        if (st->state == ST_REPLIED)
                                continue;
                        if (st->state == ST_RECEIVING) {
                                /* no grpc-timeout, or a long one, does not let a request arrive for ever */
                                uint64_t recv_until = st->start_us / 1000u + s->limits.receive_ms;
                                if (!until || recv_until < until)
                                        until = recv_until;
                        }
                        if (!until)
                                continue;
                        if (until > now_ms) {
                                if (!next || until < next)
                                        next = until;
                                continue;
                        }
                        if (st->state == ST_RECEIVING && until != st->deadline_ms) {
                                /* the peer may never end its half: the reset after the answer frees the slot */
                                st->reset_after_reply = true;
                                respond(st, GRPC_RESOURCE_EXHAUSTED, "the request was not received in time", NULL);
                                continue;
                        }
                        if (st->job) {
                                st->job->stream = NULL;
                                st->job = NULL;
                                s->in_flight--;
                        }
                        respond(st, GRPC_DEADLINE_EXCEEDED, "deadline exceeded", NULL);
                }
        return next;
}

void kms_server_drain(KmsServer *s) {
        for (KmsConn *c = s->conns; c; c = c->next) {
                /* a lingering one is shut for writing: a GOAWAY queued there would only break it (EPIPE) */
                if (c->linger_until)
                        continue;
                (void) nghttp2_submit_goaway(c->session, NGHTTP2_FLAG_NONE,
                                             nghttp2_session_get_last_proc_stream_id(c->session), NGHTTP2_NO_ERROR,
                                             NULL, 0);
        }
}

unsigned kms_server_in_flight(const KmsServer *s) {
        return s->in_flight;
}

unsigned kms_server_conns(const KmsServer *s) {
        return s->nconns;
}

KmsConn *kms_server_first_conn(KmsServer *s) {
        return s->conns;
}

KmsConn *kms_conn_next(KmsConn *c) {
        return c->next;
}
