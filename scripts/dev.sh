#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# Quick start, command 1: install packages, build, set up an embedded SoftHSM2
# development token under .dev/ (random PIN in a 0600 file), start kekd on it
# and run a short demo with kekctl. kekd is stopped at the end unless --keep
# is given, in which case it keeps running and its PID is in .dev/kekd.pid.
#
# The dev token is for trying kekd out: its PIN sits next to it on disk, which
# is exactly what a real HSM deployment must not do.
set -eu
cd "$(dirname "$0")/.."
TOP=$PWD
KEEP=0
[ "${1:-}" = "--keep" ] && KEEP=1

scripts/install-deps.sh
scripts/build.sh

DEV=$TOP/.dev
KEKD=$TOP/daemon/kekd
KEKCTL=$TOP/kekctl/kekctl
MODULE=$(sed -n 's/^SOFTHSM2_MODULE = //p' Makefile)
mkdir -p "$DEV/tokens"
chmod 0700 "$DEV"

cat >"$DEV/softhsm2.conf" <<EOF
directories.tokendir = $DEV/tokens
objectstore.backend = file
log.level = ERROR
EOF
SOFTHSM2_CONF=$DEV/softhsm2.conf
export SOFTHSM2_CONF

if ! softhsm2-util --show-slots 2>/dev/null | grep -q 'Label: *kekd-dev *$'; then
        umask 077
        od -An -tx1 -N16 /dev/urandom | tr -d ' \n' >"$DEV/pin"
        so_pin=$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')
        softhsm2-util --init-token --free --label kekd-dev --pin "$(cat "$DEV/pin")" --so-pin "$so_pin" >/dev/null
        umask 022
        echo "==> Initialised SoftHSM2 token 'kekd-dev' in $DEV/tokens (PIN in $DEV/pin, mode 0600)"
fi
chmod 0600 "$DEV/pin"

cat >"$DEV/kekd.conf" <<EOF
# Development configuration written by scripts/dev.sh
[hsm]
module = $MODULE
token = pkcs11:token=kekd-dev
pin_file = $DEV/pin

[server]
socket = $DEV/kekd.sock
socket_mode = 0600
EOF

if [ -f "$DEV/kekd.pid" ] && kill -0 "$(cat "$DEV/kekd.pid")" 2>/dev/null; then
        kill "$(cat "$DEV/kekd.pid")"
        sleep 0.5
fi
"$KEKD" -c "$DEV/kekd.conf" 2>>"$DEV/kekd.log" &
PID=$!
echo "$PID" >"$DEV/kekd.pid"
KEKD_SOCKET=$DEV/kekd.sock
export KEKD_SOCKET

stop() {
        if [ "$KEEP" -eq 0 ] && kill -0 "$PID" 2>/dev/null; then
                kill "$PID"
                wait "$PID" 2>/dev/null || true
                rm -f "$DEV/kekd.pid"
        fi
}
trap stop EXIT

i=0
until "$KEKCTL" list >/dev/null 2>&1; do
        i=$((i + 1))
        if [ $i -ge 100 ] || ! kill -0 "$PID" 2>/dev/null; then
                echo "kekd did not start; see $DEV/kekd.log" >&2
                tail -5 "$DEV/kekd.log" >&2
                exit 1
        fi
        sleep 0.1
done
echo "==> kekd is serving on $DEV/kekd.sock (pid $PID, log $DEV/kekd.log)"

step() {
        echo
        echo "\$ $*"
}

ACCOUNT=demo-$(date +%s)
step kekctl vault --purge-protection on "   # keys are served only from a recoverable vault"
"$KEKCTL" vault --purge-protection on

step kekctl create "$ACCOUNT"
"$KEKCTL" create "$ACCOUNT"

step "head -c 32 /dev/urandom > aek    # the account key a storage node makes"
head -c 32 /dev/urandom >"$DEV/aek"

step kekctl wrap "$ACCOUNT" --context account-42 "< aek > blob"
"$KEKCTL" wrap "$ACCOUNT" --context account-42 <"$DEV/aek" >"$DEV/blob"
od -An -tx1 "$DEV/blob" | head -3

step kekctl unwrap --context account-42 "< blob | cmp - aek"
"$KEKCTL" unwrap --context account-42 <"$DEV/blob" | cmp - "$DEV/aek" && echo "unwrapped AEK is identical"

step kekctl unwrap --context account-43 "< blob    # wrong context"
if "$KEKCTL" unwrap --context account-43 <"$DEV/blob" >/dev/null; then
        echo "unexpected: wrong context accepted" >&2
        exit 1
fi

step kekctl rotate "$ACCOUNT" "   # version 2 becomes current; version 1 keeps unwrapping"
"$KEKCTL" rotate "$ACCOUNT" >/dev/null
"$KEKCTL" unwrap --context account-42 <"$DEV/blob" | cmp - "$DEV/aek" && echo "the version 1 blob still unwraps"

step kekctl rewrap --context account-42 "< blob > blob2   # re-wrapped under version 2 inside kekd"
"$KEKCTL" rewrap --context account-42 <"$DEV/blob" >"$DEV/blob2"
"$KEKCTL" unwrap --context account-42 <"$DEV/blob2" | cmp - "$DEV/aek" && echo "blob2 unwraps to the same AEK"

step kekctl disable "$ACCOUNT" "   # revocation"
"$KEKCTL" disable "$ACCOUNT" >/dev/null
if "$KEKCTL" unwrap --context account-42 <"$DEV/blob2" >/dev/null; then
        echo "unexpected: disabled key served" >&2
        exit 1
fi
step kekctl enable "$ACCOUNT"
"$KEKCTL" enable "$ACCOUNT" >/dev/null
"$KEKCTL" unwrap --context account-42 <"$DEV/blob2" | cmp - "$DEV/aek" && echo "service restored"

step kekctl show "$ACCOUNT"
"$KEKCTL" show "$ACCOUNT"
step kekctl list
"$KEKCTL" list
step kekctl check
"$KEKCTL" check

echo
echo "==> A storage program on libkek: contrib/examples/kekstore"
KEKSTORE="$TOP/contrib/examples/kekstore"
STORE="$DEV/store"
rm -rf "$STORE" && mkdir -p "$STORE"
head -c 20000 /dev/urandom >"$DEV/data"
step kekstore store put account-42 photo "$ACCOUNT" "< data   # a new account AEK, wrapped; 5 sealed blocks"
"$KEKSTORE" -s "$DEV/kekd.sock" "$STORE" put account-42 photo "$ACCOUNT" <"$DEV/data"
"$KEKSTORE" "$STORE" info account-42
step kekctl rotate "$ACCOUNT" "; kekstore get account-42 photo   # still reads"
"$KEKCTL" rotate "$ACCOUNT" >/dev/null
"$KEKSTORE" -s "$DEV/kekd.sock" "$STORE" get account-42 photo | cmp - "$DEV/data" && echo "read back identical"
step kekstore rewrap account-42
"$KEKSTORE" -s "$DEV/kekd.sock" "$STORE" rewrap account-42
step kekctl disable "$ACCOUNT" "; kekstore get account-42 photo   # refused"
"$KEKCTL" disable "$ACCOUNT" >/dev/null
if "$KEKSTORE" -s "$DEV/kekd.sock" "$STORE" get account-42 photo >/dev/null; then
        echo "unexpected: read allowed with the key disabled" >&2
        exit 1
fi
step kekctl enable "$ACCOUNT" "; kekstore get account-42 photo   # reads resume"
"$KEKCTL" enable "$ACCOUNT" >/dev/null
"$KEKSTORE" -s "$DEV/kekd.sock" "$STORE" get account-42 photo | cmp - "$DEV/data" && echo "read back identical"

step kekctl grant "$ACCOUNT" user:nobody --ops wrap,unwrap "   # storage processes use keys only through grants"
"$KEKCTL" grant "$ACCOUNT" user:nobody --ops wrap,unwrap >/dev/null
"$KEKCTL" grants "$ACCOUNT"
step kekctl vault --dual-control purge,delete "   # from now on these need two officers"
"$KEKCTL" vault --dual-control purge,delete
if "$KEKCTL" delete "$ACCOUNT" >/dev/null 2>&1; then
        echo "unexpected: the delete was not refused"; exit 1
fi
echo "delete refused: APPROVAL_REQUIRED (kekctl request delete ..., then kekctl approve ID by another officer)"
step kekctl status
"$KEKCTL" status

rm -f "$DEV/aek" "$DEV/data"
echo
if [ "$KEEP" -eq 1 ]; then
        echo "==> Demo done. kekd keeps running (pid $PID). Try:"
        echo "    export KEKD_SOCKET=$DEV/kekd.sock SOFTHSM2_CONF=$DEV/softhsm2.conf"
        echo "    $KEKCTL list"
        echo "    kill $PID    # to stop it"
else
        echo "==> Demo done; stopping kekd. Run 'scripts/dev.sh --keep' to leave it running."
fi
