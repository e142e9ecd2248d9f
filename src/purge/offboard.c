/*
 * offboard.c — a tenant's move back to service-managed keys (purge.h).
 *
 * One durable job per tenant. Each step looks at every mailbox and geo:
 * those still under customer keys are started on their way (a mailbox
 * re-encryption job, a geo's unregistration), and the step reports how
 * many have arrived. Until all have, it waits (ck_job_wait) rather than
 * holding a worker. When all have, the tenant's DEPs are disabled. Moving
 * never deletes: each item and file is re-encrypted or rewrapped first, by
 * the mail and files jobs, which are themselves resumable.
 */
#include "purge/internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct progress {
    int64_t mailboxes, mailboxes_moved;
    int64_t geos, geos_moved;
    int64_t deps_enabled; /* customer DEPs still enabled (without a purge request) */
};

static bool purge_requested(struct ck_purges *p, const char *tenant, const char *dep_id)
{
    struct ck_dep *d = NULL;
    bool yes = ck_dep_get(p->deps, tenant, dep_id, &d) != CK_OK || d->purge_requested;
    ck_dep_free(d);
    return yes;
}

/* Counts what has moved; with act, starts what has not. */
static ck_err survey(struct ck_purges *p, const char *tenant, bool act, const char *request_id,
                     struct progress *pr)
{
    memset(pr, 0, sizeof *pr);
    struct ck_mailbox_info *mb = NULL;
    size_t n = 0;
    CK_TRY(ck_mailbox_list(p->mail, tenant, &mb, &n));
    ck_err rc = CK_OK;
    for (size_t i = 0; rc == CK_OK && i < n; i++) {
        /* Mailboxes under a DEP with a purge request go with the purge. */
        if (*mb[i].dep_id && purge_requested(p, tenant, mb[i].dep_id))
            continue;
        pr->mailboxes++;
        bool moved = !*mb[i].dep_id && (mb[i].is_encrypted || !mb[i].migrated);
        if (moved) {
            pr->mailboxes_moved++;
        } else if (act && *mb[i].dep_id) {
            char job_id[37];
            rc = ck_mailbox_set_dep(p->mail, tenant, mb[i].upn, NULL, request_id, job_id);
        }
    }
    free(mb);
    CK_TRY(rc);

    char(*geos)[9] = NULL;
    CK_TRY(ck_geo_list(p->files, tenant, &geos, &n));
    for (size_t i = 0; rc == CK_OK && i < n; i++) {
        struct ck_spo_dep spo;
        if ((rc = ck_spo_get(p->files, tenant, geos[i], &spo)) != CK_OK)
            break;
        if (spo.purge_requested || spo.state == CK_SPO_PURGING || spo.state == CK_SPO_PURGED)
            continue;
        pr->geos++;
        if (spo.state == CK_SPO_UNREGISTERED)
            pr->geos_moved++;
        else if (act && spo.state == CK_SPO_REGISTERED)
            rc = ck_spo_unregister(p->files, tenant, geos[i], request_id, &spo);
        /* Registering, rolling, recovering, unregistering: a job runs; the
         * next step looks again. */
    }
    free(geos);
    CK_TRY(rc);

    struct ck_dep **deps = NULL;
    CK_TRY(ck_dep_list(p->deps, tenant, &deps, &n));
    for (size_t i = 0; i < n; i++)
        if (deps[i]->enabled && !deps[i]->purge_requested)
            pr->deps_enabled++;
    ck_dep_list_free(deps, n);
    return CK_OK;
}

static ck_err disable_deps(struct ck_purges *p, const char *tenant, const char *request_id)
{
    struct ck_dep **deps = NULL;
    size_t n = 0;
    CK_TRY(ck_dep_list(p->deps, tenant, &deps, &n));
    ck_err rc = CK_OK;
    bool off = false;
    for (size_t i = 0; rc == CK_OK && i < n; i++) {
        if (!deps[i]->enabled || deps[i]->purge_requested)
            continue;
        struct ck_dep *d = NULL;
        rc = ck_dep_set(p->deps, tenant, deps[i]->id, NULL, NULL, &off, &d);
        purge_audit(p, "ckey offboarding", "dep.disable", deps[i]->id, request_id, rc,
                    "tenant offboarded to service-managed keys");
        ck_dep_free(d);
    }
    ck_dep_list_free(deps, n);
    return rc;
}

ck_err purge_offboard_step(void *ctx, const struct ck_job *j, int64_t *done, int64_t *total,
                           bool *finished)
{
    struct ck_purges *p = ctx;
    struct progress pr;
    CK_TRY(survey(p, j->tenant, true, j->id, &pr));
    *total = pr.mailboxes + pr.geos;
    *done = pr.mailboxes_moved + pr.geos_moved;
    if (*done < *total) {
        ck_job_wait(1);
        return CK_OK;
    }
    CK_TRY(disable_deps(p, j->tenant, j->id));
    purge_audit(p, "ckey offboarding", "tenant.offboard", j->tenant, j->id, CK_OK,
                "every mailbox and geo is under service-managed keys; customer DEPs disabled");
    *finished = true;
    return CK_OK;
}

ck_err ck_offboard_start(struct ck_purges *p, const char *tenant, const char *request_id,
                         char job_id[37])
{
    ck_err rc = ck_job_enqueue(p->jobs, CK_OFFBOARD_JOB, tenant, tenant, job_id);
    purge_audit(p, NULL, "tenant.offboard.start", tenant, request_id, rc, NULL);
    return rc;
}

ck_err ck_offboard_status(struct ck_purges *p, const char *tenant, json_t **out)
{
    struct ck_job *j = NULL;
    CK_TRY(ck_job_latest(p->jobs, CK_OFFBOARD_JOB, tenant, &j));
    struct progress pr;
    ck_err rc = survey(p, tenant, false, NULL, &pr);
    if (rc != CK_OK) {
        ck_job_free(j);
        return rc;
    }
    int64_t total = pr.mailboxes + pr.geos, moved = pr.mailboxes_moved + pr.geos_moved;
    const char *state = j ? ck_job_state_name(j->state) : "none";
    json_t *o =
        json_pack("{s:s,s:o,s:I,s:{s:I,s:I},s:{s:I,s:I},s:I}", "state", state, "jobId",
                  j ? json_string(j->id) : json_null(), "percent",
                  (json_int_t)(j && j->state == CK_JOB_DONE ? 100
                               : total                      ? moved * 100 / total
                                                            : 100),
                  "mailboxes", "total", (json_int_t)pr.mailboxes, "moved",
                  (json_int_t)pr.mailboxes_moved, "geos", "total", (json_int_t)pr.geos, "moved",
                  (json_int_t)pr.geos_moved, "policiesEnabled", (json_int_t)pr.deps_enabled);
    if (j && j->error && j->state != CK_JOB_DONE)
        json_object_set_new(o, "error", json_string(j->error));
    ck_job_free(j);
    *out = o;
    return CK_OK;
}
