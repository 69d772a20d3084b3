/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The one table of kekctl's commands (commands.c): name, handler, options,
 * usage and help texts, section of the overview, and what the shell
 * completes after it. "kekctl --help", "kekctl COMMAND --help", the
 * dispatch in main(), "kekctl request" and "kekctl --complete" (which the
 * bash completion reads) all derive from it; tests check man/kekctl.8
 * against it.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "kekctl/options.h"
#include "proto/kek.pb-c.h"

/* What the shell completes as a command's argument. */
typedef enum CompleteKeys {
        COMPLETE_NOTHING,
        COMPLETE_KEYS,          /* names of keys that are not deleted */
        COMPLETE_DELETED_KEYS,  /* names of deleted keys */
} CompleteKeys;

typedef struct Command {
        const char *name;
        /* argv[0] is the command name; o->allowed is set from opts. Returns the exit status. */
        int (*run)(CmdOpts *o, int argc, char *argv[]);
        unsigned opts;          /* OPT_* groups it takes */
        const char *section;    /* the overview's heading, on the first command of each section */
        const char *synopsis;   /* arguments and options, after the name */
        const char *brief;      /* the overview's text; lines after the first are indented */
        const char *what;       /* "kekctl COMMAND --help" text */
        CompleteKeys complete;
        bool submittable;       /* may go through "kekctl request" (dual control) */
} Command;

const Command *command_find(const char *name);
/* The i-th command, NULL past the end. */
const Command *command_at(size_t i);
/* "purge, delete, revoke or vault": the submittable commands, joined with last ("or", "and"). */
const char *submittable_list(char *buf, size_t size, const char *last);

/* Prints "kekctl --help". */
void help_overview(const char *default_socket);
/* Prints "kekctl COMMAND --help"; -ENOENT for an unknown command. */
int help_command(const char *name);

int cmd_create(CmdOpts *o, int argc, char *argv[]);
int cmd_list(CmdOpts *o, int argc, char *argv[]);
int cmd_show(CmdOpts *o, int argc, char *argv[]);
int cmd_version(CmdOpts *o, int argc, char *argv[]);
int cmd_rotate(CmdOpts *o, int argc, char *argv[]);
int cmd_policy(CmdOpts *o, int argc, char *argv[]);
int cmd_disable(CmdOpts *o, int argc, char *argv[]);
int cmd_enable(CmdOpts *o, int argc, char *argv[]);
int cmd_delete(CmdOpts *o, int argc, char *argv[]);
int cmd_recover(CmdOpts *o, int argc, char *argv[]);
int cmd_purge(CmdOpts *o, int argc, char *argv[]);
int cmd_vault(CmdOpts *o, int argc, char *argv[]);
int cmd_check(CmdOpts *o, int argc, char *argv[]);
int cmd_backup(CmdOpts *o, int argc, char *argv[]);
/* The replies of backup and restore (also when "kekctl approve" ran them); the exit status: 1 if a version was left out. */
int print_backup_response(const Kek__BackupResponse *b);
int print_restore_response(const Kek__RestoreResponse *rs, bool dry_run);
int cmd_restore(CmdOpts *o, int argc, char *argv[]);
int cmd_status(CmdOpts *o, int argc, char *argv[]);
int cmd_grant(CmdOpts *o, int argc, char *argv[]);
int cmd_revoke(CmdOpts *o, int argc, char *argv[]);
int cmd_grants(CmdOpts *o, int argc, char *argv[]);
int cmd_request(CmdOpts *o, int argc, char *argv[]);
int cmd_approve(CmdOpts *o, int argc, char *argv[]);
int cmd_requests(CmdOpts *o, int argc, char *argv[]);
int cmd_cancel(CmdOpts *o, int argc, char *argv[]);
int cmd_wrap(CmdOpts *o, int argc, char *argv[]);
int cmd_unwrap(CmdOpts *o, int argc, char *argv[]);
int cmd_rewrap(CmdOpts *o, int argc, char *argv[]);
