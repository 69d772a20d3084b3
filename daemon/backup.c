/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Backup and restore (see backup.h). The key material only ever moves as
 * C_WrapKey / C_UnwrapKey output under the shared backup key; this file
 * handles records, wrapped bytes, the file and the report.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/kekerr.h"
#include "daemon/backup-file.h"
#include "daemon/backup.h"
#include "daemon/keystore-records.h"
#include "daemon/log.h"
#include "daemon/vault.h"

static void strv_free(char **v, size_t n) {
        for (size_t i = 0; i < n; i++)
                free(v[i]);
        free(v);
}

void backup_report_done(BackupReport *r) {
        strv_free(r->missing, r->n_missing);
        strv_free(r->differences, r->n_differences);
        *r = (BackupReport) {};
}

/* Appends one line to a list of at most BACKUP_REPORT_MAX; beyond, counts it in *more. */
static int add_line(char ***v, size_t *n, size_t *more, const char *fmt, ...) {
        char **p, *s;
        va_list ap;
        int r;

        if (*n >= BACKUP_REPORT_MAX) {
                (*more)++;
                return 0;
        }
        va_start(ap, fmt);
        r = vasprintf(&s, fmt, ap);
        va_end(ap);
        if (r < 0)
                return -ENOMEM;
        p = reallocarray(*v, *n + 1, sizeof(*p));
        if (!p) {
                free(s);
                return -ENOMEM;
        }
        p[(*n)++] = s;
        *v = p;
        return 0;
}

#define missing(rep, ...) add_line(&(rep)->missing, &(rep)->n_missing, &(rep)->more_missing, __VA_ARGS__)
#define difference(rep, ...) add_line(&(rep)->differences, &(rep)->n_differences, &(rep)->more_differences, __VA_ARGS__)

bool backup_file_name_valid(const char *name) {
        size_t n = strlen(name);

        if (n == 0 || n > 255 || strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
                return false;
        for (size_t i = 0; i < n; i++)
                if (name[i] == '/' || (unsigned char) name[i] < 0x20 || name[i] == 0x7f)
                        return false;
        return true;
}

static int open_dir(const char *dir, char *why, size_t why_len) {
        int fd;

        if (!dir) {
                snprintf(why, why_len, "no [backup] directory is configured");
                return -KEKERR_INVALID_ARGUMENT;
        }
        fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0) {
                snprintf(why, why_len, "cannot open the [backup] directory: %s", strerror(errno));
                return -KEKERR_INVALID_ARGUMENT;
        }
        return fd;
}

/* Writes buf as dir/file, created new (never over a file), mode 0600, synced; nothing left on failure. */
static int write_file(const char *dir, const char *file, const uint8_t *buf, size_t len, char *why, size_t why_len) {
        int dfd, fd, r = 0;
        size_t off = 0;

        dfd = open_dir(dir, why, why_len);
        if (dfd < 0)
                return dfd;
        fd = openat(dfd, file, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0) {
                r = errno == EEXIST ? -KEKERR_INVALID_ARGUMENT : -errno;
                snprintf(why, why_len, "cannot create backup file '%s': %s", file, strerror(errno));
                close(dfd);
                return r;
        }
        while (off < len) {
                ssize_t w = write(fd, buf + off, len - off);

                if (w < 0 && errno == EINTR)
                        continue;
                if (w <= 0) {
                        r = w < 0 ? -errno : -EIO;
                        break;
                }
                off += (size_t) w;
        }
        if (r == 0 && fsync(fd) < 0)
                r = -errno;
        if (close(fd) < 0 && r == 0)
                r = -errno;
        if (r < 0) {
                snprintf(why, why_len, "cannot write backup file '%s': %s", file, strerror(-r));
                (void) unlinkat(dfd, file, 0);
        }
        close(dfd);
        return r;
}

static int read_file(const char *dir, const char *file, uint8_t **ret, size_t *ret_len, char *why, size_t why_len) {
        _cleanup_free_ uint8_t *buf = NULL;
        struct stat st;
        size_t off = 0;
        int dfd, fd, r = 0;

        dfd = open_dir(dir, why, why_len);
        if (dfd < 0)
                return dfd;
        fd = openat(dfd, file, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        close(dfd);
        if (fd < 0) {
                snprintf(why, why_len, "cannot open backup file '%s': %s", file, strerror(errno));
                return -KEKERR_INVALID_ARGUMENT;
        }
        if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size < 0 || (uint64_t) st.st_size > BACKUP_FILE_MAX) {
                snprintf(why, why_len, "backup file '%s' is not a regular file of at most %u bytes", file,
                         BACKUP_FILE_MAX);
                close(fd);
                return -KEKERR_BLOB_INVALID;
        }
        buf = malloc(st.st_size ? (size_t) st.st_size : 1);
        if (!buf) {
                close(fd);
                return -ENOMEM;
        }
        while (off < (size_t) st.st_size) {
                ssize_t n = read(fd, buf + off, (size_t) st.st_size - off);

                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0) {
                        r = n < 0 ? -errno : -EIO;
                        break;
                }
                off += (size_t) n;
        }
        close(fd);
        if (r < 0) {
                snprintf(why, why_len, "cannot read backup file '%s': %s", file, strerror(-r));
                return r;
        }
        *ret = TAKE_PTR(buf);
        *ret_len = off;
        return 0;
}

/* --- shared with replication (daemon/replica.h) ------------------------------------ */

int backup_wrap_part(Hsm *h, const HsmTransferKey *tk, const char *name, const KeyVersion *v, HsmVersionPart part,
                     uint8_t **ret, size_t *ret_len) {
        HsmObject o;
        int r;

        /* The object in the form the record names: a restored version only in its restored form. */
        r = part == HSM_PART_MAC ? hsm_find_version_mac_key(h, name, v->id, v->restored, &o)
                                 : hsm_find_version_key(h, name, v->id, v->restored, &o);
        if (r < 0)
                return r;
        return hsm_wrap_object(h, tk, o, ret, ret_len);
}

int backup_unwrap_version(Hsm *h, const HsmTransferKey *tk, const char *name, const KeyVersion *v, const uint8_t *mac,
                          size_t mac_len, const uint8_t *aes, size_t aes_len) {
        HsmObject o;
        int r;

        /* MAC key first, the AES key last (as hsm-objects.c orders them): the AES key's presence means both. */
        r = hsm_destroy_version_keys(h, name, v->id);
        if (r >= 0 && mac)
                r = hsm_unwrap_version(h, tk, name, v->id, HSM_PART_MAC, v->wrap_with_trusted, mac, mac_len, &o);
        if (r >= 0)
                r = hsm_unwrap_version(h, tk, name, v->id, HSM_PART_AES, v->wrap_with_trusted, aes, aes_len, &o);
        return r;
}

void backup_restored_version(KeyVersion *v) {
        v->restored = true;
        v->present = v->mac_present = false;
        v->handle = v->mac_handle = 0;
        v->lease_left = v->unwraps_pending = v->last_use_pending = 0;
}

/* --- backup ------------------------------------------------------------------ */

typedef struct Arena {
        void **p;
        size_t n;
} Arena;

static void *arena_keep(Arena *a, void *p) {
        void **q;

        if (!p)
                return NULL;
        q = reallocarray(a->p, a->n + 1, sizeof(*q));
        if (!q) {
                free(p);
                return NULL;
        }
        q[a->n++] = p;
        a->p = q;
        return p;
}

static void arena_done(Arena *a) {
        for (size_t i = 0; i < a->n; i++)
                free(a->p[i]);
        free(a->p);
}

/* One wrapped part of a version into *out; 0, or 1 when it cannot leave (named in rep), or <0. */
static int wrap_part(Keystore *ks, const HsmTransferKey *tk, const Key *k, const KeyVersion *v, HsmVersionPart part,
                     Arena *a, ProtobufCBinaryData *out, BackupReport *rep) {
        uint8_t *w = NULL;
        size_t len = 0;
        int r;

        r = backup_wrap_part(keystore_hsm(ks), tk, k->name, v, part, &w, &len);
        if (r == -EPERM || r == -ENOENT || r == -ENOTUNIQ) {
                r = missing(rep, "key '%s' version %u: %s", k->name, v->id,
                            r == -ENOENT      ? "its key object is missing from the token"
                            : r == -ENOTUNIQ ? "more than one key object answers to it (kekctl check names them)"
                                              : "never extractable (no backup path: rotate it in backup mode trusted-wrap)");
                return r < 0 ? r : 1;
        }
        if (r < 0)
                return r;
        if (!arena_keep(a, w))
                return -ENOMEM;
        *out = (ProtobufCBinaryData) { .len = len, .data = w };
        return 0;
}

static int backup_key(Keystore *ks, const HsmTransferKey *tk, const Key *k, Arena *a, Kek__BackupKey **ret,
                      BackupReport *rep) {
        Kek__BackupKey *bk = arena_keep(a, calloc(1, sizeof(*bk)));
        uint8_t *rec = NULL;
        size_t rec_len = 0;
        int r;

        if (!bk)
                return -ENOMEM;
        kek__backup_key__init(bk);
        r = key_to_record(k, &rec, &rec_len);
        if (r < 0 || !arena_keep(a, rec))
                return r < 0 ? r : -ENOMEM;
        bk->record = (ProtobufCBinaryData) { .len = rec_len, .data = rec };
        bk->versions = arena_keep(a, calloc(k->n_versions ? k->n_versions : 1, sizeof(*bk->versions)));
        if (!bk->versions)
                return -ENOMEM;
        for (size_t i = 0; i < k->n_versions; i++) {
                const KeyVersion *v = &k->versions[i];
                Kek__BackupVersion *bv = arena_keep(a, calloc(1, sizeof(*bv)));

                if (!bv)
                        return -ENOMEM;
                kek__backup_version__init(bv);
                bv->id = v->id;
                r = wrap_part(ks, tk, k, v, HSM_PART_AES, a, &bv->aes_key, rep);
                if (r == 0 && hsm_profile_has_mac_key(v->profile))
                        r = wrap_part(ks, tk, k, v, HSM_PART_MAC, a, &bv->mac_key, rep);
                if (r < 0)
                        return r;
                if (r > 0)
                        continue;
                bk->versions[bk->n_versions++] = bv;
                rep->versions++;
        }
        *ret = bk;
        return 0;
}

int backup_make(Keystore *ks, const char *dir, const char *file, const char *wrapping_key, uint64_t now,
                BackupReport *ret, char *why, size_t why_len) {
        Hsm *h = keystore_hsm(ks);
        Kek__BackupFile b = KEK__BACKUP_FILE__INIT;
        Kek__VaultRecord vr = KEK__VAULT_RECORD__INIT;
        const VaultPolicy *vp;
        _cleanup_free_ uint8_t *buf = NULL;
        BackupReport rep = {};
        HsmTransferKey tk;
        HsmObject mac = 0;
        Arena a = {};
        size_t len = 0;
        int r;

        if (!wrapping_key || !wrapping_key[0]) {
                snprintf(why, why_len, "no wrapping key named (--wrapping-key, or [backup] wrapping_key)");
                return -KEKERR_INVALID_ARGUMENT;
        }
        r = keystore_load(ks); /* the token as it is now, not the index of up to a refresh interval ago */
        if (r < 0)
                return r;
        r = hsm_find_wrapping_key(h, wrapping_key, &tk);
        if (r == -ENOENT || r == -ENOTUNIQ) {
                snprintf(why, why_len, "%s trusted wrapping key labelled '%s' in this token (the SO's set-up: docs/backup.md)",
                         r == -ENOENT ? "no" : "more than one", wrapping_key);
                return -KEKERR_INVALID_ARGUMENT;
        }
        if (r < 0)
                return r;
        if (tk.kind != HSM_TRANSFER_AES_KWP) {
                /* Anyone can wrap under a public key: nothing wrapped under it proves where it came from. */
                snprintf(why, why_len, "'%s' is an RSA key: a backup needs the shared AES backup key, whose "
                         "holders alone can make a file a restore accepts (docs/backup.md)", wrapping_key);
                return -KEKERR_INVALID_ARGUMENT;
        }
        r = hsm_generate_transfer_mac_key(h, &mac);
        if (r < 0)
                goto finish;
        r = hsm_wrap_object(h, &tk, mac, &buf, &len);
        if (r < 0) {
                if (r == -EPERM)
                        snprintf(why, why_len, "the token refuses to wrap under '%s': %s", wrapping_key, hsm_last_error(h));
                goto finish;
        }
        b.mac_key = (ProtobufCBinaryData) { .len = len, .data = arena_keep(&a, TAKE_PTR(buf)) };
        if (!b.mac_key.data) {
                r = -ENOMEM;
                goto finish;
        }
        b.format = BACKUP_FORMAT;
        b.mechanism = BACKUP_MECHANISM_AES_KWP;
        b.created_usec = now;
        b.source_token = (char *) hsm_token_label(h);
        b.wrapping_key = (char *) wrapping_key;
        vp = keystore_vault(ks);
        vr.format = 1;
        vr.retention_days = vp->retention_days;
        vr.purge_protection = vp->purge_protection;
        vr.dual_control = vp->dual_control;
        vr.approval_window_seconds = vp->approval_window_sec;
        vr.trusted_wrap = vp->trusted_wrap;
        b.vault = &vr;
        b.keys = arena_keep(&a, calloc(keystore_n_keys(ks) + 1, sizeof(*b.keys)));
        if (!b.keys) {
                r = -ENOMEM;
                goto finish;
        }
        for (size_t i = 0; i < keystore_n_keys(ks); i++) {
                const Key *k = keystore_key_at(ks, i);

                if (!key_exists(k))
                        continue; /* being created or purged: no key for clients either */
                r = backup_key(ks, &tk, k, &a, &b.keys[b.n_keys], &rep);
                if (r < 0)
                        goto finish;
                b.n_keys++;
                rep.keys++;
        }
        b.missing = rep.missing;
        b.n_missing = rep.n_missing;
        r = backup_file_frame(&b, &buf, &len);
        if (r < 0)
                goto finish;
        r = hsm_transfer_sign(h, mac, buf, len, buf + len);
        if (r < 0)
                goto finish;
        r = write_file(dir, file, buf, len + HSM_TRANSFER_TAG_SIZE, why, why_len);
        if (r < 0)
                goto finish;
        rep.size = len + HSM_TRANSFER_TAG_SIZE;
        *ret = rep;
        rep = (BackupReport) {};
finish:
        if (mac)
                (void) hsm_destroy_object(h, mac);
        arena_done(&a);
        backup_report_done(&rep);
        return r;
}

/* --- restore ----------------------------------------------------------------- */

static const char *state_name(KeyStateValue s) {
        return s == KEY_ENABLED ? "enabled" : s == KEY_DISABLED ? "disabled" : s == KEY_DELETED ? "deleted" : "unknown";
}

/* Every way the target's key cur differs from the backup's b (a rollback if restored over it). */
static int compare_key(const Key *cur, const BackupKeyEntry *e, BackupReport *rep) {
        const Key *b = e->key;
        int r = 0;

        if (cur->state != b->state)
                r = difference(rep, "key '%s': %s here, %s in the backup", b->name, state_name(cur->state),
                               state_name(b->state));
        if (r >= 0 && cur->current_version != b->current_version)
                r = difference(rep, "key '%s': current version %u here, %u in the backup", b->name,
                               cur->current_version, b->current_version);
        for (size_t i = 0; r >= 0 && i < cur->n_versions; i++) {
                const KeyVersion *cv = &cur->versions[i], *bv = key_find_version(b, cv->id);

                if (!bv)
                        r = difference(rep, "key '%s' version %u: exists here, not in the backup (kept)", b->name, cv->id);
                else if (cv->enabled != bv->enabled)
                        r = difference(rep, "key '%s' version %u: %s here, %s in the backup", b->name, cv->id,
                                       cv->enabled ? "enabled" : "disabled", bv->enabled ? "enabled" : "disabled");
        }
        for (size_t i = 0; r >= 0 && i < b->n_versions; i++)
                if (!key_find_version(cur, b->versions[i].id))
                        r = difference(rep, "key '%s' version %u: in the backup, not here", b->name, b->versions[i].id);
        if (r >= 0 && (cur->n_grants != b->n_grants ||
                       (b->n_grants && memcmp(cur->grants, b->grants, b->n_grants * sizeof(*b->grants)) != 0)))
                r = difference(rep, "key '%s': grants differ (%zu here, %zu in the backup)", b->name, cur->n_grants,
                               b->n_grants);
        if (r >= 0 && (cur->policy.rotate_after_sec != b->policy.rotate_after_sec ||
                       cur->policy.max_wraps != b->policy.max_wraps))
                r = difference(rep, "key '%s': rotation policy differs", b->name);
        return r;
}

/*
 * The record to write for e: the backup's, restored versions only, intents
 * dropped; over an existing key cur (replace), its versions the backup lacks
 * are kept as they are.
 */
static int restored_key(const BackupKeyEntry *e, const Key *cur, Key **ret, BackupReport *rep) {
        const Key *b = e->key;
        Key *k = calloc(1, sizeof(*k));
        size_t cap = b->n_versions + (cur ? cur->n_versions : 0) + 1;
        int r = 0;

        if (!k)
                return -ENOMEM;
        *k = *b;
        k->versions = calloc(cap, sizeof(*k->versions));
        k->grants = b->n_grants ? calloc(b->n_grants, sizeof(*k->grants)) : NULL;
        if (!k->versions || (b->n_grants && !k->grants)) {
                k->n_grants = 0;
                key_free(k);
                return -ENOMEM;
        }
        if (b->n_grants)
                memcpy(k->grants, b->grants, b->n_grants * sizeof(*k->grants));
        k->n_versions = 0;
        k->pending_version = 0;
        k->pending_since_usec = 0;
        k->pending_owner[0] = 0;
        k->purging = false;
        k->generation = cur ? cur->generation : 0;
        k->n_ancestors = 0;
        for (size_t i = 0; i < b->n_versions; i++) {
                KeyVersion v = b->versions[i];

                if (!backup_entry_version(e, v.id)) {
                        r = missing(rep, "key '%s' version %u: not in the backup (never extractable at its source)",
                                    b->name, v.id);
                        if (r < 0)
                                break;
                        continue;
                }
                backup_restored_version(&v);
                k->versions[k->n_versions++] = v;
        }
        for (size_t i = 0; r >= 0 && cur && i < cur->n_versions; i++)
                if (!key_find_version(b, cur->versions[i].id)) {
                        KeyVersion v = cur->versions[i];

                        v.present = v.mac_present = false;
                        v.lease_left = v.unwraps_pending = v.last_use_pending = 0;
                        k->versions[k->n_versions++] = v;
                }
        key_sort_versions(k);
        if (r >= 0 && !key_find_version(k, k->current_version) && k->n_versions > 0) {
                uint32_t was = k->current_version;

                k->current_version = k->versions[k->n_versions - 1].id;
                r = difference(rep, "key '%s': current version %u is not in the backup; version %u is current", k->name,
                               was, k->current_version);
        }
        if (r < 0 || k->n_versions == 0) {
                if (r >= 0)
                        r = missing(rep, "key '%s': no version of it is in the backup; not restored", k->name);
                key_free(k);
                return r < 0 ? r : 0;
        }
        *ret = k;
        return 1;
}

/* Unwraps e's versions into the token (MAC key first, as hsm-objects.c orders them), after destroying leftovers. */
static int restore_versions(Hsm *h, const HsmTransferKey *tk, const BackupKeyEntry *e, const Key *k, char *why,
                            size_t why_len) {
        for (size_t i = 0; i < e->n_versions; i++) {
                const BackupVersionKeys *bv = &e->versions[i];
                const KeyVersion *v = key_find_version(k, bv->id);
                int r;

                if (!v)
                        continue;
                /* Objects of an earlier, interrupted restore, or (replace) the target's own: destroyed first. */
                r = backup_unwrap_version(h, tk, k->name, v, bv->mac_key, bv->mac_key_len, bv->aes_key,
                                          bv->aes_key_len);
                if (r < 0) {
                        snprintf(why, why_len, "key '%s' version %u did not unwrap: %s", k->name, v->id, hsm_last_error(h));
                        return r;
                }
        }
        return 0;
}

/*
 * The backup's vault policy where it is as strict as this token's or
 * stricter; a weakening is an administrator's change under its own dual
 * control (kekctl vault), never a side effect of a restore: named instead.
 */
static int restore_vault(Keystore *ks, const Kek__VaultRecord *vr, BackupReport *rep) {
        VaultChange c = {
                .retention_days = vr->retention_days,
                .purge_protection = vr->purge_protection ? 1 : -1,
                .set_dual_control = true,
                .dual_control = vr->dual_control & DUAL_CONTROL_ALL,
                .approval_window_sec = vr->approval_window_seconds,
                .trusted_wrap = -1,
        };
        const VaultPolicy *cur = keystore_vault(ks);
        int r = 0;

        if (vr->trusted_wrap && !cur->trusted_wrap)
                r = difference(rep, "vault: backup mode trusted-wrap in the backup, none here; an administrator sets it "
                               "(kekctl vault --backup trusted-wrap)");
        if (r < 0)
                return r;
        if (vault_change_weakens(cur, &c))
                return difference(rep, "vault: this token's policy is stricter than the backup's in some respect; kept");
        if (cur->retention_days == c.retention_days && cur->purge_protection == vr->purge_protection &&
            cur->dual_control == c.dual_control && cur->approval_window_sec == c.approval_window_sec)
                return 0;
        return keystore_set_vault(ks, &c);
}

int backup_restore(Keystore *ks, const char *dir, const char *file, const char *unwrapping_key, bool replace,
                   bool dry_run, BackupReport *ret, char *why, size_t why_len) {
        Hsm *h = keystore_hsm(ks);
        _cleanup_free_ uint8_t *buf = NULL;
        BackupContents c = {};
        BackupReport rep = {};
        HsmTransferKey tk;
        HsmObject mac = 0;
        const char *bad = NULL, *label;
        size_t len = 0, existing = 0;
        int r;

        r = read_file(dir, file, &buf, &len, why, why_len);
        if (r < 0)
                return r;
        r = backup_file_parse(buf, len, &c, &bad);
        if (r < 0) {
                snprintf(why, why_len, "backup file '%s' refused: %s", file, bad ?: "unreadable");
                return -KEKERR_BLOB_INVALID;
        }
        label = unwrapping_key && unwrapping_key[0] ? unwrapping_key : c.pb->wrapping_key;
        r = hsm_find_unwrapping_key(h, label ?: "", &tk);
        if (r == -ENOENT || r == -ENOTUNIQ || r == -EINVAL) {
                snprintf(why, why_len, "%s private unwrapping key labelled '%s' in this token (the SO's set-up: docs/backup.md)",
                         r == -ENOTUNIQ ? "more than one" : "no", label ?: "");
                r = -KEKERR_INVALID_ARGUMENT;
                goto finish;
        }
        if (r < 0)
                goto finish;
        r = hsm_unwrap_transfer_mac_key(h, &tk, c.pb->mac_key.data, c.pb->mac_key.len, &mac);
        if (r < 0) {
                /* A token answers a failed integrity check variously (SoftHSM2: CKR_GENERAL_ERROR). */
                snprintf(why, why_len, "backup file '%s' refused: it does not open with this token's key '%s' "
                         "(made for another token, or tampered): %s", file, label, hsm_last_error(h));
                r = r == -KEKERR_HSM_UNAVAILABLE && hsm_is_open(h) ? -KEKERR_BLOB_INVALID : r;
                goto finish;
        }
        r = hsm_transfer_verify(h, mac, buf, c.signed_len, c.tag);
        if (r < 0) {
                if (r == -KEKERR_BLOB_INVALID)
                        snprintf(why, why_len, "backup file '%s' refused: it fails its authentication (tampered)", file);
                goto finish;
        }
        /* Authentic. Now every difference from the target, before anything is written. */
        r = keystore_load(ks);
        if (r < 0)
                goto finish;
        for (size_t i = 0; i < c.n_keys; i++) {
                const Key *cur = keystore_key_runtime(ks, c.keys[i].key->name);

                if (!cur || !key_exists(cur))
                        continue;
                existing++;
                r = compare_key(cur, &c.keys[i], &rep);
                if (r < 0)
                        goto finish;
        }
        for (size_t i = 0; i < keystore_n_keys(ks); i++) {
                const Key *k = keystore_key_at(ks, i);
                bool in_backup = false;

                for (size_t j = 0; j < c.n_keys && !in_backup; j++)
                        in_backup = strcmp(c.keys[j].key->name, k->name) == 0;
                if (key_exists(k) && !in_backup && (r = difference(&rep, "key '%s': exists here, not in the backup (left as it is)",
                                                                   k->name)) < 0)
                        goto finish;
        }
        if (dry_run) {
                for (size_t i = 0; i < c.n_keys; i++)
                        for (size_t j = 0; j < c.keys[i].key->n_versions; j++)
                                if (!backup_entry_version(&c.keys[i], c.keys[i].key->versions[j].id) &&
                                    (r = missing(&rep, "key '%s' version %u: not in the backup", c.keys[i].key->name,
                                                 c.keys[i].key->versions[j].id)) < 0)
                                        goto finish;
                rep.keys = c.n_keys;
                rep.size = len;
                *ret = rep;
                rep = (BackupReport) {};
                r = 0;
                goto finish;
        }
        if (existing > 0 && !replace) {
                snprintf(why, why_len, "%zu key(s) of the backup exist in this token; nothing was restored (restore over "
                         "them with --replace)%s%s", existing, rep.n_differences ? ": " : "",
                         rep.n_differences ? rep.differences[0] : "");
                *ret = rep;
                rep = (BackupReport) {};
                r = -KEKERR_KEY_EXISTS;
                goto finish;
        }
        for (size_t i = 0; i < c.n_keys; i++) {
                const Key *cur = keystore_key_runtime(ks, c.keys[i].key->name);
                _cleanup_free_ HsmObject *old = NULL;
                _cleanup_(key_freep) Key *k = NULL, *fetched = NULL;
                bool reload = false;
                size_t n_old = 0;

                r = restored_key(&c.keys[i], cur, &k, &rep);
                if (r <= 0) {
                        if (r < 0)
                                goto finish;
                        continue;
                }
                r = records_fetch(h, k->name, &fetched, &old, &n_old);
                if (r == -KEKERR_UNKNOWN_KEY)
                        r = 0;
                if (r < 0)
                        goto finish;
                /* Built on the record it replaces (keystore-records.h): its generation and writer. */
                k->generation = fetched ? fetched->generation : 0;
                k->writer = fetched ? fetched->writer : 0;
                k->n_ancestors = fetched ? fetched->n_ancestors : 0;
                if (fetched && fetched->n_ancestors)
                        memcpy(k->ancestors, fetched->ancestors, fetched->n_ancestors * sizeof(k->ancestors[0]));
                /* Key objects first, the record last: a crash leaves only objects no record names. */
                r = restore_versions(h, &tk, &c.keys[i], k, why, why_len);
                if (r < 0)
                        goto finish;
                r = records_write(h, k, old, n_old, hsm_generation(h), &reload);
                if (r < 0) {
                        snprintf(why, why_len, "key '%s': its record could not be written", k->name);
                        goto finish;
                }
                rep.keys++;
                for (size_t j = 0; j < k->n_versions; j++)
                        rep.versions += k->versions[j].restored && backup_entry_version(&c.keys[i], k->versions[j].id);
        }
        for (size_t i = 0; i < c.pb->n_missing; i++)
                if ((r = missing(&rep, "%s (named by the backup)", c.pb->missing[i])) < 0)
                        goto finish;
        if (c.pb->vault && (r = restore_vault(ks, c.pb->vault, &rep)) < 0) {
                snprintf(why, why_len, "the vault policy could not be restored");
                goto finish;
        }
        r = keystore_load(ks);
        if (r < 0)
                goto finish;
        rep.size = len;
        *ret = rep;
        rep = (BackupReport) {};
finish:
        if (mac)
                (void) hsm_destroy_object(h, mac);
        backup_contents_done(&c);
        backup_report_done(&rep);
        return r;
}
