/*
 * tenant.c — `ckey tenant create|list|show|add-admin`: the service's
 * customer organisations and the admins who manage their DEPs and mailboxes.
 */
#include "cli/cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char help[] =
    "Usage:\n"
    "  ckey tenant create NAME --admin UPN_OR_OBJECT_ID        (operator)\n"
    "  ckey tenant list                                        (operator)\n"
    "  ckey tenant show TENANT                                 (operator or tenant admin)\n"
    "  ckey tenant add-admin TENANT --admin UPN_OR_OBJECT_ID   (operator)\n"
    "\n"
    "A tenant name is 1 to 64 letters, digits, '.', '_' or '-', unique regardless of\n"
    "case; TENANT is a tenant's name (any case) or id. An admin must be a principal\n"
    "already (ckey principal add); tenant admins manage the tenant's data encryption\n"
    "policies, mail users and mailboxes (ckey dep, ckey mailuser, ckey mailbox).\n";

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

int cli_tenant(struct cli *c, int argc, char **argv)
{
    static const struct cli_verb verbs[] = {
        {"create", create},
        {"list", list},
        {"show", show},
        {"add-admin", add_admin},
    };
    return cli_dispatch(c, argc, argv, "tenant", help, verbs, sizeof verbs / sizeof *verbs);
}
