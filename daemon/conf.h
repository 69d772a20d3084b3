/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * kekd.conf(5): an INI file parsed with inih. Every unknown section or key and
 * every bad value is an error naming the file and line, so a typo never
 * silently falls back to a default. Required keys are checked after parsing.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "common/macro.h"

/*
 * A further token of [hsm.NAME] (docs/tokens-ha.md): the token named by [hsm]
 * itself comes first and is preferred; these follow in file order. pin_file
 * NULL: the PIN of [hsm] pin_file (one shared file), else its own file.
 */
#define CONFIG_TOKENS_MAX 7u            /* further tokens: 8 in all */
#define CONFIG_TOKEN_NAME_MAX 32u
typedef struct ConfigToken {
        char *name;             /* NAME of [hsm.NAME]: [a-z0-9_-], 1..CONFIG_TOKEN_NAME_MAX */
        char *module;           /* required */
        char *token_uri;        /* required */
        char *pin_file;         /* optional */
        bool allow_unsafe_token; /* serve from it although its keys can be copied out (development) */
} ConfigToken;

typedef struct Config {
        char *module;           /* [hsm] module: path or p11-kit module name */
        char *token_uri;        /* [hsm] token: PKCS#11 URI */
        char *pin_file;         /* [hsm] pin_file */
        unsigned sessions;      /* [hsm] sessions: HSM sessions (and threads) for batches, 1 = no threads */
        int profile;            /* [hsm] profile: mechanism profile of new key versions (HsmProfile), -1 = auto */
        char *token_name;       /* [hsm] name: the preferred token's name in status and metrics, default "primary" */
        unsigned probe_interval; /* [hsm] probe_interval, seconds: health probe of each token, default 5 */
        ConfigToken tokens[CONFIG_TOKENS_MAX]; /* [hsm.NAME] sections, in file order */
        size_t n_tokens;
        char *socket_path;      /* [server] socket */
        mode_t socket_mode;     /* [server] socket_mode, octal */
        char *socket_group;     /* [server] socket_group, optional */
        char *admin_group;      /* [access] admin_group: administrators (vault policy, grants) and officers */
        char *officer_group;    /* [access] officer_group: key officers (lifecycle) */
        size_t max_frame;       /* [server] max_frame, bytes */
        unsigned max_connections; /* [server] max_connections */
        unsigned max_connections_per_uid; /* [server] max_connections_per_uid */
        size_t max_queued_output; /* [server] max_queued_output, bytes: output held for all peers together */
        unsigned idle_timeout;  /* [server] idle_timeout, seconds: an idle connection is closed after it */
        unsigned refresh_interval; /* [keys] refresh_interval, seconds: bound on seeing other nodes' changes */
        bool allow_unsafe_token;   /* [hsm] allow_unsafe_token: start on a token whose keys can be copied out (development) */
        bool allow_unrecoverable;  /* [keys] allow_unrecoverable: wrap without purge protection (development) */
        int log_level;          /* [log] level: syslog priority */
        char *metrics_file;     /* [metrics] file: Prometheus textfile; NULL: none */
        unsigned metrics_interval; /* [metrics] interval, seconds */
        unsigned audit_interval; /* [log] audit_interval, seconds: data-plane audit counts are written this often */
        char *backup_directory;  /* [backup] directory: where backup files are written and read; NULL: none */
        char *backup_wrapping_key;   /* [backup] wrapping_key: label of the trusted wrapping key */
        char *backup_unwrapping_key; /* [backup] unwrapping_key: label of the unwrapping key */
} Config;

/*
 * Every key kekd.conf knows, and what a reload (SIGHUP) does with a changed
 * value. The parser accepts only the keys listed in config_keys[], so a key
 * cannot be added without saying how a reload treats it, and kekd warns
 * about every changed key it cannot apply.
 */
typedef enum ConfigReload {
        CONFIG_RELOAD_APPLY,   /* reload_config() in kekd.c applies the new value */
        CONFIG_RELOAD_RESTART, /* only a restart applies it: a change is warned about */
        CONFIG_RELOAD_SOCKET,  /* as RESTART, but moot while systemd passes the socket */
} ConfigReload;

typedef enum ConfigType {
        CONFIG_STRING,   /* char * */
        CONFIG_UNSIGNED, /* unsigned */
        CONFIG_SIZE,     /* size_t */
        CONFIG_MODE,     /* mode_t */
        CONFIG_BOOL,     /* bool */
        CONFIG_INT,      /* int */
} ConfigType;

typedef struct ConfigKey {
        const char *section, *name;
        ConfigReload reload;
        ConfigType type;
        size_t offset;   /* of the field in Config */
} ConfigKey;

extern const ConfigKey config_keys[];
extern const size_t config_n_keys;

/* Whether key k has different values in a and b. */
bool config_key_changed(const ConfigKey *k, const Config *a, const Config *b);
/* Whether the [hsm.NAME] sections differ (names, order or any value): only a restart applies that. */
bool config_tokens_changed(const Config *a, const Config *b);

/*
 * Parses path into a new Config. On failure returns -errno / -EINVAL and, if
 * ret_error is given, a malloc'd message "PATH:LINE: what is wrong".
 */
int config_load(const char *path, Config **ret, char **ret_error);
/* Same, from a string (for tests and fuzzing); name is used in messages. */
int config_load_string(const char *text, const char *name, Config **ret, char **ret_error);
Config *config_free(Config *c);
DEFINE_TRIVIAL_CLEANUP_FUNC(Config, config_free);
