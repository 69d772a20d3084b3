/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * kekd's wall clock (CLOCK_REALTIME, microseconds). Retention, purge dates,
 * rotation ages and usage times all read it here. Builds configured with
 * --enable-test-clock add an offset in seconds read from the file named by
 * $KEKD_TEST_CLOCK_FILE, so tests can move kekd days ahead; other builds
 * contain no such code.
 */
#pragma once

#include <stdint.h>

uint64_t clock_now_usec(void);
uint64_t clock_mono_usec(void);

/* Next run of a one-shot sd-event timer s: interval after now (fallback_now if the loop has none), so a slow run cannot make the next one start at once. */
typedef struct sd_event_source sd_event_source;
void clock_reschedule(sd_event_source *s, uint64_t fallback_now, uint64_t interval);

#define USEC_PER_SEC 1000000ULL
#define USEC_PER_DAY (86400ULL * USEC_PER_SEC)
