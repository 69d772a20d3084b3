#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# Two kekd processes on one SoftHSM2 token directory, as two storage nodes on
# one HSM. Changes made through either (create, disable, enable, rotate,
# delete, recover) are honoured by the other within its refresh interval
# (1 s here; the test allows 3 s), and a restart of either loses nothing.
. "$TESTLIB"

token_init multi
kekd_config
ok "node A starts" kekd_start
SOCK_A=$SOCKET
ok "node B starts on the same token" kekd_b_start

A() { "$KEKCTL" -s "$SOCK_A" "$@"; }
B() { "$KEKCTL" -s "$SOCK_B" "$@"; }
now_ms() { echo $(($(date +%s%N) / 1000000)); }

# within DESCRIPTION COMMAND...: COMMAND succeeds, polled for up to 30 s (a bound for a
# busy machine; the refresh interval is 1 s); reports how long it took
within() {
        desc=$1
        shift
        t0=$(now_ms)
        i=0
        # each try's errors in err (unwrap_*_is write theirs there too), so a failure shows its own, never a stale one
        until "$@" >/dev/null 2>"$TESTDIR/err"; do
                i=$((i + 1))
                if [ $i -ge 600 ]; then
                        tap_n=$((tap_n + 1))
                        tap_failed=$((tap_failed + 1))
                        echo "not ok $tap_n - $desc (not within 30 s)"
                        # what the last try met, and both nodes' last words: a flake seen once
                        # under load ("UNKNOWN_KEY shared" on B) must be readable from CI's log
                        sed 's/^/#   last error: /' "$TESTDIR/err" 2>/dev/null | tail -3
                        tail -5 "$TESTDIR/kekd.log" 2>/dev/null | sed 's/^/#   A: /'
                        tail -5 "$TESTDIR/kekd-b.log" 2>/dev/null | sed 's/^/#   B: /'
                        return
                fi
                sleep 0.05
        done
        tap_n=$((tap_n + 1))
        echo "ok $tap_n - $desc (after $(($(now_ms) - t0)) ms)"
}
unwrap_b_is() { # CODE: B's unwrap of blob1 fails with CODE, or succeeds if CODE is "ok"
        B unwrap --context c <"$TESTDIR/blob1" >"$TESTDIR/pt" 2>"$TESTDIR/err"
        if [ "$1" = ok ]; then cmp -s "$TESTDIR/pt" "$TESTDIR/aek"; else grep -q ": $1" "$TESTDIR/err"; fi
}
unwrap_a_is() {
        A unwrap --context c <"$TESTDIR/blob1" >"$TESTDIR/pt" 2>"$TESTDIR/err"
        if [ "$1" = ok ]; then cmp -s "$TESTDIR/pt" "$TESTDIR/aek"; else grep -q ": $1" "$TESTDIR/err"; fi
}
version_on() { # NODE KEY N: NODE reports current version N for KEY
        "$1" --json version "$2" | grep -q "\"current_version\":$3,"
}

A create shared >/dev/null
within "a key created through A is served by B" B version shared
head -c 32 /dev/urandom >"$TESTDIR/aek"
A wrap shared --context c <"$TESTDIR/aek" >"$TESTDIR/blob1"
ok "B unwraps a blob wrapped by A" unwrap_b_is ok

A disable shared >/dev/null
within "a disable through A is honoured by B" unwrap_b_is KEY_DISABLED
B enable shared >/dev/null
within "an enable through B is honoured by A" unwrap_a_is ok
B rotate shared >/dev/null
within "a rotation through B is seen by A" version_on A shared 2
A wrap shared --context c <"$TESTDIR/aek" >"$TESTDIR/blob2"
is "A wraps under the version B made" "$(od -An -tu1 -j 11 -N1 "$TESTDIR/blob2" | tr -d ' ')" 2
A disable shared --key-version 1 >/dev/null
within "a version disable through A is honoured by B" unwrap_b_is KEY_DISABLED
A enable shared --key-version 1 >/dev/null
within "... and its enable" unwrap_b_is ok
A delete shared >/dev/null
within "a delete through A is honoured by B" unwrap_b_is KEY_DELETED
B recover shared >/dev/null
within "a recover through B is honoured by A" unwrap_a_is ok

kekd_stop KILL
ok "A restarts after kill -9" kekd_start
ok "after A's restart the version 1 blob unwraps on A" unwrap_a_is ok
A unwrap --context c <"$TESTDIR/blob2" | cmp -s - "$TESTDIR/aek"
is "after A's restart the version 2 blob unwraps on A" "$?" 0
kill -TERM $PID_B
wait $PID_B
"$KEKD" -c "$CONF_B" 2>>"$TESTDIR/kekd-b.log" &
PID_B=$!
within "B restarts" B version shared
ok "after B's restart B unwraps too" unwrap_b_is ok
kc check
is "check is clean after both nodes' changes" "$KC_STATUS" 0
kill -TERM $PID_B
wait $PID_B
kekd_stop
done_testing
