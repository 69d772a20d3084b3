# SPDX-License-Identifier: LGPL-2.1-or-later
# The shell test helpers that need no kekd and no private temp dir, sourced
# by tests/lib/lib.sh (the integration tests), tests/systemd/check-systemd.sh
# and tests/tokens/common.sh, so each exists once: TAP output (ok, is,
# contains, diag; the caller prints the plan from $tap_n and fails on
# $tap_failed), bounded waits, the removal of a private temp dir, and a
# fresh SoftHSM2 token. POSIX sh.

tap_n=0
tap_failed=0

# ok DESCRIPTION COMMAND...: passes when COMMAND exits 0
ok() {
        desc=$1
        shift
        tap_n=$((tap_n + 1))
        if "$@"; then
                echo "ok $tap_n - $desc"
        else
                echo "not ok $tap_n - $desc"
                tap_failed=$((tap_failed + 1))
        fi
}

# is DESCRIPTION GOT WANT
is() {
        tap_n=$((tap_n + 1))
        if [ "$2" = "$3" ]; then
                echo "ok $tap_n - $1"
        else
                echo "not ok $tap_n - $1"
                echo "#   got:  $2"
                echo "#   want: $3"
                tap_failed=$((tap_failed + 1))
        fi
}

# contains DESCRIPTION FILE STRING: FILE contains STRING (fixed string)
contains() {
        tap_n=$((tap_n + 1))
        if grep -qF -- "$3" "$2"; then
                echo "ok $tap_n - $1"
        else
                echo "not ok $tap_n - $1"
                echo "#   '$3' not found in:"
                sed 's/^/#   | /' "$2" | head -20
                tap_failed=$((tap_failed + 1))
        fi
}

diag() {
        echo "# $*"
}

# wait_for SECONDS COMMAND...: until COMMAND succeeds, at most SECONDS (0.1 s steps)
wait_for() {
        w_max=$(($1 * 10))
        shift
        w_i=0
        until "$@"; do
                w_i=$((w_i + 1))
                [ $w_i -ge $w_max ] && return 1
                sleep 0.1
        done
        return 0
}

# pid_reap PID SECONDS: PID (our child, already asked to exit) gets at most
# SECONDS (0.1 s steps), then KILL; then it is reaped. Returns its wait status.
pid_reap() {
        r_max=$(($2 * 10))
        r_i=0
        while kill -0 "$1" 2>/dev/null && [ $r_i -lt $r_max ]; do
                sleep 0.1
                r_i=$((r_i + 1))
        done
        kill -0 "$1" 2>/dev/null && kill -KILL "$1" 2>/dev/null
        wait "$1" 2>/dev/null
}

# dir_remove DIR GLOB KEEP: removes DIR, a private temp dir (only when its name
# matches */GLOB: never anything else), or with KEEP non-empty says it is kept
dir_remove() {
        if [ -n "$3" ]; then
                echo "# kept $1" >&2
                return 0
        fi
        case "$1" in
        */$2) rm -rf -- "$1" ;;
        esac
}

# softhsm2_token DIR LABEL PIN SO_PIN: a fresh SoftHSM2 token in DIR/tokens,
# configured by DIR/softhsm2.conf (exported as SOFTHSM2_CONF); fails as
# softhsm2-util --init-token does
softhsm2_token() {
        mkdir -p "$1/tokens"
        cat >"$1/softhsm2.conf" <<EOC
directories.tokendir = $1/tokens
objectstore.backend = file
log.level = ERROR
EOC
        SOFTHSM2_CONF="$1/softhsm2.conf"
        export SOFTHSM2_CONF
        softhsm2-util --init-token --free --label "$2" --pin "$3" --so-pin "$4" >/dev/null
}
