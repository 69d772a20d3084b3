/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The vault policy: soft-delete retention, purge protection and dual
 * control, one private CKO_DATA object in the token (VaultRecord in
 * proto/kek.proto, CKA_APPLICATION "kekd-vault", CKA_LABEL "vault"), written
 * copy-on-write like key records: generation N+1 is created before N is
 * destroyed and readers take the highest readable generation.
 *
 * Invariants: purge protection and the backup mode trusted-wrap are
 * one-way, and sticky in this process (once seen on, a listing that raced
 * another node's rewrite cannot switch them off here); with purge protection
 * on, retention can only grow. trusted-wrap is one-way because a key made
 * wrappable stays so (CKA_WRAP_WITH_TRUSTED and CKA_EXTRACTABLE cannot be
 * taken back from the versions already made): going back to none would only
 * hide that those versions can leave the token (docs/backup.md). A record once seen cannot
 * silently vanish: a listing without one is a transient HSM failure.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "pkcs11/hsm.h"

#define RETENTION_DAYS_MIN 7u
#define RETENTION_DAYS_MAX 90u
#define RETENTION_DAYS_DEFAULT 90u

/* Dual-control bits (DualControl in proto/kek.proto). */
enum {
        DUAL_CONTROL_PURGE = 1u << 0,
        DUAL_CONTROL_DELETE = 1u << 1,
        DUAL_CONTROL_LAST_GRANT = 1u << 2,
        DUAL_CONTROL_VAULT_POLICY = 1u << 3,
        DUAL_CONTROL_BACKUP = 1u << 4,
        DUAL_CONTROL_RESTORE = 1u << 5,
        DUAL_CONTROL_ALL = (1u << 6) - 1,
};
#define APPROVAL_WINDOW_MIN 60u
#define APPROVAL_WINDOW_MAX (7u * 24 * 3600)
#define APPROVAL_WINDOW_DEFAULT 3600u

typedef struct VaultPolicy {
        uint32_t retention_days;
        bool purge_protection;
        uint32_t dual_control;          /* DUAL_CONTROL_* bits */
        uint32_t approval_window_sec;
        bool trusted_wrap;              /* backup mode: new versions wrappable under SO-trusted keys only */
} VaultPolicy;

typedef struct VaultChange {
        uint32_t retention_days;        /* 0: unchanged */
        int purge_protection;           /* -1 unchanged, 1 on, 0 off (refused once on) */
        bool set_dual_control;
        uint32_t dual_control;
        uint32_t approval_window_sec;   /* 0: unchanged */
        int trusted_wrap;               /* -1 unchanged, 1 on, 0 off (refused once on) */
} VaultChange;

/*
 * Whether applying c would weaken the policy cur (shorter retention, fewer dual-control bits, a longer window,
 * or trusted-wrap switched on: new versions may then leave the token, wrapped under an SO-trusted key).
 */
bool vault_change_weakens(const VaultPolicy *cur, const VaultChange *c);

typedef struct Vault {
        VaultPolicy policy;
        uint64_t generation;            /* 0: no record seen yet */
        bool purge_protection_seen;
        bool trusted_wrap_seen;
} Vault;

/* The CKA_APPLICATION of vault records (keystore_load lists them with the key records in one scan). */
#define VAULT_APP "kekd-vault"

/* Reads the policy from the token into vault (defaults when there is no record yet). */
int vault_load(Vault *vault, Hsm *hsm);
/* The same from vault records already read (d: data objects of VAULT_APP). */
int vault_apply(Vault *vault, const HsmDataObject *d, size_t n);
/* Applies c: -KEKERR_INVALID_ARGUMENT for out-of-range values, -KEKERR_PERMISSION_DENIED for a forbidden weakening. */
int vault_set(Vault *vault, Hsm *hsm, const VaultChange *c);
