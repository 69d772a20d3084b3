#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# PKCS#11 faults: kekd runs on tests/p11-fault (a module wrapping SoftHSM2
# that fails chosen calls, see the header of p11-fault.c), switched on and
# off through $P11_FAULT_FILE while kekd keeps running. Every scenario checks
# in $P11_FAULT_LOG that its fault really fired, then the outcome:
#  1. C_Encrypt CKR_DEVICE_ERROR once: that wrap gets HSM_UNAVAILABLE, the next
#     one succeeds, kekd lives on.
#  2. CKR_SESSION_HANDLE_INVALID on C_Decrypt and C_EncryptInit, alone and
#     among 8 unwraps at once: kekd opens a new session, logs in again and
#     retries on the spot: the operation that met the loss succeeds, and so
#     does every one after or beside it, at its first try (none waits through
#     a reopen backoff).
#  3. CKR_USER_NOT_LOGGED_IN: kekd logs in again (a listing is retried, so is
#     a C_Encrypt, and the operations after it succeed at their first try);
#     CKR_TOKEN_NOT_PRESENT on every call for a window, CKR_DEVICE_REMOVED for
#     K calls: refusals are transient, kekd survives and recovers.
#  4. libkek serves cached AEKs through an HSM outage (fresh, and stale within
#     the grace period) while uncached unwraps and wraps fail transiently.
#  5. No lifecycle operation (create, rotate, disable, enable, delete, recover,
#     purge) is ever half applied: a fault at each position of each call kind
#     it makes (before the call, and "after": done but reported failed) leaves
#     the key as before or as after, kekd's answer agrees, `kekctl check` is
#     clean; the maintenance timer alone repairs what a failed rollback left.
#  6. delay_ms on C_Decrypt: unwraps still succeed, measurably slower.
#  7. rate=0.05 CKR_DEVICE_ERROR on every call during 300 mixed kekctl and
#     libkek operations: kekd never dies, never gives a definitive refusal
#     for a fault, no acknowledged wrap is lost, `kekctl check` is clean.
#  8. (with the timer out of the way) a lost session or login in the middle
#     of a listing, or on C_Decrypt, costs no request: each is retried once.
# No check asserts elapsed time: the machine may be busy. Waits are for a
# condition, bounded in time.
# Six kekd bugs were found with this test (the BUG_* texts below) and fixed;
# their assertions are ordinary failures. FAULT_STRICT=0 turns them back into
# TAP TODO (expected failures, with the bug in the reason) for bisecting.
. "$TESTLIB"

if [ ! -f "${P11_FAULT_LIB:-}" ] || [ ! -x "${P11_FAULT_CLIENT:-}" ]; then
        echo "Bail out! P11_FAULT_LIB or P11_FAULT_CLIENT not built (make check builds them)"
        exit 99
fi

p11_fault_setup
P11_FAULT_TRACE='*'
P11_FAULT_SEED=${P11_FAULT_SEED:-7}
export P11_FAULT_TRACE P11_FAULT_SEED
: >"$FLOG.all"
T_START=$(date +%s)

# --- helpers -------------------------------------------------------------------

fault_clear() {
        fault_set ""
}
# mark: start a new section of the fault log (earlier ones go to faults.log.all,
# so every look stays cheap); since: what was logged after the mark
mark() {
        cat "$FLOG" >>"$FLOG.all"
        : >"$FLOG"
}
since() {
        cat "$FLOG"
}
# fired FUNCTION RV: injected faults of that kind since the mark ("*" for any)
fired() {
        if [ "$1" = "*" ]; then
                grep -c "^C_[A-Za-z]* $2 " "$FLOG"
        else
                grep -c "^$1 $2 " "$FLOG"
        fi
}
now_ms() {
        echo $(($(date +%s%N) / 1000000))
}

# start_kekd: a fresh kekd.conf whose module is p11-fault, then kekd_start
start_kekd() {
        kekd_config
        sed -i "s|^module = .*|module = $P11_FAULT_LIB|" "$CONF"
        kekd_start
}

aek() {
        head -c 32 /dev/urandom >"$TESTDIR/$1"
}
wrap_to() { # wrap_to KEY CTX AEK BLOB
        "$KEKCTL" wrap "$1" --context "$2" <"$TESTDIR/$3" >"$TESTDIR/$4" 2>"$TESTDIR/err"
}
unwraps_to() { # unwraps_to CTX BLOB AEK
        "$KEKCTL" unwrap --context "$1" <"$TESTDIR/$2" 2>"$TESTDIR/err" | cmp -s - "$TESTDIR/$3"
}
# code: the error code kekctl printed ("kekctl: OP: CODE: message"), or "ok"
code() {
        if [ "$KC_STATUS" -eq 0 ]; then
                echo ok
        else
                CODE=$(sed -n '/^kekctl: [a-z-]*: [A-Z_]*: /{s/^kekctl: [a-z-]*: \([A-Z_]*\): .*/\1/p;q;}' "$TESTDIR/err")
                echo "${CODE:-exit$KC_STATUS}"
        fi
}
transient() {
        case $1 in
        HSM_UNAVAILABLE | CONFLICT) return 0 ;;
        esac
        return 1
}
# kstate KEY: "STATE:CURRENT" as kekd reports it, "absent", or "error:CODE"
kstate() {
        "$KEKCTL" --json version "$1" >"$TESTDIR/ks.out" 2>"$TESTDIR/ks.err"
        case $? in
        0)
                # one sed: "state current_version", in the order of the fields
                set -- $(sed -n -e 's/^  "state":"\(.*\)",*$/state=\1/p' -e 's/^  "current_version":\([0-9]*\),*$/cur=\1/p' "$TESTDIR/ks.out")
                for f in "$@"; do
                        case $f in
                        state=*) ks_state=${f#state=} ;;
                        cur=*) ks_cur=${f#cur=} ;;
                        esac
                done
                echo "$ks_state:$ks_cur"
                ;;
        *)
                if grep -q UNKNOWN_KEY "$TESTDIR/ks.err"; then
                        echo absent
                else
                        echo "error:$(sed -n 's/^kekctl: [a-z-]*: \([A-Z_]*\): .*/\1/p' "$TESTDIR/ks.err")"
                fi
                ;;
        esac
}
# wait_until SECONDS COMMAND...: polls every 0.1 s; the elapsed ms in $WAITED
wait_until() {
        limit=$(($1 * 10))
        shift
        t0=$(now_ms)
        i=0
        while [ $i -lt $limit ]; do
                if "$@"; then
                        WAITED=$(($(now_ms) - t0))
                        return 0
                fi
                sleep 0.1
                i=$((i + 1))
        done
        WAITED=$(($(now_ms) - t0))
        return 1
}
wrap_works() {
        wrap_to "$1" probe aek1 probe.blob
}
# at_once N: N unwraps of b1 and N wraps under s1 in a row, right away, no retry;
# prints how many failed (a request that meets a reopen backoff fails at once)
at_once() {
        n_fail=0
        j=0
        while [ $j -lt "$1" ]; do
                unwraps_to c1 b1 aek1 || n_fail=$((n_fail + 1))
                wrap_to s1 c1 aek1 b1n || n_fail=$((n_fail + 1))
                j=$((j + 1))
        done
        echo $n_fail
}
check_clean() {
        kc check
        [ "$KC_STATUS" -eq 0 ]
}
# known_bug COUNT DESCRIPTION BUG: ok when COUNT is 0; otherwise a failure naming
# the bug, or with FAULT_STRICT=0 "not ok ... # TODO kekd bug: BUG"
known_bug() {
        tap_n=$((tap_n + 1))
        if [ "$1" -eq 0 ]; then
                echo "ok $tap_n - $2"
        elif [ "${FAULT_STRICT:-1}" != 0 ]; then
                echo "not ok $tap_n - $2 ($1 cases; kekd bug: $3)"
                tap_failed=$((tap_failed + 1))
        else
                echo "not ok $tap_n - $2 ($1 cases) # TODO kekd bug: $3"
        fi
}
BUG_ORPHAN="a rollback that cannot destroy a new key object still clears its intent (keystore_rotate, keystore_create): the object is orphaned, never repaired, and its version ID is reused"
BUG_MISSING="a record write that fails after the record was created (reply lost, or the listing after it and the withdrawal fail) is taken as not done: the key object the record names is destroyed (keystore_rotate, keystore_create)"
BUG_PRESENT="a transient failure of hsm_find_key() in index_put() marks a version absent: wraps get a definitive UNKNOWN_VERSION until the next reload"
BUG_STALE="after a record write whose reply was lost without a session loss, kekd keeps answering the old state until its next reload"
BUG_CONTESTED="record_contested() compares object handles across a session reopen: kekd takes its own new record for a concurrent writer's and re-applies the change on top of itself (delete: KEY_DELETED, recover: INVALID_ARGUMENT)"
# problem_kind LINE: which known kekd bug a `kekctl check` PROBLEM line is, or "other"
problem_kind() {
        case $1 in
        *"(orphan)"*) echo orphan ;;
        *"missing from the token"*) echo missing ;;
        *) echo other ;;
        esac
}
# dup_versions KEY: how many of KEY's version IDs have more than one key object in the token
dup_versions() {
        "$KEK_TEST_ATTRS" "$SOFTHSM2_MODULE" "$TOKEN_URI" "$TESTDIR/pin" "$1" 2>/dev/null |
                sed -n "s/^$1 v\([0-9]*\):.*/\1/p" | sort | uniq -d | wc -l
}

# The libkek client (tests/p11-fault/fault-client), one process for the whole
# test, driven through two FIFOs: "client CMD..." leaves its answer in $CL.
CLIENT_PID=""
client_start() {
        mkfifo "$TESTDIR/cin" "$TESTDIR/cout" || return 1
        "$P11_FAULT_CLIENT" -s "$SOCKET" -r 6 -g 300 -t 3000 <"$TESTDIR/cin" >"$TESTDIR/cout" 2>>"$TESTDIR/client.err" &
        CLIENT_PID=$!
        exec 3>"$TESTDIR/cin" 4<"$TESTDIR/cout"
        read -r CL <&4 || CL="err EOF"
        [ "$CL" = ready ]
}
client() {
        echo "$*" >&3
        read -r CL <&4 || CL="err EOF definitive"
}
client_field() { # client_field NAME: NAME=VALUE from $CL
        echo "$CL" | tr ' ' '\n' | sed -n "s/^$1=//p"
}
client_stop() {
        if [ -n "$CLIENT_PID" ]; then
                echo quit >&3 2>/dev/null
                exec 3>&- 4<&-
                pid_reap "$CLIENT_PID" 2
                CLIENT_PID=""
        fi
}
trap 'client_stop; cleanup' EXIT

# --- setup -----------------------------------------------------------------------
REFRESH_INTERVAL=1
token_init fault
ok "kekd starts on the p11-fault module" start_kekd
ok "kekd loaded the module (its calls are traced)" grep -q '^trace C_Login CKR_OK' "$FLOG"
# A new session logs in; the token may still be logged in through another one (the
# refresh's session, and the workers' with [hsm] sessions > 1): the login is then refused
# as already done, which kekd accepts.
LOGIN_AGAIN='^trace C_Login CKR_\(OK\|USER_ALREADY_LOGGED_IN\)'
aek aek1
succeeds "create s1" create s1
ok "wrap under s1" wrap_to s1 c1 aek1 b1

# Scenario 4 starts here: the client caches an AEK now; the outage comes after
# its refresh interval (6 s), so it must re-validate and fall back to the cache.
ok "libkek client starts" client_start
aek aek4
succeeds "create s4" create s4
ok "wrap for the libkek client" wrap_to s4 c4 aek4 b4
aek aek4x
ok "a second blob the client never unwraps" wrap_to s4 c4x aek4x b4x
client unwrap c4 "$TESTDIR/b4" "$TESTDIR/aek4"
is "the client unwraps through kekd (cache miss)" "$(echo "$CL" | cut -d' ' -f1):$(client_field sent)" "ok:1"
T_CACHED=$(now_ms)

# --- 1. C_Encrypt CKR_DEVICE_ERROR once --------------------------------------------
diag "1. C_Encrypt CKR_DEVICE_ERROR once (at $(($(date +%s) - T_START)) s)"
mark
fault_set 'C_Encrypt:rv=CKR_DEVICE_ERROR'
refused HSM_UNAVAILABLE "a wrap whose C_Encrypt fails with CKR_DEVICE_ERROR" wrap s1 --context c1 <"$TESTDIR/aek1"
is "... kekctl exits 1 (refused by kekd)" "$KC_STATUS" 1
is "... the fault fired once" "$(fired C_Encrypt CKR_DEVICE_ERROR)" 1
ok "the next wrap succeeds" wrap_to s1 c1 aek1 b1b
ok "... and its blob unwraps" unwraps_to c1 b1b aek1
is "... and so do the 5 unwraps and 5 wraps after it, at their first try" "$(at_once 5)" 0
ok "kekd is alive" kekd_alive
ok "kekd logged the refused wrap as HSM_UNAVAILABLE" grep -q "s1'.*failed.*HSM_UNAVAILABLE" "$TESTDIR/kekd.log"

# --- 2. CKR_SESSION_HANDLE_INVALID --------------------------------------------------
diag "2. CKR_SESSION_HANDLE_INVALID on C_Decrypt, then on C_EncryptInit (at $(($(date +%s) - T_START)) s)"
for fn in C_Decrypt C_EncryptInit; do
        mark
        fault_set "$fn:rv=CKR_SESSION_HANDLE_INVALID"
        if [ $fn = C_Decrypt ]; then
                kc unwrap --context c1 <"$TESTDIR/b1"
        else
                kc wrap s1 --context c1 <"$TESTDIR/aek1"
        fi
        is "$fn: the operation that met the lost session succeeds (new session, login, one retry)" "$(code)" ok
        is "... the fault fired once" "$(fired $fn CKR_SESSION_HANDLE_INVALID)" 1
        is "... the 5 unwraps and 5 wraps after it all succeed at their first try" "$(at_once 5)" 0
        ok "... kekd opened a new session" grep -q '^trace C_OpenSession CKR_OK' "$FLOG"
        ok "... and logged in again" grep -q "$LOGIN_AGAIN" "$FLOG"
done
# Requests in flight together (several connections; with [hsm] sessions > 1 kekd runs them
# as one group over its sessions): the loss met by one of them costs none of them.
mark
fault_set 'C_Decrypt:rv=CKR_SESSION_HANDLE_INVALID'
pids=""
for j in 1 2 3 4 5 6 7 8; do
        "$KEKCTL" unwrap --context c1 <"$TESTDIR/b1" >"$TESTDIR/par.$j" 2>"$TESTDIR/par.$j.err" &
        pids="$pids $!"
done
for pid in $pids; do
        wait "$pid"
done
n_fail=0
for j in 1 2 3 4 5 6 7 8; do
        # the plaintext came out, or that unwrap failed (its error is shown)
        if ! cmp -s "$TESTDIR/par.$j" "$TESTDIR/aek1"; then
                n_fail=$((n_fail + 1))
                diag "unwrap $j: $(cat "$TESTDIR/par.$j.err")"
        fi
done
is "8 unwraps at once, one of them meets CKR_SESSION_HANDLE_INVALID: none fails" "$n_fail" 0
is "... the fault fired once" "$(fired C_Decrypt CKR_SESSION_HANDLE_INVALID)" 1
ok "kekd is alive" kekd_alive

# --- 3. not logged in; token gone for a while ---------------------------------------------
diag "3. CKR_USER_NOT_LOGGED_IN; CKR_TOKEN_NOT_PRESENT and CKR_DEVICE_REMOVED windows (at $(($(date +%s) - T_START)) s)"
mark
fault_set 'C_FindObjectsInit:rv=CKR_USER_NOT_LOGGED_IN'
succeeds "a disable whose listing meets CKR_USER_NOT_LOGGED_IN succeeds (new login, one retry)" disable s1
is "... the fault fired once" "$(fired C_FindObjectsInit CKR_USER_NOT_LOGGED_IN)" 1
ok "... kekd logged in again" grep -q "$LOGIN_AGAIN" "$FLOG"
is "... and the key is disabled" "$(kstate s1)" "disabled:1"
succeeds "enable s1 again" enable s1
mark
fault_set 'C_Encrypt:rv=CKR_USER_NOT_LOGGED_IN'
kc wrap s1 --context c1 <"$TESTDIR/aek1"
is "a wrap whose C_Encrypt meets CKR_USER_NOT_LOGGED_IN succeeds (new login, one retry)" "$(code)" ok
is "... the fault fired once" "$(fired C_Encrypt CKR_USER_NOT_LOGGED_IN)" 1
is "... the 5 unwraps and 5 wraps after it all succeed at their first try" "$(at_once 5)" 0
ok "... after a new login" grep -q "$LOGIN_AGAIN" "$FLOG"

mark
fault_set '*:rv=CKR_TOKEN_NOT_PRESENT:count=inf'
refused HSM_UNAVAILABLE "token not present: wrap" wrap s1 --context c1 <"$TESTDIR/aek1"
refused HSM_UNAVAILABLE "token not present: unwrap" unwrap --context c1 <"$TESTDIR/b1"
refused HSM_UNAVAILABLE "token not present: rotate" rotate s1
# libkek: a cached AEK is served (fresh: without asking kekd; if this machine
# is so slow that 6 s have passed already: stale, after kekd refused transiently)
client unwrap c4 "$TESTDIR/b4" "$TESTDIR/aek4"
ok "token not present: the libkek client serves its cached AEK ($CL)" \
        test "$(echo "$CL" | cut -d' ' -f1):$(($(client_field hit) + $(client_field stale)))" = "ok:1"
sleep 1.2 # the maintenance timer runs into the outage too
ok "kekd survives 1 s without a token (timer included)" kekd_alive
refused HSM_UNAVAILABLE "... and still refuses transiently" wrap s1 --context c1 <"$TESTDIR/aek1"
n=$(fired '*' CKR_TOKEN_NOT_PRESENT)
ok "the faults fired ($n calls failed)" test "$n" -ge 3
fault_clear
ok "service resumes once the token is back (waited up to 30 s)" wait_until 30 wrap_works s1
diag "recovered $WAITED ms after the token came back"
ok "a blob from before the outage unwraps" unwraps_to c1 b1 aek1

mark
fault_set '*:rv=CKR_DEVICE_REMOVED:count=5'
kc wrap s1 --context c1 <"$TESTDIR/aek1"
is "device removed: wrap refused transiently" "$(code)" HSM_UNAVAILABLE
ok "service resumes by itself after 5 failed calls (waited up to 30 s)" wait_until 30 wrap_works s1
diag "recovered after $WAITED ms"
is "... exactly 5 calls failed" "$(fired '*' CKR_DEVICE_REMOVED)" 5
fault_clear
ok "kekd is alive" kekd_alive
ok "check is clean after the outages" check_clean

# --- 6. latency ---------------------------------------------------------------------
diag "6. delay_ms on C_Decrypt (at $(($(date +%s) - T_START)) s)"
t0=$(now_ms)
i=0
bad=0
while [ $i -lt 5 ]; do
        unwraps_to c1 b1 aek1 || bad=$((bad + 1))
        i=$((i + 1))
done
t_base=$(($(now_ms) - t0))
mark
fault_set 'C_Decrypt:delay_ms=150'
t0=$(now_ms)
i=0
while [ $i -lt 5 ]; do
        unwraps_to c1 b1 aek1 || bad=$((bad + 1))
        i=$((i + 1))
done
t_slow=$(($(now_ms) - t0))
fault_clear
is "all 10 unwraps succeed, with and without 150 ms on C_Decrypt" "$bad" 0
is "... the delay fired for each of the 5 slow ones" "$(since | grep -c '^C_Decrypt delay_ms=150 ')" 5
# A lower bound only (the delays are sleeps in the module); $t_base is for the log, as any
# upper bound or comparison would be with the machine busy.
diag "5 unwraps in $t_base ms, 5 with the delay in $t_slow ms"
ok "... which took at least 5 x 150 ms ($t_slow ms)" test "$t_slow" -ge 750

# --- 4. libkek through an outage ----------------------------------------------------
diag "4. libkek serves its cache through an outage (at $(($(date +%s) - T_START)) s)"
elapsed=$(($(now_ms) - T_CACHED))
[ $elapsed -lt 6500 ] && sleep "$(echo "6500 $elapsed" | awk '{ printf "%.3f", ($1 - $2) / 1000 }')"
mark
fault_set '*:rv=CKR_DEVICE_ERROR:count=inf'
client unwrap c4 "$TESTDIR/b4" "$TESTDIR/aek4"
is "HSM down: the cached AEK, due for re-validation, is still served (stale, within grace)" \
        "$(echo "$CL" | cut -d' ' -f1):$(client_field stale)" "ok:1"
ok "... after kekd was asked (a round trip was made)" test "$(client_field sent)" -ge 1
client unwrap c4x "$TESTDIR/b4x" "$TESTDIR/aek4x"
is "HSM down: an AEK not in the cache fails transiently" "$(echo "$CL" | cut -d' ' -f1-3)" "err HSM_UNAVAILABLE transient"
client wrap s4 c4y "$TESTDIR/aek4" "$TESTDIR/b4y"
is "HSM down: a fresh wrap through libkek fails transiently" "$(echo "$CL" | cut -d' ' -f1-3)" "err HSM_UNAVAILABLE transient"
refused HSM_UNAVAILABLE "HSM down: a fresh wrap through kekctl" wrap s4 --context c4 <"$TESTDIR/aek4"
n=$(fired '*' CKR_DEVICE_ERROR)
ok "the outage's faults fired ($n calls failed)" test "$n" -ge 2
fault_clear
ok "service resumes after the outage (waited up to 30 s)" wait_until 30 wrap_works s4
client unwrap c4x "$TESTDIR/b4x" "$TESTDIR/aek4x"
is "the AEK that failed during the outage now unwraps" "$(echo "$CL" | cut -d' ' -f1)" ok
client stats
diag "libkek client: $CL"

# --- 7. random faults -------------------------------------------------------------------
diag "7. rate=0.05 CKR_DEVICE_ERROR on every call, 300 mixed operations (seed $P11_FAULT_SEED) (at $(($(date +%s) - T_START)) s)"
for k in r0 r1 r2 r3; do
        "$KEKCTL" create "$k" >/dev/null 2>&1
done
aek aekr
wrap_to r0 cr aekr br0
ok "four keys and a blob before the faults" test -s "$TESTDIR/br0"
mkdir "$TESTDIR/rand"
: >"$TESTDIR/rand/tried"
: >"$TESTDIR/rand/created"
mark
fault_set '*:rv=CKR_DEVICE_ERROR:rate=0.05'
n_ok=0
n_transient=0
n_bad=0
n_unknown_version=0
i=0
t7=$(now_ms)
t_end=$(($(date +%s) + 150)) # a bound for a very busy machine, not a measure
while [ $i -lt 300 ] && [ "$(date +%s)" -lt $t_end ]; do
        k=r$((i % 4))
        case $((i % 10)) in
        0 | 1)
                kc wrap $k --context "x$i" <"$TESTDIR/aekr"
                if [ "$KC_STATUS" -eq 0 ]; then
                        cp "$TESTDIR/out" "$TESTDIR/rand/$i.blob"
                        echo "x$i" >"$TESTDIR/rand/$i.ctx"
                fi
                ;;
        2 | 3) client unwrap cr "$TESTDIR/br0" "$TESTDIR/aekr" ;;
        4)
                client wrap $k "y$i" "$TESTDIR/aekr" "$TESTDIR/rand/$i.tmp"
                case $CL in
                ok*)
                        mv "$TESTDIR/rand/$i.tmp" "$TESTDIR/rand/$i.blob"
                        echo "y$i" >"$TESTDIR/rand/$i.ctx"
                        ;;
                esac
                ;;
        5) kc unwrap --context cr <"$TESTDIR/br0" ;;
        6) kc rewrap --context cr <"$TESTDIR/br0" ;;
        7) kc rotate $k ;;
        8)
                kc create "n$i"
                [ "$KC_STATUS" -eq 0 ] && echo "n$i" >>"$TESTDIR/rand/created"
                echo "n$i" >>"$TESTDIR/rand/tried"
                ;;
        9) kc show $k ;;
        esac
        case $((i % 10)) in
        2 | 3 | 4)
                set -- $CL
                res=$1
                c=$2
                [ "$res" = ok ] || [ "$3" != transient ] || c=HSM_UNAVAILABLE
                what="op $i (libkek $CL)"
                ;;
        *)
                c=$(code)
                res=$c
                what="op $i ($(cat "$TESTDIR/err"))"
                ;;
        esac
        if [ "$res" = ok ]; then
                n_ok=$((n_ok + 1))
        elif transient "$c"; then
                n_transient=$((n_transient + 1))
        elif [ "$c" = UNKNOWN_VERSION ]; then
                n_unknown_version=$((n_unknown_version + 1))
                diag "$what"
        else
                n_bad=$((n_bad + 1))
                diag "$what"
        fi
        kekd_alive || break
        i=$((i + 1))
done
n_fired=$(fired '*' CKR_DEVICE_ERROR)
fault_clear
t7=$(($(now_ms) - t7))
diag "$i operations in $t7 ms: $n_ok ok, $n_transient refused transiently, $n_unknown_version UNKNOWN_VERSION, $n_bad otherwise; $n_fired faults injected"
ok "kekd never died" kekd_alive
ok "300 operations ran, or as many as 150 s allowed (at least 100): $i" test "$i" -ge 100
ok "faults fired ($n_fired)" test "$n_fired" -ge 10
# At least 1 in 4 succeeds; 1 in 8 under valgrind ($KEKD_WRAPPER, make memcheck), which runs kekd
# 10-50 x slower with its threads taking turns (the refresh's reading holds the lock while the loop
# waits), so more requests fall into the reopen backoff of a lost session: 71-119 of 300 measured there.
min_ok_div=4
[ -n "${KEKD_WRAPPER:-}" ] && min_ok_div=8
ok "some operations still succeeded ($n_ok of $i, at least 1 in $min_ok_div)" test "$((n_ok * min_ok_div))" -ge "$i"
is "no operation got a definitive refusal because of a fault (but UNKNOWN_VERSION)" "$n_bad" 0
known_bug $n_unknown_version "no operation got UNKNOWN_VERSION because of a fault" "$BUG_PRESENT"
ok "service resumes after the faults (waited up to 30 s)" wait_until 30 wrap_works s1
kc check
cp "$TESTDIR/out" "$TESTDIR/check7.out"
sed 's/^/#   | /' "$TESTDIR/check7.out"
n_orphan=0
n_missing=0
n_other=0
while read -r line; do
        [ -n "$line" ] || continue
        case $(problem_kind "$line") in
        orphan) n_orphan=$((n_orphan + 1)) ;;
        missing) n_missing=$((n_missing + 1)) ;;
        *) n_other=$((n_other + 1)) ;;
        esac
done <<EOT
$(grep '^PROBLEM' "$TESTDIR/check7.out")
EOT
is "check after the faults finds no problem but the known ones" "$n_other" 0
known_bug $n_orphan "check after the faults: no orphaned key object" "$BUG_ORPHAN"
known_bug $n_missing "check after the faults: no version named in a record is missing" "$BUG_MISSING"
lost=0
lost_dup=0
n_blobs=0
for b in "$TESTDIR"/rand/*.blob; do
        [ -f "$b" ] || continue
        n_blobs=$((n_blobs + 1))
        if ! "$KEKCTL" unwrap --context "$(cat "${b%.blob}.ctx")" <"$b" 2>"$TESTDIR/lost.err" | cmp -s - "$TESTDIR/aekr"; then
                # blob v1: 0x01 | len | key name | version (BE32) | ...
                len=$(od -An -tu1 -j1 -N1 "$b" | tr -d ' ')
                k=$(dd if="$b" bs=1 skip=2 count="$len" 2>/dev/null)
                v=$(od -An -tu1 -j$((2 + len)) -N4 "$b" | awk '{ print $1 * 16777216 + $2 * 65536 + $3 * 256 + $4 }')
                diag "lost: a blob of key '$k' version $v: $(cat "$TESTDIR/lost.err")"
                # a version with two key objects (a reused ID) or none is a known bug, not a new one
                if [ "$(dup_versions "$k")" -gt 0 ] ||
                        grep -q "key '$k' version $v is named in its record but missing" "$TESTDIR/check7.out"; then
                        lost_dup=$((lost_dup + 1))
                else
                        lost=$((lost + 1))
                fi
        fi
done
is "every acknowledged wrap of the run unwraps afterwards ($n_blobs blobs)" "$lost" 0
known_bug $lost_dup "no acknowledged wrap lost to a version with two key objects or none" "$BUG_ORPHAN; $BUG_MISSING"
half=0
n_created=0
for k in $(cat "$TESTDIR/rand/tried"); do
        s=$(kstate "$k")
        if grep -qx "$k" "$TESTDIR/rand/created"; then
                n_created=$((n_created + 1))
                [ "$s" = enabled:1 ] || half=$((half + 1))
        else
                [ "$s" = enabled:1 ] || [ "$s" = absent ] || half=$((half + 1))
        fi
done
is "every create of the run is whole or absent ($n_created acknowledged)" "$half" 0

client_stop

# --- 5. lifecycle operations under a fault at every position --------------------------------
diag "5. lifecycle operations never half applied (at $(($(date +%s) - T_START)) s)"
# A token of its own, and the timer out of the way (it would take the faults
# meant for the operation); `kekctl check` repairs what a failed operation left.
kekd_stop
REFRESH_INTERVAL=3600
token_init faultlc
ok "kekd restarts on a second token with the timer out of the way" start_kekd

MAXPOS=${FAULT_MAX_POSITIONS:-8}
N_ROTATE_FINDOBJECTS=10
seq=0
lc_iter=0
lc_refused=0
lc_nofire=0
lc_setup_bad=0
lc_bad=0
lc_orphan=0
lc_missing=0
lc_present=0
lc_stale=0
lc_contested=0
: >"$TESTDIR/problems.base"

# lc_prepare OP: a key in the state OP starts from; sets KEY, BEFORE, AFTER. The
# key of the previous try is taken again when that try left it as it was.
LC_REUSE=""
lc_prepare() {
        if [ -n "$LC_REUSE" ]; then
                KEY=$LC_REUSE
                LC_REUSE=""
                return 0
        fi
        seq=$((seq + 1))
        KEY=l$seq
        case $1 in
        create)
                BEFORE=absent
                AFTER=enabled:1
                return 0
                ;;
        esac
        "$KEKCTL" create $KEY >/dev/null 2>&1 || return 1
        case $1 in
        rotate)
                BEFORE=enabled:1
                AFTER=enabled:2
                ;;
        disable)
                BEFORE=enabled:1
                AFTER=disabled:1
                ;;
        enable)
                "$KEKCTL" disable $KEY >/dev/null 2>&1 || return 1
                BEFORE=disabled:1
                AFTER=enabled:1
                ;;
        delete)
                BEFORE=enabled:1
                AFTER=deleted:1
                ;;
        recover)
                "$KEKCTL" delete $KEY >/dev/null 2>&1 || return 1
                BEFORE=deleted:1
                AFTER=enabled:1
                ;;
        purge)
                "$KEKCTL" delete $KEY >/dev/null 2>&1 || return 1
                BEFORE=deleted:1
                AFTER=absent
                ;;
        esac
        [ "$(kstate $KEY)" = "$BEFORE" ]
}

# lc_try OP FUNCTION NTH RV [after]: one operation under one fault, then the checks
lc_try() {
        op=$1
        fn=$2
        nth=$3
        rv=$4
        mode=${5:-}
        lc_iter=$((lc_iter + 1))
        if ! lc_prepare $op; then
                lc_setup_bad=$((lc_setup_bad + 1))
                diag "$op: could not prepare $KEY"
                return
        fi
        mark
        fault_set "$fn:rv=$rv:nth=$nth${mode:+:$mode}"
        kc $op $KEY
        rc=$KC_STATUS
        c=$(code)
        fault_clear
        f=$(fired $fn $rv)
        s1=$(kstate $KEY)
        # kekd must serve the key it reports enabled (or refuse only transiently)
        probe=ok
        case $s1 in
        enabled:*)
                kc wrap $KEY --context probe <"$TESTDIR/aek1"
                probe=$(code)
                ;;
        esac
        kc check
        chk=$KC_STATUS
        grep '^PROBLEM' "$TESTDIR/out" | sort >"$TESTDIR/problems.now"
        s2=$(kstate $KEY)
        what="$op $KEY with $fn:$rv:nth=$nth${mode:+:$mode}: $c, state $BEFORE -> $s1, after check $s2"
        if [ "$f" -ne 1 ]; then
                lc_nofire=$((lc_nofire + 1))
                diag "fault did not fire: $what"
        fi
        [ $rc -eq 0 ] || lc_refused=$((lc_refused + 1))
        problem=""
        kekd_alive || problem="kekd died"
        [ "$s1" = "$BEFORE" ] || [ "$s1" = "$AFTER" ] || problem="$problem; half applied (kekd's answer)"
        [ "$s2" = "$BEFORE" ] || [ "$s2" = "$AFTER" ] || problem="$problem; half applied (the token)"
        [ $rc -ne 0 ] || [ "$s2" = "$AFTER" ] || problem="$problem; acknowledged but not applied"
        known=""
        if [ "$s1" != "$s2" ]; then
                if [ $rc -ne 0 ] && [ "$s1" = "$BEFORE" ] && [ "$s2" = "$AFTER" ]; then
                        lc_stale=$((lc_stale + 1))
                        known="$known; refused, done, and kekd still answers $s1"
                else
                        problem="$problem; kekd answered a state the token does not hold"
                fi
        fi
        if [ $rc -ne 0 ] && ! transient "$c"; then
                if [ "$s2" = "$AFTER" ]; then
                        lc_contested=$((lc_contested + 1))
                        known="$known; refused with a definitive $c although done"
                else
                        problem="$problem; refused with a definitive $c"
                fi
        fi
        case $probe in
        ok | HSM_UNAVAILABLE | CONFLICT) ;;
        UNKNOWN_VERSION)
                lc_present=$((lc_present + 1))
                known="$known; wrap probe: UNKNOWN_VERSION"
                ;;
        KEY_DISABLED) [ "${s2%%:*}" = disabled ] || problem="$problem; a wrap with the enabled key was refused with $probe" ;;
        KEY_DELETED) [ "${s2%%:*}" = deleted ] || problem="$problem; a wrap with the enabled key was refused with $probe" ;;
        *) problem="$problem; a wrap with the enabled key was refused with $probe" ;;
        esac
        # only the problems this operation added (earlier ones stay until repaired)
        while read -r pline; do
                [ -n "$pline" ] || continue
                case $(problem_kind "$pline") in
                orphan)
                        lc_orphan=$((lc_orphan + 1))
                        known="$known; $pline"
                        ;;
                missing)
                        lc_missing=$((lc_missing + 1))
                        known="$known; $pline"
                        ;;
                *) problem="$problem; $pline" ;;
                esac
        done <<EOT
$(comm -13 "$TESTDIR/problems.base" "$TESTDIR/problems.now")
EOT
        [ $chk -eq 0 ] || [ -s "$TESTDIR/problems.now" ] || problem="$problem; check failed: $(cat "$TESTDIR/err")"
        mv "$TESTDIR/problems.now" "$TESTDIR/problems.base"
        if [ -n "$problem" ]; then
                lc_bad=$((lc_bad + 1))
                diag "$what: ${problem#; }"
        fi
        [ -z "$known" ] || diag "$what: known kekd bug:${known#;}"
        if [ "$s2" = "$BEFORE" ] && [ -z "$problem$known" ]; then
                LC_REUSE=$KEY
        else
                lc_drop $KEY "$s2"
        fi
}
# lc_drop KEY STATE: the key goes (without faults), to keep the token small
lc_drop() {
        case $2 in
        absent) ;;
        deleted:*) "$KEKCTL" purge $1 >/dev/null 2>&1 ;;
        *) "$KEKCTL" delete $1 >/dev/null 2>&1 && "$KEKCTL" purge $1 >/dev/null 2>&1 ;;
        esac
}

# lc_calls OP: runs OP twice without faults, counting its calls of each kind.
# The trace counts every thread's calls, and kekd's own periodic work (the
# token's re-reading, usage flushes) can land inside one run: the smaller of
# two counts is OP's own, so a fault placed at the last position reaches OP.
lc_calls() {
        for run in 1 2; do
                lc_prepare $1 || return 1
                mark
                "$KEKCTL" $1 $KEY >/dev/null 2>&1 || return 1
                for fn in C_GenerateKey C_CreateObject C_DestroyObject C_SetAttributeValue C_FindObjectsInit C_FindObjects C_GetAttributeValue; do
                        n=$(since | grep -c "^trace $fn ")
                        eval "prev=\${N_$fn:-}"
                        [ "$run" -eq 2 ] && [ "$prev" -lt "$n" ] && n=$prev
                        eval "N_$fn=$n"
                done
                "$KEKCTL" delete $KEY >/dev/null 2>&1
                "$KEKCTL" purge $KEY >/dev/null 2>&1
        done
        return 0
}

t5=$(now_ms)
for op in create rotate disable enable delete recover purge; do
        if [ -n "$LC_REUSE" ]; then
                lc_drop $LC_REUSE "$BEFORE"
                LC_REUSE=""
        fi
        if ! lc_calls $op; then
                lc_setup_bad=$((lc_setup_bad + 1))
                diag "$op: the fault-free run failed"
                continue
        fi
        summary="$op:"
        for fn in C_GenerateKey C_CreateObject C_DestroyObject C_SetAttributeValue C_FindObjectsInit C_FindObjects C_GetAttributeValue; do
                eval "n=\$N_$fn"
                summary="$summary ${fn#C_}=$n"
                [ "$n" -gt $MAXPOS ] && n=$MAXPOS
                case $fn in
                C_GenerateKey | C_CreateObject | C_DestroyObject | C_SetAttributeValue)
                        positions=$(seq 1 "$n")
                        ;;
                *)
                        # lookups: the first, the middle and the last one
                        positions=$(printf '%s\n' 1 $(((n + 1) / 2)) "$n" | awk -v n="$n" '$1 >= 1 && $1 <= n' | sort -un)
                        ;;
                esac
                for pos in $positions; do
                        # a lost session (CKR_DEVICE_ERROR) and a plain failure, in turn
                        if [ $((pos % 2)) -eq 1 ]; then
                                lc_try $op $fn $pos CKR_DEVICE_ERROR
                        else
                                lc_try $op $fn $pos CKR_FUNCTION_FAILED
                        fi
                        # calls that change the token: also done but reported failed
                        case $fn in
                        C_GenerateKey | C_CreateObject | C_SetAttributeValue)
                                lc_try $op $fn $pos CKR_DEVICE_ERROR after
                                lc_try $op $fn $pos CKR_FUNCTION_FAILED after
                                ;;
                        C_DestroyObject)
                                lc_try $op $fn $pos CKR_DEVICE_ERROR after
                                ;;
                        esac
                done
        done
        diag "calls of a fault-free $summary"
        [ $op != rotate ] || N_ROTATE_FINDOBJECTS=$N_C_FindObjects
done
t5=$(($(now_ms) - t5))
if [ -n "$LC_REUSE" ]; then
        lc_drop $LC_REUSE "$BEFORE"
        LC_REUSE=""
fi
diag "$lc_iter faulted lifecycle operations in $t5 ms, $lc_refused of them refused"
ok "lifecycle faults were injected ($lc_iter)" test $lc_iter -ge 50
is "every state the faulted operations start from could be prepared" "$lc_setup_bad" 0
is "every injected lifecycle fault fired" "$lc_nofire" 0
is "no lifecycle operation was half applied, kekd lived, check found nothing new but the known bugs" "$lc_bad" 0
known_bug $lc_orphan "no lifecycle fault left an orphaned key object" "$BUG_ORPHAN"
known_bug $lc_missing "no lifecycle fault left a version named in a record missing from the token" "$BUG_MISSING"
known_bug $lc_present "no lifecycle fault made kekd refuse an enabled key with UNKNOWN_VERSION" "$BUG_PRESENT"
known_bug $lc_stale "no refused lifecycle operation that was done leaves kekd answering the old state" "$BUG_STALE"
known_bug $lc_contested "no lifecycle operation that was done is refused definitively" "$BUG_CONTESTED"

# The bugs, each on its own (diag lines above show where the loop met them).
diag "known bugs, one by one"
aek aek5
kc create bug1
fault_set 'C_GenerateKey:rv=CKR_DEVICE_ERROR:after'
kc rotate bug1
fault_clear
kc rotate bug1
wrap_to bug1 c5 aek5 b5
kc check
n=0
unwraps_to c5 b5 aek5 || n=1
known_bug $n "a lost C_GenerateKey reply in a rotation, a second rotation, a wrap, a reload: the blob unwraps" \
        "$BUG_ORPHAN (two key objects for version 2; the reload picks the other one: BLOB_INVALID)"
kc create bug2
fault_set 'C_CreateObject:rv=CKR_FUNCTION_FAILED:nth=2:after'
kc rotate bug2
fault_clear
kc check
n=0
grep -q "missing from the token" "$TESTDIR/out" && n=1
known_bug $n "a lost reply to the record write that commits a rotation: no version goes missing" "$BUG_MISSING"
kc create bug2b
# faults before the calls only: the listing after the commit record and the withdrawal of that record fail
fault_set "C_FindObjects:rv=CKR_FUNCTION_FAILED:nth=$((N_ROTATE_FINDOBJECTS - 3))
C_DestroyObject:rv=CKR_FUNCTION_FAILED:nth=2"
kc rotate bug2b
fault_clear
kc check
n=0
grep -q "'bug2b' version 2 is named in its record but missing" "$TESTDIR/out" && n=1
known_bug $n "a rotation whose commit cannot be checked nor withdrawn: no version goes missing" "$BUG_MISSING"
kc create bug3
lc_calls rotate
fault_set "C_FindObjectsInit:rv=CKR_FUNCTION_FAILED:nth=$N_C_FindObjectsInit"
kc rotate bug3
fault_clear
n=0
kc wrap bug3 --context c5 <"$TESTDIR/aek5"
[ "$(code)" = UNKNOWN_VERSION ] && n=1
known_bug $n "a rotation whose last lookup (the new version's object) fails: wraps work" "$BUG_PRESENT"
kc create bug4
fault_set 'C_CreateObject:rv=CKR_FUNCTION_FAILED:after'
kc disable bug4
fault_clear
s1=$(kstate bug4)
kc check
n=0
[ "$s1" = "$(kstate bug4)" ] || n=1
known_bug $n "a disable refused after its record was written: kekd answers what the token holds ($s1)" "$BUG_STALE"
lc_calls delete
kc create bug5
fault_set "C_FindObjectsInit:rv=CKR_DEVICE_ERROR:nth=$N_C_FindObjectsInit"
kc delete bug5
fault_clear
n=0
[ "$(code)" = KEY_DELETED ] && n=1
known_bug $n "a delete whose last listing loses the session is not refused with KEY_DELETED ($(code), key $(kstate bug5))" "$BUG_CONTESTED"

# --- 8. a lost session or login in a listing or an unwrap (no timer to take the fault) ---
diag "8. lost session or login in a listing, in C_Decrypt (at $(($(date +%s) - T_START)) s)"
succeeds "create x8" create x8
aek aek8
ok "wrap under x8" wrap_to x8 c8 aek8 b8
for f in C_GetAttributeValue:CKR_SESSION_HANDLE_INVALID C_FindObjects:CKR_SESSION_CLOSED \
        C_GetAttributeValue:CKR_USER_NOT_LOGGED_IN; do
        mark
        fault_set "${f%%:*}:rv=${f#*:}"
        succeeds "a disable whose record reading meets ${f#*:} on ${f%%:*} succeeds (listed again in a new session)" disable x8
        is "... the fault fired once" "$(fired "${f%%:*}" "${f#*:}")" 1
        is "... the key is disabled" "$(kstate x8)" "disabled:1"
        fault_clear
        succeeds "... enable x8 again" enable x8
done
mark
fault_set 'C_Decrypt:rv=CKR_SESSION_CLOSED'
ok "an unwrap whose C_Decrypt meets CKR_SESSION_CLOSED succeeds (one retry)" unwraps_to c8 b8 aek8
is "... the fault fired once" "$(fired C_Decrypt CKR_SESSION_CLOSED)" 1
fault_clear

# The timer alone repairs an interrupted rotation whose rollback failed too: the
# new version's object was made but reported lost, and the record that would
# clear the intent cannot be written.
kekd_stop
REFRESH_INTERVAL=1
ok "kekd restarts with a 1 s timer" start_kekd
succeeds "create tr" create tr
mark
fault_set 'C_GenerateKey:rv=CKR_DEVICE_ERROR:after
C_CreateObject:rv=CKR_DEVICE_ERROR:nth=2:count=inf'
before=$(kstate tr)
refused HSM_UNAVAILABLE "rotate whose new version is reported lost, with no record writable" rotate tr
is "... the new version was made ('after')" "$(fired C_GenerateKey CKR_DEVICE_ERROR)" 1
ok "... and the rollback's record write failed" test "$(fired C_CreateObject CKR_DEVICE_ERROR)" -ge 1
fault_clear
ok "the timer rolls the interrupted rotation back (waited up to 30 s)" \
        wait_until 30 grep -q "Rolled back an interrupted change of key 'tr'" "$TESTDIR/kekd.log"
diag "repaired $WAITED ms after the faults were removed"
is "... the key is as before" "$(kstate tr)" "$before"
kc check
grep -v "bug[1-5]" "$TESTDIR/out" | grep -q '^PROBLEM' && KC_STATUS=1 || KC_STATUS=0
is "check finds nothing wrong with it" "$KC_STATUS" 0
ok "kekd is alive" kekd_alive

kekd_stop
mark
diag "fault log: $(grep -vc '^trace ' "$FLOG.all") faults and delays injected in all, $(($(date +%s) - T_START)) s"
done_testing
