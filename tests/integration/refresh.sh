#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# The periodic refresh reads the token on a thread and session of its own
# while kekd serves. kekd runs on tests/p11-fault with every
# C_FindObjectsInit delayed by 1.5 s, so each reading of the token takes 3 s
# or more (a search per kind of object) and, with refresh_interval = 1, one is nearly always
# under way:
#  1. wraps issued back to back succeed, and some of them begin and end while
#     one delayed search is under way (p11-fault logs the delay when the call
#     comes in, the trace when it returns); a refresh on the serving thread
#     would hold every wrap until its search returned;
#  2. a key disabled while a reading is under way stays disabled after that
#     reading lands: a reading that began before a write of this kekd is read
#     again, never applied (four rounds, each timed by the fault log to fall
#     between a reading's two searches, after it read the records);
#  3. a session loss in a reading (C_FindObjectsInit fails once with
#     CKR_DEVICE_ERROR) neither fails the wraps served meanwhile nor makes
#     kekd re-read the token for the serving sessions: the reading's session
#     is detached, its loss is its own;
#  4. kekd logs no failed refresh, no fallback to the serving thread, and
#     stops cleanly once the reading under way is done.
# No check asserts elapsed time (the machine may be busy): the order of events
# in the fault log says what ran during what, and waits are bounded.
# Each section runs on a kekd started for it, so none reaches kekd's first
# usage flush (60 s after its start, a record write with searches of its own).
. "$TESTLIB"

if [ ! -f "${P11_FAULT_LIB:-}" ]; then
        echo "Bail out! P11_FAULT_LIB not built (make check builds it)"
        exit 99
fi

p11_fault_setup
P11_FAULT_TRACE=C_FindObjectsInit
export P11_FAULT_TRACE

# restart_kekd: a fresh kekd on the same token, started without delays
restart_kekd() {
        fault_set ""
        kekd_stop
        kekd_start
}
# delayed: the delayed searches logged so far
delayed() {
        grep -c "^C_FindObjectsInit delay_ms=1500" "$FLOG"
}
# returned / pending: the delayed searches that have returned (their trace line,
# written after the call, names the same call=N) / that have not yet
delayed_calls() {
        awk -v want="$1" '
                /^C_FindObjectsInit delay_ms=/ { for (i = 1; i <= NF; i++) if ($i ~ /^call=/) d[$i] = 1 }
                /^trace C_FindObjectsInit / { for (i = 1; i <= NF; i++) if ($i ~ /^call=/) t[$i] = 1 }
                END {
                        n = 0
                        for (c in d) if ((c in t) == (want == "returned")) n++
                        print n
                }' "$FLOG"
}
returned() {
        delayed_calls returned
}
pending() {
        delayed_calls pending
}
now_ms() {
        echo $(($(date +%s%N) / 1000000))
}

token_init refresh
kekd_config
sed -i "s|^module = .*|module = $P11_FAULT_LIB|" "$CONF"
ok "kekd starts on the p11-fault module" kekd_start
for k in r1 r2 r3; do
        succeeds "create $k" create "$k"
done
head -c 32 /dev/urandom >"$TESTDIR/aek"
# Their first wraps take a wrap lease (a record write, with searches of its own) before any delay.
for k in r1 r2; do
        KC_IN="$TESTDIR/aek"
        succeeds "a first wrap under $k" wrap "$k" --context first
        KC_IN=""
done

fault_set "C_FindObjectsInit:delay_ms=1500"
# Let the first delayed reading begin.
sleep 1.5

# --- 1. serving while the token is read --------------------------------------
diag "1. wraps during readings of the token"
# A wrap "inside" a search: one was pending when it began, and none returned before it ended.
inside=0 n=0 fails=0
end=$(($(date +%s) + 60)) # a bound for a very busy machine, not a measure
while [ $inside -lt 5 ] && [ $n -lt 1000 ] && [ "$(date +%s)" -lt $end ]; do
        p0=$(pending)
        r0=$(returned)
        "$KEKCTL" wrap r1 --context "acct-$n" <"$TESTDIR/aek" >/dev/null 2>>"$TESTDIR/wrap.err" || fails=$((fails + 1))
        [ "$p0" -gt 0 ] && [ "$(returned)" -eq "$r0" ] && inside=$((inside + 1))
        n=$((n + 1))
done
diag "$n wraps, $inside of them inside a delayed search of a reading, $fails failed"
is "every wrap during the readings succeeded" "$fails" 0
ok "wraps are served while a reading waits on the token ($inside wraps began and ended inside one delayed search)" \
        [ "$inside" -ge 5 ]

# --- 2. a write of ours during a reading ---------------------------------------
diag "2. disable during a reading"
ok "a fresh kekd for section 2" restart_kekd
: >"$FLOG"
fault_set "C_FindObjectsInit:delay_ms=1500"
for round in 1 2 3 4; do
        # A reading makes two delayed searches, records first: wait for a second one to begin.
        i=0
        c=$(delayed)
        while [ $i -lt 300 ] && { [ "$(delayed)" -eq "$c" ] || [ $(($(delayed) % 2)) -ne 0 ]; }; do
                sleep 0.05
                i=$((i + 1))
        done
        succeeds "round $round: disable r2 (a reading is under way)" disable r2
        bad=0
        end=$(($(now_ms) + 4000))
        while [ "$(now_ms)" -lt $end ]; do
                if "$KEKCTL" wrap r2 --context x <"$TESTDIR/aek" >/dev/null 2>"$TESTDIR/err"; then
                        bad=$((bad + 1))
                fi
                sleep 0.2
        done
        is "round $round: no wrap under r2 for 4 s, across the reading that began before the disable" "$bad" 0
        succeeds "round $round: enable r2" enable r2
        KC_IN="$TESTDIR/aek"
        succeeds "round $round: r2 wraps again" wrap r2 --context x
        KC_IN=""
        sleep 0.7
done

# --- 3. the reading's session lost ------------------------------------------------
diag "3. the background session fails once"
ok "a fresh kekd for section 3" restart_kekd
KC_IN="$TESTDIR/aek"
succeeds "its first wrap under r1 (the lease's record write searches on the serving session)" wrap r1 --context y
KC_IN=""
n_lost=$(grep -c "session was lost and reopened" "$TESTDIR/kekd.log")
: >"$FLOG"
fault_set "C_FindObjectsInit:rv=CKR_DEVICE_ERROR:count=1"
# Wraps until the fault fired in a reading (bounded), then ten more.
fails=0 n=0 after=0
end=$(($(date +%s) + 30)) # a bound, not a measure; well before kekd's first usage flush
while [ $after -lt 10 ] && [ $n -lt 1000 ] && [ "$(date +%s)" -lt $end ]; do
        "$KEKCTL" wrap r1 --context y <"$TESTDIR/aek" >/dev/null 2>>"$TESTDIR/wrap.err" || fails=$((fails + 1))
        grep -q '^C_FindObjectsInit CKR_DEVICE_ERROR' "$FLOG" && after=$((after + 1))
        n=$((n + 1))
done
diag "$n wraps, $after of them after the fault fired"
is "the fault hit a reading of the token" "$(grep -c '^C_FindObjectsInit CKR_DEVICE_ERROR' "$FLOG")" 1
is "no wrap failed meanwhile" "$fails" 0
is "the serving sessions were not disturbed: no re-read for a lost session" \
        "$(grep -c "session was lost and reopened" "$TESTDIR/kekd.log")" "$n_lost"

# --- 4. where the readings ran; stopping during one -------------------------------
ok "kekd is alive" kekd_alive
ok "no refresh failed" sh -c "! grep -q 'Periodic refresh of the keys failed' '$TESTDIR/kekd.log'"
ok "the background session opened (no fallback to the serving thread)" \
        sh -c "! grep -q 'Cannot open an HSM session for the background refresh' '$TESTDIR/kekd.log'"
fault_set "C_FindObjectsInit:delay_ms=1500"
i=0
while [ $i -lt 300 ] && [ "$(pending)" -eq 0 ]; do
        sleep 0.05
        i=$((i + 1))
done
ok "a reading's delayed search is under way" [ "$(pending)" -gt 0 ]
# A reading is several searches (records, then each adoption form of the key
# objects), each delayed 1.5 s here: kekd lets the reading finish before it
# exits, so the bound covers a whole reading on a loaded machine.
kekd_stop TERM 40 # SIGKILL if kekd is still there 40 s later
is "kekd stops cleanly on SIGTERM during a reading" "$KEKD_STATUS" 0
is "... once that reading's delayed search had returned (none was cut short)" "$(pending)" 0
done_testing
