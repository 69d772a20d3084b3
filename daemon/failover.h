/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Data-plane failover across the tokens of one kekd (issue 17 item 3, docs/tokens-ha.md). The
 * preferred token's keystore stays the one authority for state, grants, leases and the index;
 * only the HSM call of a data-plane op (C_Encrypt / C_Decrypt of wrap, unwrap, rewrap) moves, to
 * a further token's copy of the same version object (same label and ID, found by the same search,
 * its handles cached per token and dropped when that token's session generation moves).
 *
 * Which token runs a pass of calls (failover_choose()): the preferred one while it can serve
 * (tokenset_can_serve()); else the first further token, in list order, that can; else the
 * preferred one all the same (requests fail as they did without failover). A call that met
 * HSM_UNAVAILABLE runs once more, in the same request, on the first further token after the one
 * it met it on that can serve (failover_next()); the client sees success. That failure is noted
 * on the token that failed (tokenset_request_done(): degraded at once, probed now), so the next
 * pass goes straight to the further token. Traffic returns to the preferred token once its probe
 * passes again: it is the writer, so it is never behind.
 *
 * A wrap run once more keeps the IV prepare drew for it: the call that failed gave kekd no
 * ciphertext, and the same key (the copy holds the same key material), IV, AAD and plaintext can
 * only give the same ciphertext again, never a second message under that IV.
 *
 * While a further token serves, the keystore is told the preferred token is down
 * (keystore_set_token_down()): lookups serve from the last index, writes (a wrap's lease
 * renewal, maintenance) fail HSM_UNAVAILABLE at once, and lost pool sessions are not reopened.
 *
 * A further token's calls run on the loop, one at a time, on one session the loop opens from the
 * probe thread's Hsm of that token (not on the crypto pool, whose sessions are the preferred
 * token's). The loop uses a further token only while its last probe passed in time and none is
 * overdue, so a hanging further token holds up the loop for at most what a hanging preferred token
 * does today (one call), and then is no longer chosen once its probe is overdue (TOKEN_HUNG_USEC).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/macro.h"
#include "daemon/keystore.h"
#include "daemon/tokenset.h"

/* At most this many tokens (kekd.conf: [hsm] and up to 7 [hsm.NAME]). */
#define FAILOVER_TOKENS_MAX 8u
/* Cached version handles per further token (direct-mapped: a collision only costs a search). */
#define FAILOVER_CACHE_SLOTS 1024u

/* Pure: the token a pass runs on, from can[i] = tokenset_can_serve(i) of n tokens (n >= 1). */
size_t failover_choose(const bool *can, size_t n);
/* Pure: the token a call that failed on token failed runs on once more; n if none can. */
size_t failover_next(const bool *can, size_t n, size_t failed);

/* The per-token cache of version handles (pure, for tests). */
typedef struct FailoverCache FailoverCache;
FailoverCache *failover_cache_new(void);
FailoverCache *failover_cache_free(FailoverCache *c);
DEFINE_TRIVIAL_CLEANUP_FUNC(FailoverCache, failover_cache_free);
/* The handles of o cached at generation (an entry of another generation is dropped); invalid if none. */
CryptoOpHandles failover_cache_get(FailoverCache *c, const CryptoOpObject *o, uint64_t generation);
void failover_cache_put(FailoverCache *c, const CryptoOpObject *o, const CryptoOpHandles *h);
/* Forgets every handle (a sync replaced key objects on that token). */
void failover_cache_clear(FailoverCache *c);

typedef struct Failover Failover;
/* ts: the tokens (NULL or a single one: no failover, failover_run() is keystore_run()). */
int failover_new(TokenSet *ts, Keystore *ks, CryptoPool *pool, Failover **ret);
/* Closes the serving sessions: before ts is freed. Accepts NULL. */
Failover *failover_free(Failover *f);
DEFINE_TRIVIAL_CLEANUP_FUNC(Failover, failover_free);

/*
 * Before a dispatch's requests are prepared: whether the preferred token is down and a further
 * token serves (then keystore_set_token_down(), and the caller leaves the pool's lost sessions
 * alone). f may be NULL (false).
 */
bool failover_begin(Failover *f);
/*
 * keystore_run() with each pass on the chosen token and one retry elsewhere; notes each failure
 * on the token it happened on (tokenset_request_done()). f may be NULL: keystore_run() on
 * ks and pool.
 */
void failover_run(Failover *f, Keystore *ks, CryptoPool *pool, CryptoOp **ops, size_t n);
