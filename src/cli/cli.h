/*
 * cli — the ckey command line: one file per noun, a client of a running
 * server (except `ckey server` itself and offline helpers).
 *
 * Global options (anywhere on the line) and their environment variables:
 *   --url URL           CKEY_URL         default https://127.0.0.1:8443
 *   --token T           CKEY_TOKEN
 *   --token-file F      CKEY_TOKEN_FILE
 *   --cacert F          CKEY_CACERT
 *   --data-dir DIR      CKEY_DATA_DIR    DIR/operator.token and DIR/tls/cert.pem;
 *                                        ./ckey-data is used when it exists
 *   -o table|json
 * Exit status: 0 done, 1 the operation failed, 2 the command line is wrong.
 */
#ifndef CK_CLI_H
#define CK_CLI_H

#include <jansson.h>

#include "base/base.h"
#include "client/client.h"

enum cli_output { CLI_TABLE, CLI_JSON };

struct cli {
    const char *url;
    const char *token;
    const char *token_file;
    const char *cacert;
    const char *data_dir;
    enum cli_output output;
    struct ck_client *client; /* created on first use */
    char *token_buf;          /* token read from a file; wiped on exit */
};

/* Parsed arguments of one command: flags that take a value, switches, and
 * positional words. */
struct cli_args {
    const char *pos[16];
    int npos;
    const char *key[32]; /* points into argv, keylen bytes */
    size_t keylen[32];
    const char *val[32]; /* NULL for a switch */
    int nkv;
};

/* spec: comma-separated flag names, a trailing '=' when it takes a value:
 * "upn=,app=,app-id=,pem". Prints a usage error and returns false for an
 * unknown flag or a missing value. */
bool cli_parse(int argc, char **argv, const char *spec, struct cli_args *a);
const char *cli_get(const struct cli_args *a, const char *name);
bool cli_has(const struct cli_args *a, const char *name);

/* A noun's verbs: `ckey NOUN VERB ...` runs run(c, argc, argv) with the
 * words after VERB. */
struct cli_verb {
    const char *name;
    int (*run)(struct cli *c, int argc, char **argv);
};
/* Runs the verb argv[0] names; with no verb, --help, -h or help prints the
 * noun's help (to stderr with exit 2 when nothing was asked). */
int cli_dispatch(struct cli *c, int argc, char **argv, const char *noun, const char *help,
                 const struct cli_verb *verbs, size_t n);

int cli_usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Prints "ckey: <thread error message>" and returns 1. */
int cli_fail(void);
/* Calls the server and shows the answer with print; takes path (malloc'd)
 * and body (may be NULL) and frees them. Returns the exit status. */
int cli_call_show(struct cli *c, const char *method, char *path, json_t *body,
                  void (*print)(struct cli *c, json_t *resp));
/* GETs path (malloc'd; freed) and prints the answer's "value" list as a
 * table of the given columns. Returns the exit status. */
int cli_call_table(struct cli *c, char *path, const char *const *columns, size_t ncol);
/* Creates c->client (token, CA) when it is not there yet; for the streamed
 * calls of client.h. */
ck_err cli_connect(struct cli *c);
/* Calls the server; prints nothing. */
ck_err cli_call(struct cli *c, const char *method, const char *path, json_t *body, json_t **resp);
/* The same with a raw body (NULL: none) and a raw answer (*resp, optional,
 * the caller's to free); for mailbox items. */
ck_err cli_call_raw(struct cli *c, const char *method, const char *path, const uint8_t *body,
                    size_t n, const char *content_type, struct ck_buf *resp);
/* A path from fmt whose only conversions are %s, each argument
 * percent-encoded as one segment: cli_path("/tenants/%s/mailboxes/%s", t, upn).
 * malloc'd. */
char *cli_path(const char *fmt, ...);
/* The tenant a service command addresses: --tenant, else $CKEY_TENANT;
 * NULL when neither is given. */
const char *cli_tenant_arg(const struct cli_args *a);
/* A --dep value as the service takes it: "none" (or "null", "$null") is JSON
 * null, the service-managed keys; anything else a DEP id or name. */
json_t *cli_dep_value(const char *dep);
/* A progress bar on stderr, "\r[#####.....] 42% label", drawn only when
 * stderr is a terminal; cli_progress_end ends its line (if one was drawn). */
void cli_progress(const char *label, int64_t done, int64_t total);
void cli_progress_end(void);

/* The whole file (or stdin for "-") appended to out; CK_ETOOBIG over max. */
ck_err cli_read_file(const char *path, size_t max, struct ck_buf *out);
/* Writes a whole file atomically (a temporary file, fsync, rename) with
 * mode for a new file; "-" is stdout. */
ck_err cli_write_file(const char *path, const void *p, size_t n, unsigned mode);
/* Output. A column is "Header=field" (field may be a.b for nested). */
void cli_print_table(struct cli *c, json_t *rows, const char *const *columns, size_t ncol);
void cli_print_object(struct cli *c, json_t *obj, const char *const *fields, size_t nfields);
void cli_print_json(json_t *v);

int cli_server(struct cli *c, int argc, char **argv);
int cli_principal(struct cli *c, int argc, char **argv);
int cli_whoami(struct cli *c, int argc, char **argv);
int cli_token(struct cli *c, int argc, char **argv);
int cli_audit(struct cli *c, int argc, char **argv);
int cli_subscription(struct cli *c, int argc, char **argv);
int cli_vault(struct cli *c, int argc, char **argv);
int cli_key(struct cli *c, int argc, char **argv);
int cli_tenant(struct cli *c, int argc, char **argv);
int cli_dep(struct cli *c, int argc, char **argv);
int cli_mailuser(struct cli *c, int argc, char **argv);
int cli_mailbox(struct cli *c, int argc, char **argv);
int cli_job(struct cli *c, int argc, char **argv);
int cli_geo(struct cli *c, int argc, char **argv);
int cli_site(struct cli *c, int argc, char **argv);
int cli_file(struct cli *c, int argc, char **argv);
int cli_spodep(struct cli *c, int argc, char **argv);
int cli_purge(struct cli *c, int argc, char **argv);
/* `dep purge-request` and `spo-dep purge-request`: POSTs --reason and
 * --contact to path (malloc'd; freed) and prints the purge. */
int cli_purge_request(struct cli *c, char *path, const struct cli_args *a);

#endif
