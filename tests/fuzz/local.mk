# SPDX-License-Identifier: LGPL-2.1-or-later
# Included from Makefile.am (paths relative to the top source dir).

# libFuzzer targets (clang): "make fuzz" builds them; "make fuzz FUZZ_SECONDS=60" also runs each,
# fuzz-dispatch for FUZZ_DISPATCH_SECONDS instead when that is given.
# fuzz-dispatch compiles libkekd's and libkekproto's sources itself (with the fuzzer's
# instrumentation; the libtool archives are built without it), so they are handed over
# from the libkekd_la_* and libkekproto_la_* variables of Makefile.am, with the packages' flags.
fuzz_files = tests/fuzz/build.sh tests/fuzz/fuzz-blob.c tests/fuzz/fuzz-config.c tests/fuzz/fuzz-frame.c \
	tests/fuzz/fuzz-backup.c tests/fuzz/corpus-backup/two-keys \
	tests/fuzz/fuzz-dispatch.c tests/fuzz/gen-corpus-dispatch.c \
	tests/mock-p11/mock-p11.c tests/mock-p11/mock-p11.h \
	tests/fuzz/corpus-blob/header-only tests/fuzz/corpus-blob/valid-shape tests/fuzz/corpus-blob/bad-format \
	tests/fuzz/corpus-blob/valid-ctr-hmac tests/fuzz/corpus-blob/valid-gcm-token-iv tests/fuzz/corpus-blob/valid-cbc-hmac \
	tests/fuzz/corpus-config/full tests/fuzz/corpus-config/bad \
	tests/fuzz/corpus-frame/list-and-version tests/fuzz/corpus-frame/oversized tests/fuzz/corpus-frame/deep-nesting \
	tests/fuzz/corpus-dispatch/approval-request-twice \
	tests/fuzz/corpus-dispatch/batch-rewrap tests/fuzz/corpus-dispatch/batch-unwrap \
	tests/fuzz/corpus-dispatch/batch-wrap tests/fuzz/corpus-dispatch/check tests/fuzz/corpus-dispatch/create-key \
	tests/fuzz/corpus-dispatch/delete-recover tests/fuzz/corpus-dispatch/dual-control \
	tests/fuzz/corpus-dispatch/dual-control-vault tests/fuzz/corpus-dispatch/frame-too-large \
	tests/fuzz/corpus-dispatch/get-key tests/fuzz/corpus-dispatch/lifecycle tests/fuzz/corpus-dispatch/list-keys \
	tests/fuzz/corpus-dispatch/maintain-purge tests/fuzz/corpus-dispatch/malformed tests/fuzz/corpus-dispatch/officer-denied \
	tests/fuzz/corpus-dispatch/permission-denied tests/fuzz/corpus-dispatch/purge \
	tests/fuzz/corpus-dispatch/rewrap tests/fuzz/corpus-dispatch/rotate-key \
	tests/fuzz/corpus-dispatch/set-enabled tests/fuzz/corpus-dispatch/set-grant tests/fuzz/corpus-dispatch/set-rotation-policy \
	tests/fuzz/corpus-dispatch/status \
	tests/fuzz/corpus-dispatch/truncated tests/fuzz/corpus-dispatch/unwrap \
	tests/fuzz/corpus-dispatch/vault-policy tests/fuzz/corpus-dispatch/watch tests/fuzz/corpus-dispatch/wrap \
	tests/fuzz/corpus-dispatch/wrap-budget tests/fuzz/corpus-dispatch/wrap-budget-pinned tests/fuzz/corpus-dispatch/limits \
	tests/fuzz/corpus-dispatch/batch-limits tests/fuzz/corpus-dispatch/approval-limit tests/fuzz/corpus-dispatch/last-grant \
	tests/fuzz/corpus-dispatch/truncated-key-name \
	tests/fuzz/corpus-dispatch/nul-in-key tests/fuzz/corpus-dispatch/nul-in-wrap-key tests/fuzz/corpus-dispatch/overlong-nul \
	tests/fuzz/corpus-dispatch/approval-in-approval tests/fuzz/corpus-dispatch/deep-nesting tests/fuzz/request.dict
EXTRA_DIST += $(fuzz_files)
fuzz: all
	fs='$(FUZZ_SECONDS)'; FUZZ_DISPATCH_SECONDS='$(FUZZ_DISPATCH_SECONDS)'; export FUZZ_DISPATCH_SECONDS; \
	FUZZ_DAEMON_SOURCES='$(libkekd_la_SOURCES) $(libkekproto_la_SOURCES) $(nodist_libkekproto_la_SOURCES)' \
	FUZZ_DAEMON_CFLAGS='$(filter-out $(AM_CFLAGS),$(libkekd_la_CFLAGS) $(libkekproto_la_CFLAGS))' \
	FUZZ_DAEMON_LIBS='$(filter-out %.la,$(libkekd_la_LIBADD) $(libkekproto_la_LIBADD))' \
	$(SHELL) $(srcdir)/tests/fuzz/build.sh '$(abs_top_srcdir)' '$(abs_top_builddir)' $${fs:+run} $$fs
.PHONY: fuzz
CLEANFILES += tests/fuzz/fuzz-blob tests/fuzz/fuzz-config tests/fuzz/fuzz-frame tests/fuzz/fuzz-dispatch tests/fuzz/fuzz-backup \
	tests/fuzz/mock-p11.so tests/fuzz/gen-corpus-dispatch
