/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Background HSM jobs (see hsmtask.h). A thread per job: jobs come every
 * refresh interval, seconds apart, so a thread's start-up is noise next to
 * the job, and no thread idles between them. The thread blocks every signal
 * (the loop's signalfd gets them) and ends by writing the eventfd; the loop
 * joins it there, so "busy" and the result are only ever read on the loop
 * after the thread is gone.
 */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "daemon/hsmtask.h"

struct HsmTask {
        Hsm *hsm;                    /* the task's session, detached, opened with the task */
        int efd;
        sd_event_source *source;
        pthread_t thread;
        bool busy;
        HsmTaskFn fn;
        HsmTaskDoneFn done;
        void *userdata;
        int result;                  /* written by the thread before the eventfd, read after the join */
        HsmStats stats;              /* the session's counters as of the last join: for metrics meanwhile */
};

static void *task_main(void *p) {
        HsmTask *t = p;
        uint64_t one = 1;

        t->result = t->fn(t->hsm, t->userdata);
        /* Cannot fail short of a full counter; the loop would then wait for a job that ended. */
        (void) !write(t->efd, &one, sizeof(one));
        return NULL;
}

static int on_done(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        HsmTask *t = userdata;
        uint64_t n;

        if (read(fd, &n, sizeof(n)) != sizeof(n) || !t->busy)
                return 0;
        (void) pthread_join(t->thread, NULL);
        t->busy = false;
        hsm_stats(t->hsm, &t->stats);
        t->done(t->result, t->userdata);
        return 0;
}

int hsm_task_new(sd_event *e, Hsm *parent, HsmTask **ret) {
        HsmTask *t = calloc(1, sizeof(*t));
        int r;

        if (!t)
                return -ENOMEM;
        t->efd = -EBADF;
        /*
         * Opened now, while the parent's login holds, and kept: a later loss reopens with
         * the session's own backoff and never retries a refused PIN (pkcs11/hsm.c).
         */
        r = hsm_open_session(parent, &t->hsm, NULL);
        if (r < 0)
                goto fail;
        hsm_set_detached(t->hsm);
        hsm_stats(t->hsm, &t->stats);
        t->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (t->efd < 0) {
                r = -errno;
                goto fail;
        }
        r = sd_event_add_io(e, &t->source, t->efd, EPOLLIN, on_done, t);
        if (r < 0)
                goto fail;
        *ret = t;
        return 0;
fail:
        hsm_task_free(t);
        return r;
}

HsmTask *hsm_task_free(HsmTask *t) {
        if (!t)
                return NULL;
        if (t->busy)
                (void) pthread_join(t->thread, NULL);
        t->source = sd_event_source_disable_unref(t->source);
        if (t->efd >= 0)
                close(t->efd);
        hsm_free(t->hsm);
        free(t);
        return NULL;
}

int hsm_task_start(HsmTask *t, HsmTaskFn fn, HsmTaskDoneFn done, void *userdata) {
        sigset_t all, saved;
        int r;

        if (t->busy)
                return -EBUSY;
        t->fn = fn;
        t->done = done;
        t->userdata = userdata;
        t->result = 0;
        sigfillset(&all);
        pthread_sigmask(SIG_BLOCK, &all, &saved);
        r = -pthread_create(&t->thread, NULL, task_main, t);
        pthread_sigmask(SIG_SETMASK, &saved, NULL);
        if (r < 0)
                return r;
        t->busy = true;
        return 0;
}

bool hsm_task_busy(const HsmTask *t) {
        return t && t->busy;
}

void hsm_task_stats(const HsmTask *t, HsmStats *acc) {
        bool open = acc->session_open;

        if (!t)
                return;
        hsm_stats_add(&t->stats, acc);
        acc->session_open = open; /* serving does not depend on it: a lost one reopens at the next job */
}
