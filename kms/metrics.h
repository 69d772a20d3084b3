/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The plugin's metrics in the Prometheus textfile format kekd uses
 * (kekd.8, METRICS): calls by method and gRPC status, a latency histogram
 * per method, connections and calls in flight. Updated on the event loop's
 * thread only, so no locking.
 */
#pragma once

#include <stdint.h>

#include "kms/grpc.h"
#include "kms/service.h"

typedef struct KmsMetrics KmsMetrics;

int kms_metrics_new(KmsMetrics **ret);
KmsMetrics *kms_metrics_free(KmsMetrics *m);
void kms_metrics_observe(KmsMetrics *m, KmsMethod method, GrpcStatus s, uint64_t usec);
/* Writes the textfile (a temporary file renamed over path). */
int kms_metrics_write(const KmsMetrics *m, const char *path, unsigned conns, unsigned in_flight);
