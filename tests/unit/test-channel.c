/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Unit tests of libkek's request channel (client/channel.c) against a fake
 * kekd in a thread on a Unix socket: it answers a Wrap or BatchWrap by
 * echoing each item's plaintext as its blob, so every caller can check it
 * got its own answer. What is checked:
 *  - 16 threads on one channel, the first frame held by the fake kekd until
 *    all 16 requests are made: the 15 others go out as batches, every caller
 *    gets its own answer, no caller is woken for nothing (to find its
 *    answer not there and sleep again), and the wakeups stay within one per
 *    caller plus one per frame (a reader's handoff). Waking every waiting
 *    caller per delivered frame made 18-29 wakeups per round here, up to 14
 *    of them for nothing;
 *  - while the first frame is held, the others go out in frames as large as
 *    what is in flight (1, 2, 4, 8): kekd finds the next frame waiting when
 *    it answers one, instead of idling for a round trip to the client. The
 *    old policy (send only when nothing is in flight) sent 1 and 15;
 *  - the same once more on the same channel: the reading role was handed
 *    on, nothing was left waiting, and the bound holds again;
 *  - a stall: the fake kekd answers nothing while 16 callers with 100 ms
 *    deadlines make 10 calls each (all time out). What is sent meanwhile
 *    stays within twice the callers: a caller that timed out does not make
 *    room for another frame, since kekd still owes its answer. Counting the
 *    callers still waiting instead sent about every request (160) and kept
 *    dozens of frames owed; the channel serves again after the stall.
 * No elapsed time is asserted; every wait is for a condition, bounded.
 * Prints TAP.
 */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "client/channel.h"
#include "client/transport.h"
#include "proto/frame.h"
#include "tests/lib/tap.h"

#define CALLERS 16

static Channel *ch;
static char dir[32], sock_path[108];
static int listen_fd = -1;

/* The fake kekd's state, shared with the test's main thread: accessed atomically (GET/SET). */
static unsigned frames_answered, hold_frame, hold_until;
/* Items of each frame the fake kekd read, in order (the first MAX_FRAMES). */
#define MAX_FRAMES 64
static size_t frame_items[MAX_FRAMES];
/* Items of every frame the fake kekd read. */
static unsigned items_read;
#define GET(v) __atomic_load_n(&(v), __ATOMIC_SEQ_CST)
#define SET(v, x) __atomic_store_n(&(v), (x), __ATOMIC_SEQ_CST)
static bool server_failed;

/* The answer to one Wrap: its plaintext back as the blob. */
static void echo_wrap(const Kek__WrapRequest *w, Kek__WrapResponse *out) {
        kek__wrap_response__init(out);
        out->blob = w->plaintext;
        out->version = 1;
}

static int answer(int fd, const Kek__Request *req) {
        Kek__Response resp = KEK__RESPONSE__INIT;
        Kek__WrapResponse one, items_wrap[64];
        Kek__BatchItemResult items[64], *item_ptrs[64];
        Kek__BatchResponse batch = KEK__BATCH_RESPONSE__INIT;
        FrameBuf b;
        int r = 0;

        resp.id = req->id;
        if (req->body_case == KEK__REQUEST__BODY_WRAP) {
                echo_wrap(req->wrap, &one);
                resp.body_case = KEK__RESPONSE__BODY_WRAP;
                resp.wrap = &one;
        } else if (req->body_case == KEK__REQUEST__BODY_BATCH_WRAP && req->batch_wrap->n_items <= 64) {
                for (size_t i = 0; i < req->batch_wrap->n_items; i++) {
                        kek__batch_item_result__init(&items[i]);
                        echo_wrap(req->batch_wrap->items[i], &items_wrap[i]);
                        items[i].wrap = &items_wrap[i];
                        item_ptrs[i] = &items[i];
                }
                batch.n_items = req->batch_wrap->n_items;
                batch.items = item_ptrs;
                resp.body_case = KEK__RESPONSE__BODY_BATCH;
                resp.batch = &batch;
        } else
                return -EBADMSG;
        frame_buf_init(&b);
        if (frame_append_message(&b, &resp.base, FRAME_MAX_LIMIT) < 0 ||
            write(fd, frame_buf_head(&b), frame_buf_size(&b)) != (ssize_t) frame_buf_size(&b))
                r = -EIO;
        frame_buf_done(&b);
        return r;
}

/*
 * One connection: reads request frames and answers each; frame number
 * hold_frame (from 0) is held until the channel counts hold_until requests
 * (bounded: 20 s).
 * Ends at EOF.
 */
static void *server_main(void *userdata) {
        FrameBuf in;
        int fd = accept(listen_fd, NULL, NULL);

        (void) userdata;
        frame_buf_init(&in);
        while (fd >= 0) {
                const uint8_t *payload;
                size_t len;
                uint8_t *tail;
                ssize_t n;
                int r = frame_parse(frame_buf_head(&in), frame_buf_size(&in), FRAME_MAX_LIMIT, &payload, &len);

                if (r < 0) {
                        server_failed = true;
                        break;
                }
                if (r == 1) {
                        Kek__Request *req = kek__request__unpack(NULL, len, payload);

                        frame_buf_consume(&in, FRAME_HEADER_SIZE + len);
                        if (!req) {
                                server_failed = true;
                                break;
                        }
                        if (GET(frames_answered) < MAX_FRAMES)
                                frame_items[GET(frames_answered)] =
                                        req->body_case == KEK__REQUEST__BODY_BATCH_WRAP ? req->batch_wrap->n_items : 1;
                        __atomic_add_fetch(&items_read,
                                           req->body_case == KEK__REQUEST__BODY_BATCH_WRAP ? req->batch_wrap->n_items : 1,
                                           __ATOMIC_SEQ_CST);
                        if (GET(frames_answered) == GET(hold_frame))
                                for (unsigned i = 0; i < 20000 && channel_requests(ch) < GET(hold_until); i++)
                                        usleep(1000);
                        r = answer(fd, req);
                        kek__request__free_unpacked(req, NULL);
                        if (r < 0) {
                                server_failed = true;
                                break;
                        }
                        __atomic_add_fetch(&frames_answered, 1, __ATOMIC_SEQ_CST);
                        continue;
                }
                if (frame_buf_reserve(&in, 4096, &tail) < 0)
                        break;
                n = read(fd, tail, 4096);
                if (n <= 0)
                        break;
                frame_buf_commit(&in, (size_t) n);
        }
        frame_buf_done(&in);
        if (fd >= 0)
                close(fd);
        return NULL;
}

typedef struct Caller {
        unsigned index;
        int r;
        bool own_answer;
        unsigned calls;              /* stall: calls to make */
        unsigned timeouts, others;   /* stall: -ETIMEDOUT, and anything else but an answer */
        size_t max_items;            /* stall: the most items in flight seen after a call */
} Caller;

static void *caller_main(void *userdata) {
        Caller *c = userdata;
        Kek__Request req = KEK__REQUEST__INIT;
        Kek__WrapRequest w = KEK__WRAP_REQUEST__INIT;
        uint8_t pt[32];
        Reply reply;

        memset(pt, 0, sizeof(pt));
        snprintf((char *) pt, sizeof(pt), "caller %u", c->index);
        w.key = (char *) "k";
        w.plaintext = (ProtobufCBinaryData) { sizeof(pt), pt };
        req.body_case = KEK__REQUEST__BODY_WRAP;
        req.wrap = &w;
        c->r = channel_call(ch, &req, KEK__RESPONSE__BODY_WRAP, &reply);
        if (c->r >= 0) {
                const Kek__WrapResponse *got = reply.body;

                c->own_answer = got->blob.len == sizeof(pt) && memcmp(got->blob.data, pt, sizeof(pt)) == 0;
                reply_done(&reply);
        }
        return NULL;
}

/* A stall's caller: c->calls wraps, each of which should time out; counts the outcomes. */
static void *stall_main(void *userdata) {
        Caller *c = userdata;

        for (unsigned i = 0; i < c->calls; i++) {
                Kek__Request req = KEK__REQUEST__INIT;
                Kek__WrapRequest w = KEK__WRAP_REQUEST__INIT;
                uint8_t pt[32] = { 's' };
                size_t frames, items;
                Reply reply;
                int r;

                w.key = (char *) "k";
                w.plaintext = (ProtobufCBinaryData) { sizeof(pt), pt };
                req.body_case = KEK__REQUEST__BODY_WRAP;
                req.wrap = &w;
                r = channel_call(ch, &req, KEK__RESPONSE__BODY_WRAP, &reply);
                if (r >= 0)
                        reply_done(&reply);
                c->timeouts += r == -ETIMEDOUT;
                c->others += r < 0 && r != -ETIMEDOUT;
                channel_in_flight(ch, &frames, &items);
                c->max_items = MAX(c->max_items, items);
        }
        return NULL;
}

/* CALLERS threads on ch; true when all got their own answer. */
static bool run_callers(void) {
        pthread_t th[CALLERS];
        Caller c[CALLERS];
        bool all = true;

        for (unsigned i = 0; i < CALLERS; i++) {
                c[i] = (Caller) { .index = i };
                pthread_create(&th[i], NULL, caller_main, &c[i]);
        }
        for (unsigned i = 0; i < CALLERS; i++) {
                pthread_join(th[i], NULL);
                if (c[i].r < 0 || !c[i].own_answer) {
                        diag("caller %u: %d (%s)", i, c[i].r, c[i].r < 0 ? strerror(-c[i].r) : "another answer");
                        all = false;
                }
        }
        return all;
}

#define STALL_CALLS 10

/* The stall (see the top): a new channel with 100 ms deadlines and its own connection to the fake kekd. */
static void test_stall(void) {
        pthread_t server, th[CALLERS];
        Caller c[CALLERS];
        unsigned timeouts = 0, others = 0, read_before, served = 0, tries = 0;
        size_t max_items = 0;
        bool made;

        made = channel_new(sock_path, 100 * 1000ULL, true, &ch) >= 0;
        ok(made, "a coalescing channel with 100 ms deadlines");
        if (!made)
                return;
        read_before = GET(items_read);
        SET(hold_frame, GET(frames_answered));
        SET(hold_until, CALLERS * STALL_CALLS); /* released once every call was made (bounded: 20 s) */
        pthread_create(&server, NULL, server_main, NULL);
        for (unsigned i = 0; i < CALLERS; i++) {
                c[i] = (Caller) { .index = i, .calls = STALL_CALLS };
                pthread_create(&th[i], NULL, stall_main, &c[i]);
        }
        for (unsigned i = 0; i < CALLERS; i++) {
                pthread_join(th[i], NULL);
                timeouts += c[i].timeouts;
                others += c[i].others;
                max_items = MAX(max_items, c[i].max_items);
        }
        is_int(others, 0, "the stall: %u calls, %u timed out, none failed otherwise", CALLERS * STALL_CALLS, timeouts);
        ok(max_items <= 2 * CALLERS, "... at most %u items were in flight at once (twice the callers): %zu",
           2 * CALLERS, max_items);
        /* A call answered means the fake kekd has read every frame sent before it (it answers in order). */
        for (; tries < 50 && !served; tries++) {
                Caller last = { .index = CALLERS };

                caller_main(&last);
                served = last.r >= 0 && last.own_answer;
        }
        ok(served, "after the stall the channel serves again (%u tries)", tries);
        /* At most 2 x CALLERS items during the stall, then each caller's last call, then the tries. */
        ok(GET(items_read) - read_before <= 3 * CALLERS + tries,
           "... and kekd was sent %u items for %u calls: frames owed did not grow with the stall",
           GET(items_read) - read_before, CALLERS * STALL_CALLS + tries);
        channel_free(ch); /* the fake kekd sees EOF */
        pthread_join(server, NULL);
        ch = NULL;
}

int main(void) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        pthread_t server;
        uint64_t woken, futile, woken2, futile2;
        unsigned frames;

        snprintf(dir, sizeof(dir), "/tmp/test-channel.XXXXXX");
        if (!mkdtemp(dir)) {
                tap_skip_all("no temporary directory");
                return 0;
        }
        snprintf(sock_path, sizeof(sock_path), "%s/kekd.sock", dir);
        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock_path);
        listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (listen_fd < 0 || bind(listen_fd, (struct sockaddr *) &sa, sizeof(sa)) < 0 || listen(listen_fd, 4) < 0) {
                tap_skip_all("no Unix socket");
                return 0;
        }
        /* A deadline far beyond the fake kekd's bounded hold: a lost reader shows as -ETIMEDOUT, not as a hang. */
        ok(channel_new(sock_path, 60 * 1000 * 1000ULL, true, &ch) >= 0, "a coalescing channel");
        SET(hold_frame, 0);
        SET(hold_until, CALLERS);
        pthread_create(&server, NULL, server_main, NULL);

        ok(run_callers(), "%u threads on one channel, the first frame held: each caller got its own answer", CALLERS);
        frames = GET(frames_answered);
        channel_wakeups(ch, &woken, &futile);
        ok(frames >= 2 && frames < CALLERS, "the fake kekd answered %u frames for %u requests (coalesced)", frames,
           CALLERS);
        /* Sizes in packing order are 1, 1, 2, 4, 8; frames packed by different callers may reach the socket in either order. */
        for (unsigned i = 1; i < 5; i++)
                for (unsigned j = i; j > 0 && frame_items[j - 1] > frame_items[j]; j--) {
                        size_t t = frame_items[j];

                        frame_items[j] = frame_items[j - 1];
                        frame_items[j - 1] = t;
                }
        ok(frames == 5 && frame_items[0] == 1 && frame_items[1] == 1 && frame_items[2] == 2 && frame_items[3] == 4 &&
                   frame_items[4] == 8,
           "with the first frame held, the others went out as large as what was in flight: %u frames of %zu, %zu, %zu, "
           "%zu, %zu",
           frames, frame_items[0], frame_items[1], frame_items[2], frame_items[3], frame_items[4]);
        is_int(futile, 0, "no caller was woken for nothing (%llu of %llu wakeups)", (unsigned long long) futile,
               (unsigned long long) woken);
        ok(woken <= CALLERS + frames, "callers were woken %llu times: at most once per caller and once per frame (%u)",
           (unsigned long long) woken, CALLERS + frames);

        SET(hold_until, 2 * CALLERS);
        SET(hold_frame, frames);
        ok(run_callers(), "again on the same channel: each caller got its own answer (the reading role was handed on)");
        channel_wakeups(ch, &woken2, &futile2);
        is_int(futile2 - futile, 0, "... no caller woken for nothing (%llu of %llu wakeups)",
               (unsigned long long) (futile2 - futile), (unsigned long long) (woken2 - woken));
        ok(woken2 - woken <= CALLERS + (GET(frames_answered) - frames), "... woken %llu times for %u frames",
           (unsigned long long) (woken2 - woken), GET(frames_answered) - frames);

        channel_free(ch); /* closes the connection: the fake kekd sees EOF */
        pthread_join(server, NULL);
        ok(!server_failed, "the fake kekd read every frame and answered it");
        test_stall();
        close(listen_fd);
        unlink(sock_path);
        rmdir(dir);
        return tap_done();
}
