/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The tokens of one kekd and their health: see tokenset.h. Invariants: the
 * probe thread is the only user of every session in ts->tokens[].hsm; the
 * loop reads names, labels and health only under ts->lock, and the thread
 * holds the lock only to copy a result in, never across a PKCS#11 call.
 * A further token is used for nothing but its capability probe until that
 * probe passed on its current session (capability_probe()).
 */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/kekerr.h"
#include "daemon/clock.h"
#include "daemon/log.h"
#include "daemon/tokenset.h"
#include "daemon/replica.h"
#include "pkcs11/probe.h"

typedef struct Token {
        char name[TOKEN_NAME_MAX + 1];
        char *module, *token_uri;      /* NULL for the preferred token */
        Secret *pin;
        Hsm *hsm;                      /* the probe thread's session; NULL while not open */
        char label[HSM_KEY_LABEL_MAX + 1];
        TokenHealth health;
        uint64_t probe_started;        /* CLOCK_MONOTONIC of the probe under way, 0 if none */
        uint64_t probe_ended;          /* CLOCK_MONOTONIC of the last probe's end (or of the start) */
        bool allow_unsafe_token;       /* its [hsm.NAME] allow_unsafe_token */
        bool probed;                   /* thread only: the capability probe finished on this session */
        uint64_t probed_generation;    /* thread only: hsm_generation() then */
        bool refused;                  /* written under lock: the capability probe refused it */
        char refusal[TOKEN_ERROR_MAX]; /* written under lock: why */
        ProbeResult probe;             /* written under lock: the last capability probe's result */
        char capability[TOKEN_CAPABILITY_MAX + 1]; /* written under lock: tokenset_capability_name(), "" before */
        /* Replication, under lock (further tokens only; see the block at the end). */
        bool synced;                   /* a sync completed, and no failure of this token since */
        uint64_t synced_at;            /* TokenSet.changes when that sync began */
        uint64_t synced_usec;          /* CLOCK_REALTIME when it completed */
        uint64_t sync_mono;            /* CLOCK_MONOTONIC of the last sync's end, 0 if none */
        uint64_t syncs, sync_failures;
        char sync_note[TOKEN_ERROR_MAX + 64]; /* why it is stale, if known */
        int logged;                    /* the outcome last logged (SyncOutcome), so each is logged once */
        uint64_t objects_epoch;        /* under lock: moves when a sync made or destroyed key objects there */
        char logged_note[TOKEN_ERROR_MAX + 64];
} Token;

struct TokenSet {
        Token *tokens;
        size_t n;
        int profile;
        uint64_t interval_usec;
        pthread_t thread;
        bool started;
        bool stop;                     /* under lock */
        bool probe_now;                /* under lock: a request failed, probe without waiting */
        bool sync_now;                 /* under lock: the preferred token changed, sync without waiting */
        uint64_t changes;              /* under lock: client-visible changes of the preferred token so far */
        bool replication_set;          /* under lock: tokenset_set_replication() was called */
        char *wrapping_key, *unwrapping_key; /* set once, before replication_set; NULL: off */
        pthread_mutex_t lock;
        pthread_cond_t wake;           /* CLOCK_MONOTONIC */
};

const char *token_state_name(TokenState s) {
        switch (s) {
        case TOKEN_ACTIVE:
                return "active";
        case TOKEN_DEGRADED:
                return "degraded";
        case TOKEN_UNAVAILABLE:
                return "unavailable";
        }
        return "unknown";
}

void token_health_init(TokenHealth *h, TokenState initial, uint64_t now) {
        *h = (TokenHealth) { .state = initial, .changed_usec = now };
}

bool token_health_probe(TokenHealth *h, int r, const char *error, uint64_t elapsed_usec, uint64_t now) {
        TokenState next;

        h->probes++;
        h->last_probe_usec = elapsed_usec;
        if (r < 0) {
                h->probe_failures++;
                if (h->failures < UINT32_MAX)
                        h->failures++;
                snprintf(h->error, sizeof(h->error), "%s", error && error[0] ? error : error_text(r));
                /* A token that was never usable stays UNAVAILABLE: DEGRADED would say it served. */
                next = h->failures >= TOKEN_UNAVAILABLE_AFTER || h->state == TOKEN_UNAVAILABLE ? TOKEN_UNAVAILABLE
                                                                                                : TOKEN_DEGRADED;
        } else {
                h->failures = 0;
                next = elapsed_usec > TOKEN_SLOW_USEC ? TOKEN_DEGRADED : TOKEN_ACTIVE;
        }
        if (next == h->state)
                return false;
        h->state = next;
        h->changed_usec = now;
        return true;
}

bool token_health_overdue(TokenHealth *h, bool probing, uint64_t usec, uint64_t overdue_usec, uint64_t now) {
        uint64_t bound = probing ? TOKEN_HUNG_USEC : overdue_usec;

        if (h->state != TOKEN_ACTIVE || usec <= bound)
                return false;
        if (probing)
                snprintf(h->error, sizeof(h->error), "its probe has not returned for %llu ms",
                         (unsigned long long) (usec / 1000));
        else
                snprintf(h->error, sizeof(h->error), "not probed for %llu s: another token's probe has not returned",
                         (unsigned long long) (usec / 1000000));
        h->state = TOKEN_DEGRADED;
        h->changed_usec = now > usec - bound ? now - (usec - bound) : now;
        return true;
}

bool token_health_request_failed(TokenHealth *h, const char *error, uint64_t now) {
        h->request_errors++;
        if (h->state != TOKEN_ACTIVE)
                return false;
        snprintf(h->error, sizeof(h->error), "%s", error && error[0] ? error : "a request failed");
        h->state = TOKEN_DEGRADED;
        h->changed_usec = now;
        return true;
}

void tokenset_request_done(TokenSet *ts, size_t i, int r) {
        bool changed;

        if (!ts || i >= ts->n || r != -KEKERR_HSM_UNAVAILABLE)
                return;
        pthread_mutex_lock(&ts->lock);
        changed = token_health_request_failed(&ts->tokens[i].health, "a request met HSM_UNAVAILABLE", clock_now_usec());
        ts->probe_now = true;
        pthread_cond_signal(&ts->wake);
        pthread_mutex_unlock(&ts->lock);
        if (changed)
                log_warning("Token '%s' is degraded: a request met HSM_UNAVAILABLE; probing it now", ts->tokens[i].name);
}

const char *tokenset_capability_name(const ProbeResult *p, int r, bool allowed) {
        if (r == -KEKERR_UNSUPPORTED)
                return "unsupported";
        switch (p->copy) {
        case PROBE_COPY_REFUSED:
                return "refused copies";
        case PROBE_COPY_KEPT:
                return "copies kept sensitive";
        case PROBE_COPY_UNSAFE:
                return allowed ? "unsafe (allowed)" : "unsafe (refused)";
        case PROBE_COPY_UNKNOWN:
                break;
        }
        return "copies not tried";
}

/*
 * On the probe thread, before further token t is used for anything but this: the capability probe
 * the preferred token passed at start, pinned to the profile new versions get (ts->profile), when
 * t's session was first opened and again whenever it was reopened since (hsm_generation() moved).
 * A token refused stays refused, without a PKCS#11 call, until then. 0: t may be used;
 * -KEKERR_UNSUPPORTED: refused, why in error; another -errno: the probe did not finish (the token
 * failed meanwhile), tried again next round. Logs an outcome that differs from the last one.
 */
static int capability_probe(TokenSet *ts, Token *t, char *error, size_t size) {
        const ProbeProfile *profiles;
        char refusal[TOKEN_ERROR_MAX] = "", note[640] = "", section[TOKEN_NAME_MAX + 8];
        const char *name;
        ProbeResult p;
        size_t n;
        bool same;
        int r;

        if (t->probed && hsm_generation(t->hsm) == t->probed_generation) {
                if (!t->refused)
                        return 0;
                snprintf(error, size, "%s", t->refusal); /* only this thread writes it */
                return -KEKERR_UNSUPPORTED;
        }
        profiles = probe_profiles(ts->profile, &n);
        r = probe_run(t->hsm, profiles, n, &p);
        if (r < 0 && r != -KEKERR_UNSUPPORTED) {
                snprintf(error, size, "capability probe: %.200s", p.message[0] ? p.message : error_text(r));
                return r;
        }
        snprintf(section, sizeof(section), "hsm.%s", t->name);
        if (r < 0)
                snprintf(refusal, sizeof(refusal), "unsupported token: %.200s", p.message);
        else if (p.copy == PROBE_COPY_UNSAFE && !t->allow_unsafe_token)
                snprintf(refusal, sizeof(refusal), "unsafe token: C_CopyObject %.160s; allow_unsafe_token in [%s]",
                         p.copy_text, section);
        probe_copy_problem_in(&p, t->name, section, note, sizeof(note));
        name = tokenset_capability_name(&p, r, t->allow_unsafe_token);

        pthread_mutex_lock(&ts->lock);
        same = strcmp(t->capability, name) == 0 && strcmp(t->refusal, refusal) == 0;
        t->probe = p;
        t->refused = refusal[0] != 0;
        memcpy(t->refusal, refusal, sizeof(refusal));
        snprintf(t->capability, sizeof(t->capability), "%s", name);
        pthread_mutex_unlock(&ts->lock);
        t->probed = true;
        t->probed_generation = hsm_generation(t->hsm);

        if (!same) {
                if (refusal[0])
                        log_warning("Token '%s' is refused and stays unavailable: %s%s%s", t->name, refusal,
                                    note[0] ? ". " : "", note);
                else if (p.copy == PROBE_COPY_UNSAFE)
                        log_warning("allow_unsafe_token is set in [%s], using token '%s' anyway: %s", section, t->name,
                                    note);
                else if (note[0])
                        log_notice("%s", note);
                else
                        log_info("Token '%s' passed the capability probe: profile %s", t->name, p.profile);
        }
        if (!refusal[0])
                return 0;
        snprintf(error, size, "%s", refusal);
        return -KEKERR_UNSUPPORTED;
}

/* On the probe thread: opens token t if needed, probes it, records the outcome. */
static void probe_token(TokenSet *ts, Token *t) {
        const char *why = NULL;
        char error[TOKEN_ERROR_MAX] = "";
        uint64_t start = clock_mono_usec(), timed = start;
        TokenHealth before, after;
        bool changed, refused = false;
        int r = 0;

        pthread_mutex_lock(&ts->lock);
        t->probe_started = start;
        pthread_mutex_unlock(&ts->lock);
        if (!t->hsm) {
                /* Only a further token gets here: the preferred token's session is opened by tokenset_new(). */
                Hsm *opened = NULL;

                r = hsm_open(t->module, t->token_uri, t->pin, &opened, &why);
                if (r < 0)
                        snprintf(error, sizeof(error), "%s", why ? why : error_text(r));
                else {
                        /* under the lock: the loop opens its serving session on it (tokenset_session_parent()) */
                        pthread_mutex_lock(&ts->lock);
                        t->hsm = opened;
                        snprintf(t->label, sizeof(t->label), "%s", hsm_token_label(t->hsm));
                        pthread_mutex_unlock(&ts->lock);
                }
        }
        /* A further token serves nothing, not even the health probe, before its capability probe passed. */
        if (t->hsm && t->module) {
                r = capability_probe(ts, t, error, sizeof(error));
                refused = r == -KEKERR_UNSUPPORTED;
        }
        if (t->hsm && r >= 0) {
                timed = clock_mono_usec(); /* slow or not is the health probe's time, not the capability probe's */
                r = probe_health(t->hsm, ts->profile);
                if (r < 0)
                        snprintf(error, sizeof(error), "%s", hsm_last_error(t->hsm));
        }

        pthread_mutex_lock(&ts->lock);
        before = t->health;
        changed = token_health_probe(&t->health, r, error, clock_mono_usec() - timed, clock_now_usec());
        if (refused && t->health.state != TOKEN_UNAVAILABLE) {
                /* Refused is not a failure that may pass: no DEGRADED step. */
                t->health.state = TOKEN_UNAVAILABLE;
                t->health.changed_usec = clock_now_usec();
                changed = true;
        }
        if (r < 0 && t->synced) {
                t->synced = false; /* it may have missed anything meanwhile: stale until synced again */
                snprintf(t->sync_note, sizeof(t->sync_note), "its probe failed: resynchronised once it answers");
        }
        after = t->health;
        t->probe_started = 0;
        t->probe_ended = clock_mono_usec();
        pthread_mutex_unlock(&ts->lock);

        if (!changed)
                return;
        if (after.state == TOKEN_ACTIVE)
                log_notice("Token '%s' is active again (was %s)", t->name, token_state_name(before.state));
        else if (r < 0)
                log_warning("Token '%s' is %s: %s (%u probe%s failed in a row)", t->name, token_state_name(after.state),
                            after.error, after.failures, after.failures == 1 ? "" : "s");
        else
                log_warning("Token '%s' is %s: its probe took %llu ms", t->name, token_state_name(after.state),
                            (unsigned long long) (after.last_probe_usec / 1000));
}

static void sync_tokens(TokenSet *ts);

static void *probe_thread(void *userdata) {
        TokenSet *ts = userdata;

        for (;;) {
                struct timespec until;
                uint64_t deadline;

                for (size_t i = 0; i < ts->n; i++) {
                        bool stop;

                        pthread_mutex_lock(&ts->lock);
                        stop = ts->stop;
                        pthread_mutex_unlock(&ts->lock);
                        if (stop)
                                return NULL;
                        probe_token(ts, &ts->tokens[i]);
                }
                sync_tokens(ts);
                deadline = clock_mono_usec() + ts->interval_usec;
                until = (struct timespec) { .tv_sec = (time_t) (deadline / 1000000),
                                            .tv_nsec = (long) (deadline % 1000000) * 1000 };
                pthread_mutex_lock(&ts->lock);
                while (!ts->stop && !ts->probe_now && !ts->sync_now &&
                       pthread_cond_timedwait(&ts->wake, &ts->lock, &until) != ETIMEDOUT)
                        ;
                ts->probe_now = false;
                ts->sync_now = false;
                if (ts->stop) {
                        pthread_mutex_unlock(&ts->lock);
                        return NULL;
                }
                pthread_mutex_unlock(&ts->lock);
        }
}

int tokenset_new(Hsm *primary, const TokenSpec *specs, size_t n, int profile, unsigned interval_sec, TokenSet **ret) {
        _cleanup_(tokenset_freep) TokenSet *ts = NULL;
        pthread_condattr_t ca;
        uint64_t now = clock_now_usec();
        const char *why = NULL;
        int r;

        if (!primary || n == 0 || !specs || interval_sec == 0)
                return -EINVAL;
        ts = calloc(1, sizeof(*ts));
        if (!ts)
                return -ENOMEM;
        pthread_mutex_init(&ts->lock, NULL);
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&ts->wake, &ca);
        pthread_condattr_destroy(&ca);
        ts->profile = profile;
        ts->interval_usec = (uint64_t) interval_sec * 1000000ULL;
        ts->tokens = calloc(n, sizeof(*ts->tokens));
        if (!ts->tokens)
                return -ENOMEM;
        ts->n = n;
        for (size_t i = 0; i < n; i++) {
                Token *t = &ts->tokens[i];

                if (!specs[i].name || strlen(specs[i].name) > TOKEN_NAME_MAX)
                        return -EINVAL;
                strcpy(t->name, specs[i].name);
                t->probe_ended = clock_mono_usec();
                if (i == 0) {
                        token_health_init(&t->health, TOKEN_ACTIVE, now);
                        continue;
                }
                if (!specs[i].module || !specs[i].token_uri || !specs[i].pin)
                        return -EINVAL;
                token_health_init(&t->health, TOKEN_UNAVAILABLE, now);
                t->allow_unsafe_token = specs[i].allow_unsafe_token;
                t->module = strdup(specs[i].module);
                t->token_uri = strdup(specs[i].token_uri);
                if (!t->module || !t->token_uri)
                        return -ENOMEM;
                r = secret_new_copy(specs[i].pin->data, specs[i].pin->len, &t->pin);
                if (r < 0)
                        return r;
        }
        r = hsm_open_session(primary, &ts->tokens[0].hsm, &why);
        if (r < 0) {
                log_debug("Cannot open the probe's session on token '%s': %s", specs[0].name, why ? why : error_text(r));
                return r;
        }
        hsm_set_detached(ts->tokens[0].hsm);
        snprintf(ts->tokens[0].label, sizeof(ts->tokens[0].label), "%s", hsm_token_label(primary));
        r = -pthread_create(&ts->thread, NULL, probe_thread, ts);
        if (r < 0)
                return r;
        ts->started = true;
        *ret = TAKE_PTR(ts);
        return 0;
}

TokenSet *tokenset_free(TokenSet *ts) {
        if (!ts)
                return NULL;
        if (ts->started) {
                pthread_mutex_lock(&ts->lock);
                ts->stop = true;
                pthread_cond_signal(&ts->wake);
                pthread_mutex_unlock(&ts->lock);
                (void) pthread_join(ts->thread, NULL);
        }
        for (size_t i = 0; ts->tokens && i < ts->n; i++) {
                Token *t = &ts->tokens[i];

                hsm_free(t->hsm);
                secret_free(t->pin);
                free(t->module);
                free(t->token_uri);
        }
        free(ts->tokens);
        free(ts->wrapping_key);
        free(ts->unwrapping_key);
        pthread_cond_destroy(&ts->wake);
        pthread_mutex_destroy(&ts->lock);
        free(ts);
        return NULL;
}

size_t tokenset_count(const TokenSet *ts) {
        return ts ? ts->n : 0;
}

int tokenset_open(TokenSet *ts, size_t i, Hsm **ret, const char **ret_error) {
        if (!ts || i >= ts->n)
                return -ENOENT;
        if (i == 0)
                return -EINVAL;
        /* module, URI and PIN never change after tokenset_new(): no lock needed to read them. */
        return hsm_open(ts->tokens[i].module, ts->tokens[i].token_uri, ts->tokens[i].pin, ret, ret_error);
}

int tokenset_set_capability(TokenSet *ts, size_t i, const ProbeResult *p, bool allowed) {
        if (!ts || i >= ts->n)
                return -ENOENT;
        pthread_mutex_lock(&ts->lock);
        ts->tokens[i].probe = *p;
        snprintf(ts->tokens[i].capability, sizeof(ts->tokens[i].capability), "%s",
                 tokenset_capability_name(p, p->profile ? 0 : -KEKERR_UNSUPPORTED, allowed));
        pthread_mutex_unlock(&ts->lock);
        return 0;
}

int tokenset_capability_problem(TokenSet *ts, size_t i, char *buf, size_t size) {
        char section[TOKEN_NAME_MAX + 8];
        int r = 0;

        if (!ts || i >= ts->n)
                return -ENOENT;
        if (i == 0)
                return 0; /* the preferred token's is check's own probe */
        pthread_mutex_lock(&ts->lock);
        const Token *t = &ts->tokens[i];
        snprintf(section, sizeof(section), "hsm.%s", t->name);
        if (t->capability[0] && t->refused) {
                snprintf(buf, size, "token '%s' is not used: %s", t->name, t->refusal);
                r = 1;
        } else if (t->capability[0] && t->probe.copy >= PROBE_COPY_KEPT) {
                probe_copy_problem_in(&t->probe, t->name, section, buf, size);
                r = t->probe.copy == PROBE_COPY_UNSAFE ? 1 : 2;
        }
        pthread_mutex_unlock(&ts->lock);
        return r;
}

int tokenset_probe_overdue(TokenSet *ts, size_t i, bool *ret_probing, uint64_t *ret_usec) {
        if (!ts || i >= ts->n)
                return -ENOENT;
        pthread_mutex_lock(&ts->lock);
        const Token *t = &ts->tokens[i];
        bool probing = t->probe_started != 0;
        uint64_t now = clock_mono_usec(), since = probing ? t->probe_started : t->probe_ended;
        uint64_t usec = now > since ? now - since : 0;
        uint64_t bound = probing ? TOKEN_HUNG_USEC : TOKEN_OVERDUE_USEC(ts->interval_usec, ts->n);
        pthread_mutex_unlock(&ts->lock);
        if (usec <= bound)
                return 0;
        *ret_probing = probing;
        *ret_usec = usec;
        return 1;
}

static void token_sync_view(const TokenSet *ts, size_t i, TokenStatus *ret);

/* Under lock: a further token is stale until it holds the state of the last change (the preferred never). */
static bool token_stale(const TokenSet *ts, size_t i) {
        const Token *t = &ts->tokens[i];

        return i > 0 && !(t->synced && t->synced_at == ts->changes);
}

/*
 * Under lock: how long t's probe has been under way, or since its last one ended; overdue past
 * TOKEN_HUNG_USEC while under way, past TOKEN_OVERDUE_USEC otherwise (a probe that hangs holds up
 * every token's, so the last outcome must not be taken as current).
 */
static bool token_overdue(const TokenSet *ts, const Token *t, uint64_t *ret_usec) {
        uint64_t now = clock_mono_usec(), since = t->probe_started ? t->probe_started : t->probe_ended;
        uint64_t usec = now > since ? now - since : 0;

        *ret_usec = usec;
        return usec > (t->probe_started ? TOKEN_HUNG_USEC : TOKEN_OVERDUE_USEC(ts->interval_usec, ts->n));
}

int tokenset_status(TokenSet *ts, size_t i, TokenStatus *ret) {
        if (!ts || i >= ts->n)
                return -ENOENT;
        pthread_mutex_lock(&ts->lock);
        memcpy(ret->name, ts->tokens[i].name, sizeof(ret->name));
        memcpy(ret->label, ts->tokens[i].label, sizeof(ret->label));
        memcpy(ret->capability, ts->tokens[i].capability, sizeof(ret->capability));
        ret->preferred = i == 0;
        ret->health = ts->tokens[i].health;
        token_sync_view(ts, i, ret);
        const Token *t = &ts->tokens[i];
        uint64_t usec;
        if (token_overdue(ts, t, &usec))
                (void) token_health_overdue(&ret->health, t->probe_started != 0, usec,
                                            TOKEN_OVERDUE_USEC(ts->interval_usec, ts->n), clock_now_usec());
        pthread_mutex_unlock(&ts->lock);
        return 0;
}

/* --- replication (daemon/replica.h): the probe thread's syncs and the stale mark ----------- */

/* A sync's outcome, for logging each change once. */
typedef enum SyncOutcome {
        SYNC_NONE,
        SYNC_IN_SYNC,
        SYNC_NOT_COPIED,               /* complete, but versions that cannot leave the preferred token */
        SYNC_FAILED,
        SYNC_OFF,                      /* no trusted keys configured */
} SyncOutcome;

/* A sync not asked for by a change runs this often anyway (changes the count misses: policies, usage). */
#define SYNC_RECHECK_USEC (60ULL * 1000000ULL)
/*
 * A sync pauses after this long (between keys) for a round of probes, then goes on: the probes' bounds
 * (TOKEN_OVERDUE_USEC) must not be outrun by a long first copy. The next pass reads both tokens again
 * and passes quickly over the keys already copied; only a pass that reaches the end completes.
 */
#define SYNC_BUDGET_USEC (2ULL * 1000000ULL)
#define SYNC_OFF_NOTE "not copied: no trusted wrapping key configured ([backup] wrapping_key, unwrapping_key)"

/* Under lock. */
static void token_sync_view(const TokenSet *ts, size_t i, TokenStatus *ret) {
        const Token *t = &ts->tokens[i];

        ret->health.stale = token_stale(ts, i);
        ret->health.synced_usec = i > 0 ? t->synced_usec : 0;
        ret->health.syncs = t->syncs;
        ret->health.sync_failures = t->sync_failures;
        if (!ret->health.stale)
                ret->sync_note[0] = 0;
        else if (t->sync_note[0] && !t->synced)
                snprintf(ret->sync_note, sizeof(ret->sync_note), "%s", t->sync_note);
        else if (t->synced)
                snprintf(ret->sync_note, sizeof(ret->sync_note), "the preferred token changed since its last sync");
        else
                snprintf(ret->sync_note, sizeof(ret->sync_note), "not synchronised yet");
}

int tokenset_set_replication(TokenSet *ts, const char *wrapping_key, const char *unwrapping_key) {
        char *w = NULL, *u = NULL;

        if (!ts)
                return 0;
        if ((wrapping_key && wrapping_key[0] && !(w = strdup(wrapping_key))) ||
            (unwrapping_key && unwrapping_key[0] && !(u = strdup(unwrapping_key)))) {
                free(w);
                return -ENOMEM;
        }
        pthread_mutex_lock(&ts->lock);
        if (!ts->replication_set) {
                /* Off: every further token says why from the start, not from its first due sync. */
                for (size_t i = 1; (!w || !u) && i < ts->n; i++)
                        snprintf(ts->tokens[i].sync_note, sizeof(ts->tokens[i].sync_note), "%s", SYNC_OFF_NOTE);
                ts->wrapping_key = TAKE_PTR(w);
                ts->unwrapping_key = TAKE_PTR(u);
                ts->replication_set = true;
                ts->sync_now = true;
                pthread_cond_signal(&ts->wake);
        }
        pthread_mutex_unlock(&ts->lock);
        free(w);
        free(u);
        return 0;
}

void tokenset_note_change(TokenSet *ts) {
        if (!ts || ts->n < 2)
                return;
        pthread_mutex_lock(&ts->lock);
        ts->changes++;
        ts->sync_now = true;
        pthread_cond_signal(&ts->wake);
        pthread_mutex_unlock(&ts->lock);
}

/* What tokenset_status() would show as ACTIVE and not stale, without copying the status: per request. */
bool tokenset_can_serve(TokenSet *ts, size_t i) {
        uint64_t usec;
        bool can;

        if (!ts || i >= ts->n)
                return false;
        pthread_mutex_lock(&ts->lock);
        can = ts->tokens[i].health.state == TOKEN_ACTIVE && !token_stale(ts, i) &&
              !token_overdue(ts, &ts->tokens[i], &usec);
        pthread_mutex_unlock(&ts->lock);
        return can;
}

typedef struct SyncPass {
        TokenSet *ts;
        uint64_t deadline;             /* CLOCK_MONOTONIC: pause for the probes after this */
        bool paused;
} SyncPass;

/* A long sync stops when kekd does, and pauses for the probes when its time is up. */
static int sync_progress(const char *name, const ReplicaOutcome *so_far, void *userdata) {
        SyncPass *pass = userdata;
        bool stop;

        (void) name;
        (void) so_far;
        pthread_mutex_lock(&pass->ts->lock);
        stop = pass->ts->stop;
        pthread_mutex_unlock(&pass->ts->lock);
        if (!stop && clock_mono_usec() > pass->deadline)
                pass->paused = stop = true;
        return stop;
}

/* Logs t's outcome when it differs from the one logged last; on the probe thread. */
static void sync_log(TokenSet *ts, Token *t, SyncOutcome out, const ReplicaOutcome *o, uint64_t usec) {
        const char *preferred = ts->tokens[0].name;

        if (t->logged == (int) out && strcmp(t->logged_note, o->note) == 0) {
                log_debug("Token '%s': sync with '%s' done in %llu ms (%zu keys; %zu versions copied, %zu records "
                          "written, %zu keys purged)", t->name, preferred, (unsigned long long) (usec / 1000), o->keys,
                          o->copied, o->written, o->purged);
                return;
        }
        t->logged = (int) out;
        snprintf(t->logged_note, sizeof(t->logged_note), "%s", o->note);
        switch (out) {
        case SYNC_IN_SYNC:
                log_notice("Token '%s' is in sync with '%s' (%zu keys; %zu versions copied, %zu records written, %zu "
                           "keys purged in %llu ms)", t->name, preferred, o->keys, o->copied, o->written, o->purged,
                           (unsigned long long) (usec / 1000));
                break;
        case SYNC_NOT_COPIED:
                log_warning("Token '%s' is stale: %zu version%s of '%s' cannot be copied (%s)", t->name, o->not_copied,
                            o->not_copied == 1 ? "" : "s", preferred, o->note);
                break;
        case SYNC_FAILED:
                log_warning("Token '%s' is stale: its sync with '%s' failed: %s", t->name, preferred, o->note);
                break;
        case SYNC_OFF:
                log_notice("Token '%s' is not replicated: %s", t->name, o->note);
                break;
        case SYNC_NONE:
                break;
        }
}

/* On the probe thread: synchronises further token i with the preferred token if it is due. */
static void sync_token(TokenSet *ts, size_t i) {
        Token *p = &ts->tokens[0], *t = &ts->tokens[i];
        uint64_t start, began_at, now = clock_mono_usec();
        ReplicaOutcome o = {};
        SyncOutcome out;
        SyncPass pass;
        bool due, off;
        int r;

        pthread_mutex_lock(&ts->lock);
        off = !ts->wrapping_key || !ts->unwrapping_key;
        /* Both tokens answered their last probe (a slow one still copies), and the capability probe did not refuse
         * this one (nothing is copied to an unsafe token); a change, a failure or time makes it due. */
        due = !ts->stop && t->hsm && p->hsm && !t->refused && t->health.failures == 0 && p->health.failures == 0 &&
              (!t->synced || t->synced_at != ts->changes || t->sync_mono == 0 || now - t->sync_mono > SYNC_RECHECK_USEC);
        began_at = ts->changes;
        if (due && off)
                snprintf(t->sync_note, sizeof(t->sync_note), "%s", SYNC_OFF_NOTE);
        pthread_mutex_unlock(&ts->lock);
        if (!due)
                return;
        if (off) {
                snprintf(o.note, sizeof(o.note), "%s", SYNC_OFF_NOTE);
                sync_log(ts, t, SYNC_OFF, &o, 0);
                return;
        }

        log_debug("Token '%s': sync with '%s' started (change %llu)", t->name, p->name, (unsigned long long) began_at);
        start = clock_mono_usec();
        pass = (SyncPass) { .ts = ts, .deadline = start + SYNC_BUDGET_USEC };
        /* The labels never change once set: read without the lock, as the module and URI are. */
        r = replica_sync(p->hsm, t->hsm, ts->wrapping_key, ts->unwrapping_key, sync_progress, &pass, &o);
        if (o.copied || o.purged || r < 0) {
                /* Key objects there were made or destroyed (or may have been): handles found before, in any
                 * session, may name nothing now, or another object (tokenset_objects_epoch()). */
                pthread_mutex_lock(&ts->lock);
                t->objects_epoch++;
                pthread_mutex_unlock(&ts->lock);
        }
        if (r == -ECANCELED) {
                if (!pass.paused)
                        return; /* kekd stops */
                log_debug("Token '%s': sync paused for the probes after %zu keys (%zu versions copied); it goes on",
                          t->name, o.keys, o.copied);
                pthread_mutex_lock(&ts->lock);
                ts->sync_now = true; /* no wait for the interval: the next round goes on with it */
                pthread_mutex_unlock(&ts->lock);
                return;
        }
        out = r == 0 ? SYNC_IN_SYNC : r > 0 ? SYNC_NOT_COPIED : SYNC_FAILED;

        pthread_mutex_lock(&ts->lock);
        t->sync_mono = clock_mono_usec();
        if (r < 0 && o.src_failed) {
                /* The preferred token failed, not this one: what this one holds is as good as before. */
                pthread_mutex_unlock(&ts->lock);
                log_debug("Token '%s': sync with '%s' not done: %s", t->name, p->name, o.note);
                return;
        }
        if (r == 0) {
                t->synced = true;
                t->synced_at = began_at;
                t->synced_usec = clock_now_usec();
                t->syncs++;
                t->sync_note[0] = 0;
        } else {
                t->synced = false;
                if (r > 0)
                        t->syncs++;
                else
                        t->sync_failures++;
                snprintf(t->sync_note, sizeof(t->sync_note), "%s", o.note);
                if (r < 0)
                        snprintf(t->health.error, sizeof(t->health.error), "sync: %.80s", o.note);
        }
        pthread_mutex_unlock(&ts->lock);
        sync_log(ts, t, out, &o, clock_mono_usec() - start);
}

static void sync_tokens(TokenSet *ts) {
        bool set;

        pthread_mutex_lock(&ts->lock);
        set = ts->replication_set;
        pthread_mutex_unlock(&ts->lock);
        if (!set)
                return;
        for (size_t i = 1; i < ts->n; i++)
                sync_token(ts, i);
}

/* --- failover (daemon/failover.h) ------------------------------------------------------------- */

Hsm *tokenset_session_parent(TokenSet *ts, size_t i) {
        Hsm *h;

        if (!ts || i == 0 || i >= ts->n)
                return NULL;
        pthread_mutex_lock(&ts->lock);
        h = ts->tokens[i].hsm;
        pthread_mutex_unlock(&ts->lock);
        return h;
}

void tokenset_set_serving(TokenSet *ts, size_t i) {
        if (!ts)
                return;
        pthread_mutex_lock(&ts->lock);
        for (size_t j = 0; j < ts->n; j++)
                ts->tokens[j].health.serving = j == i;
        pthread_mutex_unlock(&ts->lock);
}

uint64_t tokenset_objects_epoch(TokenSet *ts, size_t i) {
        uint64_t e;

        if (!ts || i >= ts->n)
                return 0;
        pthread_mutex_lock(&ts->lock);
        e = ts->tokens[i].objects_epoch;
        pthread_mutex_unlock(&ts->lock);
        return e;
}

void tokenset_count_failover(TokenSet *ts, size_t i, uint64_t n) {
        if (!ts || i >= ts->n || n == 0)
                return;
        pthread_mutex_lock(&ts->lock);
        ts->tokens[i].health.failover_ops += n;
        pthread_mutex_unlock(&ts->lock);
}
