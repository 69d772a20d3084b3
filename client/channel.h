/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libkek's connection to kekd for requests (client/libkek.c): one socket that
 * any number of threads share, requests multiplexed by id, reconnection with
 * backoff, and the coalescing of concurrent requests into batch frames.
 *
 * Coalescing: a wrap, unwrap or rewrap made while a frame is in flight (sent,
 * not yet answered) waits in a queue instead of going out alone. When the
 * flight lands, the queue goes out as batch frames (BatchWrap, BatchUnwrap,
 * BatchRewrap: one per kind, more when kekd's limits need it), which kekd
 * answers item by item. An idle connection sends a request at once, alone
 * and as a plain frame: nothing ever waits for a timer.
 *
 * Invariants:
 *  - Results, errors and deadlines are per caller. One item's refusal reaches
 *    only its caller; a refusal of a whole batch is what each item would have
 *    met alone (a role, kekd out of memory). A caller whose deadline passes
 *    while queued leaves the queue; one whose item is in flight gets
 *    -ETIMEDOUT, and its part of the late answer is freed, cleansed, with
 *    the rest of that answer.
 *  - A batch frame and its answer stay within 4096 bytes, the least max_frame
 *    kekd can be configured with (kekd.conf(5)), counting for every item the
 *    larger of its answer's worst size and a refusal with kekd's longest
 *    message; so kekd never replaces a coalesced answer by "send smaller
 *    batches". An item too large for that goes out alone.
 *  - Callers' plaintexts are packed into a frame buffer and cleansed once
 *    sent, as for a lone request; answers are cleansed when freed.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "proto/kek.pb-c.h"

/* The least max_frame kekd accepts: coalesced frames and their answers fit in it. */
#define CHANNEL_FRAME_MAX 4096u
/* An item's refusal in a BatchResponse: code and message (kekd's are at most 255 bytes), with protobuf framing. */
#define CHANNEL_ITEM_ERROR_MAX (255u + 16u)

typedef struct Channel Channel;
typedef struct ChannelAnswer ChannelAnswer;

/* An answer: a lone request's response, or a batch's shared by the callers whose items it carries. */
typedef struct Reply {
        Kek__Response *resp;          /* a request that went out alone: its response (else NULL) */
        ChannelAnswer *shared;        /* an item of a batch: the batch's answer (else NULL) */
        const void *body;             /* wrap, unwrap, rewrap: the Kek__WrapResponse (etc.) either way */
} Reply;

/* timeout_usec: each call's deadline; coalesce false: every request goes out alone. */
int channel_new(const char *socket_path, uint64_t timeout_usec, bool coalesce, Channel **ret);
Channel *channel_free(Channel *ch);

/*
 * Sends req (its id is set here; a wrap, unwrap or rewrap may go in a batch)
 * and waits for its answer by the channel's timeout. want: the body a
 * success carries; an Error (the request's, or its item's) becomes its
 * negative code. On success the caller releases *ret with reply_done().
 */
int channel_call(Channel *ch, Kek__Request *req, Kek__Response__BodyCase want, Reply *ret);
void reply_done(Reply *r);

/* Requests made through the channel (each wrap, unwrap or rewrap counts, batched or not). */
uint64_t channel_requests(Channel *ch);
/*
 * For the tests: callers' waits that ended before their deadline (woken for
 * their answer or for the reading role), and those of them after which the
 * caller found nothing to do and slept again.
 */
void channel_wakeups(Channel *ch, uint64_t *ret_woken, uint64_t *ret_futile);
/* Tests: the frames sent and not yet answered on the connection, and their items (whether or not their callers wait). */
void channel_in_flight(Channel *ch, size_t *ret_frames, size_t *ret_items);
