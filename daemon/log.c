/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Journal-or-stderr logging for kekd (see log.h). The decision is made once in
 * log_setup(): the journal is used only when stderr really is the journal
 * stream systemd gave us, so interactive and test runs read plain lines.
 */
#include "config.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>

/* We send CODE_FILE= and friends of our caller: sd_journal_sendv() must not add log.c's. */
#define SD_JOURNAL_SUPPRESS_LOCATION
#include <systemd/sd-journal.h>

#include "common/kekerr.h"
#include "log.h"

static int max_level = LOG_INFO;
static bool use_journal;

static bool stderr_is_journal(void) {
        const char *e = getenv("JOURNAL_STREAM");
        unsigned long long dev, ino;
        struct stat st;

        if (!e || sscanf(e, "%llu:%llu", &dev, &ino) != 2)
                return false;
        if (fstat(STDERR_FILENO, &st) < 0)
                return false;
        return (unsigned long long) st.st_dev == dev && (unsigned long long) st.st_ino == ino;
}

void log_setup(int level) {
        max_level = level;
        use_journal = stderr_is_journal();
}

int log_get_max_level(void) {
        return max_level;
}

const char *error_text(int r) {
        const char *n = kekerr_name(r);

        if (n)
                return n;
        return strerror(r < 0 ? -r : r);
}

int log_internalv(int level, int error, const char *file, int line, const char *func, const char *const *fields,
                  const char *fmt, va_list ap) {
        char msg[1024];

        if (!(level & LOG_FORCE) && level > max_level)
                return error;
        level &= ~LOG_FORCE;
        (void) vsnprintf(msg, sizeof(msg), fmt, ap);

        if (use_journal) {
                struct iovec iov[32];
                char m[sizeof(msg) + 96], prio[32], err[64], errnum[32], cfile[256], cline[32], cfunc[128];
                size_t n = 0;

                /* The reason goes into MESSAGE= too: "systemctl status" and plain journalctl show nothing else. */
                if (error != 0)
                        snprintf(m, sizeof(m), "MESSAGE=%s: %s", msg, error_text(error));
                else
                        snprintf(m, sizeof(m), "MESSAGE=%s", msg);
                snprintf(prio, sizeof(prio), "PRIORITY=%d", level);
                snprintf(cfile, sizeof(cfile), "CODE_FILE=%s", file ? file : "");
                snprintf(cline, sizeof(cline), "CODE_LINE=%d", line);
                snprintf(cfunc, sizeof(cfunc), "CODE_FUNC=%s", func ? func : "");
                iov[n++] = (struct iovec) { m, strlen(m) };
                iov[n++] = (struct iovec) { prio, strlen(prio) };
                iov[n++] = (struct iovec) { cfile, strlen(cfile) };
                iov[n++] = (struct iovec) { cline, strlen(cline) };
                iov[n++] = (struct iovec) { cfunc, strlen(cfunc) };
                if (error != 0) {
                        snprintf(err, sizeof(err), "KEK_ERROR=%s", error_text(error));
                        iov[n++] = (struct iovec) { err, strlen(err) };
                        /* A system error also gets the journal's standard field; domain errors have none. */
                        if (!kekerr_name(error)) {
                                snprintf(errnum, sizeof(errnum), "ERRNO=%d", error < 0 ? -error : error);
                                iov[n++] = (struct iovec) { errnum, strlen(errnum) };
                        }
                }
                for (size_t i = 0; fields && fields[i] && n < ELEMENTSOF(iov); i++)
                        iov[n++] = (struct iovec) { (void *) fields[i], strlen(fields[i]) };
                (void) sd_journal_sendv(iov, (int) n);
        } else {
                static const char *const lv[] = { "emerg", "alert", "crit", "error", "warning", "notice", "info", "debug" };

                fprintf(stderr, "kekd[%s]: %s", lv[level & 7], msg);
                if (error != 0)
                        fprintf(stderr, ": %s", error_text(error));
                for (size_t i = 0; fields && fields[i]; i++)
                        fprintf(stderr, " %s", fields[i]);
                fputc('\n', stderr);
        }
        return error;
}

int log_internal(int level, int error, const char *file, int line, const char *func, const char *const *fields,
                 const char *fmt, ...) {
        va_list ap;
        int r;

        va_start(ap, fmt);
        r = log_internalv(level, error, file, line, func, fields, fmt, ap);
        va_end(ap);
        return r;
}
