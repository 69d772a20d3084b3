#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# The capability probe's key-copy tries (pkcs11/probe.h, ProbeCopy), on
# SoftHSM2 behind tests/p11-fault:
#  - SoftHSM2 itself refuses every copy of a KEK (CKA_COPYABLE FALSE):
#    "refused", kekd_token_unsafe 0;
#  - answering C_CopyObject as NSS softokn 3.87 does
#    ($P11_FAULT_COPY_EXTRACTABLE=1: CKR_OK, the source's own handle, which
#    then reads extractable): kekd refuses to start, with one error line
#    naming C_CopyObject, the tries' CKRs and the opt-in; with
#    [hsm] allow_unsafe_token = yes it starts, warns at every start, and
#    status (human, --json), the metrics and `kekctl check` name it;
#  - copies made but kept sensitive and unextractable
#    ($P11_FAULT_COPY_EXTRACTABLE=keep): kekd starts, status says "kept".
. "$TESTLIB"

if [ ! -f "${P11_FAULT_LIB:-}" ]; then
        echo "Bail out! P11_FAULT_LIB not built (make check builds it)"
        exit 99
fi

p11_fault_setup
token_init probecopy
kekd_config
sed -i "s|^module = .*|module = $P11_FAULT_LIB|" "$CONF"

# status_json EXPR: a Python expression over p = status --json's "probe"
status_json() {
        "$KEKCTL" status --json >"$TESTDIR/status.json" 2>&1
        python3 -c 'import json,sys; p=json.load(open(sys.argv[1]))["probe"]; print(eval(sys.argv[2]))' \
                "$TESTDIR/status.json" "$1" 2>&1
}

# 1. SoftHSM2 as it is: every copy refused.
ok "kekd starts on SoftHSM2" kekd_start
"$KEKCTL" status >"$TESTDIR/status" 2>&1
contains "status: SoftHSM2 refuses copies of a KEK" "$TESTDIR/status" "Key copies:   refused (C_CopyObject plain CKR_"
ok "status: no unsafe-token warning" sh -c "! grep -q 'allow_unsafe_token' '$TESTDIR/status'"
is "status --json: key_copies refused, not unsafe" "$(status_json 'p["key_copies"]["result"], p["unsafe"]')" \
        "('refused', False)"
"$KEKCTL" status --prometheus >"$TESTDIR/metrics" 2>&1
contains "metrics: kekd_token_unsafe 0" "$TESTDIR/metrics" "kekd_token_unsafe 0"
contains "metrics: the copy result" "$TESTDIR/metrics" 'kekd_token_key_copies{result="refused",'
kc check
is "check on SoftHSM2: no problems" "$KC_STATUS" 0
kekd_stop

# 2. A token that lets a copy become extractable (NSS softokn 3.87): refused without the opt-in.
P11_FAULT_COPY_EXTRACTABLE=1
export P11_FAULT_COPY_EXTRACTABLE
: >"$FLOG"
timeout 30 "$KEKD" -c "$CONF" 2>"$TESTDIR/start-unsafe.log"
rs=$?
ok "unsafe token: kekd exits non-zero at start (status $rs)" test "$rs" -ne 0 -a "$rs" -ne 124
ok "unsafe token: it never listened" test ! -S "$SOCKET"
is "unsafe token: exactly one error line" "$(grep -c '^kekd\[error\]' "$TESTDIR/start-unsafe.log")" 1
contains "unsafe token: the copy really answered CKR_OK with the source's handle" "$FLOG" \
        "copy-extractable same-handle extractable=1"
contains "unsafe token: the line names the test and the CKRs" "$TESTDIR/start-unsafe.log" \
        "Refusing to start: token 'probecopy' does not keep keys in: C_CopyObject of a key made with kekd's KEK template: plain CKR_OK (sensitive, unextractable), extractable CKR_OK (read back extractable), sensitive CKR_OK (read back not sensitive)"
contains "unsafe token: the line names the opt-in" "$TESTDIR/start-unsafe.log" "[hsm] allow_unsafe_token = yes"

# 3. The opt-in: kekd starts, warns, and status, metrics and check say so.
sed -i 's|^\[hsm\]$|[hsm]\nallow_unsafe_token = yes|' "$CONF"
"$KEKD" --check-config -c "$CONF" >/dev/null 2>&1
is "kekd.conf with allow_unsafe_token = yes is valid" "$?" 0
sed 's|^allow_unsafe_token = yes$|allow_unsafe_token = maybe|' "$CONF" >"$TESTDIR/bad.conf"
"$KEKD" --check-config -c "$TESTDIR/bad.conf" >/dev/null 2>"$TESTDIR/bad.err"
contains "allow_unsafe_token must be a boolean" "$TESTDIR/bad.err" "'allow_unsafe_token' in [hsm] must be yes, no, true or false, got 'maybe'"
: >"$TESTDIR/kekd.log"
ok "unsafe token with allow_unsafe_token: kekd starts" kekd_start
is "the start warns once" "$(grep -c '^kekd\[warning\]: allow_unsafe_token is set, starting anyway: token .probecopy. does not keep keys in' "$TESTDIR/kekd.log")" 1
"$KEKCTL" status >"$TESTDIR/status" 2>&1
contains "status: key copies unsafe, with the CKRs" "$TESTDIR/status" \
        "Key copies:   UNSAFE: a copy can leave the token (C_CopyObject plain CKR_OK, extractable CKR_OK, sensitive CKR_OK)"
contains "status: the unsafe-token warning names the opt-in" "$TESTDIR/status" \
        "because of [hsm] allow_unsafe_token"
is "status --json: unsafe, and the extractable try's CKR" \
        "$(status_json 'p["unsafe"], p["key_copies"]["result"], p["key_copies"]["extractable"]')" \
        "(True, 'unsafe', 'CKR_OK')"
"$KEKCTL" status --prometheus >"$TESTDIR/metrics" 2>&1
contains "metrics: kekd_token_unsafe 1" "$TESTDIR/metrics" "kekd_token_unsafe 1"
contains "metrics: the copy result and CKRs" "$TESTDIR/metrics" \
        'kekd_token_key_copies{result="unsafe",plain="CKR_OK",extractable="CKR_OK",sensitive="CKR_OK"} 1'
kc create acct
is "a key can be created on the opted-in token" "$KC_STATUS" 0
kc check
is "check exits 1: the unsafe token is a problem" "$KC_STATUS" 1
contains "check names the unsafe token and the test" "$TESTDIR/out" \
        "PROBLEM: token 'probecopy' does not keep keys in: C_CopyObject of a key made with kekd's KEK template"
kekd_stop
: >"$TESTDIR/kekd.log"
ok "kekd starts again" kekd_start
is "the warning again at the next start" "$(grep -c '^kekd\[warning\]: allow_unsafe_token is set' "$TESTDIR/kekd.log")" 1
kekd_stop

# 4. Copies made but kept sensitive and unextractable: a property, not a refusal.
sed -i '/^allow_unsafe_token = yes$/d' "$CONF"
P11_FAULT_COPY_EXTRACTABLE=keep
: >"$TESTDIR/kekd.log"
ok "token that copies keys but keeps their attributes: kekd starts without the opt-in" kekd_start
contains "the start notes that copies outlive purge" "$TESTDIR/kekd.log" \
        "copies kekd's keys (C_CopyObject: plain CKR_OK (sensitive, unextractable), extractable CKR_OK (sensitive, unextractable)"
"$KEKCTL" status >"$TESTDIR/status" 2>&1
contains "status: copies kept" "$TESTDIR/status" "Key copies:   made, kept sensitive and unextractable; a copy outlives purge"
is "status --json: kept, not unsafe" "$(status_json 'p["key_copies"]["result"], p["unsafe"]')" "('kept', False)"
kc check
is "check exits 0: copies that stay in are a property, not a problem" "$KC_STATUS" 0
contains "check notes that copies outlive purge" "$TESTDIR/out" "NOTE: token 'probecopy' copies kekd's keys (C_CopyObject: plain CKR_OK"
"$KEKCTL" check --json >"$TESTDIR/check.json" 2>&1
is "check --json: the note, no problems" \
        "$(python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); print(len(j["problems"]), j["notes"][0][:30])' "$TESTDIR/check.json" 2>&1)" \
        "0 token 'probecopy' copies kekd'"
kekd_stop

done_testing
