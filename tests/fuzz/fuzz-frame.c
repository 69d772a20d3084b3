/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libFuzzer target: the transport's view of a byte stream. Frames are cut
 * with frame_parse() against kekd's default max_frame and each payload is
 * checked (proto/wirecheck) and, if it passes, decoded as a Request, as the
 * daemon does before dispatch; the cut must never read past the input, and a
 * FrameBuf fed byte by byte must cut the same frames.
 */
#include "config.h"

#include <stdlib.h>

#include "proto/frame.h"
#include "proto/kek.pb-c.h"
#include "proto/wirecheck.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        const uint8_t *payload;
        size_t off = 0, len, frames = 0, frames2 = 0;
        FrameBuf b;

        while (frame_parse(data + off, size - off, FRAME_MAX_DEFAULT, &payload, &len) == 1) {
                Kek__Request *req;

                if (payload + len > data + size)
                        abort();
                req = wirecheck_message(&kek__request__descriptor, payload, len, NULL, NULL) == 0
                              ? kek__request__unpack(NULL, len, payload)
                              : NULL;
                if (req)
                        kek__request__free_unpacked(req, NULL);
                off += FRAME_HEADER_SIZE + len;
                frames++;
        }
        frame_buf_init(&b);
        for (size_t i = 0; i < size; i++) {
                if (frame_buf_append(&b, data + i, 1) < 0)
                        abort();
                while (frame_parse(frame_buf_head(&b), frame_buf_size(&b), FRAME_MAX_DEFAULT, &payload, &len) == 1) {
                        frame_buf_consume(&b, FRAME_HEADER_SIZE + len);
                        frames2++;
                }
        }
        frame_buf_done(&b);
        if (frames != frames2)
                abort();
        return 0;
}
