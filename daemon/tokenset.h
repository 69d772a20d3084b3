/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The tokens of one kekd and their health (issue 17 item 3, docs/tokens-ha.md).
 * kekd.conf(5) names the preferred token in [hsm] and further tokens in
 * [hsm.NAME] sections; this module knows them in that order and keeps, for
 * each, a state taken from a real encrypt/decrypt round trip (probe_health():
 * a throwaway session key with the KEK template) made every probe interval:
 *   ACTIVE       the last probe passed, in less than TOKEN_SLOW_USEC;
 *   DEGRADED     the last probe failed (fewer than TOKEN_UNAVAILABLE_AFTER in a
 *                row) or passed slowly;
 *   UNAVAILABLE  TOKEN_UNAVAILABLE_AFTER probes in a row failed, or the token
 *                was never opened (further tokens start so, the preferred
 *                token starts ACTIVE: it passed the capability probe), or
 *                it was refused by the capability probe (below).
 * A further token gets the capability probe the preferred token passed at
 * start (pkcs11/probe.h, pinned to the same profile) on the probe thread,
 * when it is first opened and again after each reopen of its session
 * (hsm_generation() moved: the token behind the URI may have changed), and
 * before any health probe: one that lacks the profile, or whose copies can
 * leave it (PROBE_COPY_UNSAFE) without allow_unsafe_token in its own
 * [hsm.NAME], is refused: UNAVAILABLE with the reason as its error, and no
 * further PKCS#11 call until its session is reopened or kekd restarts.
 * A client's request that meets HSM_UNAVAILABLE makes an ACTIVE token
 * DEGRADED at once and has it probed at once, so a failing token is known
 * before the next interval. The state machine (token_health_*) is pure, for
 * tests without a token.
 *
 * The probes run on one thread of this module, one token after the other,
 * each on a session of its own: the preferred token's is a detached session
 * of the keystore's Hsm (hsm_set_detached(): its losses never move the
 * keystore's generation), a further token's an Hsm this thread opens, and
 * opens again after a failure, with its own PIN. So a token that hangs holds
 * up only the probes, never the event loop. All state the loop reads sits
 * behind one mutex; the loop never makes a PKCS#11 call here. A probe that
 * does not return holds up the probes of every token, so the states shown
 * (tokenset_status()) never rest on a probe that is overdue: an ACTIVE
 * token whose probe has run longer than TOKEN_HUNG_USEC, or that was not
 * probed for TOKEN_OVERDUE_USEC(interval, n), is shown DEGRADED with why.
 *
 * The data plane's calls fail over to a further token that can serve
 * (tokenset_can_serve(), daemon/failover.h); this module counts them and
 * marks the serving token (functions at the end).
 * The same thread keeps each further token a copy of the preferred one
 * (daemon/replica.h; the preferred token is the only writer): after each
 * round of probes it synchronises every further token that is not in sync,
 * so a token that hangs delays only the probes and the copies, never a
 * client. A further token is *stale* (tokenset_can_serve() false) from start
 * until its first complete sync, after any failure of its own (probe or
 * sync), and whenever the preferred token's client-visible state changed
 * since its last complete sync: tokenset_note_change() counts each change
 * and wakes the thread; a sync that began at count C and completed leaves
 * the token synced at C; it is in sync iff synced at the current count.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/macro.h"
#include "common/secret.h"
#include "pkcs11/hsm.h"
#include "pkcs11/probe.h"

/* The values of kek.proto's TokenState. */
typedef enum TokenState {
        TOKEN_ACTIVE = 1,
        TOKEN_DEGRADED = 2,
        TOKEN_UNAVAILABLE = 3,
} TokenState;

#define TOKEN_UNAVAILABLE_AFTER 2u                    /* probes failed in a row */
#define TOKEN_SLOW_USEC (500ULL * 1000ULL)            /* a probe slower than this leaves the token DEGRADED */
#define TOKEN_NAME_MAX 32u
#define TOKEN_ERROR_MAX 256u                      /* holds a capability refusal's reason */
#define TOKEN_CAPABILITY_MAX 32u

typedef struct TokenHealth {
        TokenState state;
        unsigned failures;             /* probes failed in a row */
        uint64_t probes, probe_failures;
        uint64_t request_errors;       /* client requests that met HSM_UNAVAILABLE on it */
        uint64_t changed_usec;         /* CLOCK_REALTIME of the last change of state */
        uint64_t last_probe_usec;      /* how long the last probe took */
        char error[TOKEN_ERROR_MAX];   /* the last failure ("C_Encrypt: CKR_DEVICE_ERROR"), "" if none yet */
        /* failover (daemon/failover.h): */
        uint64_t serving;              /* 1 while this token runs the data plane's HSM calls, else 0 */
        uint64_t failover_ops;         /* data-plane calls served by this further token for the preferred one */
        /* Replication (daemon/replica.h), set by tokenset_status(); the preferred token is never stale. */
        bool stale;                    /* not a full copy of the preferred token's current state: serves nothing */
        uint64_t synced_usec;          /* CLOCK_REALTIME of its last complete sync, 0 if none */
        uint64_t syncs, sync_failures; /* syncs that completed, syncs that failed on this token */
} TokenHealth;

void token_health_init(TokenHealth *h, TokenState initial, uint64_t now);
/*
 * One probe's outcome: r is 0 or its error, error the failed call's text
 * (NULL: none known), elapsed how long it took. Returns whether the state
 * changed.
 */
bool token_health_probe(TokenHealth *h, int r, const char *error, uint64_t elapsed_usec, uint64_t now);
/* A probe under way this long, or no probe for the second time (the thread is held up elsewhere): overdue. */
#define TOKEN_HUNG_USEC (5000000ULL)
#define TOKEN_OVERDUE_USEC(interval_usec, n) (2 * (interval_usec) + (n) * TOKEN_SLOW_USEC + 5000000ULL)
/*
 * The view of h when its probe is overdue: probing, for probing_usec so far, or not probed for
 * silent_usec (overdue past overdue_usec). An ACTIVE h becomes DEGRADED, since the probe it rests
 * on is overdue, with the reason and the time it became so; other states are left alone. Returns
 * whether h was changed.
 */
bool token_health_overdue(TokenHealth *h, bool probing, uint64_t usec, uint64_t overdue_usec, uint64_t now);
/*
 * A client's request met a device or session error on the token: an ACTIVE
 * token becomes DEGRADED at once (the next probe decides whether it is
 * unavailable), others stay as they are. Returns whether the state changed.
 */
bool token_health_request_failed(TokenHealth *h, const char *error, uint64_t now);
/* "active", "degraded", "unavailable" (static). */
const char *token_state_name(TokenState s);

/*
 * A token as kekd.conf names it. The preferred (first) one has no module:
 * it is the keystore's Hsm, given to tokenset_new().
 */
typedef struct TokenSpec {
        const char *name;
        const char *module, *token_uri;
        const Secret *pin;             /* copied */
        bool allow_unsafe_token;       /* serve although the capability probe found copies unsafe */
} TokenSpec;

typedef struct TokenStatus {
        char name[TOKEN_NAME_MAX + 1];
        char label[HSM_KEY_LABEL_MAX + 1];   /* "" until opened */
        char capability[TOKEN_CAPABILITY_MAX + 1]; /* tokenset_capability_name(), "" until probed */
        bool preferred;
        TokenHealth health;
        char sync_note[TOKEN_ERROR_MAX + 64]; /* why it is stale ("not copied: ..."), "" if in sync or unknown */
} TokenStatus;

typedef struct TokenSet TokenSet;

/*
 * specs[0] is the preferred token, served by primary (a session of it is
 * opened now, on the caller's thread); specs[1..n-1] are opened by the probe
 * thread. profile: the HsmProfile the probe's self-test uses (the one the
 * capability probe chose). The first round of probes starts at once, then
 * one every interval_sec.
 */
int tokenset_new(Hsm *primary, const TokenSpec *specs, size_t n, int profile, unsigned interval_sec, TokenSet **ret);
/* Stops the thread (after the probe under way, if any) and closes its sessions. Before primary is freed. */
TokenSet *tokenset_free(TokenSet *ts);
DEFINE_TRIVIAL_CLEANUP_FUNC(TokenSet, tokenset_free);

size_t tokenset_count(const TokenSet *ts);
/*
 * A new Hsm on further token i (i >= 1), opened on the caller's thread with
 * the token's module, URI and PIN, for a one-off job such as `kekctl check`
 * (daemon/tokens-check.h); the caller frees it. -EINVAL for the preferred
 * token (use the keystore's), -ENOENT past the end; else hsm_open()'s error
 * and *ret_error.
 */
int tokenset_open(TokenSet *ts, size_t i, Hsm **ret, const char **ret_error);
/*
 * On the loop: a client's request on token i ended with r. For
 * -KEKERR_HSM_UNAVAILABLE, token_health_request_failed() and a probe of the
 * token without waiting for the interval; other results are the request's
 * own business. ts may be NULL (a single token: nothing to note).
 */
void tokenset_request_done(TokenSet *ts, size_t i, int r);
/*
 * The capability probe's classification as status shows it (TokenHealth.capability): "unsupported"
 * (r is -KEKERR_UNSUPPORTED: no profile), else by p->copy "refused copies", "copies kept sensitive",
 * "unsafe (allowed)" or "unsafe (refused)" (allowed: allow_unsafe_token), "copies not tried". Static.
 */
const char *tokenset_capability_name(const ProbeResult *p, int r, bool allowed);
/* Token i passed the capability probe p elsewhere (the preferred token, at start): status shows it. */
int tokenset_set_capability(TokenSet *ts, size_t i, const ProbeResult *p, bool allowed);
/*
 * What `kekctl check` says of further token i's capability, into buf: 1 a problem (refused, with
 * the reason; or used although unsafe, by its allow_unsafe_token), 2 a note (copies kept sensitive),
 * 0 nothing (not probed yet, or nothing to say), -ENOENT past the end. Any thread.
 */
int tokenset_capability_problem(TokenSet *ts, size_t i, char *buf, size_t size);

/*
 * Whether token i's probe is overdue, by the bounds tokenset_status() uses: under way for longer
 * than TOKEN_HUNG_USEC, or none for longer than TOKEN_OVERDUE_USEC. 1 and *ret_usec (how long under
 * way, or how long none) if so, 0 if not, -ENOENT past the end. Any thread. `kekctl check` asks
 * before it opens a further token on the loop: a token whose probe hangs would hang the loop too.
 */
int tokenset_probe_overdue(TokenSet *ts, size_t i, bool *ret_probing, uint64_t *ret_usec);
/* A copy of token i's name, label and health; -ENOENT past the end. Any thread. */
int tokenset_status(TokenSet *ts, size_t i, TokenStatus *ret);

/* --- failover (daemon/failover.h, docs/tokens-ha.md) ----------------------------------------- */
/*
 * The probe thread's Hsm of further token i, NULL until it opened it (never freed before
 * tokenset_free()): the parent of a serving session (hsm_open_session(), freed before ts).
 */
Hsm *tokenset_session_parent(TokenSet *ts, size_t i);
/* Token i runs the data plane now (TokenHealth.serving), the others not. On the loop. */
void tokenset_set_serving(TokenSet *ts, size_t i);
/* n more data-plane calls served by further token i for the preferred one (TokenHealth.failover_ops). */
void tokenset_count_failover(TokenSet *ts, size_t i, uint64_t n);
/*
 * Moves whenever a sync made or destroyed key objects on token i (replication): a handle found there
 * before, in any session, may name nothing now or another object, whatever that session's generation
 * says. Any thread.
 */
uint64_t tokenset_objects_epoch(TokenSet *ts, size_t i);

/* --- replication (daemon/replica.h; docs/tokens-ha.md) ---------------------------------- */

/*
 * Before the probe thread copies anything: the labels of the [backup] trusted wrapping key (on the
 * preferred token) and unwrapping key (on each further token); NULL or "": replication is off and
 * every further token stays stale, saying why. Once, right after tokenset_new(). -ENOMEM.
 */
int tokenset_set_replication(TokenSet *ts, const char *wrapping_key, const char *unwrapping_key);
/*
 * On the loop: the preferred token's client-visible state changed (a key's state, versions, grants,
 * existence, the vault policy). Every further token is stale until a sync that began after this
 * completes; the thread starts one at once. ts may be NULL.
 */
void tokenset_note_change(TokenSet *ts);
/*
 * Whether token i may serve: ACTIVE (as tokenset_status() shows it) and not stale. The preferred
 * token (i = 0) is never stale. Any thread.
 */
bool tokenset_can_serve(TokenSet *ts, size_t i);
