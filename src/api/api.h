/*
 * api — the HTTP surfaces of ckey: parse and validate, authorize, call the
 * domain, render JSON. One file per surface (admin.c for principals, tokens,
 * audit; later vault keys, ARM vaults, tenants, DEPs, mail, files, purge).
 *
 * Handlers get the calling principal from the request (set by
 * ck_api_authenticate, which the server installs as the http auth hook) and
 * the shared struct ck_api from the route context.
 *
 * Thread-safety: handlers run concurrently; struct ck_api is read-only after
 * start-up, and the store gives each thread its own connection.
 */
#ifndef CK_API_H
#define CK_API_H

#include "audit/audit.h"
#include "auth/auth.h"
#include "http/http.h"
#include "store/store.h"
#include "vault/vault.h"
#include "dep/dep.h"
#include "jobs/jobs.h"
#include "mail/mail.h"
#include "files/files.h"
#include "purge/purge.h"

struct ck_api {
    struct ck_store *store;
    struct ck_audit *audit;
    struct ck_vaults *vaults; /* NULL when the vault role is off */
    struct ck_deps *deps;     /* NULL when the service role is off */
    struct ck_mail *mail;
    struct ck_jobs *jobs;
    struct ck_files *files; /* NULL when the service role is off */
    struct ck_purges *purges;
    char home_tenant[37];
    const char *vault_suffix;  /* vault hosts are NAME.<suffix>; "vault.localhost" */
    const char *default_vault; /* for requests to a bare IP or localhost; may be NULL */
};

/* The http auth hook: "Bearer <token>" → struct ck_principal. */
ck_err ck_api_authenticate(void *api, const char *authorization, void **principal,
                           const char **name);
void ck_api_principal_free(void *principal);
/* The WWW-Authenticate challenge for this installation (malloc'd). */
char *ck_api_challenge(const struct ck_api *api);

void ck_api_register_admin(struct ck_router *r, struct ck_api *api);
/* ARM management plane: subscriptions, vaults, access policies. */
void ck_api_register_vaults(struct ck_router *r, struct ck_api *api);
/* AKV keys data plane. */
void ck_api_register_keys(struct ck_router *r, struct ck_api *api);
/* Tenants and their admins (tenants.c). */
void ck_api_register_tenants(struct ck_router *r, struct ck_api *api);
/* Data encryption policies (mail). */
void ck_api_register_deps(struct ck_router *r, struct ck_api *api);
/* A DEP as Get-DataEncryptionPolicy shows it. */
json_t *ck_api_dep_json(const struct ck_dep *d);
/* Mail users, mailboxes, items and jobs. */
void ck_api_register_mail(struct ck_router *r, struct ck_api *api);
/* Geos, sites, files and the SPO data encryption policy (files.c). */
void ck_api_register_files(struct ck_router *r, struct ck_api *api);

/* Purges, purge approvers, offboarding and the certificate signing key
 * (purge.c). */
void ck_api_register_purge(struct ck_router *r, struct ck_api *api);

/* Shared by the surfaces. */
const struct ck_principal *ck_api_caller(const struct ck_http_req *req);
/* Writes an audit record for the request; failures are logged, not returned:
 * the audit store failing must be loud but must not turn a done operation
 * into an error. */
void ck_api_audit(struct ck_api *api, const struct ck_http_req *req, const char *operation,
                  const char *target, ck_err result, const char *detail);
ck_err ck_api_require_operator(struct ck_api *api, const struct ck_http_req *req,
                               const char *operation);
json_t *ck_api_principal_json(const struct ck_principal *p);
/* Resolves {t} (a tenant's name or id) into *out: 404 "TenantNotFound" when
 * unknown. With admin_required, only the operator or an admin of the tenant
 * passes; anyone else gets 403 naming principal and tenant (audited). With
 * admin_required false any authenticated caller passes and the caller
 * checks its own rules (an end user's own mailbox). */
ck_err ck_api_tenant_access(struct ck_api *api, const struct ck_http_req *req,
                            const char *tenant_ref, bool admin_required, struct ck_tenant *out);

#endif
