/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The one type that holds secret bytes (PINs, plaintext AEKs). Its storage
 * comes from OpenSSL's secure heap, which is mlock'd, marked MADV_DONTDUMP and
 * guarded by inaccessible pages; secret_free() cleanses before releasing.
 * Nothing else in the code base may keep a copy of secret bytes beyond the
 * lifetime of a request, and no secret is ever formatted into a log line or an
 * error string.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/macro.h"

typedef struct Secret {
        size_t len;       /* bytes of secret visible to the user */
        size_t capacity;  /* bytes allocated, cleansed on free */
        uint8_t *data;
} Secret;

/*
 * Sets up the secure heap (idempotent). Returns 1 when memory is locked, 0 when
 * the heap works but mlock() was refused (RLIMIT_MEMLOCK), -errno on failure.
 */
int secret_heap_init(size_t heap_size);

/* New zeroed secret of len bytes (len > 0). */
int secret_new(size_t len, Secret **ret);
/* New secret holding a copy of buf; the caller cleanses its own copy. */
int secret_new_copy(const void *buf, size_t len, Secret **ret);
/* Shrinks the visible length (e.g. after reading a PIN of unknown size). */
void secret_truncate(Secret *s, size_t len);
Secret *secret_free(Secret *s);
DEFINE_TRIVIAL_CLEANUP_FUNC(Secret, secret_free);
#define _cleanup_secret_ _cleanup_(secret_freep)

/* Overwrites memory in a way the compiler may not elide. */
void secret_cleanse(void *p, size_t len);

/*
 * SecretArena: many small secrets (cached AEKs) without one mmap each and
 * without the process-wide OpenSSL secure heap, which a library must not
 * claim. Fixed-size slots in 64 KiB chunks that are mmap'd, MADV_DONTDUMP,
 * mlock'd when RLIMIT_MEMLOCK allows, cleansed when a slot is freed and when
 * the arena goes. Not thread-safe: callers serialise.
 */
#define SECRET_ARENA_SLOT 64u

typedef struct SecretArena SecretArena;

int secret_arena_new(SecretArena **ret);
SecretArena *secret_arena_free(SecretArena *a);
/* A zeroed slot of SECRET_ARENA_SLOT bytes, or NULL. */
void *secret_arena_alloc(SecretArena *a);
void secret_arena_release(SecretArena *a, void *slot);
/* Whether every chunk so far could be locked in RAM. */
bool secret_arena_locked(const SecretArena *a);

/*
 * Clears what handling a secret leaves outside our buffers: the stack below
 * the caller (frames of memcpy, protobuf-c unpacking and friends) and, on
 * x86-64, the vector registers that libc's memcpy moved the bytes through,
 * which a core dump would otherwise contain. Call after a secret was copied.
 */
void secret_scrub_cpu_state(void);
