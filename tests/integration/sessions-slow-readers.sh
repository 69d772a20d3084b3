#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# slow-readers.sh again with [hsm] sessions = 4: the budget is enforced after
# each connection's part of a group round too (daemon/server.c on_group()).
KEKD_SESSIONS=4
export KEKD_SESSIONS
. "$(dirname "$0")/slow-readers.sh"
