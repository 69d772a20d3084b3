/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Unit tests of the token health state machine (daemon/tokenset.h), without
 * a token: a further token starts UNAVAILABLE and becomes ACTIVE on its first
 * good probe; one failure makes an ACTIVE token DEGRADED and
 * TOKEN_UNAVAILABLE_AFTER in a row UNAVAILABLE; a slow but good probe is
 * DEGRADED; a good probe brings it back; a token that never served is never
 * called DEGRADED; counters and the last error follow every probe, and the
 * time of change moves only with the state. tokenset_new() refuses specs it
 * cannot use before it opens anything. The capability classification of a
 * further token (tokenset_capability_name()) names each case.
 */
#include "config.h"

#include <errno.h>
#include <string.h>

#include "common/kekerr.h"
#include "daemon/tokenset.h"
#include "tests/lib/tap.h"

static void test_start_and_recover(void) {
        TokenHealth h;

        token_health_init(&h, TOKEN_UNAVAILABLE, 100);
        is_int(h.state, TOKEN_UNAVAILABLE, "a further token starts unavailable");
        ok(!token_health_probe(&h, -KEKERR_HSM_UNAVAILABLE, "cannot load PKCS#11 module", 10, 200),
           "a failed probe of a never-usable token changes nothing");
        is_int(h.state, TOKEN_UNAVAILABLE, "never degraded before it served");
        ok(strcmp(h.error, "cannot load PKCS#11 module") == 0, "the failure is kept: %s", h.error);
        is_int(h.changed_usec, 100, "no change, no new time");
        ok(token_health_probe(&h, 0, NULL, 1000, 300), "the first good probe changes the state");
        is_int(h.state, TOKEN_ACTIVE, "active");
        is_int(h.changed_usec, 300, "time of change");
        is_int(h.failures, 0, "failures reset");
        is_int(h.probes, 2, "two probes");
        is_int(h.probe_failures, 1, "one failed");
}

static void test_degrade_and_lose(void) {
        TokenHealth h;

        token_health_init(&h, TOKEN_ACTIVE, 0);
        ok(token_health_probe(&h, -KEKERR_HSM_UNAVAILABLE, "C_Encrypt: CKR_DEVICE_ERROR", 10, 1), "one failure: a change");
        is_int(h.state, TOKEN_DEGRADED, "one failure: degraded");
        ok(strcmp(h.error, "C_Encrypt: CKR_DEVICE_ERROR") == 0, "the failed call: %s", h.error);
        for (unsigned i = 1; i < TOKEN_UNAVAILABLE_AFTER; i++)
                token_health_probe(&h, -KEKERR_HSM_UNAVAILABLE, "C_OpenSession: CKR_TOKEN_NOT_PRESENT", 10, 2 + i);
        is_int(h.state, TOKEN_UNAVAILABLE, "%u failures in a row: unavailable", TOKEN_UNAVAILABLE_AFTER);
        ok(strcmp(h.error, "C_OpenSession: CKR_TOKEN_NOT_PRESENT") == 0, "the latest failure is shown");
        ok(!token_health_probe(&h, -EIO, NULL, 10, 50), "more failures: no change");
        ok(h.error[0] != 0, "an error without a call's text still says something: %s", h.error);
        ok(token_health_probe(&h, 0, NULL, 10, 60), "a good probe: a change");
        is_int(h.state, TOKEN_ACTIVE, "active again");
        is_int(h.failures, 0, "failures reset");
        ok(strcmp(h.error, "") != 0, "the last error stays for the operator");
}

static void test_slow(void) {
        TokenHealth h;

        token_health_init(&h, TOKEN_ACTIVE, 0);
        ok(!token_health_probe(&h, 0, NULL, TOKEN_SLOW_USEC, 1), "a probe exactly at the bound is still active");
        ok(token_health_probe(&h, 0, NULL, TOKEN_SLOW_USEC + 1, 2), "a slow probe changes the state");
        is_int(h.state, TOKEN_DEGRADED, "slow: degraded");
        is_int(h.last_probe_usec, TOKEN_SLOW_USEC + 1, "its time is kept");
        is_int(h.failures, 0, "slow is not a failure");
        ok(!token_health_probe(&h, -KEKERR_HSM_UNAVAILABLE, NULL, 10, 3), "a failure after slow: still degraded");
        ok(token_health_probe(&h, -KEKERR_HSM_UNAVAILABLE, NULL, 10, 4), "and a second one: unavailable");
        is_int(h.state, TOKEN_UNAVAILABLE, "unavailable");
        ok(token_health_probe(&h, 0, NULL, TOKEN_SLOW_USEC * 2, 5), "a slow good probe after unavailable: a change");
        is_int(h.state, TOKEN_DEGRADED, "slow answers: degraded, not active");
        ok(token_health_probe(&h, 0, NULL, 10, 6), "fast again");
        is_int(h.state, TOKEN_ACTIVE, "active");
}

/* A client's failed request: an ACTIVE token is DEGRADED at once; counted in every state; the probe decides the rest. */
static void test_request_failed(void) {
        TokenHealth h;

        token_health_init(&h, TOKEN_ACTIVE, 0);
        ok(token_health_request_failed(&h, "a request met HSM_UNAVAILABLE", 5), "a failed request changes an active token");
        is_int(h.state, TOKEN_DEGRADED, "degraded at once");
        is_int(h.changed_usec, 5, "time of change");
        ok(strcmp(h.error, "a request met HSM_UNAVAILABLE") == 0, "the reason is kept");
        is_int(h.probes, 0, "no probe counted");
        ok(!token_health_request_failed(&h, NULL, 6), "a second one changes nothing");
        is_int(h.request_errors, 2, "both counted");
        is_int(h.failures, 0, "requests are not probe failures");
        ok(token_health_probe(&h, 0, NULL, 10, 7), "a good probe afterwards: a change");
        is_int(h.state, TOKEN_ACTIVE, "active again: the probe decides");
        token_health_init(&h, TOKEN_UNAVAILABLE, 0);
        ok(!token_health_request_failed(&h, NULL, 1), "an unavailable token stays unavailable");
        is_int(h.state, TOKEN_UNAVAILABLE, "unavailable");
        is_int(h.request_errors, 1, "counted");
}

static void test_names_and_refusals(void) {
        TokenSet *ts = NULL;
        TokenSpec spec = { .name = "a" };
        TokenStatus st;

        ok(strcmp(token_state_name(TOKEN_ACTIVE), "active") == 0 &&
                   strcmp(token_state_name(TOKEN_DEGRADED), "degraded") == 0 &&
                   strcmp(token_state_name(TOKEN_UNAVAILABLE), "unavailable") == 0,
           "state names");
        is_int(tokenset_new(NULL, &spec, 1, 0, 5, &ts), -EINVAL, "no primary Hsm: refused");
        ok(!ts, "nothing made");
        is_int(tokenset_count(NULL), 0, "no set: no tokens");
        is_int(tokenset_status(NULL, 0, &st), -ENOENT, "no set: no status");
        tokenset_request_done(NULL, 0, -KEKERR_HSM_UNAVAILABLE); /* a single token: nothing to note (a crash fails the test) */
        ok(!tokenset_free(NULL), "free(NULL)");
}

/* The capability probe's classification of a further token (TokenHealth.capability). */
static void test_capability_names(void) {
        ProbeResult p = { .copy = PROBE_COPY_REFUSED, .profile = "gcm" };
        char buf[64] = "x";

        ok(strcmp(tokenset_capability_name(&p, 0, false), "refused copies") == 0, "copies refused");
        p.copy = PROBE_COPY_KEPT;
        ok(strcmp(tokenset_capability_name(&p, 0, false), "copies kept sensitive") == 0, "copies kept");
        p.copy = PROBE_COPY_UNSAFE;
        ok(strcmp(tokenset_capability_name(&p, 0, false), "unsafe (refused)") == 0, "unsafe, not allowed");
        ok(strcmp(tokenset_capability_name(&p, 0, true), "unsafe (allowed)") == 0, "unsafe, allowed");
        ok(strcmp(tokenset_capability_name(&p, -KEKERR_UNSUPPORTED, true), "unsupported") == 0,
               "no profile: unsupported, whatever the copies");
        p.copy = PROBE_COPY_UNKNOWN;
        ok(strcmp(tokenset_capability_name(&p, 0, false), "copies not tried") == 0, "copies not tried");
        is_int(tokenset_capability_problem(NULL, 1, buf, sizeof(buf)), -ENOENT, "no set: nothing to say");
        is_int(tokenset_set_capability(NULL, 0, &p, false), -ENOENT, "no set: nothing to set");
}

/* A probe that does not return: the states shown must not rest on it (token_health_overdue()). */
static void test_overdue(void) {
        const uint64_t overdue = TOKEN_OVERDUE_USEC(1000000ULL, 3);
        TokenHealth h;

        token_health_init(&h, TOKEN_ACTIVE, 100);
        ok(!token_health_overdue(&h, true, TOKEN_HUNG_USEC, overdue, 10000000) && h.state == TOKEN_ACTIVE,
           "a probe under way for TOKEN_HUNG_USEC: still active");
        ok(token_health_overdue(&h, true, TOKEN_HUNG_USEC + 1000, overdue, 10000000) && h.state == TOKEN_DEGRADED,
           "longer: degraded");
        ok(strstr(h.error, "probe has not returned for 5001 ms") != NULL, "with why: %s", h.error);
        is_int(h.changed_usec, 10000000 - 1000, "since the probe became overdue");
        token_health_init(&h, TOKEN_ACTIVE, 100);
        ok(!token_health_overdue(&h, false, overdue, overdue, 20000000) && h.state == TOKEN_ACTIVE,
           "not probed for TOKEN_OVERDUE_USEC: still active");
        ok(token_health_overdue(&h, false, overdue + 1, overdue, 20000000) && h.state == TOKEN_DEGRADED &&
           strstr(h.error, "another token's probe") != NULL, "longer: degraded, another token's probe (%s)", h.error);
        token_health_init(&h, TOKEN_UNAVAILABLE, 100);
        ok(!token_health_overdue(&h, true, 60000000, overdue, 20000000) && h.state == TOKEN_UNAVAILABLE &&
           h.error[0] == 0, "an unavailable token stays so, its error untouched");
}

int main(void) {
        test_start_and_recover();
        test_degrade_and_lose();
        test_slow();
        test_request_failed();
        test_capability_names();
        test_overdue();
        test_names_and_refusals();
        return tap_done();
}
