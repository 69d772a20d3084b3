#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# Hostile frames through a real kekd (issue 14): a client with no grant and
# no role (uid 65534) sends the deepest frame that fits in max_frame down the
# schema's recursive path, Request > SubmitApprovalRequest > Request > ...
# (the only message that contains itself; test-wirecheck enumerates them),
# at 64 KiB and at this kekd's max_frame of 4 MiB. Each is refused with
# MALFORMED_REQUEST, only that connection is closed, a client connected
# meanwhile and new ones keep service, and kekd logs exactly one line for it,
# with the reason. Key names with a NUL byte or invalid UTF-8 are refused the
# same way and never act on the name before the NUL.
. "$TESTLIB"

if [ "$(id -u)" != 0 ] || ! command -v setpriv >/dev/null; then
        echo "1..0 # SKIP needs root and setpriv to run a client as uid 65534"
        exit 0
fi
getent group nogroup >/dev/null || { echo "1..0 # SKIP group nogroup missing"; exit 0; }
NOGROUP=$(getent group nogroup | cut -d: -f3)
MAX_FRAME=4194304

chmod 0711 "$TESTDIR"
token_init hostile
kekd_config
sed -i "s/^socket_mode = 0600$/socket_mode = 0660\nsocket_group = nogroup\nmax_frame = $MAX_FRAME/" "$CONF"
sed -i "s/^level = debug$/level = info/" "$CONF"
ok "kekd starts with max_frame = $MAX_FRAME" kekd_start
PID=$KEKD_PID

kc create hk
is "create hk" "$KC_STATUS" 0
head -c 32 /dev/urandom >"$TESTDIR/aek"

# nobody_raw STEP...: kek-raw as uid 65534 without supplementary groups; output lines joined by '|'
nobody_raw() {
        setpriv --reuid=65534 --regid="$NOGROUP" --clear-groups "$KEK_RAW" "$SOCKET" "$@" 2>>"$TESTDIR/raw.err" |
                tr '\n' '|' | sed 's/|$//'
}
# log_lines PATTERN: lines of kekd's log matching PATTERN
log_lines() {
        grep -c -- "$1" "$TESTDIR/kekd.log"
}
# wait_log PATTERN N: waits (<= 10 s) for N lines matching PATTERN
wait_log() {
        i=0
        while [ "$(log_lines "$1")" -lt "$2" ] && [ $i -lt 100 ]; do
                sleep 0.1
                i=$((i + 1))
        done
}

is "uid 65534 is served (a list shows no key it has no grant for)" "$(nobody_raw frame:0801aa0100)" "id=1 ok=list_keys|open"

n=0
for size in 65536 $MAX_FRAME; do
        # a root client already connected sends its list request after the hostile frame has arrived
        "$KEK_RAW" "$SOCKET" hold:1000 frame:0802aa0100 >"$TESTDIR/other.out" 2>&1 &
        other=$!
        got=$(nobody_raw "nest:$size:34,1")
        is "deepest $size-byte frame from uid 65534: MALFORMED_REQUEST, its connection closed" "$got" \
                "id=0 error=MALFORMED_REQUEST|closed"
        diag "$(tail -1 "$TESTDIR/raw.err")"
        ok "kekd is still the same process" kekd_alive
        wait "$other"
        is "a client connected meanwhile is still served" "$(tr '\n' '|' <"$TESTDIR/other.out" | sed 's/|$//')" \
                "id=2 ok=list_keys|open"
        "$KEKCTL" wrap hk --context c <"$TESTDIR/aek" >"$TESTDIR/blob" 2>"$TESTDIR/err"
        is "a new client's wrap works" "$?" 0
        n=$((n + 1))
        wait_log "Closing connection of uid 65534 " $n
        is "kekd logged exactly one line about it so far ($n)" "$(log_lines "uid 65534\|PEER_UID=65534")" $n
done
ok "the line says why, by rule and field" \
        grep -q "Closing connection of uid 65534 pid [0-9]*: message nested within its own type more than once in field SubmitApprovalRequest.request" "$TESTDIR/kekd.log"
is "kekd's pid did not change" "$KEKD_PID" "$PID"

# Strings: refused as a whole, never cut at the NUL. Each a new connection as root.
# CreateKey "a\0b"
is "create-key 'a<NUL>b': MALFORMED_REQUEST, connection closed" \
        "$("$KEK_RAW" "$SOCKET" frame:0809a201050a03610062)" "$(printf 'id=0 error=MALFORMED_REQUEST\nclosed')"
refused UNKNOWN_KEY "... and no key 'a' exists" show a
# Wrap under "hk\0secretname" (hk exists: before the fix this wrapped under hk), a 16-byte plaintext
pt=$(od -An -tx1 -v "$TESTDIR/aek" | tr -d ' \n' | cut -c1-32)
is "wrap under 'hk<NUL>secretname': MALFORMED_REQUEST, connection closed" \
        "$("$KEK_RAW" "$SOCKET" "frame:080a52210a0d686b007365637265746e616d651210$pt")" \
        "$(printf 'id=0 error=MALFORMED_REQUEST\nclosed')"
# CreateKey "k\xff" and "k\xc0\x80" (an overlong NUL)
is "create-key with byte FF: MALFORMED_REQUEST" "$("$KEK_RAW" "$SOCKET" frame:080ba201040a026bff)" \
        "$(printf 'id=0 error=MALFORMED_REQUEST\nclosed')"
is "create-key with an overlong NUL (C0 80): MALFORMED_REQUEST" "$("$KEK_RAW" "$SOCKET" frame:080ca201050a036bc080)" \
        "$(printf 'id=0 error=MALFORMED_REQUEST\nclosed')"
refused UNKNOWN_KEY "... and no key 'k' exists" show k
wait_log "invalid UTF-8 in string in field CreateKeyRequest.key" 2
ok "the refusals are logged with the field" grep -q "NUL byte in string in field WrapRequest.key" "$TESTDIR/kekd.log"
ok "... never with the field's content" sh -c "! grep -q 'secretname' '$TESTDIR/kekd.log'"
kc list
ok "only hk exists" sh -c "[ \"\$(grep -c . '$TESTDIR/out')\" -ge 1 ] && grep -q hk '$TESTDIR/out' && ! grep -qw a '$TESTDIR/out'"

ok "kekd is still the same process" kekd_alive
kekd_stop
is "kekd exits 0 after all of it" "$KEKD_STATUS" 0
done_testing
