#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# Access and resource limits through a real kekd: officer-only operations are
# refused to an ordinary peer (run as another uid with setpriv) and allowed
# to members of admin_group; idle connections are closed; a second kekd does
# not take over a live socket; running out of file descriptors pauses
# accepting instead of spinning, and service resumes.
. "$TESTLIB"

token_init limits
kekd_config
chmod 0711 "$TESTDIR" # other uids must reach the socket inside
sed -i "s|^socket_mode = 0600|socket_mode = 0660\nsocket_group = nogroup\nidle_timeout = 2|" "$CONF"
ok "kekd starts" kekd_start
kc create acct
head -c 32 /dev/urandom >"$TESTDIR/aek"

as_nobody() {
        setpriv --reuid=nobody --regid=nogroup --clear-groups "$KEKCTL" -s "$SOCKET" "$@"
}
denied() { # DESCRIPTION ARGS...: as nobody, kekctl exits 1 with PERMISSION_DENIED
        desc=$1
        shift
        as_nobody "$@" </dev/null >"$TESTDIR/out" 2>"$TESTDIR/err"
        st=$?
        tap_n=$((tap_n + 1))
        if [ $st -eq 1 ] && grep -q ": PERMISSION_DENIED" "$TESTDIR/err"; then
                echo "ok $tap_n - $desc is refused to an ordinary peer"
        else
                echo "not ok $tap_n - $desc is refused to an ordinary peer (exit $st: $(cat "$TESTDIR/err"))"
                tap_failed=$((tap_failed + 1))
        fi
}

if ! command -v setpriv >/dev/null || [ "$(id -u)" -ne 0 ] || ! getent group nogroup >/dev/null; then
        diag "not root, or no setpriv/nogroup: access tests not run"
else
        as_nobody wrap acct --context c <"$TESTDIR/aek" >"$TESTDIR/blob" 2>"$TESTDIR/err"
        is "an ordinary peer in the socket group may not wrap without a grant" "$?" 1
        kc grant acct user:nobody
        as_nobody wrap acct --context c <"$TESTDIR/aek" >"$TESTDIR/blob" 2>"$TESTDIR/err"
        is "an ordinary peer with a grant may wrap" "$?" 0
        as_nobody unwrap --context c <"$TESTDIR/blob" 2>"$TESTDIR/err" | cmp -s - "$TESTDIR/aek"
        is "... and unwrap" "$?" 0
        as_nobody version acct >/dev/null 2>&1
        is "... and read the key version" "$?" 0
        denied "create" create other
        denied "rotate" rotate acct
        denied "disable" disable acct
        denied "delete" delete acct
        denied "policy" policy acct --max-wraps 100
        denied "vault change" vault --purge-protection on
        denied "check" check
        contains "the refusal is logged with the peer's uid" "$TESTDIR/kekd.log" "PEER_UID=65534"
        kc version acct
        contains "the key is untouched" "$TESTDIR/out" "State:       enabled"

        kekd_stop
        printf '\n[access]\nadmin_group = nogroup\n' >>"$CONF"
        ok "kekd restarts with admin_group = nogroup" kekd_start
        as_nobody create other >/dev/null 2>"$TESTDIR/err"
        is "a member of admin_group may create keys" "$?" 0
        as_nobody rotate other >/dev/null 2>"$TESTDIR/err"
        is "... and rotate them" "$?" 0
fi

got=$("$KEK_RAW" "$SOCKET" hold:3500 | tr '\n' '|')
is "an idle connection is closed after idle_timeout" "$got" "closed|"
ok "kekd still serves" "$KEKCTL" version acct

"$KEKD" -c "$CONF" >"$TESTDIR/second" 2>&1
is "a second kekd on the same socket exits 1" "$?" 1
contains "... saying another process is serving there" "$TESTDIR/second" "Another process is serving on"
ok "the first kekd still serves" "$KEKCTL" version acct

# Few file descriptors: more connections than kekd can accept at once
kekd_stop
sh -c "ulimit -n 24 && exec '$KEKD' -c '$CONF'" 2>>"$TESTDIR/kekd.log" &
KEKD_PID=$!
i=0
until "$KEKCTL" version acct >/dev/null 2>&1 || [ $i -ge 100 ]; do
        sleep 0.1
        i=$((i + 1))
done
pids=""
i=0
while [ $i -lt 30 ]; do
        "$KEK_RAW" "$SOCKET" hold:1500 >/dev/null 2>&1 &
        pids="$pids $!"
        i=$((i + 1))
done
sleep 0.5
"$KEKCTL" version acct >/dev/null 2>"$TESTDIR/err"
st=$?
ok "during the flood a request is served or refused as unreachable, never told the key is gone (exit $st)" \
        sh -c "[ $st -eq 0 ] || [ $st -eq 3 ]"
for p in $pids; do wait "$p" 2>/dev/null; done
ok "kekd serves once the connections are gone" "$KEKCTL" version acct
n=$(grep -c "Refusing connections: descriptors above" "$TESTDIR/kekd.log")
ok "excess connections were refused with a clear, rate-limited message ($n lines)" test "$n" -ge 1 -a "$n" -le 5
kekd_stop
done_testing
