/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The refresh rounds (see refresh.h): a small state machine on the event
 * loop. The reading (keystore_read_*()) runs on the task's thread and touches
 * only rf->read until on_refresh_read() is back on the loop; everything else
 * runs on the loop.
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>

#include "daemon/clock.h"
#include "daemon/log.h"
#include "daemon/refresh.h"

struct Refresh {
        Keystore *keystore;
        HsmTask *task;             /* reads the token on a session and thread of its own; NULL: none */
        KeystoreRead *read;        /* the reading in progress: the task's thread owns it until it is done */
        sd_event_source *source;
        uint64_t interval_usec;
        uint64_t due_usec;
        unsigned retries;          /* readings taken again this round (raced our writes) */
        unsigned read_failures;    /* background readings failed in a row */
        unsigned busy_rounds;      /* intervals a background reading has been under way */
        bool stopped;
        RefreshReportFn report;
        void *userdata;
};

#define REFRESH_READ_RETRIES 2
#define REFRESH_READ_FAILURES_MAX 3
#define REFRESH_STUCK_ROUNDS 3

static void refresh_finish(Refresh *rf) {
        int r = keystore_maintain(rf->keystore, clock_now_usec());

        if (r < 0)
                log_warning_errno(r, "Periodic refresh of the keys failed; serving the last known state");
        rf->report(r < 0, rf->userdata);
        if (!rf->stopped)
                clock_reschedule(rf->source, rf->due_usec, rf->interval_usec);
}

/* On the task's thread: rf->read is not touched by the loop until on_refresh_read(). */
static int refresh_read(Hsm *h, void *userdata) {
        Refresh *rf = userdata;

        return keystore_read_token(rf->read, h);
}

static void on_refresh_read(int r, void *userdata);

static int refresh_read_start(Refresh *rf) {
        int r;

        if (!rf->task || hsm_task_busy(rf->task))
                return -EBUSY;
        r = keystore_read_new(rf->keystore, &rf->read);
        if (r >= 0)
                r = hsm_task_start(rf->task, refresh_read, on_refresh_read, rf);
        if (r < 0) {
                rf->read = keystore_read_free(rf->read);
                log_warning_errno(r, "Cannot start the background reading of the token; reading it on the serving thread");
        }
        return r;
}

static void on_refresh_read(int r, void *userdata) {
        Refresh *rf = userdata;

        rf->busy_rounds = 0;
        if (r >= 0)
                r = keystore_read_apply(rf->keystore, rf->read);
        rf->read = keystore_read_free(rf->read);
        if (rf->stopped)
                return;
        /*
         * Read again after a race with a write of ours (-ESTALE), or when a request had the
         * index read on the loop meanwhile (0): it is no longer fresh enough for repair.
         */
        if ((r == -ESTALE || r == 0) && rf->retries++ < REFRESH_READ_RETRIES && refresh_read_start(rf) >= 0)
                return;
        if (r < 0 && r != -ESTALE) {
                if (rf->read_failures++ == 0)
                        log_warning_errno(r, "The background reading of the token failed; serving the last known "
                                             "state, trying again in %u s", (unsigned) (rf->interval_usec / USEC_PER_SEC));
                if (rf->read_failures < REFRESH_READ_FAILURES_MAX) {
                        rf->report(true, rf->userdata);
                        clock_reschedule(rf->source, rf->due_usec, rf->interval_usec);
                        return;
                }
        } else if (r >= 0 && rf->read_failures > 0) {
                log_notice("The background reading of the token works again");
                rf->read_failures = 0;
        }
        /* keystore_maintain() reads the token itself if the index is old, and reports. */
        refresh_finish(rf);
}

static int on_refresh(sd_event_source *s, uint64_t usec, void *userdata) {
        Refresh *rf = userdata;

        rf->due_usec = usec;
        if (hsm_task_busy(rf->task)) {
                if (++rf->busy_rounds == REFRESH_STUCK_ROUNDS)
                        log_warning("The background reading of the token has not returned for %u refresh intervals; "
                                    "reading it on the serving thread",
                                    REFRESH_STUCK_ROUNDS);
                if (rf->busy_rounds >= REFRESH_STUCK_ROUNDS)
                        refresh_finish(rf);
                else
                        clock_reschedule(s, usec, rf->interval_usec);
                return 0;
        }
        rf->retries = 0;
        if (refresh_read_start(rf) >= 0)
                return 0; /* on_refresh_read() goes on */
        refresh_finish(rf);
        return 0;
}


int refresh_new(sd_event *e, Keystore *ks, HsmTask *task, uint64_t interval_usec, RefreshReportFn report,
                void *userdata, Refresh **ret) {
        Refresh *rf = calloc(1, sizeof(*rf));
        int r;

        if (!rf) {
                hsm_task_free(task);
                return -ENOMEM;
        }
        *rf = (Refresh) { .keystore = ks, .task = task, .interval_usec = interval_usec, .report = report, .userdata = userdata };
        r = sd_event_add_time_relative(e, &rf->source, CLOCK_MONOTONIC, interval_usec, 0, on_refresh, rf);
        if (r < 0)
                return refresh_free(rf), r;
        *ret = rf;
        return 0;
}

Refresh *refresh_free(Refresh *rf) {
        if (!rf)
                return NULL;
        rf->source = sd_event_source_disable_unref(rf->source);
        rf->task = hsm_task_free(rf->task);
        rf->read = keystore_read_free(rf->read);
        free(rf);
        return NULL;
}

void refresh_set_interval(Refresh *rf, uint64_t interval_usec) {
        rf->interval_usec = interval_usec;
        if (!rf->stopped)
                clock_reschedule(rf->source, clock_mono_usec(), interval_usec);
}

void refresh_stop(Refresh *rf) {
        rf->stopped = true;
        (void) sd_event_source_set_enabled(rf->source, SD_EVENT_OFF);
}

const HsmTask *refresh_task(const Refresh *rf) {
        return rf ? rf->task : NULL;
}
