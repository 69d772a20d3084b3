# SPDX-License-Identifier: LGPL-2.1-or-later
# Sourced by the set-up scripts of tests/tokens/ (one per PKCS#11
# implementation). A set-up script makes a fresh token in a private temp dir,
# starts what the implementation needs, writes the kekd [hsm] lines to
# $TOKEN_DIR/hsm.conf and then either prints them (no arguments) or runs its
# arguments as a command with the token's environment (TOKEN_* below and
# whatever the module itself reads, e.g. SOFTHSM2_CONF). Every process it
# starts is stopped by PID at exit, whatever happened (trap), and every wait
# is bounded. Exit 77: the implementation cannot be set up on this machine.
#
# Exported to the command:
#   TOKEN_NAME       softhsm2, opencryptoki, nss, p11kit-remote, tpm2
#   TOKEN_HSM_CONF   the [hsm] section for kekd.conf (module, token, pin_file)
#   TOKEN_MODULE     the module kekd loads (path)
#   TOKEN_P11TOOL    the module pkcs11-tool can read the token with (path)
#   TOKEN_LABEL      the token's label, TOKEN_PIN_FILE the user PIN's file
#   TOKEN_SO_PIN_FILE the SO PIN's file (TOKEN_SO_PIN; test tokens only: step oaep-trusted)
#   TOKEN_TODO       tests/tokens/NAME.todo: steps known to fail on this token
#   TOKEN_UNSAFE     yes: the probe must find key copies unsafe (nss.sh sets
#                    TOKEN_HSM_EXTRA="allow_unsafe_token = yes" for [hsm])

set -u

TOKENS_SRC=$(cd "$(dirname "$0")" && pwd)
TOKEN_PIN="kekd-tok-pin-4711"
TOKEN_SO_PIN="87654321"
TOKEN_PIDS=""
TOKEN_CLEANUP=""
TOKEN_DIR=$(mktemp -d "${TMPDIR:-/tmp}/kekd-tok.XXXXXX") || exit 99
# wait_for (the set-up scripts silence its command's stderr: 2>/dev/null), pid_reap, dir_remove, softhsm2_token
. "$TOKENS_SRC/../lib/tap.sh"

token_teardown() {
        for pid in $TOKEN_PIDS; do
                kill -TERM "$pid" 2>/dev/null || continue
                pid_reap "$pid" 5
        done
        # Implementation-specific clean-up (system places it insisted on).
        [ -n "$TOKEN_CLEANUP" ] && eval "$TOKEN_CLEANUP"
        dir_remove "$TOKEN_DIR" 'kekd-tok.*' "${KEEP_TOKEN_DIR:-}"
}
trap token_teardown EXIT
trap 'exit 130' INT TERM

token_log() {
        echo "# [$TOKEN_NAME] $*" >&2
}

token_fail() {
        token_log "set-up failed: $*"
        exit "${2:-99}"
}

# token_spawn CMD...: runs CMD in the background, remembered for teardown
token_spawn() {
        "$@" &
        TOKEN_PIDS="$TOKEN_PIDS $!"
        TOKEN_LAST_PID=$!
}

# token_remember PID: a process started otherwise (a daemon that forked itself)
token_remember() {
        TOKEN_PIDS="$TOKEN_PIDS $1"
}

# token_install PACKAGE...: the Debian packages, unless present (install.sh)
token_install() {
        sh "$TOKENS_SRC/install.sh" "$@" >&2 || token_fail "cannot install $*" 77
}

token_pin_file() {
        TOKEN_PIN_FILE="$TOKEN_DIR/pin"
        printf '%s\n' "$TOKEN_PIN" >"$TOKEN_PIN_FILE"
        chmod 0600 "$TOKEN_PIN_FILE"
}

# token_run MODULE URI [P11TOOL-MODULE] -- COMMAND...: writes hsm.conf, then prints it or runs COMMAND
token_run() {
        TOKEN_MODULE=$1
        TOKEN_URI=$2
        TOKEN_P11TOOL=${3:-$1}
        shift 3
        [ "${1:-}" = "--" ] && shift
        TOKEN_HSM_CONF="$TOKEN_DIR/hsm.conf"
        cat >"$TOKEN_HSM_CONF" <<EOC
[hsm]
module = $TOKEN_MODULE
token = $TOKEN_URI
pin_file = $TOKEN_PIN_FILE
EOC
        # A token kekd refuses unless told (nss.sh: allow_unsafe_token, docs/tokens.md)
        [ -n "${TOKEN_HSM_EXTRA:-}" ] && printf '%s\n' "$TOKEN_HSM_EXTRA" >>"$TOKEN_HSM_CONF"
        TOKEN_TODO="$TOKENS_SRC/$TOKEN_NAME.todo"
        TOKEN_SO_PIN_FILE="$TOKEN_DIR/so-pin"
        (umask 077 && printf '%s\n' "$TOKEN_SO_PIN" >"$TOKEN_SO_PIN_FILE")
        export TOKEN_UNSAFE="${TOKEN_UNSAFE:-}"
        export TOKEN_NAME TOKEN_HSM_CONF TOKEN_MODULE TOKEN_P11TOOL TOKEN_LABEL TOKEN_PIN_FILE TOKEN_TODO TOKEN_URI \
                TOKEN_SO_PIN_FILE
        if [ $# -eq 0 ]; then
                cat "$TOKEN_HSM_CONF"
                return 0
        fi
        sed "s/^/# [$TOKEN_NAME] /" "$TOKEN_HSM_CONF" >&2
        "$@"
}
