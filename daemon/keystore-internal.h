/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * What keystore.c (index, lifecycle, maintenance), keystore-records.c (the
 * records in the token), keystore-index.c (building the index from the
 * token) and keystore-data.c (the data plane) share; nothing outside those
 * files includes this. The
 * index is touched only by the thread that owns the keystore: the data plane
 * hands HSM work to other threads as CryptoOps that carry copies (handles,
 * IVs, AAD), never pointers into the index.
 */
#pragma once

#include "daemon/keystore.h"

#define APP_KEYS "kekd"
#define LEASE_MAX (1u << 20)

struct Keystore {
        Hsm *hsm;
        Key **keys;
        size_t n_keys;
        uint64_t generation;          /* hsm_generation() the index was built at */
        uint64_t epoch;               /* moves whenever a Key in the index is replaced or freed (KeyLookup) */
        uint64_t lookups;             /* keystore_lookups() */
        uint64_t last_load_mono_usec;
        uint64_t index_read_mono_usec; /* when the reading the index was built from began */
        uint64_t last_usage_flush_mono_usec;
        Vault vault;
        bool reload_needed;           /* a write's outcome is unknown: re-read the token before answering */
        bool allow_unrecoverable;
        char owner[OWNER_MAX];
        KeyChangeFn on_change;
        void *on_change_userdata;
        char (*dup_names)[KEY_NAME_MAX + 1]; /* names with more than one record object, as the last load found them */
        size_t n_dup_names;
};

/* --- the key records in the token (keystore-records.c) --- */
/* What record_contested() found besides our record; >0: something of generation >= ours. */
enum {
        CONTEST_NONE = 0,     /* no other record of generation >= ours */
        CONTEST_RIVAL = 1,    /* another writer's record, not built on ours, is as new or newer */
        CONTEST_INCLUDED = 2, /* the newest records were all built on ours: our change is in them */
        CONTEST_UNKNOWN = 3,  /* cannot tell whether the newest records hold our change */
};
/* The freshest readable record of name in *ret; all its record handles in *ret_old. -KEKERR_UNKNOWN_KEY if none. */
int records_fetch(Keystore *ks, const char *name, Key **ret, HsmObject **ret_old, size_t *ret_n_old);
/* A fresh random nonce for a record write (never 0). */
uint64_t writer_nonce(void);
/* Whether another kekd wrote a record of name of generation >= gen after ours (nonce mine): CONTEST_*. */
int record_contested(Keystore *ks, const char *name, uint64_t mine, uint64_t gen, HsmObject *ret_mine,
                     uint64_t *ret_handle_gen);
/* Writes k as the next generation and destroys old (listed at old_gen): 0, -EAGAIN (re-apply), or an error. */
int record_write(Keystore *ks, Key *k, const HsmObject *old, size_t n_old, uint64_t old_gen);

/* Changes one key: fresh read, fn, write generation+1, index (see keystore.c). */
typedef int (*MutateFn)(Keystore *ks, Key *k, void *userdata);
int key_mutate(Keystore *ks, const char *name, MutateFn fn, void *userdata, const Key **ret);

Key *index_get(Keystore *ks, const char *name);
/* Position of name in the sorted keys (or where it would go), *found whether it is there. */
size_t index_pos(Key *const *keys, size_t n, const char *name, bool *found);
void keys_free(Key **keys, size_t n);
/* Tells the change callback (watchers) that name went from old to new (either may be NULL). */
void notify_change(Keystore *ks, const char *name, const Key *old, const Key *new);
/* Takes this kekd's unflushed usage and leases from old into k (never handles). */
void carry_runtime(Key *k, const Key *old);
KeyVersion *key_version(Key *k, uint32_t version);
uint64_t lease_size(const Key *k);
/* The key, re-reading the token if it is stale or the name is unknown (another kekd may have created it). */
int find_mutable(Keystore *ks, const char *name, Key **ret);
/* The key found (when still usable, see KeyLookup), else find_mutable(name). */
int keystore_found_key(Keystore *ks, const KeyLookup *found, const char *name, Key **ret);
