#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# Installs what "make check-systemd" needs beyond scripts/install-deps.sh:
# mmdebstrap (builds the Debian rootfs the test boots systemd in) and
# util-linux's unshare, nsenter and setpriv (already on any Debian). Kept
# apart so the Quick start stays lean. Does nothing when all are present.
set -eu

PKGS="mmdebstrap util-linux"

missing=""
for p in $PKGS; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0

SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO=sudo
echo "Installing:$missing"
$SUDO apt-get update
# shellcheck disable=SC2086
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends $missing
