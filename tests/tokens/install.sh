#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# install.sh PACKAGE...: installs the Debian packages that are not installed
# yet (apt-get update once per run, then apt-get install --no-install-
# recommends). Does nothing when all are present. Needs root; with
# KEK_TOKENS_NO_INSTALL set it only reports what is missing and exits 77.
set -u

missing=""
for p in "$@"; do
        dpkg-query -W -f '${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ -n "${KEK_TOKENS_NO_INSTALL:-}" ] || [ "$(id -u)" -ne 0 ]; then
        echo "# missing packages:$missing (not installing)" >&2
        exit 77
fi
echo "# installing:$missing" >&2
export DEBIAN_FRONTEND=noninteractive
# shellcheck disable=SC2086 # a list of package names
if ! apt-get install -y --no-install-recommends $missing >/dev/null; then
        apt-get update >/dev/null || exit 1
        apt-get install -y --no-install-recommends $missing >/dev/null || exit 1
fi
