#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# Crash consistency: kekd is killed with SIGKILL at random moments while a
# client loops over rotate, delete, recover, disable, enable, grant and
# revoke on four keys, and create, delete and purge on two more. After each
# restart (which repairs interrupted operations) `kekctl check` must find the
# token consistent with the records: no version named by a record missing, no
# orphaned version object, no duplicate record. At the end every key still
# unwraps the blob made under its first version.
. "$TESTLIB"

ROUNDS=${CRASH_ROUNDS:-15}
token_init crash
kekd_config
ok "kekd starts" kekd_start
head -c 32 /dev/urandom >"$TESTDIR/aek"
for k in k0 k1 k2 k3; do
        "$KEKCTL" create "$k" >/dev/null
        "$KEKCTL" wrap "$k" --context "$k" <"$TESTDIR/aek" >"$TESTDIR/blob-$k"
done
ok "four keys with a blob each" test -s "$TESTDIR/blob-k3"

rnd() { # rnd N: a random number in 0..N-1
        echo $(($(od -An -N2 -tu2 /dev/urandom | tr -d ' ') % $1))
}

# churn: bounded loop of random lifecycle operations; stops when kekd is gone
churn() {
        n=0
        while [ $n -lt 300 ]; do
                k=k$(rnd 4)
                p=p$(rnd 2)
                case $(rnd 9) in
                0 | 1) "$KEKCTL" rotate "$k" ;;
                2) "$KEKCTL" delete "$k" ;;
                3) "$KEKCTL" recover "$k" ;;
                4) "$KEKCTL" disable "$k" ;;
                5) "$KEKCTL" enable "$k" ;;
                6) "$KEKCTL" grant "$k" "user:$((1000 + $(rnd 3)))" --ops wrap,unwrap ;;
                7) "$KEKCTL" revoke "$k" "user:$((1000 + $(rnd 3)))" ;;
                8) "$KEKCTL" create "$p" && "$KEKCTL" delete "$p" && "$KEKCTL" purge "$p" ;;
                esac >/dev/null 2>&1
                [ $? -eq 3 ] && break # kekd unreachable: it was killed
                n=$((n + 1))
        done
}

bad=0
round=1
while [ $round -le $ROUNDS ]; do
        churn &
        churn_pid=$!
        sleep "0.$(rnd 4)$(rnd 10)"
        kill -KILL "$KEKD_PID"
        wait "$KEKD_PID" 2>/dev/null
        KEKD_PID=""
        kill "$churn_pid" 2>/dev/null
        wait "$churn_pid" 2>/dev/null
        if ! kekd_start; then
                bad=$((bad + 1))
                break
        fi
        "$KEKCTL" check >"$TESTDIR/check" 2>&1
        if [ $? -ne 0 ]; then
                bad=$((bad + 1))
                diag "round $round: check after kill -9:"
                sed 's/^/#   | /' "$TESTDIR/check"
        fi
        round=$((round + 1))
done
is "kekctl check finds the token consistent after each of $ROUNDS kill -9 restarts" "$bad" 0
grep -h "Rolled back\|Finished the interrupted" "$TESTDIR/kekd.log" | sed 's/^/# kekd: /' | head -5

lost=0
for k in k0 k1 k2 k3; do
        "$KEKCTL" recover "$k" >/dev/null 2>&1
        "$KEKCTL" enable "$k" >/dev/null 2>&1
        "$KEKCTL" unwrap --context "$k" <"$TESTDIR/blob-$k" 2>/dev/null | cmp -s - "$TESTDIR/aek" || lost=$((lost + 1))
done
is "every key still unwraps the blob of its first version" "$lost" 0
kc check
is "final check is clean" "$KC_STATUS" 0
sed 's/^/# /' "$TESTDIR/out"
kekd_stop
done_testing
