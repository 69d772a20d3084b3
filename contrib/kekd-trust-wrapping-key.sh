#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# The security officer's set-up for kekd's backup mode trusted-wrap
# (docs/backup.md): imports the DR token's RSA public key into this token as
# a wrap-only key marked CKA_TRUSTED, the one kind of key kekd's key versions
# (CKA_WRAP_WITH_TRUSTED) may be wrapped under (CKM_RSA_PKCS_OAEP), or marks
# an existing wrapping key (an AES key from the SO's ceremony) trusted.
# Only the SO can set CKA_TRUSTED; kekd never holds the SO PIN. The PIN is
# read from a file (never the command line) by kekd-trust-key.
#
#   kekd-trust-wrapping-key.sh MODULE TOKEN_LABEL SO_PIN_FILE LABEL DR_PUBLIC_KEY.pem
#   kekd-trust-wrapping-key.sh MODULE TOKEN_LABEL SO_PIN_FILE LABEL --existing
#
# KEKD_TRUST_KEY names the helper (default: kekd-trust-key beside this script, then in PATH).
set -eu

usage() {
        echo "usage: $0 MODULE TOKEN_LABEL SO_PIN_FILE LABEL DR_PUBLIC_KEY.pem|--existing" >&2
        exit 2
}
[ $# -eq 5 ] || usage
module=$1 token=$2 pin_file=$3 label=$4 pub=$5
helper=${KEKD_TRUST_KEY:-}
if [ -z "$helper" ]; then
        helper=$(dirname "$0")/kekd-trust-key
        [ -x "$helper" ] || helper=kekd-trust-key
fi
[ -r "$pin_file" ] || { echo "$0: cannot read the SO PIN file $pin_file" >&2; exit 2; }

if [ "$pub" = --existing ]; then
        exec "$helper" "$module" "$token" "$pin_file" --trust "$label"
fi
[ -r "$pub" ] || { echo "$0: cannot read $pub" >&2; exit 2; }
# The modulus and exponent of the DR token's RSA public key (PEM or DER).
modulus=$(openssl rsa -pubin -in "$pub" -noout -modulus 2>/dev/null || openssl rsa -pubin -inform DER -in "$pub" -noout -modulus)
modulus=${modulus#Modulus=}
exponent=$( (openssl rsa -pubin -in "$pub" -noout -text 2>/dev/null || openssl rsa -pubin -inform DER -in "$pub" -noout -text) |
        sed -n 's/^Exponent: *\([0-9]*\).*/\1/p')
[ -n "$modulus" ] && [ -n "$exponent" ] || { echo "$0: $pub is not an RSA public key" >&2; exit 2; }
exec "$helper" "$module" "$token" "$pin_file" --import-rsa "$label" "$modulus" "$exponent"
