/*
 * internal.h — what the files of jobs/ share and nothing else sees.
 *
 * queue.c owns the table ck_job (migration component "jobs") and every SQL
 * statement on it: enqueue, the read functions of jobs.h, and the lease
 * operations below. run.c owns struct ck_jobs, the kind registry, the
 * worker threads and ck_jobs_drain; it never writes SQL.
 *
 * Lease rule: every write a worker makes to a job it runs is conditioned on
 * `state = running AND lease_owner = <its owner id>`, so a worker that lost
 * its lease (it stalled past lease_until and another worker took the job)
 * changes nothing; the lease operations report that as *held == false.
 */
#ifndef CK_JOBS_INTERNAL_H
#define CK_JOBS_INTERNAL_H

#include "jobs/jobs.h"

#include <pthread.h>

/* A claim without renewal lasts this long in ck_jobs_drain, and in workers
 * when ck_jobs_start is given no lease. */
#define CK_JOBS_DEFAULT_LEASE 60

struct ck_job_kind {
    char *kind;
    ck_job_step_fn step;
    void *ctx;
};

struct ck_job_worker {
    struct ck_jobs *jobs;
    pthread_t thread;
    char owner[37];
};

struct ck_jobs {
    struct ck_store *store;
    pthread_mutex_t mu; /* guards everything below */
    pthread_cond_t wake;
    struct ck_job_kind *kinds;
    size_t nkinds;
    struct ck_job_worker *workers;
    unsigned nworkers;
    int64_t lease_seconds;
    bool stopping;
    uint64_t wakeups;     /* bumped by every enqueue, so a worker notices one it raced with */
    unsigned throttle_ms; /* pause between a worker's steps (atomic) */
};

ck_err ck_jobq_migrate(struct ck_store *s);

/* ck_job_enqueue without the wake-up; *created false when an unfinished job
 * of kind on target already existed (id is then its id). */
ck_err ck_jobq_enqueue(struct ck_store *s, const char *kind, const char *tenant, const char *target,
                       char id[37], bool *created);

/* Takes the lease on the oldest runnable job for owner until now + lease.
 * *out is NULL when no job is runnable. */
ck_err ck_jobq_claim(struct ck_store *s, const char *owner, int64_t lease, struct ck_job **out);

/* Records progress and extends the lease to now + lease. */
ck_err ck_jobq_renew(struct ck_store *s, const struct ck_job *j, const char *owner, int64_t lease,
                     bool *held);
/* done, with the job's final progress; clears the error. */
ck_err ck_jobq_finish(struct ck_store *s, const struct ck_job *j, const char *owner, bool *held);
/* failed, with message. */
ck_err ck_jobq_fail(struct ck_store *s, const struct ck_job *j, const char *owner,
                    const char *message, bool *held);
/* Back to queued, runnable from not_before; message (may be NULL) is kept. */
ck_err ck_jobq_requeue(struct ck_store *s, const struct ck_job *j, const char *owner,
                       int64_t not_before, const char *message, bool *held);

#endif
