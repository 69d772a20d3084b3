#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# kekctl's one command table against everything that lists commands: the
# COMMANDS section of man/kekctl.8 (each command, and each command option
# named somewhere in the page), "kekctl --help", and the bash completion
# (which reads "kekctl --complete"). And kekctl links no daemon code: its
# grant op names come from common/opnames.c, not daemon/access.c. No kekd.
. "$TESTLIB"

SRCDIR=$(cd "$(dirname "$TESTLIB")/../.." && pwd)
mandir=${MANDIR:-$SRCDIR/man}

"$KEKCTL" --complete >"$TESTDIR/table"
is "kekctl --complete exits 0" "$?" 0
table_cmds=$(awk '$1 == "command" { print $2 }' "$TESTDIR/table" | sort | tr '\n' ' ')
ok "the table has commands ($table_cmds)" test -n "$table_cmds"

# The word after the macro of each .TP entry in COMMANDS that is not an option (\-\-...).
man_cmds=$(awk '/^\.SH/ { sec = $2 } sec == "COMMANDS" && prev == ".TP" { print $2 } { prev = $0 }' "$mandir/kekctl.8" |
        grep -v '^\\' | sort | tr '\n' ' ')
is "man/kekctl.8 describes exactly the table's commands" "$man_cmds" "$table_cmds"

missing=""
for opt in $(awk '$1 == "command" { for (i = 4; i <= NF; i++) print $i }' "$TESTDIR/table" | sort -u); do
        # "--rotate-after" is written \-\-rotate\-after in roff
        roff=$(printf '%s' "$opt" | sed 's/-/\\\\-/g')
        grep -q -- "$roff" "$mandir/kekctl.8" || missing="$missing $opt"
done
is "man/kekctl.8 names every command option of the table" "$missing" ""

help_cmds=$("$KEKCTL" --help | sed -n 's/^  \([a-z][a-z]*\)\( .*\)\{0,1\}$/\1/p' | sort | tr '\n' ' ')
is "kekctl --help lists exactly the table's commands" "$help_cmds" "$table_cmds"

bad=""
for c in $table_cmds; do
        "$KEKCTL" "$c" --help >"$TESTDIR/out" 2>&1 && grep -q "^Usage: kekctl \[OPTIONS\] $c" "$TESTDIR/out" || bad="$bad $c"
done
is "kekctl COMMAND --help works for every command of the table" "$bad" ""

"$KEKCTL" request nope >/dev/null 2>"$TESTDIR/err"
is "request of a command that cannot be submitted: usage error" "$?" 2
contains "... the message lists the submittable commands" "$TESTDIR/err" "only delete, purge, vault, backup, restore and revoke"

if command -v bash >/dev/null 2>&1; then
        # complete WORDS...: the completions of the last word of "kekctl WORDS..."
        complete_words() {
                bash -c '. "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _kekctl; [ ${#COMPREPLY[@]} -eq 0 ] || printf "%s\n" "${COMPREPLY[@]}" | sort | tr "\n" " "' \
                        complete "$SRCDIR/contrib/kekctl.bash-completion" "$KEKCTL" "$@"
        }
        is "completion offers exactly the table's commands" "$(complete_words "")" "$table_cmds"
        is "completion: grant's options" "$(complete_words grant k --)" "--json --ops "
        is "completion: --ops values from the grant op table" "$(complete_words grant k user:1 --ops "")" \
                "all get rewrap unwrap wrap "
        is "completion: --dual-control values" "$(complete_words vault --dual-control "")" \
                "backup delete last-grant none purge restore vault-policy "
        is "completion: a value-less option's value is not completed" "$(complete_words wrap k --context "")" ""
        is "completion: an unknown command completes nothing" "$(complete_words frobnicate --)" ""
        is "completion: the global options" "$(complete_words --)" "--help --json --socket= --timeout= --version "
else
        diag "no bash: completion not tested"
fi

if command -v nm >/dev/null 2>&1; then
        nm "$KEKCTL" >"$TESTDIR/syms" 2>/dev/null
        ok "nm reads kekctl" test -s "$TESTDIR/syms"
        is "kekctl links none of daemon/access.c" "$(grep -c -E ' [TtDd] (peer_init|peer_has_role|grants_allow|grants_apply)$' "$TESTDIR/syms")" 0
        is "kekctl has the grant op names of common/opnames.c" "$(grep -c -E ' [Tt] grant_ops_from_string$' "$TESTDIR/syms")" 1
else
        diag "no nm: kekctl's symbols not checked"
fi
done_testing
