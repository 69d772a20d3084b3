/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * kekctl's dual-control commands: request (submit another command's request
 * for approval instead of running it), approve, requests and cancel.
 */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "client/transport.h"
#include "kekctl/call.h"
#include "kekctl/commands.h"
#include "kekctl/options.h"
#include "kekctl/print.h"

int cmd_request(CmdOpts *o, int argc, char *argv[]) {
        const Command *sub;
        char list[128];

        if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0))
                return parse_cmd_opts(argc, argv, o);
        if (argc < 2)
                return usage_error("request needs a command: %s", submittable_list(list, sizeof(list), "or"));
        sub = command_find(argv[1]);
        if (!sub || !sub->submittable)
                return usage_error("'%s' cannot be submitted for approval: only %s", argv[1],
                                   submittable_list(list, sizeof(list), "and"));
        arg_request = true;
        *o = (CmdOpts) { .allowed = sub->opts };
        return sub->run(o, argc - 1, argv + 1);
}

int cmd_approve(CmdOpts *o, int argc, char *argv[]) {
        Kek__Response *resp;
        const char *id;
        int r;

        /* The answer is the approved operation's own: key info, a vault policy or nothing. */
        r = call_simple(o, argc, argv, KEK__REQUEST__BODY_APPROVE, KEK__RESPONSE__BODY__NOT_SET, &id, &resp);
        if (r != 0)
                return r;
        if (!arg_json)
                printf("Approved request %s.\n", id);
        if (resp->body_case == KEK__RESPONSE__BODY_KEY_INFO && resp->key_info->key)
                print_key_info(resp->key_info->key);
        else if (resp->body_case == KEK__RESPONSE__BODY_BACKUP)
                r = print_backup_response(resp->backup);
        else if (resp->body_case == KEK__RESPONSE__BODY_RESTORE)
                r = print_restore_response(resp->restore, false);
        else if (arg_json)
                printf("{ \"approved\": \"%s\" }\n", id);
        kek_response_free(resp);
        return r;
}

int cmd_requests(CmdOpts *o, int argc, char *argv[]) {
        Kek__Response *resp;
        int r;

        r = call_simple(o, argc, argv, KEK__REQUEST__BODY_LIST_APPROVALS, KEK__RESPONSE__BODY_APPROVALS, NULL, &resp);
        if (r != 0)
                return r;
        print_approvals(resp->approvals->approvals, resp->approvals->n_approvals, false);
        kek_response_free(resp);
        return 0;
}

int cmd_cancel(CmdOpts *o, int argc, char *argv[]) {
        Kek__Response *resp;
        const char *id;
        int r;

        r = call_simple(o, argc, argv, KEK__REQUEST__BODY_CANCEL_APPROVAL, KEK__RESPONSE__BODY_EMPTY, &id, &resp);
        if (r != 0)
                return r;
        kek_response_free(resp);
        if (arg_json)
                printf("{ \"cancelled\": \"%s\" }\n", id);
        else
                printf("Cancelled request %s.\n", id);
        return 0;
}
