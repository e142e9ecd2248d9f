/*
 * purge.c — the end of a geo's files: what a purge document lists (the
 * inventory of sites and the fingerprints of every key blob to destroy),
 * marking the geo Purging, the resumable batches that destroy it, and the
 * count of what remains.
 *
 * Crypto-deletion: chunk bytes are useless without their chunk keys, chunk
 * keys without their site key, site keys without the TIK, and the TIK
 * exists only as its wrapped copies (under root keys 1 and 2, and under its
 * availability key). The batches delete the chunk and file rows of up to
 * FILES_BATCH sites and empty each site's wrapped key; the site row stays
 * as a tombstone (purge id set, tik_id "") so that reads answer 410 and the
 * path is not reused. Then every TIK row of the geo goes, and every
 * availability key of those TIKs.
 *
 * Crash safety: each batch is one transaction of the main store. The last
 * phase runs in an order where a crash anywhere leaves what the next call
 * completes: the availability keys (another store) first, while the TIK
 * rows still name them; then the TIK rows; then a truncating checkpoint of
 * both stores (secure_delete has zeroed the freed space; the checkpoint
 * drops the old page copies from the write-ahead logs); the state becomes
 * Purged last. No vault is called anywhere here.
 */
#include "files/files_internal.h"
#include "crypto/crypto.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

ck_err files_purge_counts(struct ck_files *f, const char *tenant, const char *geo, int64_t *purged,
                          int64_t *all)
{
    int64_t v[2];
    ck_err rc = ck_store_ints(f->store, v, 2,
                              "SELECT COUNT(*), COALESCE(SUM(CASE WHEN LENGTH(wrapped_site_key) = "
                              "0 THEN 1 ELSE 0 END), 0) FROM ck_site WHERE tenant = ? AND geo = ?",
                              "tt", tenant, geo);
    *all = v[0];
    *purged = v[1];
    return rc;
}

/* The ids of the geo's TIKs, oldest first. */
static ck_err geo_tiks(struct ck_files *f, const char *tenant, const char *geo, char (**ids)[37],
                       size_t *n)
{
    *ids = NULL;
    *n = 0;
    struct ck_stmt *st;
    CK_TRY(ck_stmt_prepare(
        f->store, &st, "SELECT id FROM ck_tik WHERE tenant = ? AND geo = ? ORDER BY created, id",
        "tt", tenant, geo));
    bool row;
    ck_err rc;
    while ((rc = ck_stmt_step(st, &row)) == CK_OK && row) {
        *ids = realloc(*ids, (*n + 1) * sizeof **ids);
        if (!*ids)
            abort();
        snprintf((*ids)[(*n)++], 37, "%s", ck_stmt_text(st, 0));
    }
    ck_stmt_finalize(st);
    if (rc != CK_OK) {
        free(*ids);
        *ids = NULL;
        *n = 0;
    }
    return rc;
}

static ck_err check_args(struct ck_files *f, const char *tenant, const char *geo,
                         struct ck_spo_dep *spo)
{
    CK_TRY(files_check_tenant(tenant));
    CK_TRY(files_check_geo(geo));
    return files_spo_load(f, tenant, geo, spo, NULL);
}

/* ---------- inventory ---------- */

static ck_err inventory_fill(struct ck_stmt *st, void *elem, void *arg)
{
    (void)arg;
    struct ck_files_purge_site *p = elem;
    snprintf(p->path, sizeof p->path, "%s", ck_stmt_text(st, 0));
    p->files = ck_stmt_int(st, 1);
    p->chunks = ck_stmt_int(st, 2);
    p->bytes = ck_stmt_int(st, 3);
    return CK_OK;
}

ck_err ck_files_purge_inventory(struct ck_files *f, const char *tenant, const char *geo,
                                struct ck_files_purge_site **out, size_t *n)
{
    struct ck_spo_dep spo;
    CK_TRY(check_args(f, tenant, geo, &spo));
    struct ck_stmt *st;
    CK_TRY(ck_stmt_prepare(f->store, &st,
                           "SELECT s.path, (SELECT COUNT(*) FROM ck_file fl WHERE fl.site_id = "
                           "s.id), (SELECT COUNT(*) FROM ck_chunk c JOIN ck_file fl ON fl.id = "
                           "c.file_id WHERE fl.site_id = s.id), (SELECT COALESCE(SUM(fl.size), 0) "
                           "FROM ck_file fl WHERE fl.site_id = s.id) FROM ck_site s WHERE "
                           "s.tenant = ? AND s.geo = ? ORDER BY s.path",
                           "tt", tenant, geo));
    void *v;
    CK_TRY(ck_stmt_collect(st, sizeof **out, inventory_fill, NULL, NULL, &v, n));
    *out = v;
    return CK_OK;
}

/* ---------- fingerprints ---------- */

struct prints {
    struct ck_blob_print *v;
    size_t n, cap;
};

static ck_err print_add(struct prints *ps, bool availability_store, const void *p, size_t n,
                        const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static ck_err print_add(struct prints *ps, bool availability_store, const void *p, size_t n,
                        const char *fmt, ...)
{
    if (!p || n == 0)
        return CK_OK; /* nothing stored: nothing to destroy */
    if (ps->n == ps->cap) {
        ps->cap = ps->cap ? ps->cap * 2 : 16;
        ps->v = realloc(ps->v, ps->cap * sizeof *ps->v);
        if (!ps->v)
            abort();
    }
    char what[128];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    CK_TRY(ck_blob_print_make(what, availability_store, p, n, &ps->v[ps->n]));
    ps->n++;
    return CK_OK;
}

/* The copies of one TIK in the main store and its sealed availability key
 * in the availability store. */
static ck_err print_tik(struct ck_files *f, const char *tik_id, struct prints *ps)
{
    struct ck_stmt *st;
    CK_TRY(ck_stmt_prepare(f->store, &st,
                           "SELECT service_managed, wrapped1, wrapped2, wrapped_avail FROM ck_tik "
                           "WHERE id = ?",
                           "t", tik_id));
    bool row;
    ck_err rc = ck_stmt_step(st, &row);
    if (rc == CK_OK && row) {
        size_t n1, n2, na;
        const void *w1 = ck_stmt_blob(st, 1, &n1), *w2 = ck_stmt_blob(st, 2, &n2);
        const void *wa = ck_stmt_blob(st, 3, &na);
        if (ck_stmt_int(st, 0)) {
            /* Service-managed: one blob under the service root key. */
            rc = print_add(ps, false, w1, n1, "TIK %s copy under the service root key", tik_id);
        } else {
            rc = print_add(ps, false, w1, n1, "TIK %s copy under root key 1", tik_id);
            if (rc == CK_OK)
                rc = print_add(ps, false, w2, n2, "TIK %s copy under root key 2", tik_id);
        }
        if (rc == CK_OK)
            rc = print_add(ps, false, wa, na, "TIK %s copy under its availability key", tik_id);
    }
    ck_stmt_finalize(st);
    CK_TRY(rc);
    CK_TRY(ck_stmt_prepare(f->avail, &st,
                           "SELECT sealed FROM ck_files_availability_key WHERE tik_id = ?", "t",
                           tik_id));
    rc = ck_stmt_step(st, &row);
    if (rc == CK_OK && row) {
        size_t n;
        const void *p = ck_stmt_blob(st, 0, &n);
        rc = print_add(ps, true, p, n, "TIK %s availability key", tik_id);
    }
    ck_stmt_finalize(st);
    return rc;
}

ck_err ck_files_purge_prints(struct ck_files *f, const char *tenant, const char *geo,
                             struct ck_blob_print **out, size_t *n, char (**tik_ids)[37],
                             size_t *ntik)
{
    struct ck_spo_dep spo;
    CK_TRY(check_args(f, tenant, geo, &spo));
    struct prints ps = {0};
    char(*ids)[37] = NULL;
    size_t nids = 0;
    struct ck_stmt *st = NULL;
    ck_err rc;
    CK_GUARD(geo_tiks(f, tenant, geo, &ids, &nids));
    for (size_t i = 0; i < nids; i++)
        CK_GUARD(print_tik(f, ids[i], &ps));
    CK_GUARD(ck_stmt_prepare(f->store, &st,
                             "SELECT path, wrapped_site_key FROM ck_site WHERE tenant = ? AND geo "
                             "= ? AND LENGTH(wrapped_site_key) > 0 ORDER BY path",
                             "tt", tenant, geo));
    bool row;
    while ((rc = ck_stmt_step(st, &row)) == CK_OK && row) {
        size_t len;
        const void *p = ck_stmt_blob(st, 1, &len);
        CK_GUARD(print_add(&ps, false, p, len, "site key of %s", ck_stmt_text(st, 0)));
    }
out:
    ck_stmt_finalize(st);
    if (rc != CK_OK) {
        free(ps.v);
        free(ids);
        return rc;
    }
    *out = ps.v;
    *n = ps.n;
    *tik_ids = ids;
    *ntik = nids;
    return CK_OK;
}

/* ---------- mark ---------- */

/* Wipes the geo's unwrapped TIKs from this process's cache. */
static void drop_cached_tiks(struct ck_files *f, const char *tenant, const char *geo)
{
    char(*ids)[37] = NULL;
    size_t n = 0;
    if (geo_tiks(f, tenant, geo, &ids, &n) != CK_OK)
        ck_log(CK_LOG_WARN, "could not list the TIKs of a purged geo", "geo", geo, NULL);
    for (size_t i = 0; i < n; i++)
        files_tik_cache_drop(f, ids[i]);
    free(ids);
}

ck_err ck_files_purge_mark(struct ck_files *f, const char *tenant, const char *geo,
                           const char *purge_id)
{
    struct ck_spo_dep spo;
    CK_TRY(check_args(f, tenant, geo, &spo));
    if (!spo.purge_requested)
        return ck_err_set(CK_ECONFLICT,
                          "no permanent purge was requested for geo %s of this tenant", geo);
    if (!purge_id || strcmp(purge_id, spo.purge_id) != 0)
        return ck_err_set(CK_ECONFLICT, "geo %s of this tenant is under purge %s, not %s", geo,
                          spo.purge_id, purge_id ? purge_id : "");
    if (spo.state == CK_SPO_PURGING || spo.state == CK_SPO_PURGED)
        return CK_OK;
    int64_t changes = 0;
    char *target = ck_sprintf("%s/%s", tenant, geo);
    ck_err rc = ck_store_run(f->store, &changes,
                             "UPDATE ck_spo_dep SET state = ?, changed = ? WHERE tenant = ? AND "
                             "geo = ? AND purge_id = ? AND state = ?",
                             "titttt", ck_spo_state_name(CK_SPO_PURGING), ck_now(), tenant, geo,
                             purge_id, ck_spo_state_name(CK_SPO_REGISTERED));
    if (rc == CK_OK && changes != 1) {
        /* Marked by another caller meanwhile, or moved: look again. */
        rc = files_spo_load(f, tenant, geo, &spo, NULL);
        if (rc == CK_OK && spo.state != CK_SPO_PURGING && spo.state != CK_SPO_PURGED)
            rc = ck_err_set(CK_ECONFLICT,
                            "the data encryption policy of geo %s is %s: it cannot be purged now",
                            geo, ck_spo_state_name(spo.state));
    }
    if (rc == CK_OK)
        drop_cached_tiks(f, tenant, geo);
    char detail[128];
    snprintf(detail, sizeof detail, "geo %s; purge %s", geo, purge_id);
    files_audit(f, "spo.purge.mark", target, NULL, rc, detail);
    free(target);
    return rc;
}

/* ---------- the batches ---------- */

/* Destroys up to FILES_BATCH sites (chunks, files, site key) in one
 * transaction; *left gets the sites still holding a key. */
static ck_err purge_batch(struct ck_files *f, const char *tenant, const char *geo,
                          const char *purge_id, int64_t *left)
{
    CK_TRY(ck_store_begin(f->store));
    char(*ids)[37] = ck_xcalloc(FILES_BATCH, sizeof *ids);
    size_t n = 0;
    struct ck_stmt *st = NULL;
    bool row;
    ck_err rc;
    CK_GUARD(ck_stmt_prepare(f->store, &st,
                             "SELECT id FROM ck_site WHERE tenant = ? AND geo = ? AND "
                             "LENGTH(wrapped_site_key) > 0 ORDER BY id LIMIT ?",
                             "tti", tenant, geo, (int64_t)FILES_BATCH));
    while ((rc = ck_stmt_step(st, &row)) == CK_OK && row && n < FILES_BATCH)
        snprintf(ids[n++], 37, "%s", ck_stmt_text(st, 0));
    ck_stmt_finalize(st);
    st = NULL;
    CK_GUARD(rc);
    for (size_t i = 0; i < n; i++) {
        CK_GUARD(ck_store_run(f->store, NULL,
                              "DELETE FROM ck_chunk WHERE file_id IN (SELECT id FROM ck_file "
                              "WHERE site_id = ?)",
                              "t", ids[i]));
        CK_GUARD(
            ck_store_run(f->store, NULL, "DELETE FROM ck_file WHERE site_id = ?", "t", ids[i]));
        CK_GUARD(ck_store_run(f->store, NULL,
                              "UPDATE ck_site SET wrapped_site_key = ?, tik_id = '', purge_id = ? "
                              "WHERE id = ?",
                              "btt", NULL, (size_t)0, purge_id, ids[i]));
    }
    CK_GUARD(ck_store_ints(f->store, left, 1,
                           "SELECT COUNT(*) FROM ck_site WHERE tenant = ? AND geo = ? AND "
                           "LENGTH(wrapped_site_key) > 0",
                           "tt", tenant, geo));
    rc = ck_store_commit(f->store);
    if (rc != CK_OK)
        ck_store_rollback(f->store);
    free(ids);
    return rc;
out:
    ck_stmt_finalize(st);
    ck_store_rollback(f->store);
    free(ids);
    return rc;
}

/* No site holds a key any more: the TIKs and their availability keys go,
 * both stores are checkpointed, and the geo is Purged. */
static ck_err purge_finish(struct ck_files *f, const char *tenant, const char *geo,
                           const char *purge_id)
{
    char(*ids)[37] = NULL;
    size_t n = 0;
    ck_err rc;
    CK_GUARD(geo_tiks(f, tenant, geo, &ids, &n));
    /* The availability keys first: the TIK rows are the only record of
     * which ones to delete. */
    for (size_t i = 0; i < n; i++) {
        CK_GUARD(ck_store_run(
            f->avail, NULL, "DELETE FROM ck_files_availability_key WHERE tik_id = ?", "t", ids[i]));
        files_tik_cache_drop(f, ids[i]);
    }
    CK_GUARD(ck_store_run(f->store, NULL, "DELETE FROM ck_tik WHERE tenant = ? AND geo = ?", "tt",
                          tenant, geo));
    CK_GUARD(ck_store_checkpoint(f->avail));
    CK_GUARD(ck_store_checkpoint(f->store));
    int64_t changes = 0;
    CK_GUARD(ck_store_run(f->store, &changes,
                          "UPDATE ck_spo_dep SET state = ?, tik_id = '', old_tik_id = '', job_id "
                          "= '', changed = ? WHERE tenant = ? AND geo = ? AND state = ?",
                          "tittt", ck_spo_state_name(CK_SPO_PURGED), ck_now(), tenant, geo,
                          ck_spo_state_name(CK_SPO_PURGING)));
    if (changes == 1) {
        char *target = ck_sprintf("%s/%s", tenant, geo);
        char detail[160];
        snprintf(detail, sizeof detail,
                 "geo %s; purge %s; %zu TIKs and their availability keys "
                 "deleted; stores checkpointed",
                 geo, purge_id, n);
        files_audit(f, "spo.purge.finish", target, NULL, CK_OK, detail);
        free(target);
        ck_log(CK_LOG_INFO, "files of a geo purged", "tenant", tenant, "geo", geo, NULL);
    }
out:
    free(ids);
    return rc;
}

ck_err ck_files_purge_step(struct ck_files *f, const char *tenant, const char *geo, int64_t *done,
                           int64_t *total, bool *finished)
{
    *done = *total = 0;
    *finished = false;
    struct ck_spo_dep spo;
    CK_TRY(check_args(f, tenant, geo, &spo));
    if (spo.state == CK_SPO_PURGED) {
        *finished = true;
        return files_purge_counts(f, tenant, geo, done, total);
    }
    if (spo.state != CK_SPO_PURGING)
        return ck_err_set(CK_ECONFLICT,
                          "geo %s of this tenant is %s, not Purging: mark it for the purge first",
                          geo, ck_spo_state_name(spo.state));
    int64_t left = 0;
    CK_TRY(purge_batch(f, tenant, geo, spo.purge_id, &left));
    if (left == 0)
        CK_TRY(purge_finish(f, tenant, geo, spo.purge_id));
    CK_TRY(files_purge_counts(f, tenant, geo, done, total));
    *finished = left == 0;
    return CK_OK;
}

/* ---------- what remains ---------- */

ck_err ck_files_purge_remains(struct ck_files *f, const char *tenant, const char *geo,
                              const char (*tik_ids)[37], size_t ntik,
                              struct ck_files_purge_remains *out)
{
    memset(out, 0, sizeof *out);
    struct ck_spo_dep spo;
    CK_TRY(check_args(f, tenant, geo, &spo));
    CK_TRY(ck_store_ints(f->store, &out->site_keys, 1,
                         "SELECT COUNT(*) FROM ck_site WHERE tenant = ? AND geo = ? AND "
                         "LENGTH(wrapped_site_key) > 0",
                         "tt", tenant, geo));
    CK_TRY(
        ck_store_ints(f->store, &out->files, 1,
                      "SELECT COUNT(*) FROM ck_file WHERE site_id IN (SELECT id FROM ck_site WHERE "
                      "tenant = ? AND geo = ?)",
                      "tt", tenant, geo));
    CK_TRY(ck_store_ints(
        f->store, &out->chunks, 1,
        "SELECT COUNT(*) FROM ck_chunk WHERE file_id IN (SELECT fl.id FROM ck_file fl "
        "JOIN ck_site s ON s.id = fl.site_id WHERE s.tenant = ? AND s.geo = ?)",
        "tt", tenant, geo));
    CK_TRY(ck_store_ints(f->store, &out->tiks, 1,
                         "SELECT COUNT(*) FROM ck_tik WHERE tenant = ? AND geo = ?", "tt", tenant,
                         geo));
    for (size_t i = 0; i < ntik; i++) {
        int64_t k;
        CK_TRY(ck_store_ints(f->avail, &k, 1,
                             "SELECT COUNT(*) FROM ck_files_availability_key WHERE tik_id = ?", "t",
                             tik_ids[i]));
        out->availability_keys += k;
    }
    return CK_OK;
}
