# SPDX-License-Identifier: LGPL-2.1-or-later
# Shared helpers for the integration tests (sourced, POSIX sh + bash-isms
# avoided). Each test gets a private temp dir with its own SoftHSM2 token and
# its own kekd; every process started here is remembered by PID and killed on
# exit, and every wait is bounded in count and time.
#
# Environment from Makefile.am: KEKD, KEKCTL, KEK_RAW, KEK_TEST_ATTRS,
# SOFTHSM2_MODULE. $KEKD_SESSIONS sets kekd's [hsm] sessions (default 1).

set -u

# TAP output, wait_for and softhsm2_token
. "$(dirname "$TESTLIB")/tap.sh"

TEST_PIN="kekd-test-pin-7f3a9c"   # distinctive, so logs can be searched for it
KEKD_PID=""
TESTDIR=$(mktemp -d "${TMPDIR:-/tmp}/kekd-it.XXXXXX") || exit 99

cleanup() {
        if [ -n "${PID_B:-}" ] && kill -0 "$PID_B" 2>/dev/null; then
                kill -KILL "$PID_B" 2>/dev/null
                wait "$PID_B" 2>/dev/null
        fi
        if [ -n "$KEKD_PID" ] && kill -0 "$KEKD_PID" 2>/dev/null; then
                kill -KILL "$KEKD_PID" 2>/dev/null
                wait "$KEKD_PID" 2>/dev/null
        fi
        dir_remove "$TESTDIR" 'kekd-it.*' "${KEEP_TESTDIR:-}"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# secrets_absent: kekd's log holds neither the PIN nor any AEK this test
# used ($TESTDIR/aek*): raw, as hex or as base64. Run by done_testing, so
# every integration test's log is searched.
secrets_absent() {
        [ -s "$TESTDIR/kekd.log" ] || return 0
        grep -qF -- "$TEST_PIN" "$TESTDIR/kekd.log" && { echo "#   the PIN is in kekd.log"; return 1; }
        loghex=$(od -An -tx1 -v "$TESTDIR/kekd.log" | tr -d ' \n')
        for f in "$TESTDIR"/aek*; do
                [ -f "$f" ] && [ -s "$f" ] || continue
                hex=$(od -An -tx1 -v "$f" | tr -d ' \n')
                case $loghex in *"$hex"*) echo "#   $f is in kekd.log (raw)"; return 1 ;; esac
                grep -qiF -- "$hex" "$TESTDIR/kekd.log" && { echo "#   $f is in kekd.log (hex)"; return 1; }
                grep -qF -- "$(base64 -w0 "$f")" "$TESTDIR/kekd.log" && { echo "#   $f is in kekd.log (base64)"; return 1; }
        done
        return 0
}

done_testing() {
        if [ -s "$TESTDIR/kekd.log" ]; then
                ok "kekd's log holds no PIN and no AEK of this test (raw, hex, base64)" secrets_absent
        fi
        echo "1..$tap_n"
        [ "$tap_failed" -eq 0 ] && [ "$tap_n" -gt 0 ]
        exit $?
}

# token_init LABEL: a fresh SoftHSM2 token in $TESTDIR/tokens
token_init() {
        TOKEN_LABEL=$1
        softhsm2_token "$TESTDIR" "$TOKEN_LABEL" "$TEST_PIN" 87654321 ||
                { echo "Bail out! softhsm2-util --init-token failed"; exit 99; }
        printf '%s\n' "$TEST_PIN" >"$TESTDIR/pin"
        chmod 0600 "$TESTDIR/pin"
        TOKEN_URI="pkcs11:token=$TOKEN_LABEL"
}

# backup_ceremony A B: the SO's ceremony between two tokens made by token_init
# (docs/backup.md): A's SO imports a fresh shared AES key "kekd backup",
# trusted and wrap-only; B's user imports its unwrapping half. Leaves
# $TESTDIR/so-pin and $TESTDIR/backup-key; two TAP lines.
backup_ceremony() {
        _trust=$(dirname "$KEKD")/../contrib/kekd-trust-key
        printf '87654321\n' >"$TESTDIR/so-pin"
        chmod 0600 "$TESTDIR/so-pin"
        head -c 32 /dev/urandom >"$TESTDIR/backup-key"
        "$_trust" "$SOFTHSM2_MODULE" "$1" "$TESTDIR/so-pin" --import-aes "kekd backup" "$TESTDIR/backup-key" \
                >"$TESTDIR/trust-a" 2>&1
        is "A's SO imports the backup key, trusted" "$?" 0
        "$_trust" "$SOFTHSM2_MODULE" "$2" "$TESTDIR/pin" --import-aes-unwrap "kekd backup" "$TESTDIR/backup-key" \
                >"$TESTDIR/trust-b" 2>&1
        is "B gets the unwrapping half" "$?" 0
}

# token_field NAME FIELD: a field of token NAME's entry in `kekctl status --json`
token_field() {
        "$KEKCTL" status --json 2>/dev/null |
                jq -r --arg n "$1" --arg f "$2" '.tokens[] | select(.name == $n) | .[$f]' 2>/dev/null
}
# token_field_is NAME FIELD VALUE
token_field_is() {
        [ "$(token_field "$1" "$2")" = "$3" ]
}
# token_in_sync NAME: further token NAME is active and not stale (its replication caught up)
token_in_sync() {
        token_field_is "$1" stale false && token_field_is "$1" state active
}

# p11_fault_setup: for tests that run kekd on tests/p11-fault (a module wrapping
# SoftHSM2, see p11-fault.c): its rules come from $FAULTS (fault_set), what it
# injected goes to $FLOG; the caller points kekd.conf's module at $P11_FAULT_LIB.
p11_fault_setup() {
        FAULTS="$TESTDIR/faults"
        FLOG="$TESTDIR/faults.log"
        P11_FAULT_MODULE=$SOFTHSM2_MODULE
        P11_FAULT_FILE=$FAULTS
        P11_FAULT_LOG=$FLOG
        export P11_FAULT_MODULE P11_FAULT_FILE P11_FAULT_LOG
        : >"$FAULTS"
        : >"$FLOG"
}

# fault_set RULES: replaces the rule file (write aside, then rename: never read half-written)
fault_set() {
        printf '%s\n' "$1" >"$FAULTS.tmp" && mv -f "$FAULTS.tmp" "$FAULTS"
}

# kekd_config [EXTRA LINES...]: writes $TESTDIR/kekd.conf for the token
kekd_config() {
        SOCKET="$TESTDIR/kekd.sock"
        CONF="$TESTDIR/kekd.conf"
        cat >"$CONF" <<EOF
# kekd test configuration
[hsm]
module = $SOFTHSM2_MODULE
token = $TOKEN_URI
pin_file = $TESTDIR/pin
sessions = ${KEKD_SESSIONS:-1}

[server]
socket = $SOCKET
socket_mode = 0600

[keys]
refresh_interval = ${REFRESH_INTERVAL:-1}
allow_unrecoverable = ${ALLOW_UNRECOVERABLE:-yes}

[log]
level = debug
EOF
        KEKD_SOCKET=$SOCKET
        export KEKD_SOCKET
}

# conf_tokens WHAT...: adds to $CONF (kekd_config's, one token) what a test of
# several tokens (docs/tokens-ha.md) needs, one WHAT after the other:
#   module MODULE      the [hsm] token's module (only [hsm]'s, wherever it stands)
#   name NAME SECONDS  the [hsm] token's name and probe_interval
#   hsm.N MODULE LABEL appends a further token [hsm.N] on MODULE, pkcs11:token=LABEL
#   backup DIR         appends [backup] in DIR with backup_ceremony's key as the
#                      wrapping and unwrapping key (replication copies under it)
#   line TEXT          appends TEXT as a line (into the section appended last)
# Sections are appended in the order given: a test may cut the file at one.
conf_tokens() {
        while [ $# -gt 0 ]; do
                case $1 in
                module | backup | line) _n=2 ;;
                name | hsm.*) _n=3 ;;
                *) echo "Bail out! conf_tokens: unknown '$1'"; exit 99 ;;
                esac
                [ $# -ge $_n ] || { echo "Bail out! conf_tokens: '$1' takes $((_n - 1)) arguments"; exit 99; }
                case $1 in
                module) sed -i "/^\[hsm\]$/,/^$/s|^module = .*|module = $2|" "$CONF" ;;
                name) sed -i "s|^\[hsm\]$|[hsm]\nname = $2\nprobe_interval = $3|" "$CONF" ;;
                hsm.*) printf '\n[%s]\nmodule = %s\ntoken = pkcs11:token=%s\n' "$1" "$2" "$3" >>"$CONF" ;;
                backup) printf '\n[backup]\ndirectory = %s\nwrapping_key = kekd backup\nunwrapping_key = kekd backup\n' \
                        "$2" >>"$CONF" ;;
                line) printf '%s\n' "$2" >>"$CONF" ;;
                esac
                shift $_n
        done
}

# kekd_start: starts kekd in the background and waits (<= 10 s, or
# $KEKD_START_TIMEOUT s) for its socket. $KEKD_WRAPPER (e.g. valgrind) is
# put in front of kekd; it must exec kekd in the same process.
kekd_start() {
        ${KEKD_WRAPPER:-} "$KEKD" -c "$CONF" 2>>"$TESTDIR/kekd.log" &
        KEKD_PID=$!
        i=0
        while [ $i -lt $((${KEKD_START_TIMEOUT:-10} * 10)) ]; do
                if [ -S "$SOCKET" ] && "$KEKCTL" list >/dev/null 2>&1; then
                        # A run with $KEKD_SESSIONS must really have that many (the sessions-*.sh tests).
                        [ -z "${KEKD_SESSIONS:-}" ] && return 0
                        grep -q "(${KEKD_SESSIONS} HSM session" "$TESTDIR/kekd.log" && return 0
                        echo "# kekd does not say it serves with ${KEKD_SESSIONS} HSM sessions"
                        return 1
                fi
                kill -0 "$KEKD_PID" 2>/dev/null || break
                sleep 0.1
                i=$((i + 1))
        done
        echo "# kekd did not come up; log:"
        sed 's/^/#   | /' "$TESTDIR/kekd.log" | tail -20
        return 1
}

# kekd_stop [SIGNAL]: stops our kekd by PID (default TERM), waits <= 10 s
kekd_stop() {
        sig=${1:-TERM}
        [ -n "$KEKD_PID" ] || return 0
        kill "-$sig" "$KEKD_PID" 2>/dev/null
        pid_reap "$KEKD_PID" "${2:-10}"
        KEKD_STATUS=$?
        KEKD_PID=""
}

# kekd_sanitized: kekd is built with AddressSanitizer (configure --enable-sanitizers):
# its RSS holds ASan's quarantine and shadow, and gcore would write out the shadow.
kekd_sanitized() {
        grep -qa __asan_init "$KEKD"
}

# kekd_b_start: a second kekd on the same token, with $CONF but its own
# socket ($SOCK_B, config $CONF_B, log kekd-b.log), PID in $PID_B (killed on
# exit); waits (<= 10 s) until it answers. Fails if it is not running then.
kekd_b_start() {
        CONF_B="$TESTDIR/b.conf"
        SOCK_B="$TESTDIR/b.sock"
        sed "s|^socket = .*|socket = $SOCK_B|" "$CONF" >"$CONF_B"
        "$KEKD" -c "$CONF_B" 2>>"$TESTDIR/kekd-b.log" &
        PID_B=$!
        i=0
        until "$KEKCTL" -s "$SOCK_B" list >/dev/null 2>&1 || [ $i -ge 100 ]; do
                sleep 0.1
                i=$((i + 1))
        done
        kill -0 "$PID_B" 2>/dev/null
}

kekd_alive() {
        [ -n "$KEKD_PID" ] && kill -0 "$KEKD_PID" 2>/dev/null
}

# kc ARGS...: kekctl; stdout to $TESTDIR/out, stderr to $TESTDIR/err, status in
# $KC_STATUS. $KC_AS (e.g. "setpriv --reuid=1101 ...") runs it as another
# user; $KC_IN names its standard input.
kc() {
        # shellcheck disable=SC2086 # KC_AS is a command prefix, split on purpose
        ${KC_AS:-} "$KEKCTL" "$@" <"${KC_IN:-/dev/stdin}" >"$TESTDIR/out" 2>"$TESTDIR/err"
        KC_STATUS=$?
        return 0
}

# refused CODE DESCRIPTION KEKCTL-ARGS...: kekctl exits 1 and names CODE
refused() {
        code=$1
        desc=$2
        shift 2
        kc "$@"
        tap_n=$((tap_n + 1))
        if [ "$KC_STATUS" -eq 1 ] && grep -q ": $code" "$TESTDIR/err"; then
                echo "ok $tap_n - $desc: $code"
        else
                echo "not ok $tap_n - $desc: $code"
                echo "#   exit $KC_STATUS, stderr: $(cat "$TESTDIR/err")"
                tap_failed=$((tap_failed + 1))
        fi
}

# succeeds DESCRIPTION KEKCTL-ARGS...: kekctl exits 0
succeeds() {
        desc=$1
        shift
        kc "$@"
        tap_n=$((tap_n + 1))
        if [ "$KC_STATUS" -eq 0 ]; then
                echo "ok $tap_n - $desc"
        else
                echo "not ok $tap_n - $desc (exit $KC_STATUS)"
                echo "#   stderr: $(cat "$TESTDIR/err")"
                tap_failed=$((tap_failed + 1))
        fi
}
