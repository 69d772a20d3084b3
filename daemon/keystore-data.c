/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The keystore's data plane: wrap, unwrap and rewrap (see keystore.h for the
 * three steps). Invariants:
 *  - Every wrap takes one unit of its version's lease before the HSM is asked:
 *    a crash over-counts the wrap budget, never under-counts it. A wrap whose
 *    HSM call failed gives its unit back to the lease (its ciphertext never
 *    left kekd); a clean stop gives the unused lease back to the record
 *    (keystore_settle()). A rewrap takes its unit only after its blob
 *    authenticated, so tampered blobs cannot spend a key's budget and force
 *    rotations.
 *  - Each wrap gets a fresh random IV from the kernel, drawn for it alone.
 *  - run() reads only the CryptoOp and calls only its own Hsm, so any number
 *    of them may run at once on different sessions; prepare, targets and
 *    finish are the only steps that touch the index.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sys/random.h>

#include "common/kekerr.h"
#include "daemon/cryptopool.h"
#include "daemon/keystore.h"
#include "daemon/keystore-index.h"
#include "daemon/keystore-profile.h"

/*
 * What an op keeps between its steps (CryptoOp.state): copies, never
 * pointers into the index, so run() may read it on any thread.
 */
typedef struct OpState {
        bool pending;                  /* prepared (or targeted) and not yet run: the next run does its call */
        bool src_ok;                   /* unwrap, rewrap: the blob authenticated (usage counts it) */
        bool gone;                     /* the HSM no longer knew a handle: finish re-reads the token */
        bool src_restored, dst_restored; /* the versions' keys are in the restored form (record.h) */
        uint64_t generation;           /* hsm_generation() the handles below are valid at */
        uint64_t now;
        const uint8_t *ctx;            /* the caller's context, which must outlive the op */
        size_t ctx_len;
        HsmObject src;                 /* unwrap, rewrap */
        HsmObject src_mac;             /* the source version's MAC key, for profiles that have one */
        uint8_t src_aad[BLOB_AAD_MAX];
        size_t src_aad_len;
        char key[KEY_NAME_MAX + 1];    /* wrap, rewrap: the key wrapped under */
        HsmProfile dst_profile;
        HsmObject dst;
        HsmObject dst_mac;
        uint8_t dst_aad[BLOB_AAD_MAX];
        size_t dst_aad_len;
        size_t dst_header_len;
        size_t dst_iv_len;
        const uint8_t *pt;             /* wrap: the caller's plaintext, which must outlive the op */
        size_t pt_len;
} OpState;

_Static_assert(sizeof(OpState) <= sizeof(CryptoOpState), "CRYPTO_OP_STATE_SIZE is too small for OpState");
_Static_assert(_Alignof(OpState) <= _Alignof(CryptoOpState), "CryptoOpState is not aligned for OpState");

/* The only way OpState is reached (the build has -fno-strict-aliasing, configure.ac). */
static OpState *st(CryptoOp *op) {
        return (OpState *) op->state.bytes;
}

/*
 * A fresh random IV (hsm_profile_iv_size(): 12 bytes for gcm, 16 for the
 * HMAC profiles), drawn for the wrap that uses it and for no other: no IV
 * exists in kekd's memory before its wrap, so a restored VM snapshot, a
 * cloned VM or a copied process image holds none that the next wraps would
 * use. getrandom(2) rather than a user-space DRBG: the kernel's CRNG keeps no
 * state in this process and is reseeded when the hypervisor reports a VM
 * fork or restore (vmgenid), which a DRBG's reseed-on-fork does not see.
 * Uniqueness across several kekd on one token, restarts and restores rests
 * on these draws being independent and on the wrap budget, which bounds the
 * wraps of a version across every kekd (leases live in the token) far below
 * the 2^32 random-IV bound of NIST SP 800-38D. -EIO if the kernel fails.
 */
static int iv_new(uint8_t *iv, size_t len) {
        /* Up to 256 bytes, getrandom() neither returns short nor is interrupted once seeded. */
        if (getrandom(iv, len, 0) != (ssize_t) len)
                return -EIO;
        return 0;
}

/* op->version_fault marks a refusal for the version's objects (two answer to it), not the token's failure. */
static int check_usable(Keystore *ks, const Key *k, KeyVersion *v, CryptoOp *op) {
        int r;

        if (k->state == KEY_DELETED)
                return -KEKERR_KEY_DELETED;
        if (k->state == KEY_DISABLED || !v->enabled)
                return -KEKERR_KEY_DISABLED;
        /* Two key objects answer to it (one not kekd's): neither is used until one is gone. */
        if (v->ambiguous) {
                op->version_fault = true;
                return -KEKERR_HSM_UNAVAILABLE;
        }
        if (!v->present) {
                /*
                 * Recorded but not found when the index was built: look again, so a lookup that
                 * failed then is not taken for a missing object. Only a definite "not there" is
                 * UNKNOWN_VERSION (which libkek treats as a revocation); anything else is transient.
                 */
                r = hsm_find_version_key(keystore_hsm(ks), k->name, v->id, v->restored, &v->handle);
                if (r == -ENOENT)
                        return -KEKERR_UNKNOWN_VERSION;
                op->version_fault = r == -ENOTUNIQ;
                if (r < 0)
                        return -KEKERR_HSM_UNAVAILABLE;
                v->present = true;
        }
        /* A newer kekd's profile: this one cannot use the version (its others still serve). */
        if (!hsm_profile_name(v->profile))
                return -KEKERR_UNSUPPORTED;
        /* Its MAC key is half of the version: without it, the version is missing, as above. */
        r = profile_version_mac_find(keystore_hsm(ks), k->name, v);
        if (r == -ENOENT)
                return -KEKERR_UNKNOWN_VERSION;
        op->version_fault = r == -ENOTUNIQ;
        if (r < 0)
                return -KEKERR_HSM_UNAVAILABLE;
        return 0;
}

/*
 * The wrap half of wrap and rewrap: picks the version (0: the current one)
 * of the key found (found, or looked up by name when that is not usable) and
 * lays out header || IV of the new blob in op, taking one unit of the
 * version's lease. Never writes the token: with no lease left it returns
 * KEYSTORE_NEEDS_RENEWAL, and the caller runs keystore_wrap_renew() as a
 * step of its own and prepares again.
 */
static int wrap_target(Keystore *ks, const KeyLookup *found, const char *name, uint32_t version, size_t pt_len,
                       CryptoOp *op) {
        OpState *s = st(op);
        uint8_t header[BLOB_HEADER_MAX];
        _cleanup_free_ uint8_t *blob = NULL;
        KeyVersion *v;
        Key *k;
        int hlen, alen, r;
        size_t len, iv_len, tag_len;

        r = keystore_key(ks, found, name, &k);
        if (r < 0)
                return r;
        v = key_index_version(k, version == 0 ? k->current_version : version);
        if (!v)
                return -KEKERR_UNKNOWN_VERSION;
        r = check_usable(ks, k, v, op);
        if (r < 0)
                return r;
        if (!keystore_allow_unrecoverable(ks) && !keystore_recoverable(ks))
                return -KEKERR_KEY_NOT_RECOVERABLE;
        if (v->lease_left == 0)
                return KEYSTORE_NEEDS_RENEWAL;

        /* The version's profile decides the format byte (authenticated in the header), IV and tag. */
        r = blob_profile_sizes(v->profile, &iv_len, &tag_len);
        if (r < 0)
                return -KEKERR_UNSUPPORTED;
        hlen = blob_header_profile(v->profile, k->name, v->id, header);
        if (hlen < 0)
                return hlen;
        alen = blob_aad(header, (size_t) hlen, s->ctx, s->ctx_len, s->dst_aad);
        if (alen < 0)
                return alen;
        len = (size_t) hlen + iv_len + hsm_profile_ct_size(v->profile, pt_len); /* cbc-hmac pads */
        blob = calloc(1, len);
        if (!blob)
                return -ENOMEM;
        memcpy(blob, header, (size_t) hlen);
        /* A fresh random IV per wrap (gcm: 96 bits, HMAC profiles: 128); the per-version wrap budget keeps
         * collisions negligible. gcm-token-iv: the token writes its own into the blob in run. */
        if (v->profile != HSM_PROFILE_GCM_TOKEN_IV && iv_new(blob + hlen, iv_len) < 0)
                return -EIO;
        v->lease_left--;
        s->generation = keystore_generation(ks);
        snprintf(s->key, sizeof(s->key), "%s", k->name);
        op->version = v->id;
        s->dst_profile = v->profile;
        s->dst_restored = v->restored;
        s->dst_iv_len = iv_len;
        s->dst_mac = v->mac_handle;
        s->dst = v->handle;
        s->dst_aad_len = (size_t) alen;
        s->dst_header_len = (size_t) hlen;
        op->blob_len = len;
        op->blob = TAKE_PTR(blob);
        return 0;
}

/* The unwrap half of unwrap and rewrap. */
static int unwrap_source(Keystore *ks, const KeyLookup *found, CryptoOp *op) {
        OpState *s = st(op);
        KeyVersion *v;
        Key *k;
        int alen, r;

        r = keystore_key(ks, found, op->view.key, &k);
        if (r < 0)
                return r;
        v = key_index_version(k, op->view.version);
        if (!v)
                return -KEKERR_UNKNOWN_VERSION;
        r = check_usable(ks, k, v, op);
        if (r < 0)
                return r;
        /* A blob of another profile than its version's: the format byte was changed, or it is forged. */
        if (op->view.profile != (unsigned) v->profile)
                return -KEKERR_BLOB_INVALID;
        alen = blob_aad(op->view.header, op->view.header_len, s->ctx, s->ctx_len, s->src_aad);
        if (alen < 0)
                return alen;
        s->src_aad_len = (size_t) alen;
        s->src = v->handle;
        s->src_restored = v->restored;
        s->src_mac = v->mac_handle;
        s->generation = keystore_generation(ks);
        return 0;
}

/* A fresh op of kind with the caller's inputs; kind only once prepare accepted it. */
static void op_init(CryptoOp *op, const BlobView *view, const uint8_t *ctx, size_t ctx_len, uint64_t now) {
        *op = (CryptoOp) {};
        if (view)
                op->view = *view;
        *st(op) = (OpState) { .now = now, .ctx = ctx, .ctx_len = ctx_len };
}

/* Prepare's outcome r: a prepared op is pending; a refused one is left unprepared (freed, kind 0). */
static int op_prepared(CryptoOp *op, CryptoKind kind, int r) {
        if (r != 0) {
                crypto_op_done(op);
                return r;
        }
        op->kind = kind;
        st(op)->pending = true;
        return 0;
}

int keystore_wrap_prepare(Keystore *ks, const KeyLookup *found, const char *name, uint32_t version, const uint8_t *pt,
                          size_t pt_len, const uint8_t *ctx, size_t ctx_len, uint64_t now, CryptoOp *op) {
        op_init(op, NULL, ctx, ctx_len, now);
        st(op)->pt = pt;
        st(op)->pt_len = pt_len;
        return op_prepared(op, CRYPTO_WRAP, wrap_target(ks, found, name, version, pt_len, op));
}

int keystore_wrap_prepare_renewed(Keystore *ks, const KeyLookup *found, const char *name, uint32_t version,
                                  const uint8_t *pt, size_t pt_len, const uint8_t *ctx, size_t ctx_len, uint64_t now,
                                  CryptoOp *op) {
        int r = keystore_wrap_prepare(ks, found, name, version, pt, pt_len, ctx, ctx_len, now, op);

        for (unsigned attempt = 0; r == KEYSTORE_NEEDS_RENEWAL; attempt++) {
                /* Twice renewed and still no lease: other kekd take the budget as fast; retry later. */
                r = attempt < 2 ? keystore_wrap_renew(ks, name, version, now) : -KEKERR_CONFLICT;
                /* The renewal wrote the key: what was found before it is not used again. */
                if (r >= 0)
                        r = keystore_wrap_prepare(ks, NULL, name, version, pt, pt_len, ctx, ctx_len, now, op);
        }
        return r;
}

int keystore_unwrap_prepare(Keystore *ks, const KeyLookup *found, const BlobView *view, const uint8_t *ctx,
                            size_t ctx_len, uint64_t now, CryptoOp *op) {
        op_init(op, view, ctx, ctx_len, now);
        return op_prepared(op, CRYPTO_UNWRAP, unwrap_source(ks, found, op));
}

int keystore_rewrap_prepare(Keystore *ks, const KeyLookup *found, const BlobView *view, const uint8_t *ctx,
                            size_t ctx_len, uint64_t now, CryptoOp *op) {
        op_init(op, view, ctx, ctx_len, now);
        return op_prepared(op, CRYPTO_REWRAP, unwrap_source(ks, found, op));
}

static int run_encrypt(Hsm *h, CryptoOp *op, const uint8_t *pt, size_t pt_len) {
        OpState *s = st(op);
        uint8_t *iv = op->blob + s->dst_header_len;

        return hsm_profile_encrypt(h, s->dst_profile, s->dst, s->dst_mac, iv, s->dst_aad, s->dst_aad_len, pt, pt_len,
                                   iv + s->dst_iv_len);
}

/*
 * Finds op's key object again in h's session, at the generation that session
 * has now: the handles prepare stamped on op came from an index read before a
 * session was reopened. A search changes nothing in the token.
 */
static int refind(Hsm *h, CryptoOp *op) {
        OpState *s = st(op);
        bool encrypt = op->kind == CRYPTO_WRAP || (op->kind == CRYPTO_REWRAP && op->blob);
        uint64_t gen;
        int r;

        r = hsm_ready(h);
        if (r < 0)
                return r;
        gen = hsm_generation(h);
        if (encrypt) {
                r = hsm_find_version_key(h, s->key, op->version, s->dst_restored, &s->dst);
                if (r >= 0 && hsm_profile_has_mac_key(s->dst_profile))
                        r = hsm_find_version_mac_key(h, s->key, op->version, s->dst_restored, &s->dst_mac);
        } else {
                r = hsm_find_version_key(h, op->view.key, op->view.version, s->src_restored, &s->src);
                if (r >= 0 && hsm_profile_has_mac_key((HsmProfile) op->view.profile))
                        r = hsm_find_version_mac_key(h, op->view.key, op->view.version, s->src_restored, &s->src_mac);
        }
        if (r == -ENOTUNIQ) {
                op->version_fault = true;
                return -KEKERR_HSM_UNAVAILABLE; /* neither of two is used (hsm.h); not a missing version */
        }
        if (r < 0)
                return r;
        s->generation = gen;
        return 0;
}

static int call_once(Hsm *h, CryptoOp *op) {
        OpState *s = st(op);

        if (op->kind == CRYPTO_WRAP)
                return run_encrypt(h, op, s->pt, s->pt_len);
        if (op->kind == CRYPTO_REWRAP && op->blob)
                return run_encrypt(h, op, op->plaintext->data, op->plaintext->len);
        if (op->kind == CRYPTO_UNWRAP || op->kind == CRYPTO_REWRAP)
                return hsm_profile_decrypt(h, (HsmProfile) op->view.profile, s->src, s->src_mac, op->view.iv,
                                           s->src_aad, s->src_aad_len, op->view.ciphertext, op->view.ciphertext_len,
                                           &op->plaintext);
        return -EINVAL;
}

/*
 * One HSM call of op. A session reopened since op's handles were read (by
 * any session of the token, before or during this call) may have renumbered
 * them on a real HSM: then the call is not made, or its answer not trusted.
 * Encrypt and decrypt change nothing in the token, so op finds its key again
 * by name and version in the session as it is now and makes the call once
 * more: when another session's reopen moved the generation, and when this
 * call's own session or login was lost and is open again (-ESTALE from
 * hsm.c). Any other failure is not retried (a device error may last); a
 * second reopen makes the op transient. The keystore re-reads its index
 * before the next request.
 */
static int run_call(Hsm *h, CryptoOp *op) {
        OpState *s = st(op);
        bool decrypt = op->kind == CRYPTO_UNWRAP || (op->kind == CRYPTO_REWRAP && !op->blob);
        bool retried = false, stale = false;
        int r;

        for (;;) {
                if (stale || hsm_generation(h) != s->generation) {
                        if (retried)
                                return -KEKERR_HSM_UNAVAILABLE;
                        retried = true;
                        r = refind(h, op);
                        if (r < 0)
                                break;
                }
                r = call_once(h, op);
                if (r != -ESTALE && hsm_generation(h) == s->generation)
                        break;
                /* Made with a handle that may have named another object: neither answer is trusted. */
                if (decrypt)
                        op->plaintext = secret_free(op->plaintext);
                /* Its own failure (a device error, say) that lost the session: no retry, it may last. */
                if (r < 0 && r != -ESTALE)
                        return -KEKERR_HSM_UNAVAILABLE;
                stale = true;
        }
        if (r >= 0 && decrypt)
                s->src_ok = true;
        if (r == -ENOENT)
                s->gone = true;
        return r;
}

/* A CryptoPoolFn: item is one of the run's CryptoOp pointers. */
static void crypto_op_run(Hsm *h, void *item) {
        CryptoOp *op = *(CryptoOp **) item;
        bool second = op->kind == CRYPTO_REWRAP && op->blob;

        /* Only what is pending: a group may hold ops that ran already (a rewrap's second run). */
        if (op->kind == 0 || op->result < 0 || !st(op)->pending)
                return;
        st(op)->pending = false;
        op->result = run_call(h, op);
        /*
         * A rewrap's plaintext has been in secure memory only, and is cleansed once encrypted again.
         * An encryption that met the token down keeps it for its run on a further token (failover);
         * finish cleanses it whatever happened.
         */
        if ((op->result < 0 && !(second && op->result == -KEKERR_HSM_UNAVAILABLE)) || (second && op->result >= 0))
                op->plaintext = secret_free(op->plaintext);
}

bool crypto_op_pending(const CryptoOp *op) {
        return op->kind != 0 && op->result >= 0 && st((CryptoOp *) op)->pending;
}

void crypto_op_retry(CryptoOp *op) {
        if (op->kind == 0 || op->result != -KEKERR_HSM_UNAVAILABLE)
                return;
        op->result = 0;
        op->version_fault = false;
        st(op)->pending = true;
        st(op)->gone = false;
}

void crypto_op_object(CryptoOp *op, CryptoOpObject *ret) {
        OpState *s = st(op);
        bool encrypt = op->kind == CRYPTO_WRAP || (op->kind == CRYPTO_REWRAP && op->blob);

        *ret = (CryptoOpObject) {
                .key = encrypt ? s->key : op->view.key,
                .version = encrypt ? op->version : op->view.version,
                .restored = encrypt ? s->dst_restored : s->src_restored,
        };
}

/*
 * With op's key object found on h in one class of forms (generated, or restored): 0 if the other
 * class has none there. A version's objects on a token are all of one class (the token generated
 * them, or a restore or a sync unwrapped them); one of the other class beside them is not kekd's,
 * and failover, which tries the record's class first where the copy is usually of the other one,
 * would take it before the copy: the version is refused there, as for two of one class (hsm.h).
 */
static int other_form_absent(Hsm *h, CryptoOp *op, bool other) {
        CryptoOpObject obj;
        HsmObject o;
        int r;

        crypto_op_object(op, &obj);
        r = hsm_find_version_key(h, obj.key, obj.version, other, &o);
        if (r == -ENOENT)
                return 0;
        if (r >= 0 || r == -ENOTUNIQ) {
                op->version_fault = true;
                return -KEKERR_HSM_UNAVAILABLE;
        }
        return r;
}

/*
 * The pending call of op on h, a session of another token than the one its handles were found in:
 * with the handles *cached found there (at cached->generation), else found now by the same search
 * as refind(), in the form op's record names and then in the other one (the copy a restore made on
 * that token is in the restored form, the preferred token's in the generated one, or the reverse).
 * A version object that token lacks is no answer about the version (it is not a full copy):
 * transient, and the index is not read again (gone stays false).
 */
int crypto_op_run_on(Hsm *h, CryptoOp *op, CryptoOpHandles *cached) {
        OpState *s = st(op);
        bool encrypt = op->kind == CRYPTO_WRAP || (op->kind == CRYPTO_REWRAP && op->blob);
        bool *form = encrypt ? &s->dst_restored : &s->src_restored, recorded = *form;
        int r = 0;

        if (!crypto_op_pending(op))
                return 0;
        if (cached->valid && cached->generation == hsm_generation(h)) {
                *(encrypt ? &s->dst : &s->src) = cached->object;
                *(encrypt ? &s->dst_mac : &s->src_mac) = cached->mac;
                s->generation = cached->generation;
                *form = recorded != cached->other_form;
        } else {
                r = refind(h, op);
                if (r == -ENOENT) {
                        *form = !*form;
                        r = refind(h, op);
                } else if (r >= 0)
                        r = other_form_absent(h, op, !*form);
        }
        if (r < 0) {
                /* Not run: a rewrap's plaintext stays for finish to cleanse. */
                s->pending = false;
                op->result = -KEKERR_HSM_UNAVAILABLE;
                cached->valid = false;
                return r == -ENOENT ? -ENOENT : 0;
        }
        crypto_op_run(h, &op);
        if (op->result == -ENOENT || s->gone) {
                s->gone = false; /* vanished there during the call: that token's copy, not the index */
                op->result = -KEKERR_HSM_UNAVAILABLE;
                cached->valid = false;
                return -ENOENT;
        }
        if (op->result >= 0 || s->src_ok)
                *cached = (CryptoOpHandles) { .valid = true, .generation = s->generation,
                                              .object = encrypt ? s->dst : s->src,
                                              .mac = encrypt ? s->dst_mac : s->src_mac,
                                              .other_form = *form != recorded };
        return 0;
}

/* Rewraps whose blob authenticated get their new version, lease and IV; returns how many need another run. */
static size_t keystore_targets(Keystore *ks, CryptoOp **ops, size_t n) {
        size_t more = 0;

        for (size_t i = 0; i < n; i++) {
                CryptoOp *op = ops[i];

                if (op->kind != CRYPTO_REWRAP || op->result < 0 || !op->plaintext || op->blob)
                        continue;
                op->result = wrap_target(ks, NULL, op->view.key, 0, op->plaintext->len, op);
                /* Its renewal is a step of its own here too, taken at most twice (then another kekd keeps
                 * taking the budget: CONFLICT, retry). */
                for (unsigned attempt = 0; op->result == KEYSTORE_NEEDS_RENEWAL; attempt++) {
                        op->result = attempt < 2 ? keystore_wrap_renew(ks, op->view.key, 0, st(op)->now) : -KEKERR_CONFLICT;
                        if (op->result >= 0)
                                op->result = wrap_target(ks, NULL, op->view.key, 0, op->plaintext->len, op);
                }
                if (op->result < 0)
                        op->plaintext = secret_free(op->plaintext);
                else {
                        st(op)->pending = true;
                        more++;
                }
        }
        return more;
}

/* Usage counts; a vanished object re-reads the token (once per call) and the op becomes transient. */
static void keystore_finish(Keystore *ks, CryptoOp **ops, size_t n) {
        bool reload = false;

        for (size_t i = 0; i < n; i++) {
                CryptoOp *op = ops[i];
                OpState *s = st(op);
                Key *k;
                KeyVersion *v;

                if (op->kind == 0)
                        continue; /* not prepared: nothing ran */
                if (s->gone && op->result == -ENOENT) {
                        /* An object vanished under us (purged through another kekd, or a stale handle):
                         * re-read the token; the retry gets the definitive answer from the fresh index. */
                        op->result = -KEKERR_HSM_UNAVAILABLE;
                        reload = true;
                }
                /* Versions are found again by name: an earlier op may have rotated or reloaded.
                 * A blob that authenticated counts as used even if its rewrap failed after. */
                if (s->src_ok && (k = keystore_key_runtime(ks, op->view.key)) && (v = key_index_version(k, op->view.version))) {
                        v->unwraps_pending++;
                        v->last_use_pending = MAX(v->last_use_pending, s->now);
                }
                if (op->result >= 0 && op->kind != CRYPTO_UNWRAP && (k = keystore_key_runtime(ks, s->key)) &&
                    (v = key_index_version(k, op->version)))
                        v->last_use_pending = MAX(v->last_use_pending, s->now);
                /*
                 * A wrap that took its lease unit (it has a blob) and then failed: the HSM refused,
                 * or its answer was not trusted. No ciphertext left kekd, so no IV was exposed: the
                 * unit goes back to the lease, where a settle returns it to the record.
                 */
                if (op->result < 0 && op->blob && op->kind != CRYPTO_UNWRAP && (k = keystore_key_runtime(ks, s->key)) &&
                    (v = key_index_version(k, op->version)))
                        v->lease_left++;
                if (op->kind == CRYPTO_REWRAP)
                        op->plaintext = secret_free(op->plaintext); /* kept by a failed encryption for its retry */
        }
        if (reload)
                (void) keystore_load(ks);
}

void crypto_op_done(CryptoOp *op) {
        if (!op)
                return;
        free(op->blob);
        op->blob = NULL;
        op->plaintext = secret_free(op->plaintext);
}

void keystore_run_pass(Keystore *ks, CryptoPool *pool, CryptoOp **ops, size_t n) {
        if (pool)
                crypto_pool_run(pool, crypto_op_run, ops, sizeof(*ops), n);
        else
                for (size_t i = 0; i < n; i++)
                        crypto_op_run(keystore_hsm(ks), &ops[i]);
}

void keystore_run_with(Keystore *ks, CryptoPassFn pass, void *userdata, CryptoOp **ops, size_t n) {
        pass(userdata, ops, n);
        if (keystore_targets(ks, ops, n) > 0)
                pass(userdata, ops, n); /* rewraps: encrypt what authenticated */
        keystore_finish(ks, ops, n);
}

typedef struct PreferredPass {
        Keystore *ks;
        CryptoPool *pool;
} PreferredPass;

static void preferred_pass(void *userdata, CryptoOp **ops, size_t n) {
        PreferredPass *p = userdata;

        keystore_run_pass(p->ks, p->pool, ops, n);
}

void keystore_run(Keystore *ks, CryptoPool *pool, CryptoOp **ops, size_t n) {
        PreferredPass p = { .ks = ks, .pool = pool };

        keystore_run_with(ks, preferred_pass, &p, ops, n);
}

/* The sizes the request path checks at decode, for the shorthands below, which have none. */
static int sizes_check(size_t pt_len, bool wrap, size_t ctx_len) {
        if ((wrap && (pt_len == 0 || pt_len > AEK_MAX_SIZE)) || ctx_len > CONTEXT_MAX_SIZE)
                return -KEKERR_INVALID_ARGUMENT;
        return 0;
}

int keystore_wrap(Keystore *ks, const char *name, uint32_t version, const uint8_t *pt, size_t pt_len,
                  const uint8_t *ctx, size_t ctx_len, uint64_t now, uint8_t **ret_blob, size_t *ret_blob_len,
                  uint32_t *ret_version) {
        CryptoOp op, *ops[] = { &op };
        int r;

        r = sizes_check(pt_len, true, ctx_len);
        if (r < 0)
                return r;
        r = keystore_wrap_prepare_renewed(ks, NULL, name, version, pt, pt_len, ctx, ctx_len, now, &op);
        if (r < 0)
                return r;
        keystore_run(ks, NULL, ops, 1);
        r = op.result;
        if (r >= 0) {
                *ret_version = op.version;
                *ret_blob_len = op.blob_len;
                *ret_blob = TAKE_PTR(op.blob);
        }
        crypto_op_done(&op);
        return r;
}

/* One unwrap or rewrap of blob on the keystore's own session: parse, prepare, run; op holds the outcome. */
static int blob_op_run(Keystore *ks, CryptoKind kind, const uint8_t *blob, size_t blob_len, const uint8_t *ctx,
                       size_t ctx_len, uint64_t now, CryptoOp *op) {
        CryptoOp *ops[] = { op };
        BlobView view;
        int r;

        *op = (CryptoOp) {};
        r = sizes_check(0, false, ctx_len);
        if (r < 0)
                return r;
        r = blob_parse(blob, blob_len, &view);
        if (r < 0)
                return r;
        if (kind == CRYPTO_UNWRAP)
                r = keystore_unwrap_prepare(ks, NULL, &view, ctx, ctx_len, now, op);
        else
                r = keystore_rewrap_prepare(ks, NULL, &view, ctx, ctx_len, now, op);
        if (r < 0)
                return r;
        keystore_run(ks, NULL, ops, 1);
        return op->result;
}

int keystore_unwrap(Keystore *ks, const uint8_t *blob, size_t blob_len, const uint8_t *ctx, size_t ctx_len,
                    uint64_t now, Secret **ret_plaintext, BlobView *ret_view) {
        CryptoOp op;
        int r = blob_op_run(ks, CRYPTO_UNWRAP, blob, blob_len, ctx, ctx_len, now, &op);

        if (r >= 0) {
                *ret_plaintext = TAKE_PTR(op.plaintext);
                *ret_view = op.view;
        }
        crypto_op_done(&op);
        return r;
}

int keystore_rewrap(Keystore *ks, const uint8_t *blob, size_t blob_len, const uint8_t *ctx, size_t ctx_len,
                    uint64_t now, uint8_t **ret_blob, size_t *ret_blob_len, uint32_t *ret_version,
                    uint32_t *ret_old_version) {
        CryptoOp op;
        int r = blob_op_run(ks, CRYPTO_REWRAP, blob, blob_len, ctx, ctx_len, now, &op);

        if (r >= 0) {
                *ret_version = op.version;
                *ret_old_version = op.view.version;
                *ret_blob_len = op.blob_len;
                *ret_blob = TAKE_PTR(op.blob);
        }
        crypto_op_done(&op);
        return r;
}
