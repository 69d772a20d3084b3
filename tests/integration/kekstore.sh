#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# The example storage program on libkek, through the README's demo flow:
# write, rotate (still reads), rewrap (AEK moves to the new version),
# disable (reads refused), enable (reads resume); and tampered or misplaced
# blocks, truncated files and blocks or files from an earlier write are
# refused.
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

# Truncation and rollback (issue 20.4): a file of 3 blocks (4096, 4096, 1808
# bytes) cut after its second block, with and without its header's length
# changed to match; one block put back from an earlier write; the whole
# earlier file put back. Each is refused with exit 1 and no output.
cp "$TESTDIR/saved" "$STORE/acct42/photo.kst"
ks put acct42 doc store <"$TESTDIR/data"
cp "$STORE/acct42/doc.kst" "$TESTDIR/doc.old"
head -c 10000 /dev/urandom >"$TESTDIR/data2"
ks put acct42 doc store <"$TESTDIR/data2"
ks get acct42 doc >"$TESTDIR/out"
ok "a rewritten file reads back its new data" cmp -s "$TESTDIR/out" "$TESTDIR/data2"
cp "$STORE/acct42/doc.kst" "$TESTDIR/doc.new"
size=$(wc -c <"$TESTDIR/doc.new")
hdr=4
[ "$(head -c 4 "$TESTDIR/doc.new")" = KST2 ] && hdr=20
refused() { # what, file: exit 1, nothing on stdout, the reason on stderr
        ks get acct42 doc >"$TESTDIR/out" 2>"$TESTDIR/err"
        is "$1 is refused" "$?" 1
        ok "... with nothing written" test ! -s "$TESTDIR/out"
        contains "... saying so ($2)" "$TESTDIR/err" "$2"
}
head -c $((size - 4 - 1808 - 29)) "$TESTDIR/doc.new" >"$STORE/acct42/doc.kst"
refused "the file cut to its first 2 blocks" "truncated: 2 of 3 blocks"
printf '\000\000\000\000\000\000\040\000' | dd of="$STORE/acct42/doc.kst" bs=1 seek=12 conv=notrunc 2>/dev/null
refused "... also with its header's length set to 8192" "does not authenticate"
cp "$TESTDIR/doc.new" "$STORE/acct42/doc.kst"
dd if="$TESTDIR/doc.old" of="$STORE/acct42/doc.kst" bs=1 skip=$((hdr + 4129)) seek=$((hdr + 4129)) count=4129 \
        conv=notrunc 2>/dev/null
refused "block 1 put back from the earlier write" "does not authenticate"
cp "$TESTDIR/doc.old" "$STORE/acct42/doc.kst"
refused "the whole earlier file put back" "rolled back"
cp "$TESTDIR/doc.new" "$STORE/acct42/doc.kst"
ks get acct42 doc >"$TESTDIR/out"
ok "the current file still reads" cmp -s "$TESTDIR/out" "$TESTDIR/data2"

# A forged header (issue F2): its generation 2^64-1 is refused on get, and a
# put over it takes the record's next generation, not the header's (which
# wrapped to 0: the earlier file then read again). F4: a header whose
# length is 2^64-1 with no block after it is truncated, not an I/O error.
gen_of() { od -An -tx1 "$STORE/acct42/doc.gen" | tr -d ' \n'; }
is "the record holds generation 2" "$(gen_of)" 0000000000000002
printf 'KST2\377\377\377\377\377\377\377\377\000\000\000\000\000\000\000\000' >"$STORE/acct42/doc.kst"
refused "a header forged to generation 2^64-1" "refused (corrupt)"
ks put acct42 doc store <"$TESTDIR/data"
is "a put over the forged header succeeds" "$?" 0
is "... and records generation 3, the record's next" "$(gen_of)" 0000000000000003
cp "$TESTDIR/doc.old" "$STORE/acct42/doc.kst"
refused "the earliest file put back after that" "rolled back"
{ printf KST2; cat "$STORE/acct42/doc.gen"; printf '\377\377\377\377\377\377\377\377'; } >"$STORE/acct42/doc.kst"
refused "a header-only file of length 2^64-1" "truncated: 0 of 4503599627370496 blocks"
: >"$TESTDIR/empty"
ks put acct42 empty store <"$TESTDIR/empty" && ks get acct42 empty >"$TESTDIR/out"
is "an empty file round trips (one empty final block)" "$?" 0
ok "... empty" test ! -s "$TESTDIR/out"
kekd_stop
done_testing
