#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# Access control, dual control, audit and per-uid limits through a real kekd,
# with clients running as other uids (setpriv). Identities:
#   root                      superuser (every operation)
#   1101, 1102 (group users)  crypto users, through grants only
#   1201, 1202 (+ staff)      key officers ([access] officer_group = staff)
#   1301 (+ adm)              administrator ([access] admin_group = adm)
# Every refusal is checked with its code; audit records are read back from
# kekd's stderr log with their fields; the log is searched for the AEKs and
# the PIN at the end.
. "$TESTLIB"

if [ "$(id -u)" != 0 ] || ! command -v setpriv >/dev/null; then
        echo "1..0 # SKIP needs root and setpriv to run clients as other uids"
        exit 0
fi
if ! "$KEKD" --version | grep -q test-clock; then
        echo "1..0 # SKIP kekd built without --enable-test-clock"
        exit 0
fi
for g in users staff adm; do
        getent group $g >/dev/null || { echo "1..0 # SKIP group $g missing"; exit 0; }
done
KEKD_TEST_CLOCK_FILE="$TESTDIR/clock"
export KEKD_TEST_CLOCK_FILE
echo 0 >"$KEKD_TEST_CLOCK_FILE"

# Other uids must reach the socket: the directory is traversable, the PIN is not readable.
chmod 0711 "$TESTDIR"
token_init access
kekd_config
sed -i "s/^socket_mode = 0600$/socket_mode = 0660\nsocket_group = users\nmax_connections_per_uid = 3/" "$CONF"
cat >>"$CONF" <<EOF2

[access]
officer_group = staff
admin_group = adm
EOF2
sed -i "s/^level = debug$/level = info\naudit_interval = 1/" "$CONF"
ok "kekd starts with officer_group, admin_group and a per-uid cap" kekd_start

USERS=$(getent group users | cut -d: -f3)
STAFF=$(getent group staff | cut -d: -f3)
ADM=$(getent group adm | cut -d: -f3)

# as_prefix WHO: the setpriv command line that runs a program as one of the identities above
as_prefix() {
        case $1 in
        a) echo "setpriv --reuid=1101 --regid=$USERS --clear-groups" ;;
        b) echo "setpriv --reuid=1102 --regid=$USERS --clear-groups" ;;
        o1) echo "setpriv --reuid=1201 --regid=$USERS --groups=$STAFF" ;;
        o2) echo "setpriv --reuid=1202 --regid=$USERS --groups=$STAFF" ;;
        adm) echo "setpriv --reuid=1301 --regid=$USERS --groups=$ADM" ;;
        esac
}
# as WHO COMMAND...: COMMAND as WHO
as() {
        who=$1
        shift
        # shellcheck disable=SC2046 # the prefix is split on purpose
        $(as_prefix "$who") "$@"
}
# kas WHO ARGS...: kc as WHO (stdin from $KAS_IN)
kas() {
        who=$1
        shift
        KC_AS=$(as_prefix "$who") KC_IN=${KAS_IN:-/dev/null} kc "$@"
}
# denied WHO CODE DESC ARGS... / allowed WHO DESC ARGS...: lib.sh's refused / succeeds as WHO
denied() {
        who=$1
        shift
        KC_AS=$(as_prefix "$who") KC_IN=${KAS_IN:-/dev/null} refused "$@"
}
allowed() {
        who=$1
        shift
        KC_AS=$(as_prefix "$who") KC_IN=${KAS_IN:-/dev/null} succeeds "$@"
}

# A distinctive AEK, so the log can be searched for it.
printf 'AEK-access-test-5f0c1d2e3b4a6978' >"$TESTDIR/aek"
succeeds "root creates k1" create k1
succeeds "root creates k2" create k2
"$KEKCTL" wrap k1 --context c <"$TESTDIR/aek" >"$TESTDIR/blob1"

diag "crypto user without grants"
KAS_IN=$TESTDIR/aek denied a PERMISSION_DENIED "uid 1101 wraps with k1 before any grant" wrap k1 --context c
KAS_IN=$TESTDIR/blob1 denied a PERMISSION_DENIED "uid 1101 unwraps a k1 blob before any grant" unwrap --context c
denied a PERMISSION_DENIED "uid 1101 asks k1's version" version k1
denied a PERMISSION_DENIED "uid 1101 probes a name that does not exist (same answer)" version nosuchkey
allowed a "uid 1101 lists keys" list --json
is "... and sees none" "$(grep -c '"name"' "$TESTDIR/out")" 0
denied a PERMISSION_DENIED "uid 1101 creates a key" create k9
denied a PERMISSION_DENIED "uid 1101 grants itself" grant k1 user:1101

diag "officer: lifecycle, not use, not grants"
allowed o1 "officer 1201 creates k3" create k3
allowed o1 "officer 1201 rotates k3" rotate k3
allowed o1 "officer 1201 disables and enables k3" disable k3
allowed o1 "... enables it" enable k3
allowed o1 "officer 1201 lists every key" list --json
is "... all three" "$(grep -c '"name"' "$TESTDIR/out")" 3
KAS_IN=$TESTDIR/aek denied o1 PERMISSION_DENIED "officer 1201 wraps with k1 (separate duty)" wrap k1 --context c
denied o1 PERMISSION_DENIED "officer 1201 grants" grant k1 user:1101
denied o1 PERMISSION_DENIED "officer 1201 changes the vault policy" vault --retention-days 30
allowed o1 "officer 1201 runs check" check

diag "administrator grants"
allowed adm "admin 1301 grants uid 1101 wrap,unwrap on k1" grant k1 user:1101 --ops wrap,unwrap
allowed adm "admin 1301 lists k1's grants" grants k1
contains "... user 1101 with wrap,unwrap" "$TESTDIR/out" "wrap,unwrap"
kas adm grant k1 user:1101 --ops fly
is "kekctl refuses a grant of no such op as a usage error" "$KC_STATUS" 2
for bad in "grant k1 bob" "grant k1 user:no-such-user-kekd" "grant k1 group:no-such-group-kekd" \
        "vault --dual-control everything" "approve 1234" "cancel ZZZZ5678901234567890123456789012"; do
        # shellcheck disable=SC2086 # the words are the arguments
        kas adm $bad
        is "kekctl $bad: usage error" "$KC_STATUS" 2
done
KAS_IN=$TESTDIR/aek allowed a "uid 1101 wraps with k1 now" wrap k1 --context c
cp "$TESTDIR/out" "$TESTDIR/blob-a"
KAS_IN=$TESTDIR/blob-a allowed a "uid 1101 unwraps its blob" unwrap --context c
ok "... to the AEK" cmp -s "$TESTDIR/out" "$TESTDIR/aek"
KAS_IN=$TESTDIR/blob1 allowed a "uid 1101 unwraps root's k1 blob" unwrap --context c
KAS_IN=$TESTDIR/blob1 denied a PERMISSION_DENIED "uid 1101 rewraps (not granted)" rewrap --context c
allowed a "uid 1101 asks k1's version (any grant)" version k1
denied a PERMISSION_DENIED "uid 1101 shows k1 (no get grant)" show k1
KAS_IN=$TESTDIR/aek denied a PERMISSION_DENIED "uid 1101 wraps with k2 (granted k1 only)" wrap k2 --context c
KAS_IN=$TESTDIR/blob1 denied b PERMISSION_DENIED "uid 1102 unwraps (no grant)" unwrap --context c
allowed adm "admin 1301 grants group users get on k1" grant k1 group:users --ops get
allowed b "uid 1102 lists keys" list --json
is "... and sees k1 through its group" "$(grep -c '"name":"k1"' "$TESTDIR/out")" 1
KAS_IN=$TESTDIR/blob1 denied b PERMISSION_DENIED "... but still may not unwrap" unwrap --context c
# A libkek client of uid 1101 holding k1's AEK in its cache loses it when the grant goes.
mkdir "$TESTDIR/probe" && chown 1101 "$TESTDIR/probe"
(exec setpriv --reuid=1101 --regid="$USERS" --clear-groups "$KEK_CACHE_PROBE" "$TESTDIR/blob1" c "$TESTDIR/probe/ready" 10) \
        >"$TESTDIR/probe.out" 2>&1 &
PROBE=$!
i=0
# bounded at 30 s: on a loaded machine the probe's start, Watch subscription and two unwraps take a while
while [ ! -e "$TESTDIR/probe/ready" ] && [ $i -lt 600 ] && kill -0 $PROBE 2>/dev/null; do sleep 0.05; i=$((i + 1)); done
ok "a libkek client of uid 1101 caches k1's AEK (a hit without round trip)" [ -e "$TESTDIR/probe/ready" ]
[ -e "$TESTDIR/probe/ready" ] || diag "$(cat "$TESTDIR/probe.out")"
allowed adm "admin 1301 revokes unwrap from uid 1101" revoke k1 user:1101 --ops unwrap
wait $PROBE
is "... and the client drops the cached AEK at once (Watch), not after its refresh" "$?" 0
diag "$(cat "$TESTDIR/probe.out")"
KAS_IN=$TESTDIR/blob1 denied a PERMISSION_DENIED "uid 1101 unwraps after the revoke" unwrap --context c
KAS_IN=$TESTDIR/aek allowed a "... and still wraps" wrap k1 --context c

diag "dual control"
succeeds "root puts purge, delete, last-grant and vault-policy under dual control" \
        vault --dual-control purge,delete,last-grant,vault-policy --approval-window 5m
contains "... shown by vault" "$TESTDIR/out" "purge,delete,last-grant,vault-policy"
denied o1 APPROVAL_REQUIRED "officer 1201 deletes k3 directly" delete k3
allowed o1 "officer 1201 submits the delete of k3" request delete k3
ID=$(sed -n 's/^Request: *//p' "$TESTDIR/out")
ok "... and gets a request id" sh -c "echo '$ID' | grep -Eq '^[0-9a-f]{32}$'"
allowed o2 "officer 1202 lists the pending requests" requests --json
contains "... which include it" "$TESTDIR/out" "$ID"
denied o1 PERMISSION_DENIED "officer 1201 approves its own request" approve "$ID"
denied a PERMISSION_DENIED "crypto user 1101 approves it" approve "$ID"
allowed o2 "officer 1202 approves it" approve "$ID"
succeeds "k3 is deleted" show k3 --json
contains "... state deleted" "$TESTDIR/out" '"state":"deleted"'
denied o2 INVALID_ARGUMENT "the request cannot be approved twice" approve "$ID"
denied o1 APPROVAL_REQUIRED "officer 1201 purges k3 directly" purge k3
allowed o1 "officer 1201 submits the purge" request purge k3
ID=$(sed -n 's/^Request: *//p' "$TESTDIR/out")
allowed o2 "officer 1202 approves the purge" approve "$ID"
refused UNKNOWN_KEY "k3 is gone" show k3
allowed o1 "officer 1201 submits a delete of k2" request delete k2
ID=$(sed -n 's/^Request: *//p' "$TESTDIR/out")
echo 301 >"$KEKD_TEST_CLOCK_FILE"
sleep 0.3 # kekd reads the test clock at most every 100 ms
denied o2 INVALID_ARGUMENT "officer 1202 approves it after the 5-minute window" approve "$ID"
allowed o2 "... and it is no longer listed" requests --json
is "... (expired requests are removed)" "$(grep -c '"id"' "$TESTDIR/out")" 0
allowed o1 "officer 1201 submits a delete of k2 again" request delete k2
ID=$(sed -n 's/^Request: *//p' "$TESTDIR/out")
allowed o2 "officer 1202 cancels (denies) it" cancel "$ID"
denied o1 INVALID_ARGUMENT "the cancelled request cannot be approved" approve "$ID"
succeeds "k2 is still enabled" show k2 --json
contains "... state enabled" "$TESTDIR/out" '"state":"enabled"'
allowed adm "admin 1301 revokes a grant that is not the last" revoke k1 user:1101
denied adm APPROVAL_REQUIRED "... but the last one needs approval" revoke k1 group:users
allowed adm "admin 1301 submits it" request revoke k1 group:users
ID=$(sed -n 's/^Request: *//p' "$TESTDIR/out")
denied o2 PERMISSION_DENIED "officer 1202 cannot approve an administrator's operation" approve "$ID"
succeeds "root approves it" approve "$ID"
allowed adm "k1 has no grants left" grants k1 --json
is "... none" "$(grep -c principal "$TESTDIR/out")" 0
denied adm APPROVAL_REQUIRED "admin 1301 switches dual control off" vault --dual-control none
allowed adm "admin 1301 shortens the approval window (stronger: no approval)" vault --approval-window 2m
allowed adm "admin 1301 submits dual control off" request vault --dual-control none
ID=$(sed -n 's/^Request: *//p' "$TESTDIR/out")
allowed adm "... lists its own request" requests
succeeds "root approves it" approve "$ID"
succeeds "vault shows dual control off" vault --json
contains "... none" "$TESTDIR/out" '"dual_control":"none"'
allowed o1 "officer 1201 deletes k2 directly again" delete k2

diag "limits"
allowed adm "admin grants uid 1101 everything on k1" grant k1 user:1101
HOLDERS=""
for i in 1 2 3; do
        # exec: $! is socat itself, so the kill below closes its connection
        (exec setpriv --reuid=1101 --regid="$USERS" --clear-groups socat -u UNIX-CONNECT:"$SOCKET" STDOUT) >/dev/null 2>&1 &
        HOLDERS="$HOLDERS $!"
done
# The holders connect in the background: wait (bounded) until kekd counts them
# (kekctl status, as root, is one more client), then try a fourth connection.
i=0
while [ $i -lt 100 ]; do
        kc status --json
        n=$(tr -d ' \n' <"$TESTDIR/out" | sed -n 's/.*"clients":\([0-9]*\).*/\1/p')
        [ "${n:-0}" -ge 4 ] && break
        sleep 0.1
        i=$((i + 1))
done
ok "kekd serves the three connections of uid 1101 (and root's)" [ "${n:-0}" -ge 4 ]
i=0
while [ $i -lt 20 ]; do
        kas a version k1
        [ "$KC_STATUS" -eq 1 ] && grep -q ": LIMIT_EXCEEDED" "$TESTDIR/err" && break
        sleep 0.1
        i=$((i + 1))
done
is "uid 1101's fourth connection is refused" "$(grep -o LIMIT_EXCEEDED "$TESTDIR/err")" LIMIT_EXCEEDED
[ "$i" -lt 20 ] || diag "after $i attempts: exit $KC_STATUS, $(cat "$TESTDIR/err"); kekd: $(grep -c 'max_connections_per_uid=3 reached' "$TESTDIR/kekd.log") refusals logged"
contains "... with the reason" "$TESTDIR/err" "max_connections_per_uid=3"
allowed b "uid 1102 is still served" list
succeeds "root is still served" list
for p in $HOLDERS; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
i=0
until as a "$KEKCTL" version k1 >/dev/null 2>&1 || [ $i -ge 50 ]; do sleep 0.1; i=$((i + 1)); done
allowed a "uid 1101 is served again once its connections close" version k1

diag "audit records"
sleep 1.5 # one audit_interval: the data-plane counts are flushed
contains "control-plane record with its fields" "$TESTDIR/kekd.log" \
        "MESSAGE_ID=9997bd01c757492e8ad55ad887875b8d KEK_OP=create-key KEK_KEY=k3 KEK_VERSION=1 PEER_UID=1201"
contains "refusal record for a wrap without grant" "$TESTDIR/kekd.log" \
        "MESSAGE_ID=2c3270d8e879488283d2a88db52ca5f1 KEK_OP=wrap KEK_KEY=k1 KEK_VERSION=0 PEER_UID=1101"
contains "refusal record names the result" "$TESTDIR/kekd.log" "PEER_UID=1201 PEER_GID=$USERS"
ok "refusal records carry RESULT=PERMISSION_DENIED" grep -q "KEK_OP=grant.*RESULT=PERMISSION_DENIED\|KEK_OP=set-grant.*RESULT=PERMISSION_DENIED" "$TESTDIR/kekd.log"
ok "dual-control refusal recorded" grep -q "KEK_OP=delete-key KEK_KEY=k3.*RESULT=APPROVAL_REQUIRED" "$TESTDIR/kekd.log"
ok "the approved purge names the approval and the requester" \
        grep -q "KEK_OP=purge-key KEK_KEY=k3 .*PEER_UID=1202 .*RESULT=OK .*KEK_APPROVAL_ID=[0-9a-f]\{32\} KEK_REQUESTER_UID=1201" "$TESTDIR/kekd.log"
ok "data-plane wraps of uid 1101 are aggregated with a count" \
        grep -q "MESSAGE_ID=fbcba23065a44a9bbf6701391ac040ee KEK_OP=wrap KEK_KEY=k1 KEK_VERSION=1 PEER_UID=1101 .*RESULT=OK KEK_COUNT=[0-9]" "$TESTDIR/kekd.log"
ok "no data-plane record per operation (aggregated)" \
        sh -c "[ \$(grep -c 'fbcba23065a44a9bbf6701391ac040ee KEK_OP=wrap KEK_KEY=k1 KEK_VERSION=1 PEER_UID=1101' '$TESTDIR/kekd.log') -le 3 ]"

kekd_stop
ok "kekd exits cleanly" [ "$KEKD_STATUS" -eq 0 ]
ok "the AEK appears in no log line" sh -c "! grep -qF 'AEK-access-test' '$TESTDIR/kekd.log'"
ok "... nor its hex" sh -c "! grep -qi \"\$(od -An -tx1 '$TESTDIR/aek' | tr -d ' \n' | cut -c1-24)\" '$TESTDIR/kekd.log'"
ok "the PIN appears in no log line" sh -c "! grep -qF '$TEST_PIN' '$TESTDIR/kekd.log'"
done_testing
