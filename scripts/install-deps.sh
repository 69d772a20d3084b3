#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# install-deps.sh [--missing] [PKG...]: the one installer of Debian 12
# packages. Installs the given packages, or with none the default list kekd
# needs to build, test and run. Does nothing when all of them are present;
# otherwise apt-get update, then one apt-get install. Uses sudo when not run
# as root. With --missing it installs nothing and prints the packages that
# are missing, each after a space (nothing when all are present).
# scripts/install-deps-systemd.sh and tests/tokens/install.sh call it with
# their own lists.
# tests/integration/systemd.sh uses systemd (systemd-socket-activate,
# systemd-analyze), socat (reads sd_notify datagrams) and acl (setfacl);
# clang and its fuzzer runtime build the fuzzers; valgrind runs make memcheck.
set -eu

report=0
if [ "${1:-}" = "--missing" ]; then
        report=1
        shift
fi
PKGS="$*"
[ -n "$PKGS" ] || PKGS="build-essential autoconf automake libtool pkg-config
      protobuf-c-compiler libprotobuf-c-dev libp11-kit-dev p11-kit
      libssl-dev libsystemd-dev libinih-dev libjson-c-dev libnghttp2-dev
      softhsm2 opensc mandoc gdb
      systemd socat acl
      clang libclang-rt-14-dev valgrind"

missing=""
for p in $PKGS; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ "$report" -eq 1 ]; then
        [ -z "$missing" ] || echo "$missing"
        exit 0
fi
[ -z "$missing" ] && exit 0

SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO=sudo
echo "Installing:$missing"
$SUDO apt-get update
# shellcheck disable=SC2086
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends $missing
