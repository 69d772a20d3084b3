# SPDX-License-Identifier: LGPL-2.1-or-later
# Included from Makefile.am (paths relative to the top source dir).

# Load test: kekload is built by make and run only by "make load" (never by
# make check): tests/load/load.sh starts kekd on a fresh SoftHSM2 token and
# runs it at full size (64 threads x 100000 operations). Arguments for
# load.sh go in LOAD_ARGS, e.g. make load LOAD_ARGS='--threads 8 --ops 10000'.
noinst_PROGRAMS += tests/load/kekload
tests_load_kekload_SOURCES = tests/load/kekload.c
tests_load_kekload_CFLAGS = $(AM_CFLAGS) -pthread
tests_load_kekload_LDADD = client/libkek.la -lpthread

load: all
	$(SHELL) $(srcdir)/tests/load/load.sh '$(abs_top_srcdir)' '$(abs_top_builddir)' '$(SOFTHSM2_MODULE)' $(LOAD_ARGS)

# Valgrind memcheck of the unit tests, of tests/libkek-test and of kekd under
# a set of integration tests; fails on any memcheck error or definite leak.
# The logs go to $(MEMCHECK_DIR) when set, else to a temp dir kept on failure.
memcheck: all $(check_PROGRAMS) $(check_LTLIBRARIES)
	$(SHELL) $(srcdir)/tests/load/memcheck.sh '$(abs_top_srcdir)' '$(abs_top_builddir)' '$(SOFTHSM2_MODULE)'

.PHONY: load memcheck
EXTRA_DIST += tests/load/load.sh tests/load/memcheck.sh tests/load/README.md
