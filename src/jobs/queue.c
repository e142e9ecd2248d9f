/*
 * queue.c — the table ck_job: enqueue, reads, and the lease operations.
 *
 * The SQL is the portable subset of store.h, written so that the PostgreSQL
 * backend can run it unchanged (claim aside, see ck_jobq_claim):
 *
 * - At most one unfinished (queued or running) job per kind and target is a
 *   partial unique index, so two enqueuers racing, in one process or many,
 *   cannot both insert. The INSERT says ON CONFLICT DO NOTHING rather than
 *   failing and catching CK_ECONFLICT: enqueue may run inside the caller's
 *   transaction, and on PostgreSQL a failed statement aborts the whole
 *   transaction, where DO NOTHING leaves it usable.
 * - Times are Unix seconds. `seq` orders jobs (oldest runnable first, newest
 *   listed first) where seconds tie; it is MAX(seq) + 1 taken inside the
 *   INSERT, so it is exact under SQLite's single writer and at worst a tie
 *   (broken by id) between concurrent PostgreSQL writers.
 * - finished and lease_until are 0 when not set; not_before is when a queued
 *   job becomes runnable (enqueue time, or later after a transient failure).
 */
#include "jobs/internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

_Static_assert(CK_JOB_QUEUED == 0 && CK_JOB_RUNNING == 1 && CK_JOB_DONE == 2 && CK_JOB_FAILED == 3,
               "the SQL below spells job states as these numbers");

static const struct ck_migration jobs_migrations[] = {
    {1, "CREATE TABLE ck_job ("
        "  id TEXT PRIMARY KEY,"
        "  seq BIGINT NOT NULL,"
        "  kind TEXT NOT NULL,"
        "  tenant TEXT NOT NULL,"
        "  target TEXT NOT NULL,"
        "  state INTEGER NOT NULL,"
        "  done BIGINT NOT NULL,"
        "  total BIGINT NOT NULL,"
        "  attempts INTEGER NOT NULL,"
        "  error TEXT,"
        "  lease_owner TEXT,"
        "  lease_until BIGINT NOT NULL,"
        "  not_before BIGINT NOT NULL,"
        "  created BIGINT NOT NULL,"
        "  updated BIGINT NOT NULL,"
        "  finished BIGINT NOT NULL);"
        "CREATE INDEX ck_job_runnable ON ck_job (state, not_before);"
        "CREATE UNIQUE INDEX ck_job_unfinished ON ck_job (kind, target) WHERE state IN (0, 1);"
        "CREATE INDEX ck_job_seq ON ck_job (seq);"
        "CREATE INDEX ck_job_tenant ON ck_job (tenant, seq);"
        "CREATE INDEX ck_job_kind_target ON ck_job (kind, target, seq);"
        "CREATE INDEX ck_job_lease_owner ON ck_job (lease_owner);"},
};

ck_err ck_jobq_migrate(struct ck_store *s)
{
    return ck_store_migrate(s, "jobs", jobs_migrations,
                            sizeof jobs_migrations / sizeof jobs_migrations[0]);
}

const char *ck_job_state_name(enum ck_job_state s)
{
    switch (s) {
    case CK_JOB_QUEUED:
        return "queued";
    case CK_JOB_RUNNING:
        return "running";
    case CK_JOB_DONE:
        return "done";
    case CK_JOB_FAILED:
        return "failed";
    }
    return "unknown";
}

void ck_job_free(struct ck_job *j)
{
    if (!j)
        return;
    free(j->error);
    free(j);
}

void ck_job_list_free(struct ck_job **v, size_t n)
{
    if (!v)
        return;
    for (size_t i = 0; i < n; i++)
        ck_job_free(v[i]);
    free(v);
}

/* ---------- reading rows ---------- */

#define JOB_COLS                                                                                   \
    "id, kind, tenant, target, state, done, total, attempts, error, created, updated, finished"

static void copy_text(char *dst, size_t cap, const char *src)
{
    snprintf(dst, cap, "%s", src ? src : "");
}

static struct ck_job *job_from_row(struct ck_stmt *st)
{
    struct ck_job *j = ck_xcalloc(1, sizeof *j);
    copy_text(j->id, sizeof j->id, ck_stmt_text(st, 0));
    copy_text(j->kind, sizeof j->kind, ck_stmt_text(st, 1));
    copy_text(j->tenant, sizeof j->tenant, ck_stmt_text(st, 2));
    copy_text(j->target, sizeof j->target, ck_stmt_text(st, 3));
    j->state = (enum ck_job_state)ck_stmt_int(st, 4);
    j->done = ck_stmt_int(st, 5);
    j->total = ck_stmt_int(st, 6);
    j->attempts = (int)ck_stmt_int(st, 7);
    j->error = ck_strdup(ck_stmt_text(st, 8));
    j->created = ck_stmt_int(st, 9);
    j->updated = ck_stmt_int(st, 10);
    j->finished = ck_stmt_int(st, 11);
    return j;
}

/* Steps a prepared statement through at most max rows into a new array
 * (NULL when there are none), and finalizes it. */
static ck_err collect(struct ck_stmt *st, size_t max, struct ck_job ***out, size_t *n)
{
    struct ck_job **v = NULL;
    size_t count = 0, cap = 0;
    ck_err rc = CK_OK;
    bool row = true;
    while (count < max) {
        rc = ck_stmt_step(st, &row);
        if (rc != CK_OK || !row)
            break;
        if (count == cap) {
            /* Grown as rows arrive: max may be a large "no limit" value. */
            cap = cap ? 2 * cap : 16;
            struct ck_job **nv = realloc(v, cap * sizeof *v);
            if (!nv)
                abort(); /* as ck_xmalloc does */
            v = nv;
        }
        v[count++] = job_from_row(st);
    }
    ck_stmt_finalize(st);
    if (rc != CK_OK) {
        ck_job_list_free(v, count);
        return rc;
    }
    *out = v;
    *n = count;
    return CK_OK;
}

/* The one job a statement selects, or NULL. */
static ck_err collect_one(struct ck_stmt *st, struct ck_job **out)
{
    struct ck_job **v = NULL;
    size_t n = 0;
    CK_TRY(collect(st, 1, &v, &n));
    *out = n ? v[0] : NULL;
    free(v);
    return CK_OK;
}

ck_err ck_job_get(struct ck_jobs *jobs, const char *id, struct ck_job **out)
{
    if (!out)
        return ck_err_set(CK_EINVAL, "ck_job_get: no output pointer");
    *out = NULL;
    if (!jobs || !id)
        return ck_err_set(CK_EINVAL, "ck_job_get: no jobs or no id");
    struct ck_stmt *st;
    CK_TRY(
        ck_stmt_prepare(jobs->store, &st, "SELECT " JOB_COLS " FROM ck_job WHERE id = ?", "t", id));
    CK_TRY(collect_one(st, out));
    if (!*out)
        return ck_err_set(CK_ENOTFOUND, "job %s not found", id);
    return CK_OK;
}

ck_err ck_job_list(struct ck_jobs *jobs, const char *tenant, size_t max, struct ck_job ***out,
                   size_t *n)
{
    if (!out || !n)
        return ck_err_set(CK_EINVAL, "ck_job_list: no output pointer");
    *out = NULL;
    *n = 0;
    if (!jobs)
        return ck_err_set(CK_EINVAL, "ck_job_list: no jobs");
    if (max == 0)
        return CK_OK;
    int64_t limit = max > INT64_MAX ? INT64_MAX : (int64_t)max;
    struct ck_stmt *st;
    if (tenant)
        CK_TRY(ck_stmt_prepare(jobs->store, &st,
                               "SELECT " JOB_COLS " FROM ck_job WHERE tenant = ?"
                               " ORDER BY seq DESC, id DESC LIMIT ?",
                               "ti", tenant, limit));
    else
        CK_TRY(ck_stmt_prepare(jobs->store, &st,
                               "SELECT " JOB_COLS " FROM ck_job ORDER BY seq DESC, id DESC LIMIT ?",
                               "i", limit));
    return collect(st, max, out, n);
}

ck_err ck_job_latest(struct ck_jobs *jobs, const char *kind, const char *target,
                     struct ck_job **out)
{
    if (!out)
        return ck_err_set(CK_EINVAL, "ck_job_latest: no output pointer");
    *out = NULL;
    if (!jobs || !kind || !target)
        return ck_err_set(CK_EINVAL, "ck_job_latest: no jobs, kind or target");
    struct ck_stmt *st;
    CK_TRY(ck_stmt_prepare(jobs->store, &st,
                           "SELECT " JOB_COLS " FROM ck_job WHERE kind = ? AND target = ?"
                           " ORDER BY seq DESC, id DESC LIMIT 1",
                           "tt", kind, target));
    return collect_one(st, out);
}

/* ---------- enqueue ---------- */

static ck_err check_field(const char *what, const char *v, size_t cap, bool required)
{
    if (!v || !*v) {
        if (required)
            return ck_err_set(CK_EINVAL, "job %s is empty", what);
        return CK_OK;
    }
    if (strlen(v) >= cap)
        return ck_err_set(CK_EINVAL, "job %s is longer than %zu characters", what, cap - 1);
    return CK_OK;
}

/* The id of the unfinished job of kind on target; *found false when none. */
static ck_err find_unfinished(struct ck_store *s, const char *kind, const char *target, char id[37],
                              bool *found)
{
    struct ck_stmt *st;
    CK_TRY(ck_stmt_prepare(
        s, &st, "SELECT id FROM ck_job WHERE kind = ? AND target = ? AND state IN (0, 1)", "tt",
        kind, target));
    bool row;
    ck_err rc = ck_stmt_step(st, &row);
    *found = rc == CK_OK && row;
    if (*found)
        copy_text(id, 37, ck_stmt_text(st, 0));
    ck_stmt_finalize(st);
    return rc;
}

/* No ck_store_begin here: the caller may already be in a transaction (a DEP
 * assignment and its job commit or roll back together). Each statement is
 * atomic on its own, and the unique index settles races. */
ck_err ck_jobq_enqueue(struct ck_store *s, const char *kind, const char *tenant, const char *target,
                       char id[37], bool *created)
{
    CK_TRY(check_field("kind", kind, sizeof((struct ck_job *)0)->kind, true));
    CK_TRY(check_field("tenant", tenant, sizeof((struct ck_job *)0)->tenant, false));
    CK_TRY(check_field("target", target, sizeof((struct ck_job *)0)->target, true));

    /* Between the INSERT that found a conflict and the SELECT, the other job
     * may have finished (outside a transaction); then insert again. */
    for (int attempt = 0; attempt < 3; attempt++) {
        char fresh[37];
        CK_TRY(ck_uuid_v4(fresh));
        int64_t now = ck_now(), changes = 0;
        CK_TRY(ck_store_run(s, &changes,
                            "INSERT INTO ck_job (id, seq, kind, tenant, target, state, done, total,"
                            " attempts, error, lease_owner, lease_until, not_before, created,"
                            " updated, finished) VALUES (?,"
                            " (SELECT COALESCE(MAX(seq), 0) + 1 FROM ck_job), ?, ?, ?, 0, 0, 0, 0,"
                            " NULL, NULL, 0, ?, ?, ?, 0) ON CONFLICT DO NOTHING",
                            "ttttiii", fresh, kind, tenant ? tenant : "", target, now, now, now));
        if (changes == 1) {
            memcpy(id, fresh, 37);
            *created = true;
            return CK_OK;
        }
        bool found;
        CK_TRY(find_unfinished(s, kind, target, id, &found));
        if (found) {
            *created = false;
            return CK_OK;
        }
    }
    return ck_err_set(CK_EUNAVAIL, "job %s on %s: could not queue it (contention)", kind, target);
}

/* ---------- leases ---------- */

/* The claim is one UPDATE whose subquery picks the oldest runnable job and
 * whose outer WHERE repeats the runnable condition, so it takes the lease
 * only if the job is still runnable when the row is written: a worker that
 * lost a race changes nothing (changes == 0). On SQLite the statement runs
 * under the database write lock, so it is atomic outright. On PostgreSQL the
 * subquery becomes `SELECT id ... ORDER BY seq LIMIT 1 FOR UPDATE SKIP
 * LOCKED`, so concurrent workers skip each other's candidates instead of
 * queueing on them.
 *
 * Runnable: queued, or running with an expired lease (its worker died or
 * stalled), and not_before reached. attempts counts claims. */
ck_err ck_jobq_claim(struct ck_store *s, const char *owner, int64_t lease, struct ck_job **out)
{
    *out = NULL;
    int64_t now = ck_now(), changes = 0;
    CK_TRY(ck_store_run(s, &changes,
                        "UPDATE ck_job SET state = 1, lease_owner = ?, lease_until = ?,"
                        " attempts = attempts + 1, updated = ?"
                        " WHERE id = (SELECT id FROM ck_job"
                        "   WHERE (state = 0 OR (state = 1 AND lease_until < ?))"
                        "   AND not_before <= ? ORDER BY seq, id LIMIT 1)"
                        " AND (state = 0 OR (state = 1 AND lease_until < ?)) AND not_before <= ?",
                        "tiiiiii", owner, now + lease, now, now, now, now, now));
    if (changes != 1)
        return CK_OK;
    /* The owner runs one job at a time and takes a new id whenever it drops
     * a job without recording it (run.c), so exactly one row matches. */
    struct ck_stmt *st;
    CK_TRY(ck_stmt_prepare(
        s, &st, "SELECT " JOB_COLS " FROM ck_job WHERE lease_owner = ? AND state = 1", "t", owner));
    CK_TRY(collect_one(st, out));
    if (!*out)
        return ck_err_set(CK_EINTERNAL, "job claim by %s: the claimed row is gone", owner);
    return CK_OK;
}

static ck_err held_by(int64_t changes, bool *held)
{
    *held = changes == 1;
    return CK_OK;
}

ck_err ck_jobq_renew(struct ck_store *s, const struct ck_job *j, const char *owner, int64_t lease,
                     bool *held)
{
    int64_t now = ck_now(), changes = 0;
    CK_TRY(ck_store_run(s, &changes,
                        "UPDATE ck_job SET done = ?, total = ?, lease_until = ?, updated = ?"
                        " WHERE id = ? AND state = 1 AND lease_owner = ?",
                        "iiiitt", j->done, j->total, now + lease, now, j->id, owner));
    return held_by(changes, held);
}

ck_err ck_jobq_finish(struct ck_store *s, const struct ck_job *j, const char *owner, bool *held)
{
    int64_t now = ck_now(), changes = 0;
    CK_TRY(ck_store_run(s, &changes,
                        "UPDATE ck_job SET state = 2, done = ?, total = ?, error = NULL,"
                        " lease_owner = NULL, lease_until = 0, updated = ?, finished = ?"
                        " WHERE id = ? AND state = 1 AND lease_owner = ?",
                        "iiiitt", j->done, j->total, now, now, j->id, owner));
    return held_by(changes, held);
}

ck_err ck_jobq_fail(struct ck_store *s, const struct ck_job *j, const char *owner,
                    const char *message, bool *held)
{
    int64_t now = ck_now(), changes = 0;
    CK_TRY(ck_store_run(s, &changes,
                        "UPDATE ck_job SET state = 3, done = ?, total = ?, error = ?,"
                        " lease_owner = NULL, lease_until = 0, updated = ?, finished = ?"
                        " WHERE id = ? AND state = 1 AND lease_owner = ?",
                        "iitiitt", j->done, j->total, message, now, now, j->id, owner));
    return held_by(changes, held);
}

ck_err ck_jobq_requeue(struct ck_store *s, const struct ck_job *j, const char *owner,
                       int64_t not_before, const char *message, bool *held)
{
    int64_t now = ck_now(), changes = 0;
    CK_TRY(ck_store_run(s, &changes,
                        "UPDATE ck_job SET state = 0, done = ?, total = ?, error = ?,"
                        " lease_owner = NULL, lease_until = 0, not_before = ?, updated = ?"
                        " WHERE id = ? AND state = 1 AND lease_owner = ?",
                        "iitiitt", j->done, j->total, message, not_before, now, j->id, owner));
    return held_by(changes, held);
}
