/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * kekctl: the operator's CLI for kekd. Each command is one request over the
 * socket; output is a human table by default and JSON (json-c) with --json.
 * wrap/unwrap/rewrap move raw bytes stdin -> stdout for scripts and tests; a
 * plaintext key is never written to a terminal. The commands are the table
 * of commands.c; this file parses the global options and dispatches.
 *
 * Exit status: 0 success; 1 kekd refused the request (the error code name and
 * message go to stderr) or check found problems; 2 usage error; 3 kekd not
 * reachable or protocol failure; 4 local I/O error. Documented in kekctl(8).
 */
#include "config.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "client/transport.h"
#include "common/opnames.h"
#include "common/secret.h"
#include "kekctl/call.h"
#include "kekctl/commands.h"
#include "kekctl/options.h"

enum { ARG_VERSION = 0x100, ARG_COMPLETE };

static const struct option global_options[] = {
        { "socket", required_argument, NULL, 's' },
        { "json", no_argument, NULL, 'j' },
        { "timeout", required_argument, NULL, 't' },
        { "help", no_argument, NULL, 'h' },
        { "version", no_argument, NULL, ARG_VERSION },
        { "complete", no_argument, NULL, ARG_COMPLETE },
        {},
};

/*
 * "kekctl --complete": what contrib/kekctl.bash-completion offers, from the
 * tables, one record a line:
 *   global OPTION...              the global options ("--socket=" takes a value)
 *   command NAME KEYS OPTION...   KEYS: - | active | deleted (key names offered as argument)
 *   value OPTION [WORD...]        an option that takes a value, and the words it completes to
 */
static void print_completion(void) {
        const Command *c;
        const CmdOption *o;

        printf("global");
        for (const struct option *g = global_options; g->name; g++)
                if (g->val != ARG_COMPLETE)
                        printf(" --%s%s", g->name, g->has_arg ? "=" : "");
        printf("\n");
        for (size_t i = 0; (c = command_at(i)); i++) {
                printf("command %s %s --json", c->name,
                       c->complete == COMPLETE_KEYS ? "active" : c->complete == COMPLETE_DELETED_KEYS ? "deleted" : "-");
                for (size_t j = 0; (o = cmd_option_at(j)); j++)
                        if (c->opts & o->group)
                                printf(" --%s", o->name);
                printf("\n");
        }
        for (size_t j = 0; (o = cmd_option_at(j)); j++) {
                const char *w;

                if (!o->has_arg)
                        continue;
                printf("value --%s", o->name);
                switch (o->values) {
                case VALUES_ON_OFF:
                        printf(" on off");
                        break;
                case VALUES_GRANT_OPS:
                        printf(" all");
                        for (size_t k = 0; (w = grant_op_name_at(k)); k++)
                                printf(" %s", w);
                        break;
                case VALUES_DUAL_CONTROL:
                        printf(" none");
                        for (size_t k = 0; (w = dual_control_name_at(k)); k++)
                                printf(" %s", w);
                        break;
                case VALUES_BACKUP:
                        printf(" none trusted-wrap");
                        break;
                case VALUES_FREE:
                        break;
                }
                printf("\n");
        }
}

int main(int argc, char *argv[]) {
        const Command *cmd;
        CmdOpts o;
        uint64_t t;
        int c, r;

        /* "+": stop at the command, whose own options follow it. */
        while ((c = getopt_long(argc, argv, "+s:jt:h", global_options, NULL)) >= 0)
                switch (c) {
                case 's':
                        arg_socket = optarg;
                        break;
                case 'j':
                        arg_json = true;
                        break;
                case 't':
                        if (parse_u64(optarg, 3600, &t) < 0 || t < 1)
                                return usage_error("invalid --timeout '%s' (1..3600 seconds)", optarg);
                        arg_timeout_ms = (int) t * 1000;
                        break;
                case 'h':
                        help_overview(KEK_DEFAULT_SOCKET);
                        return 0;
                case ARG_VERSION:
                        printf("kekctl %s\n", PACKAGE_VERSION);
                        return 0;
                case ARG_COMPLETE:
                        print_completion();
                        return 0;
                default:
                        return EXIT_USAGE;
                }
        if (optind >= argc)
                return usage_error("missing command");
        cmd = command_find(argv[optind]);
        if (!cmd)
                return usage_error("unknown command '%s'", argv[optind]);

        r = secret_heap_init(64 * 1024);
        if (r < 0) {
                fprintf(stderr, "kekctl: cannot set up secure memory: %s\n", strerror(-r));
                return EXIT_IO;
        }
        o = (CmdOpts) { .allowed = cmd->opts };
        r = cmd->run(&o, argc - optind, argv + optind);
        if (r == EXIT_HELP)
                (void) help_command(arg_help);
        if (r == EXIT_HELP || r == EXIT_SUBMITTED)
                r = 0;
        /* Tables and JSON go through stdio: a full disk or closed pipe must not exit 0. */
        if (fflush(stdout) != 0 || ferror(stdout)) {
                fprintf(stderr, "kekctl: cannot write stdout: %m\n");
                return r != 0 ? r : EXIT_IO;
        }
        return r;
}
