#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# The KEK never leaves the HSM: every key object kekd creates is read back
# through PKCS#11 (tests/test-attrs) and, independently, with OpenSC's
# pkcs11-tool, a tool this project did not write. Both must see a sensitive,
# never-extractable, private token key whose CKA_VALUE the token refuses.
. "$TESTLIB"

token_init attrs
kekd_config
ok "kekd starts" kekd_start
for k in alpha beta gamma; do
        kc create "$k"
        is "create $k" "$KC_STATUS" 0
done

"$KEK_TEST_ATTRS" "$SOFTHSM2_MODULE" "$TOKEN_URI" "$TESTDIR/pin" alpha beta gamma >"$TESTDIR/attrs" 2>&1
is "test-attrs finds no violation" "$?" 0
is "test-attrs checked three key objects" "$(grep -c ' OK$' "$TESTDIR/attrs")" 3
sed 's/^/# /' "$TESTDIR/attrs"

if ! command -v pkcs11-tool >/dev/null 2>&1; then
        echo "not ok $((tap_n + 1)) - pkcs11-tool (opensc) is installed"
        tap_n=$((tap_n + 1))
        tap_failed=$((tap_failed + 1))
        done_testing
fi

p11() {
        pkcs11-tool --module "$SOFTHSM2_MODULE" --token-label attrs "$@"
}

p11 --login --pin "$TEST_PIN" --list-objects --type secrkey >"$TESTDIR/p11" 2>&1
is "pkcs11-tool sees three AES-256 secret keys" "$(grep -c '^Secret Key Object; AES length 32$' "$TESTDIR/p11")" 3
is "pkcs11-tool: all three are sensitive, always sensitive, never extractable, generated on the token" \
        "$(grep -c '^  Access: *sensitive, always sensitive, never extractable, local$' "$TESTDIR/p11")" 3
is "pkcs11-tool: all three allow only encrypt and decrypt" \
        "$(grep -c '^  Usage: *encrypt, decrypt$' "$TESTDIR/p11")" 3
is "pkcs11-tool: the version is the CKA_ID" "$(grep -c '^  ID: *00000001$' "$TESTDIR/p11")" 3
contains "the token refused CKA_VALUE to pkcs11-tool" "$TESTDIR/p11" "CKR_ATTRIBUTE_SENSITIVE"

for k in alpha beta gamma; do
        rm -f "$TESTDIR/value"
        p11 --login --pin "$TEST_PIN" --read-object --type secrkey --label "$k" -o "$TESTDIR/value" >"$TESTDIR/read" 2>&1
        st=$?
        tap_n=$((tap_n + 1))
        if [ $st -ne 0 ] && [ ! -s "$TESTDIR/value" ]; then
                echo "ok $tap_n - pkcs11-tool --read-object of $k fails and writes nothing"
        else
                echo "not ok $tap_n - pkcs11-tool --read-object of $k fails and writes nothing (exit $st)"
                tap_failed=$((tap_failed + 1))
        fi
done

p11 --list-objects >"$TESTDIR/public" 2>&1
is "without login no kekd object is visible (keys and metadata are private)" "$(grep -c 'label:' "$TESTDIR/public")" 0

p11 --login --pin "$TEST_PIN" --list-objects --type data >"$TESTDIR/data" 2>&1
is "one private metadata object per key, application kekd" "$(grep -c "application: *'kekd'" "$TESTDIR/data")" 3

kekd_stop
done_testing
