/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Framing of the kekd protocol: a 4-byte big-endian length, then that many
 * bytes of one protobuf message. The length is validated against the caller's
 * maximum before any buffer for the payload is sized, so a hostile peer cannot
 * make either side allocate more than max_frame + FRAME_HEADER_SIZE per frame.
 *
 * FrameBuf is the growable byte queue both ends use for partial reads and
 * writes. Frames carry plaintext AEKs, so its memory is cleansed whenever bytes
 * are consumed or the buffer is freed.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

#include "common/macro.h"

#define FRAME_HEADER_SIZE 4u
#define FRAME_MAX_DEFAULT (64u * 1024u)
#define FRAME_MAX_LIMIT (16u * 1024u * 1024u)

typedef struct FrameBuf {
        uint8_t *data;
        size_t start;   /* first unconsumed byte */
        size_t len;     /* bytes in use, counted from data[0] */
        size_t cap;
        size_t dirty;   /* bytes from data[0] committed since the block was new: what is cleansed */
} FrameBuf;

void frame_buf_init(FrameBuf *b);
void frame_buf_done(FrameBuf *b);
/*
 * Makes room for at least n more bytes at the tail; returns the tail pointer.
 * Commit every byte written there (frame_buf_commit()): only committed bytes
 * are cleansed when the block is freed or moved, which keeps freeing an idle
 * connection's 4 KiB block from costing a 4 KiB cleanse per request.
 */
int frame_buf_reserve(FrameBuf *b, size_t n, uint8_t **ret_tail);
/*
 * Gives memory back once the bytes are gone, as reserve() never does: a
 * buffer whose block is larger than keep bytes is freed (cleansed) when
 * empty, and moved into a block of twice its contents (at least keep, at
 * least 4096 bytes) when its contents fill less than a quarter of the block.
 * keep 0 frees every empty buffer. Pointers into the buffer are invalid
 * afterwards. On out-of-memory the buffer stays as it is.
 */
void frame_buf_shrink(FrameBuf *b, size_t keep);
void frame_buf_commit(FrameBuf *b, size_t n);
int frame_buf_append(FrameBuf *b, const void *p, size_t n);
void frame_buf_consume(FrameBuf *b, size_t n);
static inline size_t frame_buf_size(const FrameBuf *b) {
        return b->len - b->start;
}
static inline const uint8_t *frame_buf_head(const FrameBuf *b) {
        return b->data + b->start;
}

/*
 * Looks for one complete frame at the head of buf. Returns 0 when more bytes
 * are needed, 1 with the payload when a frame is complete (the caller then
 * consumes FRAME_HEADER_SIZE + payload length), -KEKERR_FRAME_TOO_LARGE when the
 * declared length exceeds max_frame and -KEKERR_MALFORMED_REQUEST for a zero
 * length. Never allocates.
 */
int frame_parse(const uint8_t *buf, size_t len, size_t max_frame, const uint8_t **ret_payload,
                size_t *ret_payload_len);

/* Appends the frame of a packed message; -EMSGSIZE if it would exceed max_frame. */
int frame_append_message(FrameBuf *b, const ProtobufCMessage *m, size_t max_frame);
