#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# A key made by C_DeriveKey in place of a version's KEK (CKA_LOCAL; last
# stop's review). A derived key inherits CKA_ALWAYS_SENSITIVE and
# CKA_NEVER_EXTRACTABLE from its base key (PKCS#11 2.40 section 4.10), so a
# holder of the user PIN can destroy a version's key object and derive one
# whose value they know under its label and ID: it matched kekd's generated
# form, and kekd wrapped new AEKs under it. SoftHSM2 sets CKA_LOCAL TRUE on
# the keys it generates and FALSE on derived ones: kekd refuses such a version
# there (HSM_UNAVAILABLE, as a version two objects answer to) and check names
# it. On a token that never reports CKA_LOCAL (NSS; p11-fault
# P11_FAULT_NO_LOCAL) nothing tells them apart: the residual, as before.
# A derived key on a further token ([hsm.b]) is named by check as well.
. "$TESTLIB"

if [ ! -f "${P11_FAULT_LIB:-}" ]; then
        echo "Bail out! P11_FAULT_LIB not built (make check builds it)"
        exit 99
fi

token_init derived
p11_fault_setup
kekd_config
sed -i "s|^module = .*|module = $P11_FAULT_LIB|" "$CONF"
# plant NAME VERSION: the PIN holder's derived key (tests/test-attrs.c --plant-derived)
plant() { "$KEK_TEST_ATTRS" "$SOFTHSM2_MODULE" "$TOKEN_URI" "$TESTDIR/pin" --plant-derived "$@" >"$TESTDIR/plant" 2>&1; }

ok "kekd starts" kekd_start
succeeds "create acct" create acct
succeeds "create other" create other
kekd_stop
ok "a key is derived in place of acct version 1" plant acct 1
contains "it is always sensitive and never extractable, but not local" "$TESTDIR/plant" \
        "always_sensitive=1 never_extractable=1 local=0 value="
# known_value: the value its maker computed encrypts a zero block as the planted key does
known_value() {
        v=$(sed -n 's/.* value=\([0-9a-f]*\) .*/\1/p' "$TESTDIR/plant")
        z=$(sed -n 's/.* zero_block=\([0-9a-f]*\)$/\1/p' "$TESTDIR/plant")
        [ ${#v} -eq 64 ] && [ ${#z} -eq 32 ] &&
                [ "$(head -c 16 /dev/zero | openssl enc -aes-256-ecb -K "$v" -nopad | od -An -tx1 | tr -d ' \n')" = "$z" ]
}
ok "its maker knows its value" known_value
ok "kekd starts with the derived key" kekd_start
head -c 32 /dev/urandom >"$TESTDIR/aek"
KC_IN="$TESTDIR/aek"
refused HSM_UNAVAILABLE "wrap under the derived key is refused" wrap acct --context c1
refused HSM_UNAVAILABLE "... again: a version refusal, not a token fault" wrap acct --context c1
kekd_alive
is "kekd still runs" "$?" 0
succeeds "another key wraps on the same token meanwhile" wrap other --context c1
kc check
contains "check names the version" "$TESTDIR/out" \
        "key 'acct' version 1: a key object that answers to it was not generated on the token (CKA_LOCAL FALSE"
grep -q "is degraded" "$TESTDIR/kekd.log"
is "the refusals do not mark the token degraded" "$?" 1

# Planted while kekd serves: the version's handle goes stale, the key is looked up again (and listed again).
succeeds "rotate other to version 2" rotate other
succeeds "other version 2 wraps" wrap other --context c1
ok "a key is derived in place of other version 2 while kekd runs" plant other 2
# wrap_refused: a wrap under other is refused within 20 s (the next lookup or listing sees the plant)
wrap_refused() {
        i=0
        while [ $i -lt 100 ]; do
                kc wrap other --context c1
                [ "$KC_STATUS" -eq 1 ] && grep -q ": HSM_UNAVAILABLE" "$TESTDIR/err" && return 0
                sleep 0.2
                i=$((i + 1))
        done
        echo "#   last: exit $KC_STATUS, $(cat "$TESTDIR/err")"
        return 1
}
ok "wraps under the plant are refused (HSM_UNAVAILABLE)" wrap_refused
# check_names: within 20 s (the next listing), check names other version 2 and a wrap is still refused
check_names() {
        i=0
        while [ $i -lt 100 ]; do
                kc check
                grep -q "key 'other' version 2: a key object that answers to it was not generated" "$TESTDIR/out" && break
                sleep 0.2
                i=$((i + 1))
        done
        [ $i -lt 100 ] || { sed 's/^/#   | /' "$TESTDIR/out"; return 1; }
        kc wrap other --context c1
        [ "$KC_STATUS" -eq 1 ] && grep -q ": HSM_UNAVAILABLE" "$TESTDIR/err"
}
ok "once the token is listed again, check names it and wraps stay refused" check_names
kekd_alive
is "kekd still runs" "$?" 0
kekd_stop

# The same on a token that never reports CKA_LOCAL: served, as before (the residual, docs/tokens.md).
P11_FAULT_NO_LOCAL=1
export P11_FAULT_NO_LOCAL
ok "kekd starts on a token without CKA_LOCAL" kekd_start
succeeds "create acct2" create acct2
kekd_stop
ok "a key is derived in place of acct2 version 1" plant acct2 1
ok "its maker knows its value" known_value
ok "kekd starts with it" kekd_start
kc wrap acct2 --context c1
is "without CKA_LOCAL the derived key is served (nothing tells it apart)" "$KC_STATUS" 0
kekd_stop
unset P11_FAULT_NO_LOCAL

# A further token holding no copy (never extractable, no replication): a key derived there under a version's
# label and ID is its only object for the version (other version 1, served by a), which failover refuses
# there; check names it.
A_URI=$TOKEN_URI
token_init derived-b
B_URI=$TOKEN_URI
TOKEN_URI=$A_URI
sed -i "s|^\[hsm\]$|[hsm]\nname = a|" "$CONF"
cat >>"$CONF" <<EOC

[hsm.b]
module = $SOFTHSM2_MODULE
token = $B_URI
EOC
ok "a key is derived on token b under other version 1's label and ID" \
        sh -c '"$0" "$1" "$2" "$3" --plant-derived other 1 >"$4" 2>&1' "$KEK_TEST_ATTRS" "$SOFTHSM2_MODULE" "$B_URI" \
        "$TESTDIR/pin" "$TESTDIR/plant"
contains "... not local there either" "$TESTDIR/plant" "always_sensitive=1 never_extractable=1 local=0"
ok "kekd starts with tokens a and b" kekd_start
# b_named: within 20 s (b opened and probed), check names b's derived object
b_named() {
        i=0
        while [ $i -lt 100 ]; do
                kc check
                grep -q "token 'b': the key object that answers to key 'other' version 1 was not generated on that token" \
                        "$TESTDIR/out" && return 0
                sleep 0.2
                i=$((i + 1))
        done
        sed 's/^/#   | /' "$TESTDIR/out"
        return 1
}
ok "check names token b's derived object" b_named
kekd_stop
done_testing
