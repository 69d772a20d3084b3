# SPDX-License-Identifier: LGPL-2.1-or-later
# Included from Makefile.am (paths relative to the top source dir).

# p11-fault: a PKCS#11 module for the tests only, wrapping SoftHSM2 and failing
# chosen calls ($P11_FAULT, $P11_FAULT_FILE; see the header of p11-fault.c).
# Built by "make check", never installed; -rpath makes libtool build a real
# dlopen()able shared object in tests/p11-fault/.libs/.
check_LTLIBRARIES = tests/p11-fault/p11-fault.la
tests_p11_fault_p11_fault_la_SOURCES = tests/p11-fault/p11-fault.c
tests_p11_fault_p11_fault_la_CFLAGS = $(AM_CFLAGS) $(P11KIT_CFLAGS) -pthread -fvisibility=hidden
tests_p11_fault_p11_fault_la_LDFLAGS = $(AM_LDFLAGS) -module -avoid-version -shared -rpath /nowhere -Wl,--no-undefined
tests_p11_fault_p11_fault_la_LIBADD = -ldl -lpthread

# A long-lived libkek client driven line by line by fault.sh (cache through an outage).
check_PROGRAMS += tests/p11-fault/fault-client
tests_p11_fault_fault_client_SOURCES = tests/p11-fault/fault-client.c
tests_p11_fault_fault_client_LDADD = client/libkek.la

TESTS += tests/integration/fault.sh tests/integration/refresh.sh
EXTRA_DIST += tests/integration/fault.sh tests/integration/refresh.sh
# Wrap leases settled at a clean stop (lease.sh); a failed create rolled back at once (create-fault.sh).
TESTS += tests/integration/lease.sh tests/integration/create-fault.sh
EXTRA_DIST += tests/integration/lease.sh tests/integration/create-fault.sh
# A settle racing another kekd's lease take is applied once (lease-race.sh, review finding F1).
TESTS += tests/integration/lease-race.sh
EXTRA_DIST += tests/integration/lease-race.sh
# No key vanishes while the refresh thread reads the token (store-race.sh).
TESTS += tests/integration/store-race.sh
EXTRA_DIST += tests/integration/store-race.sh
# The capability probe, templates without CKA_COPYABLE, searches without CKA_LOCAL (probe.sh, issue 16).
TESTS += tests/integration/probe.sh
EXTRA_DIST += tests/integration/probe.sh
# The probe's key-copy tries: a token whose copies become extractable is refused unless allowed (probe-copy.sh).
TESTS += tests/integration/probe-copy.sh
EXTRA_DIST += tests/integration/probe-copy.sh
# Records as public objects with an in-token HMAC on a token without private data objects (issue 16).
TESTS += tests/integration/public-records.sh
EXTRA_DIST += tests/integration/public-records.sh
# A public record key planted without login is neither trusted nor used to sign (issue 16 review).
TESTS += tests/integration/record-key-plant.sh
EXTRA_DIST += tests/integration/record-key-plant.sh
# A public KEK planted without login is not adopted (issue 16 review).
TESTS += tests/integration/kek-plant.sh
EXTRA_DIST += tests/integration/kek-plant.sh
# A public data object planted without login is not read as a private record (issue 16 review).
TESTS += tests/integration/record-plant.sh
EXTRA_DIST += tests/integration/record-plant.sh

# P11_FAULT_MODULE: the real module p11-fault wraps.
AM_TESTS_ENVIRONMENT += \
	P11_FAULT_LIB='$(abs_top_builddir)/tests/p11-fault/.libs/p11-fault.so' \
	P11_FAULT_MODULE='$(SOFTHSM2_MODULE)' \
	P11_FAULT_CLIENT='$(abs_top_builddir)/tests/p11-fault/fault-client' \
	; export P11_FAULT_LIB P11_FAULT_MODULE P11_FAULT_CLIENT;
