/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libkek: the client library storage processes link to use kekd.
 *
 * A kek_client holds one pipelined connection to kekd (thread-safe: any
 * number of threads may call at once; requests are multiplexed by id, those
 * made while another is in flight go out together as batch frames, and the
 * connection is re-established with backoff when kekd restarts), an AEK
 * cache, and a Watch subscription that drops a revoked key's cached AEKs
 * within milliseconds.
 *
 * The AEK cache is keyed by (blob, context). A cached AEK is re-validated
 * every refresh_sec (6..60) by one confirmation of its key version from kekd,
 * which re-validates every AEK of that version (or, when kekd cannot confirm
 * it or predates confirmations, by unwrapping again). When kekd or the HSM is
 * unavailable (a transient error) entries keep serving for grace_sec past
 * their last successful unwrap; on a definitive refusal (key disabled,
 * deleted, unknown, permission removed) of a key and version the cache holds
 * entries for, every entry of that key is dropped at once (a refusal of a
 * version it holds nothing of may come from a forged blob header and drops
 * nothing else). Cached AEKs live in memory that is excluded from core dumps, locked
 * when RLIMIT_MEMLOCK allows, and cleansed on eviction.
 *
 * All functions return 0 on success and a negative number on
 * failure: -errno for local conditions, or -(0x10000 + code) for a kekd error
 * code; kek_strerror() names both and kek_error_is_transient() tells whether
 * retrying may help. Output parameters are written only on success.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define KEK_AEK_SIZE 32u
#define KEK_BLOCK_OVERHEAD 29u          /* format byte + 96-bit nonce + 128-bit tag */
#define KEK_BLOCK2_OVERHEAD (2u * KEK_BLOCK_OVERHEAD)

/* kekd error codes as returned by libkek: -(KEK_ERROR_BASE + code) */
#define KEK_ERROR_BASE 0x10000
enum {
        KEK_E_MALFORMED_REQUEST = 1,
        KEK_E_FRAME_TOO_LARGE = 2,
        KEK_E_UNKNOWN_KEY = 3,
        KEK_E_UNKNOWN_VERSION = 4,
        KEK_E_BLOB_INVALID = 5,
        KEK_E_HSM_UNAVAILABLE = 6,
        KEK_E_KEY_EXISTS = 7,
        KEK_E_INVALID_ARGUMENT = 8,
        KEK_E_KEY_DISABLED = 9,
        KEK_E_KEY_DELETED = 10,
        KEK_E_KEY_NOT_RECOVERABLE = 11,
        KEK_E_PERMISSION_DENIED = 12,
        KEK_E_INTERNAL = 13,
        KEK_E_UNSUPPORTED = 14,
        KEK_E_CONFLICT = 15,
        KEK_E_PURGE_PROTECTED = 16,
        KEK_E_APPROVAL_REQUIRED = 17,
        KEK_E_LIMIT_EXCEEDED = 18,    /* transient: a per-peer connection limit */
};

typedef struct kek_client kek_client;
typedef struct kek_aek kek_aek;        /* a plaintext AEK in protected memory, reference counted */

typedef struct kek_options {
        const char *socket_path;       /* NULL: $KEKD_SOCKET, else /run/kekd/kekd.sock */
        unsigned timeout_ms;           /* per request; 0: 5000 */
        unsigned refresh_sec;          /* cache re-validation, 6..60; 0: 60 */
        unsigned grace_sec;            /* serve cached AEKs this long on transient errors; 0: 300 */
        size_t cache_entries;          /* 0: 100000 */
        bool cache_disabled;
        bool watch_disabled;           /* no revocation push: the refresh interval is the bound */
        bool coalesce_disabled;        /* every request in a frame of its own (no batching of concurrent ones) */
} kek_options;

typedef struct kek_stats {
        uint64_t hits, misses, refreshes, evictions, drops, stale_served;
        uint64_t entries;
        uint64_t requests;             /* sent to kekd */
        uint64_t watch_events;
        bool watch_connected;
} kek_stats;

typedef struct kek_key_version {
        uint32_t current_version;
        int state;                     /* 1 enabled, 2 disabled, 3 deleted */
        bool recoverable;
} kek_key_version;

int kek_client_new(const kek_options *opts, kek_client **ret);
void kek_client_free(kek_client *c);

/* version 0: the key's current version (the cloud service's "" version). */
int kek_wrap(kek_client *c, const char *key, uint32_t version, const uint8_t *aek, size_t aek_len, const uint8_t *ctx,
             size_t ctx_len, uint8_t **ret_blob, size_t *ret_blob_len, uint32_t *ret_version);
/* The AEK comes from the cache when fresh; release it with kek_aek_unref(). */
int kek_unwrap(kek_client *c, const uint8_t *blob, size_t blob_len, const uint8_t *ctx, size_t ctx_len, kek_aek **ret);
/* Re-wraps under the key's current version inside kekd; the AEK never reaches this process. */
int kek_rewrap(kek_client *c, const uint8_t *blob, size_t blob_len, const uint8_t *ctx, size_t ctx_len,
               uint8_t **ret_blob, size_t *ret_blob_len, uint32_t *ret_version);
int kek_get_key_version(kek_client *c, const char *key, kek_key_version *ret);

/* Batch forms: n items in one request; results[i] is 0 or the item's error. Blobs are malloc'd. */
typedef struct kek_blob {
        uint8_t *data;
        size_t len;
} kek_blob;
int kek_wrap_batch(kek_client *c, const char *key, size_t n, kek_aek *const *aeks, const kek_blob *ctxs,
                   kek_blob *ret_blobs, int *ret_results);
int kek_rewrap_batch(kek_client *c, size_t n, const kek_blob *blobs, const kek_blob *ctxs, kek_blob *ret_blobs,
                     int *ret_results);
/* n unwraps in one request, bypassing cache lookups (a bulk read); results are cached. ret_aeks[i] or NULL. */
int kek_unwrap_batch(kek_client *c, size_t n, const kek_blob *blobs, const kek_blob *ctxs, kek_aek **ret_aeks,
                     int *ret_results);

/* A handle for one key: version 0 follows the current version, else it is pinned. */
typedef struct kek_key kek_key;
int kek_key_new(kek_client *c, const char *name, uint32_t version, kek_key **ret);
void kek_key_free(kek_key *k);
int kek_key_wrap(kek_key *k, const kek_aek *aek, const uint8_t *ctx, size_t ctx_len, uint8_t **ret_blob,
                 size_t *ret_blob_len);

void kek_stats_get(kek_client *c, kek_stats *ret);
/* Drops every cached AEK (e.g. before the process sleeps). */
void kek_cache_clear(kek_client *c);

/* AEKs */
int kek_aek_generate(kek_aek **ret);
int kek_aek_from_bytes(const uint8_t *data, size_t len, kek_aek **ret);
kek_aek *kek_aek_ref(kek_aek *a);
void kek_aek_unref(kek_aek *a);
const uint8_t *kek_aek_data(const kek_aek *a);
size_t kek_aek_size(const kek_aek *a);

/*
 * Blocks (libkek(3), BLOCK FORMATS). Keys must be KEK_AEK_SIZE bytes to seal
 * (and to open the bound formats), at least 16 to open the old ones: else
 * -EINVAL. out must hold len + KEK_BLOCK_OVERHEAD bytes (seal) or
 * len - KEK_BLOCK_OVERHEAD (open); KEK_BLOCK2_OVERHEAD for the double forms.
 * A wrong key, a changed block or other bound values fail with -EBADMSG.
 *
 * Format 0x01 (kek_block_seal): DEK = HKDF-SHA256(AEK, salt "kekd-dek-v1",
 * info = block context); 0x01 | 96-bit random nonce | AES-256-GCM | tag,
 * AAD = format byte | context. It binds neither the object's length nor a
 * generation: a truncated object or an older copy of a block still opens.
 */
int kek_block_seal(const kek_aek *aek, const uint8_t *bctx, size_t bctx_len, const uint8_t *in, size_t len, uint8_t *out);
int kek_block_open(const kek_aek *aek, const uint8_t *bctx, size_t bctx_len, const uint8_t *in, size_t len, uint8_t *out);

/*
 * Double encryption: the inner layer as above, then an outer layer with an
 * independent platform key and another AEAD (ChaCha20-Poly1305, format 0x02),
 * so a weakness of one algorithm or one key does not expose the data. In
 * format 0x02 the inner layer is a valid 0x01 block; the _ex forms bind the role.
 */
int kek_block_seal2(const kek_aek *aek, const kek_aek *platform_key, const uint8_t *bctx, size_t bctx_len,
                    const uint8_t *in, size_t len, uint8_t *out);
int kek_block_open2(const kek_aek *aek, const kek_aek *platform_key, const uint8_t *bctx, size_t bctx_len,
                    const uint8_t *in, size_t len, uint8_t *out);

/*
 * Bound blocks (formats 0x03, and 0x04 outside 0x03 for the double form): a
 * block opens only with the values it was sealed with, which go into the DEK
 * derivation and the AAD with the layer's role. Give every rewrite of an
 * object a new generation (rollback; one DEK per block and generation keeps
 * random nonces far from their bound), every block its index, the object's
 * plaintext length, and KEK_BLOCK_FINAL on the last block only (truncation).
 * Opening takes what the caller expects, not what the block says.
 */
#define KEK_BLOCK_FINAL 0x1u
typedef struct kek_block_params {
        uint64_t generation;           /* the object's write generation */
        uint64_t index;                /* the block's position in the object */
        uint64_t total_len;            /* the object's plaintext length */
        uint32_t flags;                /* KEK_BLOCK_FINAL on the last block; other bits must be 0 */
} kek_block_params;

int kek_block_seal_ex(const kek_aek *aek, const kek_block_params *p, const uint8_t *bctx, size_t bctx_len,
                      const uint8_t *in, size_t len, uint8_t *out);
int kek_block_open_ex(const kek_aek *aek, const kek_block_params *p, const uint8_t *bctx, size_t bctx_len,
                      const uint8_t *in, size_t len, uint8_t *out);
int kek_block_seal2_ex(const kek_aek *aek, const kek_aek *platform_key, const kek_block_params *p, const uint8_t *bctx,
                       size_t bctx_len, const uint8_t *in, size_t len, uint8_t *out);
int kek_block_open2_ex(const kek_aek *aek, const kek_aek *platform_key, const kek_block_params *p, const uint8_t *bctx,
                       size_t bctx_len, const uint8_t *in, size_t len, uint8_t *out);

const char *kek_strerror(int r);
bool kek_error_is_transient(int r);

#ifdef __cplusplus
}
#endif
