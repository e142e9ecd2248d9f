/*
 * purge.c — purge records, approvers, the service signing key, documents,
 * execution, the purge job, certificates and verification (purge.h).
 *
 * Canonical JSON: jansson's compact form with sorted keys. Documents are
 * kept as the exact bytes issued, and execution compares bytes, so nothing
 * depends on two serialisations agreeing; certificates are signed over the
 * canonical form of their "certificate" object, which any jansson (or any
 * sorted-key compact serialiser of the same values) reproduces.
 */
#include "purge/internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct ck_migration purge_migrations[] = {
    {1, "CREATE TABLE ck_purge ("
        "  id TEXT PRIMARY KEY,"
        "  tenant TEXT NOT NULL,"
        "  kind TEXT NOT NULL,"
        "  target TEXT NOT NULL,"
        "  target_name TEXT NOT NULL,"
        "  stage TEXT NOT NULL,"
        "  reason TEXT NOT NULL,"
        "  contact TEXT NOT NULL,"
        "  requested_by TEXT NOT NULL,"
        "  requested_at BIGINT NOT NULL,"
        "  document TEXT,"
        "  document_id TEXT NOT NULL DEFAULT '',"
        "  issued_at BIGINT NOT NULL DEFAULT 0,"
        "  signature BLOB,"
        "  executed_by TEXT NOT NULL DEFAULT '',"
        "  executed_at BIGINT NOT NULL DEFAULT 0,"
        "  manifest TEXT,"
        "  job_id TEXT NOT NULL DEFAULT '',"
        "  certificate TEXT,"
        "  completed_at BIGINT NOT NULL DEFAULT 0,"
        "  UNIQUE (tenant, kind, target));"
        "CREATE TABLE ck_purge_approver ("
        "  tenant TEXT PRIMARY KEY,"
        "  public_key BLOB NOT NULL,"
        "  set_by TEXT NOT NULL,"
        "  set_at BIGINT NOT NULL);"
        "CREATE TABLE ck_purge_signing_key ("
        "  id INTEGER PRIMARY KEY CHECK (id = 1),"
        "  sealed BLOB NOT NULL,"
        "  public_key BLOB NOT NULL,"
        "  created BIGINT NOT NULL);"},
};

#define SIGNING_AAD "ckey purge certificate signing key"

static ck_err purge_step(void *ctx, const struct ck_job *j, int64_t *done, int64_t *total,
                         bool *finished);

/* ---------- open ---------- */

/* Loads the service signing key, making it on first use. */
static ck_err load_signing_key(struct ck_purges *p)
{
    struct ck_stmt *st;
    CK_TRY(ck_stmt_prepare(p->store, &st,
                           "SELECT sealed, public_key FROM ck_purge_signing_key WHERE id = 1", ""));
    bool row;
    ck_err rc = ck_stmt_step(st, &row);
    if (rc == CK_OK && row) {
        size_t n, pn;
        const void *sealed = ck_stmt_blob(st, 0, &n);
        const void *pub = ck_stmt_blob(st, 1, &pn);
        if (pn != 32 ||
            ck_unseal(p->master.p, SIGNING_AAD, strlen(SIGNING_AAD), sealed, n, &p->seed) != CK_OK)
            rc = ck_err_set(CK_EINTERNAL,
                            "the purge certificate signing key does not open with this "
                            "master key");
        else
            memcpy(p->pub, pub, 32);
    }
    ck_stmt_finalize(st);
    CK_TRY(rc);
    if (row)
        return CK_OK;
    struct ck_buf sealed = {0};
    CK_GUARD(ck_ed25519_keygen(p->pub, &p->seed));
    CK_GUARD(ck_seal(p->master.p, SIGNING_AAD, strlen(SIGNING_AAD), p->seed.p, p->seed.n, &sealed));
    rc = ck_store_run(p->store, NULL,
                      "INSERT INTO ck_purge_signing_key (id, sealed, public_key, created) VALUES "
                      "(1, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
                      "bbi", sealed.p, sealed.n, p->pub, (size_t)32, ck_now());
out:
    ck_buf_free(&sealed);
    ck_secret_free(&p->seed);
    /* Read back: another process may have made it first. */
    return rc == CK_OK ? load_signing_key(p) : rc;
}

ck_err ck_purges_open(const struct ck_purge_config *cfg, struct ck_purges **out)
{
    if (!cfg || !cfg->store || !cfg->availability_store || !cfg->master_key ||
        cfg->master_key->n != 32 || !cfg->deps || !cfg->mail || !cfg->files || !cfg->jobs)
        return ck_err_set(CK_EINVAL, "purge: the stores, a 32-byte master key, the DEPs, mail, "
                                     "files and the job queue are required");
    CK_TRY(ck_store_migrate(cfg->store, "purge", purge_migrations,
                            sizeof purge_migrations / sizeof *purge_migrations));
    struct ck_purges *p = ck_xcalloc(1, sizeof *p);
    p->store = cfg->store;
    p->avail = cfg->availability_store;
    p->deps = cfg->deps;
    p->mail = cfg->mail;
    p->files = cfg->files;
    p->jobs = cfg->jobs;
    p->audit = cfg->audit;
    ck_err rc = ck_secret_set(&p->master, cfg->master_key->p, 32);
    if (rc == CK_OK)
        rc = load_signing_key(p);
    if (rc != CK_OK) {
        ck_purges_close(p);
        return rc;
    }
    ck_jobs_register(p->jobs, CK_PURGE_JOB, purge_step, p);
    ck_jobs_register(p->jobs, CK_OFFBOARD_JOB, purge_offboard_step, p);
    *out = p;
    return CK_OK;
}

void ck_purges_close(struct ck_purges *p)
{
    if (!p)
        return;
    ck_secret_free(&p->master);
    ck_secret_free(&p->seed);
    free(p);
}

/* ---------- small helpers ---------- */

void purge_audit(struct ck_purges *p, const char *principal, const char *operation,
                 const char *target, const char *request_id, ck_err rc, const char *detail)
{
    if (!p->audit)
        return;
    char saved[512];
    snprintf(saved, sizeof saved, "%s", ck_err_msg());
    const char *code = ck_err_code_get(), *inner = ck_err_inner_get();
    struct ck_audit_event ev = {principal ? principal : "-",
                                operation,
                                target,
                                rc == CK_OK ? "success" : ck_err_name(rc),
                                request_id,
                                detail};
    if (ck_audit_append(p->audit, &ev) != CK_OK)
        ck_log(CK_LOG_ERROR, "audit append failed", "operation", operation, NULL);
    ck_err_set(rc, "%s", saved);
    ck_err_code(code, inner);
}

void ck_purge_fingerprint(const uint8_t pub[32], char out[CK_PURGE_FPR_LEN])
{
    uint8_t d[32];
    char hex[65];
    if (ck_sha256(pub, 32, d) != CK_OK)
        memset(d, 0, sizeof d);
    ck_hex_encode(d, sizeof d, hex);
    snprintf(out, CK_PURGE_FPR_LEN, "SHA256:%s", hex);
}

static json_t *time_json(int64_t t)
{
    if (!t)
        return json_null();
    char s[32];
    ck_time_rfc3339(t, s);
    return json_string(s);
}

/* Compact, sorted keys: the one serialisation that is signed. */
char *purge_canonical(const json_t *j)
{
    char *s = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
    if (!s)
        abort();
    return s;
}

static void hex_of(const uint8_t *p, size_t n, char *out)
{
    ck_hex_encode(p, n, out);
}

const char *ck_purge_kind_name(enum ck_purge_kind k)
{
    return k == CK_PURGE_MAIL ? "mail" : "files";
}

static const char *const stage_names[] = {"requested", "document issued", "executing", "done"};

const char *ck_purge_stage_name(enum ck_purge_stage s)
{
    return (unsigned)s < sizeof stage_names / sizeof *stage_names ? stage_names[s] : "unknown";
}

static enum ck_purge_stage stage_of(const char *s)
{
    for (size_t i = 0; i < sizeof stage_names / sizeof *stage_names; i++)
        if (strcmp(s, stage_names[i]) == 0)
            return (enum ck_purge_stage)i;
    return CK_PURGE_REQUESTED;
}

/* ---------- signing keys ---------- */

ck_err ck_purge_signing_key(struct ck_purges *p, char **pem, char fpr[CK_PURGE_FPR_LEN])
{
    if (fpr)
        ck_purge_fingerprint(p->pub, fpr);
    return pem ? ck_ed25519_public_pem(p->pub, pem) : CK_OK;
}

ck_err ck_purge_approver_get(struct ck_purges *p, const char *tenant, struct ck_purge_approver *out)
{
    memset(out, 0, sizeof *out);
    struct ck_stmt *st;
    CK_TRY(ck_stmt_prepare(p->store, &st,
                           "SELECT public_key, set_by, set_at FROM ck_purge_approver WHERE "
                           "tenant = ?",
                           "t", tenant));
    bool row;
    ck_err rc = ck_stmt_step(st, &row);
    if (rc == CK_OK && row) {
        size_t n;
        const void *pub = ck_stmt_blob(st, 0, &n);
        if (n == 32)
            memcpy(out->public_key, pub, 32);
        snprintf(out->set_by, sizeof out->set_by, "%s", ck_stmt_text(st, 1));
        out->set_at = ck_stmt_int(st, 2);
        ck_purge_fingerprint(out->public_key, out->fingerprint);
    }
    ck_stmt_finalize(st);
    CK_TRY(rc);
    if (!row) {
        ck_err_set(CK_ENOTFOUND, "the tenant has no purge approver registered");
        ck_err_code("ApproverNotFound", NULL);
        return CK_ENOTFOUND;
    }
    return CK_OK;
}

ck_err ck_purge_approver_set(struct ck_purges *p, const char *tenant, const char *pem,
                             bool as_operator, const char *by, const char *request_id,
                             struct ck_purge_approver *out)
{
    uint8_t pub[32];
    if (!pem || ck_ed25519_public_from_pem(pem, pub) != CK_OK)
        return ck_err_set(CK_EINVAL, "the approver key must be an Ed25519 public key in PEM "
                                     "(-----BEGIN PUBLIC KEY-----)");
    struct ck_purge_approver old;
    ck_err rc = ck_purge_approver_get(p, tenant, &old);
    if (rc != CK_OK && rc != CK_ENOTFOUND)
        return rc;
    bool replacing = rc == CK_OK;
    char fpr[CK_PURGE_FPR_LEN], detail[200];
    ck_purge_fingerprint(pub, fpr);
    if (replacing)
        snprintf(detail, sizeof detail, "approver key %s replaces %s", fpr, old.fingerprint);
    else
        snprintf(detail, sizeof detail, "approver key %s", fpr);
    if (replacing && !as_operator) {
        rc = ck_err_set(CK_EFORBIDDEN,
                        "the tenant's purge approver (%s) is already registered: only the "
                        "operator may change it",
                        old.fingerprint);
        ck_err_code("Forbidden", "ApproverChangeNeedsOperator");
        purge_audit(p, by, "purge.approver.set", tenant, request_id, rc, detail);
        return rc;
    }
    rc = ck_store_run(p->store, NULL,
                      "INSERT INTO ck_purge_approver (tenant, public_key, set_by, set_at) VALUES "
                      "(?, ?, ?, ?) ON CONFLICT (tenant) DO UPDATE SET public_key = "
                      "excluded.public_key, set_by = excluded.set_by, set_at = excluded.set_at",
                      "tbti", tenant, pub, sizeof pub, by, ck_now());
    purge_audit(p, by, "purge.approver.set", tenant, request_id, rc, detail);
    CK_TRY(rc);
    return ck_purge_approver_get(p, tenant, out);
}

/* ---------- purge rows ---------- */

#define PURGE_COLUMNS                                                                              \
    "id, tenant, kind, target, target_name, stage, reason, contact, requested_by, requested_at, "  \
    "document_id, issued_at, executed_by, executed_at, completed_at, job_id"

/* A ck_stmt_fill_fn: the purge from PURGE_COLUMNS. */
static ck_err purge_from_row(struct ck_stmt *st, void *elem, void *arg)
{
    (void)arg;
    struct ck_purge *out = elem;
    memset(out, 0, sizeof *out);
    snprintf(out->id, sizeof out->id, "%s", ck_stmt_text(st, 0));
    snprintf(out->tenant, sizeof out->tenant, "%s", ck_stmt_text(st, 1));
    out->kind = strcmp(ck_stmt_text(st, 2), "mail") == 0 ? CK_PURGE_MAIL : CK_PURGE_FILES;
    snprintf(out->target, sizeof out->target, "%s", ck_stmt_text(st, 3));
    snprintf(out->target_name, sizeof out->target_name, "%s", ck_stmt_text(st, 4));
    out->stage = stage_of(ck_stmt_text(st, 5));
    snprintf(out->reason, sizeof out->reason, "%s", ck_stmt_text(st, 6));
    snprintf(out->contact, sizeof out->contact, "%s", ck_stmt_text(st, 7));
    snprintf(out->requested_by, sizeof out->requested_by, "%s", ck_stmt_text(st, 8));
    out->requested_at = ck_stmt_int(st, 9);
    snprintf(out->document_id, sizeof out->document_id, "%s", ck_stmt_text(st, 10));
    out->issued_at = ck_stmt_int(st, 11);
    snprintf(out->executed_by, sizeof out->executed_by, "%s", ck_stmt_text(st, 12));
    out->executed_at = ck_stmt_int(st, 13);
    out->completed_at = ck_stmt_int(st, 14);
    snprintf(out->job_id, sizeof out->job_id, "%s", ck_stmt_text(st, 15));
    return CK_OK;
}

static void fill_percent(struct ck_purges *p, struct ck_purge *out)
{
    out->percent = out->stage == CK_PURGE_DONE ? 100 : 0;
    struct ck_job *j = NULL;
    if (out->stage == CK_PURGE_EXECUTING && *out->job_id &&
        ck_job_get(p->jobs, out->job_id, &j) == CK_OK && j->total > 0)
        out->percent = (int)(j->done * 100 / j->total);
    if (out->percent > 99 && out->stage != CK_PURGE_DONE)
        out->percent = 99;
    ck_job_free(j);
}

static ck_err no_purge(const char *id)
{
    ck_err_set(CK_ENOTFOUND, "no purge request '%s'", id);
    ck_err_code("PurgeNotFound", NULL);
    return CK_ENOTFOUND;
}

ck_err ck_purge_get(struct ck_purges *p, const char *tenant, const char *id, struct ck_purge *out)
{
    struct ck_stmt *st;
    CK_TRY(ck_stmt_prepare(p->store, &st,
                           "SELECT " PURGE_COLUMNS " FROM ck_purge WHERE id = ? AND "
                           "(? = '' OR tenant = ?)",
                           "ttt", id ? id : "", tenant ? tenant : "", tenant ? tenant : ""));
    bool row;
    ck_err rc = ck_stmt_step(st, &row);
    if (rc == CK_OK && row)
        purge_from_row(st, out, NULL);
    ck_stmt_finalize(st);
    CK_TRY(rc);
    if (!row)
        return no_purge(id ? id : "");
    fill_percent(p, out);
    return CK_OK;
}

static ck_err find_by_target(struct ck_purges *p, const char *tenant, enum ck_purge_kind kind,
                             const char *target, struct ck_purge *out, bool *found)
{
    struct ck_stmt *st;
    CK_TRY(ck_stmt_prepare(p->store, &st,
                           "SELECT " PURGE_COLUMNS " FROM ck_purge WHERE tenant = ? AND kind = ? "
                           "AND target = ?",
                           "ttt", tenant, ck_purge_kind_name(kind), target));
    ck_err rc = ck_stmt_step(st, found);
    if (rc == CK_OK && *found)
        purge_from_row(st, out, NULL);
    ck_stmt_finalize(st);
    return rc;
}

ck_err ck_purge_list(struct ck_purges *p, const char *tenant, struct ck_purge **out, size_t *n)
{
    struct ck_stmt *st;
    CK_TRY(ck_stmt_prepare(p->store, &st,
                           "SELECT " PURGE_COLUMNS " FROM ck_purge WHERE tenant = ? ORDER BY "
                           "requested_at, id",
                           "t", tenant));
    void *v;
    CK_TRY(ck_stmt_collect(st, sizeof **out, purge_from_row, NULL, NULL, &v, n));
    *out = v;
    for (size_t i = 0; i < *n; i++)
        fill_percent(p, &(*out)[i]);
    return CK_OK;
}

/* ---------- requests ---------- */

static ck_err record_request(struct ck_purges *p, const char *id, const char *tenant,
                             enum ck_purge_kind kind, const char *target, const char *target_name,
                             const char *reason, const char *contact, const char *by,
                             const char *request_id, struct ck_purge *out)
{
    ck_err rc =
        ck_store_run(p->store, NULL,
                     "INSERT INTO ck_purge (id, tenant, kind, target, target_name, stage, "
                     "reason, contact, requested_by, requested_at) VALUES "
                     "(?,?,?,?,?,?,?,?,?,?)",
                     "ttttttttti", id, tenant, ck_purge_kind_name(kind), target, target_name,
                     stage_names[CK_PURGE_REQUESTED], reason, contact, by, ck_now());
    if (rc == CK_ECONFLICT)
        rc = ck_err_set(CK_ECONFLICT, "a permanent purge of %s %s was already requested",
                        kind == CK_PURGE_MAIL ? "the DEP" : "the geo", target_name);
    purge_audit(p, by, "purge.request", id, request_id, rc, target);
    CK_TRY(rc);
    return ck_purge_get(p, tenant, id, out);
}

ck_err ck_purge_request_mail(struct ck_purges *p, const char *tenant, const char *dep_ref,
                             const char *reason, const char *contact, const char *by,
                             const char *request_id, struct ck_purge *out)
{
    struct ck_dep *dep = NULL;
    CK_TRY(ck_dep_get(p->deps, tenant, dep_ref, &dep));
    char dep_id[37], name[65];
    snprintf(dep_id, sizeof dep_id, "%s", dep->id);
    snprintf(name, sizeof name, "%s", dep->name);
    bool already = dep->purge_requested;
    ck_dep_free(dep);
    struct ck_purge prior;
    bool found;
    CK_TRY(find_by_target(p, tenant, CK_PURGE_MAIL, dep_id, &prior, &found));
    if (found)
        return ck_err_set(CK_ECONFLICT,
                          "a permanent purge of the DEP %s (%s) was already requested (purge %s)",
                          dep_id, name, prior.id);
    /* A request whose record a crash lost is recorded now, not asked twice. */
    if (!already) {
        CK_TRY(ck_dep_purge_request(p->deps, tenant, dep_id, reason, contact, request_id, &dep));
        ck_dep_free(dep);
    }
    char id[37];
    CK_TRY(ck_uuid_v4(id));
    return record_request(p, id, tenant, CK_PURGE_MAIL, dep_id, name, reason, contact, by,
                          request_id, out);
}

ck_err ck_purge_request_files(struct ck_purges *p, const char *tenant, const char *geo,
                              const char *reason, const char *contact, const char *by,
                              const char *request_id, struct ck_purge *out)
{
    struct ck_spo_dep spo;
    CK_TRY(ck_spo_get(p->files, tenant, geo, &spo));
    struct ck_purge prior;
    bool found;
    CK_TRY(find_by_target(p, tenant, CK_PURGE_FILES, spo.geo, &prior, &found));
    if (found)
        return ck_err_set(CK_ECONFLICT,
                          "a permanent purge of the files of geo %s was already requested "
                          "(purge %s)",
                          spo.geo, prior.id);
    char id[37], g[9];
    snprintf(g, sizeof g, "%s", spo.geo);
    if (spo.purge_requested) {
        snprintf(id, sizeof id, "%s", spo.purge_id);
    } else {
        CK_TRY(ck_uuid_v4(id));
        CK_TRY(ck_spo_purge_request(p->files, tenant, g, id, reason, contact, request_id, &spo));
    }
    return record_request(p, id, tenant, CK_PURGE_FILES, g, g, spo.purge_reason, spo.purge_contact,
                          by, request_id, out);
}

/* ---------- documents ---------- */

/* {"id","name"}: the approver reads the name, the id is what is unique. */
static json_t *tenant_json(struct ck_purges *p, const char *tenant)
{
    struct ck_tenant t;
    bool named = ck_tenant_find(p->store, tenant, &t) == CK_OK;
    return json_pack("{s:s,s:s}", "id", tenant, "name", named ? t.name : "");
}

/* What the purge covers as the data is now: the policy and the inventory
 * ("mailboxes" or "sites", with "totals"), merged into obj. */
static ck_err inventory(struct ck_purges *p, const struct ck_purge *pg, json_t *obj)
{
    json_t *list = json_array(), *keys = json_array();
    int64_t items = 0, bytes = 0, files = 0, chunks = 0;
    size_t n = 0;
    if (pg->kind == CK_PURGE_MAIL) {
        struct ck_dep *dep = NULL;
        CK_TRY(ck_dep_get(p->deps, pg->tenant, pg->target, &dep));
        for (int i = 0; i < 2; i++)
            json_array_append_new(keys, json_string(dep->key_uri[i]));
        json_object_set_new(
            obj, "policy",
            json_pack("{s:s,s:s,s:o}", "id", dep->id, "name", dep->name, "rootKeys", keys));
        ck_dep_free(dep);
        struct ck_mail_purge_mailbox *v = NULL;
        CK_TRY(ck_mail_purge_inventory(p->mail, pg->tenant, pg->target, &v, &n));
        for (size_t i = 0; i < n; i++) {
            json_array_append_new(list, json_pack("{s:s,s:I,s:I}", "upn", v[i].upn, "items",
                                                  (json_int_t)v[i].items, "bytes",
                                                  (json_int_t)v[i].bytes));
            items += v[i].items;
            bytes += v[i].bytes;
        }
        free(v);
        json_object_set_new(obj, "mailboxes", list);
        json_object_set_new(obj, "totals",
                            json_pack("{s:I,s:I,s:I}", "mailboxes", (json_int_t)n, "items",
                                      (json_int_t)items, "bytes", (json_int_t)bytes));
        return CK_OK;
    }
    struct ck_spo_dep spo;
    CK_TRY(ck_spo_get(p->files, pg->tenant, pg->target, &spo));
    json_array_append_new(keys, json_string(spo.primary_uri));
    json_array_append_new(keys, json_string(spo.secondary_uri));
    json_object_set_new(obj, "policy", json_pack("{s:s,s:o}", "geo", spo.geo, "rootKeys", keys));
    struct ck_files_purge_site *v = NULL;
    CK_TRY(ck_files_purge_inventory(p->files, pg->tenant, pg->target, &v, &n));
    for (size_t i = 0; i < n; i++) {
        json_array_append_new(
            list, json_pack("{s:s,s:I,s:I,s:I}", "path", v[i].path, "files", (json_int_t)v[i].files,
                            "chunks", (json_int_t)v[i].chunks, "bytes", (json_int_t)v[i].bytes));
        files += v[i].files;
        chunks += v[i].chunks;
        bytes += v[i].bytes;
    }
    free(v);
    json_object_set_new(obj, "sites", list);
    json_object_set_new(obj, "totals",
                        json_pack("{s:I,s:I,s:I,s:I}", "sites", (json_int_t)n, "files",
                                  (json_int_t)files, "chunks", (json_int_t)chunks, "bytes",
                                  (json_int_t)bytes));
    return CK_OK;
}

static ck_err stored_text(struct ck_purges *p, const char *id, const char *column, char **out)
{
    char *sql = ck_sprintf("SELECT %s FROM ck_purge WHERE id = ?", column);
    struct ck_stmt *st;
    ck_err rc = ck_stmt_prepare(p->store, &st, sql, "t", id);
    free(sql);
    CK_TRY(rc);
    bool row;
    rc = ck_stmt_step(st, &row);
    *out = rc == CK_OK && row && ck_stmt_text(st, 0) ? ck_strdup(ck_stmt_text(st, 0)) : NULL;
    ck_stmt_finalize(st);
    return rc;
}

ck_err ck_purge_document(struct ck_purges *p, const char *tenant, const char *id, bool reissue,
                         const char *request_id, char **doc)
{
    struct ck_purge pg;
    CK_TRY(ck_purge_get(p, tenant, id, &pg));
    if (pg.stage >= CK_PURGE_EXECUTING && reissue)
        return ck_err_set(CK_ECONFLICT, "the purge %s is already %s: its document cannot change",
                          pg.id, ck_purge_stage_name(pg.stage));
    if (pg.stage != CK_PURGE_REQUESTED && !reissue)
        return stored_text(p, pg.id, "document", doc);

    char doc_id[37];
    CK_TRY(ck_uuid_v4(doc_id));
    int64_t now = ck_now();
    json_t *d = json_pack("{s:s,s:i,s:s,s:s,s:s,s:o,s:s,s:s,s:o,s:o}", "type",
                          "ckey purge document", "version", 1, "documentId", doc_id, "purgeId",
                          pg.id, "kind", ck_purge_kind_name(pg.kind), "tenant",
                          tenant_json(p, pg.tenant), "reason", pg.reason, "contact", pg.contact,
                          "requestedAt", time_json(pg.requested_at), "issuedAt", time_json(now));
    ck_err rc = inventory(p, &pg, d);
    char *text = rc == CK_OK ? purge_canonical(d) : NULL;
    json_decref(d);
    int64_t changes = 0;
    if (rc == CK_OK)
        rc = ck_store_run(p->store, &changes,
                          "UPDATE ck_purge SET stage = ?, document = ?, document_id = ?, "
                          "issued_at = ? WHERE id = ? AND stage IN (?, ?)",
                          "tttitt"
                          "t",
                          stage_names[CK_PURGE_DOCUMENT_ISSUED], text, doc_id, now, pg.id,
                          stage_names[CK_PURGE_REQUESTED], stage_names[CK_PURGE_DOCUMENT_ISSUED]);
    if (rc == CK_OK && changes == 0)
        rc = ck_err_set(CK_ECONFLICT, "the purge %s started executing meanwhile", pg.id);
    purge_audit(p, NULL, "purge.document", pg.id, request_id, rc, doc_id);
    if (rc != CK_OK) {
        free(text);
        return rc;
    }
    *doc = text;
    return CK_OK;
}

/* ---------- execution ---------- */

static json_t *prints_json(const struct ck_blob_print *v, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++) {
        char head[17], sha[65];
        hex_of(v[i].head, sizeof v[i].head, head);
        hex_of(v[i].sha256, sizeof v[i].sha256, sha);
        json_array_append_new(a, json_pack("{s:s,s:b,s:I,s:s,s:s}", "what", v[i].what,
                                           "availabilityStore", v[i].availability_store, "length",
                                           (json_int_t)v[i].len, "head", head, "sha256", sha));
    }
    return a;
}

/* The fingerprints of everything the purge will destroy, and what else
 * the certificate names (TIK ids). */
static ck_err take_prints(struct ck_purges *p, const struct ck_purge *pg, json_t *manifest)
{
    struct ck_blob_print *a = NULL, *b = NULL;
    size_t na = 0, nb = 0;
    ck_err rc;
    if (pg->kind == CK_PURGE_MAIL) {
        rc = ck_dep_purge_prints(p->deps, pg->target, &a, &na);
        if (rc == CK_OK)
            rc = ck_mail_purge_prints(p->mail, pg->tenant, pg->target, &b, &nb);
    } else {
        char(*tiks)[37] = NULL;
        size_t ntik = 0;
        rc = ck_files_purge_prints(p->files, pg->tenant, pg->target, &a, &na, &tiks, &ntik);
        json_t *ids = json_array();
        for (size_t i = 0; rc == CK_OK && i < ntik; i++)
            json_array_append_new(ids, json_string(tiks[i]));
        json_object_set_new(manifest, "tikIds", ids);
        free(tiks);
    }
    if (rc == CK_OK) {
        json_t *all = prints_json(a, na);
        json_array_extend(all, prints_json(b, nb));
        json_object_set_new(manifest, "prints", all);
    }
    free(a);
    free(b);
    return rc;
}

static ck_err mark(struct ck_purges *p, const struct ck_purge *pg)
{
    if (pg->kind == CK_PURGE_MAIL)
        return ck_mail_purge_mark(p->mail, pg->tenant, pg->target, pg->id);
    return ck_files_purge_mark(p->files, pg->tenant, pg->target, pg->id);
}

ck_err ck_purge_execute(struct ck_purges *p, const char *doc, size_t doc_len, const uint8_t sig[64],
                        const char *by, const char *request_id, struct ck_purge *out)
{
    json_error_t jerr;
    json_t *d = json_loadb(doc, doc_len, 0, &jerr);
    const char *pid = json_string_value(json_object_get(d, "purgeId"));
    if (!pid) {
        json_decref(d);
        return ck_err_set(CK_EINVAL, "this is not a ckey purge document: it has no purgeId");
    }
    struct ck_purge pg;
    ck_err rc = ck_purge_get(p, NULL, pid, &pg);
    char *issued = NULL, *text = NULL;
    char audit_target[37];
    snprintf(audit_target, sizeof audit_target, "%s", rc == CK_OK ? pg.id : "-");
    if (rc == CK_OK && pg.stage >= CK_PURGE_EXECUTING)
        rc = ck_err_set(CK_ECONFLICT, "the purge %s was already executed (it is %s)", pg.id,
                        ck_purge_stage_name(pg.stage));
    if (rc == CK_OK && pg.stage == CK_PURGE_REQUESTED)
        rc = ck_err_set(CK_ECONFLICT,
                        "no document was issued for the purge %s: issue one and have it signed",
                        pg.id);
    if (rc == CK_OK)
        rc = stored_text(p, pg.id, "document", &issued);
    if (rc == CK_OK && (!issued || strlen(issued) != doc_len || memcmp(issued, doc, doc_len) != 0))
        rc = ck_err_set(CK_EINVAL,
                        "the document is not the one issued for the purge %s (document %s): it "
                        "was changed after it was issued, or a newer one was issued since",
                        pg.id, pg.document_id);
    struct ck_purge_approver ap;
    if (rc == CK_OK && (rc = ck_purge_approver_get(p, pg.tenant, &ap)) == CK_ENOTFOUND)
        rc = ck_err_set(CK_ECONFLICT,
                        "the tenant has no purge approver registered: register one with "
                        "`ckey tenant approver set`");
    if (rc == CK_OK && ck_ed25519_verify(ap.public_key, doc, doc_len, sig, 64) != CK_OK) {
        rc = ck_err_set(CK_EFORBIDDEN,
                        "the signature does not verify with the purge approver key registered "
                        "for the tenant (%s): the document was not signed by it, or was changed "
                        "after signing",
                        ap.fingerprint);
        ck_err_code("Forbidden", "PurgeSignatureInvalid");
    }
    /* The document must still describe the data. */
    json_t *now = json_object();
    if (rc == CK_OK)
        rc = inventory(p, &pg, now);
    if (rc == CK_OK &&
        (!json_equal(json_object_get(now, "totals"), json_object_get(d, "totals")) ||
         !json_equal(json_object_get(now, pg.kind == CK_PURGE_MAIL ? "mailboxes" : "sites"),
                     json_object_get(d, pg.kind == CK_PURGE_MAIL ? "mailboxes" : "sites"))))
        rc = ck_err_set(CK_ECONFLICT,
                        "the data under the purge %s changed since its document was issued: "
                        "issue a new document (`ckey purge document --reissue`) and have it "
                        "signed",
                        pg.id);
    /* What will be destroyed, fingerprinted before anything is. */
    json_t *manifest = json_object();
    if (rc == CK_OK)
        rc = take_prints(p, &pg, manifest);
    if (rc == CK_OK) {
        uint8_t dsha[32];
        char hex[65];
        ck_sha256(doc, doc_len, dsha);
        hex_of(dsha, sizeof dsha, hex);
        json_object_set_new(manifest, "documentSha256", json_string(hex));
        json_object_set_new(manifest, "approverKey", json_string(ap.fingerprint));
        json_object_set(manifest, "policy", json_object_get(now, "policy"));
        json_object_set(manifest, "totals", json_object_get(now, "totals"));
        text = purge_canonical(manifest);
    }
    bool began = false;
    if (rc == CK_OK)
        began = (rc = ck_store_begin(p->store)) == CK_OK;
    char job_id[37] = "";
    int64_t changes = 0;
    if (rc == CK_OK)
        rc = ck_store_run(p->store, &changes,
                          "UPDATE ck_purge SET stage = ?, signature = ?, executed_by = ?, "
                          "executed_at = ?, manifest = ? WHERE id = ? AND stage = ?",
                          "tbtitt"
                          "t",
                          stage_names[CK_PURGE_EXECUTING], sig, (size_t)64, by, ck_now(), text,
                          pg.id, stage_names[CK_PURGE_DOCUMENT_ISSUED]);
    if (rc == CK_OK && changes == 0)
        rc = ck_err_set(CK_ECONFLICT, "the purge %s changed meanwhile: try again", pg.id);
    if (rc == CK_OK)
        rc = ck_job_enqueue(p->jobs, CK_PURGE_JOB, pg.tenant, pg.id, job_id);
    if (rc == CK_OK)
        rc = ck_store_run(p->store, NULL, "UPDATE ck_purge SET job_id = ? WHERE id = ?", "tt",
                          job_id, pg.id);
    if (rc == CK_OK)
        rc = ck_store_commit(p->store);
    else if (began)
        ck_store_rollback(p->store);
    /* From here reads answer 410; the job marks again in case this dies. */
    if (rc == CK_OK)
        rc = mark(p, &pg);
    purge_audit(p, by, "purge.execute", audit_target, request_id, rc,
                rc == CK_OK ? json_string_value(json_object_get(manifest, "documentSha256"))
                            : NULL);
    json_decref(manifest);
    json_decref(now);
    json_decref(d);
    free(issued);
    free(text);
    CK_TRY(rc);
    return ck_purge_get(p, NULL, pg.id, out);
}

/* ---------- the job ---------- */

static ck_err load_manifest(struct ck_purges *p, const char *id, json_t **out)
{
    char *text = NULL;
    CK_TRY(stored_text(p, id, "manifest", &text));
    json_error_t e;
    *out = text ? json_loads(text, 0, &e) : NULL;
    free(text);
    if (!*out)
        return ck_err_set(CK_EINTERNAL, "the purge %s has no readable manifest", id);
    return CK_OK;
}

/* Builds, signs and stores the certificate; the purge is then done. */
static ck_err certify(struct ck_purges *p, const struct ck_purge *pg, const json_t *manifest,
                      const char *job_id)
{
    char cert_id[37], fpr[CK_PURGE_FPR_LEN];
    CK_TRY(ck_uuid_v4(cert_id));
    ck_purge_fingerprint(p->pub, fpr);
    int64_t now = ck_now();
    json_t *keys = json_array();
    size_t i;
    json_t *v;
    json_array_foreach(json_object_get(manifest, "prints"), i, v)
    {
        json_array_append_new(keys, json_pack("{s:O,s:O,s:O}", "what", json_object_get(v, "what"),
                                              "sha256", json_object_get(v, "sha256"), "length",
                                              json_object_get(v, "length")));
    }
    json_t *destroyed =
        json_pack("{s:o,s:O}", "keys", keys, "counts", json_object_get(manifest, "totals"));
    if (json_object_get(manifest, "tikIds"))
        json_object_set(destroyed, "tikIds", json_object_get(manifest, "tikIds"));
    json_t *cert = json_pack(
        "{s:s,s:i,s:s,s:s,s:o,s:s,s:O,s:s,s:s,s:o,s:s,s:O,s:O,s:s,s:o,s:o,s:o,s:o,s:s}", "type",
        "ckey purge certificate", "version", 1, "certificateId", cert_id, "purgeId", pg->id,
        "tenant", tenant_json(p, pg->tenant), "kind", ck_purge_kind_name(pg->kind), "policy",
        json_object_get(manifest, "policy"), "reason", pg->reason, "contact", pg->contact,
        "requestedAt", time_json(pg->requested_at), "documentId", pg->document_id, "documentSha256",
        json_object_get(manifest, "documentSha256"), "approverKey",
        json_object_get(manifest, "approverKey"), "executedBy", pg->executed_by, "executedAt",
        time_json(pg->executed_at), "completedAt", time_json(now), "destroyed", destroyed,
        "statement",
        json_string("Every stored copy of the keys listed was deleted, and with them every "
                    "object they protected; no key that remains in this installation can "
                    "decrypt any object of this policy."),
        "signingKey", fpr);
    if (!cert)
        return ck_err_set(CK_EINTERNAL, "cannot build the certificate of purge %s", pg->id);
    char *canon = purge_canonical(cert);
    uint8_t sig[64];
    char *sig64 = NULL;
    ck_err rc = ck_ed25519_sign(p->seed.p, canon, strlen(canon), sig);
    if (rc == CK_OK)
        rc = ck_b64url_encode(sig, sizeof sig, &sig64);
    json_t *file = NULL;
    char *text = NULL, detail[300];
    if (rc == CK_OK) {
        file = json_pack("{s:O,s:s,s:s,s:s}", "certificate", cert, "signature", sig64, "algorithm",
                         "Ed25519", "signingKey", fpr);
        text = purge_canonical(file);
        uint8_t d[32];
        char hex[65];
        ck_sha256(canon, strlen(canon), d);
        hex_of(d, sizeof d, hex);
        snprintf(detail, sizeof detail, "certificate %s sha256 %s; %zu stored keys destroyed",
                 cert_id, hex, json_array_size(keys));
        /* The audit record first: a crash before the update repeats both. */
        purge_audit(p, "ckey purge", "purge.certificate", pg->id, job_id, CK_OK, detail);
        rc = ck_store_run(p->store, NULL,
                          "UPDATE ck_purge SET stage = ?, certificate = ?, completed_at = ? WHERE "
                          "id = ? AND stage = ?",
                          "ttit"
                          "t",
                          stage_names[CK_PURGE_DONE], text, now, pg->id,
                          stage_names[CK_PURGE_EXECUTING]);
    }
    json_decref(file);
    json_decref(cert);
    free(canon);
    free(sig64);
    free(text);
    if (rc == CK_OK)
        ck_log(CK_LOG_INFO, "purge done", "purge", pg->id, "certificate", cert_id, NULL);
    return rc;
}

static ck_err mail_step(struct ck_purges *p, const struct ck_purge *pg, const json_t *manifest,
                        int64_t *done, int64_t *total, bool *finished)
{
    *total = json_integer_value(json_object_get(json_object_get(manifest, "totals"), "items")) + 2;
    bool dep_row, avail_row;
    CK_TRY(ck_dep_purge_remains(p->deps, pg->target, &dep_row, &avail_row));
    if (dep_row) { /* 1: every wrapped copy of the DEP key */
        CK_TRY(ck_dep_destroy(p->deps, pg->target, pg->id));
        *done = 1;
        return CK_OK;
    }
    int64_t remaining = 0;
    bool mail_done = false; /* 2: the mailboxes, their items and keys */
    CK_TRY(ck_mail_purge_step(p->mail, pg->tenant, pg->target, pg->id, &remaining, &mail_done));
    *done = *total - 1 - remaining;
    if (!mail_done)
        return CK_OK;
    if (avail_row) /* 3: the availability key */
        CK_TRY(ck_dep_destroy_availability(p->deps, pg->target, pg->id));
    *done = *total;
    *finished = true;
    return CK_OK;
}

static ck_err purge_step(void *ctx, const struct ck_job *j, int64_t *done, int64_t *total,
                         bool *finished)
{
    struct ck_purges *p = ctx;
    struct ck_purge pg;
    CK_TRY(ck_purge_get(p, NULL, j->target, &pg));
    *finished = false;
    if (pg.stage == CK_PURGE_DONE) {
        *finished = true;
        return CK_OK;
    }
    if (pg.stage != CK_PURGE_EXECUTING)
        return ck_err_set(CK_ECONFLICT, "the purge %s is %s, not executing", pg.id,
                          ck_purge_stage_name(pg.stage));
    json_t *manifest;
    CK_TRY(load_manifest(p, pg.id, &manifest));
    ck_err rc = mark(p, &pg);
    bool all_destroyed = false;
    if (rc == CK_OK && pg.kind == CK_PURGE_MAIL)
        rc = mail_step(p, &pg, manifest, done, total, &all_destroyed);
    else if (rc == CK_OK)
        rc = ck_files_purge_step(p->files, pg.tenant, pg.target, done, total, &all_destroyed);
    if (rc == CK_OK && all_destroyed) {
        rc = certify(p, &pg, manifest, j->id);
        *finished = rc == CK_OK;
    }
    json_decref(manifest);
    return rc;
}

/* ---------- certificates ---------- */

ck_err ck_purge_certificate(struct ck_purges *p, const char *tenant, const char *id, json_t **out)
{
    struct ck_purge pg;
    CK_TRY(ck_purge_get(p, tenant, id, &pg));
    if (pg.stage != CK_PURGE_DONE)
        return ck_err_set(CK_ECONFLICT,
                          "the purge %s is %s: its certificate exists once it is "
                          "done",
                          pg.id, ck_purge_stage_name(pg.stage));
    char *text = NULL;
    CK_TRY(stored_text(p, pg.id, "certificate", &text));
    json_error_t e;
    *out = text ? json_loads(text, 0, &e) : NULL;
    free(text);
    if (!*out)
        return ck_err_set(CK_EINTERNAL, "the certificate of purge %s is not readable", pg.id);
    return CK_OK;
}

ck_err ck_purge_certificate_check(const json_t *file, const uint8_t pub[32])
{
    const json_t *cert = json_object_get(file, "certificate");
    const char *sig64 = json_string_value(json_object_get(file, "signature"));
    if (!json_is_object(cert) || !sig64)
        return ck_err_set(CK_EINTEGRITY,
                          "not a purge certificate: it needs \"certificate\" and \"signature\"");
    struct ck_buf sig = {0};
    if (ck_b64url_decode(sig64, strlen(sig64), &sig) != CK_OK || sig.n != 64) {
        ck_buf_free(&sig);
        return ck_err_set(CK_EINTEGRITY,
                          "the certificate's signature is not 64 bytes of base64url");
    }
    char *canon = purge_canonical(cert);
    ck_err rc = ck_ed25519_verify(pub, canon, strlen(canon), sig.p, sig.n);
    free(canon);
    ck_buf_free(&sig);
    if (rc != CK_OK) {
        char fpr[CK_PURGE_FPR_LEN];
        ck_purge_fingerprint(pub, fpr);
        return ck_err_set(CK_EINTEGRITY,
                          "the certificate's signature does not verify with the key %s: it was "
                          "changed, or signed by another key",
                          fpr);
    }
    return CK_OK;
}

/* ---------- verification ---------- */

static void check(json_t *checks, bool *pass, const char *name, bool ok, const char *detail)
{
    json_array_append_new(checks, json_pack("{s:s,s:s,s:s}", "check", name, "result",
                                            ok ? "pass" : "fail", "detail", detail));
    if (!ok)
        *pass = false;
}

static ck_err parse_prints(const json_t *a, struct ck_blob_print **out, size_t *n)
{
    size_t count = json_array_size(a), i;
    struct ck_blob_print *v = ck_xcalloc(count ? count : 1, sizeof *v);
    json_t *e;
    json_array_foreach(a, i, e)
    {
        struct ck_buf head = {0}, sha = {0};
        const char *hs = json_string_value(json_object_get(e, "head"));
        const char *ss = json_string_value(json_object_get(e, "sha256"));
        bool ok = hs && ss && ck_hex_decode(hs, &head) == CK_OK && head.n == 8 &&
                  ck_hex_decode(ss, &sha) == CK_OK && sha.n == 32;
        if (ok) {
            snprintf(v[i].what, sizeof v[i].what, "%s",
                     json_string_value(json_object_get(e, "what")));
            v[i].availability_store = json_is_true(json_object_get(e, "availabilityStore"));
            v[i].len = (uint32_t)json_integer_value(json_object_get(e, "length"));
            memcpy(v[i].head, head.p, 8);
            memcpy(v[i].sha256, sha.p, 32);
        }
        ck_buf_free(&head);
        ck_buf_free(&sha);
        if (!ok) {
            free(v);
            return ck_err_set(CK_EINTERNAL, "the purge manifest holds a damaged fingerprint");
        }
    }
    *out = v;
    *n = count;
    return CK_OK;
}

/* Scans every file of both stores for the prints; found[i] per print. */
static ck_err scan_stores(struct ck_purges *p, const struct ck_blob_print *v, size_t n, bool *found,
                          json_t *scanned)
{
    struct ck_store *stores[2] = {p->store, p->avail};
    for (int s = 0; s < 2; s++) {
        char paths[4][4096];
        size_t np = 0;
        CK_TRY(ck_store_checkpoint(stores[s]));
        CK_TRY(ck_store_files(stores[s], paths, &np));
        for (size_t i = 0; i < np; i++) {
            int64_t bytes = 0;
            CK_TRY(ck_blob_print_scan(paths[i], v, n, found, &bytes));
            json_array_append_new(
                scanned, json_pack("{s:s,s:I}", "file", paths[i], "bytes", (json_int_t)bytes));
        }
    }
    return CK_OK;
}

static ck_err verify_rows(struct ck_purges *p, const struct ck_purge *pg, const json_t *manifest,
                          json_t *checks, bool *pass)
{
    char detail[256];
    if (pg->kind == CK_PURGE_MAIL) {
        bool dep_row, avail_row;
        CK_TRY(ck_dep_purge_remains(p->deps, pg->target, &dep_row, &avail_row));
        check(checks, pass, "DEP key copies deleted", !dep_row,
              dep_row ? "the DEP row with its three wrapped copies still exists"
                      : "no DEP row: the copies under both root keys and the availability key "
                        "are gone");
        check(checks, pass, "availability key deleted", !avail_row,
              avail_row ? "the availability key is still in the availability store"
                        : "not in the availability store");
        struct ck_mail_purge_remains r;
        CK_TRY(ck_mail_purge_remains(p->mail, pg->tenant, pg->target, pg->id, &r));
        snprintf(detail, sizeof detail, "%lld mailbox keys left", (long long)r.mailbox_keys);
        check(checks, pass, "mailbox keys deleted", r.mailbox_keys == 0, detail);
        snprintf(detail, sizeof detail, "%lld items left in purged mailboxes", (long long)r.items);
        check(checks, pass, "items deleted", r.items == 0, detail);
        snprintf(detail, sizeof detail, "%lld live mailboxes still under the DEP",
                 (long long)r.unmarked_mailboxes);
        check(checks, pass, "no mailbox left under the policy", r.unmarked_mailboxes == 0, detail);
        return CK_OK;
    }
    const json_t *ids = json_object_get(manifest, "tikIds");
    size_t ntik = json_array_size(ids), i;
    char(*tiks)[37] = ck_xcalloc(ntik ? ntik : 1, sizeof *tiks);
    json_t *e;
    json_array_foreach(ids, i, e)
    {
        snprintf(tiks[i], sizeof tiks[i], "%s", json_string_value(e));
    }
    struct ck_files_purge_remains r;
    ck_err rc =
        ck_files_purge_remains(p->files, pg->tenant, pg->target, (const char(*)[37])tiks, ntik, &r);
    free(tiks);
    CK_TRY(rc);
    snprintf(detail, sizeof detail, "%lld TIKs of the geo left", (long long)r.tiks);
    check(checks, pass, "TIKs deleted", r.tiks == 0, detail);
    snprintf(detail, sizeof detail, "%lld availability keys left", (long long)r.availability_keys);
    check(checks, pass, "availability keys deleted", r.availability_keys == 0, detail);
    snprintf(detail, sizeof detail, "%lld sites still hold a site key", (long long)r.site_keys);
    check(checks, pass, "site keys deleted", r.site_keys == 0, detail);
    snprintf(detail, sizeof detail, "%lld files and %lld chunks (with their keys) left",
             (long long)r.files, (long long)r.chunks);
    check(checks, pass, "files and chunk keys deleted", r.files == 0 && r.chunks == 0, detail);
    return CK_OK;
}

ck_err ck_purge_verify(struct ck_purges *p, const char *tenant, const char *id, json_t **report)
{
    struct ck_purge pg;
    CK_TRY(ck_purge_get(p, tenant, id, &pg));
    json_t *checks = json_array(), *scanned = json_array();
    bool pass = true;
    char detail[512];
    snprintf(detail, sizeof detail, "the purge is %s", ck_purge_stage_name(pg.stage));
    check(checks, &pass, "purge done", pg.stage == CK_PURGE_DONE, detail);
    json_t *manifest = NULL, *cert = NULL;
    ck_err rc = CK_OK;
    if (pg.stage == CK_PURGE_DONE) {
        rc = ck_purge_certificate(p, tenant, pg.id, &cert);
        if (rc == CK_OK) {
            char fpr[CK_PURGE_FPR_LEN];
            ck_purge_fingerprint(p->pub, fpr);
            bool ok = ck_purge_certificate_check(cert, p->pub) == CK_OK;
            snprintf(detail, sizeof detail, "%s with the service key %s",
                     ok ? "verifies" : ck_err_msg(), fpr);
            check(checks, &pass, "certificate signature", ok, detail);
        }
    }
    if (rc == CK_OK && pg.stage >= CK_PURGE_EXECUTING)
        rc = load_manifest(p, pg.id, &manifest);
    if (rc == CK_OK && manifest)
        rc = verify_rows(p, &pg, manifest, checks, &pass);
    struct ck_blob_print *v = NULL;
    size_t n = 0;
    if (rc == CK_OK && manifest)
        rc = parse_prints(json_object_get(manifest, "prints"), &v, &n);
    bool *found = ck_xcalloc(n ? n : 1, sizeof *found);
    if (rc == CK_OK && manifest)
        rc = scan_stores(p, v, n, found, scanned);
    if (rc == CK_OK && manifest) {
        size_t left = 0, first = 0;
        for (size_t i = 0; i < n; i++)
            if (found[i] && !left++)
                first = i;
        if (left)
            snprintf(detail, sizeof detail,
                     "%zu of %zu destroyed blobs still found in the store files, e.g. %s", left, n,
                     v[first].what);
        else
            snprintf(detail, sizeof detail,
                     "none of the %zu destroyed blobs (wrapped key copies, availability keys) "
                     "occurs anywhere in the database, WAL or journal files of either store",
                     n);
        check(checks, &pass, "byte scan of the store files", left == 0, detail);
    }
    free(found);
    free(v);
    json_decref(manifest);
    json_decref(cert);
    if (rc != CK_OK) {
        json_decref(checks);
        json_decref(scanned);
        return rc;
    }
    *report = json_pack("{s:s,s:s,s:s,s:o,s:o}", "purgeId", pg.id, "result", pass ? "pass" : "fail",
                        "kind", ck_purge_kind_name(pg.kind), "checks", checks, "scanned", scanned);
    return CK_OK;
}
