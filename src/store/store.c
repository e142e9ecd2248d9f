/*
 * store.c — the backend-independent half of store.h.
 *
 * Lives here: choosing a backend from the URI, decoding the type string and
 * varargs into struct ck_bind values (so each backend only binds one value at
 * a time), ck_store_run, and the migration runner. None of this touches a
 * database library; everything that does goes through struct ck_store_ops
 * (backend.h), so a PostgreSQL backend plugs in without changing this file
 * beyond the URI switch.
 */
#include "store/backend.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static bool has_prefix(const char *s, const char *prefix)
{
    return strncasecmp(s, prefix, strlen(prefix)) == 0;
}

ck_err ck_store_open(const char *uri, struct ck_store **out)
{
    if (!out)
        return ck_err_set(CK_EINVAL, "ck_store_open: no output pointer");
    *out = NULL;
    if (!uri || !*uri)
        return ck_err_set(CK_EINVAL, "ck_store_open: empty store URI");
    if (has_prefix(uri, "postgres:") || has_prefix(uri, "postgresql:"))
        return ck_err_set(CK_EINVAL, "PostgreSQL backend not built yet");
    if (has_prefix(uri, "sqlite:"))
        return ck_store_sqlite_open(uri + strlen("sqlite:"), out);
    return ck_store_sqlite_open(uri, out); /* a bare path */
}

void ck_store_close(struct ck_store *s)
{
    if (s)
        s->ops->close(s);
}

const char *ck_store_backend(const struct ck_store *s)
{
    return s->ops->name;
}

const char *ck_store_path(const struct ck_store *s)
{
    return s->ops->path(s);
}

ck_err ck_store_files(const struct ck_store *s, char paths[4][4096], size_t *n)
{
    *n = 0;
    const char *db = ck_store_path(s);
    if (!db)
        return CK_OK;
    static const char *const suffix[] = {"", "-wal", "-journal"};
    for (size_t i = 0; i < sizeof suffix / sizeof *suffix; i++) {
        int w = snprintf(paths[i], 4096, "%s%s", db, suffix[i]);
        if (w < 0 || w >= 4096)
            return ck_err_set(CK_EINVAL, "the store path is too long");
    }
    *n = sizeof suffix / sizeof *suffix;
    return CK_OK;
}

int ck_store_conn_count(struct ck_store *s)
{
    return s->ops->conn_count(s);
}

ck_err ck_store_begin(struct ck_store *s)
{
    return s->ops->begin(s);
}

bool ck_store_in_tx(struct ck_store *s)
{
    return s->ops->in_tx(s);
}

ck_err ck_store_commit(struct ck_store *s)
{
    return s->ops->commit(s);
}

void ck_store_rollback(struct ck_store *s)
{
    s->ops->rollback(s);
}

ck_err ck_store_exec(struct ck_store *s, const char *sql)
{
    if (!sql)
        return ck_err_set(CK_EINVAL, "ck_store_exec: no SQL");
    return s->ops->exec(s, sql);
}

ck_err ck_store_checkpoint(struct ck_store *s)
{
    return s->ops->checkpoint(s);
}

/* ---------- statements and the type string ---------- */

/* Validated before anything is read from the va_list: an unknown letter
 * would leave us not knowing how many arguments to consume. */
static ck_err check_types(const char *types)
{
    for (const char *t = types; *t; t++)
        if (!strchr("itbn", *t))
            return ck_err_set(CK_EINTERNAL, "ck_stmt_prepare: unknown bind type '%c' in \"%s\"", *t,
                              types);
    return CK_OK;
}

/* Reads the next argument for type letter t. Only the value's shape is ever
 * reported in messages, never its content (it may be a secret). */
static ck_err next_bind(char t, va_list *ap, struct ck_bind *b)
{
    memset(b, 0, sizeof *b);
    switch (t) {
    case 'i':
        b->kind = CK_BIND_INT;
        b->i = va_arg(*ap, int64_t);
        return CK_OK;
    case 't':
        b->text = va_arg(*ap, const char *);
        b->kind = b->text ? CK_BIND_TEXT : CK_BIND_NULL;
        return CK_OK;
    case 'b':
        /* Always a blob, never NULL: a zeroed struct ck_buf ({NULL, 0}) is the
         * empty byte string, and must not turn into SQL NULL. Use 'n' for NULL. */
        b->kind = CK_BIND_BLOB;
        b->blob = va_arg(*ap, const void *);
        b->blob_n = va_arg(*ap, size_t);
        if (!b->blob && b->blob_n)
            return ck_err_set(CK_EINVAL, "ck_stmt_prepare: NULL blob pointer with length %zu",
                              b->blob_n);
        return CK_OK;
    case 'n':
        b->kind = CK_BIND_NULL;
        return CK_OK;
    }
    return ck_err_set(CK_EINTERNAL, "ck_stmt_prepare: unknown bind type '%c'", t);
}

static ck_err prepare_v(struct ck_store *s, struct ck_stmt **out, const char *sql,
                        const char *types, va_list *ap)
{
    if (!out)
        return ck_err_set(CK_EINVAL, "ck_stmt_prepare: no output pointer");
    *out = NULL;
    if (!s || !sql)
        return ck_err_set(CK_EINVAL, "ck_stmt_prepare: no store or no SQL");
    if (!types)
        types = "";
    CK_TRY(check_types(types));

    struct ck_stmt *st;
    CK_TRY(s->ops->prepare(s, sql, &st));
    ck_err rc = CK_OK;
    size_t ntypes = strlen(types);
    int nparams = s->ops->param_count(st);
    if (nparams < 0 || (size_t)nparams != ntypes) {
        rc = ck_err_set(CK_EINTERNAL,
                        "ck_stmt_prepare: statement has %d parameter(s) but type string \"%s\" "
                        "binds %zu",
                        nparams, types, ntypes);
        goto out;
    }
    for (size_t i = 0; i < ntypes; i++) {
        struct ck_bind b;
        CK_GUARD(next_bind(types[i], ap, &b));
        CK_GUARD(s->ops->bind(st, (int)i + 1, &b));
    }
out:
    if (rc != CK_OK) {
        s->ops->finalize(st);
        return rc;
    }
    *out = st;
    return CK_OK;
}

ck_err ck_stmt_prepare(struct ck_store *s, struct ck_stmt **out, const char *sql, const char *types,
                       ...)
{
    va_list ap;
    va_start(ap, types);
    ck_err rc = prepare_v(s, out, sql, types, &ap);
    va_end(ap);
    return rc;
}

ck_err ck_stmt_step(struct ck_stmt *st, bool *row)
{
    return st->ops->step(st, row);
}

int64_t ck_stmt_int(struct ck_stmt *st, int col)
{
    return st->ops->col_int(st, col);
}

const char *ck_stmt_text(struct ck_stmt *st, int col)
{
    return st->ops->col_text(st, col);
}

const void *ck_stmt_blob(struct ck_stmt *st, int col, size_t *n)
{
    return st->ops->col_blob(st, col, n);
}

bool ck_stmt_isnull(struct ck_stmt *st, int col)
{
    return st->ops->col_isnull(st, col);
}

void ck_stmt_finalize(struct ck_stmt *st)
{
    if (st)
        st->ops->finalize(st);
}

ck_err ck_stmt_collect(struct ck_stmt *st, size_t size, ck_stmt_fill_fn fill, void *arg,
                       void (*drop)(void *elem), void **out, size_t *n)
{
    uint8_t *v = NULL;
    size_t count = 0, cap = 0;
    bool row;
    ck_err rc;
    while ((rc = ck_stmt_step(st, &row)) == CK_OK && row) {
        if (count == cap) {
            cap = cap ? 2 * cap : 8;
            v = ck_xrealloc(v, cap * size);
        }
        uint8_t *elem = v + count * size;
        memset(elem, 0, size);
        if ((rc = fill(st, elem, arg)) != CK_OK)
            break;
        count++;
    }
    ck_stmt_finalize(st);
    if (rc != CK_OK) {
        for (size_t i = 0; drop && i < count; i++)
            drop(v + i * size);
        free(v);
        *out = NULL;
        *n = 0;
        return rc;
    }
    *out = v;
    *n = count;
    return CK_OK;
}

ck_err ck_store_ints(struct ck_store *s, int64_t *out, size_t n, const char *sql, const char *types,
                     ...)
{
    for (size_t i = 0; i < n; i++)
        out[i] = 0;
    struct ck_stmt *st;
    va_list ap;
    va_start(ap, types);
    ck_err rc = prepare_v(s, &st, sql, types, &ap);
    va_end(ap);
    CK_TRY(rc);
    bool row = false;
    rc = ck_stmt_step(st, &row);
    for (size_t i = 0; i < n; i++)
        out[i] = rc == CK_OK && row ? ck_stmt_int(st, (int)i) : 0;
    ck_stmt_finalize(st);
    return rc;
}

ck_err ck_store_run(struct ck_store *s, int64_t *changes, const char *sql, const char *types, ...)
{
    struct ck_stmt *st;
    va_list ap;
    va_start(ap, types);
    ck_err rc = prepare_v(s, &st, sql, types, &ap);
    va_end(ap);
    CK_TRY(rc);

    bool row = true;
    while (row && rc == CK_OK)
        rc = ck_stmt_step(st, &row);
    if (rc == CK_OK && changes)
        *changes = st->ops->changes(st);
    ck_stmt_finalize(st);
    return rc;
}

/* ---------- migrations ---------- */

static const char schema_table_sql[] = "CREATE TABLE IF NOT EXISTS ck_schema ("
                                       " component TEXT NOT NULL,"
                                       " version INTEGER NOT NULL,"
                                       " applied_at BIGINT NOT NULL,"
                                       " PRIMARY KEY (component, version))";

static ck_err schema_version(struct ck_store *s, const char *component, int64_t *version)
{
    struct ck_stmt *st;
    CK_TRY(ck_stmt_prepare(s, &st,
                           "SELECT COALESCE(MAX(version), 0) FROM ck_schema WHERE component = ?",
                           "t", component));
    bool row;
    ck_err rc = ck_stmt_step(st, &row);
    if (rc == CK_OK && !row)
        rc = ck_err_set(CK_EINTERNAL, "ck_schema: MAX() returned no row");
    if (rc == CK_OK)
        *version = ck_stmt_int(st, 0);
    ck_stmt_finalize(st);
    return rc;
}

static ck_err check_migrations(const char *component, const struct ck_migration *m, size_t n)
{
    if (!component || !*component)
        return ck_err_set(CK_EINVAL, "ck_store_migrate: empty component name");
    if (n && !m)
        return ck_err_set(CK_EINVAL, "ck_store_migrate: no migrations array");
    for (size_t i = 0; i < n; i++) {
        if (m[i].version <= 0 || !m[i].sql)
            return ck_err_set(CK_EINVAL, "ck_store_migrate %s: migration #%zu has version %d%s",
                              component, i, m[i].version, m[i].sql ? "" : " and no SQL");
        if (i > 0 && m[i].version <= m[i - 1].version)
            return ck_err_set(CK_EINVAL,
                              "ck_store_migrate %s: versions must ascend strictly (%d after %d)",
                              component, m[i].version, m[i - 1].version);
    }
    return CK_OK;
}

/* Applies m if the store has not got it yet. The version is re-read after
 * BEGIN (which takes the write lock), so when several threads or processes
 * migrate at once exactly one applies each migration and the others see it
 * recorded. */
static ck_err apply_one(struct ck_store *s, const char *component, const struct ck_migration *m)
{
    ck_err rc;
    int64_t have;
    CK_TRY(ck_store_begin(s));
    CK_GUARD(schema_version(s, component, &have));
    if (have >= m->version)
        goto out; /* applied meanwhile by someone else */
    CK_GUARD(ck_store_exec(s, m->sql));
    CK_GUARD(ck_store_run(s, NULL,
                          "INSERT INTO ck_schema (component, version, applied_at) VALUES (?, ?, ?)",
                          "tii", component, (int64_t)m->version, ck_now()));
    return ck_store_commit(s);
out:
    ck_store_rollback(s);
    return rc;
}

ck_err ck_store_migrate(struct ck_store *s, const char *component, const struct ck_migration *m,
                        size_t n)
{
    if (!s)
        return ck_err_set(CK_EINVAL, "ck_store_migrate: no store");
    CK_TRY(check_migrations(component, m, n));
    CK_TRY(ck_store_exec(s, schema_table_sql));

    int64_t have;
    CK_TRY(schema_version(s, component, &have));
    for (size_t i = 0; i < n; i++) {
        if (m[i].version <= have)
            continue;
        ck_err rc = apply_one(s, component, &m[i]);
        if (rc != CK_OK) {
            /* ck_err_set may not read its own buffer: copy the cause first. */
            char cause[384];
            snprintf(cause, sizeof cause, "%s", ck_err_msg());
            return ck_err_set(rc, "migration %s v%d failed: %s", component, m[i].version, cause);
        }
    }
    return CK_OK;
}
