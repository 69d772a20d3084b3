/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The keystore's refresh policy: when and how kekd re-reads the token.
 * Every refresh interval: re-read the token (changes made through other
 * kekd instances), repair interrupted operations, purge, rotate by policy and
 * record usage. The interval is the bound on how late another node's
 * disable or delete is honoured here.
 *
 * The reading runs on the refresh task's thread and session while the loop
 * serves (with 10,000 key objects on SoftHSM2 it took 0.7-1 s of every 5 s
 * refresh, in which every client waited); the loop then makes it the index
 * and does the rest, which writes only when something is due. The loop reads
 * the token itself only as a fallback: after a reading raced writes of ours
 * three times, after three readings failed in a row (the loop's sessions may
 * be fine while the task's is away), or when one has not returned for three
 * intervals (a hung call: the loop then hangs too, and the watchdog sees it).
 *
 * After each round, report() is told whether it failed (for STATUS=).
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include <systemd/sd-event.h>

#include "common/macro.h"
#include "daemon/hsmtask.h"
#include "daemon/keystore.h"

typedef struct Refresh Refresh;
typedef void (*RefreshReportFn)(bool failed, void *userdata);

/*
 * Starts the refresh timer on e: every interval_usec, a round on ks. task
 * (NULL: none could be opened, the loop reads the token itself) is the
 * refresh's own session and thread; the Refresh owns it from now on.
 */
int refresh_new(sd_event *e, Keystore *ks, HsmTask *task, uint64_t interval_usec, RefreshReportFn report,
                void *userdata, Refresh **ret);
/* Waits for a reading under way (its thread uses the keystore's HSM), then frees. */
Refresh *refresh_free(Refresh *rf);
DEFINE_TRIVIAL_CLEANUP_FUNC(Refresh, refresh_free);

/* A new interval (reload), from now. */
void refresh_set_interval(Refresh *rf, uint64_t interval_usec);
/* No more rounds (drain for shutdown); a reading under way is let finish and ignored. */
void refresh_stop(Refresh *rf);
/* The task, for its session's counters in the metrics. */
const HsmTask *refresh_task(const Refresh *rf);
