/*
 * run.c — the kind registry, running a claimed job, worker threads, drain.
 *
 * Running a job: the kind's step is called until it says finished. After
 * every step one UPDATE writes the progress and renews the lease, and only
 * succeeds while this runner still owns the lease. Outcomes, as jobs.h
 * states them: finished → done; CK_EUNAVAIL → queued again after a backoff
 * of 1 s doubling per attempt up to 60 s; any other error → failed with its
 * message; a kind nobody registered → failed.
 *
 * Owner ids: each worker, and each ck_jobs_drain call, holds leases under a
 * random owner id. When a runner gives a job up without recording an
 * outcome — another runner took the lease, or the store refused the write —
 * it takes a new owner id. The row it left behind is then one more dead
 * owner's lease, reclaimed on expiry like a crashed process's, and never
 * mistaken for the runner's next claim (queue.c finds a claimed row by its
 * owner).
 *
 * Waiting: an idle worker sleeps on a condition variable for at most
 * CK_JOBS_POLL_MS; enqueue signals it. The timeout is what picks up jobs
 * whose backoff ended, whose lease expired, or that another process queued.
 *
 * Stopping: the flag is read between steps, never during one, so a step in
 * progress completes and commits; the worker then records the progress and
 * hands the job back (queued, runnable at once) rather than leaving its
 * lease to expire.
 */
#include "jobs/internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <time.h>

#define CK_JOBS_POLL_MS 1000
#define CK_JOBS_BACKOFF_MAX 60

/* ---------- open, close, registry ---------- */

ck_err ck_jobs_open(struct ck_store *s, struct ck_jobs **out)
{
    if (!out)
        return ck_err_set(CK_EINVAL, "ck_jobs_open: no output pointer");
    *out = NULL;
    if (!s)
        return ck_err_set(CK_EINVAL, "ck_jobs_open: no store");
    CK_TRY(ck_jobq_migrate(s));

    struct ck_jobs *jobs = ck_xcalloc(1, sizeof *jobs);
    jobs->store = s;
    pthread_mutex_init(&jobs->mu, NULL);
    /* Monotonic, so a wall-clock step cannot stretch an idle wait. */
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&jobs->wake, &attr);
    pthread_condattr_destroy(&attr);
    *out = jobs;
    return CK_OK;
}

void ck_jobs_close(struct ck_jobs *jobs)
{
    if (!jobs)
        return;
    ck_jobs_stop(jobs);
    for (size_t i = 0; i < jobs->nkinds; i++)
        free(jobs->kinds[i].kind);
    free(jobs->kinds);
    pthread_cond_destroy(&jobs->wake);
    pthread_mutex_destroy(&jobs->mu);
    free(jobs);
}

void ck_jobs_register(struct ck_jobs *jobs, const char *kind, ck_job_step_fn step, void *ctx)
{
    if (!jobs || !kind || !step)
        return;
    pthread_mutex_lock(&jobs->mu);
    size_t i = 0;
    while (i < jobs->nkinds && strcmp(jobs->kinds[i].kind, kind) != 0)
        i++;
    if (i == jobs->nkinds) {
        struct ck_job_kind *v = realloc(jobs->kinds, (i + 1) * sizeof *v);
        if (!v)
            abort(); /* as ck_xmalloc does */
        jobs->kinds = v;
        jobs->kinds[i].kind = ck_strdup(kind);
        jobs->nkinds++;
    }
    jobs->kinds[i].step = step; /* registering a kind again replaces its step */
    jobs->kinds[i].ctx = ctx;
    pthread_mutex_unlock(&jobs->mu);
}

static bool find_kind(struct ck_jobs *jobs, const char *kind, ck_job_step_fn *step, void **ctx)
{
    bool found = false;
    pthread_mutex_lock(&jobs->mu);
    for (size_t i = 0; i < jobs->nkinds && !found; i++) {
        if (strcmp(jobs->kinds[i].kind, kind) == 0) {
            *step = jobs->kinds[i].step;
            *ctx = jobs->kinds[i].ctx;
            found = true;
        }
    }
    pthread_mutex_unlock(&jobs->mu);
    return found;
}

static bool stop_requested(struct ck_jobs *jobs)
{
    pthread_mutex_lock(&jobs->mu);
    bool stop = jobs->stopping;
    pthread_mutex_unlock(&jobs->mu);
    return stop;
}

/* ---------- running one job ---------- */

struct runner {
    struct ck_jobs *jobs;
    char owner[37];
    int64_t lease;
    bool honour_stop; /* workers: hand the job back when asked to stop */
};

/* 1 s after the first attempt, doubling, at most CK_JOBS_BACKOFF_MAX. */
static int64_t backoff_seconds(int attempts)
{
    int shift = attempts > 1 ? attempts - 1 : 0;
    if (shift > 6)
        return CK_JOBS_BACKOFF_MAX;
    int64_t d = (int64_t)1 << shift;
    return d < CK_JOBS_BACKOFF_MAX ? d : CK_JOBS_BACKOFF_MAX;
}

/* Logs identify a job by kind, id and target only; error messages are
 * ck_err messages, which by convention never carry data or key material. */
static void log_job(enum ck_log_level level, const char *msg, const struct ck_job *j,
                    const char *k1, const char *v1, const char *k2, const char *v2)
{
    ck_log(level, msg, "kind", j->kind, "id", j->id, "target", j->target, k1, v1, k2, v2, NULL);
}

/* Takes a new owner id: the runner is dropping a job whose lease row may
 * still name the old one (see the top of this file). */
static void renew_owner(struct runner *r)
{
    char fresh[37];
    if (ck_uuid_v4(fresh) == CK_OK)
        memcpy(r->owner, fresh, sizeof fresh);
}

/* After an outcome write: rc/held say whether it was recorded. If it was,
 * logs msg with up to two more key/value pairs; if not, the runner drops
 * the job. Returns rc. */
static ck_err settle(struct runner *r, const struct ck_job *j, ck_err rc, bool held,
                     enum ck_log_level level, const char *msg, const char *k1, const char *v1,
                     const char *k2, const char *v2)
{
    if (rc == CK_OK && held) {
        log_job(level, msg, j, k1, v1, k2, v2);
        return CK_OK;
    }
    if (rc != CK_OK) {
        char *cause = ck_strdup(ck_err_msg());
        log_job(CK_LOG_ERROR, "job state not recorded; its lease will expire", j, "error", cause,
                "owner", r->owner);
        ck_err_set(rc, "%s", cause);
        free(cause);
    } else {
        log_job(CK_LOG_WARN, "job lease lost to another worker; dropping it", j, "owner", r->owner,
                NULL, NULL);
    }
    renew_owner(r);
    return rc;
}

static ck_err step_failed(struct runner *r, struct ck_job *j, ck_err e)
{
    struct ck_store *s = r->jobs->store;
    char *msg = ck_strdup(*ck_err_msg() ? ck_err_msg() : ck_err_name(e));
    /* A step that failed inside its own transaction may have left it open. */
    ck_store_rollback(s);
    bool held = false;
    ck_err rc;
    if (e == CK_EUNAVAIL) {
        int64_t delay = backoff_seconds(j->attempts);
        char in[24];
        snprintf(in, sizeof in, "%lld", (long long)delay);
        rc = ck_jobq_requeue(s, j, r->owner, ck_now() + delay, msg, &held);
        rc = settle(r, j, rc, held, CK_LOG_WARN, "job deferred after a transient failure", "error",
                    msg, "retry_in_seconds", in);
    } else {
        rc = ck_jobq_fail(s, j, r->owner, msg, &held);
        rc = settle(r, j, rc, held, CK_LOG_ERROR, "job failed", "error", msg, NULL, NULL);
    }
    free(msg);
    return rc;
}

/* Set by ck_job_wait within a step, read by the runner after it. */
static __thread int64_t wait_seconds;

void ck_job_wait(int64_t seconds)
{
    wait_seconds = seconds > 0 ? seconds : 1;
}

void ck_job_carry(const struct ck_job *j, int64_t n, int64_t *done, int64_t *total)
{
    *done = j->done + n;
    *total = *done > j->total ? *done : j->total;
}

/* Runs claimed job j until an outcome; CK_OK unless the outcome could not
 * be recorded (the job's own failure is an outcome, not an error here). */
static ck_err run_job(struct runner *r, struct ck_job *j)
{
    struct ck_store *s = r->jobs->store;
    bool held = false;
    ck_err rc;
    ck_job_step_fn step;
    void *ctx;
    if (!find_kind(r->jobs, j->kind, &step, &ctx)) {
        char *msg = ck_sprintf("no step is registered for job kind %s", j->kind);
        rc = ck_jobq_fail(s, j, r->owner, msg, &held);
        rc = settle(r, j, rc, held, CK_LOG_ERROR, "job failed", "error", msg, NULL, NULL);
        free(msg);
        return rc;
    }

    char attempt[16];
    snprintf(attempt, sizeof attempt, "%d", j->attempts);
    log_job(CK_LOG_INFO, "job started", j, "attempt", attempt, NULL, NULL);
    for (;;) {
        /* Checked before every step, never during one (see the top of this file). */
        if (r->honour_stop && stop_requested(r->jobs)) {
            char progress[48];
            snprintf(progress, sizeof progress, "%lld/%lld", (long long)j->done,
                     (long long)j->total);
            rc = ck_jobq_requeue(s, j, r->owner, ck_now(), j->error, &held);
            return settle(r, j, rc, held, CK_LOG_INFO, "job paused for shutdown", "progress",
                          progress, NULL, NULL);
        }
        int64_t done = j->done, total = j->total;
        bool finished = false;
        ck_err_clear();
        wait_seconds = 0;
        ck_err e = step(ctx, j, &done, &total, &finished);
        if (e != CK_OK)
            return step_failed(r, j, e);
        j->done = done;
        j->total = total;
        if (finished) {
            char progress[48];
            snprintf(progress, sizeof progress, "%lld/%lld", (long long)done, (long long)total);
            rc = ck_jobq_finish(s, j, r->owner, &held);
            return settle(r, j, rc, held, CK_LOG_INFO, "job done", "progress", progress, NULL,
                          NULL);
        }
        if (wait_seconds > 0) {
            /* Waiting on other work: hand the worker back until then. */
            rc = ck_jobq_requeue(s, j, r->owner, ck_now() + wait_seconds, NULL, &held);
            return settle(r, j, rc, held, CK_LOG_DEBUG, "job waiting", NULL, NULL, NULL, NULL);
        }
        rc = ck_jobq_renew(s, j, r->owner, r->lease, &held);
        if (rc != CK_OK || !held)
            return settle(r, j, rc, held, CK_LOG_DEBUG, "job progress", NULL, NULL, NULL, NULL);
        /* An operator's brake on background work, between steps only. */
        unsigned pause = __atomic_load_n(&r->jobs->throttle_ms, __ATOMIC_RELAXED);
        if (pause && r->honour_stop)
            usleep(pause * 1000u);
    }
}

/* Claims and runs one job; *ran false when none was runnable. */
static ck_err run_one(struct runner *r, bool *ran)
{
    struct ck_job *j = NULL;
    *ran = false;
    ck_err rc = ck_jobq_claim(r->jobs->store, r->owner, r->lease, &j);
    if (rc != CK_OK) {
        /* The UPDATE may have taken a lease the read-back did not see. */
        renew_owner(r);
        return rc;
    }
    if (!j)
        return CK_OK;
    *ran = true;
    rc = run_job(r, j);
    ck_job_free(j);
    return rc;
}

static int64_t lease_of(struct ck_jobs *jobs)
{
    pthread_mutex_lock(&jobs->mu);
    int64_t lease = jobs->lease_seconds > 0 ? jobs->lease_seconds : CK_JOBS_DEFAULT_LEASE;
    pthread_mutex_unlock(&jobs->mu);
    return lease;
}

ck_err ck_jobs_drain(struct ck_jobs *jobs)
{
    if (!jobs)
        return ck_err_set(CK_EINVAL, "ck_jobs_drain: no jobs");
    struct runner r = {.jobs = jobs, .lease = lease_of(jobs), .honour_stop = false};
    CK_TRY(ck_uuid_v4(r.owner));
    /* Each pass claims the oldest runnable job; jobs deferred by a transient
     * failure are not runnable until their backoff ends, so this ends. */
    for (;;) {
        bool ran;
        CK_TRY(run_one(&r, &ran));
        if (!ran)
            return CK_OK;
    }
}

/* ---------- enqueue ---------- */

ck_err ck_job_enqueue(struct ck_jobs *jobs, const char *kind, const char *tenant,
                      const char *target, char id[37])
{
    if (!jobs || !id)
        return ck_err_set(CK_EINVAL, "ck_job_enqueue: no jobs or no id buffer");
    bool created = false;
    CK_TRY(ck_jobq_enqueue(jobs->store, kind, tenant, target, id, &created));
    if (created) {
        /* If the caller's transaction is still open, the woken worker's claim
         * waits for it (SQLite) or does not see the row yet and finds it on
         * a later poll; either way nothing is lost. */
        pthread_mutex_lock(&jobs->mu);
        jobs->wakeups++;
        pthread_cond_signal(&jobs->wake);
        pthread_mutex_unlock(&jobs->mu);
        ck_log(CK_LOG_DEBUG, "job queued", "kind", kind, "id", id, "target", target, NULL);
    }
    return CK_OK;
}

/* ---------- workers ---------- */

static void wait_for_work(struct ck_jobs *jobs, uint64_t seen)
{
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += CK_JOBS_POLL_MS / 1000;
    until.tv_nsec += (long)(CK_JOBS_POLL_MS % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&jobs->mu);
    while (!jobs->stopping && jobs->wakeups == seen) {
        if (pthread_cond_timedwait(&jobs->wake, &jobs->mu, &until) == ETIMEDOUT)
            break;
    }
    pthread_mutex_unlock(&jobs->mu);
}

static void *worker_main(void *arg)
{
    struct ck_job_worker *w = arg;
    struct ck_jobs *jobs = w->jobs;
    struct runner r = {.jobs = jobs, .lease = lease_of(jobs), .honour_stop = true};
    memcpy(r.owner, w->owner, sizeof r.owner);
    for (;;) {
        pthread_mutex_lock(&jobs->mu);
        bool stop = jobs->stopping;
        uint64_t seen = jobs->wakeups;
        pthread_mutex_unlock(&jobs->mu);
        if (stop)
            break;
        bool ran = false;
        ck_err rc = run_one(&r, &ran);
        if (rc != CK_OK && !ran)
            ck_log(CK_LOG_WARN, "job claim failed", "owner", r.owner, "error", ck_err_msg(), NULL);
        if (ran)
            continue; /* there may be more: look again before sleeping */
        wait_for_work(jobs, seen);
    }
    return NULL; /* the thread's store connection closes as the thread exits */
}

ck_err ck_jobs_start(struct ck_jobs *jobs, unsigned n, int64_t lease_seconds)
{
    if (!jobs || n == 0)
        return ck_err_set(CK_EINVAL, "ck_jobs_start: no jobs or no workers asked for");
    if (lease_seconds < 0)
        return ck_err_set(CK_EINVAL, "ck_jobs_start: negative lease");
    struct ck_job_worker *w = ck_xcalloc(n, sizeof *w);
    for (unsigned i = 0; i < n; i++) {
        w[i].jobs = jobs;
        ck_err rc = ck_uuid_v4(w[i].owner);
        if (rc != CK_OK) {
            free(w);
            return rc;
        }
    }

    pthread_mutex_lock(&jobs->mu);
    if (jobs->workers) {
        pthread_mutex_unlock(&jobs->mu);
        free(w);
        return ck_err_set(CK_ECONFLICT, "job workers are already running");
    }
    jobs->workers = w;
    jobs->nworkers = 0;
    jobs->stopping = false;
    jobs->lease_seconds = lease_seconds ? lease_seconds : CK_JOBS_DEFAULT_LEASE;
    pthread_mutex_unlock(&jobs->mu);

    for (unsigned i = 0; i < n; i++) {
        int e = pthread_create(&w[i].thread, NULL, worker_main, &w[i]);
        if (e != 0) {
            ck_jobs_stop(jobs);
            return ck_err_set(CK_EINTERNAL, "starting job worker %u of %u: %s", i + 1, n,
                              strerror(e));
        }
        pthread_mutex_lock(&jobs->mu);
        jobs->nworkers = i + 1;
        pthread_mutex_unlock(&jobs->mu);
    }
    char count[16];
    snprintf(count, sizeof count, "%u", n);
    ck_log(CK_LOG_INFO, "job workers started", "workers", count, NULL);
    return CK_OK;
}

void ck_jobs_stop(struct ck_jobs *jobs)
{
    if (!jobs)
        return;
    pthread_mutex_lock(&jobs->mu);
    struct ck_job_worker *w = jobs->workers;
    unsigned n = jobs->nworkers;
    if (!w) {
        pthread_mutex_unlock(&jobs->mu);
        return;
    }
    jobs->stopping = true;
    pthread_cond_broadcast(&jobs->wake);
    pthread_mutex_unlock(&jobs->mu);

    for (unsigned i = 0; i < n; i++)
        pthread_join(w[i].thread, NULL);

    pthread_mutex_lock(&jobs->mu);
    jobs->workers = NULL;
    jobs->nworkers = 0;
    jobs->stopping = false;
    pthread_mutex_unlock(&jobs->mu);
    free(w);
    ck_log(CK_LOG_INFO, "job workers stopped", NULL);
}

void ck_jobs_set_throttle(struct ck_jobs *jobs, unsigned ms)
{
    __atomic_store_n(&jobs->throttle_ms, ms, __ATOMIC_RELAXED);
}
