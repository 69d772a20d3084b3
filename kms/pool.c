/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Worker pool (see pool.h). One mutex guards both lists; workers wait on a
 * condition variable. A job whose deadline passed while it queued is
 * answered DEADLINE_EXCEEDED without reaching kekd.
 */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "common/macro.h"
#include "kms/pool.h"

struct KmsPool {
        const KmsService *svc;
        pthread_mutex_t lock;
        pthread_cond_t cond;
        KmsJob *queue, **queue_tail;
        KmsJob *done;
        bool stop;
        int efd;
        unsigned n;
        pthread_t *threads;
};

void kms_job_run(const KmsService *svc, KmsJob *j) {
        if (j->deadline_ms && kms_now_ms() >= j->deadline_ms) {
                j->reply.status = GRPC_DEADLINE_EXCEEDED;
                snprintf(j->reply.message, sizeof(j->reply.message), "deadline exceeded while queued");
                return;
        }
        if (kms_service_call(svc, j->method, j->req, j->len, &j->reply) < 0) {
                kms_reply_done(&j->reply);
                j->reply.status = GRPC_RESOURCE_EXHAUSTED;
                snprintf(j->reply.message, sizeof(j->reply.message), "out of memory");
        }
        /* the answer came too late for the caller: it must not look like a success to anyone counting */
        if (j->deadline_ms && kms_now_ms() > j->deadline_ms) {
                kms_reply_done(&j->reply);
                j->reply.status = GRPC_DEADLINE_EXCEEDED;
                snprintf(j->reply.message, sizeof(j->reply.message), "deadline exceeded while kekd answered");
        }
}

static void *worker(void *arg) {
        KmsPool *p = arg;

        pthread_mutex_lock(&p->lock);
        for (;;) {
                while (!p->queue && !p->stop)
                        pthread_cond_wait(&p->cond, &p->lock);
                if (p->stop)
                        break;
                KmsJob *j = p->queue;
                p->queue = j->next;
                if (!p->queue)
                        p->queue_tail = &p->queue;
                pthread_mutex_unlock(&p->lock);

                kms_job_run(p->svc, j);

                pthread_mutex_lock(&p->lock);
                j->next = p->done;
                p->done = j;
                uint64_t one = 1;
                (void) !write(p->efd, &one, sizeof(one));
        }
        pthread_mutex_unlock(&p->lock);
        return NULL;
}

int kms_pool_new(unsigned threads, const KmsService *svc, KmsPool **ret) {
        KmsPool *p = calloc(1, sizeof(*p));
        if (!p)
                return -ENOMEM;
        p->svc = svc;
        p->queue_tail = &p->queue;
        pthread_mutex_init(&p->lock, NULL);
        pthread_cond_init(&p->cond, NULL);
        p->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        p->threads = calloc(threads, sizeof(pthread_t));
        if (p->efd < 0 || !p->threads) {
                kms_pool_free(p);
                return -ENOMEM;
        }
        for (; p->n < threads; p->n++)
                if (pthread_create(&p->threads[p->n], NULL, worker, p) != 0) {
                        kms_pool_free(p);
                        return -EAGAIN;
                }
        *ret = p;
        return 0;
}

static void free_list(KmsJob *j) {
        while (j) {
                KmsJob *next = j->next;
                kms_job_free(j);
                j = next;
        }
}

KmsPool *kms_pool_free(KmsPool *p) {
        if (!p)
                return NULL;
        pthread_mutex_lock(&p->lock);
        p->stop = true;
        pthread_cond_broadcast(&p->cond);
        pthread_mutex_unlock(&p->lock);
        for (unsigned i = 0; i < p->n; i++)
                pthread_join(p->threads[i], NULL);
        free_list(p->queue);
        free_list(p->done);
        free(p->threads);
        safe_close(p->efd);
        pthread_cond_destroy(&p->cond);
        pthread_mutex_destroy(&p->lock);
        free(p);
        return NULL;
}

void kms_pool_submit(KmsPool *p, KmsJob *job) {
        pthread_mutex_lock(&p->lock);
        job->next = NULL;
        *p->queue_tail = job;
        p->queue_tail = &job->next;
        pthread_cond_signal(&p->cond);
        pthread_mutex_unlock(&p->lock);
}

int kms_pool_fd(const KmsPool *p) {
        return p->efd;
}

KmsJob *kms_pool_take_done(KmsPool *p) {
        uint64_t v;
        KmsJob *l;

        (void) !read(p->efd, &v, sizeof(v));
        pthread_mutex_lock(&p->lock);
        l = TAKE_PTR(p->done);
        pthread_mutex_unlock(&p->lock);
        return l;
}
