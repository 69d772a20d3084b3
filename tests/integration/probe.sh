#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# The capability probe and spec-conformant templates and searches (issue 16),
# on SoftHSM2 behind tests/p11-fault made to answer like other tokens:
#  - no AES-GCM (C_EncryptInit CKR_MECHANISM_INVALID, as p11-kit remoting),
#    no C_GenerateKey (CKR_FUNCTION_NOT_SUPPORTED, as tpm2-pkcs11) and no
#    private data objects (CKR_ATTRIBUTE_VALUE_INVALID, as NSS): kekd exits
#    non-zero before it listens, with one error line naming the call, the CKR
#    and the missing capability;
#  - CKA_COPYABLE unknown (as openCryptoki 3.8): it is dropped, the KEK
#    keeps its security attributes, status shows "CKA_COPYABLE dropped";
#  - CKA_LOCAL never set (as NSS): KEKs are still found after a restart;
#  - a permanent refusal after start names function and CKR in the wire
#    message, in `kekctl status` and in the metrics;
#  - key objects under a key's label that kekd cannot use (imported, wrong
#    ID length) are reported by `kekctl check`.
. "$TESTLIB"

if [ ! -f "${P11_FAULT_LIB:-}" ]; then
        echo "Bail out! P11_FAULT_LIB not built (make check builds it)"
        exit 99
fi

p11_fault_setup
token_init probe
kekd_config
sed -i "s|^module = .*|module = $P11_FAULT_LIB|" "$CONF"

# refuse_start NAME RULE: kekd on a token that answers RULE from its first call; sets $RS_STATUS, start-NAME.log
refuse_start() {
        P11_FAULT="$2" timeout 30 "$KEKD" -c "$CONF" 2>"$TESTDIR/start-$1.log"
        RS_STATUS=$?
}
# one_error NAME: the number of error-level lines in start-NAME.log
errors_in() {
        grep -c '^kekd\[error\]' "$TESTDIR/start-$1.log"
}

refuse_start gcm "C_EncryptInit:rv=CKR_MECHANISM_INVALID:count=inf"
ok "no AES-GCM: kekd exits non-zero at start (status $RS_STATUS)" test "$RS_STATUS" -ne 0 -a "$RS_STATUS" -ne 124
ok "no AES-GCM: it never listened" test ! -S "$SOCKET"
is "no AES-GCM: exactly one error line" "$(errors_in gcm)" 1
contains "no AES-GCM: the line names the call and CKR" "$TESTDIR/start-gcm.log" "C_EncryptInit: CKR_MECHANISM_INVALID"
contains "no AES-GCM: the line names the missing capability and the profile" "$TESTDIR/start-gcm.log" \
        "AES-GCM (CKM_AES_GCM) (C_EncryptInit: CKR_MECHANISM_INVALID): kekd needs it for profile gcm"
contains "no AES-GCM: the line says what the token offers" "$TESTDIR/start-gcm.log" "the token offers CKM_AES_KEY_GEN"

refuse_start keygen "C_GenerateKey:rv=CKR_FUNCTION_NOT_SUPPORTED:count=inf"
ok "no C_GenerateKey: kekd exits non-zero at start" test "$RS_STATUS" -ne 0 -a "$RS_STATUS" -ne 124
is "no C_GenerateKey: exactly one error line" "$(errors_in keygen)" 1
contains "no C_GenerateKey: the line names C_GenerateKey, the CKR and CKM_AES_KEY_GEN" "$TESTDIR/start-keygen.log" \
        "cannot generate kekd's KEK (C_GenerateKey: CKR_FUNCTION_NOT_SUPPORTED): kekd needs C_GenerateKey with CKM_AES_KEY_GEN"

refuse_start data "C_CreateObject:rv=CKR_ATTRIBUTE_VALUE_INVALID:count=inf"
ok "no private data objects: kekd exits non-zero at start" test "$RS_STATUS" -ne 0 -a "$RS_STATUS" -ne 124
is "no private data objects: exactly one error line" "$(errors_in data)" 1
contains "no private data objects: the line says why" "$TESTDIR/start-data.log" \
        "refuses private data objects (C_CreateObject: CKR_ATTRIBUTE_VALUE_INVALID): kekd keeps its key records in private CKO_DATA token objects"

# A token that does not know CKA_COPYABLE (openCryptoki 3.8) and never sets CKA_LOCAL (NSS).
P11_FAULT_REJECT_ATTRS=CKA_COPYABLE P11_FAULT_NO_LOCAL=1
export P11_FAULT_REJECT_ATTRS P11_FAULT_NO_LOCAL
ok "kekd starts on a token without CKA_COPYABLE and CKA_LOCAL" kekd_start
contains "the token really refused CKA_COPYABLE" "$FLOG" "C_GenerateKey CKR_ATTRIBUTE_TYPE_INVALID reject=0x171"
"$KEKCTL" status >"$TESTDIR/status" 2>&1
contains "status: probe found profile gcm, CKA_COPYABLE dropped" "$TESTDIR/status" "Token probe:  profile gcm; private_data_objects yes; key_template yes; wrap_with_trusted yes; CKA_COPYABLE dropped"
contains "status: mechanisms with flags and key sizes" "$TESTDIR/status" "CKM_AES_GCM (encrypt,decrypt"
contains "status: token flags" "$TESTDIR/status" "login_required"
"$KEKCTL" status --json >"$TESTDIR/status.json" 2>&1
is "status --json: the probe's template attributes" \
        "$(python3 -c 'import json,sys; p=json.load(open(sys.argv[1]))["probe"]; print(p["ok"], p["profile"], p["template_attributes"]["CKA_COPYABLE"], p["capabilities"]["private_data_objects"])' "$TESTDIR/status.json")" \
        "True gcm dropped True"
kc create acct
is "create without CKA_COPYABLE" "$KC_STATUS" 0
head -c 32 /dev/urandom >"$TESTDIR/aek"
"$KEKCTL" wrap acct --context c1 <"$TESTDIR/aek" >"$TESTDIR/blob"
is "wrap" "$?" 0
kekd_stop
ok "kekd starts again" kekd_start
"$KEKCTL" unwrap --context c1 <"$TESTDIR/blob" >"$TESTDIR/aek2"
ok "after a restart the KEK is found without CKA_LOCAL, and unwraps" cmp -s "$TESTDIR/aek" "$TESTDIR/aek2"

if command -v pkcs11-tool >/dev/null 2>&1; then
        p11() {
                pkcs11-tool --module "$SOFTHSM2_MODULE" --token-label probe --login --pin "$TEST_PIN" "$@"
        }
        p11 --list-objects --type secrkey >"$TESTDIR/p11" 2>&1
        is "the KEK made without CKA_COPYABLE is still sensitive, always sensitive, never extractable" \
                "$(grep -c 'Access: *sensitive, always sensitive, never extractable' "$TESTDIR/p11")" 1
        # Objects under the key's label that kekd cannot use: imported (value written in), and an ID of 2 bytes.
        head -c 32 /dev/urandom >"$TESTDIR/raw.key"
        p11 --write-object "$TESTDIR/raw.key" --type secrkey --key-type AES:32 --label acct --id 00000002 \
                --sensitive >/dev/null 2>&1
        p11 --keygen --key-type AES:32 --label acct --id 0003 --sensitive >/dev/null 2>&1
        # Private, sensitive, never extractable, 4-byte ID: what an encrypt-then-MAC version's MAC key is, not a problem.
        p11 --keygen --key-type GENERIC:32 --label acct --id 00000004 --sensitive --private >/dev/null 2>&1
        kc check
        is "check with planted objects exits 1 (problems)" "$KC_STATUS" 1
        contains "check reports the imported key under acct's label" "$TESTDIR/out" \
                "key object labelled 'acct' is not used as a KEK: imported or once extractable"
        is "check reports both unusable objects, not the MAC-key-like one" "$(grep -c "key object labelled 'acct' is not used as a KEK" "$TESTDIR/out")" 2
else
        diag "pkcs11-tool not installed: planted objects not tried"
fi

# A refusal after start (the token stops offering GCM): wire message, status and metrics name it.
fault_set "C_EncryptInit:rv=CKR_MECHANISM_INVALID:count=inf"
kc wrap acct --context c1 <"$TESTDIR/aek"
contains "the wire error names the function and CKR" "$TESTDIR/err" "C_EncryptInit: CKR_MECHANISM_INVALID"
ok "the wire error is not HSM_UNAVAILABLE" sh -c "! grep -q HSM_UNAVAILABLE '$TESTDIR/err'"
"$KEKCTL" status >"$TESTDIR/status" 2>&1
contains "status names the function and its last CKR" "$TESTDIR/status" "C_EncryptInit CKR_MECHANISM_INVALID x"
contains "status says when it last failed" "$TESTDIR/status" " UTC)"
"$KEKCTL" status --prometheus >"$TESTDIR/metrics" 2>&1
contains "metrics by function and CKR" "$TESTDIR/metrics" 'kekd_hsm_call_errors_total{function="C_EncryptInit",error="CKR_MECHANISM_INVALID"}'
kc check
contains "check probes again and reports the failed self-test" "$TESTDIR/out" "fails kekd's self-test with AES-GCM (CKM_AES_GCM) (C_EncryptInit: CKR_MECHANISM_INVALID)"
"$KEKCTL" status >"$TESTDIR/status" 2>&1
contains "status shows the new probe" "$TESTDIR/status" "Token probe:  NO WORKING PROFILE"
fault_set ""

kekd_stop
done_testing
