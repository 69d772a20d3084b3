#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# libkek coalesces a client's concurrent requests into batch frames (issue
# 18.2): tests/libkek-coalesce against kekd on tests/p11-fault, whose delays
# ($FAULTS, switched by the program) make requests overlap; the program reads
# kekd's metrics to count frames and items, and prints the TAP.
. "$TESTLIB"

if [ ! -f "${P11_FAULT_LIB:-}" ] || [ ! -x "${LIBKEK_COALESCE:-}" ]; then
        echo "Bail out! P11_FAULT_LIB or LIBKEK_COALESCE not built (make check builds them)"
        exit 99
fi
p11_fault_setup
token_init coalesce
kekd_config
sed -i "s|^module = .*|module = $P11_FAULT_LIB|" "$CONF"
kekd_start >&2 || { echo "Bail out! kekd did not start"; exit 99; }
"$KEKCTL" create k >/dev/null && "$KEKCTL" create rev >/dev/null || { echo "Bail out! keys not created"; exit 99; }
FAULTS=$FAULTS "$LIBKEK_COALESCE"
