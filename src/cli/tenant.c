/*
 * tenant.c — `ckey tenant create|list|show|add-admin|approver|offboard`:
 * the service's customer organisations, the admins who manage their DEPs
 * and mailboxes, the purge approver registered at onboarding, and the
 * move back to service-managed keys when a tenant leaves.
 */
#include "cli/cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char help[] =
    "Usage:\n"
    "  ckey tenant create NAME --admin UPN_OR_OBJECT_ID        (operator)\n"
    "  ckey tenant list                                        (operator)\n"
    "  ckey tenant show TENANT                                 (operator or tenant admin)\n"
    "  ckey tenant add-admin TENANT --admin UPN_OR_OBJECT_ID   (operator)\n"
    "  ckey tenant approver set --tenant T --public-key FILE   (tenant admin once; then\n"
    "                                                          the operator)\n"
    "  ckey tenant approver get --tenant T\n"
    "  ckey tenant offboard TENANT [--no-wait] [--timeout S]   (operator)\n"
    "\n"
    "A tenant name is 1 to 64 letters, digits, '.', '_' or '-', unique regardless of\n"
    "case; TENANT is a tenant's name (any case) or id. An admin must be a principal\n"
    "already (ckey principal add); tenant admins manage the tenant's data encryption\n"
    "policies, mail users and mailboxes (ckey dep, ckey mailuser, ckey mailbox).\n"
    "The purge approver's Ed25519 public key (PEM; e.g. from `ckey purge keygen` or\n"
    "`openssl genpkey -algorithm ed25519`) is what a purge document must be signed\n"
    "with (docs/purge.md). offboard moves every mailbox and geo of the tenant back to\n"
    "service-managed keys, then disables the tenant's DEPs; it deletes nothing.\n";

/* "alice@contoso.com, bob@contoso.com" from the admins array. */
static char *admin_names(json_t *tenant)
{
    struct ck_buf b = {0};
    size_t i;
    json_t *a;
    json_array_foreach(json_object_get(tenant, "admins"), i, a)
    {
        const char *name = json_string_value(json_object_get(a, "name"));
        if (i)
            ck_buf_append(&b, ", ", 2);
        if (name)
            ck_buf_append(&b, name, strlen(name));
    }
    ck_buf_append(&b, "", 1);
    return (char *)b.p;
}

static void print_tenant(struct cli *c, json_t *t)
{
    if (c->output == CLI_JSON) {
        cli_print_json(t);
        return;
    }
    char *admins = admin_names(t);
    json_object_set_new(t, "adminNames", json_string(admins));
    free(admins);
    static const char *const fields[] = {"Id=id", "Name=name", "Created=created",
                                         "Admins=adminNames"};
    cli_print_object(c, t, fields, sizeof fields / sizeof *fields);
}

static int create(struct cli *c, int argc, char **argv)
{
    struct cli_args a;
    if (!cli_parse(argc, argv, "admin=", &a))
        return 2;
    if (a.npos != 1)
        return cli_usage_error("tenant create needs one tenant NAME");
    const char *admin = cli_get(&a, "admin");
    if (!admin)
        return cli_usage_error("tenant create needs --admin UPN_OR_OBJECT_ID");
    json_t *body = json_pack("{s:s,s:s}", "name", a.pos[0], "admin", admin);
    json_t *resp = NULL;
    ck_err rc = cli_call(c, "POST", "/admin/tenants", body, &resp);
    json_decref(body);
    if (rc != CK_OK)
        return cli_fail();
    print_tenant(c, resp);
    json_decref(resp);
    return 0;
}

static int list(struct cli *c, int argc, char **argv)
{
    struct cli_args a;
    if (!cli_parse(argc, argv, "", &a))
        return 2;
    if (a.npos)
        return cli_usage_error("tenant list takes no arguments");
    json_t *resp = NULL;
    if (cli_call(c, "GET", "/admin/tenants", NULL, &resp) != CK_OK)
        return cli_fail();
    json_t *rows = json_object_get(resp, "value");
    if (c->output == CLI_TABLE) {
        size_t i;
        json_t *t;
        json_array_foreach(rows, i, t)
        {
            char *admins = admin_names(t);
            json_object_set_new(t, "adminNames", json_string(admins));
            free(admins);
        }
    }
    static const char *const cols[] = {"NAME=name", "ID=id", "CREATED=created",
                                       "ADMINS=adminNames"};
    cli_print_table(c, rows, cols, sizeof cols / sizeof *cols);
    json_decref(resp);
    return 0;
}

static int show(struct cli *c, int argc, char **argv)
{
    struct cli_args a;
    if (!cli_parse(argc, argv, "", &a))
        return 2;
    if (a.npos != 1)
        return cli_usage_error("tenant show needs one TENANT (name or id)");
    char *path = cli_path("/tenants/%s", a.pos[0]);
    return cli_call_show(c, "GET", path, NULL, print_tenant);
}

static int add_admin(struct cli *c, int argc, char **argv)
{
    struct cli_args a;
    if (!cli_parse(argc, argv, "admin=", &a))
        return 2;
    if (a.npos != 1)
        return cli_usage_error("tenant add-admin needs one TENANT (name or id)");
    const char *admin = cli_get(&a, "admin");
    if (!admin)
        return cli_usage_error("tenant add-admin needs --admin UPN_OR_OBJECT_ID");
    char *path = cli_path("/tenants/%s/admins", a.pos[0]);
    json_t *body = json_pack("{s:s}", "admin", admin);
    return cli_call_show(c, "POST", path, body, print_tenant);
}

static void print_approver(struct cli *c, json_t *a)
{
    static const char *const fields[] = {"Fingerprint=fingerprint", "SetBy=setBy", "SetAt=setAt",
                                         "PublicKey=publicKey"};
    cli_print_object(c, a, fields, sizeof fields / sizeof *fields);
}

static int approver_set(struct cli *c, int argc, char **argv)
{
    struct cli_args a;
    if (!cli_parse(argc, argv, "tenant=,public-key=", &a))
        return 2;
    const char *tenant = cli_tenant_arg(&a);
    if (!tenant || !cli_get(&a, "public-key") || a.npos)
        return cli_usage_error("tenant approver set needs --tenant T --public-key FILE");
    struct ck_buf pem = {0};
    ck_err rc = cli_read_file(cli_get(&a, "public-key"), 64 << 10, &pem);
    if (rc == CK_OK)
        rc = ck_buf_append(&pem, "", 1);
    if (rc != CK_OK) {
        ck_buf_free(&pem);
        return cli_fail();
    }
    json_t *body = json_pack("{s:s}", "publicKey", (const char *)pem.p);
    ck_buf_free(&pem);
    if (!body)
        return cli_usage_error("%s is not a PEM text file", cli_get(&a, "public-key"));
    return cli_call_show(c, "PUT", cli_path("/tenants/%s/purge-approver", tenant), body,
                         print_approver);
}

static int approver_get(struct cli *c, int argc, char **argv)
{
    struct cli_args a;
    if (!cli_parse(argc, argv, "tenant=", &a))
        return 2;
    const char *tenant = cli_tenant_arg(&a);
    if (!tenant || a.npos)
        return cli_usage_error("tenant approver get needs --tenant T");
    return cli_call_show(c, "GET", cli_path("/tenants/%s/purge-approver", tenant), NULL,
                         print_approver);
}

static int approver(struct cli *c, int argc, char **argv)
{
    static const struct cli_verb verbs[] = {
        {"set", approver_set},
        {"get", approver_get},
    };
    return cli_dispatch(c, argc, argv, "tenant approver", help, verbs,
                        sizeof verbs / sizeof *verbs);
}

static void print_offboard(struct cli *c, json_t *o)
{
    static const char *const fields[] = {
        "State=state",
        "Percent=percent",
        "Mailboxes=mailboxes.total",
        "MailboxesMoved=mailboxes.moved",
        "Geos=geos.total",
        "GeosMoved=geos.moved",
        "PoliciesEnabled=policiesEnabled",
        "JobId=jobId",
        "Error=error",
    };
    cli_print_object(c, o, fields, sizeof fields / sizeof *fields);
}

static int offboard(struct cli *c, int argc, char **argv)
{
    struct cli_args a;
    if (!cli_parse(argc, argv, "no-wait,timeout=", &a))
        return 2;
    if (a.npos != 1)
        return cli_usage_error("tenant offboard needs one TENANT (name or id)");
    char *path = cli_path("/tenants/%s/offboard", a.pos[0]);
    json_t *o = NULL;
    if (cli_call(c, "POST", path, NULL, &o) != CK_OK) {
        free(path);
        return cli_fail();
    }
    double timeout = cli_get(&a, "timeout") ? atof(cli_get(&a, "timeout")) : 3600;
    int64_t start = ck_now_ms();
    int st = 0;
    while (!cli_has(&a, "no-wait")) {
        const char *state = json_string_value(json_object_get(o, "state"));
        if (state && (strcmp(state, "done") == 0 || strcmp(state, "failed") == 0)) {
            st = strcmp(state, "done") == 0 ? 0 : 1;
            break;
        }
        cli_progress("offboarding", json_integer_value(json_object_get(o, "percent")), 100);
        if (ck_now_ms() - start > (int64_t)(timeout * 1000)) {
            cli_progress_end();
            fprintf(stderr,
                    "ckey: offboarding is not done after %g s; `ckey tenant offboard "
                    "%s` again shows where it is\n",
                    timeout, a.pos[0]);
            st = 1;
            break;
        }
        usleep(500 * 1000);
        json_decref(o);
        o = NULL;
        if (cli_call(c, "GET", path, NULL, &o) != CK_OK) {
            cli_progress_end();
            free(path);
            return cli_fail();
        }
    }
    cli_progress_end();
    print_offboard(c, o);
    json_decref(o);
    free(path);
    return st;
}

int cli_tenant(struct cli *c, int argc, char **argv)
{
    static const struct cli_verb verbs[] = {
        {"create", create},       {"list", list},         {"show", show},
        {"add-admin", add_admin}, {"approver", approver}, {"offboard", offboard},
    };
    return cli_dispatch(c, argc, argv, "tenant", help, verbs, sizeof verbs / sizeof *verbs);
}
