# SPDX-License-Identifier: LGPL-2.1-or-later
# Included from Makefile.am (paths relative to the top source dir).

# The installed units under a real systemd (tests/systemd/check-systemd.sh):
# run by "make check-systemd" and .ci/run, never by make check. Needs root
# and mmdebstrap (scripts/install-deps-systemd.sh); the Debian rootfs is
# cached in $$KEKD_SYSTEMD_CACHE (default /var/cache/kekd-check-systemd).
check-systemd: all
	$(SHELL) $(srcdir)/tests/systemd/check-systemd.sh '$(abs_top_srcdir)' '$(abs_top_builddir)' \
		'$(sysconfdir)' '$(sbindir)' '$(bindir)' '$(MAKE)'

.PHONY: check-systemd
EXTRA_DIST += tests/systemd/check-systemd.sh scripts/install-deps-systemd.sh
