/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * kekctl's vault and service commands: vault (show or change the vault
 * policy), check (token against key records; exit 1 on a problem) and
 * status (rendered by status.c).
 */
#include "config.h"

#include <stdio.h>

#include "common/opnames.h"
#include "client/transport.h"
#include "kekctl/call.h"
#include "kekctl/commands.h"
#include "kekctl/options.h"
#include "kekctl/print.h"
#include "kekctl/status.h"

static const char *backup_name(const Kek__VaultPolicy *p) {
        return p && p->backup == KEK__BACKUP_MODE__BACKUP_TRUSTED_WRAP ? "trusted-wrap" : "none";
}

int cmd_vault(CmdOpts *o, int argc, char *argv[]) {
        Kek__Request req = KEK__REQUEST__INIT;
        Kek__GetVaultPolicyRequest gr = KEK__GET_VAULT_POLICY_REQUEST__INIT;
        Kek__SetVaultPolicyRequest sr = KEK__SET_VAULT_POLICY_REQUEST__INIT;
        Kek__Response *resp;
        const Kek__VaultPolicyResponse *v;
        char dc[64];
        int r;

        r = parse_no_args_cmd(argc, argv, o);
        if (r != 0)
                return r;
        if (o->retention_days || o->purge_protection >= 0 || o->has_dual_control || o->approval_window || o->backup >= 0) {
                sr.retention_days = o->retention_days;
                sr.set_dual_control = o->has_dual_control;
                sr.dual_control = o->dual_control;
                sr.approval_window_seconds = (uint32_t) o->approval_window;
                sr.purge_protection = o->purge_protection < 0 ? KEK__SWITCH__UNCHANGED
                                      : o->purge_protection ? KEK__SWITCH__ON
                                                           : KEK__SWITCH__OFF;
                sr.trusted_wrap = o->backup < 0 ? KEK__SWITCH__UNCHANGED : o->backup ? KEK__SWITCH__ON : KEK__SWITCH__OFF;
                req.body_case = KEK__REQUEST__BODY_SET_VAULT_POLICY;
                req.set_vault_policy = &sr;
        } else {
                req.body_case = KEK__REQUEST__BODY_GET_VAULT_POLICY;
                req.get_vault_policy = &gr;
        }
        r = call(&req, "vault", KEK__RESPONSE__BODY_VAULT_POLICY, &resp);
        if (r != 0)
                return r;
        v = resp->vault_policy;
        if (arg_json) {
                json_object *j = json_object_new_object();

                json_object_object_add(j, "soft_delete", json_object_new_boolean(true));
                json_object_object_add(j, "retention_days", json_object_new_int64(v->policy ? v->policy->retention_days : 0));
                json_object_object_add(j, "purge_protection", json_object_new_boolean(v->policy && v->policy->purge_protection));
                json_object_object_add(j, "recoverable", json_object_new_boolean(v->policy && v->policy->purge_protection));
                json_object_object_add(j, "allow_unrecoverable", json_object_new_boolean(v->allow_unrecoverable));
                json_object_object_add(j, "dual_control", json_object_new_string(dual_control_to_string(v->policy ? v->policy->dual_control : 0, dc)));
                json_object_object_add(j, "approval_window_seconds",
                                       json_object_new_int64(v->policy ? v->policy->approval_window_seconds : 0));
                json_object_object_add(j, "backup", json_object_new_string(backup_name(v->policy)));
                print_json(j);
        } else {
                printf("Soft delete:       on, %u days retention\nPurge protection:  %s\nRecoverable:       %s\n",
                       v->policy ? v->policy->retention_days : 0, v->policy && v->policy->purge_protection ? "on" : "off",
                       v->policy && v->policy->purge_protection ? "yes" : "no (wraps are refused)");
                printf("Dual control:      %s (requests can be approved for %u s)\n",
                       dual_control_to_string(v->policy ? v->policy->dual_control : 0, dc),
                       v->policy ? v->policy->approval_window_seconds : 0);
                printf("Backup:            %s\n", v->policy && v->policy->backup == KEK__BACKUP_MODE__BACKUP_TRUSTED_WRAP
                                                            ? "trusted-wrap (new versions leave the token only wrapped under "
                                                              "SO-trusted keys)"
                                                            : "none (new versions are never extractable: lost with the token)");
                if (v->allow_unrecoverable)
                        printf("Warning:           this kekd serves wraps anyway (allow_unrecoverable, development only)\n");
        }
        kek_response_free(resp);
        return 0;
}

int cmd_check(CmdOpts *o, int argc, char *argv[]) {
        Kek__Response *resp;
        int r;

        r = call_simple(o, argc, argv, KEK__REQUEST__BODY_CHECK, KEK__RESPONSE__BODY_CHECK, NULL, &resp);
        if (r != 0)
                return r;
        if (arg_json) {
                json_object *j = json_object_new_object(), *p = json_object_new_array();

                json_object_object_add(j, "keys", json_object_new_int64(resp->check->keys));
                json_object_object_add(j, "versions", json_object_new_int64(resp->check->versions));
                json_object_object_add(j, "repaired", json_object_new_int64(resp->check->repaired));
                json_object_object_add(j, "versions_without_backup",
                                       json_object_new_int64(resp->check->versions_without_backup));
                for (size_t i = 0; i < resp->check->n_problems; i++)
                        json_object_array_add(p, json_object_new_string(resp->check->problems[i]));
                json_object_object_add(j, "problems", p);
                p = json_object_new_array();
                for (size_t i = 0; i < resp->check->n_notes; i++)
                        json_object_array_add(p, json_object_new_string(resp->check->notes[i]));
                json_object_object_add(j, "notes", p);
                print_json(j);
        } else {
                printf("Checked %u keys, %u versions; repaired %u interrupted operations.\n", resp->check->keys,
                       resp->check->versions, resp->check->repaired);
                for (size_t i = 0; i < resp->check->n_problems; i++)
                        printf("PROBLEM: %s\n", resp->check->problems[i]);
                if (resp->check->n_problems == 0)
                        printf("The token is consistent with the key records.\n");
                for (size_t i = 0; i < resp->check->n_notes; i++)
                        printf("NOTE: %s\n", resp->check->notes[i]);
                /* One summary line; in backup mode trusted-wrap each such version is also a problem above. */
                if (resp->check->versions_without_backup > 0)
                        printf("Without a backup path: %u versions (never extractable: lost with the token; "
                               "see kekctl vault --backup).\n", resp->check->versions_without_backup);
        }
        r = resp->check->n_problems > 0 ? EXIT_REFUSED : 0;
        kek_response_free(resp);
        return r;
}

int cmd_status(CmdOpts *o, int argc, char *argv[]) {
        Kek__Response *resp;
        int r;

        r = call_simple(o, argc, argv, KEK__REQUEST__BODY_STATUS, KEK__RESPONSE__BODY_STATUS, NULL, &resp);
        if (r != 0)
                return r;
        r = status_print(resp->status, o->prometheus ? STATUS_PROMETHEUS : arg_json ? STATUS_JSON : STATUS_HUMAN);
        kek_response_free(resp);
        return r < 0 ? EXIT_IO : 0;
}
