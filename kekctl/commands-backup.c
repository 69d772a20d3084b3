/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * kekctl backup and restore (docs/backup.md). kekd itself writes and reads
 * the file, in its [backup] directory: the command names the file and
 * prints what kekd reports. backup exits 1 when a version could not be
 * backed up (each is named); restore first asks kekd for the differences
 * (a dry run, which writes nothing), so they are shown whatever follows,
 * and exits 1 without restoring when keys exist here and --replace is not
 * given.
 */
#include "config.h"

#include <stdio.h>

#include "client/transport.h"
#include "kekctl/call.h"
#include "kekctl/commands.h"
#include "kekctl/options.h"
#include "kekctl/print.h"

static void add_strings(json_object *j, const char *name, char **v, size_t n) {
        json_object *a = json_object_new_array();

        for (size_t i = 0; i < n; i++)
                json_object_array_add(a, json_object_new_string(v[i]));
        json_object_object_add(j, name, a);
}

int print_backup_response(const Kek__BackupResponse *b) {
        if (arg_json) {
                json_object *j = json_object_new_object();

                json_object_object_add(j, "file", json_object_new_string(b->file ?: ""));
                json_object_object_add(j, "size", json_object_new_int64((int64_t) b->size));
                json_object_object_add(j, "keys", json_object_new_int64(b->keys));
                json_object_object_add(j, "versions", json_object_new_int64(b->versions));
                add_strings(j, "not_backed_up", b->not_backed_up, b->n_not_backed_up);
                print_json(j);
        } else {
                printf("Backed up %u keys, %u versions to '%s' (%llu bytes).\n", b->keys, b->versions, b->file ?: "",
                       (unsigned long long) b->size);
                for (size_t i = 0; i < b->n_not_backed_up; i++)
                        printf("NOT BACKED UP: %s\n", b->not_backed_up[i]);
        }
        return b->n_not_backed_up > 0 ? EXIT_REFUSED : 0;
}

int print_restore_response(const Kek__RestoreResponse *rs, bool dry_run) {
        if (arg_json) {
                json_object *j = json_object_new_object();

                json_object_object_add(j, dry_run ? "keys_in_backup" : "keys", json_object_new_int64(rs->keys));
                if (!dry_run)
                        json_object_object_add(j, "versions", json_object_new_int64(rs->versions));
                add_strings(j, "differences", rs->differences, rs->n_differences);
                add_strings(j, "not_restored", rs->not_restored, rs->n_not_restored);
                print_json(j);
        } else {
                if (dry_run)
                        printf("The backup holds %u keys; compared with this token:\n", rs->keys);
                else
                        printf("Restored %u keys, %u versions.\n", rs->keys, rs->versions);
                for (size_t i = 0; i < rs->n_differences; i++)
                        printf("DIFFERENCE: %s\n", rs->differences[i]);
                for (size_t i = 0; i < rs->n_not_restored; i++)
                        printf("NOT RESTORED: %s\n", rs->not_restored[i]);
                if (dry_run && rs->n_differences == 0)
                        printf("no differences.\n");
        }
        return 0;
}

int cmd_backup(CmdOpts *o, int argc, char *argv[]) {
        Kek__Request req = KEK__REQUEST__INIT;
        Kek__BackupRequest b = KEK__BACKUP_REQUEST__INIT;
        Kek__Response *resp;
        int r;

        r = parse_no_args_cmd(argc, argv, o);
        if (r != 0)
                return r;
        if (!o->backup_file)
                return usage_error("backup needs --to FILE");
        b.file = (char *) o->backup_file;
        b.wrapping_key = (char *) (o->transfer_key ?: "");
        req.body_case = KEK__REQUEST__BODY_BACKUP;
        req.backup = &b;
        r = call(&req, "backup", KEK__RESPONSE__BODY_BACKUP, &resp);
        if (r != 0)
                return r;
        r = print_backup_response(resp->backup);
        kek_response_free(resp);
        return r;
}

int cmd_restore(CmdOpts *o, int argc, char *argv[]) {
        Kek__Request req = KEK__REQUEST__INIT;
        Kek__RestoreRequest q = KEK__RESTORE_REQUEST__INIT;
        Kek__Response *resp;
        bool request = arg_request;
        int r;

        r = parse_no_args_cmd(argc, argv, o);
        if (r != 0)
                return r;
        if (!o->backup_file)
                return usage_error("restore needs --from FILE");
        q.file = (char *) o->backup_file;
        q.unwrapping_key = (char *) (o->transfer_key ?: "");
        q.replace = o->replace;
        req.body_case = KEK__REQUEST__BODY_RESTORE;
        req.restore = &q;
        /* The differences first, whatever follows: a dry run writes nothing and needs no approval. */
        q.dry_run = true;
        arg_request = false;
        r = call(&req, "restore", KEK__RESPONSE__BODY_RESTORE, &resp);
        arg_request = request;
        if (r != 0)
                return r;
        (void) print_restore_response(resp->restore, true);
        kek_response_free(resp);
        if (o->dry_run)
                return 0;
        q.dry_run = false;
        r = call(&req, "restore", KEK__RESPONSE__BODY_RESTORE, &resp);
        if (r != 0)
                return r;
        r = print_restore_response(resp->restore, false);
        kek_response_free(resp);
        return r;
}
