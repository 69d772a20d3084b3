#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# The capability probe of a further token (issue 17; daemon/tokenset.h,
# docs/tokens-ha.md): the preferred token A of [hsm] on SoftHSM2 directly,
# token B of [hsm.b] on tests/p11-fault, which answers C_CopyObject as NSS
# softokn 3.87 does ($P11_FAULT_COPY_EXTRACTABLE=1: the copy reads back
# extractable), so only B's copies are unsafe.
#  1. kekd starts on A; B is refused and stays unavailable, the reason
#     ("unsafe token: C_CopyObject ...") in status (human, --json) and in
#     one warning line; B gets no health probe (no PKCS#11 call after the
#     capability probe); check names B as a problem;
#  2. with allow_unsafe_token = yes in [hsm.b] (not in [hsm]) B becomes
#     active; status shows "unsafe (allowed)" with a warning, the start log
#     warns, check names B as a problem like an unsafe [hsm] token;
#  3. B copies but keeps copies sensitive ($P11_FAULT_COPY_EXTRACTABLE=keep):
#     active without the opt-in, "copies kept sensitive", check notes it;
#  4. every C_EncryptInit on B answers CKR_MECHANISM_INVALID while new key
#     versions use profile gcm (auto's choice on A): B cannot serve the
#     keys' profile and is refused as unsupported, with the reason;
#  5. B unsafe but allowed again: the probe is not repeated while B's
#     session lasts; one CKR_DEVICE_ERROR makes kekd reopen it, and the
#     capability probe runs again (its three C_CopyObject tries are seen
#     anew) before B is active again.
# Every wait is for a state, bounded in time; nothing asserts elapsed time.
. "$TESTLIB"

if [ ! -f "${P11_FAULT_LIB:-}" ]; then
        echo "Bail out! P11_FAULT_LIB not built (make check builds it)"
        exit 99
fi

p11_fault_setup
token_init kekd-b
token_init kekd-a
kekd_config
conf_tokens name a 1 hsm.b "$P11_FAULT_LIB" kekd-b
P11_FAULT_COPY_EXTRACTABLE=1
P11_FAULT_TRACE=C_EncryptInit
export P11_FAULT_COPY_EXTRACTABLE P11_FAULT_TRACE

field() { token_field "$@"; }
is_field() { token_field_is "$@"; }
# encrypt_inits: C_EncryptInit calls made on B so far (only B runs on p11-fault; P11_FAULT_TRACE)
encrypt_inits() {
        grep -c "^trace C_EncryptInit " "$FLOG" 2>/dev/null
}

# --- 1. unsafe, not allowed: refused -------------------------------------------
ok "kekd starts on A with B unsafe" kekd_start
ok "B's capability probe ran within 20 s" wait_for 20 is_field b capability "unsafe (refused)"
is "B is unavailable" "$(field b state)" unavailable
contains "the copy really answered CKR_OK with the source's handle" "$FLOG" "copy-extractable same-handle extractable=1"
case $(field b error) in
"unsafe token: C_CopyObject plain CKR_OK"*"extractable CKR_OK (read back extractable)"*"allow_unsafe_token in [hsm.b]")
        ok "B's error is the reason, naming C_CopyObject, the CKRs and the opt-in" true ;;
*)
        ok "B's error is the reason, naming C_CopyObject, the CKRs and the opt-in (got: $(field b error))" false ;;
esac
is "A's capability: SoftHSM2 refuses copies" "$(field a capability)" "refused copies"
is "A is active" "$(field a state)" active
is "B's label is known: it was opened" "$(field b label)" kekd-b
is "one warning line names B's refusal" \
        "$(grep -c "^kekd\[warning\]: Token 'b' is refused and stays unavailable: unsafe token: C_CopyObject" "$TESTDIR/kekd.log")" 1
kc status
contains "status: B's line shows the refusal" "$TESTDIR/out" "b ('kekd-b'): UNAVAILABLE since"
contains "status: B's capability" "$TESTDIR/out" "; capability: unsafe (refused); last: unsafe token: C_CopyObject plain CKR_OK"
# B gets nothing after its refusal: no health probe (C_EncryptInit) while rounds pass.
n0=$(field b probes)
e0=$(encrypt_inits)
ok "the capability probe's self-test ran on B ($e0 C_EncryptInit)" test "$e0" -gt 0
ok "B's refusal is recorded again at the next rounds" wait_for 20 sh -c "[ \$(\"$KEKCTL\" status --json | jq '.tokens[1].probes') -ge $((n0 + 2)) ]"
is "B still unavailable" "$(field b state)" unavailable
is "no health probe ran on refused B" "$(encrypt_inits)" "$e0"
succeeds "a key on A" create k0
kc check
is "check exits 1: B is refused" "$KC_STATUS" 1
contains "check names B and the reason" "$TESTDIR/out" "PROBLEM: token 'b' is not used: unsafe token: C_CopyObject plain CKR_OK"
kekd_stop

# --- 2. allow_unsafe_token in [hsm.b] ------------------------------------------
printf 'allow_unsafe_token = maybe\n' >>"$CONF"
"$KEKD" --check-config -c "$CONF" >/dev/null 2>"$TESTDIR/bad.err"
contains "allow_unsafe_token in [hsm.b] must be a boolean" "$TESTDIR/bad.err" \
        "'allow_unsafe_token' in [hsm.b] must be yes, no, true or false, got 'maybe'"
sed -i 's|^allow_unsafe_token = maybe$|allow_unsafe_token = yes|' "$CONF"
"$KEKD" --check-config -c "$CONF" >/dev/null 2>&1
is "kekd.conf with allow_unsafe_token = yes in [hsm.b] is valid" "$?" 0
ok "[hsm] itself does not have it" sh -c "! sed -n '/^\[hsm\]$/,/^\[server\]$/p' '$CONF' | grep -q allow_unsafe_token"
: >"$TESTDIR/kekd.log"
ok "kekd starts" kekd_start
ok "B becomes active within 20 s" wait_for 20 is_field b state active
is "B's capability: unsafe (allowed)" "$(field b capability)" "unsafe (allowed)"
# No error of the probes: the only note is replication's (no [backup] keys here), which says why B is stale.
is "B has no error but replication's note" "$(field b error)" "not copied: no trusted wrapping key configured ([backup] wrapping_key, unwrapping_key)"
is "the start warns once about B" \
        "$(grep -c "^kekd\[warning\]: allow_unsafe_token is set in \[hsm.b\], using token 'b' anyway: token 'b' does not keep keys in" "$TESTDIR/kekd.log")" 1
kc status
contains "status: B's line" "$TESTDIR/out" "b ('kekd-b'): active since"
contains "status: B's capability" "$TESTDIR/out" "; capability: unsafe (allowed)"
contains "status warns about B and names its opt-in" "$TESTDIR/out" \
        "Warning:      token b lets anyone with the user PIN take keys out; kekd uses it only because of [hsm.b] allow_unsafe_token"
kc check
is "check exits 1: an unsafe token in use is a problem, as for [hsm]" "$KC_STATUS" 1
contains "check names B, the test and B's opt-in" "$TESTDIR/out" \
        "PROBLEM: token 'b' does not keep keys in: C_CopyObject of a key made with kekd's KEK template: plain CKR_OK"
contains "check names [hsm.b]'s opt-in" "$TESTDIR/out" "with [hsm.b] allow_unsafe_token = yes"
kekd_stop

# --- 3. copies kept sensitive: used, noted ---------------------------------------
sed -i '/^allow_unsafe_token = yes$/d' "$CONF"
P11_FAULT_COPY_EXTRACTABLE=keep
e1=$(encrypt_inits)
: >"$TESTDIR/kekd.log"
ok "kekd starts (B keeps copies sensitive)" kekd_start
ok "B becomes active without the opt-in" wait_for 20 is_field b state active
ok "B gets health probes once it passed" wait_for 20 sh -c "[ \$(grep -c '^trace C_EncryptInit ' '$FLOG') -gt $e1 ]"
is "B's capability" "$(field b capability)" "copies kept sensitive"
kc check
contains "check notes B's copies" "$TESTDIR/out" "NOTE: token 'b' copies kekd's keys (C_CopyObject: plain CKR_OK"
ok "check names no capability problem of B" sh -c "! grep -q \"PROBLEM: token 'b' \(is not used\|does not keep\)\" '$TESTDIR/out'"
kekd_stop

# --- 4. B lacks the keys' profile: refused as unsupported --------------------------
unset P11_FAULT_COPY_EXTRACTABLE
fault_set "C_EncryptInit:rv=CKR_MECHANISM_INVALID:count=inf"
: >"$TESTDIR/kekd.log"
ok "kekd starts (B offers no working AES-GCM)" kekd_start
ok "B is refused as unsupported within 20 s" wait_for 20 is_field b capability unsupported
is "B is unavailable" "$(field b state)" unavailable
case $(field b error) in
"unsupported token: "*) ok "B's error says why" true ;;
*) ok "B's error says why (got: $(field b error))" false ;;
esac
kekd_stop
fault_set ""

# --- 5. a reopened session is probed again ------------------------------------------
printf 'allow_unsafe_token = yes\n' >>"$CONF"
P11_FAULT_COPY_EXTRACTABLE=1
export P11_FAULT_COPY_EXTRACTABLE
: >"$FLOG"
# copies: the C_CopyObject tries B's module answered so far (three per capability probe)
copies() {
        grep -c "^copy-extractable " "$FLOG" 2>/dev/null
}
ok "kekd starts (B allowed)" kekd_start
ok "B becomes active" wait_for 20 is_field b state active
c0=$(copies)
is "one capability probe: three copy tries" "$c0" 3
n0=$(field b probes)
ok "rounds pass" wait_for 20 sh -c "[ \$(\"$KEKCTL\" status --json | jq '.tokens[1].probes') -ge $((n0 + 2)) ]"
is "no capability probe while the session lasts" "$(copies)" "$c0"
fault_set "C_Encrypt:rv=CKR_DEVICE_ERROR"
ok "after a device error on B and its reopen, the capability probe runs again" \
        wait_for 20 sh -c "[ \$(grep -c '^copy-extractable ' '$FLOG') -ge $((c0 + 3)) ]"
ok "B is active again" wait_for 20 is_field b state active
is "B's capability" "$(field b capability)" "unsafe (allowed)"
kekd_stop
fault_set ""

done_testing
