/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libkek's client (API in libkek.h). Threads and locks:
 *  - callers: any number, on one request connection (client/channel.h): a
 *    request goes out at once when nothing is in flight, else it joins the
 *    next batch frame; one waiting caller at a time reads the answers and
 *    hands them out. When the connection dies every pending request fails
 *    with -ECONNRESET; the next request reconnects, no sooner than the
 *    backoff allows.
 *  - the watch thread: its own connection with a Watch subscription; applies
 *    key events to the cache, reconnects with backoff, and forces
 *    re-validation of the cache whenever it (re)subscribes, since events may
 *    have been missed while it was down.
 * The library never logs and never writes to stdout/stderr.
 */
#include "config.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "client/aek.h"
#include "client/cache.h"
#include "client/channel.h"
#include "client/libkek.h"
#include "client/transport.h"
#include "common/kekerr.h"
#include "common/macro.h"
#include "common/secret.h"
#include "proto/blob.h"
#include "proto/frame.h"
#include "proto/kek.pb-c.h"

#define _public_ __attribute__((visibility("default")))

#define BACKOFF_MIN_USEC (50 * 1000ULL)
#define BACKOFF_MAX_USEC (5 * 1000 * 1000ULL)

struct kek_client {
        char socket_path[108];
        uint64_t timeout_usec, refresh_usec, grace_usec;
        Cache *cache;

        Channel *ch;                 /* the request connection, coalescing concurrent requests */

        bool confirm_off;            /* $KEK_CONFIRM=off: re-validate each AEK by its own unwrap */
        uint64_t confirm_retry_usec; /* kekd said UNSUPPORTED (older than Confirm): not asked before this */

        bool watch_enabled;
        pthread_t watcher;
        pthread_mutex_t watch_lock;
        pthread_cond_t watch_cond;
        bool stopping;
        int watch_fd;
        bool watch_connected;
        uint64_t watch_events;
};

struct kek_key {
        kek_client *client;
        char name[KEY_NAME_MAX + 1];
        uint32_t version;
};

static uint64_t now_usec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000ULL + (uint64_t) ts.tv_nsec / 1000;
}

static void cond_init_monotonic(pthread_cond_t *c) {
        pthread_condattr_t a;

        pthread_condattr_init(&a);
        pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
        pthread_cond_init(c, &a);
        pthread_condattr_destroy(&a);
}

/* Sends req and waits for its response (requests that never coalesce); an Error response becomes its negative code. */
static int call(kek_client *c, Kek__Request *req, Kek__Response__BodyCase want, Kek__Response **ret) {
        Reply reply;
        int r = channel_call(c->ch, req, want, &reply);

        if (r < 0)
                return r;
        *ret = TAKE_PTR(reply.resp);
        reply_done(&reply);
        return 0;
}

/* Definitive refusals revoke: the key's cached AEKs must go at once. */
static bool is_revocation(int r) {
        return r == -KEKERR_KEY_DISABLED || r == -KEKERR_KEY_DELETED || r == -KEKERR_UNKNOWN_KEY ||
               r == -KEKERR_UNKNOWN_VERSION || r == -KEKERR_PERMISSION_DENIED;
}

_public_ bool kek_error_is_transient(int r) {
        /* Not -EBADMSG: kek_block_open() returns it for a block that does not authenticate. */
        return kekerr_is_transient(r) || r == -KEKERR_INTERNAL;
}

_public_ const char *kek_strerror(int r) {
        const char *n = kekerr_name(r);

        return n ? n : strerror(r < 0 ? -r : r);
}

/* --- watch --------------------------------------------------------------------- */

static void apply_event(kek_client *c, const Kek__KeyEvent *ev) {
        uint64_t id;

        if (!ev->key || !ev->key[0]) {
                /* (Re)subscribed: events may have been missed meanwhile; re-validate everything. */
                cache_mark_stale(c->cache);
                return;
        }
        if (cache_key_id(c->cache, ev->key, &id) < 0) {
                cache_clear(c->cache); /* cannot tell the key's entries apart: a revocation must not be missed */
                return;
        }
        if (ev->gone || ev->state != KEK__KEY_STATE__ENABLED)
                (void) cache_drop_key(c->cache, id, NULL, 0);
        else if (ev->n_disabled_versions > 0)
                (void) cache_drop_key(c->cache, id, ev->disabled_versions, ev->n_disabled_versions);
}

static void *watch_main(void *userdata) {
        kek_client *c = userdata;
        uint64_t backoff = 0;

        for (;;) {
                Kek__Request req = KEK__REQUEST__INIT;
                Kek__WatchRequest w = KEK__WATCH_REQUEST__INIT;
                KekReader in;
                int fd, r;

                pthread_mutex_lock(&c->watch_lock);
                if (c->stopping) {
                        pthread_mutex_unlock(&c->watch_lock);
                        break;
                }
                pthread_mutex_unlock(&c->watch_lock);

                fd = kek_transport_connect(c->socket_path);
                if (fd >= 0) {
                        req.id = 1;
                        req.body_case = KEK__REQUEST__BODY_WATCH;
                        req.watch = &w;
                        r = kek_transport_send(fd, &req, NULL);
                        pthread_mutex_lock(&c->watch_lock);
                        c->watch_fd = r >= 0 && !c->stopping ? fd : -1;
                        pthread_mutex_unlock(&c->watch_lock);
                        kek_reader_init(&in, fd);
                        while (r >= 0) {
                                Kek__Response *resp = NULL;

                                r = kek_reader_next(&in, NULL, &resp);
                                if (r < 0)
                                        break;
                                if (resp->body_case == KEK__RESPONSE__BODY_EVENT && resp->event) {
                                        apply_event(c, resp->event);
                                        pthread_mutex_lock(&c->watch_lock);
                                        c->watch_connected = true;
                                        c->watch_events += resp->event->key && resp->event->key[0];
                                        pthread_mutex_unlock(&c->watch_lock);
                                        backoff = 0;
                                } else
                                        r = -EBADMSG; /* Watch refused (e.g. permission): retry later */
                                kek_response_free(resp);
                        }
                        kek_reader_done(&in);
                        pthread_mutex_lock(&c->watch_lock);
                        c->watch_fd = -1;
                        c->watch_connected = false;
                        pthread_mutex_unlock(&c->watch_lock);
                        close(fd);
                }
                backoff = MIN(MAX(backoff * 2, BACKOFF_MIN_USEC), BACKOFF_MAX_USEC);
                pthread_mutex_lock(&c->watch_lock);
                if (!c->stopping) {
                        struct timespec deadline = kek_deadline_after(backoff);

                        (void) pthread_cond_timedwait(&c->watch_cond, &c->watch_lock, &deadline);
                }
                pthread_mutex_unlock(&c->watch_lock);
        }
        return NULL;
}

/* --- client -------------------------------------------------------------------- */

/* coalesce_disabled took what was padding: the options keep their size and every offset (ABI of LIBKEK_0.1). */
_Static_assert(sizeof(kek_options) ==
                       (offsetof(kek_options, watch_disabled) + 1 + _Alignof(kek_options) - 1) / _Alignof(kek_options) *
                               _Alignof(kek_options),
               "kek_options grew");

_public_ int kek_client_new(const kek_options *opts, kek_client **ret) {
        kek_options o = opts ? *opts : (kek_options) {};
        const char *path = o.socket_path ?: getenv("KEKD_SOCKET") ?: KEK_DEFAULT_SOCKET;
        kek_client *c;
        int r;

        if (!ret || strlen(path) >= sizeof(((struct sockaddr_un *) NULL)->sun_path))
                return -EINVAL;
        if (o.refresh_sec && (o.refresh_sec < 6 || o.refresh_sec > 60))
                return -EINVAL;
        c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        strcpy(c->socket_path, path);
        c->timeout_usec = (uint64_t) (o.timeout_ms ?: 5000) * 1000ULL;
        c->refresh_usec = (uint64_t) (o.refresh_sec ?: 60) * 1000000ULL;
        c->grace_usec = (uint64_t) (o.grace_sec ?: 300) * 1000000ULL;
        c->watch_fd = -1;
        c->confirm_off = getenv("KEK_CONFIRM") && strcmp(getenv("KEK_CONFIRM"), "off") == 0;
        pthread_mutex_init(&c->watch_lock, NULL);
        cond_init_monotonic(&c->watch_cond);
        r = channel_new(path, c->timeout_usec, !o.coalesce_disabled, &c->ch);
        if (r < 0) {
                kek_client_free(c);
                return r;
        }
        if (!o.cache_disabled) {
                r = cache_new(o.cache_entries ?: 100000, &c->cache);
                if (r < 0) {
                        kek_client_free(c);
                        return r;
                }
        }
        if (c->cache && !o.watch_disabled) {
                if (pthread_create(&c->watcher, NULL, watch_main, c) != 0) {
                        kek_client_free(c);
                        return -EAGAIN;
                }
                c->watch_enabled = true;
        }
        *ret = c;
        return 0;
}

_public_ void kek_client_free(kek_client *c) {
        if (!c)
                return;
        if (c->watch_enabled) {
                pthread_mutex_lock(&c->watch_lock);
                c->stopping = true;
                if (c->watch_fd >= 0)
                        (void) shutdown(c->watch_fd, SHUT_RDWR);
                pthread_cond_broadcast(&c->watch_cond);
                pthread_mutex_unlock(&c->watch_lock);
                pthread_join(c->watcher, NULL);
        }
        channel_free(c->ch);
        cache_free(c->cache);
        pthread_cond_destroy(&c->watch_cond);
        pthread_mutex_destroy(&c->watch_lock);
        free(c);
}

_public_ void kek_stats_get(kek_client *c, kek_stats *ret) {
        kek_stats s = {};

        if (!c || !ret)
                return;
        if (c->cache)
                cache_stats(c->cache, &s);
        s.requests = channel_requests(c->ch);
        pthread_mutex_lock(&c->watch_lock);
        s.watch_events = c->watch_events;
        s.watch_connected = c->watch_connected;
        pthread_mutex_unlock(&c->watch_lock);
        *ret = s;
}

_public_ void kek_cache_clear(kek_client *c) {
        if (c && c->cache)
                cache_clear(c->cache);
}

/* --- data plane ------------------------------------------------------------------ */

/* A malloc'd copy of a blob from a response, for the caller to own. */
static int blob_out(const ProtobufCBinaryData *b, uint8_t **ret, size_t *ret_len) {
        uint8_t *p = malloc(b->len ? b->len : 1);

        if (!p)
                return -ENOMEM;
        memcpy(p, b->data, b->len);
        *ret = p;
        *ret_len = b->len;
        return 0;
}

_public_ int kek_wrap(kek_client *c, const char *key, uint32_t version, const uint8_t *aek, size_t aek_len,
                      const uint8_t *ctx, size_t ctx_len, uint8_t **ret_blob, size_t *ret_blob_len,
                      uint32_t *ret_version) {
        Kek__Request req = KEK__REQUEST__INIT;
        Kek__WrapRequest w = KEK__WRAP_REQUEST__INIT;
        const Kek__WrapResponse *resp;
        Reply reply;
        int r;

        if (!c || !key || !aek || !ret_blob || !ret_blob_len || (!ctx && ctx_len))
                return -EINVAL;
        w.key = (char *) key;
        w.version = version;
        w.plaintext = (ProtobufCBinaryData) { aek_len, (uint8_t *) aek };
        w.context = (ProtobufCBinaryData) { ctx_len, (uint8_t *) ctx };
        req.body_case = KEK__REQUEST__BODY_WRAP;
        req.wrap = &w;
        r = channel_call(c->ch, &req, KEK__RESPONSE__BODY_WRAP, &reply);
        if (r < 0)
                return r;
        resp = reply.body;
        r = blob_out(&resp->blob, ret_blob, ret_blob_len);
        if (r >= 0 && ret_version)
                *ret_version = resp->version;
        reply_done(&reply);
        return r;
}

/* One unwrap round trip to kekd; the plaintext goes straight into a kek_aek. */
static int unwrap_remote(kek_client *c, const uint8_t *blob, size_t blob_len, const uint8_t *ctx, size_t ctx_len,
                         kek_aek **ret) {
        Kek__Request req = KEK__REQUEST__INIT;
        Kek__UnwrapRequest u = KEK__UNWRAP_REQUEST__INIT;
        const Kek__UnwrapResponse *resp;
        Reply reply;
        kek_aek *a;
        int r;

        u.blob = (ProtobufCBinaryData) { blob_len, (uint8_t *) blob };
        u.context = (ProtobufCBinaryData) { ctx_len, (uint8_t *) ctx };
        req.body_case = KEK__REQUEST__BODY_UNWRAP;
        req.unwrap = &u;
        r = channel_call(c->ch, &req, KEK__RESPONSE__BODY_UNWRAP, &reply);
        if (r < 0)
                return r;
        resp = reply.body;
        r = aek_new(resp->plaintext.len, &a);
        if (r >= 0) {
                memcpy(aek_data_mut(a), resp->plaintext.data, resp->plaintext.len);
                *ret = a;
        }
        reply_done(&reply); /* cleanses the plaintext (a batch's once its last caller is done) */
        return r;
}

/* How long a kekd that answered UNSUPPORTED (one older than Confirm) is not asked again. */
#define CONFIRM_RETRY_USEC (60 * 1000000ULL)

/*
 * Whether kekd still serves unwraps of key's version, from its index: 1 confirmed, 0 unconfirmed
 * (kekd cannot vouch: the caller unwraps), or the error an unwrap would meet (libkek(3), THE AEK CACHE).
 */
static int confirm_remote(kek_client *c, const char *key, uint32_t version) {
        Kek__Request req = KEK__REQUEST__INIT;
        Kek__ConfirmRequest q = KEK__CONFIRM_REQUEST__INIT;
        Kek__Response *resp;
        int r;

        if (c->confirm_off || now_usec() < __atomic_load_n(&c->confirm_retry_usec, __ATOMIC_RELAXED))
                return 0;
        q.key = (char *) key;
        q.version = version;
        req.body_case = KEK__REQUEST__BODY_CONFIRM;
        req.confirm = &q;
        r = call(c, &req, KEK__RESPONSE__BODY_CONFIRM, &resp);
        if (r == -KEKERR_UNSUPPORTED || r == -KEKERR_MALFORMED_REQUEST) {
                /* A kekd older than Confirm: each AEK is re-validated by its unwrap, as before. */
                __atomic_store_n(&c->confirm_retry_usec, now_usec() + CONFIRM_RETRY_USEC, __ATOMIC_RELAXED);
                return 0;
        }
        if (r < 0)
                return r;
        /* An answer about another version than asked confirms nothing. */
        r = resp->confirm->confirmed && resp->confirm->version == version && resp->confirm->key &&
            strcmp(resp->confirm->key, key) == 0;
        kek_response_free(resp);
        return r;
}

/*
 * kek_unwrap()'s answer when kekd refused or could not be asked (r), for a blob of key_id and version
 * whose entry (digest) was cached (cr STALE, cached, last_ok) or not (MISS).
 */
static int unwrap_failed(kek_client *c, int r, CacheResult cr, const uint8_t digest[16], uint64_t key_id,
                         uint32_t version, kek_aek *cached, uint64_t last_ok, uint64_t now, kek_aek **ret) {
        if (is_revocation(r)) {
                /*
                 * kekd refuses a missing or disabled version, or a key, from the blob's header
                 * before anything authenticates it, so anyone able to hand us a blob can make it
                 * name any key and version. The refusal is about entries kekd confirmed to us
                 * only if we hold that very version: then the whole key goes, else only this
                 * blob's own entry (if any; it cannot exist without its version being held).
                 */
                if (cache_holds(c->cache, key_id, version))
                        (void) cache_drop_key(c->cache, key_id, NULL, 0);
                kek_aek_unref(cached);
                return r;
        }
        if (cr == CACHE_STALE && kek_error_is_transient(r) && now - last_ok < c->grace_usec) {
                /* kekd or the HSM is away for a moment: keep serving what it last confirmed. */
                cache_count_stale_served(c->cache);
                *ret = cached;
                return 0;
        }
        if (cr == CACHE_STALE)
                cache_drop_entry(c->cache, digest);
        kek_aek_unref(cached);
        return r;
}

_public_ int kek_unwrap(kek_client *c, const uint8_t *blob, size_t blob_len, const uint8_t *ctx, size_t ctx_len,
                        kek_aek **ret) {
        uint8_t digest[16];
        kek_aek *cached = NULL, *fresh = NULL;
        uint64_t last_ok = 0, now, key_id, epoch;
        CacheResult cr;
        BlobView view;
        int r;

        if (!c || !blob || !ret || (!ctx && ctx_len))
                return -EINVAL;
        if (!c->cache)
                return unwrap_remote(c, blob, blob_len, ctx, ctx_len, ret);
        if (blob_parse(blob, blob_len, &view) < 0)
                return -KEKERR_BLOB_INVALID;

        if (cache_digest(c->cache, blob, blob_len, ctx, ctx_len, digest) < 0)
                return unwrap_remote(c, blob, blob_len, ctx, ctx_len, ret);
        now = now_usec();
        cr = cache_lookup(c->cache, digest, now, c->refresh_usec, &cached, &last_ok);
        if (cr == CACHE_FRESH) {
                *ret = cached;
                return 0;
        }
        if (cache_key_id(c->cache, view.key, &key_id) < 0) {
                /* The same MAC just worked; without an id nothing can be stored or dropped safely. */
                kek_aek_unref(cached);
                return unwrap_remote(c, blob, blob_len, ctx, ctx_len, ret);
        }

        /* Before asking: a Watch drop that lands while the answer is in flight must win over it. */
        epoch = cache_epoch(c->cache);
        if (cr == CACHE_STALE) {
                /*
                 * A cached AEK was authenticated by its first unwrap; what is due is whether its
                 * key version may still be used: one confirmation re-validates every entry of the
                 * version. Unconfirmed (or an older kekd): this AEK's own unwrap decides.
                 */
                r = confirm_remote(c, view.key, view.version);
                if (r > 0 && cache_confirm(c->cache, digest, key_id, view.version, now_usec(), epoch) >= 0) {
                        *ret = cached;
                        return 0;
                }
                if (r < 0 && (is_revocation(r) || kek_error_is_transient(r)))
                        return unwrap_failed(c, r, cr, digest, key_id, view.version, cached, last_ok, now, ret);
        }
        r = unwrap_remote(c, blob, blob_len, ctx, ctx_len, &fresh);
        if (r >= 0) {
                cache_store(c->cache, digest, key_id, view.version, fresh, now_usec(), epoch);
                kek_aek_unref(cached);
                *ret = fresh;
                return 0;
        }
        return unwrap_failed(c, r, cr, digest, key_id, view.version, cached, last_ok, now, ret);
}

_public_ int kek_rewrap(kek_client *c, const uint8_t *blob, size_t blob_len, const uint8_t *ctx, size_t ctx_len,
                        uint8_t **ret_blob, size_t *ret_blob_len, uint32_t *ret_version) {
        Kek__Request req = KEK__REQUEST__INIT;
        Kek__RewrapRequest w = KEK__REWRAP_REQUEST__INIT;
        const Kek__RewrapResponse *resp;
        Reply reply;
        int r;

        if (!c || !blob || !ret_blob || !ret_blob_len || (!ctx && ctx_len))
                return -EINVAL;
        w.blob = (ProtobufCBinaryData) { blob_len, (uint8_t *) blob };
        w.context = (ProtobufCBinaryData) { ctx_len, (uint8_t *) ctx };
        req.body_case = KEK__REQUEST__BODY_REWRAP;
        req.rewrap = &w;
        r = channel_call(c->ch, &req, KEK__RESPONSE__BODY_REWRAP, &reply);
        if (r < 0)
                return r;
        resp = reply.body;
        r = blob_out(&resp->blob, ret_blob, ret_blob_len);
        if (r >= 0 && ret_version)
                *ret_version = resp->version;
        reply_done(&reply);
        return r;
}

_public_ int kek_get_key_version(kek_client *c, const char *key, kek_key_version *ret) {
        Kek__Request req = KEK__REQUEST__INIT;
        Kek__GetKeyVersionRequest g = KEK__GET_KEY_VERSION_REQUEST__INIT;
        Kek__Response *resp;
        int r;

        if (!c || !key || !ret)
                return -EINVAL;
        g.key = (char *) key;
        req.body_case = KEK__REQUEST__BODY_GET_KEY_VERSION;
        req.get_key_version = &g;
        r = call(c, &req, KEK__RESPONSE__BODY_GET_KEY_VERSION, &resp);
        if (r < 0)
                return r;
        *ret = (kek_key_version) {
                .current_version = resp->get_key_version->current_version,
                .state = (int) resp->get_key_version->state,
                .recoverable = resp->get_key_version->recoverable,
        };
        kek_response_free(resp);
        return 0;
}

/* Copies batch results out; each item's own error goes to ret_results[i]. */
static int batch_results(Kek__Response *resp, size_t n, bool rewrap, kek_blob *ret_blobs, int *ret_results) {
        if (resp->batch->n_items != n)
                return -EBADMSG;
        for (size_t i = 0; i < n; i++) {
                const Kek__BatchItemResult *it = resp->batch->items[i];
                const ProtobufCBinaryData *b = rewrap ? (it->rewrap ? &it->rewrap->blob : NULL)
                                                      : (it->wrap ? &it->wrap->blob : NULL);

                ret_blobs[i] = (kek_blob) {};
                if (it->error) {
                        ret_results[i] = kekerr_from_wire((int) it->error->code);
                        continue;
                }
                if (!b) {
                        ret_results[i] = -EBADMSG;
                        continue;
                }
                ret_results[i] = blob_out(b, &ret_blobs[i].data, &ret_blobs[i].len);
        }
        return 0;
}

_public_ int kek_wrap_batch(kek_client *c, const char *key, size_t n, kek_aek *const *aeks, const kek_blob *ctxs,
                            kek_blob *ret_blobs, int *ret_results) {
        Kek__Request req = KEK__REQUEST__INIT;
        Kek__BatchWrapRequest b = KEK__BATCH_WRAP_REQUEST__INIT;
        _cleanup_free_ Kek__WrapRequest *items = NULL;
        _cleanup_free_ Kek__WrapRequest **ptrs = NULL;
        Kek__Response *resp;
        int r;

        if (!c || !key || !aeks || !ret_blobs || !ret_results || n == 0)
                return -EINVAL;
        items = calloc(n, sizeof(*items));
        ptrs = calloc(n, sizeof(*ptrs));
        if (!items || !ptrs)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                kek__wrap_request__init(&items[i]);
                items[i].key = (char *) key;
                items[i].plaintext = (ProtobufCBinaryData) { kek_aek_size(aeks[i]), (uint8_t *) kek_aek_data(aeks[i]) };
                if (ctxs)
                        items[i].context = (ProtobufCBinaryData) { ctxs[i].len, ctxs[i].data };
                ptrs[i] = &items[i];
        }
        b.n_items = n;
        b.items = ptrs;
        req.body_case = KEK__REQUEST__BODY_BATCH_WRAP;
        req.batch_wrap = &b;
        r = call(c, &req, KEK__RESPONSE__BODY_BATCH, &resp);
        if (r < 0)
                return r;
        r = batch_results(resp, n, false, ret_blobs, ret_results);
        kek_response_free(resp);
        return r;
}

_public_ int kek_rewrap_batch(kek_client *c, size_t n, const kek_blob *blobs, const kek_blob *ctxs, kek_blob *ret_blobs,
                              int *ret_results) {
        Kek__Request req = KEK__REQUEST__INIT;
        Kek__BatchRewrapRequest b = KEK__BATCH_REWRAP_REQUEST__INIT;
        _cleanup_free_ Kek__RewrapRequest *items = NULL;
        _cleanup_free_ Kek__RewrapRequest **ptrs = NULL;
        Kek__Response *resp;
        int r;

        if (!c || !blobs || !ret_blobs || !ret_results || n == 0)
                return -EINVAL;
        items = calloc(n, sizeof(*items));
        ptrs = calloc(n, sizeof(*ptrs));
        if (!items || !ptrs)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                kek__rewrap_request__init(&items[i]);
                items[i].blob = (ProtobufCBinaryData) { blobs[i].len, blobs[i].data };
                if (ctxs)
                        items[i].context = (ProtobufCBinaryData) { ctxs[i].len, ctxs[i].data };
                ptrs[i] = &items[i];
        }
        b.n_items = n;
        b.items = ptrs;
        req.body_case = KEK__REQUEST__BODY_BATCH_REWRAP;
        req.batch_rewrap = &b;
        r = call(c, &req, KEK__RESPONSE__BODY_BATCH, &resp);
        if (r < 0)
                return r;
        r = batch_results(resp, n, true, ret_blobs, ret_results);
        kek_response_free(resp);
        return r;
}

_public_ int kek_unwrap_batch(kek_client *c, size_t n, const kek_blob *blobs, const kek_blob *ctxs, kek_aek **ret_aeks,
                              int *ret_results) {
        Kek__Request req = KEK__REQUEST__INIT;
        Kek__BatchUnwrapRequest b = KEK__BATCH_UNWRAP_REQUEST__INIT;
        _cleanup_free_ Kek__UnwrapRequest *items = NULL;
        _cleanup_free_ Kek__UnwrapRequest **ptrs = NULL;
        Kek__Response *resp;
        uint64_t epoch;
        int r;

        if (!c || !blobs || !ret_aeks || !ret_results || n == 0)
                return -EINVAL;
        items = calloc(n, sizeof(*items));
        ptrs = calloc(n, sizeof(*ptrs));
        if (!items || !ptrs)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                kek__unwrap_request__init(&items[i]);
                items[i].blob = (ProtobufCBinaryData) { blobs[i].len, blobs[i].data };
                if (ctxs)
                        items[i].context = (ProtobufCBinaryData) { ctxs[i].len, ctxs[i].data };
                ptrs[i] = &items[i];
        }
        b.n_items = n;
        b.items = ptrs;
        req.body_case = KEK__REQUEST__BODY_BATCH_UNWRAP;
        req.batch_unwrap = &b;
        epoch = c->cache ? cache_epoch(c->cache) : 0; /* as in kek_unwrap(): taken before asking */
        r = call(c, &req, KEK__RESPONSE__BODY_BATCH, &resp);
        if (r < 0)
                return r;
        if (resp->batch->n_items != n) {
                kek_response_free(resp);
                return -EBADMSG;
        }
        for (size_t i = 0; i < n; i++) {
                const Kek__BatchItemResult *it = resp->batch->items[i];
                BlobView view;

                ret_aeks[i] = NULL;
                if (it->error || !it->unwrap) {
                        ret_results[i] = it->error ? kekerr_from_wire((int) it->error->code) : -EBADMSG;
                        continue;
                }
                ret_results[i] = aek_new(it->unwrap->plaintext.len, &ret_aeks[i]);
                if (ret_results[i] < 0)
                        continue;
                memcpy(aek_data_mut(ret_aeks[i]), it->unwrap->plaintext.data, it->unwrap->plaintext.len);
                if (c->cache && blob_parse(blobs[i].data, blobs[i].len, &view) >= 0) {
                        uint8_t digest[16];
                        uint64_t key_id;

                        if (cache_digest(c->cache, blobs[i].data, blobs[i].len, ctxs ? ctxs[i].data : NULL,
                                         ctxs ? ctxs[i].len : 0, digest) >= 0 &&
                            cache_key_id(c->cache, view.key, &key_id) >= 0)
                                cache_store(c->cache, digest, key_id, view.version, ret_aeks[i], now_usec(), epoch);
                }
        }
        kek_response_free(resp);
        return 0;
}

_public_ int kek_key_new(kek_client *c, const char *name, uint32_t version, kek_key **ret) {
        kek_key *k;

        if (!c || !ret || !key_name_valid(name))
                return -EINVAL;
        k = calloc(1, sizeof(*k));
        if (!k)
                return -ENOMEM;
        k->client = c;
        strcpy(k->name, name);
        k->version = version;
        *ret = k;
        return 0;
}

_public_ void kek_key_free(kek_key *k) {
        free(k);
}

_public_ int kek_key_wrap(kek_key *k, const kek_aek *aek, const uint8_t *ctx, size_t ctx_len, uint8_t **ret_blob,
                          size_t *ret_blob_len) {
        if (!k || !aek)
                return -EINVAL;
        return kek_wrap(k->client, k->name, k->version, kek_aek_data(aek), kek_aek_size(aek), ctx, ctx_len, ret_blob,
                        ret_blob_len, NULL);
}
