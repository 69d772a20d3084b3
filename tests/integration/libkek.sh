#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# libkek against a real kekd on a fresh SoftHSM2 token: tests/libkek-test
# starts, kills and restarts kekd itself (by PID) and prints the TAP.
. "$TESTLIB"

token_init libkek
kekd_config
trap cleanup EXIT
CONF=$CONF KEKD_SOCKET=$SOCKET TESTDIR=$TESTDIR "$LIBKEK_TEST"
