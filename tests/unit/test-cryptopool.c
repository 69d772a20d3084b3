/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The HSM worker pool ([hsm] sessions): the fork-join runs every item exactly
 * once over 1, 2 and 4 sessions whatever the batch size, and batches through
 * dispatch with four sessions give the same answers as one session would:
 * every AEK round trips, failing items fail alone with their codes, and a
 * rewrap whose blob does not authenticate spends no wrap budget.
 */
#include "config.h"

#include <openssl/rand.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/kekerr.h"
#include "daemon/cryptopool.h"
#include "daemon/dispatch.h"
#include "daemon/pin.h"
#include "proto/kek.pb-c.h"
#include "tests/lib/tap.h"
#include "tests/lib/token.h"

#define N_ITEMS 300

static const Peer root_peer = { .uid = 0, .gid = 0, .pid = 42, .superuser = true };

static uint64_t fixed_now(void) {
        return 1700000000ULL * 1000000ULL;
}

typedef struct Item {
        unsigned runs;
        Hsm *ran_on;
        bool slow;
} Item;

static void count_fn(Hsm *h, void *userdata) {
        Item *it = userdata;

        __atomic_add_fetch(&it->runs, 1, __ATOMIC_RELAXED);
        it->ran_on = h;
        if (it->slow)
                usleep(200);
}

static void test_fork_join(Hsm *hsm) {
        static const size_t sizes[] = { 0, 1, 2, 3, 7, 64, 1000 };
        static const unsigned sessions[] = { 1, 2, 4 };

        for (size_t s = 0; s < ELEMENTSOF(sessions); s++) {
                CryptoPool *p = NULL;
                Item *items = calloc(1000, sizeof(*items));
                unsigned wrong = 0, runs = 0;

                if (!ok(crypto_pool_new(hsm, sessions[s], &p, NULL) == 0, "pool of %u sessions opened", sessions[s])) {
                        free(items);
                        continue;
                }
                is_int((int) crypto_pool_sessions(p), (int) sessions[s], "pool reports %u sessions", sessions[s]);
                for (unsigned round = 0; round < 50; round++)
                        for (size_t z = 0; z < ELEMENTSOF(sizes); z++) {
                                memset(items, 0, 1000 * sizeof(*items));
                                crypto_pool_run(p, count_fn, items, sizeof(*items), sizes[z]);
                                runs++;
                                for (size_t i = 0; i < 1000; i++)
                                        if (items[i].runs != (i < sizes[z] ? 1u : 0u))
                                                wrong++;
                        }
                is_int((int) wrong, 0, "%u runs over %u sessions: every item ran exactly once, none beyond n", runs,
                       sessions[s]);

                /* Slow items: the other sessions must take a share (each item waits 200 us). */
                memset(items, 0, 1000 * sizeof(*items));
                for (size_t i = 0; i < 200; i++)
                        items[i].slow = true;
                crypto_pool_run(p, count_fn, items, sizeof(*items), 200);
                {
                        Hsm *seen[8] = {};
                        unsigned n_seen = 0;

                        for (size_t i = 0; i < 200; i++) {
                                unsigned j;

                                for (j = 0; j < n_seen && seen[j] != items[i].ran_on; j++)
                                        ;
                                if (j == n_seen && n_seen < ELEMENTSOF(seen))
                                        seen[n_seen++] = items[i].ran_on;
                        }
                        if (sessions[s] == 1)
                                ok(n_seen == 1 && seen[0] == hsm, "one session: every item ran on the caller's session");
                        else
                                ok(n_seen >= 2 && n_seen <= sessions[s],
                                   "%u sessions: 200 slow items were spread over %u of them", sessions[s], n_seen);
                }
                p = crypto_pool_free(p);
                ok(!p, "pool freed (threads joined, sessions closed)");
                free(items);
        }
        {
                CryptoPool *p = NULL;

                is_int(crypto_pool_new(hsm, 0, &p, NULL), -EINVAL, "0 sessions refused");
                is_int(crypto_pool_new(hsm, CRYPTO_POOL_SESSIONS_MAX + 1, &p, NULL), -EINVAL, "more than %u sessions refused",
                       CRYPTO_POOL_SESSIONS_MAX);
        }
}

static Kek__Response *run(Dispatcher *d, Kek__Request *req) {
        size_t n = kek__request__get_packed_size(req);
        uint8_t *buf = malloc(n + 1);
        Kek__Response *resp = NULL;
        FrameBuf out;
        const uint8_t *p;
        size_t plen;

        kek__request__pack(req, buf);
        frame_buf_init(&out);
        (void) dispatch_frame(d, &root_peer, buf, n, &out, NULL);
        if (frame_parse(frame_buf_head(&out), frame_buf_size(&out), FRAME_MAX_LIMIT, &p, &plen) == 1)
                resp = kek__response__unpack(NULL, plen, p);
        frame_buf_done(&out);
        free(buf);
        return resp;
}

static int item_error(const Kek__BatchItemResult *it) {
        return it->error ? kekerr_from_wire(it->error->code) : 0;
}

static uint32_t current_version(Dispatcher *d, const char *key) {
        Kek__Request req = KEK__REQUEST__INIT;
        Kek__GetKeyVersionRequest g = KEK__GET_KEY_VERSION_REQUEST__INIT;
        Kek__Response *r;
        uint32_t v = 0;

        g.key = (char *) key;
        req.body_case = KEK__REQUEST__BODY_GET_KEY_VERSION;
        req.get_key_version = &g;
        r = run(d, &req);
        if (r && r->body_case == KEK__RESPONSE__BODY_GET_KEY_VERSION)
                v = r->get_key_version->current_version;
        if (r)
                kek__response__free_unpacked(r, NULL);
        return v;
}

static bool create(Dispatcher *d, const char *name, uint64_t max_wraps) {
        Kek__Request req = KEK__REQUEST__INIT;
        Kek__CreateKeyRequest c = KEK__CREATE_KEY_REQUEST__INIT;
        Kek__RotationPolicy pol = KEK__ROTATION_POLICY__INIT;
        Kek__Response *r;
        bool good;

        c.key = (char *) name;
        pol.max_wraps = max_wraps;
        c.policy = max_wraps ? &pol : NULL;
        req.body_case = KEK__REQUEST__BODY_CREATE_KEY;
        req.create_key = &c;
        r = run(d, &req);
        good = r && r->body_case == KEK__RESPONSE__BODY_KEY_INFO;
        if (r)
                kek__response__free_unpacked(r, NULL);
        return good;
}

static void test_batches(Dispatcher *d) {
        static uint8_t aeks[N_ITEMS][64];
        static size_t lens[N_ITEMS];
        static char ctxs[N_ITEMS][24];
        static ProtobufCBinaryData blobs[N_ITEMS];
        Kek__WrapRequest w[N_ITEMS], *wp[N_ITEMS];
        Kek__UnwrapRequest u[N_ITEMS], *up[N_ITEMS];
        Kek__RewrapRequest rw[N_ITEMS], *rwp[N_ITEMS];
        Kek__BatchWrapRequest bw = KEK__BATCH_WRAP_REQUEST__INIT;
        Kek__BatchUnwrapRequest bu = KEK__BATCH_UNWRAP_REQUEST__INIT;
        Kek__BatchRewrapRequest br = KEK__BATCH_REWRAP_REQUEST__INIT;
        Kek__Request req = KEK__REQUEST__INIT;
        Kek__Response *r;
        unsigned bad = 0, wrong_code = 0;
        uint32_t v0;

        ok(create(d, "pool1", 0), "key pool1 created");
        ok(create(d, "budget", 32), "key budget created with a wrap budget of 32");

        for (size_t i = 0; i < N_ITEMS; i++) {
                lens[i] = 1 + i % 64;
                RAND_bytes(aeks[i], (int) lens[i]);
                snprintf(ctxs[i], sizeof(ctxs[i]), "acct-%zu", i);
                kek__wrap_request__init(&w[i]);
                /* item 7 names a key that does not exist: it fails alone */
                w[i].key = i == 7 ? (char *) "nosuchkey" : (char *) "pool1";
                w[i].plaintext = (ProtobufCBinaryData) { lens[i], aeks[i] };
                w[i].context = (ProtobufCBinaryData) { strlen(ctxs[i]), (uint8_t *) ctxs[i] };
                wp[i] = &w[i];
        }
        bw.n_items = N_ITEMS;
        bw.items = wp;
        req.body_case = KEK__REQUEST__BODY_BATCH_WRAP;
        req.batch_wrap = &bw;
        r = run(d, &req);
        if (!ok(r && r->body_case == KEK__RESPONSE__BODY_BATCH && r->batch->n_items == N_ITEMS,
                "batch wrap of %d items answers %d results", N_ITEMS, N_ITEMS))
                goto out;
        for (size_t i = 0; i < N_ITEMS; i++) {
                if (i == 7) {
                        if (item_error(r->batch->items[i]) != -KEKERR_UNKNOWN_KEY)
                                wrong_code++;
                        continue;
                }
                if (!r->batch->items[i]->wrap || r->batch->items[i]->wrap->version != 1) {
                        bad++;
                        continue;
                }
                blobs[i].len = r->batch->items[i]->wrap->blob.len;
                blobs[i].data = malloc(blobs[i].len);
                memcpy(blobs[i].data, r->batch->items[i]->wrap->blob.data, blobs[i].len);
        }
        kek__response__free_unpacked(r, NULL);
        is_int((int) bad, 0, "4 sessions: %d items wrapped under version 1", N_ITEMS - 1);
        is_int((int) wrong_code, 0, "the item naming an unknown key failed alone with UNKNOWN_KEY");

        /* unwrap all; item 11 has the wrong context, item 13 a flipped bit */
        if (blobs[13].data)
                blobs[13].data[blobs[13].len - 1] ^= 1;
        for (size_t i = 0; i < N_ITEMS; i++) {
                kek__unwrap_request__init(&u[i]);
                u[i].blob = blobs[i];
                u[i].context = (ProtobufCBinaryData) { strlen(ctxs[i]), (uint8_t *) (i == 11 ? "other" : ctxs[i]) };
                if (i == 11)
                        u[i].context.len = 5;
                up[i] = &u[i];
        }
        bu.n_items = N_ITEMS;
        bu.items = up;
        req.body_case = KEK__REQUEST__BODY_BATCH_UNWRAP;
        req.batch_unwrap = &bu;
        r = run(d, &req);
        bad = wrong_code = 0;
        if (!ok(r && r->body_case == KEK__RESPONSE__BODY_BATCH && r->batch->n_items == N_ITEMS,
                "batch unwrap of %d items answers %d results", N_ITEMS, N_ITEMS))
                goto out;
        for (size_t i = 0; i < N_ITEMS; i++) {
                const Kek__BatchItemResult *it = r->batch->items[i];

                if (i == 7 || i == 11 || i == 13) {
                        if (item_error(it) != -KEKERR_BLOB_INVALID)
                                wrong_code++;
                        continue;
                }
                if (!it->unwrap || it->unwrap->plaintext.len != lens[i] ||
                    memcmp(it->unwrap->plaintext.data, aeks[i], lens[i]) != 0 || it->unwrap->version != 1)
                        bad++;
        }
        kek__response__free_unpacked(r, NULL);
        is_int((int) bad, 0, "4 sessions: %d AEKs unwrapped to the bytes wrapped", N_ITEMS - 3);
        is_int((int) wrong_code, 0, "empty blob, wrong context and flipped bit: BLOB_INVALID each, at their positions");

        /* rewrap to the current version after a rotation */
        {
                Kek__Request rot = KEK__REQUEST__INIT;
                Kek__RotateKeyRequest rk = KEK__ROTATE_KEY_REQUEST__INIT;

                rk.key = (char *) "pool1";
                rot.body_case = KEK__REQUEST__BODY_ROTATE_KEY;
                rot.rotate_key = &rk;
                r = run(d, &rot);
                if (r)
                        kek__response__free_unpacked(r, NULL);
                is_int((int) current_version(d, "pool1"), 2, "pool1 rotated to version 2");
        }
        for (size_t i = 0; i < N_ITEMS; i++) {
                kek__rewrap_request__init(&rw[i]);
                rw[i].blob = blobs[i];
                rw[i].context = (ProtobufCBinaryData) { strlen(ctxs[i]), (uint8_t *) ctxs[i] };
                rwp[i] = &rw[i];
        }
        br.n_items = N_ITEMS;
        br.items = rwp;
        req.body_case = KEK__REQUEST__BODY_BATCH_REWRAP;
        req.batch_rewrap = &br;
        r = run(d, &req);
        bad = wrong_code = 0;
        if (!ok(r && r->body_case == KEK__RESPONSE__BODY_BATCH && r->batch->n_items == N_ITEMS,
                "batch rewrap of %d items answers %d results", N_ITEMS, N_ITEMS))
                goto out;
        for (size_t i = 0; i < N_ITEMS; i++) {
                const Kek__BatchItemResult *it = r->batch->items[i];

                if (i == 7 || i == 13) {
                        if (item_error(it) != -KEKERR_BLOB_INVALID)
                                wrong_code++;
                        continue;
                }
                if (!it->rewrap || it->rewrap->version != 2 || it->rewrap->old_version != 1) {
                        bad++;
                        continue;
                }
                free(blobs[i].data);
                blobs[i].len = it->rewrap->blob.len;
                blobs[i].data = malloc(blobs[i].len);
                memcpy(blobs[i].data, it->rewrap->blob.data, blobs[i].len);
        }
        kek__response__free_unpacked(r, NULL);
        is_int((int) bad, 0, "4 sessions: %d blobs rewrapped from version 1 to 2", N_ITEMS - 2);
        is_int((int) wrong_code, 0, "rewrap: the empty and the tampered blob fail alone with BLOB_INVALID");

        for (size_t i = 0; i < N_ITEMS; i++)
                u[i].blob = blobs[i];
        req.body_case = KEK__REQUEST__BODY_BATCH_UNWRAP;
        req.batch_unwrap = &bu;
        r = run(d, &req);
        bad = 0;
        for (size_t i = 0; r && r->body_case == KEK__RESPONSE__BODY_BATCH && i < N_ITEMS; i++) {
                const Kek__BatchItemResult *it = r->batch->items[i];

                if (i == 7 || i == 11 || i == 13)
                        continue;
                if (!it->unwrap || it->unwrap->version != 2 || it->unwrap->plaintext.len != lens[i] ||
                    memcmp(it->unwrap->plaintext.data, aeks[i], lens[i]) != 0)
                        bad++;
        }
        ok(r && r->body_case == KEK__RESPONSE__BODY_BATCH && bad == 0,
           "the rewrapped blobs unwrap under version 2 to the original AEKs (%u wrong)", bad);
        if (r)
                kek__response__free_unpacked(r, NULL);

        /*
         * Wrap budget: a rewrap whose blob does not authenticate hands its lease unit
         * back. 100 tampered rewraps under a budget of 32 must not rotate the key.
         */
        {
                uint8_t aek[32] = { 1 };
                Kek__WrapRequest one = KEK__WRAP_REQUEST__INIT, *onep = &one;
                Kek__BatchWrapRequest b1 = KEK__BATCH_WRAP_REQUEST__INIT;
                ProtobufCBinaryData blob = {};

                one.key = (char *) "budget";
                one.plaintext = (ProtobufCBinaryData) { sizeof(aek), aek };
                b1.n_items = 1;
                b1.items = &onep;
                req.body_case = KEK__REQUEST__BODY_BATCH_WRAP;
                req.batch_wrap = &b1;
                r = run(d, &req);
                if (r && r->body_case == KEK__RESPONSE__BODY_BATCH && r->batch->items[0]->wrap) {
                        blob.len = r->batch->items[0]->wrap->blob.len;
                        blob.data = malloc(blob.len);
                        memcpy(blob.data, r->batch->items[0]->wrap->blob.data, blob.len);
                        blob.data[blob.len - 1] ^= 0x80;
                }
                if (r)
                        kek__response__free_unpacked(r, NULL);
                v0 = current_version(d, "budget");
                for (size_t i = 0; i < 100; i++) {
                        kek__rewrap_request__init(&rw[i]);
                        rw[i].blob = blob;
                        rwp[i] = &rw[i];
                }
                br.n_items = 100;
                req.body_case = KEK__REQUEST__BODY_BATCH_REWRAP;
                req.batch_rewrap = &br;
                r = run(d, &req);
                wrong_code = 0;
                for (size_t i = 0; r && r->body_case == KEK__RESPONSE__BODY_BATCH && i < r->batch->n_items; i++)
                        if (item_error(r->batch->items[i]) != -KEKERR_BLOB_INVALID)
                                wrong_code++;
                ok(r && r->body_case == KEK__RESPONSE__BODY_BATCH && r->batch->n_items == 100 && wrong_code == 0,
                   "100 rewraps of a tampered blob: BLOB_INVALID each");
                if (r)
                        kek__response__free_unpacked(r, NULL);
                diag("budget: version %u before the tampered rewraps, %u after", v0, current_version(d, "budget"));
                ok(v0 == 1 && current_version(d, "budget") == v0,
                   "key 'budget' (32 wraps) is still at version %u: failed rewraps spent no wrap budget", v0);
                free(blob.data);

                /* ...while 100 real wraps do spend it: the key rotates by budget. */
                for (size_t i = 0; i < 100; i++) {
                        kek__wrap_request__init(&w[i]);
                        w[i].key = (char *) "budget";
                        w[i].plaintext = (ProtobufCBinaryData) { sizeof(aek), aek };
                        wp[i] = &w[i];
                }
                bw.n_items = 100;
                req.body_case = KEK__REQUEST__BODY_BATCH_WRAP;
                req.batch_wrap = &bw;
                r = run(d, &req);
                bad = 0;
                for (size_t i = 0; r && r->body_case == KEK__RESPONSE__BODY_BATCH && i < r->batch->n_items; i++)
                        if (!r->batch->items[i]->wrap)
                                bad++;
                ok(r && r->body_case == KEK__RESPONSE__BODY_BATCH && bad == 0, "100 wraps under a budget of 32 all succeed");
                if (r)
                        kek__response__free_unpacked(r, NULL);
                ok(current_version(d, "budget") >= 4, "...and rotated the key by budget (now version %u)",
                   current_version(d, "budget"));
        }
out:
        for (size_t i = 0; i < N_ITEMS; i++)
                free(blobs[i].data);
}

static uint8_t *pack(Kek__Request *req, size_t *ret_len) {
        size_t n = kek__request__get_packed_size(req);
        uint8_t *buf = malloc(n + 1);

        kek__request__pack(req, buf);
        *ret_len = n;
        return buf;
}

static Kek__Response *answer_of(FrameBuf *out) {
        const uint8_t *p;
        size_t plen;

        if (frame_parse(frame_buf_head(out), frame_buf_size(out), FRAME_MAX_LIMIT, &p, &plen) != 1)
                return NULL;
        return kek__response__unpack(NULL, plen, p);
}

/*
 * One round of the server's grouping: several connections' single requests in
 * one dispatch_requests() call, of every kind at once. A rewrap needs a second
 * HSM run; the wrap and the unwraps of the same group must not run again then
 * (each repeat unwrap would leak its plaintext in the secure heap, which holds
 * 1 MiB here: 1500 rounds with a 1 KiB AEK would exhaust it).
 */
static void test_mixed_groups(Dispatcher *d) {
        static uint8_t big[1024], small[32];
        Kek__Request req = KEK__REQUEST__INIT;
        Kek__WrapRequest w = KEK__WRAP_REQUEST__INIT;
        Kek__Response *r;
        ProtobufCBinaryData big_blob = {}, small_blob = {};
        unsigned bad = 0, rounds = 0;
        uint32_t small_version = 0;

        RAND_bytes(big, sizeof(big));
        RAND_bytes(small, sizeof(small));
        req.body_case = KEK__REQUEST__BODY_WRAP;
        req.wrap = &w;
        w.key = (char *) "pool1";
        w.plaintext = (ProtobufCBinaryData) { sizeof(big), big };
        r = run(d, &req);
        if (r && r->body_case == KEK__RESPONSE__BODY_WRAP) {
                big_blob.len = r->wrap->blob.len;
                big_blob.data = malloc(big_blob.len);
                memcpy(big_blob.data, r->wrap->blob.data, big_blob.len);
        }
        if (r)
                kek__response__free_unpacked(r, NULL);
        w.plaintext = (ProtobufCBinaryData) { sizeof(small), small };
        r = run(d, &req);
        if (r && r->body_case == KEK__RESPONSE__BODY_WRAP) {
                small_version = r->wrap->version;
                small_blob.len = r->wrap->blob.len;
                small_blob.data = malloc(small_blob.len);
                memcpy(small_blob.data, r->wrap->blob.data, small_blob.len);
        }
        if (r)
                kek__response__free_unpacked(r, NULL);
        if (!ok(big_blob.data && small_blob.data, "two blobs for the mixed groups"))
                goto out;

        for (; rounds < 1500 && bad == 0; rounds++) {
                Kek__Request q[5];
                Kek__RewrapRequest rw = KEK__REWRAP_REQUEST__INIT;
                Kek__UnwrapRequest u1 = KEK__UNWRAP_REQUEST__INIT, u2 = KEK__UNWRAP_REQUEST__INIT;
                Kek__WrapRequest wr = KEK__WRAP_REQUEST__INIT;
                Kek__GetKeyVersionRequest g = KEK__GET_KEY_VERSION_REQUEST__INIT;
                Request jobs[5];
                size_t lens[5];
                FrameBuf outs[5];
                uint8_t *bufs[5];

                for (int i = 0; i < 5; i++) {
                        kek__request__init(&q[i]);
                        q[i].id = 100 + (uint64_t) i;
                }
                rw.blob = small_blob;
                q[0].body_case = KEK__REQUEST__BODY_REWRAP, q[0].rewrap = &rw;
                u1.blob = big_blob;
                q[1].body_case = KEK__REQUEST__BODY_UNWRAP, q[1].unwrap = &u1;
                wr.key = (char *) "pool1";
                wr.plaintext = (ProtobufCBinaryData) { sizeof(small), small };
                q[2].body_case = KEK__REQUEST__BODY_WRAP, q[2].wrap = &wr;
                g.key = (char *) "pool1";
                q[3].body_case = KEK__REQUEST__BODY_GET_KEY_VERSION, q[3].get_key_version = &g;
                u2.blob = small_blob;
                q[4].body_case = KEK__REQUEST__BODY_UNWRAP, q[4].unwrap = &u2;
                for (int i = 0; i < 5; i++) {
                        frame_buf_init(&outs[i]);
                        bufs[i] = pack(&q[i], &lens[i]);
                        request_init(&jobs[i], &root_peer, bufs[i], lens[i], &outs[i]);
                }
                dispatch_requests(d, jobs, 5);
                for (int i = 0; i < 5; i++) {
                        Kek__Response *a = answer_of(&outs[i]);
                        bool good = a && a->id == 100 + (uint64_t) i && jobs[i].result == 0;

                        if (good && i == 0)
                                good = a->body_case == KEK__RESPONSE__BODY_REWRAP && a->rewrap->old_version == small_version;
                        if (good && i == 1)
                                good = a->body_case == KEK__RESPONSE__BODY_UNWRAP &&
                                       a->unwrap->plaintext.len == sizeof(big) &&
                                       memcmp(a->unwrap->plaintext.data, big, sizeof(big)) == 0;
                        if (good && i == 2)
                                good = a->body_case == KEK__RESPONSE__BODY_WRAP;
                        if (good && i == 3)
                                good = a->body_case == KEK__RESPONSE__BODY_GET_KEY_VERSION;
                        if (good && i == 4)
                                good = a->body_case == KEK__RESPONSE__BODY_UNWRAP &&
                                       a->unwrap->plaintext.len == sizeof(small) &&
                                       memcmp(a->unwrap->plaintext.data, small, sizeof(small)) == 0;
                        if (!good) {
                                diag("round %u, job %d: %s", rounds, i,
                                     a && a->body_case == KEK__RESPONSE__BODY_ERROR ? a->error->message : "wrong answer");
                                bad++;
                        }
                        if (a)
                                kek__response__free_unpacked(a, NULL);
                        frame_buf_done(&outs[i]);
                        free(bufs[i]);
                }
        }
        ok(bad == 0 && rounds == 1500,
           "1500 groups of rewrap + unwrap (1 KiB) + wrap + get-key-version + unwrap over 4 sessions: every "
           "answer right, in its own reply, with its id (the secure heap did not run out)");
out:
        free(big_blob.data);
        free(small_blob.data);
}

int main(void) {
        TestToken token;
        Secret *pin = NULL;
        Hsm *hsm = NULL;
        Keystore *ks = NULL;
        CryptoPool *pool = NULL;
        const char *why = NULL;
        Dispatcher d;

        if (token_setup(&token, "cryptopool") < 0) {
                ok(false, "set up a SoftHSM2 token");
                return tap_done();
        }
        ok(secret_heap_init(1 << 20) >= 0, "secure heap initialised");
        ok(pin_read(token.pin_file, &pin, &why) == 0, "PIN read");
        if (!ok(hsm_open(token.module, token.uri, pin, &hsm, &why) == 0, "HSM opened"))
                goto finish;
        test_fork_join(hsm);

        if (!ok(keystore_new(hsm, "test-host:1", &ks) == 0, "keystore loaded"))
                goto finish;
        keystore_set_allow_unrecoverable(ks, true);
        if (!ok(crypto_pool_new(hsm, 4, &pool, NULL) == 0, "pool of 4 sessions for dispatch"))
                goto finish;
        d = (Dispatcher) { .keystore = ks, .pool = pool, .max_frame = FRAME_MAX_LIMIT, .now_usec = fixed_now };
        test_batches(&d);
        test_mixed_groups(&d);
        {
                HsmStats hs;

                hsm_stats(hsm, &hs);
                crypto_pool_stats(pool, &hs);
                ok(hs.session_open && hs.reopens == 0, "all 4 sessions open, none reopened");
        }
finish:
        crypto_pool_free(pool);
        keystore_free(ks);
        hsm_free(hsm);
        secret_free(pin);
        token_done(&token);
        return tap_done();
}
