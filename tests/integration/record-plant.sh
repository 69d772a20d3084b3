#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# Record mode "private data objects" (every token that stores them) against
# a writer of the token who has no PIN (issue 16 review). Such a writer can
# create PUBLIC data objects, in a session that never logged in, with
# kekd's application and any label and value. The record listing asked
# only for class, application and label, so such an object was read as a
# record with nothing to authenticate it: a key record (as here, a key kekd
# never made on this token), a vault policy or an approval of the writer's
# making. In this mode records are private objects and only those are read.
. "$TESTLIB"

if ! command -v pkcs11-tool >/dev/null 2>&1; then
        echo "1..0 # SKIP pkcs11-tool not installed (the test plays the writer without PIN with it)"
        exit 0
fi

# A well-formed key record to plant: made by kekd on another token, read there with the PIN.
token_init donor
kekd_config
ok "kekd starts on the donor token" kekd_start
succeeds "create ghost on the donor token" create ghost
kekd_stop
pkcs11-tool --module "$SOFTHSM2_MODULE" --token-label donor --login --pin "$TEST_PIN" --read-object --type data \
        --label ghost --application-label kekd -o "$TESTDIR/ghost.rec" >/dev/null 2>&1
ok "ghost's record is read from the donor token" test -s "$TESTDIR/ghost.rec"

token_init victim
kekd_config
# p11 ARGS...: the writer without PIN (pkcs11-tool never logs in)
p11() { pkcs11-tool --module "$SOFTHSM2_MODULE" --token-label victim "$@" 2>/dev/null; }
ok "kekd starts" kekd_start
succeeds "create acct" create acct
kekd_stop
p11 --write-object "$TESTDIR/ghost.rec" --type data --label ghost --application-label kekd >/dev/null
is "without login, ghost's record is written as a public data object" \
        "$(p11 --list-objects --type data | grep -c "label: *'\{0,1\}ghost")" 1
ok "kekd starts with the planted record" kekd_start
kc list
contains "acct is served" "$TESTDIR/out" "acct"
ok "the public object is not taken for a record: ghost is not served" sh -c "! grep -qw ghost '$TESTDIR/out'"
kc check
ok "check does not report versions of ghost missing" sh -c "! grep -qw ghost '$TESTDIR/out'"
kekd_stop
done_testing
