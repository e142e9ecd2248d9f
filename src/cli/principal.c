/*
 * principal.c — `ckey principal add|list` and `ckey whoami`.
 */
#include "cli/cli.h"

#include <stdio.h>
#include <string.h>

static const char help[] =
    "Usage:\n"
    "  ckey principal add --upn alice@contoso.com [--tenant GUID]\n"
    "  ckey principal add --app NAME [--app-id GUID] [--tenant GUID]\n"
    "  ckey principal list\n"
    "\n"
    "Principals are the users and applications that hold tokens. Operator only.\n";

static const char *const principal_fields[] = {
    "ObjectId=objectId",
    "Type=type",
    "UserPrincipalName=userPrincipalName",
    "DisplayName=displayName",
    "ApplicationId=applicationId",
    "TenantId=tenantId",
    "Roles=roles",
    "Created=created",
};

static int add(struct cli *c, int argc, char **argv)
{
    struct cli_args a;
    if (!cli_parse(argc, argv, "upn=,app=,app-id=,tenant=", &a))
        return 2;
    const char *upn = cli_get(&a, "upn"), *app = cli_get(&a, "app");
    if (!upn == !app)
        return cli_usage_error("principal add needs exactly one of --upn or --app");
    if (upn && cli_get(&a, "app-id"))
        return cli_usage_error("--app-id goes with --app");
    if (a.npos)
        return cli_usage_error("unexpected argument '%s'", a.pos[0]);
    json_t *body = json_object();
    if (upn)
        json_object_set_new(body, "userPrincipalName", json_string(upn));
    else
        json_object_set_new(body, "displayName", json_string(app));
    if (cli_get(&a, "app-id"))
        json_object_set_new(body, "applicationId", json_string(cli_get(&a, "app-id")));
    if (cli_get(&a, "tenant"))
        json_object_set_new(body, "tenantId", json_string(cli_get(&a, "tenant")));
    json_t *resp = NULL;
    ck_err rc = cli_call(c, "POST", "/admin/principals", body, &resp);
    json_decref(body);
    if (rc != CK_OK)
        return cli_fail();
    cli_print_object(c, resp, principal_fields, sizeof principal_fields / sizeof *principal_fields);
    json_decref(resp);
    return 0;
}

static int list(struct cli *c, int argc, char **argv)
{
    struct cli_args a;
    if (!cli_parse(argc, argv, "", &a))
        return 2;
    json_t *resp = NULL;
    if (cli_call(c, "GET", "/admin/principals", NULL, &resp) != CK_OK)
        return cli_fail();
    static const char *const cols[] = {"TYPE=type",
                                       "NAME=userPrincipalName",
                                       "DISPLAY NAME=displayName",
                                       "APPLICATION ID=applicationId",
                                       "OBJECT ID=objectId",
                                       "ROLES=roles"};
    cli_print_table(c, json_object_get(resp, "value"), cols, sizeof cols / sizeof *cols);
    json_decref(resp);
    return 0;
}

int cli_principal(struct cli *c, int argc, char **argv)
{
    static const struct cli_verb verbs[] = {
        {"add", add},
        {"list", list},
    };
    return cli_dispatch(c, argc, argv, "principal", help, verbs, sizeof verbs / sizeof *verbs);
}

int cli_whoami(struct cli *c, int argc, char **argv)
{
    struct cli_args a;
    if (!cli_parse(argc, argv, "help", &a))
        return 2;
    if (cli_has(&a, "help")) {
        puts("Usage: ckey whoami\n\nShows the principal behind the token in use.");
        return 0;
    }
    json_t *resp = NULL;
    if (cli_call(c, "GET", "/whoami", NULL, &resp) != CK_OK)
        return cli_fail();
    cli_print_object(c, resp, principal_fields, sizeof principal_fields / sizeof *principal_fields);
    json_decref(resp);
    return 0;
}
