/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Replication (issue 17 item 3, docs/tokens-ha.md): makes a further token
 * equal to the preferred one, which is the only writer. One call reads both
 * tokens and reconciles, key by key:
 *   1. each version object of a key record of the preferred token that the
 *      further token lacks is copied by trusted wrapping (wrapped on the
 *      preferred token under the SO's trusted wrapping key, unwrapped on the
 *      further token under its unwrapping key: daemon/backup.h's helpers,
 *      so a version moves one way whether backed up or replicated);
 *   2. then the key's record is written there when it differs (the
 *      preferred token's record, intents dropped, copied versions in their
 *      restored form), as the next generation of that token's own record;
 *   3. keys gone from the preferred token are purged there in the purge
 *      order (a "purging" record, the objects, the records); the vault
 *      policy is copied too.
 * Usage counters and wrap leases are copied with a record, never a reason
 * to write one: on a further token they lag (the preferred token's count
 * decides). Approvals are not copied: they are the preferred token's.
 *
 * Invariants: objects before records, so a kill -9 at any point leaves
 * the further token consistent: objects no record names are no key to a
 * kekd on that token alone (its repair destroys them, as after an
 * interrupted restore), and a record names only versions whose objects are
 * there. A version that cannot leave the preferred token (never
 * extractable) is counted and named, never skipped silently; its key's
 * record is not written while its current version is missing there. Runs
 * on the caller's thread with two Hsm it owns; touches nothing else.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pkcs11/hsm.h"
#include "daemon/record.h"

#define REPLICA_NOTE_MAX 160u

typedef struct ReplicaOutcome {
        size_t keys;                   /* keys of the preferred token looked at */
        size_t copied;                 /* versions copied (AES key, and MAC key for the HMAC profiles) */
        size_t written;                /* records written on the further token */
        size_t purged;                 /* keys purged there */
        size_t not_copied;             /* versions that cannot leave the preferred token */
        bool vault_written;
        bool src_failed;               /* the failure was the preferred token's (reading it, wrapping there) */
        char note[REPLICA_NOTE_MAX];   /* the failure, or the first version not copied; "" if none */
} ReplicaOutcome;

/*
 * Makes dst equal to src (see above): wrapping_key is the label of the
 * trusted wrapping key on src, unwrapping_key of the unwrapping key on dst
 * ([backup] wrapping_key / unwrapping_key). 0: dst is a full copy; 1:
 * complete but ret->not_copied versions could not be copied (ret->note names
 * the first); <0: failed, ret->note says where (no secret in it).
 * progress, if not NULL, is called after each key copied or written (a
 * place for the caller to log or to stop: a non-zero return ends the sync
 * with -ECANCELED).
 */
typedef int (*ReplicaProgressFn)(const char *name, const ReplicaOutcome *so_far, void *userdata);
int replica_sync(Hsm *src, Hsm *dst, const char *wrapping_key, const char *unwrapping_key, ReplicaProgressFn progress,
                 void *userdata, ReplicaOutcome *ret);

/* Pure parts, for tests. */
/*
 * The record to write on a further token for src: a copy, intents and
 * runtime shares dropped, purging cleared. NULL versions' restored flags are
 * the caller's to set. -ENOMEM.
 */
int replica_wanted_key(const Key *src, Key **ret);
/*
 * Whether the further token's record have (NULL: none) differs from want in
 * anything but usage, leases, intents and the record chain (generation,
 * writer, ancestors): what makes a write worth doing.
 */
bool replica_record_differs(const Key *want, const Key *have);
