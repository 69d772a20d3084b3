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
