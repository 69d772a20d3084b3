/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libkek's AEK cache: entries keyed by a 128-bit digest of (blob, context),
 * each holding a reference to its kek_aek, the key and version it was
 * wrapped under, when it was last fetched and last confirmed by kekd (itself,
 * or its key version as a whole: cache_confirm()). Bounded
 * in size with CLOCK eviction; an evicted or dropped AEK is released (and
 * cleansed once no caller holds it). Thread-safe: one mutex, held for
 * O(1) work except the O(n) revocation drops.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "client/libkek.h"

typedef struct Cache Cache;

typedef enum CacheResult {
        CACHE_MISS,
        CACHE_FRESH,    /* fetched within the refresh interval */
        CACHE_STALE,    /* present, due for re-validation */
} CacheResult;

int cache_new(size_t max_entries, Cache **ret);
Cache *cache_free(Cache *c);

/*
 * Keyed digest (SipHash-2-4-128 under this cache's random key) of (blob, ctx).
 * <0 if OpenSSL cannot compute it: then the cache must be neither asked nor filled.
 */
int cache_digest(const Cache *c, const uint8_t *blob, size_t blob_len, const uint8_t *ctx, size_t ctx_len,
                 uint8_t out[16]);
/* Whether digests restart each thread's MAC under the key it holds (the fast path), not re-key it. */
bool cache_digest_restarts(const Cache *c);
/*
 * The id entries of key name are stored under: keyed by this cache (a name
 * colliding with another's id cannot be chosen). <0 as for cache_digest().
 */
int cache_key_id(const Cache *c, const char *name, uint64_t *ret);
/* Whether the cache holds an entry of that key and version, i.e. one kekd confirmed to this cache. */
bool cache_holds(Cache *c, uint64_t key_id, uint32_t version);

/* On FRESH or STALE, *ret_aek is a new reference and *ret_last_ok when kekd last confirmed it. */
CacheResult cache_lookup(Cache *c, const uint8_t digest[16], uint64_t now, uint64_t refresh_usec, kek_aek **ret_aek,
                         uint64_t *ret_last_ok);
/*
 * The cache's drop epoch: take it before asking kekd, and pass it to cache_store() with the answer.
 * An answer is older than any drop or mark-stale that happened while it was in flight (a Watch
 * event for a disabled key): storing it as fetched now would serve a revoked AEK for refresh_sec.
 */
uint64_t cache_epoch(Cache *c);
/*
 * Inserts or refreshes an entry (takes its own reference to aek), unless a drop that may have
 * covered key_id happened after epoch: then nothing is stored and an entry stored since is left
 * alone. After a mark-stale since epoch, the entry is stored already stale.
 */
void cache_store(Cache *c, const uint8_t digest[16], uint64_t key_id, uint32_t version, kek_aek *aek, uint64_t now,
                 uint64_t epoch);
void cache_drop_entry(Cache *c, const uint8_t digest[16]);
/* Drops the entries of a key: all versions when n_versions is 0. Returns how many. Advances the epoch. */
size_t cache_drop_key(Cache *c, uint64_t key_id, const uint32_t *versions, size_t n_versions);
/*
 * kekd confirmed (key_id, version) at now: every entry of it is fresh until now + refresh, the one
 * of digest (if any) counted as refreshed at once, the others at their next lookup. Not recorded
 * when a drop of the key or a clear happened after epoch (-ESTALE: the caller must not serve on it)
 * or nothing of that version is cached (-ENOENT); after a mark-stale since epoch, 0 but not
 * recorded (the answer predates events that may have been missed).
 */
int cache_confirm(Cache *c, const uint8_t digest[16], uint64_t key_id, uint32_t version, uint64_t now, uint64_t epoch);
/* Forces re-validation of every entry at its next use (after missed events). Advances the epoch. */
void cache_mark_stale(Cache *c);
void cache_clear(Cache *c);
void cache_stats(Cache *c, kek_stats *stats);
void cache_count_stale_served(Cache *c);
