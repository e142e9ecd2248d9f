/*
 * store — the one storage interface; SQLite is the embedded backend.
 *
 * Domain code speaks portable SQL through this header and never includes a
 * database library. The SQL dialect domain code may use is the common subset
 * of SQLite and PostgreSQL: positional parameters written `?` (the PostgreSQL
 * backend rewrites them to $n), INTEGER/BIGINT, TEXT, BLOB (bytea), no
 * AUTOINCREMENT/ROWID, no `INSERT OR ...` (use `ON CONFLICT ... DO ...`),
 * no SQLite date functions (times are Unix seconds in BIGINT columns).
 *
 * Connections: a struct ck_store is shared by all threads; each thread gets
 * its own connection, opened on first use and closed when the thread exits
 * or the store closes. Statements belong to the calling thread's connection.
 *
 * Transactions: ck_store_begin/commit/rollback act on the calling thread's
 * connection. begin takes the write lock up front (SQLite BEGIN IMMEDIATE) so
 * two writers never deadlock on a lock upgrade. They do not nest.
 *
 * SQLite backend: WAL journal, secure_delete=ON, foreign keys on, a busy
 * timeout, synchronous=FULL (a crash loses no committed transaction).
 */
#ifndef CK_STORE_H
#define CK_STORE_H

#include "base/base.h"

struct ck_store;
struct ck_stmt;

/* uri: "sqlite:/path/file.db" or a bare path (SQLite). The file is created
 * with mode 0600. */
ck_err ck_store_open(const char *uri, struct ck_store **out);
void ck_store_close(struct ck_store *s);
const char *ck_store_backend(const struct ck_store *s); /* "sqlite" */
/* The database file(s) on disk, for secure-deletion checks; NULL if none. */
const char *ck_store_path(const struct ck_store *s);
/* Every file on disk that may hold bytes of the store's data: the database,
 * its write-ahead log, its rollback journal (whether or not they exist
 * now). Up to 4 paths of up to 4096 bytes; *n = 0 for a store with no
 * local files. */
ck_err ck_store_files(const struct ck_store *s, char paths[4][4096], size_t *n);

/* Versioned migrations: each applied once, in version order, each in its own
 * transaction, recorded in table ck_schema(component, version). component
 * names the module that owns the tables (several modules share a store). */
struct ck_migration {
    int version;
    const char *sql; /* may hold several statements separated by ';' */
};
ck_err ck_store_migrate(struct ck_store *s, const char *component, const struct ck_migration *m,
                        size_t n);

ck_err ck_store_begin(struct ck_store *s);
/* Whether the calling thread has a transaction open. */
bool ck_store_in_tx(struct ck_store *s);
ck_err ck_store_commit(struct ck_store *s);
void ck_store_rollback(struct ck_store *s); /* no-op outside a transaction */

/* Runs SQL with no parameters and no result rows (DDL, several statements). */
ck_err ck_store_exec(struct ck_store *s, const char *sql);

/* Prepares sql and binds the variadic arguments by a type string, one
 * character per `?` in order:
 *   'i' int64_t   't' const char * (NULL binds NULL)   'b' const void *, size_t
 *   'n' nothing (binds NULL)
 * e.g. ck_stmt_prepare(s, &st, "SELECT x FROM t WHERE a=? AND b=?", "ti", name, (int64_t)5) */
ck_err ck_stmt_prepare(struct ck_store *s, struct ck_stmt **out, const char *sql, const char *types,
                       ...);
/* Advances: CK_OK with *row true for a row, false when done. Constraint
 * violations map to CK_ECONFLICT; busy past the timeout to CK_EUNAVAIL. */
ck_err ck_stmt_step(struct ck_stmt *st, bool *row);
/* Column accessors (0-based) for the current row. Text and blob pointers are
 * valid until the next step/finalize. */
int64_t ck_stmt_int(struct ck_stmt *st, int col);
const char *ck_stmt_text(struct ck_stmt *st, int col); /* NULL for SQL NULL */
const void *ck_stmt_blob(struct ck_stmt *st, int col, size_t *n);
bool ck_stmt_isnull(struct ck_stmt *st, int col);
void ck_stmt_finalize(struct ck_stmt *st); /* NULL-safe */

/* Reads the rows of st into a new array of elements of `size` bytes, one
 * per row, each zeroed and then filled by fill(st, elem, arg), and
 * finalizes st. fill may fail; reading stops there. On any failure, drop
 * (optional) is called on each element filled before, the array is freed
 * and *out is NULL. *out is NULL when there are no rows; free it with
 * free() (after whatever its elements own). */
typedef ck_err (*ck_stmt_fill_fn)(struct ck_stmt *st, void *elem, void *arg);
ck_err ck_stmt_collect(struct ck_stmt *st, size_t size, ck_stmt_fill_fn fill, void *arg,
                       void (*drop)(void *elem), void **out, size_t *n);

/* Runs a query and reads the first n columns of its first row, as
 * integers, into out[0..n-1]; each is 0 when there is no row or the query
 * fails. For counts and sums. */
ck_err ck_store_ints(struct ck_store *s, int64_t *out, size_t n, const char *sql, const char *types,
                     ...);

/* prepare + step to completion; *changes (optional) gets affected rows. */
ck_err ck_store_run(struct ck_store *s, int64_t *changes, const char *sql, const char *types, ...);

/* Truncating WAL checkpoint: after deletions of secrets, makes sure no old
 * page copies remain in the WAL file. */
ck_err ck_store_checkpoint(struct ck_store *s);

#endif
