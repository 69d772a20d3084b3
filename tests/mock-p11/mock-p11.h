/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Test hooks of the mock PKCS#11 module (mock-p11.c) besides C_GetFunctionList.
 * A test that loaded the module (through p11-kit, as kekd does) reaches them
 * with dlopen() of the same path and dlsym(); the typedefs name the pointers.
 * The hooks take the module's lock, so they may be called between any two
 * PKCS#11 calls, but never from inside one.
 */
#pragma once

#include <stddef.h>

/* Remembers the token objects, the next object handle and the random generator's position. */
void mock_p11_snapshot(void);
typedef void (*mock_p11_snapshot_t)(void);

/*
 * Puts the token back to the last snapshot (to empty without one): token and
 * session objects, handle counter and random generator. Sessions and the login
 * state stay; active find and crypto operations are cancelled.
 */
void mock_p11_reset(void);
typedef void (*mock_p11_reset_t)(void);

/* Drops every object and the snapshot (for a clean exit under LeakSanitizer). */
void mock_p11_clear(void);
typedef void (*mock_p11_clear_t)(void);

/* Number of objects (token and session) in the store. */
size_t mock_p11_object_count(void);
typedef size_t (*mock_p11_object_count_t)(void);
