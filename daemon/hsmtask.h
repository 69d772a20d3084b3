/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * One background job at a time on an HSM session of its own, for work that
 * must not hold up the event loop: the periodic reading of the token, which
 * takes 0.7 s with 10,000 key objects on SoftHSM2 and a round trip per
 * object on a network HSM, and stalled every client for that long when it
 * ran on the loop.
 *
 * The job's function runs on the task's thread and touches only its own
 * argument and the task's session; its completion runs on the loop (an
 * eventfd that sd-event watches). The session is opened with the task and
 * kept; it is detached (hsm_set_detached()): its losses and reopens, on
 * the task's thread with the usual backoff, move its own generation, so
 * they never disturb the loop's requests. A job that needs a consistent
 * view checks that generation itself (keystore_read_token()).
 */
#pragma once

#include <stdbool.h>

#include <systemd/sd-event.h>

#include "common/macro.h"
#include "pkcs11/hsm.h"

typedef struct HsmTask HsmTask;

typedef int (*HsmTaskFn)(Hsm *h, void *userdata);         /* on the task's thread */
typedef void (*HsmTaskDoneFn)(int r, void *userdata);     /* on the loop, with fn's result */

/* Opens the task's session on parent's token now (the token's error if it cannot). */
int hsm_task_new(sd_event *e, Hsm *parent, HsmTask **ret);
/* Waits for a running job (its done is not called) and closes the session. */
HsmTask *hsm_task_free(HsmTask *t);
DEFINE_TRIVIAL_CLEANUP_FUNC(HsmTask, hsm_task_free);

/* -EBUSY while a job runs. */
int hsm_task_start(HsmTask *t, HsmTaskFn fn, HsmTaskDoneFn done, void *userdata);
bool hsm_task_busy(const HsmTask *t);
/* Adds the session's errors and reopens, as of the last job's end (the thread owns them meanwhile), to acc. */
void hsm_task_stats(const HsmTask *t, HsmStats *acc);
