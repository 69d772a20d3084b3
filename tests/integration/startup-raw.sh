#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# tests/bench/startup-raw, the floor kekbench's start-up ratio is measured
# against (issue 18): it must list what kekd lists at start, by kekd's
# searches, no more and no less. Keys made through kekd are all counted
# (their records and version objects); objects kekd does not take are not:
# a private, sensitive, extractable AES key under a key's label and a
# version's ID (no KEK by KEK_SEARCH_TEMPLATE) and a private data object
# of another application (not a record of kekd's two).
. "$TESTLIB"

if ! command -v pkcs11-tool >/dev/null 2>&1; then
        echo "1..0 # SKIP pkcs11-tool not installed (the test plants foreign objects with it)"
        exit 0
fi
STARTUP_RAW=${STARTUP_RAW:-$(dirname "$KEKD")/../tests/bench/startup-raw}

token_init rawlist
kekd_config
p11() { pkcs11-tool --module "$SOFTHSM2_MODULE" --token-label rawlist --login --pin "$TEST_PIN" "$@" 2>/dev/null; }
# raw: startup-raw's "USEC RECORDS KEYS CPU_USEC" into $TESTDIR/raw
raw() { "$STARTUP_RAW" "$SOFTHSM2_MODULE" "$TOKEN_URI" "$TESTDIR/pin" >"$TESTDIR/raw"; }

ok "kekd starts" kekd_start
succeeds "create acct" create acct
succeeds "create other" create other
succeeds "rotate other to version 2" rotate other
kekd_stop
ok "startup-raw lists the token" raw
is "it reads the two key records" "$(cut -d' ' -f2 "$TESTDIR/raw")" 2
is "and the three version objects" "$(cut -d' ' -f3 "$TESTDIR/raw")" 3
ok "it reports wall and CPU time" grep -Eq '^[0-9]+ 2 3 [0-9]+$' "$TESTDIR/raw"

p11 --keygen --key-type AES:32 --label acct --id 00000003 --sensitive --extractable --private >/dev/null
printf 'foreign' >"$TESTDIR/foreign"
p11 --write-object "$TESTDIR/foreign" --type data --label acct --application-label other-app --private >/dev/null
p11 -O >"$TESTDIR/objects"
contains "a sensitive, extractable AES key is planted under acct's label" "$TESTDIR/objects" "sensitive, extractable"
contains "and a private data object of another application" "$TESTDIR/objects" "'other-app'"
ok "startup-raw lists the token again" raw
is "the foreign data object is no record" "$(cut -d' ' -f2 "$TESTDIR/raw")" 2
is "the extractable key is no KEK" "$(cut -d' ' -f3 "$TESTDIR/raw")" 3
ok "kekd starts on that token" kekd_start
kc list
contains "kekd serves the same two keys" "$TESTDIR/out" "other"
kekd_stop
done_testing
