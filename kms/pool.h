/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A fixed pool of worker threads running KMS calls, so a libkek call that
 * waits on kekd (up to its timeout) never blocks the event loop or the
 * other streams. libkek is thread-safe and pipelines the workers' requests
 * on one connection. Finished jobs wait on a list; an eventfd wakes the
 * event loop, which takes them with kms_pool_take_done(). The queue needs no
 * bound of its own: every job is a stream, and streams are bounded (h2.h).
 */
#pragma once

#include "kms/h2.h"
#include "kms/service.h"

typedef struct KmsPool KmsPool;

int kms_pool_new(unsigned threads, const KmsService *svc, KmsPool **ret);
/* Stops the workers after their current job, joins them, frees every job left. */
KmsPool *kms_pool_free(KmsPool *p);
void kms_pool_submit(KmsPool *p, KmsJob *job);
/* Readable when jobs are done */
int kms_pool_fd(const KmsPool *p);
/* The finished jobs, as a list linked by ->next (NULL: none) */
KmsJob *kms_pool_take_done(KmsPool *p);
/* Runs one job in the calling thread (the workers' body; the fuzzer calls it directly) */
void kms_job_run(const KmsService *svc, KmsJob *j);
