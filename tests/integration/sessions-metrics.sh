#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# metrics.sh again with [hsm] sessions = 4: the workers' sessions count in
# kekd_hsm_session_open and kekd_hsm_sessions says 4.
KEKD_SESSIONS=4
export KEKD_SESSIONS
. "$(dirname "$0")/metrics.sh"
