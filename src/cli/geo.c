/*
 * geo.c — `ckey geo add|list`: the geos of a tenant's files (one data
 * encryption policy per geo, see `ckey spo-dep`).
 */
#include "cli/cli.h"

#include <stdlib.h>

static const char help[] = "Usage:\n"
                           "  ckey geo add --tenant T --geo GEO\n"
                           "  ckey geo list --tenant T\n"
                           "\n"
                           "A geo is 2-8 uppercase letters (EUR, NAM). Sites live in a geo; each\n"
                           "geo has its own data encryption policy (ckey spo-dep). --tenant\n"
                           "defaults to $CKEY_TENANT. Tenant admins or the operator.\n";

static void print_geo(struct cli *c, json_t *g)
{
    static const char *const fields[] = {"Geo=geo", "Tenant=tenant"};
    cli_print_object(c, g, fields, sizeof fields / sizeof *fields);
}

static int geo_add(struct cli *c, int argc, char **argv)
{
    struct cli_args a;
    if (!cli_parse(argc, argv, "tenant=,geo=", &a))
        return 2;
    const char *tenant = cli_tenant_arg(&a), *geo = cli_get(&a, "geo");
    if (!tenant)
        return cli_usage_error("geo add needs --tenant T (or CKEY_TENANT)");
    if (!geo || a.npos)
        return cli_usage_error("geo add needs --geo GEO (and no other arguments)");
    return cli_call_show(c, "POST", cli_path("/tenants/%s/geos", tenant),
                         json_pack("{s:s}", "geo", geo), print_geo);
}

static int geo_list(struct cli *c, int argc, char **argv)
{
    struct cli_args a;
    if (!cli_parse(argc, argv, "tenant=", &a))
        return 2;
    const char *tenant = cli_tenant_arg(&a);
    if (!tenant)
        return cli_usage_error("geo list needs --tenant T (or CKEY_TENANT)");
    if (a.npos)
        return cli_usage_error("geo list takes no arguments");
    static const char *const cols[] = {"GEO=geo"};
    return cli_call_table(c, cli_path("/tenants/%s/geos", tenant), cols, 1);
}

int cli_geo(struct cli *c, int argc, char **argv)
{
    static const struct cli_verb verbs[] = {{"add", geo_add}, {"list", geo_list}};
    return cli_dispatch(c, argc, argv, "geo", help, verbs, sizeof verbs / sizeof *verbs);
}
