/*
 * mailuser.c — `ckey mailuser new|set`: mail users, the mailboxes-to-be of a
 * migration, and the DEP assigned before they move (Set-MailUser
 * -DataEncryptionPolicy), so their items arrive already encrypted under it.
 */
#include "cli/cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char help[] =
    "Usage:\n"
    "  ckey mailuser new --tenant T --identity UPN [--dep ID_OR_NAME]\n"
    "  ckey mailuser set UPN --tenant T --dep ID_OR_NAME|none\n"
    "\n"
    "A mail user becomes a mailbox with `ckey mailbox new` (or the first import);\n"
    "the DEP assigned to it then encrypts its items from the start. --dep none\n"
    "assigns the tenant's service-managed keys. --tenant defaults to $CKEY_TENANT.\n"
    "Tenant admins or the operator.\n";

static void print_stats(struct cli *c, json_t *s)
{
    static const char *const fields[] = {
        "Identity=Identity",
        "Migrated=Migrated",
        "DataEncryptionPolicyID=DataEncryptionPolicyID",
        "EffectiveDataEncryptionPolicyID=EffectiveDataEncryptionPolicyID",
        "WhenCreatedUTC=WhenCreatedUTC",
    };
    cli_print_object(c, s, fields, sizeof fields / sizeof *fields);
}

static int mailuser_new(struct cli *c, int argc, char **argv)
{
    struct cli_args a;
    if (!cli_parse(argc, argv, "tenant=,identity=,dep=", &a))
        return 2;
    const char *tenant = cli_tenant_arg(&a), *upn = cli_get(&a, "identity");
    if (!tenant)
        return cli_usage_error("mailuser new needs --tenant T (or CKEY_TENANT)");
    if (!upn || a.npos)
        return cli_usage_error("mailuser new needs --identity UPN (and no other arguments)");
    json_t *body = json_pack("{s:s}", "identity", upn);
    if (cli_get(&a, "dep"))
        json_object_set_new(body, "dataEncryptionPolicy", cli_dep_value(cli_get(&a, "dep")));
    char *path = cli_path("/tenants/%s/mailusers", tenant);
    return cli_call_show(c, "POST", path, body, print_stats);
}

static int mailuser_set(struct cli *c, int argc, char **argv)
{
    struct cli_args a;
    if (!cli_parse(argc, argv, "tenant=,dep=", &a))
        return 2;
    const char *tenant = cli_tenant_arg(&a), *dep = cli_get(&a, "dep");
    if (!tenant)
        return cli_usage_error("mailuser set needs --tenant T (or CKEY_TENANT)");
    if (a.npos != 1)
        return cli_usage_error("mailuser set needs one UPN");
    if (!dep)
        return cli_usage_error("mailuser set needs --dep ID_OR_NAME (or none)");
    json_t *body = json_pack("{s:o}", "dataEncryptionPolicy", cli_dep_value(dep));
    char *path = cli_path("/tenants/%s/mailusers/%s", tenant, a.pos[0]);
    return cli_call_show(c, "PATCH", path, body, print_stats);
}

int cli_mailuser(struct cli *c, int argc, char **argv)
{
    static const struct cli_verb verbs[] = {
        {"new", mailuser_new},
        {"set", mailuser_set},
    };
    return cli_dispatch(c, argc, argv, "mailuser", help, verbs, sizeof verbs / sizeof *verbs);
}
