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
};

/* Runs until SIGTERM or SIGINT; returns the process exit status. */
int ck_server_main(const struct ck_server_options *o);

#endif
