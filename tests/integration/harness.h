/*
 * harness — start a real `ckey server --dev` on a free loopback port and
 * talk HTTPS to it with libcurl, or run the ckey CLI against it.
 *
 * CK_BIN (set by CMake) names the ckey binary.
 */
#ifndef CK_TEST_HARNESS_H
#define CK_TEST_HARNESS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct srv {
    char dir[256]; /* data dir */
    char url[64];  /* https://127.0.0.1:PORT */
    unsigned port;
    pid_t pid;
    char token[256]; /* operator token */
    char cacert[300];
};

struct http_result {
    long status;
    char *body; /* NUL-terminated */
    size_t body_len;
    json_t *json;  /* parsed body or NULL */
    char *headers; /* raw response headers */
};

/* Starts a server with a fresh data dir (or reuses s->dir, and s->port,
 * when reuse). */
void srv_start(struct srv *s, bool reuse);
/* The same with extra `ckey server` arguments, space-separated (NULL: none). */
void srv_start_args(struct srv *s, bool reuse, const char *extra);
/* SIGKILL, wait: a crash. */
void srv_kill(struct srv *s);
/* SIGTERM, wait; returns the exit status (or 128+signal). */
int srv_stop(struct srv *s);
void srv_cleanup(struct srv *s); /* removes the data dir */

/* One request. token NULL: no Authorization header. body NULL: none.
 * extra_header may be NULL. url_or_path: a path on s->url or a full URL. */
void http(const struct srv *s, const char *method, const char *url_or_path, const char *token,
          const char *body, size_t body_len, const char *extra_header, struct http_result *r);
void http_free(struct http_result *r);
/* Header value (case-insensitive name) from r->headers, malloc'd or NULL. */
char *http_header(const struct http_result *r, const char *name);

/* Runs `ckey <args>` with CKEY_URL/CKEY_CACERT/CKEY_TOKEN for s (token NULL
 * → the operator's). Returns the exit status; *out (out may be NULL) gets
 * stdout+stderr. */
int cli(const struct srv *s, const char *token, char **out, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Runs `ckey -o json <args>` as token (NULL: the operator's) and returns
 * the parsed answer, read after any "ckey: " progress lines (NULL when there
 * is none). Exits the test program, showing the output, when the exit
 * status is not expect. *out (out may be NULL) gets the whole output. */
json_t *cli_json_as(const struct srv *s, const char *token, char **out, int expect, const char *fmt,
                    ...) __attribute__((format(printf, 5, 6)));

/* Issues a token (malloc'd) for a principal through the CLI; id (37 bytes,
 * may be NULL) gets the token's id. */
char *token_for(const struct srv *s, const char *principal, const char *ttl, char *id);

/* A vault owner and a vault: makes the user UPN (when new) with a token
 * (into token, 256 bytes), subscription SUB owned by them (when new), and
 * vault NAME in LOCATION granting them every key permission. */
void provision_vault(const struct srv *s, const char *upn, const char *sub, const char *name,
                     const char *location, bool purge_protection, char *token);
/* The principal's object id and tenant id (37 bytes each) by its token. */
void whoami(const struct srv *s, const char *token, char *object_id, char *tenant_id);
/* Edits vault NAME's access policies (ARM accessPolicies/{op}) as the owner
 * with token: perms is a JSON list body such as "\"get\",\"wrapKey\"". */
void vault_policy(const struct srv *s, const char *token, const char *vault, const char *op,
                  const char *object_id, const char *perms);
/* Creates key NAME in vault VAULT with the AKV create body. */
void vault_key(const struct srv *s, const char *token, const char *vault, const char *name,
               const char *body);

/* Vault data-plane URL for a path: https://NAME.vault.localhost:PORT/path */
char *vault_url(const struct srv *s, const char *vault, const char *path);
/* The URI of key `name` in vault (malloc'd), as a DEP names its root keys. */
char *key_uri(const struct srv *s, const char *vault, const char *name);

/* Runs a shell command, returns exit status, *out gets its output. */
int sh(char **out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
