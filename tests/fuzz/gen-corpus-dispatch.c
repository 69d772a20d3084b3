/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Writes the seed corpus of fuzz-dispatch: framed Requests of every type,
 * with blobs wrapped under the keys of the harness's snapshot (so unwraps and
 * rewraps of them succeed), batches, lifecycle sequences, Watch, refusals and
 * malformed input. It is the harness itself (included below) with a main():
 * each seed is replayed through LLVMFuzzerTestOneInput() and its count of
 * successful and refused requests printed. Built and run by
 * "tests/fuzz/build.sh SRCDIR BUILDDIR corpus"; the seeds are committed.
 *   gen-corpus-dispatch DIR
 */
#include "fuzz-dispatch.c"

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

typedef struct Seed {
        uint8_t data[FUZZ_MAX_FRAME];
        size_t len;
        uint64_t id;
} Seed;

typedef struct Blob {
        uint8_t data[BLOB_MAX_SIZE];
        size_t len;
} Blob;

static const char *out_dir;
static unsigned n_seeds;

/* Header of a seed: who sends each frame (P() below), how the clock moves (see fuzz-dispatch.c). */
static void seed_begin(Seed *s, uint8_t who, uint8_t clock) {
        *s = (Seed) { .len = 2, .id = 1 };
        s->data[0] = who;
        s->data[1] = clock;
}

static void seed_raw(Seed *s, const void *payload, size_t len) {
        if (s->len + FRAME_HEADER_SIZE + len > sizeof(s->data)) {
                fprintf(stderr, "seed too large\n");  /* inputs are cut at -max_len=65536 */
                exit(EXIT_FAILURE);
        }
        s->data[s->len++] = (uint8_t) (len >> 24);
        s->data[s->len++] = (uint8_t) (len >> 16);
        s->data[s->len++] = (uint8_t) (len >> 8);
        s->data[s->len++] = (uint8_t) len;
        memcpy(s->data + s->len, payload, len);
        s->len += len;
}

static void seed_req(Seed *s, Kek__Request *req) {
        uint8_t buf[FUZZ_MAX_FRAME];
        size_t n;

        req->id = s->id++;
        n = kek__request__get_packed_size(req);
        if (n > sizeof(buf)) {
                fprintf(stderr, "request too large\n");
                exit(EXIT_FAILURE);
        }
        kek__request__pack(req, buf);
        seed_raw(s, buf, n);
}

static void seed_write(const Seed *s, const char *name) {
        char path[4096];
        int fd;

        snprintf(path, sizeof(path), "%s/%s", out_dir, name);
        fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd < 0 || write(fd, s->data, s->len) != (ssize_t) s->len || close(fd) < 0) {
                fprintf(stderr, "%s: %s\n", path, strerror(errno));
                exit(EXIT_FAILURE);
        }
        LLVMFuzzerTestOneInput(s->data, s->len);
        printf("%-24s %5zu bytes  %2u ok  %2u refused\n", name, s->len, fz.n_ok, fz.n_errors);
        n_seeds++;
}

/* --- requests ----------------------------------------------------------------- */

static ProtobufCBinaryData bin(const char *s) {
        return (ProtobufCBinaryData) { s ? strlen(s) : 0, (uint8_t *) s };
}

static ProtobufCBinaryData blob_bin(const Blob *b) {
        return (ProtobufCBinaryData) { b->len, (uint8_t *) b->data };
}

static void wrap(Seed *s, const char *key, uint32_t version, const char *pt, const char *ctx) {
        Kek__Request req = KEK__REQUEST__INIT;
        Kek__WrapRequest w = KEK__WRAP_REQUEST__INIT;

        w.key = (char *) key;
        w.version = version;
        w.plaintext = bin(pt);
        w.context = bin(ctx);
        req.body_case = KEK__REQUEST__BODY_WRAP;
        req.wrap = &w;
        seed_req(s, &req);
}

static void unwrap(Seed *s, const Blob *b, const char *ctx) {
        Kek__Request req = KEK__REQUEST__INIT;
        Kek__UnwrapRequest u = KEK__UNWRAP_REQUEST__INIT;

        u.blob = blob_bin(b);
        u.context = bin(ctx);
        req.body_case = KEK__REQUEST__BODY_UNWRAP;
        req.unwrap = &u;
        seed_req(s, &req);
}

static void rewrap(Seed *s, const Blob *b, const char *ctx) {
        Kek__Request req = KEK__REQUEST__INIT;
        Kek__RewrapRequest w = KEK__REWRAP_REQUEST__INIT;

        w.blob = blob_bin(b);
        w.context = bin(ctx);
        req.body_case = KEK__REQUEST__BODY_REWRAP;
        req.rewrap = &w;
        seed_req(s, &req);
}

/* Requests whose only field is a key name. */
static void named(Seed *s, Kek__Request__BodyCase type, const char *key) {
        Kek__Request req = KEK__REQUEST__INIT;
        Kek__GetKeyVersionRequest gkv = KEK__GET_KEY_VERSION_REQUEST__INIT;
        Kek__GetKeyRequest gk = KEK__GET_KEY_REQUEST__INIT;
        Kek__CreateKeyRequest c = KEK__CREATE_KEY_REQUEST__INIT;
        Kek__RotateKeyRequest rot = KEK__ROTATE_KEY_REQUEST__INIT;
        Kek__DeleteKeyRequest del = KEK__DELETE_KEY_REQUEST__INIT;
        Kek__RecoverKeyRequest rec = KEK__RECOVER_KEY_REQUEST__INIT;
        Kek__PurgeKeyRequest pur = KEK__PURGE_KEY_REQUEST__INIT;

        req.body_case = type;
        switch (type) {
        case KEK__REQUEST__BODY_GET_KEY_VERSION:
                gkv.key = (char *) key;
                req.get_key_version = &gkv;
                break;
        case KEK__REQUEST__BODY_GET_KEY:
                gk.key = (char *) key;
                req.get_key = &gk;
                break;
        case KEK__REQUEST__BODY_CREATE_KEY:
                c.key = (char *) key;
                req.create_key = &c;
                break;
        case KEK__REQUEST__BODY_ROTATE_KEY:
                rot.key = (char *) key;
                req.rotate_key = &rot;
                break;
        case KEK__REQUEST__BODY_DELETE_KEY:
                del.key = (char *) key;
                req.delete_key = &del;
                break;
        case KEK__REQUEST__BODY_RECOVER_KEY:
                rec.key = (char *) key;
                req.recover_key = &rec;
                break;
        case KEK__REQUEST__BODY_PURGE_KEY:
                pur.key = (char *) key;
                req.purge_key = &pur;
                break;
        default:
                abort();
        }
        seed_req(s, &req);
}

static void create_with_policy(Seed *s, const char *key, uint64_t rotate_after, uint64_t max_wraps) {
        Kek__Request req = KEK__REQUEST__INIT;
        Kek__CreateKeyRequest c = KEK__CREATE_KEY_REQUEST__INIT;
        Kek__RotationPolicy p = KEK__ROTATION_POLICY__INIT;

        p.rotate_after_seconds = rotate_after;
        p.max_wraps = max_wraps;
        c.key = (char *) key;
        c.policy = &p;
        req.body_case = KEK__REQUEST__BODY_CREATE_KEY;
        req.create_key = &c;
        seed_req(s, &req);
}

static void set_policy(Seed *s, const char *key, uint64_t rotate_after, uint64_t max_wraps) {
        Kek__Request req = KEK__REQUEST__INIT;
        Kek__SetRotationPolicyRequest sp = KEK__SET_ROTATION_POLICY_REQUEST__INIT;
        Kek__RotationPolicy p = KEK__ROTATION_POLICY__INIT;

        p.rotate_after_seconds = rotate_after;
        p.max_wraps = max_wraps;
        sp.key = (char *) key;
        sp.policy = &p;
        req.body_case = KEK__REQUEST__BODY_SET_ROTATION_POLICY;
        req.set_rotation_policy = &sp;
        seed_req(s, &req);
}

static void set_enabled(Seed *s, const char *key, uint32_t version, bool enabled) {
        Kek__Request req = KEK__REQUEST__INIT;
        Kek__SetEnabledRequest e = KEK__SET_ENABLED_REQUEST__INIT;

        e.key = (char *) key;
        e.version = version;
        e.enabled = enabled;
        req.body_case = KEK__REQUEST__BODY_SET_ENABLED;
        req.set_enabled = &e;
        seed_req(s, &req);
}

static void list_keys(Seed *s, bool include_deleted) {
        Kek__Request req = KEK__REQUEST__INIT;
        Kek__ListKeysRequest l = KEK__LIST_KEYS_REQUEST__INIT;

        l.include_deleted = include_deleted;
        req.body_case = KEK__REQUEST__BODY_LIST_KEYS;
        req.list_keys = &l;
        seed_req(s, &req);
}

static void get_vault(Seed *s) {
        Kek__Request req = KEK__REQUEST__INIT;
        Kek__GetVaultPolicyRequest g = KEK__GET_VAULT_POLICY_REQUEST__INIT;

        req.body_case = KEK__REQUEST__BODY_GET_VAULT_POLICY;
        req.get_vault_policy = &g;
        seed_req(s, &req);
}

static void set_vault(Seed *s, uint32_t retention_days, Kek__Switch purge_protection) {
        Kek__Request req = KEK__REQUEST__INIT;
        Kek__SetVaultPolicyRequest v = KEK__SET_VAULT_POLICY_REQUEST__INIT;

        v.retention_days = retention_days;
        v.purge_protection = purge_protection;
        req.body_case = KEK__REQUEST__BODY_SET_VAULT_POLICY;
        req.set_vault_policy = &v;
        seed_req(s, &req);
}

static void check(Seed *s) {
        Kek__Request req = KEK__REQUEST__INIT;
        Kek__CheckRequest c = KEK__CHECK_REQUEST__INIT;

        req.body_case = KEK__REQUEST__BODY_CHECK;
        req.check = &c;
        seed_req(s, &req);
}

static void status(Seed *s) {
        Kek__Request req = KEK__REQUEST__INIT;
        Kek__StatusRequest st = KEK__STATUS_REQUEST__INIT;

        req.body_case = KEK__REQUEST__BODY_STATUS;
        req.status = &st;
        seed_req(s, &req);
}

static void watch(Seed *s) {
        Kek__Request req = KEK__REQUEST__INIT;
        Kek__WatchRequest w = KEK__WATCH_REQUEST__INIT;

        req.body_case = KEK__REQUEST__BODY_WATCH;
        req.watch = &w;
        seed_req(s, &req);
}

/* Wraps pt in the snapshot's state, as the fuzzer will find it. */
static void make_blob(const char *key, uint32_t version, const char *pt, const char *ctx, Blob *ret) {
        _cleanup_free_ uint8_t *blob = NULL;
        uint32_t got;
        int r;

        fz.reset();
        setup_check(keystore_new(fz.hsm, FUZZ_OWNER, &fz.ks), "keystore_new");
        keystore_set_allow_unrecoverable(fz.ks, true);
        r = keystore_wrap(fz.ks, key, version, (const uint8_t *) pt, strlen(pt), (const uint8_t *) ctx, strlen(ctx),
                          FUZZ_EPOCH_USEC, &blob, &ret->len, &got);
        setup_check(r, "wrap for a seed blob");
        memcpy(ret->data, blob, ret->len);
        fz.ks = keystore_free(fz.ks);
}

static void set_vault_dual(Seed *s, uint32_t dual_control) {
        Kek__Request req = KEK__REQUEST__INIT;
        Kek__SetVaultPolicyRequest v = KEK__SET_VAULT_POLICY_REQUEST__INIT;

        v.set_dual_control = true;
        v.dual_control = dual_control;
        req.body_case = KEK__REQUEST__BODY_SET_VAULT_POLICY;
        req.set_vault_policy = &v;
        seed_req(s, &req);
}

static void set_grant(Seed *s, const char *key, bool group, uint32_t id, uint32_t ops, bool revoke) {
        Kek__Request req = KEK__REQUEST__INIT;
        Kek__SetGrantRequest sg = KEK__SET_GRANT_REQUEST__INIT;
        Kek__Grant g = KEK__GRANT__INIT;

        g.group = group;
        g.id = id;
        g.ops = ops;
        sg.key = (char *) key;
        sg.grant = &g;
        sg.revoke = revoke;
        req.body_case = KEK__REQUEST__BODY_SET_GRANT;
        req.set_grant = &sg;
        seed_req(s, &req);
}

/* Submits a purge or delete of key for approval. */
static void submit_named(Seed *s, Kek__Request__BodyCase type, const char *key) {
        Kek__Request req = KEK__REQUEST__INIT, inner = KEK__REQUEST__INIT;
        Kek__SubmitApprovalRequest sa = KEK__SUBMIT_APPROVAL_REQUEST__INIT;
        Kek__PurgeKeyRequest pur = KEK__PURGE_KEY_REQUEST__INIT;
        Kek__DeleteKeyRequest del = KEK__DELETE_KEY_REQUEST__INIT;

        inner.body_case = type;
        if (type == KEK__REQUEST__BODY_PURGE_KEY) {
                pur.key = (char *) key;
                inner.purge_key = &pur;
        } else {
                del.key = (char *) key;
                inner.delete_key = &del;
        }
        sa.request = &inner;
        req.body_case = KEK__REQUEST__BODY_SUBMIT_APPROVAL;
        req.submit_approval = &sa;
        seed_req(s, &req);
}

static void submit_vault_dual(Seed *s, uint32_t dual_control) {
        Kek__Request req = KEK__REQUEST__INIT, inner = KEK__REQUEST__INIT;
        Kek__SubmitApprovalRequest sa = KEK__SUBMIT_APPROVAL_REQUEST__INIT;
        Kek__SetVaultPolicyRequest v = KEK__SET_VAULT_POLICY_REQUEST__INIT;

        v.set_dual_control = true;
        v.dual_control = dual_control;
        inner.body_case = KEK__REQUEST__BODY_SET_VAULT_POLICY;
        inner.set_vault_policy = &v;
        sa.request = &inner;
        req.body_case = KEK__REQUEST__BODY_SUBMIT_APPROVAL;
        req.submit_approval = &sa;
        seed_req(s, &req);
}

static void approval_op(Seed *s, Kek__Request__BodyCase type, const char *id) {
        Kek__Request req = KEK__REQUEST__INIT;
        Kek__ApproveRequest a = KEK__APPROVE_REQUEST__INIT;
        Kek__CancelApprovalRequest c = KEK__CANCEL_APPROVAL_REQUEST__INIT;

        req.body_case = type;
        if (type == KEK__REQUEST__BODY_APPROVE) {
                a.id = (char *) id;
                req.approve = &a;
        } else {
                c.id = (char *) id;
                req.cancel_approval = &c;
        }
        seed_req(s, &req);
}

static void list_approvals(Seed *s) {
        Kek__Request req = KEK__REQUEST__INIT;
        Kek__ListApprovalsRequest l = KEK__LIST_APPROVALS_REQUEST__INIT;

        req.body_case = KEK__REQUEST__BODY_LIST_APPROVALS;
        req.list_approvals = &l;
        seed_req(s, &req);
}

/* The id the i-th SubmitApproval of the seed so far gets: the harness replays deterministically. */
static const char *submitted_id(const Seed *s, size_t i) {
        static char id[64];

        LLVMFuzzerTestOneInput(s->data, s->len);
        if (i >= fz.n_submitted) {
                fprintf(stderr, "submission %zu of the seed was refused\n", i);
                exit(EXIT_FAILURE);
        }
        snprintf(id, sizeof(id), "%s", fz.submitted[i].id);
        return id;
}

/*
 * The frame of issue 14: Request > SubmitApprovalRequest > Request > ... as
 * deep as fits in the rest of the seed (some 15600 levels), built from the
 * inside out; the outermost level is a Request's field 34.
 */
static void seed_deep(Seed *s) {
        static uint8_t buf[FUZZ_MAX_FRAME];
        size_t room = sizeof(s->data) - s->len - FRAME_HEADER_SIZE, start = room, len = 0, levels = 0;

        for (;;) {
                uint8_t h[16];
                size_t n = 0;
                uint64_t tag = levels % 2 ? KEK__REQUEST__BODY_SUBMIT_APPROVAL << 3 | 2 : 1 << 3 | 2, v = len;

                do
                        h[n++] = (uint8_t) (tag & 0x7f) | (tag > 0x7f ? 0x80 : 0);
                while ((tag >>= 7));
                do
                        h[n++] = (uint8_t) (v & 0x7f) | (v > 0x7f ? 0x80 : 0);
                while ((v >>= 7));
                if (n > start)
                        break;
                start -= n;
                memcpy(buf + start, h, n);
                len += n;
                levels++;
        }
        if (levels % 2) {
                /* drop the outermost SubmitApprovalRequest.request: tag 0x0a, then its length */
                size_t n = 2;

                while (buf[start + n - 1] & 0x80)
                        n++;
                start += n;
                len -= n;
        }
        seed_raw(s, buf + start, len);
}

/* Peers of four consecutive frames (then again): crypto user, officer, admin, root. */
#define U 0u
#define O 1u
#define A 2u
#define R 3u
#define P(a, b, c, d) ((uint8_t) ((a) | (b) << 2 | (c) << 4 | (d) << 6))
#define ALL(x) P(x, x, x, x)

int main(int argc, char *argv[]) {
        static const char aek32[] = "0123456789abcdef0123456789ABCDEF", aek16[] = "fedcba9876543210";
        Blob a2, a1, b1, bad;
        Seed s;

        if (argc != 2) {
                fprintf(stderr, "usage: %s DIR\n", argv[0]);
                return EXIT_FAILURE;
        }
        out_dir = argv[1];
        LLVMFuzzerInitialize(&argc, &argv);
        make_blob("alpha", 0, aek32, "acct:1", &a2);
        make_blob("alpha", 1, aek32, "acct:2", &a1);
        make_blob("beta", 0, aek16, "", &b1);
        bad = a2;
        bad.data[bad.len - 1] ^= 0x01;

        seed_begin(&s, ALL(U), 0);
        wrap(&s, "alpha", 0, aek32, "acct:1");
        wrap(&s, "alpha", 1, aek16, "acct:2");
        wrap(&s, "beta", 0, "k", "");
        wrap(&s, "gamma", 0, aek32, "deleted");
        wrap(&s, "nokey", 0, aek32, NULL);
        seed_write(&s, "wrap");

        seed_begin(&s, ALL(U), 0);
        unwrap(&s, &a2, "acct:1");
        unwrap(&s, &a1, "acct:2");
        unwrap(&s, &b1, "");
        unwrap(&s, &a2, "acct:2");
        unwrap(&s, &bad, "acct:1");
        seed_write(&s, "unwrap");

        seed_begin(&s, ALL(U), 0);
        rewrap(&s, &a1, "acct:2");
        rewrap(&s, &a2, "acct:1");
        rewrap(&s, &b1, "");
        seed_write(&s, "rewrap");

        {
                Kek__Request req = KEK__REQUEST__INIT;
                Kek__BatchWrapRequest bw = KEK__BATCH_WRAP_REQUEST__INIT;
                Kek__BatchUnwrapRequest bu = KEK__BATCH_UNWRAP_REQUEST__INIT;
                Kek__BatchRewrapRequest br = KEK__BATCH_REWRAP_REQUEST__INIT;
                Kek__WrapRequest w[4] = { KEK__WRAP_REQUEST__INIT, KEK__WRAP_REQUEST__INIT, KEK__WRAP_REQUEST__INIT,
                                          KEK__WRAP_REQUEST__INIT };
                Kek__WrapRequest *wp[4] = { &w[0], &w[1], &w[2], &w[3] };
                Kek__UnwrapRequest u[4] = { KEK__UNWRAP_REQUEST__INIT, KEK__UNWRAP_REQUEST__INIT,
                                            KEK__UNWRAP_REQUEST__INIT, KEK__UNWRAP_REQUEST__INIT };
                Kek__UnwrapRequest *up[4] = { &u[0], &u[1], &u[2], &u[3] };
                Kek__RewrapRequest rw[3] = { KEK__REWRAP_REQUEST__INIT, KEK__REWRAP_REQUEST__INIT,
                                             KEK__REWRAP_REQUEST__INIT };
                Kek__RewrapRequest *rwp[3] = { &rw[0], &rw[1], &rw[2] };
                const char *keys[4] = { "alpha", "beta", "nokey", "alpha" };

                for (int i = 0; i < 4; i++) {
                        w[i].key = (char *) keys[i];
                        w[i].version = i == 3 ? 1 : 0;
                        w[i].plaintext = bin(i % 2 ? aek16 : aek32);
                        w[i].context = bin(i == 1 ? "" : "acct:3");
                }
                bw.n_items = 4;
                bw.items = wp;
                seed_begin(&s, ALL(U), 0);
                req.body_case = KEK__REQUEST__BODY_BATCH_WRAP;
                req.batch_wrap = &bw;
                seed_req(&s, &req);
                seed_write(&s, "batch-wrap");

                u[0].blob = blob_bin(&a2);
                u[0].context = bin("acct:1");
                u[1].blob = blob_bin(&a1);
                u[1].context = bin("acct:2");
                u[2].blob = blob_bin(&b1);
                u[3].blob = blob_bin(&bad);
                u[3].context = bin("acct:1");
                bu.n_items = 4;
                bu.items = up;
                seed_begin(&s, ALL(U), 0);
                req.body_case = KEK__REQUEST__BODY_BATCH_UNWRAP;
                req.batch_unwrap = &bu;
                seed_req(&s, &req);
                seed_write(&s, "batch-unwrap");

                rw[0].blob = blob_bin(&a1);
                rw[0].context = bin("acct:2");
                rw[1].blob = blob_bin(&b1);
                rw[2].blob = blob_bin(&a2);
                rw[2].context = bin("wrong");
                br.n_items = 3;
                br.items = rwp;
                seed_begin(&s, P(O, R, U, U), 0);
                named(&s, KEK__REQUEST__BODY_ROTATE_KEY, "beta");
                req.body_case = KEK__REQUEST__BODY_BATCH_REWRAP;
                req.batch_rewrap = &br;
                seed_req(&s, &req);
                seed_req(&s, &req);
                seed_write(&s, "batch-rewrap");
        }

        seed_begin(&s, ALL(U), 0);
        named(&s, KEK__REQUEST__BODY_GET_KEY_VERSION, "alpha");
        named(&s, KEK__REQUEST__BODY_GET_KEY_VERSION, "gamma");
        named(&s, KEK__REQUEST__BODY_GET_KEY_VERSION, "nokey");
        named(&s, KEK__REQUEST__BODY_GET_KEY, "beta");
        named(&s, KEK__REQUEST__BODY_GET_KEY, "gamma");
        seed_write(&s, "get-key");

        seed_begin(&s, P(U, O, A, R), 0);
        list_keys(&s, false);
        list_keys(&s, true);
        list_keys(&s, true);
        list_keys(&s, true);
        seed_write(&s, "list-keys");

        seed_begin(&s, P(O, O, O, R), 0);
        named(&s, KEK__REQUEST__BODY_CREATE_KEY, "delta");
        create_with_policy(&s, "epsilon.1", 86400, 100);
        named(&s, KEK__REQUEST__BODY_CREATE_KEY, "alpha");
        wrap(&s, "delta", 0, aek32, "acct:4");
        named(&s, KEK__REQUEST__BODY_GET_KEY, "epsilon.1");
        named(&s, KEK__REQUEST__BODY_CREATE_KEY, "-bad");
        list_keys(&s, true);
        seed_write(&s, "create-key");

        seed_begin(&s, P(O, U, U, U), 0);
        named(&s, KEK__REQUEST__BODY_ROTATE_KEY, "alpha");
        wrap(&s, "alpha", 0, aek32, "acct:1");
        unwrap(&s, &a1, "acct:2");
        rewrap(&s, &a2, "acct:1");
        named(&s, KEK__REQUEST__BODY_GET_KEY, "alpha");
        seed_write(&s, "rotate-key");

        /* Two days per frame and the maintenance timer: the policy rotates alpha by age and budget. */
        seed_begin(&s, P(O, U, U, U), 0x82);
        set_policy(&s, "alpha", 86400, 3);
        wrap(&s, "alpha", 0, aek32, "a");
        wrap(&s, "alpha", 0, aek32, "b");
        wrap(&s, "alpha", 0, aek32, "c");
        named(&s, KEK__REQUEST__BODY_GET_KEY, "alpha");
        seed_write(&s, "set-rotation-policy");

        seed_begin(&s, P(O, U, O, U), 0);
        set_enabled(&s, "alpha", 1, false);
        unwrap(&s, &a1, "acct:2");
        set_enabled(&s, "alpha", 1, true);
        unwrap(&s, &a1, "acct:2");
        set_enabled(&s, "alpha", 0, false);
        wrap(&s, "alpha", 0, aek32, NULL);
        set_enabled(&s, "alpha", 0, true);
        wrap(&s, "alpha", 0, aek32, NULL);
        seed_write(&s, "set-enabled");

        seed_begin(&s, P(O, U, O, U), 0);
        named(&s, KEK__REQUEST__BODY_DELETE_KEY, "alpha");
        unwrap(&s, &a2, "acct:1");
        named(&s, KEK__REQUEST__BODY_RECOVER_KEY, "alpha");
        unwrap(&s, &a2, "acct:1");
        named(&s, KEK__REQUEST__BODY_RECOVER_KEY, "beta");
        seed_write(&s, "delete-recover");

        seed_begin(&s, ALL(O), 0);
        named(&s, KEK__REQUEST__BODY_PURGE_KEY, "gamma");
        named(&s, KEK__REQUEST__BODY_PURGE_KEY, "beta");
        named(&s, KEK__REQUEST__BODY_DELETE_KEY, "beta");
        named(&s, KEK__REQUEST__BODY_PURGE_KEY, "beta");
        unwrap(&s, &b1, "");
        list_keys(&s, true);
        seed_write(&s, "purge");

        seed_begin(&s, P(U, A, A, A), 0);
        get_vault(&s);
        set_vault(&s, 30, KEK__SWITCH__UNCHANGED);
        set_vault(&s, 0, KEK__SWITCH__ON);
        named(&s, KEK__REQUEST__BODY_PURGE_KEY, "gamma");
        set_vault(&s, 0, KEK__SWITCH__OFF);
        set_vault(&s, 7, KEK__SWITCH__UNCHANGED);
        get_vault(&s);
        wrap(&s, "alpha", 0, aek32, NULL);
        seed_write(&s, "vault-policy");

        /* 45 days per frame and the timer: gamma's purge date passes and maintenance purges it. */
        seed_begin(&s, ALL(O), 0x80 | 45);
        list_keys(&s, true);
        named(&s, KEK__REQUEST__BODY_DELETE_KEY, "beta");
        list_keys(&s, true);
        list_keys(&s, true);
        seed_write(&s, "maintain-purge");

        seed_begin(&s, P(O, U, R, A), 0);
        check(&s);
        check(&s);
        check(&s);
        check(&s);
        seed_write(&s, "check");

        /* With metrics (0x40): Status renders them. */
        seed_begin(&s, P(O, U, R, A), 0x40);
        status(&s);
        wrap(&s, "alpha", 0, aek32, NULL);
        status(&s);
        status(&s);
        seed_write(&s, "status");

        seed_begin(&s, P(U, O, O, A), 0);
        watch(&s);
        set_enabled(&s, "beta", 0, false);
        set_enabled(&s, "beta", 0, true);
        set_grant(&s, "alpha", false, 1000, GRANT_ALL, true);
        named(&s, KEK__REQUEST__BODY_GET_KEY_VERSION, "alpha");
        named(&s, KEK__REQUEST__BODY_ROTATE_KEY, "alpha");
        named(&s, KEK__REQUEST__BODY_PURGE_KEY, "gamma");
        set_grant(&s, "alpha", false, 1000, GRANT_UNWRAP, false);
        seed_write(&s, "watch");

        seed_begin(&s, P(A, U, A, U), 0);
        set_grant(&s, "alpha", false, 1000, GRANT_WRAP, true);
        wrap(&s, "alpha", 0, aek32, NULL);
        set_grant(&s, "alpha", false, 1000, GRANT_WRAP, false);
        wrap(&s, "alpha", 0, aek32, NULL);
        set_grant(&s, "beta", true, 2000, GRANT_REWRAP, false);
        rewrap(&s, &b1, "");
        set_grant(&s, "beta", true, 2000, GRANT_ALL, true);
        named(&s, KEK__REQUEST__BODY_GET_KEY, "beta");
        seed_write(&s, "set-grant");

        /* Dual control: an officer submits, another officer or an admin approves; the submitter cannot. */
        seed_begin(&s, P(A, O, O, O), 0);
        set_vault_dual(&s, DUAL_CONTROL_ALL);                     /* admin */
        named(&s, KEK__REQUEST__BODY_PURGE_KEY, "gamma");         /* officer: APPROVAL_REQUIRED */
        submit_named(&s, KEK__REQUEST__BODY_PURGE_KEY, "gamma");  /* officer */
        {
                char id[64];

                snprintf(id, sizeof(id), "%s", submitted_id(&s, 0));
                approval_op(&s, KEK__REQUEST__BODY_APPROVE, id);  /* by its submitter: refused */
                approval_op(&s, KEK__REQUEST__BODY_APPROVE, id);  /* by the admin: purged */
                submit_named(&s, KEK__REQUEST__BODY_DELETE_KEY, "alpha");
                snprintf(id, sizeof(id), "%s", submitted_id(&s, 1));
                list_approvals(&s);
                approval_op(&s, KEK__REQUEST__BODY_CANCEL_APPROVAL, id);
                list_approvals(&s);                               /* admin */
                approval_op(&s, KEK__REQUEST__BODY_APPROVE, id);  /* cancelled: refused */
        }
        seed_write(&s, "dual-control");

        seed_begin(&s, P(A, A, R, A), 0);
        set_vault_dual(&s, DUAL_CONTROL_VAULT_POLICY | DUAL_CONTROL_LAST_GRANT);
        set_vault_dual(&s, 0);
        submit_vault_dual(&s, 0);
        approval_op(&s, KEK__REQUEST__BODY_APPROVE, submitted_id(&s, 0));
        get_vault(&s);
        seed_write(&s, "dual-control-vault");

        seed_begin(&s, ALL(U), 0);
        named(&s, KEK__REQUEST__BODY_CREATE_KEY, "zeta");
        named(&s, KEK__REQUEST__BODY_ROTATE_KEY, "alpha");
        set_policy(&s, "alpha", 0, 10);
        set_enabled(&s, "alpha", 0, false);
        named(&s, KEK__REQUEST__BODY_DELETE_KEY, "alpha");
        named(&s, KEK__REQUEST__BODY_RECOVER_KEY, "gamma");
        named(&s, KEK__REQUEST__BODY_PURGE_KEY, "gamma");
        set_vault(&s, 30, KEK__SWITCH__ON);
        set_grant(&s, "alpha", false, 1000, GRANT_ALL, false);
        check(&s);
        submit_named(&s, KEK__REQUEST__BODY_PURGE_KEY, "gamma");
        list_approvals(&s);
        seed_write(&s, "permission-denied");

        seed_begin(&s, ALL(O), 0);
        set_vault(&s, 30, KEK__SWITCH__ON);
        set_grant(&s, "alpha", false, 1001, GRANT_ALL, false);
        submit_vault_dual(&s, 0);
        wrap(&s, "alpha", 0, aek32, NULL);
        seed_write(&s, "officer-denied");

        /* Beta's budget is 4 wraps: the fifth rotates it; pinned to version 1, the fifth is refused. */
        seed_begin(&s, ALL(U), 0);
        for (int i = 0; i < 6; i++)
                wrap(&s, "beta", 0, aek16, "budget");
        unwrap(&s, &b1, "");
        named(&s, KEK__REQUEST__BODY_GET_KEY, "beta");
        seed_write(&s, "wrap-budget");

        seed_begin(&s, ALL(U), 0);
        for (int i = 0; i < 5; i++)
                wrap(&s, "beta", 1, aek16, "pinned");
        seed_write(&s, "wrap-budget-pinned");

        /* Limits: a context of 1024 bytes and one of 1025, a plaintext of 1025, a batch of 1025 items. */
        {
                static char ctx[CONTEXT_MAX_SIZE + 2], pt[AEK_MAX_SIZE + 2];
                Kek__Request req = KEK__REQUEST__INIT;
                Kek__BatchWrapRequest bw = KEK__BATCH_WRAP_REQUEST__INIT;
                static Kek__WrapRequest w[1025];
                static Kek__WrapRequest *wp[1025];

                memset(ctx, 'c', CONTEXT_MAX_SIZE);
                seed_begin(&s, ALL(U), 0);
                wrap(&s, "alpha", 0, aek32, ctx);
                ctx[CONTEXT_MAX_SIZE] = 'c';
                wrap(&s, "alpha", 0, aek32, ctx);
                memset(pt, 'p', AEK_MAX_SIZE + 1);
                wrap(&s, "alpha", 0, pt, NULL);
                seed_write(&s, "limits");

                for (size_t i = 0; i < ELEMENTSOF(w); i++) {
                        w[i] = (Kek__WrapRequest) KEK__WRAP_REQUEST__INIT;
                        wp[i] = &w[i];
                }
                bw.n_items = ELEMENTSOF(w);
                bw.items = wp;
                req.body_case = KEK__REQUEST__BODY_BATCH_WRAP;
                req.batch_wrap = &bw;
                seed_begin(&s, ALL(U), 0);
                seed_req(&s, &req);
                bw.n_items = 120; /* the answers exceed max_frame */
                for (size_t i = 0; i < bw.n_items; i++) {
                        w[i].key = (char *) "alpha";
                        w[i].plaintext = bin("k");
                }
                seed_req(&s, &req);
                seed_write(&s, "batch-limits");
        }

        /* At most 64 pending approvals; revoking a key's last grant under dual control. */
        seed_begin(&s, P(A, O, O, O), 0);
        set_vault_dual(&s, DUAL_CONTROL_ALL);
        for (int i = 0; i < 66; i++)
                submit_named(&s, KEK__REQUEST__BODY_PURGE_KEY, "gamma");
        seed_write(&s, "approval-limit");

        seed_begin(&s, ALL(A), 0);
        set_vault_dual(&s, DUAL_CONTROL_LAST_GRANT);
        set_grant(&s, "beta", true, 2000, GRANT_ALL, true);
        set_grant(&s, "beta", true, 2000, GRANT_WRAP, true);
        seed_write(&s, "last-grant");

        {
                static const uint8_t no_op[] = { 0x08, 0x05 };                      /* id 5, no body */
                static const uint8_t unknown_op[] = { 0x08, 0x06, 0xf8, 0x06, 0x01 }; /* id 6, field 111 */
                static const uint8_t garbage[] = { 0xff, 0xff, 0xff, 0xff, 0x0f };

                seed_begin(&s, ALL(U), 0);
                seed_raw(&s, no_op, sizeof(no_op));
                seed_raw(&s, unknown_op, sizeof(unknown_op));
                seed_raw(&s, garbage, sizeof(garbage));
                named(&s, KEK__REQUEST__BODY_GET_KEY, "alpha"); /* never reached: the connection closes */
                seed_write(&s, "malformed");

                seed_begin(&s, ALL(U), 0);
                named(&s, KEK__REQUEST__BODY_GET_KEY, "alpha");
                s.data[s.len++] = 0x00; /* a declared length above max_frame */
                s.data[s.len++] = 0x01;
                s.data[s.len++] = 0x00;
                s.data[s.len++] = 0x01;
                seed_write(&s, "frame-too-large");

                seed_begin(&s, ALL(U), 0);
                named(&s, KEK__REQUEST__BODY_GET_KEY, "alpha");
                named(&s, KEK__REQUEST__BODY_GET_KEY, "beta");
                s.len -= 3; /* ends inside the second frame */
                seed_write(&s, "truncated");
        }
        {
                /* Strings cut at a NUL (issue 14): create "a\0b", wrap under "alpha\0x", an overlong NUL. */
                static const uint8_t create_nul[] = { 0x08, 0x09, 0xa2, 0x01, 0x05, 0x0a, 0x03, 'a', 0x00, 'b' };
                static const uint8_t wrap_nul[] = { 0x08, 0x0a, 0x52, 0x0d, 0x0a, 0x07, 'a', 'l', 'p', 'h', 'a', 0x00,
                                                    'x', 0x12, 0x02, 'k', 'k' };
                static const uint8_t create_overlong[] = { 0x08, 0x0b, 0xa2, 0x01, 0x05, 0x0a, 0x03, 'k', 0xc0, 0x80 };
                /* id 12: submit_approval { request { submit_approval { request { delete_key { key "alpha" } } } } } */
                static const uint8_t approval_in_approval[] = { 0x08, 0x0c, 0x92, 0x02, 0x11, 0x0a, 0x0f, 0x92, 0x02,
                                                                0x0c, 0x0a, 0x0a, 0xd2, 0x01, 0x07, 0x0a, 0x05,
                                                                'a', 'l', 'p', 'h', 'a' };

                seed_begin(&s, ALL(O), 0);
                seed_raw(&s, create_nul, sizeof(create_nul));
                named(&s, KEK__REQUEST__BODY_GET_KEY, "a"); /* never reached: the connection closes */
                seed_write(&s, "nul-in-key");
                seed_begin(&s, ALL(U), 0);
                seed_raw(&s, wrap_nul, sizeof(wrap_nul));
                seed_write(&s, "nul-in-wrap-key");
                seed_begin(&s, ALL(O), 0);
                seed_raw(&s, create_overlong, sizeof(create_overlong));
                seed_write(&s, "overlong-nul");
                seed_begin(&s, ALL(R), 0);
                seed_raw(&s, approval_in_approval, sizeof(approval_in_approval));
                seed_write(&s, "approval-in-approval");
                seed_begin(&s, ALL(U), 0);
                seed_deep(&s);
                seed_write(&s, "deep-nesting");
        }

        /* A whole life: create, rotate twice, disable a version, delete, recover, delete, purge. */
        seed_begin(&s, P(O, R, O, O), 1);
        named(&s, KEK__REQUEST__BODY_CREATE_KEY, "acct.1");
        wrap(&s, "acct.1", 0, aek32, "x");
        named(&s, KEK__REQUEST__BODY_ROTATE_KEY, "acct.1");
        named(&s, KEK__REQUEST__BODY_ROTATE_KEY, "acct.1");
        set_enabled(&s, "acct.1", 2, false);
        wrap(&s, "acct.1", 2, aek32, "x");
        named(&s, KEK__REQUEST__BODY_DELETE_KEY, "acct.1");
        named(&s, KEK__REQUEST__BODY_RECOVER_KEY, "acct.1");
        named(&s, KEK__REQUEST__BODY_DELETE_KEY, "acct.1");
        named(&s, KEK__REQUEST__BODY_PURGE_KEY, "acct.1");
        list_keys(&s, true);
        check(&s);
        seed_write(&s, "lifecycle");

        printf("%u seeds in %s\n", n_seeds, out_dir);
        return EXIT_SUCCESS;
}
