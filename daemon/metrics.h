/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Operational metrics in the Prometheus text format: requests by operation,
 * key and result, latency histograms by operation, batch items, HSM session
 * state, reopens and PKCS#11 errors by return value and by function (with
 * the latest CKR and its time), the token's capability probe, clients and watchers,
 * keys by state. kekd writes them to [metrics] file every interval (the
 * node_exporter textfile collector convention: written to a temporary file
 * in the same directory and renamed, so a scrape never sees half a file),
 * and `kekctl status` asks for the same text live (StatusRequest).
 *
 * Memory is bounded: at most METRICS_SERIES_MAX (op, key, result) series;
 * requests beyond that are counted under key="_other". Label values are
 * operation names, error names and key names, which kekd restricts to
 * [A-Za-z0-9._-] (others show as '?'), so no escaping is needed and no
 * peer-chosen byte reaches the file.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "common/macro.h"
#include "daemon/keystore.h"
#include "pkcs11/probe.h"

#define METRICS_SERIES_MAX 4096u

typedef struct Metrics Metrics;

int metrics_new(uint64_t start_realtime_usec, Metrics **ret);
Metrics *metrics_free(Metrics *m);
DEFINE_TRIVIAL_CLEANUP_FUNC(Metrics, metrics_free);

/* One request: op from the dispatch table (a static string), result 0 or negative, items for batches. */
void metrics_request(Metrics *m, const char *op, const char *key, int result, uint64_t duration_usec, unsigned items);
void metrics_set_clients(Metrics *m, unsigned clients, unsigned watchers);
/* n more data-plane encryptions or decryptions run in the HSM (kekd_hsm_crypto_ops_total). */
void metrics_hsm_crypto_ops(Metrics *m, uint64_t n);
unsigned metrics_clients(const Metrics *m);
/* Bytes held for output peers have not read, and connections closed for holding too much of it (server.c). */
void metrics_set_output(Metrics *m, size_t queued_bytes, uint64_t budget_drops);
/*
 * Where the figures of kekd's other HSM sessions come from: fn adds the
 * counters of the sessions besides the keystore's (worker pool, refresh
 * task) to acc and returns how many sessions serve requests ([hsm]
 * sessions). Set by the owner of those sessions (kekd.c), so the metrics
 * know nothing of the workers. Without one: the keystore's session alone.
 */
typedef unsigned (*MetricsHsmFn)(HsmStats *acc, void *userdata);
void metrics_set_hsm_source(Metrics *m, MetricsHsmFn fn, void *userdata);

/* Keeps a copy of the capability probe's result (kekd.c at start, handle_check()) for status and the file. */
void metrics_set_probe(Metrics *m, const ProbeResult *p);

/* The token set whose health is rendered (kekd_token_state etc.); NULL: none. Not owned. */
typedef struct TokenSet TokenSet;
void metrics_set_tokens(Metrics *m, TokenSet *ts);

/* The whole exposition, NUL-terminated and malloc'd. ks (may be NULL) gives the key and HSM figures. */
int metrics_render(const Metrics *m, const Keystore *ks, char **ret, size_t *ret_len);
/* Renders and replaces path atomically (mode 0644). */
int metrics_write_file(const Metrics *m, const Keystore *ks, const char *path);
