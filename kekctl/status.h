/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * "kekctl status": kekd's state and metrics, as a human summary with a
 * per-operation table, as JSON, or as the raw Prometheus text kekd writes to
 * its metrics file. The figures are parsed from that text, so the command
 * and the textfile can never disagree.
 */
#pragma once

#include <stdbool.h>

#include "proto/kek.pb-c.h"

typedef enum StatusFormat {
        STATUS_HUMAN,
        STATUS_JSON,
        STATUS_PROMETHEUS,
} StatusFormat;

/* Prints st to stdout. Returns 0, or -ENOMEM. */
int status_print(const Kek__StatusResponse *st, StatusFormat format);
