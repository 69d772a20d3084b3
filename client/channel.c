/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The request connection of libkek (see channel.h). Threads and locks:
 *  - callers: any number. Under lock each either sends its request at once
 *    (nothing in flight: alone, as a plain frame) or joins the queue. The
 *    frame is written under write_lock. Then one waiting caller at a time
 *    (the one holding "reading") reads frames from the socket itself and
 *    hands each answer to its callers under lock; the others sleep, each on
 *    its own condition variable, until their answer is delivered, the
 *    reading role is offered to them, or their deadline passes. A lone
 *    caller thus reads its own answer: no thread handoff per request.
 *  - wakeups are targeted: a delivered frame wakes only the callers whose
 *    answers it carried, and a reader that leaves offers the role to one
 *    caller still waiting. Waking all waiters per frame (16 threads, a
 *    batch of 8) cost more client CPU than kekd's work on the items.
 *  - the queue goes out as soon as nothing is in flight, or once it holds
 *    as many requests as are in flight (flushable()), sent by whichever
 *    caller sees that first: the caller whose request filled it, or the
 *    reader that just delivered an answer, before it wakes anyone. So two
 *    generations of requests alternate and kekd finds the next frame
 *    waiting when it answers one. Sending only when nothing was in flight
 *    left kekd idle for a round trip to the client per frame: 16 threads
 *    on one client reached 0.66-0.78 x raw PKCS#11 with it, 0.65-1.08 x
 *    with two generations (kekbench s16, interleaved runs, 2 vCPUs). The
 *    items are packed under lock (a caller's memory is read only while it
 *    cannot leave) and written after.
 *  - flights[] lists the frames sent on this connection and not yet
 *    answered, with their item counts (kekd answers every request frame
 *    once), whether or not their callers still wait: the size rule counts
 *    items kekd still owes, not callers still waiting. Counting callers let
 *    every caller that timed out during a stall make room for another
 *    frame, so frames owed grew with the stall's length (a review measured
 *    54 after 30 timeouts per thread); counted per frame, what is in flight
 *    never exceeds twice the callers (a flush needs as many queued).
 * When the connection dies every sent or queued request fails with
 * -ECONNRESET; the next request reconnects, no sooner than the backoff
 * allows. Library code: it never logs and never prints.
 */
#include "config.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>

#include "client/channel.h"
#include "client/transport.h"
#include "common/kekerr.h"
#include "common/macro.h"
#include "common/secret.h"
#include "proto/blob.h"
#include "proto/frame.h"

#define BACKOFF_MIN_USEC (50 * 1000ULL)
#define BACKOFF_MAX_USEC (5 * 1000 * 1000ULL)

/* A frame's own bytes around its items (id, oneof, lengths), request or answer, with room to spare. */
#define FRAME_OVERHEAD 32u
/* What an answer adds to an item's bytes at most: a blob's header, IV, padding and tag, its framing. */
#define ITEM_GROWTH (BLOB_HEADER_MAX + BLOB_IV_MAX + BLOB_PAD_MAX + BLOB_TAG_MAX + 16u)
/* Items in one coalesced frame at most: each counts at least a refusal's size. */
#define BATCH_ITEMS ((CHANNEL_FRAME_MAX - FRAME_OVERHEAD) / CHANNEL_ITEM_ERROR_MAX)
#define ALONE SIZE_MAX

/* The kinds that coalesce: the request alone, its batch form, and the body of its answer. */
static const struct {
        Kek__Request__BodyCase single, batch;
        Kek__Response__BodyCase answer;
} kinds[] = {
        { KEK__REQUEST__BODY_WRAP, KEK__REQUEST__BODY_BATCH_WRAP, KEK__RESPONSE__BODY_WRAP },
        { KEK__REQUEST__BODY_UNWRAP, KEK__REQUEST__BODY_BATCH_UNWRAP, KEK__RESPONSE__BODY_UNWRAP },
        { KEK__REQUEST__BODY_REWRAP, KEK__REQUEST__BODY_BATCH_REWRAP, KEK__RESPONSE__BODY_REWRAP },
};

typedef struct Flight {
        uint64_t id;
        size_t items;
} Flight;

struct ChannelAnswer {
        Kek__Response *resp;
        unsigned refs;                /* callers holding it; the last frees (and cleanses) it */
};

typedef struct Pending {
        struct Pending *next;
        Kek__Request *req;            /* queued: its item is packed from here */
        int kind;                     /* index into kinds[], -1: never coalesced */
        size_t bound;                 /* bytes it may take in a batch and in its answer */
        uint64_t id;                  /* the frame it went in; 0 while queued */
        size_t index, n;              /* its item in a batch of n; ALONE: sent as a plain frame */
        bool done;
        bool told;                    /* done and signalled: its caller may leave */
        pthread_cond_t cond;          /* its caller sleeps here */
        int error;
        Kek__Response *resp;          /* ALONE: its response */
        ChannelAnswer *shared;        /* batched: the batch's */
} Pending;

struct Channel {
        char socket_path[108];
        uint64_t timeout_usec;
        bool coalesce;

        pthread_mutex_t lock;         /* all below but in */
        pthread_condattr_t cond_attr; /* each caller's cond: CLOCK_MONOTONIC deadlines */
        pthread_mutex_t write_lock;   /* one writer at a time on fd */
        int fd;
        bool connected;
        bool reading;                 /* a caller is reading from fd (owns in) */
        KekReader in;                 /* frames from fd; used by the reader only */
        uint64_t next_id;
        Pending *pending;             /* sent, waiting for their answer */
        Pending *queue, **queue_tail; /* waiting to be sent, oldest first */
        Flight *flights;              /* frames sent, not yet answered */
        size_t n_flights, flights_alloc;
        uint64_t next_connect_usec, backoff_usec;
        uint64_t requests;
        uint64_t wakeups;             /* callers' waits that ended before their deadline (tests) */
        uint64_t futile_wakeups;      /* ... after which the caller found nothing to do and slept again */
};

static uint64_t now_usec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000ULL + (uint64_t) ts.tv_nsec / 1000;
}

int channel_new(const char *socket_path, uint64_t timeout_usec, bool coalesce, Channel **ret) {
        Channel *ch;

        if (strlen(socket_path) >= sizeof(ch->socket_path))
                return -EINVAL;
        ch = calloc(1, sizeof(*ch));
        if (!ch)
                return -ENOMEM;
        strcpy(ch->socket_path, socket_path);
        ch->timeout_usec = timeout_usec;
        ch->coalesce = coalesce;
        ch->fd = -1;
        ch->queue_tail = &ch->queue;
        pthread_mutex_init(&ch->lock, NULL);
        pthread_mutex_init(&ch->write_lock, NULL);
        pthread_condattr_init(&ch->cond_attr);
        pthread_condattr_setclock(&ch->cond_attr, CLOCK_MONOTONIC);
        *ret = ch;
        return 0;
}

Channel *channel_free(Channel *ch) {
        if (!ch)
                return NULL;
        safe_close(ch->fd);
        kek_reader_done(&ch->in);
        free(ch->flights);
        pthread_condattr_destroy(&ch->cond_attr);
        pthread_mutex_destroy(&ch->lock);
        pthread_mutex_destroy(&ch->write_lock);
        free(ch);
        return NULL;
}

uint64_t channel_requests(Channel *ch) {
        uint64_t n;

        pthread_mutex_lock(&ch->lock);
        n = ch->requests;
        pthread_mutex_unlock(&ch->lock);
        return n;
}

/* With ch->lock held: the items kekd still owes answers to, in every frame in flight. */
static size_t flight_items(const Channel *ch) {
        size_t items = 0;

        for (size_t i = 0; i < ch->n_flights; i++)
                items += ch->flights[i].items;
        return items;
}

void channel_in_flight(Channel *ch, size_t *ret_frames, size_t *ret_items) {
        pthread_mutex_lock(&ch->lock);
        *ret_frames = ch->n_flights;
        *ret_items = flight_items(ch);
        pthread_mutex_unlock(&ch->lock);
}

/* With ch->lock held: room for one more frame in flights[]. */
static int flights_reserve(Channel *ch) {
        Flight *f;
        size_t n;

        if (ch->n_flights < ch->flights_alloc)
                return 0;
        n = MAX(ch->flights_alloc * 2, (size_t) 8);
        f = reallocarray(ch->flights, n, sizeof(*f));
        if (!f)
                return -ENOMEM;
        ch->flights = f;
        ch->flights_alloc = n;
        return 0;
}

/* With ch->lock held and flights_reserve() done: frame id with items in it is in flight. */
static void flight_add(Channel *ch, uint64_t id, size_t items) {
        ch->flights[ch->n_flights++] = (Flight) { .id = id, .items = items };
}

/* With ch->lock held: frame id was answered (an id kekd never had is ignored). */
static void flight_done(Channel *ch, uint64_t id) {
        for (size_t i = 0; i < ch->n_flights; i++)
                if (ch->flights[i].id == id) {
                        ch->flights[i] = ch->flights[--ch->n_flights]; /* order does not matter */
                        return;
                }
}

void channel_wakeups(Channel *ch, uint64_t *ret_woken, uint64_t *ret_futile) {
        pthread_mutex_lock(&ch->lock);
        *ret_woken = ch->wakeups;
        *ret_futile = ch->futile_wakeups;
        pthread_mutex_unlock(&ch->lock);
}

/* With ch->lock held: wakes the callers whose requests are done and who were not woken yet. */
static void wake_done(Channel *ch) {
        for (Pending *p = ch->pending; p; p = p->next)
                if (p->done && !p->told) {
                        p->told = true;
                        pthread_cond_signal(&p->cond);
                }
        for (Pending *p = ch->queue; p; p = p->next)
                if (p->done && !p->told) {
                        p->told = true;
                        pthread_cond_signal(&p->cond);
                }
}

/*
 * With ch->lock held, the reading role free: wakes one caller still waiting
 * (not self) to take it, the oldest sent first (its answer comes first).
 * Every caller that gives the role up or leaves calls this, so a role
 * offered to a caller who then finds it taken is offered again when its
 * taker leaves.
 */
static void offer_reading(Channel *ch, const Pending *self) {
        Pending *pick = NULL;

        if (ch->reading || !ch->connected)
                return;
        for (Pending *p = ch->pending; p; p = p->next)
                if (p != self && !p->done)
                        pick = p; /* the list is newest first: the last match is the oldest */
        for (Pending *p = ch->queue; !pick && p; p = p->next)
                if (p != self && !p->done)
                        pick = p;
        if (pick)
                pthread_cond_signal(&pick->cond);
}

static void answer_unref(ChannelAnswer *a) {
        if (a && __atomic_sub_fetch(&a->refs, 1, __ATOMIC_ACQ_REL) == 0) {
                kek_response_free(a->resp);
                free(a);
        }
}

void reply_done(Reply *r) {
        kek_response_free(TAKE_PTR(r->resp));
        answer_unref(TAKE_PTR(r->shared));
        r->body = NULL;
}

/* With ch->lock held: the connection is gone; every sent or queued request fails. */
static void connection_lost(Channel *ch) {
        ch->connected = false;
        ch->n_flights = 0;
        for (Pending *p = ch->pending; p; p = p->next)
                if (!p->done) {
                        p->done = true;
                        p->error = -ECONNRESET;
                }
        for (Pending *p = ch->queue; p; p = p->next)
                if (!p->done) {
                        p->done = true;
                        p->error = -ECONNRESET;
                }
        wake_done(ch);
}

/*
 * With ch->lock held: hands one answer to the callers still waiting for it
 * (a lone one, or a batch's). They are woken later, by wake_done(), once
 * the queue went out.
 */
static void deliver(Channel *ch, Kek__Response *resp) {
        ChannelAnswer *shared = NULL;
        uint64_t id = resp->id;

        if (id != 0)
                flight_done(ch, id);
        for (Pending *p = ch->pending; p; p = p->next) {
                if (p->id != id || p->done)
                        continue;
                p->done = true;
                if (p->index == ALONE) {
                        p->resp = TAKE_PTR(resp);
                        break;
                }
                if (!shared) {
                        shared = malloc(sizeof(*shared));
                        if (!shared) {
                                p->error = -ENOMEM;
                                continue;
                        }
                        *shared = (ChannelAnswer) { .resp = TAKE_PTR(resp) };
                }
                shared->refs++;
                p->shared = shared;
        }
        /* An answer nobody waits for any more (timed out), or a batch's when memory ran out: cleansed. */
        kek_response_free(resp);
}

/*
 * With ch->lock held, ch->reading taken by the caller: reads one frame (lock
 * dropped meanwhile) and delivers it. Returns <0 on timeout (nothing lost:
 * the next reader continues the frame) or when the connection died.
 */
static int read_and_deliver(Channel *ch, const struct timespec *deadline) {
        Kek__Response *resp = NULL;
        int r;

        pthread_mutex_unlock(&ch->lock);
        r = kek_reader_next(&ch->in, deadline, &resp);
        /* Unpacking went through this thread's stack and registers; it may have been an AEK. */
        if (r >= 0)
                secret_scrub_cpu_state();
        pthread_mutex_lock(&ch->lock);
        if (r == -ETIMEDOUT)
                return r;
        if (r < 0) {
                connection_lost(ch);
                return r;
        }
        deliver(ch, resp);
        return 0;
}

/* With ch->lock held: a live connection, or a transient error (kekd down, backoff running). */
static int ensure_connected(Channel *ch) {
        uint64_t now;
        int fd;

        if (ch->connected && !ch->reading && !ch->pending && !ch->queue) {
                /* Nobody reads while idle: notice here a peer that closed the connection meanwhile. */
                struct pollfd pfd = { .fd = ch->fd, .events = POLLIN };

                if (poll(&pfd, 1, 0) > 0 && frame_buf_size(&ch->in.buf) == 0) {
                        uint8_t b;

                        if (recv(ch->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT) <= 0)
                                ch->connected = false;
                }
        }
        if (ch->connected)
                return 0;
        if (ch->reading || ch->pending || ch->queue)
                return -ECONNRESET; /* the old connection's callers have not all left yet */
        if (ch->fd >= 0) {
                safe_close(ch->fd);
                ch->fd = -1;
        }
        kek_reader_done(&ch->in);
        now = now_usec();
        if (now < ch->next_connect_usec)
                return -ECONNREFUSED;
        fd = kek_transport_connect(ch->socket_path);
        if (fd < 0) {
                ch->backoff_usec = MIN(MAX(ch->backoff_usec * 2, BACKOFF_MIN_USEC), BACKOFF_MAX_USEC);
                ch->next_connect_usec = now + ch->backoff_usec;
                return fd;
        }
        ch->fd = fd;
        kek_reader_init(&ch->in, fd);
        ch->connected = true;
        ch->n_flights = 0;
        ch->backoff_usec = 0;
        return 0;
}

static int kind_of(const Kek__Request *req) {
        for (size_t i = 0; i < ELEMENTSOF(kinds); i++)
                if (kinds[i].single == req->body_case)
                        return (int) i;
        return -1;
}

/* The bytes an item may take in a batch frame and in its answer (the larger counts for both). */
static size_t item_bound(const Kek__Request *req, int kind) {
        size_t n = kind == 0 ? kek__wrap_request__get_packed_size(req->wrap)
                   : kind == 1 ? kek__unwrap_request__get_packed_size(req->unwrap)
                               : kek__rewrap_request__get_packed_size(req->rewrap);

        /* + 4: the item's tag and length within the batch */
        return MAX(n + 4 + ITEM_GROWTH, (size_t) CHANNEL_ITEM_ERROR_MAX);
}

static void queue_remove(Channel *ch, Pending *p) {
        for (Pending **q = &ch->queue; *q; q = &(*q)->next)
                if (*q == p) {
                        *q = p->next;
                        if (ch->queue_tail == &p->next)
                                ch->queue_tail = q;
                        return;
                }
}

static bool pending_remove(Channel *ch, Pending *p) {
        for (Pending **q = &ch->pending; *q; q = &(*q)->next)
                if (*q == p) {
                        *q = p->next;
                        return true;
                }
        return false;
}

/*
 * With ch->lock held: packs the queued items of one kind that fit into one
 * frame (a batch, or a plain frame for a single item) and moves them to the
 * pending list. Returns 1 when a frame was packed, 0 for none of this kind,
 * <0 when packing failed (out of memory): those items failed, nothing of
 * them was sent.
 */
static int pack_one(Channel *ch, int kind, FrameBuf *out) {
        Pending *batch[BATCH_ITEMS];
        Kek__WrapRequest *wraps[BATCH_ITEMS];
        Kek__UnwrapRequest *unwraps[BATCH_ITEMS];
        Kek__RewrapRequest *rewraps[BATCH_ITEMS];
        Kek__Request req = KEK__REQUEST__INIT;
        Kek__BatchWrapRequest bw = KEK__BATCH_WRAP_REQUEST__INIT;
        Kek__BatchUnwrapRequest bu = KEK__BATCH_UNWRAP_REQUEST__INIT;
        Kek__BatchRewrapRequest br = KEK__BATCH_REWRAP_REQUEST__INIT;
        size_t n = 0, bytes = FRAME_OVERHEAD;
        uint64_t id;
        int r;

        for (Pending *p = ch->queue; p && n < BATCH_ITEMS; p = p->next)
                if (p->kind == kind && !p->done && bytes + p->bound <= CHANNEL_FRAME_MAX) {
                        bytes += p->bound;
                        wraps[n] = p->req->wrap;
                        unwraps[n] = p->req->unwrap;
                        rewraps[n] = p->req->rewrap;
                        batch[n++] = p;
                }
        if (n == 0)
                return 0;
        id = ++ch->next_id;
        r = flights_reserve(ch); /* out of memory: these fail below, nothing was sent */
        if (r >= 0 && n == 1) {
                batch[0]->req->id = id;
                r = frame_append_message(out, &batch[0]->req->base, FRAME_MAX_LIMIT);
        } else if (r >= 0) {
                req.id = id;
                req.body_case = kinds[kind].batch;
                if (kind == 0) {
                        bw.n_items = n;
                        bw.items = wraps;
                        req.batch_wrap = &bw;
                } else if (kind == 1) {
                        bu.n_items = n;
                        bu.items = unwraps;
                        req.batch_unwrap = &bu;
                } else {
                        br.n_items = n;
                        br.items = rewraps;
                        req.batch_rewrap = &br;
                }
                r = frame_append_message(out, &req.base, FRAME_MAX_LIMIT);
        }
        for (size_t i = 0; i < n; i++) {
                Pending *p = batch[i];

                queue_remove(ch, p);
                if (r < 0) {
                        p->done = true; /* out of memory: these fail, nothing was sent */
                        p->error = r;
                }
                p->id = id;
                p->index = n == 1 ? ALONE : i;
                p->n = n;
                p->next = ch->pending;
                ch->pending = p;
        }
        if (r < 0)
                return r;
        flight_add(ch, id, n);
        return 1;
}

/*
 * With ch->lock held and the queue flushable(): sends every
 * queued request, one frame per kind (more when the limits split them). The
 * lock is dropped while writing; the frames are in flight before that, so
 * nobody else sends the same queue.
 */
static void flush(Channel *ch) {
        struct timespec deadline = kek_deadline_after(ch->timeout_usec);
        FrameBuf out;
        bool failed = false;
        int fd = ch->fd, r;

        frame_buf_init(&out);
        while (ch->queue)
                for (size_t k = 0; k < ELEMENTSOF(kinds); k++)
                        failed |= pack_one(ch, (int) k, &out) < 0;
        if (failed)
                wake_done(ch); /* their callers are done */
        if (frame_buf_size(&out) == 0) {
                frame_buf_done(&out);
                return;
        }
        pthread_mutex_unlock(&ch->lock);
        pthread_mutex_lock(&ch->write_lock);
        r = kek_transport_send_buf(fd, &out, &deadline);
        pthread_mutex_unlock(&ch->write_lock);
        frame_buf_done(&out); /* cleansed: it carried callers' AEKs */
        pthread_mutex_lock(&ch->lock);
        if (r < 0 && ch->fd == fd)
                connection_lost(ch); /* a failed send leaves the stream in an unknown state */
}

/*
 * With ch->lock held: whether the queue may go out now, on the connection fd:
 * at once when nothing is in flight, and while something is, once the queue
 * holds as many requests as kekd still owes answers to (flights[]). So two
 * generations of requests alternate: kekd works on one while the other
 * gathers, and it finds the next frame waiting when it answers, instead of
 * idling for the round trip to the client and back.
 */
static bool flushable(const Channel *ch, int fd) {
        size_t queued = 0;

        if (!ch->queue || !ch->connected || ch->fd != fd)
                return false;
        if (ch->n_flights == 0)
                return true;
        for (const Pending *p = ch->queue; p; p = p->next)
                queued += !p->done;
        return queued >= flight_items(ch);
}

/* The body a coalesced item's answer carries, or its error. */
static int item_result(const Pending *p, Kek__Response__BodyCase want, const void **ret) {
        const Kek__Response *resp = p->shared->resp;
        const Kek__BatchItemResult *it;
        const void *body;
        int r;

        r = kek_response_result(resp, KEK__RESPONSE__BODY_BATCH);
        if (r < 0)
                return r; /* the whole batch refused: as each item would have been alone */
        if (!resp->batch || resp->batch->n_items != p->n)
                return -EBADMSG;
        it = resp->batch->items[p->index];
        if (it->error)
                return kekerr_from_wire((int) it->error->code);
        body = want == KEK__RESPONSE__BODY_WRAP ? (const void *) it->wrap
               : want == KEK__RESPONSE__BODY_UNWRAP ? (const void *) it->unwrap
                                                    : (const void *) it->rewrap;
        if (!body)
                return -EBADMSG;
        *ret = body;
        return 0;
}

/* The body a lone request's response carries (checked against want already). */
static const void *body_of(const Kek__Response *resp) {
        switch (resp->body_case) {
        case KEK__RESPONSE__BODY_WRAP:
                return resp->wrap;
        case KEK__RESPONSE__BODY_UNWRAP:
                return resp->unwrap;
        case KEK__RESPONSE__BODY_REWRAP:
                return resp->rewrap;
        default:
                return NULL;
        }
}

int channel_call(Channel *ch, Kek__Request *req, Kek__Response__BodyCase want, Reply *ret) {
        Pending p = { .req = req, .kind = kind_of(req), .index = ALONE };
        struct timespec deadline = kek_deadline_after(ch->timeout_usec);
        const void *body = NULL;
        bool woken = false;
        int fd, r;

        if (!ch->coalesce)
                p.kind = -1;
        pthread_mutex_lock(&ch->lock);
        r = ensure_connected(ch);
        if (r < 0) {
                pthread_mutex_unlock(&ch->lock);
                return r;
        }
        pthread_cond_init(&p.cond, &ch->cond_attr);
        fd = ch->fd;
        ch->requests++;
        /* Sized only when it may wait: a request on an idle connection goes out without a look at it. */
        if (p.kind >= 0 && (ch->n_flights > 0 || ch->queue) &&
            (p.bound = item_bound(req, p.kind)) + FRAME_OVERHEAD <= CHANNEL_FRAME_MAX) {
                /* Something is in flight: join the next batch. */
                *ch->queue_tail = &p;
                ch->queue_tail = &p.next;
        } else {
                r = flights_reserve(ch);
                if (r < 0) {
                        pthread_mutex_unlock(&ch->lock);
                        pthread_cond_destroy(&p.cond);
                        return r;
                }
                p.id = req->id = ++ch->next_id;
                p.next = ch->pending;
                ch->pending = &p;
                flight_add(ch, p.id, 1);
                pthread_mutex_unlock(&ch->lock);

                pthread_mutex_lock(&ch->write_lock);
                r = kek_transport_send(fd, req, &deadline);
                pthread_mutex_unlock(&ch->write_lock);

                pthread_mutex_lock(&ch->lock);
                if (r < 0 && ch->fd == fd)
                        connection_lost(ch); /* a failed send leaves the stream in an unknown state */
        }
        while (r >= 0 && !p.done) {
                if (flushable(ch, fd)) {
                        woken = false;
                        flush(ch);
                } else if (!ch->reading && ch->connected && ch->fd == fd) {
                        int q;

                        woken = false;
                        ch->reading = true;
                        q = read_and_deliver(ch, &deadline);
                        ch->reading = false;
                        /* The queue goes out now, before anyone is woken and before this caller leaves. */
                        if (flushable(ch, fd))
                                flush(ch);
                        wake_done(ch);
                        if (q == -ETIMEDOUT && !p.done)
                                r = -ETIMEDOUT;
                } else {
                        if (woken)
                                ch->futile_wakeups++; /* woken, but nothing to do: sleeps again */
                        woken = false;
                        if (pthread_cond_timedwait(&p.cond, &ch->lock, &deadline) == ETIMEDOUT) {
                                if (!p.done)
                                        r = -ETIMEDOUT;
                        } else {
                                ch->wakeups++;
                                woken = true;
                        }
                }
        }
        if (!pending_remove(ch, &p))
                queue_remove(ch, &p); /* timed out before its batch went out */
        /* Whoever still waits needs a reader once this caller is gone. */
        offer_reading(ch, &p);
        pthread_mutex_unlock(&ch->lock);
        pthread_cond_destroy(&p.cond);

        if (r >= 0)
                r = p.error;
        if (r >= 0 && p.index == ALONE) {
                r = kek_response_result(p.resp, want);
                body = r >= 0 ? body_of(p.resp) : NULL;
        } else if (r >= 0)
                r = item_result(&p, want, &body);
        if (r < 0) {
                kek_response_free(p.resp);
                answer_unref(p.shared);
                return r;
        }
        *ret = (Reply) { .resp = p.resp, .shared = p.shared, .body = body };
        return 0;
}
