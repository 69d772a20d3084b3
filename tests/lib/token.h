/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A fresh SoftHSM2 token in a private temporary directory for one test
 * process: writes a softhsm2.conf, points SOFTHSM2_CONF at it, initialises a
 * token with softhsm2-util, and removes the directory again in token_done().
 */
#pragma once

#include <limits.h>

typedef struct TestToken {
        char dir[PATH_MAX - 64];  /* room for the file names below */
        char conf[PATH_MAX];
        char pin_file[PATH_MAX];
        char label[32];
        char uri[128];
        const char *pin;
        const char *module;
} TestToken;

/* 0 on success; on failure prints a diagnostic and returns -1. */
int token_setup(TestToken *t, const char *label);
void token_done(TestToken *t);
