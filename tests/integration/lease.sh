#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# Wrap leases (kekd(8), "Wrap budget"): kekd reserves wraps in the key's
# record a lease at a time before it uses them. This test checks that the
# count a version reports is its real number of wraps wherever that can be
# known, and over-counts by less than one lease where it cannot:
#  1. a clean stop (SIGTERM) gives the unused part of the lease back: after
#     restarts the count is exact (1, then 4, then 9);
#  2. so does a stop after a drain, with wraps served during the drain, and a
#     second SIGTERM that ends the drain at once;
#  3. a wrap the HSM refuses (p11-fault on C_Encrypt: a plain failure, a lost
#     session, an answer lost after the encryption) does not count, neither
#     while kekd runs nor after a restart;
#  4. two kekd on one token: each gives back only its own unused lease;
#  5. kill -9: the count is the leases taken, one lease per version this
#     kekd wrapped with (2^20 = 1048576 at the default budget of 2^30; a
#     sixteenth of a smaller budget), so it over-counts by less than a lease.
. "$TESTLIB"

if [ ! -f "${P11_FAULT_LIB:-}" ]; then
        echo "Bail out! P11_FAULT_LIB not built (make check builds it)"
        exit 99
fi

p11_fault_setup
P11_FAULT_TRACE=C_Encrypt # "trace C_Encrypt ..." in $FLOG: a wrap reached the HSM
export P11_FAULT_TRACE
token_init lease
RAW_PID=""
trap '[ -z "$RAW_PID" ] || kill -KILL $RAW_PID 2>/dev/null; cleanup' EXIT

# start_kekd: kekd.conf with p11-fault as its module, then kekd_start
start_kekd() {
        kekd_config
        sed -i "s|^module = .*|module = $P11_FAULT_LIB|" "$CONF"
        kekd_start
}
# restart: SIGTERM (a clean stop, which must exit 0 within kekd_stop's bound), then start again
restart() {
        kekd_stop TERM
        [ "$KEKD_STATUS" -eq 0 ] || { diag "kekd exited $KEKD_STATUS"; return 1; }
        start_kekd
}
# wraps KEY VERSION [SOCKET]: the wrap count `kekctl show --json` reports for that version
wraps() {
        "$KEKCTL" ${3:+-s "$3"} show --json "$1" 2>"$TESTDIR/err" | awk -v v="$2" '
                /"id":/ { gsub(/[^0-9]/, ""); id = $0 }
                /"wraps":/ && id == v { gsub(/[^0-9]/, ""); print; exit }'
}
# wrap_n KEY N [SOCKET]: N wraps; how many succeeded in $WRAPPED
wrap_n() {
        WRAPPED=0
        j=0
        while [ $j -lt "$2" ]; do
                "$KEKCTL" ${3:+-s "$3"} wrap "$1" --context c <"$TESTDIR/aek" >"$TESTDIR/blob" 2>"$TESTDIR/err" &&
                        WRAPPED=$((WRAPPED + 1))
                j=$((j + 1))
        done
        [ "$WRAPPED" -eq "$2" ]
}
# wait_exit SECONDS: waits for our kekd to exit; its status in $KEKD_STATUS
wait_exit() {
        i=0
        while kill -0 "$KEKD_PID" 2>/dev/null && [ $i -lt $(($1 * 10)) ]; do
                sleep 0.1
                i=$((i + 1))
        done
        kill -0 "$KEKD_PID" 2>/dev/null && return 1
        wait "$KEKD_PID"
        KEKD_STATUS=$?
        KEKD_PID=""
}
log_has() {
        grep -qF -- "$1" "$TESTDIR/kekd.log"
}
# A wrap request for k1 (id 1, 2, 3), as kek-raw frames: the frame header
# (17 bytes), the id, then the body: wrap { key "k1", plaintext "aaaa", context "c" }.
WRAP_K1=520d0a026b311204616161611a0163
W1_HEAD=000000110801520d          # the header and the first 4 bytes of request 1
W1_TAIL=0a026b311204616161611a0163 # the rest of it
# drain_raw STEPS...: kek-raw in the background, its first step half a frame so
# that the connection is in the middle of a request when SIGTERM comes; then
# SIGTERM, and true if kekd says it drains for that client.
drain_raw() {
        "$KEK_RAW" "$SOCKET" "raw:$W1_HEAD" "$@" >"$TESTDIR/raw.out" 2>&1 &
        RAW_PID=$!
        i=0
        until log_has "pid $RAW_PID" || [ $i -ge 50 ]; do
                sleep 0.1
                i=$((i + 1))
        done
        n_stopping=$(grep -c "SIGTERM: stopping" "$TESTDIR/kekd.log")
        kill -TERM "$KEKD_PID"
        i=0
        until [ "$(grep -c "SIGTERM: stopping" "$TESTDIR/kekd.log")" -gt "$n_stopping" ] || [ $i -ge 50 ]; do
                sleep 0.1
                i=$((i + 1))
        done
        tail -n 3 "$TESTDIR/kekd.log" | grep -q "stopping once the 1 connected client is done"
}
raw_wait() {
        wait "$RAW_PID" 2>/dev/null
        RAW_PID=""
}

head -c 32 /dev/urandom >"$TESTDIR/aek"
ok "kekd starts on p11-fault" start_kekd

# --- 1. clean stops ------------------------------------------------------------
diag "1. SIGTERM gives the unused lease back"
"$KEKCTL" create k1 >/dev/null
ok "one wrap" wrap_n k1 1
is "while kekd runs, the count is 1" "$(wraps k1 1)" 1
ok "SIGTERM and restart" restart
w1=$(wraps k1 1)
is "after a clean restart, the count is exactly 1" "$w1" 1
ok "three more wraps" wrap_n k1 3
ok "SIGTERM and restart" restart
w2=$(wraps k1 1)
is "after another restart, exactly 4" "$w2" 4
ok "five more wraps" wrap_n k1 5
ok "SIGTERM and restart" restart
ok "SIGTERM and restart with no wrap in between" restart
w3=$(wraps k1 1)
is "after two more restarts, exactly 9" "$w3" 9
diag "wrap counts after restarts: $w1, $w2, $w3 (the old code: 1048576 after each)"
kc check
is "check finds the token consistent" "$KC_STATUS" 0

# --- 2. drains ------------------------------------------------------------------
diag "2. a drain settles too"
ok "SIGTERM while a client is in the middle of a wrap request starts the drain" \
        drain_raw hold:4000 "raw:${W1_TAIL}000000110802${WRAP_K1}000000110803${WRAP_K1}"
raw_wait
is "the three wraps it sends during the drain are served" "$(grep -c "ok=wrap" "$TESTDIR/raw.out")" 3
ok "kekd exits once the client is gone" wait_exit 10
is "... with status 0" "$KEKD_STATUS" 0
ok "kekd starts again" start_kekd
is "after the drain, the count is exactly 12" "$(wraps k1 1)" 12
# one wrap during the drain, then a frame header keeps the connection busy
: >"$FLOG"
ok "SIGTERM starts another drain" drain_raw hold:4000 "raw:${W1_TAIL}0000006408" hold:20000
i=0
until grep -q "^trace C_Encrypt CKR_OK" "$FLOG" || [ $i -ge 100 ]; do
        sleep 0.1
        i=$((i + 1))
done
ok "a wrap is served during the drain" grep -q "^trace C_Encrypt CKR_OK" "$FLOG"
ok "kekd still drains" kekd_alive
kill -TERM "$KEKD_PID"
ok "a second SIGTERM ends the drain at once" wait_exit 10
is "... with status 0" "$KEKD_STATUS" 0
kill -KILL "$RAW_PID" 2>/dev/null
raw_wait
ok "kekd starts again" start_kekd
is "after a drain cut short, the count is exactly 13" "$(wraps k1 1)" 13

# --- 3. wraps the HSM refuses ---------------------------------------------------
diag "3. a wrap the HSM refuses does not count"
"$KEKCTL" create k3 >/dev/null
ok "one wrap" wrap_n k3 1
for rule in 'C_Encrypt:rv=CKR_FUNCTION_FAILED' 'C_Encrypt:rv=CKR_DEVICE_ERROR' 'C_Encrypt:rv=CKR_FUNCTION_FAILED:after'; do
        : >"$FLOG"
        fault_set "$rule"
        kc wrap k3 --context c <"$TESTDIR/aek"
        fault_set ""
        ok "the wrap under $rule fails" test "$KC_STATUS" -ne 0
        ok "... as p11-fault injected it" grep -q "^C_Encrypt " "$FLOG"
        # a lost session makes the next calls wait for the reopen's backoff: bounded retries
        i=0
        until wrap_n k3 1 || [ $i -ge 20 ]; do
                sleep 0.2
                i=$((i + 1))
        done
        ok "... the next wrap succeeds" test "$WRAPPED" -eq 1
done
is "while kekd runs, the refused wraps are not counted (4 wraps made)" "$(wraps k3 1)" 4
ok "SIGTERM and restart" restart
is "nor after a restart" "$(wraps k3 1)" 4

# --- 4. two kekd on one token ----------------------------------------------------
diag "4. two kekd on one token give back only their own leases"
SOCK_A=$SOCKET
ok "a second kekd starts on the same token" kekd_b_start
"$KEKCTL" create k4 >/dev/null
i=0
until "$KEKCTL" -s "$SOCK_B" show k4 >/dev/null 2>&1 || [ $i -ge 50 ]; do
        sleep 0.1
        i=$((i + 1))
done
ok "two wraps through the first" wrap_n k4 2
ok "three wraps through the second" wrap_n k4 3 "$SOCK_B"
ok "two more through the first" wrap_n k4 2
kekd_stop TERM
is "the first stops cleanly" "$KEKD_STATUS" 0
# the second sees the record as the first left it (re-read at its refresh, 1 s)
i=0
until [ "$(wraps k4 1 "$SOCK_B")" = 7 ] || [ $i -ge 50 ]; do
        sleep 0.1
        i=$((i + 1))
done
is "the second counts 7 once the first gave its lease back" "$(wraps k4 1 "$SOCK_B")" 7
kill -TERM $PID_B
i=0
while kill -0 $PID_B 2>/dev/null && [ $i -lt 100 ]; do
        sleep 0.1
        i=$((i + 1))
done
wait $PID_B
is "the second stops cleanly" "$?" 0
PID_B=""
ok "the first starts again" start_kekd
is "the count is exactly 7" "$(wraps k4 1)" 7

# --- 5. kill -9 --------------------------------------------------------------------
diag "5. a crash costs at most one lease per version in use"
"$KEKCTL" create k5 >/dev/null
"$KEKCTL" create k6 --max-wraps 160 >/dev/null
ok "three wraps with k5" wrap_n k5 3
ok "three wraps with k6" wrap_n k6 3
w5=$(wraps k1 1)
kekd_stop KILL
ok "kill -9 and restart" start_kekd
c5=$(wraps k5 1)
c6=$(wraps k6 1)
is "k5 (budget 2^30) counts the one lease taken: 2^20" "$c5" 1048576
is "k6 (budget 160) counts its one lease: 160 / 16 = 10" "$c6" 10
is "k1, not wrapped with since the last restart, lost nothing" "$(wraps k1 1)" "$w5"
diag "after kill -9: 3 wraps counted as $c5 (budget 2^30), 3 as $c6 (budget 160)"
ok "SIGTERM and restart" restart
is "a clean stop after the crash does not give back what the crash lost" "$(wraps k5 1)" 1048576
kc check
is "check finds the token consistent" "$KC_STATUS" 0

kekd_stop
done_testing
