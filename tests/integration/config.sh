#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# kekd refuses to start on bad configuration, PIN files and HSM selections,
# each with a clear message naming the file (and line) or the cause, and
# never with the PIN in its output.
. "$TESTLIB"

token_init conftest
kekd_config

"$KEKD" -c "$CONF" --check-config >"$TESTDIR/out" 2>&1
is "--check-config accepts the test configuration" "$?" 0

# start_fails DESCRIPTION EXPECTED-TEXT: kekd -c $TESTDIR/bad.conf exits 1 printing the text
start_fails() {
        timeout 20 "$KEKD" -c "$TESTDIR/bad.conf" >"$TESTDIR/out" 2>&1
        st=$?
        tap_n=$((tap_n + 1))
        if [ $st -eq 1 ] && grep -qF -- "$2" "$TESTDIR/out"; then
                echo "ok $tap_n - $1"
        else
                echo "not ok $tap_n - $1 (exit $st)"
                sed 's/^/#   | /' "$TESTDIR/out"
                tap_failed=$((tap_failed + 1))
        fi
        if grep -qF -- "$TEST_PIN" "$TESTDIR/out"; then
                echo "not ok $tap_n - ... and the PIN leaked into the output"
                tap_failed=$((tap_failed + 1))
        fi
}

# The line numbers of the lines broken below, in the test configuration as lib.sh writes it.
level_line=$(grep -n '^level = debug$' "$CONF" | cut -d: -f1)
mode_line=$(grep -n '^socket_mode = 0600$' "$CONF" | cut -d: -f1)
sed 's/^level = debug$/level = loud/' "$CONF" >"$TESTDIR/bad.conf"
start_fails "bad log level names file and line" "bad.conf:$level_line: 'level' in [log] must be error, warning, notice, info or debug, got 'loud'"
sed 's/^socket_mode = 0600$/socket_mod = 0600/' "$CONF" >"$TESTDIR/bad.conf"
start_fails "unknown key names file and line" "bad.conf:$mode_line: unknown key 'socket_mod' in [server]"
sed 's/^socket_mode = 0600$/socket_mode = 0666/' "$CONF" >"$TESTDIR/bad.conf"
start_fails "socket mode open to others is refused" "bad.conf:$mode_line: 'socket_mode' in [server] must not grant access to others"
sed '/^pin_file/d' "$CONF" >"$TESTDIR/bad.conf"
start_fails "missing pin_file is named" "missing required 'pin_file' in [hsm]"
printf '[hsm]\nmodule = x\nthis line is wrong\n' >"$TESTDIR/bad.conf"
start_fails "syntax error names the line" "bad.conf:3: syntax error"
rm -f "$TESTDIR/bad.conf"
start_fails "missing config file" "bad.conf: cannot open: No such file or directory"

# Further tokens, [hsm.NAME] (docs/tokens-ha.md)
tok() { # tok TEXT: the test configuration with TEXT appended, as bad.conf
        { cat "$CONF"; printf '%b' "$1"; } >"$TESTDIR/bad.conf"
}
tok "\n[hsm.b]\nmodule = $SOFTHSM2_MODULE\ntoken = pkcs11:token=other\n"
"$KEKD" -c "$TESTDIR/bad.conf" --check-config >"$TESTDIR/out" 2>&1
is "--check-config accepts a further token" "$?" 0
conf_lines=$(wc -l <"$CONF")
tok "\n[hsm.B]\nmodule = x\n"
start_fails "a token name out of a-z0-9_- is refused" "bad.conf:$((conf_lines + 2)): [hsm.B]: a token name is 1 to 32 of a-z"
tok "\n[hsm.x]\n"
start_fails "an empty [hsm.NAME] says what it lacks" "bad.conf: missing required 'module' in [hsm.x]"
tok "\n[hsm.x]\nmodule = $SOFTHSM2_MODULE\n"
start_fails "a further token without URI is named" "bad.conf: missing required 'token' in [hsm.x]"
tok "\n[hsm.x]\nmodule = m\ntoken = pkcs11:token=a\n[hsm.x]\nmodule = m\n"
start_fails "a section given twice is refused, not merged" "bad.conf:$((conf_lines + 5)): [hsm.x] is given twice"
tok "\n[hsm.primary]\nmodule = m\ntoken = pkcs11:token=a\n"
start_fails "a further token named as the [hsm] one is refused" "[hsm.primary] has the name of the [hsm] token"
tok "\n[hsm.x]\nmodul = m\n"
start_fails "an unknown key in [hsm.NAME] names file and line" "bad.conf:$((conf_lines + 3)): unknown key 'modul' in [hsm.x]"
tok "\n[hsm.x]\nmodule = m\ntoken = pkcs11:token=a;pin-value=1234\n"
start_fails "a PIN in a further token's URI is refused" "'token' in [hsm.x] must not carry pin-value; use pin_file"
tok "\n[hsm.x]\nmodule = m\ntoken = pkcs11:token=a\npin_file = pin\n"
start_fails "a relative pin_file in [hsm.NAME] is refused" "'pin_file' in [hsm.x] must be an absolute path"
tok "$(for i in 1 2 3 4 5 6 7 8; do printf '\\n[hsm.t%s]\\nmodule = m\\ntoken = pkcs11:token=t%s\\n' $i $i; done)"
start_fails "at most 7 further tokens" "[hsm.t8]: at most 7 [hsm.NAME] sections"
sed 's/^\[hsm\]$/[hsm]\nname = Big/' "$CONF" >"$TESTDIR/bad.conf"
start_fails "a bad [hsm] name is refused" "'name' in [hsm] is 1 to 32 of a-z, 0-9, '_' and '-', got 'Big'"
sed 's/^\[hsm\]$/[hsm]\nprobe_interval = 0/' "$CONF" >"$TESTDIR/bad.conf"
start_fails "probe_interval 0 is refused" "'probe_interval' in [hsm] must be between 1 and 3600"
tok "\n[hsm.x]\nmodule = $SOFTHSM2_MODULE\ntoken = pkcs11:token=a\npin_file = $TESTDIR/no-such-pin\n"
start_fails "a further token's unreadable PIN file stops kekd, naming the token" "(the PIN of [hsm.x])"

chmod 0644 "$TESTDIR/pin"
cp "$CONF" "$TESTDIR/bad.conf"
start_fails "PIN file readable by others is refused" "must be mode 0400 or 0600"
chmod 0600 "$TESTDIR/pin"

printf 'wrong-pin-123\n' >"$TESTDIR/badpin"
chmod 0600 "$TESTDIR/badpin"
sed "s|^pin_file = .*|pin_file = $TESTDIR/badpin|" "$CONF" >"$TESTDIR/bad.conf"
start_fails "wrong PIN is reported as such" "login refused: PIN incorrect"
ok "the wrong PIN is not echoed" sh -c "! grep -qF wrong-pin-123 '$TESTDIR/out'"

ln -s "$TESTDIR/pin" "$TESTDIR/pinlink"
sed "s|^pin_file = .*|pin_file = $TESTDIR/pinlink|" "$CONF" >"$TESTDIR/bad.conf"
start_fails "PIN file that is a symlink is refused" "PIN file is a symbolic link"

sed "s|^token = .*|token = pkcs11:token=no-such-token|" "$CONF" >"$TESTDIR/bad.conf"
start_fails "URI matching no token" "no initialised token matches the token URI"
sed "s|^token = .*|token = pkcs11:token=conftest;pin-value=$TEST_PIN|" "$CONF" >"$TESTDIR/bad.conf"
start_fails "URI carrying a PIN is refused" "must not carry pin-value"
sed "s|^token = .*|token = pkcs11:token=con%zz|" "$CONF" >"$TESTDIR/bad.conf"
start_fails "malformed URI" "not a valid PKCS#11 URI"
sed "s|^module = .*|module = /nonexistent/libpkcs11.so|" "$CONF" >"$TESTDIR/bad.conf"
start_fails "missing module" "cannot load PKCS#11 module"
sed "s|^module = .*|module = no-such-p11-kit-module|" "$CONF" >"$TESTDIR/bad.conf"
start_fails "unknown p11-kit module name" "no PKCS#11 module of that name is registered with p11-kit"

# a regular file where the socket should go is never replaced
touch "$SOCKET"
cp "$CONF" "$TESTDIR/bad.conf"
start_fails "a non-socket file at the socket path is left alone" "exists and is not a socket"
ok "... and still exists" test -f "$SOCKET"
rm -f "$SOCKET"

if p11-kit list-modules 2>/dev/null | grep -q '^softhsm2: '; then
        sed -i "s|^module = .*|module = softhsm2|" "$CONF"
        ok "kekd starts with the module given by its p11-kit name 'softhsm2'" kekd_start
        kc create by-name
        is "... and serves from it" "$KC_STATUS" 0
        kekd_stop
        sed -i "s|^module = .*|module = $SOFTHSM2_MODULE|" "$CONF"
else
        diag "softhsm2 is not registered with p11-kit here; module-by-name start not tried"
fi

ok "kekd starts with the good configuration" kekd_start
ok "the socket has mode 0600 as configured" test "$(stat -c %a "$SOCKET")" = 600

# SIGHUP with a changed key that only a restart applies: kekd says so, naming
# the key, and keeps serving. [hsm] sessions was once silently ignored.
reloaded() {
        [ "$(grep -c "Reloaded configuration from $CONF" "$TESTDIR/kekd.log")" -ge 1 ]
}
old_sessions=$(sed -n 's/^sessions = //p' "$CONF")
sed -i "s/^sessions = .*/sessions = $((old_sessions + 1))/" "$CONF"
sed -i 's/^refresh_interval = .*/refresh_interval = 7/' "$CONF"
kill -HUP "$KEKD_PID"
i=0
while ! reloaded && [ $i -lt 100 ]; do
        sleep 0.1
        i=$((i + 1))
done
ok "SIGHUP reloads the configuration" reloaded
contains "a changed [hsm] sessions is named as needing a restart" "$TESTDIR/kekd.log" \
        "'sessions' in [hsm] changed; the change takes effect only when kekd is restarted"
ok "a changed key that reload applies is not reported as needing a restart" \
        sh -c "! grep -qF \"'refresh_interval' in [keys] changed; the change takes effect only\" '$TESTDIR/kekd.log'"
contains "... it is applied instead" "$TESTDIR/kekd.log" "refresh_interval changed from 1 s to 7 s"
ok "kekd keeps serving after the reload" kekd_alive
kc list
is "... and answers" "$KC_STATUS" 0
kekd_stop
done_testing
