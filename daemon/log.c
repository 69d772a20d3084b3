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

int log_fullv(int level, int error, const char *const *fields, const char *fmt, va_list ap) {
        char msg[1024];

        if (!(level & LOG_FORCE) && level > max_level)
                return error;
        level &= ~LOG_FORCE;
        (void) vsnprintf(msg, sizeof(msg), fmt, ap);

        if (use_journal) {
                struct iovec iov[32];
                char m[sizeof(msg) + 16], prio[32], err[64];
                size_t n = 0;

                snprintf(m, sizeof(m), "MESSAGE=%s", msg);
                snprintf(prio, sizeof(prio), "PRIORITY=%d", level);
                iov[n++] = (struct iovec) { m, strlen(m) };
                iov[n++] = (struct iovec) { prio, strlen(prio) };
                if (error != 0) {
                        snprintf(err, sizeof(err), "KEK_ERROR=%s", error_text(error));
                        iov[n++] = (struct iovec) { err, strlen(err) };
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

int log_full(int level, int error, const char *const *fields, const char *fmt, ...) {
        va_list ap;
        int r;

        va_start(ap, fmt);
        r = log_fullv(level, error, fields, fmt, ap);
        va_end(ap);
        return r;
}
