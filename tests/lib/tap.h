/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Minimal TAP producer for the C tests run by automake's tap-driver.sh. Each
 * check prints "ok N - what" or "not ok N - what" with the failing values;
 * tap_done() prints the plan and returns the exit status.
 */
#pragma once

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

static unsigned tap_n, tap_failed;

static inline bool tap_ok(bool cond, const char *what) {
        tap_n++;
        if (!cond)
                tap_failed++;
        printf("%sok %u - %s\n", cond ? "" : "not ", tap_n, what);
        fflush(stdout);
        return cond;
}

/* The condition is evaluated before the message, so the message may show what the condition computed. */
#define ok(cond, ...)                                              \
        ({                                                         \
                char _w[512];                                      \
                bool _c = !!(cond);                                \
                snprintf(_w, sizeof(_w), __VA_ARGS__);             \
                tap_ok(_c, _w);                                    \
        })

static inline void tap_skip(const char *why) {
        printf("ok %u # SKIP %s\n", ++tap_n, why);
}

#define is_int(got, want, ...)                                                              \
        ({                                                                                  \
                long long _g = (long long) (got), _e = (long long) (want);                  \
                bool _r = ok(_g == _e, __VA_ARGS__);                                        \
                if (!_r)                                                                    \
                        printf("#   got %lld, want %lld\n", _g, _e);                        \
                _r;                                                                         \
        })

#define diag(...)                          \
        do {                               \
                printf("# ");              \
                printf(__VA_ARGS__);       \
                printf("\n");              \
        } while (0)

static inline int tap_done(void) {
        printf("1..%u\n", tap_n);
        return tap_failed == 0 && tap_n > 0 ? 0 : 1;
}

static inline void tap_skip_all(const char *why) {
        printf("1..0 # SKIP %s\n", why);
}
