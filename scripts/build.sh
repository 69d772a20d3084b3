#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# Builds kekd in the source tree: autoreconf and configure when needed, then make.
# This is the development build: --enable-test-clock lets the test suite move
# kekd's clock (only when $KEKD_TEST_CLOCK_FILE is set). Production builds run
# plain ./configure. Extra arguments go to configure (only when it runs).
set -eu
cd "$(dirname "$0")/.."
[ -x configure ] || autoreconf -fi
[ -f Makefile ] || ./configure --enable-silent-rules --enable-test-clock "$@"
make -j"$(nproc)"
