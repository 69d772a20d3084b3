/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * kekctl's output of kekd's answers: human tables by default, JSON (json-c,
 * pretty-printed) with --json. These formats are an interface scripts
 * parse: change them only together with kekctl(8).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <json-c/json.h>

#include "proto/kek.pb-c.h"

const char *state_name(Kek__KeyState s);
/* "2026-01-02 03:04:05 UTC", or "-" for 0 */
void format_time(uint64_t usec, char *buf, size_t size);
json_object *grants_json(Kek__Grant *const *grants, size_t n);
void print_grants(Kek__Grant *const *grants, size_t n);
json_object *key_info_json(const Kek__KeyInfo *k);
/* Prints o and drops the reference. */
void print_json(json_object *o);
void print_key_info(const Kek__KeyInfo *k);
/* The pending requests, or with submitted the one just submitted (n is 1). */
void print_approvals(Kek__ApprovalInfo *const *a, size_t n, bool submitted);
