/*
 * spodep.c — `ckey spo-dep register|get|update|restore`: the data
 * encryption policy of a geo's files, as Register-, Get-, Update- and
 * Restore-SPODataEncryptionPolicy.
 *
 * --wait polls every 0.5 s until the state is Registered (exit 0), the
 * policy's job failed (exit 1, with the job's error) or --timeout passed
 * (exit 1); progress on stderr (a bar on a terminal, a line every 5 s
 * otherwise).
 */
#include "cli/cli.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#define POLL_MS 500
#define LINE_EVERY_MS 5000

static const char help[] =
    "Usage:\n"
    "  ckey spo-dep register --tenant T --geo GEO --primary-key URI --secondary-key URI\n"
    "                        [--wait [--timeout SECONDS]]\n"
    "  ckey spo-dep get --tenant T --geo GEO [--wait [--timeout SECONDS]]\n"
    "  ckey spo-dep update --tenant T --geo GEO --key-type primary|secondary --key URI\n"
    "                      [--wait [--timeout SECONDS]]\n"
    "  ckey spo-dep restore --tenant T --geo GEO --primary-key URI --secondary-key URI\n"
    "                       [--wait [--timeout SECONDS]]\n"
    "  ckey spo-dep purge-request --tenant T --geo GEO --reason R --contact C\n"
    "\n"
    "register puts every site of the geo under a new intermediate key wrapped by two\n"
    "customer root keys (URIs of keys in two vaults; the files service principal\n"
    "needs get, wrapKey and unwrapKey on both): State goes Registering, then\n"
    "Registered. update rolls one root key (State Rolling, then Registered); restore\n"
    "recovers after a lost root key with the availability key (State Recovering).\n"
    "One of these runs at a time per geo. --wait polls until the state is Registered\n"
    "(progress on stderr), the job fails (exit 1), or --timeout passes (default 600).\n"
    "purge-request asks for the permanent purge of every file of the geo\n"
    "(docs/purge.md); it is refused until both root keys deny wrapKey to the ckey\n"
    "Files Service. --tenant defaults to $CKEY_TENANT. Tenant admins or the operator.\n";

static const char *const fields[] = {
    "Geo=Geo",
    "State=State",
    "PercentComplete=PercentComplete",
    "PrimaryKeyVaultUri=PrimaryKeyVaultUri",
    "SecondaryKeyVaultUri=SecondaryKeyVaultUri",
    "PrimaryKeyVersion=PrimaryKeyVersion",
    "SecondaryKeyVersion=SecondaryKeyVersion",
    "JobId=JobId",
    "PermanentDataPurgeRequested=PermanentDataPurgeRequested",
    "PermanentDataPurgeReason=PermanentDataPurgeReason",
    "PermanentDataPurgeContact=PermanentDataPurgeContact",
    "PurgeId=PurgeId",
};

static void print_dep(struct cli *c, json_t *d)
{
    cli_print_object(c, d, fields, sizeof fields / sizeof *fields);
}

static void sleep_ms(long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

static const char *str(json_t *o, const char *field)
{
    const char *s = json_string_value(json_object_get(o, field));
    return s ? s : "";
}

/* The job's state and error (NULL when it cannot be read). */
static bool job_failed(struct cli *c, const char *job_id, char **error)
{
    *error = NULL;
    if (!*job_id)
        return false;
    char *path = cli_path("/jobs/%s", job_id);
    json_t *job = NULL;
    bool failed = false;
    if (cli_call(c, "GET", path, NULL, &job) == CK_OK) {
        failed = strcmp(str(job, "state"), "failed") == 0;
        if (failed && *str(job, "error"))
            *error = ck_strdup(str(job, "error"));
    }
    json_decref(job);
    free(path);
    return failed;
}

static int wait_registered(struct cli *c, const char *path, const char *geo, double timeout)
{
    int64_t timeout_ms = (int64_t)(timeout * 1000), start = ck_now_ms(), last_line = 0;
    bool tty = isatty(2);
    for (;;) {
        json_t *d = NULL;
        int64_t now = ck_now_ms();
        ck_err rc = cli_call(c, "GET", path, NULL, &d);
        /* A restarting server is not a failed job: keep asking. */
        if (rc == CK_EUNAVAIL && now - start < timeout_ms) {
            sleep_ms(POLL_MS);
            continue;
        }
        if (rc != CK_OK) {
            cli_progress_end();
            return cli_fail();
        }
        const char *state = str(d, "State");
        json_int_t pct = json_integer_value(json_object_get(d, "PercentComplete"));
        if (strcmp(state, "Registered") == 0) {
            if (tty)
                cli_progress(geo, 1, 1);
            cli_progress_end();
            print_dep(c, d);
            json_decref(d);
            return 0;
        }
        char *error = NULL;
        if (strcmp(state, "Unregistered") == 0 || job_failed(c, str(d, "JobId"), &error)) {
            cli_progress_end();
            fprintf(stderr, "ckey: the data encryption policy of geo %s is %s%s%s%s\n", geo, state,
                    *str(d, "JobId") ? "; its job failed" : "", error ? ": " : "",
                    error ? error : "");
            free(error);
            json_decref(d);
            return 1;
        }
        char label[128];
        snprintf(label, sizeof label, "%s: %s", geo, state);
        if (tty) {
            cli_progress(label, pct, 100);
        } else if (last_line == 0 || now - last_line >= LINE_EVERY_MS) {
            fprintf(stderr, "ckey: %s %lld%%\n", label, (long long)pct);
            last_line = now;
        }
        if (now - start >= timeout_ms) {
            cli_progress_end();
            fprintf(stderr,
                    "ckey: geo %s is still %s after %g s (%lld%% done); try again later or "
                    "with a longer --timeout\n",
                    geo, state, timeout, (long long)pct);
            json_decref(d);
            return 1;
        }
        json_decref(d);
        sleep_ms(POLL_MS);
    }
}

/* The options every verb shares; prints the usage error. */
static bool common(int argc, char **argv, const char *spec, const char *verb, struct cli_args *a,
                   const char **tenant, const char **geo, double *timeout)
{
    if (!cli_parse(argc, argv, spec, a))
        return false;
    *tenant = cli_tenant_arg(a);
    *geo = cli_get(a, "geo");
    if (!*tenant) {
        cli_usage_error("spo-dep %s needs --tenant T (or CKEY_TENANT)", verb);
        return false;
    }
    if (!*geo) {
        cli_usage_error("spo-dep %s needs --geo GEO", verb);
        return false;
    }
    if (a->npos) {
        cli_usage_error("spo-dep %s takes no arguments", verb);
        return false;
    }
    *timeout = 600;
    const char *t = cli_get(a, "timeout");
    if (t) {
        char *end;
        *timeout = strtod(t, &end);
        if (!*t || *end || !(*timeout > 0) || *timeout > 86400 * 30) {
            cli_usage_error("--timeout takes a number of seconds, not '%s'", t);
            return false;
        }
        if (!cli_has(a, "wait")) {
            cli_usage_error("--timeout goes with --wait");
            return false;
        }
    }
    return true;
}

/* Sends body (stolen) and shows the answer, or waits for Registered. */
static int call(struct cli *c, const char *method, const char *tenant, const char *geo,
                const char *suffix, json_t *body, bool wait, double timeout)
{
    char *path = cli_path("/tenants/%s/geos/%s/dep", tenant, geo);
    char *url = suffix ? ck_sprintf("%s%s", path, suffix) : ck_strdup(path);
    json_t *resp = NULL;
    ck_err rc = cli_call(c, method, url, body, &resp);
    free(url);
    json_decref(body);
    int st;
    if (rc != CK_OK)
        st = cli_fail();
    else if (wait)
        st = wait_registered(c, path, geo, timeout);
    else
        st = (print_dep(c, resp), 0);
    json_decref(resp);
    free(path);
    return st;
}

static int spo_register(struct cli *c, int argc, char **argv)
{
    struct cli_args a;
    const char *tenant, *geo;
    double timeout;
    if (!common(argc, argv, "tenant=,geo=,primary-key=,secondary-key=,wait,timeout=", "register",
                &a, &tenant, &geo, &timeout))
        return 2;
    const char *p = cli_get(&a, "primary-key"), *s = cli_get(&a, "secondary-key");
    json_t *body = json_object();
    /* A missing key is the server's to refuse (400), like any bad value. */
    if (p)
        json_object_set_new(body, "primaryKeyVaultUri", json_string(p));
    if (s)
        json_object_set_new(body, "secondaryKeyVaultUri", json_string(s));
    return call(c, "POST", tenant, geo, NULL, body, cli_has(&a, "wait"), timeout);
}

static int spo_get(struct cli *c, int argc, char **argv)
{
    struct cli_args a;
    const char *tenant, *geo;
    double timeout;
    if (!common(argc, argv, "tenant=,geo=,wait,timeout=", "get", &a, &tenant, &geo, &timeout))
        return 2;
    char *path = cli_path("/tenants/%s/geos/%s/dep", tenant, geo);
    if (cli_has(&a, "wait")) {
        int st = wait_registered(c, path, geo, timeout);
        free(path);
        return st;
    }
    return cli_call_show(c, "GET", path, NULL, print_dep);
}

static int spo_update(struct cli *c, int argc, char **argv)
{
    struct cli_args a;
    const char *tenant, *geo;
    double timeout;
    if (!common(argc, argv, "tenant=,geo=,key-type=,key=,wait,timeout=", "update", &a, &tenant,
                &geo, &timeout))
        return 2;
    const char *type = cli_get(&a, "key-type"), *key = cli_get(&a, "key");
    if (!type || (strcasecmp(type, "primary") != 0 && strcasecmp(type, "secondary") != 0))
        return cli_usage_error("spo-dep update needs --key-type primary or secondary");
    json_t *body =
        json_pack("{s:s}", "keyType", strcasecmp(type, "primary") == 0 ? "Primary" : "Secondary");
    if (key)
        json_object_set_new(body, "keyVaultUri", json_string(key));
    return call(c, "PATCH", tenant, geo, NULL, body, cli_has(&a, "wait"), timeout);
}

static int spo_restore(struct cli *c, int argc, char **argv)
{
    struct cli_args a;
    const char *tenant, *geo;
    double timeout;
    if (!common(argc, argv, "tenant=,geo=,primary-key=,secondary-key=,wait,timeout=", "restore", &a,
                &tenant, &geo, &timeout))
        return 2;
    const char *p = cli_get(&a, "primary-key"), *s = cli_get(&a, "secondary-key");
    json_t *body = json_object();
    if (p)
        json_object_set_new(body, "primaryKeyVaultUri", json_string(p));
    if (s)
        json_object_set_new(body, "secondaryKeyVaultUri", json_string(s));
    return call(c, "POST", tenant, geo, "/restore", body, cli_has(&a, "wait"), timeout);
}

static int spo_purge_request(struct cli *c, int argc, char **argv)
{
    struct cli_args a;
    if (!cli_parse(argc, argv, "tenant=,geo=,reason=,contact=", &a))
        return 2;
    const char *tenant = cli_tenant_arg(&a);
    if (!tenant || !cli_get(&a, "geo") || a.npos)
        return cli_usage_error("spo-dep purge-request needs --tenant T --geo GEO");
    return cli_purge_request(
        c, cli_path("/tenants/%s/geos/%s/dep/purge-request", tenant, cli_get(&a, "geo")), &a);
}

int cli_spodep(struct cli *c, int argc, char **argv)
{
    static const struct cli_verb verbs[] = {
        {"register", spo_register},
        {"get", spo_get},
        {"update", spo_update},
        {"restore", spo_restore},
        {"purge-request", spo_purge_request},
    };
    return cli_dispatch(c, argc, argv, "spo-dep", help, verbs, sizeof verbs / sizeof *verbs);
}
