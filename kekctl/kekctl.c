/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * kekctl: the operator's CLI for kekd. Each command is one request over the
 * socket; output is a human table by default and JSON (json-c) with --json.
 * wrap/unwrap/rewrap move raw bytes stdin -> stdout for scripts and tests; a
 * plaintext key is never written to a terminal.
 *
 * Exit status: 0 success; 1 kekd refused the request (the error code name and
 * message go to stderr) or check found problems; 2 usage error; 3 kekd not
 * reachable or protocol failure; 4 local I/O error. Documented in kekctl(8).
 */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <grp.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "client/conn.h"
#include "common/kekerr.h"
#include "common/opnames.h"
#include "common/secret.h"
#include "kekctl/status.h"
#include "proto/blob.h"

enum {
        EXIT_REFUSED = 1,
        EXIT_USAGE = 2,
        EXIT_UNREACHABLE = 3,
        EXIT_IO = 4,
        EXIT_HELP = 100,   /* internal: --help was printed; exits 0 */
        EXIT_SUBMITTED = 101, /* internal: "kekctl request" submitted the request; exits 0 */
};

/* Per-command usage, printed by "kekctl COMMAND --help". */
static const struct {
        const char *name, *usage, *what;
} usages[] = {
        { "create", "NAME [--rotate-after D] [--max-wraps N]", "Create a key; version 1 is generated in the HSM." },
        { "list", "[--deleted]", "List keys; with --deleted only deleted ones, with their purge dates." },
        { "show", "NAME", "Show a key, its rotation policy, its versions and their usage." },
        { "version", "NAME", "Show the current version, the state and whether the vault is recoverable." },
        { "rotate", "NAME", "Add a version generated in the HSM and make it current." },
        { "policy", "NAME [--rotate-after D] [--max-wraps N]", "Change the rotation policy (only what is given)." },
        { "disable", "NAME [--key-version N]", "Revoke a key, or one version." },
        { "enable", "NAME [--key-version N]", "Restore a key, or one version." },
        { "delete", "NAME", "Soft-delete a key: refused for all use, recoverable until its purge date." },
        { "recover", "NAME", "Undo a delete, with all versions." },
        { "purge", "NAME", "Destroy a deleted key's HSM objects (refused before the purge date under purge protection)." },
        { "vault", "[--retention-days N] [--purge-protection on|off] [--dual-control OPS|none] [--approval-window D]",
          "Show or change the vault policy. Dual control OPS: a comma list of purge, delete, last-grant, vault-policy." },
        { "check", "", "Verify the token against the key records; exit 1 when a problem is found." },
        { "wrap", "NAME [--context CTX] [--key-version N] < aek > blob", "Wrap the bytes on stdin." },
        { "unwrap", "[--context CTX] < blob > aek", "Unwrap the blob on stdin (never to a terminal)." },
        { "rewrap", "[--context CTX] < blob > blob", "Re-wrap the blob on stdin under the key's current version." },
        { "grant", "NAME user:USER|group:GROUP [--ops OPS]",
          "Let a user (uid) or group (gid) use a key. OPS: a comma list of get, wrap, unwrap, rewrap, or all (default)." },
        { "revoke", "NAME user:USER|group:GROUP [--ops OPS]",
          "Take operations (default: all) away from a grant; clients of that identity drop their cached AEKs." },
        { "grants", "NAME", "List who may use a key, and for what." },
        { "request", "purge|delete|revoke|vault ARGS...",
          "Submit an operation under dual control for another officer's approval; prints the request id." },
        { "approve", "ID", "Approve and run a request submitted by another officer." },
        { "requests", "", "List the pending dual-control requests." },
        { "cancel", "ID", "Withdraw or deny a pending request." },
        { "status", "[--prometheus]",
          "kekd's state and per-operation figures; --prometheus prints the metrics text as kekd writes it." },
};

static const char *arg_socket;
static bool arg_json;
static bool arg_request;   /* "kekctl request ...": submit the command's request for approval instead */
static int arg_timeout_ms = 30000;

static void help(void) {
        printf("Usage: kekctl [OPTIONS] COMMAND [ARGS]\n\n"
               "Administer kekd, the HSM-backed key-encryption-key service.\n\n"
               "Keys:\n"
               "  create NAME [--rotate-after D] [--max-wraps N]\n"
               "                                  create a key (version 1 generated in the HSM)\n"
               "  list [--deleted]                list keys (with --deleted: only deleted ones, with purge dates)\n"
               "  show NAME                       a key, its versions, their usage\n"
               "  version NAME                    current version, state and recoverability\n"
               "  rotate NAME                     add a version and make it current\n"
               "  policy NAME [--rotate-after D] [--max-wraps N]\n"
               "                                  set the rotation policy (D: seconds, or Ns/Nm/Nh/Nd; 0 = off)\n"
               "  disable NAME [--key-version N]  revoke a key or one version\n"
               "  enable NAME [--key-version N]   restore it\n"
               "  delete NAME                     soft-delete (recoverable until the purge date)\n"
               "  recover NAME                    undo a delete\n"
               "  purge NAME                      destroy a deleted key's HSM objects\n"
               "Vault:\n"
               "  vault [--retention-days N] [--purge-protection on|off]\n"
               "                                  show or change soft-delete retention and purge protection\n"
               "                                  (purge protection cannot be switched off once on)\n"
               "  check                           verify the token against the key records\n"
               "Access:\n"
               "  grant NAME user:U|group:G [--ops OPS]   let a uid or gid use a key (OPS: get,wrap,unwrap,rewrap|all)\n"
               "  revoke NAME user:U|group:G [--ops OPS]  take operations away (default all)\n"
               "  grants NAME                     who may use a key\n"
               "Dual control:\n"
               "  vault --dual-control OPS|none [--approval-window D]\n"
               "                                  operations needing two officers (purge,delete,last-grant,vault-policy)\n"
               "  request purge|delete|revoke|vault ARGS...\n"
               "                                  submit such an operation; prints its id\n"
               "  approve ID                      run a request submitted by another officer\n"
               "  requests                        pending requests\n"
               "  cancel ID                       withdraw or deny a request\n"
               "Service:\n"
               "  status [--prometheus]           state, HSM session, clients, per-operation counts and latency\n"
               "Data:\n"
               "  wrap NAME [--context CTX] [--key-version N]\n"
               "                                  wrap the bytes on stdin, blob to stdout\n"
               "  unwrap [--context CTX]          unwrap the blob on stdin, plaintext to stdout\n"
               "  rewrap [--context CTX]          re-wrap the blob on stdin under the current version\n\n"
               "Options:\n"
               "  -s, --socket=PATH   kekd socket (default: $KEKD_SOCKET or %s)\n"
               "  -j, --json          JSON output\n"
               "  -t, --timeout=SEC   per-request timeout (default 30)\n"
               "  -h, --help          show this help\n"
               "      --version       show the version\n\n"
               "Exit status: 0 ok, 1 refused by kekd or check found problems, 2 usage, 3 kekd unreachable,\n"
               "4 local I/O.\n",
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

/* "user:alice" / "group:1234": how a grant's principal is shown. */
static const char *principal_string(const Kek__Grant *g, char buf[static 96]) {
        if (g->group) {
                struct group *gr = getgrgid((gid_t) g->id);

                if (gr)
                        snprintf(buf, 96, "group:%s", gr->gr_name);
                else
                        snprintf(buf, 96, "group:%u", g->id);
        } else {
                struct passwd *pw = getpwuid((uid_t) g->id);

                if (pw)
                        snprintf(buf, 96, "user:%s", pw->pw_name);
                else
                        snprintf(buf, 96, "user:%u", g->id);
        }
        return buf;
}

static json_object *grants_json(Kek__Grant *const *grants, size_t n) {
        json_object *a = json_object_new_array();
        char p[96], ops[32];

        for (size_t i = 0; i < n; i++) {
                json_object *j = json_object_new_object();

                json_object_object_add(j, "principal", json_object_new_string(principal_string(grants[i], p)));
                json_object_object_add(j, grants[i]->group ? "gid" : "uid", json_object_new_int64(grants[i]->id));
                json_object_object_add(j, "ops", json_object_new_string(grant_ops_to_string(grants[i]->ops, ops)));
                json_object_array_add(a, j);
        }
        return a;
}

static void print_grants(Kek__Grant *const *grants, size_t n) {
        char p[96], ops[32];

        printf("%-32s %-8s %s\n", "PRINCIPAL", "ID", "OPERATIONS");
        for (size_t i = 0; i < n; i++)
                printf("%-32s %-8u %s\n", principal_string(grants[i], p), grants[i]->id,
                       grant_ops_to_string(grants[i]->ops, ops));
}

static json_object *key_info_json(const Kek__KeyInfo *k) {
        json_object *o = json_object_new_object(), *vs = json_object_new_array();

        json_object_object_add(o, "name", json_object_new_string(k->name));
        json_object_object_add(o, "state", json_object_new_string(state_name(k->state)));
        json_object_object_add(o, "current_version", json_object_new_int64(k->current_version));
        json_object_object_add(o, "created_usec", json_object_new_uint64(k->created_usec));
        json_object_object_add(o, "recoverable", json_object_new_boolean(k->recoverable));
        if (k->policy) {
                json_object_object_add(o, "rotate_after_seconds", json_object_new_uint64(k->policy->rotate_after_seconds));
                json_object_object_add(o, "max_wraps", json_object_new_uint64(k->policy->max_wraps));
        }
        if (k->state == KEK__KEY_STATE__DELETED) {
                json_object_object_add(o, "deleted_usec", json_object_new_uint64(k->deleted_usec));
                json_object_object_add(o, "scheduled_purge_usec", json_object_new_uint64(k->scheduled_purge_usec));
        }
        for (size_t i = 0; i < k->n_versions; i++) {
                const Kek__VersionInfo *v = k->versions[i];
                json_object *j = json_object_new_object();

                json_object_object_add(j, "id", json_object_new_int64(v->id));
                json_object_object_add(j, "enabled", json_object_new_boolean(v->enabled));
                json_object_object_add(j, "created_usec", json_object_new_uint64(v->created_usec));
                json_object_object_add(j, "wraps", json_object_new_uint64(v->wraps));
                json_object_object_add(j, "unwraps", json_object_new_uint64(v->unwraps));
                json_object_object_add(j, "last_use_usec", json_object_new_uint64(v->last_use_usec));
                json_object_array_add(vs, j);
        }
        json_object_object_add(o, "versions", vs);
        json_object_object_add(o, "grants", grants_json(k->grants, k->n_grants));
        return o;
}

static void print_json(json_object *o) {
        puts(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE));
        json_object_put(o);
}

static void print_key_info(const Kek__KeyInfo *k) {
        char t[64], u[64];

        if (arg_json) {
                print_json(key_info_json(k));
                return;
        }
        format_time(k->created_usec, t, sizeof(t));
        printf("Key:         %s\nState:       %s\nCurrent:     %u\nCreated:     %s\nRecoverable: %s\n", k->name,
               state_name(k->state), k->current_version, t, k->recoverable ? "yes" : "no");
        if (k->policy) {
                if (k->policy->rotate_after_seconds)
                        printf("Rotation:    every %llu s", (unsigned long long) k->policy->rotate_after_seconds);
                else
                        printf("Rotation:    manual");
                printf(", at most %llu wraps per version\n", (unsigned long long) k->policy->max_wraps);
        }
        if (k->state == KEK__KEY_STATE__DELETED) {
                format_time(k->deleted_usec, t, sizeof(t));
                format_time(k->scheduled_purge_usec, u, sizeof(u));
                printf("Deleted:     %s\nPurge date:  %s\n", t, u);
        }
        printf("\n%-9s %-9s %-23s %12s %12s  %s\n", "VERSION", "STATE", "CREATED", "WRAPS", "UNWRAPS", "LAST USE");
        for (size_t i = 0; i < k->n_versions; i++) {
                const Kek__VersionInfo *v = k->versions[i];

                format_time(v->created_usec, t, sizeof(t));
                format_time(v->last_use_usec, u, sizeof(u));
                printf("%-9u %-9s %-23s %12llu %12llu  %s%s\n", v->id, v->enabled ? "enabled" : "disabled", t,
                       (unsigned long long) v->wraps, (unsigned long long) v->unwraps, u,
                       v->id == k->current_version ? "  (current)" : "");
        }
        if (k->n_grants > 0) {
                printf("\n");
                print_grants(k->grants, k->n_grants);
        }
}

static void print_approvals(Kek__ApprovalInfo *const *a, size_t n, bool submitted) {
        char t[64], u[64];

        if (arg_json) {
                json_object *arr = json_object_new_array();

                for (size_t i = 0; i < n; i++) {
                        json_object *j = json_object_new_object();

                        json_object_object_add(j, "id", json_object_new_string(a[i]->id));
                        json_object_object_add(j, "op", json_object_new_string(a[i]->op));
                        json_object_object_add(j, "key", json_object_new_string(a[i]->key));
                        json_object_object_add(j, "requester_uid", json_object_new_int64(a[i]->requester_uid));
                        json_object_object_add(j, "requester_pid", json_object_new_int64(a[i]->requester_pid));
                        json_object_object_add(j, "created_usec", json_object_new_uint64(a[i]->created_usec));
                        json_object_object_add(j, "expires_usec", json_object_new_uint64(a[i]->expires_usec));
                        if (submitted) {
                                print_json(j);
                                json_object_put(arr);
                                return;
                        }
                        json_object_array_add(arr, j);
                }
                print_json(arr);
                return;
        }
        if (submitted) {
                format_time(a[0]->expires_usec, u, sizeof(u));
                printf("Submitted %s%s%s%s for approval.\nRequest:  %s\nExpires:  %s\n"
                       "Another officer approves it with: kekctl approve %s\n",
                       a[0]->op, a[0]->key[0] ? " of key '" : "", a[0]->key, a[0]->key[0] ? "'" : "", a[0]->id, u,
                       a[0]->id);
                return;
        }
        printf("%-32s  %-16s %-20s %9s  %-23s  %s\n", "ID", "OP", "KEY", "REQUESTER", "SUBMITTED", "EXPIRES");
        for (size_t i = 0; i < n; i++) {
                format_time(a[i]->created_usec, t, sizeof(t));
                format_time(a[i]->expires_usec, u, sizeof(u));
                printf("%-32s  %-16s %-20s %9u  %-23s  %s\n", a[i]->id, a[i]->op, a[i]->key[0] ? a[i]->key : "-",
                       a[i]->requester_uid, t, u);
        }
}

/* Sends req, expects a response of body type want (NOT_SET: any); on success the caller frees *ret. */
static int call(Kek__Request *req, const char *what, Kek__Response__BodyCase want, Kek__Response **ret) {
        _cleanup_(kek_conn_freep) KekConn *c = NULL;
        const char *path = arg_socket ?: getenv("KEKD_SOCKET") ?: KEK_DEFAULT_SOCKET;
        Kek__Response *resp;
        int r;

        r = kek_conn_open(path, arg_timeout_ms, &c);
        if (r < 0) {
                fprintf(stderr, "kekctl: cannot connect to kekd at %s: %s\n", path, strerror(-r));
                return EXIT_UNREACHABLE;
        }
        if (arg_request && req->body_case != KEK__REQUEST__BODY_GET_KEY) {
                Kek__Request sub = KEK__REQUEST__INIT;
                Kek__SubmitApprovalRequest sr = KEK__SUBMIT_APPROVAL_REQUEST__INIT;

                sr.request = req;
                sub.body_case = KEK__REQUEST__BODY_SUBMIT_APPROVAL;
                sub.submit_approval = &sr;
                r = kek_conn_call(c, &sub, &resp);
                if (r < 0)
                        return report(c, r, "request");
                if (resp->body_case != KEK__RESPONSE__BODY_APPROVAL) {
                        kek_conn_response_free(resp);
                        return report(c, -EBADMSG, "request");
                }
                print_approvals(&resp->approval, 1, true);
                kek_conn_response_free(resp);
                return EXIT_SUBMITTED;
        }
        r = kek_conn_call(c, req, &resp);
        if (r < 0)
                return report(c, r, what);
        if (want != KEK__RESPONSE__BODY__NOT_SET && resp->body_case != want) {
                kek_conn_response_free(resp);
                return report(c, -EBADMSG, what);
        }
        *ret = resp;
        return 0;
}

/* Runs a request answered with KeyInfo and prints it. */
static int call_key_info(Kek__Request *req, const char *what) {
        Kek__Response *resp;
        int r;

        r = call(req, what, KEK__RESPONSE__BODY_KEY_INFO, &resp);
        if (r != 0)
                return r;
        if (resp->key_info->key)
                print_key_info(resp->key_info->key);
        kek_conn_response_free(resp);
        return 0;
}

typedef struct CmdOpts {
        unsigned allowed;          /* OPT_* this command takes */
        const char *context;
        uint32_t version;
        bool deleted;
        bool has_rotate_after, has_max_wraps;
        uint64_t rotate_after;
        uint64_t max_wraps;
        uint32_t retention_days;
        int purge_protection;      /* -1 unchanged, 0 off, 1 on */
        uint32_t ops;              /* grant/revoke: GRANT_* bits */
        bool has_dual_control;
        uint32_t dual_control;
        uint64_t approval_window;
        bool prometheus;
} CmdOpts;

enum {
        OPT_CONTEXT = 1 << 0,
        OPT_VERSION = 1 << 1,
        OPT_DELETED = 1 << 2,
        OPT_POLICY = 1 << 3,
        OPT_VAULT = 1 << 4,
        OPT_OPS = 1 << 5,
        OPT_PROMETHEUS = 1 << 6,
};

static int parse_u64(const char *s, uint64_t max, uint64_t *ret) {
        char *end;
        unsigned long long v;

        if (!s[0] || s[0] == '-' || s[0] == '+')
                return -EINVAL;
        errno = 0;
        v = strtoull(s, &end, 10);
        if (errno || *end || v > max)
                return -EINVAL;
        *ret = v;
        return 0;
}

/* "90", "90s", "15m", "12h", "30d" -> seconds */
static int parse_duration(const char *s, uint64_t *ret) {
        static const struct {
                char suffix;
                uint64_t mult;
        } units[] = { { 's', 1 }, { 'm', 60 }, { 'h', 3600 }, { 'd', 86400 } };
        char buf[32];
        size_t n = strlen(s);
        uint64_t v, mult = 1;

        if (n == 0 || n >= sizeof(buf))
                return -EINVAL;
        strcpy(buf, s);
        for (size_t i = 0; i < ELEMENTSOF(units); i++)
                if (buf[n - 1] == units[i].suffix) {
                        mult = units[i].mult;
                        buf[n - 1] = 0;
                }
        if (parse_u64(buf, 100ULL * 365 * 86400 / mult, &v) < 0)
                return -EINVAL;
        *ret = v * mult;
        return 0;
}

/*
 * Options after the command: --json for every command, the others where the
 * command allows them. Leaves optind at the first positional argument.
 */
static int parse_cmd_opts(int argc, char *argv[], CmdOpts *o) {
        enum { ARG_CONTEXT = 0x100, ARG_VERSION, ARG_DELETED, ARG_ROTATE_AFTER, ARG_MAX_WRAPS, ARG_RETENTION, ARG_PP,
               ARG_OPS, ARG_DUAL, ARG_WINDOW, ARG_PROMETHEUS };
        static const struct option options[] = {
                { "help", no_argument, NULL, 'h' },
                { "json", no_argument, NULL, 'j' },
                { "context", required_argument, NULL, ARG_CONTEXT },
                { "key-version", required_argument, NULL, ARG_VERSION },
                { "deleted", no_argument, NULL, ARG_DELETED },
                { "rotate-after", required_argument, NULL, ARG_ROTATE_AFTER },
                { "max-wraps", required_argument, NULL, ARG_MAX_WRAPS },
                { "retention-days", required_argument, NULL, ARG_RETENTION },
                { "purge-protection", required_argument, NULL, ARG_PP },
                { "ops", required_argument, NULL, ARG_OPS },
                { "dual-control", required_argument, NULL, ARG_DUAL },
                { "approval-window", required_argument, NULL, ARG_WINDOW },
                { "prometheus", no_argument, NULL, ARG_PROMETHEUS },
                {},
        };
        uint64_t v;
        int c, idx = 0;

        o->purge_protection = -1;
        optind = 0; /* full reset of GNU getopt, which permutes so options may follow arguments */
        while ((c = getopt_long(argc, argv, "hj", options, &idx)) >= 0) {
                unsigned need = c == ARG_CONTEXT ? OPT_CONTEXT
                                : c == ARG_VERSION ? OPT_VERSION
                                : c == ARG_DELETED ? OPT_DELETED
                                : c == ARG_ROTATE_AFTER || c == ARG_MAX_WRAPS ? OPT_POLICY
                                : c == ARG_RETENTION || c == ARG_PP || c == ARG_DUAL || c == ARG_WINDOW ? OPT_VAULT
                                : c == ARG_OPS                                                         ? OPT_OPS
                                : c == ARG_PROMETHEUS                                                  ? OPT_PROMETHEUS
                                                                                                       : 0;

                if (need && !(o->allowed & need))
                        return usage_error("option '--%s' does not apply to '%s'", options[idx].name, argv[0]);
                switch (c) {
                case 'h':
                        for (size_t i = 0; i < ELEMENTSOF(usages); i++)
                                if (strcmp(usages[i].name, argv[0]) == 0)
                                        printf("Usage: kekctl [OPTIONS] %s %s\n\n%s\n--json gives JSON output. See kekctl(8).\n",
                                               usages[i].name, usages[i].usage, usages[i].what);
                        return EXIT_HELP;
                case 'j':
                        arg_json = true;
                        break;
                case ARG_CONTEXT:
                        if (strlen(optarg) > CONTEXT_MAX_SIZE)
                                return usage_error("--context is longer than %u bytes", CONTEXT_MAX_SIZE);
                        o->context = optarg;
                        break;
                case ARG_VERSION:
                        if (parse_u64(optarg, UINT32_MAX, &v) < 0 || v == 0)
                                return usage_error("invalid --key-version '%s'", optarg);
                        o->version = (uint32_t) v;
                        break;
                case ARG_DELETED:
                        o->deleted = true;
                        break;
                case ARG_ROTATE_AFTER:
                        if (parse_duration(optarg, &o->rotate_after) < 0)
                                return usage_error("invalid --rotate-after '%s' (seconds, or Ns, Nm, Nh, Nd)", optarg);
                        o->has_rotate_after = true;
                        break;
                case ARG_MAX_WRAPS:
                        /* NIST SP 800-38D: at most 2^32 encryptions under one key with random IVs */
                        if (parse_u64(optarg, UINT64_C(1) << 32, &o->max_wraps) < 0)
                                return usage_error("invalid --max-wraps '%s' (0 for the default, at most 4294967296)", optarg);
                        o->has_max_wraps = true;
                        break;
                case ARG_RETENTION:
                        if (parse_u64(optarg, 90, &v) < 0 || v < 7)
                                return usage_error("invalid --retention-days '%s' (7..90)", optarg);
                        o->retention_days = (uint32_t) v;
                        break;
                case ARG_PP:
                        if (strcmp(optarg, "on") == 0)
                                o->purge_protection = 1;
                        else if (strcmp(optarg, "off") == 0)
                                o->purge_protection = 0; /* kekd refuses it once on; let it say so */
                        else
                                return usage_error("invalid --purge-protection '%s' (on or off)", optarg);
                        break;
                case ARG_PROMETHEUS:
                        o->prometheus = true;
                        break;
                case ARG_OPS:
                        if (grant_ops_from_string(optarg, &o->ops) < 0)
                                return usage_error("invalid --ops '%s' (a comma list of get, wrap, unwrap, rewrap, or all)", optarg);
                        break;
                case ARG_DUAL:
                        if (dual_control_from_string(optarg, &o->dual_control) < 0)
                                return usage_error("invalid --dual-control '%s' (a comma list of purge, delete, last-grant, "
                                                   "vault-policy, or none)", optarg);
                        o->has_dual_control = true;
                        break;
                case ARG_WINDOW:
                        if (parse_duration(optarg, &o->approval_window) < 0 || o->approval_window < 60 ||
                            o->approval_window > 7 * 86400)
                                return usage_error("invalid --approval-window '%s' (60 s .. 7 d)", optarg);
                        break;
                default:
                        return EXIT_USAGE;
                }
        }
        return 0;
}

/* Parses options; the command takes no other arguments. */
static int parse_no_args_cmd(int argc, char *argv[], CmdOpts *o) {
        int r = parse_cmd_opts(argc, argv, o);

        if (r != 0)
                return r;
        if (argc - optind != 0)
                return usage_error("%s takes options only, no arguments", argv[0]);
        return 0;
}

/* Parses options and exactly one key name argument. */
static int parse_name_cmd(int argc, char *argv[], CmdOpts *o, const char **ret_name) {
        int r = parse_cmd_opts(argc, argv, o);

        if (r != 0)
                return r;
        if (argc - optind != 1)
                return usage_error("%s takes exactly one key name", argv[0]);
        if (!key_name_valid(argv[optind]))
                return usage_error("invalid key name '%s': use 1-64 of [A-Za-z0-9._-], not starting with '.' or '-'",
                                   argv[optind]);
        *ret_name = argv[optind];
        return 0;
}

static int cmd_create(int argc, char *argv[]) {
        Kek__Request req = KEK__REQUEST__INIT;
        Kek__CreateKeyRequest cr = KEK__CREATE_KEY_REQUEST__INIT;
        Kek__RotationPolicy pol = KEK__ROTATION_POLICY__INIT;
        CmdOpts o = { .allowed = OPT_POLICY };
        const char *name;
        int r;

        r = parse_name_cmd(argc, argv, &o, &name);
        if (r != 0)
                return r;
        cr.key = (char *) name;
        if (o.has_rotate_after || o.has_max_wraps) {
                pol.rotate_after_seconds = o.rotate_after;
                pol.max_wraps = o.max_wraps;
                cr.policy = &pol;
        }
        req.body_case = KEK__REQUEST__BODY_CREATE_KEY;
        req.create_key = &cr;
        return call_key_info(&req, "create");
}

static int cmd_show(int argc, char *argv[]) {
        Kek__Request req = KEK__REQUEST__INIT;
        Kek__GetKeyRequest gr = KEK__GET_KEY_REQUEST__INIT;
        CmdOpts o = {};
        const char *name;
        int r;

        r = parse_name_cmd(argc, argv, &o, &name);
        if (r != 0)
                return r;
        gr.key = (char *) name;
        req.body_case = KEK__REQUEST__BODY_GET_KEY;
        req.get_key = &gr;
        return call_key_info(&req, "show");
}

static int cmd_rotate(int argc, char *argv[]) {
        Kek__Request req = KEK__REQUEST__INIT;
        Kek__RotateKeyRequest rr = KEK__ROTATE_KEY_REQUEST__INIT;
        CmdOpts o = {};
        const char *name;
        int r;

        r = parse_name_cmd(argc, argv, &o, &name);
        if (r != 0)
                return r;
        rr.key = (char *) name;
        req.body_case = KEK__REQUEST__BODY_ROTATE_KEY;
        req.rotate_key = &rr;
        return call_key_info(&req, "rotate");
}

static int cmd_policy(int argc, char *argv[]) {
        Kek__Request req = KEK__REQUEST__INIT, get = KEK__REQUEST__INIT;
        Kek__SetRotationPolicyRequest pr = KEK__SET_ROTATION_POLICY_REQUEST__INIT;
        Kek__GetKeyRequest gr = KEK__GET_KEY_REQUEST__INIT;
        Kek__RotationPolicy pol = KEK__ROTATION_POLICY__INIT;
        CmdOpts o = { .allowed = OPT_POLICY };
        Kek__Response *resp;
        const char *name;
        int r;

        r = parse_name_cmd(argc, argv, &o, &name);
        if (r != 0)
                return r;
        if (!o.has_rotate_after && !o.has_max_wraps)
                return usage_error("policy needs --rotate-after and/or --max-wraps");
        /* Change only what was given: start from the key's current policy. */
        gr.key = (char *) name;
        get.body_case = KEK__REQUEST__BODY_GET_KEY;
        get.get_key = &gr;
        r = call(&get, "policy", KEK__RESPONSE__BODY_KEY_INFO, &resp);
        if (r != 0)
                return r;
        if (resp->key_info->key && resp->key_info->key->policy) {
                pol.rotate_after_seconds = resp->key_info->key->policy->rotate_after_seconds;
                pol.max_wraps = resp->key_info->key->policy->max_wraps;
        }
        kek_conn_response_free(resp);
        if (o.has_rotate_after)
                pol.rotate_after_seconds = o.rotate_after;
        if (o.has_max_wraps)
                pol.max_wraps = o.max_wraps;
        pr.key = (char *) name;
        pr.policy = &pol;
        req.body_case = KEK__REQUEST__BODY_SET_ROTATION_POLICY;
        req.set_rotation_policy = &pr;
        return call_key_info(&req, "policy");
}

static int set_enabled(int argc, char *argv[], bool enabled) {
        Kek__Request req = KEK__REQUEST__INIT;
        Kek__SetEnabledRequest sr = KEK__SET_ENABLED_REQUEST__INIT;
        CmdOpts o = { .allowed = OPT_VERSION };
        const char *name;
        int r;

        r = parse_name_cmd(argc, argv, &o, &name);
        if (r != 0)
                return r;
        sr.key = (char *) name;
        sr.version = o.version;
        sr.enabled = enabled;
        req.body_case = KEK__REQUEST__BODY_SET_ENABLED;
        req.set_enabled = &sr;
        return call_key_info(&req, argv[0]);
}

static int cmd_disable(int argc, char *argv[]) {
        return set_enabled(argc, argv, false);
}

static int cmd_enable(int argc, char *argv[]) {
        return set_enabled(argc, argv, true);
}

static int cmd_delete(int argc, char *argv[]) {
        Kek__Request req = KEK__REQUEST__INIT;
        Kek__DeleteKeyRequest dr = KEK__DELETE_KEY_REQUEST__INIT;
        CmdOpts o = {};
        const char *name;
        int r;

        r = parse_name_cmd(argc, argv, &o, &name);
        if (r != 0)
                return r;
        dr.key = (char *) name;
        req.body_case = KEK__REQUEST__BODY_DELETE_KEY;
        req.delete_key = &dr;
        return call_key_info(&req, "delete");
}

static int cmd_recover(int argc, char *argv[]) {
        Kek__Request req = KEK__REQUEST__INIT;
        Kek__RecoverKeyRequest rr = KEK__RECOVER_KEY_REQUEST__INIT;
        CmdOpts o = {};
        const char *name;
        int r;

        r = parse_name_cmd(argc, argv, &o, &name);
        if (r != 0)
                return r;
        rr.key = (char *) name;
        req.body_case = KEK__REQUEST__BODY_RECOVER_KEY;
        req.recover_key = &rr;
        return call_key_info(&req, "recover");
}

static int cmd_purge(int argc, char *argv[]) {
        Kek__Request req = KEK__REQUEST__INIT;
        Kek__PurgeKeyRequest pr = KEK__PURGE_KEY_REQUEST__INIT;
        Kek__Response *resp;
        CmdOpts o = {};
        const char *name;
        int r;

        r = parse_name_cmd(argc, argv, &o, &name);
        if (r != 0)
                return r;
        pr.key = (char *) name;
        req.body_case = KEK__REQUEST__BODY_PURGE_KEY;
        req.purge_key = &pr;
        r = call(&req, "purge", KEK__RESPONSE__BODY_EMPTY, &resp);
        if (r != 0)
                return r;
        kek_conn_response_free(resp);
        if (arg_json)
                printf("{ \"purged\": \"%s\" }\n", name);
        else
                printf("Purged key '%s': its HSM objects are destroyed.\n", name);
        return 0;
}

static int cmd_list(int argc, char *argv[]) {
        Kek__Request req = KEK__REQUEST__INIT;
        Kek__ListKeysRequest lr = KEK__LIST_KEYS_REQUEST__INIT;
        CmdOpts o = { .allowed = OPT_DELETED };
        Kek__Response *resp;
        json_object *a = NULL;
        int r;

        r = parse_no_args_cmd(argc, argv, &o);
        if (r != 0)
                return r;
        lr.include_deleted = o.deleted;
        req.body_case = KEK__REQUEST__BODY_LIST_KEYS;
        req.list_keys = &lr;
        r = call(&req, "list", KEK__RESPONSE__BODY_LIST_KEYS, &resp);
        if (r != 0)
                return r;
        if (arg_json)
                a = json_object_new_array();
        else if (o.deleted)
                printf("%-32s %-23s %s\n", "NAME", "DELETED", "PURGE DATE");
        else
                printf("%-32s %-9s %-8s %-9s %s\n", "NAME", "STATE", "CURRENT", "VERSIONS", "CREATED");
        for (size_t i = 0; i < resp->list_keys->n_keys; i++) {
                const Kek__KeyInfo *k = resp->list_keys->keys[i];
                char t[64], u[64];

                /* --deleted lists the recycle bin only, as the cloud service's "list deleted" does */
                if (o.deleted != (k->state == KEK__KEY_STATE__DELETED))
                        continue;
                if (a)
                        json_object_array_add(a, key_info_json(k));
                else if (o.deleted) {
                        format_time(k->deleted_usec, t, sizeof(t));
                        format_time(k->scheduled_purge_usec, u, sizeof(u));
                        printf("%-32s %-23s %s\n", k->name, t, u);
                } else {
                        format_time(k->created_usec, t, sizeof(t));
                        printf("%-32s %-9s %-8u %-9zu %s\n", k->name, state_name(k->state), k->current_version,
                               k->n_versions, t);
                }
        }
        if (a)
                print_json(a);
        kek_conn_response_free(resp);
        return 0;
}

static int cmd_version(int argc, char *argv[]) {
        Kek__Request req = KEK__REQUEST__INIT;
        Kek__GetKeyVersionRequest gr = KEK__GET_KEY_VERSION_REQUEST__INIT;
        Kek__Response *resp;
        CmdOpts o = {};
        const char *name;
        int r;

        r = parse_name_cmd(argc, argv, &o, &name);
        if (r != 0)
                return r;
        gr.key = (char *) name;
        req.body_case = KEK__REQUEST__BODY_GET_KEY_VERSION;
        req.get_key_version = &gr;
        r = call(&req, "version", KEK__RESPONSE__BODY_GET_KEY_VERSION, &resp);
        if (r != 0)
                return r;
        if (arg_json) {
                json_object *j = json_object_new_object();

                json_object_object_add(j, "name", json_object_new_string(resp->get_key_version->key));
                json_object_object_add(j, "current_version", json_object_new_int64(resp->get_key_version->current_version));
                json_object_object_add(j, "state", json_object_new_string(state_name(resp->get_key_version->state)));
                json_object_object_add(j, "recoverable", json_object_new_boolean(resp->get_key_version->recoverable));
                print_json(j);
        } else
                printf("Key:         %s\nCurrent:     %u\nState:       %s\nRecoverable: %s\n", resp->get_key_version->key,
                       resp->get_key_version->current_version, state_name(resp->get_key_version->state),
                       resp->get_key_version->recoverable ? "yes" : "no");
        kek_conn_response_free(resp);
        return 0;
}

static int cmd_vault(int argc, char *argv[]) {
        Kek__Request req = KEK__REQUEST__INIT;
        Kek__GetVaultPolicyRequest gr = KEK__GET_VAULT_POLICY_REQUEST__INIT;
        Kek__SetVaultPolicyRequest sr = KEK__SET_VAULT_POLICY_REQUEST__INIT;
        CmdOpts o = { .allowed = OPT_VAULT };
        Kek__Response *resp;
        const Kek__VaultPolicyResponse *v;
        char dc[64];
        int r;

        r = parse_no_args_cmd(argc, argv, &o);
        if (r != 0)
                return r;
        if (o.retention_days || o.purge_protection >= 0 || o.has_dual_control || o.approval_window) {
                sr.retention_days = o.retention_days;
                sr.set_dual_control = o.has_dual_control;
                sr.dual_control = o.dual_control;
                sr.approval_window_seconds = (uint32_t) o.approval_window;
                sr.purge_protection = o.purge_protection < 0 ? KEK__SWITCH__UNCHANGED
                                      : o.purge_protection ? KEK__SWITCH__ON
                                                           : KEK__SWITCH__OFF;
                req.body_case = KEK__REQUEST__BODY_SET_VAULT_POLICY;
                req.set_vault_policy = &sr;
        } else {
                req.body_case = KEK__REQUEST__BODY_GET_VAULT_POLICY;
                req.get_vault_policy = &gr;
        }
        r = call(&req, "vault", KEK__RESPONSE__BODY_VAULT_POLICY, &resp);
        if (r != 0)
                return r;
        v = resp->vault_policy;
        if (arg_json) {
                json_object *j = json_object_new_object();

                json_object_object_add(j, "soft_delete", json_object_new_boolean(true));
                json_object_object_add(j, "retention_days", json_object_new_int64(v->policy ? v->policy->retention_days : 0));
                json_object_object_add(j, "purge_protection", json_object_new_boolean(v->policy && v->policy->purge_protection));
                json_object_object_add(j, "recoverable", json_object_new_boolean(v->policy && v->policy->purge_protection));
                json_object_object_add(j, "allow_unrecoverable", json_object_new_boolean(v->allow_unrecoverable));
                json_object_object_add(j, "dual_control", json_object_new_string(dual_control_to_string(v->policy ? v->policy->dual_control : 0, dc)));
                json_object_object_add(j, "approval_window_seconds",
                                       json_object_new_int64(v->policy ? v->policy->approval_window_seconds : 0));
                print_json(j);
        } else {
                printf("Soft delete:       on, %u days retention\nPurge protection:  %s\nRecoverable:       %s\n",
                       v->policy ? v->policy->retention_days : 0, v->policy && v->policy->purge_protection ? "on" : "off",
                       v->policy && v->policy->purge_protection ? "yes" : "no (wraps are refused)");
                printf("Dual control:      %s (requests can be approved for %u s)\n",
                       dual_control_to_string(v->policy ? v->policy->dual_control : 0, dc),
                       v->policy ? v->policy->approval_window_seconds : 0);
                if (v->allow_unrecoverable)
                        printf("Warning:           this kekd serves wraps anyway (allow_unrecoverable, development only)\n");
        }
        kek_conn_response_free(resp);
        return 0;
}

static int cmd_check(int argc, char *argv[]) {
        Kek__Request req = KEK__REQUEST__INIT;
        Kek__CheckRequest cr = KEK__CHECK_REQUEST__INIT;
        Kek__Response *resp;
        CmdOpts o = {};
        int r;

        r = parse_no_args_cmd(argc, argv, &o);
        if (r != 0)
                return r;
        req.body_case = KEK__REQUEST__BODY_CHECK;
        req.check = &cr;
        r = call(&req, "check", KEK__RESPONSE__BODY_CHECK, &resp);
        if (r != 0)
                return r;
        if (arg_json) {
                json_object *j = json_object_new_object(), *p = json_object_new_array();

                json_object_object_add(j, "keys", json_object_new_int64(resp->check->keys));
                json_object_object_add(j, "versions", json_object_new_int64(resp->check->versions));
                json_object_object_add(j, "repaired", json_object_new_int64(resp->check->repaired));
                for (size_t i = 0; i < resp->check->n_problems; i++)
                        json_object_array_add(p, json_object_new_string(resp->check->problems[i]));
                json_object_object_add(j, "problems", p);
                print_json(j);
        } else {
                printf("Checked %u keys, %u versions; repaired %u interrupted operations.\n", resp->check->keys,
                       resp->check->versions, resp->check->repaired);
                for (size_t i = 0; i < resp->check->n_problems; i++)
                        printf("PROBLEM: %s\n", resp->check->problems[i]);
                if (resp->check->n_problems == 0)
                        printf("The token is consistent with the key records.\n");
        }
        r = resp->check->n_problems > 0 ? EXIT_REFUSED : 0;
        kek_conn_response_free(resp);
        return r;
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

static ProtobufCBinaryData context_of(const CmdOpts *o) {
        return (ProtobufCBinaryData) { o->context ? strlen(o->context) : 0, (uint8_t *) o->context };
}

static int cmd_wrap(int argc, char *argv[]) {
        _cleanup_secret_ Secret *pt = NULL;
        Kek__Request req = KEK__REQUEST__INIT;
        Kek__WrapRequest wr = KEK__WRAP_REQUEST__INIT;
        CmdOpts o = { .allowed = OPT_CONTEXT | OPT_VERSION };
        Kek__Response *resp;
        const char *name;
        int r;

        r = parse_name_cmd(argc, argv, &o, &name);
        if (r != 0)
                return r;
        r = read_stdin(AEK_MAX_SIZE, &pt);
        if (r != 0)
                return r;
        wr.key = (char *) name;
        wr.plaintext = (ProtobufCBinaryData) { pt->len, pt->data };
        wr.context = context_of(&o);
        wr.version = o.version;
        req.body_case = KEK__REQUEST__BODY_WRAP;
        req.wrap = &wr;
        r = call(&req, "wrap", KEK__RESPONSE__BODY_WRAP, &resp);
        if (r != 0)
                return r;
        r = write_stdout(resp->wrap->blob.data, resp->wrap->blob.len);
        kek_conn_response_free(resp);
        return r;
}

/* unwrap and rewrap: a blob on stdin, bytes on stdout */
static int blob_cmd(int argc, char *argv[], bool rewrap) {
        _cleanup_secret_ Secret *blob = NULL;
        Kek__Request req = KEK__REQUEST__INIT;
        Kek__UnwrapRequest ur = KEK__UNWRAP_REQUEST__INIT;
        Kek__RewrapRequest rr = KEK__REWRAP_REQUEST__INIT;
        CmdOpts o = { .allowed = OPT_CONTEXT };
        Kek__Response *resp;
        int r;

        r = parse_cmd_opts(argc, argv, &o);
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
                rr.context = context_of(&o);
                req.body_case = KEK__REQUEST__BODY_REWRAP;
                req.rewrap = &rr;
                r = call(&req, "rewrap", KEK__RESPONSE__BODY_REWRAP, &resp);
                if (r != 0)
                        return r;
                r = write_stdout(resp->rewrap->blob.data, resp->rewrap->blob.len);
        } else {
                ur.blob = (ProtobufCBinaryData) { blob->len, blob->data };
                ur.context = context_of(&o);
                req.body_case = KEK__REQUEST__BODY_UNWRAP;
                req.unwrap = &ur;
                r = call(&req, "unwrap", KEK__RESPONSE__BODY_UNWRAP, &resp);
                if (r != 0)
                        return r;
                r = write_stdout(resp->unwrap->plaintext.data, resp->unwrap->plaintext.len);
        }
        kek_conn_response_free(resp);
        return r;
}

static int cmd_unwrap(int argc, char *argv[]) {
        return blob_cmd(argc, argv, false);
}

static int cmd_rewrap(int argc, char *argv[]) {
        return blob_cmd(argc, argv, true);
}

/* "user:NAME|UID" or "group:NAME|GID" */
static int parse_principal(const char *s, Kek__Grant *g) {
        const char *v;
        uint64_t id;

        if (strncmp(s, "user:", 5) == 0) {
                v = s + 5;
                g->group = false;
                if (parse_u64(v, UINT32_MAX - 1, &id) >= 0)
                        g->id = (uint32_t) id;
                else {
                        struct passwd *pw = getpwnam(v);

                        if (!pw)
                                return usage_error("no such user '%s'", v);
                        g->id = (uint32_t) pw->pw_uid;
                }
                return 0;
        }
        if (strncmp(s, "group:", 6) == 0) {
                v = s + 6;
                g->group = true;
                if (parse_u64(v, UINT32_MAX - 1, &id) >= 0)
                        g->id = (uint32_t) id;
                else {
                        struct group *gr = getgrnam(v);

                        if (!gr)
                                return usage_error("no such group '%s'", v);
                        g->id = (uint32_t) gr->gr_gid;
                }
                return 0;
        }
        return usage_error("invalid principal '%s': use user:NAME, user:UID, group:NAME or group:GID", s);
}

static int set_grant(int argc, char *argv[], bool revoke) {
        Kek__Request req = KEK__REQUEST__INIT;
        Kek__SetGrantRequest sg = KEK__SET_GRANT_REQUEST__INIT;
        Kek__Grant g = KEK__GRANT__INIT;
        CmdOpts o = { .allowed = OPT_OPS };
        int r;

        r = parse_cmd_opts(argc, argv, &o);
        if (r != 0)
                return r;
        if (argc - optind != 2)
                return usage_error("%s takes a key name and a principal (user:NAME or group:NAME)", argv[0]);
        if (!key_name_valid(argv[optind]))
                return usage_error("invalid key name '%s'", argv[optind]);
        r = parse_principal(argv[optind + 1], &g);
        if (r != 0)
                return r;
        g.ops = o.ops ? o.ops : GRANT_ALL;
        sg.key = argv[optind];
        sg.grant = &g;
        sg.revoke = revoke;
        req.body_case = KEK__REQUEST__BODY_SET_GRANT;
        req.set_grant = &sg;
        return call_key_info(&req, argv[0]);
}

static int cmd_grant(int argc, char *argv[]) {
        return set_grant(argc, argv, false);
}

static int cmd_revoke(int argc, char *argv[]) {
        return set_grant(argc, argv, true);
}

static int cmd_grants(int argc, char *argv[]) {
        Kek__Request req = KEK__REQUEST__INIT;
        Kek__GetKeyRequest gr = KEK__GET_KEY_REQUEST__INIT;
        Kek__Response *resp;
        CmdOpts o = {};
        const char *name;
        int r;

        r = parse_name_cmd(argc, argv, &o, &name);
        if (r != 0)
                return r;
        gr.key = (char *) name;
        req.body_case = KEK__REQUEST__BODY_GET_KEY;
        req.get_key = &gr;
        r = call(&req, "grants", KEK__RESPONSE__BODY_KEY_INFO, &resp);
        if (r != 0)
                return r;
        if (arg_json)
                print_json(grants_json(resp->key_info->key->grants, resp->key_info->key->n_grants));
        else
                print_grants(resp->key_info->key->grants, resp->key_info->key->n_grants);
        kek_conn_response_free(resp);
        return 0;
}

static int cmd_purge(int argc, char *argv[]);
static int cmd_delete(int argc, char *argv[]);
static int cmd_vault(int argc, char *argv[]);

static int cmd_request(int argc, char *argv[]) {
        static const struct {
                const char *name;
                int (*run)(int argc, char *argv[]);
        } submittable[] = { { "purge", cmd_purge }, { "delete", cmd_delete }, { "revoke", cmd_revoke }, { "vault", cmd_vault } };

        if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
                CmdOpts o = {};

                return parse_cmd_opts(argc, argv, &o);
        }
        if (argc < 2)
                return usage_error("request needs a command: purge, delete, revoke or vault");
        for (size_t i = 0; i < ELEMENTSOF(submittable); i++)
                if (strcmp(argv[1], submittable[i].name) == 0) {
                        arg_request = true;
                        return submittable[i].run(argc - 1, argv + 1);
                }
        return usage_error("'%s' cannot be submitted for approval: only purge, delete, revoke and vault", argv[1]);
}

/* Parses options and exactly one request id. */
static int parse_id_cmd(int argc, char *argv[], const char **ret_id) {
        CmdOpts o = {};
        int r = parse_cmd_opts(argc, argv, &o);

        if (r != 0)
                return r;
        if (argc - optind != 1 || strlen(argv[optind]) != 32 || strspn(argv[optind], "0123456789abcdef") != 32)
                return usage_error("%s takes one request id (32 hex digits, from 'kekctl requests')", argv[0]);
        *ret_id = argv[optind];
        return 0;
}

static int cmd_approve(int argc, char *argv[]) {
        Kek__Request req = KEK__REQUEST__INIT;
        Kek__ApproveRequest ar = KEK__APPROVE_REQUEST__INIT;
        Kek__Response *resp;
        const char *id;
        int r;

        r = parse_id_cmd(argc, argv, &id);
        if (r != 0)
                return r;
        ar.id = (char *) id;
        req.body_case = KEK__REQUEST__BODY_APPROVE;
        req.approve = &ar;
        /* The answer is the approved operation's own: key info, a vault policy or nothing. */
        r = call(&req, "approve", KEK__RESPONSE__BODY__NOT_SET, &resp);
        if (r != 0)
                return r;
        if (!arg_json)
                printf("Approved request %s.\n", id);
        if (resp->body_case == KEK__RESPONSE__BODY_KEY_INFO && resp->key_info->key)
                print_key_info(resp->key_info->key);
        else if (arg_json)
                printf("{ \"approved\": \"%s\" }\n", id);
        kek_conn_response_free(resp);
        return 0;
}

static int cmd_requests(int argc, char *argv[]) {
        Kek__Request req = KEK__REQUEST__INIT;
        Kek__ListApprovalsRequest lr = KEK__LIST_APPROVALS_REQUEST__INIT;
        Kek__Response *resp;
        CmdOpts o = {};
        int r;

        r = parse_no_args_cmd(argc, argv, &o);
        if (r != 0)
                return r;
        req.body_case = KEK__REQUEST__BODY_LIST_APPROVALS;
        req.list_approvals = &lr;
        r = call(&req, "requests", KEK__RESPONSE__BODY_APPROVALS, &resp);
        if (r != 0)
                return r;
        print_approvals(resp->approvals->approvals, resp->approvals->n_approvals, false);
        kek_conn_response_free(resp);
        return 0;
}

static int cmd_cancel(int argc, char *argv[]) {
        Kek__Request req = KEK__REQUEST__INIT;
        Kek__CancelApprovalRequest cr = KEK__CANCEL_APPROVAL_REQUEST__INIT;
        Kek__Response *resp;
        const char *id;
        int r;

        r = parse_id_cmd(argc, argv, &id);
        if (r != 0)
                return r;
        cr.id = (char *) id;
        req.body_case = KEK__REQUEST__BODY_CANCEL_APPROVAL;
        req.cancel_approval = &cr;
        r = call(&req, "cancel", KEK__RESPONSE__BODY_EMPTY, &resp);
        if (r != 0)
                return r;
        kek_conn_response_free(resp);
        if (arg_json)
                printf("{ \"cancelled\": \"%s\" }\n", id);
        else
                printf("Cancelled request %s.\n", id);
        return 0;
}

static int cmd_status(int argc, char *argv[]) {
        Kek__Request req = KEK__REQUEST__INIT;
        Kek__StatusRequest sr = KEK__STATUS_REQUEST__INIT;
        Kek__Response *resp;
        CmdOpts o = { .allowed = OPT_PROMETHEUS };
        int r;

        r = parse_no_args_cmd(argc, argv, &o);
        if (r != 0)
                return r;
        req.body_case = KEK__REQUEST__BODY_STATUS;
        req.status = &sr;
        r = call(&req, "status", KEK__RESPONSE__BODY_STATUS, &resp);
        if (r != 0)
                return r;
        r = status_print(resp->status, o.prometheus ? STATUS_PROMETHEUS : arg_json ? STATUS_JSON : STATUS_HUMAN);
        kek_conn_response_free(resp);
        return r < 0 ? EXIT_IO : 0;
}

static const struct {
        const char *name;
        int (*run)(int argc, char *argv[]);
} commands[] = {
        { "create", cmd_create },   { "list", cmd_list },       { "show", cmd_show },
        { "version", cmd_version }, { "rotate", cmd_rotate },   { "policy", cmd_policy },
        { "disable", cmd_disable }, { "enable", cmd_enable },   { "delete", cmd_delete },
        { "recover", cmd_recover }, { "purge", cmd_purge },     { "vault", cmd_vault },
        { "check", cmd_check },     { "wrap", cmd_wrap },       { "unwrap", cmd_unwrap },
        { "rewrap", cmd_rewrap },   { "grant", cmd_grant },     { "revoke", cmd_revoke },
        { "grants", cmd_grants },   { "request", cmd_request }, { "approve", cmd_approve },
        { "requests", cmd_requests }, { "cancel", cmd_cancel }, { "status", cmd_status },
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
        uint64_t t;
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
                case 't':
                        if (parse_u64(optarg, 3600, &t) < 0 || t < 1)
                                return usage_error("invalid --timeout '%s' (1..3600 seconds)", optarg);
                        arg_timeout_ms = (int) t * 1000;
                        break;
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
                        if (r == EXIT_HELP || r == EXIT_SUBMITTED)
                                r = 0;
                        /* Tables and JSON go through stdio: a full disk or closed pipe must not exit 0. */
                        if (fflush(stdout) != 0 || ferror(stdout)) {
                                fprintf(stderr, "kekctl: cannot write stdout: %m\n");
                                return r != 0 ? r : EXIT_IO;
                        }
                        return r;
                }
        return usage_error("unknown command '%s'", argv[optind]);
}
