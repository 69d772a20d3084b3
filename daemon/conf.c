/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * kekd.conf parsing (see conf.h). Our own line reader feeds inih, so we know
 * the line of every handler call; the first failure is recorded with its line
 * and reason, and the message names file, line, section, key and value.
 */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <syslog.h>

#include <ini.h>

#include "daemon/conf.h"
#include "pkcs11/hsm.h"
#include "proto/frame.h"

typedef struct ParseState {
        Config *config;
        FILE *file;         /* input: a file, or */
        const char *text;   /* a string, consumed as lines are read */
        char *linebuf;      /* getline() buffer for file input */
        size_t linebuf_size;
        int read_errno;     /* a read error ends parsing: never taken for end of file */
        char *long_value;   /* value of a line too long for inih's buffer, see reader() */
        int line;           /* line inih is on: counted by our reader */
        int error_line;     /* line of the first failure we detected */
        char error[256];    /* first error, without "file:line: " */
        bool failed;
} ParseState;

/* Bounds of [server] max_queued_output: 16 MiB unless 4 x max_frame is more; at most 64 GiB. */
#define QUEUED_OUTPUT_DEFAULT ((size_t) 16 << 20)
#define QUEUED_OUTPUT_LIMIT ((unsigned long) MIN(64ULL << 30, (unsigned long long) ULONG_MAX))

#define TOKEN_NAME_CHARS "abcdefghijklmnopqrstuvwxyz0123456789_-"

static const char *const sections[] = { "hsm", "server", "keys", "access", "metrics", "log", "backup" };

#define KEY(s, n, r, t, f) { s, n, CONFIG_RELOAD_##r, CONFIG_##t, offsetof(Config, f) }
const ConfigKey config_keys[] = {
        KEY("hsm", "module", RESTART, STRING, module),
        KEY("hsm", "token", RESTART, STRING, token_uri),
        KEY("hsm", "pin_file", RESTART, STRING, pin_file),
        KEY("hsm", "sessions", RESTART, UNSIGNED, sessions),
        KEY("hsm", "profile", RESTART, INT, profile),
        KEY("hsm", "name", RESTART, STRING, token_name),
        KEY("hsm", "probe_interval", RESTART, UNSIGNED, probe_interval),
        KEY("hsm", "allow_unsafe_token", RESTART, BOOL, allow_unsafe_token),
        KEY("server", "socket", SOCKET, STRING, socket_path),
        KEY("server", "socket_mode", SOCKET, MODE, socket_mode),
        KEY("server", "socket_group", SOCKET, STRING, socket_group),
        KEY("server", "max_frame", RESTART, SIZE, max_frame),
        KEY("server", "max_connections", RESTART, UNSIGNED, max_connections),
        KEY("server", "max_connections_per_uid", RESTART, UNSIGNED, max_connections_per_uid),
        KEY("server", "idle_timeout", RESTART, UNSIGNED, idle_timeout),
        KEY("server", "max_queued_output", RESTART, SIZE, max_queued_output),
        KEY("keys", "refresh_interval", APPLY, UNSIGNED, refresh_interval),
        KEY("keys", "allow_unrecoverable", APPLY, BOOL, allow_unrecoverable),
        KEY("access", "admin_group", RESTART, STRING, admin_group),
        KEY("access", "officer_group", RESTART, STRING, officer_group),
        KEY("metrics", "file", RESTART, STRING, metrics_file),
        KEY("metrics", "interval", RESTART, UNSIGNED, metrics_interval),
        KEY("log", "level", APPLY, INT, log_level),
        KEY("log", "audit_interval", RESTART, UNSIGNED, audit_interval),
        KEY("backup", "directory", RESTART, STRING, backup_directory),
        KEY("backup", "wrapping_key", RESTART, STRING, backup_wrapping_key),
        KEY("backup", "unwrapping_key", RESTART, STRING, backup_unwrapping_key),
};
#undef KEY
const size_t config_n_keys = ELEMENTSOF(config_keys);

static bool str_differ(const char *a, const char *b) {
        return (a == NULL) != (b == NULL) || (a && strcmp(a, b) != 0);
}

bool config_tokens_changed(const Config *a, const Config *b) {
        if (a->n_tokens != b->n_tokens)
                return true;
        for (size_t i = 0; i < a->n_tokens; i++) {
                const ConfigToken *x = &a->tokens[i], *y = &b->tokens[i];

                if (str_differ(x->name, y->name) || str_differ(x->module, y->module) ||
                    str_differ(x->token_uri, y->token_uri) || str_differ(x->pin_file, y->pin_file) ||
                    x->allow_unsafe_token != y->allow_unsafe_token)
                        return true;
        }
        return false;
}

static const ConfigKey *config_key_find(const char *section, const char *name) {
        for (size_t i = 0; i < config_n_keys; i++)
                if (strcmp(config_keys[i].section, section) == 0 && strcmp(config_keys[i].name, name) == 0)
                        return &config_keys[i];
        return NULL;
}

bool config_key_changed(const ConfigKey *k, const Config *a, const Config *b) {
        const char *pa = (const char *) a + k->offset, *pb = (const char *) b + k->offset;

        switch (k->type) {
        case CONFIG_STRING: {
                const char *sa = *(char *const *) pa, *sb = *(char *const *) pb;

                return sa && sb ? strcmp(sa, sb) != 0 : sa != sb;
        }
        case CONFIG_UNSIGNED:
                return *(const unsigned *) pa != *(const unsigned *) pb;
        case CONFIG_SIZE:
                return *(const size_t *) pa != *(const size_t *) pb;
        case CONFIG_MODE:
                return *(const mode_t *) pa != *(const mode_t *) pb;
        case CONFIG_BOOL:
                return *(const bool *) pa != *(const bool *) pb;
        case CONFIG_INT:
                return *(const int *) pa != *(const int *) pb;
        }
        return true; /* an unknown type is reported rather than missed */
}

/* Stands in for a value too long for inih's line buffer; the handler swaps in s->long_value. */
#define LONG_VALUE_MARK "\x1f"

/*
 * Splits an over-long "key = value" line: the value (inline "; comment" and
 * surrounding blanks removed, as inih does) goes to s->long_value, and the
 * returned length covers "key =" only. Returns 0 if the line is no such line.
 */
static size_t stash_long_value(ParseState *s, const char *l, size_t n) {
        const char *eq = memchr(l, '=', n), *v, *end = l + n;

        if (!eq)
                return 0;
        for (v = eq + 1; v < end && (*v == ' ' || *v == '\t'); v++)
                ;
        for (const char *p = v; p < end; p++)
                if (*p == ';' && p > v && (p[-1] == ' ' || p[-1] == '\t')) {
                        end = p;
                        break;
                }
        while (end > v && (end[-1] == ' ' || end[-1] == '\t'))
                end--;
        free(s->long_value);
        s->long_value = strndup(v, (size_t) (end - v));
        if (!s->long_value)
                return 0;
        return (size_t) (eq - l) + 1;
}

_printf_(2, 3) static int fail(ParseState *s, const char *fmt, ...);

/* Next whole line (any length) into *ret, without its newline; false at end of input. */
static bool next_line(ParseState *s, const char **ret, size_t *ret_len) {
        ssize_t n;

        if (s->file) {
                errno = 0;
                n = getline(&s->linebuf, &s->linebuf_size, s->file);
                if (n < 0) {
                        if (ferror(s->file))
                                s->read_errno = errno ?: EIO;
                        return false;
                }
                *ret = s->linebuf;
        } else {
                const char *nl;

                if (!s->text || !*s->text)
                        return false;
                nl = strchr(s->text, '\n');
                n = nl ? nl - s->text + 1 : (ssize_t) strlen(s->text);
                *ret = s->text;
                s->text += n;
        }
        while (n > 0 && ((*ret)[n - 1] == '\n' || (*ret)[n - 1] == '\r'))
                n--;
        *ret_len = (size_t) n;
        return true;
}

/*
 * A [hsm.NAME] header (from the reader, which sees every header, so an empty
 * section is a token too): a new further token. Each NAME once: inih would
 * merge a section given twice without a word. Returns whether it was taken
 * (else the error is recorded).
 */
static bool token_section(ParseState *s, const char *name, size_t len) {
        Config *c = s->config;
        char n[CONFIG_TOKEN_NAME_MAX + 1];
        ConfigToken *t;

        if (len == 0 || len > CONFIG_TOKEN_NAME_MAX || strspn(name, TOKEN_NAME_CHARS) < len) {
                fail(s, "[hsm.%.*s]: a token name is 1 to %u of a-z, 0-9, '_' and '-'", (int) MIN(len, 64u), name,
                     CONFIG_TOKEN_NAME_MAX);
                return true; /* said why: not "unknown section" too */
        }
        memcpy(n, name, len);
        n[len] = 0;
        for (size_t i = 0; i < c->n_tokens; i++)
                if (strcmp(c->tokens[i].name, n) == 0) {
                        fail(s, "[hsm.%s] is given twice", n);
                        return true;
                }
        if (c->n_tokens >= CONFIG_TOKENS_MAX) {
                fail(s, "[hsm.%s]: at most %u [hsm.NAME] sections", n, CONFIG_TOKENS_MAX);
                return true;
        }
        t = &c->tokens[c->n_tokens];
        t->name = strdup(n);
        if (!t->name) {
                fail(s, "out of memory");
                return true;
        }
        c->n_tokens++;
        return true;
}

/*
 * ini_parse_stream() reader: hands inih exactly one line per call and counts
 * it, so every error carries its true line. It also closes three gaps of the
 * inih build Debian ships: leading whitespace is stripped (inih would take an
 * indented line as the continuation of the previous value), a line longer
 * than inih's buffer is an error instead of being split in two, and an
 * unknown [section] is an error even when no key follows it.
 */
static char *reader(char *buf, int size, void *stream) {
        ParseState *s = stream;
        const char *l;
        size_t n;

        if (size < 3 || !next_line(s, &l, &n))
                return NULL;
        s->line++;
        while (n > 0 && (*l == ' ' || *l == '\t')) {
                l++;
                n--;
        }
        if (n > (size_t) size - 2 - strlen(LONG_VALUE_MARK)) {
                size_t k = 0;

                if (*l == ';' || *l == '#')
                        n = 0; /* a long comment: nothing for inih to see */
                else if ((k = stash_long_value(s, l, n)) > 0 && k < (size_t) size - 2 - strlen(LONG_VALUE_MARK)) {
                        memcpy(buf, l, k);
                        strcpy(buf + k, LONG_VALUE_MARK "\n");
                        return buf;
                } else {
                        fail(s, "line is too long and is not 'key = value'");
                        n = 0;
                }
        } else if (n > 0 && *l == '[') {
                const char *end = memchr(l, ']', n);
                bool known = false;

                for (size_t i = 0; end && i < ELEMENTSOF(sections); i++)
                        known = known || ((size_t) (end - l - 1) == strlen(sections[i]) &&
                                          strncmp(l + 1, sections[i], strlen(sections[i])) == 0);
                /* [hsm.NAME] is a token of its own, even with no key under it (finish() then says what is missing). */
                if (end && !known && end - l - 1 > 4 && strncmp(l + 1, "hsm.", 4) == 0)
                        known = token_section(s, l + 5, (size_t) (end - l - 5));
                if (end && !known)
                        fail(s, "unknown section [%.*s]", (int) (end - l - 1), l + 1);
        }
        memcpy(buf, l, n);
        buf[n] = '\n';
        buf[n + 1] = 0;
        return buf;
}

_printf_(2, 3) static int fail(ParseState *s, const char *fmt, ...) {
        va_list ap;

        if (!s->failed) {
                va_start(ap, fmt);
                vsnprintf(s->error, sizeof(s->error), fmt, ap);
                va_end(ap);
                s->failed = true;
                s->error_line = s->line;
        }
        return 0; /* inih: error on this line */
}

static int set_string(ParseState *s, char **field, const char *section, const char *name, const char *value) {
        char *c;

        if (!value[0])
                return fail(s, "empty value for '%s' in [%s]", name, section);
        c = strdup(value);
        if (!c)
                return fail(s, "out of memory");
        free(*field);
        *field = c;
        return 1;
}

static int parse_ulong(const char *v, unsigned long min, unsigned long max, int base, unsigned long *ret) {
        unsigned long u;
        char *end;

        if (!v[0] || v[0] == '-' || v[0] == '+')
                return -EINVAL;
        errno = 0;
        u = strtoul(v, &end, base);
        if (errno != 0 || *end != 0)
                return -EINVAL;
        if (u < min || u > max)
                return -ERANGE;
        *ret = u;
        return 0;
}

static int set_number(ParseState *s, const char *section, const char *name, const char *value, unsigned long min,
                      unsigned long max, int base, unsigned long *ret) {
        int r = parse_ulong(value, min, max, base, ret);

        if (r == -ERANGE && base == 8)
                return fail(s, "'%s' in [%s] must be between %04lo and %04lo, got '%s'", name, section, min, max, value);
        if (r == -ERANGE)
                return fail(s, "'%s' in [%s] must be between %lu and %lu, got '%s'", name, section, min, max, value);
        if (r < 0)
                return fail(s, "'%s' in [%s] must be a%s number, got '%s'", name, section,
                            base == 8 ? "n octal" : "", value);
        return 1;
}

static int parse_log_level(const char *v) {
        static const struct {
                const char *name;
                int level;
        } levels[] = {
                { "error", LOG_ERR }, { "warning", LOG_WARNING }, { "notice", LOG_NOTICE },
                { "info", LOG_INFO }, { "debug", LOG_DEBUG },
        };

        for (size_t i = 0; i < ELEMENTSOF(levels); i++)
                if (strcmp(v, levels[i].name) == 0)
                        return levels[i].level;
        return -EINVAL;
}

static bool token_name_valid(const char *n) {
        size_t l = strlen(n);

        if (l == 0 || l > CONFIG_TOKEN_NAME_MAX)
                return false;
        return strspn(n, TOKEN_NAME_CHARS) == l;
}

/* The [hsm] checks of a token URI, for [hsm] and [hsm.NAME] alike. */
static int check_token_uri(ParseState *s, const char *section, const char *value) {
        if (strncmp(value, "pkcs11:", 7) != 0)
                return fail(s, "'token' in [%s] must be a PKCS#11 URI starting with 'pkcs11:'", section);
        if (strstr(value, "pin-value="))
                return fail(s, "'token' in [%s] must not carry pin-value; use pin_file", section);
        return 1;
}

/* The token of the [hsm.NAME] section inih is in: the last one token_section() opened. */
static int token_handler(ParseState *s, const char *section, const char *name, const char *value) {
        Config *c = s->config;
        ConfigToken *t = c->n_tokens > 0 ? &c->tokens[c->n_tokens - 1] : NULL;

        if (!t || strcmp(t->name, section + 4) != 0)
                return fail(s, "unknown section [%s]", section); /* refused by token_section() already */
        if (strcmp(name, "module") == 0)
                return set_string(s, &t->module, section, name, value);
        if (strcmp(name, "token") == 0)
                return check_token_uri(s, section, value) ? set_string(s, &t->token_uri, section, name, value) : 0;
        if (strcmp(name, "pin_file") == 0) {
                if (value[0] != '/')
                        return fail(s, "'pin_file' in [%s] must be an absolute path", section);
                return set_string(s, &t->pin_file, section, name, value);
        }
        if (strcmp(name, "allow_unsafe_token") == 0) {
                if (strcmp(value, "yes") == 0 || strcmp(value, "true") == 0)
                        t->allow_unsafe_token = true;
                else if (strcmp(value, "no") == 0 || strcmp(value, "false") == 0)
                        t->allow_unsafe_token = false;
                else
                        return fail(s, "'allow_unsafe_token' in [%s] must be yes, no, true or false, got '%s'", section,
                                    value);
                return 1;
        }
        return fail(s, "unknown key '%s' in [%s]", name, section);
}

static int handler(void *user, const char *section, const char *name, const char *value) {
        ParseState *s = user;
        Config *c = s->config;
        unsigned long u;

        if (s->failed)
                return 1; /* report only the first error */
        if (!name)
                return 1; /* section header (only with INI_CALL_HANDLER_ON_NEW_SECTION builds) */
        if (strcmp(value, LONG_VALUE_MARK) == 0 && s->long_value)
                value = s->long_value;
        if (strncmp(section, "hsm.", 4) == 0)
                return token_handler(s, section, name, value);
        /* Only listed keys: each one's reload treatment is then known (conf.h). */
        if (!config_key_find(section, name)) {
                for (size_t i = 0; i < ELEMENTSOF(sections); i++)
                        if (strcmp(section, sections[i]) == 0)
                                return fail(s, "unknown key '%s' in [%s]", name, section);
                return fail(s, "unknown section [%s]", section);
        }

        if (strcmp(section, "hsm") == 0) {
                if (strcmp(name, "module") == 0)
                        return set_string(s, &c->module, section, name, value);
                if (strcmp(name, "token") == 0)
                        return check_token_uri(s, section, value) ? set_string(s, &c->token_uri, section, name, value) : 0;
                if (strcmp(name, "name") == 0) {
                        if (!token_name_valid(value))
                                return fail(s, "'name' in [hsm] is 1 to %u of a-z, 0-9, '_' and '-', got '%s'",
                                            CONFIG_TOKEN_NAME_MAX, value);
                        return set_string(s, &c->token_name, section, name, value);
                }
                if (strcmp(name, "probe_interval") == 0) {
                        if (!set_number(s, section, name, value, 1, 3600, 10, &u))
                                return 0;
                        c->probe_interval = (unsigned) u;
                        return 1;
                }
                if (strcmp(name, "pin_file") == 0) {
                        if (value[0] != '/')
                                return fail(s, "'pin_file' in [hsm] must be an absolute path");
                        return set_string(s, &c->pin_file, section, name, value);
                }
                if (strcmp(name, "sessions") == 0) {
                        if (!set_number(s, section, name, value, 1, 64, 10, &u))
                                return 0;
                        c->sessions = (unsigned) u;
                        return 1;
                }
                if (strcmp(name, "allow_unsafe_token") == 0) {
                        if (strcmp(value, "yes") == 0 || strcmp(value, "true") == 0)
                                c->allow_unsafe_token = true;
                        else if (strcmp(value, "no") == 0 || strcmp(value, "false") == 0)
                                c->allow_unsafe_token = false;
                        else
                                return fail(s, "'allow_unsafe_token' in [hsm] must be yes, no, true or false, got '%s'",
                                            value);
                        return 1;
                }
                if (strcmp(name, "profile") == 0) {
                        HsmProfile p;

                        if (strcmp(value, "auto") == 0) {
                                c->profile = -1;
                                return 1;
                        }
                        if (hsm_profile_from_name(value, &p) < 0)
                                return fail(s, "'profile' in [hsm] must be auto, gcm, cbc-hmac, ctr-hmac or gcm-token-iv, "
                                            "got '%s'", value);
                        c->profile = (int) p;
                        return 1;
                }
        } else if (strcmp(section, "server") == 0) {
                if (strcmp(name, "socket") == 0) {
                        if (value[0] != '/')
                                return fail(s, "'socket' in [server] must be an absolute path");
                        if (strlen(value) >= 108)
                                return fail(s, "'socket' in [server] is longer than a Unix socket path may be");
                        return set_string(s, &c->socket_path, section, name, value);
                }
                if (strcmp(name, "socket_mode") == 0) {
                        if (!set_number(s, section, name, value, 0, 0777, 8, &u))
                                return 0;
                        if (u & 0007)
                                return fail(s, "'socket_mode' in [server] must not grant access to others (got %04lo)", u);
                        c->socket_mode = (mode_t) u;
                        return 1;
                }
                if (strcmp(name, "socket_group") == 0)
                        return set_string(s, &c->socket_group, section, name, value);
                if (strcmp(name, "max_frame") == 0) {
                        /* at least one maximal Unwrap response (1024-byte AEK) or blob request fits */
                        if (!set_number(s, section, name, value, 4096, FRAME_MAX_LIMIT, 10, &u))
                                return 0;
                        c->max_frame = u;
                        return 1;
                }
                if (strcmp(name, "max_queued_output") == 0) {
                        /* at least 4 x max_frame, checked once every key is known (finish()) */
                        if (!set_number(s, section, name, value, 4 * 4096, QUEUED_OUTPUT_LIMIT, 10, &u))
                                return 0;
                        c->max_queued_output = u;
                        return 1;
                }
                if (strcmp(name, "idle_timeout") == 0) {
                        if (!set_number(s, section, name, value, 1, 86400, 10, &u))
                                return 0;
                        c->idle_timeout = (unsigned) u;
                        return 1;
                }
                if (strcmp(name, "max_connections") == 0) {
                        if (!set_number(s, section, name, value, 1, 65536, 10, &u))
                                return 0;
                        c->max_connections = (unsigned) u;
                        return 1;
                }
                if (strcmp(name, "max_connections_per_uid") == 0) {
                        if (!set_number(s, section, name, value, 1, 65536, 10, &u))
                                return 0;
                        c->max_connections_per_uid = (unsigned) u;
                        return 1;
                }
        } else if (strcmp(section, "keys") == 0) {
                if (strcmp(name, "refresh_interval") == 0) {
                        if (!set_number(s, section, name, value, 1, 3600, 10, &u))
                                return 0;
                        c->refresh_interval = (unsigned) u;
                        return 1;
                }
                if (strcmp(name, "allow_unrecoverable") == 0) {
                        if (strcmp(value, "yes") == 0 || strcmp(value, "true") == 0)
                                c->allow_unrecoverable = true;
                        else if (strcmp(value, "no") == 0 || strcmp(value, "false") == 0)
                                c->allow_unrecoverable = false;
                        else
                                return fail(s, "'allow_unrecoverable' in [keys] must be yes, no, true or false, got '%s'", value);
                        return 1;
                }
        } else if (strcmp(section, "access") == 0) {
                if (strcmp(name, "admin_group") == 0)
                        return set_string(s, &c->admin_group, section, name, value);
                if (strcmp(name, "officer_group") == 0)
                        return set_string(s, &c->officer_group, section, name, value);
        } else if (strcmp(section, "metrics") == 0) {
                if (strcmp(name, "file") == 0) {
                        if (value[0] != '/')
                                return fail(s, "'file' in [metrics] must be an absolute path, got '%s'", value);
                        return set_string(s, &c->metrics_file, section, name, value);
                }
                if (strcmp(name, "interval") == 0) {
                        if (!set_number(s, section, name, value, 1, 3600, 10, &u))
                                return 0;
                        c->metrics_interval = (unsigned) u;
                        return 1;
                }
        } else if (strcmp(section, "log") == 0) {
                if (strcmp(name, "level") == 0) {
                        int l = parse_log_level(value);

                        if (l < 0)
                                return fail(s, "'level' in [log] must be error, warning, notice, info or debug, got '%s'", value);
                        c->log_level = l;
                        return 1;
                }
                if (strcmp(name, "audit_interval") == 0) {
                        if (!set_number(s, section, name, value, 1, 3600, 10, &u))
                                return 0;
                        c->audit_interval = (unsigned) u;
                        return 1;
                }
        } else if (strcmp(section, "backup") == 0) {
                /* docs/backup.md: kekd writes and reads backup files only there; a path, not a guess. */
                if (strcmp(name, "directory") == 0) {
                        if (value[0] != '/')
                                return fail(s, "'directory' in [backup] must be an absolute path");
                        return set_string(s, &c->backup_directory, section, name, value);
                }
                if (strcmp(name, "wrapping_key") == 0 || strcmp(name, "unwrapping_key") == 0) {
                        if (strlen(value) == 0 || strlen(value) > 64)
                                return fail(s, "'%s' in [backup] must be a key label of 1 to 64 bytes", name);
                        return set_string(s, name[0] == 'w' ? &c->backup_wrapping_key : &c->backup_unwrapping_key,
                                          section, name, value);
                }
        } else
                return fail(s, "unknown section [%s]", section);

        return fail(s, "unknown key '%s' in [%s]", name, section);
}

/* asprintf() that leaves NULL on failure: the caller then reports a generic error. */
_printf_(2, 3) static void xasprintf(char **ret, const char *fmt, ...) {
        va_list ap;

        va_start(ap, fmt);
        if (vasprintf(ret, fmt, ap) < 0)
                *ret = NULL;
        va_end(ap);
}

static Config *config_new(void) {
        Config *c = calloc(1, sizeof(*c));

        if (!c)
                return NULL;
        c->socket_mode = 0660;
        c->max_frame = FRAME_MAX_DEFAULT;
        c->max_connections = 1024;
        c->max_connections_per_uid = 256;
        c->sessions = 1;
        c->audit_interval = 60;
        c->metrics_interval = 15;
        c->idle_timeout = 300;
        c->refresh_interval = 5;
        c->profile = -1;
        c->probe_interval = 5;
        c->log_level = LOG_INFO;
        c->socket_path = strdup("/run/kekd/kekd.sock");
        if (!c->socket_path)
                return config_free(c);
        return c;
}

Config *config_free(Config *c) {
        if (!c)
                return NULL;
        free(c->module);
        free(c->token_uri);
        free(c->pin_file);
        free(c->token_name);
        for (size_t i = 0; i < c->n_tokens; i++) {
                free(c->tokens[i].name);
                free(c->tokens[i].module);
                free(c->tokens[i].token_uri);
                free(c->tokens[i].pin_file);
        }
        free(c->socket_path);
        free(c->socket_group);
        free(c->admin_group);
        free(c->officer_group);
        free(c->metrics_file);
        free(c->backup_directory);
        free(c->backup_wrapping_key);
        free(c->backup_unwrapping_key);
        free(c);
        return NULL;
}

static int finish(ParseState *s, int line, const char *name, Config **ret, char **ret_error) {
        _cleanup_(config_freep) Config *c = s->config;
        const char *missing = NULL, *missing_section = NULL, *duplicate = NULL;
        int r;

        s->config = NULL;
        free(s->linebuf);
        s->linebuf = NULL;
        free(s->long_value);
        s->long_value = NULL;
        if (line == -2)
                r = -ENOMEM;
        else if (s->read_errno)
                r = -s->read_errno;
        else
                r = line > 0 || s->failed ? -EINVAL : 0;

        if (r == 0) {
                if (!c->module)
                        missing = "module";
                else if (!c->token_uri)
                        missing = "token";
                else if (!c->pin_file)
                        missing = "pin_file";
                if (missing)
                        r = -EINVAL;
        }
        if (r == 0 && !c->token_name) {
                c->token_name = strdup("primary");
                if (!c->token_name)
                        r = -ENOMEM;
        }
        for (size_t i = 0; r == 0 && i < c->n_tokens; i++) {
                const ConfigToken *t = &c->tokens[i];

                if (!t->module || !t->token_uri) {
                        missing = !t->module ? "module" : "token";
                        missing_section = t->name;
                        r = -EINVAL;
                } else if (strcmp(t->name, c->token_name) == 0) {
                        duplicate = t->name;
                        r = -EINVAL;
                }
        }
        /* Room for a few maximal replies, so a peer that reads is never dropped for one. */
        if (r == 0 && c->max_queued_output == 0)
                c->max_queued_output = MAX(QUEUED_OUTPUT_DEFAULT, 4 * c->max_frame);
        else if (r == 0 && c->max_queued_output < 4 * c->max_frame)
                r = -EINVAL;
        if (r < 0) {
                if (ret_error) {
                        char *m = NULL;

                        /* The first bad line wins: one we flagged, or a syntax error inih found itself. */
                        if (s->read_errno)
                                xasprintf(&m, "%s: cannot read: %s", name, strerror(s->read_errno));
                        else if (s->failed && (line <= 0 || s->error_line <= line))
                                xasprintf(&m, "%s:%d: %s", name, s->error_line, s->error);
                        else if (line > 0)
                                xasprintf(&m, "%s:%d: syntax error: expected '[section]' or 'key = value'", name, line);
                        else if (missing && missing_section)
                                xasprintf(&m, "%s: missing required '%s' in [hsm.%s]", name, missing, missing_section);
                        else if (missing)
                                xasprintf(&m, "%s: missing required '%s' in [hsm]", name, missing);
                        else if (duplicate)
                                xasprintf(&m, "%s: [hsm.%s] has the name of the [hsm] token; token names must differ",
                                          name, duplicate);
                        else if (r == -EINVAL && c->max_queued_output < 4 * c->max_frame)
                                xasprintf(&m, "%s: 'max_queued_output' in [server] must be at least 4 x max_frame (%zu), got %zu",
                                          name, 4 * c->max_frame, c->max_queued_output);
                        else
                                xasprintf(&m, "%s: cannot read: %s", name, strerror(-r));
                        *ret_error = m;
                }
                return r;
        }
        *ret = TAKE_PTR(c);
        return 0;
}

int config_load(const char *path, Config **ret, char **ret_error) {
        ParseState s = { .config = config_new() };
        FILE *f;
        int line;

        if (!s.config)
                return -ENOMEM;
        f = fopen(path, "re");
        if (!f) {
                int r = -errno;

                config_free(s.config);
                if (ret_error)
                        xasprintf(ret_error, "%s: cannot open: %s", path, strerror(-r));
                return r;
        }
        s.file = f;
        line = ini_parse_stream(reader, &s, handler, &s);
        fclose(f);
        return finish(&s, line, path, ret, ret_error);
}

int config_load_string(const char *text, const char *name, Config **ret, char **ret_error) {
        ParseState s = { .config = config_new() };

        if (!s.config)
                return -ENOMEM;
        s.text = text;
        return finish(&s, ini_parse_stream(reader, &s, handler, &s), name, ret, ret_error);
}
