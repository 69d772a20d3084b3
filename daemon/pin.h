/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Reading the token PIN. The PIN comes only from a file (never argv or the
 * environment, which other local users can read through /proc). The file must
 * be a regular file owned by root or by kekd's user, with no access for group
 * or others (0400 or 0600): anything else is refused with a message naming the
 * cause. The PIN lands directly in a Secret.
 */
#pragma once

#include "common/secret.h"

#define PIN_MAX_SIZE 256u

/* On failure *ret_error (if given) is a static description; never contains the PIN. */
int pin_read(const char *path, Secret **ret, const char **ret_error);

/*
 * The PIN as a systemd credential, dir/name (LoadCredential=): the same
 * rules, except that group read bits that are only the mask of an ACL
 * granting kekd's own user read access are accepted. Returns 1 with the
 * PIN, 0 when there is no such credential, -errno on failure.
 */
int pin_read_credential(const char *dir, const char *name, Secret **ret, const char **ret_error);
