#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# profiles.sh again with [hsm] sessions = 4: the MAC key handles found on
# kekd's main session serve the HSM worker sessions (daemon/cryptopool.h),
# and every profile answers exactly as with one session.
KEKD_SESSIONS=4
export KEKD_SESSIONS
. "$(dirname "$0")/profiles.sh"
