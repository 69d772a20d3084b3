#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# install.sh: installs the Debian packages kek-kms-plugin and its interop
# clients need (libnghttp2-dev builds the plugin; Go with grpc-go and the
# protobuf 1.5 runtime builds tests/kms/client.go; python3-grpcio and
# python3-grpc-tools run tests/kms/client.py), with scripts/install-deps.sh.
# The 1-3 protobuf package is not used: grpc-go 1.33 panics on its messages.
# Does nothing when all are present; needs root.
set -eu
exec sh "$(dirname "$0")/../../scripts/install-deps.sh" \
        libnghttp2-dev golang golang-google-grpc-dev \
        golang-github-golang-protobuf-1-5-dev python3-grpcio python3-grpc-tools
