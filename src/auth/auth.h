/*
 * auth — principals (users and applications), their roles, and bearer tokens.
 *
 * A principal has an object id (GUID) and a tenant id. Users are named by a
 * UPN (alice@contoso.com); applications by a display name and an application
 * id (GUID). Tokens are 256 random bits, handed out once and stored only as
 * SHA-256 hashes; they expire and can be revoked. Checking a token compares
 * hashes in constant time.
 *
 * Owns the tables ck_principal, ck_token, ck_meta (installation facts
 * such as the home tenant id), ck_tenant and ck_tenant_admin. Calls store/
 * and crypto/ only.
 * Thread-safety: every function may be called from any thread.
 * Ownership: a struct ck_principal returned here belongs to the caller
 * (ck_principal_free); so do returned arrays.
 */
#ifndef CK_AUTH_H
#define CK_AUTH_H

#include "base/base.h"
#include "store/store.h"

enum ck_principal_kind { CK_PRINCIPAL_USER, CK_PRINCIPAL_APP };

/* Installation-wide roles; per-tenant roles come with tenants. */
#define CK_ROLE_OPERATOR 1u

struct ck_principal {
    char object_id[37];
    char tenant_id[37];
    enum ck_principal_kind kind;
    char *upn;          /* users; NULL for apps */
    char *display_name; /* apps: their name; users: may be NULL */
    char *app_id;       /* apps; NULL for users */
    unsigned roles;
    int64_t created;
};

struct ck_token_info {
    char id[37];
    char object_id[37];
    int64_t created;
    int64_t expires;
    int64_t revoked; /* 0 when not revoked */
};

#define CK_TOKEN_MAX_TTL (366 * 86400)

ck_err ck_auth_migrate(struct ck_store *s);
/* The installation's home tenant id, created on first call. */
ck_err ck_auth_home_tenant(struct ck_store *s, char out[37]);

/* upn must look like name@domain. tenant_id NULL = home tenant. */
ck_err ck_principal_add_user(struct ck_store *s, const char *upn, const char *tenant_id,
                             unsigned roles, struct ck_principal **out);
/* app_id NULL = generate one. */
ck_err ck_principal_add_app(struct ck_store *s, const char *name, const char *app_id,
                            const char *tenant_id, unsigned roles, struct ck_principal **out);
/* ref: a UPN, an application id, an object id, or an application name. */
ck_err ck_principal_find(struct ck_store *s, const char *ref, struct ck_principal **out);
ck_err ck_principal_list(struct ck_store *s, struct ck_principal ***out, size_t *n);
/* A printable name: the UPN, else the application name. Borrowed. */
const char *ck_principal_name(const struct ck_principal *p);
void ck_principal_free(struct ck_principal *p);
void ck_principal_list_free(struct ck_principal **v, size_t n);

/* Issues a token for the principal; *token (malloc'd, NUL-terminated) is the
 * only copy of the secret: the caller shows it once and wipes it. */
ck_err ck_token_issue(struct ck_store *s, const char *object_id, int64_t ttl, char **token,
                      struct ck_token_info *info);
/* CK_OK and the principal for a valid, unexpired, unrevoked token;
 * CK_EUNAUTH otherwise (the message says which, without echoing the token). */
ck_err ck_token_check(struct ck_store *s, const char *token, struct ck_principal **out);
ck_err ck_token_revoke(struct ck_store *s, const char *id);
/* object_id NULL: every principal's. */
ck_err ck_token_list(struct ck_store *s, const char *object_id, struct ck_token_info **out,
                     size_t *n);
/* Whether the token is still valid (used at start-up to reuse a dev token). */
ck_err ck_token_valid(struct ck_store *s, const char *token, bool *valid);

/* ---------- tenants ---------- */

/* A customer organisation of the service. Its admins manage its data
 * encryption policies and mailboxes. Names: 1–64 of [A-Za-z0-9._-]. */
struct ck_tenant {
    char id[37];
    char name[65];
    int64_t created;
};

ck_err ck_tenant_create(struct ck_store *s, const char *name, const char *admin_object_id,
                        struct ck_tenant *out);
/* ref: the tenant's name (case-insensitive) or id. */
ck_err ck_tenant_find(struct ck_store *s, const char *ref, struct ck_tenant *out);
ck_err ck_tenant_list(struct ck_store *s, struct ck_tenant **out, size_t *n);
ck_err ck_tenant_add_admin(struct ck_store *s, const char *tenant_id, const char *object_id);
ck_err ck_tenant_is_admin(struct ck_store *s, const char *tenant_id, const char *object_id,
                          bool *admin);
/* The tenant's admins, sorted by name. An admin whose
 * principal no longer exists comes back with only its object id set. */
ck_err ck_tenant_admins(struct ck_store *s, const char *tenant_id, struct ck_principal ***out,
                        size_t *n);

#endif
