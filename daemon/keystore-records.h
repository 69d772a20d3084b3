/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A key's objects in the token (see keystore.h for the invariants): reading
 * the freshest record of a key, writing the next generation with the contest
 * rule that keeps several kekd on one token from overwriting each other's
 * changes or applying one twice, and destroying a key's objects (a failed
 * operation's version, a purge, superseded records: a version's MAC key goes
 * with it, through keystore-profile.h). Depends only on the HSM, the record
 * format (daemon/record.h) and the profiles' objects; the keystore
 * (keystore.c) decides what is written and keeps the index.
 *
 * A write whose outcome cannot be known sets *reload_needed (a flag the
 * caller keeps, never cleared here): what the keystore serves must be read
 * from the token again before its next answer.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pkcs11/hsm.h"
#include "daemon/record.h"

/* The application label of key records (CKA_APPLICATION). */
#define RECORDS_APP "kekd"

/* What records_contested() found besides our record; >0: something of generation >= ours. */
enum {
        RECORDS_CONTEST_NONE = 0,     /* no other record of generation >= ours */
        RECORDS_CONTEST_RIVAL = 1,    /* another writer's record, not built on ours, is as new or newer */
        RECORDS_CONTEST_INCLUDED = 2, /* the newest records were all built on ours: our change is in them */
        RECORDS_CONTEST_UNKNOWN = 3,  /* cannot tell whether the newest records hold our change */
};

/* The freshest readable record of name in *ret; all its record handles in *ret_old (optional). -KEKERR_UNKNOWN_KEY if none. */
int records_fetch(Hsm *hsm, const char *name, Key **ret, HsmObject **ret_old, size_t *ret_n_old);
/* A fresh random nonce for a record write (never 0). */
uint64_t records_writer_nonce(void);
/* Whether another kekd wrote a record of name of generation >= gen after ours (nonce mine): RECORDS_CONTEST_*. */
int records_contested(Hsm *hsm, const char *name, uint64_t mine, uint64_t gen, HsmObject *ret_mine,
                      uint64_t *ret_handle_gen);
/* Writes k as the next generation and destroys old (listed at old_gen): 0, -EAGAIN (re-apply), or an error. */
int records_write(Hsm *hsm, Key *k, const HsmObject *old, size_t n_old, uint64_t old_gen, bool *reload_needed);

/*
 * Destroys every key object (name, version): an unrecorded version, of an
 * operation that failed. Looked up afresh, never by a remembered handle.
 * Returns 0 once none is left, <0 if that cannot be confirmed.
 */
int records_destroy_version(Hsm *hsm, const char *name, uint32_t version);
/* Destroys every key object of name, then its records (a purge's end); idempotent. */
int records_destroy_all(Hsm *hsm, const char *name);
/* Destroys the records of name older than its newest (a crash between a write and its destroy); >0 if it had several readable ones. */
int records_drop_superseded(Hsm *hsm, const char *name);
