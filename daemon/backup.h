/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Backup and restore of a whole vault between tokens (issue 17 item 2,
 * docs/backup.md): every key's record with its versions, states, policy,
 * grants and usage, the vault policy, and each version's keys wrapped in
 * the token under the shared backup key (pkcs11/hsm-transfer.h); the file
 * (daemon/backup-file.h) is authenticated by a transfer MAC key carried
 * wrapped under the same key, so only a holder of that key (a token of the
 * SO's ceremony) can make one a restore accepts.
 *
 * Invariants: a restore writes nothing before the whole file parsed, opened
 * under this token's unwrapping key and verified, and before every
 * difference from the target was found (refused without replace); it
 * unwraps a key's version objects first and writes its record last, so a
 * crash leaves at most key objects no record names, which the next restore
 * of that key destroys first. It never rolls a key back silently: each
 * difference is named in the report. Files live in [backup] directory only
 * (a name, no path), created new, mode 0600.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "daemon/keystore.h"
#include "pkcs11/hsm-transfer.h"

/* Named findings, each one line; at most BACKUP_REPORT_MAX (then one line says how many more). */
#define BACKUP_REPORT_MAX 1000u

typedef struct BackupReport {
        size_t keys, versions;
        uint64_t size;                 /* bytes of the file */
        char **missing;                /* backup: versions left out; restore: versions not restored */
        size_t n_missing;
        char **differences;            /* restore: where the target differed from the backup */
        size_t n_differences;
        size_t more_missing, more_differences;
} BackupReport;

void backup_report_done(BackupReport *r);

/* Whether name is a file name backup_make()/backup_restore() take: no '/', not "." or "..", printable. */
bool backup_file_name_valid(const char *name);

/*
 * Writes a backup of every key of ks to dir/file (created new). wrapping_key:
 * the label of the trusted wrapping key. Versions that cannot leave the
 * token are left out and named in ret->missing (the caller reports them and
 * fails). On failure *why (why_len bytes) says what went wrong.
 * -KEKERR_INVALID_ARGUMENT: no such wrapping key, or the file exists;
 * -KEKERR_UNSUPPORTED: the token refused.
 */
int backup_make(Keystore *ks, const char *dir, const char *file, const char *wrapping_key, uint64_t now,
                BackupReport *ret, char *why, size_t why_len);

/*
 * Restores dir/file into ks's token. -KEKERR_BLOB_INVALID: tampered,
 * truncated, not a backup, or not for this token's unwrapping key;
 * -KEKERR_KEY_EXISTS: keys of the file exist here and replace is false
 * (ret->differences names each difference; nothing was written). With
 * dry_run, only the checks and the comparison: ret names the differences,
 * ret->keys counts the file's keys, nothing is written.
 */
int backup_restore(Keystore *ks, const char *dir, const char *file, const char *unwrapping_key, bool replace,
                   bool dry_run, BackupReport *ret, char *why, size_t why_len);

/*
 * Shared with replication (daemon/replica.h), so a version moves between
 * tokens one way. backup_wrap_part(): one part of version v of key name,
 * found in the form its record names, wrapped on h under tk (*ret
 * malloc()ed); -ENOENT: no such object, -EPERM: it cannot leave the token
 * (never extractable). backup_unwrap_version(): v's keys unwrapped into h
 * under tk after destroying any left there (an interrupted copy's), the MAC
 * key (mac NULL: the profile has none) before the AES key.
 * backup_restored_version(): v as a record names it once unwrapped there
 * (the restored form; no handles, no runtime share).
 */
int backup_wrap_part(Hsm *h, const HsmTransferKey *tk, const char *name, const KeyVersion *v, HsmVersionPart part,
                     uint8_t **ret, size_t *ret_len);
int backup_unwrap_version(Hsm *h, const HsmTransferKey *tk, const char *name, const KeyVersion *v, const uint8_t *mac,
                          size_t mac_len, const uint8_t *aes, size_t aes_len);
void backup_restored_version(KeyVersion *v);
