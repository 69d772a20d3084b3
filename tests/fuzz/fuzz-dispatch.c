/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libFuzzer target: frame cutting and request dispatch end to end, through
 * the real keystore, access checks, dual control, audit and pkcs11/hsm.c
 * (loading the module through p11-kit as kekd does) on the in-memory mock HSM
 * of tests/mock-p11, so wraps and unwraps authenticate for real.
 * LLVMFuzzerInitialize() makes a token with three keys and snapshots it:
 * "alpha" (versions 1 and 2; uid 1000 may do everything), "beta" (a wrap
 * budget of 4; group 2000 may get, wrap and unwrap) and "gamma" (soft-deleted,
 * no grant). Every input starts from that snapshot with a fresh Keystore, and
 * RAND_bytes() is replaced by a stream that restarts with every input, so an
 * input replays exactly, crashes reproduce from the input alone, and an
 * Approve in an input can name the id an earlier SubmitApproval got.
 *
 * Input: byte 0 picks the peer of each frame, two bits per frame, frame i
 * taking bits 2(i % 4)..2(i % 4)+1: 0 a crypto user (uid 1000, in group 2000),
 * 1 an officer (uid 1001), 2 an administrator (uid 1002), 3 root. Byte 1
 * moves the clock after each frame by (byte & 0x3f) days; with 0x40 the
 * Dispatcher keeps metrics (for Status) and with 0x80 keystore_maintain() runs
 * after each frame, as the daemon's timer does. The rest
 * is cut into frames against max_frame as the transport does; a framing
 * error or an undecodable Request ends the input, as it closes the
 * connection in kekd.
 *
 * Aborts when dispatch_frame() breaks its contract (dispatch.h) or a promise
 * of the protocol and access model (kek.proto, access.h): exactly one
 * response frame, a decodable Response with the request's id (0 for an
 * undecodable payload), an error exactly when the outcome says so,
 * PERMISSION_DENIED for an operation above the peer's role, data-plane
 * success only with a grant, grants shown to officers only, the response type
 * that belongs to the request, blobs that unwrap again to the wrapped
 * plaintext, rewraps that keep the plaintext, approvals applied at most once
 * and never by their requester, Watch events that decode, and "check"
 * finding no problem in a token that only this kekd changed.
 *
 * The blobs in corpus-dispatch/ authenticate under the snapshot's keys: the
 * mock derives key values deterministically, so a change to the set-up here
 * or to the mock's generator invalidates them; rebuild the seeds with
 * "tests/fuzz/build.sh SRCDIR BUILDDIR corpus" (gen-corpus-dispatch.c).
 * FUZZ_DISPATCH_LOG=1 shows kekd's log and audit lines (otherwise dropped),
 * FUZZ_DISPATCH_TRACE=1 one line per request with its result.
 */
#include "config.h"

#include <dlfcn.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>
#include <openssl/sha.h>

#include "common/kekerr.h"
#include "daemon/access.h"
#include "daemon/audit.h"
#include "daemon/clock.h"
#include "daemon/dispatch.h"
#include "daemon/log.h"
#include "daemon/metrics.h"
#include "proto/blob.h"
#include "proto/frame.h"
#include "proto/kek.pb-c.h"
#include "proto/wirecheck.h"
#include "tests/mock-p11/mock-p11.h"

#ifndef MOCK_P11_MODULE
#define MOCK_P11_MODULE "mock-p11.so"
#endif

/* As kekd's default: room for Request > SubmitApproval > Request ... some 15000 levels deep. */
#define FUZZ_MAX_FRAME FRAME_MAX_DEFAULT
#define FUZZ_EPOCH_USEC (1700000000ULL * USEC_PER_SEC)
#define FUZZ_OWNER "fuzz-host:1"
#define FUZZ_SECURE_HEAP (1024u * 1024u)   /* as kekd */
#define FUZZ_USER_UID 1000u
#define FUZZ_USER_GROUP 2000u
#define FUZZ_APPROVALS_MAX 256u

static const Peer peers[4] = {
        { .uid = FUZZ_USER_UID, .gid = FUZZ_USER_UID, .pid = 10, .groups = { FUZZ_USER_GROUP }, .n_groups = 1 },
        { .uid = 1001, .gid = 1001, .pid = 11, .officer = true },
        { .uid = 1002, .gid = 1002, .pid = 12, .admin = true },
        { .uid = 0, .gid = 0, .pid = 13, .superuser = true },
};

typedef struct Submitted {
        char id[64];
        uid_t requester;
        Kek__Request__BodyCase inner;
        bool done;              /* approved or cancelled */
} Submitted;

static struct {
        const char *module;
        void *mock;
        mock_p11_snapshot_t snapshot;
        mock_p11_reset_t reset;
        mock_p11_clear_t clear;
        Secret *pin;
        Hsm *hsm;
        Keystore *ks;
        Audit *audit;
        Metrics *metrics;
        Dispatcher d;
        uint64_t now;
        uint64_t rand_counter;
        bool watching;
        uint64_t watch_id;
        FrameBuf events;
        Submitted submitted[FUZZ_APPROVALS_MAX];
        size_t n_submitted;
        FILE *real_stderr, *devnull;
        bool trace;                     /* $FUZZ_DISPATCH_TRACE: one line per request */
        unsigned n_ok, n_errors;        /* responses of the last input, for gen-corpus-dispatch */
} fz;

/* kekd's log and audit records go to stderr: keep them out of the fuzzer's output. */
static void quiet(bool on) {
        if (fz.devnull)
                stderr = on ? fz.devnull : fz.real_stderr;
}

_printf_(1, 2) __attribute__((noreturn)) static void fail(const char *fmt, ...) {
        va_list ap;

        quiet(false);
        fputs("fuzz-dispatch: contract violated: ", stderr);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
        abort();
}

/*
 * The daemon's randomness (IVs, approval ids, retry jitter): SHA-256 in
 * counter mode, restarted for every input. Only in this fuzzer.
 */
int RAND_bytes(unsigned char *buf, int num) {
        while (num > 0) {
                uint8_t in[16] = "fuzz-rand", block[SHA256_DIGEST_LENGTH];
                int k = num < (int) sizeof(block) ? num : (int) sizeof(block);

                for (int i = 0; i < 8; i++)
                        in[8 + i] = (uint8_t) (fz.rand_counter >> (8 * i));
                fz.rand_counter++;
                SHA256(in, sizeof(in), block);
                memcpy(buf, block, (size_t) k);
                buf += k;
                num -= k;
        }
        return 1;
}

static uint64_t fuzz_now(void) {
        return fz.now;
}

/* Who may run an operation (access.h); ROLE_CRYPTO_USER still needs a grant for keyed data-plane requests. */
static Role required_role(Kek__Request__BodyCase c) {
        switch (c) {
        case KEK__REQUEST__BODY_CREATE_KEY:
        case KEK__REQUEST__BODY_ROTATE_KEY:
        case KEK__REQUEST__BODY_SET_ROTATION_POLICY:
        case KEK__REQUEST__BODY_SET_ENABLED:
        case KEK__REQUEST__BODY_DELETE_KEY:
        case KEK__REQUEST__BODY_RECOVER_KEY:
        case KEK__REQUEST__BODY_PURGE_KEY:
        case KEK__REQUEST__BODY_CHECK:
        case KEK__REQUEST__BODY_SUBMIT_APPROVAL:
        case KEK__REQUEST__BODY_APPROVE:
        case KEK__REQUEST__BODY_CANCEL_APPROVAL:
        case KEK__REQUEST__BODY_LIST_APPROVALS:
        case KEK__REQUEST__BODY_STATUS:
                return ROLE_OFFICER;
        case KEK__REQUEST__BODY_SET_VAULT_POLICY:
        case KEK__REQUEST__BODY_SET_GRANT:
                return ROLE_ADMIN;
        default:
                return ROLE_CRYPTO_USER;
        }
}

/* The Response body that answers a successful request (kek.proto). */
static Kek__Response__BodyCase expected_body(Kek__Request__BodyCase c) {
        switch (c) {
        case KEK__REQUEST__BODY_WRAP:
                return KEK__RESPONSE__BODY_WRAP;
        case KEK__REQUEST__BODY_UNWRAP:
                return KEK__RESPONSE__BODY_UNWRAP;
        case KEK__REQUEST__BODY_REWRAP:
                return KEK__RESPONSE__BODY_REWRAP;
        case KEK__REQUEST__BODY_BATCH_WRAP:
        case KEK__REQUEST__BODY_BATCH_UNWRAP:
        case KEK__REQUEST__BODY_BATCH_REWRAP:
                return KEK__RESPONSE__BODY_BATCH;
        case KEK__REQUEST__BODY_GET_KEY_VERSION:
                return KEK__RESPONSE__BODY_GET_KEY_VERSION;
        case KEK__REQUEST__BODY_CREATE_KEY:
        case KEK__REQUEST__BODY_GET_KEY:
        case KEK__REQUEST__BODY_ROTATE_KEY:
        case KEK__REQUEST__BODY_SET_ROTATION_POLICY:
        case KEK__REQUEST__BODY_SET_ENABLED:
        case KEK__REQUEST__BODY_DELETE_KEY:
        case KEK__REQUEST__BODY_RECOVER_KEY:
        case KEK__REQUEST__BODY_SET_GRANT:
                return KEK__RESPONSE__BODY_KEY_INFO;
        case KEK__REQUEST__BODY_LIST_KEYS:
                return KEK__RESPONSE__BODY_LIST_KEYS;
        case KEK__REQUEST__BODY_PURGE_KEY:
        case KEK__REQUEST__BODY_CANCEL_APPROVAL:
                return KEK__RESPONSE__BODY_EMPTY;
        case KEK__REQUEST__BODY_GET_VAULT_POLICY:
        case KEK__REQUEST__BODY_SET_VAULT_POLICY:
                return KEK__RESPONSE__BODY_VAULT_POLICY;
        case KEK__REQUEST__BODY_CHECK:
                return KEK__RESPONSE__BODY_CHECK;
        case KEK__REQUEST__BODY_WATCH:
                return KEK__RESPONSE__BODY_EVENT;
        case KEK__REQUEST__BODY_SUBMIT_APPROVAL:
                return KEK__RESPONSE__BODY_APPROVAL;
        case KEK__REQUEST__BODY_LIST_APPROVALS:
                return KEK__RESPONSE__BODY_APPROVALS;
        case KEK__REQUEST__BODY_STATUS:
                return KEK__RESPONSE__BODY_STATUS;
        default:
                return KEK__RESPONSE__BODY__NOT_SET; /* APPROVE: the approved request's; or not an operation */
        }
}

/* The key a keyed control request or get-key names. */
static const char *request_key_name(const Kek__Request *req) {
        switch (req->body_case) {
        case KEK__REQUEST__BODY_CREATE_KEY:
                return req->create_key->key;
        case KEK__REQUEST__BODY_GET_KEY:
                return req->get_key->key;
        case KEK__REQUEST__BODY_ROTATE_KEY:
                return req->rotate_key->key;
        case KEK__REQUEST__BODY_SET_ROTATION_POLICY:
                return req->set_rotation_policy->key;
        case KEK__REQUEST__BODY_SET_ENABLED:
                return req->set_enabled->key;
        case KEK__REQUEST__BODY_DELETE_KEY:
                return req->delete_key->key;
        case KEK__REQUEST__BODY_RECOVER_KEY:
                return req->recover_key->key;
        case KEK__REQUEST__BODY_SET_GRANT:
                return req->set_grant->key;
        default:
                return NULL;
        }
}

static Submitted *submitted_find(const char *id) {
        for (size_t i = 0; i < fz.n_submitted; i++)
                if (strcmp(fz.submitted[i].id, id) == 0)
                        return &fz.submitted[i];
        return NULL;
}

/* Cuts the one frame appended at out[before..] and decodes it; the frame is consumed. */
static Kek__Response *take_response(FrameBuf *out, size_t before, size_t max_frame, const char *what) {
        const uint8_t *p;
        size_t appended, len;
        Kek__Response *resp;

        if (frame_buf_size(out) < before)
                fail("%s: the output buffer shrank", what);
        appended = frame_buf_size(out) - before;
        if (frame_parse(frame_buf_head(out) + before, appended, max_frame, &p, &len) != 1 ||
            FRAME_HEADER_SIZE + len != appended)
                fail("%s: %zu bytes appended are not exactly one frame of at most %zu bytes", what, appended, max_frame);
        resp = kek__response__unpack(NULL, len, p);
        if (!resp)
                fail("%s: the appended frame is not a decodable Response", what);
        frame_buf_consume(out, frame_buf_size(out));
        return resp;
}

static void check_error(const Kek__Error *e, const char *what) {
        if (!e || (int) e->code <= KEK__ERROR_CODE__OK || (int) e->code >= _KEKERR_MAX - KEKERR_BASE || !e->message ||
            !e->message[0])
                fail("%s: error without a valid code and message", what);
}

/* Data-plane success needs a grant of op on the key, except for root (access.h). */
static void check_granted(const Peer *peer, const char *key, uint32_t op, const char *what) {
        const Key *k;

        if (peer->superuser)
                return;
        if (keystore_find(fz.ks, key, &k) < 0 || !grants_allow(k->grants, k->n_grants, peer, op))
                fail("%s: uid %u succeeded on key '%s' without a grant (ops 0x%x)", what, (unsigned) peer->uid, key, op);
}

/* A blob we were given must unwrap, under the same context, to the expected plaintext (or any, if NULL). */
static void check_unwraps(const ProtobufCBinaryData *blob, const ProtobufCBinaryData *ctx, const uint8_t *pt,
                          size_t pt_len, Secret **ret, const char *what) {
        _cleanup_secret_ Secret *out = NULL;
        BlobView v;
        int r;

        r = keystore_unwrap(fz.ks, blob->data, blob->len, ctx->data, ctx->len, fz.now, &out, &v);
        if (r < 0)
                fail("%s: the blob just returned does not unwrap: %s", what, kekerr_name(r) ?: strerror(-r));
        if (pt && (out->len != pt_len || memcmp(out->data, pt, pt_len) != 0))
                fail("%s: the blob unwraps to another plaintext", what);
        if (ret)
                *ret = TAKE_PTR(out);
}

static void check_wrap(const Peer *peer, const Kek__WrapRequest *w, const Kek__WrapResponse *resp, const char *what) {
        BlobView v;

        if (!resp || blob_parse(resp->blob.data, resp->blob.len, &v) < 0)
                fail("%s: wrap answered with no parseable blob", what);
        if (strcmp(v.key, w->key) != 0 || v.version != resp->version || (w->version && w->version != resp->version))
                fail("%s: blob of key '%s' version %u for a wrap with key '%s' version %u (answered %u)", what, v.key,
                     v.version, w->key, w->version, resp->version);
        if (resp->blob.len != v.header_len + BLOB_IV_SIZE + w->plaintext.len + BLOB_TAG_SIZE)
                fail("%s: blob of %zu bytes for a plaintext of %zu", what, resp->blob.len, w->plaintext.len);
        check_granted(peer, v.key, GRANT_WRAP, what);
        check_unwraps(&resp->blob, &w->context, w->plaintext.data, w->plaintext.len, NULL, what);
}

static void check_unwrap(const Peer *peer, const Kek__UnwrapRequest *u, const Kek__UnwrapResponse *resp,
                         const char *what) {
        BlobView v;

        if (!resp || blob_parse(u->blob.data, u->blob.len, &v) < 0)
                fail("%s: an unwrap of an unparseable blob succeeded", what);
        if (!resp->key || strcmp(resp->key, v.key) != 0 || resp->version != v.version)
                fail("%s: unwrap names another key or version than its blob", what);
        if (resp->plaintext.len == 0 || resp->plaintext.len > AEK_MAX_SIZE ||
            resp->plaintext.len != v.ciphertext_len - BLOB_TAG_SIZE)
                fail("%s: unwrap returned %zu bytes of plaintext", what, resp->plaintext.len);
        check_granted(peer, v.key, GRANT_UNWRAP, what);
}

static void check_rewrap(const Peer *peer, const Kek__RewrapRequest *w, const Kek__RewrapResponse *resp,
                         const char *what) {
        _cleanup_secret_ Secret *old = NULL;
        BlobView v, nv;

        if (!resp || blob_parse(w->blob.data, w->blob.len, &v) < 0 || blob_parse(resp->blob.data, resp->blob.len, &nv) < 0)
                fail("%s: rewrap of or to an unparseable blob", what);
        if (strcmp(v.key, nv.key) != 0 || resp->old_version != v.version || resp->version != nv.version)
                fail("%s: rewrap moved key '%s' v%u to key '%s' v%u (answered v%u from v%u)", what, v.key, v.version,
                     nv.key, nv.version, resp->version, resp->old_version);
        check_granted(peer, v.key, GRANT_REWRAP, what);
        /* Both blobs hold the same AEK. */
        check_unwraps(&w->blob, &w->context, NULL, 0, &old, what);
        check_unwraps(&resp->blob, &w->context, old->data, old->len, NULL, what);
}

static void check_key_info(const Peer *peer, const Kek__KeyInfo *ki, const char *what) {
        bool current = false;

        if (!ki || !ki->name || !key_name_valid(ki->name))
                fail("%s: KeyInfo without a valid name", what);
        for (size_t i = 0; i < ki->n_versions; i++) {
                if (!ki->versions[i] || ki->versions[i]->id == 0 || (i > 0 && ki->versions[i - 1]->id >= ki->versions[i]->id))
                        fail("%s: key '%s': versions not strictly ascending", what, ki->name);
                current = current || ki->versions[i]->id == ki->current_version;
        }
        if (ki->n_versions > 0 && !current)
                fail("%s: key '%s': current version %u is not among its versions", what, ki->name, ki->current_version);
        if (ki->state == KEK__KEY_STATE__DELETED && (ki->deleted_usec == 0 || ki->scheduled_purge_usec <= ki->deleted_usec))
                fail("%s: key '%s' deleted without deletion and purge dates", what, ki->name);
        if (ki->n_grants > 0 && !peer_has_role(peer, ROLE_OFFICER))
                fail("%s: key '%s': grants shown to uid %u, not an officer", what, ki->name, (unsigned) peer->uid);
        for (size_t i = 0; i < ki->n_grants; i++)
                if (!ki->grants[i] || ki->grants[i]->ops == 0 || (ki->grants[i]->ops & ~(uint32_t) GRANT_ALL))
                        fail("%s: key '%s': grant with ops 0x%x", what, ki->name, ki->grants[i] ? ki->grants[i]->ops : 0);
}

static void check_body(const Peer *peer, const Kek__Request *req, const Kek__Response *resp, const char *what) {
        const Kek__KeyInfo *ki;

        switch (req->body_case) {
        case KEK__REQUEST__BODY_WRAP:
                check_wrap(peer, req->wrap, resp->wrap, what);
                break;
        case KEK__REQUEST__BODY_UNWRAP:
                check_unwrap(peer, req->unwrap, resp->unwrap, what);
                break;
        case KEK__REQUEST__BODY_REWRAP:
                check_rewrap(peer, req->rewrap, resp->rewrap, what);
                break;
        case KEK__REQUEST__BODY_BATCH_WRAP:
        case KEK__REQUEST__BODY_BATCH_UNWRAP:
        case KEK__REQUEST__BODY_BATCH_REWRAP: {
                size_t n = req->body_case == KEK__REQUEST__BODY_BATCH_WRAP     ? req->batch_wrap->n_items
                           : req->body_case == KEK__REQUEST__BODY_BATCH_UNWRAP ? req->batch_unwrap->n_items
                                                                               : req->batch_rewrap->n_items;

                if (!resp->batch || resp->batch->n_items != n)
                        fail("%s: batch of %zu items answered with %zu results", what, n, resp->batch ? resp->batch->n_items : 0);
                for (size_t i = 0; i < n; i++) {
                        const Kek__BatchItemResult *it = resp->batch->items[i];
                        unsigned results = !!it->wrap + !!it->unwrap + !!it->rewrap;

                        if (it->error) {
                                check_error(it->error, what);
                                if (results != 0)
                                        fail("%s: batch item %zu has an error and a result", what, i);
                                continue;
                        }
                        if (results != 1)
                                fail("%s: batch item %zu has %u results", what, i, results);
                        if (req->body_case == KEK__REQUEST__BODY_BATCH_WRAP)
                                check_wrap(peer, req->batch_wrap->items[i], it->wrap, what);
                        else if (req->body_case == KEK__REQUEST__BODY_BATCH_UNWRAP)
                                check_unwrap(peer, req->batch_unwrap->items[i], it->unwrap, what);
                        else
                                check_rewrap(peer, req->batch_rewrap->items[i], it->rewrap, what);
                }
                break;
        }
        case KEK__REQUEST__BODY_GET_KEY_VERSION:
                if (!resp->get_key_version || !resp->get_key_version->key ||
                    strcmp(resp->get_key_version->key, req->get_key_version->key) != 0)
                        fail("%s: get-key-version answered for another key", what);
                check_granted(peer, req->get_key_version->key, GRANT_ALL, what);
                break;
        case KEK__REQUEST__BODY_CREATE_KEY:
        case KEK__REQUEST__BODY_GET_KEY:
        case KEK__REQUEST__BODY_ROTATE_KEY:
        case KEK__REQUEST__BODY_SET_ROTATION_POLICY:
        case KEK__REQUEST__BODY_SET_ENABLED:
        case KEK__REQUEST__BODY_DELETE_KEY:
        case KEK__REQUEST__BODY_RECOVER_KEY:
        case KEK__REQUEST__BODY_SET_GRANT: {
                const char *name = request_key_name(req);

                ki = resp->key_info ? resp->key_info->key : NULL;
                check_key_info(peer, ki, what);
                if (strcmp(ki->name, name) != 0)
                        fail("%s: KeyInfo of key '%s' for a request about '%s'", what, ki->name, name);
                if (req->body_case == KEK__REQUEST__BODY_GET_KEY && !peer_has_role(peer, ROLE_OFFICER))
                        check_granted(peer, name, GRANT_GET, what);
                if (req->body_case == KEK__REQUEST__BODY_CREATE_KEY &&
                    (ki->n_versions != 1 || ki->current_version != 1 || ki->state != KEK__KEY_STATE__ENABLED))
                        fail("%s: created key '%s' is not enabled with version 1 alone", what, name);
                if (req->body_case == KEK__REQUEST__BODY_ROTATE_KEY &&
                    (ki->n_versions == 0 || ki->versions[ki->n_versions - 1]->id != ki->current_version))
                        fail("%s: rotated key '%s' does not use its newest version", what, name);
                if (req->body_case == KEK__REQUEST__BODY_DELETE_KEY && ki->state != KEK__KEY_STATE__DELETED)
                        fail("%s: deleted key '%s' is not in state DELETED", what, name);
                if (req->body_case == KEK__REQUEST__BODY_RECOVER_KEY && ki->state == KEK__KEY_STATE__DELETED)
                        fail("%s: recovered key '%s' is still DELETED", what, name);
                if (req->body_case == KEK__REQUEST__BODY_SET_ENABLED) {
                        const Kek__SetEnabledRequest *s = req->set_enabled;

                        if (s->version == 0 &&
                            ki->state != (s->enabled ? KEK__KEY_STATE__ENABLED : KEK__KEY_STATE__DISABLED))
                                fail("%s: key '%s' not in the state just set", what, name);
                        for (size_t i = 0; s->version && i < ki->n_versions; i++)
                                if (ki->versions[i]->id == s->version && ki->versions[i]->enabled != s->enabled)
                                        fail("%s: key '%s' version %u not in the state just set", what, name, s->version);
                }
                if (req->body_case == KEK__REQUEST__BODY_SET_GRANT && req->set_grant->grant) {
                        const Kek__Grant *g = req->set_grant->grant;
                        uint32_t now_ops = 0;

                        for (size_t i = 0; i < ki->n_grants; i++)
                                if (ki->grants[i]->group == g->group && ki->grants[i]->id == g->id)
                                        now_ops |= ki->grants[i]->ops;
                        if (req->set_grant->revoke ? (now_ops & g->ops) != 0 : (now_ops & g->ops) != g->ops)
                                fail("%s: key '%s': grant of %s %u holds 0x%x after %s 0x%x", what, name,
                                     g->group ? "gid" : "uid", g->id, now_ops, req->set_grant->revoke ? "revoking" : "granting", g->ops);
                }
                break;
        }
        case KEK__REQUEST__BODY_LIST_KEYS:
                if (!resp->list_keys)
                        fail("%s: list-keys without a list", what);
                for (size_t i = 0; i < resp->list_keys->n_keys; i++) {
                        ki = resp->list_keys->keys[i];
                        check_key_info(peer, ki, what);
                        if (i > 0 && strcmp(resp->list_keys->keys[i - 1]->name, ki->name) >= 0)
                                fail("%s: list-keys not in strict name order", what);
                        if (ki->state == KEK__KEY_STATE__DELETED && !req->list_keys->include_deleted)
                                fail("%s: list-keys shows deleted key '%s' without include_deleted", what, ki->name);
                        if (!peer_has_role(peer, ROLE_OFFICER))
                                check_granted(peer, ki->name, GRANT_GET, what);
                }
                break;
        case KEK__REQUEST__BODY_GET_VAULT_POLICY:
        case KEK__REQUEST__BODY_SET_VAULT_POLICY:
                if (!resp->vault_policy || !resp->vault_policy->policy ||
                    resp->vault_policy->policy->retention_days < RETENTION_DAYS_MIN ||
                    resp->vault_policy->policy->retention_days > RETENTION_DAYS_MAX ||
                    (resp->vault_policy->policy->dual_control & ~(uint32_t) DUAL_CONTROL_ALL))
                        fail("%s: vault policy missing or out of range", what);
                if (req->body_case == KEK__REQUEST__BODY_SET_VAULT_POLICY &&
                    ((req->set_vault_policy->retention_days &&
                      resp->vault_policy->policy->retention_days != req->set_vault_policy->retention_days) ||
                     (req->set_vault_policy->purge_protection == KEK__SWITCH__ON &&
                      !resp->vault_policy->policy->purge_protection) ||
                     (req->set_vault_policy->set_dual_control &&
                      resp->vault_policy->policy->dual_control != req->set_vault_policy->dual_control)))
                        fail("%s: vault policy not as just set", what);
                break;
        case KEK__REQUEST__BODY_CHECK:
                if (!resp->check)
                        fail("%s: check without a report", what);
                /* One kekd, no crash, no other writer: the token must be consistent. */
                if (resp->check->n_problems > 0)
                        fail("%s: check reports %zu problems in a token only this kekd changed, first: %s", what,
                             resp->check->n_problems, resp->check->problems[0]);
                break;
        case KEK__REQUEST__BODY_WATCH:
                if (!resp->event || !resp->event->key || resp->event->key[0])
                        fail("%s: watch must answer with a key event without key", what);
                break;
        case KEK__REQUEST__BODY_SUBMIT_APPROVAL: {
                const Kek__Request *inner = req->submit_approval->request;

                if (!resp->approval || !resp->approval->id || strlen(resp->approval->id) >= sizeof(fz.submitted[0].id) ||
                    submitted_find(resp->approval->id) || !inner)
                        fail("%s: submitted request without a new id", what);
                if (!peer_has_role(peer, required_role(inner->body_case)))
                        fail("%s: uid %u submitted an operation above its role", what, (unsigned) peer->uid);
                if (resp->approval->requester_uid != (uint32_t) peer->uid)
                        fail("%s: approval names requester %u, not uid %u", what, resp->approval->requester_uid,
                             (unsigned) peer->uid);
                if (fz.n_submitted < FUZZ_APPROVALS_MAX) {
                        Submitted *s = &fz.submitted[fz.n_submitted++];

                        *s = (Submitted) { .requester = peer->uid, .inner = inner->body_case };
                        snprintf(s->id, sizeof(s->id), "%s", resp->approval->id);
                }
                break;
        }
        case KEK__REQUEST__BODY_LIST_APPROVALS:
                if (!resp->approvals)
                        fail("%s: list-approvals without a list", what);
                for (size_t i = 0; i < resp->approvals->n_approvals; i++) {
                        const Submitted *s = submitted_find(resp->approvals->approvals[i]->id);

                        /* Only what this input submitted (the snapshot has none) and is still pending. */
                        if (!s || s->done)
                                fail("%s: lists approval '%s' that is not pending", what, resp->approvals->approvals[i]->id);
                }
                break;
        case KEK__REQUEST__BODY_STATUS:
                if (!resp->status || !resp->status->token || strcmp(resp->status->token, hsm_token_label(fz.hsm)) != 0 ||
                    !resp->status->version || !resp->status->version[0] ||
                    (fz.metrics && (!resp->status->metrics || !resp->status->metrics[0])))
                        fail("%s: status without token, version or (with metrics on) metrics", what);
                break;
        case KEK__REQUEST__BODY_CANCEL_APPROVAL: {
                Submitted *s = submitted_find(req->cancel_approval->id);

                if (!s || s->done)
                        fail("%s: cancelled approval '%s' that was not pending", what, req->cancel_approval->id);
                s->done = true;
                break;
        }
        default:
                break;
        }
}

/* A successful Approve ran the stored request: once, and not by its requester. */
static void check_approve(const Peer *peer, const Kek__Request *req, const Kek__Response *resp, const char *what) {
        Submitted *s = submitted_find(req->approve->id);

        if (resp->body_case == KEK__RESPONSE__BODY_ERROR)
                return;
        if (!s || s->done)
                fail("%s: approval '%s' applied although it was not pending", what, req->approve->id);
        if (s->requester == peer->uid)
                fail("%s: uid %u approved its own request", what, (unsigned) peer->uid);
        if (!peer_has_role(peer, required_role(s->inner)))
                fail("%s: uid %u approved an operation above its role", what, (unsigned) peer->uid);
        if (resp->body_case != expected_body(s->inner))
                fail("%s: approved request answered with body %d", what, resp->body_case);
        s->done = true;
}

/* The keystore's change callback, as the server wires it to Watch streams. */
static void on_change(const char *name, const Key *old, const Key *k, void *userdata) {
        size_t before = frame_buf_size(&fz.events);
        Kek__Response *ev;
        int r;

        if (!name || !key_name_valid(name) || (k && strcmp(k->name, name) != 0) || (old && strcmp(old->name, name) != 0))
                fail("change callback: bad key name");
        r = dispatch_append_event(&fz.events, FUZZ_MAX_FRAME, fz.watch_id, name, k);
        if (r < 0)
                fail("dispatch_append_event for key '%s': %d", name, r);
        ev = take_response(&fz.events, before, FUZZ_MAX_FRAME, "event");
        if (ev->id != fz.watch_id || ev->body_case != KEK__RESPONSE__BODY_EVENT || !ev->event->key ||
            strcmp(ev->event->key, name) != 0 || ev->event->gone != !k ||
            (k && ev->event->current_version != k->current_version))
                fail("event for key '%s' does not describe it", name);
        kek__response__free_unpacked(ev, NULL);
        /* As server.c asks for every watcher. */
        for (size_t i = 0; i < ELEMENTSOF(peers); i++) {
                (void) access_may(&peers[i], k, GRANT_GET);
                (void) access_may(&peers[i], old, GRANT_UNWRAP);
        }
}

/* One frame through dispatch_frame(), checked against its contract; returns what dispatch returned. */
static int run_frame(const Peer *peer, const uint8_t *payload, size_t len, FrameBuf *out) {
        /* Only what passed the check is unpacked here too: protobuf-c recurses without a bound. */
        Kek__Request *req = wirecheck_message(&kek__request__descriptor, payload, len, NULL, NULL) == 0
                                    ? kek__request__unpack(NULL, len, payload)
                                    : NULL;
        RequestOutcome o = {};
        Kek__Response *resp;
        const char *what;
        size_t before = frame_buf_size(out);
        int r;

        quiet(true);
        r = dispatch_frame(&fz.d, peer, payload, len, out, &o);
        quiet(false);
        if (r != 0 && r != -KEKERR_MALFORMED_REQUEST)
                fail("dispatch_frame returned %d", r);
        if ((r == -KEKERR_MALFORMED_REQUEST) != !req)
                fail("dispatch_frame returned %d for a payload that %s a Request", r, req ? "decodes as" : "is not");
        what = o.op ?: "(no op)";
        resp = take_response(out, before, fz.d.max_frame, what);
        if (!o.op || !o.op[0] || strnlen(o.key, sizeof(o.key)) == sizeof(o.key))
                fail("%s: outcome without op or with an unterminated key", what);
        for (const char *c = o.key; *c; c++)
                if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-?", *c))
                        fail("%s: outcome key carries byte 0x%02x", what, (unsigned) (uint8_t) *c);

        if (!req) {
                if (resp->id != 0 || resp->body_case != KEK__RESPONSE__BODY_ERROR ||
                    resp->error->code != KEK__ERROR_CODE__MALFORMED_REQUEST || o.error != -KEKERR_MALFORMED_REQUEST)
                        fail("undecodable payload not answered with id 0 and MALFORMED_REQUEST");
                kek__response__free_unpacked(resp, NULL);
                fz.n_errors++;
                return r;
        }

        if (resp->id != req->id || o.id != req->id)
                fail("%s: request id %llu answered with id %llu (outcome %llu)", what, (unsigned long long) req->id,
                     (unsigned long long) resp->id, (unsigned long long) o.id);
        if ((resp->body_case == KEK__RESPONSE__BODY_ERROR) != (o.error != 0))
                fail("%s: response %s an error but the outcome says %d", what,
                     resp->body_case == KEK__RESPONSE__BODY_ERROR ? "is" : "is not", o.error);
        if (o.watch != (req->body_case == KEK__REQUEST__BODY_WATCH && o.error == 0))
                fail("%s: outcome.watch is %d", what, o.watch);
        if (fz.trace)
                fprintf(stderr, "fuzz-dispatch: uid %u %s '%s': %s\n", (unsigned) peer->uid, what, o.key,
                        resp->body_case == KEK__RESPONSE__BODY_ERROR ? resp->error->message : "ok");
        if (resp->body_case == KEK__RESPONSE__BODY_ERROR) {
                check_error(resp->error, what);
                if ((int) resp->error->code != kekerr_to_wire(o.error))
                        fail("%s: error code %d but outcome %d", what, resp->error->code, o.error);
                fz.n_errors++;
        } else
                fz.n_ok++;
        if (!peer_has_role(peer, required_role(req->body_case)) &&
            (resp->body_case != KEK__RESPONSE__BODY_ERROR || resp->error->code != KEK__ERROR_CODE__PERMISSION_DENIED))
                fail("%s: uid %u got %s instead of PERMISSION_DENIED", what, (unsigned) peer->uid,
                     resp->body_case == KEK__RESPONSE__BODY_ERROR ? kekerr_name(o.error) ?: "an error" : "success");
        if (req->body_case == KEK__REQUEST__BODY_APPROVE)
                check_approve(peer, req, resp, what);
        else if (req->body_case == KEK__REQUEST__BODY__NOT_SET) {
                Kek__ErrorCode want = req->base.n_unknown_fields > 0 ? KEK__ERROR_CODE__UNSUPPORTED
                                                                     : KEK__ERROR_CODE__MALFORMED_REQUEST;

                if (resp->body_case != KEK__RESPONSE__BODY_ERROR || resp->error->code != want)
                        fail("%s: a request without a known operation not refused with %d", what, want);
        } else if (resp->body_case != KEK__RESPONSE__BODY_ERROR && expected_body(req->body_case) != KEK__RESPONSE__BODY__NOT_SET) {
                /* (Request types newer than this harness get the checks above only.) */
                if (resp->body_case != expected_body(req->body_case))
                        fail("%s: answered with body %d", what, resp->body_case);
                check_body(peer, req, resp, what);
        }
        if (req->body_case == KEK__REQUEST__BODY_WATCH && o.error == 0) {
                fz.watching = true;
                fz.watch_id = req->id;
        }
        kek__response__free_unpacked(resp, NULL);
        kek__request__free_unpacked(req, NULL);
        return r;
}

/* What the transport answers when the byte stream itself is bad. */
static void run_transport_error(int error, FrameBuf *out) {
        size_t before = frame_buf_size(out);
        Kek__Response *resp;

        if (request_append_error(out, fz.d.max_frame, 0, error, NULL) < 0)
                fail("request_append_error(%d) failed", error);
        resp = take_response(out, before, fz.d.max_frame, "transport error");
        if (resp->id != 0 || resp->body_case != KEK__RESPONSE__BODY_ERROR || (int) resp->error->code != kekerr_to_wire(error))
                fail("transport error %d not answered with id 0 and its code", error);
        check_error(resp->error, "transport error");
        kek__response__free_unpacked(resp, NULL);
}

static void fuzz_teardown(void) {
        fz.ks = keystore_free(fz.ks);
        fz.hsm = hsm_free(fz.hsm);
        fz.audit = audit_free(fz.audit);
        fz.metrics = metrics_free(fz.metrics);
        fz.pin = secret_free(fz.pin);
        frame_buf_done(&fz.events);
        if (fz.clear)
                fz.clear();
        if (fz.mock)
                (void) dlclose(fz.mock);
        fz.mock = NULL;
        quiet(false);
        if (fz.devnull)
                fclose(fz.devnull);
        fz.devnull = NULL;
}

static void setup_check(int r, const char *what) {
        if (r < 0) {
                quiet(false);
                fprintf(stderr, "fuzz-dispatch: set-up failed: %s: %s\n", what, kekerr_name(r) ?: strerror(-r));
                exit(EXIT_FAILURE);
        }
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv) {
        const RotationPolicy small_budget = { .max_wraps = 4 };
        const Grant user_all = { .id = FUZZ_USER_UID, .ops = GRANT_ALL },
                    group_some = { .group = true, .id = FUZZ_USER_GROUP, .ops = GRANT_GET | GRANT_WRAP | GRANT_UNWRAP };
        const char *why = NULL, *token;
        char uri[128];
        const Key *k;

        log_setup(LOG_CRIT);
        fz.real_stderr = stderr;
        fz.trace = getenv("FUZZ_DISPATCH_TRACE");
        if (!getenv("FUZZ_DISPATCH_LOG")) {
                fz.devnull = fopen("/dev/null", "we");
                if (!fz.devnull)
                        setup_check(-errno, "/dev/null");
        }
        setup_check(secret_heap_init(FUZZ_SECURE_HEAP), "secure heap");
        fz.module = getenv("MOCK_P11_MODULE") ?: MOCK_P11_MODULE;
        /* The same object p11-kit loads below: dlopen() finds it by file, so the hooks act on its state. */
        fz.mock = dlopen(fz.module, RTLD_NOW | RTLD_LOCAL);
        if (!fz.mock) {
                fprintf(stderr, "fuzz-dispatch: cannot load %s (set $MOCK_P11_MODULE): %s\n", fz.module, dlerror());
                exit(EXIT_FAILURE);
        }
        fz.snapshot = (mock_p11_snapshot_t) dlsym(fz.mock, "mock_p11_snapshot");
        fz.reset = (mock_p11_reset_t) dlsym(fz.mock, "mock_p11_reset");
        fz.clear = (mock_p11_clear_t) dlsym(fz.mock, "mock_p11_clear");
        if (!fz.snapshot || !fz.reset || !fz.clear) {
                fprintf(stderr, "fuzz-dispatch: %s lacks the mock_p11_* hooks\n", fz.module);
                exit(EXIT_FAILURE);
        }
        /* The global state stays reachable until exit and is freed here, so LeakSanitizer sees no leak. */
        atexit(fuzz_teardown);
        fz.clear();

        token = getenv("MOCK_P11_TOKEN");
        snprintf(uri, sizeof(uri), "pkcs11:token=%s", token && *token ? token : "mock");
        setup_check(secret_new_copy("1234", 4, &fz.pin), "PIN");
        if (hsm_open(fz.module, uri, fz.pin, &fz.hsm, &why) < 0) {
                fprintf(stderr, "fuzz-dispatch: hsm_open(%s, %s): %s\n", fz.module, uri, why ?: "?");
                exit(EXIT_FAILURE);
        }
        setup_check(audit_new(&fz.audit), "audit");
        quiet(true);
        setup_check(keystore_new(fz.hsm, FUZZ_OWNER, &fz.ks), "keystore_new");
        fz.now = FUZZ_EPOCH_USEC;
        setup_check(keystore_create(fz.ks, "alpha", NULL, fz.now, &k), "create alpha");
        setup_check(keystore_rotate(fz.ks, "alpha", fz.now, &k), "rotate alpha");
        setup_check(keystore_set_grant(fz.ks, "alpha", &user_all, false, &k), "grant alpha");
        setup_check(keystore_create(fz.ks, "beta", &small_budget, fz.now, &k), "create beta");
        setup_check(keystore_set_grant(fz.ks, "beta", &group_some, false, &k), "grant beta");
        setup_check(keystore_create(fz.ks, "gamma", NULL, fz.now, &k), "create gamma");
        setup_check(keystore_delete(fz.ks, "gamma", fz.now, &k), "delete gamma");
        fz.ks = keystore_free(fz.ks);
        quiet(false);
        fz.snapshot();
        fz.reset(); /* the store now holds copies of the snapshot, as after every input */
        fz.d = (Dispatcher) { .audit = fz.audit, .started_usec = FUZZ_EPOCH_USEC, .max_frame = FUZZ_MAX_FRAME,
                              .now_usec = fuzz_now };
        return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        const uint8_t *payload;
        size_t off = 2, len;
        unsigned frame = 0;
        FrameBuf out;
        uint8_t who, clock;
        int r;

        if (size < 2)
                return 0;
        who = data[0];
        clock = data[1];

        fz.reset();
        fz.rand_counter = 0;
        fz.now = FUZZ_EPOCH_USEC;
        fz.watching = false;
        fz.watch_id = 0;
        fz.n_submitted = 0;
        fz.n_ok = fz.n_errors = 0;
        quiet(true);
        r = keystore_new(fz.hsm, FUZZ_OWNER, &fz.ks);
        quiet(false);
        if (r < 0)
                fail("keystore_new on the snapshot: %s", kekerr_name(r) ?: strerror(-r));
        keystore_set_allow_unrecoverable(fz.ks, true);
        keystore_set_change_callback(fz.ks, on_change, NULL);
        fz.d.keystore = fz.ks;
        /* Metrics keep 8192 slots: only the inputs that ask pay for a fresh table. */
        if ((clock & 0x40) && metrics_new(fz.now, &fz.metrics) < 0)
                fail("metrics_new");
        fz.d.metrics = fz.metrics;
        frame_buf_init(&out);

        for (;;) {
                r = frame_parse(data + off, size - off, fz.d.max_frame, &payload, &len);
                if (r == 0) {
                        if (off < size)
                                run_transport_error(-KEKERR_MALFORMED_REQUEST, &out); /* ended inside a frame */
                        break;
                }
                if (r < 0) {
                        run_transport_error(r, &out);
                        break;
                }
                if (payload + len > data + size)
                        fail("frame_parse cut past the input");
                r = run_frame(&peers[(who >> (2 * (frame % 4))) & 3], payload, len, &out);
                off += FRAME_HEADER_SIZE + len;
                frame++;
                if (r == -KEKERR_MALFORMED_REQUEST)
                        break; /* kekd closes the connection */
                fz.now += (uint64_t) (clock & 0x3f) * USEC_PER_DAY;
                if (clock & 0x80) {
                        quiet(true);
                        (void) keystore_maintain(fz.ks, fz.now);
                        quiet(false);
                }
        }

        quiet(true);
        (void) audit_flush(fz.audit);
        quiet(false);
        frame_buf_done(&out);
        fz.ks = keystore_free(fz.ks);
        fz.metrics = metrics_free(fz.metrics);
        /* Now, not at the next start: an input must free what it allocated, or libFuzzer suspects a leak. */
        fz.reset();
        return 0;
}
