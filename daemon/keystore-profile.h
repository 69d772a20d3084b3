/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Mechanism profiles in the keystore (keystore-profile.c): which profile a
 * new key version gets, and the token objects a version of each profile
 * has (its AES key; for ctr-hmac and cbc-hmac also a MAC key under the same
 * label and ID). Below the keystore: it works on the Hsm and a Key it is
 * given, never on the Keystore, like keystore-records.h.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "daemon/record.h"
#include "pkcs11/hsm.h"

/* [hsm] profile and what was chosen from it; PROFILE_CHOICE_AUTO until set. */
typedef struct ProfileChoice {
        int pin;                       /* an HsmProfile, or -1: choose from what the token offers */
        bool known;                    /* profile below is the choice for new versions */
        HsmProfile profile;
} ProfileChoice;
#define PROFILE_CHOICE_AUTO ((ProfileChoice) { .pin = -1 })

/* Which profile a new version gets; kept in pc (a token's mechanisms do not change under it). */
int profile_choose(ProfileChoice *pc, Hsm *hsm, HsmProfile *ret);
/*
 * Generates a new version's objects under the profile new versions get: its
 * AES key and, if the profile has one, its MAC key (*ret_mac 0 otherwise).
 * On failure, what was made is left for the caller's rollback.
 */
int profile_version_generate(ProfileChoice *pc, Hsm *hsm, const char *name, uint32_t version, bool wrap_trusted,
                             HsmProfile *ret_profile, HsmObject *ret_key, HsmObject *ret_mac);
/* Finds v's MAC key if its profile has one and it is not known yet; -ENOENT if the token has none. */
int profile_version_mac_find(Hsm *hsm, const char *name, KeyVersion *v);
/*
 * For check: 1 and a sentence in why if v's profile or MAC key is wrong
 * (unknown profile, MAC key missing or readable), 0 if sound, <0 if the
 * token could not be asked.
 */
int profile_version_problem(Hsm *hsm, const Key *k, KeyVersion *v, char *why, size_t why_len);
/*
 * For check: calls orphan(name, version, userdata) for every MAC key whose
 * version its key's record (found through find) does not name, or names
 * under a profile without one; stops at orphan's first error.
 */
int profile_mac_orphans(Hsm *hsm, const Key *(*find)(void *userdata, const char *name),
                        int (*orphan)(void *userdata, const char *name, uint32_t version), void *userdata);
