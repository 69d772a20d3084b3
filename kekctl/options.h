/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * kekctl's command options: one table names each option after a command,
 * the group of commands that take it (OPT_*), whether it takes a value, how
 * that value is checked and stored in CmdOpts, and which words complete it.
 * The parser, "kekctl --complete" and the usage errors all read that table.
 * A bad option or argument is a usage error: its message goes to stderr and
 * the return value is EXIT_USAGE; nothing else is printed.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/macro.h"

/* kekctl's exit status, documented in kekctl(8). */
enum {
        EXIT_REFUSED = 1,
        EXIT_USAGE = 2,
        EXIT_UNREACHABLE = 3,
        EXIT_IO = 4,
        EXIT_HELP = 100,      /* internal: --help was printed; exits 0 */
        EXIT_SUBMITTED = 101, /* internal: "kekctl request" submitted the request; exits 0 */
};

/* Option groups: a command takes the options of the groups in its Command.opts. */
enum {
        OPT_CONTEXT = 1 << 0,
        OPT_VERSION = 1 << 1,
        OPT_DELETED = 1 << 2,
        OPT_POLICY = 1 << 3,
        OPT_VAULT = 1 << 4,
        OPT_OPS = 1 << 5,
        OPT_PROMETHEUS = 1 << 6,
        OPT_BACKUP = 1 << 7,       /* backup: --to, --wrapping-key */
        OPT_RESTORE = 1 << 8,      /* restore: --from, --replace, --unwrapping-key, --dry-run */
};

typedef struct CmdOpts {
        unsigned allowed;          /* OPT_* this command takes */
        const char *context;
        uint32_t version;
        bool deleted;
        bool has_rotate_after, has_max_wraps;
        uint64_t rotate_after;
        uint64_t max_wraps;
        uint32_t retention_days;
        int purge_protection;      /* -1 unchanged, 0 off, 1 on */
        int backup;                /* -1 unchanged, 0 none, 1 trusted-wrap */
        uint32_t ops;              /* grant/revoke: GRANT_* bits */
        bool has_dual_control;
        uint32_t dual_control;
        uint64_t approval_window;
        bool prometheus;
        const char *backup_file;   /* --to, --from: a file name in kekd's [backup] directory */
        const char *transfer_key;  /* --wrapping-key, --unwrapping-key: a key label in the token */
        bool replace, dry_run;
} CmdOpts;

/* What a value completes to in the shell. */
typedef enum OptValues {
        VALUES_FREE,          /* anything: nothing is offered */
        VALUES_ON_OFF,
        VALUES_GRANT_OPS,     /* "all" and the grant op names (common/opnames.h) */
        VALUES_DUAL_CONTROL,  /* "none" and the dual-control names */
        VALUES_BACKUP,        /* the vault's backup modes */
} OptValues;

typedef struct CmdOption {
        const char *name;     /* without the leading "--" */
        unsigned group;       /* OPT_* */
        bool has_arg;
        OptValues values;
        /* Checks arg and stores it in o; 0, or a usage error (EXIT_USAGE). */
        int (*set)(CmdOpts *o, const char *arg);
} CmdOption;

/* --json (set by any command's options, or before the command). */
extern bool arg_json;
/* The command whose --help was asked for, set when parse_cmd_opts() returns EXIT_HELP. */
extern const char *arg_help;

/* The i-th command option, NULL past the end: for the completion table. */
const CmdOption *cmd_option_at(size_t i);

_printf_(1, 2) int usage_error(const char *fmt, ...);
int parse_u64(const char *s, uint64_t max, uint64_t *ret);
/* "90", "90s", "15m", "12h", "30d" -> seconds, at most 100 years of 365 days */
int parse_duration(const char *s, uint64_t *ret);

/*
 * Options after the command argv[0]: --json and --help for every command,
 * the others where o->allowed has their group. Leaves optind at the first
 * positional argument. 0, EXIT_HELP (arg_help names the command) or
 * EXIT_USAGE.
 */
int parse_cmd_opts(int argc, char *argv[], CmdOpts *o);
/* Options, and no other argument. */
int parse_no_args_cmd(int argc, char *argv[], CmdOpts *o);
/* Options, and exactly one valid key name. */
int parse_name_cmd(int argc, char *argv[], CmdOpts *o, const char **ret_name);
/* Options, and exactly one request id (32 lowercase hex digits). */
int parse_id_cmd(int argc, char *argv[], CmdOpts *o, const char **ret_id);
