/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * kekctl: the operator's CLI for kekd. Each command is one request over the
 * socket; output is a human table by default and JSON (json-c) with --json.
 * wrap/unwrap move raw bytes stdin -> stdout for scripts and tests; a
 * plaintext key is never written to a terminal.
 *
 * Exit status: 0 success; 1 kekd refused the request (the error code name and
 * message go to stderr); 2 usage error; 3 kekd not reachable or protocol
 * failure; 4 local I/O error. Documented in kekctl(8).
 */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "client/conn.h"
#include "common/kekerr.h"
#include "common/secret.h"
#include "proto/blob.h"

enum {
        EXIT_REFUSED = 1,
        EXIT_USAGE = 2,
        EXIT_UNREACHABLE = 3,
        EXIT_IO = 4,
};

static const char *arg_socket;
static bool arg_json;
static int arg_timeout_ms = 30000;

static void help(void) {
        printf("Usage: kekctl [OPTIONS] COMMAND [ARGS]\n\n"
               "Administer kekd, the HSM-backed key-encryption-key service.\n\n"
               "Commands:\n"
               "  create NAME                     create a key (version 1 generated in the HSM)\n"
               "  list                            list keys\n"
               "  show NAME                       show a key and its versions\n"
               "  version NAME                    current version, state and recoverability\n"
               "  wrap NAME [--context CTX] [--key-version N]\n"
               "                                  wrap the bytes on stdin, blob to stdout\n"
               "  unwrap [--context CTX]          unwrap the blob on stdin, plaintext to stdout\n\n"
               "Options:\n"
               "  -s, --socket=PATH   kekd socket (default: $KEKD_SOCKET or %s)\n"
               "  -j, --json          JSON output\n"
               "  -t, --timeout=SEC   per-request timeout (default 30)\n"
               "  -h, --help          show this help\n"
               "      --version       show the version\n\n"
               "Exit status: 0 ok, 1 refused by kekd, 2 usage, 3 kekd unreachable, 4 local I/O.\n",
               KEK_DEFAULT_SOCKET);
}

_printf_(1, 2) static int usage_error(const char *fmt, ...) {
        va_list ap;

        fprintf(stderr, "kekctl: ");
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fprintf(stderr, "\nTry 'kekctl --help'.\n");
        return EXIT_USAGE;
}

/* Reports a failed call and maps it to the exit status. */
static int report(KekConn *c, int r, const char *what) {
        const char *name = kekerr_name(r);

        if (name) {
                const char *msg = c ? kek_conn_error_message(c) : "";

                fprintf(stderr, "kekctl: %s: %s%s%s\n", what, name, msg[0] ? ": " : "", msg);
                return EXIT_REFUSED;
        }
        fprintf(stderr, "kekctl: %s: %s\n", what, strerror(-r));
        return EXIT_UNREACHABLE;
}

static int connect_or_report(KekConn **ret) {
        const char *path = arg_socket ?: getenv("KEKD_SOCKET") ?: KEK_DEFAULT_SOCKET;
        int r = kek_conn_open(path, arg_timeout_ms, ret);

        if (r < 0) {
                fprintf(stderr, "kekctl: cannot connect to kekd at %s: %s\n", path, strerror(-r));
                return EXIT_UNREACHABLE;
        }
        return 0;
}

static const char *state_name(Kek__KeyState s) {
        switch (s) {
        case KEK__KEY_STATE__ENABLED:
                return "enabled";
        case KEK__KEY_STATE__DISABLED:
                return "disabled";
        case KEK__KEY_STATE__DELETED:
                return "deleted";
        default:
                return "unknown";
        }
}

static void format_time(uint64_t usec, char *buf, size_t size) {
        time_t t = (time_t) (usec / 1000000);
        struct tm tm;

        if (usec == 0 || !gmtime_r(&t, &tm) || strftime(buf, size, "%Y-%m-%d %H:%M:%S UTC", &tm) == 0)
                snprintf(buf, size, "-");
}

static json_object *key_info_json(const Kek__KeyInfo *k) {
        json_object *o = json_object_new_object(), *vs = json_object_new_array();

        json_object_object_add(o, "name", json_object_new_string(k->name));
        json_object_object_add(o, "state", json_object_new_string(state_name(k->state)));
        json_object_object_add(o, "current_version", json_object_new_int64(k->current_version));
        json_object_object_add(o, "created_usec", json_object_new_uint64(k->created_usec));
        for (size_t i = 0; i < k->n_versions; i++) {
                json_object *v = json_object_new_object();

                json_object_object_add(v, "id", json_object_new_int64(k->versions[i]->id));
                json_object_object_add(v, "enabled", json_object_new_boolean(k->versions[i]->enabled));
                json_object_object_add(v, "created_usec", json_object_new_uint64(k->versions[i]->created_usec));
                json_object_array_add(vs, v);
        }
        json_object_object_add(o, "versions", vs);
        return o;
}

static void print_json(json_object *o) {
        puts(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE));
        json_object_put(o);
}

static void print_key_info(const Kek__KeyInfo *k) {
        char t[64];

        if (arg_json) {
                print_json(key_info_json(k));
                return;
        }
        format_time(k->created_usec, t, sizeof(t));
        printf("Key:       %s\nState:     %s\nCurrent:   %u\nCreated:   %s\n\n", k->name, state_name(k->state),
               k->current_version, t);
        printf("%-9s %-9s %s\n", "VERSION", "STATE", "CREATED");
        for (size_t i = 0; i < k->n_versions; i++) {
                format_time(k->versions[i]->created_usec, t, sizeof(t));
                printf("%-9u %-9s %s\n", k->versions[i]->id, k->versions[i]->enabled ? "enabled" : "disabled", t);
        }
}

static int call(Kek__Request *req, const char *what, KekConn **ret_conn, Kek__Response **ret) {
        _cleanup_(kek_conn_freep) KekConn *c = NULL;
        int r;

        r = connect_or_report(&c);
        if (r != 0)
                return r;
        r = kek_conn_call(c, req, ret);
        if (r < 0)
                return report(c, r, what);
        *ret_conn = TAKE_PTR(c);
        return 0;
}

/*
 * Options after the command: --json for every command, --context and
 * --key-version where the command takes them (ret_ctx / ret_version non-NULL).
 * Leaves optind at the first positional argument.
 */
static int parse_cmd_opts(int argc, char *argv[], const char **ret_ctx, uint32_t *ret_version) {
        static const struct option options[] = {
                { "json", no_argument, NULL, 'j' },
                { "context", required_argument, NULL, 'C' },
                { "key-version", required_argument, NULL, 'V' },
                {},
        };
        int c;

        optind = 0; /* full reset of GNU getopt, which permutes so options may follow arguments */
        while ((c = getopt_long(argc, argv, "j", options, NULL)) >= 0)
                switch (c) {
                case 'j':
                        arg_json = true;
                        break;
                case 'C':
                        if (!ret_ctx)
                                return usage_error("--context applies to wrap and unwrap only");
                        if (strlen(optarg) > CONTEXT_MAX_SIZE)
                                return usage_error("--context is longer than %u bytes", CONTEXT_MAX_SIZE);
                        *ret_ctx = optarg;
                        break;
                case 'V': {
                        char *end;
                        unsigned long v;

                        if (!ret_version)
                                return usage_error("--key-version applies to wrap only");
                        errno = 0;
                        v = strtoul(optarg, &end, 10);
                        if (errno || *end || v == 0 || v > UINT32_MAX || optarg[0] == '-')
                                return usage_error("invalid --key-version '%s'", optarg);
                        *ret_version = (uint32_t) v;
                        break;
                }
                default:
                        return EXIT_USAGE;
                }
        return 0;
}

static int cmd_create(int argc, char *argv[]) {
        _cleanup_(kek_conn_freep) KekConn *c = NULL;
        Kek__Request req = KEK__REQUEST__INIT;
        Kek__CreateKeyRequest cr = KEK__CREATE_KEY_REQUEST__INIT;
        Kek__Response *resp;
        int r;

        r = parse_cmd_opts(argc, argv, NULL, NULL);
        if (r != 0)
                return r;
        if (argc - optind != 1)
                return usage_error("create takes exactly one key name");
        if (!key_name_valid(argv[optind]))
                return usage_error("invalid key name '%s': use 1-64 of [A-Za-z0-9._-], not starting with '.' or '-'", argv[optind]);
        cr.key = argv[optind];
        req.body_case = KEK__REQUEST__BODY_CREATE_KEY;
        req.create_key = &cr;
        r = call(&req, "create", &c, &resp);
        if (r != 0)
                return r;
        if (resp->body_case != KEK__RESPONSE__BODY_KEY_INFO || !resp->key_info->key)
                r = report(c, -EBADMSG, "create");
        else
                print_key_info(resp->key_info->key);
        kek_conn_response_free(resp);
        return r;
}

static int cmd_show(int argc, char *argv[]) {
        _cleanup_(kek_conn_freep) KekConn *c = NULL;
        Kek__Request req = KEK__REQUEST__INIT;
        Kek__GetKeyRequest gr = KEK__GET_KEY_REQUEST__INIT;
        Kek__Response *resp;
        int r;

        r = parse_cmd_opts(argc, argv, NULL, NULL);
        if (r != 0)
                return r;
        if (argc - optind != 1)
                return usage_error("show takes exactly one key name");
        gr.key = argv[optind];
        req.body_case = KEK__REQUEST__BODY_GET_KEY;
        req.get_key = &gr;
        r = call(&req, "show", &c, &resp);
        if (r != 0)
                return r;
        if (resp->body_case != KEK__RESPONSE__BODY_KEY_INFO || !resp->key_info->key)
                r = report(c, -EBADMSG, "show");
        else
                print_key_info(resp->key_info->key);
        kek_conn_response_free(resp);
        return r;
}

static int cmd_list(int argc, char *argv[]) {
        _cleanup_(kek_conn_freep) KekConn *c = NULL;
        Kek__Request req = KEK__REQUEST__INIT;
        Kek__ListKeysRequest lr = KEK__LIST_KEYS_REQUEST__INIT;
        Kek__Response *resp;
        int r;

        r = parse_cmd_opts(argc, argv, NULL, NULL);
        if (r != 0)
                return r;
        if (argc - optind != 0)
                return usage_error("list takes no arguments");
        req.body_case = KEK__REQUEST__BODY_LIST_KEYS;
        req.list_keys = &lr;
        r = call(&req, "list", &c, &resp);
        if (r != 0)
                return r;
        if (resp->body_case != KEK__RESPONSE__BODY_LIST_KEYS) {
                kek_conn_response_free(resp);
                return report(c, -EBADMSG, "list");
        }
        if (arg_json) {
                json_object *a = json_object_new_array();

                for (size_t i = 0; i < resp->list_keys->n_keys; i++)
                        json_object_array_add(a, key_info_json(resp->list_keys->keys[i]));
                print_json(a);
        } else {
                printf("%-32s %-9s %-8s %-9s %s\n", "NAME", "STATE", "CURRENT", "VERSIONS", "CREATED");
                for (size_t i = 0; i < resp->list_keys->n_keys; i++) {
                        const Kek__KeyInfo *k = resp->list_keys->keys[i];
                        char t[64];

                        format_time(k->created_usec, t, sizeof(t));
                        printf("%-32s %-9s %-8u %-9zu %s\n", k->name, state_name(k->state), k->current_version,
                               k->n_versions, t);
                }
        }
        kek_conn_response_free(resp);
        return 0;
}

static int cmd_version(int argc, char *argv[]) {
        _cleanup_(kek_conn_freep) KekConn *c = NULL;
        Kek__Request req = KEK__REQUEST__INIT;
        Kek__GetKeyVersionRequest gr = KEK__GET_KEY_VERSION_REQUEST__INIT;
        Kek__Response *resp;
        int r;

        r = parse_cmd_opts(argc, argv, NULL, NULL);
        if (r != 0)
                return r;
        if (argc - optind != 1)
                return usage_error("version takes exactly one key name");
        gr.key = argv[optind];
        req.body_case = KEK__REQUEST__BODY_GET_KEY_VERSION;
        req.get_key_version = &gr;
        r = call(&req, "version", &c, &resp);
        if (r != 0)
                return r;
        if (resp->body_case != KEK__RESPONSE__BODY_GET_KEY_VERSION) {
                kek_conn_response_free(resp);
                return report(c, -EBADMSG, "version");
        }
        if (arg_json) {
                json_object *o = json_object_new_object();

                json_object_object_add(o, "name", json_object_new_string(resp->get_key_version->key));
                json_object_object_add(o, "current_version", json_object_new_int64(resp->get_key_version->current_version));
                json_object_object_add(o, "state", json_object_new_string(state_name(resp->get_key_version->state)));
                json_object_object_add(o, "recoverable", json_object_new_boolean(resp->get_key_version->recoverable));
                print_json(o);
        } else
                printf("Key:         %s\nCurrent:     %u\nState:       %s\nRecoverable: %s\n", resp->get_key_version->key,
                       resp->get_key_version->current_version, state_name(resp->get_key_version->state),
                       resp->get_key_version->recoverable ? "yes" : "no");
        kek_conn_response_free(resp);
        return 0;
}

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

static int cmd_wrap(int argc, char *argv[]) {
        _cleanup_(kek_conn_freep) KekConn *c = NULL;
        _cleanup_secret_ Secret *pt = NULL;
        Kek__Request req = KEK__REQUEST__INIT;
        Kek__WrapRequest wr = KEK__WRAP_REQUEST__INIT;
        Kek__Response *resp;
        const char *ctx = NULL;
        uint32_t version = 0;
        int r;

        r = parse_cmd_opts(argc, argv, &ctx, &version);
        if (r != 0)
                return r;
        if (argc - optind != 1)
                return usage_error("wrap takes exactly one key name");
        r = read_stdin(AEK_MAX_SIZE, &pt);
        if (r != 0)
                return r;
        wr.key = argv[optind];
        wr.plaintext = (ProtobufCBinaryData) { pt->len, pt->data };
        wr.context = (ProtobufCBinaryData) { ctx ? strlen(ctx) : 0, (uint8_t *) ctx };
        wr.version = version;
        req.body_case = KEK__REQUEST__BODY_WRAP;
        req.wrap = &wr;
        r = call(&req, "wrap", &c, &resp);
        if (r != 0)
                return r;
        if (resp->body_case != KEK__RESPONSE__BODY_WRAP)
                r = report(c, -EBADMSG, "wrap");
        else
                r = write_stdout(resp->wrap->blob.data, resp->wrap->blob.len);
        kek_conn_response_free(resp);
        return r;
}

static int cmd_unwrap(int argc, char *argv[]) {
        _cleanup_(kek_conn_freep) KekConn *c = NULL;
        _cleanup_secret_ Secret *blob = NULL;
        Kek__Request req = KEK__REQUEST__INIT;
        Kek__UnwrapRequest ur = KEK__UNWRAP_REQUEST__INIT;
        Kek__Response *resp;
        const char *ctx = NULL;
        int r;

        r = parse_cmd_opts(argc, argv, &ctx, NULL);
        if (r != 0)
                return r;
        if (argc - optind != 0)
                return usage_error("unwrap takes the blob on stdin and no arguments");
        if (isatty(STDOUT_FILENO)) {
                fprintf(stderr, "kekctl: refusing to write a plaintext key to a terminal; redirect stdout\n");
                return EXIT_USAGE;
        }
        r = read_stdin(BLOB_MAX_SIZE, &blob);
        if (r != 0)
                return r;
        ur.blob = (ProtobufCBinaryData) { blob->len, blob->data };
        ur.context = (ProtobufCBinaryData) { ctx ? strlen(ctx) : 0, (uint8_t *) ctx };
        req.body_case = KEK__REQUEST__BODY_UNWRAP;
        req.unwrap = &ur;
        r = call(&req, "unwrap", &c, &resp);
        if (r != 0)
                return r;
        if (resp->body_case != KEK__RESPONSE__BODY_UNWRAP)
                r = report(c, -EBADMSG, "unwrap");
        else
                r = write_stdout(resp->unwrap->plaintext.data, resp->unwrap->plaintext.len);
        kek_conn_response_free(resp);
        return r;
}

static const struct {
        const char *name;
        int (*run)(int argc, char *argv[]);
} commands[] = {
        { "create", cmd_create }, { "list", cmd_list },   { "show", cmd_show },
        { "version", cmd_version }, { "wrap", cmd_wrap }, { "unwrap", cmd_unwrap },
};

int main(int argc, char *argv[]) {
        enum { ARG_VERSION = 0x100 };
        static const struct option options[] = {
                { "socket", required_argument, NULL, 's' },
                { "json", no_argument, NULL, 'j' },
                { "timeout", required_argument, NULL, 't' },
                { "help", no_argument, NULL, 'h' },
                { "version", no_argument, NULL, ARG_VERSION },
                {},
        };
        int c, r;

        /* "+": stop at the command, whose own options follow it. */
        while ((c = getopt_long(argc, argv, "+s:jt:h", options, NULL)) >= 0)
                switch (c) {
                case 's':
                        arg_socket = optarg;
                        break;
                case 'j':
                        arg_json = true;
                        break;
                case 't': {
                        char *end;
                        long t;

                        errno = 0;
                        t = strtol(optarg, &end, 10);
                        if (errno || *end || t < 1 || t > 3600)
                                return usage_error("invalid --timeout '%s' (1..3600 seconds)", optarg);
                        arg_timeout_ms = (int) t * 1000;
                        break;
                }
                case 'h':
                        help();
                        return 0;
                case ARG_VERSION:
                        printf("kekctl %s\n", PACKAGE_VERSION);
                        return 0;
                default:
                        return EXIT_USAGE;
                }
        if (optind >= argc)
                return usage_error("missing command");

        r = secret_heap_init(64 * 1024);
        if (r < 0) {
                fprintf(stderr, "kekctl: cannot set up secure memory: %s\n", strerror(-r));
                return EXIT_IO;
        }
        for (size_t i = 0; i < ELEMENTSOF(commands); i++)
                if (strcmp(argv[optind], commands[i].name) == 0) {
                        r = commands[i].run(argc - optind, argv + optind);
                        /* Tables and JSON go through stdio: a full disk or closed pipe must not exit 0. */
                        if (fflush(stdout) != 0 || ferror(stdout)) {
                                fprintf(stderr, "kekctl: cannot write stdout: %m\n");
                                return r != 0 ? r : EXIT_IO;
                        }
                        return r;
                }
        return usage_error("unknown command '%s'", argv[optind]);
}
