#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# SoftHSM2 (the reference token of the test suite): a fresh token in a private
# directory through its own softhsm2.conf. No daemon. See common.sh.
. "$(dirname "$0")/common.sh"
TOKEN_NAME=softhsm2
TOKEN_LABEL=kekd-tok-softhsm2

token_install softhsm2 opensc
module=${SOFTHSM2_MODULE:-/usr/lib/softhsm/libsofthsm2.so}
[ -f "$module" ] || module=/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so
softhsm2_token "$TOKEN_DIR" "$TOKEN_LABEL" "$TOKEN_PIN" "$TOKEN_SO_PIN" || token_fail "softhsm2-util --init-token"
token_pin_file
token_run "$module" "pkcs11:token=$TOKEN_LABEL" "$module" -- "$@"
