#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# No key vanishes from the token while the periodic refresh reads it. With
# refresh_interval = 1 the refresh lists the token on its own thread and
# session while SetEnabled requests replace key records on the main one.
# SoftHSM2's file store (2.6) is not safe for that: its re-index of the
# token directory racing a C_CreateObject left the new record's file empty
# or torn after the call had succeeded and the record had been read back, so
# kekd destroyed the superseded record and the key was gone (UNKNOWN_KEY,
# also after a restart). kekd now makes its calls on token objects one at a
# time across its sessions (pkcs11/hsm.c, store_call()).
#  1. kekd on tests/p11-fault with $P11_FAULT_OVERLAP=1 (it logs a call on
#     token objects that begins while another is in flight) and every
#     C_FindObjectsInit delayed, so any overlap is wide: three keys are
#     toggled until both the main thread and the refresh thread have made
#     such calls (and a few rounds more); none overlapped, every key stays.
#  2. The same without delays, as the loss was seen: 4 keys toggled
#     $STORE_RACE_TOGGLES times each (default 400, scale it up to stress),
#     at once; every request succeeds (a transient error is retried by
#     kek-slow), every key is there after each round and after a restart,
#     and `kekctl check` is clean.
#  3. A destroy never goes through a handle listed before a session was
#     reopened ($P11_FAULT_RENUMBER=1: p11-fault renumbers handles then, as
#     some HSMs do): a lost session in the middle of each of 4 disables
#     leaves every key and KEK version in place (hsm_destroy_listed()).
# No check asserts elapsed time; every loop is bounded in count.
REFRESH_INTERVAL=1
. "$TESTLIB"

if [ ! -f "${P11_FAULT_LIB:-}" ] || [ ! -x "${KEK_SLOW:-}" ]; then
        echo "Bail out! P11_FAULT_LIB or KEK_SLOW not built (make check builds them)"
        exit 99
fi

TOGGLES=${STORE_RACE_TOGGLES:-400}
KEYS="race-1 race-2 race-3 race-4"
p11_fault_setup
P11_FAULT_OVERLAP=1
export P11_FAULT_OVERLAP
token_init storerace
kekd_config
sed -i "s|^module = .*|module = $P11_FAULT_LIB|" "$CONF"

TPIDS=""
trap 'for p in $TPIDS; do kill "$p" 2>/dev/null; done; cleanup' EXIT

# toggle_all COUNT KEY...: COUNT SetEnabled on each KEY, all keys at once; output in $TESTDIR/toggle.KEY
toggle_all() {
        count=$1
        shift
        TPIDS=""
        for k in "$@"; do
                "$KEK_SLOW" "$SOCKET" toggle "$k" "$count" >"$TESTDIR/toggle.$k" 2>&1 &
                TPIDS="$TPIDS $!"
        done
        for p in $TPIDS; do
                wait "$p"
        done
        TPIDS=""
}
# toggled COUNT KEY...: each KEY's toggles all succeeded
toggled() {
        count=$1
        shift
        for k in "$@"; do
                grep -q "^ok $count retried" "$TESTDIR/toggle.$k" || { echo "#   $k: $(cat "$TESTDIR/toggle.$k")"; return 1; }
        done
}
# all_there KEY...: kekctl shows every KEY
all_there() {
        for k in "$@"; do
                "$KEKCTL" show "$k" >/dev/null 2>"$TESTDIR/show.err" || { echo "#   $k: $(cat "$TESTDIR/show.err")"; return 1; }
        done
}
store_threads() { grep -c "^store-thread " "$FLOG"; }
overlaps() { grep -c "^overlap " "$FLOG"; }

ok "kekd starts on p11-fault" kekd_start
for k in $KEYS; do
        kc create "$k"
        is "key $k created" "$KC_STATUS" 0
done

# --- 1. no two calls on token objects at once -----------------------------------
fault_set "C_FindObjectsInit:delay_ms=30"
KEYS3="race-1 race-2 race-3"
round=0 after=0 lost=0
# At least 6 rounds (the refresh reads every second meanwhile), and 3 more once the refresh thread
# has made its calls (a 2nd store-thread): at most 40 rounds.
while [ $round -lt 40 ] && { [ $after -lt 3 ] || [ $round -lt 6 ]; }; do
        toggle_all 10 $KEYS3
        toggled 10 $KEYS3 || lost=1
        all_there $KEYS3 || lost=1
        round=$((round + 1))
        [ "$(store_threads)" -ge 2 ] && after=$((after + 1))
done
diag "$round rounds of 3 x 10 toggles with delayed searches; $(store_threads) threads made object calls"
ok "the main loop and the refresh thread both made calls on token objects" [ "$(store_threads)" -ge 2 ]
is "no call on token objects began while another was in flight" "$(overlaps)" 0
grep "^overlap " "$FLOG" | head -5 | sed 's/^/#   /'
is "every toggle succeeded and every key stayed" "$lost" 0

# --- 2. the load that lost a key ---------------------------------------------------
fault_set ""
lost=0
for round in 1 2 3; do
        toggle_all "$TOGGLES" $KEYS
        toggled "$TOGGLES" $KEYS || lost=1
        all_there $KEYS || lost=1
done
is "3 rounds of $TOGGLES toggles of 4 keys at once: all succeeded, every key stayed" "$lost" 0
is "... and still no overlapping calls" "$(overlaps)" 0
succeeds "kekctl check is clean" check
contains "... and says so" "$TESTDIR/out" "The token is consistent with the key records"
kekd_stop
ok "kekd starts again on the same token" kekd_start
ok "every key is there after the restart" all_there $KEYS
succeeds "kekctl check is clean after the restart" check
diag "p11-fault: $(wc -l <"$FLOG") lines, $(overlaps) overlaps"


# --- 3. no destroy through a handle from before a reopen -----------------------
# p11-fault renumbers handles at every C_CloseSession, as HSMs may after a reset;
# the timer is out of the way so that nth counts only the request's own calls.
# A SetEnabled lists the key's records, writes the new one and lists again (the
# contest): that second search meets a lost session, kekd reopens and searches
# again, then destroys the superseded record. Through the handle it listed
# first, which now names another object (another record, a KEK version), the
# destroy would take that; kekd leaves it (a superseded record is harmless,
# repair removes it) and the key and every other stay whole.
kekd_stop
P11_FAULT_RENUMBER=1
export P11_FAULT_RENUMBER
REFRESH_INTERVAL=3600
kekd_config
sed -i "s|^module = .*|module = $P11_FAULT_LIB|" "$CONF"
fault_set ""
ok "kekd starts on p11-fault renumbering handles" kekd_start
lost=0 losses=0
for k in $KEYS; do
        before=$(grep -c "CKR_SESSION_HANDLE_INVALID" "$FLOG")
        fault_set "C_FindObjectsInit:rv=CKR_SESSION_HANDLE_INVALID:nth=2"
        kc disable "$k"
        [ "$(grep -c "CKR_SESSION_HANDLE_INVALID" "$FLOG")" -gt "$before" ] && losses=$((losses + 1))
        fault_set ""
        all_there $KEYS || lost=1
done
is "the lost session met each of the 4 disables" "$losses" 4
is "every key is there after them" "$lost" 0
succeeds "kekctl check is clean" check
contains "... and says so" "$TESTDIR/out" "The token is consistent with the key records"
for k in $KEYS; do
        kc enable "$k"
        head -c 32 /dev/urandom >"$TESTDIR/aek-$k"
        KC_IN="$TESTDIR/aek-$k" kc wrap "$k"
        cp "$TESTDIR/out" "$TESTDIR/blob-$k"
        KC_IN="$TESTDIR/blob-$k" kc unwrap
        ok "key $k enables and wraps and unwraps with its KEK" cmp -s "$TESTDIR/out" "$TESTDIR/aek-$k"
done

kekd_stop
done_testing
