/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Unit tests of kekctl's option parser (kekctl/options.c) and its command
 * table (kekctl/commands.c), without kekd: values are checked and stored,
 * options are refused by commands outside their group, options may follow
 * the arguments, --help names the command, the positional checks of the
 * name, id and no-argument commands, durations; and the table's own
 * consistency (unique names, every option taken by some command, the
 * submittable list).
 */
#include "config.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "common/macro.h"
#include "common/opnames.h"
#include "kekctl/commands.h"
#include "kekctl/options.h"
#include "tests/lib/tap.h"

#define ARGV(...) ((char *[]) { __VA_ARGS__, NULL })
#define ARGC(...) ((int) (sizeof((char *[]) { __VA_ARGS__ }) / sizeof(char *)))
/* Parses the options of argv as command argv[0] would, with the groups of the table. */
#define PARSE(o, ...) parse(o, ARGC(__VA_ARGS__), ARGV(__VA_ARGS__))

static int parse(CmdOpts *o, int argc, char *argv[]) {
        const Command *c = command_find(argv[0]);

        *o = (CmdOpts) { .allowed = c ? c->opts : 0 };
        return parse_cmd_opts(argc, argv, o);
}

static void test_values(void) {
        char *wrap[] = { "wrap", "k", "--context", "ctx", "--key-version", "7", "--json", NULL };
        CmdOpts o;

        arg_json = false;
        is_int(parse(&o, 7, wrap), 0, "wrap's options parse");
        ok(o.context && strcmp(o.context, "ctx") == 0, "... --context is stored");
        is_int(o.version, 7, "... --key-version is stored");
        ok(arg_json, "... --json after the command sets arg_json");
        ok(optind == 6 && strcmp(wrap[optind], "k") == 0, "... options after the argument are permuted: optind at the name");

        is_int(PARSE(&o, "create", "k", "--rotate-after", "12h", "--max-wraps", "4294967296"), 0, "create's policy");
        ok(o.has_rotate_after && o.rotate_after == 12 * 3600, "... --rotate-after 12h is 43200 s");
        ok(o.has_max_wraps && o.max_wraps == UINT64_C(4294967296), "... --max-wraps 2^32 is allowed");
        is_int(PARSE(&o, "create", "k", "--max-wraps", "4294967297"), EXIT_USAGE, "--max-wraps above 2^32: usage error");

        is_int(PARSE(&o, "vault", "--retention-days", "7", "--purge-protection", "on", "--dual-control", "purge,last-grant",
                     "--approval-window", "1h"), 0, "vault's options");
        is_int(o.retention_days, 7, "... retention 7 days");
        is_int(o.purge_protection, 1, "... purge protection on");
        ok(o.has_dual_control && o.dual_control == 5, "... dual control purge,last-grant is bits 1|4");
        is_int(o.approval_window, 3600, "... window 1h");
        is_int(PARSE(&o, "vault"), 0, "vault without options");
        is_int(o.purge_protection, -1, "... purge protection unchanged");
        ok(!o.has_dual_control, "... dual control unchanged");
        is_int(PARSE(&o, "vault", "--dual-control", "none"), 0, "--dual-control none");
        ok(o.has_dual_control && o.dual_control == 0, "... clears every bit");

        is_int(PARSE(&o, "vault", "--retention-days", "6"), EXIT_USAGE, "--retention-days 6: usage error");
        is_int(PARSE(&o, "vault", "--retention-days", "91"), EXIT_USAGE, "--retention-days 91: usage error");
        is_int(PARSE(&o, "vault", "--purge-protection", "yes"), EXIT_USAGE, "--purge-protection yes: usage error");
        is_int(PARSE(&o, "vault", "--approval-window", "59"), EXIT_USAGE, "--approval-window below 60 s: usage error");
        is_int(PARSE(&o, "vault", "--approval-window", "8d"), EXIT_USAGE, "--approval-window above 7 d: usage error");
        is_int(PARSE(&o, "vault", "--dual-control", "wrap"), EXIT_USAGE, "--dual-control wrap: usage error");

        is_int(PARSE(&o, "grant", "k", "user:1", "--ops", "wrap,unwrap"), 0, "grant --ops");
        is_int(o.ops, GRANT_WRAP | GRANT_UNWRAP, "... ops stored as GRANT_* bits");
        is_int(PARSE(&o, "grant", "k", "user:1", "--ops", "purge"), EXIT_USAGE, "--ops purge: usage error");
        is_int(PARSE(&o, "disable", "k", "--key-version", "0"), EXIT_USAGE, "--key-version 0: usage error");
        is_int(PARSE(&o, "disable", "k", "--key-version", "4294967296"), EXIT_USAGE, "--key-version 2^32: usage error");
        is_int(PARSE(&o, "list", "--deleted"), 0, "list --deleted");
        ok(o.deleted, "... stored");
        is_int(PARSE(&o, "status", "--prometheus"), 0, "status --prometheus");
        ok(o.prometheus, "... stored");
}

static void test_groups(void) {
        CmdOpts o;

        is_int(PARSE(&o, "show", "k", "--context", "x"), EXIT_USAGE, "--context does not apply to show");
        is_int(PARSE(&o, "unwrap", "--key-version", "2"), EXIT_USAGE, "--key-version does not apply to unwrap");
        is_int(PARSE(&o, "list", "--ops", "all"), EXIT_USAGE, "--ops does not apply to list");
        is_int(PARSE(&o, "create", "k", "--retention-days", "30"), EXIT_USAGE, "--retention-days does not apply to create");
        is_int(PARSE(&o, "vault", "--prometheus"), EXIT_USAGE, "--prometheus does not apply to vault");
        is_int(PARSE(&o, "show", "k", "--no-such-option"), EXIT_USAGE, "an unknown option: usage error");
        is_int(PARSE(&o, "wrap", "k", "--context"), EXIT_USAGE, "a missing value: usage error");

        arg_help = NULL;
        is_int(PARSE(&o, "rotate", "k", "--help"), EXIT_HELP, "--help: EXIT_HELP");
        ok(arg_help && strcmp(arg_help, "rotate") == 0, "... arg_help names the command");
        is_int(PARSE(&o, "purge", "-h"), EXIT_HELP, "-h too");
}

static void test_positional(void) {
        const char *s = NULL;
        CmdOpts o = {};

        is_int(parse_name_cmd(ARGC("show", "acct-1"), ARGV("show", "acct-1"), &o, &s), 0, "one key name");
        ok(s && strcmp(s, "acct-1") == 0, "... returned");
        s = NULL;
        is_int(parse_name_cmd(ARGC("show"), ARGV("show"), &o, &s), EXIT_USAGE, "no key name: usage error");
        is_int(parse_name_cmd(ARGC("show", "a", "b"), ARGV("show", "a", "b"), &o, &s), EXIT_USAGE, "two names: usage error");
        is_int(parse_name_cmd(ARGC("show", ".x"), ARGV("show", ".x"), &o, &s), EXIT_USAGE, "an invalid name: usage error");
        ok(!s, "... failures leave the output alone");
        is_int(parse_no_args_cmd(ARGC("check"), ARGV("check"), &o), 0, "check without arguments");
        is_int(parse_no_args_cmd(ARGC("check", "x"), ARGV("check", "x"), &o), EXIT_USAGE, "check with one: usage error");
        is_int(parse_id_cmd(ARGC("approve", "0123456789abcdef0123456789abcdef"),
                            ARGV("approve", "0123456789abcdef0123456789abcdef"), &o, &s), 0, "a request id");
        is_int(parse_id_cmd(ARGC("approve", "0123456789ABCDEF0123456789abcdef"),
                            ARGV("approve", "0123456789ABCDEF0123456789abcdef"), &o, &s), EXIT_USAGE,
               "upper-case hex: usage error");
        is_int(parse_id_cmd(ARGC("approve", "0123"), ARGV("approve", "0123"), &o, &s), EXIT_USAGE, "a short id: usage error");
}

static void test_durations(void) {
        uint64_t v = 0;

        is_int(parse_duration("90", &v), 0, "90");
        is_int(v, 90, "... is 90 s");
        is_int(parse_duration("15m", &v), 0, "15m");
        is_int(v, 900, "... is 900 s");
        is_int(parse_duration("30d", &v), 0, "30d");
        is_int(v, 30 * 86400, "... is 30 days");
        is_int(parse_duration("36500d", &v), 0, "100 years of 365 days");
        v = 1;
        is_int(parse_duration("36501d", &v), -EINVAL, "more than 100 years: -EINVAL");
        is_int(parse_duration("", &v), -EINVAL, "empty: -EINVAL");
        is_int(parse_duration("d", &v), -EINVAL, "a unit alone: -EINVAL");
        is_int(parse_duration("-5s", &v), -EINVAL, "negative: -EINVAL");
        is_int(parse_duration("5w", &v), -EINVAL, "an unknown unit: -EINVAL");
        is_int(v, 1, "... failures leave the output alone");
}

static void test_table(void) {
        const Command *c, *d;
        const CmdOption *opt;
        unsigned groups = 0, dups = 0, missing = 0;
        char list[128];

        for (size_t i = 0; (c = command_at(i)); i++) {
                groups |= c->opts;
                for (size_t j = i + 1; (d = command_at(j)); j++)
                        dups += strcmp(c->name, d->name) == 0;
                missing += !c->run || !c->synopsis || !c->brief || !c->what;
                ok(command_find(c->name) == c, "command_find(\"%s\")", c->name);
        }
        ok(command_at(0) && command_at(0)->section, "the first command opens a section");
        is_int(dups, 0, "command names are unique");
        is_int(missing, 0, "every command has a handler, a synopsis, a brief and a help text");
        ok(!command_find("nope"), "an unknown command is not found");
        for (size_t j = 0; (opt = cmd_option_at(j)); j++) {
                ok(groups & opt->group, "--%s is taken by some command", opt->name);
                ok(opt->set, "--%s has a setter", opt->name);
        }
        ok(strcmp(submittable_list(list, sizeof(list), "or"), "delete, purge, vault, backup, restore or revoke") == 0,
           "the submittable commands: %s", list);
        ok(strcmp(submittable_list(list, 12, "or"), "delete, pur") == 0, "... truncated to the buffer: %s", list);
}

int main(void) {
        /* Usage errors go to stderr; keep the TAP stream on stdout clean of them. */
        if (!freopen("/dev/null", "w", stderr))
                return 99;
        test_values();
        test_groups();
        test_positional();
        test_durations();
        test_table();
        return tap_done();
}
