/*
 * spo.c — the data encryption policy of a geo: registration, roll and
 * restore, and the "files.rewrap" job step that moves site keys from one
 * TIK to another.
 *
 * Registration and roll make a new TIK (32 random bytes) wrapped under the
 * two root keys (RSA-OAEP-256 through keyprov, each wrapped copy proved by
 * an unwrap) and under a new availability key (written first: a crash
 * leaves an unused availability key, never a TIK without its availability
 * copy). The policy row then names the new TIK as its target (tik_id) and
 * the job moves every site key to it, a batch per transaction; when no site
 * remains on another TIK the state becomes Registered and the TIKs no site
 * uses any more are deleted with their availability keys.
 *
 * Restore keeps the TIK's bytes: it recovers them with the availability key
 * (the only use of that key, audited "Restore with Availability Key") and
 * rewraps them under the given root keys. No site key changes, so the
 * Recovering state lasts only for the one transaction that writes the new
 * wrapped copies; the state is Registered when restore returns.
 *
 * Unregistration (offboarding) is a move like a roll, to a new
 * service-managed TIK: state Unregistering while the job runs, then
 * Unregistered with the root key URIs cleared and the customer TIKs and
 * their availability keys deleted. Only the job unwraps the old TIK through
 * the customer's keys (system use); afterwards nothing of the geo calls them.
 *
 * A purge request is recorded only after both root keys' vaults answered a
 * wrapKey probe with 403: the customer has taken the files service's access
 * away. From then on the policy is frozen (no registration, roll, restore,
 * unregistration or new site); purge.c does the rest.
 *
 * The job fetches every TIK it needs before it takes the write lock: an
 * unwrap may call a vault that is this same process. So does the purge
 * request's probe: no vault call is made inside a transaction.
 */
#include "files/files_internal.h"
#include "crypto/crypto.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const state_names[] = {"Unregistered", "Registering",   "Registered", "Rolling",
                                          "Recovering",   "Unregistering", "Purging",    "Purged"};

const char *ck_spo_state_name(enum ck_spo_state s)
{
    return (unsigned)s < sizeof state_names / sizeof state_names[0] ? state_names[s] : "Unknown";
}

static enum ck_spo_state state_of(const char *name)
{
    for (unsigned i = 0; i < sizeof state_names / sizeof state_names[0]; i++)
        if (strcmp(state_names[i], name) == 0)
            return (enum ck_spo_state)i;
    return CK_SPO_UNREGISTERED;
}

void files_audit(struct ck_files *f, const char *operation, const char *target,
                 const char *request_id, ck_err rc, const char *detail)
{
    if (!f->audit)
        return;
    char saved[512];
    snprintf(saved, sizeof saved, "%s", ck_err_msg());
    /* Codes are string literals (err.c): the pointers outlive the append,
     * which may set errors of its own. A copy freed here would leave the
     * thread's error state pointing at freed memory. */
    const char *code = ck_err_code_get(), *inner = ck_err_inner_get();
    struct ck_audit_event ev = {FILES_PRINCIPAL,
                                operation,
                                target,
                                rc == CK_OK ? "success" : ck_err_name(rc),
                                request_id ? request_id : "-",
                                detail};
    if (ck_audit_append(f->audit, &ev) != CK_OK)
        ck_log(CK_LOG_ERROR, "audit append failed", "operation", operation, NULL);
    ck_err_set(rc, "%s", saved);
    if (code)
        ck_err_code(code, inner);
}

/* ---------- reading the policy ---------- */

static void version_of(const char *kid, char out[33])
{
    const char *slash = strrchr(kid, '/');
    snprintf(out, 33, "%s", slash && strlen(slash + 1) == 32 ? slash + 1 : "");
}

static ck_err site_counts(struct ck_files *f, const char *tenant, const char *geo,
                          const char *tik_id, int64_t *on_target, int64_t *all)
{
    int64_t v[2];
    ck_err rc = ck_store_ints(f->store, v, 2,
                              "SELECT COUNT(*), COALESCE(SUM(CASE WHEN tik_id = ? THEN 1 ELSE 0 "
                              "END), 0) FROM ck_site WHERE tenant = ? AND geo = ?",
                              "ttt", tik_id, tenant, geo);
    *all = v[0];
    *on_target = v[1];
    return rc;
}

ck_err files_spo_load(struct ck_files *f, const char *tenant, const char *geo,
                      struct ck_spo_dep *out, char old_tik[37])
{
    memset(out, 0, sizeof *out);
    struct ck_stmt *st;
    CK_TRY(ck_stmt_prepare(f->store, &st,
                           "SELECT p.state, p.primary_uri, p.secondary_uri, p.tik_id, "
                           "p.old_tik_id, p.job_id, t.kid1, t.kid2, t.service_managed, "
                           "p.purge_id, p.purge_reason, p.purge_contact, p.purge_requested_at "
                           "FROM ck_spo_dep p LEFT JOIN ck_tik t ON t.id = p.tik_id WHERE "
                           "p.tenant = ? AND p.geo = ?",
                           "tt", tenant, geo));
    bool row;
    ck_err rc = ck_stmt_step(st, &row);
    if (rc == CK_OK && row) {
        snprintf(out->tenant, sizeof out->tenant, "%s", tenant);
        snprintf(out->geo, sizeof out->geo, "%s", geo);
        out->state = state_of(ck_stmt_text(st, 0));
        snprintf(out->primary_uri, sizeof out->primary_uri, "%s", ck_stmt_text(st, 1));
        snprintf(out->secondary_uri, sizeof out->secondary_uri, "%s", ck_stmt_text(st, 2));
        snprintf(out->tik_id, sizeof out->tik_id, "%s", ck_stmt_text(st, 3));
        if (old_tik)
            snprintf(old_tik, 37, "%s", ck_stmt_text(st, 4));
        snprintf(out->job_id, sizeof out->job_id, "%s", ck_stmt_text(st, 5));
        if (!ck_stmt_isnull(st, 6) && ck_stmt_int(st, 8) == 0) {
            version_of(ck_stmt_text(st, 6), out->primary_version);
            version_of(ck_stmt_text(st, 7), out->secondary_version);
        }
        snprintf(out->purge_id, sizeof out->purge_id, "%s", ck_stmt_text(st, 9));
        snprintf(out->purge_reason, sizeof out->purge_reason, "%s", ck_stmt_text(st, 10));
        snprintf(out->purge_contact, sizeof out->purge_contact, "%s", ck_stmt_text(st, 11));
        out->purge_requested_at = ck_stmt_int(st, 12);
        out->purge_requested = out->purge_id[0] != '\0';
    } else if (rc == CK_OK) {
        rc = ck_err_set(CK_ENOTFOUND, "no geo %s in this tenant", geo);
        ck_err_code("GeoNotFound", NULL);
    }
    ck_stmt_finalize(st);
    return rc;
}

ck_err ck_spo_get(struct ck_files *f, const char *tenant, const char *geo, struct ck_spo_dep *out)
{
    CK_TRY(files_check_tenant(tenant));
    CK_TRY(files_check_geo(geo));
    CK_TRY(files_spo_load(f, tenant, geo, out, NULL));
    int64_t on, all;
    if (out->state == CK_SPO_PURGING || out->state == CK_SPO_PURGED)
        CK_TRY(files_purge_counts(f, tenant, geo, &on, &all)); /* sites destroyed */
    else
        CK_TRY(site_counts(f, tenant, geo, out->tik_id, &on, &all));
    out->percent = all ? (int)(on * 100 / all) : 100;
    return CK_OK;
}

ck_err files_purge_guard(const struct ck_spo_dep *d)
{
    if (d->state == CK_SPO_PURGING || d->state == CK_SPO_PURGED) {
        ck_err rc =
            ck_err_set(CK_EGONE, "the geo %s of this tenant was permanently purged (purge %s)",
                       d->geo, d->purge_id);
        ck_err_code("Gone", "GeoPurged");
        return rc;
    }
    if (d->purge_requested) {
        ck_err rc = ck_err_set(
            CK_ECONFLICT, "a permanent purge was requested for geo %s of this tenant (purge %s)",
            d->geo, d->purge_id);
        ck_err_code("Conflict", "PurgeRequested");
        return rc;
    }
    return CK_OK;
}

/* ---------- validation of root keys (keyprov's shared rules) ---------- */

#define FILES_SERVICE_PRINCIPAL "files service principal"
static const char *const spo_slots[2] = {"the primary key", "the secondary key"};

/* Both URIs well-formed, in two different vaults, and each acceptable. */
static ck_err check_roots(struct ck_files *f, const char *const uri[2])
{
    if (!f->keyprov)
        return ck_err_set(CK_EINVAL, "no key provider: customer keys cannot be used");
    struct ck_root_key_info info[2];
    return ck_root_check_pair(f->keyprov, uri, spo_slots, FILES_SERVICE_PRINCIPAL, info);
}

static ck_err wrap_under_roots(struct ck_files *f, const char *const uri[2],
                               const struct ck_secret *key, struct ck_buf wrapped[2],
                               char kid[2][CK_KEY_URI_MAX])
{
    return ck_root_wrap_pair(f->keyprov, uri, spo_slots, FILES_SERVICE_PRINCIPAL, key, wrapped,
                             kid);
}

/* A new TIK under the two roots and a new availability key; the ck_tik row
 * is written, the unwrapped TIK put in the cache. */
static ck_err new_tik(struct ck_files *f, const char *tenant, const char *geo,
                      const char *const uri[2], char tik_id[37])
{
    struct ck_secret tik = {0};
    struct ck_buf wrapped[2] = {{0}}, wrapped_avail = {0};
    char kid[2][CK_KEY_URI_MAX];
    ck_err rc;
    CK_GUARD(ck_uuid_v4(tik_id));
    CK_GUARD(ck_secret_alloc(&tik, FILES_KEY_LEN));
    CK_GUARD(ck_rand_bytes(tik.p, tik.n));
    CK_GUARD(wrap_under_roots(f, uri, &tik, wrapped, kid));
    CK_GUARD(files_avail_create(f, tik_id, &tik, &wrapped_avail));
    rc = ck_store_run(f->store, NULL,
                      "INSERT INTO ck_tik (id, tenant, geo, service_managed, kid1, kid2, "
                      "wrapped1, wrapped2, wrapped_avail, created) VALUES (?,?,?,0,?,?,?,?,?,?)",
                      "tttttbbbi", tik_id, tenant, geo, kid[0], kid[1], wrapped[0].p, wrapped[0].n,
                      wrapped[1].p, wrapped[1].n, wrapped_avail.p, wrapped_avail.n, ck_now());
    if (rc != CK_OK)
        files_avail_delete(f, tik_id);
    if (rc == CK_OK)
        files_tik_cache_put(f, tik_id, &tik);
out:
    ck_secret_free(&tik);
    ck_buf_free(&wrapped[0]);
    ck_buf_free(&wrapped[1]);
    ck_buf_free(&wrapped_avail);
    return rc;
}

static void forget_tik(struct ck_files *f, const char *tik_id)
{
    ck_store_run(f->store, NULL, "DELETE FROM ck_tik WHERE id = ?", "t", tik_id);
    files_avail_delete(f, tik_id);
    files_tik_cache_drop(f, tik_id);
}

/* Moves the policy row from state `from` to `to` with a new target TIK and
 * queues the rewrap job, in one transaction. CK_ECONFLICT when the state
 * changed since it was read. */
static ck_err start_move(struct ck_files *f, const char *tenant, const char *geo,
                         enum ck_spo_state from, enum ck_spo_state to, const char *uri1,
                         const char *uri2, const char *old_tik, const char *new_tik_id)
{
    CK_TRY(ck_store_begin(f->store));
    int64_t changes = 0;
    char job_id[37] = "";
    char *target = ck_sprintf("%s/%s", tenant, geo);
    ck_err rc = ck_store_run(
        f->store, &changes,
        "UPDATE ck_spo_dep SET state = ?, primary_uri = ?, secondary_uri = ?, tik_id = ?, "
        "old_tik_id = ?, changed = ? WHERE tenant = ? AND geo = ? AND state = ? AND tik_id = ? "
        "AND purge_id = ''",
        "tttttitttt", ck_spo_state_name(to), uri1, uri2, new_tik_id, old_tik, ck_now(), tenant, geo,
        ck_spo_state_name(from), old_tik);
    if (rc == CK_OK && changes != 1) {
        struct ck_spo_dep now;
        rc = files_spo_load(f, tenant, geo, &now, NULL);
        if (rc == CK_OK)
            rc = files_purge_guard(&now);
        if (rc == CK_OK)
            rc = ck_err_set(CK_ECONFLICT,
                            "the data encryption policy of geo %s changed meanwhile; try again",
                            geo);
    }
    if (rc == CK_OK)
        rc = ck_job_enqueue(f->jobs, CK_FILES_REWRAP_JOB, tenant, target, job_id);
    if (rc == CK_OK)
        rc = ck_store_run(f->store, NULL,
                          "UPDATE ck_spo_dep SET job_id = ? WHERE tenant = ? AND geo = ?", "ttt",
                          job_id, tenant, geo);
    if (rc == CK_OK)
        rc = ck_store_commit(f->store);
    else
        ck_store_rollback(f->store);
    free(target);
    return rc;
}

static ck_err busy(const char *geo, enum ck_spo_state s)
{
    return ck_err_set(CK_ECONFLICT,
                      "the data encryption policy of geo %s is %s: one registration, roll, "
                      "restore or unregistration at a time",
                      geo, ck_spo_state_name(s));
}

ck_err ck_spo_register(struct ck_files *f, const char *tenant, const char *geo,
                       const char *primary_uri, const char *secondary_uri, const char *request_id,
                       struct ck_spo_dep *out)
{
    CK_TRY(files_check_tenant(tenant));
    CK_TRY(files_check_geo(geo));
    char *target = ck_sprintf("%s/%s", tenant, geo);
    struct ck_spo_dep cur;
    char old_tik[37], tik_id[37] = "";
    ck_err rc;
    CK_GUARD(files_spo_load(f, tenant, geo, &cur, old_tik));
    CK_GUARD(files_purge_guard(&cur));
    if (cur.state != CK_SPO_UNREGISTERED) {
        rc = ck_err_set(CK_ECONFLICT, "geo %s already has a data encryption policy", geo);
        goto out;
    }
    const char *uri[2] = {primary_uri, secondary_uri};
    CK_GUARD(check_roots(f, uri));
    CK_GUARD(new_tik(f, tenant, geo, uri, tik_id));
    rc = start_move(f, tenant, geo, CK_SPO_UNREGISTERED, CK_SPO_REGISTERING, primary_uri,
                    secondary_uri, cur.tik_id, tik_id);
    if (rc == CK_ECONFLICT && ck_err_code_get()) {
        forget_tik(f, tik_id); /* a purge was requested meanwhile: its message */
    } else if (rc == CK_ECONFLICT) {
        forget_tik(f, tik_id);
        rc = ck_err_set(CK_ECONFLICT, "geo %s already has a data encryption policy", geo);
    } else if (rc != CK_OK) {
        forget_tik(f, tik_id);
    }
out:;
    char detail[1200];
    snprintf(detail, sizeof detail, "geo %s; primary %s; secondary %s; TIK %s", geo,
             primary_uri ? primary_uri : "", secondary_uri ? secondary_uri : "", tik_id);
    files_audit(f, "spo.register", target, request_id, rc, detail);
    free(target);
    CK_TRY(rc);
    return out ? ck_spo_get(f, tenant, geo, out) : CK_OK;
}

ck_err ck_spo_update(struct ck_files *f, const char *tenant, const char *geo, bool primary,
                     const char *uri, const char *request_id, struct ck_spo_dep *out)
{
    CK_TRY(files_check_tenant(tenant));
    CK_TRY(files_check_geo(geo));
    char *target = ck_sprintf("%s/%s", tenant, geo);
    struct ck_spo_dep cur;
    char tik_id[37] = "";
    ck_err rc;
    CK_GUARD(files_spo_load(f, tenant, geo, &cur, NULL));
    CK_GUARD(files_purge_guard(&cur));
    if (cur.state == CK_SPO_UNREGISTERED) {
        rc = ck_err_set(CK_ECONFLICT,
                        "geo %s has no data encryption policy: register one before rolling a key",
                        geo);
        goto out;
    }
    if (cur.state != CK_SPO_REGISTERED) {
        rc = busy(geo, cur.state);
        goto out;
    }
    const char *uris[2] = {primary ? uri : cur.primary_uri, primary ? cur.secondary_uri : uri};
    CK_GUARD(check_roots(f, uris));
    CK_GUARD(new_tik(f, tenant, geo, uris, tik_id));
    rc = start_move(f, tenant, geo, CK_SPO_REGISTERED, CK_SPO_ROLLING, uris[0], uris[1], cur.tik_id,
                    tik_id);
    if (rc != CK_OK)
        forget_tik(f, tik_id);
out:;
    char detail[1200];
    snprintf(detail, sizeof detail, "geo %s; roll of the %s key to %s; new TIK %s", geo,
             primary ? "primary" : "secondary", uri ? uri : "", tik_id);
    files_audit(f, "spo.update", target, request_id, rc, detail);
    free(target);
    CK_TRY(rc);
    return out ? ck_spo_get(f, tenant, geo, out) : CK_OK;
}

/* The TIK's bytes through its availability key: restore only. */
static ck_err tik_by_availability(struct ck_files *f, const char *tik_id, struct ck_secret *tik)
{
    struct ck_stmt *st;
    CK_TRY(ck_stmt_prepare(f->store, &st, "SELECT wrapped_avail FROM ck_tik WHERE id = ?", "t",
                           tik_id));
    bool row;
    struct ck_buf wrapped = {0};
    ck_err rc = ck_stmt_step(st, &row);
    if (rc == CK_OK && row && !ck_stmt_isnull(st, 0)) {
        size_t n;
        const void *p = ck_stmt_blob(st, 0, &n);
        rc = ck_buf_set(&wrapped, p, n);
    } else if (rc == CK_OK) {
        rc = ck_err_set(CK_EGONE, "the TIK %s has no availability copy", tik_id);
    }
    ck_stmt_finalize(st);
    struct ck_secret ak = {0};
    if (rc == CK_OK)
        rc = files_avail_key(f, tik_id, &ak);
    if (rc == CK_OK && ck_aes_kwp_unwrap(ak.p, ak.n, wrapped.p, wrapped.n, tik) != CK_OK)
        rc = ck_err_set(CK_EINTERNAL, "the availability copy of TIK %s does not unwrap", tik_id);
    ck_secret_free(&ak);
    ck_buf_free(&wrapped);
    return rc;
}

ck_err ck_spo_restore(struct ck_files *f, const char *tenant, const char *geo,
                      const char *primary_uri, const char *secondary_uri, const char *request_id,
                      struct ck_spo_dep *out)
{
    CK_TRY(files_check_tenant(tenant));
    CK_TRY(files_check_geo(geo));
    char *target = ck_sprintf("%s/%s", tenant, geo);
    struct ck_spo_dep cur;
    struct ck_secret tik = {0};
    struct ck_buf wrapped[2] = {{0}};
    char kid[2][CK_KEY_URI_MAX];
    bool began = false;
    ck_err rc;
    CK_GUARD(files_spo_load(f, tenant, geo, &cur, NULL));
    CK_GUARD(files_purge_guard(&cur));
    if (cur.state == CK_SPO_UNREGISTERED) {
        rc = ck_err_set(CK_ECONFLICT, "geo %s has no data encryption policy to restore", geo);
        goto out;
    }
    if (cur.state != CK_SPO_REGISTERED) {
        rc = busy(geo, cur.state);
        goto out;
    }
    const char *uri[2] = {primary_uri, secondary_uri};
    CK_GUARD(check_roots(f, uri));
    rc = tik_by_availability(f, cur.tik_id, &tik);
    {
        char detail[256];
        snprintf(detail, sizeof detail, "geo %s; TIK %s; reason: restore requested", geo,
                 cur.tik_id);
        files_audit(f, "Restore with Availability Key", target, request_id, rc, detail);
    }
    CK_GUARD(rc);
    CK_GUARD(wrap_under_roots(f, uri, &tik, wrapped, kid));
    /* Recovering → Registered in one transaction: no site key moves. */
    CK_GUARD(ck_store_begin(f->store));
    began = true;
    int64_t changes = 0;
    int64_t now = ck_now();
    CK_GUARD(ck_store_run(f->store, &changes,
                          "UPDATE ck_spo_dep SET state = ?, changed = ? WHERE tenant = ? AND "
                          "geo = ? AND state = ? AND tik_id = ? AND purge_id = ''",
                          "titttt", ck_spo_state_name(CK_SPO_RECOVERING), now, tenant, geo,
                          ck_spo_state_name(CK_SPO_REGISTERED), cur.tik_id));
    if (changes != 1) {
        rc = ck_err_set(CK_ECONFLICT,
                        "the data encryption policy of geo %s changed meanwhile; try again", geo);
        goto out;
    }
    CK_GUARD(ck_store_run(f->store, NULL,
                          "UPDATE ck_tik SET kid1 = ?, kid2 = ?, wrapped1 = ?, wrapped2 = ? "
                          "WHERE id = ?",
                          "ttbbt", kid[0], kid[1], wrapped[0].p, wrapped[0].n, wrapped[1].p,
                          wrapped[1].n, cur.tik_id));
    CK_GUARD(ck_store_run(f->store, NULL,
                          "UPDATE ck_spo_dep SET state = ?, primary_uri = ?, secondary_uri = ?, "
                          "changed = ? WHERE tenant = ? AND geo = ?",
                          "tttitt", ck_spo_state_name(CK_SPO_REGISTERED), primary_uri,
                          secondary_uri, now, tenant, geo));
    rc = ck_store_commit(f->store);
    began = false;
    if (rc == CK_OK)
        files_tik_cache_put(f, cur.tik_id, &tik);
out:
    if (began)
        ck_store_rollback(f->store);
    {
        char detail[1200];
        snprintf(detail, sizeof detail, "geo %s; primary %s; secondary %s; TIK %s", geo,
                 primary_uri ? primary_uri : "", secondary_uri ? secondary_uri : "", cur.tik_id);
        files_audit(f, "spo.restore", target, request_id, rc, detail);
    }
    free(target);
    ck_secret_free(&tik);
    ck_buf_free(&wrapped[0]);
    ck_buf_free(&wrapped[1]);
    CK_TRY(rc);
    return out ? ck_spo_get(f, tenant, geo, out) : CK_OK;
}

/* ---------- offboarding ---------- */

/* A new service-managed TIK for the geo, its row written: wrapped like the
 * one a geo starts with (ck_geo_add), under the tenant's service root key. */
static ck_err new_service_tik(struct ck_files *f, const char *tenant, const char *geo,
                              char tik_id[37])
{
    struct ck_buf wrapped = {0};
    ck_err rc;
    CK_GUARD(files_service_tik_make(f, tenant, tik_id, &wrapped));
    rc = files_service_tik_insert(f, tenant, geo, tik_id, &wrapped);
out:
    ck_buf_free(&wrapped);
    return rc;
}

ck_err ck_spo_unregister(struct ck_files *f, const char *tenant, const char *geo,
                         const char *request_id, struct ck_spo_dep *out)
{
    CK_TRY(files_check_tenant(tenant));
    CK_TRY(files_check_geo(geo));
    char *target = ck_sprintf("%s/%s", tenant, geo);
    struct ck_spo_dep cur;
    char tik_id[37] = "";
    const char *what = "moving to";
    ck_err rc;
    CK_GUARD(files_spo_load(f, tenant, geo, &cur, NULL));
    CK_GUARD(files_purge_guard(&cur));
    if (cur.state == CK_SPO_UNREGISTERED || cur.state == CK_SPO_UNREGISTERING) {
        /* Nothing to do, or the same move already under way. */
        what = cur.state == CK_SPO_UNREGISTERED ? "already on" : "already moving to";
        snprintf(tik_id, sizeof tik_id, "%s", cur.tik_id);
        rc = CK_OK;
        goto out;
    }
    if (cur.state != CK_SPO_REGISTERED) {
        rc = busy(geo, cur.state);
        goto out;
    }
    CK_GUARD(new_service_tik(f, tenant, geo, tik_id));
    /* The URIs stay while the job still unwraps the old TIK through them;
     * the job's last step clears them. */
    rc = start_move(f, tenant, geo, CK_SPO_REGISTERED, CK_SPO_UNREGISTERING, cur.primary_uri,
                    cur.secondary_uri, cur.tik_id, tik_id);
    if (rc != CK_OK) {
        char saved[512];
        snprintf(saved, sizeof saved, "%s", ck_err_msg());
        const char *code = ck_err_code_get(), *inner = ck_err_inner_get();
        forget_tik(f, tik_id);
        ck_err_set(rc, "%s", saved);
        if (code)
            ck_err_code(code, inner);
    }
out:;
    char detail[256];
    snprintf(detail, sizeof detail, "geo %s; %s service-managed TIK %s; customer TIK %s", geo, what,
             tik_id, cur.tik_id);
    files_audit(f, "spo.unregister", target, request_id, rc, detail);
    free(target);
    CK_TRY(rc);
    return out ? ck_spo_get(f, tenant, geo, out) : CK_OK;
}

/* ---------- the purge request ---------- */

static ck_err check_text(const char *what, const char *v, size_t max)
{
    size_t n = v ? strlen(v) : 0;
    if (n == 0 || n > max)
        return ck_err_set(CK_EINVAL, "a purge %s must have 1 to %zu bytes", what, max);
    return CK_OK;
}

ck_err ck_spo_purge_request(struct ck_files *f, const char *tenant, const char *geo,
                            const char *purge_id, const char *reason, const char *contact,
                            const char *request_id, struct ck_spo_dep *out)
{
    CK_TRY(files_check_tenant(tenant));
    CK_TRY(files_check_geo(geo));
    char *target = ck_sprintf("%s/%s", tenant, geo);
    struct ck_spo_dep cur = {0};
    ck_err rc;
    CK_GUARD(check_text("id", purge_id, 36));
    for (const char *c = purge_id; *c; c++)
        if (*c == '/' || (unsigned char)*c < 0x20 || *c == 0x7f) {
            rc = ck_err_set(CK_EINVAL, "a purge id must not hold '/' or control characters");
            goto out;
        }
    CK_GUARD(check_text("reason", reason, 512));
    CK_GUARD(check_text("contact", contact, 256));
    CK_GUARD(files_spo_load(f, tenant, geo, &cur, NULL));
    CK_GUARD(files_purge_guard(&cur));
    if (cur.state == CK_SPO_UNREGISTERED) {
        rc = ck_err_set(CK_ECONFLICT,
                        "geo %s has no data encryption policy: its files are under "
                        "service-managed keys, there are no customer keys to purge under",
                        geo);
        goto out;
    }
    if (cur.state != CK_SPO_REGISTERED) {
        rc = ck_err_set(CK_ECONFLICT,
                        "the data encryption policy of geo %s is %s: a purge can be requested "
                        "once it is Registered",
                        geo, ck_spo_state_name(cur.state));
        goto out;
    }
    const char *uri[2] = {cur.primary_uri, cur.secondary_uri};
    CK_GUARD(ck_root_check_revoked(f->keyprov, uri, FILES_PRINCIPAL));
    /* One statement: only if nothing moved while the vaults were asked. */
    int64_t changes = 0, now = ck_now();
    CK_GUARD(ck_store_run(f->store, &changes,
                          "UPDATE ck_spo_dep SET purge_id = ?, purge_reason = ?, purge_contact = "
                          "?, purge_requested_at = ?, changed = ? WHERE tenant = ? AND geo = ? "
                          "AND state = ? AND purge_id = '' AND tik_id = ? AND primary_uri = ? AND "
                          "secondary_uri = ?",
                          "tttiitttttt", purge_id, reason, contact, now, now, tenant, geo,
                          ck_spo_state_name(CK_SPO_REGISTERED), cur.tik_id, cur.primary_uri,
                          cur.secondary_uri));
    if (changes != 1)
        rc = ck_err_set(CK_ECONFLICT,
                        "the data encryption policy of geo %s changed meanwhile; try again", geo);
out:;
    /* A refusal records why: what the vaults answered. */
    char detail[2000];
    snprintf(detail, sizeof detail,
             "geo %s; purge %s; primary %s; secondary %s; %s; reason: %.512s; contact: %.256s", geo,
             purge_id ? purge_id : "", cur.primary_uri, cur.secondary_uri,
             rc == CK_OK ? "both vaults denied the files service a wrapKey (403)" : ck_err_msg(),
             reason ? reason : "", contact ? contact : "");
    files_audit(f, "spo.purge.request", target, request_id, rc, detail);
    free(target);
    CK_TRY(rc);
    return out ? ck_spo_get(f, tenant, geo, out) : CK_OK;
}

/* ---------- the rewrap job ---------- */

struct pending_site {
    char id[37], old_tik[37];
    struct ck_buf wrapped; /* the site key under the target TIK */
};

/* Reads a batch of sites not on the target TIK and rewraps their keys
 * under it, in memory: no transaction is open, vault calls may happen. */
static ck_err read_batch(struct ck_files *f, const char *tenant, const char *geo,
                         const char *target_tik, const struct ck_secret *new_tik,
                         struct pending_site *batch, size_t *nb)
{
    struct ck_stmt *st;
    *nb = 0;
    /* Rows are copied out first: fetching a TIK may use this connection. */
    struct {
        char id[37], tik[37];
        struct ck_buf w;
    } *rows = ck_xcalloc(FILES_BATCH, sizeof *rows);
    size_t n = 0;
    bool row;
    ck_err rc = CK_OK;
    /* The sites on other TIKs, as two ranges of ck_site_by_geo_tik (below
     * and above the target; '' is a purged site's): each batch reads only
     * its own rows, however many sites the geo has. */
    static const char *const ranges[2] = {
        "SELECT id, tik_id, wrapped_site_key FROM ck_site WHERE tenant = ? AND geo = ? AND "
        "tik_id > '' AND tik_id < ? ORDER BY tik_id, id LIMIT ?",
        "SELECT id, tik_id, wrapped_site_key FROM ck_site WHERE tenant = ? AND geo = ? AND "
        "tik_id > ? ORDER BY tik_id, id LIMIT ?",
    };
    for (int r = 0; r < 2 && rc == CK_OK && n < FILES_BATCH; r++) {
        if ((rc = ck_stmt_prepare(f->store, &st, ranges[r], "ttti", tenant, geo, target_tik,
                                  (int64_t)(FILES_BATCH - n))) != CK_OK)
            break;
        while ((rc = ck_stmt_step(st, &row)) == CK_OK && row && n < FILES_BATCH) {
            snprintf(rows[n].id, 37, "%s", ck_stmt_text(st, 0));
            snprintf(rows[n].tik, 37, "%s", ck_stmt_text(st, 1));
            size_t len;
            const void *p = ck_stmt_blob(st, 2, &len);
            if ((rc = ck_buf_set(&rows[n].w, p, len)) != CK_OK)
                break;
            n++;
        }
        ck_stmt_finalize(st);
    }
    struct ck_secret old = {0}, sk = {0};
    char old_id[37] = "";
    for (size_t i = 0; rc == CK_OK && i < n; i++) {
        if (strcmp(rows[i].tik, old_id) != 0) {
            ck_secret_free(&old);
            snprintf(old_id, sizeof old_id, "%s", rows[i].tik);
            /* The old TIK through the cache or its roots (system use). */
            rc = files_tik(f, old_id, &old);
            if (rc != CK_OK)
                break;
        }
        if (ck_aes_kwp_unwrap(old.p, old.n, rows[i].w.p, rows[i].w.n, &sk) != CK_OK) {
            rc = ck_err_set(CK_EINTERNAL,
                            "the key of site %s does not unwrap: stored data is "
                            "damaged",
                            rows[i].id);
            break;
        }
        struct pending_site *p = &batch[*nb];
        rc = ck_aes_kwp_wrap(new_tik->p, new_tik->n, sk.p, sk.n, &p->wrapped);
        ck_secret_free(&sk);
        if (rc != CK_OK)
            break;
        snprintf(p->id, sizeof p->id, "%s", rows[i].id);
        snprintf(p->old_tik, sizeof p->old_tik, "%s", rows[i].tik);
        (*nb)++;
    }
    ck_secret_free(&old);
    for (size_t i = 0; i < FILES_BATCH; i++)
        ck_buf_free(&rows[i].w);
    free(rows);
    return rc;
}

/* Within the finishing transaction: the TIKs of this geo that neither the
 * policy nor any site uses any more. */
static ck_err unused_tiks(struct ck_files *f, const char *tenant, const char *geo,
                          const char *target_tik, char (**ids)[37], size_t *n)
{
    *ids = NULL;
    *n = 0;
    struct ck_stmt *st;
    CK_TRY(ck_stmt_prepare(f->store, &st,
                           "SELECT id FROM ck_tik WHERE tenant = ? AND geo = ? AND id <> ? AND "
                           "NOT EXISTS (SELECT 1 FROM ck_site s WHERE s.tik_id = ck_tik.id)",
                           "ttt", tenant, geo, target_tik));
    bool row;
    ck_err rc;
    while ((rc = ck_stmt_step(st, &row)) == CK_OK && row) {
        *ids = realloc(*ids, (*n + 1) * sizeof **ids);
        if (!*ids)
            abort();
        snprintf((*ids)[(*n)++], 37, "%s", ck_stmt_text(st, 0));
    }
    ck_stmt_finalize(st);
    return rc;
}

ck_err files_rewrap_step(void *ctx, const struct ck_job *j, int64_t *done, int64_t *total,
                         bool *finished)
{
    struct ck_files *f = ctx;
    char tenant[37], geo[9];
    const char *slash = strchr(j->target, '/');
    if (!slash || (size_t)(slash - j->target) >= sizeof tenant || strlen(slash + 1) >= sizeof geo)
        return ck_err_set(CK_EINVAL, "bad files rewrap target '%s'", j->target);
    snprintf(tenant, sizeof tenant, "%.*s", (int)(slash - j->target), j->target);
    snprintf(geo, sizeof geo, "%s", slash + 1);

    struct ck_spo_dep spo;
    CK_TRY(files_spo_load(f, tenant, geo, &spo, NULL));
    *finished = false;
    if (spo.state != CK_SPO_REGISTERING && spo.state != CK_SPO_ROLLING &&
        spo.state != CK_SPO_RECOVERING && spo.state != CK_SPO_UNREGISTERING) {
        *finished = true; /* nothing to move (a stale job) */
        return site_counts(f, tenant, geo, spo.tik_id, done, total);
    }

    /* Every key this step needs, before the write lock. */
    struct ck_secret new_tik = {0};
    struct pending_site *batch = ck_xcalloc(FILES_BATCH, sizeof *batch);
    size_t nb = 0;
    char(*unused)[37] = NULL;
    size_t nunused = 0;
    bool began = false;
    ck_err rc = files_tik(f, spo.tik_id, &new_tik);
    if (rc == CK_OK)
        rc = read_batch(f, tenant, geo, spo.tik_id, &new_tik, batch, &nb);
    if (rc == CK_OK)
        began = (rc = ck_store_begin(f->store)) == CK_OK;
    /* The policy may have moved on since: then this batch is moot. */
    struct ck_spo_dep now;
    if (rc == CK_OK)
        rc = files_spo_load(f, tenant, geo, &now, NULL);
    bool same = rc == CK_OK && now.state == spo.state && strcmp(now.tik_id, spo.tik_id) == 0;
    for (size_t i = 0; rc == CK_OK && same && i < nb; i++)
        rc = ck_store_run(f->store, NULL,
                          "UPDATE ck_site SET tik_id = ?, wrapped_site_key = ? WHERE id = ? AND "
                          "tik_id = ?",
                          "tbtt", spo.tik_id, batch[i].wrapped.p, batch[i].wrapped.n, batch[i].id,
                          batch[i].old_tik);
    /* A short batch was the rest: read_batch reads every site on another
     * TIK (new sites are made on the target one). */
    bool last = rc == CK_OK && same && nb < FILES_BATCH;
    if (last)
        rc = unused_tiks(f, tenant, geo, spo.tik_id, &unused, &nunused);
    for (size_t i = 0; rc == CK_OK && last && i < nunused; i++)
        rc = ck_store_run(f->store, NULL, "DELETE FROM ck_tik WHERE id = ?", "t", unused[i]);
    /* An unregistration ends with the customer's keys forgotten. */
    bool unreg = spo.state == CK_SPO_UNREGISTERING;
    if (rc == CK_OK && last && unreg)
        rc = ck_store_run(f->store, NULL,
                          "UPDATE ck_spo_dep SET state = ?, primary_uri = '', secondary_uri = '', "
                          "old_tik_id = '', job_id = '', changed = ? WHERE tenant = ? AND geo = ?",
                          "titt", ck_spo_state_name(CK_SPO_UNREGISTERED), ck_now(), tenant, geo);
    else if (rc == CK_OK && last)
        rc = ck_store_run(f->store, NULL,
                          "UPDATE ck_spo_dep SET state = ?, old_tik_id = '', job_id = '', "
                          "changed = ? WHERE tenant = ? AND geo = ?",
                          "titt", ck_spo_state_name(CK_SPO_REGISTERED), ck_now(), tenant, geo);
    if (rc == CK_OK && began)
        rc = ck_store_commit(f->store);
    else if (began)
        ck_store_rollback(f->store);
    if (rc == CK_OK && last)
        for (size_t i = 0; i < nunused; i++) {
            /* After the commit: a crash here leaves an unused availability
             * key, never a TIK without one. */
            files_avail_delete(f, unused[i]);
            files_tik_cache_drop(f, unused[i]);
        }
    free(unused);
    for (size_t i = 0; i < FILES_BATCH; i++)
        ck_buf_free(&batch[i].wrapped);
    free(batch);
    ck_secret_free(&new_tik);
    CK_TRY(rc);
    /* A changed policy is picked up by the next step. */
    *finished = last;
    if (!same)
        return site_counts(f, tenant, geo, now.tik_id, done, total);
    /* Progress: counted at the first and last step; in between, carried
     * on from the job's row (a count per batch would read the whole geo). */
    if (j->total == 0 || last) {
        CK_TRY(site_counts(f, tenant, geo, spo.tik_id, done, total));
    } else {
        ck_job_carry(j, (int64_t)nb, done, total);
    }
    if (last)
        ck_log(CK_LOG_INFO,
               unreg ? "files data encryption policy unregistered"
                     : "files data encryption policy registered",
               "tenant", tenant, "geo", geo, NULL);
    return CK_OK;
}
