#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# Checks that each man page passes "mandoc -Tlint -W warning" without a message.

pages="kekd.8 kekctl.8 kekd.conf.5 kekd-protocol.7 libkek.3 kek-kms-plugin.8"

if ! command -v mandoc >/dev/null 2>&1; then
        echo "1..0 # SKIP mandoc not installed"
        exit 0
fi
mandir=${MANDIR:-$(dirname "$0")/../../man}

set -- $pages
echo "1..$#"

n=0
for page in $pages; do
        n=$((n + 1))
        if out=$(mandoc -Tlint -W warning "$mandir/$page" 2>&1) && [ -z "$out" ]; then
                echo "ok $n - $page"
        else
                echo "not ok $n - $page"
                printf '%s\n' "${out:-mandoc failed without a message}" | sed 's/^/# /'
        fi
done
exit 0
