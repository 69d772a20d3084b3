/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The backup file (docs/backup.md): what `kekctl backup` writes and
 * `kekctl restore` reads. Layout:
 *
 *   "KEKBKUP\1"  8 bytes of magic (the last one the layout's version)
 *   be32 len     the length of body
 *   body         a packed Kek__BackupFile (proto/kek.proto)
 *   tag          32 bytes: HMAC-SHA256 over magic || len || body, made in
 *                the source token under the transfer MAC key, which body
 *                carries wrapped under the shared backup key
 *
 * Pure: parsing trusts nothing (a file is input from anywhere until its tag
 * verified in the token), checks every length before it allocates, and
 * yields the keys as the keystore's Key type, each one a sound record
 * (daemon/record.h) whose wrapped versions it names. The tag itself is
 * checked by the caller in the token (pkcs11/hsm-transfer.h): parsing is
 * only the first gate, and nothing is written to a token before both pass.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "daemon/record.h"
#include "pkcs11/hsm-transfer.h"
#include "proto/kek.pb-c.h"

#define BACKUP_MAGIC "KEKBKUP\1"
#define BACKUP_MAGIC_LEN 8u
#define BACKUP_HEADER_LEN (BACKUP_MAGIC_LEN + 4u)
#define BACKUP_FILE_MAX (256u * 1024u * 1024u)  /* bytes: far above 100,000 keys of 8 versions */
#define BACKUP_KEYS_MAX 100000u
#define BACKUP_FORMAT 1u
#define BACKUP_MECHANISM_AES_KWP 1u              /* BackupFile.mechanism: CKM_AES_KEY_WRAP_PAD */

/* One key of a parsed backup: its record and, per version of the record in the file, the wrapped keys. */
typedef struct BackupVersionKeys {
        uint32_t id;
        const uint8_t *aes_key;      /* into the unpacked message (BackupContents.pb) */
        size_t aes_key_len;
        const uint8_t *mac_key;      /* NULL for profiles without a MAC key */
        size_t mac_key_len;
} BackupVersionKeys;

typedef struct BackupKeyEntry {
        Key *key;                    /* every version of the record at backup time */
        BackupVersionKeys *versions; /* the versions the file carries, sorted by id */
        size_t n_versions;
} BackupKeyEntry;

typedef struct BackupContents {
        Kek__BackupFile *pb;
        BackupKeyEntry *keys;        /* sorted by name */
        size_t n_keys;
        size_t signed_len;           /* bytes the tag covers: magic, length and body */
        const uint8_t *tag;          /* HSM_TRANSFER_TAG_SIZE bytes, into the caller's buffer */
} BackupContents;

/*
 * Parses a whole file (buf must outlive *ret). -EBADMSG with *ret_why (static)
 * saying what is wrong: "not a kekd backup file", "truncated", ...
 */
int backup_file_parse(const uint8_t *buf, size_t len, BackupContents *ret, const char **ret_why);
void backup_contents_done(BackupContents *c);
/* The wrapped keys of version id of e, or NULL if the file does not carry it. */
const BackupVersionKeys *backup_entry_version(const BackupKeyEntry *e, uint32_t id);

/*
 * The file for b without its tag, with room for it: *ret holds *ret_len +
 * HSM_TRANSFER_TAG_SIZE bytes, the tag to be written at *ret + *ret_len.
 */
int backup_file_frame(const Kek__BackupFile *b, uint8_t **ret, size_t *ret_len);
