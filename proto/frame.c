/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Frame parsing and the FrameBuf byte queue (see frame.h). Pure functions, no
 * I/O, so the daemon, the client library and the unit tests share them.
 */
#include "config.h"

#include <errno.h>
#include <string.h>

#include "common/kekerr.h"
#include "common/secret.h"
#include "frame.h"

void frame_buf_init(FrameBuf *b) {
        *b = (FrameBuf) {};
}

void frame_buf_done(FrameBuf *b) {
        if (!b)
                return;
        /* Only what was ever written: a block is freed whenever a connection goes idle (server.c),
         * and cleansing all of a 4 KiB block for a 100-byte frame was most of a request's cost. */
        secret_cleanse(b->data, b->dirty);
        free(b->data);
        *b = (FrameBuf) {};
}

int frame_buf_reserve(FrameBuf *b, size_t n, uint8_t **ret_tail) {
        if (n > SIZE_MAX / 4 - b->len)
                return -ENOMEM; /* also keeps len + n and the doubling below from wrapping */
        if (b->start > 0 && b->cap - b->len < n) {
                /* Compact first: most of the time the head has been consumed. */
                size_t used = b->len - b->start;

                memmove(b->data, b->data + b->start, used);
                secret_cleanse(b->data + used, b->len - used);
                b->len = used;
                b->start = 0;
        }
        if (b->cap - b->len < n) {
                size_t want = MAX(b->cap * 2, b->len + n);
                uint8_t *p;

                want = MAX(want, (size_t) 4096);
                /* Not realloc(): the old block may hold plaintext and must be cleansed. */
                p = malloc(want);
                if (!p)
                        return -ENOMEM;
                if (b->data) {
                        memcpy(p, b->data, b->len);
                        secret_cleanse(b->data, b->dirty);
                        free(b->data);
                }
                b->data = p;
                b->cap = want;
                b->dirty = b->len;
        }
        if (ret_tail)
                *ret_tail = b->data + b->len;
        return 0;
}

void frame_buf_shrink(FrameBuf *b, size_t keep) {
        size_t used = frame_buf_size(b), want;
        uint8_t *p;

        if (b->cap <= keep)
                return;
        if (used == 0) {
                frame_buf_done(b);
                return;
        }
        /* Only when most of the block is idle: moving costs a copy, at most once per halving. */
        if (used > b->cap / 4)
                return;
        want = MAX(MAX(used * 2, keep), (size_t) 4096);
        p = malloc(want);
        if (!p)
                return; /* keep the larger block: nothing is lost */
        memcpy(p, b->data + b->start, used);
        secret_cleanse(b->data, b->dirty);
        free(b->data);
        b->data = p;
        b->dirty = used;
        b->start = 0;
        b->len = used;
        b->cap = want;
}

void frame_buf_commit(FrameBuf *b, size_t n) {
        b->len += n;
        b->dirty = MAX(b->dirty, b->len);
}

int frame_buf_append(FrameBuf *b, const void *p, size_t n) {
        uint8_t *tail;
        int r;

        r = frame_buf_reserve(b, n, &tail);
        if (r < 0)
                return r;
        memcpy(tail, p, n);
        frame_buf_commit(b, n);
        return 0;
}

void frame_buf_consume(FrameBuf *b, size_t n) {
        n = MIN(n, b->len - b->start);
        secret_cleanse(b->data + b->start, n);
        b->start += n;
        if (b->start == b->len)
                b->start = b->len = 0;
}

int frame_parse(const uint8_t *buf, size_t len, size_t max_frame, const uint8_t **ret_payload,
                size_t *ret_payload_len) {
        uint32_t n;

        if (len < FRAME_HEADER_SIZE)
                return 0;
        n = (uint32_t) buf[0] << 24 | (uint32_t) buf[1] << 16 | (uint32_t) buf[2] << 8 | buf[3];
        if (n > max_frame)
                return -KEKERR_FRAME_TOO_LARGE;
        if (n == 0)
                return -KEKERR_MALFORMED_REQUEST;
        if (len - FRAME_HEADER_SIZE < n)
                return 0;
        *ret_payload = buf + FRAME_HEADER_SIZE;
        *ret_payload_len = n;
        return 1;
}

int frame_append_message(FrameBuf *b, const ProtobufCMessage *m, size_t max_frame) {
        size_t n = protobuf_c_message_get_packed_size(m);
        uint8_t *tail;
        int r;

        if (n > max_frame || n > UINT32_MAX)
                return -EMSGSIZE;
        r = frame_buf_reserve(b, FRAME_HEADER_SIZE + n, &tail);
        if (r < 0)
                return r;
        tail[0] = (uint8_t) (n >> 24);
        tail[1] = (uint8_t) (n >> 16);
        tail[2] = (uint8_t) (n >> 8);
        tail[3] = (uint8_t) n;
        protobuf_c_message_pack(m, tail + FRAME_HEADER_SIZE);
        frame_buf_commit(b, FRAME_HEADER_SIZE + n);
        return 0;
}
