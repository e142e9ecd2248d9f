/* Unit tests for src/jobs on a real SQLite store.
 *
 * The test kinds process a test table, t_item: each row is one item of a
 * target, processed a batch per step in one transaction, and counts how
 * many times it was processed (hits). "Exactly once" below means every item
 * ends with hits == 1: across retries, concurrent workers, a lost lease, a
 * stop in the middle of a job, a simulated dead worker, and a real process
 * killed with SIGKILL in the middle of a step. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "jobs/jobs.h"

/* ---------- the test kinds ---------- */

#define MAX_THREADS 8

struct tctx {
    struct ck_store *s;
    int batch;
    int sleep_ms;       /* per step, before the transaction (work done elsewhere) */
    int sleep_in_tx_ms; /* per step, inside the transaction (a crash rolls it back) */
    atomic_int calls;
    atomic_int in_step;
    atomic_int flaky_left; /* test.flaky: transient failures still to report */
    pthread_mutex_t mu;
    pthread_t threads[MAX_THREADS];
    int nthreads;
};

static void ctx_init(struct tctx *c, struct ck_store *s, int batch)
{
    memset(c, 0, sizeof *c);
    c->s = s;
    c->batch = batch;
    pthread_mutex_init(&c->mu, NULL);
}

static void note_thread(struct tctx *c)
{
    pthread_mutex_lock(&c->mu);
    bool seen = false;
    for (int i = 0; i < c->nthreads; i++)
        seen |= pthread_equal(c->threads[i], pthread_self()) != 0;
    if (!seen && c->nthreads < MAX_THREADS)
        c->threads[c->nthreads++] = pthread_self();
    pthread_mutex_unlock(&c->mu);
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0)
        ;
}

/* Processes the next batch of j's items in one transaction; progress comes
 * from the table, so a resumed job continues where the committed work ends. */
static ck_err process_batch(struct tctx *c, const struct ck_job *j, int64_t *done, int64_t *total,
                            bool *finished)
{
    if (c->sleep_ms)
        sleep_ms(c->sleep_ms);
    CK_TRY(ck_store_begin(c->s));
    ck_err rc;
    CK_GUARD(
        ck_store_run(c->s, NULL,
                     "UPDATE t_item SET processed = 1, hits = hits + 1 WHERE target = ? AND n IN"
                     " (SELECT n FROM t_item WHERE target = ? AND processed = 0"
                     " ORDER BY n LIMIT ?)",
                     "tti", j->target, j->target, (int64_t)c->batch));
    if (c->sleep_in_tx_ms)
        sleep_ms(c->sleep_in_tx_ms);
    struct ck_stmt *st;
    CK_GUARD(ck_stmt_prepare(c->s, &st,
                             "SELECT COUNT(*), COALESCE(SUM(processed), 0) FROM t_item"
                             " WHERE target = ?",
                             "t", j->target));
    bool row;
    rc = ck_stmt_step(st, &row);
    if (rc == CK_OK && row) {
        *total = ck_stmt_int(st, 0);
        *done = ck_stmt_int(st, 1);
    }
    ck_stmt_finalize(st);
    CK_GUARD(rc);
    CK_GUARD(ck_store_commit(c->s));
    *finished = *done == *total;
    return CK_OK;
out:
    ck_store_rollback(c->s);
    return rc;
}

static ck_err step_items(void *ctx, const struct ck_job *j, int64_t *done, int64_t *total,
                         bool *finished)
{
    struct tctx *c = ctx;
    atomic_fetch_add(&c->calls, 1);
    atomic_fetch_add(&c->in_step, 1);
    note_thread(c);
    ck_err rc = process_batch(c, j, done, total, finished);
    atomic_fetch_sub(&c->in_step, 1);
    return rc;
}

/* One batch, then a hard failure. */
static ck_err step_fail(void *ctx, const struct ck_job *j, int64_t *done, int64_t *total,
                        bool *finished)
{
    struct tctx *c = ctx;
    if (j->done > 0) {
        atomic_fetch_add(&c->calls, 1);
        return ck_err_set(CK_EIO, "disk on fire");
    }
    return step_items(ctx, j, done, total, finished);
}

/* Transient failures first, before touching anything. */
static ck_err step_flaky(void *ctx, const struct ck_job *j, int64_t *done, int64_t *total,
                         bool *finished)
{
    struct tctx *c = ctx;
    if (atomic_fetch_sub(&c->flaky_left, 1) > 0) {
        atomic_fetch_add(&c->calls, 1);
        return ck_err_set(CK_EUNAVAIL, "vault unreachable");
    }
    return step_items(ctx, j, done, total, finished);
}

/* A batch, during which "another worker" takes the lease. */
static ck_err step_steal(void *ctx, const struct ck_job *j, int64_t *done, int64_t *total,
                         bool *finished)
{
    struct tctx *c = ctx;
    CK_TRY(step_items(ctx, j, done, total, finished));
    return ck_store_run(c->s, NULL,
                        "UPDATE ck_job SET lease_owner = 'thief', lease_until = ? WHERE id = ?",
                        "it", ck_now() + 3600, j->id);
}

static void register_all(struct ck_jobs *jobs, struct tctx *c)
{
    ck_jobs_register(jobs, "test.items", step_items, c);
    ck_jobs_register(jobs, "test.fail", step_fail, c);
    ck_jobs_register(jobs, "test.flaky", step_flaky, c);
    ck_jobs_register(jobs, "test.steal", step_steal, c);
}

/* ---------- fixture ---------- */

struct fx {
    char dir[64];
    char uri[128];
    struct ck_store *s;
    struct ck_jobs *jobs;
    struct tctx c;
};

static ck_err make_items_table(struct ck_store *s)
{
    return ck_store_exec(s, "CREATE TABLE IF NOT EXISTS t_item (target TEXT NOT NULL,"
                            " n INTEGER NOT NULL, processed INTEGER NOT NULL,"
                            " hits INTEGER NOT NULL, PRIMARY KEY (target, n))");
}

static void add_items(struct ck_store *s, const char *target, int n)
{
    for (int i = 0; i < n; i++)
        assert_int_equal(ck_store_run(s, NULL, "INSERT INTO t_item VALUES (?, ?, 0, 0)", "ti",
                                      target, (int64_t)i),
                         CK_OK);
}

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "/tmp/ck-jobs-XXXXXX");
    if (!mkdtemp(f->dir))
        return -1;
    snprintf(f->uri, sizeof f->uri, "sqlite:%s/t.db", f->dir);
    if (ck_store_open(f->uri, &f->s) != CK_OK || make_items_table(f->s) != CK_OK)
        return -1;
    if (ck_jobs_open(f->s, &f->jobs) != CK_OK)
        return -1;
    ctx_init(&f->c, f->s, 3);
    register_all(f->jobs, &f->c);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    ck_jobs_close(f->jobs);
    ck_store_close(f->s);
    pthread_mutex_destroy(&f->c.mu);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", f->dir);
    int rc = system(cmd);
    free(f);
    return rc;
}

/* ---------- helpers ---------- */

static struct ck_job *get(struct fx *f, const char *id)
{
    struct ck_job *j = NULL;
    assert_int_equal(ck_job_get(f->jobs, id, &j), CK_OK);
    assert_non_null(j);
    return j;
}

static void expect_job(struct fx *f, const char *id, enum ck_job_state state, int64_t done,
                       int64_t total, int attempts)
{
    struct ck_job *j = get(f, id);
    if (j->state != state || j->done != done || j->total != total || j->attempts != attempts)
        fail_msg("job %s: %s %lld/%lld attempts %d; want %s %lld/%lld attempts %d (error %s)", id,
                 ck_job_state_name(j->state), (long long)j->done, (long long)j->total, j->attempts,
                 ck_job_state_name(state), (long long)done, (long long)total, attempts,
                 j->error ? j->error : "-");
    ck_job_free(j);
}

static int64_t query_int(struct ck_store *s, const char *sql, const char *arg)
{
    struct ck_stmt *st;
    assert_int_equal(ck_stmt_prepare(s, &st, sql, arg ? "t" : "", arg), CK_OK);
    bool row;
    assert_int_equal(ck_stmt_step(st, &row), CK_OK);
    assert_true(row);
    int64_t v = ck_stmt_isnull(st, 0) ? -1 : ck_stmt_int(st, 0);
    ck_stmt_finalize(st);
    return v;
}

/* Every item of target processed exactly once. */
static void expect_items_once(struct ck_store *s, const char *target, int64_t n)
{
    assert_int_equal(query_int(s, "SELECT COUNT(*) FROM t_item WHERE target = ?", target), n);
    assert_int_equal(
        query_int(s, "SELECT COUNT(*) FROM t_item WHERE target = ? AND processed = 1 AND hits = 1",
                  target),
        n);
}

static void wait_state(struct fx *f, const char *id, enum ck_job_state state, int timeout_ms)
{
    int64_t until = ck_now_ms() + timeout_ms;
    for (;;) {
        struct ck_job *j = get(f, id);
        enum ck_job_state now = j->state;
        ck_job_free(j);
        if (now == state)
            return;
        if (ck_now_ms() > until)
            fail_msg("job %s still %s after %d ms, want %s", id, ck_job_state_name(now), timeout_ms,
                     ck_job_state_name(state));
        sleep_ms(20);
    }
}

static void set_running_elsewhere(struct ck_store *s, const char *id, const char *owner,
                                  int64_t lease_until, int64_t done, int64_t total)
{
    assert_int_equal(ck_store_run(s, NULL,
                                  "UPDATE ck_job SET state = 1, lease_owner = ?, lease_until = ?,"
                                  " attempts = 1, done = ?, total = ? WHERE id = ?",
                                  "tiiit", owner, lease_until, done, total, id),
                     CK_OK);
}

/* ---------- enqueue ---------- */

static void test_enqueue_dedupes_unfinished(void **state)
{
    struct fx *f = *state;
    add_items(f->s, "mbx-1", 4);
    char a[37], b[37], c[37], d[37];
    assert_int_equal(ck_job_enqueue(f->jobs, "test.items", "tenant-1", "mbx-1", a), CK_OK);
    assert_true(ck_uuid_valid(a));
    assert_int_equal(ck_job_enqueue(f->jobs, "test.items", "tenant-1", "mbx-1", b), CK_OK);
    assert_string_equal(a, b);
    /* Another target, or another kind on the same target, is another job. */
    assert_int_equal(ck_job_enqueue(f->jobs, "test.items", "tenant-1", "mbx-2", c), CK_OK);
    assert_string_not_equal(a, c);
    assert_int_equal(ck_job_enqueue(f->jobs, "test.fail", "tenant-1", "mbx-1", d), CK_OK);
    assert_string_not_equal(a, d);
    assert_int_equal(ck_store_run(f->s, NULL, "DELETE FROM ck_job WHERE id IN (?, ?)", "tt", c, d),
                     CK_OK);

    assert_int_equal(ck_jobs_drain(f->jobs), CK_OK);
    expect_job(f, a, CK_JOB_DONE, 4, 4, 1);
    /* Once done, the same kind and target queue a new job. */
    assert_int_equal(ck_job_enqueue(f->jobs, "test.items", "tenant-1", "mbx-1", b), CK_OK);
    assert_string_not_equal(a, b);
    expect_job(f, b, CK_JOB_QUEUED, 0, 0, 0);
    expect_job(f, a, CK_JOB_DONE, 4, 4, 1);
}

static void test_enqueue_validates(void **state)
{
    struct fx *f = *state;
    char id[37], long_target[200];
    memset(long_target, 'x', sizeof long_target - 1);
    long_target[sizeof long_target - 1] = 0;
    assert_int_equal(ck_job_enqueue(f->jobs, "", "t", "mbx", id), CK_EINVAL);
    assert_int_equal(ck_job_enqueue(f->jobs, NULL, "t", "mbx", id), CK_EINVAL);
    assert_int_equal(ck_job_enqueue(f->jobs, "test.items", "t", "", id), CK_EINVAL);
    assert_int_equal(ck_job_enqueue(f->jobs, "test.items", "t", long_target, id), CK_EINVAL);
    /* No tenant is allowed (system jobs). */
    assert_int_equal(ck_job_enqueue(f->jobs, "test.items", NULL, "mbx", id), CK_OK);
    struct ck_job *j = get(f, id);
    assert_string_equal(j->tenant, "");
    ck_job_free(j);
}

static void test_enqueue_inside_transaction(void **state)
{
    struct fx *f = *state;
    char a[37], b[37];
    assert_int_equal(ck_store_begin(f->s), CK_OK);
    assert_int_equal(ck_job_enqueue(f->jobs, "test.items", "t1", "mbx-tx", a), CK_OK);
    assert_int_equal(ck_job_enqueue(f->jobs, "test.items", "t1", "mbx-tx", b), CK_OK);
    assert_string_equal(a, b);
    expect_job(f, a, CK_JOB_QUEUED, 0, 0, 0);
    ck_store_rollback(f->s);

    struct ck_job *j = (struct ck_job *)1;
    assert_int_equal(ck_job_get(f->jobs, a, &j), CK_ENOTFOUND);
    assert_null(j);
    assert_int_equal(ck_job_latest(f->jobs, "test.items", "mbx-tx", &j), CK_OK);
    assert_null(j);

    /* Committed with the caller's own write, both are there. */
    assert_int_equal(ck_store_begin(f->s), CK_OK);
    add_items(f->s, "mbx-tx", 2);
    assert_int_equal(ck_job_enqueue(f->jobs, "test.items", "t1", "mbx-tx", a), CK_OK);
    assert_int_equal(ck_store_commit(f->s), CK_OK);
    expect_job(f, a, CK_JOB_QUEUED, 0, 0, 0);
    assert_int_equal(ck_jobs_drain(f->jobs), CK_OK);
    expect_job(f, a, CK_JOB_DONE, 2, 2, 1);
    expect_items_once(f->s, "mbx-tx", 2);
}

/* ---------- drain and outcomes ---------- */

/* Runs fn with stderr captured into a file; returns what was logged. */
static char *capture_stderr(struct fx *f, ck_err (*fn)(struct ck_jobs *))
{
    char path[128];
    snprintf(path, sizeof path, "%s/stderr.log", f->dir);
    fflush(stderr);
    int saved = dup(2);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(saved >= 0 && fd >= 0);
    dup2(fd, 2);
    close(fd);
    ck_log_set_level(CK_LOG_INFO);
    ck_err rc = fn(f->jobs);
    ck_log_set_level(CK_LOG_WARN);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    assert_int_equal(rc, CK_OK);

    FILE *fp = fopen(path, "r");
    assert_non_null(fp);
    char *buf = calloc(1, 1 << 16);
    size_t n = fread(buf, 1, (1 << 16) - 1, fp);
    buf[n] = 0;
    fclose(fp);
    return buf;
}

static void test_drain_runs_job_to_done(void **state)
{
    struct fx *f = *state;
    add_items(f->s, "mbx-a", 10);
    add_items(f->s, "mbx-other", 2);
    char id[37];
    int64_t before = ck_now();
    assert_int_equal(ck_job_enqueue(f->jobs, "test.items", "tenant-1", "mbx-a", id), CK_OK);
    char *log = capture_stderr(f, ck_jobs_drain);

    expect_job(f, id, CK_JOB_DONE, 10, 10, 1);
    struct ck_job *j = get(f, id);
    assert_null(j->error);
    assert_string_equal(j->kind, "test.items");
    assert_string_equal(j->tenant, "tenant-1");
    assert_string_equal(j->target, "mbx-a");
    assert_true(j->created >= before && j->finished >= j->created && j->updated >= j->created);
    ck_job_free(j);
    assert_int_equal(atomic_load(&f->c.calls), 4); /* 3 + 3 + 3 + 1 */
    expect_items_once(f->s, "mbx-a", 10);
    /* Only its target. */
    assert_int_equal(query_int(f->s, "SELECT SUM(hits) FROM t_item WHERE target = ?", "mbx-other"),
                     0);
    assert_int_equal(query_int(f->s, "SELECT lease_owner FROM ck_job WHERE id = ?", id), -1);

    /* Start and finish are logged with kind, id and target. */
    assert_non_null(strstr(log, "\"job started\""));
    assert_non_null(strstr(log, "\"job done\""));
    assert_non_null(strstr(log, id));
    assert_non_null(strstr(log, "\"target\":\"mbx-a\""));
    assert_non_null(strstr(log, "\"kind\":\"test.items\""));
    free(log);

    /* Nothing left to run. */
    assert_int_equal(ck_jobs_drain(f->jobs), CK_OK);
    assert_int_equal(atomic_load(&f->c.calls), 4);
}

static void test_step_failure_marks_failed(void **state)
{
    struct fx *f = *state;
    add_items(f->s, "mbx-f", 10);
    char id[37];
    assert_int_equal(ck_job_enqueue(f->jobs, "test.fail", "t1", "mbx-f", id), CK_OK);
    char *log = capture_stderr(f, ck_jobs_drain);
    /* The first batch's progress was recorded before the failure. */
    expect_job(f, id, CK_JOB_FAILED, 3, 10, 1);
    struct ck_job *j = get(f, id);
    assert_string_equal(j->error, "disk on fire");
    assert_true(j->finished > 0);
    ck_job_free(j);
    assert_non_null(strstr(log, "\"job failed\""));
    assert_non_null(strstr(log, "disk on fire"));
    free(log);

    /* Failed is final: drain does not retry it, and a new job may be queued. */
    int calls = atomic_load(&f->c.calls);
    assert_int_equal(ck_jobs_drain(f->jobs), CK_OK);
    assert_int_equal(atomic_load(&f->c.calls), calls);
    char id2[37];
    assert_int_equal(ck_job_enqueue(f->jobs, "test.fail", "t1", "mbx-f", id2), CK_OK);
    assert_string_not_equal(id, id2);
}

static void test_unknown_kind_fails(void **state)
{
    struct fx *f = *state;
    char id[37];
    assert_int_equal(ck_job_enqueue(f->jobs, "nobody.home", "t1", "x", id), CK_OK);
    assert_int_equal(ck_jobs_drain(f->jobs), CK_OK);
    expect_job(f, id, CK_JOB_FAILED, 0, 0, 1);
    struct ck_job *j = get(f, id);
    assert_non_null(j->error);
    assert_non_null(strstr(j->error, "nobody.home"));
    ck_job_free(j);
}

static void test_transient_failure_backs_off_then_succeeds(void **state)
{
    struct fx *f = *state;
    add_items(f->s, "mbx-t", 5);
    atomic_store(&f->c.flaky_left, 2);
    char id[37];
    assert_int_equal(ck_job_enqueue(f->jobs, "test.flaky", "t1", "mbx-t", id), CK_OK);

    int64_t backoff[] = {1, 2};
    for (int attempt = 1; attempt <= 2; attempt++) {
        int64_t t0 = ck_now();
        assert_int_equal(ck_jobs_drain(f->jobs), CK_OK);
        expect_job(f, id, CK_JOB_QUEUED, 0, 0, attempt);
        struct ck_job *j = get(f, id);
        assert_non_null(j->error);
        assert_string_equal(j->error, "vault unreachable");
        assert_int_equal(j->finished, 0);
        ck_job_free(j);
        int64_t nb = query_int(f->s, "SELECT not_before FROM ck_job WHERE id = ?", id);
        int64_t t1 = ck_now();
        assert_true(nb >= t0 + backoff[attempt - 1] && nb <= t1 + backoff[attempt - 1]);
        assert_int_equal(query_int(f->s, "SELECT lease_owner FROM ck_job WHERE id = ?", id), -1);

        /* Not runnable before not_before: drain leaves it alone. */
        assert_int_equal(ck_jobs_drain(f->jobs), CK_OK);
        assert_int_equal(atomic_load(&f->c.calls), attempt);
        /* Time passes. */
        assert_int_equal(ck_store_run(f->s, NULL, "UPDATE ck_job SET not_before = ? WHERE id = ?",
                                      "it", ck_now() - 1, id),
                         CK_OK);
    }
    assert_int_equal(ck_jobs_drain(f->jobs), CK_OK);
    expect_job(f, id, CK_JOB_DONE, 5, 5, 3);
    struct ck_job *j = get(f, id);
    assert_null(j->error); /* success clears the last transient error */
    ck_job_free(j);
    expect_items_once(f->s, "mbx-t", 5);
}

static void test_transient_retry_after_real_backoff(void **state)
{
    /* The same without touching not_before: a worker picks it up by itself
     * once the backoff (1 s) has passed, through its poll. */
    struct fx *f = *state;
    add_items(f->s, "mbx-w", 3);
    atomic_store(&f->c.flaky_left, 1);
    char id[37];
    assert_int_equal(ck_job_enqueue(f->jobs, "test.flaky", "t1", "mbx-w", id), CK_OK);
    assert_int_equal(ck_jobs_start(f->jobs, 1, 10), CK_OK);
    wait_state(f, id, CK_JOB_DONE, 5000);
    ck_jobs_stop(f->jobs);
    expect_job(f, id, CK_JOB_DONE, 3, 3, 2);
    expect_items_once(f->s, "mbx-w", 3);
}

/* ---------- workers ---------- */

static void test_workers_run_each_job_once(void **state)
{
    struct fx *f = *state;
    f->c.batch = 2;
    f->c.sleep_ms = 5;
    char ids[20][37];
    for (int i = 0; i < 20; i++) {
        char target[32];
        snprintf(target, sizeof target, "mbx-%02d", i);
        add_items(f->s, target, 5);
        assert_int_equal(ck_job_enqueue(f->jobs, "test.items", "t1", target, ids[i]), CK_OK);
    }
    assert_int_equal(ck_jobs_start(f->jobs, 2, 30), CK_OK);
    assert_int_equal(ck_jobs_start(f->jobs, 2, 30), CK_ECONFLICT);
    for (int i = 0; i < 20; i++)
        wait_state(f, ids[i], CK_JOB_DONE, 30000);
    ck_jobs_stop(f->jobs);

    for (int i = 0; i < 20; i++) {
        char target[32];
        snprintf(target, sizeof target, "mbx-%02d", i);
        expect_job(f, ids[i], CK_JOB_DONE, 5, 5, 1);
        expect_items_once(f->s, target, 5);
    }
    assert_int_equal(atomic_load(&f->c.calls), 20 * 3);
    assert_int_equal(f->c.nthreads, 2); /* both workers took part */
}

static void test_enqueue_wakes_idle_worker(void **state)
{
    struct fx *f = *state;
    add_items(f->s, "mbx-wake", 2);
    assert_int_equal(ck_jobs_start(f->jobs, 1, 10), CK_OK);
    sleep_ms(50); /* idle, waiting */
    char id[37];
    int64_t t0 = ck_now_ms();
    assert_int_equal(ck_job_enqueue(f->jobs, "test.items", "t1", "mbx-wake", id), CK_OK);
    wait_state(f, id, CK_JOB_DONE, 5000);
    int64_t took = ck_now_ms() - t0;
    ck_jobs_stop(f->jobs);
    /* Well before the worker's next poll (1 s after it went idle). */
    if (took >= 600)
        fail_msg("the job took %lld ms to run: the worker was not woken", (long long)took);
    expect_items_once(f->s, "mbx-wake", 2);
}

static void test_stop_returns_promptly_when_idle(void **state)
{
    struct fx *f = *state;
    assert_int_equal(ck_jobs_start(f->jobs, 2, 10), CK_OK);
    sleep_ms(200);
    int64_t t0 = ck_now_ms();
    ck_jobs_stop(f->jobs);
    int64_t took = ck_now_ms() - t0;
    assert_true(took < 2000);
    /* Stopping twice is harmless, and the workers may start again. */
    ck_jobs_stop(f->jobs);
    assert_int_equal(ck_jobs_start(f->jobs, 1, 10), CK_OK);
    ck_jobs_stop(f->jobs);
}

static void test_stop_mid_job_finishes_step_and_hands_back(void **state)
{
    struct fx *f = *state;
    f->c.batch = 1;
    f->c.sleep_ms = 100;
    add_items(f->s, "mbx-stop", 10);
    char id[37];
    assert_int_equal(ck_job_enqueue(f->jobs, "test.items", "t1", "mbx-stop", id), CK_OK);
    assert_int_equal(ck_jobs_start(f->jobs, 1, 10), CK_OK);
    while (atomic_load(&f->c.calls) < 3)
        sleep_ms(10);
    ck_jobs_stop(f->jobs);
    assert_int_equal(atomic_load(&f->c.in_step), 0);

    /* The job is queued again with the progress of every completed step. */
    struct ck_job *j = get(f, id);
    assert_int_equal(j->state, CK_JOB_QUEUED);
    int64_t processed =
        query_int(f->s, "SELECT SUM(processed) FROM t_item WHERE target = ?", "mbx-stop");
    assert_int_equal(j->done, processed);
    assert_int_equal(processed, atomic_load(&f->c.calls));
    assert_true(processed >= 3 && processed < 10);
    ck_job_free(j);
    assert_int_equal(query_int(f->s, "SELECT lease_owner FROM ck_job WHERE id = ?", id), -1);
    assert_true(query_int(f->s, "SELECT not_before FROM ck_job WHERE id = ?", id) <= ck_now());

    f->c.sleep_ms = 0;
    assert_int_equal(ck_jobs_drain(f->jobs), CK_OK);
    expect_job(f, id, CK_JOB_DONE, 10, 10, 2);
    expect_items_once(f->s, "mbx-stop", 10);
}

/* ---------- leases and crash recovery ---------- */

static void test_expired_lease_resumed_by_new_instance(void **state)
{
    struct fx *f = *state;
    add_items(f->s, "mbx-crash", 10);
    char id[37];
    assert_int_equal(ck_job_enqueue(f->jobs, "test.items", "t1", "mbx-crash", id), CK_OK);
    /* A worker claimed it, committed 4 items, and died; its lease ran out. */
    assert_int_equal(ck_store_run(f->s, NULL,
                                  "UPDATE t_item SET processed = 1, hits = 1"
                                  " WHERE target = ? AND n < 4",
                                  "t", "mbx-crash"),
                     CK_OK);
    set_running_elsewhere(f->s, id, "dead", ck_now() - 5, 4, 10);

    /* A new process: the store and the jobs instance reopened. */
    ck_jobs_close(f->jobs);
    ck_store_close(f->s);
    assert_int_equal(ck_store_open(f->uri, &f->s), CK_OK);
    assert_int_equal(ck_jobs_open(f->s, &f->jobs), CK_OK);
    f->c.s = f->s;
    register_all(f->jobs, &f->c);
    assert_int_equal(ck_jobs_start(f->jobs, 2, 10), CK_OK);
    wait_state(f, id, CK_JOB_DONE, 10000);
    ck_jobs_stop(f->jobs);

    expect_job(f, id, CK_JOB_DONE, 10, 10, 2);
    expect_items_once(f->s, "mbx-crash", 10);
    assert_int_equal(atomic_load(&f->c.calls), 2); /* 6 items left, 3 a step */
}

static void test_live_lease_not_taken(void **state)
{
    struct fx *f = *state;
    add_items(f->s, "mbx-live", 3);
    char id[37];
    assert_int_equal(ck_job_enqueue(f->jobs, "test.items", "t1", "mbx-live", id), CK_OK);
    set_running_elsewhere(f->s, id, "alive", ck_now() + 3600, 1, 3);

    assert_int_equal(ck_jobs_drain(f->jobs), CK_OK);
    assert_int_equal(ck_jobs_start(f->jobs, 2, 10), CK_OK);
    sleep_ms(1300); /* past a poll */
    ck_jobs_stop(f->jobs);

    assert_int_equal(atomic_load(&f->c.calls), 0);
    expect_job(f, id, CK_JOB_RUNNING, 1, 3, 1);
    struct ck_stmt *st;
    assert_int_equal(
        ck_stmt_prepare(f->s, &st, "SELECT lease_owner FROM ck_job WHERE id = ?", "t", id), CK_OK);
    bool row;
    assert_int_equal(ck_stmt_step(st, &row), CK_OK);
    assert_string_equal(ck_stmt_text(st, 0), "alive");
    ck_stmt_finalize(st);
    /* Enqueue still finds it as the unfinished job. */
    char again[37];
    assert_int_equal(ck_job_enqueue(f->jobs, "test.items", "t1", "mbx-live", again), CK_OK);
    assert_string_equal(id, again);
}

static void test_lost_lease_stops_the_runner(void **state)
{
    struct fx *f = *state;
    add_items(f->s, "mbx-steal", 9);
    char id[37];
    assert_int_equal(ck_job_enqueue(f->jobs, "test.steal", "t1", "mbx-steal", id), CK_OK);
    assert_int_equal(ck_jobs_drain(f->jobs), CK_OK);
    /* One step ran; its progress write found the lease gone and changed
     * nothing; the runner did not go on. */
    assert_int_equal(atomic_load(&f->c.calls), 1);
    expect_job(f, id, CK_JOB_RUNNING, 0, 0, 1);
    assert_int_equal(
        query_int(f->s, "SELECT COUNT(*) FROM ck_job WHERE lease_owner = 'thief' AND id = ?", id),
        1);
    assert_int_equal(query_int(f->s, "SELECT SUM(hits) FROM t_item WHERE target = ?", "mbx-steal"),
                     3);
}

/* ---------- reads ---------- */

static void test_list_get_latest(void **state)
{
    struct fx *f = *state;
    char a[37], b[37], c[37];
    assert_int_equal(ck_job_enqueue(f->jobs, "test.items", "tenant-a", "mbx-1", a), CK_OK);
    assert_int_equal(ck_job_enqueue(f->jobs, "test.items", "tenant-b", "mbx-2", b), CK_OK);
    assert_int_equal(ck_job_enqueue(f->jobs, "test.fail", "tenant-a", "mbx-1", c), CK_OK);

    struct ck_job **v;
    size_t n;
    assert_int_equal(ck_job_list(f->jobs, NULL, 10, &v, &n), CK_OK);
    assert_int_equal(n, 3);
    assert_string_equal(v[0]->id, c); /* newest first */
    assert_string_equal(v[1]->id, b);
    assert_string_equal(v[2]->id, a);
    assert_string_equal(v[1]->tenant, "tenant-b");
    assert_string_equal(v[1]->target, "mbx-2");
    assert_int_equal(v[1]->state, CK_JOB_QUEUED);
    ck_job_list_free(v, n);

    assert_int_equal(ck_job_list(f->jobs, "tenant-a", 10, &v, &n), CK_OK);
    assert_int_equal(n, 2);
    assert_string_equal(v[0]->id, c);
    assert_string_equal(v[1]->id, a);
    ck_job_list_free(v, n);

    assert_int_equal(ck_job_list(f->jobs, NULL, 1, &v, &n), CK_OK);
    assert_int_equal(n, 1);
    assert_string_equal(v[0]->id, c);
    ck_job_list_free(v, n);

    /* A huge max means all of them. */
    assert_int_equal(ck_job_list(f->jobs, NULL, SIZE_MAX, &v, &n), CK_OK);
    assert_int_equal(n, 3);
    ck_job_list_free(v, n);

    assert_int_equal(ck_job_list(f->jobs, "tenant-none", 10, &v, &n), CK_OK);
    assert_int_equal(n, 0);
    ck_job_list_free(v, n);

    struct ck_job *j;
    assert_int_equal(ck_job_latest(f->jobs, "test.items", "mbx-1", &j), CK_OK);
    assert_non_null(j);
    assert_string_equal(j->id, a);
    assert_string_equal(ck_job_state_name(j->state), "queued");
    ck_job_free(j);
    assert_int_equal(ck_job_latest(f->jobs, "test.items", "mbx-9", &j), CK_OK);
    assert_null(j);

    /* After a run, latest is the newest job, not the unfinished one. */
    add_items(f->s, "mbx-1", 1);
    add_items(f->s, "mbx-2", 1);
    assert_int_equal(ck_store_run(f->s, NULL, "DELETE FROM ck_job WHERE id = ?", "t", c), CK_OK);
    assert_int_equal(ck_jobs_drain(f->jobs), CK_OK);
    char d[37];
    assert_int_equal(ck_job_enqueue(f->jobs, "test.items", "tenant-a", "mbx-1", d), CK_OK);
    assert_int_equal(ck_job_latest(f->jobs, "test.items", "mbx-1", &j), CK_OK);
    assert_string_equal(j->id, d);
    ck_job_free(j);
    assert_int_equal(ck_job_list(f->jobs, "tenant-a", 10, &v, &n), CK_OK);
    assert_int_equal(n, 2);
    assert_string_equal(v[0]->id, d);
    assert_int_equal(v[0]->state, CK_JOB_QUEUED);
    assert_string_equal(v[1]->id, a);
    assert_int_equal(v[1]->state, CK_JOB_DONE);
    ck_job_list_free(v, n);

    assert_int_equal(ck_job_get(f->jobs, "00000000-0000-4000-8000-000000000000", &j), CK_ENOTFOUND);
    assert_string_equal(ck_job_state_name(CK_JOB_RUNNING), "running");
    assert_string_equal(ck_job_state_name(CK_JOB_DONE), "done");
    assert_string_equal(ck_job_state_name(CK_JOB_FAILED), "failed");
}

/* ---------- a real process killed in the middle of a job ---------- */

/* The child: a worker on a slow step (each step sleeps inside its
 * transaction), until the parent kills it. Never returns. */
static void crash_child(const char *uri)
{
    struct ck_store *s;
    struct ck_jobs *jobs;
    if (ck_store_open(uri, &s) != CK_OK || ck_jobs_open(s, &jobs) != CK_OK)
        _exit(2);
    static struct tctx c;
    ctx_init(&c, s, 1);
    c.sleep_in_tx_ms = 150;
    ck_jobs_register(jobs, "test.items", step_items, &c);
    if (ck_jobs_start(jobs, 1, 1) != CK_OK)
        _exit(3);
    for (;;)
        pause();
}

static void test_killed_process_job_resumes(void **state)
{
    (void)state;
    char dir[64], uri[128];
    snprintf(dir, sizeof dir, "/tmp/ck-jobs-XXXXXX");
    assert_non_null(mkdtemp(dir));
    snprintf(uri, sizeof uri, "sqlite:%s/t.db", dir);

    /* Nothing of SQLite may be open across fork(): set up, close, fork. */
    struct ck_store *s;
    struct ck_jobs *jobs;
    char id[37];
    assert_int_equal(ck_store_open(uri, &s), CK_OK);
    assert_int_equal(make_items_table(s), CK_OK);
    add_items(s, "mbx-kill", 8);
    assert_int_equal(ck_jobs_open(s, &jobs), CK_OK);
    assert_int_equal(ck_job_enqueue(jobs, "test.items", "t1", "mbx-kill", id), CK_OK);
    ck_jobs_close(jobs);
    ck_store_close(s);

    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive a test run that died */
        crash_child(uri);
    }

    assert_int_equal(ck_store_open(uri, &s), CK_OK);
    int64_t until = ck_now_ms() + 20000, processed = 0;
    while ((processed = query_int(s, "SELECT SUM(processed) FROM t_item WHERE target = ?",
                                  "mbx-kill")) < 3) {
        if (ck_now_ms() > until) {
            kill(pid, SIGKILL);
            fail_msg("the child made no progress");
        }
        sleep_ms(20);
    }
    sleep_ms(60); /* most likely inside the next step's transaction now */
    assert_int_equal(kill(pid, SIGKILL), 0);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);

    /* The dead process still holds the lease; its step in flight is gone. */
    assert_int_equal(query_int(s, "SELECT state FROM ck_job WHERE id = ?", id), CK_JOB_RUNNING);
    processed = query_int(s, "SELECT SUM(processed) FROM t_item WHERE target = ?", "mbx-kill");
    assert_true(processed >= 3 && processed < 8);
    assert_int_equal(
        query_int(s, "SELECT COUNT(*) FROM t_item WHERE target = ? AND hits > 1", "mbx-kill"), 0);

    /* This process takes over once the 1 s lease expires. */
    static struct tctx c;
    ctx_init(&c, s, 2);
    assert_int_equal(ck_jobs_open(s, &jobs), CK_OK);
    ck_jobs_register(jobs, "test.items", step_items, &c);
    assert_int_equal(ck_jobs_start(jobs, 2, 10), CK_OK);
    until = ck_now_ms() + 15000;
    for (;;) {
        struct ck_job *j;
        assert_int_equal(ck_job_get(jobs, id, &j), CK_OK);
        bool done = j->state == CK_JOB_DONE;
        if (done) {
            assert_int_equal(j->done, 8);
            assert_int_equal(j->total, 8);
            assert_int_equal(j->attempts, 2);
        }
        ck_job_free(j);
        if (done)
            break;
        if (ck_now_ms() > until)
            fail_msg("the job was not taken over");
        sleep_ms(50);
    }
    ck_jobs_close(jobs);
    expect_items_once(s, "mbx-kill", 8);
    assert_int_equal(atomic_load(&c.calls), (8 - processed + 1) / 2);
    ck_store_close(s);
    pthread_mutex_destroy(&c.mu);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
    ck_log_set_level(CK_LOG_WARN); /* the tests that look at the log raise it */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_enqueue_dedupes_unfinished, setup, teardown),
        cmocka_unit_test_setup_teardown(test_enqueue_validates, setup, teardown),
        cmocka_unit_test_setup_teardown(test_enqueue_inside_transaction, setup, teardown),
        cmocka_unit_test_setup_teardown(test_drain_runs_job_to_done, setup, teardown),
        cmocka_unit_test_setup_teardown(test_step_failure_marks_failed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unknown_kind_fails, setup, teardown),
        cmocka_unit_test_setup_teardown(test_transient_failure_backs_off_then_succeeds, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_transient_retry_after_real_backoff, setup, teardown),
        cmocka_unit_test_setup_teardown(test_workers_run_each_job_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_enqueue_wakes_idle_worker, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stop_returns_promptly_when_idle, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stop_mid_job_finishes_step_and_hands_back, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_expired_lease_resumed_by_new_instance, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_live_lease_not_taken, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lost_lease_stops_the_runner, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list_get_latest, setup, teardown),
        cmocka_unit_test(test_killed_process_job_resumes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
