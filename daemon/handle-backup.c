/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Backup and restore handlers (see handlers.h, daemon/backup.h): officers
 * only, under dual control when the vault names them ("backup", "restore").
 * kekd writes and reads the file itself in its [backup] directory, which
 * only the one who configures kekd (root) names: an approved request runs
 * on the approver's connection, and a backup of many keys is larger than a
 * frame, so the bytes never travel in replies. The reply lists what the
 * operation could not do, each named, within half a frame.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "common/kekerr.h"
#include "daemon/backup.h"
#include "daemon/handlers.h"
#include "daemon/vault.h"

/* The lines of v into the reply, within *budget bytes; a last line says how many more there were. */
static int reply_lines(Request *req, char **v, size_t n, size_t more, size_t *budget, char ***ret, size_t *ret_n) {
        char **out = request_alloc(req, (n + 1) * sizeof(*out));
        size_t k = 0;

        if (!out)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                size_t l = strlen(v[i]) + 8;

                if (l > *budget) {
                        more += n - i;
                        break;
                }
                *budget -= l;
                if (!(out[k++] = request_strdup(req, v[i])))
                        return -ENOMEM;
        }
        if (more > 0) {
                char line[64];

                snprintf(line, sizeof(line), "... and %zu more", more);
                if (!(out[k++] = request_strdup(req, line)))
                        return -ENOMEM;
        }
        *ret = out;
        *ret_n = k;
        return 0;
}

static int file_argument(Dispatcher *d, Request *req, const char *file) {
        if (!file || !backup_file_name_valid(file))
                return request_error(req, -KEKERR_INVALID_ARGUMENT,
                                     "the backup file must be a file name in kekd's [backup] directory, without '/'");
        if (!d->backup_directory)
                return request_error(req, -KEKERR_UNSUPPORTED, "no [backup] directory is configured in kekd.conf");
        return 0;
}

int handle_backup(Dispatcher *d, const Kek__Request *m, Request *req) {
        const Kek__BackupRequest *b = m->backup;
        Kek__BackupResponse *resp;
        BackupReport rep = {};
        size_t budget = d->max_frame / 2;
        char why[REQUEST_MESSAGE_MAX] = "";
        int r;

        r = file_argument(d, req, b->file);
        if (r < 0)
                return r;
        if (needs_approval(d, req, DUAL_CONTROL_BACKUP))
                return approval_required(req, "backup");
        r = backup_make(d->keystore, d->backup_directory, b->file,
                        b->wrapping_key && b->wrapping_key[0] ? b->wrapping_key : d->backup_wrapping_key, d->now_usec(),
                        &rep, why, sizeof(why));
        if (r < 0)
                return why[0] ? request_error(req, r, "%s", why) : r;
        resp = request_alloc(req, sizeof(*resp));
        if (!resp) {
                backup_report_done(&rep);
                return -ENOMEM;
        }
        kek__backup_response__init(resp);
        resp->file = request_strdup(req, b->file);
        resp->size = rep.size;
        resp->keys = (uint32_t) rep.keys;
        resp->versions = (uint32_t) rep.versions;
        r = reply_lines(req, rep.missing, rep.n_missing, rep.more_missing, &budget, &resp->not_backed_up,
                        &resp->n_not_backed_up);
        backup_report_done(&rep);
        if (r < 0 || !resp->file)
                return -ENOMEM;
        req->resp.body_case = KEK__RESPONSE__BODY_BACKUP;
        req->resp.backup = resp;
        return 0;
}

int handle_restore(Dispatcher *d, const Kek__Request *m, Request *req) {
        const Kek__RestoreRequest *q = m->restore;
        Kek__RestoreResponse *resp;
        BackupReport rep = {};
        size_t budget = d->max_frame / 2;
        char why[REQUEST_MESSAGE_MAX] = "";
        int r;

        r = file_argument(d, req, q->file);
        if (r < 0)
                return r;
        /* A dry run writes nothing: it is not what dual control guards. */
        if (!q->dry_run && needs_approval(d, req, DUAL_CONTROL_RESTORE))
                return approval_required(req, "restore");
        r = backup_restore(d->keystore, d->backup_directory, q->file,
                           q->unwrapping_key && q->unwrapping_key[0] ? q->unwrapping_key : d->backup_unwrapping_key,
                           q->replace, q->dry_run, &rep, why, sizeof(why));
        if (r < 0) {
                backup_report_done(&rep);
                return why[0] ? request_error(req, r, "%s", why) : r;
        }
        resp = request_alloc(req, sizeof(*resp));
        if (!resp) {
                backup_report_done(&rep);
                return -ENOMEM;
        }
        kek__restore_response__init(resp);
        resp->keys = (uint32_t) rep.keys;
        resp->versions = (uint32_t) rep.versions;
        r = reply_lines(req, rep.differences, rep.n_differences, rep.more_differences, &budget, &resp->differences,
                        &resp->n_differences);
        if (r >= 0)
                r = reply_lines(req, rep.missing, rep.n_missing, rep.more_missing, &budget, &resp->not_restored,
                                &resp->n_not_restored);
        backup_report_done(&rep);
        if (r < 0)
                return r;
        req->resp.body_case = KEK__RESPONSE__BODY_RESTORE;
        req->resp.restore = resp;
        return 0;
}
