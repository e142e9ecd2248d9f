/*
 * backend.h — what a storage backend provides to store.c. Internal to src/store.
 *
 * store.c implements the public store.h functions once: URI dispatch, the
 * type-string binding, ck_store_run and the migration runner. Everything that
 * touches a database library lives in one backend file (sqlite.c now,
 * postgres.c later) behind struct ck_store_ops.
 *
 * A backend's store and statement structs embed struct ck_store / struct
 * ck_stmt as their FIRST member, so store.c can reach the ops table through
 * the public opaque pointers and the backend can cast back to its own type.
 *
 * Connection model (both backends): the ops act on the calling thread's
 * connection, opened on first use. Ops that return ck_err set the message.
 */
#ifndef CK_STORE_BACKEND_H
#define CK_STORE_BACKEND_H

#include "store/store.h"

struct ck_store_ops;

struct ck_store {
    const struct ck_store_ops *ops;
};

struct ck_stmt {
    const struct ck_store_ops *ops;
};

/* One bound value, decoded from the type string by store.c. */
enum ck_bind_kind { CK_BIND_NULL, CK_BIND_INT, CK_BIND_TEXT, CK_BIND_BLOB };

struct ck_bind {
    enum ck_bind_kind kind;
    int64_t i;
    const char *text;
    const void *blob;
    size_t blob_n;
};

struct ck_store_ops {
    const char *name; /* "sqlite" */
    void (*close)(struct ck_store *s);
    const char *(*path)(const struct ck_store *s);
    int (*conn_count)(struct ck_store *s); /* open connections, for tests */

    ck_err (*begin)(struct ck_store *s);
    bool (*in_tx)(struct ck_store *s); /* the calling thread's connection */
    ck_err (*commit)(struct ck_store *s);
    void (*rollback)(struct ck_store *s);
    ck_err (*exec)(struct ck_store *s, const char *sql);
    ck_err (*checkpoint)(struct ck_store *s);

    /* Exactly one statement; trailing SQL is an error. */
    ck_err (*prepare)(struct ck_store *s, const char *sql, struct ck_stmt **out);
    int (*param_count)(struct ck_stmt *st);
    ck_err (*bind)(struct ck_stmt *st, int idx /* 1-based */, const struct ck_bind *b);
    ck_err (*step)(struct ck_stmt *st, bool *row);
    int64_t (*changes)(struct ck_stmt *st); /* rows affected, once stepped to done */
    int64_t (*col_int)(struct ck_stmt *st, int col);
    const char *(*col_text)(struct ck_stmt *st, int col);
    const void *(*col_blob)(struct ck_stmt *st, int col, size_t *n);
    bool (*col_isnull)(struct ck_stmt *st, int col);
    void (*finalize)(struct ck_stmt *st);
};

/* Connections currently open on s (one per thread that used it). Not part of
 * store.h: tests use it to check that exiting threads close theirs. */
int ck_store_conn_count(struct ck_store *s);

/* Backend constructors; path/conninfo is the URI with its scheme removed. */
ck_err ck_store_sqlite_open(const char *path, struct ck_store **out);

#endif
