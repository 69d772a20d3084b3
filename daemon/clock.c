/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Clock access (see clock.h). With ENABLE_TEST_CLOCK the offset file is read
 * at most every 100 ms of monotonic time, so the data path stays cheap.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <systemd/sd-event.h>

#include "daemon/clock.h"

uint64_t clock_mono_usec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * USEC_PER_SEC + (uint64_t) ts.tv_nsec / 1000;
}

#if ENABLE_TEST_CLOCK
static int64_t test_offset_usec(void) {
        static uint64_t next_read;
        static int64_t offset;
        uint64_t now = clock_mono_usec();
        const char *path;
        FILE *f;

        if (now < next_read)
                return offset;
        next_read = now + 100 * 1000;
        path = getenv("KEKD_TEST_CLOCK_FILE");
        if (!path)
                return offset = 0;
        f = fopen(path, "re");
        if (!f)
                return offset = 0;
        {
                long long s;

                offset = fscanf(f, "%lld", &s) == 1 ? (int64_t) s * (int64_t) USEC_PER_SEC : 0;
        }
        fclose(f);
        return offset;
}
#endif

uint64_t clock_now_usec(void) {
        struct timespec ts;
        uint64_t t;

        clock_gettime(CLOCK_REALTIME, &ts);
        t = (uint64_t) ts.tv_sec * USEC_PER_SEC + (uint64_t) ts.tv_nsec / 1000;
#if ENABLE_TEST_CLOCK
        t += (uint64_t) test_offset_usec();
#endif
        return t;
}

/* Next run of a one-shot timer: interval after now, so a slow run cannot make the next one start at once. */
void clock_reschedule(sd_event_source *s, uint64_t fallback_now, uint64_t interval) {
        uint64_t now;

        if (sd_event_now(sd_event_source_get_event(s), CLOCK_MONOTONIC, &now) < 0)
                now = fallback_now;
        (void) sd_event_source_set_time(s, now + interval);
        (void) sd_event_source_set_enabled(s, SD_EVENT_ONESHOT);
}
