#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# Several tokens on one kekd (issue 17 item 3; docs/tokens-ha.md): the
# preferred token A of [hsm] runs on tests/p11-fault (rules from a file,
# changed while kekd runs), token B of [hsm.b] on SoftHSM2 directly, token C
# of [hsm.c] names a token that does not exist. Each token's health comes
# from kekd's own encrypt/decrypt probe every probe_interval (1 s here):
#  1. at start A is active, B becomes active, C stays unavailable with the
#     reason; kekctl status (human, --json) and the metrics say so;
#  2. every call to A fails with CKR_DEVICE_ERROR: A goes degraded then
#     unavailable, B stays active, kekd lives on; a wrap that fails there
#     is counted on A;
#  3. the fault is lifted: A is active again; kekctl check names what B
#     lacks (a key created on A: record and version) and that C cannot be
#     opened;
#  4. A answers in 1 s (delay_ms=1000): a slow probe leaves A degraded;
#  5. lifted again: active;
#  6. A's probe hangs 30 s: A, then B (not probed meanwhile), are shown
#     degraded long before the probe returns; active again after.
#  7. kekd again with B on tests/p11-fault and A on SoftHSM2: every call to B
#     hangs 30 s; once B's probe is overdue, kekctl check names B as not
#     checked instead of opening it on the loop, and kekd serves wraps while
#     check runs.
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
conf_tokens module "$P11_FAULT_LIB" name a 1 hsm.b "$SOFTHSM2_MODULE" kekd-b \
        hsm.c "$SOFTHSM2_MODULE" no-such-token line "pin_file = $TESTDIR/pin"
ok "kekd starts with three tokens named" kekd_start

# state NAME: the token's state from kekctl status --json
state() {
        "$KEKCTL" status --json 2>/dev/null |
                jq -r --arg n "$1" '.tokens[] | select(.name == $n) | .state' 2>/dev/null
}
# state_field NAME FIELD: a field of the token's status --json entry
state_field() {
        "$KEKCTL" status --json 2>/dev/null |
                jq -r --arg n "$1" --arg f "$2" '.tokens[] | select(.name == $n) | .[$f]' 2>/dev/null
}
# is_state NAME STATE
is_state() {
        [ "$(state "$1")" = "$2" ]
}
# metric_state NAME STATE: the exposition says so (1 for that state)
metric_state() {
        "$KEKCTL" status --prometheus 2>/dev/null | grep -qF "kekd_token_state{token=\"$1\",state=\"$2\"} 1"
}

# --- 1. start -----------------------------------------------------------------
ok "B becomes active within 20 s" wait_for 20 is_state b active
succeeds "a key to wrap with" create k0
head -c 32 /dev/urandom >"$TESTDIR/aek0"
ok "A is active" is_state a active
ok "C stays unavailable" is_state c unavailable
kc status --json
is "three tokens, preferred first" "$(jq -r '[.tokens[].name] | join(",")' "$TESTDIR/out")" "a,b,c"
is "only A is preferred" "$(jq -r '[.tokens[] | select(.preferred) | .name] | join(",")' "$TESTDIR/out")" "a"
is "A's label" "$(jq -r '.tokens[0].label' "$TESTDIR/out")" "kekd-a"
is "B's label" "$(jq -r '.tokens[1].label' "$TESTDIR/out")" "kekd-b"
ok "C says why it is unavailable" test -n "$(jq -r '.tokens[2].error' "$TESTDIR/out")"
diag "C: $(jq -r '.tokens[2].error' "$TESTDIR/out")"
ok "A was probed" test "$(jq -r '.tokens[0].probes' "$TESTDIR/out")" -ge 1
kc status
contains "human status lists the tokens, A serving" "$TESTDIR/out" "Tokens:       a ('kekd-a', preferred, serving): active"
contains "human status shows B" "$TESTDIR/out" "b ('kekd-b'): active"
contains "human status shows C unavailable" "$TESTDIR/out" "c (''): UNAVAILABLE"
ok "metrics: A active" metric_state a active
ok "metrics: C unavailable" metric_state c unavailable
kc status --prometheus
contains "metrics: probe counters per token" "$TESTDIR/out" 'kekd_token_probes_total{token="b"}'

# --- 2. A fails every call --------------------------------------------------
now_ms() {
        echo $(($(date +%s%N) / 1000000))
}
t0=$(now_ms)
fault_set '*:rv=CKR_DEVICE_ERROR:count=inf'
ok "A leaves active within 20 s" wait_for 20 sh -c "! { [ \"\$($KEKCTL status --json | jq -r '.tokens[0].state')\" = active ]; }"
t1=$(now_ms)
ok "A becomes unavailable within 20 s" wait_for 20 is_state a unavailable
t2=$(now_ms)
diag "fault injected -> A not active seen: $((t1 - t0)) ms; -> unavailable seen: $((t2 - t0)) ms (probe_interval 1 s; polled every 0.1 s)"
ok "the fault really fired" grep -q "CKR_DEVICE_ERROR" "$FLOG"
ok "metrics: A unavailable" metric_state a unavailable
ok "B stays active" is_state b active
kc status --json
contains "A's last error names the device error" "$TESTDIR/out" "CKR_DEVICE_ERROR"
ok "kekd's log says A is unavailable" grep -q "Token 'a' is unavailable" "$TESTDIR/kekd.log"
ok "kekd lives on" kekd_alive
KC_IN="$TESTDIR/aek0" refused HSM_UNAVAILABLE "a wrap on the failing A" wrap k0
ok "the request's failure is counted on A" test "$(state_field a request_errors)" -ge 1
is "and on no other token" "$(state_field b request_errors)" 0

# --- 3. back ------------------------------------------------------------------
t0=$(now_ms)
fault_set ""
ok "A is active again within 20 s" wait_for 20 is_state a active
diag "fault lifted -> A active seen: $(($(now_ms) - t0)) ms"
ok "kekd's log says so" grep -q "Token 'a' is active again" "$TESTDIR/kekd.log"
succeeds "kekd serves on A again" create k1

# --- check: what the further tokens would lack -------------------------------
kc check
is "check fails while B holds no copy" "$KC_STATUS" 1
contains "check names B's missing record" "$TESTDIR/out" "token 'b' lacks the record of key 'k1'"
contains "check names B's missing version and why it was not copied" "$TESTDIR/out" \
        "token 'b' lacks key 'k1' version 1 (never extractable: it cannot be copied)"
contains "check names C, which cannot be opened" "$TESTDIR/out" "token 'c' cannot be opened"
ok "check does not blame A" sh -c "! grep -q \"token 'a'\" '$TESTDIR/out'"

# --- 4. A answers in 1 s ----------------------------------------------------
fault_set 'C_Encrypt:delay_ms=1000'
ok "a slow A is degraded within 20 s" wait_for 20 is_state a degraded
ok "metrics: A degraded" metric_state a degraded
ok "B stays active" is_state b active
fault_set ""
ok "A is active once fast again (20 s)" wait_for 20 is_state a active

# --- 5. A's probe hangs (30 s) -------------------------------------------------
# One thread probes the tokens in turn: while A's probe does not return, no
# state is current. A is shown degraded once its probe has run 5 s, B once it
# was not probed for 2 intervals + 3 x 0.5 s + 5 s (8.5 s); the probe itself
# cannot end before 30 s, and its own outcome never gives these reasons.
fault_set 'C_Encrypt:delay_ms=30000'
t0=$(now_ms)
# overdue NAME TEXT: NAME is shown degraded, its error saying TEXT (never said by a probe's own outcome)
overdue() {
        [ "$(state "$1")" = degraded ] && state_field "$1" error | grep -q "$2"
}
ok "a hanging A is degraded within 20 s: its probe has not returned" wait_for 20 overdue a 'probe has not returned'
ok "B, not probed meanwhile, is degraded within 20 s: another token's probe" wait_for 20 overdue b "another token's probe"
diag "A's probe hangs -> A degraded, B degraded seen by $(($(now_ms) - t0)) ms"
fault_set ""
ok "A is active again once its probe returned (60 s)" wait_for 60 is_state a active
ok "so is B (20 s)" wait_for 20 is_state b active

kekd_stop
is "kekd stops cleanly with the probe thread" "$KEKD_STATUS" 0

# --- 7. check and a further token that hangs -----------------------------------
# Rules apply to every token on p11-fault: only B goes through it now.
sed -i -e "s|^module = $P11_FAULT_LIB\$|module = @A@|" \
        -e "/^\[hsm\.b\]\$/,/^\$/s|^module = .*|module = $P11_FAULT_LIB|" \
        -e "s|^module = @A@\$|module = $SOFTHSM2_MODULE|" "$CONF"
ok "kekd starts again with B on p11-fault" kekd_start
ok "B becomes active within 20 s" wait_for 20 is_state b active
fault_set '*:delay_ms=30000'
ok "B's hanging probe is seen within 20 s" wait_for 20 overdue b 'probe has not returned'
ok "the delay really fired" grep -q "delay_ms=30000" "$FLOG"
# Before this was fixed, check opened B on the loop: every call 30 s, kekd deaf meanwhile.
timeout 25 "$KEKCTL" check >"$TESTDIR/check7" 2>&1 &
check_pid=$!
KC_AS="timeout 10" KC_IN="$TESTDIR/aek0" succeeds "kekd serves a wrap while check runs" wrap k0
wait "$check_pid"
is "check ends, failing (not killed by its 25 s bound)" "$?" 1
contains "check names B as not checked, with why" "$TESTDIR/check7" \
        "token 'b' not checked: its health probe has not returned for"
ok "kekd lives on" kekd_alive
fault_set ""
kekd_stop TERM 60
is "kekd stops cleanly once B's probe returned" "$KEKD_STATUS" 0
done_testing
