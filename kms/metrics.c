/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Metrics of kek-kms-plugin (see metrics.h). Buckets run from 100 us to 10 s:
 * a call is one kekd round trip, bounded by libkek's request timeout.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "common/macro.h"
#include "kms/metrics.h"

static const uint64_t bucket_usec[] = { 100, 250, 500, 1000, 2500, 5000, 10000, 25000, 100000, 250000, 1000000, 10000000 };
#define N_BUCKETS ELEMENTSOF(bucket_usec)
/* unknown methods count under their own label */
#define N_METHODS (_KMS_METHOD_MAX + 1)

struct KmsMetrics {
        uint64_t calls[N_METHODS][_GRPC_STATUS_MAX];
        uint64_t buckets[N_METHODS][N_BUCKETS];
        uint64_t count[N_METHODS];
        uint64_t sum_usec[N_METHODS];
};

static unsigned method_index(KmsMethod m) {
        return m >= 0 && m < _KMS_METHOD_MAX ? (unsigned) m : _KMS_METHOD_MAX;
}

int kms_metrics_new(KmsMetrics **ret) {
        KmsMetrics *m = calloc(1, sizeof(*m));
        if (!m)
                return -ENOMEM;
        *ret = m;
        return 0;
}

KmsMetrics *kms_metrics_free(KmsMetrics *m) {
        free(m);
        return NULL;
}

void kms_metrics_observe(KmsMetrics *m, KmsMethod method, GrpcStatus s, uint64_t usec) {
        unsigned i = method_index(method);

        if ((unsigned) s >= _GRPC_STATUS_MAX)
                s = GRPC_UNKNOWN;
        m->calls[i][s]++;
        m->count[i]++;
        m->sum_usec[i] += usec;
        for (size_t b = 0; b < N_BUCKETS; b++)
                if (usec <= bucket_usec[b]) {
                        m->buckets[i][b]++;
                        break;
                }
}

static const char *label(unsigned i) {
        return i < _KMS_METHOD_MAX ? kms_method_name((KmsMethod) i) : "unknown";
}

int kms_metrics_write(const KmsMetrics *m, const char *path, unsigned conns, unsigned in_flight) {
        char tmp[4096];
        FILE *f;
        int r = 0;

        if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int) sizeof(tmp))
                return -ENAMETOOLONG;
        f = fopen(tmp, "we");
        if (!f)
                return -errno;
        fputs("# HELP kek_kms_requests_total KMS v2 calls answered, by method and gRPC status.\n"
              "# TYPE kek_kms_requests_total counter\n", f);
        for (unsigned i = 0; i < N_METHODS; i++)
                for (unsigned s = 0; s < _GRPC_STATUS_MAX; s++)
                        if (m->calls[i][s])
                                fprintf(f, "kek_kms_requests_total{method=\"%s\",code=\"%s\"} %llu\n", label(i),
                                        grpc_status_name((GrpcStatus) s), (unsigned long long) m->calls[i][s]);
        fputs("# HELP kek_kms_request_duration_seconds Time from a call's headers to its answer.\n"
              "# TYPE kek_kms_request_duration_seconds histogram\n", f);
        for (unsigned i = 0; i < N_METHODS; i++) {
                uint64_t cum = 0;
                if (!m->count[i])
                        continue;
                for (size_t b = 0; b < N_BUCKETS; b++) {
                        cum += m->buckets[i][b];
                        fprintf(f, "kek_kms_request_duration_seconds_bucket{method=\"%s\",le=\"%g\"} %llu\n", label(i),
                                (double) bucket_usec[b] / 1e6, (unsigned long long) cum);
                }
                fprintf(f, "kek_kms_request_duration_seconds_bucket{method=\"%s\",le=\"+Inf\"} %llu\n", label(i),
                        (unsigned long long) m->count[i]);
                fprintf(f, "kek_kms_request_duration_seconds_sum{method=\"%s\"} %.6f\n", label(i),
                        (double) m->sum_usec[i] / 1e6);
                fprintf(f, "kek_kms_request_duration_seconds_count{method=\"%s\"} %llu\n", label(i),
                        (unsigned long long) m->count[i]);
        }
        fprintf(f, "# HELP kek_kms_connections Open connections.\n# TYPE kek_kms_connections gauge\n"
                   "kek_kms_connections %u\n", conns);
        fprintf(f, "# HELP kek_kms_in_flight Calls waiting for kekd.\n# TYPE kek_kms_in_flight gauge\n"
                   "kek_kms_in_flight %u\n", in_flight);
        if (ferror(f))
                r = -EIO;
        if (fclose(f) != 0 && r == 0)
                r = -errno;
        if (r == 0 && rename(tmp, path) < 0)
                r = -errno;
        if (r < 0)
                (void) unlink(tmp);
        return r;
}
