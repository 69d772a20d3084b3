/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * kek-slow: slow readers and a fast event source, for tests of the memory
 * kekd holds for peers that do not read (tests/integration/slow-readers.sh).
 *
 *   kek-slow SOCKET hold N watch|status:K MS
 *     Opens N connections and sends on each a WatchRequest, or K pipelined
 *     StatusRequests (each answered with the whole metrics text, a few KB),
 *     then never reads. Prints "ready N" once all are sent, then
 *     "closed C" each time the number of connections kekd has closed
 *     changes (seen with POLLRDHUP, without reading), and exits with
 *     "all-closed", or with "open M" after MS milliseconds.
 *   kek-slow SOCKET follow E MS
 *     A watcher that reads: subscribes and reads events until it has E of
 *     them (the first, empty one not counted), kekd closes the connection,
 *     or MS milliseconds pass; prints "events X done|closed|open".
 *   kek-slow SOCKET toggle KEY COUNT
 *     Sends COUNT SetEnabled requests for KEY, disable and enable in turn,
 *     each after the answer to the one before; one that fails (a transient
 *     HSM error) is sent again, up to RETRIES times. Prints "ok X retried Y"
 *     and exits 0 when all COUNT succeeded. Each one is a key event for every
 *     watcher, at the cost of one token write.
 *
 * Every loop is bounded: by N and K, by MS, and by COUNT with a poll
 * timeout that ends the run after 60 s without a response.
 */
#include "config.h"

#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "proto/frame.h"
#include "proto/kek.pb-c.h"

#define RETRIES 5u
#define N_MAX 4096u

static int connect_to(const char *path) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        int fd;

        if (strlen(path) >= sizeof(sa.sun_path))
                return -ENAMETOOLONG;
        strcpy(sa.sun_path, path);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        if (connect(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0) {
                int r = -errno;

                close(fd);
                return r;
        }
        return fd;
}

static int send_all(int fd, const uint8_t *p, size_t n) {
        while (n > 0) {
                ssize_t w = send(fd, p, n, MSG_NOSIGNAL);

                if (w < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                p += w;
                n -= (size_t) w;
        }
        return 0;
}

static int send_request(int fd, Kek__Request *req) {
        FrameBuf b;
        int r;

        frame_buf_init(&b);
        r = frame_append_message(&b, &req->base, FRAME_MAX_LIMIT);
        if (r >= 0)
                r = send_all(fd, frame_buf_head(&b), frame_buf_size(&b));
        frame_buf_done(&b);
        return r;
}

static uint64_t now_msec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000 + (uint64_t) ts.tv_nsec / 1000000;
}

static int hold(const char *path, unsigned n, const char *what, unsigned long ms) {
        static struct pollfd fds[N_MAX];
        unsigned long k = 0;
        unsigned closed = 0, reported = 0;
        uint64_t end;

        if (n == 0 || n > N_MAX)
                return 2;
        if (strncmp(what, "status:", 7) == 0)
                k = strtoul(what + 7, NULL, 10);
        else if (strcmp(what, "watch") != 0)
                return 2;
        for (unsigned i = 0; i < n; i++) {
                Kek__Request req = KEK__REQUEST__INIT;
                Kek__WatchRequest w = KEK__WATCH_REQUEST__INIT;
                Kek__StatusRequest st = KEK__STATUS_REQUEST__INIT;
                FrameBuf b;
                int fd = connect_to(path), r = 0;

                if (fd < 0) {
                        fprintf(stderr, "kek-slow: connect %s: %s\n", path, strerror(-fd));
                        return 3;
                }
                fds[i] = (struct pollfd) { .fd = fd, .events = POLLRDHUP };
                /* All frames in one send: one small send each would fill the socket with skb overhead. */
                frame_buf_init(&b);
                if (k == 0) {
                        req.id = 1;
                        req.body_case = KEK__REQUEST__BODY_WATCH;
                        req.watch = &w;
                        r = frame_append_message(&b, &req.base, FRAME_MAX_LIMIT);
                }
                for (unsigned long j = 0; j < k && r >= 0; j++) {
                        req.id = j + 1;
                        req.body_case = KEK__REQUEST__BODY_STATUS;
                        req.status = &st;
                        r = frame_append_message(&b, &req.base, FRAME_MAX_LIMIT);
                }
                if (r >= 0)
                        r = send_all(fd, frame_buf_head(&b), frame_buf_size(&b));
                frame_buf_done(&b);
                if (r < 0) {
                        fprintf(stderr, "kek-slow: send: %s\n", strerror(-r));
                        return 3;
                }
        }
        printf("ready %u\n", n);
        fflush(stdout);

        end = now_msec() + ms;
        while (closed < n) {
                uint64_t t = now_msec();

                if (t >= end)
                        break;
                if (poll(fds, n, (int) MIN(end - t, (uint64_t) 1000)) < 0 && errno != EINTR)
                        return 4;
                for (unsigned i = 0; i < n; i++)
                        if (fds[i].fd >= 0 && (fds[i].revents & (POLLRDHUP | POLLHUP | POLLERR))) {
                                close(fds[i].fd);
                                fds[i].fd = -1; /* poll() skips it from now on */
                                closed++;
                        }
                if (closed != reported) {
                        printf("closed %u\n", closed);
                        fflush(stdout);
                        reported = closed;
                }
        }
        if (closed == n)
                printf("all-closed\n");
        else
                printf("open %u\n", n - closed);
        for (unsigned i = 0; i < n; i++)
                if (fds[i].fd >= 0)
                        close(fds[i].fd);
        return 0;
}

static int follow(const char *path, unsigned long want, unsigned long ms) {
        Kek__Request req = KEK__REQUEST__INIT;
        Kek__WatchRequest w = KEK__WATCH_REQUEST__INIT;
        unsigned long events = 0;
        const char *how = "open";
        uint64_t end = now_msec() + ms;
        FrameBuf in;
        int fd = connect_to(path);

        if (fd < 0) {
                fprintf(stderr, "kek-slow: connect %s: %s\n", path, strerror(-fd));
                return 3;
        }
        req.id = 1;
        req.body_case = KEK__REQUEST__BODY_WATCH;
        req.watch = &w;
        if (send_request(fd, &req) < 0) {
                close(fd);
                return 3;
        }
        frame_buf_init(&in);
        while (events < want) {
                struct pollfd p = { .fd = fd, .events = POLLIN };
                const uint8_t *payload;
                uint64_t t = now_msec();
                uint8_t *tail;
                size_t len;
                ssize_t n;

                if (t >= end || poll(&p, 1, (int) MIN(end - t, (uint64_t) 1000)) < 0)
                        break;
                if (!(p.revents & (POLLIN | POLLHUP | POLLERR)))
                        continue;
                if (frame_buf_reserve(&in, 65536, &tail) < 0)
                        break;
                n = recv(fd, tail, 65536, 0);
                if (n <= 0) {
                        how = "closed";
                        break;
                }
                frame_buf_commit(&in, (size_t) n);
                while (frame_parse(frame_buf_head(&in), frame_buf_size(&in), FRAME_MAX_LIMIT, &payload, &len) == 1) {
                        Kek__Response *resp = kek__response__unpack(NULL, len, payload);

                        if (resp && resp->body_case == KEK__RESPONSE__BODY_EVENT && resp->event->key[0])
                                events++;
                        if (resp)
                                kek__response__free_unpacked(resp, NULL);
                        frame_buf_consume(&in, FRAME_HEADER_SIZE + len);
                }
        }
        if (events >= want)
                how = "done";
        frame_buf_done(&in);
        close(fd);
        printf("events %lu %s\n", events, how);
        return 0;
}

static int toggle(const char *path, const char *key, unsigned long count) {
        unsigned long ok = 0, retried = 0;
        FrameBuf in;
        int fd = connect_to(path);

        if (fd < 0) {
                fprintf(stderr, "kek-slow: connect %s: %s\n", path, strerror(-fd));
                return 3;
        }
        frame_buf_init(&in);
        for (unsigned long i = 0; i < count; i++) {
                Kek__Request req = KEK__REQUEST__INIT;
                Kek__SetEnabledRequest s = KEK__SET_ENABLED_REQUEST__INIT;
                bool done = false;

                s.key = (char *) key;
                s.enabled = i % 2 == 1; /* disable first: the key starts enabled */
                req.id = i + 1;
                req.body_case = KEK__REQUEST__BODY_SET_ENABLED;
                req.set_enabled = &s;
                /* A transient HSM error (SoftHSM2 under load) is retried: every change must be one event. */
                for (unsigned attempt = 0; attempt < RETRIES && !done; attempt++) {
                        const uint8_t *payload;
                        size_t len;
                        int r;

                        if (attempt > 0)
                                retried++;
                        if (send_request(fd, &req) < 0)
                                goto out;
                        while ((r = frame_parse(frame_buf_head(&in), frame_buf_size(&in), FRAME_MAX_LIMIT, &payload, &len)) == 0) {
                                struct pollfd p = { .fd = fd, .events = POLLIN };
                                uint8_t *tail;
                                ssize_t n;

                                if (poll(&p, 1, 60000) <= 0 || frame_buf_reserve(&in, 65536, &tail) < 0)
                                        goto out;
                                n = recv(fd, tail, 65536, 0);
                                if (n <= 0)
                                        goto out;
                                frame_buf_commit(&in, (size_t) n);
                        }
                        if (r < 0)
                                goto out;
                        {
                                Kek__Response *resp = kek__response__unpack(NULL, len, payload);

                                done = resp && resp->body_case == KEK__RESPONSE__BODY_KEY_INFO;
                                if (resp)
                                        kek__response__free_unpacked(resp, NULL);
                        }
                        frame_buf_consume(&in, FRAME_HEADER_SIZE + len);
                }
                if (!done)
                        break;
                ok++;
        }
out:
        frame_buf_done(&in);
        close(fd);
        printf("ok %lu retried %lu\n", ok, retried);
        return ok == count ? 0 : 1;
}

int main(int argc, char *argv[]) {
        setvbuf(stdout, NULL, _IOLBF, 0);
        if (argc == 6 && strcmp(argv[2], "hold") == 0)
                return hold(argv[1], (unsigned) strtoul(argv[3], NULL, 10), argv[4], strtoul(argv[5], NULL, 10));
        if (argc == 5 && strcmp(argv[2], "follow") == 0)
                return follow(argv[1], strtoul(argv[3], NULL, 10), strtoul(argv[4], NULL, 10));
        if (argc == 5 && strcmp(argv[2], "toggle") == 0)
                return toggle(argv[1], argv[3], strtoul(argv[4], NULL, 10));
        fprintf(stderr, "usage: kek-slow SOCKET hold N watch|status:K MS\n"
                        "       kek-slow SOCKET follow E MS\n"
                        "       kek-slow SOCKET toggle KEY COUNT\n");
        return 2;
}
