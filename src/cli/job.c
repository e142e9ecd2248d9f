/*
 * job.c — `ckey job list|show`: the service's background jobs (mailbox
 * re-encryption after a DEP assignment, refreshes, purges) and their
 * progress.
 */
#include "cli/cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char help[] =
    "Usage:\n"
    "  ckey job list --tenant T     the tenant's jobs, newest first\n"
    "  ckey job show ID\n"
    "\n"
    "A job is queued, running, done or failed; done/total counts its work (items\n"
    "re-encrypted, for a mailbox). Failed jobs show their error. --tenant defaults\n"
    "to $CKEY_TENANT. Tenant admins or the operator.\n";

static int job_list(struct cli *c, int argc, char **argv)
{
    struct cli_args a;
    if (!cli_parse(argc, argv, "tenant=", &a))
        return 2;
    const char *tenant = cli_tenant_arg(&a);
    if (!tenant)
        return cli_usage_error("job list needs --tenant T (or CKEY_TENANT)");
    if (a.npos)
        return cli_usage_error("job list takes no arguments");
    char *path = cli_path("/tenants/%s/jobs", tenant);
    static const char *const cols[] = {
        "ID=id",           "KIND=kind",       "TARGET=target",     "STATE=state",
        "PERCENT=percent", "CREATED=created", "FINISHED=finished", "ERROR=error"};
    return cli_call_table(c, path, cols, sizeof cols / sizeof *cols);
}

static int job_show(struct cli *c, int argc, char **argv)
{
    struct cli_args a;
    if (!cli_parse(argc, argv, "", &a))
        return 2;
    if (a.npos != 1)
        return cli_usage_error("job show needs one job ID (see `ckey job list`)");
    char *path = cli_path("/jobs/%s", a.pos[0]);
    json_t *resp = NULL;
    ck_err rc = cli_call(c, "GET", path, NULL, &resp);
    free(path);
    if (rc != CK_OK)
        return cli_fail();
    static const char *const fields[] = {
        "Id=id",
        "Kind=kind",
        "Tenant=tenant",
        "Target=target",
        "State=state",
        "Done=done",
        "Total=total",
        "Percent=percent",
        "Attempts=attempts",
        "Error=error",
        "Created=created",
        "Updated=updated",
        "Finished=finished",
    };
    cli_print_object(c, resp, fields, sizeof fields / sizeof *fields);
    json_decref(resp);
    return 0;
}

int cli_job(struct cli *c, int argc, char **argv)
{
    static const struct cli_verb verbs[] = {
        {"list", job_list},
        {"show", job_show},
    };
    return cli_dispatch(c, argc, argv, "job", help, verbs, sizeof verbs / sizeof *verbs);
}
