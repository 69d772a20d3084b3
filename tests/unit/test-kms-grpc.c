/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * gRPC framing (kms/grpc.c) and the HTTP/2 server (kms/h2.c) driven by an
 * nghttp2 client session over a socketpair: a unary call, the status and
 * trailers, several streams at once, the stream limit, deadlines expired by
 * the server itself while a job runs, oversized and compressed messages,
 * unknown methods, a job finishing after its stream is gone, and idle
 * connections (evicted at max_conns, closed past idle_ms).
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <nghttp2/nghttp2.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "kms/grpc.h"
#include "kms/h2.h"
#include "tests/lib/tap.h"

static void test_framing(void) {
        uint8_t b[16] = { 0, 0, 0, 0, 3, 'a', 'b', 'c' };
        const uint8_t *m;
        size_t n;

        ok(grpc_unframe(b, 8, 100, &m, &n) == 0 && n == 3 && m == b + 5, "one message unframes");
        is_int(grpc_unframe(b, 7, 100, &m, &n), -EBADMSG, "a truncated message");
        is_int(grpc_unframe(b, 9, 100, &m, &n), -EBADMSG, "trailing bytes");
        is_int(grpc_unframe(b, 4, 100, &m, &n), -EBADMSG, "a truncated prefix");
        is_int(grpc_unframe(b, 8, 2, &m, &n), -EMSGSIZE, "a message over the limit");
        b[0] = 1;
        is_int(grpc_unframe(b, 8, 100, &m, &n), -EPROTONOSUPPORT, "a compressed message");
        b[0] = 2;
        is_int(grpc_unframe(b, 8, 100, &m, &n), -EBADMSG, "unknown flag bits");
        uint8_t big[5] = { 0, 0x7f, 0xff, 0xff, 0xff };
        is_int(grpc_body_too_long(big, 5, 1000), 1, "a 2 GiB prefix is too long before any body byte");
        is_int(grpc_body_too_long(b, 3, 1000), 0, "a partial prefix is not too long");
        is_int(grpc_body_too_long(b, 1006, 1000), 1, "more bytes than a message may have");
        grpc_frame_prefix(0x01020304, b);
        ok(b[0] == 0 && b[1] == 1 && b[2] == 2 && b[3] == 3 && b[4] == 4, "the prefix is big-endian");

        static const struct {
                const char *v;
                int r;
                uint64_t ms;
        } t[] = {
                { "1S", 0, 1000 },   { "100m", 0, 100 },       { "5u", 0, 1 },  { "10n", 0, 1 },
                { "2H", 0, 7200000 }, { "3M", 0, 180000 },     { "0m", 0, 0 },  { "99999999S", 0, 99999999000ull },
                { "", -EINVAL, 0 },  { "S", -EINVAL, 0 },      { "123456789S", -EINVAL, 0 },
                { "1x", -EINVAL, 0 }, { "-1S", -EINVAL, 0 },   { "1 S", -EINVAL, 0 },
        };
        for (size_t i = 0; i < ELEMENTSOF(t); i++) {
                uint64_t ms = 12345;
                int r = grpc_timeout_parse(t[i].v, strlen(t[i].v), &ms);
                ok(r == t[i].r && (r < 0 ? ms == 12345 : ms == t[i].ms), "grpc-timeout '%s' -> %d, %llu ms", t[i].v, r,
                   (unsigned long long) ms);
        }
        char out[16];
        grpc_message_encode("a%b\n\xff", out, sizeof(out));
        ok(!strcmp(out, "a%25b%0A%FF"), "grpc-message percent-encoding: %s", out);
        grpc_message_encode("abcdefghijklmnopqrst", out, 8);
        ok(!strcmp(out, "abcdefg"), "grpc-message is cut to the buffer: %s", out);
        ok(!strcmp(grpc_status_name(GRPC_DEADLINE_EXCEEDED), "DEADLINE_EXCEEDED") &&
           !strcmp(grpc_status_name(99), "UNKNOWN"), "status names");
}

/* --- a client session against the server --- */
#define MAXS 256
typedef struct Call {
        int32_t id;
        int status;          /* grpc-status, -1 none */
        char message[256];
        uint8_t data[256];
        size_t data_len;
        uint32_t rst;        /* RST_STREAM code, or ~0 */
        bool closed;
        const uint8_t *body;
        size_t body_len, body_off;
} Call;

static Call calls[MAXS];
static int ncalls;
static KmsJob *jobs[MAXS];
static int njobs;

static void hook_submit(void *ud, KmsJob *j) {
        (void) ud;
        jobs[njobs++] = j;
}

static Call *find(int32_t id) {
        for (int i = 0; i < ncalls; i++)
                if (calls[i].id == id)
                        return &calls[i];
        return NULL;
}

static int c_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name, size_t namelen,
                    const uint8_t *value, size_t valuelen, uint8_t flags, void *ud) {
        Call *c = find(f->hd.stream_id);
        (void) s, (void) flags, (void) ud;
        if (!c)
                return 0;
        if (namelen == 11 && !memcmp(name, "grpc-status", 11))
                c->status = atoi((const char *) value);
        if (namelen == 12 && !memcmp(name, "grpc-message", 12))
                snprintf(c->message, sizeof(c->message), "%.*s", (int) valuelen, value);
        return 0;
}

static int c_data(nghttp2_session *s, uint8_t flags, int32_t id, const uint8_t *d, size_t len, void *ud) {
        Call *c = find(id);
        (void) s, (void) flags, (void) ud;
        if (c && c->data_len + len <= sizeof(c->data)) {
                memcpy(c->data + c->data_len, d, len);
                c->data_len += len;
        }
        return 0;
}

static int c_close(nghttp2_session *s, int32_t id, uint32_t code, void *ud) {
        Call *c = find(id);
        (void) s, (void) ud;
        if (c) {
                c->closed = true;
                c->rst = code;
        }
        return 0;
}

static ssize_t c_read(nghttp2_session *s, int32_t id, uint8_t *buf, size_t len, uint32_t *flags,
                      nghttp2_data_source *src, void *ud) {
        Call *c = src->ptr;
        size_t n = MIN(len, c->body_len - c->body_off);
        (void) s, (void) id, (void) ud;
        memcpy(buf, c->body + c->body_off, n);
        c->body_off += n;
        if (c->body_off == c->body_len)
                *flags |= NGHTTP2_DATA_FLAG_EOF;
        return (ssize_t) n;
}

static nghttp2_session *cli;
static int cfd;
static KmsServer *srv;
static KmsConn *conn;

/* moves bytes both ways until neither side has more (bounded) */
static void pump(void) {
        uint8_t buf[65536];
        for (int round = 0; round < 200; round++) {
                bool moved = false;
                const uint8_t *p;
                ssize_t n;
                while ((n = nghttp2_session_mem_send(cli, &p)) > 0) {
                        kms_conn_feed(conn, p, (size_t) n);
                        moved = true;
                }
                kms_conn_flush(conn);
                while ((n = recv(cfd, buf, sizeof(buf), MSG_DONTWAIT)) > 0) {
                        nghttp2_session_mem_recv(cli, buf, (size_t) n);
                        moved = true;
                }
                if (!moved)
                        return;
        }
}

static Call *start(const char *path, const char *timeout, const uint8_t *body, size_t len, bool ct) {
        Call *c = &calls[ncalls++];
        memset(c, 0, sizeof(*c));
        c->status = -1;
        c->rst = ~0u;
        c->body = body;
        c->body_len = len;
        nghttp2_nv h[] = {
                { (uint8_t *) ":method", (uint8_t *) "POST", 7, 4, 0 },
                { (uint8_t *) ":scheme", (uint8_t *) "http", 7, 4, 0 },
                { (uint8_t *) ":path", (uint8_t *) path, 5, strlen(path), 0 },
                /* as grpc-go sends it for a Unix socket */
                { (uint8_t *) ":authority", (uint8_t *) "/run/kms/kms.sock", 10, 17, 0 },
                { (uint8_t *) "content-type", (uint8_t *) (ct ? "application/grpc" : "text/plain"), 12,
                  ct ? 16 : 10, 0 },
                { (uint8_t *) "te", (uint8_t *) "trailers", 2, 8, 0 },
                { (uint8_t *) "grpc-timeout", (uint8_t *) (timeout ? timeout : ""), 12, timeout ? strlen(timeout) : 0, 0 },
        };
        nghttp2_data_provider prd = { .source.ptr = c, .read_callback = c_read };
        c->id = nghttp2_submit_request(cli, NULL, h, timeout ? 7 : 6, &prd, NULL);
        return c;
}

static void reply_ok(KmsJob *j, const char *payload) {
        j->reply.status = GRPC_OK;
        secret_new_copy(payload, strlen(payload), &j->reply.body);
}

/* eager: a client that does not wait for the server's SETTINGS before opening streams */
static void setup(unsigned max_streams, bool eager) {
        int sv[2];
        nghttp2_session_callbacks *cb;
        nghttp2_option *opt;
        KmsServerLimits lim = { .max_streams = max_streams };
        KmsServerHooks hooks = { hook_submit, NULL, NULL };

        socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv);
        fcntl(sv[0], F_SETFL, O_NONBLOCK);
        fcntl(sv[1], F_SETFL, O_NONBLOCK);
        cfd = sv[1];
        kms_server_new(&lim, &hooks, &srv);
        kms_conn_new(srv, sv[0], &conn);
        nghttp2_session_callbacks_new(&cb);
        nghttp2_session_callbacks_set_on_header_callback(cb, c_header);
        nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, c_data);
        nghttp2_session_callbacks_set_on_stream_close_callback(cb, c_close);
        nghttp2_option_new(&opt);
        if (eager)
                nghttp2_option_set_peer_max_concurrent_streams(opt, 100);
        nghttp2_session_client_new2(&cli, cb, NULL, opt);
        nghttp2_option_del(opt);
        nghttp2_session_callbacks_del(cb);
        nghttp2_submit_settings(cli, NGHTTP2_FLAG_NONE, NULL, 0);
        ncalls = njobs = 0;
        if (!eager)
                pump();
}

static void teardown(void) {
        nghttp2_session_del(cli);
        srv = kms_server_free(srv);
        for (int i = 0; i < njobs; i++)
                if (jobs[i])
                        kms_job_free(jobs[i]);
        if (cfd >= 0)
                close(cfd);
}

static void test_server(void) {
        static const uint8_t req[] = { 0, 0, 0, 0, 2, 0x0a, 0x00 };

        setup(4, false);
        Call *a = start("/v2.KeyManagementService/Status", "5S", req, sizeof(req), true);
        Call *b = start("/v2.KeyManagementService/Encrypt", NULL, req, sizeof(req), true);
        pump();
        is_int(njobs, 2, "two concurrent streams became two jobs");
        ok(njobs == 2 && jobs[0]->method == KMS_METHOD_STATUS && jobs[1]->method == KMS_METHOD_ENCRYPT &&
           jobs[0]->len == 2 && jobs[0]->deadline_ms > 0 && jobs[1]->deadline_ms == 0,
           "jobs carry method, message and the grpc-timeout deadline");
        is_int(kms_server_in_flight(srv), 2, "two calls in flight");
        if (njobs == 2) {
                /* answered out of order: the multiplexing does not serialise */
                reply_ok(jobs[1], "hello");
                kms_server_complete(srv, jobs[1]);
                jobs[1] = NULL;
                pump();
                ok(b->closed && b->status == 0 && b->data_len == 10 && !memcmp(b->data + 5, "hello", 5) &&
                   b->data[4] == 5, "the second call's answer: prefix, message, grpc-status 0 in the trailers");
                ok(!a->closed, "the first call still waits");
                jobs[0]->reply.status = GRPC_FAILED_PRECONDITION;
                snprintf(jobs[0]->reply.message, sizeof(jobs[0]->reply.message), "key k is disabled");
                kms_server_complete(srv, jobs[0]);
                jobs[0] = NULL;
                pump();
                ok(a->closed && a->status == 9 && a->data_len == 0 && !strcmp(a->message, "key k is disabled"),
                   "a refusal: trailers-only, grpc-status 9 and its message (%d, '%s')", a->status, a->message);
        }
        teardown();

        /* the server's own deadline: it answers while the job still runs, and drops the late result */
        setup(4, false);
        Call *d = start("/v2.KeyManagementService/Status", "50m", req, sizeof(req), true);
        pump();
        is_int(njobs, 1, "a call with a 50 ms deadline is running");
        uint64_t next = kms_server_expire(srv, kms_now_ms());
        ok(next > 0, "the server knows the next deadline");
        kms_server_expire(srv, kms_now_ms() + 100);
        pump();
        ok(d->closed && d->status == 4, "past its deadline the server answers DEADLINE_EXCEEDED (%d)", d->status);
        is_int(kms_server_in_flight(srv), 0, "nothing in flight after the expiry");
        if (njobs == 1) {
                reply_ok(jobs[0], "late");
                kms_server_complete(srv, jobs[0]);
                jobs[0] = NULL;
                pump();
                ok(d->data_len == 0, "the late result is dropped");
        }
        teardown();

        /* refusals made by the server itself */
        setup(2, false);
        static const uint8_t big[] = { 0, 0, 1, 0, 0, 1, 2, 3 };           /* announces 64 KiB */
        static const uint8_t comp[] = { 1, 0, 0, 0, 1, 0 };
        static const uint8_t junk[] = { 0, 0, 0 };
        Call *u = start("/v2.KeyManagementService/Rotate", NULL, req, sizeof(req), true);
        Call *o = start("/v2.KeyManagementService/Encrypt", NULL, big, sizeof(big), true);
        pump();
        Call *z = start("/v2.KeyManagementService/Encrypt", NULL, comp, sizeof(comp), true);
        Call *t = start("/v2.KeyManagementService/Encrypt", NULL, req, sizeof(req), false);
        pump();
        Call *j = start("/v2.KeyManagementService/Encrypt", NULL, junk, sizeof(junk), true);
        Call *bt = start("/v2.KeyManagementService/Encrypt", "soon", req, sizeof(req), true);
        pump();
        is_int(u->status, GRPC_UNIMPLEMENTED, "an unknown method: UNIMPLEMENTED");
        is_int(o->status, GRPC_RESOURCE_EXHAUSTED, "a prefix over the message limit: RESOURCE_EXHAUSTED");
        is_int(z->status, GRPC_UNIMPLEMENTED, "a compressed message: UNIMPLEMENTED");
        is_int(t->status, GRPC_UNIMPLEMENTED, "not application/grpc: UNIMPLEMENTED");
        is_int(j->status, GRPC_INVALID_ARGUMENT, "a truncated prefix: INVALID_ARGUMENT");
        is_int(bt->status, GRPC_INVALID_ARGUMENT, "a bad grpc-timeout: INVALID_ARGUMENT");
        is_int(njobs, 0, "none of them became a job");
        teardown();

        /* the stream limit: SETTINGS_MAX_CONCURRENT_STREAMS, and a peer ignoring it is reset */
        setup(2, true);
        Call *s[3];
        for (int i = 0; i < 3; i++)
                s[i] = start("/v2.KeyManagementService/Status", NULL, req, sizeof(req), true);
        /* the preface and all three HEADERS go out before the server's SETTINGS come back */
        const uint8_t *p;
        ssize_t n;
        while ((n = nghttp2_session_mem_send(cli, &p)) > 0)
                kms_conn_feed(conn, p, (size_t) n);
        pump();
        is_int(njobs, 2, "two streams of three ran with max_streams 2");
        ok(s[2]->closed && s[2]->rst == NGHTTP2_REFUSED_STREAM, "the third was reset REFUSED_STREAM (%u)", s[2]->rst);
        /* the connection goes away with jobs running: they are detached, not freed under the workers */
        conn = kms_conn_free(conn);
        is_int(kms_server_in_flight(srv), 0, "closing the connection detaches its jobs");
        ok(njobs == 2 && jobs[0]->stream == NULL && jobs[1]->stream == NULL, "the running jobs no longer name a stream");
        for (int i = 0; i < njobs; i++) {
                kms_server_complete(srv, jobs[i]);
                jobs[i] = NULL;
        }
        ok(kms_server_conns(srv) == 0, "no connection left");
        teardown();
}

/*
 * A peer that sends a whole request and resets the stream at once (or closes
 * the connection) frees its stream slot, but the job still queues for a
 * worker and still asks kekd. The jobs not yet completed are bounded
 * (max_conns * max_streams by default): past it a call is refused, and a
 * job that comes back frees its place.
 */
static void test_reset_flood(void) {
        static const uint8_t req[] = { 0, 0, 0, 0, 2, 0x0a, 0x00 };
        const unsigned bound = 64 * 2;     /* the default max_conns times max_streams 2 */
        int refused = 0;

        setup(2, false);
        for (unsigned i = 0; i < bound + 40; i++) {
                ncalls = 0;
                Call *c = start("/v2.KeyManagementService/Encrypt", NULL, req, sizeof(req), true);
                pump();
                if (c->closed && c->status == GRPC_RESOURCE_EXHAUSTED)
                        refused++;
                else
                        (void) nghttp2_submit_rst_stream(cli, NGHTTP2_FLAG_NONE, c->id, NGHTTP2_CANCEL);
                pump();
        }
        is_int(kms_server_in_flight(srv), 0, "every stream was reset: nothing waits for a job");
        is_int(njobs, (int) bound, "reset streams' jobs are bounded: %u calls, %d jobs", bound + 40, njobs);
        is_int(refused, 40, "the calls past the bound were refused RESOURCE_EXHAUSTED");
        for (int i = 0; i < njobs; i++) {
                reply_ok(jobs[i], "late");
                kms_server_complete(srv, jobs[i]);
                jobs[i] = NULL;
        }
        int before = njobs;
        ncalls = 0;
        Call *c = start("/v2.KeyManagementService/Encrypt", NULL, req, sizeof(req), true);
        pump();
        ok(njobs == before + 1 && !c->closed, "once the jobs came back a call runs again");
        teardown();
}

static ssize_t c_read_half(nghttp2_session *s, int32_t id, uint8_t *buf, size_t len, uint32_t *flags,
                           nghttp2_data_source *src, void *ud) {
        ssize_t n = c_read(s, id, buf, len, flags, src, ud);
        /* the body so far, and the stream left open: the rest never comes */
        if (*flags & NGHTTP2_DATA_FLAG_EOF)
                *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
        return n;
}

/*
 * A peer that sends the headers and part of a body, without grpc-timeout,
 * and never the rest: past receive_ms the request is refused and its stream
 * reset, so its buffer and its stream slot come back.
 */
static void test_slow_request(void) {
        static const uint8_t half[] = { 0, 0, 0, 0x9c, 0x40, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 };   /* 40000 announced */
        static const uint8_t req[] = { 0, 0, 0, 0, 2, 0x0a, 0x00 };

        setup(1, false);
        Call *c = &calls[ncalls++];
        memset(c, 0, sizeof(*c));
        c->status = -1;
        c->rst = ~0u;
        c->body = half;
        c->body_len = sizeof(half);
        nghttp2_nv h[] = {
                { (uint8_t *) ":method", (uint8_t *) "POST", 7, 4, 0 },
                { (uint8_t *) ":scheme", (uint8_t *) "http", 7, 4, 0 },
                { (uint8_t *) ":path", (uint8_t *) "/v2.KeyManagementService/Encrypt", 5, 32, 0 },
                { (uint8_t *) "content-type", (uint8_t *) "application/grpc", 12, 16, 0 },
        };
        nghttp2_data_provider prd = { .source.ptr = c, .read_callback = c_read_half };
        c->id = nghttp2_submit_request(cli, NULL, h, ELEMENTSOF(h), &prd, NULL);
        pump();
        ok(!c->closed && njobs == 0, "half a request: no job, the stream stays open");
        uint64_t next = kms_server_expire(srv, kms_now_ms());
        ok(next > 0 && next <= kms_now_ms() + 30000, "the half request has an expiry without grpc-timeout");
        /* with max_streams 1 it holds the only slot: the client keeps the next call back */
        Call *b = start("/v2.KeyManagementService/Status", NULL, req, sizeof(req), true);
        pump();
        ok(!b->closed && njobs == 0, "with max_streams 1 the next call waits for the slot");
        kms_server_expire(srv, kms_now_ms() + 30001);
        pump();
        ok(c->closed && c->status == GRPC_RESOURCE_EXHAUSTED, "past 30 s it is refused RESOURCE_EXHAUSTED (%d, '%s', %u)",
           c->status, c->message, c->rst);
        ok(njobs == 1 && !b->closed, "its slot is free again: the waiting call runs (%d job)", njobs);
        teardown();
}

/* bytes then EOF on fd within a bounded number of reads: the server closed it */
static bool peer_closed(int fd) {
        uint8_t buf[4096];
        for (int i = 0; i < 1000; i++) {
                ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
                if (n == 0)
                        return true;
                if (n < 0)
                        return false;
        }
        return false;
}

/*
 * 63 connections that send nothing fill the default max_conns (64) beside
 * one client that made a call: a further connection is still admitted, in
 * the place of the oldest silent one, never of the client's; past idle_ms
 * every connection without a stream is ended, one with a call open is not.
 */
static void test_idle_conns(void) {
        static const uint8_t req[] = { 0, 0, 0, 0, 2, 0x0a, 0x00 };
        enum { FLOOD = 63 };
        int peer[FLOOD + 1];
        KmsConn *extra = NULL;
        int sv[2];

        setup(4, false);
        Call *a = start("/v2.KeyManagementService/Status", NULL, req, sizeof(req), true);
        pump();
        if (njobs == 1) {
                reply_ok(jobs[0], "");
                kms_server_complete(srv, jobs[0]);
                jobs[0] = NULL;
        }
        pump();
        ok(a->closed && a->status == GRPC_OK, "the client's first call is answered (%d)", a->status);
        int admitted = 0;
        for (int i = 0; i < FLOOD; i++) {
                KmsConn *c;
                socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv);
                peer[i] = sv[1];
                if (kms_conn_new(srv, sv[0], &c) == 0)
                        admitted++;
                else
                        close(sv[0]);
        }
        is_int(admitted, FLOOD, "63 silent connections fill max_conns beside the client");
        is_int((int) kms_server_conns(srv), 64, "64 connections");
        ok(kms_server_can_admit(srv), "at max_conns with idle connections, one more can be admitted");
        socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv);
        peer[FLOOD] = sv[1];
        int r = kms_conn_new(srv, sv[0], &extra);
        is_int(r, 0, "a 65th connection is admitted in place of an idle one");
        if (r < 0)
                close(sv[0]);
        is_int((int) kms_server_conns(srv), 64, "still 64 connections");
        ok(peer_closed(peer[0]), "the oldest silent connection was closed");
        ok(!peer_closed(peer[1]), "the next silent one was not");
        Call *b = start("/v2.KeyManagementService/Status", NULL, req, sizeof(req), true);
        pump();
        ok(njobs == 2 && !b->closed, "the client's connection still serves: its second call runs (%d jobs)", njobs);

        /* a stream open: the client's connection is not idle, whatever the time */
        uint64_t next = kms_server_expire(srv, kms_now_ms());
        ok(next > kms_now_ms() && next <= kms_now_ms() + 120000, "the silent connections have an idle expiry");
        kms_server_expire(srv, kms_now_ms() + 120001);
        int finished = 0;
        for (KmsConn *c = kms_server_first_conn(srv), *nc; c; c = nc) {
                nc = kms_conn_next(c);
                if (c == conn)
                        continue;
                (void) kms_conn_flush(c);
                if (kms_conn_finished(c)) {
                        finished++;
                        kms_conn_free(c);
                }
        }
        is_int(finished, FLOOD, "past 120 s every silent connection is ended");
        ok(peer_closed(peer[1]), "its peer sees the close");
        pump();
        ok(!kms_conn_finished(conn) && !b->closed, "the client's connection with a call open is not");
        if (njobs == 2) {
                reply_ok(jobs[1], "");
                kms_server_complete(srv, jobs[1]);
                jobs[1] = NULL;
        }
        pump();
        ok(b->closed && b->status == GRPC_OK, "its call is answered (%d)", b->status);
        kms_server_expire(srv, kms_now_ms() + 120001);
        pump();
        ok(kms_conn_finished(conn), "idle 120 s after its last call, it is ended too");
        for (int i = 0; i <= FLOOD; i++)
                close(peer[i]);
        teardown();
}

/*
 * A drain with a call in flight: the call is answered after the GOAWAY, and
 * the finished connection lingers instead of closing. The client, which has
 * meanwhile sent a frame the server never reads, gets its answer and then
 * EOF, not ECONNRESET: a close with unread input resets the peer, and a
 * gRPC client lost answered calls that way (kms.sh under ASan).
 */
static void test_drain_linger(void) {
        static const uint8_t req[] = { 0, 0, 0, 0, 2, 0x0a, 0x00 };
        uint8_t buf[4096];
        ssize_t n = -1;

        setup(4, false);
        Call *a = start("/v2.KeyManagementService/Status", NULL, req, sizeof(req), true);
        pump();
        is_int(njobs, 1, "the call is in flight");
        kms_server_drain(srv);
        pump();
        ok(!kms_conn_finished(conn), "after the GOAWAY, the connection with a call in flight is not finished");
        reply_ok(jobs[0], "");
        kms_server_complete(srv, jobs[0]);
        jobs[0] = NULL;
        (void) kms_conn_flush(conn);
        ok(kms_conn_finished(conn), "answered, the drained connection is finished");
        /* the client's late frame, as a gRPC client sends after reading: never read by the server */
        nghttp2_submit_ping(cli, NGHTTP2_FLAG_NONE, NULL);
        const uint8_t *p;
        while ((n = nghttp2_session_mem_send(cli, &p)) > 0)
                (void) send(cfd, p, (size_t) n, MSG_NOSIGNAL);
        uint64_t now = kms_now_ms();
        ok(!kms_conn_linger(conn, now), "the first linger call keeps the connection");
        ok(kms_conn_wants_read(conn) && !kms_conn_wants_write(conn), "lingering, it is read and not written");
        is_int((int) (kms_server_expire(srv, now) - now), (int) KMS_LINGER_MS, "its linger end is the next expiry");
        for (int i = 0; i < 100 && (n = recv(cfd, buf, sizeof(buf), MSG_DONTWAIT)) > 0; i++)
                nghttp2_session_mem_recv(cli, buf, (size_t) n);
        ok(a->closed && a->status == GRPC_OK, "the client read its answer (%d)", a->status);
        ok(n == 0, "then EOF, not a reset (recv %zd, errno %d)", n, n < 0 ? errno : 0);
        n = recv(kms_conn_fd(conn), buf, sizeof(buf), MSG_DONTWAIT);
        ok(n > 0 && kms_conn_feed(conn, buf, (size_t) n) == 0, "the client's late frame is read and dropped");
        ok(!kms_conn_linger(conn, now + KMS_LINGER_MS - 1), "the connection lingers up to its bound");
        ok(kms_conn_linger(conn, now + KMS_LINGER_MS), "and is given up at it");
        close(cfd);
        n = recv(kms_conn_fd(conn), buf, sizeof(buf), MSG_DONTWAIT);
        is_int((int) n, 0, "the client's close reaches the server as EOF (its loop frees the connection then)");
        cfd = -1;
        teardown();
}

/*
 * A drain that starts while a connection lingers (finished by the client's
 * GOAWAY, its write side shut): the drain's GOAWAY is not queued on it, so
 * nothing is written to the shut socket (EPIPE would break the connection
 * and close it at once, input unread: the reset the linger exists to avoid).
 */
static void test_linger_then_drain(void) {
        const uint8_t *p;
        ssize_t n;

        setup(4, false);
        pump();
        nghttp2_submit_goaway(cli, NGHTTP2_FLAG_NONE, 0, NGHTTP2_NO_ERROR, NULL, 0);
        while ((n = nghttp2_session_mem_send(cli, &p)) > 0)
                (void) kms_conn_feed(conn, p, (size_t) n);
        (void) kms_conn_flush(conn);
        ok(kms_conn_finished(conn), "the client's GOAWAY finishes the idle connection");
        uint64_t now = kms_now_ms();
        ok(!kms_conn_linger(conn, now), "it lingers");
        kms_server_drain(srv);
        ok(!kms_conn_wants_write(conn), "a drain queues nothing on the lingering connection");
        (void) kms_conn_flush(conn);
        ok(kms_conn_finished(conn) && !kms_conn_linger(conn, now + 1),
           "after the drain's flush it still lingers, not broken by a write to its shut side");
        teardown();
}

int main(void) {
        if (secret_heap_init(1u << 20) < 0)
                return 99;
        test_framing();
        test_server();
        test_reset_flood();
        test_slow_request();
        test_idle_conns();
        test_drain_linger();
        test_linger_then_drain();
        return tap_done();
}
