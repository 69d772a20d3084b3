#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# Mechanism profiles (issue 16, docs/profiles.md) through a real kekd on
# SoftHSM2, with [hsm] profile pinned: for gcm and ctr-hmac, the lifecycle
# (create, wrap, unwrap, a wrong context refused, rotate, the old blob
# unwraps, rewrap, restart, unwrap), the blob's format byte and size, a blob
# whose format byte was changed refused, `check` consistent, the version's
# token objects (ctr-hmac: an AES key and a MAC key, both sensitive and never
# extractable), `check` naming a version whose MAC key is gone, and purge
# leaving no object. Then: a key created under gcm keeps its gcm versions
# when kekd is restarted with ctr-hmac, and its new versions get ctr-hmac,
# so both kinds of blob unwrap side by side; a token that does not generate
# GCM IVs makes kekd refuse to start with gcm-token-iv pinned (the probe's
# self-test) instead of using a zero IV; and on tests/p11-fault's FIPS
# emulation (P11_FAULT_TOKEN_IV=1), which refuses kekd's IVs, kekd refuses to
# start with gcm pinned, gcm-token-iv runs the whole lifecycle, a gcm blob
# made before still unwraps, its version's wraps are refused, and a rotation
# moves the key to gcm-token-iv.
. "$TESTLIB"

token_init profiles

aek() {
        head -c "${2:-32}" /dev/urandom >"$TESTDIR/$1"
}
wrap_to() {
        "$KEKCTL" wrap "$1" --context "$2" <"$TESTDIR/$3" >"$TESTDIR/$4" 2>"$TESTDIR/err"
}
unwraps_to() {
        "$KEKCTL" unwrap --context "$1" <"$TESTDIR/$2" 2>"$TESTDIR/err" | cmp -s - "$TESTDIR/$3"
}
byte_at() {
        od -An -tu1 -j "$2" -N1 "$TESTDIR/$1" | tr -d ' '
}
size_of() {
        wc -c <"$TESTDIR/$1" | tr -d ' '
}
# start_with PROFILE: (re)writes kekd.conf with [hsm] profile = PROFILE and starts kekd
start_with() {
        kekd_config
        sed -i "s|^sessions = .*|&\nprofile = $1|" "$CONF"
        kekd_start
}
# p11 ARGS...: pkcs11-tool on the test token, logged in
p11() {
        pkcs11-tool --module "$SOFTHSM2_MODULE" --token-label "$TOKEN_LABEL" --login --pin "$TEST_PIN" "$@" 2>/dev/null
}
# secret_keys NAME TYPE: how many secret key objects labelled NAME of TYPE (AES, GENERIC) the token holds
secret_keys() {
        p11 --list-objects --type secrkey | awk -v name="$1" -v type="$2" '
                /^Secret Key Object/ { t = (index($0, type) > 0) }
                /^ *label:/ { if (t && $2 == name) n++ }
                END { print n + 0 }'
}
# with_flipped IN OUT OFFSET VALUE: copy of blob IN with byte OFFSET set to VALUE (decimal)
with_flipped() {
        cp "$TESTDIR/$1" "$TESTDIR/$2"
        printf "$(printf '\\%03o' "$4")" | dd of="$TESTDIR/$2" bs=1 seek="$3" conv=notrunc 2>/dev/null
}

# lifecycle PROFILE KEY FORMAT IV TAG [CT32 CT1024]: CT* are the ciphertext sizes of a 32- and a
# 1024-byte AEK (the AEK's size but for cbc-hmac's padding)
lifecycle() {
        p=$1 k=$2 fmt=$3 iv=$4 tag=$5 ct32=${6:-32} ct1024=${7:-1024}
        n=$(printf %s "$k" | wc -c)
        succeeds "$p: create $k" create "$k"
        aek "aek-$k-1"
        aek "aek-$k-2" 1024
        ok "$p: wrap a 32-byte AEK" wrap_to "$k" c1 "aek-$k-1" "b-$k-1"
        is "$p: the blob's format byte is $fmt" "$(byte_at "b-$k-1" 0)" "$fmt"
        is "$p: the blob is header + $iv-byte IV + $ct32 + $tag-byte tag" "$(size_of "b-$k-1")" $((6 + n + iv + ct32 + tag))
        ok "$p: wrap a 1024-byte AEK" wrap_to "$k" c2 "aek-$k-2" "b-$k-2"
        is "$p: the largest blob is $((6 + n + iv + ct1024 + tag)) bytes" "$(size_of "b-$k-2")" $((6 + n + iv + ct1024 + tag))
        ok "$p: unwrap" unwraps_to c1 "b-$k-1" "aek-$k-1"
        ok "$p: unwrap the 1024-byte AEK" unwraps_to c2 "b-$k-2" "aek-$k-2"
        refused BLOB_INVALID "$p: unwrap with a wrong context" unwrap --context c9 <"$TESTDIR/b-$k-1"
        for other in 1 2 3 4; do
                [ "$other" -eq "$fmt" ] && continue
                with_flipped "b-$k-1" "b-$k-x" 0 "$other"
                refused BLOB_INVALID "$p: the blob with format byte $other is refused" unwrap --context c1 <"$TESTDIR/b-$k-x"
        done
        with_flipped "b-$k-1" "b-$k-x" $((6 + n + iv + 3)) 0
        with_flipped "b-$k-x" "b-$k-y" $((6 + n + iv + 4)) 1
        refused BLOB_INVALID "$p: a blob with changed ciphertext is refused" unwrap --context c1 <"$TESTDIR/b-$k-y"
        succeeds "$p: rotate $k" rotate "$k"
        ok "$p: wrap under version 2" wrap_to "$k" c3 "aek-$k-1" "b-$k-3"
        is "$p: the new blob names version 2 and format $fmt" "$(byte_at "b-$k-3" $((5 + n))):$(byte_at "b-$k-3" 0)" "2:$fmt"
        ok "$p: the version 1 blob still unwraps" unwraps_to c1 "b-$k-1" "aek-$k-1"
        "$KEKCTL" rewrap --context c1 <"$TESTDIR/b-$k-1" >"$TESTDIR/b-$k-r" 2>"$TESTDIR/err"
        is "$p: rewrap of the version 1 blob succeeds" "$?" 0
        is "$p: the rewrapped blob names version 2" "$(byte_at "b-$k-r" $((5 + n)))" 2
        ok "$p: the rewrapped blob unwraps" unwraps_to c1 "b-$k-r" "aek-$k-1"
        refused BLOB_INVALID "$p: rewrap with a wrong context" rewrap --context c9 <"$TESTDIR/b-$k-1"
}

# --- gcm and ctr-hmac pinned, each on a fresh kekd ------------------------------
ok "kekd starts with profile = gcm" start_with gcm
lifecycle gcm g 1 12 16
is "gcm: no MAC key in the token" "$(secret_keys g Generic)" 0
is "gcm: an AES key per version" "$(secret_keys g AES)" 2
kekd_stop

ok "kekd starts with profile = ctr-hmac" start_with ctr-hmac
lifecycle ctr-hmac c 2 16 32
is "ctr-hmac: a MAC key per version" "$(secret_keys c Generic)" 2
is "ctr-hmac: an AES key per version" "$(secret_keys c AES)" 2
"$KEK_TEST_ATTRS" "$SOFTHSM2_MODULE" "$TOKEN_URI" "$TESTDIR/pin" --mac c >"$TESTDIR/attrs" 2>&1
is "ctr-hmac: MAC keys are token, private, sensitive, never extractable, unreadable" "$?" 0
is "ctr-hmac: test-attrs read both MAC keys" "$(grep -c ' OK$' "$TESTDIR/attrs")" 2
"$KEK_TEST_ATTRS" "$SOFTHSM2_MODULE" "$TOKEN_URI" "$TESTDIR/pin" c >"$TESTDIR/attrs" 2>&1
is "ctr-hmac: the AES keys too" "$?" 0
succeeds "ctr-hmac: check" check
contains "ctr-hmac: check finds the token consistent" "$TESTDIR/out" "consistent"
kc --json show c
ok "ctr-hmac: show reports the profile of each version" grep -q '"profile":1' "$TESTDIR/out"

kekd_stop

ok "kekd starts with profile = cbc-hmac" start_with cbc-hmac
lifecycle cbc-hmac b 4 16 32 48 1040
is "cbc-hmac: a MAC key and an AES key per version" "$(secret_keys b AES):$(secret_keys b Generic)" 2:2
"$KEK_TEST_ATTRS" "$SOFTHSM2_MODULE" "$TOKEN_URI" "$TESTDIR/pin" --mac b >"$TESTDIR/attrs" 2>&1
is "cbc-hmac: its MAC keys are sensitive, never extractable, unreadable" "$?:$(grep -c ' OK$' "$TESTDIR/attrs")" 0:2
succeeds "cbc-hmac: check" check
contains "cbc-hmac: check finds the token consistent" "$TESTDIR/out" "consistent"

# --- restart: the records say which profile each version has ---------------------
kekd_stop
ok "kekd restarts with profile = auto" start_with auto
ok "after restart: the gcm blob unwraps" unwraps_to c1 b-g-1 aek-g-1
ok "after restart: the cbc-hmac blob unwraps" unwraps_to c3 b-b-3 aek-b-1
ok "after restart: the ctr-hmac version 1 blob unwraps" unwraps_to c1 b-c-1 aek-c-1
ok "after restart: the ctr-hmac version 2 blob unwraps" unwraps_to c3 b-c-3 aek-c-1
ok "after restart: wrap under ctr-hmac's current version" wrap_to c c4 aek-c-1 b-c-4
is "after restart: still format 2 (the version's, not auto's gcm)" "$(byte_at b-c-4 0)" 2
kekd_stop

# --- a gcm key rotated under ctr-hmac: both kinds of blob side by side ------------
ok "kekd restarts with profile = ctr-hmac" start_with ctr-hmac
succeeds "rotate the gcm key under ctr-hmac" rotate g
ok "wrap under the new version" wrap_to g c5 aek-g-1 b-g-5
is "the new version's blob is format 2" "$(byte_at b-g-5 0)" 2
ok "its gcm version 1 blob still unwraps" unwraps_to c1 b-g-1 aek-g-1
ok "its ctr-hmac version 3 blob unwraps" unwraps_to c5 b-g-5 aek-g-1
"$KEKCTL" rewrap --context c1 <"$TESTDIR/b-g-1" >"$TESTDIR/b-g-r" 2>"$TESTDIR/err"
is "rewrap moves a gcm blob to the ctr-hmac version" "$(byte_at b-g-r 0):$(byte_at b-g-r 6)" "2:3"
ok "the rewrapped blob unwraps" unwraps_to c1 b-g-r aek-g-1

# --- a version whose MAC key is gone is missing ---------------------------------
kekd_stop
ok "the MAC key of c version 1 is destroyed (test-only)" \
        "$KEK_TEST_ATTRS" "$SOFTHSM2_MODULE" "$TOKEN_URI" "$TESTDIR/pin" --destroy-mac c 1
is "the token holds c's two AES keys and one MAC key" "$(secret_keys c AES):$(secret_keys c Generic)" 2:1
ok "kekd restarts" start_with auto
kc check
contains "check names the version whose MAC key is gone" "$TESTDIR/out" "key 'c' version 1 (ctr-hmac): its MAC key is missing"
refused UNKNOWN_VERSION "its blobs are refused as of an unknown version" unwrap --context c1 <"$TESTDIR/b-c-1"
ok "the other version still unwraps" unwraps_to c3 b-c-3 aek-c-1
ok "an orphan MAC key of c version 7 is made (test-only)" \
        "$KEK_TEST_ATTRS" "$SOFTHSM2_MODULE" "$TOKEN_URI" "$TESTDIR/pin" --generate-mac c 7
ok "and one of the gcm key g's version 1" "$KEK_TEST_ATTRS" "$SOFTHSM2_MODULE" "$TOKEN_URI" "$TESTDIR/pin" --generate-mac g 1
kc check
contains "check reports the MAC key of a version the record does not name" "$TESTDIR/out" \
        "key 'c': MAC key for version 7 is not in its record"
contains "check reports a MAC key of a gcm version" "$TESTDIR/out" "key 'g': MAC key for version 1 is not in its record"

# --- purge destroys both keys of every version ----------------------------------
succeeds "delete c" delete c
succeeds "purge c" purge c
is "no AES key of c is left" "$(secret_keys c AES)" 0
is "no MAC key of c is left" "$(secret_keys c Generic)" 0
kekd_stop

# --- a pinned profile the token cannot do: kekd refuses to start (the probe, issue 16) ---
# refuse_start NAME: kekd on $CONF must exit before it listens; status in $RS, stderr in start-NAME.log
refuse_start() {
        timeout 60 "$KEKD" -c "$CONF" 2>"$TESTDIR/start-$1.log"
        RS=$?
        ok "$1: kekd refuses to start (status $RS)" test "$RS" -ne 0 -a "$RS" -ne 124
        ok "$1: it never listened" test ! -S "$SOCKET"
        is "$1: exactly one error line" "$(grep -c '^kekd\[error\]' "$TESTDIR/start-$1.log")" 1
}
kekd_config
sed -i "s|^sessions = .*|&\nprofile = gcm-token-iv|" "$CONF"
refuse_start "gcm-token-iv on a token that takes the caller's IV"
contains "the line names the profile and the refusal" "$TESTDIR/start-gcm-token-iv on a token that takes the caller's IV.log" \
        "profile gcm-token-iv"

# A key with a gcm version, made on the plain token, for the FIPS emulation below.
ok "kekd starts with profile = gcm" start_with gcm
succeeds "create fg" create fg
aek aek-t
ok "fg wraps under its gcm version" wrap_to fg c1 aek-t b-fg-1
kekd_stop

# --- gcm-token-iv on a token that generates GCM IVs (p11-fault's FIPS emulation) ---
if [ ! -f "${P11_FAULT_LIB:-}" ]; then
        echo "Bail out! P11_FAULT_LIB not built (make check builds it)"
        exit 99
fi
p11_fault_setup
P11_FAULT_TOKEN_IV=1
export P11_FAULT_TOKEN_IV
fips_config() {
        kekd_config
        sed -i -e "s|^module = .*|module = $P11_FAULT_LIB|" -e "s|^sessions = .*|&\nprofile = $1|" "$CONF"
}
start_fips() {
        fips_config "$1"
        kekd_start
}
fips_config gcm
refuse_start "gcm on the FIPS emulation"
contains "the line names the token's refusal of kekd's IV" "$TESTDIR/start-gcm on the FIPS emulation.log" "CKR_MECHANISM_PARAM_INVALID"
ok "kekd starts on the FIPS emulation with profile = gcm-token-iv" start_fips gcm-token-iv
lifecycle gcm-token-iv f 3 12 16
contains "the token generated the IVs" "$FLOG" "token-iv generated"
ok "fg's gcm blob, made before, still unwraps there (the token takes a caller's IV to decrypt)" unwraps_to c1 b-fg-1 aek-t
refused UNSUPPORTED "a wrap under fg's gcm version is refused: the token refuses kekd's IV" wrap fg <"$TESTDIR/aek-t"
contains "p11-fault refused the caller's IV" "$FLOG" "token-iv refused a caller IV"
succeeds "fg rotates to gcm-token-iv" rotate fg
ok "fg wraps under its gcm-token-iv version" wrap_to fg c1 aek-t b-fg
is "its blob is format 3" "$(byte_at b-fg 0)" 3
ok "fg's blob unwraps" unwraps_to c1 b-fg aek-t
# Two wraps of the same AEK under the same version: the token's IVs differ, and none is zero.
ok "a second wrap of the same AEK" wrap_to f c1 aek-f-1 b-f-9
iv1=$(od -An -tx1 -j 7 -N12 "$TESTDIR/b-f-1" | tr -d ' \n')
iv9=$(od -An -tx1 -j 7 -N12 "$TESTDIR/b-f-9" | tr -d ' \n')
ok "the IVs of two wraps differ ($iv1, $iv9)" [ "$iv1" != "$iv9" ]
ok "no blob carries an all-zero IV" test "${#iv1}" -eq 24 -a "${#iv9}" -eq 24 -a "$iv1" != 000000000000000000000000 -a \
        "$iv9" != 000000000000000000000000
kekd_stop

done_testing
