/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * kekctl's access commands: grant, revoke and grants. A principal is
 * user:NAME|UID or group:NAME|GID, resolved here with the local databases;
 * kekd only ever sees numeric ids.
 */
#include "config.h"

#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>

#include "common/opnames.h"
#include "client/transport.h"
#include "kekctl/call.h"
#include "kekctl/commands.h"
#include "kekctl/options.h"
#include "kekctl/print.h"
#include "proto/blob.h"

/* "user:NAME|UID" or "group:NAME|GID" */
static int parse_principal(const char *s, Kek__Grant *g) {
        const char *v;
        bool group;
        uint64_t id;

        if (strncmp(s, "user:", 5) == 0) {
                v = s + 5;
                group = false;
        } else if (strncmp(s, "group:", 6) == 0) {
                v = s + 6;
                group = true;
        } else
                return usage_error("invalid principal '%s': use user:NAME, user:UID, group:NAME or group:GID", s);
        /* A number is taken as the id itself, as chown does; anything else is looked up. */
        if (parse_u64(v, UINT32_MAX - 1, &id) < 0) {
                if (group) {
                        struct group *gr = getgrnam(v);

                        if (!gr)
                                return usage_error("no such group '%s'", v);
                        id = gr->gr_gid;
                } else {
                        struct passwd *pw = getpwnam(v);

                        if (!pw)
                                return usage_error("no such user '%s'", v);
                        id = pw->pw_uid;
                }
        }
        g->group = group;
        g->id = (uint32_t) id;
        return 0;
}

static int set_grant(CmdOpts *o, int argc, char *argv[], bool revoke) {
        Kek__Request req = KEK__REQUEST__INIT;
        Kek__SetGrantRequest sg = KEK__SET_GRANT_REQUEST__INIT;
        Kek__Grant g = KEK__GRANT__INIT;
        int r;

        r = parse_cmd_opts(argc, argv, o);
        if (r != 0)
                return r;
        if (argc - optind != 2)
                return usage_error("%s takes a key name and a principal (user:NAME or group:NAME)", argv[0]);
        if (!key_name_valid(argv[optind]))
                return usage_error("invalid key name '%s'", argv[optind]);
        r = parse_principal(argv[optind + 1], &g);
        if (r != 0)
                return r;
        g.ops = o->ops ? o->ops : GRANT_ALL;
        sg.key = argv[optind];
        sg.grant = &g;
        sg.revoke = revoke;
        req.body_case = KEK__REQUEST__BODY_SET_GRANT;
        req.set_grant = &sg;
        return call_key_info(&req, argv[0]);
}

int cmd_grant(CmdOpts *o, int argc, char *argv[]) {
        return set_grant(o, argc, argv, false);
}

int cmd_revoke(CmdOpts *o, int argc, char *argv[]) {
        return set_grant(o, argc, argv, true);
}

int cmd_grants(CmdOpts *o, int argc, char *argv[]) {
        Kek__Response *resp;
        int r;

        r = call_simple(o, argc, argv, KEK__REQUEST__BODY_GET_KEY, KEK__RESPONSE__BODY_KEY_INFO, NULL, &resp);
        if (r != 0)
                return r;
        if (arg_json)
                print_json(grants_json(resp->key_info->key->grants, resp->key_info->key->n_grants));
        else
                print_grants(resp->key_info->key->grants, resp->key_info->key->n_grants);
        kek_response_free(resp);
        return 0;
}
