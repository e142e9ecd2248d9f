/*
 * tik.c — tenant intermediate keys: the per-tenant files service root key,
 * the files availability keys, and the TIK cache with refresh-ahead.
 *
 * Cache: an unwrapped TIK is served for ttl seconds after it was last
 * unwrapped through its root keys. Within refresh_ahead of expiry, the next
 * access (one at a time per TIK) unwraps it again through the roots without
 * holding the cache lock (the vault may be this very process); if that
 * fails the cached copy keeps being served until it expires. After expiry
 * a request must reach a root key: primary, then secondary. The
 * availability key is never used here (DESIGN §4: files use it only during
 * an explicit restore).
 */
#include "files/files_internal.h"
#include "crypto/crypto.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------- the service root key ---------- */

ck_err files_service_root(struct ck_files *f, const char *tenant, struct ck_secret *root)
{
    char *aad = ck_sprintf("ckey files service root/%s", tenant);
    struct ck_stmt *st;
    ck_err rc = ck_stmt_prepare(
        f->store, &st, "SELECT sealed FROM ck_files_service_root WHERE tenant = ?", "t", tenant);
    bool row = false;
    if (rc == CK_OK) {
        rc = ck_stmt_step(st, &row);
        if (rc == CK_OK && row) {
            size_t n;
            const void *sealed = ck_stmt_blob(st, 0, &n);
            if (ck_unseal(f->master.p, aad, strlen(aad), sealed, n, root) != CK_OK)
                rc = ck_err_set(CK_EINTERNAL,
                                "the files service root key of tenant %s does not open with "
                                "this master key",
                                tenant);
        }
        ck_stmt_finalize(st);
    }
    if (rc == CK_OK && !row) {
        /* First use: make one; of two racing creators the first insert wins
         * and both read it back. */
        struct ck_secret k = {0};
        struct ck_buf sealed = {0};
        rc = ck_secret_alloc(&k, FILES_KEY_LEN);
        if (rc == CK_OK)
            rc = ck_rand_bytes(k.p, k.n);
        if (rc == CK_OK)
            rc = ck_seal(f->master.p, aad, strlen(aad), k.p, k.n, &sealed);
        if (rc == CK_OK)
            rc = ck_store_run(f->store, NULL,
                              "INSERT INTO ck_files_service_root (tenant, sealed, created) "
                              "VALUES (?, ?, ?) ON CONFLICT (tenant) DO NOTHING",
                              "tbi", tenant, sealed.p, sealed.n, ck_now());
        ck_secret_free(&k);
        ck_buf_free(&sealed);
        free(aad);
        return rc == CK_OK ? files_service_root(f, tenant, root) : rc;
    }
    free(aad);
    return rc;
}

ck_err files_service_tik_make(struct ck_files *f, const char *tenant, char tik_id[37],
                              struct ck_buf *wrapped)
{
    struct ck_secret root = {0}, tik = {0};
    ck_err rc;
    CK_GUARD(files_service_root(f, tenant, &root));
    CK_GUARD(ck_uuid_v4(tik_id));
    CK_GUARD(ck_secret_alloc(&tik, FILES_KEY_LEN));
    CK_GUARD(ck_rand_bytes(tik.p, tik.n));
    rc = ck_aes_kwp_wrap(root.p, root.n, tik.p, tik.n, wrapped);
out:
    ck_secret_free(&root);
    ck_secret_free(&tik);
    return rc;
}

ck_err files_service_tik_insert(struct ck_files *f, const char *tenant, const char *geo,
                                const char *tik_id, const struct ck_buf *wrapped)
{
    char *uri = ck_sprintf(FILES_SERVICE_ROOT_URI "/%s", tenant);
    ck_err rc = ck_store_run(f->store, NULL,
                             "INSERT INTO ck_tik (id, tenant, geo, service_managed, kid1, kid2, "
                             "wrapped1, wrapped2, wrapped_avail, created) VALUES "
                             "(?,?,?,1,?,?,?,?,?,?)",
                             "tttttbbni", tik_id, tenant, geo, uri, uri, wrapped->p, wrapped->n,
                             wrapped->p, wrapped->n, ck_now());
    free(uri);
    return rc;
}

/* ---------- availability keys ---------- */

static char *avail_aad(const char *tik_id)
{
    return ck_sprintf("ckey files availability key/%s", tik_id);
}

ck_err files_avail_create(struct ck_files *f, const char *tik_id, const struct ck_secret *tik,
                          struct ck_buf *wrapped)
{
    struct ck_secret k = {0};
    struct ck_buf sealed = {0};
    char *aad = avail_aad(tik_id);
    ck_err rc = ck_secret_alloc(&k, FILES_KEY_LEN);
    if (rc == CK_OK)
        rc = ck_rand_bytes(k.p, k.n);
    if (rc == CK_OK)
        rc = ck_aes_kwp_wrap(k.p, k.n, tik->p, tik->n, wrapped);
    if (rc == CK_OK)
        rc = ck_seal(f->avail_master.p, aad, strlen(aad), k.p, k.n, &sealed);
    if (rc == CK_OK)
        rc = ck_store_run(f->avail, NULL,
                          "INSERT INTO ck_files_availability_key (tik_id, sealed, created) "
                          "VALUES (?, ?, ?)",
                          "tbi", tik_id, sealed.p, sealed.n, ck_now());
    ck_secret_free(&k);
    ck_buf_free(&sealed);
    free(aad);
    return rc;
}

ck_err files_avail_key(struct ck_files *f, const char *tik_id, struct ck_secret *key)
{
    char *aad = avail_aad(tik_id);
    struct ck_stmt *st;
    ck_err rc = ck_stmt_prepare(f->avail, &st,
                                "SELECT sealed FROM ck_files_availability_key WHERE tik_id = ?",
                                "t", tik_id);
    bool row = false;
    if (rc == CK_OK) {
        rc = ck_stmt_step(st, &row);
        if (rc == CK_OK && row) {
            size_t n;
            const void *sealed = ck_stmt_blob(st, 0, &n);
            if (ck_unseal(f->avail_master.p, aad, strlen(aad), sealed, n, key) != CK_OK)
                rc = ck_err_set(CK_EINTERNAL, "the availability key of TIK %s does not open",
                                tik_id);
        } else if (rc == CK_OK) {
            rc = ck_err_set(CK_EGONE, "the availability key of TIK %s no longer exists", tik_id);
        }
        ck_stmt_finalize(st);
    }
    free(aad);
    return rc;
}

void files_avail_delete(struct ck_files *f, const char *tik_id)
{
    if (ck_store_run(f->avail, NULL, "DELETE FROM ck_files_availability_key WHERE tik_id = ?", "t",
                     tik_id) != CK_OK)
        ck_log(CK_LOG_WARN, "could not delete a files availability key", "tik", tik_id, NULL);
}

/* ---------- the cache ---------- */

static struct tik_entry *find(struct ck_files *f, const char *id)
{
    for (struct tik_entry *e = f->tiks; e; e = e->next)
        if (strcmp(e->id, id) == 0)
            return e;
    return NULL;
}

static void unlink_entry(struct ck_files *f, struct tik_entry *e)
{
    for (struct tik_entry **pp = &f->tiks; *pp; pp = &(*pp)->next)
        if (*pp == e) {
            *pp = e->next;
            break;
        }
    ck_secret_free(&e->key);
    free(e);
}

void files_tik_cache_put(struct ck_files *f, const char *tik_id, const struct ck_secret *key)
{
    pthread_mutex_lock(&f->mu);
    struct tik_entry *e = find(f, tik_id);
    if (!e) {
        e = ck_xcalloc(1, sizeof *e);
        snprintf(e->id, sizeof e->id, "%s", tik_id);
        e->next = f->tiks;
        f->tiks = e;
    }
    if (ck_secret_set(&e->key, key->p, key->n) != CK_OK)
        unlink_entry(f, e);
    else
        e->fetched = ck_now();
    pthread_mutex_unlock(&f->mu);
}

void files_tik_cache_drop(struct ck_files *f, const char *tik_id)
{
    pthread_mutex_lock(&f->mu);
    struct tik_entry *e = find(f, tik_id);
    if (e)
        unlink_entry(f, e);
    pthread_mutex_unlock(&f->mu);
}

void files_tik_cache_free(struct ck_files *f)
{
    while (f->tiks)
        unlink_entry(f, f->tiks);
}

/* ---------- unwrapping through the roots ---------- */

struct tik_row {
    char tenant[37], geo[9];
    bool service_managed;
    char kid[2][CK_KEY_URI_MAX];
    struct ck_buf wrapped[2];
};

static void tik_row_free(struct tik_row *t)
{
    ck_buf_free(&t->wrapped[0]);
    ck_buf_free(&t->wrapped[1]);
}

static ck_err load_tik(struct ck_files *f, const char *tik_id, struct tik_row *t)
{
    struct ck_stmt *st;
    CK_TRY(ck_stmt_prepare(f->store, &st,
                           "SELECT tenant, geo, service_managed, kid1, kid2, wrapped1, wrapped2 "
                           "FROM ck_tik WHERE id = ?",
                           "t", tik_id));
    bool row;
    ck_err rc = ck_stmt_step(st, &row);
    if (rc == CK_OK && row) {
        snprintf(t->tenant, sizeof t->tenant, "%s", ck_stmt_text(st, 0));
        snprintf(t->geo, sizeof t->geo, "%s", ck_stmt_text(st, 1));
        t->service_managed = ck_stmt_int(st, 2) != 0;
        for (int i = 0; i < 2 && rc == CK_OK; i++) {
            snprintf(t->kid[i], CK_KEY_URI_MAX, "%s", ck_stmt_text(st, 3 + i));
            size_t n;
            const void *p = ck_stmt_blob(st, 5 + i, &n);
            rc = ck_buf_set(&t->wrapped[i], p, n);
        }
    } else if (rc == CK_OK) {
        rc = ck_err_set(CK_EGONE, "the TIK %s no longer exists", tik_id);
    }
    ck_stmt_finalize(st);
    if (rc != CK_OK)
        tik_row_free(t);
    return rc;
}

/* Unwraps the TIK through its service root or its customer root keys,
 * primary first, then secondary. */
static ck_err unwrap_tik(struct ck_files *f, const char *tik_id, struct ck_secret *out)
{
    struct tik_row t = {0};
    CK_TRY(load_tik(f, tik_id, &t));
    ck_err rc;
    if (t.service_managed) {
        struct ck_secret root = {0};
        rc = files_service_root(f, t.tenant, &root);
        if (rc == CK_OK)
            rc = ck_aes_kwp_unwrap(root.p, root.n, t.wrapped[0].p, t.wrapped[0].n, out);
        ck_secret_free(&root);
        tik_row_free(&t);
        return rc;
    }
    if (!f->keyprov) {
        tik_row_free(&t);
        return ck_err_set(CK_EUNAVAIL,
                          "the root keys of geo %s are unreachable and the TIK cache has expired "
                          "(no key provider)",
                          t.geo);
    }
    ck_err cls[2];
    char why[2][256];
    for (int i = 0; i < 2; i++) {
        rc = ck_keyprov_unwrap(f->keyprov, t.kid[i], t.wrapped[i].p, t.wrapped[i].n, out);
        if (rc == CK_OK) {
            tik_row_free(&t);
            return CK_OK;
        }
        cls[i] = ck_keyprov_classify(rc);
        snprintf(why[i], sizeof why[i], "%s", ck_err_msg());
    }
    if (cls[0] == CK_EUNAVAIL && cls[1] == CK_EUNAVAIL) {
        rc = ck_err_set(CK_EUNAVAIL,
                        "the root keys of geo %s are unreachable and the TIK cache has expired "
                        "(%s; %s)",
                        t.geo, why[0], why[1]);
        ck_err_code("ServiceUnavailable", "CustomerKeyUnreachable");
    } else {
        rc = ck_err_set(CK_EFORBIDDEN,
                        "access to the files of geo %s is denied: its root keys refuse the files "
                        "service (%s; %s)",
                        t.geo, why[0], why[1]);
        ck_err_code("Forbidden", "CustomerKeyAccessDenied");
    }
    tik_row_free(&t);
    return rc;
}

/* Wipes every expired entry: a TIK whose roots were revoked does not
 * linger in memory past its TTL. Called with the lock held. */
static void sweep(struct ck_files *f, int64_t now)
{
    struct tik_entry **pp = &f->tiks;
    while (*pp) {
        struct tik_entry *e = *pp;
        if (now >= e->fetched + f->ttl) {
            *pp = e->next;
            ck_secret_free(&e->key);
            free(e);
        } else {
            pp = &e->next;
        }
    }
}

ck_err files_tik(struct ck_files *f, const char *tik_id, struct ck_secret *out)
{
    int64_t now = ck_now();
    bool refresh = false;
    pthread_mutex_lock(&f->mu);
    sweep(f, now);
    struct tik_entry *e = find(f, tik_id);
    if (e) {
        ck_err rc = ck_secret_set(out, e->key.p, e->key.n);
        if (rc == CK_OK && !e->refreshing && now >= e->fetched + f->ttl - f->refresh_ahead) {
            e->refreshing = true;
            refresh = true;
        }
        pthread_mutex_unlock(&f->mu);
        if (rc != CK_OK || !refresh)
            return rc;
        /* Refresh ahead, outside the lock; a failure keeps the cached copy. */
        struct ck_secret fresh = {0};
        bool ok = unwrap_tik(f, tik_id, &fresh) == CK_OK;
        pthread_mutex_lock(&f->mu);
        e = find(f, tik_id);
        if (e) {
            e->refreshing = false;
            if (ok && ck_secret_set(&e->key, fresh.p, fresh.n) == CK_OK)
                e->fetched = ck_now();
        }
        pthread_mutex_unlock(&f->mu);
        if (!ok)
            ck_log(CK_LOG_WARN, "TIK refresh failed; serving the cached TIK until it expires",
                   "tik", tik_id, NULL);
        ck_secret_free(&fresh);
        ck_err_clear();
        return CK_OK;
    }
    pthread_mutex_unlock(&f->mu);
    CK_TRY(unwrap_tik(f, tik_id, out));
    files_tik_cache_put(f, tik_id, out);
    return CK_OK;
}
