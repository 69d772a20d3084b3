#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# KEK and MAC-key searches against a writer of the token who has no PIN
# (issue 16 review). Such a writer can generate, in a session that never
# logged in, a public (CKA_PRIVATE FALSE) AES key that is sensitive and
# never extractable, under a key's label and a version's ID, and can then
# use it without login (C_Encrypt, C_Decrypt: a public object). The KEK
# search asked only for what generated keys report (sensitive, never
# extractable), so such a key was a second KEK of that version, which one
# a wrap used being up to the token's search order (SoftHSM2 returns
# kekd's first), and check called the token consistent. kekd's keys are
# private objects: only they are KEKs, and check names the planted one.
. "$TESTLIB"

if ! command -v pkcs11-tool >/dev/null 2>&1; then
        echo "1..0 # SKIP pkcs11-tool not installed (the test plays the writer without PIN with it)"
        exit 0
fi

token_init plantkek
kekd_config
# p11 ARGS...: the writer without PIN (pkcs11-tool never logs in)
p11() { pkcs11-tool --module "$SOFTHSM2_MODULE" --token-label plantkek "$@" 2>/dev/null; }

ok "kekd starts" kekd_start
succeeds "create acct" create acct
succeeds "rotate acct to version 2" rotate acct
kekd_stop
p11 --keygen --key-type AES:32 --label acct --id 00000002 --sensitive >"$TESTDIR/keygen"
ok "without login, a never-extractable AES key is generated under acct's label and version 2's ID" \
        grep -q 'never extractable' "$TESTDIR/keygen"
ok "it is a public object (no login was needed)" sh -c "! grep -q 'private' '$TESTDIR/keygen'"
ok "kekd starts with the planted key" kekd_start
head -c 32 /dev/urandom >"$TESTDIR/aek"
"$KEKCTL" wrap acct --context c1 <"$TESTDIR/aek" >"$TESTDIR/blob2"
is "wrap under version 2" "$?" 0
kc check
contains "check names the planted key as public" "$TESTDIR/out" \
        "key object labelled 'acct' is not used as a KEK: public (CKA_PRIVATE not TRUE"
kekd_stop
p11 --delete-object --type secrkey --id 00000002 --label acct >/dev/null
ok "kekd starts again" kekd_start
"$KEKCTL" unwrap --context c1 <"$TESTDIR/blob2" >"$TESTDIR/out2"
ok "the version-2 blob unwraps: it was made under kekd's KEK, not the planted one" cmp -s "$TESTDIR/aek" "$TESTDIR/out2"
kekd_stop
done_testing
