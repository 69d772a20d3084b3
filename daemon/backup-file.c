/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The backup file's layout and parser (see backup-file.h). Invariants: a
 * length is checked against what is left before anything is read or
 * allocated; the body is unpacked only when the file's length is exactly
 * header + body + tag; every key is a sound record (record.c) with a unique
 * name, and every wrapped version is one of its record's versions, once.
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/backup-file.h"

static int cmp_entry(const void *a, const void *b) {
        return strcmp(((const BackupKeyEntry *) a)->key->name, ((const BackupKeyEntry *) b)->key->name);
}

static int cmp_version(const void *a, const void *b) {
        uint32_t x = ((const BackupVersionKeys *) a)->id, y = ((const BackupVersionKeys *) b)->id;

        return x < y ? -1 : x > y;
}

static bool wrapped_ok(const ProtobufCBinaryData *b, bool optional) {
        return (optional && b->len == 0) || (b->len > 0 && b->len <= HSM_TRANSFER_WRAPPED_MAX);
}

/* One BackupKey into e; a static reason on failure. */
static const char *parse_key(const Kek__BackupKey *bk, BackupKeyEntry *e) {
        Kek__KeyRecord *rec;
        HsmDataObject d = {};

        if (!bk || bk->record.len == 0)
                return "a key without a record";
        rec = kek__key_record__unpack(NULL, bk->record.len, bk->record.data);
        if (!rec)
                return "a key record does not decode";
        if (!rec->name || strlen(rec->name) > KEY_NAME_MAX) {
                kek__key_record__free_unpacked(rec, NULL);
                return "a key record has no valid name";
        }
        strcpy(d.label, rec->name);
        kek__key_record__free_unpacked(rec, NULL);
        d.value = bk->record.data;
        d.value_len = bk->record.len;
        if (key_from_record(&d, &e->key) < 0)
                return "a key record is not sound";
        if (bk->n_versions > e->key->n_versions)
                return "a key carries more versions than its record names";
        e->versions = calloc(bk->n_versions ? bk->n_versions : 1, sizeof(*e->versions));
        if (!e->versions)
                return "out of memory";
        for (size_t i = 0; i < bk->n_versions; i++) {
                const Kek__BackupVersion *v = bk->versions[i];
                const KeyVersion *kv = v ? key_find_version(e->key, v->id) : NULL;

                if (!kv)
                        return "a wrapped version is not in its key's record";
                if (!wrapped_ok(&v->aes_key, false) || !wrapped_ok(&v->mac_key, true))
                        return "a wrapped key has an invalid length";
                if ((v->mac_key.len > 0) != hsm_profile_has_mac_key(kv->profile))
                        return "a version's MAC key does not match its profile";
                e->versions[i] = (BackupVersionKeys) {
                        .id = v->id,
                        .aes_key = v->aes_key.data,
                        .aes_key_len = v->aes_key.len,
                        .mac_key = v->mac_key.len ? v->mac_key.data : NULL,
                        .mac_key_len = v->mac_key.len,
                };
        }
        e->n_versions = bk->n_versions;
        qsort(e->versions, e->n_versions, sizeof(*e->versions), cmp_version);
        for (size_t i = 1; i < e->n_versions; i++)
                if (e->versions[i].id == e->versions[i - 1].id)
                        return "a version is carried twice";
        return NULL;
}

int backup_file_parse(const uint8_t *buf, size_t len, BackupContents *ret, const char **ret_why) {
        BackupContents c = {};
        const char *why = NULL;
        uint32_t body_len;

        if (len < BACKUP_MAGIC_LEN || memcmp(buf, BACKUP_MAGIC, BACKUP_MAGIC_LEN) != 0) {
                why = "not a kekd backup file (bad magic)";
                goto fail;
        }
        if (len < BACKUP_HEADER_LEN + HSM_TRANSFER_TAG_SIZE || len > BACKUP_FILE_MAX) {
                why = len > BACKUP_FILE_MAX ? "larger than any backup" : "truncated";
                goto fail;
        }
        body_len = (uint32_t) buf[8] << 24 | (uint32_t) buf[9] << 16 | (uint32_t) buf[10] << 8 | buf[11];
        if ((size_t) body_len != len - BACKUP_HEADER_LEN - HSM_TRANSFER_TAG_SIZE) {
                why = (size_t) body_len > len - BACKUP_HEADER_LEN - HSM_TRANSFER_TAG_SIZE ? "truncated"
                                                                                         : "trailing bytes after the tag";
                goto fail;
        }
        c.pb = kek__backup_file__unpack(NULL, body_len, buf + BACKUP_HEADER_LEN);
        if (!c.pb) {
                why = "the body does not decode";
                goto fail;
        }
        if (c.pb->format != BACKUP_FORMAT || c.pb->mechanism != BACKUP_MECHANISM_AES_KWP) {
                why = "a format or mechanism this kekd does not know";
                goto fail;
        }
        if (!wrapped_ok(&c.pb->mac_key, false) || c.pb->n_keys > BACKUP_KEYS_MAX) {
                why = "no valid transfer MAC key, or too many keys";
                goto fail;
        }
        c.keys = calloc(c.pb->n_keys ? c.pb->n_keys : 1, sizeof(*c.keys));
        if (!c.keys) {
                why = "out of memory";
                goto fail;
        }
        for (size_t i = 0; i < c.pb->n_keys; i++) {
                c.n_keys++;
                why = parse_key(c.pb->keys[i], &c.keys[i]);
                if (why)
                        goto fail;
        }
        qsort(c.keys, c.n_keys, sizeof(*c.keys), cmp_entry);
        for (size_t i = 1; i < c.n_keys; i++)
                if (strcmp(c.keys[i].key->name, c.keys[i - 1].key->name) == 0) {
                        why = "a key is in the file twice";
                        goto fail;
                }
        c.signed_len = len - HSM_TRANSFER_TAG_SIZE;
        c.tag = buf + c.signed_len;
        *ret = c;
        return 0;
fail:
        backup_contents_done(&c);
        if (ret_why)
                *ret_why = why;
        return -EBADMSG;
}

void backup_contents_done(BackupContents *c) {
        for (size_t i = 0; i < c->n_keys; i++) {
                key_free(c->keys[i].key);
                free(c->keys[i].versions);
        }
        free(c->keys);
        if (c->pb)
                kek__backup_file__free_unpacked(c->pb, NULL);
        *c = (BackupContents) {};
}

const BackupVersionKeys *backup_entry_version(const BackupKeyEntry *e, uint32_t id) {
        for (size_t i = 0; i < e->n_versions; i++)
                if (e->versions[i].id == id)
                        return &e->versions[i];
        return NULL;
}

int backup_file_frame(const Kek__BackupFile *b, uint8_t **ret, size_t *ret_len) {
        size_t body = kek__backup_file__get_packed_size(b), len = BACKUP_HEADER_LEN + body;
        uint8_t *buf;

        if (len + HSM_TRANSFER_TAG_SIZE > BACKUP_FILE_MAX)
                return -EFBIG;
        buf = malloc(len + HSM_TRANSFER_TAG_SIZE);
        if (!buf)
                return -ENOMEM;
        memcpy(buf, BACKUP_MAGIC, BACKUP_MAGIC_LEN);
        buf[8] = (uint8_t) (body >> 24);
        buf[9] = (uint8_t) (body >> 16);
        buf[10] = (uint8_t) (body >> 8);
        buf[11] = (uint8_t) body;
        kek__backup_file__pack(b, buf + BACKUP_HEADER_LEN);
        *ret = buf;
        *ret_len = len;
        return 0;
}
