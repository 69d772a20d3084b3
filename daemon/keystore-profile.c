/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The mechanism profile of new key versions (pkcs11/hsm.h, docs/profiles.md)
 * and the objects a version of each profile has in the token: its AES key,
 * and for ctr-hmac and cbc-hmac a MAC key with the same label and ID. Invariants:
 *  - A version's profile is chosen once, when it is created, and recorded
 *    with it; what the token offers later, or a changed configuration, never
 *    changes how an existing version encrypts.
 *  - The choice is `[hsm] profile` if pinned, refused when the token does not
 *    offer it; otherwise ("auto") the first of gcm, cbc-hmac, ctr-hmac the
 *    token offers: GCM is one call and the v1 format; CBC-PAD keeps the whole
 *    encryption in the token (no keystream in kekd's memory); CTR needs only
 *    AES-ECB, which even p11-kit 0.24's RPC carries.
 *    gcm-token-iv is used only when pinned: no mechanism information tells a
 *    token that generates GCM IVs from one that takes the caller's.
 *  - Every object of a version is destroyed together (hsm_destroy_version_keys(),
 *    hsm_destroy_label_keys()), so a rolled back or purged version leaves no
 *    MAC key behind.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/kekerr.h"
#include "daemon/keystore-profile.h"
#include "daemon/log.h"

int profile_choose(ProfileChoice *pc, Hsm *hsm, HsmProfile *ret) {
        static const HsmProfile preference[] = { HSM_PROFILE_GCM, HSM_PROFILE_CBC_HMAC, HSM_PROFILE_CTR_HMAC };
        const char *missing = NULL;
        int r;

        if (pc->known) {
                *ret = pc->profile;
                return 0;
        }
        if (pc->pin >= 0) {
                r = hsm_profile_available(hsm, (HsmProfile) pc->pin, &missing);
                if (r < 0)
                        return r;
                if (r == 0) {
                        log_warning("[hsm] profile = %s, but token '%s' does not offer %s: no key version can be created",
                                    hsm_profile_name((HsmProfile) pc->pin), hsm_token_label(hsm), missing);
                        return -KEKERR_UNSUPPORTED;
                }
                pc->profile = (HsmProfile) pc->pin;
        } else {
                size_t i;

                for (i = 0; i < ELEMENTSOF(preference); i++) {
                        r = hsm_profile_available(hsm, preference[i], &missing);
                        if (r < 0)
                                return r;
                        if (r > 0)
                                break;
                }
                if (i == ELEMENTSOF(preference)) {
                        log_warning("Token '%s' offers no mechanism profile kekd can use (gcm needs CKM_AES_GCM, cbc-hmac "
                                    "CKM_AES_CBC_PAD; ctr-hmac needs %s): no key version can be created",
                                    hsm_token_label(hsm), missing);
                        return -KEKERR_UNSUPPORTED;
                }
                pc->profile = preference[i];
                log_info("New key versions use mechanism profile %s", hsm_profile_name(pc->profile));
        }
        pc->known = true;
        *ret = pc->profile;
        return 0;
}

int profile_version_generate(ProfileChoice *pc, Hsm *hsm, const char *name, uint32_t version, bool wrap_trusted,
                             HsmProfile *ret_profile, HsmObject *ret_key, HsmObject *ret_mac) {
        HsmProfile p;
        HsmObject key, mac = 0;
        int r;

        r = profile_choose(pc, hsm, &p);
        if (r < 0)
                return r;
        /*
         * The MAC key first: a version whose AES key exists is taken for one by listings
         * (hsm_list_keys()), so its other half must already be there. A failure leaves
         * whatever was made for the caller's rollback (records_destroy_version()).
         */
        if (hsm_profile_has_mac_key(p)) {
                r = hsm_generate_version_mac_key(hsm, name, version, wrap_trusted, &mac);
                if (r < 0)
                        return r;
        }
        /* Backup mode trusted-wrap (vault.h): both keys wrappable under SO-trusted keys only. */
        r = hsm_generate_version_key(hsm, name, version, wrap_trusted, &key);
        if (r < 0)
                return r;
        *ret_profile = p;
        *ret_key = key;
        *ret_mac = mac;
        return 0;
}

int profile_version_mac_find(Hsm *hsm, const char *name, KeyVersion *v) {
        int r;

        if (!hsm_profile_has_mac_key(v->profile) || v->mac_present)
                return 0;
        r = hsm_find_version_mac_key(hsm, name, v->id, v->restored, &v->mac_handle);
        if (r < 0)
                return r;
        v->mac_present = true;
        return 0;
}

int profile_version_problem(Hsm *hsm, const Key *k, KeyVersion *v, char *why, size_t why_len) {
        HsmKeyAttrs a;
        int r;

        if (!hsm_profile_name(v->profile)) {
                snprintf(why, why_len, "key '%s' version %u has mechanism profile %u, which this kekd does not know",
                         k->name, v->id, (unsigned) v->profile);
                return 1;
        }
        if (!hsm_profile_has_mac_key(v->profile))
                return 0;
        /* Looked up afresh: check reports the token as it is. */
        v->mac_present = false;
        r = profile_version_mac_find(hsm, k->name, v);
        if (r == -ENOENT) {
                snprintf(why, why_len, "key '%s' version %u (%s): its MAC key is missing from the token, so the version is "
                         "missing", k->name, v->id, hsm_profile_name(v->profile));
                return 1;
        }
        if (r == -ENOTUNIQ) {
                snprintf(why, why_len, "key '%s' version %u (%s): more than one MAC key object answers to it, so none is "
                         "used and the version does not serve (one is not kekd's: docs/tokens-ha.md)", k->name, v->id,
                         hsm_profile_name(v->profile));
                return 1;
        }
        if (r < 0)
                return r;
        r = hsm_key_attributes(hsm, v->mac_handle, &a);
        if (r < 0)
                return r;
        if (!(a.sensitive && a.private_ && a.token && !a.value_readable &&
              (v->restored ? !a.always_sensitive && (!a.extractable || a.wrap_with_trusted)
               : v->wrap_with_trusted ? a.always_sensitive && a.wrap_with_trusted
                                      : !a.extractable && a.never_extractable))) {
                snprintf(why, why_len, "key '%s' version %u: its MAC key is not a sensitive, %s token key", k->name,
                         v->id, v->restored ? "restored" : v->wrap_with_trusted ? "trusted-wrap-only" : "never-extractable");
                return 1;
        }
        return 0;
}

int profile_mac_orphans(Hsm *hsm, const Key *(*find)(void *userdata, const char *name),
                        int (*orphan)(void *userdata, const char *name, uint32_t version), void *userdata) {
        _cleanup_free_ HsmKeyRef *refs = NULL;
        size_t n = 0;
        int r;

        r = hsm_list_mac_keys(hsm, &refs, &n);
        if (r < 0)
                return r;
        for (size_t i = 0; i < n; i++) {
                const Key *k = find(userdata, refs[i].label);
                const KeyVersion *v = k ? key_find_version(k, refs[i].version) : NULL;

                if (!k || refs[i].version == k->pending_version || (v && hsm_profile_has_mac_key(v->profile)))
                        continue;
                r = orphan(userdata, refs[i].label, refs[i].version);
                if (r < 0)
                        return r;
        }
        return 0;
}
