# SPDX-License-Identifier: LGPL-2.1-or-later
# Included from Makefile.am (paths relative to the top source dir).
