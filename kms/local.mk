# SPDX-License-Identifier: LGPL-2.1-or-later
# kek-kms-plugin (issue 19): the Kubernetes KMS v2 provider, its tests and
# interop clients. Included from Makefile.am. Built only with libnghttp2
# (configure: HAVE_NGHTTP2); tests/integration/kms.sh SKIPs without it.
kms_files = kms/api.proto tests/kms/install.sh tests/kms/client.go tests/kms/client.py \
	contrib/kek-kms-plugin.service contrib/kek-kms-plugin.socket contrib/kek-kms-plugin.conf \
	contrib/encryption-configuration.yaml
kms_files += tests/kms/mock-backend.h tests/fuzz/fuzz-kms.c tests/fuzz/corpus-kms/status tests/fuzz/corpus-kms/encrypt \
	tests/fuzz/corpus-kms/decrypt tests/fuzz/corpus-kms/multi tests/fuzz/corpus-kms/oversized \
	tests/fuzz/corpus-kms/ping-window
EXTRA_DIST += $(kms_files) tests/integration/kms.sh
CLEANFILES += tests/fuzz/fuzz-kms
dist_man_MANS += man/kek-kms-plugin.8
TESTS += tests/integration/kms.sh
AM_TESTS_ENVIRONMENT += KEK_KMS_PLUGIN='$(abs_top_builddir)/kms/kek-kms-plugin' \
	KEK_KMS_BENCH='$(abs_top_builddir)/tests/bench/kms-bench' \
	KEK_KMS_SRC='$(abs_top_srcdir)/tests/kms' KEK_KMS_PROTO='$(abs_top_srcdir)/kms/api.proto' \
	; export KEK_KMS_PLUGIN KEK_KMS_BENCH KEK_KMS_SRC KEK_KMS_PROTO;

if HAVE_NGHTTP2
BUILT_SOURCES += kms/api.pb-c.c kms/api.pb-c.h
CLEANFILES += kms/api.pb-c.c kms/api.pb-c.h
kms/api.pb-c.c: $(srcdir)/kms/api.proto
	$(AM_V_GEN)$(MKDIR_P) kms && $(PROTOC_C) --proto_path=$(srcdir) --c_out=. $(srcdir)/kms/api.proto
kms/api.pb-c.h: kms/api.pb-c.c
	@test -f $@ || { rm -f kms/api.pb-c.c && $(MAKE) $(AM_MAKEFLAGS) kms/api.pb-c.c; }

# Everything but main(), so the unit tests (and the fuzzer's sources list) share it
noinst_LTLIBRARIES += libkekkms.la
libkekkms_la_SOURCES = kms/grpc.c kms/grpc.h kms/service.c kms/service.h kms/h2.c kms/h2.h \
	kms/pool.c kms/pool.h kms/metrics.c kms/metrics.h
nodist_libkekkms_la_SOURCES = kms/api.pb-c.c kms/api.pb-c.h
libkekkms_la_CFLAGS = $(AM_CFLAGS) -pthread $(PROTOBUFC_CFLAGS) $(NGHTTP2_CFLAGS) $(CRYPTO_CFLAGS)
libkekkms_la_LIBADD = libkekproto.la $(PROTOBUFC_LIBS) $(NGHTTP2_LIBS) $(CRYPTO_LIBS) -lpthread

sbin_PROGRAMS += kms/kek-kms-plugin
kms_kek_kms_plugin_SOURCES = kms/main.c
kms_kek_kms_plugin_CFLAGS = $(libkekkms_la_CFLAGS) $(SYSTEMD_CFLAGS) $(INIH_CFLAGS)
kms_kek_kms_plugin_LDADD = libkekkms.la client/libkek.la $(SYSTEMD_LIBS) $(INIH_LIBS)

check_PROGRAMS += tests/unit/test-kms-grpc tests/unit/test-kms-service
TESTS += tests/unit/test-kms-grpc tests/unit/test-kms-service
tests_unit_test_kms_grpc_SOURCES = tests/unit/test-kms-grpc.c
tests_unit_test_kms_grpc_CFLAGS = $(libkekkms_la_CFLAGS)
tests_unit_test_kms_grpc_LDADD = libkekkms.la $(NGHTTP2_LIBS)
tests_unit_test_kms_service_SOURCES = tests/unit/test-kms-service.c
tests_unit_test_kms_service_CFLAGS = $(libkekkms_la_CFLAGS)
tests_unit_test_kms_service_LDADD = libkekkms.la

# Encrypt+Decrypt through the plugin against kekd's wrap+unwrap (tests/integration/kms.sh prints it)
check_PROGRAMS += tests/bench/kms-bench
tests_bench_kms_bench_SOURCES = tests/bench/kms-bench.c
tests_bench_kms_bench_CFLAGS = $(libkekkms_la_CFLAGS)
tests_bench_kms_bench_LDADD = libkekkms.la client/libkek.la $(NGHTTP2_LIBS)
endif
