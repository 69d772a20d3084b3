#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# Two kekd on one token, a settle racing a lease (review finding F1): kekd A
# gives its unused lease back at SIGTERM (writes generation N+1) and, while
# A lists the token to see whether its write was contested, kekd B takes a
# lease and writes N+2 on top of A's N+1. B's record already holds A's
# change, so A must not withdraw it and subtract its lease a second time:
# wrap budgets over-count, never under-count.
#
# Three races: (1) B writes once on A's record; (2) B writes three times,
# so the newest record's parent is B's, and A is found among its ancestors;
# (3) B writes 18 times, more than a record's ancestry reaches back (16):
# A cannot tell and fails its settle rather than apply it twice.
#
# Made deterministic with p11-fault (A only; B uses SoftHSM2 directly):
# every C_FindObjectsInit of A is delayed, and p11-fault logs the delay as
# the call begins. Once A's settle record is written (traced C_CreateObject)
# and A's next C_FindObjectsInit (the contested listing) has begun, A is
# stopped (SIGSTOP) inside that delay, before the listing reaches the token;
# B writes; A is continued. The one timing assumption is that the test stops
# A within those 4 s; if it does not, "the race is set up" fails (a loaded
# machine can make the test fail, never pass wrongly).
. "$TESTLIB"

if [ ! -f "${P11_FAULT_LIB:-}" ]; then
        echo "Bail out! P11_FAULT_LIB not built (make check builds it)"
        exit 99
fi

p11_fault_setup
P11_FAULT_TRACE=C_CreateObject,C_FindObjects # "trace ..." lines in $FLOG, after the call returned
export P11_FAULT_TRACE
token_init leaserace
PID_B=""
STOPPED=""
trap '[ -z "$STOPPED" ] || kill -CONT $STOPPED 2>/dev/null; [ -z "$PID_B" ] || kill -KILL $PID_B 2>/dev/null; cleanup' EXIT

# wraps KEY VERSION [SOCKET]: the wrap count `kekctl show --json` reports for that version
wraps() {
        "$KEKCTL" ${3:+-s "$3"} show --json "$1" 2>"$TESTDIR/err" | awk -v v="$2" '
                /"id":/ { gsub(/[^0-9]/, ""); id = $0 }
                /"wraps":/ && id == v { gsub(/[^0-9]/, ""); print; exit }'
}
# wait_for SECONDS COMMAND...: until COMMAND succeeds, polling every 0.05 s, at most SECONDS
wait_for() {
        n=$(($1 * 20))
        shift
        i=0
        until "$@"; do
                [ $i -ge $n ] && return 1
                sleep 0.05
                i=$((i + 1))
        done
}
# contested_listing_begun PID: in $FLOG, after PID's traced C_CreateObject (its
# settle record), a delayed C_FindObjectsInit of PID has begun
contested_listing_begun() {
        awk -v p="pid=$1" '
                index($0, p) && /^trace C_CreateObject CKR_OK/ { created = 1 }
                index($0, p) && created && /^C_FindObjectsInit delay_ms=/ { found = 1 }
                END { exit !found }' "$FLOG"
}
# listing_returned PID: PID's traced C_FindObjects after that delayed C_FindObjectsInit
listing_returned() {
        awk -v p="pid=$1" '
                index($0, p) && /^trace C_CreateObject CKR_OK/ { created = 1 }
                index($0, p) && created && /^C_FindObjectsInit delay_ms=/ { begun = 1 }
                index($0, p) && begun && /^trace C_FindObjects / { found = 1 }
                END { exit !found }' "$FLOG"
}
listing_pending() {
        ! listing_returned "$1"
}
b_knows() {
        "$KEKCTL" -s "$SOCK_B" show "$KEY" >/dev/null 2>&1
}
b_lists() {
        "$KEKCTL" -s "$SOCK_B" list >/dev/null 2>&1
}
a_gone() {
        ! kill -0 "$PID_A" 2>/dev/null
}
b_gone() {
        ! kill -0 "$PID_B" 2>/dev/null
}
# log_count STRING: how many lines of kekd.log (both runs of A) hold STRING
log_count() {
        grep -cF -- "$1" "$TESTDIR/kekd.log"
}

head -c 32 /dev/urandom >"$TESTDIR/aek"
# A: through p11-fault; B: the same token through SoftHSM2 itself, its own socket
kekd_config
CONF_B="$TESTDIR/b.conf"
SOCK_B="$TESTDIR/b.sock"
sed "s|^socket = .*|socket = $SOCK_B|" "$CONF" >"$CONF_B"
sed -i "s|^module = .*|module = $P11_FAULT_LIB|" "$CONF"
ok "kekd A starts on p11-fault" kekd_start
"$KEKD" -c "$CONF_B" 2>>"$TESTDIR/kekd-b.log" &
PID_B=$!
ok "kekd B starts on the same token" wait_for 10 b_lists

# race KEY B-ACTION (A must have nothing else to settle: its first settle record
# is KEY's): A takes a lease on KEY (budget 1600: a lease of 100) and
# wraps once; SIGTERM makes A settle (99 back); A is stopped once its contested
# listing has begun; B-ACTION runs; A goes on, exits, and is started again.
race() {
        key=$1
        succeeds "create $1 with a budget of 1600 (a lease of 100)" create "$key" --max-wraps 1600
        succeeds "one wrap with $key through A" wrap "$key" --context c <"$TESTDIR/aek"
        KEY=$key
        ok "B sees $key" wait_for 10 b_knows
        is "the record holds A's lease: 100" "$(wraps "$key" 1 "$SOCK_B")" 100
        # Delay every C_FindObjectsInit of A from now on; SIGTERM makes A settle.
        : >"$FLOG"
        fault_set "C_FindObjectsInit:delay_ms=4000:count=inf"
        PID_A=$KEKD_PID
        kill -TERM "$PID_A"
        ok "A has written its settle record and begun its contested listing" wait_for 60 contested_listing_begun "$PID_A"
        kill -STOP "$PID_A"
        STOPPED=$PID_A
        ok "B: $2" "$2" "$key"
        ok "... and A's contested listing had not returned by then (the race is set up)" listing_pending "$PID_A"
        kill -CONT "$PID_A"
        STOPPED=""
        ok "A exits" wait_for 60 a_gone
        wait "$PID_A"
        is "... with status 0" "$?" 0
        KEKD_PID=""
        ok "A's contested listing did run (after B's writes)" listing_returned "$PID_A"
        fault_set ""
        # A again, fresh: it holds no lease, so it shows the record as it is.
        ok "A starts again" kekd_start
}
b_wrap() {
        "$KEKCTL" -s "$SOCK_B" wrap "$1" --context c <"$TESTDIR/aek" >"$TESTDIR/blob-$1"
}
# b_wrap_and_toggle KEY: B wraps (a lease: 1 write), then disables and enables the key (2 more)
b_wrap_and_toggle() {
        b_wrap "$1" && "$KEKCTL" -s "$SOCK_B" disable "$1" >/dev/null && "$KEKCTL" -s "$SOCK_B" enable "$1" >/dev/null
}
# b_toggle_9 KEY: B disables and enables the key 9 times: 18 writes
b_toggle_9() {
        j=0
        while [ $j -lt 9 ]; do
                "$KEKCTL" -s "$SOCK_B" disable "$1" >/dev/null && "$KEKCTL" -s "$SOCK_B" enable "$1" >/dev/null || return 1
                j=$((j + 1))
        done
}

diag "1. B takes a lease on A's settle record"
race lk1 b_wrap
is "A found its settle in B's newer record instead of applying it again" "$(log_count "was built on by another kekd")" 1
is "while B runs, the record holds A's wrap and B's whole lease: 1 + 100" "$(wraps lk1 1)" 101
is "B reports the 2 wraps done (the record less its 99 unused)" "$(wraps lk1 1 "$SOCK_B")" 2

diag "2. B takes a lease, then writes twice more: the newest record's parent is B's"
race lk2 b_wrap_and_toggle
is "A found its settle among the newest record's ancestors" "$(log_count "was built on by another kekd")" 2
is "while B runs, the record holds A's wrap and B's whole lease: 1 + 100" "$(wraps lk2 1)" 101
is "B reports the 2 wraps done" "$(wraps lk2 1 "$SOCK_B")" 2

diag "3. B writes 18 times: more than the ancestry reaches back"
n_warn=$(log_count "Could not record the latest key usage")
race lk3 b_toggle_9
is "A cannot tell, and its settle fails instead of being applied again" \
        "$(log_count "Could not record the latest key usage")" $((n_warn + 1))
is "the record holds A's one wrap, not less" "$(wraps lk3 1)" 1

kill -TERM "$PID_B"
ok "B exits" wait_for 10 b_gone
wait "$PID_B"
is "... with status 0" "$?" 0
PID_B=""
kekd_stop TERM
ok "A starts once more" kekd_start
is "after both settled, lk1 counts the real number of wraps: 2" "$(wraps lk1 1)" 2
is "... and so does lk2: 2" "$(wraps lk2 1)" 2
is "... and lk3: 1" "$(wraps lk3 1)" 1
succeeds "B's blob of lk1 unwraps through A" unwrap --context c <"$TESTDIR/blob-lk1"
kc check
is "check finds the token consistent" "$KC_STATUS" 0

kekd_stop
done_testing
