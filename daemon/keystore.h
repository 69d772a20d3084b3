/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The keystore: kekd's in-memory index of the keys held in the token, their
 * lifecycle, and the wrap/unwrap operations on them. The token is the
 * database (TOKEN LAYOUT in kekd-protocol(7)): each key has a CKO_DATA
 * metadata record (a Kek__KeyRecord) and one AES secret key object per
 * version (CKA_LABEL = key name, CKA_ID = version); the vault policy is one
 * more record. The index is rebuilt from the token at start, every refresh
 * interval (read on the refresh task's thread, keystore_read_*) and whenever
 * the HSM session had to be reopened, so changes made through another kekd
 * on the same token are honoured within that interval.
 *
 * Consistency invariants, whatever point a kekd dies at:
 *  - Records are never modified in place: a change writes generation N+1 as a
 *    new object and then destroys N. Readers take the highest readable
 *    generation, so a torn or missing write loses at most that change.
 *  - Adding a version writes the intent (pending_version) first, then
 *    generates the object, then records the version. Purging writes
 *    "purging" first, then destroys objects, then the record. Repair (at
 *    start and periodically) rolls back stale intents and finishes purges, so
 *    no version named by a record is ever missing and no object of ours is
 *    left without a record. A create that fails rolls itself back before it
 *    answers; a key whose creation is not complete exists for no request
 *    (key_exists()).
 *  - Wrap budgets are leases recorded before use: a crash over-counts, by
 *    at most one lease per version this kekd wrapped with; a clean stop
 *    gives the unused part back (keystore_settle()).
 *  - A change is written once: when several kekd write one key at once, a
 *    write that another kekd's newer record was built on (its ancestors
 *    name ours) stands; only a write that no newer record holds is
 *    withdrawn and re-applied, and one that cannot be told is withdrawn and
 *    fails without being re-applied (budgets over-count, never under-count).
 *
 * This header is the keystore's one interface. Its files, each depending
 * only on those before it: keystore-records.[ch] (a key's objects in the
 * token), keystore-index.[ch] (the KeyIndex and building one from a reading
 * of the token), keystore.c (struct Keystore, loading, lifecycle,
 * maintenance), then keystore-data.c (the data plane: this header and
 * key_index_version()) and keystore-check.c (this header and RECORDS_APP).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/secret.h"
#include "pkcs11/hsm.h"
#include "proto/blob.h"
#include "daemon/record.h"
#include "daemon/vault.h"

#define WRAP_BUDGET_DEFAULT (1ULL << 30)     /* far below the 2^32 random-IV bound of AES-GCM */
#define WRAP_BUDGET_MAX (1ULL << 32)         /* NIST SP 800-38D: at most 2^32 invocations with random IVs */


typedef struct Keystore Keystore;

/*
 * Called after the index changed what a client may observe of a key: its
 * state, current version, a version's enabled flag, its grants, or its
 * existence (k is NULL when the key is gone, old NULL when it is new).
 * Drives the Watch stream.
 */
typedef void (*KeyChangeFn)(const char *name, const Key *old, const Key *k, void *userdata);
void keystore_set_change_callback(Keystore *ks, KeyChangeFn fn, void *userdata);

typedef struct CheckReport {
        unsigned keys, versions, repaired;
        unsigned without_backup;       /* present versions that are never extractable (no backup path) */
        char **problems;
        size_t n_problems;
} CheckReport;

/* owner: "host:pid", recorded with intents so repair knows whose they are. */
int keystore_new(Hsm *hsm, const char *owner, Keystore **ret);
Keystore *keystore_free(Keystore *ks);
DEFINE_TRIVIAL_CLEANUP_FUNC(Keystore, keystore_free);

/* Serve wraps although the vault is not recoverable (development only). */
void keystore_set_allow_unrecoverable(Keystore *ks, bool allow);
bool keystore_allow_unrecoverable(const Keystore *ks);
/* [hsm] profile: the mechanism profile of new key versions (an HsmProfile), or -1 to choose from what the token offers. */
void keystore_set_profile(Keystore *ks, int profile);
/* The profile set with keystore_set_profile() (-1: auto). */
int keystore_profile(const Keystore *ks);

/*
 * The token is known down (daemon/failover.h: the preferred token is not active, its data-plane
 * calls run on a further token): lookups serve from the last index without re-reading the token,
 * and what writes it (a wrap's lease renewal, maintenance) fails -KEKERR_HSM_UNAVAILABLE at once.
 */
void keystore_set_token_down(Keystore *ks, bool down);
/* Rebuilds the index and vault policy from the token; the previous index stays on failure. */
int keystore_load(Keystore *ks);
/* keystore_load() unless the index is younger than max_age_usec: clients cannot force reload storms. */
int keystore_refresh(Keystore *ks, uint64_t max_age_usec);

/*
 * The same reading of the token, in three steps, so that the listing (0.7 s
 * with 10,000 key objects on SoftHSM2, one round trip per object on a
 * network HSM) runs on another thread while the loop serves:
 * keystore_read_new() on the loop notes the session generation and this
 * process's writes; keystore_read_token() on any thread lists through h, a
 * session of its own (hsm_open_session() of keystore_hsm()), touching only rd
 * and h; keystore_read_apply() on the loop makes it the index. It returns 1
 * when applied, 0 when the index was read since (nothing to do), -ESTALE when
 * this process wrote to the token, lost a session or doubted a write's outcome
 * meanwhile: the reading may predate that change, read again.
 * keystore_read_token() is -ESTALE too when h itself lost its session during
 * the reading (a detached session, hsm_set_detached(), moves only its own
 * generation).
 */
typedef struct KeystoreRead KeystoreRead;
int keystore_read_new(Keystore *ks, KeystoreRead **ret);
int keystore_read_token(KeystoreRead *rd, Hsm *h);
int keystore_read_apply(Keystore *ks, KeystoreRead *rd);
KeystoreRead *keystore_read_free(KeystoreRead *rd);
DEFINE_TRIVIAL_CLEANUP_FUNC(KeystoreRead, keystore_read_free);

/* The HSM the keystore uses, for other records kept in the same token (daemon/approval.h). */
Hsm *keystore_hsm(const Keystore *ks);

/*
 * Whether k exists for clients: its creation is complete (its first version
 * recorded) and it is not being purged. The index also holds keys that do
 * not, for repair; every request treats them as UNKNOWN_KEY.
 */
bool key_exists(const Key *k);
/* The index, keys that do not exist included: callers that count or list keys skip those. */
size_t keystore_n_keys(const Keystore *ks);
const Key *keystore_key_at(const Keystore *ks, size_t i);
/* The keys that exist for clients (key_exists()) and their versions, for status lines. */
void keystore_count(const Keystore *ks, size_t *ret_keys, size_t *ret_versions);
/*
 * -KEKERR_UNKNOWN_KEY if absent. Re-reads the token first when the index is
 * stale (a session reopened, a write's outcome in doubt), and when the name is
 * unknown and the index older than a second (another kekd may have created
 * it). Pointers stay valid until the next keystore call.
 */
int keystore_find(Keystore *ks, const char *name, const Key **ret);

/*
 * A key as one request item found it, so the item looks its key up once:
 * authorize (daemon/dispatch.c) checks the peer's grant on it and prepare
 * takes it from there. It stays usable while the index is the one it was
 * found in (no reload, no write, no session reopened since); prepare looks
 * the key up again by name when it is not (or when nothing was found).
 */
typedef struct KeyLookup {
        const Key *key;
        uint64_t epoch;                /* the index's epoch when found */
} KeyLookup;
/* keystore_find(), remembered for prepare. */
int keystore_lookup(Keystore *ks, const char *name, KeyLookup *ret);
/* keystore_find(), answered from found (NULL or from keystore_lookup()) when that is still usable. */
int keystore_refind(Keystore *ks, const KeyLookup *found, const char *name, const Key **ret);
/* How many times a name was looked up in the index for a request (for tests and profiling). */
uint64_t keystore_lookups(const Keystore *ks);
/*
 * When (CLOCK_MONOTONIC) the reading of the token the index was built from
 * began, 0 before the first: what the index says of other kekd's changes is
 * at least that old. This kekd's own changes are in it at once. Confirm
 * (handle-data.c) vouches for a version's state only from a young index.
 */
uint64_t keystore_index_read_usec(const Keystore *ks);

/*
 * For the data plane (keystore-data.c), which keeps its runtime state in the
 * index's keys (lease units, usage, a version's handle once found):
 * keystore_key() is the key found (when still usable) or keystore_find()'s;
 * keystore_key_runtime() the index's entry of name, without a lookup or a
 * reload (NULL if none); keystore_generation() the hsm_generation() the
 * index's handles are valid at.
 */
int keystore_key(Keystore *ks, const KeyLookup *found, const char *name, Key **ret);
Key *keystore_key_runtime(Keystore *ks, const char *name);
uint64_t keystore_generation(const Keystore *ks);
uint64_t key_max_wraps(const Key *k);

const VaultPolicy *keystore_vault(const Keystore *ks);
/* Soft delete is always on; the vault is recoverable when purge protection is on. */
bool keystore_recoverable(const Keystore *ks);

/* Lifecycle. All re-read the key's record from the token before changing it. */
int keystore_create(Keystore *ks, const char *name, const RotationPolicy *policy, uint64_t now, const Key **ret);
int keystore_rotate(Keystore *ks, const char *name, uint64_t now, const Key **ret);
int keystore_set_policy(Keystore *ks, const char *name, const RotationPolicy *policy, const Key **ret);
/* version 0: the whole key */
int keystore_set_enabled(Keystore *ks, const char *name, uint32_t version, bool enabled, const Key **ret);
int keystore_delete(Keystore *ks, const char *name, uint64_t now, const Key **ret);
int keystore_recover(Keystore *ks, const char *name, const Key **ret);
int keystore_purge(Keystore *ks, const char *name, uint64_t now);
int keystore_set_vault(Keystore *ks, const VaultChange *c);
/* Adds or (revoke) removes operations of one principal's grant on a key; administrators only. */
int keystore_set_grant(Keystore *ks, const char *name, const Grant *grant, bool revoke, const Key **ret);

/*
 * Data plane. Each operation takes steps, so that the HSM work of a batch can
 * run on several sessions at once (daemon/cryptopool.h):
 *   prepare  keystore thread: checks, wrap lease, IV, AAD; copies what the
 *            HSM call needs into the CryptoOp (no pointers into the index);
 *   run      any thread with its own Hsm session: only C_Encrypt/C_Decrypt,
 *            and a search for the op's key object when a session was
 *            reopened since prepare (then the call is made once more);
 *   targets  rewrap only, keystore thread: a blob that authenticated gets
 *            its new version, lease and IV (so a blob that does not spends
 *            no wrap budget), then run again encrypts it;
 *   finish   keystore thread: usage counts; a vanished object re-reads the
 *            token (once per call) and the op becomes transient.
 * Errors are reported one way per step: prepare returns its refusal and
 * leaves the op unprepared (kind 0, nothing to run or free); the outcome of
 * a prepared op (run, targets, finish) is op->result after keystore_run(),
 * and nowhere else.
 *
 * Sizes (plaintext 1..AEK_MAX_SIZE, context up to CONTEXT_MAX_SIZE) are the
 * caller's to check, once: the request path checks them at decode
 * (daemon/handle-data.c); keystore_wrap(), keystore_unwrap() and
 * keystore_rewrap(), which have no decode, check them themselves.
 * keystore_wrap() and friends are prepare and keystore_run() on the
 * keystore's own session.
 */
typedef enum CryptoKind {
        CRYPTO_WRAP = 1,
        CRYPTO_UNWRAP,
        CRYPTO_REWRAP,
} CryptoKind;

/*
 * What the data plane keeps between the steps (the key object handles
 * stamped with their session generation, the AADs, the caller's inputs):
 * keystore-data.c's alone, laid out there; its size is checked at compile
 * time. Stored in the op itself, so a request's ops need no allocation.
 */
#define CRYPTO_OP_STATE_SIZE 2432u
typedef union CryptoOpState {
        max_align_t align;
        unsigned char bytes[CRYPTO_OP_STATE_SIZE];
} CryptoOpState;

/* One HSM operation of a request item; what the caller reads of it is what it asked for and its answer. */
typedef struct CryptoOp {
        CryptoKind kind;               /* 0: not prepared (refused, or waiting for its renewal) */
        int result;                    /* after keystore_run(): 0 or the op's error */
        BlobView view;                 /* unwrap, rewrap: the blob, which must outlive the op */
        uint32_t version;              /* wrap, rewrap: the version wrapped under */
        uint8_t *blob;                 /* wrap, rewrap: the new blob (the caller may take it) */
        size_t blob_len;
        Secret *plaintext;             /* unwrap: the plaintext (the caller may take it) */
        /* its HSM_UNAVAILABLE is its version's (two key objects answer to it), not its token's failure */
        bool version_fault;
        CryptoOpState state;           /* keystore-data.c's */
} CryptoOp;

/*
 * A wrap's prepare never writes the token. When the version has no lease of
 * wrap budget left it returns KEYSTORE_NEEDS_RENEWAL (op not prepared): the
 * caller runs keystore_wrap_renew(), a step of its own that takes a new lease
 * or rotates a current version past its budget (writing the token), and
 * prepares again. keystore_wrap_prepare_renewed() is those steps in a row,
 * at most two renewals (then -KEKERR_CONFLICT).
 */
#define KEYSTORE_NEEDS_RENEWAL 1
int keystore_wrap_prepare(Keystore *ks, const KeyLookup *found, const char *name, uint32_t version, const uint8_t *pt,
                          size_t pt_len, const uint8_t *ctx, size_t ctx_len, uint64_t now, CryptoOp *op);
int keystore_wrap_renew(Keystore *ks, const char *name, uint32_t version, uint64_t now);
int keystore_wrap_prepare_renewed(Keystore *ks, const KeyLookup *found, const char *name, uint32_t version,
                                  const uint8_t *pt, size_t pt_len, const uint8_t *ctx, size_t ctx_len, uint64_t now,
                                  CryptoOp *op);
/*
 * view: the blob, parsed once by the caller (blob_parse()); its bytes must outlive the op. found: the
 * blob's key as authorize found it (keystore_lookup()), or NULL.
 */
int keystore_unwrap_prepare(Keystore *ks, const KeyLookup *found, const BlobView *view, const uint8_t *ctx,
                            size_t ctx_len, uint64_t now, CryptoOp *op);
int keystore_rewrap_prepare(Keystore *ks, const KeyLookup *found, const BlobView *view, const uint8_t *ctx,
                            size_t ctx_len, uint64_t now, CryptoOp *op);
/* Frees what the op still owns (blob, plaintext); the op may be reused after. Accepts an unprepared op. */
void crypto_op_done(CryptoOp *op);
/*
 * The steps after prepare, in a row, for n prepared ops (ops that failed
 * prepare are left alone): run (over pool's sessions; NULL: the keystore's
 * own session), targets, run again if needed, finish. Each op's outcome is
 * then in op->result.
 */
typedef struct CryptoPool CryptoPool;
void keystore_run(Keystore *ks, CryptoPool *pool, CryptoOp **ops, size_t n);

/*
 * Failover (daemon/failover.h, docs/tokens-ha.md): the same steps with each run pass given to pass,
 * which runs the pending calls of ops on the keystore's token (keystore_run_pass()) or another's
 * (crypto_op_run_on()), and may run an op that met HSM_UNAVAILABLE once more elsewhere
 * (crypto_op_retry()). Prepare, targets and finish stay the keystore's, on its index.
 */
typedef void (*CryptoPassFn)(void *userdata, CryptoOp **ops, size_t n);
void keystore_run_with(Keystore *ks, CryptoPassFn pass, void *userdata, CryptoOp **ops, size_t n);
/* One run pass on the keystore's token: pool's sessions, or (NULL) the keystore's own. */
void keystore_run_pass(Keystore *ks, CryptoPool *pool, CryptoOp **ops, size_t n);
/* Whether op has a call to make in the next pass. */
bool crypto_op_pending(const CryptoOp *op);
/* An op whose call met -KEKERR_HSM_UNAVAILABLE is pending again (for another token); others are left alone. */
void crypto_op_retry(CryptoOp *op);
/* The version object op's pending call uses, found by name and version in any token holding a copy. */
typedef struct CryptoOpObject {
        const char *key;               /* op's own: valid while op is */
        uint32_t version;
        bool restored;                 /* the restored form (record.h) */
} CryptoOpObject;
void crypto_op_object(CryptoOp *op, CryptoOpObject *ret);
/* That object's handles in one token, valid while that token's hsm_generation() is generation. */
typedef struct CryptoOpHandles {
        bool valid;
        uint64_t generation;
        HsmObject object, mac;
        bool other_form;               /* found there in the other form than the record names (restored or not) */
} CryptoOpHandles;
/*
 * The pending call of op on h, a session of a further token: with *cached if valid at h's
 * generation, else the object found there (then written to *cached). A token lacking the object
 * makes the op -KEKERR_HSM_UNAVAILABLE (transient), never UNKNOWN_VERSION, and returns -ENOENT (it is
 * no failure of the token: it is not a full copy); else 0 and the op's outcome in op->result. Any
 * thread owning h.
 */
int crypto_op_run_on(Hsm *h, CryptoOp *op, CryptoOpHandles *cached);

int keystore_wrap(Keystore *ks, const char *name, uint32_t version, const uint8_t *pt, size_t pt_len,
                  const uint8_t *ctx, size_t ctx_len, uint64_t now, uint8_t **ret_blob, size_t *ret_blob_len,
                  uint32_t *ret_version);
int keystore_unwrap(Keystore *ks, const uint8_t *blob, size_t blob_len, const uint8_t *ctx, size_t ctx_len,
                    uint64_t now, Secret **ret_plaintext, BlobView *ret_view);
/* Unwrap and wrap again under the current version; the plaintext never leaves this call. */
int keystore_rewrap(Keystore *ks, const uint8_t *blob, size_t blob_len, const uint8_t *ctx, size_t ctx_len,
                    uint64_t now, uint8_t **ret_blob, size_t *ret_blob_len, uint32_t *ret_version,
                    uint32_t *ret_old_version);

/*
 * At shutdown, after the last wrap: writes this kekd's unflushed usage
 * (unwrap counts, last use) of every key and gives back the unused part of
 * its wrap leases, so each version's wrap count is its real count. A key
 * whose write fails keeps its lease counted (over-counted, never under).
 */
int keystore_settle(Keystore *ks);

/*
 * Periodic work: repair stale intents, purge keys past their purge date,
 * rotate by policy, flush usage. Returns the number of changes made.
 */
int keystore_maintain(Keystore *ks, uint64_t now);

/* Repairs stale intents, unfinished purges and duplicate records now, whatever the index's age. */
int keystore_repair(Keystore *ks, uint64_t now);
/* Whether k's pending intent (pending_version) is stale: ours, a gone kekd's of this host, or too old. */
bool keystore_intent_stale(const Keystore *ks, const Key *k, uint64_t now);

/* Verifies the token against the records (after repairing what can be repaired); keystore-check.c. */
int keystore_check(Keystore *ks, uint64_t now, CheckReport *ret);
void check_report_done(CheckReport *r);
/* Appends one problem line to rep (for checks beyond the keystore's, daemon/tokens-check.h); -ENOMEM. */
_printf_(2, 3) int check_report_add(CheckReport *rep, const char *fmt, ...);
