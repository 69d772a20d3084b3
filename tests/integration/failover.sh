#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# Data-plane failover across tokens (issue 17 item 3, "Failover" under Show;
# docs/tokens-ha.md). Token A (preferred, [hsm] name a) runs on tests/p11-fault
# over SoftHSM2, token B ([hsm.b]) on SoftHSM2 and holds A's keys: they are
# copied with kekctl backup (on a kekd of A alone, backup mode trusted-wrap)
# and kekctl restore (on a kekd of B alone), as tests/integration/dr.sh does.
# Then one kekd serves both, and 64 clients (tests/kek-failover: 64 threads,
# each with a kek_client of its own, cache off) wrap and unwrap in a loop,
# bounded in count and time, through five phases:
#   before     A healthy;
#   errors     every call to A fails with CKR_DEVICE_ERROR;
#   absent     every call to A fails with CKR_TOKEN_NOT_PRESENT (removed);
#   slow       A answers every C_Encrypt and C_Decrypt after 1 s (see below);
#   recovered  the fault is lifted.
# Asserted: no request fails in any phase (0 allowed: the call that meets the
# fault is run once more on B in the same request, so no request in flight at
# the fault fails either); kekd logs the change of serving token once each
# way and how long the failover took (printed); status, status --json and the
# metrics name the serving token; B's failover ops rise during the outage and
# stop once traffic is back on A, whose own C_Encrypt calls (traced by
# p11-fault) rise again; the failures met on A are counted on A, none on B;
# blobs made on B during the outage unwrap on A afterwards (same key objects).
#
# "slow" delays the cryptographic calls, not every call: the probes of all
# tokens run on one thread, so with every call of A taking 1 s, A's probe
# (about 8 calls) holds up B's past its overdue bound and B is shown degraded
# ("another token's probe has not returned"): then no token can serve.
# Every wait is for a state, bounded in time; nothing asserts elapsed time.
. "$TESTLIB"

if [ ! -f "${P11_FAULT_LIB:-}" ]; then
        echo "Bail out! P11_FAULT_LIB not built (make check builds it)"
        exit 99
fi
TRUST_KEY=$(dirname "$KEKD")/../contrib/kekd-trust-key
BK=$TESTDIR/backups
mkdir -p "$BK"
THREADS=64
KEY=f0

p11_fault_setup
P11_FAULT_TRACE=C_Encrypt
export P11_FAULT_TRACE
token_init fo-b
token_init fo-a
backup_ceremony fo-a fo-b

# config MODULE URI: kekd.conf for one token with the [backup] section
config() {
        TOKEN_URI=$2
        kekd_config
        conf_tokens module "$1" backup "$BK"
}

# --- A's keys, copied to B ----------------------------------------------------
config "$P11_FAULT_LIB" pkcs11:token=fo-a
ok "kekd on A alone starts" kekd_start
succeeds "backup mode trusted-wrap" vault --backup trusted-wrap
succeeds "key $KEY created on A" create "$KEY"
succeeds "its version 2" rotate "$KEY"
succeeds "kekctl backup of A" backup --to a1
kekd_stop
config "$SOFTHSM2_MODULE" pkcs11:token=fo-b
ok "kekd on B alone starts" kekd_start
succeeds "kekctl restore on B" restore --from a1
contains "... the key and its versions" "$TESTDIR/out" "Restored 1 keys, 2 versions."
kekd_stop

# --- one kekd, A preferred, B further ------------------------------------------
config "$P11_FAULT_LIB" pkcs11:token=fo-a
conf_tokens name a 2 hsm.b "$SOFTHSM2_MODULE" fo-b
: >"$TESTDIR/kekd.log"
ok "kekd starts with A preferred and B" kekd_start

field() { token_field "$@"; }
is_field() { token_field_is "$@"; }
# metric NAME TOKEN: the value of a per-token metric
metric() {
        "$KEKCTL" status --prometheus 2>/dev/null | sed -n "s/^$1{token=\"$2\"} //p"
}
# rises NAME TOKEN FROM: the metric is above FROM
rises() {
        [ "$(metric "$1" "$2")" -gt "$3" ] 2>/dev/null
}
# a_encrypts: C_Encrypt calls A answered, as p11-fault traced them (probes included)
a_encrypts() {
        grep -c "^trace C_Encrypt CKR_OK" "$FLOG"
}
phase() {
        printf '%s\n' "$1" >"$TESTDIR/phase.tmp" && mv -f "$TESTDIR/phase.tmp" "$TESTDIR/phase"
}

ok "B becomes active within 20 s" wait_for 20 is_field b state active
# B holds A's keys (restored above) and is kept a copy by replication ([backup] keys): in sync before any fault.
ok "B is in sync (not stale) within 30 s" wait_for 30 is_field b stale false
ok "A serves: status --json" is_field a serving true
is "metrics: kekd_token_serving{a} 1" "$(metric kekd_token_serving a)" 1
is "metrics: kekd_token_serving{b} 0" "$(metric kekd_token_serving b)" 0
is "no failover op yet" "$(metric kekd_token_failover_ops_total b)" 0
kc status
contains "status: A is the serving token" "$TESTDIR/out" "a ('fo-a', preferred, serving): active"

phase before
"$KEK_FAILOVER" "$SOCKET" "$KEY" "$TESTDIR" "$THREADS" 300 >"$TESTDIR/clients" 2>&1 &
CLIENTS=$!
# wait_ops N: A traced more than N C_Encrypt calls
more_encrypts() {
        [ "$(a_encrypts)" -gt "$1" ]
}
ok "the clients run on A (1000 of A's encryptions within 60 s)" wait_for 60 more_encrypts 1000
sleep 2

# --- errors -------------------------------------------------------------------
phase errors
fault_set '*:rv=CKR_DEVICE_ERROR:count=inf'
ok "B serves within 20 s (failover ops rise)" wait_for 20 rises kekd_token_failover_ops_total b 0
ok "status --json: B is the serving token" wait_for 10 is_field b serving true
ok "... and A is not" is_field a serving false
ok "the fault really fired" grep -q "CKR_DEVICE_ERROR" "$FLOG"
ok "kekd logs the change of serving token" grep -q "Serving from token 'b': token 'a' is" "$TESTDIR/kekd.log"
FAILOVER=$(sed -n "s/.*Serving from token 'b': token 'a' is .*failed over in \([0-9.]*\) ms.*/\1/p" "$TESTDIR/kekd.log" | head -1)
ok "... with the failover time" test -n "$FAILOVER"
diag "failover time (A's failed call -> served by B, in the same request): $FAILOVER ms"
diag "$(grep "Serving from token 'b'" "$TESTDIR/kekd.log" | head -1)"
ok "A is unavailable within 20 s" wait_for 20 is_field a state unavailable
ok "the failures met on A are counted on A" test "$(field a request_errors)" -ge 1
is "... and none on B" "$(field b request_errors)" 0
kc status
contains "status: B is the serving token" "$TESTDIR/out" "b ('fo-b', serving): active"
is "metrics: kekd_token_serving{b} 1" "$(metric kekd_token_serving b)" 1
sleep 3

# --- absent -------------------------------------------------------------------
phase absent
n=$(metric kekd_token_failover_ops_total b)
fault_set '*:rv=CKR_TOKEN_NOT_PRESENT:count=inf'
ok "B keeps serving while A is removed (20 s)" wait_for 20 rises kekd_token_failover_ops_total b "$((n + 1000))"
ok "removed really fired" wait_for 10 grep -q "CKR_TOKEN_NOT_PRESENT" "$FLOG"
sleep 3

# --- slow ---------------------------------------------------------------------
phase slow
fault_set 'C_Encrypt:delay_ms=1000
C_Decrypt:delay_ms=1000'
ok "A answers its probe slowly: degraded within 30 s" wait_for 30 is_field a state degraded
n=$(metric kekd_token_failover_ops_total b)
ok "B keeps serving while A is slow (20 s)" wait_for 20 rises kekd_token_failover_ops_total b "$((n + 1000))"
ok "the delay really fired" grep -q "delay_ms=1000" "$FLOG"
sleep 2

# --- recovered ----------------------------------------------------------------
phase recovered
fault_set ""
ok "A is active again within 30 s" wait_for 30 is_field a state active
ok "A serves again (status --json, 20 s)" wait_for 20 is_field a serving true
ok "kekd logs the return" grep -q "Serving from token 'a' again" "$TESTDIR/kekd.log"
is "metrics: kekd_token_serving{a} 1" "$(metric kekd_token_serving a)" 1
sleep 1
n=$(metric kekd_token_failover_ops_total b)
e=$(a_encrypts)
ok "A's own encryptions rise again (1000 more within 30 s)" wait_for 30 more_encrypts "$((e + 1000))"
is "... while B served none of them" "$(metric kekd_token_failover_ops_total b)" "$n"
ok "the clients are still running" kill -0 "$CLIENTS"
phase stop
pid_reap "$CLIENTS" 60
is "the clients end (bounded: 300 s, 60 s after stop)" "$?" 0
sed 's/^/#   /' "$TESTDIR/clients"

# fails PHASE: the failures the clients counted in PHASE
fails() {
        sed -n "s/^phase $1 .*failed=\([0-9]*\).*/\1/p" "$TESTDIR/clients"
}
oks() {
        sed -n "s/^phase $1 ok=\([0-9]*\).*/\1/p" "$TESTDIR/clients"
}
for p in before errors absent slow recovered; do
        ok "phase $p: requests ran ($(oks $p) succeeded)" test "$(oks $p)" -gt 0
        is "phase $p: no request failed" "$(fails $p)" 0
done

# Blobs made on B during the outage open on A: same key objects.
n=$(metric kekd_token_failover_ops_total b)
for p in errors absent slow; do
        "$KEK_DR" "$SOCKET" unwrap "$TESTDIR/blobs-$p" >"$TESTDIR/u-$p" 2>&1
        contains "blobs made in phase $p unwrap ($(wc -l <"$TESTDIR/blobs-$p") kept)" "$TESTDIR/u-$p" \
                "unwrapped $(wc -l <"$TESTDIR/blobs-$p") of $(wc -l <"$TESTDIR/blobs-$p")"
done
is "... on A: B served none of them" "$(metric kekd_token_failover_ops_total b)" "$n"

# --- A cannot list its objects: the index is not re-read, it keeps serving ----------
# A's session is lost once (its index's handles are then in doubt) while every search
# on A fails; its probe makes no search, so A stays or becomes active again. A request
# re-reads the index first: before this was fixed, that failed re-read failed the
# request at once; now the last index serves and the call goes to B.
head -c 32 /dev/urandom >"$TESTDIR/aek0"
fault_set 'C_FindObjectsInit:rv=CKR_DEVICE_ERROR:count=inf
C_Encrypt:rv=CKR_SESSION_HANDLE_INVALID:count=1'
KC_IN="$TESTDIR/aek0" succeeds "a wrap whose call met A's lost session is served (on B)" wrap "$KEY"
ok "A is active again within 20 s (its probe makes no search)" wait_for 20 is_field a state active
fails=0
for i in 1 2 3 4 5; do
        KC_IN="$TESTDIR/aek0" kc wrap "$KEY"
        [ "$KC_STATUS" -eq 0 ] || { fails=$((fails + 1)); diag "wrap $i: $(cat "$TESTDIR/err")"; }
done
is "5 wraps while A's index cannot be re-read: none fails" "$fails" 0
ok "A's searches really failed" grep -q "C_FindObjectsInit CKR_DEVICE_ERROR" "$FLOG"
fault_set ""
ok "kekd lives on" kekd_alive
kekd_stop
is "kekd stops cleanly" "$KEKD_STATUS" 0
done_testing
