/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A blocking connection to kekd: send one Request frame, read frames until
 * the Response with the same id arrives, with a timeout on each wait. This is
 * the transport libkek and kekctl build on. Library code: it never logs above
 * debug and never prints; errors come back as -errno or -KEKERR_*, with the
 * daemon's message available from kek_conn_error_message().
 */
#pragma once

#include <stddef.h>

#include "common/macro.h"
#include "proto/kek.pb-c.h"

#define KEK_DEFAULT_SOCKET "/run/kekd/kekd.sock"

typedef struct KekConn KekConn;

int kek_conn_open(const char *socket_path, int timeout_ms, KekConn **ret);
KekConn *kek_conn_free(KekConn *c);
DEFINE_TRIVIAL_CLEANUP_FUNC(KekConn, kek_conn_free);

/*
 * Sends req (its id is assigned here) and waits for the matching response.
 * A Response carrying an Error is returned as -KEKERR_<code>; its text is then
 * in kek_conn_error_message(). On success the caller frees *ret with
 * kek__response__free_unpacked(); kek_conn_response_free() also cleanses it.
 */
int kek_conn_call(KekConn *c, Kek__Request *req, Kek__Response **ret);
void kek_conn_response_free(Kek__Response *resp);
const char *kek_conn_error_message(const KekConn *c);
