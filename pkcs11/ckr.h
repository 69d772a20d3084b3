/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * PKCS#11 return values by name and by class, for pkcs11/hsm.c (and its unit
 * test). Private to pkcs11/: nothing outside it sees a CK_RV.
 */
#pragma once

#include <stdbool.h>

#include <p11-kit/pkcs11.h>

/*
 * The constant's name, "CKR_MECHANISM_INVALID"; "CKR_VENDOR_DEFINED" for a
 * vendor's code and "CKR_UNKNOWN" for any other value not in PKCS#11 3.0.
 * Static, one pointer per name.
 */
const char *ckr_name(CK_RV rv);

/*
 * Whether rv is the token refusing what was asked of it (a template, an
 * attribute, a mechanism or a function it does not implement or allow),
 * an answer that asking again will not change.
 */
bool ckr_is_refusal(CK_RV rv);
