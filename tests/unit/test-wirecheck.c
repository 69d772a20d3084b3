/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Unit tests of proto/wirecheck.c. The string cases are generated from the
 * protobuf-c descriptors: every string field of every message reachable from
 * Kek__Request (the approval's inner Request included) gets a packed Request
 * with a NUL byte in it and with each kind of invalid UTF-8, all refused, and
 * a valid value, accepted and unpacked intact. Nesting: the deepest legitimate
 * request is accepted; a chain of distinct messages one level deeper than
 * WIRECHECK_DEPTH_MAX and a Request nested in itself twice are refused, as are
 * frames of FRAME_MAX_DEFAULT and FRAME_MAX_LIMIT bytes nested as deep as they
 * allow. Framing: truncated and overlong varints, lengths beyond the end,
 * field 0, groups; every prefix of a valid request is accepted by the check
 * exactly when protobuf-c decodes it.
 */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/kekerr.h"
#include "common/macro.h"
#include "proto/frame.h"
#include "proto/kek.pb-c.h"
#include "proto/wirecheck.h"
#include "tests/lib/tap.h"

typedef struct Buf {
        uint8_t *data;
        size_t len;
} Buf;

static size_t put_varint(uint8_t *p, uint64_t v) {
        size_t n = 0;

        do {
                p[n] = (uint8_t) (v & 0x7f) | (v > 0x7f ? 0x80 : 0);
                v >>= 7;
                n++;
        } while (v);
        return n;
}

/* Returns a new buffer: tag(num, LEN) + varint(len) + inner. */
static Buf wrap_len(uint32_t num, const uint8_t *inner, size_t len) {
        Buf b = { malloc(len + 20), 0 };

        if (!b.data)
                abort();
        b.len = put_varint(b.data, (uint64_t) num << 3 | 2);
        b.len += put_varint(b.data + b.len, len);
        memcpy(b.data + b.len, inner, len);
        b.len += len;
        return b;
}

static int check(const uint8_t *p, size_t n, WireCheckError *e) {
        return wirecheck_message(&kek__request__descriptor, p, n, NULL, e);
}

/* --- strict UTF-8 ---------------------------------------------------------------------- */

static void test_utf8(void) {
        static const struct {
                const char *s;
                size_t len;
                bool valid;
                const char *what;
        } cases[] = {
                { "", 0, true, "empty" },
                { "hk-1._A", 7, true, "ASCII" },
                { "\xc3\xa9", 2, true, "U+00E9" },
                { "\xe2\x82\xac", 3, true, "U+20AC" },
                { "\xef\xbf\xbf", 3, true, "U+FFFF" },
                { "\xf0\x9f\x94\x91", 4, true, "U+1F511" },
                { "\xf4\x8f\xbf\xbf", 4, true, "U+10FFFF" },
                { "a\0b", 3, false, "embedded NUL" },
                { "\0", 1, false, "lone NUL" },
                { "\xc0\x80", 2, false, "overlong NUL (C0 80)" },
                { "\xc1\xbf", 2, false, "overlong 2-byte (C1)" },
                { "\xe0\x80\xaf", 3, false, "overlong 3-byte" },
                { "\xf0\x80\x80\xaf", 4, false, "overlong 4-byte" },
                { "\xed\xa0\x80", 3, false, "surrogate U+D800" },
                { "\xed\xbf\xbf", 3, false, "surrogate U+DFFF" },
                { "\xf4\x90\x80\x80", 4, false, "U+110000" },
                { "\xf5\x80\x80\x80", 4, false, "lead byte F5" },
                { "\xff", 1, false, "byte FF" },
                { "\x80", 1, false, "lone continuation byte" },
                { "\xc3", 1, false, "truncated 2-byte" },
                { "\xe2\x82", 2, false, "truncated 3-byte" },
                { "\xc3\x28", 2, false, "bad continuation" },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++)
                ok(wirecheck_text_valid((const uint8_t *) cases[i].s, cases[i].len) == cases[i].valid,
                   "utf8: %s is %s", cases[i].what, cases[i].valid ? "valid" : "refused");
}

/* --- every string field, from the descriptors ---------------------------------------- */

typedef struct Path {
        const ProtobufCMessageDescriptor *msg[WIRECHECK_DEPTH_MAX + 1];
        const ProtobufCFieldDescriptor *field[WIRECHECK_DEPTH_MAX + 1];
        unsigned depth;
} Path;

static unsigned n_string_paths, n_inner_paths;

/* A Request whose string field at the end of path holds value. */
static Buf build(const Path *path, const uint8_t *value, size_t len) {
        Buf b = wrap_len(path->field[path->depth]->id, value, len);

        for (unsigned i = path->depth; i-- > 0;) {
                Buf outer = wrap_len(path->field[i]->id, b.data, b.len);

                free(b.data);
                b = outer;
        }
        return b;
}

static void path_name(const Path *path, char *buf, size_t size) {
        size_t n = 0;

        for (unsigned i = 0; i <= path->depth && n < size; i++)
                n += (size_t) snprintf(buf + n, size - n, "%s%s.%s", i ? " > " : "", path->msg[i]->short_name,
                                       path->field[i]->name);
}

static void test_string_field(const Path *path) {
        static const struct {
                const char *s;
                size_t len;
                const char *what, *reason;
        } bad[] = {
                { "a\0b", 3, "a NUL byte", "NUL byte in string" },
                { "hk\0anything", 11, "a NUL byte after a valid name", "NUL byte in string" },
                { "\xc0\x80", 2, "overlong UTF-8", "invalid UTF-8 in string" },
                { "k\xed\xa0\x80", 4, "a UTF-16 surrogate", "invalid UTF-8 in string" },
                { "k\xf4\x90\x80\x80", 5, "a code point above U+10FFFF", "invalid UTF-8 in string" },
                { "k\xff", 2, "byte FF", "invalid UTF-8 in string" },
        };
        const ProtobufCFieldDescriptor *f = path->field[path->depth];
        char name[256];
        Buf b;

        path_name(path, name, sizeof(name));
        n_string_paths++;
        for (unsigned i = 1; i <= path->depth; i++)
                if (path->msg[i] == &kek__request__descriptor)
                        n_inner_paths++;
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                WireCheckError e = {};
                int r;

                b = build(path, (const uint8_t *) bad[i].s, bad[i].len);
                r = check(b.data, b.len, &e);
                ok(r == -KEKERR_MALFORMED_REQUEST && e.reason && strcmp(e.reason, bad[i].reason) == 0 && e.field &&
                           strcmp(e.field, f->name) == 0 && strcmp(e.message, path->msg[path->depth]->short_name) == 0,
                   "%s with %s: refused (%s)", name, bad[i].what, e.reason ? e.reason : "accepted");
                free(b.data);
        }

        /* A valid value passes, and protobuf-c then reads it whole. */
        b = build(path, (const uint8_t *) "k\xc3\xa9-1", 5);
        if (ok(check(b.data, b.len, NULL) == 0, "%s with valid UTF-8: accepted", name)) {
                Kek__Request *req = kek__request__unpack(NULL, b.len, b.data);

                ok(req != NULL, "%s with valid UTF-8: protobuf-c decodes it", name);
                kek__request__free_unpacked(req, NULL);
        }
        free(b.data);
}

static void walk_fields(Path *path) {
        const ProtobufCMessageDescriptor *m = path->msg[path->depth];

        for (unsigned i = 0; i < m->n_fields; i++) {
                const ProtobufCFieldDescriptor *f = &m->fields[i];
                unsigned seen = 1;

                path->field[path->depth] = f;
                if (f->type == PROTOBUF_C_TYPE_STRING)
                        test_string_field(path);
                if (f->type != PROTOBUF_C_TYPE_MESSAGE || path->depth + 1 > WIRECHECK_DEPTH_MAX)
                        continue;
                for (unsigned k = 0; k <= path->depth; k++)
                        seen += path->msg[k] == f->descriptor;
                if (seen > WIRECHECK_TYPE_REPEAT_MAX)
                        continue;
                path->depth++;
                path->msg[path->depth] = f->descriptor;
                walk_fields(path);
                path->depth--;
        }
}

static void test_every_string_field(void) {
        Path path = { .msg = { &kek__request__descriptor } };

        walk_fields(&path);
        /* Every string field is reached at the top and again in the approval's inner Request. */
        ok(n_string_paths > 0 && n_inner_paths * 2 == n_string_paths,
           "string fields reached from Request: %u, %u of them in the inner Request", n_string_paths, n_inner_paths);
}

/* --- nesting ---------------------------------------------------------------------------- */

/* The deepest request the schema needs: SubmitApproval > Request > SetGrant > Grant, and an inner key. */
static void test_legitimate_depth(void) {
        Kek__Grant grant = KEK__GRANT__INIT;
        Kek__SetGrantRequest sg = KEK__SET_GRANT_REQUEST__INIT;
        Kek__Request inner = KEK__REQUEST__INIT, outer = KEK__REQUEST__INIT;
        Kek__SubmitApprovalRequest sub = KEK__SUBMIT_APPROVAL_REQUEST__INIT;
        WireCheckInfo info = {};
        uint8_t buf[256];
        size_t n;

        grant.id = 1201;
        grant.ops = 2;
        sg.key = (char *) "k1";
        sg.grant = &grant;
        inner.body_case = KEK__REQUEST__BODY_SET_GRANT;
        inner.set_grant = &sg;
        sub.request = &inner;
        outer.id = 77;
        outer.body_case = KEK__REQUEST__BODY_SUBMIT_APPROVAL;
        outer.submit_approval = &sub;
        n = kek__request__pack(&outer, buf);
        is_int(wirecheck_message(&kek__request__descriptor, buf, n, &info, NULL), 0,
               "Request > SubmitApproval > Request > SetGrant > Grant (depth %u): accepted", WIRECHECK_DEPTH_MAX);
        is_int(info.id, 77, "... its id is read");
        is_int(info.oneof_case, KEK__REQUEST__BODY_SUBMIT_APPROVAL, "... and its operation");
        ok(info.key == NULL, "... the inner request's key is not the body's");

        /* The key of the body, and a later oneof member replacing an earlier one, as protobuf-c does. */
        {
                Kek__Request r = KEK__REQUEST__INIT;
                Kek__DeleteKeyRequest del = KEK__DELETE_KEY_REQUEST__INIT;
                Kek__ListKeysRequest list = KEK__LIST_KEYS_REQUEST__INIT;
                uint8_t two[128];
                size_t n1, n2;

                del.key = (char *) "victim";
                r.body_case = KEK__REQUEST__BODY_DELETE_KEY;
                r.delete_key = &del;
                n1 = kek__request__pack(&r, two);
                is_int(wirecheck_message(&kek__request__descriptor, two, n1, &info, NULL), 0, "delete-key: accepted");
                ok(info.oneof_case == KEK__REQUEST__BODY_DELETE_KEY && info.key && info.key_len == 6 &&
                           memcmp(info.key, "victim", 6) == 0,
                   "delete-key: operation and key read before unpacking");
                r.body_case = KEK__REQUEST__BODY_LIST_KEYS;
                r.list_keys = &list;
                list.include_deleted = true;
                n2 = kek__request__pack(&r, two + n1);
                is_int(wirecheck_message(&kek__request__descriptor, two, n1 + n2, &info, NULL), 0,
                       "delete-key then list-keys: accepted");
                ok(info.oneof_case == KEK__REQUEST__BODY_LIST_KEYS && info.key == NULL,
                   "... the last member is the operation (got %u), without the first one's key", info.oneof_case);
        }
}

/* Request (> SubmitApproval > Request) x k, innermost an empty Request. */
static Buf approval_chain(unsigned k) {
        Buf b = { calloc(1, 1), 0 };

        for (unsigned i = 0; i < k; i++) {
                Buf s = wrap_len(1, b.data, b.len), r;

                free(b.data);
                r = wrap_len(KEK__REQUEST__BODY_SUBMIT_APPROVAL, s.data, s.len);
                free(s.data);
                b = r;
        }
        return b;
}

static void test_recursion(void) {
        WireCheckError e = {};
        Buf b;

        b = approval_chain(1);
        is_int(check(b.data, b.len, NULL), 0, "a Request inside an approval: accepted");
        free(b.data);
        b = approval_chain(2);
        is_int(check(b.data, b.len, &e), -KEKERR_MALFORMED_REQUEST, "an approval inside an approval: refused");
        ok(e.reason && strcmp(e.reason, "message nested within its own type more than once") == 0 &&
                   strcmp(e.message, "SubmitApprovalRequest") == 0 && strcmp(e.field, "request") == 0,
           "... as a Request nested in itself twice, at SubmitApprovalRequest.request");
        free(b.data);
}

/* A chain of distinct message types M0 > M1 > ..., each with one field 1 of the next type. */
#define CHAIN 8
static ProtobufCMessageDescriptor chain[CHAIN];
static ProtobufCFieldDescriptor chain_fields[CHAIN];
static const unsigned chain_by_name[1] = { 0 };
static const ProtobufCIntRange chain_ranges[2] = { { 1, 0 }, { 0, 1 } };
static char chain_names[CHAIN][8];

static void chain_init(void) {
        for (unsigned i = 0; i < CHAIN; i++) {
                snprintf(chain_names[i], sizeof(chain_names[i]), "M%u", i);
                chain_fields[i] = (ProtobufCFieldDescriptor) {
                        .name = "next",
                        .id = 1,
                        .label = PROTOBUF_C_LABEL_NONE,
                        .type = i + 1 < CHAIN ? PROTOBUF_C_TYPE_MESSAGE : PROTOBUF_C_TYPE_BYTES,
                        .descriptor = i + 1 < CHAIN ? &chain[i + 1] : NULL,
                };
                chain[i] = (ProtobufCMessageDescriptor) {
                        .magic = PROTOBUF_C__MESSAGE_DESCRIPTOR_MAGIC,
                        .name = chain_names[i],
                        .short_name = chain_names[i],
                        .c_name = chain_names[i],
                        .package_name = "",
                        .n_fields = 1,
                        .fields = &chain_fields[i],
                        .fields_sorted_by_name = chain_by_name,
                        .n_field_ranges = 1,
                        .field_ranges = chain_ranges,
                };
        }
}

static void test_depth_limit(void) {
        chain_init();
        for (unsigned depth = 1; depth <= WIRECHECK_DEPTH_MAX + 2; depth++) {
                Buf b = { calloc(1, 1), 0 };
                WireCheckError e = {};
                int r;

                for (unsigned i = 0; i < depth; i++) {
                        Buf o = wrap_len(1, b.data, b.len);

                        free(b.data);
                        b = o;
                }
                r = wirecheck_message(&chain[0], b.data, b.len, NULL, &e);
                if (depth <= WIRECHECK_DEPTH_MAX)
                        is_int(r, 0, "distinct messages nested %u deep: accepted", depth);
                else
                        ok(r == -KEKERR_MALFORMED_REQUEST && e.reason && strcmp(e.reason, "messages nested too deep") == 0,
                           "distinct messages nested %u deep: refused (%s)", depth, e.reason ? e.reason : "accepted");
                free(b.data);
        }
}

/*
 * Request > SubmitApproval > Request > ... as deep as fits in size bytes,
 * built from the inside out (the frame: 4-6 bytes a level).
 */
static Buf deep_frame(size_t size, unsigned *ret_levels) {
        uint8_t *buf = malloc(size);
        size_t start = size, len = 0;
        unsigned levels = 0;

        if (!buf)
                abort();
        for (;;) {
                /* tag of SubmitApprovalRequest.request (0x0a), or of Request.submit_approval (0xa2 0x02) */
                bool sub = levels % 2 == 0;
                uint8_t hdr[16];
                size_t h = put_varint(hdr, sub ? (1u << 3 | 2) : (KEK__REQUEST__BODY_SUBMIT_APPROVAL << 3 | 2));

                h += put_varint(hdr + h, len);
                if (h > start)
                        break;
                start -= h;
                memcpy(buf + start, hdr, h);
                len += h;
                levels++;
        }
        if (levels % 2) {
                /* The outermost must be a Request's field: drop one SubmitApprovalRequest.request level. */
                size_t h = 1;

                while (buf[start + h] & 0x80)
                        h++;
                h++;
                start += h;
                len -= h;
                levels--;
        }
        memmove(buf, buf + start, len);
        *ret_levels = levels;
        return (Buf) { buf, len };
}

static void test_deep_frames(void) {
        static const size_t sizes[] = { FRAME_MAX_DEFAULT, FRAME_MAX_LIMIT };

        for (size_t i = 0; i < ELEMENTSOF(sizes); i++) {
                WireCheckError e = {};
                unsigned levels;
                Buf b = deep_frame(sizes[i], &levels);
                int r = check(b.data, b.len, &e);

                ok(r == -KEKERR_MALFORMED_REQUEST && e.reason && e.offset < 32,
                   "%zu-byte frame nested %u messages deep: refused near its start (%s at byte %zu)", b.len, levels,
                   e.reason ? e.reason : "accepted", e.offset);
                free(b.data);
        }
}

/* --- framing ---------------------------------------------------------------------------- */

static void test_framing(void) {
        static const struct {
                const char *what;
                const char *bytes;
                size_t len;
        } bad[] = {
                { "truncated tag varint", "\x80", 1 },
                { "truncated id varint", "\x08\xff", 2 },
                { "11-byte varint", "\x08\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", 12 },
                { "truncated length", "\x52\x80", 2 },
                { "length beyond the end", "\x52\x05\x0a\x01", 4 },
                { "huge length", "\x52\xff\xff\xff\xff\xff\xff\xff\xff\x7f", 10 },
                { "inner length beyond its message", "\x52\x03\x0a\x05k", 5 },
                { "field number 0", "\x02\x00", 2 },
                { "start group", "\x0b\x0c", 2 },
                { "end group", "\x0c", 1 },
                { "wire type 6", "\x0e", 1 },
                { "wire type 7", "\x0f", 1 },
                { "truncated fixed64 (unknown field)", "\xf9\x07\x01\x02", 4 },
                { "truncated fixed32 (unknown field)", "\xfd\x07\x01", 3 },
                { "id (a varint) sent length-delimited", "\x0a\x00", 2 },
                { "wrap (a message) sent as a varint", "\x50\x01", 2 },
                { "inner version (a varint) sent as fixed32", "\x52\x05\x25\x01\x00\x00\x00", 7 },
                { "id length-delimited after an approval the peer may lack the role for",
                  "\x92\x02\x02\x0a\x00\x0a\x05alpha", 12 },
                /* fuzz-dispatch, CI: protobuf-c cannot merge two approval Requests; the check let them by */
                { "an approval's Request given twice", "\x08\x0b\x92\x02\x04\x0a\x00\x0a\x00", 9 },
                { "an approval's Request given twice, each with an id", "\x92\x02\x08\x0a\x02\x08\x01\x0a\x02\x08\x02", 11 },
                { "the approval itself given twice", "\x92\x02\x00\x92\x02\x00", 6 },
        };

        for (size_t i = 0; i < ELEMENTSOF(bad); i++)
                is_int(check((const uint8_t *) bad[i].bytes, bad[i].len, NULL), -KEKERR_MALFORMED_REQUEST, "%s: refused",
                       bad[i].what);
        is_int(check((const uint8_t *) "", 0, NULL), 0, "empty message: accepted (protobuf-c decodes it too)");
        is_int(check((const uint8_t *) "\x92\x02\x02\x0a\x00", 5, NULL), 0, "an approval's Request given once: accepted");
        is_int(check((const uint8_t *) "\xfd\x07\x01\x02\x03\x04\xf9\x07" "12345678", 16, NULL), 0,
               "unknown fixed32 and fixed64 fields: accepted");
}

/* Every prefix of a valid request: the check accepts it exactly when protobuf-c decodes it. */
static void test_prefixes(void) {
        Kek__Request r = KEK__REQUEST__INIT;
        Kek__WrapRequest w = KEK__WRAP_REQUEST__INIT;
        uint8_t buf[128], pt[40];
        size_t n, agree = 0;

        memset(pt, 0x5a, sizeof(pt));
        w.key = (char *) "hk";
        w.plaintext = (ProtobufCBinaryData) { sizeof(pt), pt };
        w.context = (ProtobufCBinaryData) { 3, (uint8_t *) "ctx" };
        w.version = 300;
        r.id = 1ull << 40;
        r.body_case = KEK__REQUEST__BODY_WRAP;
        r.wrap = &w;
        n = kek__request__pack(&r, buf);
        for (size_t len = 0; len <= n; len++) {
                Kek__Request *u = kek__request__unpack(NULL, len, buf);
                bool accepted = check(buf, len, NULL) == 0;

                if (accepted == (u != NULL))
                        agree++;
                else
                        diag("prefix of %zu bytes: check %s, protobuf-c %s", len, accepted ? "accepts" : "refuses",
                             u ? "decodes" : "fails");
                kek__request__free_unpacked(u, NULL);
        }
        is_int(agree, n + 1, "all %zu prefixes of a wrap request: the check agrees with protobuf-c", n + 1);
}

/* Every single-byte change of an approval request: what the check accepts, protobuf-c decodes. */
static void test_mutations(void) {
        Kek__Grant grant = KEK__GRANT__INIT;
        Kek__SetGrantRequest sg = KEK__SET_GRANT_REQUEST__INIT;
        Kek__Request inner = KEK__REQUEST__INIT, outer = KEK__REQUEST__INIT;
        Kek__SubmitApprovalRequest sub = KEK__SUBMIT_APPROVAL_REQUEST__INIT;
        uint8_t buf[128];
        size_t n, tried = 0, accepted = 0, bad = 0;

        grant.group = true;
        grant.id = 300;
        grant.ops = 15;
        sg.key = (char *) "alpha";
        sg.grant = &grant;
        sg.revoke = true;
        inner.id = 9;
        inner.body_case = KEK__REQUEST__BODY_SET_GRANT;
        inner.set_grant = &sg;
        sub.request = &inner;
        outer.id = 70000;
        outer.body_case = KEK__REQUEST__BODY_SUBMIT_APPROVAL;
        outer.submit_approval = &sub;
        n = kek__request__pack(&outer, buf);
        for (size_t i = 0; i < n; i++)
                for (unsigned v = 0; v < 256; v++) {
                        uint8_t m[sizeof(buf)];

                        memcpy(m, buf, n);
                        m[i] = (uint8_t) v;
                        tried++;
                        if (check(m, n, NULL) == 0) {
                                Kek__Request *u = kek__request__unpack(NULL, n, m);

                                accepted++;
                                if (!u && bad++ < 5)
                                        diag("byte %zu = 0x%02x: accepted, but protobuf-c cannot decode it", i, v);
                                kek__request__free_unpacked(u, NULL);
                        }
                }
        is_int(bad, 0, "%zu single-byte changes of a %zu-byte approval request: all %zu accepted decode", tried, n,
               accepted);
}

int main(void) {
        test_utf8();
        test_every_string_field();
        test_legitimate_depth();
        test_recursion();
        test_depth_limit();
        test_deep_frames();
        test_framing();
        test_prefixes();
        test_mutations();
        return tap_done();
}
