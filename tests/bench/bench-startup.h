/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * kekbench's start-up measurements (issue 18, phase "startup"): the raw
 * floor (tests/bench/startup-raw: C_Initialize, session, login and the
 * listings kekd makes at start, nothing else) and kekd's time from exec to
 * READY=1, received on a NOTIFY_SOCKET of the benchmark's own. Each
 * returns microseconds, or -1 on failure; every wait is bounded.
 */
#pragma once

#include <stddef.h>
#include <sys/types.h>

/*
 * Runs bin (startup-raw) on module, token uri and pin_file: the microseconds
 * it took to list the token, and in the ret_* what it read and its CPU time.
 */
double startup_raw_run(const char *bin, const char *module, const char *uri, const char *pin_file,
                       size_t *ret_records, size_t *ret_keys, double *ret_cpu_us);
/*
 * Starts kekd -c conf with NOTIFY_SOCKET in dir: the microseconds from exec to
 * READY=1 (at most 120 s). *ret_pid is kekd's (-1 if it did not start or
 * died); *ret_cpu_us is cpu_us(pid) when READY=1 arrived.
 */
double startup_kekd_ready(const char *kekd, const char *conf, const char *dir, double (*cpu_us)(pid_t pid),
                          pid_t *ret_pid, double *ret_cpu_us);
/* The median of n values (reorders them). */
double startup_median(double *v, size_t n);
