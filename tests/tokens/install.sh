#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# install.sh PACKAGE...: installs the Debian packages that are not installed
# yet, with scripts/install-deps.sh (apt-get update, then apt-get install
# --no-install-recommends; its output goes to /dev/null, as TAP runs read
# this script's). Does nothing when all are present. Needs root (no sudo
# prompt in a test run); with KEK_TOKENS_NO_INSTALL set it only reports what
# is missing and exits 77.
set -u

deps="$(dirname "$0")/../../scripts/install-deps.sh"
missing=$(sh "$deps" --missing "$@") || exit 1
[ -z "$missing" ] && exit 0
if [ -n "${KEK_TOKENS_NO_INSTALL:-}" ] || [ "$(id -u)" -ne 0 ]; then
        echo "# missing packages:$missing (not installing)" >&2
        exit 77
fi
echo "# installing:$missing" >&2
sh "$deps" "$@" >/dev/null || exit 1
