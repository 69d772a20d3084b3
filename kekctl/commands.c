/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The table of kekctl's commands (see commands.h) and the help texts made
 * from it. The order of the table is the order of "kekctl --help".
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "common/macro.h"
#include "kekctl/commands.h"

static const Command commands[] = {
        {
                .name = "create",
                .run = cmd_create,
                .opts = OPT_POLICY,
                .section = "Keys",
                .synopsis = "NAME [--rotate-after D] [--max-wraps N]",
                .brief = "create a key (version 1 generated in the HSM)",
                .what = "Create a key; version 1 is generated in the HSM.",
        },
        {
                .name = "list",
                .run = cmd_list,
                .opts = OPT_DELETED,
                .synopsis = "[--deleted]",
                .brief = "list keys (with --deleted: only deleted ones, with purge dates)",
                .what = "List keys; with --deleted only deleted ones, with their purge dates.",
        },
        {
                .name = "show",
                .run = cmd_show,
                .synopsis = "NAME",
                .brief = "a key, its versions, their usage",
                .what = "Show a key, its rotation policy, its versions and their usage.",
                .complete = COMPLETE_KEYS,
        },
        {
                .name = "version",
                .run = cmd_version,
                .synopsis = "NAME",
                .brief = "current version, state and recoverability",
                .what = "Show the current version, the state and whether the vault is recoverable.",
                .complete = COMPLETE_KEYS,
        },
        {
                .name = "rotate",
                .run = cmd_rotate,
                .synopsis = "NAME",
                .brief = "add a version and make it current",
                .what = "Add a version generated in the HSM and make it current.",
                .complete = COMPLETE_KEYS,
        },
        {
                .name = "policy",
                .run = cmd_policy,
                .opts = OPT_POLICY,
                .synopsis = "NAME [--rotate-after D] [--max-wraps N]",
                .brief = "set the rotation policy (D: seconds, or Ns/Nm/Nh/Nd; 0 = off)",
                .what = "Change the rotation policy (only what is given).",
                .complete = COMPLETE_KEYS,
        },
        {
                .name = "disable",
                .run = cmd_disable,
                .opts = OPT_VERSION,
                .synopsis = "NAME [--key-version N]",
                .brief = "revoke a key or one version",
                .what = "Revoke a key, or one version.",
                .complete = COMPLETE_KEYS,
        },
        {
                .name = "enable",
                .run = cmd_enable,
                .opts = OPT_VERSION,
                .synopsis = "NAME [--key-version N]",
                .brief = "restore it",
                .what = "Restore a key, or one version.",
                .complete = COMPLETE_KEYS,
        },
        {
                .name = "delete",
                .run = cmd_delete,
                .synopsis = "NAME",
                .brief = "soft-delete (recoverable until the purge date)",
                .what = "Soft-delete a key: refused for all use, recoverable until its purge date.",
                .complete = COMPLETE_KEYS,
                .submittable = true,
        },
        {
                .name = "recover",
                .run = cmd_recover,
                .synopsis = "NAME",
                .brief = "undo a delete",
                .what = "Undo a delete, with all versions.",
                .complete = COMPLETE_DELETED_KEYS,
        },
        {
                .name = "purge",
                .run = cmd_purge,
                .synopsis = "NAME",
                .brief = "destroy a deleted key's HSM objects",
                .what = "Destroy a deleted key's HSM objects (refused before the purge date under purge protection).",
                .complete = COMPLETE_DELETED_KEYS,
                .submittable = true,
        },
        {
                .name = "vault",
                .run = cmd_vault,
                .opts = OPT_VAULT,
                .section = "Vault",
                .synopsis = "[--retention-days N] [--purge-protection on|off] [--dual-control OPS|none] [--approval-window D] "
                            "[--backup none|trusted-wrap]",
                .brief = "show or change soft-delete retention and purge protection\n"
                         "(purge protection cannot be switched off once on), the operations\n"
                         "needing two officers (purge,delete,last-grant,vault-policy,backup,restore), and the\n"
                         "backup mode of new key versions (trusted-wrap cannot be switched off)",
                .what = "Show or change the vault policy. Dual control OPS: a comma list of purge, delete, last-grant, vault-policy, backup, restore.",
                .submittable = true,
        },
        {
                .name = "check",
                .run = cmd_check,
                .synopsis = "",
                .brief = "verify the token against the key records",
                .what = "Verify the token against the key records; exit 1 when a problem is found.",
        },
        {
                .name = "backup",
                .run = cmd_backup,
                .opts = OPT_BACKUP,
                .synopsis = "--to FILE [--wrapping-key LABEL]",
                .brief = "back up every key, its versions wrapped in the HSM under the trusted\n"
                         "backup key, to FILE in kekd's [backup] directory (exit 1 when a\n"
                         "version cannot be backed up: each is named)",
                .what = "Back up every key (records, grants, usage, the vault policy; each version wrapped in the HSM "
                        "under the shared backup key) to FILE, a new file in kekd's [backup] directory. Versions that "
                        "cannot leave the token are named, and the exit status is then 1.",
                .submittable = true,
        },
        {
                .name = "restore",
                .run = cmd_restore,
                .opts = OPT_RESTORE,
                .synopsis = "--from FILE [--replace] [--dry-run] [--unwrapping-key LABEL]",
                .brief = "restore a backup into this token, same names and versions; refused\n"
                         "over existing keys unless --replace; every difference is named",
                .what = "Restore FILE (in kekd's [backup] directory) into this token: same names, versions, states and "
                        "grants, so existing blobs unwrap here. A tampered, truncated or foreign file is refused and "
                        "nothing is written. Keys that exist here are listed with every difference and left alone "
                        "unless --replace is given; --dry-run only lists.",
                .submittable = true,
        },
        {
                .name = "grant",
                .run = cmd_grant,
                .opts = OPT_OPS,
                .section = "Access",
                .synopsis = "NAME user:USER|group:GROUP [--ops OPS]",
                .brief = "let a uid or gid use a key (OPS: get,wrap,unwrap,rewrap|all)",
                .what = "Let a user (uid) or group (gid) use a key. OPS: a comma list of get, wrap, unwrap, rewrap, or all (default).",
                .complete = COMPLETE_KEYS,
        },
        {
                .name = "revoke",
                .run = cmd_revoke,
                .opts = OPT_OPS,
                .synopsis = "NAME user:USER|group:GROUP [--ops OPS]",
                .brief = "take operations away (default all)",
                .what = "Take operations (default: all) away from a grant; clients of that identity drop their cached AEKs.",
                .complete = COMPLETE_KEYS,
                .submittable = true,
        },
        {
                .name = "grants",
                .run = cmd_grants,
                .synopsis = "NAME",
                .brief = "who may use a key",
                .what = "List who may use a key, and for what.",
                .complete = COMPLETE_KEYS,
        },
        {
                .name = "request",
                .run = cmd_request,
                .section = "Dual control",
                .synopsis = "purge|delete|revoke|vault ARGS...",
                .brief = "submit such an operation; prints its id",
                .what = "Submit an operation under dual control for another officer's approval; prints the request id.",
        },
        {
                .name = "approve",
                .run = cmd_approve,
                .synopsis = "ID",
                .brief = "run a request submitted by another officer",
                .what = "Approve and run a request submitted by another officer.",
        },
        {
                .name = "requests",
                .run = cmd_requests,
                .synopsis = "",
                .brief = "pending requests",
                .what = "List the pending dual-control requests.",
        },
        {
                .name = "cancel",
                .run = cmd_cancel,
                .synopsis = "ID",
                .brief = "withdraw or deny a request",
                .what = "Withdraw or deny a pending request.",
        },
        {
                .name = "status",
                .run = cmd_status,
                .opts = OPT_PROMETHEUS,
                .section = "Service",
                .synopsis = "[--prometheus]",
                .brief = "state, HSM session, clients, per-operation counts and latency",
                .what = "kekd's state and per-operation figures; --prometheus prints the metrics text as kekd writes it.",
        },
        {
                .name = "wrap",
                .run = cmd_wrap,
                .opts = OPT_CONTEXT | OPT_VERSION,
                .section = "Data",
                .synopsis = "NAME [--context CTX] [--key-version N] < aek > blob",
                .brief = "wrap the bytes on stdin, blob to stdout",
                .what = "Wrap the bytes on stdin.",
                .complete = COMPLETE_KEYS,
        },
        {
                .name = "unwrap",
                .run = cmd_unwrap,
                .opts = OPT_CONTEXT,
                .synopsis = "[--context CTX] < blob > aek",
                .brief = "unwrap the blob on stdin, plaintext to stdout",
                .what = "Unwrap the blob on stdin (never to a terminal).",
        },
        {
                .name = "rewrap",
                .run = cmd_rewrap,
                .opts = OPT_CONTEXT,
                .synopsis = "[--context CTX] < blob > blob",
                .brief = "re-wrap the blob on stdin under the current version",
                .what = "Re-wrap the blob on stdin under the key's current version.",
        },
};

const Command *command_find(const char *name) {
        for (size_t i = 0; i < ELEMENTSOF(commands); i++)
                if (strcmp(commands[i].name, name) == 0)
                        return &commands[i];
        return NULL;
}

const Command *command_at(size_t i) {
        return i < ELEMENTSOF(commands) ? &commands[i] : NULL;
}

const char *submittable_list(char *buf, size_t size, const char *last) {
        size_t n = 0, k = 0, len = 0;

        for (size_t i = 0; i < ELEMENTSOF(commands); i++)
                n += commands[i].submittable;
        buf[0] = 0;
        for (size_t i = 0; i < ELEMENTSOF(commands) && len < size; i++) {
                if (!commands[i].submittable)
                        continue;
                k++;
                if (k > 1 && k == n)
                        len += (size_t) snprintf(buf + len, size - len, " %s %s", last, commands[i].name);
                else
                        len += (size_t) snprintf(buf + len, size - len, "%s%s", k > 1 ? ", " : "", commands[i].name);
        }
        return buf;
}

/* "  NAME SYNOPSIS", the brief at column 34 (on the next line when the name and synopsis are longer). */
static void help_row(const Command *c) {
        char head[160];
        const char *b = c->brief;

        snprintf(head, sizeof(head), "%s%s%s", c->name, c->synopsis[0] ? " " : "", c->synopsis);
        if (strlen(head) <= 30)
                printf("  %-32s", head);
        else
                printf("  %s\n%34s", head, "");
        for (;;) {
                size_t l = strcspn(b, "\n");

                printf("%.*s\n", (int) l, b);
                if (!b[l])
                        break;
                b += l + 1;
                printf("%34s", "");
        }
}

void help_overview(const char *default_socket) {
        printf("Usage: kekctl [OPTIONS] COMMAND [ARGS]\n\n"
               "Administer kekd, the HSM-backed key-encryption-key service.\n\n");
        for (size_t i = 0; i < ELEMENTSOF(commands); i++) {
                if (commands[i].section)
                        printf("%s:\n", commands[i].section);
                help_row(&commands[i]);
        }
        printf("\nOptions:\n"
               "  -s, --socket=PATH   kekd socket (default: $KEKD_SOCKET or %s)\n"
               "  -j, --json          JSON output\n"
               "  -t, --timeout=SEC   per-request timeout (default 30)\n"
               "  -h, --help          show this help\n"
               "      --version       show the version\n"
               "      --complete      the command table, for the bash completion\n\n"
               "Exit status: 0 ok, 1 refused by kekd or check found problems, 2 usage, 3 kekd unreachable,\n"
               "4 local I/O.\n",
               default_socket);
}

int help_command(const char *name) {
        const Command *c = command_find(name);

        if (!c)
                return -ENOENT;
        printf("Usage: kekctl [OPTIONS] %s %s\n\n%s\n--json gives JSON output. See kekctl(8).\n", c->name, c->synopsis,
               c->what);
        return 0;
}
