/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * One kekctl command, one request: connect to kekd, send it, map the answer
 * to kekctl's exit status. A refusal by kekd prints its error code name and
 * message to stderr (exit 1); an unreachable kekd or a protocol failure
 * exits 3. With "kekctl request" (arg_request) the request is not run but
 * submitted for another officer's approval.
 */
#pragma once

#include <stdbool.h>

#include "kekctl/options.h"
#include "proto/kek.pb-c.h"

extern const char *arg_socket;     /* NULL: $KEKD_SOCKET, or the default */
extern int arg_timeout_ms;
extern bool arg_request;           /* "kekctl request ...": submit the command's request for approval instead */

/*
 * Sends req, expects a response of body type want (NOT_SET: any). 0 with
 * *ret for the caller to free with kek_response_free(), or the exit
 * status (EXIT_SUBMITTED when the request went for approval).
 */
int call(Kek__Request *req, const char *what, Kek__Response__BodyCase want, Kek__Response **ret);
/* Runs a request answered with KeyInfo and prints the key. */
int call_key_info(Kek__Request *req, const char *what);

/*
 * The commands whose request message holds only what the command line
 * gives: a key NAME (show, version, rotate, delete, recover, purge,
 * grants), a request ID (approve, cancel) or nothing (requests, check,
 * status). body names the request; its message's one string field, "key"
 * or "id", or its having none, chooses the parser (parse_name_cmd,
 * parse_id_cmd, parse_no_args_cmd). Sends it as call(argv[0]) does; on 0
 * also the argument (NULL for none) in *ret_arg.
 */
int call_simple(CmdOpts *o, int argc, char *argv[], Kek__Request__BodyCase body, Kek__Response__BodyCase want,
                const char **ret_arg, Kek__Response **ret);
/* call_simple() answered with KeyInfo, and the key printed (show, rotate, delete, recover). */
int call_simple_key_info(CmdOpts *o, int argc, char *argv[], Kek__Request__BodyCase body);
