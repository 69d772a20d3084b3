#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# make check-tokens: the lifecycle scenario (scenario.sh) on every PKCS#11
# implementation of tests/tokens/ ($TOKENS, default all five), then the
# matrix token x step: "ok", the PKCS#11 function and CKR that failed, or
# the step it was blocked by; "(todo)" marks a failure listed in NAME.todo.
# Also times set-up and run per token and keeps each token's TAP output,
# its pkcs11-tool -M and -T listings and the matrix in $TOKENS_OUT
# (default tests/tokens/out).
#
# Exit status: 0 when every step passed or failed as its NAME.todo says;
# 1 when a step failed that is not listed (a regression, or a token that
# could not be set up while it was expected to be) or a listed step passed
# (delete its line: kekd learned that token). A token whose set-up exits 77
# (packages missing and not installable) is reported as skipped.
set -u

src=$(cd "$(dirname "$0")" && pwd)
out=${TOKENS_OUT:-$src/out}
tokens=${TOKENS:-softhsm2 opencryptoki nss p11kit-remote tpm2}
mkdir -p "$out"
results="$out/results"
: >"$results"
: >"$out/times"
status=0

now() {
        date +%s.%N
}
elapsed() {
        awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'
}

# Runs inside the set-up script once the token is up: notes the time, lists mechanisms, runs the scenario.
inner='now=$(date +%s.%N); echo "$now" >"$TOKENS_OUT_DIR/$TOKEN_NAME.ready"
pkcs11-tool --module "$TOKEN_P11TOOL" --token-label "$TOKEN_LABEL" -M >"$TOKENS_OUT_DIR/$TOKEN_NAME.mechs" 2>&1
pkcs11-tool --module "$TOKEN_P11TOOL" -T >"$TOKENS_OUT_DIR/$TOKEN_NAME.tokeninfo" 2>&1
sh "$TOKENS_SRC_DIR/scenario.sh"'

for t in $tokens; do
        echo "# --- $t"
        rm -f "$out/$t.ready"
        t0=$(now)
        TOKENS_OUT_DIR=$out TOKENS_SRC_DIR=$src TOKEN_RESULTS=$results \
                timeout "${TOKENS_TIMEOUT:-900}" sh "$src/$t.sh" sh -c "$inner" >"$out/$t.tap" 2>"$out/$t.log"
        rc=$?
        t2=$(now)
        if [ -f "$out/$t.ready" ]; then
                t1=$(cat "$out/$t.ready")
                printf '%s setup=%ss run=%ss\n' "$t" "$(elapsed "$t0" "$t1")" "$(elapsed "$t1" "$t2")" >>"$out/times"
        else
                printf '%s setup-failed after %ss (exit %s)\n' "$t" "$(elapsed "$t0" "$t2")" "$rc" >>"$out/times"
        fi
        tail -n 1 "$out/times"
        if [ ! -f "$out/$t.ready" ]; then
                tail -n 5 "$out/$t.log" | sed 's/^/#   /'
                if [ "$rc" -eq 77 ]; then
                        echo "$t - skipped" >>"$results"
                else
                        echo "$t - set-up failed" >>"$results"
                        status=1
                fi
                continue
        fi
        grep -q '^1\.\.[1-9]' "$out/$t.tap" || { echo "# $t: no TAP plan (scenario aborted)"; status=1; }
        # Not ok without TODO: a regression. Ok with TODO: a TODO to delete.
        bad=$(grep '^not ok' "$out/$t.tap" | grep -v '# TODO' || true)
        xpass=$(grep '^ok' "$out/$t.tap" | grep '# TODO' || true)
        [ -n "$bad" ] && { echo "# $t: unexpected failures:"; echo "$bad" | sed 's/^/#   /'; status=1; }
        [ -n "$xpass" ] && { echo "# $t: passes a step its $t.todo lists (delete the line):"; echo "$xpass" | sed 's/^/#   /'; status=1; }
done

# The matrix: one row per step, one column per token.
awk -v tokens="$tokens" -v todo_dir="$src" '
function short(s) {
        sub(/^C_/, "", s); sub(/: CKR_/, ":", s); return substr(s, 1, 30)
}
BEGIN {
        nt = split(tokens, tok, " ")
        for (i = 1; i <= nt; i++) {
                f = todo_dir "/" tok[i] ".todo"
                while ((getline line < f) > 0) { split(line, w, " "); todo[tok[i], w[1]] = 1 }
                close(f)
        }
}
{
        t = $1; s = $2; r = $0; sub(/^[^ ]+ [^ ]+ /, "", r)
        if (!(s in seen)) { seen[s] = 1; order[++ns] = s }
        res[t, s] = (r == "ok") ? "ok" : short(r) (((t, s) in todo) ? " (todo)" : "")
}
END {
        printf "%-20s", "step"
        for (i = 1; i <= nt; i++) printf " | %-37s", tok[i]
        printf "\n"
        for (j = 1; j <= ns; j++) {
                if (order[j] == "-") continue
                printf "%-20s", order[j]
                for (i = 1; i <= nt; i++) {
                        c = ((tok[i], order[j]) in res) ? res[tok[i], order[j]] : ((tok[i], "-") in res ? res[tok[i], "-"] : "-")
                        printf " | %-37s", c
                }
                printf "\n"
        }
}' "$results" | tee "$out/matrix.txt"
echo "# set-up and run times:"
sed 's/^/#   /' "$out/times"
echo "# details: $out/*.tap, *.mechs, *.tokeninfo"
exit $status
