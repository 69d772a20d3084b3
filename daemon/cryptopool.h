/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The HSM worker pool: [hsm] sessions = N gives kekd N sessions on its token,
 * the keystore's own plus N-1 worker threads with one session each. A batch's
 * HSM calls are spread over them (fork-join: the calling thread works too and
 * returns when every item is done), so the event loop, the index and the
 * protocol stay single-threaded and only C_Encrypt/C_Decrypt run in parallel.
 * With N = 1 there are no threads and every call runs on the caller's session.
 *
 * Whether N > 1 pays depends on the token: SoftHSM2 on two cores does not
 * scale with threads, a network HSM with per-call latency does. Measure it
 * (docs/performance.md) before raising it.
 */
#pragma once

#include <stddef.h>

#include "common/macro.h"
#include "pkcs11/hsm.h"

#define CRYPTO_POOL_SESSIONS_MAX 64u

typedef struct CryptoPool CryptoPool;

/* Runs one item on session h; must touch nothing but the item and h. */
typedef void (*CryptoPoolFn)(Hsm *h, void *item);

/*
 * main: the caller's session, used by the caller's share of each run. On
 * failure *ret_error (if given) says what the token refused, for the log.
 */
int crypto_pool_new(Hsm *main, unsigned sessions, CryptoPool **ret, const char **ret_error);
CryptoPool *crypto_pool_free(CryptoPool *p);
DEFINE_TRIVIAL_CLEANUP_FUNC(CryptoPool, crypto_pool_free);

unsigned crypto_pool_sessions(const CryptoPool *p);

/*
 * fn on each of n items (stride bytes apart), spread over the sessions;
 * returns when all are done. Not reentrant: one caller thread.
 */
void crypto_pool_run(CryptoPool *p, CryptoPoolFn fn, void *items, size_t stride, size_t n);

/*
 * Reopens lost worker sessions (between runs, from the caller's thread). Call
 * it before taking handles for a run: a reopen moves hsm_generation(), and
 * handles taken before it are not trusted after it.
 */
void crypto_pool_ready(CryptoPool *p);

/* Adds the workers' session counters to acc (between runs only). */
void crypto_pool_stats(const CryptoPool *p, HsmStats *acc);
