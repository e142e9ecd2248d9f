/*
 * Unit tests for src/store: opening and file modes, connection settings,
 * migrations, binding, error mapping, transactions, one connection per
 * thread, and secure deletion through WAL checkpoints. Each test runs in a
 * fresh temporary directory.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <dirent.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store/store.h"
#include "store/backend.h" /* ck_store_conn_count, internal */

struct fixture {
    char dir[256];
    char db[300];
    struct ck_store *s;
};

static int setup(void **state)
{
    struct fixture *fx = calloc(1, sizeof *fx);
    const char *tmp = getenv("TMPDIR");
    snprintf(fx->dir, sizeof fx->dir, "%s/ck-store-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(fx->dir)) {
        free(fx);
        return -1;
    }
    snprintf(fx->db, sizeof fx->db, "%s/ck.db", fx->dir);
    *state = fx;
    return 0;
}

/* Opens fx->db with the bare-path form. */
static int setup_open(void **state)
{
    if (setup(state) != 0)
        return -1;
    struct fixture *fx = *state;
    return ck_store_open(fx->db, &fx->s) == CK_OK ? 0 : -1;
}

static int teardown(void **state)
{
    struct fixture *fx = *state;
    ck_store_close(fx->s);
    DIR *d = opendir(fx->dir);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d))) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            char p[600];
            snprintf(p, sizeof p, "%s/%s", fx->dir, e->d_name);
            unlink(p);
        }
        closedir(d);
    }
    rmdir(fx->dir);
    free(fx);
    return 0;
}

/* ---------- helpers ---------- */

static int64_t query_int(struct ck_store *s, const char *sql)
{
    struct ck_stmt *st;
    bool row = false;
    assert_int_equal(ck_stmt_prepare(s, &st, sql, ""), CK_OK);
    assert_int_equal(ck_stmt_step(st, &row), CK_OK);
    assert_true(row);
    int64_t v = ck_stmt_int(st, 0);
    ck_stmt_finalize(st);
    return v;
}

static char *query_text(struct ck_store *s, const char *sql)
{
    struct ck_stmt *st;
    bool row = false;
    assert_int_equal(ck_stmt_prepare(s, &st, sql, ""), CK_OK);
    assert_int_equal(ck_stmt_step(st, &row), CK_OK);
    assert_true(row);
    char *v = ck_strdup(ck_stmt_text(st, 0));
    ck_stmt_finalize(st);
    return v;
}

static bool table_exists(struct ck_store *s, const char *name)
{
    struct ck_stmt *st;
    bool row = false;
    assert_int_equal(ck_stmt_prepare(s, &st,
                                     "SELECT 1 FROM sqlite_master WHERE type='table' AND name=?",
                                     "t", name),
                     CK_OK);
    assert_int_equal(ck_stmt_step(st, &row), CK_OK);
    ck_stmt_finalize(st);
    return row;
}

static mode_t file_mode(const char *path)
{
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    return sb.st_mode & 07777;
}

/* Whole file into a malloc'd buffer; a missing file reads as empty. */
static uint8_t *slurp(const char *path, size_t *n)
{
    *n = 0;
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *p = malloc(len > 0 ? (size_t)len : 1);
    *n = fread(p, 1, (size_t)len, f);
    fclose(f);
    return p;
}

static bool file_contains(const char *path, const void *needle, size_t nn)
{
    size_t n;
    uint8_t *p = slurp(path, &n);
    bool found = p && memmem(p, n, needle, nn) != NULL;
    free(p);
    return found;
}

/* ---------- open ---------- */

static void test_open_creates_files_0600_whatever_the_umask(void **state)
{
    struct fixture *fx = *state;
    /* 0277 would leave the owner without write access; 0600 must win. */
    mode_t old = umask(0277);
    char uri[400];
    snprintf(uri, sizeof uri, "sqlite:%s", fx->db);
    ck_err rc = ck_store_open(uri, &fx->s);
    umask(old);
    assert_int_equal(rc, CK_OK);
    assert_string_equal(ck_store_backend(fx->s), "sqlite");
    char *real = realpath(fx->db, NULL);
    assert_non_null(real);
    assert_string_equal(ck_store_path(fx->s), real);
    free(real);

    /* A write makes sure the WAL and shared-memory files exist. */
    assert_int_equal(ck_store_exec(fx->s, "CREATE TABLE t (x INTEGER)"), CK_OK);
    assert_int_equal(ck_store_run(fx->s, NULL, "INSERT INTO t VALUES (1)", ""), CK_OK);
    char p[400];
    assert_int_equal(file_mode(fx->db), 0600);
    snprintf(p, sizeof p, "%s-wal", fx->db);
    assert_int_equal(file_mode(p), 0600);
    snprintf(p, sizeof p, "%s-shm", fx->db);
    assert_int_equal(file_mode(p), 0600);
}

static void test_open_refuses_postgres_and_bad_paths(void **state)
{
    struct fixture *fx = *state;
    struct ck_store *s = (struct ck_store *)1;
    assert_int_equal(ck_store_open("postgres://db.example/ckey", &s), CK_EINVAL);
    assert_null(s);
    assert_string_equal(ck_err_msg(), "PostgreSQL backend not built yet");
    assert_int_equal(ck_store_open("postgresql://x", &s), CK_EINVAL);
    assert_int_equal(ck_store_open("", &s), CK_EINVAL);
    assert_int_equal(ck_store_open("sqlite:", &s), CK_EINVAL);
    assert_int_equal(ck_store_open(":memory:", &s), CK_EINVAL);
    char p[400];
    snprintf(p, sizeof p, "%s/no/such/dir/x.db", fx->dir);
    assert_int_equal(ck_store_open(p, &s), CK_EIO);
    assert_null(s);

    /* A file that is not a database fails at open, not at first use. */
    FILE *f = fopen(fx->db, "w");
    assert_non_null(f);
    for (int i = 0; i < 200; i++)
        fputs("this is not an SQLite database. ", f);
    fclose(f);
    assert_int_not_equal(ck_store_open(fx->db, &s), CK_OK);
    assert_null(s);
}

static void test_connection_pragmas_in_effect(void **state)
{
    struct fixture *fx = *state;
    char *mode = query_text(fx->s, "PRAGMA journal_mode");
    assert_string_equal(mode, "wal");
    free(mode);
    assert_int_equal(query_int(fx->s, "PRAGMA secure_delete"), 1);
    assert_int_equal(query_int(fx->s, "PRAGMA foreign_keys"), 1);
    assert_int_equal(query_int(fx->s, "PRAGMA synchronous"), 2); /* FULL */
    assert_int_equal(query_int(fx->s, "PRAGMA busy_timeout"), 10000);
}

static void test_foreign_keys_enforced(void **state)
{
    struct fixture *fx = *state;
    assert_int_equal(ck_store_exec(fx->s, "CREATE TABLE p (id INTEGER PRIMARY KEY);"
                                          "CREATE TABLE c (pid INTEGER REFERENCES p(id));"),
                     CK_OK);
    assert_int_equal(ck_store_run(fx->s, NULL, "INSERT INTO c VALUES (?)", "i", (int64_t)7),
                     CK_ECONFLICT);
}

/* ---------- migrations ---------- */

static const struct ck_migration mig_good[] = {
    {1, "CREATE TABLE a (x INTEGER NOT NULL); INSERT INTO a VALUES (1)"},
    {2, "ALTER TABLE a ADD COLUMN y TEXT; UPDATE a SET y = 'two'"}, /* needs 1 first */
    {5, "CREATE TABLE b (z BLOB)"},
};

static void test_migrate_applies_once_in_order_and_records(void **state)
{
    struct fixture *fx = *state;
    assert_int_equal(ck_store_migrate(fx->s, "vault", mig_good, 3), CK_OK);
    assert_int_equal(query_int(fx->s, "SELECT COUNT(*) FROM a"), 1);
    char *y = query_text(fx->s, "SELECT y FROM a");
    assert_string_equal(y, "two");
    free(y);
    assert_true(table_exists(fx->s, "b"));

    struct ck_stmt *st;
    bool row;
    int want[] = {1, 2, 5};
    assert_int_equal(ck_stmt_prepare(fx->s, &st,
                                     "SELECT version, applied_at FROM ck_schema "
                                     "WHERE component = ? ORDER BY version",
                                     "t", "vault"),
                     CK_OK);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(ck_stmt_step(st, &row), CK_OK);
        assert_true(row);
        assert_int_equal(ck_stmt_int(st, 0), want[i]);
        assert_true(ck_stmt_int(st, 1) > 1700000000);
    }
    assert_int_equal(ck_stmt_step(st, &row), CK_OK);
    assert_false(row);
    ck_stmt_finalize(st);
    int64_t stamp = query_int(fx->s, "SELECT SUM(applied_at) FROM ck_schema");

    /* Again, in this and in a fresh process-like reopen: nothing runs twice. */
    assert_int_equal(ck_store_migrate(fx->s, "vault", mig_good, 3), CK_OK);
    ck_store_close(fx->s);
    assert_int_equal(ck_store_open(fx->db, &fx->s), CK_OK);
    assert_int_equal(ck_store_migrate(fx->s, "vault", mig_good, 3), CK_OK);
    assert_int_equal(query_int(fx->s, "SELECT COUNT(*) FROM a"), 1);
    assert_int_equal(query_int(fx->s, "SELECT COUNT(*) FROM ck_schema"), 3);
    assert_int_equal(query_int(fx->s, "SELECT SUM(applied_at) FROM ck_schema"), stamp);

    /* A later release adds one: only that one runs. */
    const struct ck_migration more[] = {
        mig_good[0], mig_good[1], mig_good[2], {6, "INSERT INTO a (x) VALUES (6)"}};
    assert_int_equal(ck_store_migrate(fx->s, "vault", more, 4), CK_OK);
    assert_int_equal(query_int(fx->s, "SELECT COUNT(*) FROM a"), 2);
    assert_int_equal(query_int(fx->s, "SELECT MAX(version) FROM ck_schema"), 6);
}

static void test_migrate_components_are_independent(void **state)
{
    struct fixture *fx = *state;
    const struct ck_migration m_audit[] = {{1, "CREATE TABLE audit_log (n INTEGER)"}};
    const struct ck_migration m_auth[] = {{1, "CREATE TABLE principals (n INTEGER)"},
                                          {2, "CREATE TABLE roles (n INTEGER)"}};
    assert_int_equal(ck_store_migrate(fx->s, "audit", m_audit, 1), CK_OK);
    assert_int_equal(ck_store_migrate(fx->s, "auth", m_auth, 2), CK_OK);
    assert_true(table_exists(fx->s, "audit_log"));
    assert_true(table_exists(fx->s, "roles"));
    assert_int_equal(
        query_int(fx->s, "SELECT MAX(version) FROM ck_schema WHERE component = 'audit'"), 1);
    assert_int_equal(
        query_int(fx->s, "SELECT MAX(version) FROM ck_schema WHERE component = 'auth'"), 2);
}

static void test_migrate_failure_rolls_back_that_migration_only(void **state)
{
    struct fixture *fx = *state;
    const struct ck_migration m[] = {
        {1, "CREATE TABLE a (x INTEGER)"},
        {2, "CREATE TABLE b (x INTEGER)"},
        /* The first statement succeeds, the second fails: neither may stay. */
        {3, "CREATE TABLE c (x INTEGER); INSERT INTO no_such_table VALUES (1)"},
        {4, "CREATE TABLE d (x INTEGER)"},
    };
    ck_err rc = ck_store_migrate(fx->s, "vault", m, 4);
    assert_int_equal(rc, CK_EIO);
    assert_non_null(strstr(ck_err_msg(), "vault v3"));
    assert_non_null(strstr(ck_err_msg(), "no_such_table"));
    assert_true(table_exists(fx->s, "a"));
    assert_true(table_exists(fx->s, "b"));
    assert_false(table_exists(fx->s, "c"));
    assert_false(table_exists(fx->s, "d"));
    assert_int_equal(query_int(fx->s, "SELECT MAX(version) FROM ck_schema"), 2);

    /* The connection is usable and not left inside a transaction. */
    assert_int_equal(ck_store_begin(fx->s), CK_OK);
    ck_store_rollback(fx->s);

    /* Fixed migration 3 then applies, and 4 after it. */
    const struct ck_migration fixed[] = {m[0], m[1], {3, "CREATE TABLE c (x INTEGER)"}, m[3]};
    assert_int_equal(ck_store_migrate(fx->s, "vault", fixed, 4), CK_OK);
    assert_true(table_exists(fx->s, "c"));
    assert_true(table_exists(fx->s, "d"));
    assert_int_equal(query_int(fx->s, "SELECT MAX(version) FROM ck_schema"), 4);
}

static void test_migrate_rejects_bad_lists(void **state)
{
    struct fixture *fx = *state;
    const struct ck_migration unsorted[] = {{2, "CREATE TABLE a (x)"}, {1, "CREATE TABLE b (x)"}};
    const struct ck_migration dup[] = {{1, "CREATE TABLE a (x)"}, {1, "CREATE TABLE b (x)"}};
    const struct ck_migration zero[] = {{0, "CREATE TABLE a (x)"}};
    const struct ck_migration nosql[] = {{1, NULL}};
    assert_int_equal(ck_store_migrate(fx->s, "vault", unsorted, 2), CK_EINVAL);
    assert_int_equal(ck_store_migrate(fx->s, "vault", dup, 2), CK_EINVAL);
    assert_int_equal(ck_store_migrate(fx->s, "vault", zero, 1), CK_EINVAL);
    assert_int_equal(ck_store_migrate(fx->s, "vault", nosql, 1), CK_EINVAL);
    assert_int_equal(ck_store_migrate(fx->s, "", mig_good, 3), CK_EINVAL);
    assert_false(table_exists(fx->s, "a"));
    assert_int_equal(ck_store_migrate(fx->s, "vault", NULL, 0), CK_OK);
}

struct mig_arg {
    struct ck_store *s;
    pthread_barrier_t *go;
    ck_err rc;
};

static void *migrate_thread(void *p)
{
    struct mig_arg *a = p;
    static const struct ck_migration m[] = {
        {1, "CREATE TABLE runs (n INTEGER)"},
        {2, "INSERT INTO runs VALUES (2)"},
        {3, "INSERT INTO runs VALUES (3)"},
    };
    pthread_barrier_wait(a->go);
    a->rc = ck_store_migrate(a->s, "jobs", m, 3);
    return NULL;
}

static void test_migrate_concurrent_applies_each_once(void **state)
{
    struct fixture *fx = *state;
    enum { N = 4 };
    pthread_t th[N];
    struct mig_arg a[N];
    pthread_barrier_t go;
    pthread_barrier_init(&go, NULL, N);
    for (int i = 0; i < N; i++) {
        a[i] = (struct mig_arg){fx->s, &go, CK_EINTERNAL};
        assert_int_equal(pthread_create(&th[i], NULL, migrate_thread, &a[i]), 0);
    }
    for (int i = 0; i < N; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(a[i].rc, CK_OK);
    }
    pthread_barrier_destroy(&go);
    assert_int_equal(query_int(fx->s, "SELECT COUNT(*) FROM runs"), 2);
    assert_int_equal(query_int(fx->s, "SELECT COUNT(*) FROM ck_schema"), 3);
}

/* ---------- binding ---------- */

static void test_binds_round_trip_every_type(void **state)
{
    struct fixture *fx = *state;
    assert_int_equal(ck_store_exec(fx->s, "CREATE TABLE v (k INTEGER PRIMARY KEY, i INTEGER, "
                                          "t TEXT, b BLOB, n TEXT)"),
                     CK_OK);
    const char *utf8 = "h\xc3\xa9llo w\xc3\xb6rld \xe2\x9c\x93 \xf0\x9f\x94\x91 \xe4\xb8\xad";
    const uint8_t blob[] = {0, 1, 0, 0, 255, 0, 'a', 0};
    const int64_t ints[] = {INT64_MIN, INT64_MAX, 0, -1};
    for (int k = 0; k < 4; k++)
        assert_int_equal(ck_store_run(fx->s, NULL, "INSERT INTO v VALUES (?, ?, ?, ?, ?)", "iitbn",
                                      (int64_t)k, ints[k], utf8, blob, sizeof blob),
                         CK_OK);
    /* NULL text binds NULL; an empty blob stays an empty blob, not NULL. */
    assert_int_equal(ck_store_run(fx->s, NULL, "INSERT INTO v VALUES (?, ?, ?, ?, ?)", "intbt",
                                  (int64_t)10, (const char *)NULL, (const void *)NULL, (size_t)0,
                                  (const char *)NULL),
                     CK_OK);
    assert_int_equal(ck_store_run(fx->s, NULL, "INSERT INTO v (k, b) VALUES (?, ?)", "ib",
                                  (int64_t)11, "x", (size_t)0),
                     CK_OK);

    struct ck_stmt *st;
    bool row;
    size_t n;
    for (int k = 0; k < 4; k++) {
        assert_int_equal(
            ck_stmt_prepare(fx->s, &st, "SELECT i, t, b, n FROM v WHERE k = ?", "i", (int64_t)k),
            CK_OK);
        assert_int_equal(ck_stmt_step(st, &row), CK_OK);
        assert_true(row);
        assert_true(ck_stmt_int(st, 0) == ints[k]);
        assert_string_equal(ck_stmt_text(st, 1), utf8);
        const void *b = ck_stmt_blob(st, 2, &n);
        assert_int_equal(n, sizeof blob);
        assert_memory_equal(b, blob, sizeof blob);
        assert_true(ck_stmt_isnull(st, 3));
        assert_null(ck_stmt_text(st, 3));
        assert_false(ck_stmt_isnull(st, 0));
        assert_int_equal(ck_stmt_step(st, &row), CK_OK);
        assert_false(row);
        ck_stmt_finalize(st);
    }

    assert_int_equal(ck_stmt_prepare(fx->s, &st, "SELECT i, t, b, n FROM v WHERE k = 10", ""),
                     CK_OK);
    assert_int_equal(ck_stmt_step(st, &row), CK_OK);
    assert_true(row);
    assert_true(ck_stmt_isnull(st, 0));
    assert_true(ck_stmt_isnull(st, 1));
    assert_null(ck_stmt_text(st, 1));
    assert_false(ck_stmt_isnull(st, 2));
    ck_stmt_blob(st, 2, &n);
    assert_int_equal(n, 0);
    assert_true(ck_stmt_isnull(st, 3));
    ck_stmt_finalize(st);
    assert_int_equal(query_int(fx->s, "SELECT COUNT(*) FROM v WHERE k = 11 AND b = x''"), 1);
    assert_int_equal(query_int(fx->s, "SELECT length(t) FROM v WHERE k = 0"), 17);
}

static void test_type_string_mismatch_is_an_error(void **state)
{
    struct fixture *fx = *state;
    struct ck_stmt *st = (struct ck_stmt *)1;
    assert_int_equal(ck_stmt_prepare(fx->s, &st, "SELECT ?, ?", "i", (int64_t)1), CK_EINTERNAL);
    assert_null(st);
    assert_non_null(strstr(ck_err_msg(), "2 parameter"));
    assert_int_equal(ck_stmt_prepare(fx->s, &st, "SELECT 1", "t", "x"), CK_EINTERNAL);
    assert_int_equal(ck_stmt_prepare(fx->s, &st, "SELECT ?", ""), CK_EINTERNAL);
    assert_int_equal(ck_stmt_prepare(fx->s, &st, "SELECT ?", "x", (int64_t)1), CK_EINTERNAL);
    assert_int_equal(ck_store_run(fx->s, NULL, "SELECT ?", "ii", (int64_t)1, (int64_t)2),
                     CK_EINTERNAL);
    assert_int_equal(ck_stmt_prepare(fx->s, &st, "SELECT ?", "b", (const void *)NULL, (size_t)3),
                     CK_EINVAL);
    assert_null(st);
}

static void test_prepare_rejects_several_statements_and_bad_sql(void **state)
{
    struct fixture *fx = *state;
    struct ck_stmt *st;
    assert_int_equal(ck_stmt_prepare(fx->s, &st, "SELECT 1; SELECT 2", ""), CK_EINTERNAL);
    assert_int_equal(ck_stmt_prepare(fx->s, &st, "   ", ""), CK_EINTERNAL);
    assert_int_equal(ck_stmt_prepare(fx->s, &st, "SELEC 1", ""), CK_EIO);
    assert_non_null(strstr(ck_err_msg(), "syntax error"));
    /* Trailing semicolons, blanks and comments are not statements. */
    assert_int_equal(ck_stmt_prepare(fx->s, &st, "SELECT 1;  -- done\n", ""), CK_OK);
    ck_stmt_finalize(st);
    ck_stmt_finalize(NULL);
}

static void test_run_reports_changes(void **state)
{
    struct fixture *fx = *state;
    assert_int_equal(ck_store_exec(fx->s, "CREATE TABLE t (x INTEGER)"), CK_OK);
    for (int64_t i = 0; i < 5; i++)
        assert_int_equal(ck_store_run(fx->s, NULL, "INSERT INTO t VALUES (?)", "i", i), CK_OK);
    int64_t changes = -1;
    assert_int_equal(
        ck_store_run(fx->s, &changes, "UPDATE t SET x = x + 10 WHERE x >= ?", "i", (int64_t)2),
        CK_OK);
    assert_int_equal(changes, 3);
    assert_int_equal(ck_store_run(fx->s, &changes, "SELECT x FROM t", ""), CK_OK);
    assert_int_equal(changes, 0);
    assert_int_equal(ck_store_run(fx->s, &changes, "DELETE FROM t WHERE x = ?", "i", (int64_t)99),
                     CK_OK);
    assert_int_equal(changes, 0);
}

/* ck_stmt_collect's fill: row x into a string "x=<x>"; fails at x == *stop. */
static ck_err fill_x(struct ck_stmt *st, void *elem, void *arg)
{
    int64_t x = ck_stmt_int(st, 0);
    if (arg && x == *(const int64_t *)arg)
        return ck_err_set(CK_EINTEGRITY, "row %lld is bad", (long long)x);
    *(char **)elem = ck_sprintf("x=%lld", (long long)x);
    return CK_OK;
}

static int dropped;

static void drop_x(void *elem)
{
    free(*(char **)elem);
    dropped++;
}

static void test_collect_rows_in_order_and_cleans_up_on_failure(void **state)
{
    struct fixture *fx = *state;
    assert_int_equal(ck_store_exec(fx->s, "CREATE TABLE t (x INTEGER)"), CK_OK);
    struct ck_stmt *st;
    void *v;
    size_t n = 99;
    assert_int_equal(ck_stmt_prepare(fx->s, &st, "SELECT x FROM t", ""), CK_OK);
    assert_int_equal(ck_stmt_collect(st, sizeof(char *), fill_x, NULL, drop_x, &v, &n), CK_OK);
    assert_null(v);
    assert_int_equal(n, 0);

    for (int64_t i = 0; i < 21; i++) /* past the first two growths */
        assert_int_equal(ck_store_run(fx->s, NULL, "INSERT INTO t VALUES (?)", "i", i), CK_OK);
    assert_int_equal(ck_stmt_prepare(fx->s, &st, "SELECT x FROM t ORDER BY x DESC", ""), CK_OK);
    assert_int_equal(ck_stmt_collect(st, sizeof(char *), fill_x, NULL, drop_x, &v, &n), CK_OK);
    assert_int_equal(n, 21);
    char **strs = v;
    assert_string_equal(strs[0], "x=20");
    assert_string_equal(strs[20], "x=0");
    for (size_t i = 0; i < n; i++)
        free(strs[i]);
    free(strs);

    /* A row that fails: the error comes back, what was filled is dropped. */
    int64_t stop = 7;
    dropped = 0;
    v = (void *)1;
    assert_int_equal(ck_stmt_prepare(fx->s, &st, "SELECT x FROM t ORDER BY x", ""), CK_OK);
    assert_int_equal(ck_stmt_collect(st, sizeof(char *), fill_x, &stop, drop_x, &v, &n),
                     CK_EINTEGRITY);
    assert_string_equal(ck_err_msg(), "row 7 is bad");
    assert_int_equal(dropped, 7);
    assert_null(v);
    assert_int_equal(n, 0);
}

static void test_ints_reads_the_first_row(void **state)
{
    struct fixture *fx = *state;
    assert_int_equal(ck_store_exec(fx->s, "CREATE TABLE t (x INTEGER)"), CK_OK);
    for (int64_t i = 1; i <= 4; i++)
        assert_int_equal(ck_store_run(fx->s, NULL, "INSERT INTO t VALUES (?)", "i", i), CK_OK);
    int64_t v[2] = {-1, -1};
    assert_int_equal(
        ck_store_ints(fx->s, v, 2, "SELECT COUNT(*), SUM(x > ?) FROM t", "i", (int64_t)2), CK_OK);
    assert_int_equal(v[0], 4);
    assert_int_equal(v[1], 2);
    v[0] = v[1] = -1; /* no row: zeros */
    assert_int_equal(ck_store_ints(fx->s, v, 2, "SELECT x, x FROM t WHERE x > 9", ""), CK_OK);
    assert_int_equal(v[0], 0);
    assert_int_equal(v[1], 0);
    v[0] = -1; /* a failed query: an error, and zeros */
    assert_int_not_equal(ck_store_ints(fx->s, v, 1, "SELECT nope FROM t", ""), CK_OK);
    assert_int_equal(v[0], 0);
}

static void test_statement_cache_nested_and_evicted(void **state)
{
    struct fixture *fx = *state;
    assert_int_equal(ck_store_exec(fx->s, "CREATE TABLE t (x INTEGER)"), CK_OK);
    for (int64_t i = 1; i <= 3; i++)
        assert_int_equal(ck_store_run(fx->s, NULL, "INSERT INTO t VALUES (?)", "i", i), CK_OK);

    /* The same SQL open twice at once on one thread: independent statements. */
    const char *q = "SELECT x FROM t WHERE x >= ? ORDER BY x";
    struct ck_stmt *outer, *inner;
    bool row;
    int64_t sum = 0;
    assert_int_equal(ck_stmt_prepare(fx->s, &outer, q, "i", (int64_t)1), CK_OK);
    while (ck_stmt_step(outer, &row) == CK_OK && row) {
        assert_int_equal(ck_stmt_prepare(fx->s, &inner, q, "i", ck_stmt_int(outer, 0)), CK_OK);
        while (ck_stmt_step(inner, &row) == CK_OK && row)
            sum += ck_stmt_int(inner, 0);
        ck_stmt_finalize(inner);
    }
    ck_stmt_finalize(outer);
    assert_int_equal(sum, (1 + 2 + 3) + (2 + 3) + 3);

    /* More distinct statements than cache slots, twice round: still correct,
     * and a reused statement does not keep the previous bindings. */
    for (int round = 0; round < 2; round++)
        for (int i = 0; i < 80; i++) {
            char sql[64];
            snprintf(sql, sizeof sql, "SELECT ? + %d", i);
            struct ck_stmt *st;
            assert_int_equal(ck_stmt_prepare(fx->s, &st, sql, "i", (int64_t)round), CK_OK);
            assert_int_equal(ck_stmt_step(st, &row), CK_OK);
            assert_true(row);
            assert_int_equal(ck_stmt_int(st, 0), round + i);
            ck_stmt_finalize(st);
        }

    /* A schema change under a cached statement is picked up. */
    assert_int_equal(query_int(fx->s, "SELECT COUNT(*) FROM t"), 3);
    assert_int_equal(ck_store_exec(fx->s, "DROP TABLE t; CREATE TABLE t (x INTEGER, y INTEGER)"),
                     CK_OK);
    assert_int_equal(query_int(fx->s, "SELECT COUNT(*) FROM t"), 0);
}

/* ---------- errors ---------- */

static void test_unique_violation_is_conflict_without_value(void **state)
{
    struct fixture *fx = *state;
    assert_int_equal(ck_store_exec(fx->s, "CREATE TABLE k (name TEXT PRIMARY KEY, v BLOB)"), CK_OK);
    const char *secret = "s3cr3t-n4me-do-not-log";
    assert_int_equal(
        ck_store_run(fx->s, NULL, "INSERT INTO k VALUES (?, ?)", "tb", secret, "pw", (size_t)2),
        CK_OK);
    assert_int_equal(
        ck_store_run(fx->s, NULL, "INSERT INTO k VALUES (?, ?)", "tb", secret, "pw", (size_t)2),
        CK_ECONFLICT);
    assert_non_null(strstr(ck_err_msg(), "UNIQUE constraint failed"));
    assert_null(strstr(ck_err_msg(), secret));

    /* NOT NULL and CHECK violations are conflicts too. */
    assert_int_equal(ck_store_exec(fx->s, "CREATE TABLE c (x INTEGER NOT NULL CHECK (x > 0))"),
                     CK_OK);
    assert_int_equal(ck_store_run(fx->s, NULL, "INSERT INTO c VALUES (?)", "n"), CK_ECONFLICT);
    assert_int_equal(ck_store_run(fx->s, NULL, "INSERT INTO c VALUES (?)", "i", (int64_t)-5),
                     CK_ECONFLICT);

    /* ON CONFLICT DO NOTHING, the portable upsert, is no error. */
    int64_t changes = -1;
    assert_int_equal(ck_store_run(fx->s, &changes,
                                  "INSERT INTO k VALUES (?, ?) ON CONFLICT (name) DO NOTHING", "tn",
                                  secret),
                     CK_OK);
    assert_int_equal(changes, 0);
}

/* ---------- transactions ---------- */

static void test_rollback_discards(void **state)
{
    struct fixture *fx = *state;
    assert_int_equal(ck_store_exec(fx->s, "CREATE TABLE t (x INTEGER)"), CK_OK);
    ck_store_rollback(fx->s); /* no-op outside a transaction */
    assert_int_equal(ck_store_begin(fx->s), CK_OK);
    assert_int_equal(ck_store_run(fx->s, NULL, "INSERT INTO t VALUES (1)", ""), CK_OK);
    assert_int_equal(query_int(fx->s, "SELECT COUNT(*) FROM t"), 1);
    ck_store_rollback(fx->s);
    assert_int_equal(query_int(fx->s, "SELECT COUNT(*) FROM t"), 0);
    assert_int_equal(ck_store_commit(fx->s), CK_EINTERNAL); /* nothing to commit */
}

static void test_commit_persists_across_reopen(void **state)
{
    struct fixture *fx = *state;
    assert_int_equal(ck_store_exec(fx->s, "CREATE TABLE t (x INTEGER)"), CK_OK);
    assert_int_equal(ck_store_begin(fx->s), CK_OK);
    assert_int_equal(ck_store_run(fx->s, NULL, "INSERT INTO t VALUES (?)", "i", (int64_t)42),
                     CK_OK);
    /* A constraint error inside a transaction fails that statement only. */
    assert_int_equal(ck_store_exec(fx->s, "CREATE UNIQUE INDEX tx ON t (x)"), CK_OK);
    assert_int_equal(ck_store_run(fx->s, NULL, "INSERT INTO t VALUES (?)", "i", (int64_t)42),
                     CK_ECONFLICT);
    assert_int_equal(ck_store_commit(fx->s), CK_OK);
    ck_store_close(fx->s);
    fx->s = NULL;
    assert_int_equal(ck_store_open(fx->db, &fx->s), CK_OK);
    assert_int_equal(query_int(fx->s, "SELECT COUNT(*) FROM t"), 1);
    assert_int_equal(query_int(fx->s, "SELECT x FROM t"), 42);
}

static void test_close_rolls_back_open_transaction(void **state)
{
    struct fixture *fx = *state;
    assert_int_equal(ck_store_exec(fx->s, "CREATE TABLE t (x INTEGER)"), CK_OK);
    assert_int_equal(ck_store_begin(fx->s), CK_OK);
    assert_int_equal(ck_store_run(fx->s, NULL, "INSERT INTO t VALUES (1)", ""), CK_OK);
    ck_store_close(fx->s);
    assert_int_equal(ck_store_open(fx->db, &fx->s), CK_OK);
    assert_int_equal(query_int(fx->s, "SELECT COUNT(*) FROM t"), 0);
}

static void test_nested_begin_refused(void **state)
{
    struct fixture *fx = *state;
    assert_int_equal(ck_store_exec(fx->s, "CREATE TABLE t (x INTEGER)"), CK_OK);
    assert_int_equal(ck_store_begin(fx->s), CK_OK);
    assert_int_equal(ck_store_run(fx->s, NULL, "INSERT INTO t VALUES (1)", ""), CK_OK);
    assert_int_equal(ck_store_begin(fx->s), CK_EINTERNAL);
    assert_non_null(strstr(ck_err_msg(), "do not nest"));
    /* The outer transaction is intact and commits. */
    assert_int_equal(ck_store_run(fx->s, NULL, "INSERT INTO t VALUES (2)", ""), CK_OK);
    assert_int_equal(ck_store_commit(fx->s), CK_OK);
    assert_int_equal(query_int(fx->s, "SELECT COUNT(*) FROM t"), 2);
    assert_int_equal(ck_store_checkpoint(fx->s), CK_OK);
    assert_int_equal(ck_store_begin(fx->s), CK_OK);
    assert_int_equal(ck_store_checkpoint(fx->s), CK_EINTERNAL);
    ck_store_rollback(fx->s);
}

struct writer {
    struct ck_store *s;
    atomic_bool done;
    ck_err rc;
};

static void *write_one(void *p)
{
    struct writer *w = p;
    w->rc = ck_store_run(w->s, NULL, "INSERT INTO t VALUES (2)", "");
    atomic_store(&w->done, true);
    return NULL;
}

static void test_begin_takes_write_lock_up_front(void **state)
{
    struct fixture *fx = *state;
    assert_int_equal(ck_store_exec(fx->s, "CREATE TABLE t (x INTEGER)"), CK_OK);
    assert_int_equal(ck_store_begin(fx->s), CK_OK);
    /* No statement yet: still, another writer must wait for our commit. */
    struct writer w = {.s = fx->s, .rc = CK_EINTERNAL};
    atomic_init(&w.done, false);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, write_one, &w), 0);
    usleep(300 * 1000);
    assert_false(atomic_load(&w.done));
    assert_int_equal(ck_store_run(fx->s, NULL, "INSERT INTO t VALUES (1)", ""), CK_OK);
    assert_int_equal(ck_store_commit(fx->s), CK_OK);
    pthread_join(th, NULL);
    assert_int_equal(w.rc, CK_OK);
    assert_int_equal(query_int(fx->s, "SELECT COUNT(*) FROM t"), 2);
}

/* ---------- threads ---------- */

enum { NTHREADS = 4, NTX = 200 };

struct worker {
    struct ck_store *s;
    pthread_barrier_t *ready;
    int id;
    ck_err rc;
    char msg[512];
    bool saw_other_temp;
};

/* Returns false and records the error on failure. */
static bool worker_check(struct worker *w, ck_err rc)
{
    if (rc != CK_OK && w->rc == CK_OK) {
        w->rc = rc;
        snprintf(w->msg, sizeof w->msg, "%s", ck_err_msg());
    }
    return rc == CK_OK;
}

static void *worker_main(void *p)
{
    struct worker *w = p;
    /* A TEMP table lives in one connection: if threads shared one, the
     * second CREATE would fail and the others would see it. */
    worker_check(w, ck_store_exec(w->s, "CREATE TEMP TABLE mine (x INTEGER)"));
    pthread_barrier_wait(w->ready); /* all threads hold a connection now */
    for (int i = 0; i < NTX && w->rc == CK_OK; i++) {
        if (!worker_check(w, ck_store_begin(w->s)))
            break;
        bool ok = worker_check(w, ck_store_run(w->s, NULL, "INSERT INTO t VALUES (?, ?)", "ii",
                                               (int64_t)w->id, (int64_t)i)) &&
                  worker_check(
                      w, ck_store_run(w->s, NULL, "INSERT INTO mine VALUES (?)", "i", (int64_t)i));
        if (!ok) {
            ck_store_rollback(w->s);
            break;
        }
        worker_check(w, ck_store_commit(w->s));
    }
    struct ck_stmt *st;
    bool row;
    if (w->rc == CK_OK &&
        worker_check(w, ck_stmt_prepare(w->s, &st, "SELECT COUNT(*) FROM temp.mine", ""))) {
        if (worker_check(w, ck_stmt_step(st, &row)) && ck_stmt_int(st, 0) != NTX)
            w->saw_other_temp = true;
        ck_stmt_finalize(st);
    }
    return NULL;
}

static void test_threads_have_own_connections_and_write_concurrently(void **state)
{
    struct fixture *fx = *state;
    assert_int_equal(ck_store_exec(fx->s, "CREATE TABLE t (thread INTEGER, i INTEGER, "
                                          "PRIMARY KEY (thread, i))"),
                     CK_OK);
    assert_int_equal(ck_store_conn_count(fx->s), 1);

    pthread_t th[NTHREADS];
    struct worker w[NTHREADS];
    pthread_barrier_t ready;
    pthread_barrier_init(&ready, NULL, NTHREADS + 1);
    for (int i = 0; i < NTHREADS; i++) {
        w[i] = (struct worker){.s = fx->s, .ready = &ready, .id = i, .rc = CK_OK};
        assert_int_equal(pthread_create(&th[i], NULL, worker_main, &w[i]), 0);
    }
    pthread_barrier_wait(&ready);
    assert_int_equal(ck_store_conn_count(fx->s), NTHREADS + 1);
    for (int i = 0; i < NTHREADS; i++) {
        pthread_join(th[i], NULL);
        if (w[i].rc != CK_OK)
            fail_msg("thread %d: %s: %s", i, ck_err_name(w[i].rc), w[i].msg);
        assert_false(w[i].saw_other_temp);
    }
    pthread_barrier_destroy(&ready);
    assert_int_equal(query_int(fx->s, "SELECT COUNT(*) FROM t"), NTHREADS * NTX);
    /* The threads exited: their connections closed, only ours is left. */
    assert_int_equal(ck_store_conn_count(fx->s), 1);
}

static void *touch_store(void *p)
{
    struct ck_store *s = p;
    struct ck_stmt *st;
    bool row;
    if (ck_stmt_prepare(s, &st, "SELECT COUNT(*) FROM sqlite_master", "") == CK_OK) {
        ck_stmt_step(st, &row);
        ck_stmt_finalize(st);
    }
    return (void *)(intptr_t)ck_store_conn_count(s);
}

static void test_exiting_thread_closes_its_connection(void **state)
{
    struct fixture *fx = *state;
    assert_int_equal(ck_store_conn_count(fx->s), 1);
    for (int i = 0; i < 3; i++) {
        pthread_t th;
        void *seen;
        assert_int_equal(pthread_create(&th, NULL, touch_store, fx->s), 0);
        pthread_join(th, &seen);
        assert_int_equal((intptr_t)seen, 2); /* it had one while running */
        assert_int_equal(ck_store_conn_count(fx->s), 1);
    }
}

/* ---------- secure deletion ---------- */

static void test_deleted_blob_gone_from_db_and_wal_after_checkpoint(void **state)
{
    struct fixture *fx = *state;
    char wal[400];
    snprintf(wal, sizeof wal, "%s-wal", ck_store_path(fx->s));
    const char *db = ck_store_path(fx->s);

    uint8_t secret[64];
    assert_int_equal(ck_os_random(secret, sizeof secret), CK_OK);
    assert_int_equal(ck_store_exec(fx->s, "CREATE TABLE s (id INTEGER PRIMARY KEY, v BLOB)"),
                     CK_OK);
    for (int64_t i = 0; i < 20; i++) {
        uint8_t filler[64];
        memset(filler, (int)i + 1, sizeof filler);
        assert_int_equal(ck_store_run(fx->s, NULL, "INSERT INTO s VALUES (?, ?)", "ib", i, filler,
                                      sizeof filler),
                         CK_OK);
    }
    assert_int_equal(ck_store_run(fx->s, NULL, "INSERT INTO s VALUES (?, ?)", "ib", (int64_t)100,
                                  secret, sizeof secret),
                     CK_OK);
    /* Controls: the scan finds the blob where it is, first in the WAL, then
     * (after a checkpoint) in the database file. */
    assert_true(file_contains(wal, secret, sizeof secret));
    assert_int_equal(ck_store_checkpoint(fx->s), CK_OK);
    assert_true(file_contains(db, secret, sizeof secret));

    int64_t changes = 0;
    assert_int_equal(ck_store_run(fx->s, &changes, "DELETE FROM s WHERE id = ?", "i", (int64_t)100),
                     CK_OK);
    assert_int_equal(changes, 1);
    assert_int_equal(ck_store_checkpoint(fx->s), CK_OK);
    assert_false(file_contains(db, secret, sizeof secret));
    assert_false(file_contains(wal, secret, sizeof secret));
    assert_int_equal(query_int(fx->s, "SELECT COUNT(*) FROM s"), 20);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_open_creates_files_0600_whatever_the_umask, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_open_refuses_postgres_and_bad_paths, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connection_pragmas_in_effect, setup_open, teardown),
        cmocka_unit_test_setup_teardown(test_foreign_keys_enforced, setup_open, teardown),
        cmocka_unit_test_setup_teardown(test_migrate_applies_once_in_order_and_records, setup_open,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_migrate_components_are_independent, setup_open,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_migrate_failure_rolls_back_that_migration_only,
                                        setup_open, teardown),
        cmocka_unit_test_setup_teardown(test_migrate_rejects_bad_lists, setup_open, teardown),
        cmocka_unit_test_setup_teardown(test_migrate_concurrent_applies_each_once, setup_open,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_binds_round_trip_every_type, setup_open, teardown),
        cmocka_unit_test_setup_teardown(test_type_string_mismatch_is_an_error, setup_open,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_prepare_rejects_several_statements_and_bad_sql,
                                        setup_open, teardown),
        cmocka_unit_test_setup_teardown(test_run_reports_changes, setup_open, teardown),
        cmocka_unit_test_setup_teardown(test_collect_rows_in_order_and_cleans_up_on_failure,
                                        setup_open, teardown),
        cmocka_unit_test_setup_teardown(test_ints_reads_the_first_row, setup_open, teardown),
        cmocka_unit_test_setup_teardown(test_statement_cache_nested_and_evicted, setup_open,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_unique_violation_is_conflict_without_value, setup_open,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_rollback_discards, setup_open, teardown),
        cmocka_unit_test_setup_teardown(test_commit_persists_across_reopen, setup_open, teardown),
        cmocka_unit_test_setup_teardown(test_close_rolls_back_open_transaction, setup_open,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_nested_begin_refused, setup_open, teardown),
        cmocka_unit_test_setup_teardown(test_begin_takes_write_lock_up_front, setup_open, teardown),
        cmocka_unit_test_setup_teardown(test_threads_have_own_connections_and_write_concurrently,
                                        setup_open, teardown),
        cmocka_unit_test_setup_teardown(test_exiting_thread_closes_its_connection, setup_open,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_deleted_blob_gone_from_db_and_wal_after_checkpoint,
                                        setup_open, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
