/*
 * mail.c — mail users, mailboxes, mailbox keys, items and the re-encryption
 * job step.
 *
 * Keys: a mailbox key (32 random bytes) is stored wrapped (AES-KWP) under
 * its DEP's key; an item key (32 random bytes) is stored wrapped under a
 * mailbox key; item bytes are AES-256-GCM under the item key with a random
 * 96-bit nonce and associated data "ckey-mail/v1", tenant, UPN, item id and
 * item key id, NUL-separated. Nothing here ever stores a key or a message in
 * plaintext. Mailbox keys are not cached: unwrapping one is one AES key
 * unwrap, and not caching them means a DEP key leaving the DEP cache stops
 * reads at once.
 */
#include "mail/mail.h"
#include "crypto/crypto.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KEY_LEN 32
#define REENCRYPT_BATCH 50

struct ck_mail {
    struct ck_store *store;
    struct ck_deps *deps;
    struct ck_jobs *jobs;
};

static const struct ck_migration mail_migrations[] = {
    {1, "CREATE TABLE ck_mailbox ("
        "  tenant TEXT NOT NULL,"
        "  upn TEXT NOT NULL,"
        "  migrated BIGINT NOT NULL DEFAULT 0,"
        "  dep_id TEXT NOT NULL DEFAULT '',"
        "  key_id TEXT NOT NULL DEFAULT '',"
        "  created BIGINT NOT NULL,"
        "  PRIMARY KEY (tenant, upn));"
        "CREATE TABLE ck_mailbox_key ("
        "  id TEXT PRIMARY KEY,"
        "  tenant TEXT NOT NULL,"
        "  upn TEXT NOT NULL,"
        "  dep_id TEXT NOT NULL,"
        "  wrapped BLOB NOT NULL,"
        "  created BIGINT NOT NULL);"
        "CREATE INDEX ck_mailbox_key_by_mailbox ON ck_mailbox_key (tenant, upn);"
        "CREATE TABLE ck_mail_item ("
        "  tenant TEXT NOT NULL,"
        "  upn TEXT NOT NULL,"
        "  id TEXT NOT NULL,"
        "  key_id TEXT NOT NULL,"
        "  item_key_id TEXT NOT NULL,"
        "  wrapped_key BLOB NOT NULL,"
        "  nonce BLOB NOT NULL,"
        "  ct BLOB NOT NULL,"
        "  tag BLOB NOT NULL,"
        "  size BIGINT NOT NULL,"
        "  created BIGINT NOT NULL,"
        "  PRIMARY KEY (tenant, upn, id));"
        "CREATE INDEX ck_mail_item_by_key ON ck_mail_item (tenant, upn, key_id);"},
    /* Purged mailboxes stay as tombstones (purge_id set, nothing else). */
    {2, "ALTER TABLE ck_mailbox ADD COLUMN purge_id TEXT NOT NULL DEFAULT '';"
        "CREATE INDEX ck_mailbox_key_by_dep ON ck_mailbox_key (dep_id);"},
    /* Re-encryption reads its next batch as a range of this index, in
     * order: no sort of the mailbox's remaining items per batch (bench). */
    {3, "CREATE INDEX ck_mail_item_by_key_id ON ck_mail_item (tenant, upn, key_id, id);"
        "DROP INDEX ck_mail_item_by_key;"},
};

/* ---------- names ---------- */

static void lower(char *s)
{
    for (; *s; s++)
        *s = (char)tolower((unsigned char)*s);
}

static ck_err norm_upn(const char *upn, char out[257])
{
    const char *at = upn ? strchr(upn, '@') : NULL;
    size_t n = upn ? strlen(upn) : 0;
    if (!at || at == upn || !at[1] || n > 256 || strchr(at + 1, '@'))
        return ck_err_set(CK_EINVAL, "'%s' is not a user principal name (name@domain)",
                          upn ? upn : "");
    for (size_t i = 0; i < n; i++)
        if (isspace((unsigned char)upn[i]) || iscntrl((unsigned char)upn[i]) || upn[i] == '/')
            return ck_err_set(CK_EINVAL, "'%s' is not a user principal name", upn);
    snprintf(out, 257, "%s", upn);
    lower(out);
    return CK_OK;
}

static ck_err check_item_id(const char *id)
{
    size_t n = id ? strlen(id) : 0;
    if (n == 0 || n > 128)
        return ck_err_set(CK_EINVAL, "an item id must have 1 to 128 characters");
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)id[i]) && !strchr("._-", id[i]))
            return ck_err_set(CK_EINVAL,
                              "the item id '%s' may hold only letters, digits, '.', "
                              "'_' and '-'",
                              id);
    return CK_OK;
}

static ck_err no_mailbox(const char *upn)
{
    ck_err_set(CK_ENOTFOUND, "no mail user or mailbox '%s' in this tenant", upn);
    ck_err_code("MailboxNotFound", NULL);
    return CK_ENOTFOUND;
}

/* ---------- open ---------- */

static ck_err reencrypt_step(void *ctx, const struct ck_job *j, int64_t *done, int64_t *total,
                             bool *finished);

ck_err ck_mail_open(struct ck_store *s, struct ck_deps *deps, struct ck_jobs *jobs,
                    struct ck_mail **out)
{
    CK_TRY(ck_store_migrate(s, "mail", mail_migrations,
                            sizeof mail_migrations / sizeof *mail_migrations));
    struct ck_mail *m = ck_xcalloc(1, sizeof *m);
    m->store = s;
    m->deps = deps;
    m->jobs = jobs;
    ck_jobs_register(jobs, CK_MAIL_REENCRYPT_JOB, reencrypt_step, m);
    *out = m;
    return CK_OK;
}

void ck_mail_close(struct ck_mail *m)
{
    free(m);
}

/* ---------- mailbox rows ---------- */

struct mbx {
    bool exists, migrated;
    char dep_id[37];   /* assigned; "" = service-managed */
    char key_id[37];   /* current mailbox key; "" for a mail user */
    char purge_id[37]; /* the purge that destroyed it; "" = live */
};

static ck_err purged(const char *upn, const char *purge_id)
{
    ck_err_set(CK_EGONE, "the mailbox %s was permanently purged (purge %s)", upn, purge_id);
    ck_err_code("MailboxPurged", NULL);
    return CK_EGONE;
}

static ck_err load_mbx(struct ck_mail *m, const char *tenant, const char *upn, struct mbx *b)
{
    memset(b, 0, sizeof *b);
    struct ck_stmt *st;
    CK_TRY(ck_stmt_prepare(m->store, &st,
                           "SELECT migrated, dep_id, key_id, purge_id FROM ck_mailbox WHERE "
                           "tenant = ? AND upn = ?",
                           "tt", tenant, upn));
    ck_err rc = ck_stmt_step(st, &b->exists);
    if (rc == CK_OK && b->exists) {
        b->migrated = ck_stmt_int(st, 0) != 0;
        snprintf(b->dep_id, sizeof b->dep_id, "%s", ck_stmt_text(st, 1));
        snprintf(b->key_id, sizeof b->key_id, "%s", ck_stmt_text(st, 2));
        snprintf(b->purge_id, sizeof b->purge_id, "%s", ck_stmt_text(st, 3));
    }
    ck_stmt_finalize(st);
    return rc;
}

/* load_mbx for an operation on a mailbox or mail user: CK_ENOTFOUND when
 * there is none, CK_EGONE when it was purged. */
static ck_err live_mbx(struct ck_mail *m, const char *tenant, const char *upn, struct mbx *b)
{
    CK_TRY(load_mbx(m, tenant, upn, b));
    if (!b->exists)
        return no_mailbox(upn);
    if (*b->purge_id)
        return purged(upn, b->purge_id);
    return CK_OK;
}

/* The DEP a mailbox assigned `dep_id` ("" = service-managed) lives under. */
static ck_err effective_dep(struct ck_mail *m, const char *tenant, const char *dep_id, char out[37])
{
    if (*dep_id) {
        snprintf(out, 37, "%s", dep_id);
        return CK_OK;
    }
    struct ck_dep *sm;
    CK_TRY(ck_dep_service_managed(m->deps, tenant, &sm));
    snprintf(out, 37, "%s", sm->id);
    ck_dep_free(sm);
    return CK_OK;
}

/* A new mailbox key wrapped under dep_key (the key of DEP dep); inserted
 * as key_id within the caller's transaction. The DEP key is fetched by the
 * caller before the transaction: a vault call must never hold the write lock. */
static ck_err new_mailbox_key(struct ck_mail *m, const char *tenant, const char *upn,
                              const char *dep, const struct ck_secret *dep_key, char key_id[37])
{
    struct ck_secret mk = {0};
    struct ck_buf wrapped = {0};
    ck_err rc;
    CK_GUARD(ck_secret_alloc(&mk, KEY_LEN));
    CK_GUARD(ck_rand_bytes(mk.p, mk.n));
    CK_GUARD(ck_aes_kwp_wrap(dep_key->p, dep_key->n, mk.p, mk.n, &wrapped));
    CK_GUARD(ck_uuid_v4(key_id));
    rc = ck_store_run(m->store, NULL,
                      "INSERT INTO ck_mailbox_key (id, tenant, upn, dep_id, wrapped, created) "
                      "VALUES (?, ?, ?, ?, ?, ?)",
                      "ttttbi", key_id, tenant, upn, dep, wrapped.p, wrapped.n, ck_now());
out:
    ck_secret_free(&mk);
    ck_buf_free(&wrapped);
    return rc;
}

static ck_err mailbox_key(struct ck_mail *m, const char *key_id, enum ck_dep_purpose purpose,
                          const char *request_id, struct ck_secret *out)
{
    struct ck_stmt *st;
    CK_TRY(ck_stmt_prepare(m->store, &st, "SELECT dep_id, wrapped FROM ck_mailbox_key WHERE id = ?",
                           "t", key_id));
    bool row;
    ck_err rc = ck_stmt_step(st, &row);
    if (rc == CK_OK && !row)
        rc = ck_err_set(CK_EGONE, "the mailbox key %s no longer exists", key_id);
    struct ck_secret dep_key = {0};
    if (rc == CK_OK)
        rc = ck_dep_key(m->deps, ck_stmt_text(st, 0), purpose, request_id, &dep_key);
    if (rc == CK_OK) {
        size_t n;
        const void *w = ck_stmt_blob(st, 1, &n);
        rc = ck_aes_kwp_unwrap(dep_key.p, dep_key.n, w, n, out);
        if (rc != CK_OK)
            rc = ck_err_set(CK_EINTERNAL, "the mailbox key %s does not unwrap", key_id);
    }
    ck_secret_free(&dep_key);
    ck_stmt_finalize(st);
    return rc;
}

/* ---------- mail users and mailboxes ---------- */

ck_err ck_mailuser_new(struct ck_mail *m, const char *tenant, const char *upn_in)
{
    char upn[257];
    CK_TRY(norm_upn(upn_in, upn));
    ck_err rc = ck_store_run(m->store, NULL,
                             "INSERT INTO ck_mailbox (tenant, upn, created) VALUES (?, ?, ?)",
                             "tti", tenant, upn, ck_now());
    if (rc == CK_ECONFLICT) {
        struct mbx b;
        CK_TRY(live_mbx(m, tenant, upn, &b));
        return ck_err_set(CK_ECONFLICT, "a mail user or mailbox '%s' already exists", upn);
    }
    return rc;
}

ck_err ck_mailuser_set_dep(struct ck_mail *m, const char *tenant, const char *upn_in,
                           const char *dep_id, char job_id[37])
{
    char upn[257];
    CK_TRY(norm_upn(upn_in, upn));
    struct mbx b;
    CK_TRY(live_mbx(m, tenant, upn, &b));
    if (b.migrated)
        return ck_mailbox_set_dep(m, tenant, upn, dep_id, NULL, job_id);
    if (dep_id)
        CK_TRY(ck_dep_assignable(m->deps, tenant, dep_id));
    struct ck_dep *dep = NULL;
    if (dep_id)
        CK_TRY(ck_dep_get(m->deps, tenant, dep_id, &dep));
    ck_err rc = ck_store_run(m->store, NULL,
                             "UPDATE ck_mailbox SET dep_id = ? WHERE tenant = ? AND upn = ?", "ttt",
                             dep ? dep->id : "", tenant, upn);
    ck_dep_free(dep);
    if (job_id)
        job_id[0] = '\0';
    return rc;
}

ck_err ck_mailbox_new(struct ck_mail *m, const char *tenant, const char *upn_in,
                      const char *request_id)
{
    char upn[257], dep[37], key_id[37];
    CK_TRY(norm_upn(upn_in, upn));
    struct mbx b;
    CK_TRY(load_mbx(m, tenant, upn, &b));
    if (*b.purge_id)
        return purged(upn, b.purge_id);
    if (b.migrated)
        return ck_err_set(CK_ECONFLICT, "the mailbox '%s' already exists", upn);
    CK_TRY(effective_dep(m, tenant, b.dep_id, dep));
    struct ck_secret dep_key = {0};
    CK_TRY(ck_dep_key(m->deps, dep, CK_DEP_USER, request_id, &dep_key));
    ck_err rc = ck_store_begin(m->store);
    if (rc != CK_OK) {
        ck_secret_free(&dep_key);
        return rc;
    }
    rc = new_mailbox_key(m, tenant, upn, dep, &dep_key, key_id);
    ck_secret_free(&dep_key);
    if (rc == CK_OK && b.exists)
        rc = ck_store_run(m->store, NULL,
                          "UPDATE ck_mailbox SET migrated = 1, key_id = ? WHERE tenant = ? AND "
                          "upn = ? AND migrated = 0",
                          "ttt", key_id, tenant, upn);
    else if (rc == CK_OK)
        rc = ck_store_run(m->store, NULL,
                          "INSERT INTO ck_mailbox (tenant, upn, migrated, key_id, created) "
                          "VALUES (?, ?, 1, ?, ?)",
                          "ttti", tenant, upn, key_id, ck_now());
    if (rc == CK_OK)
        rc = ck_store_commit(m->store);
    else
        ck_store_rollback(m->store);
    if (rc == CK_ECONFLICT)
        return ck_err_set(CK_ECONFLICT, "the mailbox '%s' already exists", upn);
    return rc;
}

ck_err ck_mailbox_set_dep(struct ck_mail *m, const char *tenant, const char *upn_in,
                          const char *dep_id, const char *request_id, char job_id[37])
{
    char upn[257], dep[37], key_id[37], target[300];
    CK_TRY(norm_upn(upn_in, upn));
    struct mbx b;
    CK_TRY(live_mbx(m, tenant, upn, &b));
    if (!b.migrated)
        return ck_mailuser_set_dep(m, tenant, upn, dep_id, job_id);
    struct ck_dep *assigned = NULL;
    if (dep_id) {
        CK_TRY(ck_dep_assignable(m->deps, tenant, dep_id));
        CK_TRY(ck_dep_get(m->deps, tenant, dep_id, &assigned));
    }
    ck_err rc = effective_dep(m, tenant, assigned ? assigned->id : "", dep);
    snprintf(target, sizeof target, "%s/%s", tenant, upn);
    struct ck_secret dep_key = {0};
    if (rc == CK_OK)
        rc = ck_dep_key(m->deps, dep, CK_DEP_USER, request_id, &dep_key);
    bool began = false;
    if (rc == CK_OK)
        began = (rc = ck_store_begin(m->store)) == CK_OK;
    if (rc == CK_OK)
        rc = new_mailbox_key(m, tenant, upn, dep, &dep_key, key_id);
    ck_secret_free(&dep_key);
    if (rc == CK_OK)
        rc = ck_store_run(m->store, NULL,
                          "UPDATE ck_mailbox SET dep_id = ?, key_id = ? WHERE tenant = ? AND "
                          "upn = ?",
                          "tttt", assigned ? assigned->id : "", key_id, tenant, upn);
    char jid[37] = "";
    if (rc == CK_OK)
        rc = ck_job_enqueue(m->jobs, CK_MAIL_REENCRYPT_JOB, tenant, target, jid);
    if (rc == CK_OK)
        rc = ck_store_commit(m->store);
    else if (began)
        ck_store_rollback(m->store);
    if (job_id)
        snprintf(job_id, 37, "%s", rc == CK_OK ? jid : "");
    ck_dep_free(assigned);
    return rc;
}

/* The items of a mailbox (*total) and those under its current key (*done),
 * from the index ck_mail_item_by_key_id alone. */
static ck_err item_counts(struct ck_mail *m, const char *tenant, const char *upn,
                          const char *key_id, int64_t *done, int64_t *total)
{
    int64_t v[2];
    CK_TRY(ck_store_ints(m->store, v, 2,
                         "SELECT COUNT(*), COALESCE(SUM(key_id = ?), 0) FROM ck_mail_item "
                         "WHERE tenant = ? AND upn = ?",
                         "ttt", key_id, tenant, upn));
    *total = v[0];
    *done = v[1];
    return CK_OK;
}

static ck_err fill_info(struct ck_mail *m, const char *tenant, const char *upn,
                        struct ck_mailbox_info *out)
{
    memset(out, 0, sizeof *out);
    struct ck_stmt *st;
    CK_TRY(ck_stmt_prepare(
        m->store, &st,
        "SELECT b.migrated, b.dep_id, b.key_id, b.created, COALESCE(k.dep_id, ''), b.purge_id, "
        "(SELECT COUNT(*) FROM ck_mail_item i WHERE i.tenant = b.tenant AND i.upn = b.upn), "
        "(SELECT COALESCE(SUM(size), 0) FROM ck_mail_item i WHERE i.tenant = b.tenant AND "
        "i.upn = b.upn), "
        "(SELECT COUNT(*) FROM ck_mail_item i WHERE i.tenant = b.tenant AND i.upn = b.upn AND "
        "i.key_id <> b.key_id) "
        "FROM ck_mailbox b LEFT JOIN ck_mailbox_key k ON k.id = b.key_id "
        "WHERE b.tenant = ? AND b.upn = ?",
        "tt", tenant, upn));
    bool row;
    ck_err rc = ck_stmt_step(st, &row);
    if (rc == CK_OK && row && *ck_stmt_text(st, 5))
        rc = purged(upn, ck_stmt_text(st, 5));
    if (rc == CK_OK && row) {
        snprintf(out->tenant, sizeof out->tenant, "%s", tenant);
        snprintf(out->upn, sizeof out->upn, "%s", upn);
        out->migrated = ck_stmt_int(st, 0) != 0;
        snprintf(out->dep_id, sizeof out->dep_id, "%s", ck_stmt_text(st, 1));
        out->created = ck_stmt_int(st, 3);
        snprintf(out->effective_dep, sizeof out->effective_dep, "%s", ck_stmt_text(st, 4));
        out->item_count = ck_stmt_int(st, 6);
        out->total_size = ck_stmt_int(st, 7);
        out->pending = ck_stmt_int(st, 8);
    }
    ck_stmt_finalize(st);
    CK_TRY(rc);
    if (!row)
        return no_mailbox(upn);
    /* Encrypted: migrated, nothing left under an older key, and the current
     * key is under the assigned DEP (or the service-managed one). */
    char want[37] = "";
    if (out->migrated)
        CK_TRY(effective_dep(m, tenant, out->dep_id, want));
    out->is_encrypted = out->migrated && out->pending == 0 && strcmp(want, out->effective_dep) == 0;
    char target[300];
    snprintf(target, sizeof target, "%s/%s", tenant, upn);
    struct ck_job *j = NULL;
    CK_TRY(ck_job_latest(m->jobs, CK_MAIL_REENCRYPT_JOB, target, &j));
    if (j)
        snprintf(out->job_id, sizeof out->job_id, "%s", j->id);
    ck_job_free(j);
    return CK_OK;
}

ck_err ck_mailbox_info(struct ck_mail *m, const char *tenant, const char *upn_in,
                       struct ck_mailbox_info *out)
{
    char upn[257];
    CK_TRY(norm_upn(upn_in, upn));
    return fill_info(m, tenant, upn, out);
}

ck_err ck_mailbox_list(struct ck_mail *m, const char *tenant, struct ck_mailbox_info **out,
                       size_t *n)
{
    struct ck_stmt *st;
    CK_TRY(ck_stmt_prepare(
        m->store, &st, "SELECT upn FROM ck_mailbox WHERE tenant = ? AND purge_id = '' ORDER BY upn",
        "t", tenant));
    char(*upns)[257] = NULL;
    size_t count = 0;
    bool row;
    ck_err rc;
    while ((rc = ck_stmt_step(st, &row)) == CK_OK && row) {
        upns = realloc(upns, (count + 1) * sizeof *upns);
        if (!upns)
            abort();
        snprintf(upns[count++], 257, "%s", ck_stmt_text(st, 0));
    }
    ck_stmt_finalize(st);
    struct ck_mailbox_info *v = ck_xcalloc(count ? count : 1, sizeof *v);
    for (size_t i = 0; rc == CK_OK && i < count; i++)
        rc = fill_info(m, tenant, upns[i], &v[i]);
    free(upns);
    if (rc != CK_OK) {
        free(v);
        return rc;
    }
    *out = v;
    *n = count;
    return CK_OK;
}

/* ---------- items ---------- */

static char *item_aad(const char *tenant, const char *upn, const char *id, const char *ikid,
                      size_t *len)
{
    char *aad = ck_sprintf("ckey-mail/v1%c%s%c%s%c%s%c%s", 0, tenant, 0, upn, 0, id, 0, ikid);
    *len = strlen("ckey-mail/v1") + 1 + strlen(tenant) + 1 + strlen(upn) + 1 + strlen(id) + 1 +
           strlen(ikid);
    return aad;
}

/* Encrypts data under a fresh item key wrapped by mailbox key mk and writes
 * the row (insert or replace) — within the caller's transaction if any. */
static ck_err store_item(struct ck_mail *m, const char *tenant, const char *upn, const char *id,
                         const char *key_id, const struct ck_secret *mk, const uint8_t *data,
                         size_t n, int64_t created)
{
    struct ck_secret ik = {0};
    struct ck_buf wrapped = {0}, ct = {0};
    uint8_t nonce[CK_GCM_IV_LEN], tag[CK_GCM_TAG_LEN];
    char ikid[33];
    uint8_t raw[16];
    size_t aadlen = 0;
    char *aad = NULL;
    ck_err rc;
    CK_GUARD(ck_secret_alloc(&ik, KEY_LEN));
    CK_GUARD(ck_rand_bytes(ik.p, ik.n));
    CK_GUARD(ck_rand_bytes(raw, sizeof raw));
    ck_hex_encode(raw, sizeof raw, ikid);
    CK_GUARD(ck_rand_bytes(nonce, sizeof nonce));
    CK_GUARD(ck_aes_kwp_wrap(mk->p, mk->n, ik.p, ik.n, &wrapped));
    CK_GUARD(ck_buf_alloc(&ct, n));
    aad = item_aad(tenant, upn, id, ikid, &aadlen);
    CK_GUARD(ck_aes_gcm_encrypt(ik.p, ik.n, nonce, sizeof nonce, (const uint8_t *)aad, aadlen, data,
                                n, ct.p, tag));
    rc = ck_store_run(m->store, NULL,
                      "INSERT INTO ck_mail_item (tenant, upn, id, key_id, item_key_id, "
                      "wrapped_key, nonce, ct, tag, size, created) VALUES (?,?,?,?,?,?,?,?,?,?,?) "
                      "ON CONFLICT (tenant, upn, id) DO UPDATE SET key_id = excluded.key_id, "
                      "item_key_id = excluded.item_key_id, wrapped_key = excluded.wrapped_key, "
                      "nonce = excluded.nonce, ct = excluded.ct, tag = excluded.tag, "
                      "size = excluded.size",
                      "tttttbbbbii", tenant, upn, id, key_id, ikid, wrapped.p, wrapped.n, nonce,
                      sizeof nonce, ct.p, ct.n, tag, sizeof tag, (int64_t)n, created);
out:
    free(aad);
    ck_secret_free(&ik);
    ck_buf_free(&wrapped);
    ck_buf_free(&ct);
    return rc;
}

/* A stored item, decrypted with the mailbox key its row names. */
static ck_err read_item(struct ck_mail *m, struct ck_stmt *st, const char *tenant, const char *upn,
                        const struct ck_secret *mk, struct ck_secret *out)
{
    /* Columns: id, key_id, item_key_id, wrapped_key, nonce, ct, tag. */
    size_t wn, nn, cn, tn, aadlen;
    const void *w = ck_stmt_blob(st, 3, &wn), *nonce = ck_stmt_blob(st, 4, &nn);
    const void *ct = ck_stmt_blob(st, 5, &cn), *tag = ck_stmt_blob(st, 6, &tn);
    struct ck_secret ik = {0};
    if (ck_aes_kwp_unwrap(mk->p, mk->n, w, wn, &ik) != CK_OK)
        return ck_err_set(CK_EINTERNAL,
                          "the key of item %s does not unwrap: stored data is "
                          "damaged",
                          ck_stmt_text(st, 0));
    char *aad = item_aad(tenant, upn, ck_stmt_text(st, 0), ck_stmt_text(st, 2), &aadlen);
    ck_err rc = ck_secret_alloc(out, cn);
    if (rc == CK_OK && ck_aes_gcm_decrypt(ik.p, ik.n, nonce, nn, (const uint8_t *)aad, aadlen, ct,
                                          cn, tag, tn, out->p) != CK_OK) {
        ck_secret_free(out);
        rc = ck_err_set(CK_EINTERNAL, "item %s fails its integrity check: stored data is damaged",
                        ck_stmt_text(st, 0));
    }
    free(aad);
    ck_secret_free(&ik);
    return rc;
}

static ck_err migrated_mailbox(struct ck_mail *m, const char *tenant, const char *upn,
                               struct mbx *b)
{
    CK_TRY(live_mbx(m, tenant, upn, b));
    if (!b->migrated)
        return ck_err_set(CK_ECONFLICT,
                          "'%s' is a mail user without a mailbox yet: import or create its "
                          "mailbox first",
                          upn);
    return CK_OK;
}

ck_err ck_item_put(struct ck_mail *m, const char *tenant, const char *upn_in, const char *id,
                   const uint8_t *data, size_t n, const char *request_id)
{
    char upn[257];
    CK_TRY(norm_upn(upn_in, upn));
    CK_TRY(check_item_id(id));
    if (n > CK_MAIL_ITEM_MAX)
        return ck_err_set(CK_ETOOBIG, "an item holds at most %u bytes", CK_MAIL_ITEM_MAX);
    struct mbx b;
    CK_TRY(migrated_mailbox(m, tenant, upn, &b));
    struct ck_secret mk = {0};
    CK_TRY(mailbox_key(m, b.key_id, CK_DEP_USER, request_id, &mk));
    ck_err rc = store_item(m, tenant, upn, id, b.key_id, &mk, data, n, ck_now());
    ck_secret_free(&mk);
    return rc;
}

#define ITEM_COLUMNS "id, key_id, item_key_id, wrapped_key, nonce, ct, tag"

ck_err ck_item_get(struct ck_mail *m, const char *tenant, const char *upn_in, const char *id,
                   const char *request_id, struct ck_secret *out)
{
    char upn[257];
    CK_TRY(norm_upn(upn_in, upn));
    CK_TRY(check_item_id(id));
    struct mbx b;
    CK_TRY(migrated_mailbox(m, tenant, upn, &b));
    struct ck_stmt *st;
    CK_TRY(ck_stmt_prepare(m->store, &st,
                           "SELECT " ITEM_COLUMNS " FROM ck_mail_item WHERE tenant = ? AND "
                           "upn = ? AND id = ?",
                           "ttt", tenant, upn, id));
    bool row;
    ck_err rc = ck_stmt_step(st, &row);
    if (rc == CK_OK && !row) {
        rc = ck_err_set(CK_ENOTFOUND, "no item '%s' in mailbox %s", id, upn);
        ck_err_code("ItemNotFound", NULL);
    }
    struct ck_secret mk = {0};
    if (rc == CK_OK)
        rc = mailbox_key(m, ck_stmt_text(st, 1), CK_DEP_USER, request_id, &mk);
    if (rc == CK_OK)
        rc = read_item(m, st, tenant, upn, &mk, out);
    ck_secret_free(&mk);
    ck_stmt_finalize(st);
    return rc;
}

ck_err ck_item_delete(struct ck_mail *m, const char *tenant, const char *upn_in, const char *id)
{
    char upn[257];
    CK_TRY(norm_upn(upn_in, upn));
    CK_TRY(check_item_id(id));
    struct mbx b;
    CK_TRY(migrated_mailbox(m, tenant, upn, &b));
    int64_t changes = 0;
    CK_TRY(ck_store_run(m->store, &changes,
                        "DELETE FROM ck_mail_item WHERE tenant = ? AND upn = ? AND id = ?", "ttt",
                        tenant, upn, id));
    if (!changes) {
        ck_err_set(CK_ENOTFOUND, "no item '%s' in mailbox %s", id, upn);
        ck_err_code("ItemNotFound", NULL);
        return CK_ENOTFOUND;
    }
    return CK_OK;
}

ck_err ck_item_list(struct ck_mail *m, const char *tenant, const char *upn_in, const char *after,
                    size_t max, struct ck_item_entry **out, size_t *n, bool *more)
{
    char upn[257];
    CK_TRY(norm_upn(upn_in, upn));
    if (max < 1 || max > 1000)
        return ck_err_set(CK_EINVAL, "max must be between 1 and 1000");
    struct mbx b;
    CK_TRY(migrated_mailbox(m, tenant, upn, &b));
    struct ck_stmt *st;
    CK_TRY(ck_stmt_prepare(m->store, &st,
                           "SELECT id, size, created FROM ck_mail_item WHERE tenant = ? AND "
                           "upn = ? AND id > ? ORDER BY id LIMIT ?",
                           "ttti", tenant, upn, after ? after : "", (int64_t)max + 1));
    struct ck_item_entry *v = ck_xcalloc(max + 1, sizeof *v);
    size_t count = 0;
    bool row;
    ck_err rc;
    *more = false;
    while ((rc = ck_stmt_step(st, &row)) == CK_OK && row) {
        if (count == max) {
            *more = true;
            break;
        }
        snprintf(v[count].id, sizeof v[count].id, "%s", ck_stmt_text(st, 0));
        v[count].size = ck_stmt_int(st, 1);
        v[count].created = ck_stmt_int(st, 2);
        count++;
    }
    ck_stmt_finalize(st);
    if (rc != CK_OK) {
        free(v);
        return rc;
    }
    *out = v;
    *n = count;
    return CK_OK;
}

/* ---------- re-encryption ---------- */

/* Moves up to one batch of items still under an older mailbox key to the
 * current one: each is decrypted and encrypted again under a new item key.
 * Keys are fetched and items read before the write transaction begins —
 * fetching a DEP key may call a vault, and a vault call must never hold the
 * store's write lock (the vault may be this very process, writing its audit
 * record). Inside the transaction each item is rewritten only if it is still
 * the version that was read, so a user's write in between wins and is picked
 * up by a later batch. When none remain, mailbox keys no item uses are
 * deleted. Reads keep working throughout: each item names its key. */
struct pending_item {
    char id[129];
    char item_key_id[33];
    struct ck_secret plain;
};

static ck_err read_batch(struct ck_mail *m, const struct ck_job *j, const char *tenant,
                         const char *upn, const char *current, struct pending_item *batch,
                         size_t *nb)
{
    struct ck_stmt *st = NULL;
    struct ck_secret old = {0};
    char old_id[37] = "";
    *nb = 0;
    /* The items under other keys, as two ranges of ck_mail_item_by_key_id
     * (below and above the current key): each batch reads only its own
     * rows, however large the mailbox. */
    static const char *const ranges[2] = {
        "SELECT " ITEM_COLUMNS " FROM ck_mail_item WHERE tenant = ? AND upn = ? AND key_id < ? "
        "ORDER BY key_id, id LIMIT ?",
        "SELECT " ITEM_COLUMNS " FROM ck_mail_item WHERE tenant = ? AND upn = ? AND key_id > ? "
        "ORDER BY key_id, id LIMIT ?",
    };
    bool row = false;
    ck_err rc = CK_OK;
    for (int r = 0; r < 2 && rc == CK_OK && *nb < REENCRYPT_BATCH; r++) {
        ck_stmt_finalize(st);
        st = NULL;
        rc = ck_stmt_prepare(m->store, &st, ranges[r], "ttti", tenant, upn, current,
                             (int64_t)(REENCRYPT_BATCH - *nb));
        while (rc == CK_OK && (rc = ck_stmt_step(st, &row)) == CK_OK && row) {
            const char *key_id = ck_stmt_text(st, 1);
            if (strcmp(key_id, old_id) != 0) {
                ck_secret_free(&old);
                snprintf(old_id, sizeof old_id, "%s", key_id);
                rc = mailbox_key(m, old_id, CK_DEP_SYSTEM, j->id, &old);
            }
            struct pending_item *p = &batch[*nb];
            if (rc == CK_OK)
                rc = read_item(m, st, tenant, upn, &old, &p->plain);
            if (rc != CK_OK)
                break;
            snprintf(p->id, sizeof p->id, "%s", ck_stmt_text(st, 0));
            snprintf(p->item_key_id, sizeof p->item_key_id, "%s", ck_stmt_text(st, 2));
            (*nb)++;
        }
    }
    ck_stmt_finalize(st);
    ck_secret_free(&old);
    return rc;
}

/* Re-encrypts one read item under mk, if the row still holds what was read. */
static ck_err rewrite_item(struct ck_mail *m, const char *tenant, const char *upn,
                           const char *key_id, const struct ck_secret *mk,
                           const struct pending_item *p)
{
    struct ck_secret ik = {0};
    struct ck_buf wrapped = {0}, ct = {0};
    uint8_t nonce[CK_GCM_IV_LEN], tag[CK_GCM_TAG_LEN], raw[16];
    char ikid[33], *aad = NULL;
    size_t aadlen = 0;
    ck_err rc;
    CK_GUARD(ck_secret_alloc(&ik, KEY_LEN));
    CK_GUARD(ck_rand_bytes(ik.p, ik.n));
    CK_GUARD(ck_rand_bytes(raw, sizeof raw));
    ck_hex_encode(raw, sizeof raw, ikid);
    CK_GUARD(ck_rand_bytes(nonce, sizeof nonce));
    CK_GUARD(ck_aes_kwp_wrap(mk->p, mk->n, ik.p, ik.n, &wrapped));
    CK_GUARD(ck_buf_alloc(&ct, p->plain.n));
    aad = item_aad(tenant, upn, p->id, ikid, &aadlen);
    CK_GUARD(ck_aes_gcm_encrypt(ik.p, ik.n, nonce, sizeof nonce, (const uint8_t *)aad, aadlen,
                                p->plain.p, p->plain.n, ct.p, tag));
    rc = ck_store_run(m->store, NULL,
                      "UPDATE ck_mail_item SET key_id = ?, item_key_id = ?, wrapped_key = ?, "
                      "nonce = ?, ct = ?, tag = ? WHERE tenant = ? AND upn = ? AND id = ? AND "
                      "item_key_id = ?",
                      "ttbbbbtttt", key_id, ikid, wrapped.p, wrapped.n, nonce, sizeof nonce, ct.p,
                      ct.n, tag, sizeof tag, tenant, upn, p->id, p->item_key_id);
out:
    free(aad);
    ck_secret_free(&ik);
    ck_buf_free(&wrapped);
    ck_buf_free(&ct);
    return rc;
}

static ck_err reencrypt_step(void *ctx, const struct ck_job *j, int64_t *done, int64_t *total,
                             bool *finished)
{
    struct ck_mail *m = ctx;
    char tenant[37], upn[257];
    const char *slash = strchr(j->target, '/');
    if (!slash || (size_t)(slash - j->target) >= sizeof tenant)
        return ck_err_set(CK_EINVAL, "bad re-encryption target '%s'", j->target);
    snprintf(tenant, sizeof tenant, "%.*s", (int)(slash - j->target), j->target);
    snprintf(upn, sizeof upn, "%s", slash + 1);

    struct mbx b;
    CK_TRY(load_mbx(m, tenant, upn, &b));
    if (!b.exists)
        return no_mailbox(upn);
    if (*b.purge_id) { /* purged meanwhile: nothing left to move */
        *finished = true;
        return CK_OK;
    }
    struct ck_secret cur = {0};
    struct pending_item *batch = ck_xcalloc(REENCRYPT_BATCH, sizeof *batch);
    size_t nb = 0;
    ck_err rc = mailbox_key(m, b.key_id, CK_DEP_SYSTEM, j->id, &cur);
    if (rc == CK_OK)
        rc = read_batch(m, j, tenant, upn, b.key_id, batch, &nb);
    bool began = false;
    if (rc == CK_OK)
        began = (rc = ck_store_begin(m->store)) == CK_OK;
    /* The mailbox may have been re-assigned since: then this batch is moot. */
    struct mbx now = {0};
    if (rc == CK_OK)
        rc = load_mbx(m, tenant, upn, &now);
    bool same = rc == CK_OK && now.exists && strcmp(now.key_id, b.key_id) == 0;
    for (size_t i = 0; rc == CK_OK && same && i < nb; i++)
        rc = rewrite_item(m, tenant, upn, b.key_id, &cur, &batch[i]);
    *finished = rc == CK_OK && same && nb < REENCRYPT_BATCH;
    if (rc == CK_OK && *finished)
        rc = ck_store_run(m->store, NULL,
                          "DELETE FROM ck_mailbox_key WHERE tenant = ? AND upn = ? AND id <> ? "
                          "AND NOT EXISTS (SELECT 1 FROM ck_mail_item i WHERE i.key_id = "
                          "ck_mailbox_key.id)",
                          "ttt", tenant, upn, b.key_id);
    if (rc == CK_OK)
        rc = ck_store_commit(m->store);
    else if (began)
        ck_store_rollback(m->store);
    for (size_t i = 0; i < REENCRYPT_BATCH; i++)
        ck_secret_free(&batch[i].plain);
    free(batch);
    ck_secret_free(&cur);
    CK_TRY(rc);
    /* Progress: counted at the first and the last step (and when the
     * mailbox moved on meanwhile); in between, carried on from the job's
     * row, since a count per batch would read the whole mailbox. */
    if (j->total > 0 && same && !*finished) {
        ck_job_carry(j, (int64_t)nb, done, total);
        return CK_OK;
    }
    return item_counts(m, tenant, upn, same ? b.key_id : now.key_id, done, total);
}

/* ---------- the purge path ---------- */

/* Mailboxes (and mail users) of tenant whose data lives under the DEP:
 * assigned to it, or holding a mailbox key under it. */
#define UNDER_DEP                                                                                  \
    "tenant = ? AND purge_id = '' AND (dep_id = ? OR EXISTS (SELECT 1 FROM ck_mailbox_key k "      \
    "WHERE k.dep_id = ? AND k.tenant = ck_mailbox.tenant AND k.upn = ck_mailbox.upn))"

static ck_err inventory_fill(struct ck_stmt *st, void *elem, void *arg)
{
    (void)arg;
    struct ck_mail_purge_mailbox *b = elem;
    snprintf(b->upn, sizeof b->upn, "%s", ck_stmt_text(st, 0));
    b->items = ck_stmt_int(st, 1);
    b->bytes = ck_stmt_int(st, 2);
    return CK_OK;
}

ck_err ck_mail_purge_inventory(struct ck_mail *m, const char *tenant, const char *dep_id,
                               struct ck_mail_purge_mailbox **out, size_t *n)
{
    struct ck_stmt *st;
    CK_TRY(ck_stmt_prepare(
        m->store, &st,
        "SELECT upn, (SELECT COUNT(*) FROM ck_mail_item i WHERE i.tenant = ck_mailbox.tenant AND "
        "i.upn = ck_mailbox.upn), (SELECT COALESCE(SUM(size), 0) FROM ck_mail_item i WHERE "
        "i.tenant = ck_mailbox.tenant AND i.upn = ck_mailbox.upn) FROM ck_mailbox WHERE " UNDER_DEP
        " ORDER BY upn",
        "ttt", tenant, dep_id, dep_id));
    void *v;
    CK_TRY(ck_stmt_collect(st, sizeof **out, inventory_fill, NULL, NULL, &v, n));
    *out = v;
    return CK_OK;
}

static ck_err print_fill(struct ck_stmt *st, void *elem, void *arg)
{
    (void)arg;
    char what[128];
    snprintf(what, sizeof what, "mailbox key %s of %.64s", ck_stmt_text(st, 0),
             ck_stmt_text(st, 1));
    size_t wn;
    const void *w = ck_stmt_blob(st, 2, &wn);
    return ck_blob_print_make(what, false, w, wn, elem);
}

ck_err ck_mail_purge_prints(struct ck_mail *m, const char *tenant, const char *dep_id,
                            struct ck_blob_print **out, size_t *n)
{
    struct ck_stmt *st;
    CK_TRY(ck_stmt_prepare(m->store, &st,
                           "SELECT k.id, k.upn, k.wrapped FROM ck_mailbox_key k WHERE k.dep_id = "
                           "? OR EXISTS (SELECT 1 FROM ck_mailbox WHERE ck_mailbox.tenant = "
                           "k.tenant AND ck_mailbox.upn = k.upn AND " UNDER_DEP ") ORDER BY k.id",
                           "tttt", dep_id, tenant, dep_id, dep_id));
    void *v;
    CK_TRY(ck_stmt_collect(st, sizeof **out, print_fill, NULL, NULL, &v, n));
    *out = v;
    return CK_OK;
}

ck_err ck_mail_purge_mark(struct ck_mail *m, const char *tenant, const char *dep_id,
                          const char *purge_id)
{
    return ck_store_run(m->store, NULL, "UPDATE ck_mailbox SET purge_id = ? WHERE " UNDER_DEP,
                        "tttt", purge_id, tenant, dep_id, dep_id);
}

#define PURGE_BATCH 500

ck_err ck_mail_purge_step(struct ck_mail *m, const char *tenant, const char *dep_id,
                          const char *purge_id, int64_t *remaining, bool *finished)
{
    *finished = false;
    CK_TRY(ck_store_begin(m->store));
    int64_t deleted = 0;
    ck_err rc = ck_store_run(
        m->store, &deleted,
        "DELETE FROM ck_mail_item WHERE rowid IN (SELECT i.rowid FROM ck_mail_item i JOIN "
        "ck_mailbox b ON b.tenant = i.tenant AND b.upn = i.upn WHERE b.tenant = ? AND "
        "b.purge_id = ? LIMIT ?)",
        "tti", tenant, purge_id, (int64_t)PURGE_BATCH);
    if (rc == CK_OK && deleted < PURGE_BATCH) {
        /* No item left: the mailbox keys go, of the purged mailboxes and any
         * other under the DEP. */
        rc = ck_store_run(m->store, NULL,
                          "DELETE FROM ck_mailbox_key WHERE tenant = ? AND (dep_id = ? OR upn IN "
                          "(SELECT upn FROM ck_mailbox WHERE tenant = ? AND purge_id = ?))",
                          "tttt", tenant, dep_id, tenant, purge_id);
        if (rc == CK_OK)
            rc = ck_store_run(m->store, NULL,
                              "UPDATE ck_mailbox SET key_id = '' WHERE tenant = ? AND "
                              "purge_id = ?",
                              "tt", tenant, purge_id);
        *finished = rc == CK_OK;
    }
    if (rc == CK_OK)
        rc = ck_store_commit(m->store);
    else
        ck_store_rollback(m->store);
    CK_TRY(rc);
    struct ck_mail_purge_remains left;
    CK_TRY(ck_mail_purge_remains(m, tenant, dep_id, purge_id, &left));
    *remaining = left.items;
    if (*finished)
        CK_TRY(ck_store_checkpoint(m->store));
    return CK_OK;
}

ck_err ck_mail_purge_remains(struct ck_mail *m, const char *tenant, const char *dep_id,
                             const char *purge_id, struct ck_mail_purge_remains *out)
{
    memset(out, 0, sizeof *out);
    int64_t v[3];
    CK_TRY(ck_store_ints(
        m->store, v, 3,
        "SELECT (SELECT COUNT(*) FROM ck_mail_item i JOIN ck_mailbox b ON b.tenant = i.tenant AND "
        "b.upn = i.upn WHERE b.tenant = ? AND b.purge_id = ?), (SELECT COUNT(*) FROM "
        "ck_mailbox_key WHERE tenant = ? AND (dep_id = ? OR upn IN (SELECT upn FROM ck_mailbox "
        "WHERE tenant = ? AND purge_id = ?))), (SELECT COUNT(*) FROM ck_mailbox WHERE " UNDER_DEP
        ")",
        "ttttttttt", tenant, purge_id, tenant, dep_id, tenant, purge_id, tenant, dep_id, dep_id));
    out->items = v[0];
    out->mailbox_keys = v[1];
    out->unmarked_mailboxes = v[2];
    return CK_OK;
}
