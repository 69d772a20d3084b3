/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * kek-raw: a test client that speaks bytes, not requests, so integration tests
 * can send kekd what a well-behaved client never would.
 *
 *   kek-raw SOCKET STEP...
 *     raw:HEX      send the bytes as they are
 *     frame:HEX    send a frame: 4-byte big-endian length of HEX, then HEX
 *     header:N     send only a frame header declaring N bytes
 *     shut         shutdown(SHUT_WR): the peer sees end of input
 *     close        close the connection at once, read nothing, print "gone" and exit
 *     hold:MS      keep the connection open for MS milliseconds first
 *     mark:PATH    create the file PATH: tells a test that the steps before it are done
 *     nest:N:F,G.. send a frame of at most N payload bytes: length-delimited
 *                  fields F, G, ... nested in that order again and again, as
 *                  deep as fits (F,G = 34,1: Request > SubmitApproval > Request ...)
 *
 * Afterwards it reads response frames until the daemon closes the connection
 * or nothing arrives for 1.5 s, printing one line per frame,
 * "id=N error=CODE" or "id=N ok=BODY", then "closed" or "open".
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/kekerr.h"
#include "proto/frame.h"
#include "proto/kek.pb-c.h"

static int unhex(const char *s, uint8_t **ret, size_t *ret_len) {
        size_t n = strlen(s);
        uint8_t *b;

        if (n % 2)
                return -EINVAL;
        b = malloc(n / 2 + 1);
        if (!b)
                return -ENOMEM;
        for (size_t i = 0; i < n / 2; i++) {
                unsigned v;

                if (sscanf(s + 2 * i, "%2x", &v) != 1) {
                        free(b);
                        return -EINVAL;
                }
                b[i] = (uint8_t) v;
        }
        *ret = b;
        *ret_len = n / 2;
        return 0;
}

static int send_all(int fd, const uint8_t *p, size_t n) {
        while (n > 0) {
                ssize_t w = send(fd, p, n, MSG_NOSIGNAL);

                if (w < 0)
                        return -errno;
                p += w;
                n -= (size_t) w;
        }
        return 0;
}

static size_t put_varint(uint8_t *p, uint64_t v) {
        size_t n = 0;

        do {
                p[n++] = (uint8_t) (v & 0x7f) | (v > 0x7f ? 0x80 : 0);
                v >>= 7;
        } while (v);
        return n;
}

/* The nest: step's payload, built from the inside out, then its outer levels cut until it starts with F. */
static int nest(const char *spec, uint8_t **ret, size_t *ret_len) {
        unsigned long size, fields[16];
        size_t k = 0, start, len = 0, levels = 0;
        char *e;
        uint8_t *b;

        size = strtoul(spec, &e, 10);
        while (*e == ':' || (*e == ',' && k > 0)) {
                if (k == 16)
                        return -EINVAL;
                fields[k++] = strtoul(e + 1, &e, 10);
        }
        if (*e || k == 0 || size == 0 || size > FRAME_MAX_LIMIT)
                return -EINVAL;
        b = malloc(size);
        if (!b)
                return -ENOMEM;
        start = size;
        for (;;) {
                uint8_t h[20];
                size_t n = put_varint(h, (uint64_t) fields[k - 1 - levels % k] << 3 | 2);

                n += put_varint(h + n, len);
                if (n > start)
                        break;
                start -= n;
                memcpy(b + start, h, n);
                len += n;
                levels++;
        }
        for (; levels % k; levels--) {
                size_t n = 0;

                while (b[start + n++] & 0x80) {}
                while (b[start + n++] & 0x80) {}
                start += n;
                len -= n;
        }
        memmove(b, b + start, len);
        fprintf(stderr, "kek-raw: nest: %zu bytes, %zu levels\n", len, levels);
        *ret = b;
        *ret_len = len;
        return 0;
}

static const char *body_name(Kek__Response__BodyCase c) {
        switch (c) {
        case KEK__RESPONSE__BODY_WRAP:
                return "wrap";
        case KEK__RESPONSE__BODY_UNWRAP:
                return "unwrap";
        case KEK__RESPONSE__BODY_GET_KEY_VERSION:
                return "get_key_version";
        case KEK__RESPONSE__BODY_KEY_INFO:
                return "key_info";
        case KEK__RESPONSE__BODY_LIST_KEYS:
                return "list_keys";
        default:
                return "other";
        }
}

int main(int argc, char *argv[]) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        FrameBuf in;
        int fd;

        if (argc < 3 || strlen(argv[1]) >= sizeof(sa.sun_path)) {
                fprintf(stderr, "usage: kek-raw SOCKET STEP...\n");
                return 2;
        }
        strcpy(sa.sun_path, argv[1]);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0 || connect(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0) {
                fprintf(stderr, "kek-raw: connect %s: %m\n", argv[1]);
                return 3;
        }

        for (int i = 2; i < argc; i++) {
                uint8_t *b = NULL;
                size_t n = 0;
                int r = 0;

                if (strncmp(argv[i], "raw:", 4) == 0) {
                        r = unhex(argv[i] + 4, &b, &n);
                        if (r >= 0)
                                r = send_all(fd, b, n);
                } else if (strncmp(argv[i], "frame:", 6) == 0 || strncmp(argv[i], "nest:", 5) == 0) {
                        r = argv[i][0] == 'f' ? unhex(argv[i] + 6, &b, &n) : nest(argv[i] + 5, &b, &n);
                        if (r >= 0) {
                                uint8_t h[4] = { (uint8_t) (n >> 24), (uint8_t) (n >> 16), (uint8_t) (n >> 8), (uint8_t) n };

                                r = send_all(fd, h, 4);
                                if (r >= 0)
                                        r = send_all(fd, b, n);
                        }
                } else if (strncmp(argv[i], "header:", 7) == 0) {
                        unsigned long v = strtoul(argv[i] + 7, NULL, 10);
                        uint8_t h[4] = { (uint8_t) (v >> 24), (uint8_t) (v >> 16), (uint8_t) (v >> 8), (uint8_t) v };

                        r = send_all(fd, h, 4);
                } else if (strcmp(argv[i], "shut") == 0) {
                        r = shutdown(fd, SHUT_WR) < 0 ? -errno : 0;
                } else if (strcmp(argv[i], "close") == 0) {
                        /* Hang up entirely, without reading what kekd answers. */
                        free(b);
                        close(fd);
                        printf("gone\n");
                        return 0;
                } else if (strncmp(argv[i], "hold:", 5) == 0) {
                        usleep((useconds_t) strtoul(argv[i] + 5, NULL, 10) * 1000);
                } else if (strncmp(argv[i], "mark:", 5) == 0) {
                        int m = open(argv[i] + 5, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);

                        r = m < 0 ? -errno : 0;
                        if (m >= 0)
                                close(m);
                } else {
                        fprintf(stderr, "kek-raw: unknown step '%s'\n", argv[i]);
                        return 2;
                }
                free(b);
                if (r < 0) {
                        /* The daemon may close early (e.g. after an oversized header): report, then read. */
                        printf("send-failed %s\n", strerror(-r));
                        break;
                }
        }

        frame_buf_init(&in);
        for (;;) {
                struct pollfd p = { .fd = fd, .events = POLLIN };
                const uint8_t *payload;
                uint8_t *tail;
                size_t len;
                ssize_t n;

                while (frame_parse(frame_buf_head(&in), frame_buf_size(&in), FRAME_MAX_LIMIT, &payload, &len) == 1) {
                        Kek__Response *resp = kek__response__unpack(NULL, len, payload);

                        if (!resp)
                                printf("undecodable\n");
                        else if (resp->body_case == KEK__RESPONSE__BODY_ERROR)
                                printf("id=%llu error=%s\n", (unsigned long long) resp->id,
                                       kekerr_name(kekerr_from_wire(resp->error->code)) ?: "?");
                        else
                                printf("id=%llu ok=%s\n", (unsigned long long) resp->id, body_name(resp->body_case));
                        if (resp)
                                kek__response__free_unpacked(resp, NULL);
                        frame_buf_consume(&in, FRAME_HEADER_SIZE + len);
                }
                if (poll(&p, 1, 1500) <= 0) {
                        printf("open\n");
                        break;
                }
                if (frame_buf_reserve(&in, 65536, &tail) < 0)
                        return 4;
                n = recv(fd, tail, 65536, 0);
                if (n <= 0) {
                        printf("closed\n");
                        break;
                }
                frame_buf_commit(&in, (size_t) n);
        }
        frame_buf_done(&in);
        close(fd);
        return 0;
}
