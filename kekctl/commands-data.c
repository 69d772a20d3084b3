/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * kekctl's data-plane commands: wrap, unwrap and rewrap move raw bytes from
 * stdin to stdout for scripts and tests. Input that may be a plaintext AEK
 * is read into secure memory (Secret), and a plaintext is never written to a
 * terminal.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "common/secret.h"
#include "client/transport.h"
#include "kekctl/call.h"
#include "kekctl/commands.h"
#include "kekctl/options.h"
#include "proto/blob.h"

/* Reads all of stdin (at most max bytes) into a Secret: it may be a plaintext AEK. */
static int read_stdin(size_t max, Secret **ret) {
        _cleanup_secret_ Secret *s = NULL;
        size_t len = 0;
        int r;

        r = secret_new(max + 1, &s);
        if (r < 0) {
                fprintf(stderr, "kekctl: cannot allocate secure memory: %s\n", strerror(-r));
                return EXIT_IO;
        }
        for (;;) {
                ssize_t n = read(STDIN_FILENO, s->data + len, s->len - len);

                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        fprintf(stderr, "kekctl: cannot read stdin: %m\n");
                        return EXIT_IO;
                }
                if (n == 0)
                        break;
                len += (size_t) n;
                if (len > max) {
                        fprintf(stderr, "kekctl: input is larger than %zu bytes\n", max);
                        return EXIT_USAGE;
                }
        }
        if (len == 0) {
                fprintf(stderr, "kekctl: no input on stdin\n");
                return EXIT_USAGE;
        }
        secret_truncate(s, len);
        *ret = TAKE_PTR(s);
        return 0;
}

static int write_stdout(const uint8_t *p, size_t n) {
        while (n > 0) {
                ssize_t w = write(STDOUT_FILENO, p, n);

                if (w < 0) {
                        if (errno == EINTR)
                                continue;
                        fprintf(stderr, "kekctl: cannot write stdout: %m\n");
                        return EXIT_IO;
                }
                p += w;
                n -= (size_t) w;
        }
        return 0;
}

static ProtobufCBinaryData context_of(const CmdOpts *o) {
        return (ProtobufCBinaryData) { o->context ? strlen(o->context) : 0, (uint8_t *) o->context };
}

int cmd_wrap(CmdOpts *o, int argc, char *argv[]) {
        _cleanup_secret_ Secret *pt = NULL;
        Kek__Request req = KEK__REQUEST__INIT;
        Kek__WrapRequest wr = KEK__WRAP_REQUEST__INIT;
        Kek__Response *resp;
        const char *name;
        int r;

        r = parse_name_cmd(argc, argv, o, &name);
        if (r != 0)
                return r;
        r = read_stdin(AEK_MAX_SIZE, &pt);
        if (r != 0)
                return r;
        wr.key = (char *) name;
        wr.plaintext = (ProtobufCBinaryData) { pt->len, pt->data };
        wr.context = context_of(o);
        wr.version = o->version;
        req.body_case = KEK__REQUEST__BODY_WRAP;
        req.wrap = &wr;
        r = call(&req, "wrap", KEK__RESPONSE__BODY_WRAP, &resp);
        if (r != 0)
                return r;
        r = write_stdout(resp->wrap->blob.data, resp->wrap->blob.len);
        kek_response_free(resp);
        return r;
}

/* unwrap and rewrap: a blob on stdin, bytes on stdout */
static int blob_cmd(CmdOpts *o, int argc, char *argv[], bool rewrap) {
        _cleanup_secret_ Secret *blob = NULL;
        Kek__Request req = KEK__REQUEST__INIT;
        Kek__UnwrapRequest ur = KEK__UNWRAP_REQUEST__INIT;
        Kek__RewrapRequest rr = KEK__REWRAP_REQUEST__INIT;
        Kek__Response *resp;
        const ProtobufCBinaryData *out;
        int r;

        r = parse_cmd_opts(argc, argv, o);
        if (r != 0)
                return r;
        if (argc - optind != 0)
                return usage_error("%s takes the blob on stdin and no arguments", argv[0]);
        if (!rewrap && isatty(STDOUT_FILENO)) {
                fprintf(stderr, "kekctl: refusing to write a plaintext key to a terminal; redirect stdout\n");
                return EXIT_USAGE;
        }
        r = read_stdin(BLOB_MAX_SIZE, &blob);
        if (r != 0)
                return r;
        if (rewrap) {
                rr.blob = (ProtobufCBinaryData) { blob->len, blob->data };
                rr.context = context_of(o);
                req.body_case = KEK__REQUEST__BODY_REWRAP;
                req.rewrap = &rr;
        } else {
                ur.blob = (ProtobufCBinaryData) { blob->len, blob->data };
                ur.context = context_of(o);
                req.body_case = KEK__REQUEST__BODY_UNWRAP;
                req.unwrap = &ur;
        }
        r = call(&req, argv[0], rewrap ? KEK__RESPONSE__BODY_REWRAP : KEK__RESPONSE__BODY_UNWRAP, &resp);
        if (r != 0)
                return r;
        out = rewrap ? &resp->rewrap->blob : &resp->unwrap->plaintext;
        r = write_stdout(out->data, out->len);
        kek_response_free(resp);
        return r;
}

int cmd_unwrap(CmdOpts *o, int argc, char *argv[]) {
        return blob_cmd(o, argc, argv, false);
}

int cmd_rewrap(CmdOpts *o, int argc, char *argv[]) {
        return blob_cmd(o, argc, argv, true);
}
