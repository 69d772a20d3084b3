#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# The example storage program on libkek, through the README's demo flow:
# write, rotate (still reads), rewrap (AEK moves to the new version),
# disable (reads refused), enable (reads resume); and tampered or misplaced
# blocks are refused.
. "$TESTLIB"

token_init kekstore
kekd_config
ok "kekd starts" kekd_start
kc create store
STORE="$TESTDIR/store"
mkdir "$STORE"
ks() {
        "$KEKSTORE" -s "$SOCKET" "$STORE" "$@"
}
head -c 10000 /dev/urandom >"$TESTDIR/data"

ks put acct42 photo store <"$TESTDIR/data"
is "put writes an account's file as encrypted blocks" "$?" 0
ok "the stored file is not the plaintext" sh -c "! cmp -s '$TESTDIR/data' '$STORE/acct42/photo.kst'"
ks get acct42 photo >"$TESTDIR/out"
ok "get returns the same bytes" cmp -s "$TESTDIR/out" "$TESTDIR/data"
is "the AEK is wrapped under version 1" "$(ks info acct42)" "account acct42: key store version 1"

kc rotate store
ks get acct42 photo >"$TESTDIR/out"
ok "after a rotation the file still reads" cmp -s "$TESTDIR/out" "$TESTDIR/data"
ks rewrap acct42 >/dev/null
is "rewrap moves the AEK to version 2" "$(ks info acct42)" "account acct42: key store version 2"
ks get acct42 photo >"$TESTDIR/out"
ok "after the rewrap the file still reads" cmp -s "$TESTDIR/out" "$TESTDIR/data"

kc disable store
ks get acct42 photo >/dev/null 2>"$TESTDIR/err"
is "with the key disabled, reads are refused" "$?" 1
contains "... with KEY_DISABLED" "$TESTDIR/err" "KEY_DISABLED"
kc enable store
ks get acct42 photo >"$TESTDIR/out"
ok "enable restores reads" cmp -s "$TESTDIR/out" "$TESTDIR/data"

cp "$STORE/acct42/photo.kst" "$TESTDIR/saved"
printf 'X' | dd of="$STORE/acct42/photo.kst" bs=1 seek=5000 conv=notrunc 2>/dev/null
ks get acct42 photo >/dev/null 2>"$TESTDIR/err"
is "a changed byte is refused" "$?" 1
contains "... as a block that does not authenticate" "$TESTDIR/err" "does not authenticate"
cp "$TESTDIR/saved" "$STORE/acct42/photo.kst"
ks put acct7 photo store <"$TESTDIR/data"
cp "$STORE/acct42/photo.kst" "$STORE/acct7/photo.kst"
ks get acct7 photo >/dev/null 2>&1
is "another account's file is refused (its AEK differs)" "$?" 1
cp "$STORE/acct42/photo.kst" "$STORE/acct42/other.kst"
ks get acct42 other >/dev/null 2>&1
is "a file copied under another name is refused (block context)" "$?" 1
kekd_stop
done_testing
