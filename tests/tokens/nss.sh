#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# NSS softokn: a fresh sql: database (certutil -N) with a password (the user
# PIN of its "NSS Certificate DB" token). softokn cannot start without
# C_Initialize parameters naming the database, and kekd loads a module by
# path without any, so the module is registered with p11-kit in
# /etc/pkcs11/modules/kekd-nss-test.module (p11-kit ignores
# ~/.config/pkcs11 for root) with x-init-reserved, "enable-in: kekd,
# pkcs11-tool" and "critical: no" so that no other program loads it, and
# kekd names it (module = kekd-nss-test); the file is removed at exit.
# pkcs11-tool reads the token through p11-kit-proxy.so. See common.sh.
. "$(dirname "$0")/common.sh"
TOKEN_NAME=nss
TOKEN_LABEL="NSS Certificate DB"
MODNAME=kekd-nss-test

token_install libnss3 libnss3-tools p11-kit p11-kit-modules opensc
softokn=$(dpkg -L libnss3 2>/dev/null | grep '/libsoftokn3\.so$' | head -1)
proxy=$(dpkg -L p11-kit-modules 2>/dev/null | grep '/p11-kit-proxy\.so$' | head -1)
[ -f "$softokn" ] || token_fail "no libsoftokn3.so" 77
[ -f "$proxy" ] || token_fail "no p11-kit-proxy.so" 77
[ -e "/etc/pkcs11/modules/$MODNAME.module" ] && token_fail "/etc/pkcs11/modules/$MODNAME.module exists: another run?" 77

mkdir -p "$TOKEN_DIR/db"
token_pin_file
certutil -N -d "sql:$TOKEN_DIR/db" -f "$TOKEN_PIN_FILE" >/dev/null || token_fail "certutil -N"
made=""
[ -d /etc/pkcs11/modules ] || made=yes
mkdir -p /etc/pkcs11/modules
TOKEN_CLEANUP='rm -f "/etc/pkcs11/modules/$MODNAME.module"; [ -n "$made" ] && rmdir /etc/pkcs11/modules /etc/pkcs11 2>/dev/null'
cat >"/etc/pkcs11/modules/$MODNAME.module" <<EOC
# Written by kekd's tests/tokens/nss.sh for one test run; removed at its end.
module: $softokn
critical: no
enable-in: kekd, pkcs11-tool, test-oaep-transfer
x-init-reserved: configdir='sql:$TOKEN_DIR/db' certPrefix='' keyPrefix='' secmod='secmod.db' flags=
EOC
# softokn lets a copy of a KEK become extractable (C_CopyObject, docs/tokens.md): kekd refuses it unless told;
# scenario.sh asserts the refusal's opt-in warning and the probe's "unsafe".
TOKEN_HSM_EXTRA="allow_unsafe_token = yes"
TOKEN_UNSAFE=yes
token_run "$MODNAME" "pkcs11:token=NSS%20Certificate%20DB" "$proxy" -- "$@"
