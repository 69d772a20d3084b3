/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Unix-socket transport for kekd (see server.h). Single-threaded: the HSM
 * calls run from the event loop, in request order, which is also the order
 * replies must leave in. There is one route from a socket to the dispatcher,
 * server_dispatch(): frames as an array of requests (dispatch_requests()).
 * With [hsm] sessions > 1 the loop first reads every connection that is
 * ready and then hands one frame of each over together (a round, on a
 * lower-priority defer source), so the wrap/unwrap/rewrap requests of
 * different clients share one run over the HSM sessions; with one session
 * nothing could share a run, so each frame is handed over as it is read
 * (an array of one), without a round's extra loop iteration. Either way each
 * connection has at most one request in dispatch and gets its replies in
 * order. Memory per connection is bounded by
 * max_frame + header for input and OUTPUT_HIGH_WATER (plus one reply) for
 * output; past the high-water mark the connection is not read until the peer
 * drains its replies. A watcher's events are bounded by 4 x OUTPUT_HIGH_WATER.
 *
 * The output blocks of all connections together are bounded by [server]
 * max_queued_output (s->out_held is their sum, counted after every flush, so
 * replies on their way out in the same round are not held against anyone):
 * past it the biggest holders are closed (server_enforce_budget()). Output
 * left after a flush means the peer's socket buffer is full, i.e. the peer is
 * not reading. Output and input blocks are freed once drained, and after
 * large ones were freed, malloc_trim() hands the memory back to the system
 * on the next sweep.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <stdio.h>
#include <string.h>
#include <limits.h>
#include <malloc.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include "common/kekerr.h"
#include "daemon/clock.h"
#include "daemon/cryptopool.h"
#include "daemon/log.h"
#include "daemon/metrics.h"
#include "daemon/server.h"

#define READ_CHUNK 16384u
#define OUTPUT_HIGH_WATER (256u * 1024u)
#define SWEEP_INTERVAL_USEC (1 * USEC_PER_SEC)
#define STALL_TIMEOUT_USEC (30 * USEC_PER_SEC)     /* a frame begun but not finished, or replies not read */
#define ACCEPT_PAUSE_USEC (250 * 1000ULL)          /* after EMFILE/ENFILE */
/*
 * glibc keeps freed blocks in its heap (its mmap threshold rises to the size
 * of the largest block freed), so without malloc_trim() the memory of dropped
 * connections stays in kekd's RSS. The blocks of closed connections, and
 * drained blocks from TRIM_BLOCK_MIN on, count towards TRIM_AFTER; smaller
 * drained ones are reused by the next replies anyway.
 */
#define TRIM_BLOCK_MIN (64u * 1024u)
#define TRIM_AFTER (1024u * 1024u)
/* Frames handed to dispatch_requests() in one round; the rest wait for the next round. */
#define ROUND_MAX 256u
/*
 * Descriptors kept for the HSM module: SoftHSM2 opens object files on every
 * refresh, and one it cannot open it treats as gone for the rest of the
 * process, so a key would look deleted. Peers never get these.
 */
#define FD_RESERVE_MAX 64u

typedef struct Conn Conn;

struct Server {
        sd_event *event;
        Dispatcher *dispatcher;
        int listen_fd;
        bool owns_path;
        char *socket_path;
        sd_event_source *listen_source;
        sd_event_source *sweep_source;
        sd_event_source *resume_source;
        sd_event_source *round_source; /* on_round(), enabled when a connection is queued */
        Request *reqs;                 /* ROUND_MAX (one with one session), for server_dispatch() */
        Conn **req_conns;
        int *req_results;
        Conn *round_resume;            /* where the next round starts: after the last full round's end */
        size_t max_frame;
        unsigned max_connections;
        unsigned max_connections_per_uid;
        uint64_t idle_timeout_usec;
        gid_t admin_gid;               /* (gid_t) -1: no admin group */
        gid_t officer_gid;             /* (gid_t) -1: no officer group */
        int fd_limit;                  /* connections get descriptors below this */
        bool draining;
        uint64_t last_fd_warning_usec;
        unsigned n_connections;
        unsigned n_watchers;
        size_t max_queued_output;      /* budget for out_held */
        size_t out_held;               /* sum of the connections' out_held */
        size_t freed_since_trim;       /* bytes of large blocks freed since the last malloc_trim() */
        uint64_t budget_drops;         /* connections closed by server_enforce_budget() */
        Conn *conns;
};

/*
 * Where a connection is in its life. It only moves forward (conn_set_state()),
 * and may skip states:
 *   CONN_OPEN     its requests are read and answered;
 *   CONN_EOF      the peer sent all it will send (it may still read): the
 *                 frames buffered are answered, then it is closing;
 *   CONN_CLOSING  no more requests (its input ended, a framing error, a
 *                 malformed request): the output is flushed, then it is freed;
 *   CONN_DROPPED  closed without sending what is queued for it (conn_drop());
 *                 freed by its own handler or the sweep, never mid-request.
 */
typedef enum ConnState {
        CONN_OPEN,
        CONN_EOF,
        CONN_CLOSING,
        CONN_DROPPED,
} ConnState;

struct Conn {
        Server *server;
        Conn *prev, *next;
        int fd;
        Peer peer;
        sd_event_source *source;
        FrameBuf in, out;
        size_t out_held;        /* out.cap as counted in server->out_held */
        uint64_t progress_usec; /* last time a byte moved either way (monotonic) */
        ConnState state;
        /*
         * Two flags that are not where the connection is in its life: a watcher may be
         * in any state (and is counted in n_watchers until freed), and a frame may wait
         * for a round in any state (a connection dropped while queued leaves the round
         * through conn_settle()).
         */
        bool watching;          /* subscribed to key events */
        uint64_t watch_id;
        bool queued;            /* has a complete frame (frame_len) waiting for the next round */
        size_t frame_len;
};

/* Moves c forward to state (never back: a later state keeps what it implies). */
static void conn_set_state(Conn *c, ConnState state) {
        if (state > c->state)
                c->state = state;
}

/* Counts a freed block towards the next malloc_trim(): every one of a connection closed or dropped, large ones else. */
static void note_freed(Server *s, size_t cap, bool gone) {
        if (gone || cap >= TRIM_BLOCK_MIN)
                s->freed_since_trim += cap;
}

static Conn *conn_free(Conn *c) {
        if (!c)
                return NULL;
        if (c->server) {
                if (c->server->round_resume == c)
                        c->server->round_resume = c->next;
                if (c->prev)
                        c->prev->next = c->next;
                else
                        c->server->conns = c->next;
                if (c->next)
                        c->next->prev = c->prev;
                c->server->n_connections--;
                c->server->n_watchers -= c->watching;
                metrics_set_clients(c->server->dispatcher->metrics, c->server->n_connections, c->server->n_watchers);
                note_freed(c->server, c->in.cap, true);
                note_freed(c->server, c->out.cap, true);
                c->server->out_held -= c->out_held;
                metrics_set_output(c->server->dispatcher->metrics, c->server->out_held, c->server->budget_drops);
        }
        sd_event_source_disable_unref(c->source);
        safe_close(c->fd);
        frame_buf_done(&c->in);
        frame_buf_done(&c->out);
        free(c);
        return NULL;
}

/* Counts c's output block in the server's total as it is now. */
static void conn_account(Conn *c) {
        Server *s = c->server;

        if (!s)
                return;
        s->out_held = s->out_held - c->out_held + c->out.cap;
        c->out_held = c->out.cap;
        metrics_set_output(s->dispatcher->metrics, s->out_held, s->budget_drops);
}

/* Frees c's output block when drained, or moves what is left into a smaller one, and counts it. */
static void conn_shrink_output(Conn *c) {
        size_t cap = c->out.cap;

        frame_buf_shrink(&c->out, 0);
        if (c->server && c->out.cap < cap)
                note_freed(c->server, cap, false);
        conn_account(c);
}

/*
 * Marks c to be closed without sending what is queued for it, and frees
 * that at once. Never frees c: this runs inside other connections' requests
 * (and c's own). The shutdown() ends the peer's stream at once (libkek's
 * watcher reconnects and resyncs) and wakes on_conn_io() with a hangup,
 * which frees c; a connection waiting for a round goes there.
 */
static void conn_drop(Conn *c) {
        size_t cap = c->out.cap;

        conn_set_state(c, CONN_DROPPED);
        frame_buf_done(&c->out);
        if (c->server)
                note_freed(c->server, cap, true);
        conn_account(c);
        (void) shutdown(c->fd, SHUT_RDWR);
}

/* Whether buffered input still needs conn_scan(): a complete frame, a framing error, or leftovers at EOF. */
static bool conn_input_pending(const Conn *c) {
        const uint8_t *p;
        size_t n;

        if (c->state >= CONN_CLOSING)
                return false;
        if (c->state == CONN_EOF)
                return true;
        return frame_parse(frame_buf_head(&c->in), frame_buf_size(&c->in), c->server->max_frame, &p, &n) != 0;
}

static void conn_update_events(Conn *c) {
        uint32_t ev = 0;

        /*
         * A queued connection is not watched at all until its round: reading on would
         * grow its input without bound, and a peer that hung up would make epoll report
         * EPOLLHUP on every iteration, ahead of the lower-priority round, for ever.
         */
        if (c->queued) {
                (void) sd_event_source_set_enabled(c->source, SD_EVENT_OFF);
                return;
        }
        (void) sd_event_source_set_enabled(c->source, SD_EVENT_ON);

        if (c->state == CONN_OPEN && frame_buf_size(&c->out) < OUTPUT_HIGH_WATER)
                ev |= EPOLLIN;
        /* Writability also wakes us for input held back by backpressure: the socket is writable once drained. */
        if (frame_buf_size(&c->out) > 0 || conn_input_pending(c))
                ev |= EPOLLOUT;
        (void) sd_event_source_set_io_events(c->source, ev);
}

/* Writes what the socket takes. Returns <0 if the connection is dead. */
static int conn_flush(Conn *c) {
        int r = 0;

        while (frame_buf_size(&c->out) > 0) {
                ssize_t n = send(c->fd, frame_buf_head(&c->out), frame_buf_size(&c->out), MSG_NOSIGNAL | MSG_DONTWAIT);

                if (n < 0) {
                        if (errno != EAGAIN && errno != EINTR)
                                r = -errno;
                        break;
                }
                frame_buf_consume(&c->out, (size_t) n);
                c->progress_usec = clock_mono_usec();
        }
        conn_shrink_output(c);
        return r;
}

static int cmp_uid_held(const void *a, const void *b) {
        const Conn *x = *(Conn *const *) a, *y = *(Conn *const *) b;

        if (x->peer.uid != y->peer.uid)
                return x->peer.uid < y->peer.uid ? -1 : 1;
        return x->out_held > y->out_held ? -1 : x->out_held < y->out_held;
}

/*
 * Where v (n connections, sorted by cmp_uid_held()) holds the most for one
 * uid: the index of that uid's largest holder, the first of its run.
 */
static size_t pick_victim(Conn **v, size_t n) {
        size_t best = 0, best_sum = 0;

        for (size_t i = 0, j; i < n; i = j) {
                size_t sum = 0;

                for (j = i; j < n && v[j]->peer.uid == v[i]->peer.uid; j++)
                        sum += v[j]->out_held;
                if (sum > best_sum) {
                        best = i;
                        best_sum = sum;
                }
        }
        return best;
}

/*
 * Keeps the output held for all peers within max_queued_output. Past it,
 * the uid holding the most loses its largest holder, again, until 3/4 of
 * the budget is left (so one overrun does not start a drop per event): a
 * user's many connections go before another user's one, and a peer that
 * reads holds nothing, as its output leaves at once. Dropped connections
 * are only marked (conn_drop()); this runs inside requests.
 */
static void server_enforce_budget(Server *s) {
        _cleanup_free_ Conn **v = NULL;
        size_t n = 0, low = s->max_queued_output / 4 * 3, freed = 0;
        unsigned dropped = 0;
        uid_t uid = 0;
        pid_t pid = 0;

        if (s->out_held <= s->max_queued_output)
                return;
        v = malloc(MAX(s->n_connections, 1u) * sizeof(*v));
        for (Conn *c = s->conns; c; c = c->next)
                if (c->state != CONN_DROPPED && c->out_held > 0) {
                        if (v)
                                v[n] = c;
                        n++;
                }
        if (v)
                qsort(v, n, sizeof(*v), cmp_uid_held);
        while (s->out_held > low && n > 0) {
                Conn *victim = NULL;

                if (v) {
                        size_t i = pick_victim(v, n);

                        victim = v[i];
                        memmove(v + i, v + i + 1, (n - i - 1) * sizeof(*v));
                } else
                        /* No memory for the ranking: simply the largest holder. */
                        for (Conn *c = s->conns; c; c = c->next)
                                if (c->state != CONN_DROPPED && c->out_held > 0 && (!victim || c->out_held > victim->out_held))
                                        victim = c;
                n--;
                if (!victim)
                        break;
                if (dropped++ == 0) {
                        uid = victim->peer.uid;
                        pid = victim->peer.pid;
                }
                freed += victim->out_held;
                log_debug("Dropping %s of uid %u pid %d: %zu bytes of output unread", victim->watching ? "watcher" : "connection",
                          (unsigned) victim->peer.uid, (int) victim->peer.pid, victim->out_held);
                conn_drop(victim);
                s->budget_drops++;
        }
        if (dropped == 0)
                return; /* only dropped connections' late replies are over: they go with their sockets */
        metrics_set_output(s->dispatcher->metrics, s->out_held, s->budget_drops);
        log_warning("Output held for peers exceeded max_queued_output=%zu: closed %u connection(s) that did not read "
                    "%zu bytes, first of uid %u pid %d", s->max_queued_output, dropped, freed, (unsigned) uid, (int) pid);
}

static void log_outcome(const Conn *c, const RequestOutcome *o) {
        char key[32 + KEY_NAME_MAX], op[64], uid[32], pid[32], result[64];
        const char *fields[] = { key, op, uid, pid, result, NULL };
        bool serious;

        if (o->error == 0)
                return;
        if (o->reason[0]) {
                /* The one line about a frame that closes the connection; a peer's malformed input, not a fault of kekd. */
                log_warning("Closing connection of uid %u pid %d: %s", (unsigned) c->peer.uid, (int) c->peer.pid,
                            o->reason);
                return;
        }
        serious = o->error == -KEKERR_HSM_UNAVAILABLE || o->error == -KEKERR_INTERNAL ||
                  o->error > -KEKERR_BASE; /* refusals are audit records (daemon/audit.c) */
        if (!serious && log_get_max_level() < LOG_DEBUG)
                return;
        snprintf(key, sizeof(key), "KEK_KEY=%s", o->key);
        snprintf(op, sizeof(op), "KEK_OP=%s", o->op);
        snprintf(uid, sizeof(uid), "PEER_UID=%u", (unsigned) c->peer.uid);
        snprintf(pid, sizeof(pid), "PEER_PID=%d", (int) c->peer.pid);
        snprintf(result, sizeof(result), "RESULT=%s", error_text(o->error));
        log_full(serious ? LOG_WARNING : LOG_DEBUG, o->error, fields, "%s of key '%s' failed", o->op, o->key);
}

/*
 * Looks at the start of c's input, once per frame: 1 when a complete frame
 * is there (*ret_len its payload's length), else 0. At a framing error or at
 * the end of input after the last complete frame, the last reply is queued
 * and c is closing.
 */
static int conn_scan(Conn *c, size_t *ret_len) {
        Server *s = c->server;
        const uint8_t *payload;
        size_t len;
        int r;

        if (c->state >= CONN_CLOSING)
                return 0;
        r = frame_parse(frame_buf_head(&c->in), frame_buf_size(&c->in), s->max_frame, &payload, &len);
        if (r == 1) {
                *ret_len = len;
                return 1;
        }
        if (r == 0 && c->state == CONN_OPEN)
                return 0;
        if (r == 0) {
                /* Every complete frame is answered; only bytes of an unfinished one are an error. */
                if (frame_buf_size(&c->in) > 0)
                        (void) request_append_error(&c->out, s->max_frame, 0, -KEKERR_MALFORMED_REQUEST,
                                                    "connection ended inside a frame (truncated frame)");
        } else {
                log_debug("Closing connection of pid %d: %s", (int) c->peer.pid, error_text(r));
                (void) request_append_error(&c->out, s->max_frame, 0, r,
                                            r == -KEKERR_FRAME_TOO_LARGE ? "frame exceeds max_frame; closing connection"
                                                                          : "zero-length frame; closing connection");
        }
        conn_set_state(c, CONN_CLOSING);
        return 0;
}

/*
 * Queues c for the next round when its input starts with a complete frame
 * and its replies are not backed up (then it is not read until that round);
 * otherwise handles the end of its input. Returns whether it is queued.
 */
static bool conn_queue(Conn *c) {
        if (!c->queued && frame_buf_size(&c->out) < OUTPUT_HIGH_WATER && conn_scan(c, &c->frame_len) == 1) {
                c->queued = true;
                (void) sd_event_source_set_enabled(c->server->round_source, SD_EVENT_ONESHOT);
        }
        return c->queued;
}

/* After one frame of c was dispatched (req): drops it from the input, logs, notes a Watch. Returns <0 to close. */
static int conn_dispatched(Conn *c, const Request *req) {
        Server *s = c->server;
        const RequestOutcome *o = &req->outcome;

        frame_buf_consume(&c->in, FRAME_HEADER_SIZE + req->len);
        log_outcome(c, o);
        if (o->watch && o->error == 0) {
                if (!c->watching)
                        s->n_watchers++;
                metrics_set_clients(s->dispatcher->metrics, s->n_connections, s->n_watchers);
                c->watching = true;
                c->watch_id = o->id;
        }
        if (req->result == -KEKERR_MALFORMED_REQUEST) {
                conn_set_state(c, CONN_CLOSING);
                return 0;
        }
        if (req->result < 0)
                return log_error_errno(req->result, "Failed to queue reply for pid %d", (int) c->peer.pid);
        return 0;
}

static int conn_read(Conn *c) {
        Server *s = c->server;
        uint8_t *tail;
        ssize_t n;
        int r;

        /* Never read past one maximal frame: a hostile length cannot grow the buffer further. */
        size_t room = MIN((size_t) READ_CHUNK, s->max_frame + FRAME_HEADER_SIZE);

        r = frame_buf_reserve(&c->in, room, &tail);
        if (r < 0)
                return r;
        n = recv(c->fd, tail, room, MSG_DONTWAIT);
        if (n < 0)
                return errno == EAGAIN || errno == EINTR ? 0 : -errno;
        if (n == 0) {
                conn_set_state(c, CONN_EOF);
                return 0;
        }
        frame_buf_commit(&c->in, (size_t) n);
        c->progress_usec = clock_mono_usec();
        return 0;
}

/*
 * An empty input buffer is freed: an idle connection (a watcher, say) then
 * holds no block at all, and one large frame does not keep its block for the
 * life of the connection. Only when empty: no frame of it can be waiting in
 * a round.
 */
static void conn_shrink_input(Conn *c) {
        size_t cap = c->in.cap;

        if (frame_buf_size(&c->in) > 0)
                return;
        frame_buf_shrink(&c->in, 0);
        if (c->in.cap < cap)
                note_freed(c->server, cap, false);
}

/* Nothing buffered either way, and nothing waiting in the socket: closing now loses no request. */
static bool conn_idle(Conn *c) {
        uint8_t b;
        ssize_t n;

        if (frame_buf_size(&c->in) > 0 || frame_buf_size(&c->out) > 0)
                return false;
        n = recv(c->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
        return n == 0 || (n < 0 && errno == EAGAIN);
}

/*
 * Ends c's turn (an event on it, or its part in a round; r < 0: it failed):
 * flushes what it can, and frees c when it is done, else watches it for
 * what it needs next. The only place a connection is closed outside the sweep.
 */
static void conn_settle(Conn *c, int r) {
        if (r >= 0)
                r = conn_flush(c);
        server_enforce_budget(c->server); /* may drop c */
        /* A peer that hung up entirely makes send() fail, so EPOLLHUP cannot keep us spinning here. */
        if (r < 0 || c->state == CONN_DROPPED || (c->state == CONN_CLOSING && frame_buf_size(&c->out) == 0) || (c->server->draining && conn_idle(c))) {
                conn_free(c);
                return;
        }
        conn_shrink_input(c);
        conn_update_events(c);
}

/*
 * The only way a frame reaches the dispatcher: the first frame of each of
 * the n connections (each scanned by conn_scan(), c->frame_len), as one
 * array of requests (dispatch.h). rs[i] is conn_dispatched()'s result for
 * conns[i]: < 0 when it must close.
 */
static void server_dispatch(Server *s, Conn **conns, size_t n, int *rs) {
        for (size_t i = 0; i < n; i++)
                request_init(&s->reqs[i], &conns[i]->peer, frame_buf_head(&conns[i]->in) + FRAME_HEADER_SIZE,
                             conns[i]->frame_len, &conns[i]->out);
        dispatch_requests(s->dispatcher, s->reqs, n);
        for (size_t i = 0; i < n; i++)
                rs[i] = conn_dispatched(conns[i], &s->reqs[i]);
}

static int on_conn_io(sd_event_source *source, int fd, uint32_t revents, void *userdata) {
        Conn *c = userdata;
        int r = 0;

        if (c->state == CONN_DROPPED) {
                conn_free(c);
                return 0;
        }
        if ((revents & (EPOLLIN | EPOLLHUP | EPOLLERR)) && c->state == CONN_OPEN &&
            frame_buf_size(&c->out) < OUTPUT_HIGH_WATER)
                r = conn_read(c);
        if (r >= 0 && c->server->round_source)
                (void) conn_queue(c); /* for the next round */
        else
                /* One session: no other client's calls could share the run; each frame is dispatched as read. */
                while (r >= 0 && frame_buf_size(&c->out) < OUTPUT_HIGH_WATER && conn_scan(c, &c->frame_len) == 1)
                        server_dispatch(c->server, &c, 1, &r);
        conn_settle(c, r);
        return 0;
}

/*
 * One round, the only way a frame reaches the dispatcher: the first frame
 * of every queued connection, as one array of requests (dispatch.h), so the
 * HSM calls of different clients' wraps, unwraps and rewraps run together
 * over the HSM sessions. It runs after every ready connection was read (a
 * defer source below their priority). A connection with another complete
 * frame stays queued for the next round; so each has at most one request in
 * dispatch and gets its replies in order.
 */
static int on_round(sd_event_source *source, void *userdata) {
        Server *s = userdata;
        Conn *start = s->round_resume ? s->round_resume : s->conns;
        size_t n = 0;
        bool more = false;

        /*
         * Once around the list from where the last full round stopped, so no connection waits
         * behind ROUND_MAX others; at most n_connections steps, as connections may go meanwhile.
         */
        s->round_resume = NULL;
        for (unsigned steps = s->n_connections; start && steps > 0; steps--) {
                Conn *c = start, *next = c->next;  /* never c, and only c can be freed below */

                start = next ? next : s->conns;
                if (!c->queued)
                        continue;
                if (n == ROUND_MAX) {
                        s->round_resume = c;
                        more = true;
                        break;
                }
                if (c->state < CONN_CLOSING) {
                        s->req_conns[n++] = c;
                        continue;
                }
                c->queued = false;
                conn_settle(c, 0); /* may free c */
                start = next ? next : s->conns;
        }
        if (n > 0)
                server_dispatch(s, s->req_conns, n, s->req_results);
        for (size_t i = 0; i < n; i++) {
                Conn *c = s->req_conns[i];
                int r = s->req_results[i];

                c->queued = false;
                if (r >= 0 && conn_queue(c))
                        more = true;
                conn_settle(c, r);
        }
        /* Queued connections this round did not reach (ROUND_MAX) or that have more frames. */
        if (more)
                (void) sd_event_source_set_enabled(source, SD_EVENT_ONESHOT);
        return 0;
}

/*
 * The peer's identity and roles from its socket credentials (access.h):
 * SO_PEERCRED for uid, gid and pid, SO_PEERGROUPS for the supplementary
 * groups. A peer whose groups cannot be read gets no group-based role.
 */
static void peer_identify(const Server *s, int fd, const struct ucred *cred, Peer *ret) {
        _cleanup_free_ gid_t *groups = NULL;
        socklen_t len = PEER_GROUPS_MAX * sizeof(gid_t);
        const AccessConfig a = { .self_uid = geteuid(), .admin_gid = s->admin_gid, .officer_gid = s->officer_gid };
        size_t n = 0;

        /* Any failure leaves the peer with no supplementary groups: a buffer the kernel did
         * not fill must never be read as group ids (they could match admin_gid). */
        groups = malloc(len);
        if (groups) {
                if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &len) >= 0)
                        n = len / sizeof(gid_t);
                else if (errno == ERANGE) {
                        /* More groups than we keep for grants: read them all for the role decision. */
                        gid_t *more = realloc(groups, len);

                        if (more) {
                                groups = more;
                                if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &len) >= 0)
                                        n = len / sizeof(gid_t);
                        }
                }
        }
        peer_init(ret, &a, cred->uid, cred->gid, cred->pid, groups, n);
}

/* A refused connection gets one error frame (id 0) before it is closed, so the client can say why. */
static void refuse_connection(int fd, size_t max_frame, int error, const char *message) {
        FrameBuf out;

        frame_buf_init(&out);
        if (request_append_error(&out, max_frame, 0, error, message) >= 0)
                (void) send(fd, frame_buf_head(&out), frame_buf_size(&out), MSG_NOSIGNAL | MSG_DONTWAIT);
        frame_buf_done(&out);
}

static unsigned connections_of(const Server *s, uid_t uid) {
        unsigned n = 0;

        for (const Conn *c = s->conns; c; c = c->next)
                n += c->peer.uid == uid && c->state != CONN_DROPPED;
        return n;
}

static int on_accept(sd_event_source *source, int fd, uint32_t revents, void *userdata) {
        Server *s = userdata;
        _cleanup_close_ int cfd = -1;
        struct ucred cred;
        socklen_t len = sizeof(cred);
        Conn *c;
        int r;

        cfd = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (cfd < 0) {
                if (errno == EMFILE || errno == ENFILE) {
                        /* The pending connection stays queued and the level-triggered source would fire
                         * at once again: stop accepting for a moment instead of spinning. */
                        log_warning_errno(-errno, "Out of file descriptors; not accepting for %llu ms",
                                          (unsigned long long) (ACCEPT_PAUSE_USEC / 1000));
                        (void) sd_event_source_set_enabled(s->listen_source, SD_EVENT_OFF);
                        (void) sd_event_source_set_time_relative(s->resume_source, ACCEPT_PAUSE_USEC);
                        (void) sd_event_source_set_enabled(s->resume_source, SD_EVENT_ONESHOT);
                } else if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
                        log_warning_errno(-errno, "accept() failed");
                return 0;
        }
        if (cfd >= s->fd_limit) {
                uint64_t now = clock_mono_usec();

                if (now - s->last_fd_warning_usec >= USEC_PER_SEC) {
                        log_warning("Refusing connections: descriptors above %d are kept for the HSM "
                                    "(raise LimitNOFILE or lower max_connections)", s->fd_limit);
                        s->last_fd_warning_usec = now;
                }
                return 0;
        }
        if (getsockopt(cfd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
                return log_warning_errno(-errno, "Cannot read peer credentials; dropping connection"), 0;
        if (s->n_connections >= s->max_connections) {
                log_warning("Refusing connection of uid %u pid %d: max_connections=%u reached", (unsigned) cred.uid,
                            (int) cred.pid, s->max_connections);
                refuse_connection(cfd, s->max_frame, -KEKERR_LIMIT_EXCEEDED, "kekd serves max_connections connections already; retry later");
                return 0;
        }
        if (connections_of(s, cred.uid) >= s->max_connections_per_uid) {
                char msg[128];

                /* One user's processes cannot take every connection: the others keep being served. */
                log_warning("Refusing connection of uid %u pid %d: max_connections_per_uid=%u reached", (unsigned) cred.uid,
                            (int) cred.pid, s->max_connections_per_uid);
                snprintf(msg, sizeof(msg), "uid %u has max_connections_per_uid=%u connections already; close some or retry later",
                         (unsigned) cred.uid, s->max_connections_per_uid);
                refuse_connection(cfd, s->max_frame, -KEKERR_LIMIT_EXCEEDED, msg);
                return 0;
        }

        c = calloc(1, sizeof(*c));
        if (!c)
                return log_error_errno(-ENOMEM, "Cannot accept connection"), 0;
        c->fd = TAKE_FD(cfd);
        peer_identify(s, c->fd, &cred, &c->peer);
        c->progress_usec = clock_mono_usec();
        frame_buf_init(&c->in);
        frame_buf_init(&c->out);
        r = sd_event_add_io(s->event, &c->source, c->fd, EPOLLIN, on_conn_io, c);
        if (r < 0) {
                conn_free(c);
                return log_error_errno(r, "Cannot watch connection"), 0;
        }
        c->server = s;
        c->next = s->conns;
        if (s->conns)
                s->conns->prev = c;
        s->conns = c;
        s->n_connections++;
        metrics_set_clients(s->dispatcher->metrics, s->n_connections, s->n_watchers);
        log_debug("Connection from uid %u gid %u pid %d", (unsigned) cred.uid, (unsigned) cred.gid, (int) cred.pid);
        return 0;
}

static int socket_open(const Config *config, int *ret_fd) {
        _cleanup_close_ int fd = -1;
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        struct stat st;
        gid_t gid = (gid_t) -1;

        if (strlen(config->socket_path) >= sizeof(sa.sun_path))
                return log_error_errno(-ENAMETOOLONG, "Socket path %s is too long", config->socket_path);
        strcpy(sa.sun_path, config->socket_path);

        if (config->socket_group) {
                struct group *g = getgrnam(config->socket_group);

                if (!g)
                        return log_error_errno(-ESRCH, "socket_group '%s' does not exist", config->socket_group);
                gid = g->gr_gid;
        }

        /* Replace a stale socket of a previous run, never any other kind of file, nor a live one. */
        if (lstat(sa.sun_path, &st) == 0) {
                _cleanup_close_ int probe = -1;

                if (!S_ISSOCK(st.st_mode))
                        return log_error_errno(-EEXIST, "%s exists and is not a socket; refusing to replace it", sa.sun_path);
                probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
                if (probe >= 0 && connect(probe, (struct sockaddr *) &sa, sizeof(sa)) == 0)
                        return log_error_errno(-EADDRINUSE, "Another process is serving on %s; not replacing it", sa.sun_path);
                if (unlink(sa.sun_path) < 0)
                        return log_error_errno(-errno, "Cannot remove stale socket %s", sa.sun_path);
        }

        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return log_error_errno(-errno, "socket(AF_UNIX) failed");
        {
                /* Create the node with its final mode (never wider), so no chmod by path is needed:
                 * a path-based chmod could follow a symlink swapped in by someone else. */
                mode_t old = umask(~config->socket_mode & 0777);
                int r = bind(fd, (struct sockaddr *) &sa, sizeof(sa));
                int e = errno;

                umask(old);
                if (r < 0)
                        return log_error_errno(-e, "Cannot bind %s", sa.sun_path);
        }
        if (gid != (gid_t) -1 && lchown(sa.sun_path, (uid_t) -1, gid) < 0)
                return log_error_errno(-errno, "Cannot give %s to group %s", sa.sun_path, config->socket_group);
        if (listen(fd, SOMAXCONN) < 0)
                return log_error_errno(-errno, "listen() on %s failed", sa.sun_path);
        *ret_fd = TAKE_FD(fd);
        return 0;
}

/* Keystore change callback: one event to every watcher; a watcher that does not read is dropped. */

static void on_key_change(const char *name, const Key *old, const Key *k, void *userdata) {
        Server *s = userdata;

        /* Further tokens are stale until a sync after this change (daemon/tokenset.h). */
        tokenset_note_change(s->dispatcher->tokens);

        for (Conn *c = s->conns; c; c = c->next) {
                bool sees;

                if (!c->watching || c->state >= CONN_CLOSING)
                        continue;
                /*
                 * A peer hears only of keys it may see. One that may no longer unwrap with the key (a
                 * revoked grant) hears "gone", which makes libkek drop the key's cached AEKs.
                 */
                sees = access_sees(&c->peer, k);
                if (old && access_may(&c->peer, old, GRANT_UNWRAP) && !access_may(&c->peer, k, GRANT_UNWRAP))
                        sees = false;
                else if (!sees && !access_sees(&c->peer, old))
                        continue;
                /* This may run inside a request of any connection, c included: mark, never free here. */
                if (c->state == CONN_DROPPED)
                        continue;
                if (frame_buf_size(&c->out) > 4 * OUTPUT_HIGH_WATER ||
                    dispatch_append_event(&c->out, s->max_frame, c->watch_id, name, sees ? k : NULL) < 0 ||
                    conn_flush(c) < 0) {
                        log_debug("Dropping watcher pid %d: not reading its events", (int) c->peer.pid);
                        conn_drop(c);
                }
                conn_update_events(c);
        }
        server_enforce_budget(s);
}

static int on_resume_accept(sd_event_source *source, uint64_t usec, void *userdata) {
        Server *s = userdata;

        if (!s->draining)
                (void) sd_event_source_set_enabled(s->listen_source, SD_EVENT_ON);
        return 0;
}

/*
 * Closes connections that hold resources without progress: idle beyond
 * idle_timeout, a frame begun and not finished, or replies not read, for
 * STALL_TIMEOUT_USEC. Slots and buffers go back to peers that use them.
 */
static int on_sweep(sd_event_source *source, uint64_t usec, void *userdata) {
        Server *s = userdata;
        uint64_t now = clock_mono_usec();

        for (Conn *c = s->conns, *next; c; c = next) {
                bool busy = frame_buf_size(&c->in) > 0 || frame_buf_size(&c->out) > 0;
                uint64_t limit = busy ? STALL_TIMEOUT_USEC : s->idle_timeout_usec;

                next = c->next;
                /* A watcher waits for events: idle is its normal state. */
                if (c->state != CONN_DROPPED && (now - c->progress_usec < limit || (c->watching && !busy)))
                        continue;
                log_debug("Closing %s connection of pid %d", busy ? "stalled" : "idle", (int) c->peer.pid);
                conn_free(c);
        }
        if (s->freed_since_trim >= TRIM_AFTER) {
                (void) malloc_trim(0);
                s->freed_since_trim = 0;
        }
        (void) sd_event_source_set_time_relative(source, SWEEP_INTERVAL_USEC);
        (void) sd_event_source_set_enabled(source, SD_EVENT_ONESHOT);
        return 0;
}

int server_new(sd_event *event, const Config *config, Dispatcher *dispatcher, int listen_fd, Server **ret) {
        _cleanup_(server_freep) Server *s = NULL;
        int r;

        s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        s->event = sd_event_ref(event);
        s->dispatcher = dispatcher;
        s->max_frame = config->max_frame;
        s->max_connections = config->max_connections;
        s->max_connections_per_uid = config->max_connections_per_uid;
        s->max_queued_output = config->max_queued_output;
        s->idle_timeout_usec = (uint64_t) config->idle_timeout * USEC_PER_SEC;
        s->listen_fd = -1;
        s->admin_gid = (gid_t) -1;
        s->officer_gid = (gid_t) -1;
        {
                struct rlimit rl;

                if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > INT_MAX)
                        rl.rlim_cur = 1024;
                s->fd_limit = (int) (rl.rlim_cur - MIN((rlim_t) FD_RESERVE_MAX, rl.rlim_cur / 2));
        }
        if (config->admin_group) {
                struct group *g = getgrnam(config->admin_group);

                if (!g)
                        return log_error_errno(-ESRCH, "admin_group '%s' does not exist", config->admin_group);
                s->admin_gid = g->gr_gid;
        }
        if (config->officer_group) {
                struct group *g = getgrnam(config->officer_group);

                if (!g)
                        return log_error_errno(-ESRCH, "officer_group '%s' does not exist", config->officer_group);
                s->officer_gid = g->gr_gid;
        }

        if (listen_fd >= 0) {
                s->listen_fd = listen_fd;
                r = fcntl(listen_fd, F_SETFL, fcntl(listen_fd, F_GETFL) | O_NONBLOCK);
                if (r < 0)
                        return -errno;
        } else {
                r = socket_open(config, &s->listen_fd);
                if (r < 0)
                        return r;
                s->socket_path = strdup(config->socket_path);
                if (!s->socket_path)
                        return -ENOMEM;
                s->owns_path = true;
        }
        r = sd_event_add_io(event, &s->listen_source, s->listen_fd, EPOLLIN, on_accept, s);
        if (r < 0)
                return log_error_errno(r, "Cannot watch listening socket");
        keystore_set_change_callback(dispatcher->keystore, on_key_change, s);
        r = sd_event_add_time_relative(event, &s->sweep_source, CLOCK_MONOTONIC, SWEEP_INTERVAL_USEC, 0, on_sweep, s);
        if (r >= 0)
                r = sd_event_add_time_relative(event, &s->resume_source, CLOCK_MONOTONIC, ACCEPT_PAUSE_USEC, 0,
                                               on_resume_accept, s);
        if (r >= 0)
                r = sd_event_source_set_enabled(s->resume_source, SD_EVENT_OFF);
        if (r < 0)
                return log_error_errno(r, "Cannot set up connection timers");
        s->reqs = calloc(ROUND_MAX, sizeof(*s->reqs));
        s->req_conns = calloc(ROUND_MAX, sizeof(*s->req_conns));
        s->req_results = calloc(ROUND_MAX, sizeof(*s->req_results));
        if (!s->reqs || !s->req_conns || !s->req_results)
                return -ENOMEM;
        if (crypto_pool_sessions(dispatcher->pool) > 1) {
                r = sd_event_add_defer(event, &s->round_source, on_round, s);
                /* After every ready connection was read: they are all at priority NORMAL. */
                if (r >= 0)
                        r = sd_event_source_set_priority(s->round_source, SD_EVENT_PRIORITY_NORMAL + 10);
                if (r >= 0)
                        r = sd_event_source_set_enabled(s->round_source, SD_EVENT_OFF);
                if (r < 0)
                        return log_error_errno(r, "Cannot set up request rounds");
        }
        *ret = TAKE_PTR(s);
        return 0;
}

Server *server_free(Server *s) {
        if (!s)
                return NULL;
        if (s->dispatcher)
                keystore_set_change_callback(s->dispatcher->keystore, NULL, NULL);
        while (s->conns)
                conn_free(s->conns);
        sd_event_source_disable_unref(s->listen_source);
        sd_event_source_disable_unref(s->sweep_source);
        sd_event_source_disable_unref(s->resume_source);
        sd_event_source_disable_unref(s->round_source);
        free(s->reqs);
        free(s->req_conns);
        free(s->req_results);
        safe_close(s->listen_fd);
        if (s->owns_path)
                (void) unlink(s->socket_path);
        free(s->socket_path);
        sd_event_unref(s->event);
        free(s);
        return NULL;
}

unsigned server_n_connections(const Server *s) {
        return s->n_connections;
}

void server_drain(Server *s) {
        if (!s || s->draining)
                return;
        s->draining = true;
        (void) sd_event_source_set_enabled(s->listen_source, SD_EVENT_OFF);
        (void) sd_event_source_set_enabled(s->resume_source, SD_EVENT_OFF);
        /* Called from the event loop between requests: freeing here cannot pull a connection from under a handler. */
        for (Conn *c = s->conns, *next; c; c = next) {
                next = c->next;
                if (conn_idle(c))
                        conn_free(c);
        }
}
