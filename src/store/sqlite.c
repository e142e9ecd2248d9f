/*
 * sqlite.c — the SQLite backend of store.h, the only file that includes sqlite3.h.
 *
 * Files: the database is created by us with open(O_CREAT|O_EXCL, 0600) and
 * fchmod, so its mode does not depend on the umask; SQLite gives -wal and
 * -shm the database's mode, and each new connection chmods them to 0600 as
 * well in case they pre-date us.
 *
 * Connections: one per thread, opened on first use (SQLITE_OPEN_NOMUTEX: a
 * connection is only ever used by its thread). A pthread key per store finds
 * the calling thread's connection; its destructor closes the connection when
 * the thread exits. All connections are also on a mutex-protected list so
 * ck_store_close can close those of threads that are still alive. Callers
 * must not use the store from other threads while or after it is closed.
 *
 * Every connection runs WAL, synchronous=FULL, secure_delete=ON,
 * foreign_keys=ON and a 10 s busy timeout. Transactions are BEGIN IMMEDIATE.
 *
 * Statement cache: each connection keeps its last SQ_CACHE_SLOTS prepared
 * statements, keyed by SQL text. ck_stmt_finalize resets a cached statement
 * and clears its bindings instead of finalizing it. A statement is handed to
 * one user at a time; a second concurrent use of the same SQL on the same
 * thread (nested iteration) gets an uncached statement.
 *
 * Error mapping: SQLITE_CONSTRAINT* -> CK_ECONFLICT, SQLITE_BUSY/LOCKED ->
 * CK_EUNAVAIL, SQLITE_NOMEM -> CK_ENOMEM, anything else -> CK_EIO. Messages
 * carry sqlite3_errmsg(), never a bound value.
 */
#include "store/backend.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SQ_BUSY_TIMEOUT_MS 10000
#define SQ_CACHE_SLOTS 32

struct sq_store;

struct sq_slot {
    char *sql; /* NULL when the slot is empty */
    uint64_t hash;
    sqlite3_stmt *st;
    uint64_t last_used; /* conn->clock at last hand-out, for LRU eviction */
    bool busy;          /* handed out and not yet finalized */
};

struct sq_conn {
    struct sq_store *store;
    sqlite3 *db;
    bool in_tx; /* between a successful ck_store_begin and commit/rollback */
    uint64_t clock;
    struct sq_slot cache[SQ_CACHE_SLOTS];
    struct sq_conn *prev, *next; /* on store->conns */
};

struct sq_store {
    struct ck_store base; /* first: see backend.h */
    char *path;           /* absolute */
    pthread_key_t key;    /* -> this thread's struct sq_conn */
    pthread_mutex_t mu;   /* guards conns */
    struct sq_conn *conns;
    int nconns;
};

struct sq_stmt {
    struct ck_stmt base; /* first: see backend.h */
    struct sq_conn *conn;
    sqlite3_stmt *st;
    struct sq_slot *slot; /* NULL when not cached: finalize for real */
};

static const struct ck_store_ops sq_ops;

static struct sq_store *sq_store_of(struct ck_store *s)
{
    assert(s->ops == &sq_ops);
    return (struct sq_store *)s;
}

static struct sq_stmt *sq_stmt_of(struct ck_stmt *st)
{
    assert(st->ops == &sq_ops);
    return (struct sq_stmt *)st;
}

/* ---------- errors ---------- */

static ck_err sq_fail(sqlite3 *db, int rc, const char *what)
{
    ck_err e;
    switch (rc & 0xff) {
    case SQLITE_CONSTRAINT:
        e = CK_ECONFLICT;
        break;
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        e = CK_EUNAVAIL;
        break;
    case SQLITE_NOMEM:
        e = CK_ENOMEM;
        break;
    default:
        e = CK_EIO;
        break;
    }
    return ck_err_set(e, "sqlite %s: %s (code %d)", what,
                      db ? sqlite3_errmsg(db) : sqlite3_errstr(rc), rc);
}

/* ---------- files ---------- */

static ck_err sq_create_file(const char *path)
{
    int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        if (errno == EEXIST)
            return CK_OK; /* an existing store keeps the mode it has */
        return ck_err_set(CK_EIO, "create %s: %s", path, strerror(errno));
    }
    /* open() applied the umask; the mode must be exactly 0600 regardless. */
    int r = fchmod(fd, 0600);
    int saved = errno;
    close(fd);
    if (r != 0)
        return ck_err_set(CK_EIO, "chmod %s: %s", path, strerror(saved));
    return CK_OK;
}

static ck_err sq_restrict(const char *path, const char *suffix)
{
    char *p = ck_sprintf("%s%s", path, suffix);
    ck_err rc = CK_OK;
    if (chmod(p, 0600) != 0 && errno != ENOENT)
        rc = ck_err_set(CK_EIO, "chmod %s: %s", p, strerror(errno));
    free(p);
    return rc;
}

/* ---------- connections ---------- */

static void sq_conn_free(struct sq_conn *c)
{
    for (int i = 0; i < SQ_CACHE_SLOTS; i++) {
        struct sq_slot *sl = &c->cache[i];
        /* A busy slot is a statement its user never finalized; sqlite3_close_v2
         * below then keeps the handle alive until that happens. */
        if (sl->st && !sl->busy)
            sqlite3_finalize(sl->st);
        free(sl->sql);
    }
    sqlite3_close_v2(c->db); /* rolls back an open transaction; NULL-safe */
    free(c);
}

static ck_err sq_journal_wal(sqlite3 *db)
{
    sqlite3_stmt *st;
    int rc = sqlite3_prepare_v2(db, "PRAGMA journal_mode=WAL", -1, &st, NULL);
    if (rc != SQLITE_OK)
        return sq_fail(db, rc, "journal_mode");
    rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) {
        ck_err e = sq_fail(db, rc, "journal_mode");
        sqlite3_finalize(st);
        return e;
    }
    /* SQLite reports the mode it ended up in; it refuses WAL on some
     * filesystems rather than failing. */
    const char *mode = (const char *)sqlite3_column_text(st, 0);
    ck_err e = CK_OK;
    if (!mode || strcmp(mode, "wal") != 0)
        e = ck_err_set(CK_EIO, "sqlite journal_mode: got %s, want wal", mode ? mode : "nothing");
    sqlite3_finalize(st);
    return e;
}

static ck_err sq_conn_open(struct sq_store *s, struct sq_conn **out)
{
    struct sq_conn *c = ck_xcalloc(1, sizeof *c);
    c->store = s;
    ck_err rc;
    /* No SQLITE_OPEN_CREATE: sq_create_file made the file with the right mode,
     * and a file that vanished since must not silently reappear empty. */
    int r = sqlite3_open_v2(s->path, &c->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
    if (r != SQLITE_OK) {
        rc = c->db ? sq_fail(c->db, r, "open") : ck_err_set(CK_ENOMEM, "sqlite open: no memory");
        goto fail;
    }
    sqlite3_extended_result_codes(c->db, 1);
    /* Before anything that locks: the pragmas below may wait for other connections. */
    sqlite3_busy_timeout(c->db, SQ_BUSY_TIMEOUT_MS);
    r = sqlite3_exec(c->db,
                     "PRAGMA synchronous=FULL; PRAGMA secure_delete=ON; PRAGMA foreign_keys=ON;",
                     NULL, NULL, NULL);
    if (r != SQLITE_OK) {
        rc = sq_fail(c->db, r, "pragma");
        goto fail;
    }
    if ((rc = sq_journal_wal(c->db)) != CK_OK)
        goto fail;
    if ((rc = sq_restrict(s->path, "-wal")) != CK_OK ||
        (rc = sq_restrict(s->path, "-shm")) != CK_OK)
        goto fail;
    *out = c;
    return CK_OK;
fail:
    sq_conn_free(c);
    return rc;
}

/* pthread key destructor: the thread that owned c is exiting. */
static void sq_conn_thread_exit(void *p)
{
    struct sq_conn *c = p;
    struct sq_store *s = c->store;
    pthread_mutex_lock(&s->mu);
    if (c->prev)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    s->nconns--;
    pthread_mutex_unlock(&s->mu);
    sq_conn_free(c);
}

static ck_err sq_conn_get(struct sq_store *s, struct sq_conn **out)
{
    struct sq_conn *c = pthread_getspecific(s->key);
    if (!c) {
        CK_TRY(sq_conn_open(s, &c));
        if (pthread_setspecific(s->key, c) != 0) {
            sq_conn_free(c);
            return ck_err_set(CK_ENOMEM, "sqlite: cannot record this thread's connection");
        }
        pthread_mutex_lock(&s->mu);
        c->next = s->conns;
        if (s->conns)
            s->conns->prev = c;
        s->conns = c;
        s->nconns++;
        pthread_mutex_unlock(&s->mu);
    }
    *out = c;
    return CK_OK;
}

/* ---------- store ---------- */

static void sq_close(struct ck_store *base)
{
    struct sq_store *s = sq_store_of(base);
    /* First, so no thread's exit destructor runs for this store any more. */
    pthread_key_delete(s->key);
    pthread_mutex_lock(&s->mu);
    struct sq_conn *c = s->conns;
    s->conns = NULL;
    s->nconns = 0;
    pthread_mutex_unlock(&s->mu);
    while (c) {
        struct sq_conn *next = c->next;
        sq_conn_free(c);
        c = next;
    }
    pthread_mutex_destroy(&s->mu);
    free(s->path);
    free(s);
}

ck_err ck_store_sqlite_open(const char *path, struct ck_store **out)
{
    *out = NULL;
    if (!*path)
        return ck_err_set(CK_EINVAL, "sqlite: empty database path");
    if (strcmp(path, ":memory:") == 0)
        return ck_err_set(CK_EINVAL, "sqlite: in-memory databases are not supported "
                                     "(each thread's connection would see its own)");
    if (!sqlite3_threadsafe())
        return ck_err_set(CK_EINTERNAL, "sqlite: library built without thread support");
    CK_TRY(sq_create_file(path));
    /* Absolute, so a later chdir() cannot send new threads to another file. */
    char *abs = realpath(path, NULL);
    if (!abs)
        return ck_err_set(CK_EIO, "resolve %s: %s", path, strerror(errno));

    struct sq_store *s = ck_xcalloc(1, sizeof *s);
    s->base.ops = &sq_ops;
    s->path = abs;
    int r = pthread_key_create(&s->key, sq_conn_thread_exit);
    if (r != 0) {
        free(abs);
        free(s);
        return ck_err_set(CK_EIO, "sqlite: pthread_key_create: %s", strerror(r));
    }
    pthread_mutex_init(&s->mu, NULL);

    /* Open this thread's connection now so a bad file fails here, not later. */
    struct sq_conn *c;
    ck_err rc = sq_conn_get(s, &c);
    if (rc != CK_OK) {
        sq_close(&s->base);
        return rc;
    }
    *out = &s->base;
    return CK_OK;
}

static const char *sq_path(const struct ck_store *base)
{
    return ((const struct sq_store *)base)->path;
}

static int sq_conn_count(struct ck_store *base)
{
    struct sq_store *s = sq_store_of(base);
    pthread_mutex_lock(&s->mu);
    int n = s->nconns;
    pthread_mutex_unlock(&s->mu);
    return n;
}

/* ---------- transactions ---------- */

static bool sq_in_tx(struct ck_store *base)
{
    struct sq_conn *c = pthread_getspecific(sq_store_of(base)->key);
    return c && (c->in_tx || !sqlite3_get_autocommit(c->db));
}

static ck_err sq_begin(struct ck_store *base)
{
    struct sq_conn *c;
    CK_TRY(sq_conn_get(sq_store_of(base), &c));
    if (c->in_tx || !sqlite3_get_autocommit(c->db))
        return ck_err_set(CK_EINTERNAL, "ck_store_begin: this thread already has a transaction "
                                        "open (transactions do not nest)");
    int r = sqlite3_exec(c->db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
    if (r != SQLITE_OK)
        return sq_fail(c->db, r, "begin");
    c->in_tx = true;
    return CK_OK;
}

/* Either the transaction is committed or it is rolled back: on failure the
 * connection is left outside any transaction. */
static ck_err sq_commit(struct ck_store *base)
{
    struct sq_conn *c = pthread_getspecific(sq_store_of(base)->key);
    if (!c || !c->in_tx)
        return ck_err_set(CK_EINTERNAL, "ck_store_commit: no transaction open on this thread");
    c->in_tx = false;
    /* SQLite rolls a transaction back by itself after some errors (I/O, full
     * disk, out of memory); committing would then persist nothing. */
    if (sqlite3_get_autocommit(c->db))
        return ck_err_set(CK_EIO, "ck_store_commit: the transaction was already rolled back "
                                  "after an earlier error");
    int r = sqlite3_exec(c->db, "COMMIT", NULL, NULL, NULL);
    if (r != SQLITE_OK) {
        ck_err e = sq_fail(c->db, r, "commit");
        if (!sqlite3_get_autocommit(c->db))
            sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
        return e;
    }
    return CK_OK;
}

static void sq_rollback(struct ck_store *base)
{
    struct sq_conn *c = pthread_getspecific(sq_store_of(base)->key);
    if (!c)
        return;
    c->in_tx = false;
    /* Leaves the caller's error message alone: rollback usually runs on an
     * error path and the message there is the one that matters. */
    if (!sqlite3_get_autocommit(c->db))
        sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
}

static ck_err sq_exec(struct ck_store *base, const char *sql)
{
    struct sq_conn *c;
    CK_TRY(sq_conn_get(sq_store_of(base), &c));
    int r = sqlite3_exec(c->db, sql, NULL, NULL, NULL);
    if (r != SQLITE_OK)
        return sq_fail(c->db, r, "exec");
    return CK_OK;
}

static ck_err sq_checkpoint(struct ck_store *base)
{
    struct sq_conn *c;
    CK_TRY(sq_conn_get(sq_store_of(base), &c));
    if (c->in_tx || !sqlite3_get_autocommit(c->db))
        return ck_err_set(CK_EINTERNAL, "ck_store_checkpoint: not allowed inside a transaction");
    /* The C form of PRAGMA wal_checkpoint(TRUNCATE): it waits (busy handler)
     * for readers and writers, and says SQLITE_BUSY when it could not copy
     * every frame back and truncate, which the PRAGMA only reports in a row. */
    int r = sqlite3_wal_checkpoint_v2(c->db, NULL, SQLITE_CHECKPOINT_TRUNCATE, NULL, NULL);
    if (r != SQLITE_OK)
        return sq_fail(c->db, r, "checkpoint");
    return CK_OK;
}

/* ---------- statements ---------- */

static uint64_t sq_hash(const char *s)
{
    uint64_t h = 14695981039346656037u; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 1099511628211u;
    return h;
}

static ck_err sq_prepare_one(sqlite3 *db, const char *sql, bool persistent, sqlite3_stmt **out)
{
    const char *tail;
    sqlite3_stmt *st = NULL;
    int r = sqlite3_prepare_v3(db, sql, -1, persistent ? SQLITE_PREPARE_PERSISTENT : 0, &st, &tail);
    if (r != SQLITE_OK)
        return sq_fail(db, r, "prepare");
    if (!st)
        return ck_err_set(CK_EINTERNAL, "ck_stmt_prepare: no SQL statement in the text");
    /* Anything after the first statement other than blanks and comments would
     * be silently ignored: refuse it. Preparing the tail tells them apart. */
    tail += strspn(tail, " \t\r\n;");
    if (*tail) {
        sqlite3_stmt *rest = NULL;
        r = sqlite3_prepare_v2(db, tail, -1, &rest, NULL);
        sqlite3_finalize(rest);
        if (r != SQLITE_OK || rest) {
            sqlite3_finalize(st);
            return ck_err_set(CK_EINTERNAL, "ck_stmt_prepare: the SQL holds more than one "
                                            "statement (use ck_store_exec)");
        }
    }
    *out = st;
    return CK_OK;
}

static ck_err sq_prepare(struct ck_store *base, const char *sql, struct ck_stmt **out)
{
    struct sq_conn *c;
    CK_TRY(sq_conn_get(sq_store_of(base), &c));

    uint64_t h = sq_hash(sql);
    struct sq_slot *hit = NULL, *victim = NULL;
    bool in_use = false;
    for (int i = 0; i < SQ_CACHE_SLOTS && !hit; i++) {
        struct sq_slot *sl = &c->cache[i];
        bool same = sl->sql && sl->hash == h && strcmp(sl->sql, sql) == 0;
        if (same && !sl->busy)
            hit = sl;
        in_use |= same && sl->busy;
        if (!sl->busy &&
            (!victim || (victim->sql && (!sl->sql || sl->last_used < victim->last_used))))
            victim = sl;
    }

    struct sq_slot *slot = hit;
    sqlite3_stmt *st = NULL;
    if (hit) {
        st = hit->st;
    } else {
        /* Nested use of the same SQL, or every slot handed out: no caching. */
        bool cache = victim && !in_use;
        CK_TRY(sq_prepare_one(c->db, sql, cache, &st));
        if (cache) {
            if (victim->sql) {
                sqlite3_finalize(victim->st);
                free(victim->sql);
            }
            victim->sql = ck_strdup(sql);
            victim->hash = h;
            victim->st = st;
            slot = victim;
        }
    }
    if (slot) {
        slot->busy = true;
        slot->last_used = ++c->clock;
    }

    struct sq_stmt *w = ck_xcalloc(1, sizeof *w);
    w->base.ops = &sq_ops;
    w->conn = c;
    w->st = st;
    w->slot = slot;
    *out = &w->base;
    return CK_OK;
}

static int sq_param_count(struct ck_stmt *base)
{
    return sqlite3_bind_parameter_count(sq_stmt_of(base)->st);
}

static ck_err sq_bind(struct ck_stmt *base, int idx, const struct ck_bind *b)
{
    struct sq_stmt *w = sq_stmt_of(base);
    int r = SQLITE_OK;
    switch (b->kind) {
    case CK_BIND_NULL:
        r = sqlite3_bind_null(w->st, idx);
        break;
    case CK_BIND_INT:
        r = sqlite3_bind_int64(w->st, idx, b->i);
        break;
    case CK_BIND_TEXT:
        r = sqlite3_bind_text64(w->st, idx, b->text, strlen(b->text), SQLITE_TRANSIENT,
                                SQLITE_UTF8);
        break;
    case CK_BIND_BLOB:
        /* An empty blob is a blob, not NULL, even when the pointer is NULL. */
        if (b->blob_n == 0)
            r = sqlite3_bind_zeroblob(w->st, idx, 0);
        else
            r = sqlite3_bind_blob64(w->st, idx, b->blob, b->blob_n, SQLITE_TRANSIENT);
        break;
    }
    if (r != SQLITE_OK)
        return sq_fail(w->conn->db, r, "bind");
    return CK_OK;
}

static ck_err sq_step(struct ck_stmt *base, bool *row)
{
    struct sq_stmt *w = sq_stmt_of(base);
    int r = sqlite3_step(w->st);
    *row = r == SQLITE_ROW;
    if (r == SQLITE_ROW || r == SQLITE_DONE)
        return CK_OK;
    return sq_fail(w->conn->db, r, "step");
}

static int64_t sq_changes(struct ck_stmt *base)
{
    struct sq_stmt *w = sq_stmt_of(base);
    /* sqlite3_changes() still holds the count of the last write, so a
     * read-only statement would otherwise report a stale number. */
    if (sqlite3_stmt_readonly(w->st))
        return 0;
    return sqlite3_changes64(w->conn->db);
}

static int64_t sq_col_int(struct ck_stmt *base, int col)
{
    return sqlite3_column_int64(sq_stmt_of(base)->st, col);
}

static const char *sq_col_text(struct ck_stmt *base, int col)
{
    sqlite3_stmt *st = sq_stmt_of(base)->st;
    if (sqlite3_column_type(st, col) == SQLITE_NULL)
        return NULL;
    return (const char *)sqlite3_column_text(st, col);
}

static const void *sq_col_blob(struct ck_stmt *base, int col, size_t *n)
{
    sqlite3_stmt *st = sq_stmt_of(base)->st;
    const void *p = NULL;
    size_t len = 0;
    if (sqlite3_column_type(st, col) != SQLITE_NULL) {
        p = sqlite3_column_blob(st, col);
        len = (size_t)sqlite3_column_bytes(st, col); /* after _blob, per the SQLite docs */
    }
    if (n)
        *n = len;
    return p;
}

static bool sq_col_isnull(struct ck_stmt *base, int col)
{
    return sqlite3_column_type(sq_stmt_of(base)->st, col) == SQLITE_NULL;
}

static void sq_finalize(struct ck_stmt *base)
{
    struct sq_stmt *w = sq_stmt_of(base);
    if (w->slot) {
        /* Back to the cache: no read snapshot held, no bound values kept. */
        sqlite3_reset(w->st);
        sqlite3_clear_bindings(w->st);
        w->slot->busy = false;
    } else {
        sqlite3_finalize(w->st);
    }
    free(w);
}

static const struct ck_store_ops sq_ops = {
    .name = "sqlite",
    .close = sq_close,
    .path = sq_path,
    .conn_count = sq_conn_count,
    .begin = sq_begin,
    .in_tx = sq_in_tx,
    .commit = sq_commit,
    .rollback = sq_rollback,
    .exec = sq_exec,
    .checkpoint = sq_checkpoint,
    .prepare = sq_prepare,
    .param_count = sq_param_count,
    .bind = sq_bind,
    .step = sq_step,
    .changes = sq_changes,
    .col_int = sq_col_int,
    .col_text = sq_col_text,
    .col_blob = sq_col_blob,
    .col_isnull = sq_col_isnull,
    .finalize = sq_finalize,
};
