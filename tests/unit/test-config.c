/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Unit tests of daemon/conf.c: a full and a minimal kekd.conf parse to the
 * exact values and defaults; every bad section, key, value and syntax error
 * fails with -EINVAL and "file:line: message" naming the right line and the
 * offending key; missing required keys; config_load() on a real file and on a
 * path that does not exist.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <syslog.h>
#include <unistd.h>

#include "common/kekerr.h"
#include "common/macro.h"
#include "daemon/conf.h"
#include "pkcs11/hsm.h"
#include "tests/lib/tap.h"

/* Four lines: a complete [hsm] section. */
#define HSM                                                \
        "[hsm]\n"                                          \
        "module = /usr/lib/softhsm/libsofthsm2.so\n"       \
        "token = pkcs11:token=kekd;serial=0123456789abcdef\n" \
        "pin_file = /etc/kekd/pin\n"

static bool streq_ptr(const char *a, const char *b) {
        return a && b && strcmp(a, b) == 0;
}

static bool startswith(const char *s, const char *prefix) {
        return s && strncmp(s, prefix, strlen(prefix)) == 0;
}

/* Loads text that must be valid; returns the Config or NULL (with a failed check). */
static Config *load_ok(const char *text, const char *what) {
        Config *c = NULL;
        char *error = NULL;
        int r;

        r = config_load_string(text, "test.conf", &c, &error);
        if (!is_int(r, 0, "%s: loads", what))
                diag("error: %s", error ?: "(none)");
        ok(r < 0 || (c != NULL && error == NULL), "%s: config returned, no error string", what);
        free(error);
        return r < 0 ? config_free(c) : c;
}

/*
 * Loads text that must fail with -EINVAL and an error "test.conf:LINE: ..."
 * that contains each of the NULL-terminated mentions.
 */
static void load_fails_at(const char *text, int line, const char *what, const char *const *mentions) {
        Config *c = NULL;
        char *error = NULL, prefix[64];
        int r;

        r = config_load_string(text, "test.conf", &c, &error);
        is_int(r, -EINVAL, "%s: -EINVAL", what);
        ok(c == NULL, "%s: no config returned", what);
        snprintf(prefix, sizeof(prefix), "test.conf:%d: ", line);
        if (!ok(startswith(error, prefix), "%s: error starts with '%s'", what, prefix))
                diag("error: %s", error ?: "(null)");
        for (const char *const *m = mentions; m && *m; m++)
                if (!ok(error && strstr(error, *m), "%s: error mentions \"%s\"", what, *m))
                        diag("error: %s", error ?: "(null)");
        config_free(c);
        free(error);
}

#define FAILS_AT(text, line, what, ...) \
        load_fails_at(text, line, what, (const char *const[]) { __VA_ARGS__, NULL })

/* Loads text that must fail with exactly this error message. */
static void load_fails_with(const char *text, int want_r, const char *want_error, const char *what) {
        Config *c = NULL;
        char *error = NULL;
        int r;

        r = config_load_string(text, "test.conf", &c, &error);
        is_int(r, want_r, "%s: return value", what);
        ok(c == NULL, "%s: no config returned", what);
        if (!ok(streq_ptr(error, want_error), "%s: error is \"%s\"", what, want_error))
                diag("got: %s", error ?: "(null)");
        config_free(c);
        free(error);
}

static void test_full(void) {
        Config *c;

        c = load_ok("# kekd test configuration\n"
                    "\n"
                    "[hsm]\n"
                    "module = /usr/lib/softhsm/libsofthsm2.so\n"
                    "token = pkcs11:token=kekd;serial=0123456789abcdef\n"
                    "pin_file = /etc/kekd/pin\n"
                    "sessions = 4\n"
                    "\n"
                    "; another comment\n"
                    "[server]\n"
                    "socket = /run/kekd-test/kekd.sock\n"
                    "socket_mode = 0640\n"
                    "socket_group = kek\n"
                    "max_frame = 131072\n"
                    "max_connections = 17\n"
                    "\n"
                    "[log]\n"
                    "level = debug\n",
                    "full");
        if (!c)
                return;
        ok(streq_ptr(c->module, "/usr/lib/softhsm/libsofthsm2.so"), "full: module '%s'", c->module ?: "(null)");
        ok(streq_ptr(c->token_uri, "pkcs11:token=kekd;serial=0123456789abcdef"), "full: token '%s'",
           c->token_uri ?: "(null)");
        ok(streq_ptr(c->pin_file, "/etc/kekd/pin"), "full: pin_file '%s'", c->pin_file ?: "(null)");
        ok(streq_ptr(c->socket_path, "/run/kekd-test/kekd.sock"), "full: socket '%s'", c->socket_path ?: "(null)");
        is_int(c->socket_mode, 0640, "full: socket_mode 0640");
        ok(streq_ptr(c->socket_group, "kek"), "full: socket_group '%s'", c->socket_group ?: "(null)");
        is_int(c->max_frame, 131072, "full: max_frame");
        is_int(c->max_connections, 17, "full: max_connections");
        is_int(c->sessions, 4, "full: sessions 4");
        is_int(c->log_level, LOG_DEBUG, "full: log level debug");
        config_free(c);
}

static void test_minimal(void) {
        Config *c;

        c = load_ok("[hsm]\nmodule = softhsm2\ntoken = pkcs11:token=kekd\npin_file = /etc/kekd/pin\n", "minimal");
        if (!c)
                return;
        ok(streq_ptr(c->module, "softhsm2"), "minimal: module '%s'", c->module ?: "(null)");
        ok(streq_ptr(c->token_uri, "pkcs11:token=kekd"), "minimal: token");
        ok(streq_ptr(c->pin_file, "/etc/kekd/pin"), "minimal: pin_file");
        ok(streq_ptr(c->socket_path, "/run/kekd/kekd.sock"), "minimal: default socket '%s'",
           c->socket_path ?: "(null)");
        is_int(c->socket_mode, 0660, "minimal: default socket_mode 0660");
        ok(c->socket_group == NULL, "minimal: no socket_group by default");
        is_int(c->max_frame, 65536, "minimal: default max_frame 65536");
        is_int(c->max_connections, 1024, "minimal: default max_connections 1024");
        is_int(c->sessions, 1, "minimal: default sessions 1 (no HSM worker threads)");
        is_int(c->profile, -1, "minimal: default profile auto (-1)");
        is_int(c->log_level, LOG_INFO, "minimal: default log level LOG_INFO");
        config_free(c);
}

static void test_values(void) {
        static const struct {
                const char *name;
                int level;
        } levels[] = {
                { "error", LOG_ERR }, { "warning", LOG_WARNING }, { "notice", LOG_NOTICE },
                { "info", LOG_INFO }, { "debug", LOG_DEBUG },
        };
        char text[512], sock[120];
        Config *c;

        for (size_t i = 0; i < ELEMENTSOF(levels); i++) {
                snprintf(text, sizeof(text), HSM "[log]\nlevel = %s\n", levels[i].name);
                c = load_ok(text, levels[i].name);
                if (c)
                        is_int(c->log_level, levels[i].level, "level %s", levels[i].name);
                config_free(c);
        }

        /* Range boundaries that are accepted. */
        c = load_ok(HSM "[server]\nmax_frame = 4096\nmax_connections = 1\nsocket_mode = 0\n", "lower bounds");
        if (c) {
                is_int(c->max_frame, 4096, "lower bounds: max_frame 4096");
                is_int(c->max_connections, 1, "lower bounds: max_connections 1");
                is_int(c->socket_mode, 0, "lower bounds: socket_mode 0");
        }
        config_free(c);
        c = load_ok(HSM "[server]\nmax_frame = 16777216\nmax_connections = 65536\nsocket_mode = 0770\n",
                    "upper bounds");
        if (c) {
                is_int(c->max_frame, 16777216, "upper bounds: max_frame 16777216");
                is_int(c->max_connections, 65536, "upper bounds: max_connections 65536");
                is_int(c->socket_mode, 0770, "upper bounds: socket_mode 0770");
        }
        config_free(c);

        /* A leading 0 is optional in socket_mode. */
        c = load_ok(HSM "[server]\nsocket_mode = 600\n", "socket_mode 600");
        if (c)
                is_int(c->socket_mode, 0600, "socket_mode '600' is octal 0600");
        config_free(c);

        /* The longest socket path: 107 bytes plus the NUL fill sun_path. */
        memset(sock, 'a', sizeof(sock));
        sock[0] = '/';
        sock[107] = 0;
        snprintf(text, sizeof(text), HSM "[server]\nsocket = %s\n", sock);
        c = load_ok(text, "socket of 107 bytes");
        if (c)
                ok(streq_ptr(c->socket_path, sock), "socket of 107 bytes kept");
        config_free(c);

        /* The last value counts; whitespace and inline comments are stripped. */
        c = load_ok(HSM "[hsm]\nmodule = first\nmodule = second\n"
                        "[server]\n  max_frame   =   8192   ; an inline comment\nmax_frame = 4096\n"
                        "socket_group=grp\n",
                    "repeated keys");
        if (c) {
                ok(streq_ptr(c->module, "second"), "repeated keys: last module wins ('%s')", c->module ?: "(null)");
                is_int(c->max_frame, 4096, "repeated keys: last max_frame wins");
                ok(streq_ptr(c->socket_group, "grp"), "no spaces around '=': socket_group '%s'",
                   c->socket_group ?: "(null)");
        }
        config_free(c);

        c = load_ok("[server]\nmax_frame = 8192 ; comment\n" HSM, "inline comment");
        if (c)
                is_int(c->max_frame, 8192, "inline comment after a value is stripped");
        config_free(c);

        /* Last line without a newline. */
        c = load_ok(HSM "[log]\nlevel = notice", "no final newline");
        if (c)
                is_int(c->log_level, LOG_NOTICE, "no final newline: value of the last line");
        config_free(c);
}

static void test_errors(void) {
        char text[1024], sock[120];

        /* The ordinary case: the bad line is line 5, right after the [hsm] section. */
        FAILS_AT("[bogus]\nkey = 1\n", 1, "unknown section", "unknown section [bogus]");
        FAILS_AT(HSM "[bogus]\nkey = 1\n", 5, "unknown section after [hsm]", "[bogus]");
        FAILS_AT("module = softhsm2\n" HSM, 1, "key before any section", "unknown section []");
        FAILS_AT(HSM "modul = softhsm2\n", 5, "unknown key in [hsm]", "unknown key 'modul' in [hsm]");
        FAILS_AT(HSM "[server]\nmax_frames = 2048\n", 6, "unknown key in [server]",
                 "unknown key 'max_frames' in [server]");
        FAILS_AT(HSM "[log]\nlevel = info\nfacility = daemon\n", 7, "unknown key in [log]",
                 "unknown key 'facility' in [log]");
        FAILS_AT(HSM "[HSM]\nmodule = x\n", 5, "section names are case-sensitive", "unknown section [HSM]");
        FAILS_AT(HSM "\n[serevr]\n", 6, "unknown section without keys", "unknown section [serevr]");

        FAILS_AT("[hsm]\nmodule =\n", 2, "empty module", "empty value for 'module' in [hsm]");
        FAILS_AT(HSM "[server]\nsocket_group = \n", 6, "empty socket_group", "empty value for 'socket_group' in [server]");
        FAILS_AT(HSM "[server]\nmax_frame =\n", 6, "empty max_frame", "'max_frame' in [server]");

        FAILS_AT("[hsm]\ntoken = token=kekd\n", 2, "token without pkcs11:", "'token' in [hsm]", "pkcs11:");
        FAILS_AT("[hsm]\ntoken = PKCS11:token=kekd\n", 2, "token with PKCS11:", "'token' in [hsm]", "pkcs11:");
        FAILS_AT("[hsm]\ntoken =\n", 2, "empty token", "'token' in [hsm]");
        FAILS_AT("[hsm]\ntoken = pkcs11:token=kekd;pin-value=s3cr3t-1234\n", 2, "token with pin-value",
                 "'token' in [hsm]", "pin-value");
        FAILS_AT("[hsm]\ntoken = pkcs11:token=kekd?pin-value=s3cr3t-1234\n", 2, "token with pin-value query",
                 "'token' in [hsm]", "pin-value");

        FAILS_AT("[hsm]\npin_file = etc/kekd/pin\n", 2, "relative pin_file", "'pin_file' in [hsm]", "absolute");
        FAILS_AT("[hsm]\npin_file = ./pin\n", 2, "dot-relative pin_file", "'pin_file' in [hsm]", "absolute");
        FAILS_AT(HSM "[server]\nsocket = run/kekd.sock\n", 6, "relative socket", "'socket' in [server]", "absolute");

        memset(sock, 'a', sizeof(sock));
        sock[0] = '/';
        sock[108] = 0;
        snprintf(text, sizeof(text), HSM "[server]\nsocket = %s\n", sock);
        FAILS_AT(text, 6, "socket of 108 bytes", "'socket' in [server]");

        static const char *const bad_modes[] = { "0x1ff", "abc", "999", "8", "0660x", "-0660", "+0660", "06 60" };
        for (size_t i = 0; i < ELEMENTSOF(bad_modes); i++) {
                char want[64], what[64];

                snprintf(text, sizeof(text), HSM "[server]\nsocket_mode = %s\n", bad_modes[i]);
                snprintf(want, sizeof(want), "got '%s'", bad_modes[i]);
                snprintf(what, sizeof(what), "socket_mode %s", bad_modes[i]);
                FAILS_AT(text, 6, what, "'socket_mode' in [server]", "octal", want);
        }
        FAILS_AT(HSM "[server]\nsocket_mode = 0666\n", 6, "socket_mode 0666", "'socket_mode' in [server]",
                 "others", "0666");
        FAILS_AT(HSM "[server]\nsocket_mode = 0661\n", 6, "socket_mode 0661", "'socket_mode' in [server]",
                 "others", "0661");
        FAILS_AT(HSM "[server]\nsocket_mode = 0604\n", 6, "socket_mode 0604", "'socket_mode' in [server]",
                 "others", "0604");
        FAILS_AT(HSM "[server]\nsocket_mode = 01660\n", 6, "socket_mode 01660 (sticky bit)",
                 "'socket_mode' in [server]", "01660");

        FAILS_AT(HSM "[server]\nmax_frame = 4095\n", 6, "max_frame 4095", "'max_frame' in [server]", "4095");
        FAILS_AT(HSM "[server]\nmax_frame = 16777217\n", 6, "max_frame 16777217", "'max_frame' in [server]",
                 "16777217");
        FAILS_AT(HSM "[server]\nmax_frame = 0\n", 6, "max_frame 0", "'max_frame' in [server]");
        FAILS_AT(HSM "[server]\nmax_frame = 99999999999999999999999\n", 6, "max_frame overflowing unsigned long",
                 "'max_frame' in [server]");
        FAILS_AT(HSM "[server]\nmax_frame = lots\n", 6, "max_frame lots", "'max_frame' in [server]", "lots");
        FAILS_AT(HSM "[server]\nmax_frame = 64k\n", 6, "max_frame 64k", "'max_frame' in [server]", "64k");
        FAILS_AT(HSM "[server]\nmax_frame = -1\n", 6, "max_frame -1", "'max_frame' in [server]", "-1");
        FAILS_AT(HSM "[server]\nmax_frame = -65536\n", 6, "max_frame -65536", "'max_frame' in [server]");
        FAILS_AT(HSM "[server]\nmax_connections = 0\n", 6, "max_connections 0", "'max_connections' in [server]");
        FAILS_AT(HSM "[server]\nmax_connections = 65537\n", 6, "max_connections 65537",
                 "'max_connections' in [server]");
        FAILS_AT(HSM "[server]\nmax_connections = -5\n", 6, "max_connections -5", "'max_connections' in [server]");

        /* HSM sessions: 1..64, a line of the [hsm] section (line 5, after HSM's four). */
        {
                Config *c = load_ok(HSM "sessions = 64\n", "sessions 64");

                if (c)
                        is_int(c->sessions, 64, "upper bound: sessions 64");
                config_free(c);
        }
        FAILS_AT(HSM "sessions = 0\n", 5, "sessions 0", "'sessions' in [hsm]");
        FAILS_AT(HSM "sessions = 65\n", 5, "sessions 65", "'sessions' in [hsm]", "65");
        FAILS_AT(HSM "sessions = many\n", 5, "sessions many", "'sessions' in [hsm]", "many");

        /* [hsm] profile: auto or a profile's name (issue 16). */
        {
                static const struct { const char *text; int want; } good[] = {
                        { "auto", -1 }, { "gcm", HSM_PROFILE_GCM }, { "ctr-hmac", HSM_PROFILE_CTR_HMAC },
                        { "gcm-token-iv", HSM_PROFILE_GCM_TOKEN_IV }, { "cbc-hmac", HSM_PROFILE_CBC_HMAC },
                };
                char text[256], what[64];

                for (size_t i = 0; i < ELEMENTSOF(good); i++) {
                        Config *c;

                        snprintf(text, sizeof(text), HSM "profile = %s\n", good[i].text);
                        snprintf(what, sizeof(what), "profile %s", good[i].text);
                        c = load_ok(text, what);
                        if (c)
                                is_int(c->profile, good[i].want, "profile %s is %d", good[i].text, good[i].want);
                        config_free(c);
                }
        }
        FAILS_AT(HSM "profile = aes-gcm\n", 5, "profile aes-gcm", "'profile' in [hsm]", "aes-gcm", "ctr-hmac");
        FAILS_AT(HSM "profile = CTR-HMAC\n", 5, "profile CTR-HMAC", "'profile' in [hsm]", "CTR-HMAC");
        FAILS_AT(HSM "profile =\n", 5, "profile empty", "'profile' in [hsm]");

        FAILS_AT(HSM "[log]\nlevel = verbose\n", 6, "level verbose", "'level' in [log]", "verbose");
        FAILS_AT(HSM "[log]\nlevel = INFO\n", 6, "level INFO", "'level' in [log]", "INFO");
        FAILS_AT(HSM "[log]\nlevel = 6\n", 6, "level 6", "'level' in [log]");

        FAILS_AT(HSM "garbage without equals\n", 5, "syntax error", "syntax error");
        FAILS_AT(HSM "[server\n", 5, "unterminated section header", "syntax error");
}

static void test_error_messages(void) {
        /* Exact messages, as documented in kekd.conf(5). */
        load_fails_with(HSM "[server]\n\n\nmax_frames = 2048\n", -EINVAL,
                        "test.conf:8: unknown key 'max_frames' in [server]", "documented unknown key");
        load_fails_with(HSM "[server]\nsocket_mode = 0666\n", -EINVAL,
                        "test.conf:6: 'socket_mode' in [server] must not grant access to others (got 0666)",
                        "documented socket_mode");
        load_fails_with(HSM "garbage without equals\n", -EINVAL,
                        "test.conf:5: syntax error: expected '[section]' or 'key = value'", "syntax error");
        load_fails_with("[hsm]\nmodule =\n", -EINVAL, "test.conf:2: empty value for 'module' in [hsm]",
                        "empty value");
        load_fails_with(HSM "[server]\nsocket_mode = 0x1ff\n", -EINVAL,
                        "test.conf:6: 'socket_mode' in [server] must be an octal number, got '0x1ff'",
                        "socket_mode 0x1ff");
        load_fails_with(HSM "[server]\nmax_frame = 4095\n", -EINVAL,
                        "test.conf:6: 'max_frame' in [server] must be between 4096 and 16777216, got '4095'",
                        "max_frame 4095");
        load_fails_with(HSM "[server]\nmax_frame = -1\n", -EINVAL,
                        "test.conf:6: 'max_frame' in [server] must be a number, got '-1'", "max_frame -1");
        load_fails_with(HSM "[log]\nlevel = verbose\n", -EINVAL,
                        "test.conf:6: 'level' in [log] must be error, warning, notice, info or debug, got 'verbose'",
                        "level verbose");

        /* The PIN of a refused token URI is never echoed into the error. */
        Config *c = NULL;
        char *error = NULL;
        int r = config_load_string("[hsm]\ntoken = pkcs11:token=kekd;pin-value=s3cr3t-1234\n", "test.conf", &c,
                                   &error);
        is_int(r, -EINVAL, "pin-value: refused");
        ok(error && !strstr(error, "s3cr3t"), "pin-value: the PIN is not in the error (%s)", error ?: "(null)");
        free(error);
        config_free(c);

        /* No error string requested. */
        c = NULL;
        is_int(config_load_string(HSM "bad line\n", "test.conf", &c, NULL), -EINVAL, "error without ret_error");
        ok(c == NULL, "error without ret_error: no config");
        is_int(config_load_string("", "test.conf", &c, NULL), -EINVAL, "missing key without ret_error");
        ok(c == NULL, "missing key without ret_error: no config");
}

static void test_error_lines(void) {
        /* Comments and blank lines before the bad line are counted. */
        FAILS_AT("# comment\n\n; comment\n\n[hsm]\n\n# x\nmodul = y\n", 8, "unknown key after comments",
                 "unknown key 'modul' in [hsm]");
        FAILS_AT("\n\n\n\n\n\n\n\n\n\n\n\n" HSM "# c\n[server]\n\n\nsocket_mode = 0666\n", 21,
                 "socket_mode after 12 blank lines", "'socket_mode' in [server]");
        FAILS_AT("# one\n# two\n" HSM "\n; three\ngarbage without equals\n", 9, "syntax error after comments",
                 "syntax error");
        FAILS_AT("# one\n\n[log]\n\nlevel = loud\n" HSM, 5, "level on line 5", "'level' in [log]");
        /* The bad line is the last one and has no newline. */
        FAILS_AT(HSM "\n[server]\nmax_connections = 0", 7, "last line without newline",
                 "'max_connections' in [server]");
        /* Windows line endings. */
        FAILS_AT("[hsm]\r\nmodule = x\r\n\r\nmodul = y\r\n", 4, "CRLF lines", "unknown key 'modul' in [hsm]");

        /* Only the first error is reported. */
        FAILS_AT(HSM "[server]\nmax_frame = 1\nmax_connections = 0\n", 6, "first of two errors (handler, handler)",
                 "'max_frame' in [server]");
        FAILS_AT(HSM "[server]\nsyntax error here\nmax_connections = 0\n", 6, "first of two errors (syntax, handler)",
                 "syntax error");
        FAILS_AT(HSM "[server]\nmax_connections = 0\nsyntax error here\n", 6, "first of two errors (handler, syntax)",
                 "'max_connections' in [server]");
}

static void test_missing(void) {
        load_fails_with("", -EINVAL, "test.conf: missing required 'module' in [hsm]", "empty file");
        load_fails_with("# nothing\n\n", -EINVAL, "test.conf: missing required 'module' in [hsm]", "comments only");
        load_fails_with("[hsm]\ntoken = pkcs11:token=kekd\npin_file = /etc/kekd/pin\n", -EINVAL,
                        "test.conf: missing required 'module' in [hsm]", "missing module");
        load_fails_with("[hsm]\nmodule = softhsm2\npin_file = /etc/kekd/pin\n", -EINVAL,
                        "test.conf: missing required 'token' in [hsm]", "missing token");
        load_fails_with("[hsm]\nmodule = softhsm2\ntoken = pkcs11:token=kekd\n[server]\nmax_frame = 8192\n", -EINVAL,
                        "test.conf: missing required 'pin_file' in [hsm]", "missing pin_file");
        load_fails_with("[server]\nsocket = /run/k.sock\n[log]\nlevel = info\n", -EINVAL,
                        "test.conf: missing required 'module' in [hsm]", "no [hsm] section");
}

/* [server] max_queued_output: its default, one that follows max_frame, its bounds. */
static void test_queued_output(void) {
        Config *c;

        c = load_ok(HSM, "queued output default");
        if (c)
                is_int(c->max_queued_output, 16 * 1024 * 1024, "max_queued_output defaults to 16 MiB");
        config_free(c);
        c = load_ok(HSM "[server]\nmax_frame = 16777216\n", "queued output with a large max_frame");
        if (c)
                is_int(c->max_queued_output, 4 * 16777216, "max_queued_output defaults to 4 x max_frame when that is more");
        config_free(c);
        c = load_ok(HSM "[server]\nmax_queued_output = 1048576\n", "queued output set");
        if (c)
                is_int(c->max_queued_output, 1048576, "max_queued_output 1048576");
        config_free(c);
        c = load_ok(HSM "[server]\nmax_queued_output = 16384\nmax_frame = 4096\n", "queued output lower bound");
        if (c)
                is_int(c->max_queued_output, 16384, "max_queued_output 16384 with max_frame 4096");
        config_free(c);
        FAILS_AT(HSM "[server]\nmax_queued_output = 16383\n", 6, "max_queued_output below 16384",
                 "'max_queued_output' in [server] must be between 16384 and");
        FAILS_AT(HSM "[server]\nmax_queued_output = 1MiB\n", 6, "max_queued_output with a unit", "'max_queued_output' in [server]");
        load_fails_with(HSM "[server]\nmax_queued_output = 262143\n", -EINVAL,
                        "test.conf: 'max_queued_output' in [server] must be at least 4 x max_frame (262144), got 262143",
                        "max_queued_output below 4 x max_frame");
}

static void test_long_lines(void) {
        char text[2048], token[300], comment[300];
        Config *c;

        /* A real PKCS#11 URI easily exceeds 200 bytes. */
        strcpy(token, "pkcs11:model=SoftHSM%20v2;manufacturer=SoftHSM%20project;serial=0123456789abcdef;token=kekd");
        while (strlen(token) < 240)
                strcat(token, "%20x");
        snprintf(text, sizeof(text), "[hsm]\nmodule = softhsm2\ntoken = %s\npin_file = /etc/kekd/pin\n", token);
        c = load_ok(text, "token URI of 240+ bytes");
        if (c)
                ok(streq_ptr(c->token_uri, token), "long token URI kept whole (got %zu bytes, want %zu)",
                   c->token_uri ? strlen(c->token_uri) : 0, strlen(token));
        config_free(c);

        /* ... also with an inline comment, which inih would strip from a short line too. */
        snprintf(text, sizeof(text), "[hsm]\nmodule = softhsm2\ntoken =   %s   ; the HSM\npin_file = /etc/kekd/pin\n", token);
        c = load_ok(text, "token URI of 240+ bytes with an inline comment");
        if (c)
                ok(streq_ptr(c->token_uri, token), "long token URI: comment and blanks removed");
        config_free(c);
        /* A bad long value is reported on its own line. */
        snprintf(text, sizeof(text), "[hsm]\nmodule = softhsm2\n\ntoken = x%s\n", token);
        FAILS_AT(text, 4, "long token URI not starting with pkcs11:", "must be a PKCS#11 URI");

        /* A long comment line is a comment, and later lines keep their numbers. */
        memset(comment, 'x', sizeof(comment));
        comment[0] = '#';
        comment[250] = 0;
        snprintf(text, sizeof(text), "%s\n" HSM, comment);
        c = load_ok(text, "comment line of 250 bytes");
        config_free(c);
        snprintf(text, sizeof(text), "%s\n" HSM "modul = x\n", comment);
        FAILS_AT(text, 6, "unknown key after a 250-byte comment", "unknown key 'modul' in [hsm]");
}

static void test_indented(void) {
        Config *c;

        /* kekd.conf(5): "Whitespace around keys and values is ignored." */
        c = load_ok("[hsm]\n"
                    "    module = softhsm2\n"
                    "    token = pkcs11:token=kekd\n"
                    "    pin_file = /etc/kekd/pin\n"
                    "[server]\n"
                    "\tmax_frame = 8192\n"
                    "\tmax_connections = 8\n",
                    "indented keys");
        if (c) {
                ok(streq_ptr(c->module, "softhsm2"), "indented keys: module '%s'", c->module ?: "(null)");
                ok(streq_ptr(c->token_uri, "pkcs11:token=kekd"), "indented keys: token");
                ok(streq_ptr(c->pin_file, "/etc/kekd/pin"), "indented keys: pin_file");
                is_int(c->max_frame, 8192, "indented keys: max_frame");
                is_int(c->max_connections, 8, "indented keys: max_connections");
        }
        config_free(c);
}

static void test_load_file(void) {
        char dir[] = "/tmp/test-config.XXXXXX", path[sizeof(dir) + 32], missing[sizeof(dir) + 32], want[256];
        Config *c = NULL;
        char *error = NULL;
        FILE *f;
        int r;

        if (!ok(mkdtemp(dir) != NULL, "mkdtemp"))
                return;
        snprintf(path, sizeof(path), "%s/kekd.conf", dir);
        snprintf(missing, sizeof(missing), "%s/does-not-exist.conf", dir);

        f = fopen(path, "we");
        ok(f != NULL, "create %s", path);
        if (f) {
                fputs("# test\n[hsm]\nmodule = softhsm2\ntoken = pkcs11:token=kekd\npin_file = /etc/kekd/pin\n"
                      "[server]\nsocket = /run/t.sock\nsocket_mode = 0600\nmax_frame = 8192\n[log]\nlevel = warning",
                      f);
                ok(fclose(f) == 0, "write %s", path);
        }
        r = config_load(path, &c, &error);
        if (!is_int(r, 0, "file: loads"))
                diag("error: %s", error ?: "(null)");
        ok(error == NULL, "file: no error string");
        if (c) {
                ok(streq_ptr(c->module, "softhsm2") && streq_ptr(c->token_uri, "pkcs11:token=kekd") &&
                           streq_ptr(c->pin_file, "/etc/kekd/pin"),
                   "file: [hsm] values");
                ok(streq_ptr(c->socket_path, "/run/t.sock"), "file: socket");
                is_int(c->socket_mode, 0600, "file: socket_mode");
                is_int(c->max_frame, 8192, "file: max_frame");
                is_int(c->max_connections, 1024, "file: default max_connections");
                is_int(c->log_level, LOG_WARNING, "file: level of the last line without newline");
        }
        c = config_free(c);
        free(error);
        error = NULL;

        /* An error in a file names the path and the line. */
        f = fopen(path, "we");
        if (f) {
                fputs("[hsm]\nmodule = softhsm2\n\n# c\nsocket = /x\n", f);
                fclose(f);
        }
        r = config_load(path, &c, &error);
        is_int(r, -EINVAL, "file with error: -EINVAL");
        ok(c == NULL, "file with error: no config");
        snprintf(want, sizeof(want), "%s:5: unknown key 'socket' in [hsm]", path);
        if (!ok(streq_ptr(error, want), "file with error: \"%s\"", want))
                diag("got: %s", error ?: "(null)");
        free(error);
        error = NULL;

        /* Missing key in a file: path without a line. */
        f = fopen(path, "we");
        if (f) {
                fputs("[hsm]\nmodule = softhsm2\ntoken = pkcs11:token=kekd\n", f);
                fclose(f);
        }
        r = config_load(path, &c, &error);
        is_int(r, -EINVAL, "file missing pin_file: -EINVAL");
        snprintf(want, sizeof(want), "%s: missing required 'pin_file' in [hsm]", path);
        if (!ok(streq_ptr(error, want), "file missing pin_file: \"%s\"", want))
                diag("got: %s", error ?: "(null)");
        config_free(c);
        c = NULL;
        free(error);
        error = NULL;

        /* A path that does not exist. */
        r = config_load(missing, &c, &error);
        is_int(r, -ENOENT, "nonexistent: -ENOENT");
        ok(c == NULL, "nonexistent: no config");
        snprintf(want, sizeof(want), "%s: cannot open: %s", missing, strerror(ENOENT));
        if (!ok(streq_ptr(error, want), "nonexistent: \"%s\"", want))
                diag("got: %s", error ?: "(null)");
        ok(error && strstr(error, "cannot open"), "nonexistent: error says 'cannot open'");
        free(error);
        error = NULL;
        is_int(config_load(missing, &c, NULL), -ENOENT, "nonexistent without ret_error: -ENOENT");

        /* A directory opens but cannot be read: the read error is reported, not "missing 'module'". */
        r = config_load(dir, &c, &error);
        is_int(r, -EISDIR, "directory: -EISDIR");
        ok(c == NULL, "directory: no config");
        ok(error && startswith(error, dir), "directory: error names the path (%s)", error ?: "(null)");
        ok(error && strstr(error, strerror(EISDIR)), "directory: error says \"%s\"", strerror(EISDIR));
        config_free(c);
        free(error);

        is_int(unlink(path), 0, "remove %s", path);
        is_int(rmdir(dir), 0, "remove %s", dir);
}

/*
 * config_keys[] (what SIGHUP does with each key): every key of two configs
 * that differ everywhere is seen as changed, none of a config against
 * itself, and [hsm] sessions is one that only a restart applies (a reload
 * once ignored a change to it without a word).
 */
static void test_reload_keys(void) {
        static const char a_text[] =
                "[hsm]\nmodule = /a.so\ntoken = pkcs11:token=a\npin_file = /a/pin\nsessions = 1\nprofile = auto\nallow_unsafe_token = no\n"
                "name = a\nprobe_interval = 5\n"
                "[server]\nsocket = /a.sock\nsocket_mode = 0600\nsocket_group = ga\nmax_frame = 8192\n"
                "max_connections = 10\nmax_connections_per_uid = 5\nidle_timeout = 30\nmax_queued_output = 1048576\n"
                "[keys]\nrefresh_interval = 5\nallow_unrecoverable = no\n"
                "[access]\nadmin_group = aa\nofficer_group = oa\n"
                "[metrics]\nfile = /a.prom\ninterval = 15\n"
                "[log]\nlevel = info\naudit_interval = 60\n"
                "[backup]\ndirectory = /a/backup\nwrapping_key = wa\nunwrapping_key = ua\n";
        static const char b_text[] =
                "[hsm]\nmodule = /b.so\ntoken = pkcs11:token=b\npin_file = /b/pin\nsessions = 4\nprofile = ctr-hmac\nallow_unsafe_token = yes\n"
                "name = b\nprobe_interval = 6\n"
                "[server]\nsocket = /b.sock\nsocket_mode = 0660\nsocket_group = gb\nmax_frame = 16384\n"
                "max_connections = 20\nmax_connections_per_uid = 6\nidle_timeout = 31\nmax_queued_output = 2097152\n"
                "[keys]\nrefresh_interval = 6\nallow_unrecoverable = yes\n"
                "[access]\nadmin_group = ab\nofficer_group = ob\n"
                "[metrics]\nfile = /b.prom\ninterval = 16\n"
                "[log]\nlevel = debug\naudit_interval = 61\n"
                "[backup]\ndirectory = /b/backup\nwrapping_key = wb\nunwrapping_key = ub\n";
        Config *a = load_ok(a_text, "reload: config a"), *b = load_ok(b_text, "reload: config b");
        const ConfigKey *sessions = NULL;

        if (!a || !b) {
                config_free(a);
                config_free(b);
                return;
        }
        for (size_t i = 0; i < config_n_keys; i++) {
                const ConfigKey *k = &config_keys[i];

                ok(config_key_changed(k, a, b), "reload: [%s] %s differs between a and b", k->section, k->name);
                ok(!config_key_changed(k, a, a), "reload: [%s] %s of a equals itself", k->section, k->name);
                if (strcmp(k->section, "hsm") == 0 && strcmp(k->name, "sessions") == 0)
                        sessions = k;
        }
        ok(sessions != NULL, "reload: [hsm] sessions is listed");
        ok(sessions && sessions->reload == CONFIG_RELOAD_RESTART, "reload: [hsm] sessions needs a restart");
        config_free(a);
        config_free(b);
}

/*
 * [hsm.NAME] (docs/tokens-ha.md): further tokens kept in file order with
 * their values, a shared PIN left NULL, the defaults of [hsm] name and
 * probe_interval, and config_tokens_changed() seeing a change of order or
 * value, and none against itself.
 */
static void test_tokens(void) {
        static const char base[] = "[hsm]\nmodule = /a.so\ntoken = pkcs11:token=a\npin_file = /a/pin\n";
        static const char two[] = "[hsm.dr]\nmodule = /b.so\ntoken = pkcs11:token=b\npin_file = /b/pin\n"
                                  "[hsm.c-2]\nmodule = /c.so\ntoken = pkcs11:token=c\n";
        static const char swapped[] = "[hsm.c-2]\nmodule = /c.so\ntoken = pkcs11:token=c\n"
                                      "[hsm.dr]\nmodule = /b.so\ntoken = pkcs11:token=b\npin_file = /b/pin\n";
        static const char other_uri[] = "[hsm.dr]\nmodule = /b.so\ntoken = pkcs11:token=B\npin_file = /b/pin\n"
                                        "[hsm.c-2]\nmodule = /c.so\ntoken = pkcs11:token=c\n";
        char text[1024];
        Config *one, *c, *s, *o;

        one = load_ok(base, "tokens: [hsm] alone");
        if (one) {
                is_int(one->n_tokens, 0, "tokens: no further token");
                ok(one->token_name && strcmp(one->token_name, "primary") == 0, "tokens: [hsm] name defaults to primary");
                is_int(one->probe_interval, 5, "tokens: probe_interval defaults to 5 s");
        }
        snprintf(text, sizeof(text), "%s%s", base, two);
        c = load_ok(text, "tokens: two further tokens");
        snprintf(text, sizeof(text), "%s%s", base, swapped);
        s = load_ok(text, "tokens: the same, swapped");
        snprintf(text, sizeof(text), "%s%s", base, other_uri);
        o = load_ok(text, "tokens: another URI");
        if (c && s && o && one) {
                is_int(c->n_tokens, 2, "tokens: two");
                ok(strcmp(c->tokens[0].name, "dr") == 0 && strcmp(c->tokens[1].name, "c-2") == 0, "tokens: file order");
                ok(strcmp(c->tokens[0].module, "/b.so") == 0 && strcmp(c->tokens[0].token_uri, "pkcs11:token=b") == 0 &&
                           strcmp(c->tokens[0].pin_file, "/b/pin") == 0,
                   "tokens: the first one's values");
                ok(c->tokens[1].pin_file == NULL, "tokens: no pin_file: the [hsm] PIN is shared");
                ok(!config_tokens_changed(c, c), "tokens: unchanged against itself");
                ok(config_tokens_changed(c, s), "tokens: another order is a change");
                ok(config_tokens_changed(c, o), "tokens: another URI is a change");
                ok(config_tokens_changed(c, one), "tokens: a token fewer is a change");
        }
        config_free(one);
        config_free(c);
        config_free(s);
        config_free(o);
}

int main(void) {
        test_tokens();
        test_full();
        test_minimal();
        test_values();
        test_errors();
        test_error_messages();
        test_error_lines();
        test_missing();
        test_queued_output();
        test_long_lines();
        test_indented();
        test_load_file();
        test_reload_keys();
        return tap_done();
}
