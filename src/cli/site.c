/*
 * site.c — `ckey site new|list|dep-status`: sites of a tenant's geos, and
 * which key a site is encrypted under (Get-SPOSiteDataEncryptionPolicy).
 */
#include "cli/cli.h"

#include <stdlib.h>
#include <string.h>

static const char help[] =
    "Usage:\n"
    "  ckey site new --tenant T --geo GEO --site /sites/NAME\n"
    "  ckey site list --tenant T\n"
    "  ckey site dep-status /sites/NAME --tenant T\n"
    "\n"
    "NAME is 1-128 of A-Z a-z 0-9 . _ -. dep-status shows the data encryption policy\n"
    "of the site's geo and whether the site is already on its current key (like\n"
    "Get-SPOSiteDataEncryptionPolicy). --tenant defaults to $CKEY_TENANT. Tenant\n"
    "admins or the operator.\n";

static void print_site(struct cli *c, json_t *s)
{
    static const char *const fields[] = {"Site=site", "Geo=geo", "Id=id", "Created=created"};
    cli_print_object(c, s, fields, sizeof fields / sizeof *fields);
}

static void print_status(struct cli *c, json_t *s)
{
    static const char *const fields[] = {
        "Site=Site",
        "Geo=Geo",
        "State=State",
        "PercentComplete=PercentComplete",
        "PrimaryKeyVaultUri=PrimaryKeyVaultUri",
        "SecondaryKeyVaultUri=SecondaryKeyVaultUri",
        "SiteOnCurrentKey=SiteOnCurrentKey",
    };
    cli_print_object(c, s, fields, sizeof fields / sizeof *fields);
}

static int site_new(struct cli *c, int argc, char **argv)
{
    struct cli_args a;
    if (!cli_parse(argc, argv, "tenant=,geo=,site=", &a))
        return 2;
    const char *tenant = cli_tenant_arg(&a), *geo = cli_get(&a, "geo"), *site = cli_get(&a, "site");
    if (!tenant)
        return cli_usage_error("site new needs --tenant T (or CKEY_TENANT)");
    if (!geo || !site || a.npos)
        return cli_usage_error("site new needs --geo GEO and --site /sites/NAME");
    return cli_call_show(c, "POST", cli_path("/tenants/%s/sites", tenant),
                         json_pack("{s:s,s:s}", "geo", geo, "site", site), print_site);
}

static int site_list(struct cli *c, int argc, char **argv)
{
    struct cli_args a;
    if (!cli_parse(argc, argv, "tenant=", &a))
        return 2;
    const char *tenant = cli_tenant_arg(&a);
    if (!tenant)
        return cli_usage_error("site list needs --tenant T (or CKEY_TENANT)");
    if (a.npos)
        return cli_usage_error("site list takes no arguments");
    static const char *const cols[] = {"SITE=site", "GEO=geo", "ID=id", "CREATED=created"};
    return cli_call_table(c, cli_path("/tenants/%s/sites", tenant), cols,
                          sizeof cols / sizeof *cols);
}

static int site_status(struct cli *c, int argc, char **argv)
{
    struct cli_args a;
    if (!cli_parse(argc, argv, "tenant=", &a))
        return 2;
    const char *tenant = cli_tenant_arg(&a);
    if (!tenant)
        return cli_usage_error("site dep-status needs --tenant T (or CKEY_TENANT)");
    if (a.npos != 1)
        return cli_usage_error("site dep-status needs one site (/sites/NAME)");
    const char *name = a.pos[0];
    if (strncmp(name, "/sites/", 7) == 0)
        name += 7;
    return cli_call_show(c, "GET", cli_path("/tenants/%s/sites/%s/dep-status", tenant, name), NULL,
                         print_status);
}

int cli_site(struct cli *c, int argc, char **argv)
{
    static const struct cli_verb verbs[] = {
        {"new", site_new}, {"list", site_list}, {"dep-status", site_status}};
    return cli_dispatch(c, argc, argv, "site", help, verbs, sizeof verbs / sizeof *verbs);
}
