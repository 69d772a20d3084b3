#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# Wrap/unwrap of many random AEKs through a real kekd and kekctl, then the same
# blobs after a clean restart and after kill -9: the token is kekd's only state.
. "$TESTLIB"

N=100
token_init roundtrip
kekd_config
ok "kekd starts on a fresh token" kekd_start

kc create acct1
is "create acct1 exits 0" "$KC_STATUS" 0
contains "create shows version 1" "$TESTDIR/out" "Current:     1"

mkdir "$TESTDIR/aek" "$TESTDIR/blob"
fail=0
i=1
while [ $i -le $N ]; do
        case $((i % 10)) in
        0) size=1 ;;
        5) size=1024 ;;
        *) size=32 ;;
        esac
        head -c $size /dev/urandom >"$TESTDIR/aek/$i"
        "$KEKCTL" wrap acct1 --context "account-$i" <"$TESTDIR/aek/$i" >"$TESTDIR/blob/$i" 2>>"$TESTDIR/kc.err" || fail=$((fail + 1))
        i=$((i + 1))
done
is "$N random AEKs (1, 32, 1024 bytes) wrapped" "$fail" 0

unwrap_all() {
        bad=0
        i=1
        while [ $i -le $N ]; do
                if ! "$KEKCTL" unwrap --context "account-$i" <"$TESTDIR/blob/$i" >"$TESTDIR/plain" 2>>"$TESTDIR/kc.err" ||
                        ! cmp -s "$TESTDIR/plain" "$TESTDIR/aek/$i"; then
                        bad=$((bad + 1))
                fi
                i=$((i + 1))
        done
        echo $bad
}
is "all $N AEKs unwrap to the same bytes" "$(unwrap_all)" 0

"$KEKCTL" wrap acct1 --context account-1 <"$TESTDIR/aek/1" >"$TESTDIR/again"
ok "wrapping the same AEK again gives a different blob" sh -c "! cmp -s '$TESTDIR/again' '$TESTDIR/blob/1'"

kc --json list
contains "list --json names the key" "$TESTDIR/out" '"name":"acct1"'
kc show acct1
contains "show lists version 1 enabled" "$TESTDIR/out" "1         enabled"

kekd_stop TERM
is "kekd exits 0 on SIGTERM" "$KEKD_STATUS" 0
ok "kekd removed its socket on exit" test ! -e "$SOCKET"
ok "kekd restarts" kekd_start
is "all $N blobs unwrap after a restart" "$(unwrap_all)" 0

kc create acct2
is "a second key can be created after the restart" "$KC_STATUS" 0

kekd_stop KILL
ok "kekd restarts after kill -9 (stale socket replaced)" kekd_start
kc list
contains "both keys are listed after kill -9" "$TESTDIR/out" "acct2"
is "all $N blobs unwrap after kill -9" "$(unwrap_all)" 0

ok "no kekctl call failed unexpectedly" test ! -s "$TESTDIR/kc.err"
ok "the PIN appears in no log line" sh -c "! grep -qF '$TEST_PIN' '$TESTDIR/kekd.log'"
kekd_stop
done_testing
