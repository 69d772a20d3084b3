/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Status and Watch (see handlers.h), and the encoding of the Watch stream's
 * key events, which the transport sends outside any request.
 */
#include "config.h"

#include <errno.h>
#include <string.h>

#include "daemon/cryptopool.h"
#include "daemon/handlers.h"
#include "daemon/metrics.h"

/*
 * The vault's backup mode and the versions without a backup path (never
 * extractable: lost with the token), named only in mode trusted-wrap, where
 * each is one to rotate; in mode none they are all of them, counted.
 */
static int status_backup(Dispatcher *d, Kek__StatusResponse *st, Request *req) {
        const Keystore *ks = d->keystore;
        bool named = keystore_vault(ks)->trusted_wrap;
        Kek__VersionRef **refs = NULL;
        size_t n = 0, cap = 0;

        st->backup = named ? KEK__BACKUP_MODE__BACKUP_TRUSTED_WRAP : KEK__BACKUP_MODE__BACKUP_NONE;
        for (size_t i = 0; i < keystore_n_keys(ks); i++) {
                const Key *k = keystore_key_at(ks, i);

                if (!key_exists(k))
                        continue; /* being created or purged, as keystore_count() */
                for (size_t j = 0; j < k->n_versions; j++)
                        cap += !k->versions[j].wrap_with_trusted;
        }
        st->versions_without_backup = (uint32_t) cap;
        if (!named || cap == 0)
                return 0;
        refs = request_alloc(req, cap * sizeof(*refs));
        if (!refs)
                return -ENOMEM;
        for (size_t i = 0; i < keystore_n_keys(ks); i++) {
                const Key *k = keystore_key_at(ks, i);

                if (!key_exists(k))
                        continue;
                for (size_t j = 0; j < k->n_versions && n < cap; j++) {
                        Kek__VersionRef *v;

                        if (k->versions[j].wrap_with_trusted)
                                continue;
                        v = request_alloc(req, sizeof(*v));
                        if (!v)
                                return -ENOMEM;
                        kek__version_ref__init(v);
                        v->key = request_strdup(req, k->name);
                        if (!v->key)
                                return -ENOMEM;
                        v->version = k->versions[j].id;
                        refs[n++] = v;
                }
        }
        st->without_backup = refs;
        st->n_without_backup = n;
        return 0;
}

/* StatusResponse.tokens: each token's health as the probe thread last saw it, preferred first. */
static int status_tokens(Dispatcher *d, Kek__StatusResponse *st, Request *req) {
        size_t n = tokenset_count(d->tokens);
        Kek__TokenHealth **v;

        if (n == 0)
                return 0;
        v = request_alloc(req, n * sizeof(*v));
        if (!v)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                Kek__TokenHealth *t = request_alloc(req, sizeof(*t));
                TokenStatus ts;
                char *name, *label, *error, *capability;
                const char *why;

                if (!t || tokenset_status(d->tokens, i, &ts) < 0)
                        return -ENOMEM;
                name = request_alloc(req, strlen(ts.name) + 1);
                label = request_alloc(req, strlen(ts.label) + 1);
                /* A stale token that answers its probes says why it is stale. */
                why = ts.health.stale && ts.health.state == TOKEN_ACTIVE && ts.sync_note[0] ? ts.sync_note
                                                                                            : ts.health.error;
                error = request_alloc(req, strlen(why) + 1);
                capability = request_alloc(req, strlen(ts.capability) + 1);
                if (!name || !label || !error || !capability)
                        return -ENOMEM;
                kek__token_health__init(t);
                t->name = strcpy(name, ts.name);
                t->label = strcpy(label, ts.label);
                t->error = strcpy(error, why);
                t->capability = strcpy(capability, ts.capability);
                t->state = (Kek__TokenState) ts.health.state;
                t->probes = ts.health.probes;
                t->probe_failures = ts.health.probe_failures;
                t->request_errors = ts.health.request_errors;
                t->changed_usec = ts.health.changed_usec;
                t->preferred = ts.preferred;
                t->serving = ts.health.serving != 0;
                t->failover_ops = ts.health.failover_ops;
                t->stale = ts.health.stale;
                t->synced_usec = ts.health.synced_usec;
                v[i] = t;
        }
        st->tokens = v;
        st->n_tokens = n;
        return 0;
}

int handle_status(Dispatcher *d, const Kek__Request *m, Request *req) {
        Kek__StatusResponse *st = request_alloc(req, sizeof(*st));
        char *text = NULL, *token, *version;
        size_t len, keys, versions;
        HsmStats hs;
        int r;

        if (!st)
                return -ENOMEM;
        kek__status_response__init(st);
        if (d->metrics) {
                r = metrics_render(d->metrics, d->keystore, &text, &len);
                if (r < 0 || !request_own(req, text))
                        return -ENOMEM;
                st->metrics = text;
        }
        token = request_alloc(req, strlen(hsm_token_label(keystore_hsm(d->keystore))) + 1);
        version = request_alloc(req, strlen(PACKAGE_VERSION) + 1);
        if (!token || !version)
                return -ENOMEM;
        strcpy(token, hsm_token_label(keystore_hsm(d->keystore)));
        strcpy(version, PACKAGE_VERSION);
        st->token = token;
        st->version = version;
        st->started_usec = d->started_usec;
        keystore_count(d->keystore, &keys, &versions);
        st->keys = (uint32_t) keys;
        st->versions = (uint32_t) versions;
        st->clients = metrics_clients(d->metrics);
        hsm_stats(keystore_hsm(d->keystore), &hs);
        crypto_pool_stats(d->pool, &hs);
        st->hsm_session_open = hs.session_open;
        r = status_backup(d, st, req);
        if (r >= 0)
                r = status_tokens(d, st, req);
        if (r < 0)
                return r;
        req->resp.body_case = KEK__RESPONSE__BODY_STATUS;
        req->resp.status = st;
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

int handle_watch(Dispatcher *d, const Kek__Request *m, Request *req) {
        Kek__KeyEvent *ev = request_alloc(req, sizeof(*ev));

        if (!ev)
                return -ENOMEM;
        /* The first event, with no key, says the stream is live. */
        kek__key_event__init(ev);
        ev->key = (char *) "";
        req->outcome.watch = true;
        req->resp.body_case = KEK__RESPONSE__BODY_EVENT;
        req->resp.event = ev;
        return 0;
}

