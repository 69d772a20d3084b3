/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Request handlers and the dispatch table (see dispatch.h). Handlers fill a
 * Reply whose memory is owned by the Reply itself (reply_alloc) and released
 * by dispatch_frame() after packing, with plaintexts held as Secrets and
 * cleansed, so no handler has to get the memory discipline right on its own.
 */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "common/kekerr.h"
#include "daemon/approval.h"
#include "daemon/audit.h"
#include "daemon/clock.h"
#include "daemon/metrics.h"
#include "dispatch.h"
#include "daemon/cryptopool.h"
#include "proto/kek.pb-c.h"
#include "proto/wirecheck.h"


/* Listings may be this old; a client asking more often gets the same snapshot, not a token scan. */
#define LISTING_MAX_AGE_USEC (1 * USEC_PER_SEC)
/* Items per batch: bounds the HSM work one frame can ask for. */
#define BATCH_MAX_ITEMS 1024u

typedef struct Reply {
        Kek__Response resp;
        char message[256];
        void **owned;           /* freed after packing */
        size_t n_owned;
        Secret **secrets;       /* plaintexts referenced by the response, cleansed after packing */
        size_t n_secrets;
        bool oom;
        const Peer *peer;       /* who asked; never NULL inside handlers */
        bool approved;          /* running an approved dual-control request: the gate is passed */
        Kek__Request *inner;    /* the approved request, freed after packing */
        AuditApproval approval;
        char approval_id[APPROVAL_ID_LEN + 1];
} Reply;

typedef int (*Handler)(Dispatcher *d, const Kek__Request *req, Reply *reply, DispatchOutcome *outcome);

typedef struct DataItem DataItem;
/* A request in steps (dispatch_frames()): prepare it, run its HSM work with others', answer it. */
typedef int (*PrepareFn)(Dispatcher *d, const Kek__Request *req, Reply *reply, DataItem *it);
typedef int (*AnswerFn)(Dispatcher *d, DataItem *it, Reply *reply);

typedef struct HandlerEntry {
        Kek__Request__BodyCase type;
        const char *op;
        Handler handler;   /* NULL for the rows prepare/answer serve */
        Role required_role;
        bool control;      /* audited one record per operation */
        bool data;         /* audited in aggregate (batches count their items themselves) */
        PrepareFn prepare; /* single wrap/unwrap/rewrap, instead of handler: may share an HSM run */
        AnswerFn answer;
} HandlerEntry;

/* Takes ownership of a malloc'd buffer (freed at once if it cannot be recorded). */
static int reply_own(Reply *reply, void *p) {
        void **owned = reallocarray(reply->owned, reply->n_owned + 1, sizeof(*owned));

        if (!owned) {
                free(p);
                return -ENOMEM;
        }
        reply->owned = owned;
        reply->owned[reply->n_owned++] = p;
        return 0;
}

/* Zeroed memory that lives until the reply is packed. */
static void *reply_alloc(Reply *reply, size_t size) {
        void *p = calloc(1, size ? size : 1);

        if (!p || reply_own(reply, p) < 0)
                return NULL;
        return p;
}

static int reply_own_secret(Reply *reply, Secret *s) {
        Secret **secrets = reallocarray(reply->secrets, reply->n_secrets + 1, sizeof(*secrets));

        if (!secrets) {
                secret_free(s);
                return -ENOMEM;
        }
        reply->secrets = secrets;
        reply->secrets[reply->n_secrets++] = s;
        return 0;
}

static void reply_done(Reply *reply) {
        for (size_t i = 0; i < reply->n_owned; i++)
                free(reply->owned[i]);
        free(reply->owned);
        for (size_t i = 0; i < reply->n_secrets; i++)
                secret_free(reply->secrets[i]);
        free(reply->secrets);
        if (reply->inner)
                kek__request__free_unpacked(reply->inner, NULL);
}

_printf_(3, 4) static int reply_error(Reply *reply, int r, const char *fmt, ...) {
        va_list ap;

        va_start(ap, fmt);
        (void) vsnprintf(reply->message, sizeof(reply->message), fmt, ap);
        va_end(ap);
        return r;
}

/* Error text for failures the handler did not describe itself. */
static const char *default_message(int r) {
        switch (r) {
        case -KEKERR_HSM_UNAVAILABLE:
                return "the HSM is not reachable at the moment; retry";
        case -KEKERR_BLOB_INVALID:
                return "blob does not authenticate: tampered, truncated, or wrong context";
        case -KEKERR_MALFORMED_REQUEST:
                return "malformed request";
        case -KEKERR_UNSUPPORTED:
                return "request type not supported by this kekd";
        case -KEKERR_KEY_NOT_RECOVERABLE:
                return "key isn't recoverable: the vault must have purge protection on (soft delete is always on)";
        case -KEKERR_CONFLICT:
                return "another change to this key is in progress; retry";
        case -ENOMEM:
                return "kekd is out of memory";
        default:
                return kekerr_name(r) ? kekerr_name(r) : "internal error";
        }
}

/* Names the key (and version) in the message of a key-related refusal. */
static int keyerr(Dispatcher *d, Reply *reply, int r, const char *key, uint32_t version) {
        const Key *k;

        /* KEY_DISABLED covers a disabled key and a disabled version: say which. */
        if (r == -KEKERR_KEY_DISABLED && d && keystore_find(d->keystore, key, &k) >= 0 && k->state == KEY_DISABLED)
                version = 0;
        switch (r) {
        case -KEKERR_UNKNOWN_KEY:
                return reply_error(reply, r, "unknown key '%s'", key);
        case -KEKERR_UNKNOWN_VERSION:
                return reply_error(reply, r, "key '%s' has no version %u", key, version);
        case -KEKERR_KEY_DISABLED:
                return version ? reply_error(reply, r, "key '%s' version %u is disabled", key, version)
                               : reply_error(reply, r, "key '%s' is disabled", key);
        case -KEKERR_KEY_DELETED:
                return reply_error(reply, r, "key '%s' is deleted", key);
        case -KEKERR_KEY_EXISTS:
                return reply_error(reply, r, "key '%s' already exists (a deleted key keeps its name until purged)", key);
        case -KEKERR_KEY_NOT_RECOVERABLE:
                return reply_error(reply, r, "key '%s' isn't recoverable: the vault must have purge protection on", key);
        case -KEKERR_CONFLICT:
                return reply_error(reply, r, "another change to key '%s' is in progress; retry", key);
        default:
                return r;
        }
}

/* Copies a peer-supplied name for logs and messages; anything outside the key alphabet becomes '?'. */
static void set_outcome_key(DispatchOutcome *o, const char *key) {
        size_t i;

        for (i = 0; key && key[i] && i < sizeof(o->key) - 1; i++)
                o->key[i] = strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-", key[i]) ? key[i] : '?';
        o->key[i] = 0;
}

/* --- access ---------------------------------------------------------------------- */

static const char *grant_op_name(uint32_t op) {
        return op == GRANT_WRAP ? "wrap" : op == GRANT_UNWRAP ? "unwrap" : op == GRANT_REWRAP ? "rewrap" : "get";
}

bool dispatch_peer_may(Dispatcher *d, const Peer *p, const Key *k, uint32_t ops) {
        if (peer_has_role(p, ROLE_OFFICER) && ops == GRANT_GET)
                return true; /* officers see every key's metadata, not its use */
        return k && grants_allow(k->grants, k->n_grants, p, ops);
}

/*
 * Data-plane access to key name: a grant of op for the peer. A key that does
 * not exist is refused the same way, so a peer without grants cannot probe
 * which names exist.
 */
static int authorize(Dispatcher *d, Reply *reply, const char *name, const char *shown, uint32_t op) {
        const Key *k = NULL;

        if (reply->peer->superuser)
                return 0;
        if (keystore_find(d->keystore, name, &k) >= 0 && grants_allow(k->grants, k->n_grants, reply->peer, op))
                return 0;
        return reply_error(reply, -KEKERR_PERMISSION_DENIED, "uid %u has no %s grant on key '%s'",
                           (unsigned) reply->peer->uid, op == GRANT_ALL ? "" : grant_op_name(op), shown);
}

/* Dual control: whether this operation must go through submit/approve. */
static bool needs_approval(Dispatcher *d, Reply *reply, uint32_t bit) {
        if (reply->approved)
                return false;
        /* The vault policy as the token has it now, within a second: another node may have just set it. */
        (void) keystore_refresh(d->keystore, LISTING_MAX_AGE_USEC);
        return (keystore_vault(d->keystore)->dual_control & bit) != 0;
}

static int approval_required(Reply *reply, const char *op, const char *key) {
        return reply_error(reply, -KEKERR_APPROVAL_REQUIRED,
                           "%s%s%s%s is under dual control: submit it with 'kekctl request' and have another officer approve it",
                           op, key && key[0] ? " of key '" : "", key ? key : "", key && key[0] ? "'" : "");
}

/* --- data plane ------------------------------------------------------------------ */

static int check_sizes(Reply *reply, size_t pt_len, bool check_pt, size_t ctx_len) {
        if (check_pt && (pt_len == 0 || pt_len > AEK_MAX_SIZE))
                return reply_error(reply, -KEKERR_INVALID_ARGUMENT, "plaintext must be 1..%u bytes", AEK_MAX_SIZE);
        if (ctx_len > CONTEXT_MAX_SIZE)
                return reply_error(reply, -KEKERR_INVALID_ARGUMENT, "context must be at most %u bytes", CONTEXT_MAX_SIZE);
        return 0;
}

/*
 * Data-plane requests take three steps (keystore.h): prepare each item
 * (authorization, sizes, keystore checks), run the HSM calls of all items
 * (spread over the HSM sessions, daemon/cryptopool.h), then finish and answer
 * each item in order. A single request is a batch of one.
 */
struct DataItem {
        CryptoOp op;
        DispatchOutcome o;
        bool answered;          /* refused in prepare; its error is already in the reply */
};

static void data_items_free(DataItem *items, size_t n) {
        for (size_t i = 0; items && i < n; i++)
                crypto_op_done(&items[i].op);
        free(items);
}

static void run_items(Dispatcher *d, DataItem *items, size_t n) {
        keystore_run(d->keystore, d->pool, &items[0].op, sizeof(*items), n);
}

static int wrap_prepare(Dispatcher *d, const Kek__WrapRequest *w, Reply *reply, DataItem *it) {
        int r;

        set_outcome_key(&it->o, w->key);
        it->o.version = w->version;
        r = authorize(d, reply, w->key, it->o.key, GRANT_WRAP);
        if (r < 0)
                return r;
        r = check_sizes(reply, w->plaintext.len, true, w->context.len);
        if (r < 0)
                return r;
        (void) keystore_wrap_prepare(d->keystore, w->key, w->version, w->plaintext.data, w->plaintext.len,
                                     w->context.data, w->context.len, d->now_usec(), &it->op);
        return 0;
}

static int wrap_answer(Dispatcher *d, DataItem *it, Reply *reply, Kek__WrapResponse **ret) {
        Kek__WrapResponse *resp;
        int r = it->op.result;

        if (r == -ENOSPC)
                return reply_error(reply, -KEKERR_INVALID_ARGUMENT,
                                   "key '%s' version %u has used its wrap budget; wrap with the current version",
                                   it->o.key, it->o.version);
        if (r < 0)
                return keyerr(d, reply, r, it->o.key, it->o.version);
        if (reply_own(reply, it->op.blob) < 0) {
                it->op.blob = NULL; /* freed by reply_own */
                return -ENOMEM;
        }
        resp = reply_alloc(reply, sizeof(*resp));
        if (!resp) {
                it->op.blob = NULL;
                return -ENOMEM;
        }
        it->o.version = it->op.version;
        kek__wrap_response__init(resp);
        resp->blob = (ProtobufCBinaryData) { it->op.blob_len, TAKE_PTR(it->op.blob) };
        resp->version = it->op.version;
        *ret = resp;
        return 0;
}

/* Parses the blob here too, so refusals name its key and version. */
static int blob_prepare(Dispatcher *d, const ProtobufCBinaryData *blob, const ProtobufCBinaryData *context,
                        uint32_t op, Reply *reply, DataItem *it) {
        BlobView view;
        int r;

        r = check_sizes(reply, 0, false, context->len);
        if (r < 0)
                return r;
        if (blob_parse(blob->data, blob->len, &view) < 0)
                return reply_error(reply, -KEKERR_BLOB_INVALID, "not a kekd blob (bad format byte, length or key name)");
        set_outcome_key(&it->o, view.key);
        it->o.version = view.version;
        return authorize(d, reply, view.key, it->o.key, op);
}

static int unwrap_prepare(Dispatcher *d, const Kek__UnwrapRequest *u, Reply *reply, DataItem *it) {
        int r = blob_prepare(d, &u->blob, &u->context, GRANT_UNWRAP, reply, it);

        if (r < 0)
                return r;
        (void) keystore_unwrap_prepare(d->keystore, u->blob.data, u->blob.len, u->context.data, u->context.len,
                                       d->now_usec(), &it->op);
        return 0;
}

static int unwrap_answer(Dispatcher *d, DataItem *it, Reply *reply, Kek__UnwrapResponse **ret) {
        Kek__UnwrapResponse *resp;
        Secret *pt;
        char *key;
        int r = it->op.result;

        if (r < 0)
                return keyerr(d, reply, r, it->o.key, it->o.version);
        pt = TAKE_PTR(it->op.plaintext);
        if (reply_own_secret(reply, pt) < 0 || !(resp = reply_alloc(reply, sizeof(*resp))) ||
            !(key = reply_alloc(reply, strlen(it->op.view.key) + 1)))
                return -ENOMEM;
        strcpy(key, it->op.view.key);
        kek__unwrap_response__init(resp);
        resp->plaintext = (ProtobufCBinaryData) { pt->len, pt->data };
        resp->key = key;
        resp->version = it->op.view.version;
        *ret = resp;
        return 0;
}

static int rewrap_prepare(Dispatcher *d, const Kek__RewrapRequest *w, Reply *reply, DataItem *it) {
        int r = blob_prepare(d, &w->blob, &w->context, GRANT_REWRAP, reply, it);

        if (r < 0)
                return r;
        (void) keystore_rewrap_prepare(d->keystore, w->blob.data, w->blob.len, w->context.data, w->context.len,
                                       d->now_usec(), &it->op);
        return 0;
}

static int rewrap_answer(Dispatcher *d, DataItem *it, Reply *reply, Kek__RewrapResponse **ret) {
        Kek__RewrapResponse *resp;
        int r = it->op.result;

        if (r < 0)
                return keyerr(d, reply, r, it->o.key,
                              r == -KEKERR_KEY_DISABLED || r == -KEKERR_UNKNOWN_VERSION ? it->o.version : 0);
        if (reply_own(reply, it->op.blob) < 0) {
                it->op.blob = NULL;
                return -ENOMEM;
        }
        resp = reply_alloc(reply, sizeof(*resp));
        if (!resp) {
                it->op.blob = NULL;
                return -ENOMEM;
        }
        kek__rewrap_response__init(resp);
        resp->blob = (ProtobufCBinaryData) { it->op.blob_len, TAKE_PTR(it->op.blob) };
        resp->version = it->op.version;
        resp->old_version = it->op.view.version;
        *ret = resp;
        return 0;
}

#define STAGED(prepare_name, answer_name, field, prepare_fn, answer_fn, body)                           \
        static int prepare_name(Dispatcher *d, const Kek__Request *req, Reply *reply, DataItem *it) {   \
                return prepare_fn(d, req->field, reply, it);                                            \
        }                                                                                               \
        static int answer_name(Dispatcher *d, DataItem *it, Reply *reply) {                             \
                int r = answer_fn(d, it, reply, &reply->resp.field);                                    \
                                                                                                        \
                if (r >= 0)                                                                             \
                        reply->resp.body_case = body;                                                   \
                return r;                                                                               \
        }

STAGED(stage_wrap, answer_wrap, wrap, wrap_prepare, wrap_answer, KEK__RESPONSE__BODY_WRAP)
STAGED(stage_unwrap, answer_unwrap, unwrap, unwrap_prepare, unwrap_answer, KEK__RESPONSE__BODY_UNWRAP)
STAGED(stage_rewrap, answer_rewrap, rewrap, rewrap_prepare, rewrap_answer, KEK__RESPONSE__BODY_REWRAP)

/* Batches: each item is handled in order and gets its own result; the batch itself succeeds. */
static int batch_begin(Reply *reply, size_t n, Kek__BatchResponse **ret_batch, Kek__BatchItemResult ***ret_items) {
        Kek__BatchResponse *b = reply_alloc(reply, sizeof(*b));
        Kek__BatchItemResult **items = reply_alloc(reply, n * sizeof(*items));

        if (!b || !items)
                return -ENOMEM;
        kek__batch_response__init(b);
        for (size_t i = 0; i < n; i++) {
                items[i] = reply_alloc(reply, sizeof(**items));
                if (!items[i])
                        return -ENOMEM;
                kek__batch_item_result__init(items[i]);
        }
        b->n_items = n;
        b->items = items;
        reply->resp.body_case = KEK__RESPONSE__BODY_BATCH;
        reply->resp.batch = b;
        *ret_batch = b;
        *ret_items = items;
        return 0;
}

/* Records an item's failure in its result; only out-of-memory fails the batch. */
static int batch_item_error(Reply *reply, Kek__BatchItemResult *item, int r) {
        Kek__Error *e;
        char *msg;

        if (r == -ENOMEM)
                return r;
        e = reply_alloc(reply, sizeof(*e));
        msg = reply_alloc(reply, strlen(reply->message[0] ? reply->message : default_message(r)) + 1);
        if (!e || !msg)
                return -ENOMEM;
        strcpy(msg, reply->message[0] ? reply->message : default_message(r));
        kek__error__init(e);
        e->code = (Kek__ErrorCode) kekerr_to_wire(r);
        e->message = msg;
        item->error = e;
        reply->message[0] = 0;
        return 0;
}

/*
 * Prepare every item (a refusal is answered at once, while its message is
 * the reply's), run all HSM calls, then answer the rest in order.
 */
#define BATCH_HANDLER(name, field, prepare_fn, answer_fn, result_field, item_op)                        \
        static int name(Dispatcher *d, const Kek__Request *req, Reply *reply, DispatchOutcome *o) {     \
                size_t n = req->field->n_items;                                                         \
                Kek__BatchResponse *b;                                                                  \
                Kek__BatchItemResult **results;                                                         \
                DataItem *items;                                                                        \
                int r;                                                                                  \
                                                                                                        \
                if (n > BATCH_MAX_ITEMS)                                                                \
                        return reply_error(reply, -KEKERR_INVALID_ARGUMENT,                             \
                                           "a batch holds at most %u items", BATCH_MAX_ITEMS);          \
                r = batch_begin(reply, n, &b, &results);                                                \
                if (r < 0)                                                                              \
                        return r;                                                                       \
                o->items = (unsigned) n;                                                                \
                if (n == 0)                                                                             \
                        return 0;                                                                       \
                items = calloc(n, sizeof(*items));                                                      \
                if (!items)                                                                             \
                        return -ENOMEM;                                                                 \
                for (size_t i = 0; i < n && r >= 0; i++) {                                              \
                        int e = prepare_fn(d, req->field->items[i], reply, &items[i]);                  \
                                                                                                        \
                        if (e < 0) {                                                                    \
                                items[i].op.result = e;                                                 \
                                items[i].answered = true;                                               \
                                r = batch_item_error(reply, results[i], e);                             \
                        }                                                                               \
                }                                                                                       \
                if (r >= 0)                                                                             \
                        run_items(d, items, n);                                                         \
                /* Every item is audited, also after out-of-memory ended the answers.                 */ \
                for (size_t i = 0; i < n; i++) {                                                        \
                        int e = items[i].op.result;                                                     \
                                                                                                        \
                        if (items[i].answered)                                                          \
                                ; /* refused in prepare: its own reason */                              \
                        else if (r < 0)                                                                 \
                                e = r;                                                                  \
                        else {                                                                          \
                                e = answer_fn(d, &items[i], reply, &results[i]->result_field);          \
                                if (e < 0)                                                              \
                                        r = batch_item_error(reply, results[i], e);                     \
                        }                                                                               \
                        audit_data(d->audit, reply->peer, item_op, items[i].o.key, items[i].o.version,  \
                                   e < 0 ? e : 0);                                                      \
                }                                                                                       \
                set_outcome_key(o, items[0].o.key);                                                     \
                o->version = items[0].o.version;                                                        \
                data_items_free(items, n);                                                              \
                return r;                                                                               \
        }

BATCH_HANDLER(handle_batch_wrap, batch_wrap, wrap_prepare, wrap_answer, wrap, "wrap")
BATCH_HANDLER(handle_batch_unwrap, batch_unwrap, unwrap_prepare, unwrap_answer, unwrap, "unwrap")
BATCH_HANDLER(handle_batch_rewrap, batch_rewrap, rewrap_prepare, rewrap_answer, rewrap, "rewrap")

static int handle_get_key_version(Dispatcher *d, const Kek__Request *req, Reply *reply, DispatchOutcome *o) {
        Kek__GetKeyVersionResponse *g;
        const Key *k;
        char *name;
        int r;

        set_outcome_key(o, req->get_key_version->key);
        /* Any grant on the key lets a client ask for its current version. */
        r = authorize(d, reply, req->get_key_version->key, o->key, GRANT_ALL);
        if (r < 0)
                return r;
        r = keystore_find(d->keystore, req->get_key_version->key, &k);
        if (r < 0)
                return keyerr(d, reply, r, o->key, 0);
        g = reply_alloc(reply, sizeof(*g));
        name = reply_alloc(reply, strlen(k->name) + 1);
        if (!g || !name)
                return -ENOMEM;
        strcpy(name, k->name);
        o->version = k->current_version;
        kek__get_key_version_response__init(g);
        g->key = name;
        g->current_version = k->current_version;
        g->state = k->state == KEY_DISABLED ? KEK__KEY_STATE__DISABLED
                   : k->state == KEY_DELETED ? KEK__KEY_STATE__DELETED
                                             : KEK__KEY_STATE__ENABLED;
        g->recoverable = keystore_recoverable(d->keystore);
        reply->resp.body_case = KEK__RESPONSE__BODY_GET_KEY_VERSION;
        reply->resp.get_key_version = g;
        return 0;
}

/* --- control plane ---------------------------------------------------------------- */

static Kek__KeyInfo *key_info(Dispatcher *d, Reply *reply, const Key *k) {
        Kek__KeyInfo *ki = reply_alloc(reply, sizeof(*ki));
        Kek__VersionInfo *vi = reply_alloc(reply, k->n_versions * sizeof(*vi));
        Kek__VersionInfo **vp = reply_alloc(reply, k->n_versions * sizeof(*vp));
        Kek__RotationPolicy *pol = reply_alloc(reply, sizeof(*pol));
        char *name = reply_alloc(reply, strlen(k->name) + 1);

        if (!ki || !vi || !vp || !pol || !name)
                return NULL;
        strcpy(name, k->name);
        kek__key_info__init(ki);
        kek__rotation_policy__init(pol);
        ki->name = name;
        ki->current_version = k->current_version;
        ki->state = k->state == KEY_DISABLED ? KEK__KEY_STATE__DISABLED
                    : k->state == KEY_DELETED ? KEK__KEY_STATE__DELETED
                                              : KEK__KEY_STATE__ENABLED;
        ki->created_usec = k->created_usec;
        ki->deleted_usec = k->deleted_usec;
        ki->scheduled_purge_usec = k->scheduled_purge_usec;
        ki->recoverable = keystore_recoverable(d->keystore);
        pol->rotate_after_seconds = k->policy.rotate_after_sec;
        pol->max_wraps = key_max_wraps(k);
        ki->policy = pol;
        for (size_t j = 0; j < k->n_versions; j++) {
                const KeyVersion *v = &k->versions[j];

                kek__version_info__init(&vi[j]);
                vi[j].id = v->id;
                vi[j].created_usec = v->created_usec;
                vi[j].enabled = v->enabled;
                vi[j].wraps = v->wraps_reserved - MIN(v->wraps_reserved, v->lease_left);
                vi[j].unwraps = v->unwraps + v->unwraps_pending;
                vi[j].last_use_usec = MAX(v->last_use_usec, v->last_use_pending);
                vp[j] = &vi[j];
        }
        ki->n_versions = k->n_versions;
        ki->versions = vp;
        /* Who may use a key is the officers' business, not its users'. */
        if (k->n_grants > 0 && peer_has_role(reply->peer, ROLE_OFFICER)) {
                Kek__Grant *gi = reply_alloc(reply, k->n_grants * sizeof(*gi));
                Kek__Grant **gp = reply_alloc(reply, k->n_grants * sizeof(*gp));

                if (!gi || !gp)
                        return NULL;
                for (size_t j = 0; j < k->n_grants; j++) {
                        kek__grant__init(&gi[j]);
                        gi[j].group = k->grants[j].group;
                        gi[j].id = k->grants[j].id;
                        gi[j].ops = k->grants[j].ops;
                        gp[j] = &gi[j];
                }
                ki->n_grants = k->n_grants;
                ki->grants = gp;
        }
        return ki;
}

static int reply_key_info(Dispatcher *d, Reply *reply, const Key *k, DispatchOutcome *o) {
        Kek__KeyInfoResponse *resp = reply_alloc(reply, sizeof(*resp));

        if (!resp)
                return -ENOMEM;
        kek__key_info_response__init(resp);
        resp->key = key_info(d, reply, k);
        if (!resp->key)
                return -ENOMEM;
        o->version = k->current_version;
        reply->resp.body_case = KEK__RESPONSE__BODY_KEY_INFO;
        reply->resp.key_info = resp;
        return 0;
}

static bool policy_from_wire(const Kek__RotationPolicy *p, RotationPolicy *ret) {
        if (!p)
                return false;
        *ret = (RotationPolicy) { p->rotate_after_seconds, p->max_wraps };
        return true;
}

static int handle_create_key(Dispatcher *d, const Kek__Request *req, Reply *reply, DispatchOutcome *o) {
        const char *name = req->create_key->key;
        RotationPolicy pol;
        const Key *k;
        int r;

        set_outcome_key(o, name);
        if (!key_name_valid(name))
                return reply_error(reply, -KEKERR_INVALID_ARGUMENT,
                                   "key name must be 1..%u of [A-Za-z0-9._-], not starting with '.' or '-'", KEY_NAME_MAX);
        r = keystore_create(d->keystore, name, policy_from_wire(req->create_key->policy, &pol) ? &pol : NULL,
                            d->now_usec(), &k);
        if (r == -KEKERR_INVALID_ARGUMENT)
                return reply_error(reply, r, "rotation age must be at most 100 years and the wrap budget at most 2^32");
        if (r < 0)
                return keyerr(d, reply, r, o->key, 0);
        return reply_key_info(d, reply, k, o);
}

static int handle_get_key(Dispatcher *d, const Kek__Request *req, Reply *reply, DispatchOutcome *o) {
        const Key *k;
        int r;

        set_outcome_key(o, req->get_key->key);
        if (!peer_has_role(reply->peer, ROLE_OFFICER)) {
                r = authorize(d, reply, req->get_key->key, o->key, GRANT_GET);
                if (r < 0)
                        return r;
        }
        r = keystore_find(d->keystore, req->get_key->key, &k);
        if (r < 0)
                return keyerr(d, reply, r, o->key, 0);
        return reply_key_info(d, reply, k, o);
}

static int handle_list_keys(Dispatcher *d, const Kek__Request *req, Reply *reply, DispatchOutcome *o) {
        Kek__ListKeysResponse *l;
        Kek__KeyInfo **infos;
        size_t n, m = 0;
        int r;

        /* The operator's view of the token: fresh to within a second, so changes through other nodes show. */
        r = keystore_refresh(d->keystore, LISTING_MAX_AGE_USEC);
        if (r < 0)
                return r;
        n = keystore_n_keys(d->keystore);
        l = reply_alloc(reply, sizeof(*l));
        infos = reply_alloc(reply, n * sizeof(*infos));
        if (!l || !infos)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                const Key *k = keystore_key_at(d->keystore, i);

                if (!key_exists(k))
                        continue; /* being purged or being created */
                if (k->state == KEY_DELETED && !req->list_keys->include_deleted)
                        continue;
                if (!dispatch_peer_may(d, reply->peer, k, GRANT_GET))
                        continue; /* crypto users see the keys they may get */
                infos[m] = key_info(d, reply, k);
                if (!infos[m++])
                        return -ENOMEM;
        }
        kek__list_keys_response__init(l);
        l->n_keys = m;
        l->keys = infos;
        reply->resp.body_case = KEK__RESPONSE__BODY_LIST_KEYS;
        reply->resp.list_keys = l;
        return 0;
}

static int handle_rotate_key(Dispatcher *d, const Kek__Request *req, Reply *reply, DispatchOutcome *o) {
        const Key *k;
        int r;

        set_outcome_key(o, req->rotate_key->key);
        r = keystore_rotate(d->keystore, req->rotate_key->key, d->now_usec(), &k);
        if (r < 0)
                return keyerr(d, reply, r, o->key, 0);
        return reply_key_info(d, reply, k, o);
}

static int handle_set_rotation_policy(Dispatcher *d, const Kek__Request *req, Reply *reply, DispatchOutcome *o) {
        RotationPolicy pol = {};
        const Key *k;
        int r;

        set_outcome_key(o, req->set_rotation_policy->key);
        (void) policy_from_wire(req->set_rotation_policy->policy, &pol);
        r = keystore_set_policy(d->keystore, req->set_rotation_policy->key, &pol, &k);
        if (r == -KEKERR_INVALID_ARGUMENT)
                return reply_error(reply, r, "rotation age must be at most 100 years and the wrap budget at most 2^32");
        if (r < 0)
                return keyerr(d, reply, r, o->key, 0);
        return reply_key_info(d, reply, k, o);
}

static int handle_set_enabled(Dispatcher *d, const Kek__Request *req, Reply *reply, DispatchOutcome *o) {
        const Kek__SetEnabledRequest *s = req->set_enabled;
        const Key *k;
        int r;

        set_outcome_key(o, s->key);
        o->version = s->version;
        o->op = s->enabled ? (s->version ? "enable-version" : "enable-key") : (s->version ? "disable-version" : "disable-key");
        r = keystore_set_enabled(d->keystore, s->key, s->version, s->enabled, &k);
        if (r < 0)
                return keyerr(d, reply, r, o->key, s->version);
        return reply_key_info(d, reply, k, o);
}

static int handle_delete_key(Dispatcher *d, const Kek__Request *req, Reply *reply, DispatchOutcome *o) {
        const Key *k;
        int r;

        set_outcome_key(o, req->delete_key->key);
        if (needs_approval(d, reply, DUAL_CONTROL_DELETE))
                return approval_required(reply, "delete-key", o->key);
        r = keystore_delete(d->keystore, req->delete_key->key, d->now_usec(), &k);
        if (r < 0)
                return keyerr(d, reply, r, o->key, 0);
        return reply_key_info(d, reply, k, o);
}

static int handle_recover_key(Dispatcher *d, const Kek__Request *req, Reply *reply, DispatchOutcome *o) {
        const Key *k;
        int r;

        set_outcome_key(o, req->recover_key->key);
        r = keystore_recover(d->keystore, req->recover_key->key, &k);
        if (r == -KEKERR_INVALID_ARGUMENT)
                return reply_error(reply, r, "key '%s' is not deleted; nothing to recover", o->key);
        if (r < 0)
                return keyerr(d, reply, r, o->key, 0);
        return reply_key_info(d, reply, k, o);
}

static int reply_empty(Reply *reply);

static int handle_purge_key(Dispatcher *d, const Kek__Request *req, Reply *reply, DispatchOutcome *o) {
        const Key *k = NULL;
        uint64_t purge_at = 0;
        int r;

        set_outcome_key(o, req->purge_key->key);
        if (needs_approval(d, reply, DUAL_CONTROL_PURGE))
                return approval_required(reply, "purge-key", o->key);
        if (keystore_find(d->keystore, req->purge_key->key, &k) >= 0)
                purge_at = k->scheduled_purge_usec;
        r = keystore_purge(d->keystore, req->purge_key->key, d->now_usec());
        if (r == -KEKERR_INVALID_ARGUMENT)
                return reply_error(reply, r, "key '%s' is not deleted; delete it before purging", o->key);
        if (r == -KEKERR_PURGE_PROTECTED)
                return reply_error(reply, r, "key '%s' is purge protected until its scheduled purge date (%llu s after the epoch)",
                                   o->key, (unsigned long long) (purge_at / 1000000));
        if (r < 0)
                return keyerr(d, reply, r, o->key, 0);
        return reply_empty(reply);
}

static int reply_vault(Dispatcher *d, Reply *reply) {
        Kek__VaultPolicyResponse *resp = reply_alloc(reply, sizeof(*resp));
        Kek__VaultPolicy *p = reply_alloc(reply, sizeof(*p));
        const VaultPolicy *v = keystore_vault(d->keystore);

        if (!resp || !p)
                return -ENOMEM;
        kek__vault_policy_response__init(resp);
        kek__vault_policy__init(p);
        p->retention_days = v->retention_days;
        p->purge_protection = v->purge_protection;
        p->dual_control = v->dual_control;
        p->approval_window_seconds = v->approval_window_sec;
        resp->policy = p;
        resp->allow_unrecoverable = keystore_allow_unrecoverable(d->keystore);
        reply->resp.body_case = KEK__RESPONSE__BODY_VAULT_POLICY;
        reply->resp.vault_policy = resp;
        return 0;
}

static int handle_get_vault_policy(Dispatcher *d, const Kek__Request *req, Reply *reply, DispatchOutcome *o) {
        int r = keystore_refresh(d->keystore, LISTING_MAX_AGE_USEC);

        if (r < 0)
                return r;
        return reply_vault(d, reply);
}

static int handle_set_vault_policy(Dispatcher *d, const Kek__Request *req, Reply *reply, DispatchOutcome *o) {
        const Kek__SetVaultPolicyRequest *s = req->set_vault_policy;
        VaultChange c = {
                .retention_days = s->retention_days,
                .purge_protection = s->purge_protection == KEK__SWITCH__ON ? 1 : s->purge_protection == KEK__SWITCH__OFF ? 0 : -1,
                .set_dual_control = s->set_dual_control,
                .dual_control = s->dual_control,
                .approval_window_sec = s->approval_window_seconds,
        };
        int r;

        if (needs_approval(d, reply, DUAL_CONTROL_VAULT_POLICY) && vault_change_weakens(keystore_vault(d->keystore), &c))
                return approval_required(reply, "a weaker vault policy", NULL);
        r = keystore_set_vault(d->keystore, &c);
        if (r == -KEKERR_INVALID_ARGUMENT)
                return reply_error(reply, r, "retention must be %u..%u days, the approval window %u..%u s, dual control a set of purge, delete, last-grant, vault-policy",
                                   RETENTION_DAYS_MIN, RETENTION_DAYS_MAX, APPROVAL_WINDOW_MIN, APPROVAL_WINDOW_MAX);
        if (r == -KEKERR_PERMISSION_DENIED)
                return reply_error(reply, r, c.purge_protection == 0 ? "purge protection cannot be switched off once on"
                                                                     : "with purge protection on, retention can only be raised");
        if (r < 0)
                return r;
        return reply_vault(d, reply);
}

static int handle_set_grant(Dispatcher *d, const Kek__Request *req, Reply *reply, DispatchOutcome *o) {
        const Kek__SetGrantRequest *s = req->set_grant;
        Grant g;
        const Key *k;
        int r;

        set_outcome_key(o, s->key);
        if (!s->grant || s->grant->ops == 0 || (s->grant->ops & ~(uint32_t) GRANT_ALL))
                return reply_error(reply, -KEKERR_INVALID_ARGUMENT, "a grant names a uid or gid and a non-empty set of get, wrap, unwrap, rewrap");
        g = (Grant) { .group = s->grant->group, .id = s->grant->id, .ops = s->grant->ops };
        r = keystore_find(d->keystore, s->key, &k);
        if (r < 0)
                return keyerr(d, reply, r, o->key, 0);
        if (s->revoke) {
                bool last = true;

                /* Would the key be left with no grant at all? */
                for (size_t i = 0; i < k->n_grants && last; i++)
                        last = k->grants[i].group == g.group && k->grants[i].id == g.id && (k->grants[i].ops & ~g.ops) == 0;
                if (k->n_grants > 0 && last && needs_approval(d, reply, DUAL_CONTROL_LAST_GRANT))
                        return approval_required(reply, "revoking the last grant", o->key);
        }
        r = keystore_set_grant(d->keystore, s->key, &g, s->revoke, &k);
        if (r == -KEKERR_INVALID_ARGUMENT)
                return reply_error(reply, r, s->revoke ? "%s %u has no grant on key '%s'" : "key '%s' has the maximum of %u grants%s",
                                   s->revoke ? (g.group ? "gid" : "uid") : o->key, s->revoke ? g.id : GRANTS_MAX,
                                   s->revoke ? o->key : "; grant a group instead");
        if (r < 0)
                return keyerr(d, reply, r, o->key, 0);
        return reply_key_info(d, reply, k, o);
}

static int handle_check(Dispatcher *d, const Kek__Request *req, Reply *reply, DispatchOutcome *o) {
        Kek__CheckResponse *c;
        CheckReport rep = {};
        char **problems;
        int r;

        r = keystore_check(d->keystore, d->now_usec(), &rep);
        if (r < 0)
                return r;
        c = reply_alloc(reply, sizeof(*c));
        problems = reply_alloc(reply, rep.n_problems * sizeof(*problems));
        if (!c || !problems) {
                check_report_done(&rep);
                return -ENOMEM;
        }
        kek__check_response__init(c);
        c->keys = rep.keys;
        c->versions = rep.versions;
        c->repaired = rep.repaired;
        for (size_t i = 0; i < rep.n_problems; i++) {
                problems[i] = TAKE_PTR(rep.problems[i]);
                if (reply_own(reply, problems[i]) < 0) {
                        check_report_done(&rep);
                        return -ENOMEM;
                }
        }
        c->n_problems = rep.n_problems;
        c->problems = problems;
        check_report_done(&rep);
        reply->resp.body_case = KEK__RESPONSE__BODY_CHECK;
        reply->resp.check = c;
        return 0;
}

/* --- dual control ------------------------------------------------------------------ */

static const HandlerEntry *handler_find(Kek__Request__BodyCase type);

static bool dual_controllable(Kek__Request__BodyCase t) {
        return t == KEK__REQUEST__BODY_PURGE_KEY || t == KEK__REQUEST__BODY_DELETE_KEY ||
               t == KEK__REQUEST__BODY_SET_GRANT || t == KEK__REQUEST__BODY_SET_VAULT_POLICY;
}

/* The key a request names (for refusals, audit and approvals), or "". */
static const char *request_key(const Kek__Request *r) {
        switch (r->body_case) {
        case KEK__REQUEST__BODY_WRAP:
                return r->wrap->key;
        case KEK__REQUEST__BODY_GET_KEY_VERSION:
                return r->get_key_version->key;
        case KEK__REQUEST__BODY_CREATE_KEY:
                return r->create_key->key;
        case KEK__REQUEST__BODY_GET_KEY:
                return r->get_key->key;
        case KEK__REQUEST__BODY_ROTATE_KEY:
                return r->rotate_key->key;
        case KEK__REQUEST__BODY_SET_ROTATION_POLICY:
                return r->set_rotation_policy->key;
        case KEK__REQUEST__BODY_SET_ENABLED:
                return r->set_enabled->key;
        case KEK__REQUEST__BODY_PURGE_KEY:
                return r->purge_key->key;
        case KEK__REQUEST__BODY_DELETE_KEY:
                return r->delete_key->key;
        case KEK__REQUEST__BODY_RECOVER_KEY:
                return r->recover_key->key;
        case KEK__REQUEST__BODY_SET_GRANT:
                return r->set_grant->key;
        default:
                return "";
        }
}

static const char *role_needed(Role role) {
        return role == ROLE_ADMIN ? "an administrator: root, kekd's user or a member of [access] admin_group"
                                  : "a key officer: root, kekd's user, or a member of [access] officer_group or admin_group";
}

static Kek__ApprovalInfo *approval_info(Reply *reply, const Approval *a) {
        Kek__ApprovalInfo *info = reply_alloc(reply, sizeof(*info));
        char *id = reply_alloc(reply, sizeof(a->id)), *op = reply_alloc(reply, sizeof(a->op)),
             *key = reply_alloc(reply, sizeof(a->key));

        if (!info || !id || !op || !key)
                return NULL;
        memcpy(id, a->id, sizeof(a->id));
        memcpy(op, a->op, sizeof(a->op));
        memcpy(key, a->key, sizeof(a->key));
        kek__approval_info__init(info);
        info->id = id;
        info->op = op;
        info->key = key;
        info->requester_uid = a->requester_uid;
        info->requester_pid = a->requester_pid;
        info->created_usec = a->created_usec;
        info->expires_usec = a->expires_usec;
        return info;
}

static void reply_set_approval(Reply *reply, const Approval *a) {
        memcpy(reply->approval_id, a->id, sizeof(reply->approval_id));
        reply->approval = (AuditApproval) { reply->approval_id, a->requester_uid };
}

static int handle_submit_approval(Dispatcher *d, const Kek__Request *req, Reply *reply, DispatchOutcome *o) {
        const Kek__Request *inner = req->submit_approval->request;
        _cleanup_free_ uint8_t *buf = NULL;
        const HandlerEntry *h;
        uint64_t now = d->now_usec();
        Approval a = {};
        size_t len;
        int r;

        if (!inner || !dual_controllable(inner->body_case) || !(h = handler_find(inner->body_case)))
                return reply_error(reply, -KEKERR_INVALID_ARGUMENT,
                                   "only purge-key, delete-key, set-grant and set-vault-policy can be submitted for approval");
        set_outcome_key(o, request_key(inner));
        if (!peer_has_role(reply->peer, h->required_role))
                return reply_error(reply, -KEKERR_PERMISSION_DENIED, "%s needs %s", h->op, role_needed(h->required_role));
        len = kek__request__get_packed_size(inner);
        buf = malloc(len ? len : 1);
        if (!buf)
                return -ENOMEM;
        kek__request__pack(inner, buf);
        (void) keystore_refresh(d->keystore, LISTING_MAX_AGE_USEC);
        snprintf(a.op, sizeof(a.op), "%s", h->op);
        snprintf(a.key, sizeof(a.key), "%s", o->key);
        a.requester_uid = (uint32_t) reply->peer->uid;
        a.requester_pid = (uint32_t) reply->peer->pid;
        a.created_usec = now;
        a.expires_usec = now + (uint64_t) keystore_vault(d->keystore)->approval_window_sec * USEC_PER_SEC;
        a.request = buf;
        a.request_len = len;
        r = approval_submit(keystore_hsm(d->keystore), now, &a);
        if (r == -KEKERR_LIMIT_EXCEEDED)
                return reply_error(reply, r, "%u requests are pending already; approve or cancel some first", APPROVALS_MAX);
        if (r < 0)
                return r;
        reply_set_approval(reply, &a);
        reply->resp.approval = approval_info(reply, &a);
        if (!reply->resp.approval)
                return -ENOMEM;
        reply->resp.body_case = KEK__RESPONSE__BODY_APPROVAL;
        return 0;
}

/* Looks up a pending request for approve/cancel; the caller owns *ret. */
static int approval_lookup(Dispatcher *d, Reply *reply, const char *id, Approval *ret) {
        int r = approval_get(keystore_hsm(d->keystore), id, d->now_usec(), ret);

        if (r == -ENOENT)
                return reply_error(reply, -KEKERR_INVALID_ARGUMENT,
                                   "no such pending request: unknown, already approved, cancelled or expired");
        return r;
}

static int handle_approve(Dispatcher *d, const Kek__Request *req, Reply *reply, DispatchOutcome *o) {
        const HandlerEntry *h;
        Kek__Request *inner;
        Approval a = {};
        int r;

        r = approval_lookup(d, reply, req->approve->id, &a);
        if (r < 0)
                return r;
        set_outcome_key(o, a.key);
        reply_set_approval(reply, &a);
        /* Stored by a kekd that checked it, but read from the token: checked again before it is unpacked. */
        inner = wirecheck_message(&kek__request__descriptor, a.request, a.request_len, NULL, NULL) == 0
                        ? kek__request__unpack(NULL, a.request_len, a.request)
                        : NULL;
        approval_done(&a);
        if (!inner)
                return reply_error(reply, -KEKERR_INTERNAL, "the stored request does not decode");
        reply->inner = inner;
        h = handler_find(inner->body_case);
        if (!h || !h->handler || !dual_controllable(inner->body_case))
                return reply_error(reply, -KEKERR_INTERNAL, "the stored request is not one that needs approval");
        o->op = h->op;
        /* The point of dual control: the approver is not the requester, whatever their roles. */
        if (a.requester_uid == (uint32_t) reply->peer->uid)
                return reply_error(reply, -KEKERR_PERMISSION_DENIED,
                                   "request %s was submitted by uid %u: another officer must approve it", a.id,
                                   a.requester_uid);
        if (!peer_has_role(reply->peer, h->required_role))
                return reply_error(reply, -KEKERR_PERMISSION_DENIED, "approving %s needs %s", h->op,
                                   role_needed(h->required_role));
        r = approval_claim(keystore_hsm(d->keystore), &a);
        if (r == -ENOENT)
                return reply_error(reply, -KEKERR_CONFLICT, "request %s was approved or cancelled meanwhile", a.id);
        if (r < 0)
                return r;
        reply->approved = true;
        return h->handler(d, inner, reply, o);
}

static int reply_empty(Reply *reply) {
        Kek__Empty *e = reply_alloc(reply, sizeof(*e));

        if (!e)
                return -ENOMEM;
        kek__empty__init(e);
        reply->resp.body_case = KEK__RESPONSE__BODY_EMPTY;
        reply->resp.empty = e;
        return 0;
}

static int handle_cancel_approval(Dispatcher *d, const Kek__Request *req, Reply *reply, DispatchOutcome *o) {
        Approval a = {};
        int r;

        r = approval_lookup(d, reply, req->cancel_approval->id, &a);
        if (r < 0)
                return r;
        set_outcome_key(o, a.key);
        reply_set_approval(reply, &a);
        approval_done(&a);
        r = approval_claim(keystore_hsm(d->keystore), &a);
        if (r == -ENOENT)
                return reply_error(reply, -KEKERR_CONFLICT, "request %s was approved or cancelled meanwhile", a.id);
        if (r < 0)
                return r;
        return reply_empty(reply);
}

static int handle_list_approvals(Dispatcher *d, const Kek__Request *req, Reply *reply, DispatchOutcome *o) {
        Kek__ApprovalList *l;
        Approval *list = NULL;
        size_t n = 0;
        int r;

        r = approval_list(keystore_hsm(d->keystore), d->now_usec(), &list, &n);
        if (r < 0)
                return r;
        l = reply_alloc(reply, sizeof(*l));
        if (l) {
                kek__approval_list__init(l);
                l->approvals = reply_alloc(reply, n * sizeof(*l->approvals));
        }
        if (!l || !l->approvals) {
                approvals_free(list, n);
                return -ENOMEM;
        }
        for (size_t i = 0; i < n; i++)
                if (!(l->approvals[i] = approval_info(reply, &list[i]))) {
                        approvals_free(list, n);
                        return -ENOMEM;
                }
        l->n_approvals = n;
        approvals_free(list, n);
        reply->resp.body_case = KEK__RESPONSE__BODY_APPROVALS;
        reply->resp.approvals = l;
        return 0;
}

static int handle_status(Dispatcher *d, const Kek__Request *req, Reply *reply, DispatchOutcome *o) {
        Kek__StatusResponse *st = reply_alloc(reply, sizeof(*st));
        char *text = NULL, *token, *version;
        size_t len, keys = 0, versions = 0;
        HsmStats hs;
        int r;

        if (!st)
                return -ENOMEM;
        kek__status_response__init(st);
        if (d->metrics) {
                r = metrics_render(d->metrics, d->keystore, &text, &len);
                if (r < 0 || reply_own(reply, text) < 0)
                        return -ENOMEM;
                st->metrics = text;
        }
        token = reply_alloc(reply, strlen(hsm_token_label(keystore_hsm(d->keystore))) + 1);
        version = reply_alloc(reply, strlen(PACKAGE_VERSION) + 1);
        if (!token || !version)
                return -ENOMEM;
        strcpy(token, hsm_token_label(keystore_hsm(d->keystore)));
        strcpy(version, PACKAGE_VERSION);
        st->token = token;
        st->version = version;
        st->started_usec = d->started_usec;
        for (size_t i = 0; i < keystore_n_keys(d->keystore); i++) {
                const Key *k = keystore_key_at(d->keystore, i);

                if (!key_exists(k))
                        continue; /* being created or purged */
                keys++;
                versions += k->n_versions;
        }
        st->keys = (uint32_t) keys;
        st->versions = (uint32_t) versions;
        st->clients = metrics_clients(d->metrics);
        hsm_stats(keystore_hsm(d->keystore), &hs);
        crypto_pool_stats(d->pool, &hs);
        st->hsm_session_open = hs.session_open;
        reply->resp.body_case = KEK__RESPONSE__BODY_STATUS;
        reply->resp.status = st;
        return 0;
}

int dispatch_append_event(FrameBuf *out, size_t max_frame, uint64_t id, const char *name, const Key *k) {
        Kek__Response resp = KEK__RESPONSE__INIT;
        Kek__KeyEvent ev = KEK__KEY_EVENT__INIT;
        uint32_t disabled[64];
        size_t n = 0;

        ev.key = (char *) name;
        if (k) {
                ev.state = k->state == KEY_DISABLED ? KEK__KEY_STATE__DISABLED
                           : k->state == KEY_DELETED ? KEK__KEY_STATE__DELETED
                                                     : KEK__KEY_STATE__ENABLED;
                ev.current_version = k->current_version;
                for (size_t i = 0; i < k->n_versions && n < ELEMENTSOF(disabled); i++)
                        if (!k->versions[i].enabled)
                                disabled[n++] = k->versions[i].id;
                ev.n_disabled_versions = n;
                ev.disabled_versions = disabled;
        } else
                ev.gone = true;
        resp.id = id;
        resp.body_case = KEK__RESPONSE__BODY_EVENT;
        resp.event = &ev;
        return frame_append_message(out, &resp.base, max_frame);
}

static int handle_watch(Dispatcher *d, const Kek__Request *req, Reply *reply, DispatchOutcome *o) {
        Kek__KeyEvent *ev = reply_alloc(reply, sizeof(*ev));

        if (!ev)
                return -ENOMEM;
        /* The first event, with no key, says the stream is live. */
        kek__key_event__init(ev);
        ev->key = (char *) "";
        o->watch = true;
        reply->resp.body_case = KEK__RESPONSE__BODY_EVENT;
        reply->resp.event = ev;
        return 0;
}

static const HandlerEntry handlers[] = {
        { KEK__REQUEST__BODY_WRAP, "wrap", NULL, ROLE_CRYPTO_USER, false, true, stage_wrap, answer_wrap },
        { KEK__REQUEST__BODY_UNWRAP, "unwrap", NULL, ROLE_CRYPTO_USER, false, true, stage_unwrap, answer_unwrap },
        { KEK__REQUEST__BODY_REWRAP, "rewrap", NULL, ROLE_CRYPTO_USER, false, true, stage_rewrap, answer_rewrap },
        { KEK__REQUEST__BODY_BATCH_WRAP, "batch-wrap", handle_batch_wrap, ROLE_CRYPTO_USER, false, false, NULL, NULL },
        { KEK__REQUEST__BODY_BATCH_UNWRAP, "batch-unwrap", handle_batch_unwrap, ROLE_CRYPTO_USER, false, false, NULL, NULL },
        { KEK__REQUEST__BODY_BATCH_REWRAP, "batch-rewrap", handle_batch_rewrap, ROLE_CRYPTO_USER, false, false, NULL, NULL },
        { KEK__REQUEST__BODY_GET_KEY_VERSION, "get-key-version", handle_get_key_version, ROLE_CRYPTO_USER, false, true, NULL, NULL },
        { KEK__REQUEST__BODY_CREATE_KEY, "create-key", handle_create_key, ROLE_OFFICER, true, false, NULL, NULL },
        { KEK__REQUEST__BODY_LIST_KEYS, "list-keys", handle_list_keys, ROLE_CRYPTO_USER, false, false, NULL, NULL },
        { KEK__REQUEST__BODY_GET_KEY, "get-key", handle_get_key, ROLE_CRYPTO_USER, false, false, NULL, NULL },
        { KEK__REQUEST__BODY_ROTATE_KEY, "rotate-key", handle_rotate_key, ROLE_OFFICER, true, false, NULL, NULL },
        { KEK__REQUEST__BODY_SET_ROTATION_POLICY, "set-rotation-policy", handle_set_rotation_policy, ROLE_OFFICER, true, false, NULL, NULL },
        { KEK__REQUEST__BODY_SET_ENABLED, "set-enabled", handle_set_enabled, ROLE_OFFICER, true, false, NULL, NULL },
        { KEK__REQUEST__BODY_DELETE_KEY, "delete-key", handle_delete_key, ROLE_OFFICER, true, false, NULL, NULL },
        { KEK__REQUEST__BODY_RECOVER_KEY, "recover-key", handle_recover_key, ROLE_OFFICER, true, false, NULL, NULL },
        { KEK__REQUEST__BODY_PURGE_KEY, "purge-key", handle_purge_key, ROLE_OFFICER, true, false, NULL, NULL },
        { KEK__REQUEST__BODY_GET_VAULT_POLICY, "get-vault-policy", handle_get_vault_policy, ROLE_CRYPTO_USER, false, false, NULL, NULL },
        { KEK__REQUEST__BODY_SET_VAULT_POLICY, "set-vault-policy", handle_set_vault_policy, ROLE_ADMIN, true, false, NULL, NULL },
        { KEK__REQUEST__BODY_CHECK, "check", handle_check, ROLE_OFFICER, true, false, NULL, NULL },
        { KEK__REQUEST__BODY_WATCH, "watch", handle_watch, ROLE_CRYPTO_USER, false, false, NULL, NULL },
        { KEK__REQUEST__BODY_SET_GRANT, "set-grant", handle_set_grant, ROLE_ADMIN, true, false, NULL, NULL },
        { KEK__REQUEST__BODY_SUBMIT_APPROVAL, "submit-approval", handle_submit_approval, ROLE_OFFICER, true, false, NULL, NULL },
        { KEK__REQUEST__BODY_APPROVE, "approve", handle_approve, ROLE_OFFICER, true, false, NULL, NULL },
        { KEK__REQUEST__BODY_CANCEL_APPROVAL, "cancel-approval", handle_cancel_approval, ROLE_OFFICER, true, false, NULL, NULL },
        { KEK__REQUEST__BODY_LIST_APPROVALS, "list-approvals", handle_list_approvals, ROLE_OFFICER, false, false, NULL, NULL },
        { KEK__REQUEST__BODY_STATUS, "status", handle_status, ROLE_OFFICER, false, false, NULL, NULL },
};

static const HandlerEntry *handler_find(Kek__Request__BodyCase type) {
        for (size_t i = 0; i < ELEMENTSOF(handlers); i++)
                if (handlers[i].type == type)
                        return &handlers[i];
        return NULL;
}

int dispatch_append_error(FrameBuf *out, size_t max_frame, uint64_t id, int error, const char *message) {
        Kek__Response resp = KEK__RESPONSE__INIT;
        Kek__Error err = KEK__ERROR__INIT;

        err.code = (Kek__ErrorCode) kekerr_to_wire(error);
        err.message = (char *) (message && message[0] ? message : default_message(error));
        resp.id = id;
        resp.body_case = KEK__RESPONSE__BODY_ERROR;
        resp.error = &err;
        return frame_append_message(out, &resp.base, max_frame);
}

/* Wipes the request fields that can hold an AEK before protobuf-c frees them. */
static void request_cleanse(Kek__Request *req) {
        if (req->body_case == KEK__REQUEST__BODY_WRAP && req->wrap)
                secret_cleanse(req->wrap->plaintext.data, req->wrap->plaintext.len);
        if (req->body_case == KEK__REQUEST__BODY_BATCH_WRAP && req->batch_wrap)
                for (size_t i = 0; i < req->batch_wrap->n_items; i++)
                        secret_cleanse(req->batch_wrap->items[i]->plaintext.data, req->batch_wrap->items[i]->plaintext.len);
}

/* One request's way through dispatch_frames(). */
typedef struct JobState {
        DataItem item;                 /* staged requests: their op, at stride sizeof(JobState) */
        Kek__Request *req;
        Reply reply;
        const HandlerEntry *h;
        DispatchOutcome o;
        uint64_t start;
        int r;
        bool staged;                   /* answered by answer() after the group's HSM run */
        bool refused;                  /* refused (st->r) before the request was unpacked */
} JobState;

/*
 * Checks the frame (proto/wirecheck.h: nesting, strings, encoding), then the
 * peer's role for the operation it names, and only then decodes it; st->r < 0
 * is a refusal already described in the reply, st->req NULL without
 * st->refused a frame refused as MALFORMED_REQUEST (st->o.reason says why).
 */
static void job_begin(Dispatcher *d, const DispatchJob *j, JobState *st) {
        /* No credentials: no role and no grant. */
        static const Peer nobody = { .uid = (uid_t) -1, .gid = (gid_t) -1, .pid = 0 };

        WireCheckInfo info;
        WireCheckError e;

        st->o = (DispatchOutcome) { .op = "invalid" };
        st->start = d->metrics ? clock_mono_usec() : 0;
        kek__response__init(&st->reply.resp);
        st->reply.peer = j->peer ? j->peer : &nobody;
        /* Nothing recurses over the peer's bytes before they passed the bounded check. */
        if (wirecheck_message(&kek__request__descriptor, j->payload, j->len, &info, &e) < 0) {
                wirecheck_error_text(&e, st->o.reason, sizeof(st->o.reason));
                return;
        }
        st->o.id = info.id;
        st->reply.resp.id = info.id;
        st->h = handler_find((Kek__Request__BodyCase) info.oneof_case);
        if (st->h) {
                st->o.op = st->h->op;
                st->o.control = st->h->control;
        }
        /* A role the peer lacks is refused before its request is unpacked. */
        if (st->h && !peer_has_role(st->reply.peer, st->h->required_role)) {
                char key[KEY_NAME_MAX + 1] = "";

                memcpy(key, info.key ? (const char *) info.key : "", MIN(info.key_len, sizeof(key) - 1));
                set_outcome_key(&st->o, key);
                st->refused = true;
                st->r = reply_error(&st->reply, -KEKERR_PERMISSION_DENIED, "%s%s%s%s needs %s", st->h->op,
                                    st->o.key[0] ? " of key '" : "", st->o.key, st->o.key[0] ? "'" : "",
                                    role_needed(st->h->required_role));
                return;
        }
        st->req = kek__request__unpack(NULL, j->len, j->payload);
        if (!st->req) {
                snprintf(st->o.reason, sizeof(st->o.reason), "not a decodable Request message");
                return;
        }
        st->o.id = st->req->id;
        st->reply.resp.id = st->req->id;
        if (st->req->body_case != (Kek__Request__BodyCase) info.oneof_case) {
                /* The check and protobuf-c read the same bytes differently: trust neither. */
                snprintf(st->o.reason, sizeof(st->o.reason), "operation %u read as %u", info.oneof_case,
                         (unsigned) st->req->body_case);
                kek__request__free_unpacked(st->req, NULL);
                st->req = NULL;
                return;
        }
        if (!st->h && st->req->base.n_unknown_fields > 0)
                st->r = reply_error(&st->reply, -KEKERR_UNSUPPORTED, "request type not supported by this kekd");
        else if (!st->h)
                st->r = reply_error(&st->reply, -KEKERR_MALFORMED_REQUEST, "request has no operation");
}

/* Audit, metrics, the reply frame, cleanup. */
static void job_end(Dispatcher *d, DispatchJob *j, JobState *st) {
        const HandlerEntry *h = st->h;
        DispatchOutcome *o = &st->o;
        int r = st->r;

        if (!st->req && !st->refused) {
                char message[sizeof(o->reason) + 48];

                o->error = -KEKERR_MALFORMED_REQUEST;
                snprintf(message, sizeof(message), "frame is not a valid Request message: %s", o->reason);
                r = dispatch_append_error(j->out, d->max_frame, 0, o->error, message);
                reply_done(&st->reply);
                j->outcome = *o;
                j->result = r < 0 ? r : -KEKERR_MALFORMED_REQUEST;
                return;
        }
        o->error = r < 0 ? r : 0;
        if (h && (h->control || o->error == -KEKERR_PERMISSION_DENIED || o->error == -KEKERR_APPROVAL_REQUIRED))
                audit_control(d->audit, st->reply.peer, o->op, o->key, o->version, o->error,
                              st->reply.approval.id ? &st->reply.approval : NULL);
        else if (h && h->data)
                audit_data(d->audit, st->reply.peer, o->op, o->key, o->version, o->error);
        if (d->metrics)
                metrics_request(d->metrics, o->op, o->key, o->error, clock_mono_usec() - st->start, o->items);

        if (r < 0)
                r = dispatch_append_error(j->out, d->max_frame, o->id, r, st->reply.message);
        else {
                r = frame_append_message(j->out, &st->reply.resp.base, d->max_frame);
                if (r == -EMSGSIZE) {
                        o->error = -KEKERR_INVALID_ARGUMENT;
                        r = dispatch_append_error(j->out, d->max_frame, o->id, o->error,
                                                  "response would exceed the maximum frame size; send smaller batches");
                }
        }

        crypto_op_done(&st->item.op);
        reply_done(&st->reply);
        if (st->req) {
                request_cleanse(st->req);
                kek__request__free_unpacked(st->req, NULL);
                st->req = NULL;
        }
        j->outcome = *o;
        j->result = r < 0 ? r : 0;
}

/* Runs the HSM work of the staged jobs in [from, to) together, then answers each in order. */
static void group_flush(Dispatcher *d, DispatchJob *jobs, JobState *sts, size_t from, size_t to) {
        if (from >= to)
                return;
        keystore_run(d->keystore, d->pool, &sts[from].item.op, sizeof(*sts), to - from);
        for (size_t i = from; i < to; i++) {
                JobState *st = &sts[i];

                if (st->staged) {
                        st->r = st->h->answer(d, &st->item, &st->reply);
                        set_outcome_key(&st->o, st->item.o.key);
                        st->o.version = st->item.o.version;
                }
                job_end(d, &jobs[i], st);
        }
}

void dispatch_frames(Dispatcher *d, DispatchJob *jobs, size_t n) {
        _cleanup_free_ JobState *sts = NULL;
        JobState one;
        size_t from = 0;

        if (n == 0)
                return;
        /* Lost worker sessions reopen now, before any handle is taken for this call's runs. */
        crypto_pool_ready(d->pool);
        if (n == 1) {
                one = (JobState) {};
                sts = NULL;
        } else if (!(sts = calloc(n, sizeof(*sts)))) {
                /* No memory for the group: one at a time still answers everyone. */
                for (size_t i = 0; i < n; i++)
                        dispatch_frames(d, &jobs[i], 1);
                return;
        }
        for (size_t i = 0; i < n; i++) {
                JobState *st = sts ? &sts[i] : &one;

                job_begin(d, &jobs[i], st);
                if (st->req && st->h && st->h->prepare) {
                        /* Refused ones stay in the group too (op.result says so): answers keep their order. */
                        if (st->r >= 0) {
                                st->r = st->h->prepare(d, st->req, &st->reply, &st->item);
                                set_outcome_key(&st->o, st->item.o.key);
                                st->o.version = st->item.o.version;
                        }
                        if (st->r >= 0)
                                st->staged = true;
                        else
                                st->item.op.result = st->r;
                        continue;
                }
                /* Anything else runs on its own, after the staged requests before it. */
                group_flush(d, jobs, sts ? sts : &one, from, i);
                if (st->req && st->r >= 0)
                        st->r = st->h->handler(d, st->req, &st->reply, &st->o);
                job_end(d, &jobs[i], st);
                from = i + 1;
        }
        group_flush(d, jobs, sts ? sts : &one, from, n);
}

int dispatch_frame(Dispatcher *d, const Peer *peer, const uint8_t *payload, size_t len, FrameBuf *out,
                   DispatchOutcome *ret_outcome) {
        DispatchJob j = { .peer = peer, .payload = payload, .len = len, .out = out };

        dispatch_frames(d, &j, 1);
        if (ret_outcome)
                *ret_outcome = j.outcome;
        return j.result;
}
