#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# Backup mode trusted-wrap (docs/backup.md, issue 17): a vault setting chosen
# once; versions made under it are sensitive and leave the token only
# wrapped under a key the SO marked CKA_TRUSTED. Asked of the token directly
# (tests/test-trusted-wrap, as a thief with the user PIN): wrapping under an
# untrusted key is refused (CKR_KEY_NOT_WRAPPABLE), under the SO-trusted key
# made by contrib/kekd-trust-wrapping-key.sh it works, CKA_VALUE stays
# unreadable, a user cannot set CKA_TRUSTED and CKA_WRAP_WITH_TRUSTED cannot
# be switched off. Mode none still makes never-extractable keys; an
# extractable key without CKA_WRAP_WITH_TRUSTED planted under a key's label
# is not adopted and check reports it; status and check name the versions
# without a backup path.
. "$TESTLIB"

TW=$(dirname "$KEK_TEST_ATTRS")/test-trusted-wrap
TRUST_KEY=$(dirname "$KEKD")/../contrib/kekd-trust-key
TRUST_SCRIPT=$(dirname "$TESTLIB")/../../contrib/kekd-trust-wrapping-key.sh
SO_PIN=87654321   # tests/lib/lib.sh token_init

token_init backup
printf '%s\n' "$SO_PIN" >"$TESTDIR/so-pin"
chmod 0600 "$TESTDIR/so-pin"
kekd_config
ok "kekd starts" kekd_start

# --- mode none: today's keys, counted -------------------------------------------
kc create old
is "create old in mode none" "$KC_STATUS" 0
kc vault
contains "vault shows backup mode none" "$TESTDIR/out" "Backup:            none"
"$TW" "$SOFTHSM2_MODULE" backup "$TESTDIR/pin" old 1 >"$TESTDIR/tw-old" 2>&1
contains "mode none: the KEK is never extractable, without CKA_WRAP_WITH_TRUSTED" "$TESTDIR/tw-old" \
        "attrs EXTRACTABLE=0 SENSITIVE=1 ALWAYS_SENSITIVE=1 NEVER_EXTRACTABLE=1 WRAP_WITH_TRUSTED=0"
contains "mode none: wrapping the KEK under any key is refused" "$TESTDIR/tw-old" "wrap-untrusted-aes CKR_KEY_UNEXTRACTABLE"
kc status
contains "status in mode none: one summary line" "$TESTDIR/out" "Backup:       none, 1 versions never extractable"
contains "the capability probe found CKA_WRAP_WITH_TRUSTED supported" "$TESTDIR/out" "wrap_with_trusted yes"
kc check
is "check in mode none is clean" "$KC_STATUS" 0
contains "check in mode none counts the version without a backup path" "$TESTDIR/out" "Without a backup path: 1 versions"

# --- switching it on, once -------------------------------------------------------
kc vault --backup trusted-wrap
is "backup mode trusted-wrap switched on" "$KC_STATUS" 0
contains "vault shows trusted-wrap" "$TESTDIR/out" "Backup:            trusted-wrap"
refused PERMISSION_DENIED "backup mode cannot go back to none" vault --backup none
contains "the refusal says why" "$TESTDIR/err" "trusted-wrap cannot be switched off"
kc vault --json
contains "vault --json names the mode" "$TESTDIR/out" '"backup":"trusted-wrap"'

# --- reporting: the old version has no backup path ---------------------------------
kc status
contains "status names the version without a backup path" "$TESTDIR/out" \
        "key 'old' version 1 is never extractable: it would be lost with the token; rotate it"
kc check
is "check fails while a version has no backup path" "$KC_STATUS" 1
contains "check names it" "$TESTDIR/out" \
        "PROBLEM: key 'old' version 1 is never extractable: it would be lost with the token; rotate it after enabling backup"

# --- new versions: trusted-wrap only -----------------------------------------------
kc create fresh
is "create fresh in mode trusted-wrap" "$KC_STATUS" 0
kc rotate old
is "rotate old" "$KC_STATUS" 0
printf 'secret data\n' >"$TESTDIR/plain"
KC_IN="$TESTDIR/plain" kc wrap fresh --context ctx
is "wrap under a trusted-wrap version" "$KC_STATUS" 0
cp "$TESTDIR/out" "$TESTDIR/blob"
KC_IN="$TESTDIR/blob" kc unwrap --context ctx
is "unwrap under it" "$KC_STATUS" 0
is "round trip" "$(cat "$TESTDIR/out")" "secret data"

# The SO's set-up: the DR token's RSA public key, imported and marked trusted.
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$TESTDIR/dr.key" 2>/dev/null &&
        openssl pkey -in "$TESTDIR/dr.key" -pubout -out "$TESTDIR/dr.pub" 2>/dev/null
KEKD_TRUST_KEY=$TRUST_KEY sh "$TRUST_SCRIPT" "$SOFTHSM2_MODULE" backup "$TESTDIR/so-pin" "dr wrapping key" \
        "$TESTDIR/dr.pub" >"$TESTDIR/trust" 2>&1
is "the SO's script imports the DR key as trusted" "$?" 0
contains "the script confirms CKA_TRUSTED from the token" "$TESTDIR/trust" "'dr wrapping key' is trusted"

for kv in "fresh 1" "old 2"; do
        # shellcheck disable=SC2086 # name and version, split on purpose
        set -- $kv
        "$TW" "$SOFTHSM2_MODULE" backup "$TESTDIR/pin" "$1" "$2" "dr wrapping key" >"$TESTDIR/tw" 2>&1
        is "$1 v$2: the helper ran" "$?" 0
        sed 's/^/# /' "$TESTDIR/tw"
        contains "$1 v$2: sensitive, extractable only with CKA_WRAP_WITH_TRUSTED" "$TESTDIR/tw" \
                "attrs EXTRACTABLE=1 SENSITIVE=1 ALWAYS_SENSITIVE=1 NEVER_EXTRACTABLE=0 WRAP_WITH_TRUSTED=1"
        contains "$1 v$2: CKA_VALUE is unreadable" "$TESTDIR/tw" "value CKR_ATTRIBUTE_SENSITIVE"
        contains "$1 v$2: wrapping under the user's AES key is refused" "$TESTDIR/tw" "wrap-untrusted-aes CKR_KEY_NOT_WRAPPABLE"
        contains "$1 v$2: wrapping under the user's copy of the DR key is refused" "$TESTDIR/tw" \
                "wrap-untrusted-rsa CKR_KEY_NOT_WRAPPABLE"
        contains "$1 v$2: a user cannot set CKA_TRUSTED" "$TESTDIR/tw" "set-trusted CKR_ATTRIBUTE_READ_ONLY"
        contains "$1 v$2: CKA_WRAP_WITH_TRUSTED cannot be switched off" "$TESTDIR/tw" \
                "unset-wrap-with-trusted CKR_ATTRIBUTE_READ_ONLY WRAP_WITH_TRUSTED=1"
        contains "$1 v$2: wrapping under the SO-trusted DR key works (RSA-OAEP, 256 bytes)" "$TESTDIR/tw" \
                "wrap-trusted CKR_OK 256"
done

kc show old --json
is "show --json: v1 never extractable, v2 trusted-wrap" \
        "$(tr -d ' \n' <"$TESTDIR/out" | grep -o '"wrap_with_trusted":[a-z]*' | tr '\n' ' ')" \
        '"wrap_with_trusted":false "wrap_with_trusted":true '
kc status
contains "status after the rotation: only old v1 left without a backup path" "$TESTDIR/out" \
        "trusted-wrap, 1 versions without a backup path"
kc check
contains "check still names old v1" "$TESTDIR/out" "key 'old' version 1 is never extractable"
is "check names nothing else" "$(grep -c '^PROBLEM' "$TESTDIR/out")" 1

# --- a restart reads the mode and the versions back from the token -------------------
kekd_stop
ok "kekd restarts" kekd_start
kc vault
contains "the mode is kept in the token" "$TESTDIR/out" "Backup:            trusted-wrap"
KC_IN="$TESTDIR/blob" kc unwrap --context ctx
is "after a restart the trusted-wrap version is found and unwraps" "$(cat "$TESTDIR/out")" "secret data"

# --- an extractable key planted under a key's label is not adopted ---------------------
# A generated (CKA_ALWAYS_SENSITIVE) but plainly extractable key: its owner could take it out in clear.
pkcs11-tool --module "$SOFTHSM2_MODULE" --token-label backup --login --pin "$TEST_PIN" --keygen --key-type AES:32 \
        --label fresh --id 00000002 --extractable --sensitive >"$TESTDIR/plant" 2>&1
is "an extractable AES key planted as fresh v2 (no CKA_WRAP_WITH_TRUSTED)" "$?" 0
kc check
contains "check reports the planted key" "$TESTDIR/out" \
        "key object labelled 'fresh' is not used as a KEK: extractable (without CKA_WRAP_WITH_TRUSTED)"
if grep -q "fresh': object for version 2" "$TESTDIR/out"; then
        is "the planted key is not adopted (no orphan version 2)" adopted "not adopted"
else
        is "the planted key is not adopted (no orphan version 2)" "not adopted" "not adopted"
fi
KC_IN="$TESTDIR/plain" kc wrap fresh --context ctx --key-version 2
is "no wrap under the planted 'version 2'" "$KC_STATUS" 1

kekd_stop
done_testing
