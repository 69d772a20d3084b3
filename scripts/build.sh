#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# Builds kekd in the source tree: autoreconf and configure when needed, then make.
# Extra arguments go to configure (only when it runs).
set -eu
cd "$(dirname "$0")/.."
[ -x configure ] || autoreconf -fi
[ -f Makefile ] || ./configure --enable-silent-rules "$@"
make -j"$(nproc)"
