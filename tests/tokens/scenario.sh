#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# The lifecycle scenario of issue 16 against one token, as TAP: run it through
# a set-up script, e.g. "tests/tokens/nss.sh sh tests/tokens/scenario.sh"
# (make check-tokens runs it on every implementation). Steps: start, vault
# (first record write), create, wrap, unwrap, a wrong context refused,
# rotate, unwrap of the old blob, rewrap, disable (wrap refused), enable,
# kekctl check, round trips of 100 AEKs, restart, unwrap after the restart,
# check again, show, the key attributes read back with pkcs11-tool, and
# "kekd never reports healthy on a token where it cannot wrap". Then, with
# kekd stopped (also on a token kekd refused), the RSA-OAEP SHA-256 transfer
# of pkcs11/hsm-transfer.c by tests/test-oaep-transfer: oaep-plain (a key
# moved under an RSA key pair without CKA_TRUSTED, and it decrypts what the
# source encrypted), oaep-kept (what kekd's unwrap leaves in the token is
# sensitive and unextractable, or nothing), oaep-trusted (kekd's DR path:
# the SO imports the public half with CKA_TRUSTED, a trusted-wrap version
# moves under it).
#
# Each step is one TAP line named by its step id. A step listed in
# $TOKEN_TODO ("STEP reason" per line) is known to fail on this token today:
# it is reported with "# TODO reason" (issue 16's open items); when it passes
# the TAP consumer sees an unexpected pass, the sign to delete the line. On a
# failure the line's diagnostics give kekctl's error and the last PKCS#11
# failure kekd logged (function and CKR, pkcs11/hsm.c at debug level).
# With $TOKEN_RESULTS, "TOKEN STEP RESULT" lines are appended there for the
# matrix (tests/tokens/matrix.sh).
#
# Needs KEKD, KEKCTL and TESTLIB (make sets them) and the TOKEN_* variables
# of tests/tokens/common.sh.
. "$TESTLIB"

: "${TOKEN_NAME:?run through a set-up script}" "${TOKEN_HSM_CONF:?}" "${TOKEN_PIN_FILE:?}"
TEST_PIN=$(cat "$TOKEN_PIN_FILE")   # lib.sh's secrets_absent searches kekd.log for it
AEKS=${SCENARIO_AEKS:-100}

SOCKET="$TESTDIR/kekd.sock"
CONF="$TESTDIR/kekd.conf"
KEKD_SOCKET=$SOCKET
export KEKD_SOCKET
{
        cat "$TOKEN_HSM_CONF"
        cat <<EOF
sessions = 1

[server]
socket = $SOCKET
socket_mode = 0600

[keys]
refresh_interval = 3600
allow_unrecoverable = no

[log]
level = debug
EOF
} >"$CONF"
: >"$TESTDIR/kekd.log"

# todo_reason STEP: the reason this step is known to fail on this token, if listed
todo_reason() {
        [ -f "${TOKEN_TODO:-}" ] || return 1
        sed -n "s/^$1[[:space:]]\{1,\}//p" "$TOKEN_TODO" | head -1 | grep .
}

# why: the step's last PKCS#11 failure in kekd's log (function and CKR), else
# the earlier step it depends on, else kekctl's error
why() {
        if r=$(grep -m1 'Refusing to start: ' "$TESTDIR/kekd.log"); then
                c=$(printf '%s\n' "$r" | grep -o '(C_[A-Za-z]*: CKR_[A-Z_0-9]*)' | head -1 | tr -d '()')
                [ -n "$c" ] || c=$(printf '%s\n' "$r" | grep -o 'offers no [^(]*(CKM_[A-Z_0-9]*)' | head -1 |
                        sed 's/.*(\(CKM_[A-Z_0-9]*\))/no \1/')
                echo "refused: ${c:-see log}"
                return
        fi
        p=$(tail -n "+$((log_mark + 1))" "$TESTDIR/kekd.log" | grep -o 'PKCS#11 C_[A-Za-z]* failed: CKR_[A-Z_0-9]*' |
                tail -1 | sed 's/^PKCS#11 //; s/ failed: /: /')
        if [ -n "$p" ]; then
                echo "$p"
        elif [ -n "$first_failed" ]; then
                echo "blocked by $first_failed"
        elif [ -s "$TESTDIR/err" ]; then
                head -1 "$TESTDIR/err" | sed 's/^kekctl: [a-z-]*: //' | cut -c1-80
        else
                echo failed
        fi
}
first_failed=""

log_mark=0
begin() {
        log_mark=$(wc -l <"$TESTDIR/kekd.log")
        : >"$TESTDIR/err"
}

# step ID DESCRIPTION COMMAND...: one TAP line for the step
step() {
        id=$1
        desc=$2
        shift 2
        tap_n=$((tap_n + 1))
        begin
        if "$@"; then
                res=ok
                line="ok $tap_n - $id: $desc"
        else
                res=${STEP_WHY:-$(why)}
                line="not ok $tap_n - $id: $desc"
        fi
        if reason=$(todo_reason "$id"); then
                line="$line # TODO $reason"
        elif [ "$res" != ok ]; then
                tap_failed=$((tap_failed + 1))
        fi
        echo "$line"
        if [ "$res" != ok ]; then
                echo "#   $TOKEN_NAME/$id: $res"
                [ -s "$TESTDIR/err" ] && echo "#   kekctl: $(head -c 300 "$TESTDIR/err" | tr '\n' ' ')"
                [ -n "$first_failed" ] || first_failed=$id
        fi
        [ -n "${TOKEN_RESULTS:-}" ] && printf '%s %s %s\n' "$TOKEN_NAME" "$id" "$res" >>"$TOKEN_RESULTS"
        [ "$res" = ok ]
}

aek() {
        head -c 32 /dev/urandom >"$TESTDIR/$1"
}
wrap_to() {   # KEY CONTEXT AEK BLOB
        "$KEKCTL" wrap "$1" --context "$2" <"$TESTDIR/$3" >"$TESTDIR/$4" 2>"$TESTDIR/err"
}
unwraps_to() {   # CONTEXT BLOB AEK
        "$KEKCTL" unwrap --context "$1" <"$TESTDIR/$2" 2>"$TESTDIR/err" | cmp -s - "$TESTDIR/$3"
}
kekctl_ok() {
        "$KEKCTL" "$@" >"$TESTDIR/out" 2>"$TESTDIR/err"
}
refused_with() {   # CODE KEKCTL-ARGS... (stdin from $REFUSED_IN)
        code=$1
        shift
        "$KEKCTL" "$@" <"${REFUSED_IN:-/dev/null}" >"$TESTDIR/out" 2>"$TESTDIR/err"
        st=$?
        [ $st -eq 1 ] && grep -q ": $code" "$TESTDIR/err"
}
blob_version() {
        od -An -tu1 -j 9 -N1 "$TESTDIR/$1" | tr -d ' '
}

# healthy: what a supervisor sees: kekd answers status and holds an open HSM session
healthy() {
        "$KEKCTL" --json status >"$TESTDIR/status" 2>/dev/null && grep -q '"hsm_session_open": *true' "$TESTDIR/status"
}

roundtrips() {
        i=0
        while [ $i -lt "$AEKS" ]; do
                aek rt
                wrap_to acct "rt-$i" rt rtb || return 1
                unwraps_to "rt-$i" rtb rt || return 1
                i=$((i + 1))
        done
}

# access_items: the flags of pkcs11-tool's "Access:" lines, one per line
access_items() {
        sed -n 's/^ *Access: *//p' "$TESTDIR/p11" | tr ',' '\n' | sed 's/^ *//; s/ *$//'
}

# key_attrs: the KEK objects as pkcs11-tool reads them, each sensitive, never extractable, generated on the token.
# On a token that stores no token data objects (NSS) the records are generic-secret key objects labelled
# "kekd-record:APP:NAME" (docs/tokens.md): they are set aside and must be usable for nothing.
key_attrs() {
        pkcs11-tool --module "$TOKEN_P11TOOL" --token-label "$TOKEN_LABEL" --login --pin "$TEST_PIN" \
                --list-objects --type secrkey >"$TESTDIR/p11.all" 2>"$TESTDIR/err" || return 1
        awk -v out="$TESTDIR/p11" -v rec="$TESTDIR/p11.records" '
                /^Secret Key Object/ { flush(); buf = $0 "\n"; isrec = 0; next }
                /^ *label: *kekd-record:/ { isrec = 1 }
                { buf = buf $0 "\n" }
                function flush() { if (buf != "") printf "%s", buf > (isrec ? rec : out); buf = "" }
                END { flush() }' "$TESTDIR/p11.all"
        touch "$TESTDIR/p11" "$TESTDIR/p11.records"
        n=$(grep -c '^Secret Key Object' "$TESTDIR/p11")
        nrec=$(grep -c '^Secret Key Object' "$TESTDIR/p11.records")
        diag "$TOKEN_NAME: pkcs11-tool lists $n secret keys and $nrec record objects"
        sed 's/^/#   | /' "$TESTDIR/p11" | head -12
        [ "$n" -ge 2 ] || return 1
        if [ "$nrec" -gt 0 ]; then
                [ "$(grep -c '^ *Usage: *none$' "$TESTDIR/p11.records")" -eq "$nrec" ] ||
                        { diag "a record object is usable as a key"; return 1; }
                ! sed -n 's/^ *Access: *//p' "$TESTDIR/p11.records" | tr ',' '\n' | grep -qx ' *extractable' ||
                        { diag "a record object is extractable"; return 1; }
        fi
        # One "Access:" line per key, each with all four flags and without "extractable".
        [ "$(grep -c '^ *Access:' "$TESTDIR/p11")" -eq "$n" ] || return 1
        # NSS softokn never sets CKA_LOCAL on generated keys (measured; docs/tokens.md): not asked of it.
        flags='sensitive:always sensitive:never extractable:local'
        [ "$TOKEN_NAME" = nss ] && flags='sensitive:always sensitive:never extractable'
        IFS_OLD=$IFS
        IFS=:
        for flag in $flags; do
                [ "$(access_items | grep -cx "$flag")" -eq "$n" ] || { IFS=$IFS_OLD; diag "not every key is $flag"; return 1; }
        done
        IFS=$IFS_OLD
        ! access_items | grep -qx extractable || { diag "a KEK is extractable"; return 1; }
        # AES keys (KEKs) encrypt and decrypt only: no wrap, unwrap, sign, verify or derive. The MAC keys
        # of ctr-hmac versions and the record key (Generic secret, docs/profiles.md, docs/tokens.md) sign and
        # verify only.
        awk '/^Secret Key Object/ { t = ($0 ~ /Generic secret/) ? "mac" : "kek" } /^ *Usage:/ { print t ":" $0 }' \
                "$TESTDIR/p11" >"$TESTDIR/usage"
        ! grep '^kek:' "$TESTDIR/usage" | grep -Eq 'wrap|sign|verify|derive' || { diag "a KEK may do more than encrypt/decrypt"; return 1; }
        ! grep '^mac:' "$TESTDIR/usage" | grep -Eq 'encrypt|decrypt|wrap|derive' || { diag "a MAC key may do more than sign/verify"; return 1; }
        # (pkcs11-tool prints no "sign" for secret keys; that MAC keys sign is shown by every wrap.)
        ! grep '^mac:' "$TESTDIR/usage" | grep -v verify | grep -q . || { diag "a MAC key cannot verify"; return 1; }
}

diag "token $TOKEN_NAME: $(grep '^module' "$TOKEN_HSM_CONF")"
# The RSA-OAEP SHA-256 transfer (tests/test-oaep-transfer.c), by kekd's pkcs11/ code without kekd, on the
# module kekd loads (its set-up dlopen()s TOKEN_P11TOOL). A failure's STEP_WHY is the first failing call and CKR.
OAEP=${TEST_OAEP_TRANSFER:-$(dirname "$KEKD")/../tests/test-oaep-transfer}
oaep_run() {   # MODE [SO_PIN_FILE]
        STEP_WHY=""
        if [ ! -x "$OAEP" ]; then
                STEP_WHY="tests/test-oaep-transfer not built"
                return 1
        fi
        TEST_OAEP_RAW_MODULE=$TOKEN_P11TOOL "$OAEP" "$1" "$TOKEN_MODULE" "$TOKEN_URI" "$TOKEN_PIN_FILE" ${2:+"$2"} \
                >"$TESTDIR/oaep-$1" 2>&1
        st=$?
        sed "s/^/#   $1: /" "$TESTDIR/oaep-$1"
        [ $st -eq 0 ] && return 0
        f=$(grep -m1 'FAILED: ' "$TESTDIR/oaep-$1")
        STEP_WHY=$(printf '%s\n' "$f" | grep -o 'C_[A-Za-z]*[^:]*: CKR_[A-Z_0-9]*' | head -1)
        [ -n "$STEP_WHY" ] || STEP_WHY=$(printf '%s\n' "${f:-exit $st}" | sed 's/^[a-z]* FAILED: //' | cut -c1-60)
        return 1
}
oaep_kept() {
        STEP_WHY=""
        grep -q '^kept ok' "$TESTDIR/oaep-plain" 2>/dev/null && return 0
        STEP_WHY=$(grep -m1 '^kept FAILED' "$TESTDIR/oaep-plain" 2>/dev/null | sed 's/^kept FAILED: //' | cut -c1-60)
        [ -n "$STEP_WHY" ] || STEP_WHY="blocked by oaep-plain (nothing unwrapped)"
        return 1
}
oaep_steps() {
        step oaep-plain "RSA-OAEP SHA-256: a key moved by hsm-transfer.c decrypts what the source encrypted" oaep_run plain
        step oaep-kept "what kekd's unwrap leaves in the token is sensitive and unextractable, or nothing" oaep_kept
        step oaep-trusted "RSA-OAEP SHA-256 under the SO's CKA_TRUSTED key: kekd's DR path" oaep_run trusted \
                "$TOKEN_SO_PIN_FILE"
        STEP_WHY=""
}
# A token kekd cannot serve must be refused at start with one line that names the cause (issue 16).
refused_clearly() {
        kill -0 "$KEKD_PID" 2>/dev/null && return 1
        n=$(grep -c '^kekd\[error\]: Refusing to start: ' "$TESTDIR/kekd.log")
        diag "$(grep -m1 '^kekd\[error\]: Refusing to start: ' "$TESTDIR/kekd.log" | cut -c1-400)"
        [ "$n" -eq 1 ] && [ "$(grep -c '^kekd\[error\]' "$TESTDIR/kekd.log")" -eq 1 ]
}
if ! step start "kekd starts on the token" kekd_start; then
        step refused-clearly "a refusal at start is one error line naming the cause" refused_clearly
        oaep_steps
        done_testing
fi
# The probe's C_CopyObject tries (pkcs11/probe.h): refused, kept or unsafe. A token marked unsafe
# (TOKEN_UNSAFE, nss.sh) runs only with allow_unsafe_token, which kekd must warn about; any other must not be unsafe.
copies() {
        "$KEKCTL" status --json >"$TESTDIR/copies.json" 2>"$TESTDIR/err" || return 1
        c=$(python3 -c 'import json,sys; c=json.load(open(sys.argv[1]))["probe"]["key_copies"]; print(c["result"], "(C_CopyObject plain", c["plain"] + ", extractable", c["extractable"] + ", sensitive", c["sensitive"] + ")")' \
                "$TESTDIR/copies.json" 2>&1)
        diag "$TOKEN_NAME: key copies: $c"
        case "$TOKEN_UNSAFE:$c" in
        yes:unsafe*) grep -q '^kekd\[warning\]: allow_unsafe_token is set, starting anyway: token .* does not keep keys in' \
                "$TESTDIR/kekd.log" ;;
        yes:*) return 1 ;;
        *:unsafe*) return 1 ;;
        *:refused* | *:kept*) return 0 ;;
        *) return 1 ;;
        esac
}
step copies "key copies: unsafe only where expected, and then with the opt-in's warning" copies
# check: consistent; on a token run with allow_unsafe_token its one problem is that token.
check_ok() {
        kekctl_ok check && return 0
        [ "$TOKEN_UNSAFE" = yes ] && [ "$(grep -c '^PROBLEM: ' "$TESTDIR/out")" -eq 1 ] &&
                grep -q "^PROBLEM: token '.*' does not keep keys in: C_CopyObject" "$TESTDIR/out"
}
healthy_at_start=no
healthy && healthy_at_start=yes
can_wrap=no

step vault "purge protection on (the first record write)" kekctl_ok vault --purge-protection on --retention-days 30
step create "create a key (version 1 generated in the token)" kekctl_ok create acct
aek a1
aek a2
step wrap "wrap under version 1" wrap_to acct c1 a1 b1 && can_wrap=yes
step unwrap "unwrap" unwraps_to c1 b1 a1
REFUSED_IN="$TESTDIR/b1" step wrong-context "unwrap with a wrong context is refused" refused_with BLOB_INVALID unwrap --context c9
step rotate "rotate" kekctl_ok rotate acct
wrap_v2() {
        wrap_to acct c2 a2 b2 && [ "$(blob_version b2)" = 2 ]
}
step wrap-v2 "wrap follows the new version" wrap_v2
step unwrap-old "the version 1 blob still unwraps" unwraps_to c1 b1 a1
rewrap() {
        "$KEKCTL" rewrap --context c1 <"$TESTDIR/b1" >"$TESTDIR/b1r" 2>"$TESTDIR/err" && [ "$(blob_version b1r)" = 2 ] &&
                unwraps_to c1 b1r a1
}
step rewrap "rewrap moves the version 1 blob to version 2" rewrap
step disable "disable the key" kekctl_ok disable acct
REFUSED_IN="$TESTDIR/a1" step disabled-refused "wrap with the disabled key is refused" refused_with KEY_DISABLED wrap acct
enable() {
        kekctl_ok enable acct && unwraps_to c2 b2 a2
}
step enable "enable restores unwrap" enable
step check "kekctl check finds the token consistent" check_ok
step roundtrips "$AEKS AEKs wrap and unwrap" roundtrips
restart() {
        kekd_stop
        kekd_start
}
step restart "kekd restarts on the same token" restart
unwrap_restart() {
        unwraps_to c1 b1 a1 && unwraps_to c2 b2 a2
}
step unwrap-restart "both blobs unwrap after the restart" unwrap_restart
step check-restart "kekctl check after the restart" check_ok
show() {
        kekctl_ok --json show acct && grep -q '"id": *2' "$TESTDIR/out" && grep -q '"id": *1' "$TESTDIR/out"
}
step show "show lists both versions" show
step attributes "KEKs: sensitive, never extractable, local, encrypt/decrypt only; MAC keys sign/verify only (pkcs11-tool)" key_attrs
healthy_never_without_wrap() {
        diag "healthy after start: $healthy_at_start; a wrap succeeded: $can_wrap"
        [ "$healthy_at_start" = no ] || [ "$can_wrap" = yes ]
}
STEP_WHY="healthy, but no wrap succeeded" step healthy-implies-wrap "kekd never reported healthy on a token where it cannot wrap" \
        healthy_never_without_wrap
kekd_stop
oaep_steps
done_testing
