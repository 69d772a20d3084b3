#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# kekd and the service manager, without a running systemd: socket activation
# through systemd-socket-activate, the sd_notify messages (read from a
# datagram socket with socat), reload on SIGHUP, the drain on SIGTERM, the
# watchdog, the PIN as a systemd credential, the bash completion of kekctl,
# and the hardening of contrib/kekd.service (systemd-analyze security).
if ! command -v systemd-socket-activate >/dev/null 2>&1; then
        echo "1..0 # SKIP systemd-socket-activate not installed (Debian: systemd)"
        exit 0
fi
if ! command -v socat >/dev/null 2>&1; then
        echo "1..0 # SKIP socat not installed (needed to read sd_notify messages)"
        exit 0
fi
. "$TESTLIB"

SRCDIR=$(cd "$(dirname "$TESTLIB")/../.." && pwd)
NOTIFY="$TESTDIR/notify.sock"
SOCAT_PID=""
BG_PIDS=""

# Everything started here, by PID; then lib.sh's cleanup (kekd, temp dir).
cleanup_all() {
        for p in $BG_PIDS $SOCAT_PID; do
                kill -KILL "$p" 2>/dev/null
                wait "$p" 2>/dev/null
        done
        cleanup
}
trap cleanup_all EXIT

# notify_listen: a fresh datagram socket at $NOTIFY; socat -v writes each
# datagram to notify.raw after a header line
notify_listen() {
        notify_stop
        rm -f "$NOTIFY" "$TESTDIR/notify.raw"
        socat -u -v UNIX-RECV:"$NOTIFY" OPEN:/dev/null 2>"$TESTDIR/notify.raw" &
        SOCAT_PID=$!
        wait_for 5 test -S "$NOTIFY" || { echo "Bail out! socat did not create $NOTIFY"; exit 99; }
}

notify_stop() {
        if [ -n "$SOCAT_PID" ]; then
                kill -TERM "$SOCAT_PID" 2>/dev/null
                wait "$SOCAT_PID" 2>/dev/null
                SOCAT_PID=""
        fi
}

# messages: the datagrams received, one a line, their fields joined by " | "
messages() {
        [ -f "$TESTDIR/notify.raw" ] || return 0
        sed 's#> [0-9][0-9/]* [0-9:.]*  length=[0-9]* from=[0-9]* to=[0-9]*#\n@@\n#g' "$TESTDIR/notify.raw" |
                awk '/^@@$/ { if (m != "") print m; m = ""; next }
                     $0 != "" { m = (m == "" ? $0 : m " | " $0) }
                     END { if (m != "") print m }'
}

# state_messages: messages without the watchdog pings
state_messages() {
        messages | grep -v '^WATCHDOG=1$'
}

has_message() {
        state_messages | grep -qF -- "$1"
}

# reloading_has_monotonic: the last RELOADING=1 carries MONOTONIC_USEC=
reloading_has_monotonic() {
        state_messages | grep "^RELOADING=1" | tail -1 | grep -q "MONOTONIC_USEC=[0-9]"
}

# ready_after_reloading: READY=1 came after the last RELOADING=1
ready_after_reloading() {
        state_messages | awk '/^RELOADING=1/ { r = NR; f = 0 } /^READY=1/ && r { f = 1 } END { exit !f }'
}

n_watchdog() {
        messages | grep -c '^WATCHDOG=1$'
}

# log_count STRING: lines of kekd.log with STRING
log_count() {
        grep -cF -- "$1" "$TESTDIR/kekd.log"
}

log_has() {
        grep -qF -- "$1" "$TESTDIR/kekd.log"
}

# quiet COMMAND...: COMMAND with its output in $TESTDIR/out and $TESTDIR/err
quiet() {
        "$@" >"$TESTDIR/out" 2>"$TESTDIR/err"
}

# log_count_at_least STRING N: kekd.log has at least N lines with STRING
log_count_at_least() {
        [ "$(log_count "$1")" -ge "$2" ]
}

# set_conf KEY VALUE: changes "KEY = ..." in $CONF
set_conf() {
        sed -i "s|^$1 = .*|$1 = $2|" "$CONF"
}

# kekd_wait_exit SECONDS: waits for our kekd to exit; KEKD_STATUS, or 124 if it did not
kekd_wait_exit() {
        if wait_for "$1" sh -c "! kill -0 $KEKD_PID 2>/dev/null"; then
                wait "$KEKD_PID" 2>/dev/null
                KEKD_STATUS=$?
        else
                kill -KILL "$KEKD_PID" 2>/dev/null
                wait "$KEKD_PID" 2>/dev/null
                KEKD_STATUS=124
        fi
        KEKD_PID=""
}

token_init systemd
kekd_config
set_conf level info
ASOCK="$TESTDIR/activated.sock"
export KEKD_SOCKET="$ASOCK"

# --- (a) socket activation, (b) notifications --------------------------------
notify_listen
# systemd-socket-activate passes on only the environment named with -E; it
# execs kekd on the first connection, so KEKD_PID is kekd's PID.
NOTIFY_SOCKET=$NOTIFY systemd-socket-activate -l "$ASOCK" --fdname=kekd -E SOFTHSM2_CONF -E NOTIFY_SOCKET \
        "$KEKD" -c "$CONF" 2>>"$TESTDIR/kekd.log" &
KEKD_PID=$!
wait_for 10 log_has "Listening on $ASOCK as 3."
ok "kekctl works through the socket passed by systemd (first connection starts kekd)" quiet "$KEKCTL" create acct
ok "kekd logged that it serves the socket passed by systemd" log_has "on $ASOCK, the socket passed by systemd"
ok "kekd did not create the socket of its configuration" test ! -e "$SOCKET"
ok "READY=1 was sent" wait_for 5 has_message "READY=1"
first=$(state_messages | head -1)
is "the first message is READY=1 with a STATUS" "$first" "READY=1 | STATUS=Serving 0 keys (0 versions) to 0 clients"
ok "STATUS= counts keys and versions after the refresh" wait_for 5 has_message "STATUS=Serving 1 key (1 version) to 0 clients"
ok "at level info, connections are not logged" sh -c "! grep -q 'Connection from' '$TESTDIR/kekd.log'"

# --- (c) reload --------------------------------------------------------------
set_conf level debug
set_conf refresh_interval 2
set_conf allow_unrecoverable no
sed -i "s|^socket_mode = 0600\$|socket_mode = 0600\\nmax_frame = 8192|" "$CONF"
set_conf socket "$TESTDIR/elsewhere.sock"
kill -HUP "$KEKD_PID"
ok "SIGHUP reloads the configuration" wait_for 5 log_count_at_least "Reloaded configuration from $CONF" 1
ok "RELOADING=1 was sent" wait_for 5 has_message "RELOADING=1"
ok "... with MONOTONIC_USEC=" reloading_has_monotonic
ok "READY=1 follows RELOADING=1" wait_for 5 ready_after_reloading
ok "the new log level took effect" log_has "Log level changed from info to debug"
"$KEKCTL" version acct >/dev/null 2>&1
ok "... debug lines appear" log_has "Connection from uid"
ok "the new refresh_interval took effect" log_has "refresh_interval changed from 1 s to 2 s"
ok "allow_unrecoverable = no took effect" log_has "allow_unrecoverable is now off"
head -c 32 /dev/urandom >"$TESTDIR/aek"
kc wrap acct <"$TESTDIR/aek"
ok "... wraps are refused: KEY_NOT_RECOVERABLE" grep -q ": KEY_NOT_RECOVERABLE" "$TESTDIR/err"
ok "a change that needs a restart is logged as such" \
        log_has "'max_frame' in [server] changed; the change takes effect only when kekd is restarted"
ok "a socket change is noted as not applying under socket activation" \
        log_has "'socket' in [server] changed; it does not apply while systemd passes the socket"

printf 'bogus = 1\n' >>"$CONF"
badline=$(wc -l <"$CONF" | tr -d ' ')
kill -HUP "$KEKD_PID"
ok "a broken configuration on SIGHUP is logged with file:line" wait_for 5 \
        log_has "$CONF:$badline: unknown key 'bogus' in [log]; configuration not reloaded, the running one stays in effect"
ok "kekd keeps running" kekd_alive
ok "... and serving" quiet "$KEKCTL" version acct
ok "READY=1 is sent after the failed reload, STATUS says so" wait_for 5 \
        has_message "READY=1 | STATUS=Serving 1 key (1 version) to 0 clients; the configuration file did not load, see the log"
kc wrap acct <"$TESTDIR/aek"
ok "the running configuration stays in effect (wraps still refused)" grep -q ": KEY_NOT_RECOVERABLE" "$TESTDIR/err"

sed -i '/^bogus = 1$/d' "$CONF"
set_conf allow_unrecoverable yes
kill -HUP "$KEKD_PID"
ok "a fixed configuration reloads" wait_for 5 log_count_at_least "Reloaded configuration from $CONF" 2
kc wrap acct <"$TESTDIR/aek"
is "allow_unrecoverable = yes took effect (wrap works)" "$KC_STATUS" 0

kekd_stop TERM
is "kekd exits 0 on SIGTERM" "$KEKD_STATUS" 0
ok "STOPPING=1 was sent" wait_for 5 has_message "STOPPING=1"
is "no watchdog pings without WATCHDOG_USEC" "$(n_watchdog)" 0

# Two sockets: kekd serves the one named "kekd" and closes the other.
set_conf socket "$SOCKET"
OTHER="$TESTDIR/other.sock"
NAMED="$TESTDIR/named.sock"
systemd-socket-activate -l "$OTHER" -l "$NAMED" --fdname=other:kekd -E SOFTHSM2_CONF \
        "$KEKD" -c "$CONF" 2>>"$TESTDIR/kekd.log" &
KEKD_PID=$!
wait_for 10 log_has "Listening on $NAMED as 4."
ok "of two sockets passed by systemd, the one named 'kekd' is served" quiet "$KEKCTL" -s "$NAMED" version acct
ok "... which kekd logs" log_has "on $NAMED, the socket passed by systemd"
ok "... and the other is closed, with a warning" log_has "Ignoring socket 'other' passed by systemd"
"$KEKCTL" -s "$OTHER" version acct >/dev/null 2>&1
is "... so nobody is served on it (kekctl: unreachable)" "$?" 3
kekd_stop TERM

# --- (e) watchdog, (d) drain -----------------------------------------------
KEKD_SOCKET=$SOCKET
notify_listen
NOTIFY_SOCKET=$NOTIFY WATCHDOG_USEC=200000
export NOTIFY_SOCKET WATCHDOG_USEC
ok "kekd starts with its own socket, a watchdog and NOTIFY_SOCKET" kekd_start
unset NOTIFY_SOCKET WATCHDOG_USEC
ok "WATCHDOG=1 arrives about every 100 ms (WATCHDOG_USEC=200000)" wait_for 5 sh -c "[ \$(grep -c 'WATCHDOG=1' '$TESTDIR/notify.raw') -ge 5 ]"
ok "... as the log says" log_has "Watchdog: telling systemd every 100 ms that kekd is alive"

# Twenty pipelined GetKeyVersion requests (ids 1..20) in flight when SIGTERM arrives: all are answered,
# then the connection is closed as idle and kekd exits without waiting for the drain's bound.
# The twenty frames go out in one write, and SIGTERM waits until the client says it is done
# (mark:): on a busy machine a client still sending its frames one by one is not "in flight".
frames=""
i=1
while [ $i -le 20 ]; do
        frames="${frames}0000000a08$(printf '%02x' $i)62060a0461636374"
        i=$((i + 1))
done
"$KEK_RAW" "$SOCKET" "raw:$frames" "mark:$TESTDIR/raw.sent" hold:3000 >"$TESTDIR/raw.out" 2>&1 &
RAW_PID=$!
BG_PIDS="$BG_PIDS $RAW_PID"
ok "kekd has accepted the client" wait_for 5 log_has "Connection from uid $(id -u) gid $(id -g) pid $RAW_PID"
ok "... which has sent its 20 requests" wait_for 10 test -e "$TESTDIR/raw.sent"
kill -TERM "$KEKD_PID"
ok "SIGTERM starts the drain" wait_for 5 log_has "SIGTERM: stopping"
wait "$RAW_PID"
n=$(grep -c "ok=get_key_version" "$TESTDIR/raw.out")
is "the client got all 20 replies to the requests in flight at SIGTERM" "$n" 20
is "... in order, then the connection closed" "$(sed -n '1p;20p;21p' "$TESTDIR/raw.out" | tr '\n' '|')" \
        "id=1 ok=get_key_version|id=20 ok=get_key_version|closed|"
kekd_wait_exit 5
is "kekd exits 0 once the client is done" "$KEKD_STATUS" 0
ok "STOPPING=1 was sent, with a STATUS" wait_for 5 has_message "STOPPING=1 | STATUS=Stopping: finishing the requests of"
ok "kekd removed its socket" test ! -e "$SOCKET"

# A client stuck in the middle of a frame does not hold kekd longer than the
# drain's bound (5 s).
ok "kekd starts again" kekd_start
"$KEK_RAW" "$SOCKET" header:100 raw:0801 hold:9000 >/dev/null 2>&1 &
RAW_PID=$!
BG_PIDS="$BG_PIDS $RAW_PID"
ok "a client is in the middle of a request" wait_for 30 log_has "pid $RAW_PID"
t0=$(date +%s)
kill -TERM "$KEKD_PID"
sleep 1
ok "with a client in the middle of a request, kekd waits after SIGTERM" kekd_alive
kekd_wait_exit 10
t=$(($(date +%s) - t0))
is "... and exits 0 when the drain's bound has passed" "$KEKD_STATUS" 0
# A lower bound only: kekd_wait_exit bounds the wait, and a busy machine may take longer.
ok "... not before the drain's bound of 5 s ($t s)" test "$t" -ge 4
ok "... saying it closed the connection" log_has "1 client still connected after 5 s; closing their connections"
kill "$RAW_PID" 2>/dev/null

ok "kekd starts again" kekd_start
"$KEK_RAW" "$SOCKET" header:100 raw:0801 hold:9000 >/dev/null 2>&1 &
RAW_PID=$!
BG_PIDS="$BG_PIDS $RAW_PID"
# Each step waits for what kekd says: a loaded machine can take seconds to
# connect the client or handle the first signal, and a second SIGTERM sent
# before the first was handled merges with it.
ok "a client is in the middle of a request again" wait_for 30 log_has "pid $RAW_PID"
kill -TERM "$KEKD_PID"
ok "kekd waits for it after the first SIGTERM" wait_for 30 log_count_at_least "SIGTERM: stopping once the 1 connected client is done" 2
kill -TERM "$KEKD_PID"
# The client holds for 9 s, past the drain's 5 s: the log line below, not
# the time, tells the second signal's exit from the drain's.
kekd_wait_exit 10
is "a second SIGTERM stops at once, with status 0" "$KEKD_STATUS" 0
ok "... as logged" log_has "SIGTERM again: stopping without waiting for clients"
kill "$RAW_PID" 2>/dev/null
notify_stop

# --- the PIN as a systemd credential -----------------------------------------
CREDS="$TESTDIR/credentials"
mkdir -m 0700 "$CREDS"
install -m 0400 "$TESTDIR/pin" "$CREDS/kekd-pin"
sed -i "s|^pin_file = .*|pin_file = $TESTDIR/no-such-pin|" "$CONF"
CREDENTIALS_DIRECTORY=$CREDS
export CREDENTIALS_DIRECTORY
ok "with \$CREDENTIALS_DIRECTORY/kekd-pin, kekd starts although pin_file is missing" kekd_start
ok "... and says where the PIN came from" log_has "Read the token PIN from the systemd credential 'kekd-pin'"
kekd_stop
ok "... and the PIN is never logged" sh -c "! grep -qF '$TEST_PIN' '$TESTDIR/kekd.log'"

chmod 0440 "$CREDS/kekd-pin"
timeout 10 "$KEKD" -c "$CONF" >"$TESTDIR/out" 2>&1
is "a credential readable by its group is refused (exit 1)" "$?" 1
contains "... naming the cause" "$TESTDIR/out" "$CREDS/kekd-pin: credential is accessible by group or others"
chmod 0400 "$CREDS/kekd-pin"

if command -v setfacl >/dev/null 2>&1 && setfacl -m "u:$(id -un):r" "$CREDS/kekd-pin" 2>/dev/null; then
        # What systemd does on file systems with ACLs: 0400, plus read access for the service's user.
        ok "a credential readable through an ACL entry for kekd's user only is accepted (mode $(stat -c %a "$CREDS/kekd-pin"))" \
                kekd_start
        kekd_stop
        setfacl -m "g:$(id -gn):r" "$CREDS/kekd-pin"
        timeout 10 "$KEKD" -c "$CONF" >"$TESTDIR/out" 2>&1
        is "a credential whose ACL lets a group read it is refused" "$?" 1
        contains "... naming the cause" "$TESTDIR/out" "credential is accessible by group or others"
        setfacl -b "$CREDS/kekd-pin"
else
        diag "no setfacl, or no ACLs in $TESTDIR: ACL credential cases not run"
fi

rm "$CREDS/kekd-pin"
sed -i "s|^pin_file = .*|pin_file = $TESTDIR/pin|" "$CONF"
ok "without kekd-pin in \$CREDENTIALS_DIRECTORY, kekd reads pin_file" kekd_start
unset CREDENTIALS_DIRECTORY

# --- bash completion of kekctl -------------------------------------------------
if command -v bash >/dev/null 2>&1; then
        "$KEKCTL" create other-key >/dev/null 2>&1
        "$KEKCTL" create gone >/dev/null 2>&1
        "$KEKCTL" delete gone >/dev/null 2>&1
        # complete WORDS...: the completions of the last word of "kekctl WORDS..."
        complete_words() {
                bash -c '. "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _kekctl; [ ${#COMPREPLY[@]} -eq 0 ] || printf "%s\n" "${COMPREPLY[@]}" | sort | tr "\n" " "' \
                        complete "$SRCDIR/contrib/kekctl.bash-completion" "$KEKCTL" "$@"
        }
        is "completion: commands" "$(complete_words r)" "recover request requests restore revoke rewrap rotate "
        is "completion: a command's options" "$(complete_words vault --)" "--approval-window --backup --dual-control --json --purge-protection --retention-days "
        is "completion: --purge-protection values" "$(complete_words vault --purge-protection "")" "off on "
        is "completion: key names from kekd" "$(complete_words show "")" "acct other-key "
        is "completion: deleted keys for recover" "$(complete_words recover "")" "gone "
        is "completion: one key name only" "$(complete_words show acct "")" ""
        is "completion: --socket is honoured" "$(complete_words -s "$TESTDIR/no.sock" show "")" ""
        kekd_stop
        is "completion: no names when kekd is not running" "$(complete_words show "")" ""
else
        kekd_stop
        diag "no bash: completion not tested"
fi

# --- (f) hardening of contrib/kekd.service -------------------------------------
if command -v systemd-analyze >/dev/null 2>&1 && systemd-analyze --help 2>/dev/null | grep -q -- '--offline'; then
        systemd-analyze security --offline=yes "$SRCDIR/contrib/kekd.service" >"$TESTDIR/security" 2>&1
        level=$(sed -n 's/.*Overall exposure level for kekd.service: \([0-9.]*\).*/\1/p' "$TESTDIR/security")
        diag "systemd-analyze security: exposure ${level:-unknown}"
        ok "contrib/kekd.service: overall exposure ${level:-unknown} <= 2.0" \
                awk -v l="${level:-99}" 'BEGIN { exit !(l + 0 <= 2.0) }'
else
        diag "systemd-analyze without --offline: exposure not checked"
fi

done_testing
