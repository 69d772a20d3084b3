/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Unit tests of the client transport (client/transport.c) over a socketpair,
 * without kekd: the frame kek_transport_send() writes, KekReader across
 * partial frames, several frames in one read and frames larger than one
 * receive chunk; its sticky failures (oversized, zero-length and
 * undecodable frames, EOF) that leave the socket untouched afterwards; the
 * mapping of responses to results; and KekConn's matching of responses by
 * id, the id-0 refusal read after a failed send, and its timeout.
 */
#include "config.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "client/transport.h"
#include "common/kekerr.h"
#include "tests/lib/tap.h"

/* Writes all of p to fd (the peer's side; the socket buffer holds it). */
static bool write_all(int fd, const void *p, size_t n) {
        return write(fd, p, n) == (ssize_t) n;
}

/* The frame of a response: id with a GetKeyVersion body naming key, or an Error. */
static void response_frame(FrameBuf *b, uint64_t id, const char *key, int error_code, const char *message) {
        Kek__Response resp = KEK__RESPONSE__INIT;
        Kek__GetKeyVersionResponse g = KEK__GET_KEY_VERSION_RESPONSE__INIT;
        Kek__Error e = KEK__ERROR__INIT;

        resp.id = id;
        if (key) {
                g.key = (char *) key;
                g.current_version = 3;
                resp.body_case = KEK__RESPONSE__BODY_GET_KEY_VERSION;
                resp.get_key_version = &g;
        } else {
                e.code = error_code;
                e.message = (char *) message;
                resp.body_case = KEK__RESPONSE__BODY_ERROR;
                resp.error = &e;
        }
        frame_buf_init(b);
        if (frame_append_message(b, &resp.base, FRAME_MAX_LIMIT) < 0)
                abort();
}

static bool write_response(int fd, uint64_t id, const char *key, int error_code, const char *message) {
        FrameBuf b;
        bool ok;

        response_frame(&b, id, key, error_code, message);
        ok = write_all(fd, frame_buf_head(&b), frame_buf_size(&b));
        frame_buf_done(&b);
        return ok;
}

static bool pending(int fd) {
        char c;

        return recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT) == 1;
}

static void test_send(void) {
        Kek__Request req = KEK__REQUEST__INIT;
        Kek__GetKeyVersionRequest g = KEK__GET_KEY_VERSION_REQUEST__INIT;
        struct timespec deadline = kek_deadline_after(10 * 1000000ULL);
        uint8_t buf[256];
        const uint8_t *payload;
        Kek__Request *got;
        size_t len;
        ssize_t n;
        int sv[2];

        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
                abort();
        req.id = 42;
        g.key = "acct";
        req.body_case = KEK__REQUEST__BODY_GET_KEY_VERSION;
        req.get_key_version = &g;
        is_int(kek_transport_send(sv[0], &req, &deadline), 0, "send: one request");
        n = read(sv[1], buf, sizeof(buf));
        ok(n > 0 && frame_parse(buf, (size_t) n, FRAME_MAX_LIMIT, &payload, &len) == 1 && FRAME_HEADER_SIZE + len == (size_t) n,
           "... exactly one frame on the wire");
        got = n > 0 ? kek__request__unpack(NULL, len, payload) : NULL;
        ok(got && got->id == 42 && got->body_case == KEK__REQUEST__BODY_GET_KEY_VERSION &&
           strcmp(got->get_key_version->key, "acct") == 0, "... carrying the request");
        if (got)
                kek__request__free_unpacked(got, NULL);
        close(sv[1]);
        is_int(kek_transport_send(sv[0], &req, &deadline), -EPIPE, "send to a closed peer: -EPIPE, no SIGPIPE");
        close(sv[0]);

        is_int(kek_transport_connect(NULL), -EINVAL, "connect: no path: -EINVAL");
        memset(buf, 'a', 200);
        buf[200] = 0;
        is_int(kek_transport_connect((char *) buf), -EINVAL, "connect: a path longer than sun_path: -EINVAL");
        is_int(kek_transport_connect("/nonexistent/kekd.sock"), -ENOENT, "connect: no socket: -ENOENT");
}

static void test_reader(void) {
        struct timespec now = kek_deadline_after(0), later = kek_deadline_after(10 * 1000000ULL);
        Kek__Response *resp = NULL;
        char big_key[60000];
        KekReader r;
        FrameBuf b;
        int sv[2];

        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
                abort();
        kek_reader_init(&r, sv[0]);

        /* A frame in two pieces: the first read times out without losing the first piece. */
        response_frame(&b, 1, "acct", 0, NULL);
        write_all(sv[1], frame_buf_head(&b), 6);
        is_int(kek_reader_next(&r, &now, &resp), -ETIMEDOUT, "half a frame: -ETIMEDOUT at the deadline");
        is_int(r.error, 0, "... a timeout is not sticky");
        write_all(sv[1], frame_buf_head(&b) + 6, frame_buf_size(&b) - 6);
        frame_buf_done(&b);
        is_int(kek_reader_next(&r, &later, &resp), 0, "the rest of it: the response");
        ok(resp && resp->id == 1 && resp->body_case == KEK__RESPONSE__BODY_GET_KEY_VERSION &&
           strcmp(resp->get_key_version->key, "acct") == 0, "... whole, with its id and body");
        kek_response_free(resp);

        /* Two frames in one write, then one larger than a receive chunk. */
        write_response(sv[1], 2, "a", 0, NULL);
        write_response(sv[1], 3, "b", 0, NULL);
        is_int(kek_reader_next(&r, &later, &resp), 0, "two frames at once: the first");
        ok(resp && resp->id == 2, "... id 2");
        kek_response_free(resp);
        is_int(kek_reader_next(&r, &now, &resp), 0, "... the second, already buffered");
        ok(resp && resp->id == 3, "... id 3");
        kek_response_free(resp);
        memset(big_key, 'k', sizeof(big_key) - 1);
        big_key[sizeof(big_key) - 1] = 0;
        write_response(sv[1], 4, big_key, 0, NULL);
        is_int(kek_reader_next(&r, &later, &resp), 0, "a 60 kB frame, read in several chunks");
        ok(resp && resp->id == 4 && strlen(resp->get_key_version->key) == sizeof(big_key) - 1, "... whole");
        kek_response_free(resp);

        /* An oversized header fails, and stays failed without reading on. */
        write_all(sv[1], (const uint8_t[]) { 0x01, 0x00, 0x00, 0x01 }, 4); /* 16 MiB + 1 */
        resp = NULL;
        is_int(kek_reader_next(&r, &later, &resp), -EBADMSG, "a frame above FRAME_MAX_LIMIT: -EBADMSG");
        ok(!resp, "... no response");
        write_response(sv[1], 5, "c", 0, NULL);
        is_int(kek_reader_next(&r, &later, &resp), -EBADMSG, "... sticky: a valid frame after it is not read");
        ok(pending(sv[0]), "... and stays unread in the socket");
        kek_reader_done(&r);
        close(sv[0]);
        close(sv[1]);

        /* Zero length, undecodable, EOF: each sticky. */
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
                abort();
        kek_reader_init(&r, sv[0]);
        write_all(sv[1], (const uint8_t[]) { 0, 0, 0, 0 }, 4);
        is_int(kek_reader_next(&r, &later, &resp), -EBADMSG, "a zero-length frame: -EBADMSG");
        kek_reader_done(&r);
        close(sv[0]);
        close(sv[1]);

        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
                abort();
        kek_reader_init(&r, sv[0]);
        write_all(sv[1], (const uint8_t[]) { 0, 0, 0, 3, 0xff, 0xff, 0xff }, 7);
        is_int(kek_reader_next(&r, &later, &resp), -EBADMSG, "an undecodable frame: -EBADMSG");
        write_response(sv[1], 6, "d", 0, NULL);
        is_int(kek_reader_next(&r, &later, &resp), -EBADMSG, "... sticky");
        kek_reader_done(&r);
        close(sv[0]);
        close(sv[1]);

        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
                abort();
        kek_reader_init(&r, sv[0]);
        write_all(sv[1], (const uint8_t[]) { 0, 0, 0, 9, 1 }, 5);
        close(sv[1]);
        is_int(kek_reader_next(&r, &later, &resp), -ECONNRESET, "EOF inside a frame: -ECONNRESET");
        is_int(kek_reader_next(&r, &later, &resp), -ECONNRESET, "... sticky");
        kek_reader_done(&r);
        kek_reader_done(&r);
        close(sv[0]);
}

static void test_result(void) {
        Kek__Response resp = KEK__RESPONSE__INIT;
        Kek__Error e = KEK__ERROR__INIT;
        Kek__GetKeyVersionResponse g = KEK__GET_KEY_VERSION_RESPONSE__INIT;

        resp.body_case = KEK__RESPONSE__BODY_GET_KEY_VERSION;
        resp.get_key_version = &g;
        is_int(kek_response_result(&resp, KEK__RESPONSE__BODY_GET_KEY_VERSION), 0, "the wanted body: 0");
        is_int(kek_response_result(&resp, KEK__RESPONSE__BODY__NOT_SET), 0, "any body wanted: 0");
        is_int(kek_response_result(&resp, KEK__RESPONSE__BODY_WRAP), -EBADMSG, "another body: -EBADMSG");
        e.code = KEK__ERROR_CODE__UNKNOWN_KEY;
        resp.body_case = KEK__RESPONSE__BODY_ERROR;
        resp.error = &e;
        is_int(kek_response_result(&resp, KEK__RESPONSE__BODY__NOT_SET), -KEKERR_UNKNOWN_KEY, "an Error: its -KEKERR code");
        resp.error = NULL;
        is_int(kek_response_result(&resp, KEK__RESPONSE__BODY_WRAP), -KEKERR_INTERNAL, "an Error without details: INTERNAL");
        kek_response_free(NULL); /* accepted; a crash here fails the test */
}

static void test_conn(void) {
        Kek__Request req = KEK__REQUEST__INIT;
        Kek__GetKeyVersionRequest g = KEK__GET_KEY_VERSION_REQUEST__INIT;
        Kek__Response *resp = NULL;
        KekConn *c = NULL;
        int sv[2];

        g.key = "acct";
        req.body_case = KEK__REQUEST__BODY_GET_KEY_VERSION;
        req.get_key_version = &g;
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0 || kek_conn_new_fd(sv[0], 2000, &c) < 0)
                abort();

        /* The answers are written before the call: a late reply to id 7 comes first. */
        write_response(sv[1], 7, "stale", 0, NULL);
        write_response(sv[1], 1, "acct", 0, NULL);
        is_int(kek_conn_call(c, &req, &resp), 0, "call: the response to its own id");
        ok(resp && resp->id == 1 && strcmp(resp->get_key_version->key, "acct") == 0, "... the stale reply to id 7 is skipped");
        is_int(req.id, 1, "... the request got id 1");
        kek_response_free(resp);

        write_response(sv[1], 2, NULL, KEK__ERROR_CODE__UNKNOWN_KEY, "no key 'acct'");
        is_int(kek_conn_call(c, &req, &resp), -KEKERR_UNKNOWN_KEY, "an Error response: its code");
        ok(strcmp(kek_conn_error_message(c), "no key 'acct'") == 0, "... and its message: %s", kek_conn_error_message(c));

        write_response(sv[1], 3, "acct", 0, NULL);
        is_int(kek_conn_call(c, &req, &resp), 0, "the next call succeeds");
        ok(kek_conn_error_message(c)[0] == 0, "... and clears the message");
        kek_response_free(resp);

        /* kekd refusing the connection: one id-0 Error, then it closes; our send fails but the reason is read. */
        write_response(sv[1], 0, NULL, KEK__ERROR_CODE__LIMIT_EXCEEDED, "too many connections");
        shutdown(sv[1], SHUT_RD);
        close(sv[1]);
        is_int(kek_conn_call(c, &req, &resp), -KEKERR_LIMIT_EXCEEDED, "an id-0 Error answers the call");
        ok(strcmp(kek_conn_error_message(c), "too many connections") == 0, "... with its message");
        kek_conn_free(c);

        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0 || kek_conn_new_fd(sv[0], 50, &c) < 0)
                abort();
        is_int(kek_conn_call(c, &req, &resp), -ETIMEDOUT, "no answer: -ETIMEDOUT after the timeout");
        write_response(sv[1], 0, "x", 0, NULL);
        is_int(kek_conn_call(c, &req, &resp), -EBADMSG, "a non-error response with id 0: -EBADMSG");
        kek_conn_free(c);
        close(sv[1]);
        ok(kek_conn_free(NULL) == NULL, "kek_conn_free(NULL) is a no-op");
}

int main(void) {
        test_send();
        test_reader();
        test_result();
        test_conn();
        return tap_done();
}
