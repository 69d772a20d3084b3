#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# No GCM IV exists before the wrap that uses it (issue 20, item 2): a copy of
# kekd's memory taken after one wrap (gcore, as a restored VM snapshot or a
# cloned process would hold it) must not contain the IVs of the next wraps.
# A pool drawn ahead into kekd's memory would be replayed by such a copy.
. "$TESTLIB"

N=8
token_init iv
kekd_config
ok "kekd starts on a fresh token" kekd_start
kc create ivkey
is "create ivkey exits 0" "$KC_STATUS" 0

if [ ! -x /usr/bin/gcore ] || [ -n "${KEKD_WRAPPER:-}" ] || kekd_sanitized; then
        # valgrind's process image is not kekd's own heap; ASan's holds terabytes of shadow
        tap_n=$((tap_n + 1))
        echo "ok $tap_n # SKIP gcore not installed, or kekd runs under valgrind or ASan"
        done_testing
        exit 0
fi

head -c 32 /dev/urandom >"$TESTDIR/aek"
"$KEKCTL" wrap ivkey --context first <"$TESTDIR/aek" >"$TESTDIR/blob0"
is "a first wrap succeeds (any IV source is set up now)" "$?" 0

ok "gcore writes a copy of kekd's memory" sh -c "/usr/bin/gcore -o '$TESTDIR/core' $KEKD_PID >/dev/null 2>&1"
core=$(ls "$TESTDIR"/core.* 2>/dev/null | head -1)
ok "the core file is there" test -s "$core"

i=1
fail=0
while [ $i -le $N ]; do
        "$KEKCTL" wrap ivkey --context "next-$i" <"$TESTDIR/aek" >"$TESTDIR/blob$i" || fail=$((fail + 1))
        i=$((i + 1))
done
is "$N more wraps succeed" "$fail" 0

# Blob v1: 0x01 | len | name | version (4) | IV (12) | ciphertext | tag
found=$(python3 - "$core" "$TESTDIR" "$N" <<'EOF'
import sys
core = open(sys.argv[1], "rb").read()
found = 0
for i in range(1, int(sys.argv[3]) + 1):
    b = open(f"{sys.argv[2]}/blob{i}", "rb").read()
    off = 2 + b[1] + 4
    iv = b[off:off + 12]
    assert len(iv) == 12
    if iv in core:
        found += 1
print(found)
EOF
)
is "none of the next $N wraps' IVs was in kekd's memory before them" "$found" 0
core0=$(python3 - "$core" "$TESTDIR/blob0" <<'EOF'
import sys
core = open(sys.argv[1], "rb").read()
b = open(sys.argv[2], "rb").read()
print(1 if b[2 + b[1] + 4:2 + b[1] + 16] in core or b[-16:] in core else 0)
EOF
)
diag "the first wrap's IV or tag found in the core: $core0 (informative)"
rm -f "$core"

i=1
bad=0
while [ $i -le $N ]; do
        "$KEKCTL" unwrap --context "next-$i" <"$TESTDIR/blob$i" | cmp -s - "$TESTDIR/aek" || bad=$((bad + 1))
        i=$((i + 1))
done
is "the $N blobs unwrap" "$bad" 0
done_testing
