/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Dispatch without sockets: request bytes in, response bytes out, against a
 * fresh SoftHSM2 token. Covers every handler, every documented refusal, the
 * malformed-input contract (close vs. continue), id echo, and a restart of the
 * HSM and keystore in-process (keys and blobs survive).
 */
#include "config.h"

#include <openssl/rand.h>
#include <stdlib.h>

#include "common/kekerr.h"
#include "daemon/dispatch.h"
#include "daemon/pin.h"
#include "proto/kek.pb-c.h"
#include "tests/lib/tap.h"
#include "tests/lib/token.h"

typedef struct Env {
        TestToken token;
        Secret *pin;
        Hsm *hsm;
        Keystore *ks;
        Dispatcher d;
} Env;

static const Peer root_peer = { .uid = 0, .gid = 0, .pid = 42, .superuser = true };
static const Peer *peer = &root_peer;
static uint64_t fixed_now(void) {
        return 1700000000ULL * 1000000ULL;
}

static int env_open(Env *e) {
        const char *why = NULL;
        int r;

        r = hsm_open(e->token.module, e->token.uri, e->pin, &e->hsm, &why);
        if (r < 0) {
                diag("hsm_open: %s (%d)", why ?: "?", r);
                return r;
        }
        r = keystore_new(e->hsm, "test-host:1", &e->ks);
        if (r >= 0)
                keystore_set_allow_unrecoverable(e->ks, true);
        if (r < 0)
                return r;
        e->d = (Dispatcher) { .keystore = e->ks, .max_frame = FRAME_MAX_DEFAULT, .now_usec = fixed_now };
        return 0;
}

static void env_close(Env *e) {
        e->ks = keystore_free(e->ks);
        e->hsm = hsm_free(e->hsm);
}

/* Runs raw payload bytes through dispatch; returns dispatch's result and the decoded response. */
static int run_raw(Env *e, const uint8_t *payload, size_t len, Kek__Response **ret) {
        FrameBuf out;
        const uint8_t *p;
        size_t plen;
        int r, q;

        frame_buf_init(&out);
        r = dispatch_frame(&e->d, peer, payload, len, &out, NULL);
        q = frame_parse(frame_buf_head(&out), frame_buf_size(&out), FRAME_MAX_LIMIT, &p, &plen);
        *ret = q == 1 && FRAME_HEADER_SIZE + plen == frame_buf_size(&out) ? kek__response__unpack(NULL, plen, p) : NULL;
        frame_buf_done(&out);
        return r;
}

static Kek__Response *run(Env *e, Kek__Request *req) {
        size_t n = kek__request__get_packed_size(req);
        uint8_t *buf = malloc(n + 1);
        Kek__Response *resp = NULL;

        kek__request__pack(req, buf);
        (void) run_raw(e, buf, n, &resp);
        free(buf);
        return resp;
}

static int error_of(const Kek__Response *r) {
        if (!r)
                return -EBADMSG;
        if (r->body_case != KEK__RESPONSE__BODY_ERROR)
                return 0;
        return kekerr_from_wire(r->error->code);
}

static Kek__Response *do_create(Env *e, const char *name) {
        Kek__Request req = KEK__REQUEST__INIT;
        Kek__CreateKeyRequest c = KEK__CREATE_KEY_REQUEST__INIT;

        c.key = (char *) name;
        req.id = 11;
        req.body_case = KEK__REQUEST__BODY_CREATE_KEY;
        req.create_key = &c;
        return run(e, &req);
}

static Kek__Response *do_wrap(Env *e, const char *key, const uint8_t *pt, size_t len, const char *ctx, uint32_t version) {
        Kek__Request req = KEK__REQUEST__INIT;
        Kek__WrapRequest w = KEK__WRAP_REQUEST__INIT;

        w.key = (char *) key;
        w.plaintext = (ProtobufCBinaryData) { len, (uint8_t *) pt };
        w.context = (ProtobufCBinaryData) { ctx ? strlen(ctx) : 0, (uint8_t *) ctx };
        w.version = version;
        req.id = 22;
        req.body_case = KEK__REQUEST__BODY_WRAP;
        req.wrap = &w;
        return run(e, &req);
}

static Kek__Response *do_unwrap(Env *e, const uint8_t *blob, size_t len, const char *ctx) {
        Kek__Request req = KEK__REQUEST__INIT;
        Kek__UnwrapRequest u = KEK__UNWRAP_REQUEST__INIT;

        u.blob = (ProtobufCBinaryData) { len, (uint8_t *) blob };
        u.context = (ProtobufCBinaryData) { ctx ? strlen(ctx) : 0, (uint8_t *) ctx };
        req.id = 33;
        req.body_case = KEK__REQUEST__BODY_UNWRAP;
        req.unwrap = &u;
        return run(e, &req);
}

/* Unwraps and compares; returns 1 if the plaintext matches. */
static int unwrap_matches(Env *e, const ProtobufCBinaryData *blob, const uint8_t *pt, size_t len, const char *ctx) {
        Kek__Response *r = do_unwrap(e, blob->data, blob->len, ctx);
        int m = r && r->body_case == KEK__RESPONSE__BODY_UNWRAP && r->unwrap->plaintext.len == len &&
                memcmp(r->unwrap->plaintext.data, pt, len) == 0;

        if (r)
                kek__response__free_unpacked(r, NULL);
        return m;
}

#define N_AEKS 100

/*
 * Every request type against each role: a crypto user (no grants), an
 * officer and an administrator. The table's required role must refuse with
 * PERMISSION_DENIED before the handler runs, and only then.
 */
static void test_role_matrix(Env *e) {
        static const Peer user = { .uid = 5001, .gid = 5001, .pid = 43 };
        static const Peer officer = { .uid = 5002, .gid = 5002, .pid = 44, .officer = true };
        static const Peer admin = { .uid = 5003, .gid = 5003, .pid = 45, .admin = true };
        static const struct {
                Kek__Request__BodyCase type;
                const char *op;
                Role role;
        } cases[] = {
                { KEK__REQUEST__BODY_CREATE_KEY, "create-key", ROLE_OFFICER },
                { KEK__REQUEST__BODY_ROTATE_KEY, "rotate-key", ROLE_OFFICER },
                { KEK__REQUEST__BODY_SET_ROTATION_POLICY, "set-rotation-policy", ROLE_OFFICER },
                { KEK__REQUEST__BODY_SET_ENABLED, "set-enabled", ROLE_OFFICER },
                { KEK__REQUEST__BODY_DELETE_KEY, "delete-key", ROLE_OFFICER },
                { KEK__REQUEST__BODY_RECOVER_KEY, "recover-key", ROLE_OFFICER },
                { KEK__REQUEST__BODY_PURGE_KEY, "purge-key", ROLE_OFFICER },
                { KEK__REQUEST__BODY_CHECK, "check", ROLE_OFFICER },
                { KEK__REQUEST__BODY_SUBMIT_APPROVAL, "submit-approval", ROLE_OFFICER },
                { KEK__REQUEST__BODY_APPROVE, "approve", ROLE_OFFICER },
                { KEK__REQUEST__BODY_CANCEL_APPROVAL, "cancel-approval", ROLE_OFFICER },
                { KEK__REQUEST__BODY_LIST_APPROVALS, "list-approvals", ROLE_OFFICER },
                { KEK__REQUEST__BODY_STATUS, "status", ROLE_OFFICER },
                { KEK__REQUEST__BODY_SET_VAULT_POLICY, "set-vault-policy", ROLE_ADMIN },
                { KEK__REQUEST__BODY_SET_GRANT, "set-grant", ROLE_ADMIN },
                { KEK__REQUEST__BODY_GET_VAULT_POLICY, "get-vault-policy", ROLE_CRYPTO_USER },
                { KEK__REQUEST__BODY_LIST_KEYS, "list-keys", ROLE_CRYPTO_USER },
                { KEK__REQUEST__BODY_WATCH, "watch", ROLE_CRYPTO_USER },
        };
        const Peer *peers[] = { &user, &officer, &admin };
        const char *names[] = { "crypto user", "officer", "administrator" };
        const Role roles[] = { ROLE_CRYPTO_USER, ROLE_OFFICER, ROLE_ADMIN };
        unsigned wrong = 0;

        for (size_t i = 0; i < ELEMENTSOF(cases); i++)
                for (size_t p = 0; p < ELEMENTSOF(peers); p++) {
                        /* Empty bodies: the handlers refuse them as invalid or unknown, never as PERMISSION_DENIED. */
                        Kek__Request req = KEK__REQUEST__INIT;
                        Kek__CreateKeyRequest ck = KEK__CREATE_KEY_REQUEST__INIT;
                        Kek__RotateKeyRequest rk = KEK__ROTATE_KEY_REQUEST__INIT;
                        Kek__SetRotationPolicyRequest sp = KEK__SET_ROTATION_POLICY_REQUEST__INIT;
                        Kek__SetEnabledRequest se = KEK__SET_ENABLED_REQUEST__INIT;
                        Kek__DeleteKeyRequest dk = KEK__DELETE_KEY_REQUEST__INIT;
                        Kek__RecoverKeyRequest rc = KEK__RECOVER_KEY_REQUEST__INIT;
                        Kek__PurgeKeyRequest pk = KEK__PURGE_KEY_REQUEST__INIT;
                        Kek__CheckRequest ch = KEK__CHECK_REQUEST__INIT;
                        Kek__SubmitApprovalRequest sa = KEK__SUBMIT_APPROVAL_REQUEST__INIT;
                        Kek__ApproveRequest ap = KEK__APPROVE_REQUEST__INIT;
                        Kek__CancelApprovalRequest ca = KEK__CANCEL_APPROVAL_REQUEST__INIT;
                        Kek__ListApprovalsRequest la = KEK__LIST_APPROVALS_REQUEST__INIT;
                        Kek__StatusRequest st = KEK__STATUS_REQUEST__INIT;
                        Kek__SetVaultPolicyRequest sv = KEK__SET_VAULT_POLICY_REQUEST__INIT;
                        Kek__SetGrantRequest sg = KEK__SET_GRANT_REQUEST__INIT;
                        Kek__GetVaultPolicyRequest gv = KEK__GET_VAULT_POLICY_REQUEST__INIT;
                        Kek__ListKeysRequest lk = KEK__LIST_KEYS_REQUEST__INIT;
                        Kek__WatchRequest wa = KEK__WATCH_REQUEST__INIT;
                        Kek__Response *r;
                        bool denied, want;

                        ck.key = rk.key = sp.key = se.key = dk.key = rc.key = pk.key = sg.key = (char *) "nosuchkey";
                        ap.id = ca.id = (char *) "0123456789abcdef0123456789abcdef";
                        req.body_case = cases[i].type;
                        switch (cases[i].type) {
                        case KEK__REQUEST__BODY_CREATE_KEY: req.create_key = &ck; ck.key = (char *) "matrix-key"; break;
                        case KEK__REQUEST__BODY_ROTATE_KEY: req.rotate_key = &rk; break;
                        case KEK__REQUEST__BODY_SET_ROTATION_POLICY: req.set_rotation_policy = &sp; break;
                        case KEK__REQUEST__BODY_SET_ENABLED: req.set_enabled = &se; break;
                        case KEK__REQUEST__BODY_DELETE_KEY: req.delete_key = &dk; break;
                        case KEK__REQUEST__BODY_RECOVER_KEY: req.recover_key = &rc; break;
                        case KEK__REQUEST__BODY_PURGE_KEY: req.purge_key = &pk; break;
                        case KEK__REQUEST__BODY_CHECK: req.check = &ch; break;
                        case KEK__REQUEST__BODY_SUBMIT_APPROVAL: req.submit_approval = &sa; break;
                        case KEK__REQUEST__BODY_APPROVE: req.approve = &ap; break;
                        case KEK__REQUEST__BODY_CANCEL_APPROVAL: req.cancel_approval = &ca; break;
                        case KEK__REQUEST__BODY_LIST_APPROVALS: req.list_approvals = &la; break;
                        case KEK__REQUEST__BODY_STATUS: req.status = &st; break;
                        case KEK__REQUEST__BODY_SET_VAULT_POLICY: req.set_vault_policy = &sv; break;
                        case KEK__REQUEST__BODY_SET_GRANT: req.set_grant = &sg; break;
                        case KEK__REQUEST__BODY_GET_VAULT_POLICY: req.get_vault_policy = &gv; break;
                        case KEK__REQUEST__BODY_LIST_KEYS: req.list_keys = &lk; break;
                        case KEK__REQUEST__BODY_WATCH: req.watch = &wa; break;
                        default: break;
                        }
                        peer = peers[p];
                        r = run(e, &req);
                        peer = &root_peer;
                        denied = error_of(r) == -KEKERR_PERMISSION_DENIED;
                        want = cases[i].role > roles[p];
                        if (denied != want) {
                                diag("%s by a %s: %s, want %s", cases[i].op, names[p], denied ? "refused" : "allowed",
                                     want ? "refused" : "allowed");
                                wrong++;
                        }
                        if (r)
                                kek__response__free_unpacked(r, NULL);
                }
        is_int(wrong, 0, "%zu request types x 3 roles: refused exactly when the role is below the table's",
               ELEMENTSOF(cases));
}

/*
 * A wrap's prepare never writes the token: a version with no lease of wrap
 * budget left is reported (KEYSTORE_NEEDS_RENEWAL) and the renewal is a step
 * of its own (keystore_wrap_renew()). Through dispatch, a batch whose wraps
 * need renewals, and a rotation when the current version's budget is spent,
 * still answers every item in order.
 */
/*
 * Prepare reports a refusal one way: it returns the error and leaves the op
 * unprepared (kind 0, result 0, nothing to free); op->result is only a
 * prepared op's outcome after keystore_run().
 */
static void test_prepare_refusal(Env *e) {
        const uint8_t pt[16] = { 7 };
        CryptoOp op;
        int q;

        q = keystore_wrap_prepare(e->ks, NULL, "no-such-key", 0, pt, sizeof(pt), NULL, 0, fixed_now(), &op);
        is_int(q, -KEKERR_UNKNOWN_KEY, "prepare of a wrap under an unknown key returns UNKNOWN_KEY");
        ok(op.kind == 0 && op.result == 0 && !op.blob, "... and leaves the op unprepared, the error not stored in it");
        crypto_op_done(&op);
}

/*
 * What authorize found (keystore_lookup()) serves prepare while the index is
 * the one it was found in; once a write replaced the key, prepare looks it up
 * again and sees the change.
 */
static void test_lookup_reuse(Env *e) {
        const uint8_t pt[16] = { 9 };
        const Key *k;
        KeyLookup l;
        CryptoOp op;
        uint64_t n;
        int q;

        if (!ok(keystore_create(e->ks, "reuse1", &(RotationPolicy) {}, fixed_now(), &k) >= 0 && keystore_lookup(e->ks, "reuse1", &l) >= 0,
                "key created and looked up"))
                return;
        n = keystore_lookups(e->ks);
        q = keystore_wrap_prepare_renewed(e->ks, &l, "reuse1", 0, pt, sizeof(pt), NULL, 0, fixed_now(), &op);
        crypto_op_done(&op);
        /* The first wrap renews its lease (a write): that prepare looks the key up again, once. */
        ok(q == 0 && op.version == 1, "prepared under version 1");
        if (!ok(keystore_lookup(e->ks, "reuse1", &l) >= 0, "looked up again"))
                return;
        n = keystore_lookups(e->ks);
        q = keystore_wrap_prepare(e->ks, &l, "reuse1", 0, pt, sizeof(pt), NULL, 0, fixed_now(), &op);
        ok(q == 0 && op.version == 1 && keystore_lookups(e->ks) == n, "a lookup of this index serves prepare: no second lookup");
        crypto_op_done(&op);
        if (!ok(keystore_rotate(e->ks, "reuse1", fixed_now(), NULL) >= 0, "rotated (the index entry replaced)"))
                return;
        n = keystore_lookups(e->ks);
        q = keystore_wrap_prepare_renewed(e->ks, &l, "reuse1", 0, pt, sizeof(pt), NULL, 0, fixed_now(), &op);
        ok(q == 0 && op.version == 2 && keystore_lookups(e->ks) > n,
           "after the write, prepare looks the key up again and wraps under the new current version");
        crypto_op_done(&op);
}

static void test_renewal_step(Env *e) {
        const RotationPolicy small = { .max_wraps = 2 }; /* a lease of 1 */
        const uint8_t pt[16] = { 1, 2, 3 };
        Kek__Request req = KEK__REQUEST__INIT;
        Kek__BatchWrapRequest b = KEK__BATCH_WRAP_REQUEST__INIT;
        Kek__WrapRequest w[3], *items[3];
        Kek__Response *r;
        const Key *k;
        CryptoOp op;
        uint64_t gen;
        int q;

        if (!ok(keystore_create(e->ks, "renew1", &small, fixed_now(), &k) >= 0, "key with a wrap budget of 2 created"))
                return;
        gen = k->generation;
        q = keystore_wrap_prepare(e->ks, NULL, "renew1", 0, pt, sizeof(pt), NULL, 0, fixed_now(), &op);
        is_int(q, KEYSTORE_NEEDS_RENEWAL, "prepare of a wrap without a lease says it needs a renewal");
        ok(op.kind == 0 && !op.blob, "... and prepared nothing");
        ok(keystore_find(e->ks, "renew1", &k) >= 0 && k->generation == gen, "... and wrote nothing to the token");
        crypto_op_done(&op);
        is_int(keystore_wrap_renew(e->ks, "renew1", 0, fixed_now()), 0, "the renewal step takes a lease");
        ok(keystore_find(e->ks, "renew1", &k) >= 0 && k->generation > gen, "... writing the key's record");
        q = keystore_wrap_prepare(e->ks, NULL, "renew1", 0, pt, sizeof(pt), NULL, 0, fixed_now(), &op);
        ok(q == 0 && op.kind == CRYPTO_WRAP && op.blob && op.version == 1, "prepared again: version 1, with its lease unit");
        /* Not run and not finished: its unit stays spent (over-counted, never under). */
        crypto_op_done(&op);

        for (int i = 0; i < 3; i++) {
                kek__wrap_request__init(&w[i]);
                w[i].key = (char *) "renew1";
                w[i].plaintext = (ProtobufCBinaryData) { sizeof(pt), (uint8_t *) pt };
                items[i] = &w[i];
        }
        b.n_items = 3;
        b.items = items;
        req.id = 31;
        req.body_case = KEK__REQUEST__BODY_BATCH_WRAP;
        req.batch_wrap = &b;
        r = run(e, &req);
        ok(r && r->body_case == KEK__RESPONSE__BODY_BATCH && r->batch->n_items == 3 && !r->batch->items[0]->error &&
                   !r->batch->items[1]->error && !r->batch->items[2]->error,
           "a batch of 3 wraps over a budget of 2: every item wrapped (renewals and a rotation as steps)");
        ok(r && r->body_case == KEK__RESPONSE__BODY_BATCH && r->batch->n_items == 3 && r->batch->items[0]->wrap &&
                   r->batch->items[2]->wrap && r->batch->items[0]->wrap->version == 1 && r->batch->items[2]->wrap->version == 2,
           "the first under version 1, the last under version 2 (rotated when version 1's budget was spent)");
        if (r)
                kek__response__free_unpacked(r, NULL);
}

static Kek__Response *do_confirm(Env *e, const char *key, uint32_t version) {
        Kek__Request req = KEK__REQUEST__INIT;
        Kek__ConfirmRequest c = KEK__CONFIRM_REQUEST__INIT;

        c.key = (char *) key;
        c.version = version;
        req.id = 44;
        req.body_case = KEK__REQUEST__BODY_CONFIRM;
        req.confirm = &c;
        return run(e, &req);
}

static Kek__Response *do_root(Env *e, Kek__Request__BodyCase type, void *body) {
        Kek__Request req = KEK__REQUEST__INIT;

        req.body_case = type;
        req.set_enabled = body; /* the oneof's members share one pointer */
        return run(e, &req);
}

/* Confirm (issue 18.1): the state an unwrap would meet, from the index; the unwrap grant; unconfirmed when old. */
static void test_confirm(Env *e) {
        static const Peer user = { .uid = 5004, .gid = 5004, .pid = 46 };
        Kek__SetEnabledRequest se = KEK__SET_ENABLED_REQUEST__INIT;
        Kek__SetGrantRequest sg = KEK__SET_GRANT_REQUEST__INIT;
        Kek__DeleteKeyRequest dk = KEK__DELETE_KEY_REQUEST__INIT;
        Kek__Grant g = KEK__GRANT__INIT;
        Kek__Response *r;

        e->d.confirm_max_age_usec = 60ULL * 1000000ULL;
        r = do_create(e, "cfm");
        is_int(error_of(r), 0, "confirm: key cfm created");
        kek__response__free_unpacked(r, NULL);
        r = do_confirm(e, "cfm", 1);
        ok(r && r->id == 44 && r->body_case == KEK__RESPONSE__BODY_CONFIRM && r->confirm->confirmed &&
                   r->confirm->version == 1 && strcmp(r->confirm->key, "cfm") == 0,
           "confirm of an enabled version: confirmed");
        kek__response__free_unpacked(r, NULL);
        e->d.confirm_max_age_usec = 0;
        r = do_confirm(e, "cfm", 1);
        ok(r && r->body_case == KEK__RESPONSE__BODY_CONFIRM && !r->confirm->confirmed,
           "an index older than confirm_max_age_usec: unconfirmed (the client unwraps)");
        kek__response__free_unpacked(r, NULL);
        e->d.confirm_max_age_usec = 60ULL * 1000000ULL;
        r = do_confirm(e, "cfm", 7);
        is_int(error_of(r), -KEKERR_UNKNOWN_VERSION, "confirm of a version the key does not have: UNKNOWN_VERSION");
        kek__response__free_unpacked(r, NULL);
        r = do_confirm(e, "no-such-key", 1);
        is_int(error_of(r), -KEKERR_UNKNOWN_KEY, "confirm of an unknown key: UNKNOWN_KEY");
        kek__response__free_unpacked(r, NULL);

        /* A crypto user needs the unwrap grant; revoking it refuses the confirmation. */
        peer = &user;
        r = do_confirm(e, "cfm", 1);
        peer = &root_peer;
        is_int(error_of(r), -KEKERR_PERMISSION_DENIED, "confirm by a uid without a grant: PERMISSION_DENIED");
        kek__response__free_unpacked(r, NULL);
        g.id = 5004;
        g.ops = 4; /* GRANT_UNWRAP */
        sg.key = (char *) "cfm";
        sg.grant = &g;
        r = do_root(e, KEK__REQUEST__BODY_SET_GRANT, &sg);
        is_int(error_of(r), 0, "root grants uid 5004 unwrap on cfm");
        kek__response__free_unpacked(r, NULL);
        peer = &user;
        r = do_confirm(e, "cfm", 1);
        peer = &root_peer;
        ok(r && r->body_case == KEK__RESPONSE__BODY_CONFIRM && r->confirm->confirmed, "... then its confirm is confirmed");
        kek__response__free_unpacked(r, NULL);
        sg.revoke = true;
        r = do_root(e, KEK__REQUEST__BODY_SET_GRANT, &sg);
        is_int(error_of(r), 0, "root revokes the grant");
        kek__response__free_unpacked(r, NULL);
        peer = &user;
        r = do_confirm(e, "cfm", 1);
        peer = &root_peer;
        is_int(error_of(r), -KEKERR_PERMISSION_DENIED, "... then its confirm is PERMISSION_DENIED");
        kek__response__free_unpacked(r, NULL);

        se.key = (char *) "cfm";
        se.version = 1;
        r = do_root(e, KEK__REQUEST__BODY_SET_ENABLED, &se);
        is_int(error_of(r), 0, "version 1 of cfm disabled");
        kek__response__free_unpacked(r, NULL);
        r = do_confirm(e, "cfm", 1);
        is_int(error_of(r), -KEKERR_KEY_DISABLED, "confirm of a disabled version: KEY_DISABLED");
        kek__response__free_unpacked(r, NULL);
        se.enabled = true;
        r = do_root(e, KEK__REQUEST__BODY_SET_ENABLED, &se);
        kek__response__free_unpacked(r, NULL);
        se.version = 0;
        se.enabled = false;
        r = do_root(e, KEK__REQUEST__BODY_SET_ENABLED, &se);
        kek__response__free_unpacked(r, NULL);
        r = do_confirm(e, "cfm", 1);
        is_int(error_of(r), -KEKERR_KEY_DISABLED, "confirm of a version of a disabled key: KEY_DISABLED");
        kek__response__free_unpacked(r, NULL);
        se.enabled = true;
        r = do_root(e, KEK__REQUEST__BODY_SET_ENABLED, &se);
        kek__response__free_unpacked(r, NULL);
        dk.key = (char *) "cfm";
        r = do_root(e, KEK__REQUEST__BODY_DELETE_KEY, &dk);
        is_int(error_of(r), 0, "cfm deleted");
        kek__response__free_unpacked(r, NULL);
        r = do_confirm(e, "cfm", 1);
        is_int(error_of(r), -KEKERR_KEY_DELETED, "confirm of a version of a deleted key: KEY_DELETED");
        kek__response__free_unpacked(r, NULL);
}

int main(void) {
        Env e = {};
        Kek__Response *r;
        uint8_t aeks[N_AEKS][64];
        size_t lens[N_AEKS];
        ProtobufCBinaryData blobs[N_AEKS] = {};
        char ctx[N_AEKS][32];
        const char *why = NULL;
        int bad;

        if (token_setup(&e.token, "dispatch") < 0) {
                ok(false, "set up a SoftHSM2 token");
                return tap_done();
        }
        ok(secret_heap_init(1 << 20) >= 0, "secure heap initialised");
        ok(pin_read(e.token.pin_file, &e.pin, &why) == 0, "PIN read from its 0600 file");
        if (!ok(env_open(&e) == 0, "HSM opened and keystore loaded"))
                goto finish;
        is_int(keystore_n_keys(e.ks), 0, "fresh token holds no keys");

        /* create */
        r = do_create(&e, "acct1");
        ok(r && r->body_case == KEK__RESPONSE__BODY_KEY_INFO && r->id == 11, "create answers KeyInfo with the request id");
        ok(r && r->key_info && strcmp(r->key_info->key->name, "acct1") == 0 && r->key_info->key->current_version == 1 &&
                   r->key_info->key->n_versions == 1 && r->key_info->key->versions[0]->enabled &&
                   r->key_info->key->created_usec == fixed_now(),
           "created key has name, version 1 enabled, creation time");
        kek__response__free_unpacked(r, NULL);
        r = do_create(&e, "acct1");
        is_int(error_of(r), -KEKERR_KEY_EXISTS, "create of an existing name: KEY_EXISTS");
        ok(r && r->id == 11 && strstr(r->error->message, "acct1"), "KEY_EXISTS message names the key: %s",
           r ? r->error->message : "");
        kek__response__free_unpacked(r, NULL);
        r = do_create(&e, "-bad name");
        is_int(error_of(r), -KEKERR_INVALID_ARGUMENT, "create with an invalid name: INVALID_ARGUMENT");
        kek__response__free_unpacked(r, NULL);

        /* wrap / unwrap many random AEKs */
        bad = 0;
        for (int i = 0; i < N_AEKS; i++) {
                lens[i] = i % 10 == 0 ? 1 + (size_t) i % 64 : 32;
                RAND_bytes(aeks[i], (int) lens[i]);
                snprintf(ctx[i], sizeof(ctx[i]), "account-%d", i);
                r = do_wrap(&e, "acct1", aeks[i], lens[i], ctx[i], 0);
                if (!r || r->body_case != KEK__RESPONSE__BODY_WRAP || r->wrap->version != 1) {
                        bad++;
                        blobs[i] = (ProtobufCBinaryData) {};
                } else {
                        blobs[i].len = r->wrap->blob.len;
                        blobs[i].data = malloc(blobs[i].len);
                        memcpy(blobs[i].data, r->wrap->blob.data, blobs[i].len);
                }
                if (r)
                        kek__response__free_unpacked(r, NULL);
        }
        is_int(bad, 0, "%d AEKs wrapped under version 1", N_AEKS);
        ok(blobs[0].len == 2 + 5 + 4 + 12 + lens[0] + 16, "blob length is header + IV + plaintext + tag (%zu)", blobs[0].len);
        bad = 0;
        for (int i = 0; i < N_AEKS; i++)
                bad += !unwrap_matches(&e, &blobs[i], aeks[i], lens[i], ctx[i]);
        is_int(bad, 0, "%d AEKs unwrap to their plaintext", N_AEKS);

        /* the same AEK twice: different IVs, different blobs */
        r = do_wrap(&e, "acct1", aeks[1], lens[1], ctx[1], 0);
        ok(r && r->body_case == KEK__RESPONSE__BODY_WRAP && r->wrap->blob.len == blobs[1].len &&
                   memcmp(r->wrap->blob.data, blobs[1].data, blobs[1].len) != 0,
           "wrapping the same AEK again gives a different blob (fresh IV)");
        kek__response__free_unpacked(r, NULL);

        /* refusals */
        r = do_unwrap(&e, blobs[1].data, blobs[1].len, "account-2");
        is_int(error_of(r), -KEKERR_BLOB_INVALID, "unwrap with the wrong context: BLOB_INVALID");
        kek__response__free_unpacked(r, NULL);
        r = do_unwrap(&e, blobs[1].data, blobs[1].len, NULL);
        is_int(error_of(r), -KEKERR_BLOB_INVALID, "unwrap without the context: BLOB_INVALID");
        kek__response__free_unpacked(r, NULL);

        bad = 0;
        for (size_t pos = 0; pos < blobs[1].len; pos++) {
                uint8_t t[BLOB_MAX_SIZE];
                int err;

                memcpy(t, blobs[1].data, blobs[1].len);
                t[pos] ^= 0x01;
                r = do_unwrap(&e, t, blobs[1].len, ctx[1]);
                err = error_of(r);
                /* name-length and name bytes may name another (unknown) key, version bytes an unknown version */
                if (!(err == -KEKERR_BLOB_INVALID || (pos >= 1 && pos < 7 && err == -KEKERR_UNKNOWN_KEY) ||
                      (pos >= 7 && pos < 11 && err == -KEKERR_UNKNOWN_VERSION))) {
                        diag("flipping byte %zu gave %s", pos, kekerr_name(err) ?: "success");
                        bad++;
                }
                if (r)
                        kek__response__free_unpacked(r, NULL);
        }
        is_int(bad, 0, "flipping any one bit of a blob is refused with the documented error");

        r = do_unwrap(&e, blobs[1].data, 20, ctx[1]);
        is_int(error_of(r), -KEKERR_BLOB_INVALID, "truncated blob: BLOB_INVALID");
        kek__response__free_unpacked(r, NULL);

        r = do_wrap(&e, "nokey", aeks[0], 32, NULL, 0);
        is_int(error_of(r), -KEKERR_UNKNOWN_KEY, "wrap with an unknown key: UNKNOWN_KEY");
        ok(r && strstr(r->error->message, "nokey"), "UNKNOWN_KEY message names the key");
        kek__response__free_unpacked(r, NULL);
        r = do_wrap(&e, "acct1", aeks[0], 32, NULL, 2);
        is_int(error_of(r), -KEKERR_UNKNOWN_VERSION, "wrap pinned to a version that does not exist: UNKNOWN_VERSION");
        kek__response__free_unpacked(r, NULL);
        {
                uint8_t big[AEK_MAX_SIZE + 1] = {};
                char bigctx[CONTEXT_MAX_SIZE + 2];

                r = do_wrap(&e, "acct1", big, sizeof(big), NULL, 0);
                is_int(error_of(r), -KEKERR_INVALID_ARGUMENT, "plaintext above %u bytes: INVALID_ARGUMENT", AEK_MAX_SIZE);
                kek__response__free_unpacked(r, NULL);
                r = do_wrap(&e, "acct1", big, 0, NULL, 0);
                is_int(error_of(r), -KEKERR_INVALID_ARGUMENT, "empty plaintext: INVALID_ARGUMENT");
                kek__response__free_unpacked(r, NULL);
                memset(bigctx, 'c', sizeof(bigctx) - 1);
                bigctx[sizeof(bigctx) - 1] = 0;
                r = do_wrap(&e, "acct1", big, 32, bigctx, 0);
                is_int(error_of(r), -KEKERR_INVALID_ARGUMENT, "context above %u bytes: INVALID_ARGUMENT", CONTEXT_MAX_SIZE);
                kek__response__free_unpacked(r, NULL);
        }

        /* a blob of one key relabelled as another key does not authenticate */
        r = do_create(&e, "acct2");
        kek__response__free_unpacked(r, NULL);
        {
                uint8_t t[BLOB_MAX_SIZE];

                memcpy(t, blobs[1].data, blobs[1].len);
                t[6] = '2'; /* "acct1" -> "acct2" */
                r = do_unwrap(&e, t, blobs[1].len, ctx[1]);
                is_int(error_of(r), -KEKERR_BLOB_INVALID, "blob moved to another key's name: BLOB_INVALID");
                kek__response__free_unpacked(r, NULL);
        }

        /* get-key-version, get-key, list */
        {
                Kek__Request req = KEK__REQUEST__INIT;
                Kek__GetKeyVersionRequest g = KEK__GET_KEY_VERSION_REQUEST__INIT;
                Kek__GetKeyRequest gk = KEK__GET_KEY_REQUEST__INIT;
                Kek__ListKeysRequest l = KEK__LIST_KEYS_REQUEST__INIT;

                g.key = "acct1";
                req.id = 44;
                req.body_case = KEK__REQUEST__BODY_GET_KEY_VERSION;
                req.get_key_version = &g;
                r = run(&e, &req);
                ok(r && r->id == 44 && r->body_case == KEK__RESPONSE__BODY_GET_KEY_VERSION &&
                           r->get_key_version->current_version == 1 &&
                           r->get_key_version->state == KEK__KEY_STATE__ENABLED && !r->get_key_version->recoverable,
                   "get-key-version: version 1, enabled, not recoverable (no vault policy yet)");
                kek__response__free_unpacked(r, NULL);
                g.key = "nokey";
                r = run(&e, &req);
                is_int(error_of(r), -KEKERR_UNKNOWN_KEY, "get-key-version of an unknown key: UNKNOWN_KEY");
                kek__response__free_unpacked(r, NULL);

                gk.key = "acct2";
                req.body_case = KEK__REQUEST__BODY_GET_KEY;
                req.get_key = &gk;
                r = run(&e, &req);
                ok(r && r->body_case == KEK__RESPONSE__BODY_KEY_INFO && strcmp(r->key_info->key->name, "acct2") == 0,
                   "get-key returns the key");
                kek__response__free_unpacked(r, NULL);

                req.body_case = KEK__REQUEST__BODY_LIST_KEYS;
                req.list_keys = &l;
                r = run(&e, &req);
                ok(r && r->body_case == KEK__RESPONSE__BODY_LIST_KEYS && r->list_keys->n_keys == 2 &&
                           strcmp(r->list_keys->keys[0]->name, "acct1") == 0 &&
                           strcmp(r->list_keys->keys[1]->name, "acct2") == 0,
                   "list returns both keys in name order");
                kek__response__free_unpacked(r, NULL);
        }

        /* malformed input */
        {
                static const uint8_t garbage[] = { 0xff, 0xff, 0xff, 0xff, 0x0f };
                static const uint8_t empty_body[] = { 0x08, 0x05 };                   /* id = 5, no body */
                static const uint8_t unknown_op[] = { 0x08, 0x06, 0xf8, 0x06, 0x01 }; /* id = 6, field 111 = 1 */
                int q;

                q = run_raw(&e, garbage, sizeof(garbage), &r);
                is_int(q, -KEKERR_MALFORMED_REQUEST, "undecodable payload: dispatch asks to close the connection");
                ok(r && r->id == 0 && error_of(r) == -KEKERR_MALFORMED_REQUEST, "... after replying MALFORMED_REQUEST with id 0");
                if (r)
                        kek__response__free_unpacked(r, NULL);
                q = run_raw(&e, empty_body, sizeof(empty_body), &r);
                is_int(q, 0, "request without an operation: connection stays open");
                ok(r && r->id == 5 && error_of(r) == -KEKERR_MALFORMED_REQUEST, "... and gets MALFORMED_REQUEST with its id");
                if (r)
                        kek__response__free_unpacked(r, NULL);
                q = run_raw(&e, unknown_op, sizeof(unknown_op), &r);
                is_int(q, 0, "request of an unknown type: connection stays open");
                ok(r && r->id == 6 && error_of(r) == -KEKERR_UNSUPPORTED, "... and gets UNSUPPORTED with its id");
                if (r)
                        kek__response__free_unpacked(r, NULL);
        }

        /* batches: each item has its own result, in order */
        {
                Kek__Request req = KEK__REQUEST__INIT;
                Kek__BatchWrapRequest bw = KEK__BATCH_WRAP_REQUEST__INIT;
                Kek__BatchRewrapRequest br = KEK__BATCH_REWRAP_REQUEST__INIT;
                Kek__WrapRequest w[3] = { KEK__WRAP_REQUEST__INIT, KEK__WRAP_REQUEST__INIT, KEK__WRAP_REQUEST__INIT };
                Kek__WrapRequest *wp[3] = { &w[0], &w[1], &w[2] };
                Kek__RewrapRequest rw[2] = { KEK__REWRAP_REQUEST__INIT, KEK__REWRAP_REQUEST__INIT };
                Kek__RewrapRequest *rwp[2] = { &rw[0], &rw[1] };
                const Key *k;

                for (int i = 0; i < 3; i++) {
                        w[i].key = i == 1 ? "nokey" : "acct1";
                        w[i].plaintext = (ProtobufCBinaryData) { 32, aeks[i] };
                        w[i].context = (ProtobufCBinaryData) { strlen(ctx[i]), (uint8_t *) ctx[i] };
                }
                bw.n_items = 3;
                bw.items = wp;
                req.id = 55;
                req.body_case = KEK__REQUEST__BODY_BATCH_WRAP;
                req.batch_wrap = &bw;
                r = run(&e, &req);
                ok(r && r->body_case == KEK__RESPONSE__BODY_BATCH && r->batch->n_items == 3,
                   "batch wrap answers one result per item");
                ok(r && r->batch->n_items == 3 && r->batch->items[0]->wrap && !r->batch->items[0]->error &&
                           r->batch->items[1]->error && r->batch->items[1]->error->code == KEK__ERROR_CODE__UNKNOWN_KEY &&
                           r->batch->items[2]->wrap,
                   "batch wrap: the item with an unknown key fails alone with UNKNOWN_KEY");
                if (r)
                        kek__response__free_unpacked(r, NULL);

                ok(keystore_rotate(e.ks, "acct1", fixed_now(), &k) == 0 && k->current_version == 2, "rotate acct1 to version 2");
                rw[0].blob = blobs[3];
                rw[0].context = (ProtobufCBinaryData) { strlen(ctx[3]), (uint8_t *) ctx[3] };
                rw[1].blob = blobs[4];
                rw[1].context = (ProtobufCBinaryData) { 3, (uint8_t *) "bad" };
                br.n_items = 2;
                br.items = rwp;
                req.body_case = KEK__REQUEST__BODY_BATCH_REWRAP;
                req.batch_rewrap = &br;
                r = run(&e, &req);
                ok(r && r->body_case == KEK__RESPONSE__BODY_BATCH && r->batch->n_items == 2 && r->batch->items[0]->rewrap &&
                           r->batch->items[0]->rewrap->version == 2 && r->batch->items[0]->rewrap->old_version == 1 &&
                           r->batch->items[1]->error && r->batch->items[1]->error->code == KEK__ERROR_CODE__BLOB_INVALID,
                   "batch rewrap: version 1 -> 2 for the good item, BLOB_INVALID for the wrong context");
                if (r && r->batch->n_items == 2 && r->batch->items[0]->rewrap)
                        ok(unwrap_matches(&e, &r->batch->items[0]->rewrap->blob, aeks[3], lens[3], ctx[3]),
                           "the rewrapped blob unwraps to the same AEK");
                if (r)
                        kek__response__free_unpacked(r, NULL);
        }

        test_role_matrix(&e);
        {
                /* Data plane: a grant is what lets a crypto user (or an officer) wrap. */
                static const Peer user = { .uid = 5001, .gid = 5001, .pid = 43 };
                Kek__Request req = KEK__REQUEST__INIT;
                Kek__SetGrantRequest sg = KEK__SET_GRANT_REQUEST__INIT;
                Kek__Grant g = KEK__GRANT__INIT;
                uint64_t lookups;

                peer = &user;
                r = do_wrap(&e, "acct1", aeks[0], lens[0], ctx[0], 0);
                peer = &root_peer;
                is_int(error_of(r), -KEKERR_PERMISSION_DENIED, "wrap by uid 5001 without a grant: PERMISSION_DENIED");
                kek__response__free_unpacked(r, NULL);
                g.id = 5001;
                g.ops = 2; /* GRANT_WRAP */
                sg.key = (char *) "acct1";
                sg.grant = &g;
                req.body_case = KEK__REQUEST__BODY_SET_GRANT;
                req.set_grant = &sg;
                r = run(&e, &req);
                ok(r && r->body_case == KEK__RESPONSE__BODY_KEY_INFO && r->key_info->key->n_grants == 1,
                   "root grants uid 5001 wrap on acct1");
                kek__response__free_unpacked(r, NULL);
                peer = &user;
                lookups = keystore_lookups(e.ks);
                r = do_wrap(&e, "acct1", aeks[0], lens[0], ctx[0], 0);
                is_int(error_of(r), 0, "wrap by uid 5001 with the grant succeeds");
                /* Authorize looks the key up for the grant check; prepare uses what it found. */
                is_int((int) (keystore_lookups(e.ks) - lookups), 1, "... looking its key up once");
                if (r && r->body_case == KEK__RESPONSE__BODY_WRAP) {
                        Kek__Response *u = do_unwrap(&e, r->wrap->blob.data, r->wrap->blob.len, ctx[0]);

                        is_int(error_of(u), -KEKERR_PERMISSION_DENIED, "... but not unwrap (wrap-only grant)");
                        kek__response__free_unpacked(u, NULL);
                }
                kek__response__free_unpacked(r, NULL);
                {
                        Kek__BatchWrapRequest b = KEK__BATCH_WRAP_REQUEST__INIT;
                        Kek__WrapRequest w[3], *items[3];

                        for (int i = 0; i < 3; i++) {
                                kek__wrap_request__init(&w[i]);
                                w[i].key = (char *) "acct1";
                                w[i].plaintext = (ProtobufCBinaryData) { lens[i], (uint8_t *) aeks[i] };
                                items[i] = &w[i];
                        }
                        b.n_items = 3;
                        b.items = items;
                        req = (Kek__Request) KEK__REQUEST__INIT;
                        req.body_case = KEK__REQUEST__BODY_BATCH_WRAP;
                        req.batch_wrap = &b;
                        lookups = keystore_lookups(e.ks);
                        r = run(&e, &req);
                        ok(r && r->body_case == KEK__RESPONSE__BODY_BATCH && r->batch->n_items == 3 && r->batch->items[0]->wrap &&
                                   r->batch->items[1]->wrap && r->batch->items[2]->wrap,
                           "batch of 3 wraps by uid 5001 with the grant succeeds");
                        is_int((int) (keystore_lookups(e.ks) - lookups), 3, "... looking the key up once per item");
                        kek__response__free_unpacked(r, NULL);
                }
                {
                        Kek__GetKeyVersionRequest gv = KEK__GET_KEY_VERSION_REQUEST__INIT;

                        gv.key = (char *) "acct1";
                        req = (Kek__Request) KEK__REQUEST__INIT;
                        req.body_case = KEK__REQUEST__BODY_GET_KEY_VERSION;
                        req.get_key_version = &gv;
                        lookups = keystore_lookups(e.ks);
                        r = run(&e, &req);
                        ok(r && r->body_case == KEK__RESPONSE__BODY_GET_KEY_VERSION, "get-key-version by uid 5001 with a grant");
                        is_int((int) (keystore_lookups(e.ks) - lookups), 1, "... looking the key up once");
                        kek__response__free_unpacked(r, NULL);
                }
                peer = &root_peer;
                lookups = keystore_lookups(e.ks);
                r = do_wrap(&e, "acct1", aeks[0], lens[0], ctx[0], 0);
                is_int(error_of(r), 0, "wrap by root (no grant needed)");
                is_int((int) (keystore_lookups(e.ks) - lookups), 1, "... looking its key up once, in prepare");
                kek__response__free_unpacked(r, NULL);
        }

        /* restart: a new HSM session and keystore find the keys, old blobs unwrap */
        env_close(&e);
        if (ok(env_open(&e) == 0, "HSM and keystore reopened")) {
                const Key *k = NULL;

                is_int(keystore_n_keys(e.ks), 3, "all three keys (acct1, acct2, matrix-key) found in the token after reopening");
                ok(keystore_find(e.ks, "acct1", &k) == 0 && k->current_version == 2 && k->n_versions == 2,
                   "acct1 still has both versions, version 2 current");
                bad = 0;
                for (int i = 0; i < N_AEKS; i++)
                        bad += !unwrap_matches(&e, &blobs[i], aeks[i], lens[i], ctx[i]);
                is_int(bad, 0, "all %d blobs unwrap after reopening", N_AEKS);
                test_renewal_step(&e);
                test_prepare_refusal(&e);
                test_lookup_reuse(&e);
                test_confirm(&e);
        }

finish:
        for (int i = 0; i < N_AEKS; i++)
                free(blobs[i].data);
        env_close(&e);
        secret_free(e.pin);
        token_done(&e.token);
        return tap_done();
}
