#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# Record mode "public + MAC" against a writer of the token who has no PIN
# (issue 16 review). Public objects can be created and used in a session
# that never logged in; that is why public records carry a tag. Such a
# writer can generate a generic-secret key in the token, sensitive and
# never extractable, labelled 'kekd records' with the record-key ID scheme
# and a lower CKA_ID than kekd's, but public (CKA_PRIVATE FALSE), so it can
# C_Sign with it without login too. kekd took it for a record key and, the
# lowest ID signing, signed its new records with it: records the writer
# could forge, and could make fail their MAC by deleting that key, which
# this test does. A record key is a private object (records-mac.h): only
# someone logged in makes or uses one.
. "$TESTLIB"

if [ ! -f "${P11_FAULT_LIB:-}" ]; then
        echo "Bail out! P11_FAULT_LIB not built (make check builds it)"
        exit 99
fi
if ! command -v pkcs11-tool >/dev/null 2>&1; then
        echo "1..0 # SKIP pkcs11-tool not installed (the test plays the writer without PIN with it)"
        exit 0
fi

p11_fault_setup
token_init plant
kekd_config
sed -i "s|^module = .*|module = $P11_FAULT_LIB|" "$CONF"
P11_FAULT_NO_PRIVATE_DATA=1
export P11_FAULT_NO_PRIVATE_DATA

# p11 ARGS...: the writer without PIN (pkcs11-tool never logs in) on SoftHSM2 directly
p11() { pkcs11-tool --module "$SOFTHSM2_MODULE" --token-label plant "$@" 2>/dev/null; }
# The record-key ID scheme (records-mac.h) with the lowest possible random part.
low_id=$(printf 'kekd-record-key:' | od -An -tx1 | tr -d ' \n')00000000000000000000000000000000

ok "kekd starts (records are public objects + HMAC)" kekd_start
succeeds "create acct" create acct
head -c 32 /dev/urandom >"$TESTDIR/aek"
"$KEKCTL" wrap acct --context c1 <"$TESTDIR/aek" >"$TESTDIR/blob1"
is "wrap" "$?" 0
kekd_stop

p11 --keygen --key-type GENERIC:32 --label 'kekd records' --id "$low_id" --sensitive >"$TESTDIR/keygen"
ok "without login, a never-extractable 'kekd records' key with the lowest ID is generated" \
        grep -q 'never extractable' "$TESTDIR/keygen"
ok "it is a public object (no login was needed)" sh -c "! grep -q 'private' '$TESTDIR/keygen'"
ok "kekd starts with the planted key" kekd_start
kc list
contains "acct is still served (its record's tag is kekd's record key's)" "$TESTDIR/out" "acct"
"$KEKCTL" unwrap --context c1 <"$TESTDIR/blob1" >"$TESTDIR/out1"
ok "acct's blob unwraps" cmp -s "$TESTDIR/aek" "$TESTDIR/out1"
succeeds "create newkey" create newkey
kekd_stop
# Had kekd signed newkey's record with the planted key, the writer could
# now make it fail its MAC by deleting that key, again without login.
p11 --delete-object --type secrkey --id "$low_id" >/dev/null
is "without login, the planted key is deleted" "$(p11 --list-objects --type secrkey | grep -c 'label: *kekd records')" 0
ok "kekd starts again" kekd_start
kc list
contains "newkey is served: kekd signed its record with its own (private) record key" "$TESTDIR/out" "newkey"
"$KEKCTL" wrap newkey --context c1 <"$TESTDIR/aek" >"$TESTDIR/blob2"
is "newkey wraps" "$?" 0
kekd_stop
done_testing
