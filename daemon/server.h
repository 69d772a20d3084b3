/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The transport: a listening Unix socket and its connections on an sd-event
 * loop. Bytes are read into a per-connection FrameBuf; one complete frame of
 * each ready connection goes to dispatch_requests() in one round (so their
 * HSM calls run together) and its reply is queued for writing. A frame whose
 * declared length exceeds max_frame, an undecodable frame, or a connection that
 * ends in the middle of a frame gets one error reply (id 0) and is closed; no
 * peer can stop the daemon or other connections. Replies are written in
 * request order; a peer that stops reading stops being read (backpressure).
 */
#pragma once

#include <systemd/sd-event.h>

#include "daemon/conf.h"
#include "daemon/dispatch.h"

typedef struct Server Server;

/* Opens the socket (or adopts listen_fd >= 0 from socket activation). */
int server_new(sd_event *event, const Config *config, Dispatcher *dispatcher, int listen_fd, Server **ret);
Server *server_free(Server *s);
DEFINE_TRIVIAL_CLEANUP_FUNC(Server, server_free);

unsigned server_n_connections(const Server *s);

/*
 * Begins a drain for shutdown; idempotent. Accepting stops for good (the
 * socket stays open, so a socket from systemd queues connections for the
 * next kekd). Requests already sent are still read, answered and flushed;
 * each connection is closed as soon as it is idle. Idle ones go at once.
 */
void server_drain(Server *s);
