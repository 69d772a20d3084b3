/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libFuzzer target over kek-kms-plugin's peer input: the bytes after the
 * HTTP/2 client preface go to a server connection (kms/h2.c), whose complete
 * calls run through kms/service.c over the in-memory backend
 * (tests/kms/mock-backend.h), then the answers are produced and every
 * deadline is expired. The first input byte picks where the input is split
 * into two reads. No crash, no leak and no unbounded allocation from any
 * input (libFuzzer's -rss_limit_mb and ASan).
 */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>

#include "kms/h2.h"
#include "kms/pool.h"
#include "tests/kms/mock-backend.h"

static MockKek mk = { .st = { .current_version = 2, .state = 1, .recoverable = true } };
static const KmsBackend be = { mock_wrap, mock_unwrap, mock_key_state, mock_strerror, &mk };
static const KmsService svc = { .key = "fuzz", .backend = &be };

#define MAXJ 256
static KmsJob *jobs[MAXJ];
static int njobs;

static void submit(void *ud, KmsJob *j) {
        (void) ud;
        if (njobs < MAXJ)
                jobs[njobs++] = j;
        else
                kms_job_free(j);  /* cannot happen: at most 32 streams */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        static const uint8_t preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
        KmsServerHooks hooks = { submit, NULL, NULL };
        KmsServer *s = NULL;
        KmsConn *c = NULL;

        (void) secret_heap_init(1u << 20);  /* once; later calls find it set up */
        if (size < 1 || kms_server_new(NULL, &hooks, &s) < 0)
                return 0;
        if (kms_conn_new(s, -1, &c) < 0) {
                kms_server_free(s);
                return 0;
        }
        size_t split = size > 1 ? data[0] % size : 0;
        njobs = 0;
        if (kms_conn_feed(c, preface, sizeof(preface) - 1) == 0 && kms_conn_feed(c, data + 1, split ? split - 1 : 0) == 0)
                (void) kms_conn_feed(c, data + (split ? split : 1), size - (split ? split : 1));
        (void) kms_conn_flush(c);
        /* half of the jobs answer, the rest are detached by the expiry or the close */
        for (int i = 0; i < njobs; i += 2) {
                kms_job_run(&svc, jobs[i]);
                kms_server_complete(s, jobs[i]);
                jobs[i] = NULL;
        }
        (void) kms_conn_flush(c);
        kms_server_expire(s, kms_now_ms() + 1000000000ull);
        (void) kms_conn_flush(c);
        kms_server_drain(s);
        (void) kms_conn_flush(c);
        kms_server_free(s);
        for (int i = 1; i < njobs; i += 2)
                kms_job_free(jobs[i]);
        return 0;
}
