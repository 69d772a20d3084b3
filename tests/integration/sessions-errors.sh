#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# errors.sh again with [hsm] sessions = 4: the HSM worker pool (daemon/cryptopool.h)
# and the grouped dispatch of several connections' requests (daemon/server.c)
# must answer exactly as one session does.
KEKD_SESSIONS=4
export KEKD_SESSIONS
. "$(dirname "$0")/errors.sh"
