/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Fork-join over HSM sessions (see cryptopool.h). Invariants:
 *  - A worker touches a run's items only between taking the run (under the
 *    lock, active++) and reporting back (active--); crypto_pool_run() returns
 *    only when every item is done and no worker is still in the run, so items
 *    may live on the caller's stack or be freed right after.
 *  - Items are claimed one at a time through an atomic counter: a slow HSM
 *    call on one session does not hold up items the others could take.
 *  - Workers block every signal: kekd takes its signals through sd-event's
 *    signalfd, which needs them blocked in every thread.
 */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#include "daemon/cryptopool.h"

typedef struct Worker {
        CryptoPool *pool;
        Hsm *hsm;
        pthread_t thread;
        bool started;
} Worker;

struct CryptoPool {
        Hsm *main;
        Worker *workers;
        unsigned n_workers;

        pthread_mutex_t lock;
        pthread_cond_t wake;          /* a run started, or stop */
        pthread_cond_t idle;          /* the last item finished or a worker left the run */
        uint64_t run;                 /* number of the current (or last) run */
        bool running;
        bool stop;
        CryptoPoolFn fn;
        uint8_t *items;
        size_t stride, n;
        size_t next;                  /* next item to claim (atomic) */
        size_t done;                  /* items finished in this run */
        unsigned active;              /* workers inside this run */
};

/* Claims and runs items until none are left; returns how many it ran. */
static size_t work(CryptoPool *p, Hsm *h, CryptoPoolFn fn, uint8_t *items, size_t stride, size_t n) {
        size_t did = 0;

        for (;;) {
                size_t i;

                /* A session that is down (reopen backoff) would fail every item it took in
                 * microseconds and so take most of them: leave them to the sessions that work. */
                if (h != p->main && !hsm_is_open(h))
                        return did;
                i = __atomic_fetch_add(&p->next, 1, __ATOMIC_RELAXED);
                if (i >= n)
                        return did;
                fn(h, items + i * stride);
                did++;
        }
}

static void *worker_main(void *userdata) {
        Worker *w = userdata;
        CryptoPool *p = w->pool;
        uint64_t seen = 0;

        pthread_mutex_lock(&p->lock);
        for (;;) {
                CryptoPoolFn fn;
                uint8_t *items;
                size_t stride, n, did;

                while (!p->stop && (!p->running || p->run == seen))
                        pthread_cond_wait(&p->wake, &p->lock);
                if (p->stop)
                        break;
                seen = p->run;
                fn = p->fn;
                items = p->items;
                stride = p->stride;
                n = p->n;
                p->active++;
                pthread_mutex_unlock(&p->lock);

                did = work(p, w->hsm, fn, items, stride, n);

                pthread_mutex_lock(&p->lock);
                p->done += did;
                p->active--;
                if (p->done == p->n || p->active == 0)
                        pthread_cond_signal(&p->idle);
        }
        pthread_mutex_unlock(&p->lock);
        return NULL;
}

int crypto_pool_new(Hsm *main, unsigned sessions, CryptoPool **ret, const char **ret_error) {
        _cleanup_(crypto_pool_freep) CryptoPool *p = NULL;
        sigset_t all, saved;
        int r = 0;

        if (!main || sessions < 1 || sessions > CRYPTO_POOL_SESSIONS_MAX)
                return -EINVAL;
        p = calloc(1, sizeof(*p));
        if (!p)
                return -ENOMEM;
        p->main = main;
        pthread_mutex_init(&p->lock, NULL);
        pthread_cond_init(&p->wake, NULL);
        pthread_cond_init(&p->idle, NULL);
        if (sessions == 1) {
                *ret = TAKE_PTR(p);
                return 0;
        }
        p->workers = calloc(sessions - 1, sizeof(*p->workers));
        if (!p->workers)
                return -ENOMEM;
        for (unsigned i = 0; i < sessions - 1; i++) {
                Worker *w = &p->workers[p->n_workers];

                r = hsm_open_session(main, &w->hsm, ret_error);
                if (r < 0)
                        return r;
                w->pool = p;
                p->n_workers++;
        }
        sigfillset(&all);
        pthread_sigmask(SIG_BLOCK, &all, &saved);
        for (unsigned i = 0; i < p->n_workers; i++) {
                r = -pthread_create(&p->workers[i].thread, NULL, worker_main, &p->workers[i]);
                if (r < 0)
                        break;
                p->workers[i].started = true;
        }
        pthread_sigmask(SIG_SETMASK, &saved, NULL);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(p);
        return 0;
}

CryptoPool *crypto_pool_free(CryptoPool *p) {
        if (!p)
                return NULL;
        pthread_mutex_lock(&p->lock);
        p->stop = true;
        pthread_cond_broadcast(&p->wake);
        pthread_mutex_unlock(&p->lock);
        for (unsigned i = 0; i < p->n_workers; i++) {
                if (p->workers[i].started)
                        pthread_join(p->workers[i].thread, NULL);
                hsm_free(p->workers[i].hsm);
        }
        free(p->workers);
        pthread_cond_destroy(&p->idle);
        pthread_cond_destroy(&p->wake);
        pthread_mutex_destroy(&p->lock);
        free(p);
        return NULL;
}

unsigned crypto_pool_sessions(const CryptoPool *p) {
        return p ? p->n_workers + 1 : 1;
}

void crypto_pool_run(CryptoPool *p, CryptoPoolFn fn, void *items, size_t stride, size_t n) {
        size_t did;

        if (n == 0)
                return;
        if (n == 1 || p->n_workers == 0) {
                /* Nothing to share: waking a worker would cost more than the call. */
                for (size_t i = 0; i < n; i++)
                        fn(p->main, (uint8_t *) items + i * stride);
                return;
        }
        pthread_mutex_lock(&p->lock);
        p->fn = fn;
        p->items = items;
        p->stride = stride;
        p->n = n;
        p->next = 0;
        p->done = 0;
        p->run++;
        p->running = true;
        pthread_cond_broadcast(&p->wake);
        pthread_mutex_unlock(&p->lock);

        did = work(p, p->main, fn, items, stride, n);

        pthread_mutex_lock(&p->lock);
        p->done += did;
        while (p->done < p->n || p->active > 0)
                pthread_cond_wait(&p->idle, &p->lock);
        /* A worker that wakes only now must not enter this run: its items are the caller's again. */
        p->running = false;
        p->fn = NULL;
        p->items = NULL;
        p->n = 0;
        pthread_mutex_unlock(&p->lock);
}

void crypto_pool_ready(CryptoPool *p) {
        for (unsigned i = 0; p && i < p->n_workers; i++)
                (void) hsm_ready(p->workers[i].hsm);
}

void crypto_pool_stats(const CryptoPool *p, HsmStats *acc) {
        for (unsigned i = 0; p && i < p->n_workers; i++)
                hsm_stats_merge(p->workers[i].hsm, acc);
}
