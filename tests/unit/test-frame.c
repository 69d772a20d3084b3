/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Unit tests of proto/frame.c: frame_parse() on short, complete, oversized,
 * empty and maximal frames, pipelined frames and a frame fed byte by byte; the
 * FrameBuf queue (reserve, commit, append, consume, compaction, growth,
 * cleansing, reset, shrinking); and frame_append_message() round trips of a Kek__Request.
 */
#include "config.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/kekerr.h"
#include "proto/frame.h"
#include "proto/kek.pb-c.h"
#include "tests/lib/tap.h"

static void put_be32(uint8_t *p, uint32_t v) {
        p[0] = (uint8_t) (v >> 24);
        p[1] = (uint8_t) (v >> 16);
        p[2] = (uint8_t) (v >> 8);
        p[3] = (uint8_t) v;
}

static bool all_bytes(const uint8_t *p, size_t n, uint8_t v) {
        for (size_t i = 0; i < n; i++)
                if (p[i] != v)
                        return false;
        return true;
}

static void test_parse_short(void) {
        uint8_t buf[8] = { 0, 0, 0, 4, 'a', 'b', 'c', 'd' };
        const uint8_t *payload = (const uint8_t *) "sentinel";
        size_t payload_len = 12345;

        for (size_t len = 0; len < FRAME_HEADER_SIZE; len++)
                is_int(frame_parse(buf, len, FRAME_MAX_DEFAULT, &payload, &payload_len), 0,
                       "parse: %zu of 4 header bytes needs more data", len);
        for (size_t len = FRAME_HEADER_SIZE; len < sizeof(buf); len++)
                is_int(frame_parse(buf, len, FRAME_MAX_DEFAULT, &payload, &payload_len), 0,
                       "parse: header plus %zu of 4 payload bytes needs more data", len - FRAME_HEADER_SIZE);
        ok(payload_len == 12345 && memcmp(payload, "sentinel", 8) == 0,
           "parse: outputs untouched while more data is needed");
}

static void test_parse_complete(void) {
        uint8_t buf[16] = { 0, 0, 0, 5, 'h', 'e', 'l', 'l', 'o', 0xee, 0xee };
        const uint8_t *payload = NULL;
        size_t payload_len = 0;

        is_int(frame_parse(buf, 9, FRAME_MAX_DEFAULT, &payload, &payload_len), 1, "parse: exact frame is complete");
        ok(payload == buf + FRAME_HEADER_SIZE, "parse: payload points just past the header");
        is_int(payload_len, 5, "parse: payload length is the declared length");

        payload = NULL;
        payload_len = 0;
        is_int(frame_parse(buf, 11, FRAME_MAX_DEFAULT, &payload, &payload_len), 1,
               "parse: frame followed by more bytes is complete");
        ok(payload == buf + FRAME_HEADER_SIZE, "parse: payload pointer with trailing bytes");
        is_int(payload_len, 5, "parse: trailing bytes are not part of the payload");
        ok(memcmp(payload, "hello", 5) == 0, "parse: payload bytes");
}

static void test_parse_limits(void) {
        uint8_t buf[FRAME_HEADER_SIZE + 2048];
        const uint8_t *payload = NULL;
        size_t payload_len = 0;

        memset(buf, 0x5a, sizeof(buf));

        /* Oversized: decided from the header alone, before the payload has arrived. */
        put_be32(buf, 1025);
        is_int(frame_parse(buf, FRAME_HEADER_SIZE, 1024, &payload, &payload_len), -KEKERR_FRAME_TOO_LARGE,
               "parse: max+1 refused from the 4-byte header alone");
        is_int(frame_parse(buf, sizeof(buf), 1024, &payload, &payload_len), -KEKERR_FRAME_TOO_LARGE,
               "parse: max+1 refused with the payload present");
        put_be32(buf, UINT32_MAX);
        is_int(frame_parse(buf, FRAME_HEADER_SIZE, FRAME_MAX_LIMIT, &payload, &payload_len),
               -KEKERR_FRAME_TOO_LARGE, "parse: 0xffffffff refused against FRAME_MAX_LIMIT");
        put_be32(buf, FRAME_MAX_DEFAULT + 1);
        is_int(frame_parse(buf, FRAME_HEADER_SIZE, FRAME_MAX_DEFAULT, &payload, &payload_len),
               -KEKERR_FRAME_TOO_LARGE, "parse: FRAME_MAX_DEFAULT+1 refused");
        /* Only the high byte set: a parser reading the wrong byte order would accept it. */
        buf[0] = 0x01;
        buf[1] = buf[2] = buf[3] = 0;
        is_int(frame_parse(buf, FRAME_HEADER_SIZE, FRAME_MAX_DEFAULT, &payload, &payload_len),
               -KEKERR_FRAME_TOO_LARGE, "parse: length is big-endian (01 00 00 00 > 64 KiB)");
        is_int(frame_parse(buf, FRAME_HEADER_SIZE, FRAME_MAX_LIMIT, &payload, &payload_len), 0,
               "parse: 01 00 00 00 is exactly FRAME_MAX_LIMIT: accepted, needs payload");

        /* Zero length. */
        put_be32(buf, 0);
        is_int(frame_parse(buf, FRAME_HEADER_SIZE, FRAME_MAX_DEFAULT, &payload, &payload_len),
               -KEKERR_MALFORMED_REQUEST, "parse: zero length is malformed");
        is_int(frame_parse(buf, sizeof(buf), FRAME_MAX_DEFAULT, &payload, &payload_len),
               -KEKERR_MALFORMED_REQUEST, "parse: zero length is malformed with bytes following");

        /* Exactly max is accepted. */
        put_be32(buf, 1024);
        is_int(frame_parse(buf, FRAME_HEADER_SIZE + 1023, 1024, &payload, &payload_len), 0,
               "parse: max-sized frame one byte short needs more data");
        is_int(frame_parse(buf, FRAME_HEADER_SIZE + 1024, 1024, &payload, &payload_len), 1,
               "parse: frame of exactly max is accepted");
        is_int(payload_len, 1024, "parse: max-sized payload length");
        ok(payload == buf + FRAME_HEADER_SIZE, "parse: max-sized payload pointer");

        /* Length of one byte. */
        put_be32(buf, 1);
        buf[4] = 0x42;
        is_int(frame_parse(buf, FRAME_HEADER_SIZE + 1, 1024, &payload, &payload_len), 1,
               "parse: one-byte frame is complete");
        is_int(payload_len, 1, "parse: one-byte payload length");
        is_int(payload[0], 0x42, "parse: one-byte payload content");
}

static void test_parse_byte_by_byte(void) {
        uint8_t frame[FRAME_HEADER_SIZE + 300];
        const uint8_t *payload = NULL;
        size_t payload_len = 0;
        unsigned early = 0;
        int r;

        put_be32(frame, 300);
        for (size_t i = 0; i < 300; i++)
                frame[FRAME_HEADER_SIZE + i] = (uint8_t) (i * 7 + 3);

        /* Through a FrameBuf, as the daemon reads: one byte per read. */
        FrameBuf b;
        frame_buf_init(&b);
        for (size_t i = 0; i < sizeof(frame) - 1; i++) {
                if (frame_buf_append(&b, frame + i, 1) < 0)
                        break;
                r = frame_parse(frame_buf_head(&b), frame_buf_size(&b), 1024, &payload, &payload_len);
                if (r != 0) {
                        diag("frame_parse returned %d after %zu bytes", r, i + 1);
                        early++;
                }
        }
        is_int(early, 0, "byte by byte: 0 at each of the %zu split points before the end", sizeof(frame) - 1);
        is_int(frame_buf_size(&b), sizeof(frame) - 1, "byte by byte: all but the last byte buffered");
        is_int(frame_buf_append(&b, frame + sizeof(frame) - 1, 1), 0, "byte by byte: append last byte");
        is_int(frame_parse(frame_buf_head(&b), frame_buf_size(&b), 1024, &payload, &payload_len), 1,
               "byte by byte: complete with the last byte");
        is_int(payload_len, 300, "byte by byte: payload length");
        ok(payload == frame_buf_head(&b) + FRAME_HEADER_SIZE && memcmp(payload, frame + FRAME_HEADER_SIZE, 300) == 0,
           "byte by byte: payload content");
        frame_buf_consume(&b, FRAME_HEADER_SIZE + payload_len);
        is_int(frame_buf_size(&b), 0, "byte by byte: empty after consuming the frame");
        frame_buf_done(&b);

        /* Every split point of the raw buffer. */
        early = 0;
        for (size_t len = 0; len < sizeof(frame); len++)
                if (frame_parse(frame, len, 1024, &payload, &payload_len) != 0)
                        early++;
        is_int(early, 0, "split: every prefix shorter than the frame returns 0");
}

static void test_parse_pipelined(void) {
        static const char *const payloads[] = { "a", "second", "xyz", "the fourth frame" };
        const uint8_t *payload = NULL;
        size_t payload_len = 0;
        FrameBuf b;
        uint8_t hdr[FRAME_HEADER_SIZE];

        bool good = true;

        frame_buf_init(&b);
        for (size_t i = 0; i < ELEMENTSOF(payloads); i++) {
                put_be32(hdr, (uint32_t) strlen(payloads[i]));
                if (frame_buf_append(&b, hdr, sizeof(hdr)) < 0 ||
                    frame_buf_append(&b, payloads[i], strlen(payloads[i])) < 0)
                        good = false;
        }
        /* Plus the first 2 bytes of a fifth header. */
        put_be32(hdr, 9);
        if (frame_buf_append(&b, hdr, 2) < 0)
                good = false;
        ok(good, "pipeline: all appends succeed");
        is_int(frame_buf_size(&b), 4 * 4 + 1 + 6 + 3 + 16 + 2, "pipeline: all frames buffered");

        for (size_t i = 0; i < ELEMENTSOF(payloads); i++) {
                const char *p = payloads[i];

                is_int(frame_parse(frame_buf_head(&b), frame_buf_size(&b), 1024, &payload, &payload_len), 1,
                       "pipeline: frame %zu complete", i);
                is_int(payload_len, strlen(p), "pipeline: frame %zu length", i);
                ok(memcmp(payload, p, strlen(p)) == 0, "pipeline: frame %zu content '%s'", i, p);
                frame_buf_consume(&b, FRAME_HEADER_SIZE + payload_len);
        }
        is_int(frame_buf_size(&b), 2, "pipeline: partial header remains");
        is_int(frame_parse(frame_buf_head(&b), frame_buf_size(&b), 1024, &payload, &payload_len), 0,
               "pipeline: partial fifth header needs more data");
        ok(frame_buf_append(&b, hdr + 2, 2) == 0 && frame_buf_append(&b, "ninebytes", 9) == 0,
           "pipeline: append the rest of the fifth frame");
        is_int(frame_parse(frame_buf_head(&b), frame_buf_size(&b), 1024, &payload, &payload_len), 1,
               "pipeline: fifth frame complete once the rest arrived");
        ok(payload_len == 9 && memcmp(payload, "ninebytes", 9) == 0, "pipeline: fifth frame content");
        frame_buf_consume(&b, FRAME_HEADER_SIZE + payload_len);
        is_int(frame_buf_size(&b), 0, "pipeline: empty at the end");
        ok(b.start == 0 && b.len == 0, "pipeline: fully consumed buffer resets to offset 0 (start=%zu len=%zu)",
           b.start, b.len);
        frame_buf_done(&b);
}

static void test_buf_basic(void) {
        FrameBuf b = { .data = (uint8_t *) 1, .start = 7, .len = 9, .cap = 11 };
        uint8_t *tail = NULL, *data;

        frame_buf_init(&b);
        ok(!b.data && b.start == 0 && b.len == 0 && b.cap == 0, "buf: init zeroes every field");
        is_int(frame_buf_size(&b), 0, "buf: new buffer is empty");

        is_int(frame_buf_reserve(&b, 10, &tail), 0, "buf: reserve 10");
        ok(b.data != NULL, "buf: reserve allocated");
        is_int(b.cap, 4096, "buf: first allocation is 4096 bytes");
        ok(tail == b.data, "buf: tail of an empty buffer is data[0]");
        is_int(frame_buf_size(&b), 0, "buf: reserve does not change the size");

        memcpy(tail, "0123456789", 10);
        frame_buf_commit(&b, 10);
        is_int(frame_buf_size(&b), 10, "buf: commit adds to the size");
        ok(memcmp(frame_buf_head(&b), "0123456789", 10) == 0, "buf: committed bytes at the head");

        is_int(frame_buf_append(&b, "abc", 3), 0, "buf: append");
        is_int(frame_buf_size(&b), 13, "buf: size after append");
        ok(memcmp(frame_buf_head(&b), "0123456789abc", 13) == 0, "buf: append goes to the tail");

        is_int(frame_buf_reserve(&b, 5, &tail), 0, "buf: reserve within capacity");
        ok(tail == b.data + 13, "buf: tail after 13 bytes");

        data = b.data;
        frame_buf_consume(&b, 4);
        is_int(frame_buf_size(&b), 9, "buf: consume 4 of 13");
        ok(frame_buf_head(&b) == data + 4, "buf: head advanced by 4");
        ok(memcmp(frame_buf_head(&b), "456789abc", 9) == 0, "buf: remaining bytes after consume");
        ok(all_bytes(b.data, 4, 0), "buf: consumed bytes are cleansed");

        frame_buf_consume(&b, 0);
        is_int(frame_buf_size(&b), 9, "buf: consume 0 is a no-op");

        /* Beyond the size: clamps, empties and resets the offsets. */
        frame_buf_consume(&b, 1000);
        is_int(frame_buf_size(&b), 0, "buf: consume beyond size clamps to empty");
        ok(b.start == 0 && b.len == 0, "buf: empty buffer resets start and len (start=%zu len=%zu)", b.start, b.len);
        ok(all_bytes(b.data, 13, 0), "buf: all consumed bytes cleansed");
        is_int(b.cap, 4096, "buf: consume keeps the allocation");
        ok(b.data == data, "buf: consume does not reallocate");

        is_int(frame_buf_append(&b, "xy", 2), 0, "buf: append after emptying");
        ok(frame_buf_head(&b) == b.data && memcmp(b.data, "xy", 2) == 0, "buf: reuse starts at data[0]");

        frame_buf_done(&b);
        ok(!b.data && b.start == 0 && b.len == 0 && b.cap == 0, "buf: done frees and resets");
        frame_buf_done(&b);
        ok(!b.data && b.cap == 0, "buf: done twice is harmless");
        frame_buf_done(NULL);

        is_int(frame_buf_append(&b, "again", 5), 0, "buf: usable again after done");
        ok(frame_buf_size(&b) == 5 && memcmp(frame_buf_head(&b), "again", 5) == 0, "buf: content after reuse");
        frame_buf_done(&b);
}

/* frame_buf_shrink(): the memory of a drained queue goes back, contents stay intact. */
static void test_buf_shrink(void) {
        static uint8_t chunk[1 << 20];
        uint8_t *data;
        FrameBuf b;

        for (size_t i = 0; i < sizeof(chunk); i++)
                chunk[i] = (uint8_t) (i % 253);
        frame_buf_init(&b);
        frame_buf_shrink(&b, 0);
        ok(!b.data && b.cap == 0, "shrink: a new buffer stays empty");

        is_int(frame_buf_append(&b, chunk, sizeof(chunk)), 0, "shrink: append 1 MiB");
        is_int(b.cap, sizeof(chunk), "shrink: capacity 1 MiB");
        data = b.data;
        frame_buf_consume(&b, sizeof(chunk) / 2);
        frame_buf_shrink(&b, 0);
        ok(b.data == data && b.cap == sizeof(chunk), "shrink: half full: the block stays");

        frame_buf_consume(&b, sizeof(chunk) / 2 - 1000);
        frame_buf_shrink(&b, 0);
        is_int(b.cap, 4096, "shrink: 1000 bytes left of 1 MiB: moved to a 4096-byte block");
        ok(b.start == 0 && b.len == 1000, "shrink: head at data[0] (start=%zu len=%zu)", b.start, b.len);
        ok(memcmp(frame_buf_head(&b), chunk + sizeof(chunk) - 1000, 1000) == 0, "shrink: the 1000 bytes intact");
        is_int(frame_buf_append(&b, "xyz", 3), 0, "shrink: append after shrinking");
        ok(frame_buf_size(&b) == 1003 && memcmp(frame_buf_head(&b) + 1000, "xyz", 3) == 0, "shrink: appended at the tail");

        is_int(frame_buf_append(&b, chunk, 200000), 0, "shrink: grow again");
        frame_buf_consume(&b, 1003 + 200000 - 20000);
        frame_buf_shrink(&b, 65536);
        is_int(b.cap, 65536, "shrink: keep 65536 is the smallest block it moves to");
        ok(memcmp(frame_buf_head(&b), chunk + 180000, 20000) == 0, "shrink: contents intact after a move to keep");
        frame_buf_consume(&b, 20000);
        frame_buf_shrink(&b, 65536);
        ok(b.data && b.cap == 65536, "shrink: an empty block of at most keep bytes stays");
        frame_buf_shrink(&b, 0);
        ok(!b.data && b.cap == 0 && b.start == 0 && b.len == 0, "shrink: keep 0 frees an empty buffer");
        is_int(frame_buf_append(&b, "again", 5), 0, "shrink: usable after being freed");
        ok(frame_buf_size(&b) == 5 && memcmp(frame_buf_head(&b), "again", 5) == 0, "shrink: content after reuse");
        frame_buf_done(&b);
}

static void test_buf_compaction(void) {
        uint8_t chunk[3000], *data, *tail = NULL;
        FrameBuf b;

        for (size_t i = 0; i < sizeof(chunk); i++)
                chunk[i] = (uint8_t) (i % 251);

        frame_buf_init(&b);
        is_int(frame_buf_append(&b, chunk, 3000), 0, "compact: append 3000");
        is_int(b.cap, 4096, "compact: capacity 4096");
        data = b.data;
        frame_buf_consume(&b, 2000);
        is_int(b.start, 2000, "compact: start after consuming 2000");

        /* 1096 bytes free at the tail, 2000 wanted: compaction alone makes room. */
        is_int(frame_buf_reserve(&b, 2000, &tail), 0, "compact: reserve 2000 with the head consumed");
        ok(b.data == data, "compact: no reallocation when compaction suffices");
        is_int(b.cap, 4096, "compact: capacity unchanged");
        is_int(b.start, 0, "compact: start reset to 0");
        is_int(b.len, 1000, "compact: len is the unconsumed size");
        ok(tail == b.data + 1000, "compact: tail right after the moved bytes");
        ok(memcmp(b.data, chunk + 2000, 1000) == 0, "compact: unconsumed bytes moved to the front intact");
        ok(all_bytes(b.data + 1000, 2000, 0), "compact: stale bytes behind the moved data are cleansed");

        memset(tail, 0xc3, 2000);
        frame_buf_commit(&b, 2000);
        is_int(frame_buf_size(&b), 3000, "compact: size after commit");
        ok(memcmp(frame_buf_head(&b), chunk + 2000, 1000) == 0 && all_bytes(frame_buf_head(&b) + 1000, 2000, 0xc3),
           "compact: content after commit");

        /* No compaction when the tail has room: the head stays where it is. */
        frame_buf_consume(&b, 500);
        is_int(frame_buf_reserve(&b, 1096, &tail), 0, "compact: reserve exactly the free tail");
        is_int(b.start, 500, "compact: no compaction while the tail has room");
        ok(tail == b.data + 3000, "compact: tail unchanged");

        /* Compaction is not enough: grow, keeping only the unconsumed bytes. */
        is_int(frame_buf_reserve(&b, 4000, &tail), 0, "grow: reserve 4000 with 2500 buffered");
        is_int(b.start, 0, "grow: start 0 after compact+grow");
        is_int(frame_buf_size(&b), 2500, "grow: size kept");
        is_int(b.cap, 8192, "grow: capacity doubled");
        ok(tail == b.data + 2500, "grow: tail after the buffered bytes");
        ok(memcmp(b.data, chunk + 2500, 500) == 0 && all_bytes(b.data + 500, 2000, 0xc3), "grow: content preserved");
        frame_buf_done(&b);
}

static void test_buf_growth(void) {
        uint8_t *big, *tail = NULL;
        FrameBuf b;
        size_t total = 0;
        bool good = true;

        big = malloc(20000);
        if (!big)
                abort();
        for (size_t i = 0; i < 20000; i++)
                big[i] = (uint8_t) (i * 13 + i / 256);

        frame_buf_init(&b);
        /* Appends of 1000 until well past several doublings. */
        for (size_t i = 0; i < 20; i++) {
                if (frame_buf_append(&b, big + total, 1000) < 0)
                        good = false;
                total += 1000;
        }
        ok(good, "growth: 20 appends of 1000 succeed");
        is_int(frame_buf_size(&b), 20000, "growth: size 20000");
        is_int(b.cap, 32768, "growth: capacity doubled 4096 -> 32768");
        ok(memcmp(frame_buf_head(&b), big, 20000) == 0, "growth: content preserved across reallocations");

        /* A single reservation larger than twice the capacity is honoured exactly. */
        is_int(frame_buf_reserve(&b, 100000, &tail), 0, "growth: reserve 100000");
        is_int(b.cap, 120000, "growth: capacity is len + n when that beats doubling");
        ok(tail == b.data + 20000, "growth: tail after big reserve");
        ok(memcmp(frame_buf_head(&b), big, 20000) == 0, "growth: content preserved after big reserve");
        frame_buf_done(&b);

        /* Impossible sizes fail cleanly. */
        frame_buf_init(&b);
        is_int(frame_buf_reserve(&b, SIZE_MAX, &tail), -ENOMEM, "growth: reserve SIZE_MAX on empty buffer");
        ok(!b.data && b.cap == 0, "growth: failed reserve leaves the empty buffer untouched");
        is_int(frame_buf_append(&b, "0123456789", 10), 0, "growth: append 10");
        /* len + n wraps around to a small number: must not report success. */
        tail = NULL;
        is_int(frame_buf_reserve(&b, SIZE_MAX - 5, &tail), -ENOMEM,
               "growth: reserve SIZE_MAX-5 with 10 bytes buffered (len + n overflows)");
        if (b.cap - b.len < SIZE_MAX - 5)
                diag("reserve left only %zu bytes of room", b.cap - b.len);
        is_int(frame_buf_size(&b), 10, "growth: size unchanged after failed reserve");
        ok(memcmp(frame_buf_head(&b), "0123456789", 10) == 0, "growth: content unchanged after failed reserve");
        frame_buf_done(&b);
        free(big);
}

static void test_append_message(void) {
        static const uint8_t aek[32] = {
                0x00, 0x01, 0x02, 0xff, 0xfe, 0x80, 0x7f, 0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70, 0x80, 0x90,
                0xa0, 0xb0, 0xc0, 0xd0, 0xe0, 0xf0, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f, 0x00, 0x00, 0x11, 0x22,
        };
        static const uint8_t ctx[] = "tenant=42;disk=/dev/sda";
        Kek__WrapRequest wrap = KEK__WRAP_REQUEST__INIT;
        Kek__Request req = KEK__REQUEST__INIT;
        Kek__Request *got;
        const uint8_t *payload = NULL;
        size_t payload_len = 0, packed;
        FrameBuf b;
        int r;

        wrap.key = (char *) "db-master.v2_key";
        wrap.plaintext.data = (uint8_t *) aek;
        wrap.plaintext.len = sizeof(aek);
        wrap.context.data = (uint8_t *) ctx;
        wrap.context.len = sizeof(ctx) - 1;
        wrap.version = 7;
        req.id = UINT64_C(0x0123456789abcdef);
        req.body_case = KEK__REQUEST__BODY_WRAP;
        req.wrap = &wrap;
        packed = kek__request__get_packed_size(&req);

        frame_buf_init(&b);
        is_int(frame_append_message(&b, &req.base, FRAME_MAX_DEFAULT), 0, "message: append wrap request");
        is_int(frame_buf_size(&b), FRAME_HEADER_SIZE + packed, "message: header plus packed size buffered");
        ok(frame_buf_head(&b)[0] == (uint8_t) (packed >> 24) && frame_buf_head(&b)[1] == (uint8_t) (packed >> 16) &&
                   frame_buf_head(&b)[2] == (uint8_t) (packed >> 8) && frame_buf_head(&b)[3] == (uint8_t) packed,
           "message: big-endian length header %zu", packed);

        r = frame_parse(frame_buf_head(&b), frame_buf_size(&b), FRAME_MAX_DEFAULT, &payload, &payload_len);
        is_int(r, 1, "message: parses back as one complete frame");
        is_int(payload_len, packed, "message: payload length is the packed size");
        got = r == 1 ? kek__request__unpack(NULL, payload_len, payload) : NULL;
        ok(got != NULL, "message: payload unpacks as a Request");
        if (got) {
                ok(got->id == UINT64_C(0x0123456789abcdef), "message: id round trip");
                is_int(got->body_case, KEK__REQUEST__BODY_WRAP, "message: body is wrap");
                if (got->body_case == KEK__REQUEST__BODY_WRAP && got->wrap) {
                        ok(got->wrap->key && strcmp(got->wrap->key, "db-master.v2_key") == 0,
                           "message: key round trip ('%s')", got->wrap->key ?: "(null)");
                        ok(got->wrap->plaintext.len == sizeof(aek) &&
                                   memcmp(got->wrap->plaintext.data, aek, sizeof(aek)) == 0,
                           "message: plaintext round trip (%zu bytes)", got->wrap->plaintext.len);
                        ok(got->wrap->context.len == sizeof(ctx) - 1 &&
                                   memcmp(got->wrap->context.data, ctx, sizeof(ctx) - 1) == 0,
                           "message: context round trip");
                        is_int(got->wrap->version, 7, "message: version round trip");
                }
                kek__request__free_unpacked(got, NULL);
        }
        frame_buf_consume(&b, FRAME_HEADER_SIZE + payload_len);
        is_int(frame_buf_size(&b), 0, "message: buffer empty after consuming the frame");

        /* Two messages back to back, then parsed one by one. */
        Kek__GetKeyVersionRequest gkv = KEK__GET_KEY_VERSION_REQUEST__INIT;
        Kek__Request req2 = KEK__REQUEST__INIT;

        gkv.key = (char *) "other";
        req2.id = 2;
        req2.body_case = KEK__REQUEST__BODY_GET_KEY_VERSION;
        req2.get_key_version = &gkv;
        is_int(frame_append_message(&b, &req.base, FRAME_MAX_DEFAULT), 0, "message: pipeline append 1");
        is_int(frame_append_message(&b, &req2.base, FRAME_MAX_DEFAULT), 0, "message: pipeline append 2");
        is_int(frame_buf_size(&b), 2 * FRAME_HEADER_SIZE + packed + kek__request__get_packed_size(&req2),
               "message: pipeline size");
        r = frame_parse(frame_buf_head(&b), frame_buf_size(&b), FRAME_MAX_DEFAULT, &payload, &payload_len);
        is_int(r, 1, "message: pipeline frame 1 complete");
        is_int(payload_len, packed, "message: pipeline frame 1 length");
        frame_buf_consume(&b, FRAME_HEADER_SIZE + payload_len);
        r = frame_parse(frame_buf_head(&b), frame_buf_size(&b), FRAME_MAX_DEFAULT, &payload, &payload_len);
        is_int(r, 1, "message: pipeline frame 2 complete");
        got = r == 1 ? kek__request__unpack(NULL, payload_len, payload) : NULL;
        ok(got && got->id == 2 && got->body_case == KEK__REQUEST__BODY_GET_KEY_VERSION && got->get_key_version &&
                   strcmp(got->get_key_version->key, "other") == 0,
           "message: pipeline frame 2 is the get_key_version request");
        if (got)
                kek__request__free_unpacked(got, NULL);
        frame_buf_consume(&b, FRAME_HEADER_SIZE + payload_len);
        is_int(frame_buf_size(&b), 0, "message: pipeline fully consumed");
        frame_buf_done(&b);

        /* Size limit: exactly max is accepted, one less is refused and nothing is written. */
        frame_buf_init(&b);
        is_int(frame_append_message(&b, &req.base, packed), 0, "message: packed size == max_frame accepted");
        is_int(frame_buf_size(&b), FRAME_HEADER_SIZE + packed, "message: max-sized frame buffered");
        r = frame_parse(frame_buf_head(&b), frame_buf_size(&b), packed, &payload, &payload_len);
        is_int(r, 1, "message: max-sized frame parses with the same max_frame");
        frame_buf_consume(&b, SIZE_MAX);
        is_int(frame_append_message(&b, &req.base, packed - 1), -EMSGSIZE, "message: packed size > max_frame refused");
        is_int(frame_buf_size(&b), 0, "message: nothing appended on -EMSGSIZE");
        frame_buf_done(&b);

        /* A large plaintext over the default limit. */
        uint8_t *blob = calloc(1, FRAME_MAX_DEFAULT);
        if (!blob)
                abort();
        wrap.plaintext.data = blob;
        wrap.plaintext.len = FRAME_MAX_DEFAULT;
        frame_buf_init(&b);
        is_int(frame_append_message(&b, &req.base, FRAME_MAX_DEFAULT), -EMSGSIZE,
               "message: 64 KiB plaintext exceeds FRAME_MAX_DEFAULT");
        is_int(frame_buf_size(&b), 0, "message: oversized message not appended");
        is_int(frame_append_message(&b, &req.base, FRAME_MAX_LIMIT), 0, "message: same message fits FRAME_MAX_LIMIT");
        r = frame_parse(frame_buf_head(&b), frame_buf_size(&b), FRAME_MAX_DEFAULT, &payload, &payload_len);
        is_int(r, -KEKERR_FRAME_TOO_LARGE, "message: receiver with the default limit refuses it");
        frame_buf_done(&b);
        free(blob);
}

/*
 * What frame_buf_done() and the moves cleanse is data[0 .. dirty): every byte
 * ever written and committed must lie below dirty, through any sequence of
 * reserve (room for n, k <= n written and committed), consume and shrink. 3000
 * random steps with a fixed seed; one check per step and a summary.
 */
static void test_buf_dirty(void) {
        FrameBuf b;
        unsigned seed = 12345, bad = 0, steps = 0;
        uint8_t *block = NULL;
        size_t written = 0; /* how far into the current block we have written */

        frame_buf_init(&b);
        for (unsigned i = 0; i < 3000; i++) {
                unsigned op = (unsigned) rand_r(&seed) % 4;
                size_t n = 1 + (size_t) rand_r(&seed) % 3000;
                uint8_t *tail;

                if (op <= 1) {
                        if (frame_buf_reserve(&b, n, &tail) < 0)
                                break;
                        if (b.data != block) {
                                block = b.data;
                                written = b.len;
                        }
                        n = op == 0 ? n : n / 2; /* a recv() that got less than the room */
                        memset(tail, 0xA5, n);
                        written = MAX(written, (size_t) (tail - b.data) + n);
                        frame_buf_commit(&b, n);
                } else if (op == 2) {
                        frame_buf_consume(&b, n);
                } else {
                        frame_buf_shrink(&b, (size_t) rand_r(&seed) % 8192);
                        if (b.data != block) {
                                block = b.data;
                                written = frame_buf_size(&b);
                        }
                }
                steps++;
                if (b.data && (written > b.dirty || b.dirty > b.cap || b.len > b.dirty))
                        bad++;
        }
        is_int(steps, 3000, "dirty: 3000 random steps ran");
        is_int(bad, 0, "dirty: every written byte lies below dirty, and dirty within the block, after every step");
        frame_buf_done(&b);
        ok(b.data == NULL && b.dirty == 0, "dirty: done resets the buffer");
}

int main(void) {
        test_parse_short();
        test_parse_complete();
        test_parse_limits();
        test_parse_byte_by_byte();
        test_parse_pipelined();
        test_buf_basic();
        test_buf_compaction();
        test_buf_growth();
        test_buf_shrink();
        test_buf_dirty();
        test_append_message();
        return tap_done();
}
