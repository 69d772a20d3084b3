/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The data plane's handlers (see handlers.h): wrap, unwrap and rewrap, alone
 * or in a wire batch, and the current version of a key. A single request is
 * a Request with one item, a batch one with N; the same code serves both, in
 * the phases of dispatch.h: data_decode() makes the items (parsing each blob
 * once, and checking every size: the one place they are checked on the
 * request path), dispatch.c authorizes each item (keeping the key it looked
 * up, RequestItem.found), handle_data_prepare() prepares their HSM calls
 * from that key (keystore.h), dispatch.c runs them with other requests' and
 * data_answer() writes each item's result. A refused item answers with
 * its own error; only running out of memory fails a batch as a whole.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/kekerr.h"
#include "daemon/audit.h"
#include "daemon/handlers.h"
#include "daemon/tokenset.h"

typedef struct DataKind {
        Kek__Request__BodyCase single, batch;
        CryptoKind kind;
        uint32_t grant;
        const char *op;
} DataKind;

static const DataKind kinds[] = {
        { KEK__REQUEST__BODY_WRAP, KEK__REQUEST__BODY_BATCH_WRAP, CRYPTO_WRAP, GRANT_WRAP, "wrap" },
        { KEK__REQUEST__BODY_UNWRAP, KEK__REQUEST__BODY_BATCH_UNWRAP, CRYPTO_UNWRAP, GRANT_UNWRAP, "unwrap" },
        { KEK__REQUEST__BODY_REWRAP, KEK__REQUEST__BODY_BATCH_REWRAP, CRYPTO_REWRAP, GRANT_REWRAP, "rewrap" },
};

static const DataKind *kind_of(const Kek__Request *m) {
        for (size_t i = 0; m && i < ELEMENTSOF(kinds); i++)
                if (kinds[i].single == m->body_case || kinds[i].batch == m->body_case)
                        return &kinds[i];
        return NULL;
}

uint32_t data_grant(const Request *req) {
        const DataKind *k = kind_of(req->msg);

        return k ? k->grant : 0;
}

static int check_context(Request *req, size_t ctx_len) {
        if (ctx_len > CONTEXT_MAX_SIZE)
                return request_error(req, -KEKERR_INVALID_ARGUMENT, "context must be at most %u bytes", CONTEXT_MAX_SIZE);
        return 0;
}

/* An unwrap's or rewrap's item: the context's size, then the blob, parsed here once so refusals name its key. */
static void item_from_blob(Request *req, RequestItem *it, const ProtobufCBinaryData *blob, const ProtobufCBinaryData *ctx) {
        int r = check_context(req, ctx->len);

        if (r >= 0 && blob_parse(blob->data, blob->len, &it->view) < 0)
                r = request_error(req, -KEKERR_BLOB_INVALID, "not a kekd blob (bad format byte, length or key name)");
        if (r < 0) {
                request_item_refuse(req, it, r);
                return;
        }
        it->name = it->view.key;
        request_show_key(it->key, it->view.key);
        it->version = it->view.version;
}

static void item_decode(Request *req, const DataKind *k, RequestItem *it, const void *wire) {
        it->wire = wire;
        switch (k->kind) {
        case CRYPTO_WRAP: {
                const Kek__WrapRequest *w = wire;
                int r = 0;

                it->name = w->key;
                request_show_key(it->key, w->key);
                it->version = w->version;
                /* The sizes' one check on the request path (keystore.h). */
                if (w->plaintext.len == 0 || w->plaintext.len > AEK_MAX_SIZE)
                        r = request_error(req, -KEKERR_INVALID_ARGUMENT, "plaintext must be 1..%u bytes", AEK_MAX_SIZE);
                else
                        r = check_context(req, w->context.len);
                if (r < 0)
                        request_item_refuse(req, it, r);
                break;
        }
        case CRYPTO_UNWRAP: {
                const Kek__UnwrapRequest *u = wire;

                item_from_blob(req, it, &u->blob, &u->context);
                break;
        }
        case CRYPTO_REWRAP: {
                const Kek__RewrapRequest *w = wire;

                item_from_blob(req, it, &w->blob, &w->context);
                break;
        }
        }
}

int data_decode(Request *req) {
        const Kek__Request *m = req->msg;
        const DataKind *k = kind_of(m);
        void *const *wires;
        size_t n;

        if (!k)
                return 0;
        req->batch = m->body_case == k->batch;
        if (!req->batch) {
                n = 1;
                wires = (void *const *) (k->kind == CRYPTO_WRAP ? (void *) &m->wrap : k->kind == CRYPTO_UNWRAP ? (void *) &m->unwrap : (void *) &m->rewrap);
        } else {
                /* The three batch messages have the same layout: n_items, then items. */
                n = k->kind == CRYPTO_WRAP ? m->batch_wrap->n_items : k->kind == CRYPTO_UNWRAP ? m->batch_unwrap->n_items : m->batch_rewrap->n_items;
                wires = k->kind == CRYPTO_WRAP ? (void *const *) m->batch_wrap->items
                        : k->kind == CRYPTO_UNWRAP ? (void *const *) m->batch_unwrap->items
                                                   : (void *const *) m->batch_rewrap->items;
                if (n > BATCH_MAX_ITEMS)
                        return request_error(req, -KEKERR_INVALID_ARGUMENT, "a batch holds at most %u items", BATCH_MAX_ITEMS);
                req->outcome.items = (unsigned) n;
        }
        if (n == 0)
                return 0;
        /* Checked before allocating: n is bounded by BATCH_MAX_ITEMS. */
        req->items = calloc(n, sizeof(*req->items));
        if (!req->items)
                return -ENOMEM;
        req->n_items = n;
        for (size_t i = 0; i < n; i++)
                item_decode(req, k, &req->items[i], wires[i]);
        return 0;
}

static int item_error(Dispatcher *d, Request *req, const DataKind *k, RequestItem *it, int r);

/* Prepare for one item, from the key authorize found (it->found); a refusal is the item's, described now. */
static void item_prepare(Dispatcher *d, Request *req, const DataKind *k, RequestItem *it, uint64_t now, bool renewed) {
        int r;

        if (k->kind == CRYPTO_WRAP) {
                const Kek__WrapRequest *w = it->wire;

                r = (renewed ? keystore_wrap_prepare_renewed : keystore_wrap_prepare)(
                        d->keystore, &it->found, w->key, w->version, w->plaintext.data, w->plaintext.len, w->context.data,
                        w->context.len, now, &it->op);
        } else if (k->kind == CRYPTO_UNWRAP) {
                const Kek__UnwrapRequest *u = it->wire;

                r = keystore_unwrap_prepare(d->keystore, &it->found, &it->view, u->context.data, u->context.len, now,
                                            &it->op);
        } else {
                const Kek__RewrapRequest *w = it->wire;

                r = keystore_rewrap_prepare(d->keystore, &it->found, &it->view, w->context.data, w->context.len, now,
                                            &it->op);
        }
        it->renew = r == KEYSTORE_NEEDS_RENEWAL;
        if (r < 0)
                request_item_refuse(req, it, item_error(d, req, k, it, r));
}

int handle_data_prepare(Dispatcher *d, const Kek__Request *m, Request *req) {
        const DataKind *k = kind_of(m);
        uint64_t now = d->now_usec();
        bool renew = false;

        for (size_t i = 0; i < req->n_items; i++)
                if (req->items[i].error == 0) /* else refused at decode or authorize */
                        item_prepare(d, req, k, &req->items[i], now, false);
        /*
         * The renewal step: wraps whose version had no lease of wrap budget left get one (or the key
         * is rotated, keystore_wrap_renew()), writing the token, then are prepared again, in order.
         */
        for (size_t i = 0; i < req->n_items; i++)
                renew |= req->items[i].renew;
        for (size_t i = 0; renew && i < req->n_items; i++)
                if (req->items[i].renew)
                        item_prepare(d, req, k, &req->items[i], now, true);
        return 0;
}

/* Names the key (and version) in an item's refusal; the text goes into req->message. */
static int item_error(Dispatcher *d, Request *req, const DataKind *k, RequestItem *it, int r) {
        const Key *key;
        uint32_t version = it->version;

        if (r == -ENOSPC)
                return request_error(req, -KEKERR_INVALID_ARGUMENT,
                                     "key '%s' version %u has used its wrap budget; wrap with the current version", it->key, version);
        if (k->kind == CRYPTO_REWRAP && r != -KEKERR_KEY_DISABLED && r != -KEKERR_UNKNOWN_VERSION)
                version = 0;
        /* KEY_DISABLED covers a disabled key and a disabled version: say which. */
        if (r == -KEKERR_KEY_DISABLED && keystore_find(d->keystore, it->key, &key) >= 0 && key->state == KEY_DISABLED)
                version = 0;
        switch (r) {
        case -KEKERR_UNKNOWN_KEY:
                return request_error(req, r, "unknown key '%s'", it->key);
        case -KEKERR_UNKNOWN_VERSION:
                return request_error(req, r, "key '%s' has no version %u", it->key, version);
        case -KEKERR_KEY_DISABLED:
                return version ? request_error(req, r, "key '%s' version %u is disabled", it->key, version)
                               : request_error(req, r, "key '%s' is disabled", it->key);
        case -KEKERR_KEY_DELETED:
                return request_error(req, r, "key '%s' is deleted", it->key);
        case -KEKERR_KEY_NOT_RECOVERABLE:
                return request_error(req, r, "key '%s' isn't recoverable: the vault must have purge protection on", it->key);
        case -KEKERR_CONFLICT:
                return request_error(req, r, "another change to key '%s' is in progress; retry", it->key);
        default:
                return r;
        }
}

/* One item's response message; NULL (req->oom) when memory ran out. */
static void *item_answer(Request *req, const DataKind *k, RequestItem *it) {
        CryptoOp *op = &it->op;

        switch (k->kind) {
        case CRYPTO_WRAP: {
                Kek__WrapResponse *resp = request_alloc(req, sizeof(*resp));
                uint8_t *blob = request_own(req, TAKE_PTR(op->blob));

                if (!resp || !blob)
                        return NULL;
                kek__wrap_response__init(resp);
                resp->blob = (ProtobufCBinaryData) { op->blob_len, blob };
                resp->version = op->version;
                it->version = op->version;
                return resp;
        }
        case CRYPTO_UNWRAP: {
                Kek__UnwrapResponse *resp = request_alloc(req, sizeof(*resp));
                Secret *pt = request_own_secret(req, TAKE_PTR(op->plaintext));
                char *key = request_strdup(req, op->view.key);

                if (!resp || !pt || !key)
                        return NULL;
                kek__unwrap_response__init(resp);
                resp->plaintext = (ProtobufCBinaryData) { pt->len, pt->data };
                resp->key = key;
                resp->version = op->view.version;
                return resp;
        }
        case CRYPTO_REWRAP: {
                Kek__RewrapResponse *resp = request_alloc(req, sizeof(*resp));
                uint8_t *blob = request_own(req, TAKE_PTR(op->blob));

                if (!resp || !blob)
                        return NULL;
                kek__rewrap_response__init(resp);
                resp->blob = (ProtobufCBinaryData) { op->blob_len, blob };
                resp->version = op->version;
                resp->old_version = op->view.version;
                return resp;
        }
        }
        return NULL;
}

static void set_single(Request *req, const DataKind *k, void *resp) {
        switch (k->kind) {
        case CRYPTO_WRAP:
                req->resp.body_case = KEK__RESPONSE__BODY_WRAP;
                req->resp.wrap = resp;
                break;
        case CRYPTO_UNWRAP:
                req->resp.body_case = KEK__RESPONSE__BODY_UNWRAP;
                req->resp.unwrap = resp;
                break;
        case CRYPTO_REWRAP:
                req->resp.body_case = KEK__RESPONSE__BODY_REWRAP;
                req->resp.rewrap = resp;
                break;
        }
}

static void set_item_result(Kek__BatchItemResult *res, const DataKind *k, void *resp) {
        if (k->kind == CRYPTO_WRAP)
                res->wrap = resp;
        else if (k->kind == CRYPTO_UNWRAP)
                res->unwrap = resp;
        else
                res->rewrap = resp;
}

void data_answer(Dispatcher *d, Request *req) {
        const DataKind *k = kind_of(req->msg);
        Kek__BatchResponse *b = NULL;
        Kek__BatchItemResult **results = NULL;

        if (req->batch) {
                b = request_alloc(req, sizeof(*b));
                results = request_alloc(req, req->n_items * sizeof(*results));
                if (b) {
                        kek__batch_response__init(b);
                        b->n_items = req->n_items;
                        b->items = results;
                        req->resp.body_case = KEK__RESPONSE__BODY_BATCH;
                        req->resp.batch = b;
                }
        }
        for (size_t i = 0; i < req->n_items; i++) {
                RequestItem *it = &req->items[i];
                bool refused = it->error < 0;  /* before the run: its own reason stands */
                int r = refused ? it->error : it->op.result;
                void *resp = NULL;

                if (r >= 0 && !req->oom)
                        resp = item_answer(req, k, it);
                else if (r < 0 && it->error == 0) {
                        /* Refused in the run (the HSM, a rewrap's target): described now, as the refusals before it. */
                        r = item_error(d, req, k, it, r);
                        request_item_refuse(req, it, r);
                }
                if (req->oom && !refused)
                        r = -ENOMEM;
                if (req->batch) {
                        /* Every item is audited, also after out-of-memory ended the answers. */
                        audit_data(d->audit, req->peer, k->op, it->key, it->version, r < 0 ? r : 0);
                        if (req->oom)
                                continue;
                        results[i] = request_alloc(req, sizeof(**results));
                        if (!results[i])
                                continue;
                        kek__batch_item_result__init(results[i]);
                        if (r >= 0)
                                set_item_result(results[i], k, resp);
                        else {
                                Kek__Error *e = request_alloc(req, sizeof(*e));
                                char *msg = request_strdup(req, it->message ? it->message : request_default_message(r));

                                if (!e || !msg)
                                        continue;
                                kek__error__init(e);
                                e->code = (Kek__ErrorCode) kekerr_to_wire(r);
                                e->message = msg;
                                results[i]->error = e;
                        }
                } else if (r < 0) {
                        snprintf(req->message, sizeof(req->message), "%s", it->message ? it->message : "");
                        (void) request_fail(req, r);
                } else if (resp)
                        set_single(req, k, resp);
        }
        if (req->n_items > 0) {
                request_show_key(req->outcome.key, req->items[0].key);
                req->outcome.version = req->items[0].version;
        } else if (req->batch && !req->oom && !b)
                req->oom = true;
}

int handle_get_key_version(Dispatcher *d, const Kek__Request *m, Request *req) {
        Kek__GetKeyVersionResponse *g;
        const Key *k;
        int r;

        r = keystore_refind(d->keystore, &req->found, m->get_key_version->key, &k);
        if (r < 0)
                return key_error(d, req, r, 0);
        g = request_alloc(req, sizeof(*g));
        if (!g)
                return -ENOMEM;
        kek__get_key_version_response__init(g);
        g->key = request_strdup(req, k->name);
        req->outcome.version = k->current_version;
        g->current_version = k->current_version;
        g->state = k->state == KEY_DISABLED ? KEK__KEY_STATE__DISABLED
                   : k->state == KEY_DELETED ? KEK__KEY_STATE__DELETED
                                             : KEK__KEY_STATE__ENABLED;
        g->recoverable = keystore_recoverable(d->keystore);
        req->resp.body_case = KEK__RESPONSE__BODY_GET_KEY_VERSION;
        req->resp.get_key_version = g;
        return 0;
}

/*
 * Confirm (kek.proto): the state an unwrap of a blob of this version would
 * meet, read from the index, so that a client re-validates its cached AEKs
 * once per key version instead of once per AEK, with no cryptographic
 * operation (one C_GetTokenInfo: the token is there; with further tokens,
 * their health instead, no PKCS#11 call). What
 * the index cannot vouch for is answered unconfirmed, never refused: the
 * client then unwraps, and the unwrap decides (it looks for a version object
 * the index missed, and fails transiently while the HSM is away, as before).
 * The index vouches when it was read from the token within
 * confirm_max_age_usec: a kekd whose refreshes fail (HSM gone) stops
 * vouching, so clients fall back on the unwrap and its grace rules.
 */
/* Whether any token can serve the data plane now (daemon/tokenset.h); no PKCS#11 call. */
static bool some_token_serves(TokenSet *ts) {
        for (size_t i = 0; i < tokenset_count(ts); i++)
                if (tokenset_can_serve(ts, i))
                        return true;
        return false;
}

int handle_confirm(Dispatcher *d, const Kek__Request *m, Request *req) {
        const Kek__ConfirmRequest *c = m->confirm;
        Kek__ConfirmResponse *cr;
        const KeyVersion *v;
        const Key *k;
        uint64_t read_usec, age;
        int r;

        r = keystore_refind(d->keystore, &req->found, c->key, &k);
        if (r < 0)
                return key_error(d, req, r, c->version);
        req->outcome.version = c->version;
        /* The refusals an unwrap of this version would give, in its order (keystore-data.c). */
        v = c->version ? key_find_version(k, c->version) : NULL;
        if (!v)
                return key_error(d, req, -KEKERR_UNKNOWN_VERSION, c->version);
        if (k->state == KEY_DELETED)
                return key_error(d, req, -KEKERR_KEY_DELETED, c->version);
        if (k->state == KEY_DISABLED || !v->enabled)
                return key_error(d, req, -KEKERR_KEY_DISABLED, c->version);
        cr = request_alloc(req, sizeof(*cr));
        if (!cr)
                return -ENOMEM;
        kek__confirm_response__init(cr);
        cr->key = request_strdup(req, k->name);
        if (!cr->key)
                return -ENOMEM;
        cr->version = v->id;
        read_usec = keystore_index_read_usec(d->keystore);
        age = read_usec ? clock_mono_usec() - read_usec : UINT64_MAX;
        cr->index_age_usec = age == UINT64_MAX ? 0 : age;
        /*
         * Present: its object (and MAC key) were found at the last reading. One not found may be
         * a lookup that failed; only the unwrap's own search tells a missing version from that.
         */
        cr->confirmed = read_usec != 0 && age < d->confirm_max_age_usec && v->present &&
                        (!hsm_profile_has_mac_key(v->profile) || v->mac_present) && hsm_profile_name(v->profile) != NULL;
        /*
         * And the token answers now: during an HSM outage an unwrap would fail at once, and the
         * client must meet that failure (its grace rules) now, not once the index has aged.
         * One C_GetTokenInfo per confirmation, i.e. per key version and refresh_sec of a client.
         * With further tokens, their health stands in for that call: an unwrap would run on any
         * token that can serve (failover), and a preferred token that is slow or hanging must not
         * stall the loop here (its probe, on its own thread, decides whether it can serve).
         */
        if (cr->confirmed && d->tokens)
                cr->confirmed = some_token_serves(d->tokens);
        else if (cr->confirmed && hsm_token_answers(keystore_hsm(d->keystore)) < 0)
                cr->confirmed = false;
        req->resp.body_case = KEK__RESPONSE__BODY_CONFIRM;
        req->resp.confirm = cr;
        return 0;
}
