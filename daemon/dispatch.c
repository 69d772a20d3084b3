/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Request handlers and the dispatch table (see dispatch.h). Handlers fill a
 * Reply whose storage lives on dispatch_frame()'s stack or in the Reply's own
 * owned pointers; dispatch_frame() packs it and releases everything, cleansing
 * plaintext, so no handler has to get the memory discipline right on its own.
 */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "common/kekerr.h"
#include "dispatch.h"
#include "proto/kek.pb-c.h"

typedef struct Reply {
        Kek__Response resp;
        union {
                Kek__WrapResponse wrap;
                Kek__UnwrapResponse unwrap;
                Kek__GetKeyVersionResponse get_key_version;
                Kek__KeyInfoResponse key_info;
                Kek__ListKeysResponse list_keys;
        } u;
        char message[256];
        /* owned, released after packing */
        uint8_t *blob;
        Secret *plaintext;
        Kek__KeyInfo *infos;
        Kek__KeyInfo **info_ptrs;
        Kek__VersionInfo *vinfos;
        Kek__VersionInfo **vinfo_ptrs;
} Reply;

typedef int (*Handler)(Dispatcher *d, const Peer *peer, const Kek__Request *req, Reply *reply,
                       DispatchOutcome *outcome);

typedef struct HandlerEntry {
        Kek__Request__BodyCase type;
        const char *op;
        Handler handler;
        Role required_role;
} HandlerEntry;

uint64_t realtime_usec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_REALTIME, &ts);
        return (uint64_t) ts.tv_sec * 1000000ULL + (uint64_t) ts.tv_nsec / 1000;
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
        case -ENOMEM:
                return "kekd is out of memory";
        default:
                return kekerr_name(r) ? kekerr_name(r) : "internal error";
        }
}

static int keyerr(Reply *reply, int r, const char *key, uint32_t version) {
        switch (r) {
        case -KEKERR_UNKNOWN_KEY:
                return reply_error(reply, r, "unknown key '%s'", key);
        case -KEKERR_UNKNOWN_VERSION:
                return reply_error(reply, r, "key '%s' has no version %u", key, version);
        case -KEKERR_KEY_DISABLED:
                return reply_error(reply, r, "key '%s' version %u is disabled", key, version);
        case -KEKERR_KEY_DELETED:
                return reply_error(reply, r, "key '%s' is deleted", key);
        case -KEKERR_KEY_EXISTS:
                return reply_error(reply, r, "key '%s' already exists", key);
        default:
                return r;
        }
}

static void set_outcome_key(DispatchOutcome *o, const char *key) {
        if (key)
                snprintf(o->key, sizeof(o->key), "%s", key);
}

static int handle_wrap(Dispatcher *d, const Peer *peer, const Kek__Request *req, Reply *reply, DispatchOutcome *o) {
        const Kek__WrapRequest *w = req->wrap;
        size_t blob_len;
        uint32_t version;
        int r;

        set_outcome_key(o, w->key);
        o->version = w->version;
        if (w->plaintext.len == 0 || w->plaintext.len > AEK_MAX_SIZE)
                return reply_error(reply, -KEKERR_INVALID_ARGUMENT, "plaintext must be 1..%u bytes", AEK_MAX_SIZE);
        if (w->context.len > CONTEXT_MAX_SIZE)
                return reply_error(reply, -KEKERR_INVALID_ARGUMENT, "context must be at most %u bytes", CONTEXT_MAX_SIZE);
        r = keystore_wrap(d->keystore, w->key, w->version, w->plaintext.data, w->plaintext.len, w->context.data,
                          w->context.len, &reply->blob, &blob_len, &version);
        if (r < 0)
                return keyerr(reply, r, w->key, w->version);
        o->version = version;
        kek__wrap_response__init(&reply->u.wrap);
        reply->u.wrap.blob = (ProtobufCBinaryData) { blob_len, reply->blob };
        reply->u.wrap.version = version;
        reply->resp.body_case = KEK__RESPONSE__BODY_WRAP;
        reply->resp.wrap = &reply->u.wrap;
        return 0;
}

static int handle_unwrap(Dispatcher *d, const Peer *peer, const Kek__Request *req, Reply *reply, DispatchOutcome *o) {
        const Kek__UnwrapRequest *u = req->unwrap;
        BlobView view;
        int r;

        if (u->context.len > CONTEXT_MAX_SIZE)
                return reply_error(reply, -KEKERR_INVALID_ARGUMENT, "context must be at most %u bytes", CONTEXT_MAX_SIZE);
        /* Parse once here too, so refusals name the key and version of the blob. */
        if (blob_parse(u->blob.data, u->blob.len, &view) >= 0) {
                set_outcome_key(o, view.key);
                o->version = view.version;
        }
        r = keystore_unwrap(d->keystore, u->blob.data, u->blob.len, u->context.data, u->context.len,
                            &reply->plaintext, &view);
        if (r == -KEKERR_BLOB_INVALID && !o->key[0])
                return reply_error(reply, r, "not a kekd blob (bad format byte, length or key name)");
        if (r < 0)
                return keyerr(reply, r, o->key, o->version);
        kek__unwrap_response__init(&reply->u.unwrap);
        reply->u.unwrap.plaintext = (ProtobufCBinaryData) { reply->plaintext->len, reply->plaintext->data };
        reply->u.unwrap.key = o->key;
        reply->u.unwrap.version = view.version;
        reply->resp.body_case = KEK__RESPONSE__BODY_UNWRAP;
        reply->resp.unwrap = &reply->u.unwrap;
        return 0;
}

static Kek__KeyState state_to_wire(KeyStateValue s) {
        switch (s) {
        case KEY_DISABLED:
                return KEK__KEY_STATE__DISABLED;
        case KEY_DELETED:
                return KEK__KEY_STATE__DELETED;
        default:
                return KEK__KEY_STATE__ENABLED;
        }
}

static int handle_get_key_version(Dispatcher *d, const Peer *peer, const Kek__Request *req, Reply *reply,
                                  DispatchOutcome *o) {
        const Key *k;
        int r;

        set_outcome_key(o, req->get_key_version->key);
        r = keystore_find(d->keystore, req->get_key_version->key, &k);
        if (r < 0)
                return keyerr(reply, r, o->key, 0);
        o->version = k->current_version;
        kek__get_key_version_response__init(&reply->u.get_key_version);
        reply->u.get_key_version.key = (char *) k->name;
        reply->u.get_key_version.current_version = k->current_version;
        reply->u.get_key_version.state = state_to_wire(k->state);
        /* Vault policy (soft delete + purge protection) is not kept yet: no key is recoverable. */
        reply->u.get_key_version.recoverable = false;
        reply->resp.body_case = KEK__RESPONSE__BODY_GET_KEY_VERSION;
        reply->resp.get_key_version = &reply->u.get_key_version;
        return 0;
}

/* Fills reply->infos for keys[0..n) with all their versions, in four allocations whatever n is. */
static int build_key_infos(Reply *reply, const Key *const *keys, size_t n) {
        size_t total = 0, vi = 0;

        for (size_t i = 0; i < n; i++)
                total += keys[i]->n_versions;
        reply->infos = calloc(n ? n : 1, sizeof(*reply->infos));
        reply->info_ptrs = calloc(n ? n : 1, sizeof(*reply->info_ptrs));
        reply->vinfos = calloc(total ? total : 1, sizeof(*reply->vinfos));
        reply->vinfo_ptrs = calloc(total ? total : 1, sizeof(*reply->vinfo_ptrs));
        if (!reply->infos || !reply->info_ptrs || !reply->vinfos || !reply->vinfo_ptrs)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                Kek__KeyInfo *ki = &reply->infos[i];

                kek__key_info__init(ki);
                ki->name = (char *) keys[i]->name;
                ki->current_version = keys[i]->current_version;
                ki->state = state_to_wire(keys[i]->state);
                ki->created_usec = keys[i]->created_usec;
                ki->n_versions = keys[i]->n_versions;
                ki->versions = &reply->vinfo_ptrs[vi];
                for (size_t j = 0; j < keys[i]->n_versions; j++, vi++) {
                        kek__version_info__init(&reply->vinfos[vi]);
                        reply->vinfos[vi].id = keys[i]->versions[j].id;
                        reply->vinfos[vi].created_usec = keys[i]->versions[j].created_usec;
                        reply->vinfos[vi].enabled = keys[i]->versions[j].enabled;
                        reply->vinfo_ptrs[vi] = &reply->vinfos[vi];
                }
                reply->info_ptrs[i] = ki;
        }
        return 0;
}

static int reply_key_info(Reply *reply, const Key *k) {
        int r;

        r = build_key_infos(reply, &k, 1);
        if (r < 0)
                return r;
        kek__key_info_response__init(&reply->u.key_info);
        reply->u.key_info.key = reply->info_ptrs[0];
        reply->resp.body_case = KEK__RESPONSE__BODY_KEY_INFO;
        reply->resp.key_info = &reply->u.key_info;
        return 0;
}

static int handle_create_key(Dispatcher *d, const Peer *peer, const Kek__Request *req, Reply *reply,
                             DispatchOutcome *o) {
        const char *name = req->create_key->key;
        const Key *k;
        int r;

        set_outcome_key(o, name);
        if (!key_name_valid(name))
                return reply_error(reply, -KEKERR_INVALID_ARGUMENT,
                                   "key name must be 1..%u of [A-Za-z0-9._-], not starting with '.' or '-'", KEY_NAME_MAX);
        r = keystore_create(d->keystore, name, d->now_usec(), &k);
        if (r < 0)
                return keyerr(reply, r, name, 0);
        o->version = k->current_version;
        return reply_key_info(reply, k);
}

static int handle_get_key(Dispatcher *d, const Peer *peer, const Kek__Request *req, Reply *reply, DispatchOutcome *o) {
        const Key *k;
        int r;

        set_outcome_key(o, req->get_key->key);
        r = keystore_find(d->keystore, req->get_key->key, &k);
        if (r < 0)
                return keyerr(reply, r, o->key, 0);
        return reply_key_info(reply, k);
}

static int handle_list_keys(Dispatcher *d, const Peer *peer, const Kek__Request *req, Reply *reply,
                            DispatchOutcome *o) {
        _cleanup_free_ const Key **keys = NULL;
        size_t n;
        int r;

        /* Listing is the operator's view of the token: read it afresh so keys made through other nodes show. */
        r = keystore_load(d->keystore);
        if (r < 0)
                return r;
        n = keystore_n_keys(d->keystore);
        keys = calloc(n ? n : 1, sizeof(*keys));
        if (!keys)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++)
                keys[i] = keystore_key_at(d->keystore, i);
        r = build_key_infos(reply, keys, n);
        if (r < 0)
                return r;
        kek__list_keys_response__init(&reply->u.list_keys);
        reply->u.list_keys.n_keys = n;
        reply->u.list_keys.keys = reply->info_ptrs;
        reply->resp.body_case = KEK__RESPONSE__BODY_LIST_KEYS;
        reply->resp.list_keys = &reply->u.list_keys;
        return 0;
}

static const HandlerEntry handlers[] = {
        { KEK__REQUEST__BODY_WRAP, "wrap", handle_wrap, ROLE_CRYPTO_USER },
        { KEK__REQUEST__BODY_UNWRAP, "unwrap", handle_unwrap, ROLE_CRYPTO_USER },
        { KEK__REQUEST__BODY_GET_KEY_VERSION, "get-key-version", handle_get_key_version, ROLE_CRYPTO_USER },
        { KEK__REQUEST__BODY_CREATE_KEY, "create-key", handle_create_key, ROLE_OFFICER },
        { KEK__REQUEST__BODY_LIST_KEYS, "list-keys", handle_list_keys, ROLE_CRYPTO_USER },
        { KEK__REQUEST__BODY_GET_KEY, "get-key", handle_get_key, ROLE_CRYPTO_USER },
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
}

static void reply_done(Reply *reply) {
        if (reply->blob)
                free(reply->blob);
        secret_free(reply->plaintext);
        free(reply->infos);
        free(reply->info_ptrs);
        free(reply->vinfos);
        free(reply->vinfo_ptrs);
}

int dispatch_frame(Dispatcher *d, const Peer *peer, const uint8_t *payload, size_t len, FrameBuf *out,
                   DispatchOutcome *ret_outcome) {
        DispatchOutcome o = { .op = "invalid" };
        const HandlerEntry *h;
        Kek__Request *req;
        Reply reply = {};
        int r;

        req = kek__request__unpack(NULL, len, payload);
        if (!req) {
                o.error = -KEKERR_MALFORMED_REQUEST;
                r = dispatch_append_error(out, d->max_frame, 0, o.error, "frame is not a decodable Request message");
                if (ret_outcome)
                        *ret_outcome = o;
                return r < 0 ? r : -KEKERR_MALFORMED_REQUEST;
        }

        kek__response__init(&reply.resp);
        reply.resp.id = req->id;
        h = handler_find(req->body_case);
        if (h) {
                o.op = h->op;
                r = h->handler(d, peer, req, &reply, &o);
        } else if (req->base.n_unknown_fields > 0)
                r = reply_error(&reply, -KEKERR_UNSUPPORTED, "request type not supported by this kekd");
        else
                r = reply_error(&reply, -KEKERR_MALFORMED_REQUEST, "request has no operation");
        o.error = r < 0 ? r : 0;

        if (r < 0)
                r = dispatch_append_error(out, d->max_frame, req->id, r, reply.message);
        else {
                r = frame_append_message(out, &reply.resp.base, d->max_frame);
                if (r == -EMSGSIZE) {
                        o.error = -KEKERR_INVALID_ARGUMENT;
                        r = dispatch_append_error(out, d->max_frame, req->id, o.error,
                                                  "response would exceed the maximum frame size");
                }
        }

        reply_done(&reply);
        request_cleanse(req);
        kek__request__free_unpacked(req, NULL);
        if (ret_outcome)
                *ret_outcome = o;
        return r < 0 ? r : 0;
}
