/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Data-plane failover across tokens: see failover.h. Invariants: everything here runs on the
 * loop (the crypto pool's workers only ever see the preferred token's passes); an op runs at most
 * twice per pass (its token's, then once more on a further token); an op is retried only if its
 * own call met HSM_UNAVAILABLE in this pass (a refusal, a bad blob or a renewal that failed
 * before the pass is the client's answer); a further token's handles are used only at the
 * session generation they were found at.
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/kekerr.h"
#include "daemon/clock.h"
#include "daemon/cryptopool.h"
#include "daemon/failover.h"
#include "daemon/log.h"

size_t failover_choose(const bool *can, size_t n) {
        if (n == 0 || can[0])
                return 0;
        for (size_t i = 1; i < n; i++)
                if (can[i])
                        return i;
        return 0; /* none can: the preferred token, as without failover */
}

size_t failover_next(const bool *can, size_t n, size_t failed) {
        for (size_t i = failed + 1; i < n; i++)
                if (can[i])
                        return i;
        return n;
}

typedef struct CacheSlot {
        char key[KEY_NAME_MAX + 1];
        uint32_t version;
        bool restored;
        CryptoOpHandles handles;
} CacheSlot;

struct FailoverCache {
        CacheSlot slots[FAILOVER_CACHE_SLOTS];
};

FailoverCache *failover_cache_new(void) {
        return calloc(1, sizeof(FailoverCache));
}

FailoverCache *failover_cache_free(FailoverCache *c) {
        free(c);
        return NULL;
}

/* FNV-1a over name, version and form. */
static CacheSlot *cache_slot(FailoverCache *c, const CryptoOpObject *o) {
        uint64_t h = 1469598103934665603ULL;

        for (const char *p = o->key; *p; p++)
                h = (h ^ (uint8_t) *p) * 1099511628211ULL;
        h = (h ^ o->version) * 1099511628211ULL;
        h = (h ^ o->restored) * 1099511628211ULL;
        return &c->slots[h % FAILOVER_CACHE_SLOTS];
}

CryptoOpHandles failover_cache_get(FailoverCache *c, const CryptoOpObject *o, uint64_t generation) {
        CacheSlot *s = cache_slot(c, o);

        if (!s->handles.valid || strcmp(s->key, o->key) != 0 || s->version != o->version || s->restored != o->restored)
                return (CryptoOpHandles) {};
        if (s->handles.generation != generation) {
                s->handles.valid = false; /* that token's session was reopened: its handles may name other objects */
                return (CryptoOpHandles) {};
        }
        return s->handles;
}

void failover_cache_clear(FailoverCache *c) {
        memset(c->slots, 0, sizeof(c->slots));
}

void failover_cache_put(FailoverCache *c, const CryptoOpObject *o, const CryptoOpHandles *h) {
        CacheSlot *s = cache_slot(c, o);

        if (strlen(o->key) >= sizeof(s->key))
                return;
        strcpy(s->key, o->key);
        s->version = o->version;
        s->restored = o->restored;
        s->handles = *h;
}

typedef struct FailoverToken {
        Hsm *serve;                    /* the loop's session on this further token; NULL until needed */
        FailoverCache *cache;
        uint64_t objects_epoch;        /* tokenset_objects_epoch() the cache's handles were found at */
} FailoverToken;

struct Failover {
        TokenSet *ts;
        Keystore *ks;
        CryptoPool *pool;
        size_t n;
        size_t serving;                /* the token the last pass ran on */
        FailoverToken tokens[FAILOVER_TOKENS_MAX];
};

int failover_new(TokenSet *ts, Keystore *ks, CryptoPool *pool, Failover **ret) {
        _cleanup_(failover_freep) Failover *f = NULL;
        size_t n = tokenset_count(ts);

        if (!ks)
                return -EINVAL;
        if (n < 2) {
                *ret = NULL; /* one token: nothing to fail over to */
                return 0;
        }
        if (n > FAILOVER_TOKENS_MAX)
                return -EINVAL;
        f = calloc(1, sizeof(*f));
        if (!f)
                return -ENOMEM;
        f->ts = ts;
        f->ks = ks;
        f->pool = pool;
        f->n = n;
        for (size_t i = 1; i < n; i++) {
                f->tokens[i].cache = failover_cache_new();
                if (!f->tokens[i].cache)
                        return -ENOMEM;
        }
        tokenset_set_serving(ts, 0);
        *ret = TAKE_PTR(f);
        return 0;
}

Failover *failover_free(Failover *f) {
        if (!f)
                return NULL;
        for (size_t i = 0; i < f->n; i++) {
                hsm_free(f->tokens[i].serve);
                failover_cache_free(f->tokens[i].cache);
        }
        free(f);
        return NULL;
}

/* can[i]: whether token i can serve now (tokenset_can_serve()); usable() then drops those without a session. */
static void tokens_can_serve(Failover *f, bool *can) {
        for (size_t i = 0; i < f->n; i++)
                can[i] = tokenset_can_serve(f->ts, i);
}

/* The loop's session on further token i, opened on first use; NULL if it cannot be (yet). */
static Hsm *serve_session(Failover *f, size_t i) {
        FailoverToken *t = &f->tokens[i];
        const char *why = NULL;
        Hsm *parent;
        int r;

        if (t->serve)
                return t->serve;
        parent = tokenset_session_parent(f->ts, i);
        if (!parent)
                return NULL;
        r = hsm_open_session(parent, &t->serve, &why);
        if (r < 0) {
                log_debug("Cannot open a serving session on further token %zu: %s", i, why ? why : error_text(r));
                t->serve = NULL;
        }
        return t->serve;
}

/* A token that can serve and has a session for it: first the choice, then the next ones. */
static size_t usable(Failover *f, bool *can, size_t t) {
        while (t > 0 && t < f->n && !serve_session(f, t)) {
                can[t] = false;
                t = failover_next(can, f->n, t);
        }
        return t;
}

/*
 * The log line of a change of serving token, once per change; took_usec (0: none) how long the calls
 * that met the preferred token failing took until the further token served them (the failover time).
 */
static void note_serving(Failover *f, size_t i, uint64_t took_usec) {
        TokenStatus pref, now;

        if (i == f->serving || i >= f->n)
                return;
        f->serving = i;
        tokenset_set_serving(f->ts, i);
        if (tokenset_status(f->ts, 0, &pref) < 0 || tokenset_status(f->ts, i, &now) < 0)
                return;
        if (i == 0 && pref.health.state != TOKEN_ACTIVE)
                log_warning("No token can serve: calls run on token '%s' again, which is %s (%s)", pref.name,
                            token_state_name(pref.health.state), pref.health.error);
        else if (i == 0)
                log_notice("Serving from token '%s' again", pref.name);
        else
                log_warning("Serving from token '%s': token '%s' is %s (%s)%s%.1f%s", now.name, pref.name,
                            token_state_name(pref.health.state), pref.health.error[0] ? pref.health.error : "not active",
                            took_usec ? "; failed over in " : "", (double) took_usec / 1000.0, took_usec ? " ms" : "");
}

/* The pending calls of ops on further token i, one at a time on the loop's session there. */
static void run_further(Failover *f, size_t i, CryptoOp **ops, size_t n) {
        FailoverToken *t = &f->tokens[i];
        uint64_t served = 0, epoch = tokenset_objects_epoch(f->ts, i);

        /* A sync replaced key objects there (another session: the generation did not move). */
        if (epoch != t->objects_epoch) {
                failover_cache_clear(t->cache);
                t->objects_epoch = epoch;
        }
        for (size_t j = 0; j < n; j++) {
                CryptoOpObject o;
                CryptoOpHandles h;

                if (!crypto_op_pending(ops[j]))
                        continue;
                crypto_op_object(ops[j], &o);
                h = failover_cache_get(t->cache, &o, hsm_generation(t->serve));
                if (crypto_op_run_on(t->serve, ops[j], &h) < 0)
                        log_debug("Token %zu lacks key '%s' version %u: not a full copy", i, o.key, o.version);
                else if (ops[j]->result == -KEKERR_HSM_UNAVAILABLE && !ops[j]->version_fault)
                        tokenset_request_done(f->ts, i, ops[j]->result); /* that token's failure */
                failover_cache_put(t->cache, &o, &h); /* an invalid h clears the slot: a stale handle is not kept */
                served += ops[j]->result >= 0;
        }
        tokenset_count_failover(f->ts, i, served);
}

static void run_on(Failover *f, size_t target, CryptoOp **ops, size_t n) {
        if (target == 0) {
                keystore_run_pass(f->ks, f->pool, ops, n);
                for (size_t j = 0; j < n; j++)
                        if (ops[j]->result == -KEKERR_HSM_UNAVAILABLE && !ops[j]->version_fault)
                                tokenset_request_done(f->ts, 0, ops[j]->result);
        } else
                run_further(f, target, ops, n);
}

/* A CryptoPassFn: the pass on the chosen token, then once more elsewhere for what met HSM_UNAVAILABLE. */
static void failover_pass(void *userdata, CryptoOp **ops, size_t n) {
        Failover *f = userdata;
        _cleanup_free_ CryptoOp **run = malloc(n * sizeof(*run));
        bool can[FAILOVER_TOKENS_MAX];
        size_t target, m = 0, next;
        uint64_t start;

        tokens_can_serve(f, can);
        target = usable(f, can, failover_choose(can, f->n));
        if (target >= f->n)
                target = 0; /* a further token chosen but none opens: as without failover */
        note_serving(f, target, 0);
        if (!run) {
                run_on(f, target, ops, n); /* no memory to tell this pass's calls apart: no retry */
                return;
        }
        for (size_t j = 0; j < n; j++)
                if (crypto_op_pending(ops[j]))
                        run[m++] = ops[j];
        start = clock_mono_usec();
        run_on(f, target, run, m);

        /* Only calls of this pass that met the token down; what failed before it is the client's answer. */
        n = 0;
        for (size_t j = 0; j < m; j++)
                if (run[j]->result == -KEKERR_HSM_UNAVAILABLE)
                        run[n++] = run[j];
        if (n == 0)
                return;
        tokens_can_serve(f, can); /* the failures just noted made target degraded */
        can[target] = false;
        next = usable(f, can, failover_next(can, f->n, target));
        if (next >= f->n)
                return; /* no other token can: HSM_UNAVAILABLE, transient, as without failover */
        for (size_t j = 0; j < n; j++)
                crypto_op_retry(run[j]);
        run_further(f, next, run, n);
        note_serving(f, next, MAX(clock_mono_usec() - start, 1u));
}

bool failover_begin(Failover *f) {
        bool can[FAILOVER_TOKENS_MAX], down;

        if (!f)
                return false;
        tokens_can_serve(f, can);
        down = failover_choose(can, f->n) != 0;
        keystore_set_token_down(f->ks, down);
        return down;
}

void failover_run(Failover *f, Keystore *ks, CryptoPool *pool, CryptoOp **ops, size_t n) {
        if (!f) {
                keystore_run(ks, pool, ops, n);
                return;
        }
        keystore_run_with(ks, failover_pass, f, ops, n);
}
