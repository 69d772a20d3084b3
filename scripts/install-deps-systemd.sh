#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# Installs what "make check-systemd" needs beyond scripts/install-deps.sh:
# mmdebstrap (builds the Debian rootfs the test boots systemd in) and
# util-linux's unshare, nsenter and setpriv (already on any Debian). Kept
# apart so the Quick start stays lean. Does nothing when all are present
# (scripts/install-deps.sh does the installing).
set -eu

exec "$(dirname "$0")/install-deps.sh" mmdebstrap util-linux
