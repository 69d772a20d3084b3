# SPDX-License-Identifier: LGPL-2.1-or-later
# Included from Makefile.am (paths relative to the top source dir).

# libFuzzer targets (clang): "make fuzz" builds them; "make fuzz FUZZ_SECONDS=60" also runs each.
fuzz_files = tests/fuzz/build.sh tests/fuzz/fuzz-blob.c tests/fuzz/fuzz-config.c tests/fuzz/fuzz-frame.c \
	tests/fuzz/corpus-blob/header-only tests/fuzz/corpus-blob/valid-shape tests/fuzz/corpus-blob/bad-format \
	tests/fuzz/corpus-config/full tests/fuzz/corpus-config/bad \
	tests/fuzz/corpus-frame/list-and-version tests/fuzz/corpus-frame/oversized
EXTRA_DIST += $(fuzz_files)
fuzz: all
	fs='$(FUZZ_SECONDS)'; $(SHELL) $(srcdir)/tests/fuzz/build.sh '$(abs_top_srcdir)' '$(abs_top_builddir)' $${fs:+run} $$fs
.PHONY: fuzz
CLEANFILES += tests/fuzz/fuzz-blob tests/fuzz/fuzz-config tests/fuzz/fuzz-frame
