/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * `kekctl check` across the tokens of one kekd (issue 17 items 3 and 4,
 * docs/tokens-ha.md): every further token ([hsm.NAME]) is compared with the
 * keystore's index of the preferred token, and every difference is a
 * problem line, so a token that would not hold a key if it had to serve is
 * never silently taken for a copy: a further token that cannot be opened,
 * a key record it lacks, a present version whose key object it lacks (with
 * why it was not copied: never extractable, or no replication yet), and a
 * key object of a key the preferred token does not know; and a further
 * token that its capability probe refused, or that serves only by its
 * allow_unsafe_token (tokenset_capability_problem(), as for [hsm]).
 * Runs on the loop, like the rest of check, with an Hsm of its own per token;
 * so a further token whose health probe is overdue (tokenset_probe_overdue():
 * it may hang) is not opened but named as not checked, and check fails.
 */
#pragma once

#include "daemon/keystore.h"
#include "daemon/tokenset.h"

/* Appends to rep; counts nothing else. 0, or -ENOMEM (a token's failure is a problem line, not an error). */
int tokens_check(Keystore *ks, TokenSet *ts, CheckReport *rep);
