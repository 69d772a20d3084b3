/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Daemon logging. Under systemd (JOURNAL_STREAM names our stderr) records go to
 * the journal through sd_journal_send with structured fields; otherwise one
 * line per record on stderr. Callers pass extra journal fields as a
 * NULL-terminated list of "FIELD=value" strings. Never pass secret material:
 * AEKs, PINs and blobs' plaintext have no place in a log record.
 *
 * The macros pass the caller's __FILE__, __LINE__ and __func__, which become
 * CODE_FILE=, CODE_LINE= and CODE_FUNC=: the journal would otherwise record
 * log.c itself. A record with an error carries the reason in MESSAGE= as well
 * as in KEK_ERROR= (and ERRNO= for a system error), since "systemctl status"
 * shows only MESSAGE=.
 */
#pragma once

#include <stdarg.h>
#include <stdbool.h>
#include <syslog.h>

#include "common/macro.h"

/* Or'ed into a level: the record is written whatever the configured level (audit records). */
#define LOG_FORCE 0x100

void log_setup(int max_level);
int log_get_max_level(void);

/* Logs and returns error (negative) so callers can "return log_error_errno(r, ...)". Use the macros. */
int log_internalv(int level, int error, const char *file, int line, const char *func, const char *const *fields,
                  const char *fmt, va_list ap);
_printf_(7, 8) int log_internal(int level, int error, const char *file, int line, const char *func,
                                const char *const *fields, const char *fmt, ...);

#define log_full(level, error, fields, ...) \
        log_internal((level), (error), __FILE__, __LINE__, __func__, (fields), __VA_ARGS__)

#define log_debug(...) log_full(LOG_DEBUG, 0, NULL, __VA_ARGS__)
#define log_info(...) log_full(LOG_INFO, 0, NULL, __VA_ARGS__)
#define log_notice(...) log_full(LOG_NOTICE, 0, NULL, __VA_ARGS__)
#define log_warning(...) log_full(LOG_WARNING, 0, NULL, __VA_ARGS__)
#define log_error(...) log_full(LOG_ERR, 0, NULL, __VA_ARGS__)
#define log_error_errno(e, ...) log_full(LOG_ERR, (e), NULL, __VA_ARGS__)
#define log_warning_errno(e, ...) log_full(LOG_WARNING, (e), NULL, __VA_ARGS__)

/* Human text for a negative return value: domain name ("UNKNOWN_KEY") or strerror. */
const char *error_text(int r);
