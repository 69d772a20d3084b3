#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# A failed create leaves no key behind. kekd runs on tests/p11-fault and a
# fault is injected at each step of `kekctl create` (keystore_create()):
#   lookup   C_FindObjectsInit 1  is the name free?
#   intent   C_CreateObject 1     the record "version 1 being created"
#   contest  C_FindObjectsInit 2  no other kekd wrote the same name
#   orphan   C_FindObjectsInit 3  no version-1 object is left from before
#   generate C_GenerateKey        the version-1 key object
#   commit   C_CreateObject 2     the record naming version 1
# each refused before the call, and the writes also done but reported failed
# ("after": a lost reply). A create that answers an error must leave nothing:
# list, show, version, disable, enable, delete, recover, purge, rotate and
# wrap treat the key as unknown (UNKNOWN_KEY), status does not count it, no
# object with its label is on the token (pkcs11-tool), `kekctl check` is
# clean, and a later create of the name succeeds. A create that answers OK
# (a commit whose reply was lost) must have made a key that works. Then the
# same when the rollback fails too (the record stays half made until a later
# create or the repair finishes it). The refresh timer is out of the way:
# its repair would hide a half-made key.
. "$TESTLIB"

if [ ! -f "${P11_FAULT_LIB:-}" ]; then
        echo "Bail out! P11_FAULT_LIB not built (make check builds it)"
        exit 99
fi

p11_fault_setup
REFRESH_INTERVAL=3600
token_init cfault
kekd_config
sed -i "s|^module = .*|module = $P11_FAULT_LIB|" "$CONF"
ok "kekd starts on p11-fault" kekd_start
head -c 32 /dev/urandom >"$TESTDIR/aek"

# code: the error code of the last kc ("ok" if it succeeded)
code() {
        if [ "$KC_STATUS" -eq 0 ]; then
                echo ok
        else
                c=$(sed -n 's/^kekctl: [a-z-]*: \([A-Z_]*\): .*/\1/p' "$TESTDIR/err" | head -n 1)
                echo "${c:-exit$KC_STATUS}"
        fi
}
# status_keys: the number of keys `kekctl status` reports
status_keys() {
        "$KEKCTL" status 2>/dev/null | sed -n 's/^Keys: *\([0-9]*\).*/\1/p'
}
# token_objects NAME: the objects labelled NAME on the token, as pkcs11-tool lists them
token_objects() {
        pkcs11-tool --module "$SOFTHSM2_MODULE" --token-label cfault --login --pin "$TEST_PIN" --list-objects 2>/dev/null |
                grep -c "label: *'\?$1'\?\$"
}
HAVE_P11TOOL=""
command -v pkcs11-tool >/dev/null 2>&1 && HAVE_P11TOOL=1

# absent NAME WHAT: every request treats NAME as an unknown key, and nothing of it is left
absent() {
        name=$1
        what=$2
        bad=""
        "$KEKCTL" list >"$TESTDIR/list" 2>&1
        grep -qw -- "$name" "$TESTDIR/list" && bad="$bad list"
        for op in show version disable enable delete recover purge rotate; do
                kc $op "$name"
                [ "$(code)" = UNKNOWN_KEY ] || bad="$bad $op:$(code)"
        done
        KC_IN="$TESTDIR/aek" kc wrap "$name" --context c
        [ "$(code)" = UNKNOWN_KEY ] || bad="$bad wrap:$(code)"
        n=$(status_keys)
        [ "$n" = "$BASE_KEYS" ] || bad="$bad status:$n-keys"
        if [ -n "$HAVE_P11TOOL" ]; then
                n=$(token_objects "$name")
                [ "$n" = 0 ] || bad="$bad token:$n-objects"
        fi
        is "$what: the key does not exist for any request, nor on the token" "${bad# }" ""
}
# works NAME WHAT: NAME is a complete key: version 1, enabled, wraps
works() {
        bad=""
        kc version "$1"
        [ "$(code)" = ok ] || bad="$bad version:$(code)"
        KC_IN="$TESTDIR/aek" kc wrap "$1" --context c
        [ "$(code)" = ok ] || bad="$bad wrap:$(code)"
        is "$2: the key is complete and wraps" "${bad# }" ""
}
# drop NAME: deletes and purges a complete key (no faults)
drop() {
        "$KEKCTL" delete "$1" >/dev/null 2>&1
        "$KEKCTL" purge "$1" >/dev/null 2>&1
}

"$KEKCTL" create base >/dev/null
BASE_KEYS=$(status_keys)
is "status counts the one key made without faults" "$BASE_KEYS" 1

n_case=0
# try STEP EXPECT RULES: create under RULES (p11-fault), then the checks. EXPECT:
# "error" (create must fail) or "either" (a lost reply: either outcome, checked).
try() {
        step=$1
        expect=$2
        rules=$3
        n_case=$((n_case + 1))
        key=c$n_case
        : >"$FLOG"
        fault_set "$rules"
        kc create $key
        c=$(code)
        fault_set ""
        what="create $key ($step: $(echo "$rules" | tr '\n' ' '))"
        ok "$what: the fault fired" grep -q "rule=file" "$FLOG"
        if [ "$expect" = error ]; then
                ok "$what: create answers an error ($c)" test "$c" != ok
        fi
        if [ "$c" = ok ]; then
                works $key "$what"
                kc check
                is "$what: check is clean" "$KC_STATUS" 0
                drop $key
                return
        fi
        absent $key "$what"
        kc check
        is "$what: check is clean" "$KC_STATUS" 0
        kc create $key
        is "$what: a later create of the name succeeds" "$(code)" ok
        works $key "$what, created again"
        drop $key
}

try lookup error 'C_FindObjectsInit:rv=CKR_FUNCTION_FAILED:nth=1'
try intent error 'C_CreateObject:rv=CKR_FUNCTION_FAILED:nth=1'
try intent error 'C_CreateObject:rv=CKR_FUNCTION_FAILED:nth=1:after'
try contest error 'C_FindObjectsInit:rv=CKR_FUNCTION_FAILED:nth=2'
try orphan error 'C_FindObjectsInit:rv=CKR_FUNCTION_FAILED:nth=3'
try generate error 'C_GenerateKey:rv=CKR_FUNCTION_FAILED'
try generate error 'C_GenerateKey:rv=CKR_FUNCTION_FAILED:after'
try generate error 'C_GenerateKey:rv=CKR_DEVICE_ERROR:after'
try commit error 'C_CreateObject:rv=CKR_FUNCTION_FAILED:nth=2'
try commit either 'C_CreateObject:rv=CKR_FUNCTION_FAILED:nth=2:after'

# The rollback fails too: its record write (the third C_CreateObject) is refused.
# The half-made record stays in the token; it still answers to nothing.
for rules in 'C_GenerateKey:rv=CKR_FUNCTION_FAILED:after
C_CreateObject:rv=CKR_FUNCTION_FAILED:nth=2' 'C_CreateObject:rv=CKR_FUNCTION_FAILED:nth=2:count=2'; do
        n_case=$((n_case + 1))
        key=c$n_case
        : >"$FLOG"
        fault_set "$rules"
        kc create $key
        c=$(code)
        fault_set ""
        what="create $key whose rollback fails ($(echo "$rules" | tr '\n' ' '))"
        ok "$what: create answers an error ($c)" test "$c" != ok
        if [ -n "$HAVE_P11TOOL" ]; then
                ok "$what: its half-made record is still in the token" test "$(token_objects $key)" -ge 1
        fi
        # every request but the token check (the half-made objects are there, repair removes them)
        HAVE_P11TOOL_SAVED=$HAVE_P11TOOL
        HAVE_P11TOOL=""
        absent $key "$what"
        HAVE_P11TOOL=$HAVE_P11TOOL_SAVED
        kc create $key
        is "$what: a later create of the name finishes the rollback and succeeds" "$(code)" ok
        works $key "$what, created again"
        kc check
        is "$what: check is clean" "$KC_STATUS" 0
        drop $key
done

# A half-made key left by a failed rollback, then `kekctl check`: the repair removes it.
n_case=$((n_case + 1))
key=c$n_case
fault_set 'C_CreateObject:rv=CKR_FUNCTION_FAILED:nth=2:count=2'
kc create $key
fault_set ""
kc check
is "check repairs the half-made key $key" "$KC_STATUS" 0
if [ -n "$HAVE_P11TOOL" ]; then
        is "... and nothing of it is left on the token" "$(token_objects $key)" 0
fi
ok "kekd is alive" kekd_alive

kekd_stop
done_testing
