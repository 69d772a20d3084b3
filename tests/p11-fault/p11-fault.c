/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * p11-fault: a pass-through PKCS#11 module, built only for the tests, that
 * wraps a real module (SoftHSM2) and makes chosen calls fail or slow down, so
 * the tests can show what kekd does when the HSM misbehaves. It is never
 * installed and never part of kekd.
 *
 * C_GetFunctionList() dlopen()s the module named by $P11_FAULT_MODULE
 * (default /usr/lib/softhsm/libsofthsm2.so) and returns a function list whose
 * every entry forwards to the real one, after consulting the fault rules.
 * Invariants: a call that is not failed reaches the real module unchanged and
 * returns its result unchanged; a call failed "before" (the default) never
 * reaches the real module; every injected fault is counted and, with
 * $P11_FAULT_LOG, logged; all rule state sits behind one mutex (the sleep of
 * delay_ms happens outside it).
 *
 * Rules come from $P11_FAULT (read once, when the module is loaded) and from
 * the file named by $P11_FAULT_FILE, re-read whenever its inode, size or
 * mtime changes (one stat() per call; write a new file and rename() it over
 * the old one so a half-written file is never read). A missing or empty file
 * means no file rules. Grammar, rules separated by ';' or newlines, '#'
 * starting a comment line:
 *
 *   FUNCTION:rv=CKR_NAME[:nth=N][:count=K][:rate=P][:delay_ms=D][:after]
 *   FUNCTION:delay_ms=D[:nth=N][:count=K][:rate=P]
 *
 *   FUNCTION  C_Encrypt, C_FindObjects, ... or '*' for every function but
 *             C_GetFunctionList, C_Initialize and C_Finalize (name those
 *             explicitly to fail them).
 *   rv        the CK_RV to return: CKR_DEVICE_ERROR, CKR_DEVICE_REMOVED,
 *             CKR_SESSION_HANDLE_INVALID, CKR_TOKEN_NOT_PRESENT,
 *             CKR_USER_NOT_LOGGED_IN, CKR_FUNCTION_FAILED, a few more (see
 *             rv_names[]), or a number (0x30).
 *   nth       the first call to fail, counting the calls of FUNCTION made
 *             since the rule was loaded (1-based; default 1).
 *   count     how many faults the rule injects from there, default 1 (with
 *             rate or delay_ms alone: no limit); "inf" for no limit.
 *   rate      probability 0..1 that a call from the nth on fails, drawn from
 *             a PRNG seeded with $P11_FAULT_SEED (default 1), so a run can be
 *             replayed.
 *   delay_ms  with rv: sleep that long before failing; alone: add that
 *             latency to the call and let it succeed.
 *   after     let the call reach the real module first, then report rv
 *             anyway (an answer lost in transit: the object may exist).
 *
 * The first rule that fires decides the call; delays add up. With
 * $P11_FAULT_LOG, one line is appended per injected fault or delay, so a
 * test can check its fault really fired:
 *
 *   C_Encrypt CKR_DEVICE_ERROR call=5 rule=env:1 pid=1234
 *   C_GenerateKey CKR_DEVICE_ERROR call=3 rule=file:1 after=CKR_OK pid=1234
 *   C_Decrypt delay_ms=100 call=7 rule=file:2 pid=1234
 *
 * call= counts the calls of that function since the module was loaded. With
 * $P11_FAULT_TRACE (a comma-separated list of function names, or '*'), every
 * call of those functions is logged too, after it returned, as
 * "trace C_Login CKR_OK call=2 pid=1234". With $P11_FAULT_OVERLAP=1, calls
 * on token objects (create, copy, destroy, find, get or set attributes,
 * generate, unwrap, derive) are watched across threads: the first such call
 * of each thread logs "store-thread N pid=1234", and one that begins while
 * another is in flight (delays included) logs "overlap C_CreateObject while
 * C_FindObjectsInit pid=1234". With $P11_FAULT_RENUMBER=1 the module
 * renumbers object handles whenever a session is closed, as some HSMs do
 * after a reset: every handle kekd passes or gets (C_FindObjects,
 * C_CreateObject, C_GenerateKey, C_DestroyObject, C_GetAttributeValue,
 * C_EncryptInit, C_DecryptInit) is shifted by the number of C_CloseSession
 * calls so far, so a handle kept from before names the object one below it
 * now. Two switches emulate tokens that are not SoftHSM2 (issue 16):
 * $P11_FAULT_REJECT_ATTRS (comma-separated CKA_ names or numbers) makes
 * C_GenerateKey and C_CreateObject answer CKR_ATTRIBUTE_TYPE_INVALID to a
 * template that has one of them, without calling the real module, as
 * openCryptoki 3.8 does for CKA_COPYABLE (logged "C_GenerateKey
 * CKR_ATTRIBUTE_TYPE_INVALID reject=0x171 pid=..."); $P11_FAULT_NO_LOCAL=1
 * makes every object report CKA_LOCAL FALSE, in C_GetAttributeValue and in
 * C_FindObjectsInit templates, as NSS softokn's generated keys do;
 * $P11_FAULT_NO_PRIVATE_DATA=1 makes C_CreateObject answer
 * CKR_ATTRIBUTE_VALUE_INVALID to a CKO_DATA template with CKA_PRIVATE TRUE,
 * without calling the real module, as NSS softokn does for private data
 * objects (logged "C_CreateObject CKR_ATTRIBUTE_VALUE_INVALID
 * no-private-data pid=..."); public data objects and private keys are
 * created as always. $P11_FAULT_NO_PRIVATE_DATA=all refuses every CKO_DATA
 * object with CKA_TOKEN or CKA_PRIVATE TRUE, as NSS softokn does (it stores
 * no token data objects at all). A rule that does not parse is
 * reported on stderr and in the log ("p11-fault: ..."); in $P11_FAULT it
 * makes C_GetFunctionList fail, in the file it disables every file rule.
 *
 * With $P11_FAULT_TOKEN_IV=1 the module generates AES-GCM IVs itself, as
 * FIPS-mode HSMs do (AWS CloudHSM, Luna and nShield in FIPS mode): a
 * C_EncryptInit(CKM_AES_GCM) whose CK_GCM_PARAMS IV buffer (12 bytes) holds
 * anything but zeros is refused with CKR_MECHANISM_PARAM_INVALID, and into a
 * zeroed one the module writes a random IV of its own, which the real module
 * then uses and the caller reads back ("token-iv refused a caller IV" or
 * "token-iv generated" is logged). Decryption takes the caller's IV as
 * always. With $P11_FAULT_TOKEN_IV=replace a caller's IV is not refused but
 * silently replaced by the module's own ("token-iv replaced a caller IV"),
 * as some FIPS-mode HSMs do.
 *
 * $P11_FAULT_SESSION_COPIES=1 is the prototype of in-HSM session copies
 * (issue 18 item 3, docs/session-copies.md), for kekbench's "copies" row
 * through kekd: C_GenerateKey asks for CKA_COPYABLE and CKA_MODIFIABLE
 * TRUE where the template said FALSE (what copies need on SoftHSM2), and
 * C_EncryptInit/C_DecryptInit with a token key use a session copy of it
 * (C_CopyObject with CKA_TOKEN FALSE, made once per key and logged
 * "session-copy made call=N pid=..."), made again when the copy is gone
 * (its session closed). The caller sees no difference but speed. Copies of
 * destroyed keys are not destroyed: a prototype, not a design.
 *
 * $P11_FAULT_COPY_EXTRACTABLE=1 makes C_CopyObject answer as NSS softokn
 * 3.87 does for kekd's KEKs: every copy is CKR_OK and "makes" the source's
 * own handle, and a template with CKA_EXTRACTABLE TRUE (CKA_SENSITIVE FALSE)
 * makes that object read back CKA_EXTRACTABLE TRUE and CKA_NEVER_EXTRACTABLE
 * FALSE (CKA_SENSITIVE and CKA_ALWAYS_SENSITIVE FALSE) from then on, until
 * it is destroyed; the real module is not called (logged "copy-extractable
 * same-handle extractable=1 sensitive=0 pid=..."). =keep answers every copy
 * so too but changes nothing (a token that copies keys and keeps their
 * attributes). Read at each call, like $P11_FAULT_TOKEN_IV.
 *
 * $P11_FAULT_UNWRAP_EXPOSED=1 makes C_UnwrapKey make its key as openCryptoki
 * 3.8.1's soft token does, whatever the template says: not sensitive and
 * extractable, its value readable (CKA_SENSITIVE TRUE becomes FALSE,
 * CKA_EXTRACTABLE FALSE becomes TRUE; logged "unwrap-exposed pid=..."). Read
 * at each call.
 */
#include "config.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "p11-kit/pkcs11.h"

#define DEFAULT_MODULE "/usr/lib/softhsm/libsofthsm2.so"
#define RULES_MAX 64
#define SPEC_MAX (64 * 1024)
#define DELAY_MAX_MS 60000UL
#define COUNT_INF UINT64_MAX

#define _public_ __attribute__((visibility("default")))

/* Every function of a version 2.40 CK_FUNCTION_LIST, in its order. */
#define FOREACH_FUNCTION(X)                                                                         \
        X(C_Initialize) X(C_Finalize) X(C_GetInfo) X(C_GetFunctionList) X(C_GetSlotList)            \
        X(C_GetSlotInfo) X(C_GetTokenInfo) X(C_GetMechanismList) X(C_GetMechanismInfo)               \
        X(C_InitToken) X(C_InitPIN) X(C_SetPIN) X(C_OpenSession) X(C_CloseSession)                   \
        X(C_CloseAllSessions) X(C_GetSessionInfo) X(C_GetOperationState) X(C_SetOperationState)      \
        X(C_Login) X(C_Logout) X(C_CreateObject) X(C_CopyObject) X(C_DestroyObject)                  \
        X(C_GetObjectSize) X(C_GetAttributeValue) X(C_SetAttributeValue) X(C_FindObjectsInit)        \
        X(C_FindObjects) X(C_FindObjectsFinal) X(C_EncryptInit) X(C_Encrypt) X(C_EncryptUpdate)      \
        X(C_EncryptFinal) X(C_DecryptInit) X(C_Decrypt) X(C_DecryptUpdate) X(C_DecryptFinal)         \
        X(C_DigestInit) X(C_Digest) X(C_DigestUpdate) X(C_DigestKey) X(C_DigestFinal) X(C_SignInit)  \
        X(C_Sign) X(C_SignUpdate) X(C_SignFinal) X(C_SignRecoverInit) X(C_SignRecover)               \
        X(C_VerifyInit) X(C_Verify) X(C_VerifyUpdate) X(C_VerifyFinal) X(C_VerifyRecoverInit)        \
        X(C_VerifyRecover) X(C_DigestEncryptUpdate) X(C_DecryptDigestUpdate)                         \
        X(C_SignEncryptUpdate) X(C_DecryptVerifyUpdate) X(C_GenerateKey) X(C_GenerateKeyPair)        \
        X(C_WrapKey) X(C_UnwrapKey) X(C_DeriveKey) X(C_SeedRandom) X(C_GenerateRandom)               \
        X(C_GetFunctionStatus) X(C_CancelFunction) X(C_WaitForSlotEvent)

#define FN_ENUM(name) FN_##name,
enum { FOREACH_FUNCTION(FN_ENUM) N_FUNCTIONS, FN_ANY = -1 };
#undef FN_ENUM

#define FN_NAME(name) #name,
static const char *const function_names[N_FUNCTIONS] = { FOREACH_FUNCTION(FN_NAME) };
#undef FN_NAME

static const struct {
        const char *name;
        CK_RV rv;
} rv_names[] = {
        { "CKR_OK", CKR_OK },
        { "CKR_HOST_MEMORY", CKR_HOST_MEMORY },
        { "CKR_GENERAL_ERROR", CKR_GENERAL_ERROR },
        { "CKR_FUNCTION_FAILED", CKR_FUNCTION_FAILED },
        { "CKR_DEVICE_ERROR", CKR_DEVICE_ERROR },
        { "CKR_DEVICE_MEMORY", CKR_DEVICE_MEMORY },
        { "CKR_DEVICE_REMOVED", CKR_DEVICE_REMOVED },
        { "CKR_ENCRYPTED_DATA_INVALID", CKR_ENCRYPTED_DATA_INVALID },
        { "CKR_KEY_HANDLE_INVALID", CKR_KEY_HANDLE_INVALID },
        { "CKR_OBJECT_HANDLE_INVALID", CKR_OBJECT_HANDLE_INVALID },
        { "CKR_OPERATION_ACTIVE", CKR_OPERATION_ACTIVE },
        { "CKR_PIN_INCORRECT", CKR_PIN_INCORRECT },
        { "CKR_SESSION_CLOSED", CKR_SESSION_CLOSED },
        { "CKR_SESSION_COUNT", CKR_SESSION_COUNT },
        { "CKR_SESSION_HANDLE_INVALID", CKR_SESSION_HANDLE_INVALID },
        { "CKR_TOKEN_NOT_PRESENT", CKR_TOKEN_NOT_PRESENT },
        { "CKR_TOKEN_NOT_RECOGNIZED", CKR_TOKEN_NOT_RECOGNIZED },
        { "CKR_USER_NOT_LOGGED_IN", CKR_USER_NOT_LOGGED_IN },
        { "CKR_USER_ALREADY_LOGGED_IN", CKR_USER_ALREADY_LOGGED_IN },
        { "CKR_CRYPTOKI_NOT_INITIALIZED", CKR_CRYPTOKI_NOT_INITIALIZED },
        { "CKR_MECHANISM_INVALID", CKR_MECHANISM_INVALID },
        { "CKR_FUNCTION_NOT_SUPPORTED", CKR_FUNCTION_NOT_SUPPORTED },
        { "CKR_ATTRIBUTE_TYPE_INVALID", CKR_ATTRIBUTE_TYPE_INVALID },
        { "CKR_ATTRIBUTE_VALUE_INVALID", CKR_ATTRIBUTE_VALUE_INVALID },
        { "CKR_TEMPLATE_INCONSISTENT", CKR_TEMPLATE_INCONSISTENT },
};

#define REJECT_MAX 8
/* $P11_FAULT_REJECT_ATTRS, $P11_FAULT_NO_LOCAL and $P11_FAULT_NO_PRIVATE_DATA, read once in setup(). */
static CK_ATTRIBUTE_TYPE reject_attrs[REJECT_MAX];
static unsigned n_reject_attrs;
static bool no_local;
static int no_private_data;      /* 1: private data objects refused; 2: token ones too */
/* $P11_FAULT_SESSION_COPIES: token key -> its session copy (0: none yet), behind lock. */
#define COPIES_MAX 256
static bool session_copies;
static struct {
        CK_OBJECT_HANDLE key, copy;
} copies[COPIES_MAX];
static unsigned n_copies;
static uint64_t n_made;

typedef struct Rule {
        int function;            /* FN_* or FN_ANY */
        bool fail;               /* has rv */
        CK_RV rv;
        uint64_t nth;            /* first call to act on, 1-based */
        uint64_t count;          /* how many times to act; COUNT_INF: no limit */
        double rate;             /* < 0: every call */
        unsigned long delay_ms;
        bool after;
        char origin[16];         /* "env:3", "file:1" for the log */
        /* state */
        uint64_t seen;           /* matching calls since the rule was loaded */
        uint64_t fired;
} Rule;

typedef struct RuleSet {
        Rule rules[RULES_MAX];
        size_t n;
} RuleSet;

typedef struct Decision {
        bool fail;
        CK_RV rv;
        bool after;
        unsigned long delay_ms;
        uint64_t call;
        char origin[16];
} Decision;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static CK_FUNCTION_LIST *real;
static void *real_dl;
static RuleSet env_rules, file_rules;
static const char *rule_file, *log_path;
static bool file_present;
static struct stat file_st;
static uint64_t calls[N_FUNCTIONS];
static bool trace[N_FUNCTIONS];
static uint64_t prng_state;
/* $P11_FAULT_OVERLAP: object calls in flight, the last one begun, the threads seen making them. */
#define STORE_THREADS_MAX 64
static bool overlap_watch;
static unsigned store_in_flight;
static int store_last_fn;
static pthread_t store_threads[STORE_THREADS_MAX];
static unsigned n_store_threads;
/* $P11_FAULT_RENUMBER: handles are the real ones plus handle_shift, which each C_CloseSession moves. */
static bool renumber;
static CK_ULONG handle_shift;


static CK_OBJECT_HANDLE h_in(CK_OBJECT_HANDLE o) {
        return renumber && o != CK_INVALID_HANDLE ? o - __atomic_load_n(&handle_shift, __ATOMIC_ACQUIRE) : o;
}

static CK_OBJECT_HANDLE h_out(CK_OBJECT_HANDLE o) {
        return renumber && o != CK_INVALID_HANDLE ? o + __atomic_load_n(&handle_shift, __ATOMIC_ACQUIRE) : o;
}

static uint64_t prng_next(void) {
        /* xorshift64*: small, fast and good enough to pick which calls fail */
        prng_state ^= prng_state >> 12;
        prng_state ^= prng_state << 25;
        prng_state ^= prng_state >> 27;
        return prng_state * 0x2545F4914F6CDD1DULL;
}

static double prng_unit(void) {
        return (double) (prng_next() >> 11) * (1.0 / 9007199254740992.0);
}

static const char *rv_name(CK_RV rv, char *buf, size_t size) {
        for (size_t i = 0; i < sizeof(rv_names) / sizeof(rv_names[0]); i++)
                if (rv_names[i].rv == rv)
                        return rv_names[i].name;
        snprintf(buf, size, "0x%lx", (unsigned long) rv);
        return buf;
}

/* Appends one line to $P11_FAULT_LOG (opened per line: a test may truncate or replace it). */
__attribute__((format(printf, 1, 2))) static void log_line(const char *fmt, ...) {
        char buf[512];
        va_list ap;
        int fd, n;

        if (!log_path)
                return;
        va_start(ap, fmt);
        n = vsnprintf(buf, sizeof(buf) - 1, fmt, ap);
        va_end(ap);
        if (n < 0)
                return;
        if ((size_t) n > sizeof(buf) - 2)
                n = (int) sizeof(buf) - 2;
        buf[n++] = '\n';
        fd = open(log_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
        if (fd < 0)
                return;
        (void) !write(fd, buf, (size_t) n);
        close(fd);
}

__attribute__((format(printf, 3, 4))) static int parse_error(const char *source, unsigned line, const char *fmt, ...) {
        char msg[256];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        fprintf(stderr, "p11-fault: %s:%u: %s\n", source, line, msg);
        log_line("p11-fault: %s:%u: %s", source, line, msg);
        return -EINVAL;
}

static int function_lookup(const char *name) {
        if (strcmp(name, "*") == 0)
                return FN_ANY;
        for (int i = 0; i < N_FUNCTIONS; i++)
                if (strcmp(function_names[i], name) == 0)
                        return i;
        return -2;
}

/* Decimal, or with base 0 also 0x... (for CK_RV values). */
static bool parse_u64(const char *s, int base, uint64_t min, uint64_t max, uint64_t *ret) {
        unsigned long long v;
        char *end;

        if (!*s || *s == '-' || *s == '+')
                return false;
        errno = 0;
        v = strtoull(s, &end, base);
        if (errno != 0 || *end || v < min || v > max)
                return false;
        *ret = v;
        return true;
}

static char *strip(char *s) {
        char *e;

        while (*s == ' ' || *s == '\t' || *s == '\r')
                s++;
        e = s + strlen(s);
        while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r'))
                *--e = 0;
        return s;
}

/* Parses one rule ("FUNCTION:key=value:..."); text is modified. */
static int parse_rule(char *text, const char *source, unsigned line, Rule *r) {
        char *field, *save = NULL;
        bool have_count = false;

        *r = (Rule) { .nth = 1, .count = 1, .rate = -1 };
        field = strtok_r(text, ":", &save);
        if (!field)
                return parse_error(source, line, "empty rule");
        field = strip(field);
        r->function = function_lookup(field);
        if (r->function == -2)
                return parse_error(source, line, "unknown function '%s'", field);
        while ((field = strtok_r(NULL, ":", &save))) {
                char *eq, *key, *value;
                uint64_t u;

                key = strip(field);
                if (strcmp(key, "after") == 0) {
                        r->after = true;
                        continue;
                }
                eq = strchr(key, '=');
                if (!eq)
                        return parse_error(source, line, "'%s' is not key=value", key);
                *eq = 0;
                value = strip(eq + 1);
                key = strip(key);
                if (strcmp(key, "rv") == 0) {
                        bool found = false;

                        for (size_t i = 0; i < sizeof(rv_names) / sizeof(rv_names[0]) && !found; i++)
                                if (strcmp(rv_names[i].name, value) == 0) {
                                        r->rv = rv_names[i].rv;
                                        found = true;
                                }
                        if (!found && parse_u64(value, 0, 0, ULONG_MAX, &u)) {
                                r->rv = (CK_RV) u;
                                found = true;
                        }
                        if (!found)
                                return parse_error(source, line, "unknown return value '%s'", value);
                        r->fail = true;
                } else if (strcmp(key, "nth") == 0) {
                        if (!parse_u64(value, 10, 1, UINT64_MAX - 1, &r->nth))
                                return parse_error(source, line, "nth must be a number >= 1, not '%s'", value);
                } else if (strcmp(key, "count") == 0) {
                        if (strcmp(value, "inf") == 0)
                                r->count = COUNT_INF;
                        else if (!parse_u64(value, 10, 1, UINT64_MAX - 1, &r->count))
                                return parse_error(source, line, "count must be a number >= 1 or 'inf', not '%s'", value);
                        have_count = true;
                } else if (strcmp(key, "rate") == 0) {
                        char *end;

                        errno = 0;
                        r->rate = strtod(value, &end);
                        if (errno != 0 || end == value || *end || !(r->rate >= 0.0 && r->rate <= 1.0))
                                return parse_error(source, line, "rate must be between 0 and 1, not '%s'", value);
                } else if (strcmp(key, "delay_ms") == 0) {
                        if (!parse_u64(value, 10, 0, DELAY_MAX_MS, &u))
                                return parse_error(source, line, "delay_ms must be 0..%lu, not '%s'", DELAY_MAX_MS, value);
                        r->delay_ms = (unsigned long) u;
                } else
                        return parse_error(source, line, "unknown key '%s'", key);
        }
        if (!r->fail && r->delay_ms == 0)
                return parse_error(source, line, "a rule needs rv= or delay_ms=");
        if (r->after && !r->fail)
                return parse_error(source, line, "'after' needs rv=");
        if (!have_count && (r->rate >= 0 || !r->fail))
                r->count = COUNT_INF;
        return 0;
}

/* Parses a whole spec into set; on error set is left empty. */
static int parse_spec(const char *spec, const char *source, RuleSet *set) {
        char *copy, *p, *save = NULL;
        unsigned line = 0;
        int r = 0;

        set->n = 0;
        copy = strdup(spec);
        if (!copy)
                return -ENOMEM;
        for (p = strtok_r(copy, ";\n", &save); p; p = strtok_r(NULL, ";\n", &save)) {
                char *t = strip(p);

                line++;
                if (!*t || *t == '#')
                        continue;
                if (set->n >= RULES_MAX) {
                        r = parse_error(source, line, "more than %d rules", RULES_MAX);
                        break;
                }
                r = parse_rule(t, source, line, &set->rules[set->n]);
                if (r < 0)
                        break;
                snprintf(set->rules[set->n].origin, sizeof(set->rules[set->n].origin), "%.6s:%u", source, line);
                set->n++;
        }
        free(copy);
        if (r < 0)
                set->n = 0;
        return r;
}

static bool same_file(const struct stat *a, const struct stat *b) {
        return a->st_dev == b->st_dev && a->st_ino == b->st_ino && a->st_size == b->st_size &&
               a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec;
}

/* With lock held: reloads the file rules when the file changed (new rules count from zero). */
static void file_refresh(void) {
        struct stat st;
        char *buf;
        ssize_t n;
        int fd;

        if (!rule_file)
                return;
        if (stat(rule_file, &st) < 0) {
                if (file_present)
                        file_rules.n = 0;
                file_present = false;
                return;
        }
        if (file_present && same_file(&st, &file_st))
                return;
        file_present = true;
        file_st = st;
        file_rules.n = 0;
        fd = open(rule_file, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return;
        buf = malloc(SPEC_MAX + 1);
        if (!buf) {
                close(fd);
                return;
        }
        n = read(fd, buf, SPEC_MAX);
        close(fd);
        if (n >= 0) {
                buf[n] = 0;
                (void) parse_spec(buf, "file", &file_rules);
        }
        free(buf);
}

/* With lock held: one rule's verdict on this call of fn. */
static void rule_apply(Rule *r, int fn, Decision *d) {
        if (r->function != fn && !(r->function == FN_ANY && fn != FN_C_Initialize && fn != FN_C_Finalize &&
                                   fn != FN_C_GetFunctionList))
                return;
        r->seen++;
        if (r->seen < r->nth || (r->count != COUNT_INF && r->fired >= r->count))
                return;
        if (r->fail && d->fail)
                return; /* an earlier rule already fails this call */
        if (r->rate >= 0 && prng_unit() >= r->rate)
                return;
        r->fired++;
        if (r->delay_ms)
                d->delay_ms = d->delay_ms + r->delay_ms > DELAY_MAX_MS ? DELAY_MAX_MS : d->delay_ms + r->delay_ms;
        if (r->fail) {
                d->fail = true;
                d->rv = r->rv;
                d->after = r->after;
                memcpy(d->origin, r->origin, sizeof(d->origin));
        } else
                log_line("%s delay_ms=%lu call=%" PRIu64 " rule=%s pid=%d", function_names[fn], r->delay_ms, d->call,
                         r->origin, (int) getpid());
}

static void sleep_ms(unsigned long ms) {
        struct timespec ts = { (time_t) (ms / 1000), (long) (ms % 1000) * 1000000L };

        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
                ;
}

/* Decides a call before it is forwarded; true: return d->rv without calling the real module. */
static bool fault_before(int fn, Decision *d) {
        char buf[32];

        *d = (Decision) {};
        pthread_mutex_lock(&lock);
        file_refresh();
        d->call = ++calls[fn];
        for (size_t i = 0; i < env_rules.n; i++)
                rule_apply(&env_rules.rules[i], fn, d);
        for (size_t i = 0; i < file_rules.n; i++)
                rule_apply(&file_rules.rules[i], fn, d);
        if (d->fail && !d->after)
                log_line("%s %s call=%" PRIu64 " rule=%s pid=%d", function_names[fn], rv_name(d->rv, buf, sizeof(buf)),
                         d->call, d->origin, (int) getpid());
        pthread_mutex_unlock(&lock);
        if (d->delay_ms)
                sleep_ms(d->delay_ms);
        return d->fail && !d->after;
}

/* Called with the real module's result; returns what the caller sees. */
static CK_RV fault_after(int fn, const Decision *d, CK_RV rv) {
        char a[32], b[32];

        if (d->fail && d->after) {
                pthread_mutex_lock(&lock);
                log_line("%s %s call=%" PRIu64 " rule=%s after=%s pid=%d", function_names[fn],
                         rv_name(d->rv, a, sizeof(a)), d->call, d->origin, rv_name(rv, b, sizeof(b)), (int) getpid());
                pthread_mutex_unlock(&lock);
                return d->rv;
        }
        if (trace[fn]) {
                pthread_mutex_lock(&lock);
                log_line("trace %s %s call=%" PRIu64 " pid=%d", function_names[fn], rv_name(rv, a, sizeof(a)), d->call,
                         (int) getpid());
                pthread_mutex_unlock(&lock);
        }
        return rv;
}

static bool is_store_fn(int fn) {
        switch (fn) {
        case FN_C_CreateObject: case FN_C_CopyObject: case FN_C_DestroyObject: case FN_C_GetAttributeValue:
        case FN_C_SetAttributeValue: case FN_C_FindObjectsInit: case FN_C_FindObjects: case FN_C_FindObjectsFinal:
        case FN_C_GenerateKey: case FN_C_GenerateKeyPair: case FN_C_UnwrapKey: case FN_C_DeriveKey:
                return true;
        default:
                return false;
        }
}

/* Before an object call (and its injected delay): logs a new thread and an overlap. */
static void store_enter(int fn) {
        pthread_t self = pthread_self();
        bool known = false;

        if (!overlap_watch || !is_store_fn(fn))
                return;
        pthread_mutex_lock(&lock);
        for (unsigned i = 0; i < n_store_threads && !known; i++)
                known = pthread_equal(store_threads[i], self);
        if (!known && n_store_threads < STORE_THREADS_MAX) {
                store_threads[n_store_threads++] = self;
                log_line("store-thread %u pid=%d", n_store_threads, (int) getpid());
        }
        if (store_in_flight > 0)
                log_line("overlap %s while %s pid=%d", function_names[fn], function_names[store_last_fn], (int) getpid());
        store_in_flight++;
        store_last_fn = fn;
        pthread_mutex_unlock(&lock);
}

static void store_leave(int fn) {
        if (!overlap_watch || !is_store_fn(fn))
                return;
        pthread_mutex_lock(&lock);
        store_in_flight--;
        pthread_mutex_unlock(&lock);
}

/* $P11_FAULT_REJECT_ATTRS: whether tmpl has an attribute the emulated token does not know (logged). */
static bool template_rejected(int fn, const CK_ATTRIBUTE *tmpl, CK_ULONG n) {
        for (CK_ULONG i = 0; i < n; i++)
                for (unsigned j = 0; j < n_reject_attrs; j++)
                        if (tmpl[i].type == reject_attrs[j]) {
                                pthread_mutex_lock(&lock);
                                calls[fn]++;
                                log_line("%s CKR_ATTRIBUTE_TYPE_INVALID reject=0x%lx pid=%d", function_names[fn],
                                         (unsigned long) reject_attrs[j], (int) getpid());
                                pthread_mutex_unlock(&lock);
                                return true;
                        }
        return false;
}

/* $P11_FAULT_NO_LOCAL: every CKA_LOCAL read back is FALSE. */
static void local_hide(CK_ATTRIBUTE *tmpl, CK_ULONG n) {
        for (CK_ULONG i = 0; no_local && i < n; i++)
                if (tmpl[i].type == CKA_LOCAL && tmpl[i].pValue && tmpl[i].ulValueLen == sizeof(CK_BBOOL))
                        *(CK_BBOOL *) tmpl[i].pValue = CK_FALSE;
}

/*
 * $P11_FAULT_NO_LOCAL: a search for CKA_LOCAL TRUE finds what a token that
 * never sets it would find (nothing), by asking the real module for FALSE.
 * The copy is per thread and lives until its next search.
 */
static CK_ATTRIBUTE *local_search(CK_ATTRIBUTE *tmpl, CK_ULONG n) {
        static __thread CK_ATTRIBUTE copy[64];
        static const CK_BBOOL no = CK_FALSE;
        bool changed = false;

        if (!no_local || n > 64)
                return tmpl;
        for (CK_ULONG i = 0; i < n; i++) {
                copy[i] = tmpl[i];
                if (tmpl[i].type == CKA_LOCAL && tmpl[i].ulValueLen == sizeof(CK_BBOOL) && tmpl[i].pValue &&
                    *(CK_BBOOL *) tmpl[i].pValue) {
                        copy[i].pValue = (void *) &no;
                        changed = true;
                }
        }
        return changed ? copy : tmpl;
}

/* post: run after a real call that returned CKR_OK (handle renumbering). */
#define FORWARD_POST(name, params, args, post)                          \
        static CK_RV fault_##name params {                              \
                Decision d;                                             \
                CK_RV rv;                                               \
                                                                        \
                if (!real)                                              \
                        return CKR_CRYPTOKI_NOT_INITIALIZED;            \
                store_enter(FN_##name);                                 \
                if (fault_before(FN_##name, &d))                        \
                        rv = d.rv;                                      \
                else {                                                  \
                        rv = real->name args;                           \
                        if (rv == CKR_OK) {                             \
                                post;                                   \
                        }                                               \
                        rv = fault_after(FN_##name, &d, rv);            \
                }                                                       \
                store_leave(FN_##name);                                 \
                return rv;                                              \
        }
#define FORWARD(name, params, args) FORWARD_POST(name, params, args, (void) 0)

FORWARD(C_Initialize, (CK_VOID_PTR init_args), (init_args))
FORWARD(C_Finalize, (CK_VOID_PTR reserved), (reserved))
FORWARD(C_GetInfo, (CK_INFO_PTR info), (info))
FORWARD(C_GetSlotList, (CK_BBOOL token_present, CK_SLOT_ID_PTR slot_list, CK_ULONG_PTR count),
        (token_present, slot_list, count))
FORWARD(C_GetSlotInfo, (CK_SLOT_ID slot_id, CK_SLOT_INFO_PTR info), (slot_id, info))
FORWARD(C_GetTokenInfo, (CK_SLOT_ID slot_id, CK_TOKEN_INFO_PTR info), (slot_id, info))
FORWARD(C_GetMechanismList, (CK_SLOT_ID slot_id, CK_MECHANISM_TYPE_PTR list, CK_ULONG_PTR count),
        (slot_id, list, count))
FORWARD(C_GetMechanismInfo, (CK_SLOT_ID slot_id, CK_MECHANISM_TYPE type, CK_MECHANISM_INFO_PTR info),
        (slot_id, type, info))
FORWARD(C_InitToken, (CK_SLOT_ID slot_id, CK_UTF8CHAR_PTR pin, CK_ULONG pin_len, CK_UTF8CHAR_PTR label),
        (slot_id, pin, pin_len, label))
FORWARD(C_InitPIN, (CK_SESSION_HANDLE s, CK_UTF8CHAR_PTR pin, CK_ULONG pin_len), (s, pin, pin_len))
FORWARD(C_SetPIN, (CK_SESSION_HANDLE s, CK_UTF8CHAR_PTR old_pin, CK_ULONG old_len, CK_UTF8CHAR_PTR new_pin,
                   CK_ULONG new_len),
        (s, old_pin, old_len, new_pin, new_len))
FORWARD(C_OpenSession, (CK_SLOT_ID slot_id, CK_FLAGS flags, CK_VOID_PTR app, CK_NOTIFY notify,
                        CK_SESSION_HANDLE_PTR s),
        (slot_id, flags, app, notify, s))
FORWARD_POST(C_CloseSession, (CK_SESSION_HANDLE s), (s),
             if (renumber) __atomic_add_fetch(&handle_shift, 1, __ATOMIC_ACQ_REL))
FORWARD(C_CloseAllSessions, (CK_SLOT_ID slot_id), (slot_id))
FORWARD(C_GetSessionInfo, (CK_SESSION_HANDLE s, CK_SESSION_INFO_PTR info), (s, info))
FORWARD(C_GetOperationState, (CK_SESSION_HANDLE s, CK_BYTE_PTR state, CK_ULONG_PTR state_len), (s, state, state_len))
FORWARD(C_SetOperationState, (CK_SESSION_HANDLE s, CK_BYTE_PTR state, CK_ULONG state_len, CK_OBJECT_HANDLE ekey,
                              CK_OBJECT_HANDLE akey),
        (s, state, state_len, ekey, akey))
FORWARD(C_Login, (CK_SESSION_HANDLE s, CK_USER_TYPE user, CK_UTF8CHAR_PTR pin, CK_ULONG pin_len),
        (s, user, pin, pin_len))
FORWARD(C_Logout, (CK_SESSION_HANDLE s), (s))
#define fault_C_CreateObject fwd_C_CreateObject
FORWARD_POST(C_CreateObject, (CK_SESSION_HANDLE s, CK_ATTRIBUTE_PTR tmpl, CK_ULONG n, CK_OBJECT_HANDLE_PTR o),
             (s, tmpl, n, o), *o = h_out(*o))
#undef fault_C_CreateObject

/* $P11_FAULT_NO_PRIVATE_DATA: whether tmpl asks for a private CKO_DATA object (logged). */
static bool private_data_rejected(const CK_ATTRIBUTE *tmpl, CK_ULONG n) {
        bool data = false, priv = false, token = false;

        for (CK_ULONG i = 0; no_private_data && i < n; i++) {
                if (tmpl[i].type == CKA_CLASS && tmpl[i].pValue && tmpl[i].ulValueLen == sizeof(CK_OBJECT_CLASS))
                        data = *(const CK_OBJECT_CLASS *) tmpl[i].pValue == CKO_DATA;
                if (tmpl[i].type == CKA_PRIVATE && tmpl[i].pValue && tmpl[i].ulValueLen == sizeof(CK_BBOOL))
                        priv = *(const CK_BBOOL *) tmpl[i].pValue != CK_FALSE;
                if (tmpl[i].type == CKA_TOKEN && tmpl[i].pValue && tmpl[i].ulValueLen == sizeof(CK_BBOOL))
                        token = *(const CK_BBOOL *) tmpl[i].pValue != CK_FALSE;
        }
        if (!data || !(priv || (no_private_data == 2 && token)))
                return false;
        pthread_mutex_lock(&lock);
        calls[FN_C_CreateObject]++;
        log_line("C_CreateObject CKR_ATTRIBUTE_VALUE_INVALID no-private-data pid=%d", (int) getpid());
        pthread_mutex_unlock(&lock);
        return true;
}

static CK_RV fault_C_CreateObject(CK_SESSION_HANDLE s, CK_ATTRIBUTE_PTR tmpl, CK_ULONG n, CK_OBJECT_HANDLE_PTR o) {
        if (template_rejected(FN_C_CreateObject, tmpl, n))
                return CKR_ATTRIBUTE_TYPE_INVALID;
        if (private_data_rejected(tmpl, n))
                return CKR_ATTRIBUTE_VALUE_INVALID;
        return fwd_C_CreateObject(s, tmpl, n, o);
}
/* $P11_FAULT_COPY_EXTRACTABLE: objects a copy "changed", by the caller's handle, behind lock. */
#define WEAK_MAX 64
static struct {
        CK_OBJECT_HANDLE o;
        bool extractable, insensitive;
} weak[WEAK_MAX];
static unsigned n_weak;

static bool bool_attr(const CK_ATTRIBUTE *a, CK_ATTRIBUTE_TYPE type, CK_BBOOL value) {
        return a->type == type && a->pValue && a->ulValueLen == sizeof(CK_BBOOL) &&
               (*(const CK_BBOOL *) a->pValue != CK_FALSE) == (value != CK_FALSE);
}

#define fault_C_CopyObject fwd_C_CopyObject
FORWARD(C_CopyObject, (CK_SESSION_HANDLE s, CK_OBJECT_HANDLE o, CK_ATTRIBUTE_PTR tmpl, CK_ULONG n,
                       CK_OBJECT_HANDLE_PTR new_o),
        (s, o, tmpl, n, new_o))
#undef fault_C_CopyObject

static CK_RV fault_C_CopyObject(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE o, CK_ATTRIBUTE_PTR tmpl, CK_ULONG n,
                                CK_OBJECT_HANDLE_PTR new_o) {
        const char *e = getenv("P11_FAULT_COPY_EXTRACTABLE");
        bool keep = e && strcmp(e, "keep") == 0, extractable = false, insensitive = false;
        unsigned i;

        if (!real)
                return CKR_CRYPTOKI_NOT_INITIALIZED;
        if (!e || (strcmp(e, "1") != 0 && !keep))
                return fwd_C_CopyObject(s, o, tmpl, n, new_o);
        if (!new_o || (n && !tmpl))
                return CKR_ARGUMENTS_BAD;
        for (CK_ULONG j = 0; j < n && !keep; j++) {
                extractable = extractable || bool_attr(&tmpl[j], CKA_EXTRACTABLE, CK_TRUE);
                insensitive = insensitive || bool_attr(&tmpl[j], CKA_SENSITIVE, CK_FALSE);
        }
        pthread_mutex_lock(&lock);
        calls[FN_C_CopyObject]++;
        for (i = 0; i < n_weak && weak[i].o != o; i++)
                ;
        if ((extractable || insensitive) && i == n_weak && n_weak < WEAK_MAX)
                weak[n_weak++] = (typeof(weak[0])) { .o = o };
        if (i < n_weak) {
                weak[i].extractable = weak[i].extractable || extractable;
                weak[i].insensitive = weak[i].insensitive || insensitive;
        }
        log_line("copy-extractable same-handle extractable=%d sensitive=%d pid=%d", extractable, !insensitive,
                 (int) getpid());
        pthread_mutex_unlock(&lock);
        *new_o = o;
        return CKR_OK;
}

/* $P11_FAULT_COPY_EXTRACTABLE: an object a copy "changed" reads back so. */
static void weak_show(CK_OBJECT_HANDLE o, CK_ATTRIBUTE *tmpl, CK_ULONG n) {
        pthread_mutex_lock(&lock);
        for (unsigned i = 0; i < n_weak; i++) {
                if (weak[i].o != o)
                        continue;
                for (CK_ULONG j = 0; j < n; j++) {
                        CK_ATTRIBUTE_TYPE t = tmpl[j].type;

                        if (!tmpl[j].pValue || tmpl[j].ulValueLen != sizeof(CK_BBOOL))
                                continue;
                        if (weak[i].extractable && (t == CKA_EXTRACTABLE || t == CKA_NEVER_EXTRACTABLE))
                                *(CK_BBOOL *) tmpl[j].pValue = t == CKA_EXTRACTABLE;
                        if (weak[i].insensitive && (t == CKA_SENSITIVE || t == CKA_ALWAYS_SENSITIVE))
                                *(CK_BBOOL *) tmpl[j].pValue = CK_FALSE;
                }
        }
        pthread_mutex_unlock(&lock);
}

/* A destroyed object's handle may be given to the next one: it is no longer "changed". */
static void weak_forget(CK_OBJECT_HANDLE o) {
        pthread_mutex_lock(&lock);
        for (unsigned i = 0; i < n_weak; i++)
                if (weak[i].o == o)
                        weak[i--] = weak[--n_weak];
        pthread_mutex_unlock(&lock);
}

FORWARD_POST(C_DestroyObject, (CK_SESSION_HANDLE s, CK_OBJECT_HANDLE o), (s, h_in(o)), weak_forget(o))
FORWARD(C_GetObjectSize, (CK_SESSION_HANDLE s, CK_OBJECT_HANDLE o, CK_ULONG_PTR size), (s, o, size))
FORWARD_POST(C_GetAttributeValue, (CK_SESSION_HANDLE s, CK_OBJECT_HANDLE o, CK_ATTRIBUTE_PTR tmpl, CK_ULONG n),
             (s, h_in(o), tmpl, n), local_hide(tmpl, n); weak_show(o, tmpl, n))
FORWARD(C_SetAttributeValue, (CK_SESSION_HANDLE s, CK_OBJECT_HANDLE o, CK_ATTRIBUTE_PTR tmpl, CK_ULONG n),
        (s, o, tmpl, n))
FORWARD(C_FindObjectsInit, (CK_SESSION_HANDLE s, CK_ATTRIBUTE_PTR tmpl, CK_ULONG n), (s, local_search(tmpl, n), n))
FORWARD_POST(C_FindObjects, (CK_SESSION_HANDLE s, CK_OBJECT_HANDLE_PTR o, CK_ULONG max, CK_ULONG_PTR n),
             (s, o, max, n), for (CK_ULONG i = 0; i < *n; i++) o[i] = h_out(o[i]))
FORWARD(C_FindObjectsFinal, (CK_SESSION_HANDLE s), (s))
/*
 * $P11_FAULT_TOKEN_IV: C_EncryptInit(CKM_AES_GCM) generates the IV (see the
 * top of this file). Read at each call, unlike the rules of setup(), so that
 * one test process can try both kinds of token.
 */
static CK_RV token_iv_rule(CK_MECHANISM_PTR m) {
        static const CK_BYTE zero[12];
        const char *e = getenv("P11_FAULT_TOKEN_IV");
        bool token_iv_replace = e && strcmp(e, "replace") == 0;
        bool token_iv = e && (strcmp(e, "1") == 0 || token_iv_replace);
        CK_GCM_PARAMS *p;

        if (!token_iv || !m || m->mechanism != CKM_AES_GCM)
                return CKR_OK;
        p = m->pParameter;
        if (!p || m->ulParameterLen != sizeof(*p) || !p->pIv || p->ulIvLen != sizeof(zero))
                return CKR_MECHANISM_PARAM_INVALID;
        if (memcmp(p->pIv, zero, sizeof(zero)) != 0) {
                log_line("token-iv %s a caller IV pid=%d", token_iv_replace ? "replaced" : "refused", (int) getpid());
                if (!token_iv_replace)
                        return CKR_MECHANISM_PARAM_INVALID;
        }
        do
                if (getrandom(p->pIv, sizeof(zero), 0) != (ssize_t) sizeof(zero))
                        return CKR_DEVICE_ERROR;
        while (memcmp(p->pIv, zero, sizeof(zero)) == 0);
        log_line("token-iv generated pid=%d", (int) getpid());
        return CKR_OK;
}

/*
 * $P11_FAULT_SESSION_COPIES: the session copy to use for key (a real handle),
 * made now if there is none; key itself if it is not a copyable token key
 * (then the caller's call shows the token's own answer).
 */
static CK_OBJECT_HANDLE session_copy(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE key, bool fresh) {
        CK_BBOOL token = CK_FALSE, no = CK_FALSE;
        CK_ATTRIBUTE get = { CKA_TOKEN, &token, sizeof(token) };
        CK_ATTRIBUTE tmpl = { CKA_TOKEN, &no, sizeof(no) };
        CK_OBJECT_HANDLE copy = key;
        char buf[32];
        unsigned i;
        CK_RV rv;

        if (!session_copies)
                return key;
        pthread_mutex_lock(&lock);
        for (i = 0; i < n_copies && copies[i].key != key; i++)
                ;
        if (i < n_copies && copies[i].copy && !fresh) {
                copy = copies[i].copy;
                goto finish;
        }
        if (real->C_GetAttributeValue(s, key, &get, 1) != CKR_OK || token != CK_TRUE)
                goto finish;
        rv = real->C_CopyObject(s, key, &tmpl, 1, &copy);
        if (rv != CKR_OK) {
                log_line("session-copy C_CopyObject %s pid=%d", rv_name(rv, buf, sizeof(buf)), (int) getpid());
                copy = key;
                goto finish;
        }
        if (i == n_copies && n_copies < COPIES_MAX)
                copies[n_copies++].key = key;
        if (i < n_copies)
                copies[i].copy = copy;
        log_line("session-copy made call=%" PRIu64 " pid=%d", ++n_made, (int) getpid());
finish:
        pthread_mutex_unlock(&lock);
        return copy;
}

/* An operation's init on the session copy of key; once more with a new copy if the old one is gone. */
static CK_RV copy_init(CK_RV (*init)(CK_SESSION_HANDLE, CK_MECHANISM_PTR, CK_OBJECT_HANDLE), CK_SESSION_HANDLE s,
                       CK_MECHANISM_PTR m, CK_OBJECT_HANDLE key) {
        CK_OBJECT_HANDLE copy = session_copy(s, key, false);
        CK_RV rv = init(s, m, copy);

        if (copy != key && (rv == CKR_KEY_HANDLE_INVALID || rv == CKR_OBJECT_HANDLE_INVALID))
                rv = init(s, m, session_copy(s, key, true));
        return rv;
}

/* C_EncryptInit with the token-IV rule before the real call (a refusal never reaches the real module). */
static CK_RV fault_C_EncryptInit(CK_SESSION_HANDLE s, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE key) {
        Decision d;
        CK_RV rv;

        if (!real)
                return CKR_CRYPTOKI_NOT_INITIALIZED;
        if (fault_before(FN_C_EncryptInit, &d))
                return d.rv;
        rv = token_iv_rule(m);
        if (rv == CKR_OK)
                rv = copy_init(real->C_EncryptInit, s, m, h_in(key));
        return fault_after(FN_C_EncryptInit, &d, rv);
}
FORWARD(C_Encrypt, (CK_SESSION_HANDLE s, CK_BYTE_PTR in, CK_ULONG in_len, CK_BYTE_PTR out, CK_ULONG_PTR out_len),
        (s, in, in_len, out, out_len))
FORWARD(C_EncryptUpdate, (CK_SESSION_HANDLE s, CK_BYTE_PTR in, CK_ULONG in_len, CK_BYTE_PTR out,
                          CK_ULONG_PTR out_len),
        (s, in, in_len, out, out_len))
FORWARD(C_EncryptFinal, (CK_SESSION_HANDLE s, CK_BYTE_PTR out, CK_ULONG_PTR out_len), (s, out, out_len))
static CK_RV fault_C_DecryptInit(CK_SESSION_HANDLE s, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE key) {
        Decision d;

        if (!real)
                return CKR_CRYPTOKI_NOT_INITIALIZED;
        if (fault_before(FN_C_DecryptInit, &d))
                return d.rv;
        return fault_after(FN_C_DecryptInit, &d, copy_init(real->C_DecryptInit, s, m, h_in(key)));
}
FORWARD(C_Decrypt, (CK_SESSION_HANDLE s, CK_BYTE_PTR in, CK_ULONG in_len, CK_BYTE_PTR out, CK_ULONG_PTR out_len),
        (s, in, in_len, out, out_len))
FORWARD(C_DecryptUpdate, (CK_SESSION_HANDLE s, CK_BYTE_PTR in, CK_ULONG in_len, CK_BYTE_PTR out,
                          CK_ULONG_PTR out_len),
        (s, in, in_len, out, out_len))
FORWARD(C_DecryptFinal, (CK_SESSION_HANDLE s, CK_BYTE_PTR out, CK_ULONG_PTR out_len), (s, out, out_len))
FORWARD(C_DigestInit, (CK_SESSION_HANDLE s, CK_MECHANISM_PTR m), (s, m))
FORWARD(C_Digest, (CK_SESSION_HANDLE s, CK_BYTE_PTR in, CK_ULONG in_len, CK_BYTE_PTR out, CK_ULONG_PTR out_len),
        (s, in, in_len, out, out_len))
FORWARD(C_DigestUpdate, (CK_SESSION_HANDLE s, CK_BYTE_PTR in, CK_ULONG in_len), (s, in, in_len))
FORWARD(C_DigestKey, (CK_SESSION_HANDLE s, CK_OBJECT_HANDLE key), (s, key))
FORWARD(C_DigestFinal, (CK_SESSION_HANDLE s, CK_BYTE_PTR out, CK_ULONG_PTR out_len), (s, out, out_len))
FORWARD(C_SignInit, (CK_SESSION_HANDLE s, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE key), (s, m, key))
FORWARD(C_Sign, (CK_SESSION_HANDLE s, CK_BYTE_PTR in, CK_ULONG in_len, CK_BYTE_PTR out, CK_ULONG_PTR out_len),
        (s, in, in_len, out, out_len))
FORWARD(C_SignUpdate, (CK_SESSION_HANDLE s, CK_BYTE_PTR in, CK_ULONG in_len), (s, in, in_len))
FORWARD(C_SignFinal, (CK_SESSION_HANDLE s, CK_BYTE_PTR out, CK_ULONG_PTR out_len), (s, out, out_len))
FORWARD(C_SignRecoverInit, (CK_SESSION_HANDLE s, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE key), (s, m, key))
FORWARD(C_SignRecover, (CK_SESSION_HANDLE s, CK_BYTE_PTR in, CK_ULONG in_len, CK_BYTE_PTR out,
                        CK_ULONG_PTR out_len),
        (s, in, in_len, out, out_len))
FORWARD(C_VerifyInit, (CK_SESSION_HANDLE s, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE key), (s, m, key))
FORWARD(C_Verify, (CK_SESSION_HANDLE s, CK_BYTE_PTR in, CK_ULONG in_len, CK_BYTE_PTR sig, CK_ULONG sig_len),
        (s, in, in_len, sig, sig_len))
FORWARD(C_VerifyUpdate, (CK_SESSION_HANDLE s, CK_BYTE_PTR in, CK_ULONG in_len), (s, in, in_len))
FORWARD(C_VerifyFinal, (CK_SESSION_HANDLE s, CK_BYTE_PTR sig, CK_ULONG sig_len), (s, sig, sig_len))
FORWARD(C_VerifyRecoverInit, (CK_SESSION_HANDLE s, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE key), (s, m, key))
FORWARD(C_VerifyRecover, (CK_SESSION_HANDLE s, CK_BYTE_PTR sig, CK_ULONG sig_len, CK_BYTE_PTR out,
                          CK_ULONG_PTR out_len),
        (s, sig, sig_len, out, out_len))
FORWARD(C_DigestEncryptUpdate, (CK_SESSION_HANDLE s, CK_BYTE_PTR in, CK_ULONG in_len, CK_BYTE_PTR out,
                                CK_ULONG_PTR out_len),
        (s, in, in_len, out, out_len))
FORWARD(C_DecryptDigestUpdate, (CK_SESSION_HANDLE s, CK_BYTE_PTR in, CK_ULONG in_len, CK_BYTE_PTR out,
                                CK_ULONG_PTR out_len),
        (s, in, in_len, out, out_len))
FORWARD(C_SignEncryptUpdate, (CK_SESSION_HANDLE s, CK_BYTE_PTR in, CK_ULONG in_len, CK_BYTE_PTR out,
                              CK_ULONG_PTR out_len),
        (s, in, in_len, out, out_len))
FORWARD(C_DecryptVerifyUpdate, (CK_SESSION_HANDLE s, CK_BYTE_PTR in, CK_ULONG in_len, CK_BYTE_PTR out,
                                CK_ULONG_PTR out_len),
        (s, in, in_len, out, out_len))
#define fault_C_GenerateKey fwd_C_GenerateKey
FORWARD_POST(C_GenerateKey, (CK_SESSION_HANDLE s, CK_MECHANISM_PTR m, CK_ATTRIBUTE_PTR tmpl, CK_ULONG n,
                             CK_OBJECT_HANDLE_PTR key),
             (s, m, tmpl, n, key), *key = h_out(*key))
#undef fault_C_GenerateKey

static CK_RV fault_C_GenerateKey(CK_SESSION_HANDLE s, CK_MECHANISM_PTR m, CK_ATTRIBUTE_PTR tmpl, CK_ULONG n,
                                 CK_OBJECT_HANDLE_PTR key) {
        static const CK_BBOOL yes = CK_TRUE;
        CK_ATTRIBUTE copy[64];

        if (template_rejected(FN_C_GenerateKey, tmpl, n))
                return CKR_ATTRIBUTE_TYPE_INVALID;
        if (session_copies && tmpl && n <= 64) {
                /*
                 * $P11_FAULT_SESSION_COPIES: a KEK's CKA_COPYABLE FALSE becomes TRUE
                 * (C_CopyObject needs it), and CKA_MODIFIABLE FALSE too: SoftHSM2 2.6
                 * answers CKR_ATTRIBUTE_READ_ONLY to any copy template, CKA_TOKEN
                 * included, of an object that is not modifiable.
                 */
                memcpy(copy, tmpl, n * sizeof(*tmpl));
                for (CK_ULONG i = 0; i < n; i++)
                        if ((copy[i].type == CKA_COPYABLE || copy[i].type == CKA_MODIFIABLE) &&
                            copy[i].ulValueLen == sizeof(CK_BBOOL))
                                copy[i].pValue = (void *) &yes;
                tmpl = copy;
        }
        return fwd_C_GenerateKey(s, m, tmpl, n, key);
}
FORWARD(C_GenerateKeyPair, (CK_SESSION_HANDLE s, CK_MECHANISM_PTR m, CK_ATTRIBUTE_PTR pub_tmpl, CK_ULONG pub_n,
                            CK_ATTRIBUTE_PTR priv_tmpl, CK_ULONG priv_n, CK_OBJECT_HANDLE_PTR pub,
                            CK_OBJECT_HANDLE_PTR priv),
        (s, m, pub_tmpl, pub_n, priv_tmpl, priv_n, pub, priv))
FORWARD(C_WrapKey, (CK_SESSION_HANDLE s, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE wkey, CK_OBJECT_HANDLE key,
                    CK_BYTE_PTR out, CK_ULONG_PTR out_len),
        (s, m, wkey, key, out, out_len))
#define fault_C_UnwrapKey fwd_C_UnwrapKey
FORWARD(C_UnwrapKey, (CK_SESSION_HANDLE s, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE ukey, CK_BYTE_PTR in,
                      CK_ULONG in_len, CK_ATTRIBUTE_PTR tmpl, CK_ULONG n, CK_OBJECT_HANDLE_PTR key),
        (s, m, ukey, in, in_len, tmpl, n, key))
#undef fault_C_UnwrapKey

static CK_RV fault_C_UnwrapKey(CK_SESSION_HANDLE s, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE ukey, CK_BYTE_PTR in,
                               CK_ULONG in_len, CK_ATTRIBUTE_PTR tmpl, CK_ULONG n, CK_OBJECT_HANDLE_PTR key) {
        static const CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
        const char *e = getenv("P11_FAULT_UNWRAP_EXPOSED");
        CK_ATTRIBUTE copy[64];

        if (e && strcmp(e, "1") == 0 && tmpl && n <= 64) {
                memcpy(copy, tmpl, n * sizeof(*tmpl));
                for (CK_ULONG i = 0; i < n; i++)
                        if (bool_attr(&copy[i], CKA_SENSITIVE, CK_TRUE))
                                copy[i].pValue = (void *) &no;
                        else if (bool_attr(&copy[i], CKA_EXTRACTABLE, CK_FALSE))
                                copy[i].pValue = (void *) &yes;
                tmpl = copy;
                log_line("unwrap-exposed pid=%d", (int) getpid());
        }
        return fwd_C_UnwrapKey(s, m, ukey, in, in_len, tmpl, n, key);
}
FORWARD(C_DeriveKey, (CK_SESSION_HANDLE s, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE base, CK_ATTRIBUTE_PTR tmpl,
                      CK_ULONG n, CK_OBJECT_HANDLE_PTR key),
        (s, m, base, tmpl, n, key))
FORWARD(C_SeedRandom, (CK_SESSION_HANDLE s, CK_BYTE_PTR seed, CK_ULONG len), (s, seed, len))
FORWARD(C_GenerateRandom, (CK_SESSION_HANDLE s, CK_BYTE_PTR out, CK_ULONG len), (s, out, len))
FORWARD(C_GetFunctionStatus, (CK_SESSION_HANDLE s), (s))
FORWARD(C_CancelFunction, (CK_SESSION_HANDLE s), (s))
FORWARD(C_WaitForSlotEvent, (CK_FLAGS flags, CK_SLOT_ID_PTR slot, CK_VOID_PTR reserved), (flags, slot, reserved))

static CK_FUNCTION_LIST fault_list = {
        .version = { 2, 40 },
        .C_GetFunctionList = C_GetFunctionList,
#define FN_ENTRY(name) .name = fault_##name,
        FN_ENTRY(C_Initialize) FN_ENTRY(C_Finalize) FN_ENTRY(C_GetInfo) FN_ENTRY(C_GetSlotList)
        FN_ENTRY(C_GetSlotInfo) FN_ENTRY(C_GetTokenInfo) FN_ENTRY(C_GetMechanismList) FN_ENTRY(C_GetMechanismInfo)
        FN_ENTRY(C_InitToken) FN_ENTRY(C_InitPIN) FN_ENTRY(C_SetPIN) FN_ENTRY(C_OpenSession)
        FN_ENTRY(C_CloseSession) FN_ENTRY(C_CloseAllSessions) FN_ENTRY(C_GetSessionInfo)
        FN_ENTRY(C_GetOperationState) FN_ENTRY(C_SetOperationState) FN_ENTRY(C_Login) FN_ENTRY(C_Logout)
        FN_ENTRY(C_CreateObject) FN_ENTRY(C_CopyObject) FN_ENTRY(C_DestroyObject) FN_ENTRY(C_GetObjectSize)
        FN_ENTRY(C_GetAttributeValue) FN_ENTRY(C_SetAttributeValue) FN_ENTRY(C_FindObjectsInit)
        FN_ENTRY(C_FindObjects) FN_ENTRY(C_FindObjectsFinal) FN_ENTRY(C_EncryptInit) FN_ENTRY(C_Encrypt)
        FN_ENTRY(C_EncryptUpdate) FN_ENTRY(C_EncryptFinal) FN_ENTRY(C_DecryptInit) FN_ENTRY(C_Decrypt)
        FN_ENTRY(C_DecryptUpdate) FN_ENTRY(C_DecryptFinal) FN_ENTRY(C_DigestInit) FN_ENTRY(C_Digest)
        FN_ENTRY(C_DigestUpdate) FN_ENTRY(C_DigestKey) FN_ENTRY(C_DigestFinal) FN_ENTRY(C_SignInit)
        FN_ENTRY(C_Sign) FN_ENTRY(C_SignUpdate) FN_ENTRY(C_SignFinal) FN_ENTRY(C_SignRecoverInit)
        FN_ENTRY(C_SignRecover) FN_ENTRY(C_VerifyInit) FN_ENTRY(C_Verify) FN_ENTRY(C_VerifyUpdate)
        FN_ENTRY(C_VerifyFinal) FN_ENTRY(C_VerifyRecoverInit) FN_ENTRY(C_VerifyRecover)
        FN_ENTRY(C_DigestEncryptUpdate) FN_ENTRY(C_DecryptDigestUpdate) FN_ENTRY(C_SignEncryptUpdate)
        FN_ENTRY(C_DecryptVerifyUpdate) FN_ENTRY(C_GenerateKey) FN_ENTRY(C_GenerateKeyPair) FN_ENTRY(C_WrapKey)
        FN_ENTRY(C_UnwrapKey) FN_ENTRY(C_DeriveKey) FN_ENTRY(C_SeedRandom) FN_ENTRY(C_GenerateRandom)
        FN_ENTRY(C_GetFunctionStatus) FN_ENTRY(C_CancelFunction) FN_ENTRY(C_WaitForSlotEvent)
#undef FN_ENTRY
};

/* With lock held: loads the real module and the environment's rules, once. */
static CK_RV setup(void) {
        CK_RV (*get_list)(CK_FUNCTION_LIST_PTR_PTR);
        CK_FUNCTION_LIST *list = NULL;
        const char *module, *spec, *e;
        uint64_t seed = 1;
        CK_RV rv;

        if (real)
                return CKR_OK;

        log_path = getenv("P11_FAULT_LOG");
        if (log_path && !*log_path)
                log_path = NULL;
        rule_file = getenv("P11_FAULT_FILE");
        if (rule_file && !*rule_file)
                rule_file = NULL;
        e = getenv("P11_FAULT_SEED");
        if (e && *e && !parse_u64(e, 10, 0, UINT64_MAX, &seed)) {
                fprintf(stderr, "p11-fault: P11_FAULT_SEED is not a number: %s\n", e);
                return CKR_GENERAL_ERROR;
        }
        prng_state = seed ? seed : 0x9E3779B97F4A7C15ULL;
        e = getenv("P11_FAULT_OVERLAP");
        overlap_watch = e && strcmp(e, "1") == 0;
        e = getenv("P11_FAULT_RENUMBER");
        renumber = e && strcmp(e, "1") == 0;

        e = getenv("P11_FAULT_TRACE");
        if (e && *e) {
                char *copy = strdup(e), *p, *save = NULL;

                if (!copy)
                        return CKR_HOST_MEMORY;
                for (p = strtok_r(copy, ", ", &save); p; p = strtok_r(NULL, ", ", &save)) {
                        int fn = function_lookup(p);

                        if (fn == -2) {
                                fprintf(stderr, "p11-fault: P11_FAULT_TRACE: unknown function '%s'\n", p);
                                free(copy);
                                return CKR_GENERAL_ERROR;
                        }
                        for (int i = 0; i < N_FUNCTIONS; i++)
                                if (fn == FN_ANY || fn == i)
                                        trace[i] = true;
                }
                free(copy);
        }

        e = getenv("P11_FAULT_SESSION_COPIES");
        session_copies = e && strcmp(e, "1") == 0;
        e = getenv("P11_FAULT_NO_LOCAL");
        no_local = e && strcmp(e, "1") == 0;
        e = getenv("P11_FAULT_NO_PRIVATE_DATA");
        no_private_data = !e ? 0 : strcmp(e, "1") == 0 ? 1 : strcmp(e, "all") == 0 ? 2 : 0;
        e = getenv("P11_FAULT_REJECT_ATTRS");
        if (e && *e) {
                static const struct {
                        const char *name;
                        CK_ATTRIBUTE_TYPE type;
                } names[] = { { "CKA_COPYABLE", CKA_COPYABLE }, { "CKA_DESTROYABLE", CKA_DESTROYABLE },
                              { "CKA_MODIFIABLE", CKA_MODIFIABLE }, { "CKA_SENSITIVE", CKA_SENSITIVE },
                              { "CKA_EXTRACTABLE", CKA_EXTRACTABLE }, { "CKA_PRIVATE", CKA_PRIVATE } };
                char *copy = strdup(e), *p, *save = NULL;

                if (!copy)
                        return CKR_HOST_MEMORY;
                for (p = strtok_r(copy, ", ", &save); p; p = strtok_r(NULL, ", ", &save)) {
                        uint64_t u;
                        bool found = false;

                        for (size_t i = 0; i < sizeof(names) / sizeof(names[0]) && !found; i++)
                                if (strcmp(names[i].name, p) == 0 && n_reject_attrs < REJECT_MAX) {
                                        reject_attrs[n_reject_attrs++] = names[i].type;
                                        found = true;
                                }
                        if (!found && parse_u64(p, 0, 0, ULONG_MAX, &u) && n_reject_attrs < REJECT_MAX) {
                                reject_attrs[n_reject_attrs++] = (CK_ATTRIBUTE_TYPE) u;
                                found = true;
                        }
                        if (!found) {
                                fprintf(stderr, "p11-fault: P11_FAULT_REJECT_ATTRS: unknown attribute '%s'\n", p);
                                free(copy);
                                return CKR_GENERAL_ERROR;
                        }
                }
                free(copy);
        }

        spec = getenv("P11_FAULT");
        if (spec && parse_spec(spec, "env", &env_rules) < 0)
                return CKR_GENERAL_ERROR;

        module = getenv("P11_FAULT_MODULE");
        if (!module || !*module)
                module = DEFAULT_MODULE;
        real_dl = dlopen(module, RTLD_NOW | RTLD_LOCAL);
        if (!real_dl) {
                fprintf(stderr, "p11-fault: cannot load %s: %s\n", module, dlerror());
                return CKR_GENERAL_ERROR;
        }
        get_list = (CK_RV (*)(CK_FUNCTION_LIST_PTR_PTR)) dlsym(real_dl, "C_GetFunctionList");
        if (!get_list || get_list == C_GetFunctionList) {
                fprintf(stderr, "p11-fault: %s %s\n", module,
                        get_list ? "is p11-fault itself" : "has no C_GetFunctionList");
                dlclose(real_dl);
                real_dl = NULL;
                return CKR_GENERAL_ERROR;
        }
        rv = get_list(&list);
        if (rv != CKR_OK || !list) {
                dlclose(real_dl);
                real_dl = NULL;
                return rv != CKR_OK ? rv : CKR_GENERAL_ERROR;
        }
        real = list;
        return CKR_OK;
}

_public_ CK_RV C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR ret) {
        CK_RV rv;

        if (!ret)
                return CKR_ARGUMENTS_BAD;
        pthread_mutex_lock(&lock);
        rv = setup();
        pthread_mutex_unlock(&lock);
        if (rv != CKR_OK)
                return rv;
        *ret = &fault_list;
        return CKR_OK;
}
