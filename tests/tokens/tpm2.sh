#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# tpm2-pkcs11 on a software TPM: swtpm (state in the temp dir, TPM commands
# and control on loopback TCP), a private D-Bus session bus and tpm2-abrmd
# on it (the plain swtpm TCTI runs out of object contexts), all started here
# and stopped by PID. libtpm2-pkcs11-1 is not installed: installing it
# registers a p11-kit module that prints TCTI errors in every p11-kit user
# on the machine, so its .deb is unpacked into $KEK_TOKENS_CACHE
# (default /var/tmp/kekd-tokens) and the module is loaded by path. The
# token store (sqlite) is in the temp dir (TPM2_PKCS11_STORE). See common.sh.
. "$(dirname "$0")/common.sh"
TOKEN_NAME=tpm2
TOKEN_LABEL=kekd-tok-tpm2

token_install swtpm swtpm-tools tpm2-abrmd libtss2-tcti-tabrmd0 libtpm2-pkcs11-tools dbus opensc \
        libsqlite3-0 libtss2-esys-3.0.2-0 libtss2-mu0 libtss2-rc0 libtss2-tctildr0 libyaml-0-2
cache=${KEK_TOKENS_CACHE:-/var/tmp/kekd-tokens}
module=$(find "$cache/tpm2-pkcs11" -name libtpm2_pkcs11.so.1 2>/dev/null | head -1)
if [ -z "$module" ]; then
        [ -n "${KEK_TOKENS_NO_INSTALL:-}" ] && token_fail "libtpm2-pkcs11-1 not unpacked in $cache" 77
        mkdir -p "$cache/tpm2-pkcs11" && (cd "$cache" && apt-get download libtpm2-pkcs11-1 >/dev/null 2>&1) &&
                dpkg-deb -x "$(ls "$cache"/libtpm2-pkcs11-1_*.deb | head -1)" "$cache/tpm2-pkcs11" ||
                token_fail "cannot unpack libtpm2-pkcs11-1" 77
        module=$(find "$cache/tpm2-pkcs11" -name libtpm2_pkcs11.so.1 | head -1)
fi
[ -f "$module" ] || token_fail "no libtpm2_pkcs11.so.1" 77

# Ports on loopback: the TPM's and the one above it for control.
port=$((20000 + $$ % 20000))
mkdir -p "$TOKEN_DIR/tpm" "$TOKEN_DIR/store"
token_spawn swtpm socket --tpm2 --tpmstate dir="$TOKEN_DIR/tpm" --flags not-need-init,startup-clear \
        --server type=tcp,port=$port,bindaddr=127.0.0.1 --ctrl type=tcp,port=$((port + 1)),bindaddr=127.0.0.1 \
        >"$TOKEN_DIR/swtpm.log" 2>&1
swtpm_pid=$TOKEN_LAST_PID
wait_for 20 sh -c "ss -ltn | grep -q '127.0.0.1:$port '" 2>/dev/null || token_fail "swtpm does not listen"
kill -0 "$swtpm_pid" || token_fail "swtpm exited: $(cat "$TOKEN_DIR/swtpm.log")"

token_spawn dbus-daemon --session --nofork --address="unix:path=$TOKEN_DIR/bus" >"$TOKEN_DIR/dbus.log" 2>&1
wait_for 20 test -S "$TOKEN_DIR/bus" 2>/dev/null || token_fail "dbus-daemon has no socket"
DBUS_SESSION_BUS_ADDRESS="unix:path=$TOKEN_DIR/bus"
export DBUS_SESSION_BUS_ADDRESS
token_spawn tpm2-abrmd --session --allow-root --tcti="swtpm:host=127.0.0.1,port=$port" >"$TOKEN_DIR/abrmd.log" 2>&1
TPM2_PKCS11_TCTI="tabrmd:bus_type=session"
TPM2TOOLS_TCTI=$TPM2_PKCS11_TCTI
TPM2_PKCS11_STORE="$TOKEN_DIR/store"
TPM2_PKCS11_LOG_LEVEL=0
export TPM2_PKCS11_TCTI TPM2TOOLS_TCTI TPM2_PKCS11_STORE TPM2_PKCS11_LOG_LEVEL
wait_for 30 sh -c "tpm2_ptool init --path='$TOKEN_DIR/store' >'$TOKEN_DIR/ptool.log' 2>&1" 2>/dev/null ||
        token_fail "tpm2_ptool init: $(tail -3 "$TOKEN_DIR/ptool.log"; tail -3 "$TOKEN_DIR/abrmd.log")"
tpm2_ptool addtoken --pid=1 --label="$TOKEN_LABEL" --sopin="$TOKEN_SO_PIN" --userpin="$TOKEN_PIN" \
        --path="$TOKEN_DIR/store" >>"$TOKEN_DIR/ptool.log" 2>&1 || token_fail "tpm2_ptool addtoken: $(tail -3 "$TOKEN_DIR/ptool.log")"
token_pin_file
token_run "$module" "pkcs11:token=$TOKEN_LABEL" "$module" -- "$@"
