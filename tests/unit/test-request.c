/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Unit tests of daemon/request.c, without a token or a socket: a fresh
 * Request (no credentials: nobody), the memory a reply owns, the sticky
 * out-of-memory flag (a reply built after an allocation failed is never
 * sent: the peer gets the ENOMEM error, whatever the handler returned), an
 * error's text and id, a reply past the frame limit, an item's refusal, and
 * how a peer-supplied key name is shown.
 */
#include "config.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/kekerr.h"
#include "daemon/request.h"
#include "tests/lib/tap.h"

/* The one reply frame in out, decoded; NULL if out holds anything else. */
static Kek__Response *reply_of(FrameBuf *out) {
        const uint8_t *p;
        size_t n;

        if (frame_parse(frame_buf_head(out), frame_buf_size(out), FRAME_MAX_LIMIT, &p, &n) != 1 ||
            FRAME_HEADER_SIZE + n != frame_buf_size(out))
                return NULL;
        return kek__response__unpack(NULL, n, p);
}

static void test_init(void) {
        Request req;
        FrameBuf out;

        frame_buf_init(&out);
        request_init(&req, NULL, (const uint8_t *) "x", 1, &out);
        ok(req.peer && req.peer->uid == (uid_t) -1 && !req.peer->superuser && !req.peer->admin && !req.peer->officer,
           "no peer: nobody, with no role");
        ok(strcmp(req.outcome.op, "invalid") == 0 && req.error == 0 && !req.oom && !req.answered,
           "a fresh request: op 'invalid', no error, not answered");
        request_done(&req);
        request_done(NULL);
        ok(true, "request_done() accepts NULL");
        frame_buf_done(&out);
}

static void test_memory(void) {
        Request req;
        FrameBuf out;
        char *s;
        uint8_t *z;

        frame_buf_init(&out);
        request_init(&req, NULL, NULL, 0, &out);
        z = request_alloc(&req, 32);
        s = request_strdup(&req, "key-1");
        ok(z && s && strcmp(s, "key-1") == 0 && req.n_owned == 2, "request_alloc() and request_strdup() are owned");
        ok(z && z[0] == 0 && z[31] == 0, "request_alloc() memory is zeroed");
        ok(request_own(&req, malloc(8)) && req.n_owned == 3, "request_own() takes a buffer");
        ok(!req.oom, "no failure so far");
        {
                Secret *pt = NULL;

                ok(secret_new(16, &pt) >= 0 && request_own_secret(&req, pt) == pt && req.n_owned == 4,
                   "request_own_secret() takes a plaintext (freed, cleansed, by request_done())");
        }
        ok(!request_own_secret(&req, NULL) && req.oom, "a NULL secret (a failed allocation) sets the sticky flag");
        request_done(&req);
        ok(req.n_owned == 0 && !req.owned, "request_done() released everything");
        frame_buf_done(&out);
}

static void test_oom_sticky(void) {
        Request req;
        FrameBuf out;
        Kek__Response *a;
        Kek__Empty *e;

        frame_buf_init(&out);
        request_init(&req, NULL, NULL, 0, &out);
        req.outcome.id = 77;
        /* What a handler's request_own(req, strdup(...)) sees when malloc fails. */
        ok(!request_own(&req, NULL) && req.oom, "an allocation that failed sets req->oom");
        ok(!request_alloc(&req, 8) && req.n_owned == 0, "and later ones fail at once (sticky)");
        /* A handler that ignores the failure and claims success. */
        e = malloc(sizeof(*e));
        kek__empty__init(e);
        req.resp.body_case = KEK__RESPONSE__BODY_EMPTY;
        req.resp.empty = e;
        ok(request_encode(&req, FRAME_MAX_DEFAULT) >= 0, "encoded");
        a = reply_of(&out);
        ok(a && a->body_case == KEK__RESPONSE__BODY_ERROR && a->id == 77, "the reply is an error, with the id");
        ok(a && a->body_case == KEK__RESPONSE__BODY_ERROR && a->error->code == (Kek__ErrorCode) kekerr_to_wire(-ENOMEM) &&
                   strcmp(a->error->message, "kekd is out of memory") == 0,
           "the ENOMEM error, not the handler's answer");
        is_int(req.outcome.error, -ENOMEM, "the outcome says ENOMEM");
        if (a)
                kek__response__free_unpacked(a, NULL);
        free(e);
        request_done(&req);
        frame_buf_done(&out);
}

static void test_errors(void) {
        Request req;
        FrameBuf out;
        Kek__Response *a;

        frame_buf_init(&out);
        request_init(&req, NULL, NULL, 0, &out);
        req.outcome.id = 5;
        is_int(request_error(&req, -KEKERR_UNKNOWN_KEY, "unknown key '%s'", "k"), -KEKERR_UNKNOWN_KEY,
               "request_error() returns its error");
        is_int(request_fail(&req, -KEKERR_UNKNOWN_KEY), -KEKERR_UNKNOWN_KEY, "request_fail() returns its error");
        ok(req.answered && req.error == -KEKERR_UNKNOWN_KEY, "and marks the request answered with it");
        ok(request_encode(&req, FRAME_MAX_DEFAULT) >= 0, "encoded");
        a = reply_of(&out);
        ok(a && a->body_case == KEK__RESPONSE__BODY_ERROR && a->id == 5 &&
                   a->error->code == (Kek__ErrorCode) kekerr_to_wire(-KEKERR_UNKNOWN_KEY) &&
                   strcmp(a->error->message, "unknown key 'k'") == 0,
           "the error reply carries the code, the id and the handler's text");
        if (a)
                kek__response__free_unpacked(a, NULL);
        request_done(&req);
        frame_buf_done(&out);

        /* No text: the default one. */
        frame_buf_init(&out);
        request_init(&req, NULL, NULL, 0, &out);
        (void) request_fail(&req, -KEKERR_HSM_UNAVAILABLE);
        (void) request_encode(&req, FRAME_MAX_DEFAULT);
        a = reply_of(&out);
        ok(a && a->body_case == KEK__RESPONSE__BODY_ERROR &&
                   strcmp(a->error->message, request_default_message(-KEKERR_HSM_UNAVAILABLE)) == 0,
           "an undescribed error gets the default text");
        if (a)
                kek__response__free_unpacked(a, NULL);
        request_done(&req);
        frame_buf_done(&out);
}

static void test_too_large(void) {
        Request req;
        FrameBuf out;
        Kek__Response *a;
        Kek__WrapResponse *w;
        size_t big = 8192;

        frame_buf_init(&out);
        request_init(&req, NULL, NULL, 0, &out);
        req.outcome.id = 9;
        w = request_alloc(&req, sizeof(*w));
        kek__wrap_response__init(w);
        w->blob = (ProtobufCBinaryData) { big, request_alloc(&req, big) };
        req.resp.body_case = KEK__RESPONSE__BODY_WRAP;
        req.resp.wrap = w;
        ok(request_encode(&req, 4096) >= 0, "encoded with a 4 KiB frame limit");
        a = reply_of(&out);
        ok(a && a->body_case == KEK__RESPONSE__BODY_ERROR && a->id == 9 &&
                   a->error->code == (Kek__ErrorCode) kekerr_to_wire(-KEKERR_INVALID_ARGUMENT) &&
                   strstr(a->error->message, "smaller batches"),
           "a reply past the frame limit is an INVALID_ARGUMENT error instead");
        is_int(req.outcome.error, -KEKERR_INVALID_ARGUMENT, "and the outcome says so");
        if (a)
                kek__response__free_unpacked(a, NULL);
        request_done(&req);
        frame_buf_done(&out);
}

static void test_items_and_names(void) {
        Request req;
        RequestItem it = {};
        FrameBuf out;
        char shown[KEY_NAME_MAX + 1], longname[200];

        frame_buf_init(&out);
        request_init(&req, NULL, NULL, 0, &out);
        (void) request_error(&req, -KEKERR_PERMISSION_DENIED, "uid 7 has no wrap grant on key 'a'");
        request_item_refuse(&req, &it, -KEKERR_PERMISSION_DENIED);
        ok(it.error == -KEKERR_PERMISSION_DENIED && it.message && strcmp(it.message, "uid 7 has no wrap grant on key 'a'") == 0,
           "a refused item keeps its error and its own text");
        ok(req.message[0] == 0 && req.error == 0 && !req.answered, "and the request's text is free for the next item");
        request_item_refuse(&req, &it, -KEKERR_BLOB_INVALID);
        ok(it.error == -KEKERR_BLOB_INVALID && !it.message, "an item refused without text gets the default later");
        request_done(&req);
        frame_buf_done(&out);

        request_show_key(shown, "ok-key_1.x");
        ok(strcmp(shown, "ok-key_1.x") == 0, "a key name is shown as it is");
        request_show_key(shown, "bad\n'name\x1b");
        ok(strcmp(shown, "bad??name?") == 0, "anything outside the key alphabet becomes '?'");
        memset(longname, 'a', sizeof(longname) - 1);
        longname[sizeof(longname) - 1] = 0;
        request_show_key(shown, longname);
        is_int((int) strlen(shown), (int) KEY_NAME_MAX, "a long name is cut at KEY_NAME_MAX");
        request_show_key(shown, NULL);
        ok(shown[0] == 0, "no name: empty");
}

int main(void) {
        if (!ok(secret_heap_init(1 << 20) >= 0, "secure heap initialised"))
                return tap_done();
        test_init();
        test_memory();
        test_oom_sticky();
        test_errors();
        test_too_large();
        test_items_and_names();
        return tap_done();
}
