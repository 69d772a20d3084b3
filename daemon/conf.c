/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * kekd.conf parsing (see conf.h). inih reports the line of the first failing
 * handler call; the handler records what was wrong with that first failure, so
 * the message names file, line, section, key and the reason together.
 */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <syslog.h>

#include <ini.h>

#include "daemon/conf.h"
#include "proto/frame.h"

typedef struct ParseState {
        Config *config;
        FILE *file;         /* input: a file, or */
        const char *text;   /* a string, consumed as lines are read */
        int line;           /* line inih is on: counted by our reader */
        int error_line;     /* line of the first handler failure */
        char error[256];    /* first error, without "file:line: " */
        bool failed;
} ParseState;

/* ini_parse_stream() reader: hands inih one line and counts it, so errors carry exact lines. */
static char *reader(char *buf, int size, void *stream) {
        ParseState *s = stream;
        size_t n;

        if (s->file) {
                if (!fgets(buf, size, s->file))
                        return NULL;
        } else {
                const char *nl;

                if (!s->text || !*s->text || size < 2)
                        return NULL;
                nl = strchr(s->text, '\n');
                n = nl ? (size_t) (nl - s->text) + 1 : strlen(s->text);
                n = MIN(n, (size_t) size - 1);
                memcpy(buf, s->text, n);
                buf[n] = 0;
                s->text += n;
        }
        n = strlen(buf);
        if (n > 0 && buf[n - 1] == '\n')
                s->line++;
        else if (s->file ? feof(s->file) : !*s->text)
                s->line++; /* last line without newline */
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

static int handler(void *user, const char *section, const char *name, const char *value) {
        ParseState *s = user;
        Config *c = s->config;
        unsigned long u;

        if (s->failed)
                return 1; /* report only the first error; inih keeps its line */
        if (!name)
                return 1; /* section header without keys (inih INI_CALL_HANDLER_ON_NEW_SECTION) */

        if (strcmp(section, "hsm") == 0) {
                if (strcmp(name, "module") == 0)
                        return set_string(s, &c->module, section, name, value);
                if (strcmp(name, "token") == 0) {
                        if (strncmp(value, "pkcs11:", 7) != 0)
                                return fail(s, "'token' in [hsm] must be a PKCS#11 URI starting with 'pkcs11:'");
                        if (strstr(value, "pin-value="))
                                return fail(s, "'token' in [hsm] must not carry pin-value; use pin_file");
                        return set_string(s, &c->token_uri, section, name, value);
                }
                if (strcmp(name, "pin_file") == 0) {
                        if (value[0] != '/')
                                return fail(s, "'pin_file' in [hsm] must be an absolute path");
                        return set_string(s, &c->pin_file, section, name, value);
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
                        if (!set_number(s, section, name, value, 1024, FRAME_MAX_LIMIT, 10, &u))
                                return 0;
                        c->max_frame = u;
                        return 1;
                }
                if (strcmp(name, "max_connections") == 0) {
                        if (!set_number(s, section, name, value, 1, 65536, 10, &u))
                                return 0;
                        c->max_connections = (unsigned) u;
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
        free(c->socket_path);
        free(c->socket_group);
        free(c);
        return NULL;
}

static int finish(ParseState *s, int line, const char *name, Config **ret, char **ret_error) {
        _cleanup_(config_freep) Config *c = s->config;
        const char *missing = NULL;
        int r;

        s->config = NULL;
        if (line == -1)
                r = -errno ?: -ENOENT;
        else if (line == -2)
                r = -ENOMEM;
        else
                r = line > 0 ? -EINVAL : 0;

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
        if (r < 0) {
                if (ret_error) {
                        char *m = NULL;

                        /* inih returns the first bad line, ours or a syntax error it found itself. */
                        if (line > 0 && s->failed && s->error_line == line)
                                xasprintf(&m, "%s:%d: %s", name, line, s->error);
                        else if (line > 0)
                                xasprintf(&m, "%s:%d: syntax error: expected '[section]' or 'key = value'", name, line);
                        else if (missing)
                                xasprintf(&m, "%s: missing required '%s' in [hsm]", name, missing);
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
