/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * kekctl's option table and parsers (see options.h). The struct option
 * array getopt_long() needs is built from the table, so an option exists in
 * exactly one place. GNU getopt permutes: options may follow the arguments.
 */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "common/opnames.h"
#include "kekctl/options.h"
#include "proto/blob.h"

bool arg_json;
const char *arg_help;

int usage_error(const char *fmt, ...) {
        va_list ap;

        fprintf(stderr, "kekctl: ");
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fprintf(stderr, "\nTry 'kekctl --help'.\n");
        return EXIT_USAGE;
}

int parse_u64(const char *s, uint64_t max, uint64_t *ret) {
        char *end;
        unsigned long long v;

        if (!s[0] || s[0] == '-' || s[0] == '+')
                return -EINVAL;
        errno = 0;
        v = strtoull(s, &end, 10);
        if (errno || *end || v > max)
                return -EINVAL;
        *ret = v;
        return 0;
}

int parse_duration(const char *s, uint64_t *ret) {
        static const struct {
                char suffix;
                uint64_t mult;
        } units[] = { { 's', 1 }, { 'm', 60 }, { 'h', 3600 }, { 'd', 86400 } };
        char buf[32];
        size_t n = strlen(s);
        uint64_t v, mult = 1;

        if (n == 0 || n >= sizeof(buf))
                return -EINVAL;
        strcpy(buf, s);
        for (size_t i = 0; i < ELEMENTSOF(units); i++)
                if (buf[n - 1] == units[i].suffix) {
                        mult = units[i].mult;
                        buf[n - 1] = 0;
                }
        if (parse_u64(buf, 100ULL * 365 * 86400 / mult, &v) < 0)
                return -EINVAL;
        *ret = v * mult;
        return 0;
}

static int set_context(CmdOpts *o, const char *arg) {
        if (strlen(arg) > CONTEXT_MAX_SIZE)
                return usage_error("--context is longer than %u bytes", CONTEXT_MAX_SIZE);
        o->context = arg;
        return 0;
}

static int set_version(CmdOpts *o, const char *arg) {
        uint64_t v;

        if (parse_u64(arg, UINT32_MAX, &v) < 0 || v == 0)
                return usage_error("invalid --key-version '%s'", arg);
        o->version = (uint32_t) v;
        return 0;
}

static int set_deleted(CmdOpts *o, _unused_ const char *arg) {
        o->deleted = true;
        return 0;
}

static int set_rotate_after(CmdOpts *o, const char *arg) {
        if (parse_duration(arg, &o->rotate_after) < 0)
                return usage_error("invalid --rotate-after '%s' (seconds, or Ns, Nm, Nh, Nd)", arg);
        o->has_rotate_after = true;
        return 0;
}

static int set_max_wraps(CmdOpts *o, const char *arg) {
        /* NIST SP 800-38D: at most 2^32 encryptions under one key with random IVs */
        if (parse_u64(arg, UINT64_C(1) << 32, &o->max_wraps) < 0)
                return usage_error("invalid --max-wraps '%s' (0 for the default, at most 4294967296)", arg);
        o->has_max_wraps = true;
        return 0;
}

static int set_retention(CmdOpts *o, const char *arg) {
        uint64_t v;

        if (parse_u64(arg, 90, &v) < 0 || v < 7)
                return usage_error("invalid --retention-days '%s' (7..90)", arg);
        o->retention_days = (uint32_t) v;
        return 0;
}

static int set_purge_protection(CmdOpts *o, const char *arg) {
        if (strcmp(arg, "on") == 0)
                o->purge_protection = 1;
        else if (strcmp(arg, "off") == 0)
                o->purge_protection = 0; /* kekd refuses it once on; let it say so */
        else
                return usage_error("invalid --purge-protection '%s' (on or off)", arg);
        return 0;
}

static int set_backup(CmdOpts *o, const char *arg) {
        if (strcmp(arg, "trusted-wrap") == 0)
                o->backup = 1;
        else if (strcmp(arg, "none") == 0)
                o->backup = 0; /* kekd refuses it once trusted-wrap; let it say so */
        else
                return usage_error("invalid --backup '%s' (none or trusted-wrap)", arg);
        return 0;
}

static int set_ops(CmdOpts *o, const char *arg) {
        if (grant_ops_from_string(arg, &o->ops) < 0)
                return usage_error("invalid --ops '%s' (a comma list of get, wrap, unwrap, rewrap, or all)", arg);
        return 0;
}

static int set_dual_control(CmdOpts *o, const char *arg) {
        if (dual_control_from_string(arg, &o->dual_control) < 0)
                return usage_error("invalid --dual-control '%s' (a comma list of purge, delete, last-grant, "
                                   "vault-policy, backup, restore, or none)", arg);
        o->has_dual_control = true;
        return 0;
}

static int set_approval_window(CmdOpts *o, const char *arg) {
        if (parse_duration(arg, &o->approval_window) < 0 || o->approval_window < 60 || o->approval_window > 7 * 86400)
                return usage_error("invalid --approval-window '%s' (60 s .. 7 d)", arg);
        return 0;
}

static int set_prometheus(CmdOpts *o, _unused_ const char *arg) {
        o->prometheus = true;
        return 0;
}

/* A file name in kekd's [backup] directory: kekd writes and reads it (docs/backup.md). */
static int set_backup_file(CmdOpts *o, const char *arg) {
        if (!arg[0] || strchr(arg, '/') || strlen(arg) > 255)
                return usage_error("invalid backup file '%s' (a file name in kekd's [backup] directory, without '/')", arg);
        o->backup_file = arg;
        return 0;
}

static int set_transfer_key(CmdOpts *o, const char *arg) {
        if (!arg[0] || strlen(arg) > 64)
                return usage_error("invalid key label '%s' (1 to 64 bytes)", arg);
        o->transfer_key = arg;
        return 0;
}

static int set_replace(CmdOpts *o, _unused_ const char *arg) {
        o->replace = true;
        return 0;
}

static int set_dry_run(CmdOpts *o, _unused_ const char *arg) {
        o->dry_run = true;
        return 0;
}

static const CmdOption cmd_options[] = {
        { "context", OPT_CONTEXT, true, VALUES_FREE, set_context },
        { "key-version", OPT_VERSION, true, VALUES_FREE, set_version },
        { "deleted", OPT_DELETED, false, VALUES_FREE, set_deleted },
        { "rotate-after", OPT_POLICY, true, VALUES_FREE, set_rotate_after },
        { "max-wraps", OPT_POLICY, true, VALUES_FREE, set_max_wraps },
        { "retention-days", OPT_VAULT, true, VALUES_FREE, set_retention },
        { "purge-protection", OPT_VAULT, true, VALUES_ON_OFF, set_purge_protection },
        { "ops", OPT_OPS, true, VALUES_GRANT_OPS, set_ops },
        { "dual-control", OPT_VAULT, true, VALUES_DUAL_CONTROL, set_dual_control },
        { "approval-window", OPT_VAULT, true, VALUES_FREE, set_approval_window },
        { "backup", OPT_VAULT, true, VALUES_BACKUP, set_backup },
        { "prometheus", OPT_PROMETHEUS, false, VALUES_FREE, set_prometheus },
        { "to", OPT_BACKUP, true, VALUES_FREE, set_backup_file },
        { "wrapping-key", OPT_BACKUP, true, VALUES_FREE, set_transfer_key },
        { "from", OPT_RESTORE, true, VALUES_FREE, set_backup_file },
        { "unwrapping-key", OPT_RESTORE, true, VALUES_FREE, set_transfer_key },
        { "replace", OPT_RESTORE, false, VALUES_FREE, set_replace },
        { "dry-run", OPT_RESTORE, false, VALUES_FREE, set_dry_run },
};

const CmdOption *cmd_option_at(size_t i) {
        return i < ELEMENTSOF(cmd_options) ? &cmd_options[i] : NULL;
}

int parse_cmd_opts(int argc, char *argv[], CmdOpts *o) {
        /* getopt's table: the command options (val: 0x100 + index), then --help and --json. */
        struct option options[ELEMENTSOF(cmd_options) + 3] = {};
        int c, idx = 0;

        for (size_t i = 0; i < ELEMENTSOF(cmd_options); i++)
                options[i] = (struct option) { cmd_options[i].name, cmd_options[i].has_arg ? required_argument : no_argument,
                                               NULL, 0x100 + (int) i };
        options[ELEMENTSOF(cmd_options)] = (struct option) { "help", no_argument, NULL, 'h' };
        options[ELEMENTSOF(cmd_options) + 1] = (struct option) { "json", no_argument, NULL, 'j' };

        o->purge_protection = -1;
        o->backup = -1;
        optind = 0; /* full reset of GNU getopt, which permutes so options may follow arguments */
        while ((c = getopt_long(argc, argv, "hj", options, &idx)) >= 0) {
                const CmdOption *opt;
                int r;

                switch (c) {
                case 'h':
                        arg_help = argv[0];
                        return EXIT_HELP;
                case 'j':
                        arg_json = true;
                        continue;
                }
                if (c < 0x100 || c >= 0x100 + (int) ELEMENTSOF(cmd_options))
                        return EXIT_USAGE; /* getopt said why */
                opt = &cmd_options[c - 0x100];
                if (!(o->allowed & opt->group))
                        return usage_error("option '--%s' does not apply to '%s'", opt->name, argv[0]);
                r = opt->set(o, optarg);
                if (r != 0)
                        return r;
        }
        return 0;
}

/* Parses options; the command takes no other arguments. */
int parse_no_args_cmd(int argc, char *argv[], CmdOpts *o) {
        int r = parse_cmd_opts(argc, argv, o);

        if (r != 0)
                return r;
        if (argc - optind != 0)
                return usage_error("%s takes options only, no arguments", argv[0]);
        return 0;
}

/* Parses options and exactly one key name argument. */
int parse_name_cmd(int argc, char *argv[], CmdOpts *o, const char **ret_name) {
        int r = parse_cmd_opts(argc, argv, o);

        if (r != 0)
                return r;
        if (argc - optind != 1)
                return usage_error("%s takes exactly one key name", argv[0]);
        if (!key_name_valid(argv[optind]))
                return usage_error("invalid key name '%s': use 1-64 of [A-Za-z0-9._-], not starting with '.' or '-'",
                                   argv[optind]);
        *ret_name = argv[optind];
        return 0;
}

/* Parses options and exactly one request id. */
int parse_id_cmd(int argc, char *argv[], CmdOpts *o, const char **ret_id) {
        int r = parse_cmd_opts(argc, argv, o);

        if (r != 0)
                return r;
        if (argc - optind != 1 || strlen(argv[optind]) != 32 || strspn(argv[optind], "0123456789abcdef") != 32)
                return usage_error("%s takes one request id (32 hex digits, from 'kekctl requests')", argv[0]);
        *ret_id = argv[optind];
        return 0;
}
