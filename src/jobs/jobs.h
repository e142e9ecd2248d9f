/*
 * jobs — a durable job queue with leases, workers and progress.
 *
 * A job is a row: kind ("mail.reencrypt"), tenant, target (what it acts on,
 * e.g. a mailbox id), state (queued → running → done | failed), progress
 * (done/total) and a lease. Workers claim a job by taking its lease (owner
 * and expiry); a job whose lease expired — its worker or process died — is
 * claimed again and resumes, because every step a job makes is one
 * committed transaction that leaves the target consistent. So a crash at any
 * point loses at most the step in flight, which is simply redone.
 *
 * A kind registers one step function. The worker calls it repeatedly; each
 * call does one batch in its own transaction and reports progress, until it
 * says finished. A transient failure (CK_EUNAVAIL) leaves the job queued
 * for a later attempt with backoff; any other failure marks it failed with
 * the message.
 *
 * Owns the table ck_job. Calls store/ only. Thread-safety: all functions
 * may be called from any thread; workers are threads this module starts.
 */
#ifndef CK_JOBS_H
#define CK_JOBS_H

#include "base/base.h"
#include "store/store.h"

struct ck_jobs;

enum ck_job_state { CK_JOB_QUEUED, CK_JOB_RUNNING, CK_JOB_DONE, CK_JOB_FAILED };
const char *ck_job_state_name(enum ck_job_state s); /* "queued", ... */

struct ck_job {
    char id[37];
    char kind[48];
    char tenant[37];
    char target[128];
    enum ck_job_state state;
    int64_t done, total;
    int attempts;
    char *error; /* NULL unless failed (or the last transient failure) */
    int64_t created, updated, finished;
};
void ck_job_free(struct ck_job *j);
void ck_job_list_free(struct ck_job **v, size_t n);

/* One step: do a batch for job j (its target) in one transaction, then set
 * done, total and finished. Called with the job's lease held. */
typedef ck_err (*ck_job_step_fn)(void *ctx, const struct ck_job *j, int64_t *done, int64_t *total,
                                 bool *finished);

/* Called by a step that returns CK_OK unfinished because it waits on other
 * work (e.g. jobs it started): the job is queued again to run in `seconds`
 * (at least 1) instead of being stepped again at once, and the worker is
 * free for other jobs meanwhile. Not a failure: attempts and backoff are
 * untouched. */
void ck_job_wait(int64_t seconds);

/* Progress for a step that moved n more units of job j: j's done plus n,
 * and its total (raised to that when more was moved than was counted). For
 * steps that count their target exactly only at the first and the last
 * step, because a count per batch would read the whole target. */
void ck_job_carry(const struct ck_job *j, int64_t n, int64_t *done, int64_t *total);

ck_err ck_jobs_open(struct ck_store *s, struct ck_jobs **out);
/* Stops the workers first when running. */
void ck_jobs_close(struct ck_jobs *jobs);
/* Before ck_jobs_start. */
void ck_jobs_register(struct ck_jobs *jobs, const char *kind, ck_job_step_fn step, void *ctx);
/* Starts n worker threads; lease_seconds is how long a claim lasts without
 * renewal (renewed after every step). */
ck_err ck_jobs_start(struct ck_jobs *jobs, unsigned n, int64_t lease_seconds);
/* Workers pause ms milliseconds between steps: a brake on background load
 * (0, the default, = none). */
void ck_jobs_set_throttle(struct ck_jobs *jobs, unsigned ms);
/* Asks the workers to stop after their current step and joins them. */
void ck_jobs_stop(struct ck_jobs *jobs);

/* Queues a job; when a queued or running job of the same kind and target
 * exists, returns that one instead (so re-assigning twice runs once). May be
 * called inside the caller's transaction. Wakes a worker. */
ck_err ck_job_enqueue(struct ck_jobs *jobs, const char *kind, const char *tenant,
                      const char *target, char id[37]);
ck_err ck_job_get(struct ck_jobs *jobs, const char *id, struct ck_job **out);
/* tenant NULL: every tenant's. Newest first, at most max. */
ck_err ck_job_list(struct ck_jobs *jobs, const char *tenant, size_t max, struct ck_job ***out,
                   size_t *n);
/* The newest job of kind on target, if any (*out NULL when none). */
ck_err ck_job_latest(struct ck_jobs *jobs, const char *kind, const char *target,
                     struct ck_job **out);
/* Runs queued jobs in the calling thread until none is runnable (tests and
 * tools; the server uses worker threads). */
ck_err ck_jobs_drain(struct ck_jobs *jobs);

#endif
