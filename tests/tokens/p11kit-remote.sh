#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# p11-kit remoting: a fresh SoftHSM2 token exported by "p11-kit server" (in
# the foreground, on a Unix socket under a private XDG_RUNTIME_DIR, stopped
# by PID) and reached through p11-kit-client.so with P11_KIT_SERVER_ADDRESS,
# the way a container reaches the host's HSM. See common.sh.
. "$(dirname "$0")/common.sh"
TOKEN_NAME=p11kit-remote
TOKEN_LABEL=kekd-tok-remote

token_install softhsm2 p11-kit p11-kit-modules opensc
provider=${SOFTHSM2_MODULE:-/usr/lib/softhsm/libsofthsm2.so}
[ -f "$provider" ] || provider=/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so
client=$(dpkg -L p11-kit-modules 2>/dev/null | grep '/p11-kit-client\.so$' | head -1)
[ -f "$client" ] || token_fail "no p11-kit-client.so" 77

mkdir -p "$TOKEN_DIR/run"
chmod 0700 "$TOKEN_DIR/run"
XDG_RUNTIME_DIR="$TOKEN_DIR/run"
export XDG_RUNTIME_DIR
softhsm2_token "$TOKEN_DIR" "$TOKEN_LABEL" "$TOKEN_PIN" "$TOKEN_SO_PIN" || token_fail "softhsm2-util --init-token"

token_spawn p11-kit server -f -s -n "$TOKEN_DIR/run/p11-kit.sock" --provider "$provider" "pkcs11:token=$TOKEN_LABEL" \
        >"$TOKEN_DIR/server.env" 2>"$TOKEN_DIR/server.log"
wait_for 20 test -S "$TOKEN_DIR/run/p11-kit.sock" 2>/dev/null || { cat "$TOKEN_DIR/server.log" >&2; token_fail "p11-kit server has no socket"; }
P11_KIT_SERVER_ADDRESS="unix:path=$TOKEN_DIR/run/p11-kit.sock"
export P11_KIT_SERVER_ADDRESS
# kekd and pkcs11-tool must not reach the token any other way than through the socket.
unset SOFTHSM2_CONF
token_pin_file
token_run "$client" "pkcs11:token=$TOKEN_LABEL" "$client" -- "$@"
