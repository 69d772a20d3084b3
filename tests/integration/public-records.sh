#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# Record mode "public + MAC" (issue 16 item 4): on a token that refuses
# private data objects but stores public ones (NSS softokn; emulated here by
# tests/p11-fault with P11_FAULT_NO_PRIVATE_DATA=1 over SoftHSM2), kekd
# starts, keeps its records in public data objects whose value ends in an
# HMAC-SHA256 tag made in the token under the record key ("kekd records"),
# and the lifecycle works, across a restart and with two kekd on the token.
# A record whose value was altered, or copied under another key's label, is
# not used, and is counted in status and metrics. The same on a token that
# stores no token data objects at all (NSS; P11_FAULT_NO_PRIVATE_DATA=all):
# records in private generic-secret key objects, with the same tag. On a token that stores
# private data objects nothing changes: records private, no record key.
. "$TESTLIB"

if [ ! -f "${P11_FAULT_LIB:-}" ]; then
        echo "Bail out! P11_FAULT_LIB not built (make check builds it)"
        exit 99
fi
if ! command -v pkcs11-tool >/dev/null 2>&1; then
        echo "1..0 # SKIP pkcs11-tool not installed (the test reads and plants objects with it)"
        exit 0
fi

p11_fault_setup
token_init pubrec
kekd_config
sed -i "s|^module = .*|module = $P11_FAULT_LIB|" "$CONF"
P11_FAULT_NO_PRIVATE_DATA=1
export P11_FAULT_NO_PRIVATE_DATA

p11() { pkcs11-tool --module "$SOFTHSM2_MODULE" --token-label pubrec "$@" 2>/dev/null; }
p11l() { p11 --login --pin "$TEST_PIN" "$@"; }
# data_count LABEL: public data objects of application kekd with LABEL, seen WITHOUT login
data_count() {
        p11 --list-objects --type data >"$TESTDIR/objs"
        awk -v l="$1" '/^Data object/ { lab = ""; app = "" }
                       /^  label:/ { lab = $2; gsub("\047", "", lab) }
                       /^  application:/ { app = $2; gsub("\047", "", app) }
                       /^  flags:/ { if (lab == l && app == "kekd" && $0 !~ /private/) n++ }
                       END { print n + 0 }' "$TESTDIR/objs"
}
record_keys() { p11l --list-objects --type secrkey | grep -c "label: *kekd records"; }
A() { "$KEKCTL" -s "$SOCKET" "$@"; }
# within DESCRIPTION COMMAND...: COMMAND succeeds, polled (<= 30 s)
within() {
        desc=$1
        shift
        i=0
        until "$@" >/dev/null 2>&1; do
                i=$((i + 1))
                if [ $i -ge 300 ]; then
                        tap_n=$((tap_n + 1))
                        tap_failed=$((tap_failed + 1))
                        echo "not ok $tap_n - $desc (not within 30 s)"
                        return
                fi
                sleep 0.1
        done
        tap_n=$((tap_n + 1))
        echo "ok $tap_n - $desc"
}

ok "kekd starts on a token that refuses private data objects" kekd_start
contains "the emulated token really refused a private data object" "$FLOG" "no-private-data"
contains "kekd says its records are public objects with an in-token HMAC" "$TESTDIR/kekd.log" \
        "refuses private data objects: key records are public token objects with an HMAC-SHA256 tag"
"$KEKCTL" status >"$TESTDIR/status" 2>&1
contains "status shows the record mode" "$TESTDIR/status" \
        "Records:      public objects + HMAC (token refuses private data objects)"
contains "status: the probe tried private and public data objects" "$TESTDIR/status" \
        "private_data_objects REFUSED; public_data_objects yes"

# The lifecycle.
succeeds "create" create acct
head -c 32 /dev/urandom >"$TESTDIR/aek"
"$KEKCTL" wrap acct --context c1 <"$TESTDIR/aek" >"$TESTDIR/blob1"
is "wrap" "$?" 0
"$KEKCTL" unwrap --context c1 <"$TESTDIR/blob1" >"$TESTDIR/out1"
ok "unwrap" cmp -s "$TESTDIR/aek" "$TESTDIR/out1"
refused BLOB_INVALID "a wrong context" unwrap --context c2 <"$TESTDIR/blob1"
succeeds "rotate" rotate acct
"$KEKCTL" wrap acct --context c1 <"$TESTDIR/aek" >"$TESTDIR/blob2"
is "wrap under version 2" "$?" 0
succeeds "disable" disable acct
refused KEY_DISABLED "wrap of a disabled key" wrap acct --context c1 <"$TESTDIR/aek"
succeeds "enable" enable acct
is "one record key was made in the token" "$(record_keys)" 1
is "acct's record is a public data object, readable without login" "$(data_count acct)" 1
p11 --read-object --type data --label acct --application-label kekd -o "$TESTDIR/rec" >/dev/null
ok "its value was read without login" test -s "$TESTDIR/rec"
kekd_stop
ok "kekd starts again" kekd_start
"$KEKCTL" unwrap --context c1 <"$TESTDIR/blob1" >"$TESTDIR/out1"
ok "after a restart the version-1 blob unwraps" cmp -s "$TESTDIR/aek" "$TESTDIR/out1"
"$KEKCTL" unwrap --context c1 <"$TESTDIR/blob2" >"$TESTDIR/out2"
ok "after a restart the version-2 blob unwraps" cmp -s "$TESTDIR/aek" "$TESTDIR/out2"
kc check
is "check finds the token consistent" "$KC_STATUS" 0

# A record altered in place of the real one (same label and application, one byte changed).
succeeds "create victim" create victim
p11 --read-object --type data --label victim --application-label kekd -o "$TESTDIR/victim" >/dev/null
python3 -c 'import sys; b = bytearray(open(sys.argv[1], "rb").read()); b[len(b) // 3] ^= 1; open(sys.argv[2], "wb").write(b)' \
        "$TESTDIR/victim" "$TESTDIR/victim.bad"
kekd_stop
p11 --delete-object --type data --label victim --application-label kekd >/dev/null
p11 --write-object "$TESTDIR/victim.bad" --type data --label victim --application-label kekd >/dev/null
is "the altered copy is planted as a public object" "$(data_count victim)" 1
# The real acct record copied under another key's label.
p11 --write-object "$TESTDIR/rec" --type data --label copycat --application-label kekd >/dev/null
is "acct's record is planted under the label copycat" "$(data_count copycat)" 1
ok "kekd starts with the planted records" kekd_start
kc list
ok "the altered record is not used: victim is not served" sh -c "! grep -qw victim '$TESTDIR/out'"
ok "the copied record is not used: copycat is not served" sh -c "! grep -qw copycat '$TESTDIR/out'"
contains "acct is still served" "$TESTDIR/out" "acct"
refused UNKNOWN_KEY "wrap with the altered record's key" wrap victim --context c1 <"$TESTDIR/aek"
"$KEKCTL" status >"$TESTDIR/status" 2>&1
contains "status reports records that failed their MAC" "$TESTDIR/status" "object(s) failed their MAC and are not used"
"$KEKCTL" status --prometheus >"$TESTDIR/metrics" 2>&1
ok "metrics count the refused records" grep -Eq '^kekd_record_mac_failures_total [1-9]' "$TESTDIR/metrics"
contains "metrics show the record mode" "$TESTDIR/metrics" 'kekd_token_records{mode="public+hmac"} 1'
kc check
ok "check finds the token inconsistent (status $KC_STATUS)" test "$KC_STATUS" -ne 0
contains "check names the altered record" "$TESTDIR/out" "record object 'victim' fails its MAC and is not used"
contains "check names the copied record" "$TESTDIR/out" "record object 'copycat' fails its MAC and is not used"
"$KEKCTL" unwrap --context c1 <"$TESTDIR/blob2" >"$TESTDIR/out2"
ok "acct still unwraps" cmp -s "$TESTDIR/aek" "$TESTDIR/out2"
p11 --delete-object --type data --label copycat --application-label kekd >/dev/null
p11 --delete-object --type data --label victim --application-label kekd >/dev/null
p11 --write-object "$TESTDIR/victim" --type data --label victim --application-label kekd >/dev/null
within "the original victim record, put back, is served again" sh -c "'$KEKCTL' list | grep -qw victim"

# Two kekd on the token, and a second record key (two kekd that generated one each at once):
# every record key verifies, the lowest CKA_ID signs.
ok "a second kekd starts on the token" kekd_b_start
B() { "$KEKCTL" -s "$SOCK_B" "$@"; }
B create bkey >/dev/null
within "a key created through B is served by A" A version bkey
A wrap bkey --context cb <"$TESTDIR/aek" >"$TESTDIR/blob3"
B unwrap --context cb <"$TESTDIR/blob3" >"$TESTDIR/out3"
ok "B unwraps what A wrapped" cmp -s "$TESTDIR/aek" "$TESTDIR/out3"
# "kekd-record-key:" and 16 zero bytes: lower than any random one.
p11l --keygen --key-type GENERIC:32 --label "kekd records" --sensitive \
        --id 6b656b642d7265636f72642d6b65793a00000000000000000000000000000000 >/dev/null
is "two record keys now" "$(record_keys)" 2
A create ckey >/dev/null
within "a record signed with the new lowest record key is served by B" B version ckey
B rotate acct >/dev/null
within "a rotation through B is seen by A" sh -c "'$KEKCTL' -s '$SOCKET' --json version acct | grep -q '\"current_version\":3,'"
A unwrap --context c1 <"$TESTDIR/blob1" >"$TESTDIR/out1"
ok "records signed under the first record key still verify" cmp -s "$TESTDIR/aek" "$TESTDIR/out1"
kill "$PID_B" 2>/dev/null
pid_reap "$PID_B" 10
kekd_stop
ok "kekd restarts with two record keys" kekd_start
kc list
contains "all keys are served after the restart" "$TESTDIR/out" "ckey"
ok "no record failed its MAC in this run" grep -Eq '^kekd_record_mac_failures_total 0$' \
        "$("$KEKCTL" status --prometheus >"$TESTDIR/metrics" 2>&1; echo "$TESTDIR/metrics")"
kekd_stop

# A token that stores no token data objects at all, public or private (NSS softokn): records are
# private generic-secret key objects "kekd-record:APP:NAME" carrying record and tag in CKA_ID.
P11_FAULT_NO_PRIVATE_DATA=all
token_init keyrec
kekd_config
sed -i "s|^module = .*|module = $P11_FAULT_LIB|" "$CONF"
KURI="pkcs11:token=keyrec"
pk() { pkcs11-tool --module "$SOFTHSM2_MODULE" --token-label keyrec --login --pin "$TEST_PIN" "$@" 2>/dev/null; }
ok "kekd starts on a token without token data objects" kekd_start
contains "the emulated token refused a public token data object too" "$FLOG" "no-private-data"
"$KEKCTL" status >"$TESTDIR/status" 2>&1
contains "status shows records in key objects" "$TESTDIR/status" \
        "Records:      private key objects + HMAC (token refuses token data objects)"
succeeds "create (key-object records)" create kacct
"$KEKCTL" wrap kacct --context k1 <"$TESTDIR/aek" >"$TESTDIR/kblob1"
is "wrap" "$?" 0
succeeds "rotate" rotate kacct
succeeds "disable" disable kacct
refused KEY_DISABLED "wrap of a disabled key" wrap kacct --context k1 <"$TESTDIR/aek"
succeeds "enable" enable kacct
succeeds "create victim" create kvictim
is "no data object on the token" "$(pk --list-objects --type data | grep -c '^Data object')" 0
pk --list-objects --type secrkey >"$TESTDIR/kobjs"
ok "kacct's record is a key object labelled kekd-record:kekd:kacct" grep -q "label: *kekd-record:kekd:kacct" "$TESTDIR/kobjs"
is "record objects are usable for nothing" \
        "$(grep -A3 'label: *kekd-record:' "$TESTDIR/kobjs" | grep -c 'Usage: *none')" \
        "$(grep -c 'label: *kekd-record:' "$TESTDIR/kobjs")"
kc check
is "check finds the token consistent (record objects and record key are not reported)" "$KC_STATUS" 0
kekd_stop
"$KEK_TEST_ATTRS" "$SOFTHSM2_MODULE" "$KURI" "$TESTDIR/pin" --plant-record keys kekd kvictim kvictim flip
is "a key-object record altered in place" "$?" 0
"$KEK_TEST_ATTRS" "$SOFTHSM2_MODULE" "$KURI" "$TESTDIR/pin" --plant-record keys kekd kacct kcopy copy
is "kacct's record copied under the name kcopy" "$?" 0
"$KEK_TEST_ATTRS" "$SOFTHSM2_MODULE" "$KURI" "$TESTDIR/pin" --bad-records keys kekd kekd-vault >"$TESTDIR/bad"
contains "the accessor for check names the altered record" "$TESTDIR/bad" "record object fails its MAC 'kvictim'"
contains "the accessor for check names the moved record" "$TESTDIR/bad" "record object fails its MAC 'kcopy'"
is "and no other" "$(wc -l <"$TESTDIR/bad")" 2
ok "kekd starts again" kekd_start
kc list
ok "the altered record is not used" sh -c "! grep -qw kvictim '$TESTDIR/out'"
ok "the moved record is not used" sh -c "! grep -qw kcopy '$TESTDIR/out'"
"$KEKCTL" unwrap --context k1 <"$TESTDIR/kblob1" >"$TESTDIR/kout1"
ok "after a restart the version-1 blob unwraps" cmp -s "$TESTDIR/aek" "$TESTDIR/kout1"
"$KEKCTL" status --prometheus >"$TESTDIR/metrics" 2>&1
ok "metrics count the refused records" grep -Eq '^kekd_record_mac_failures_total [1-9]' "$TESTDIR/metrics"
contains "metrics show the record mode" "$TESTDIR/metrics" 'kekd_token_records{mode="keys+hmac"} 1'
kekd_stop

# A token that stores private data objects: nothing changes.
unset P11_FAULT_NO_PRIVATE_DATA
token_init plain
kekd_config
ok "kekd starts on a normal token" kekd_start
succeeds "create on a normal token" create plainkey
p11n() { pkcs11-tool --module "$SOFTHSM2_MODULE" --token-label plain "$@" 2>/dev/null; }
is "no data object is visible without login" "$(p11n --list-objects --type data | grep -c '^Data object')" 0
ok "records are private data objects (seen after login)" sh -c \
        "pkcs11-tool --module '$SOFTHSM2_MODULE' --token-label plain --login --pin '$TEST_PIN' --list-objects --type data 2>/dev/null | grep -A3 \"label: *'plainkey'\" | grep -q 'flags: .*private'"
is "no record key is made" \
        "$(p11n --login --pin "$TEST_PIN" --list-objects --type secrkey | grep -c 'label: *kekd records')" 0
"$KEKCTL" status >"$TESTDIR/status" 2>&1
contains "status: records are private data objects" "$TESTDIR/status" "Records:      private data objects"
kekd_stop
done_testing
