#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# Every documented refusal through a real kekd: tampered blobs, wrong context,
# unknown key and version, and hostile frames (oversized, truncated, garbage,
# zero-length, empty, unknown type). Each bad input gets its stable error code,
# bad frames close only their own connection, and kekd keeps serving.
. "$TESTLIB"

token_init errors
kekd_config
ok "kekd starts" kekd_start
kc create acct1
head -c 32 /dev/urandom >"$TESTDIR/aek"
"$KEKCTL" wrap acct1 --context ctx-1 <"$TESTDIR/aek" >"$TESTDIR/blob"
is "blob of a 32-byte AEK under 'acct1' is 71 bytes" "$(wc -c <"$TESTDIR/blob" | tr -d ' ')" 71

# flip FILE OFFSET OUT: copy of FILE with the low bit of one byte flipped
flip() {
        cp "$1" "$3"
        b=$(od -An -tu1 -j "$2" -N1 "$1" | tr -d ' ')
        printf "$(printf '\\%03o' $((b ^ 1)))" | dd of="$3" bs=1 seek="$2" conv=notrunc 2>/dev/null
}

still_serving() {
        kekd_alive && "$KEKCTL" version acct1 >/dev/null 2>&1
}

flip "$TESTDIR/blob" 0 "$TESTDIR/t"
refused BLOB_INVALID "format byte changed" unwrap --context ctx-1 <"$TESTDIR/t"
flip "$TESTDIR/blob" 6 "$TESTDIR/t"
refused UNKNOWN_KEY "key name changed to acct0" unwrap --context ctx-1 <"$TESTDIR/t"
flip "$TESTDIR/blob" 9 "$TESTDIR/t"
refused UNKNOWN_VERSION "version changed to 257" unwrap --context ctx-1 <"$TESTDIR/t"
flip "$TESTDIR/blob" 12 "$TESTDIR/t"
refused BLOB_INVALID "IV changed" unwrap --context ctx-1 <"$TESTDIR/t"
flip "$TESTDIR/blob" 30 "$TESTDIR/t"
refused BLOB_INVALID "ciphertext changed" unwrap --context ctx-1 <"$TESTDIR/t"
flip "$TESTDIR/blob" 70 "$TESTDIR/t"
refused BLOB_INVALID "tag changed" unwrap --context ctx-1 <"$TESTDIR/t"
head -c 40 "$TESTDIR/blob" >"$TESTDIR/t"
refused BLOB_INVALID "truncated blob" unwrap --context ctx-1 <"$TESTDIR/t"
refused BLOB_INVALID "wrong context" unwrap --context ctx-2 <"$TESTDIR/blob"
refused BLOB_INVALID "missing context" unwrap <"$TESTDIR/blob"
refused UNKNOWN_KEY "wrap with an unknown key" wrap nokey <"$TESTDIR/aek"
refused UNKNOWN_KEY "show of an unknown key" show nokey
refused UNKNOWN_VERSION "wrap pinned to version 9" wrap acct1 --key-version 9 <"$TESTDIR/aek"
refused KEY_EXISTS "create of an existing key" create acct1
head -c 1025 /dev/urandom >"$TESTDIR/big"
kc wrap acct1 <"$TESTDIR/big"
is "kekctl refuses a plaintext above 1024 bytes as a usage error" "$KC_STATUS" 2
kc create "bad name"
is "kekctl refuses an invalid key name as a usage error" "$KC_STATUS" 2
bad=0
for c in create list show version rotate policy disable enable delete recover purge vault check wrap unwrap rewrap; do
        "$KEKCTL" "$c" --help >"$TESTDIR/out" 2>&1 && grep -q "^Usage: kekctl \[OPTIONS\] $c" "$TESTDIR/out" || bad=$((bad + 1))
done
is "every kekctl command has --help (exit 0, a usage line)" "$bad" 0
ok "kekd still serves after the refusals" still_serving

# raw NAME EXPECTED STEP...: kek-raw output must equal EXPECTED (lines joined by '|')
raw() {
        name=$1
        want=$2
        shift 2
        got=$("$KEK_RAW" "$SOCKET" "$@" | tr '\n' '|' | sed 's/|$//')
        is "$name" "$got" "$want"
        ok "kekd still serves after: $name" still_serving
}

raw "oversized frame header: FRAME_TOO_LARGE, connection closed" "id=0 error=FRAME_TOO_LARGE|closed" header:65537
raw "frame at 16 MiB declared: refused before any payload is sent" "id=0 error=FRAME_TOO_LARGE|closed" header:16777216
raw "zero-length frame: MALFORMED_REQUEST, connection closed" "id=0 error=MALFORMED_REQUEST|closed" raw:00000000
raw "undecodable payload: MALFORMED_REQUEST, connection closed" "id=0 error=MALFORMED_REQUEST|closed" frame:ffffffffff0f
raw "connection ends inside a frame: MALFORMED_REQUEST, closed" "id=0 error=MALFORMED_REQUEST|closed" header:100 raw:0801 shut
raw "request without an operation: MALFORMED_REQUEST, connection stays open" "id=5 error=MALFORMED_REQUEST|open" frame:0805
raw "request of an unknown type: UNSUPPORTED, connection stays open" "id=6 error=UNSUPPORTED|open" frame:0806f80601
raw "create with an invalid name: INVALID_ARGUMENT" "id=9 error=INVALID_ARGUMENT|open" frame:0809a201050a03612062
# three frames in one write: list (id 1), version of acct1 (id 2), version of nokey (id 3)
raw "pipelined requests are answered in order with their ids" "id=1 ok=list_keys|id=2 ok=get_key_version|id=3 error=UNKNOWN_KEY|open" \
        raw:000000050801aa01000000000b080262070a0561636374310000000b080362070a056e6f6b6579

# clients that send a request and hang up at once: kekd answers into the void and goes on
for i in 1 2 3 4 5; do "$KEK_RAW" "$SOCKET" raw:000000050801aa0100 close >/dev/null; done
ok "after 5 clients hung up right after their request, another is served (waited up to 30 s)" \
        timeout 30 "$KEKCTL" list
ok "... and kekd is still the same process" kekd_alive

# a client that stalls inside a frame holds only its own connection
"$KEK_RAW" "$SOCKET" header:100 raw:0801 hold:3000 >/dev/null &
stall=$!
sleep 0.2
ok "other clients are served while one stalls mid-frame" still_serving
kc unwrap --context ctx-1 <"$TESTDIR/blob"
is "unwrap works while one client stalls" "$KC_STATUS" 0
kill "$stall" 2>/dev/null
wait "$stall" 2>/dev/null

ok "kekd is still the same process" kekd_alive
ok "the PIN appears in no log line" sh -c "! grep -qF '$TEST_PIN' '$TESTDIR/kekd.log'"
kekd_stop
is "kekd exits 0 after all of it" "$KEKD_STATUS" 0
done_testing
