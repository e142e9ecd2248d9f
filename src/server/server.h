/*
 * server — `ckey server`: configuration, first-start set-up of a development
 * data directory, wiring of store, audit, routes and the HTTPS listener, and
 * the signal loop (SIGTERM/SIGINT drain and exit).
 *
 * Development data directory (--dev --data-dir DIR), created on first start
 * and reused after:
 *   DIR/ckey.db            SQLite store (0600)
 *   DIR/master.key         32 random bytes (0600): seals key material at rest
 *   DIR/tls/cert.pem       self-signed, for localhost, *.vault.localhost,
 *   DIR/tls/key.pem          127.0.0.1 and ::1 (key 0600)
 *   DIR/operator.token     the operator's bearer token (0600), reissued when
 *                          expired or revoked
 *   DIR/availability.db    the availability keys (service role), sealed under
 *   DIR/availability.key     their own master key (0600)
 */
#ifndef CK_SERVER_H
#define CK_SERVER_H

#include "base/base.h"

struct ck_server_options {
    bool dev;
    const char *data_dir;
    const char *listen;          /* default 127.0.0.1:8443 */
    const char *tls_cert;        /* PEM file */
    const char *tls_key;         /* PEM file */
    const char *master_key_file; /* 32 raw bytes, mode 0600 */
    const char *store;           /* store URI */
    const char *role;            /* all | vault | service */
    const char *default_vault;
    const char *vault_suffix; /* vault hosts are NAME.<suffix>; default vault.localhost */
    unsigned threads;
    unsigned housekeeping_interval; /* seconds between vault housekeeping runs; 0 = 60 */
    /* Service role. */
    const char *availability_store;     /* store URI (required without --dev) */
    const char *availability_key_file;  /* 32 bytes, 0600 (required without --dev) */
    const char *vault_cacert;           /* CAs for the vaults the service calls */
    const char *vault_token_file;       /* the mail service's token for remote vaults; default:
                                           a token this server issues itself */
    const char *files_vault_token_file; /* the same for the files service */
    int64_t key_cache_ttl;              /* seconds; 0 = 300 */
    unsigned job_workers;               /* 0 = 2 */
    int64_t job_lease;                  /* seconds; 0 = 10 */
    unsigned job_throttle_ms;           /* pause between job steps; 0 = none */
    int64_t tik_cache_ttl;              /* seconds unwrapped TIKs stay cached; 0 = 3600 */
    int64_t tik_refresh_ahead;          /* refresh a TIK this long before expiry; 0 = ttl/4 */
};

/* The service principals' fixed application ids. */
#define CK_MAIL_SERVICE_APP_ID "6d61696c-0000-4000-8000-636b65790001"
#define CK_FILES_SERVICE_APP_ID "66696c65-0000-4000-8000-636b65790002"

/* Runs until SIGTERM or SIGINT; returns the process exit status. */
int ck_server_main(const struct ck_server_options *o);

#endif
