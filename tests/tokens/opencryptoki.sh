#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# openCryptoki's soft token (slot 3, libpkcs11_sw.so). openCryptoki insists
# on its system places: the slot daemon pkcsslotd (started here in the
# foreground and stopped by PID), /etc/opencryptoki/opencryptoki.conf (must
# name slot 3) and the token store /var/lib/opencryptoki/swtok, which is set
# aside for the run and put back afterwards. The SO PIN must be changed
# before the user PIN is set, and the user PIN changed once more before use.
# See common.sh.
. "$(dirname "$0")/common.sh"
TOKEN_NAME=opencryptoki
TOKEN_LABEL=kekd-tok-ock
SLOT=3
SO_PIN=kso12345
TOKEN_SO_PIN=$SO_PIN # common.sh writes it to TOKEN_SO_PIN_FILE (step oaep-trusted)
TOKEN_PIN=kpin4711   # the soft token takes PINs of 4 to 8 characters

token_install opencryptoki opensc
module=/usr/lib/x86_64-linux-gnu/opencryptoki/libopencryptoki.so.0
[ -f "$module" ] || module=$(dpkg -L libopencryptoki0 2>/dev/null | grep '/libopencryptoki\.so\.0$' | head -1)
[ -f "$module" ] || token_fail "no libopencryptoki.so.0" 77
grep -q 'libpkcs11_sw.so' /etc/opencryptoki/opencryptoki.conf || token_fail "opencryptoki.conf has no soft token slot" 77
pgrep -x pkcsslotd >/dev/null && token_fail "a pkcsslotd is already running; not touching it" 77

store=/var/lib/opencryptoki/swtok
mkdir -p /var/lock/opencryptoki /run/opencryptoki "$store/TOK_OBJ"
chgrp pkcs11 /var/lock/opencryptoki /run/opencryptoki 2>/dev/null
chmod 0770 /var/lock/opencryptoki /run/opencryptoki
mv "$store" "$TOKEN_DIR/swtok.orig" || token_fail "cannot set $store aside"
mkdir -p "$store/TOK_OBJ"
chgrp -R pkcs11 "$store" 2>/dev/null
chmod -R 0770 "$store"
# Put the original store back and drop pkcsslotd's shared memory (after pkcsslotd is stopped).
TOKEN_CLEANUP='rm -rf "$store"; mv "$TOKEN_DIR/swtok.orig" "$store"; rm -f /dev/shm/*opencryptoki* /dev/shm/var.lib.opencryptoki* 2>/dev/null'

token_spawn pkcsslotd -f
wait_for 20 sh -c "pkcsconf -s -c $SLOT >/dev/null" 2>/dev/null || token_fail "pkcsslotd does not answer"
echo "$TOKEN_LABEL" | pkcsconf -c $SLOT -I -S 87654321 >/dev/null || token_fail "pkcsconf -I"
pkcsconf -c $SLOT -P -S 87654321 -n "$SO_PIN" || token_fail "pkcsconf -P (SO PIN change)"
pkcsconf -c $SLOT -u -S "$SO_PIN" -n "kfirst12" || token_fail "pkcsconf -u (user PIN)"
pkcsconf -c $SLOT -p -U "kfirst12" -n "$TOKEN_PIN" >/dev/null || token_fail "pkcsconf -p (user PIN change)"
token_pin_file
token_run "$module" "pkcs11:token=$TOKEN_LABEL" "$module" -- "$@"
