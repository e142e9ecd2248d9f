/*
 * vault.c — `ckey vault create|show|list|delete|policy`: key vaults and
 * their access policies, through the server's ARM-shaped management API.
 *
 * `show` prints what Get-AzKeyVault prints. `policy remove` does what
 * Remove-AzKeyVaultAccessPolicy does: GET the vault, drop the principal's
 * entries, PUT the whole vault back.
 */
#include "cli/cli.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define API_VERSION "api-version=2023-07-01"

static const char help[] =
    "Usage:\n"
    "  ckey vault create NAME --subscription SUB --resource-group RG --location LOC\n"
    "                   [--retention-days N] [--purge-protection] [--sku standard|premium]\n"
    "  ckey vault show NAME\n"
    "  ckey vault list --subscription SUB [--resource-group RG]\n"
    "  ckey vault delete NAME\n"
    "  ckey vault policy set NAME (--upn U | --object-id ID | --app-id ID)\n"
    "                   --key-permissions P1,P2,...\n"
    "  ckey vault policy remove NAME (--upn U | --object-id ID | --app-id ID)\n"
    "\n"
    "create grants the creator every key permission (as New-AzKeyVault does); soft delete\n"
    "is always on (retention 7-90 days, default 90) and purge protection, once on, stays\n"
    "on. policy set makes the given permissions the principal's whole set (all, get, list,\n"
    "create, update, import, delete, backup, restore, recover, purge, encrypt, decrypt,\n"
    "wrapKey, unwrapKey, sign, verify, release, rotate, getrotationpolicy,\n"
    "setrotationpolicy). Callers must own the vault's subscription (or be an operator).\n";

/* ---------- server calls ---------- */

static ck_err fetch_vault(struct cli *c, const char *name, json_t **vault)
{
    char *e = ck_client_escape(name);
    char *path = ck_sprintf("/ckey/vaults/%s", e);
    ck_err rc = cli_call(c, "GET", path, NULL, vault);
    free(e);
    free(path);
    return rc;
}

/* The vault's ARM id plus suffix and the api-version. */
static char *arm_path(json_t *vault, const char *suffix)
{
    return ck_sprintf("%s%s?" API_VERSION, json_string_value(json_object_get(vault, "id")), suffix);
}

/* The resource group, from ".../resourceGroups/RG/providers/...". */
static char *resource_group_of(json_t *vault)
{
    const char *id = json_string_value(json_object_get(vault, "id"));
    const char *p = id ? strstr(id, "/resourceGroups/") : NULL;
    if (!p)
        return ck_strdup("");
    p += strlen("/resourceGroups/");
    const char *end = strchr(p, '/');
    return end ? strndup(p, (size_t)(end - p)) : ck_strdup(p);
}

/* A directory entry's printable name, "(unknown)" when the object id is
 * not a known principal (a foreign tenant's, or a deleted one). */
static char *display_name(struct cli *c, const char *object_id)
{
    char *e = ck_client_escape(object_id);
    char *path = ck_sprintf("/directory/principals/%s", e);
    json_t *p = NULL;
    ck_err rc = cli_call(c, "GET", path, NULL, &p);
    free(e);
    free(path);
    const char *name = NULL;
    if (rc == CK_OK) {
        name = json_string_value(json_object_get(p, "userPrincipalName"));
        if (!name)
            name = json_string_value(json_object_get(p, "displayName"));
    }
    char *out = ck_strdup(name ? name : "(unknown)");
    json_decref(p);
    return out;
}

/* ---------- output ---------- */

static char *joined(json_t *arr)
{
    struct ck_buf b = {0};
    size_t i;
    json_t *x;
    json_array_foreach(arr, i, x)
    {
        if (i)
            ck_buf_append(&b, ", ", 2);
        const char *s = json_string_value(x);
        ck_buf_append(&b, s ? s : "", s ? strlen(s) : 0);
    }
    ck_buf_append(&b, "", 1);
    return (char *)b.p;
}

/* One "Label   : value" line; fmt formats the value. */
#define FIELD(fmt, label, ...) printf("%-36s: " fmt "\n", label, __VA_ARGS__)

static const char *str(json_t *o, const char *field)
{
    const char *s = json_string_value(json_object_get(o, field));
    return s ? s : "";
}

/* No trailing blank after the colon when the value is empty. */
static void policy_line(const char *label, const char *value)
{
    printf("    %-20s:%s%s\n", label, *value ? " " : "", value);
}

static void print_policies(struct cli *c, json_t *policies)
{
    if (json_array_size(policies) == 0) {
        puts("    (none)");
        return;
    }
    size_t i;
    json_t *p;
    json_array_foreach(policies, i, p)
    {
        if (i)
            putchar('\n');
        char *name = display_name(c, str(p, "objectId"));
        char *keys = joined(json_object_get(json_object_get(p, "permissions"), "keys"));
        policy_line("Tenant ID", str(p, "tenantId"));
        policy_line("Object ID", str(p, "objectId"));
        policy_line("Application ID", str(p, "applicationId"));
        policy_line("Display Name", name);
        policy_line("Permissions to Keys", keys);
        free(name);
        free(keys);
    }
}

static const char *tf(json_t *v)
{
    return json_is_true(v) ? "True" : "False";
}

/* Get-AzKeyVault's layout. */
static void print_vault(struct cli *c, json_t *v)
{
    if (c->output == CLI_JSON) {
        cli_print_json(v);
        return;
    }
    json_t *props = json_object_get(v, "properties");
    char *rg = resource_group_of(v);
    const char *sku = str(json_object_get(props, "sku"), "name");
    FIELD("%s", "Vault Name", str(v, "name"));
    FIELD("%s", "Resource Group Name", rg);
    FIELD("%s", "Location", str(v, "location"));
    FIELD("%s", "Resource ID", str(v, "id"));
    FIELD("%s", "Vault URI", str(props, "vaultUri"));
    FIELD("%s", "Tenant ID", str(props, "tenantId"));
    /* "standard" → "Standard", as the SDK's enum prints. */
    FIELD("%c%s", "SKU", sku[0] ? toupper((unsigned char)sku[0]) : ' ', sku[0] ? sku + 1 : "");
    FIELD("%s", "Soft Delete Enabled?", tf(json_object_get(props, "enableSoftDelete")));
    FIELD("%lld", "Soft Delete Retention Period (days)",
          (long long)json_integer_value(json_object_get(props, "softDeleteRetentionInDays")));
    FIELD("%s", "Purge Protection Enabled?", tf(json_object_get(props, "enablePurgeProtection")));
    char *tags = json_dumps(json_object_get(v, "tags"), JSON_COMPACT | JSON_ENCODE_ANY);
    FIELD("%s", "Tags", tags ? tags : "{}");
    free(tags);
    printf("%-36s:\n", "Access Policies");
    print_policies(c, json_object_get(props, "accessPolicies"));
    free(rg);
}

/* ---------- commands ---------- */

static int one_name(const struct cli_args *a, const char *cmd)
{
    if (a->npos != 1)
        return cli_usage_error("vault %s needs exactly one vault name", cmd);
    return 0;
}

static int create(struct cli *c, int argc, char **argv)
{
    struct cli_args a;
    if (!cli_parse(
            argc, argv,
            "subscription=,resource-group=,location=,retention-days=,purge-protection,sku=", &a))
        return 2;
    if (one_name(&a, "create"))
        return 2;
    const char *sub = cli_get(&a, "subscription"), *rg = cli_get(&a, "resource-group");
    const char *loc = cli_get(&a, "location"), *days = cli_get(&a, "retention-days");
    const char *sku = cli_get(&a, "sku");
    if (!sub || !rg || !loc)
        return cli_usage_error("vault create needs --subscription, --resource-group and "
                               "--location");
    char *end = NULL;
    long n = days ? strtol(days, &end, 10) : 90;
    if (days && (!*days || *end))
        return cli_usage_error("--retention-days takes a number of days, not '%s'", days);
    if (sku && strcasecmp(sku, "standard") != 0 && strcasecmp(sku, "premium") != 0)
        return cli_usage_error("--sku takes standard or premium, not '%s'", sku);

    /* Refuse to turn a create into an update of someone's vault. */
    json_t *existing = NULL;
    ck_err rc = fetch_vault(c, a.pos[0], &existing);
    json_decref(existing);
    if (rc == CK_OK || rc == CK_EFORBIDDEN) {
        ck_err_set(CK_ECONFLICT, "a vault named '%s' already exists", a.pos[0]);
        return cli_fail();
    }
    if (rc != CK_ENOTFOUND)
        return cli_fail();
    json_t *me = NULL;
    if (cli_call(c, "GET", "/whoami", NULL, &me) != CK_OK)
        return cli_fail();
    const char *tenant = str(me, "tenantId");
    json_t *creator = json_pack("{s:s,s:s,s:{s:[s],s:[],s:[],s:[]}}", "tenantId", tenant,
                                "objectId", str(me, "objectId"), "permissions", "keys", "all",
                                "secrets", "certificates", "storage");
    json_t *props =
        json_pack("{s:s,s:{s:s,s:s},s:[o],s:b,s:I}", "tenantId", tenant, "sku", "family", "A",
                  "name", sku ? sku : "standard", "accessPolicies", creator, "enableSoftDelete", 1,
                  "softDeleteRetentionInDays", (json_int_t)n);
    if (cli_has(&a, "purge-protection"))
        json_object_set_new(props, "enablePurgeProtection", json_true());
    json_t *body = json_pack("{s:s,s:{},s:o}", "location", loc, "tags", "properties", props);
    json_decref(me);
    char *es = ck_client_escape(sub), *er = ck_client_escape(rg), *en = ck_client_escape(a.pos[0]);
    char *path = ck_sprintf("/subscriptions/%s/resourceGroups/%s/providers/Microsoft.KeyVault/"
                            "vaults/%s?" API_VERSION,
                            es, er, en);
    json_t *resp = NULL;
    rc = cli_call(c, "PUT", path, body, &resp);
    free(es);
    free(er);
    free(en);
    free(path);
    json_decref(body);
    if (rc != CK_OK)
        return cli_fail();
    print_vault(c, resp);
    json_decref(resp);
    return 0;
}

static int show(struct cli *c, int argc, char **argv)
{
    struct cli_args a;
    if (!cli_parse(argc, argv, "", &a))
        return 2;
    if (one_name(&a, "show"))
        return 2;
    json_t *v = NULL;
    if (fetch_vault(c, a.pos[0], &v) != CK_OK)
        return cli_fail();
    print_vault(c, v);
    json_decref(v);
    return 0;
}

static int list(struct cli *c, int argc, char **argv)
{
    struct cli_args a;
    if (!cli_parse(argc, argv, "subscription=,resource-group=", &a))
        return 2;
    if (a.npos)
        return cli_usage_error("unexpected argument '%s'", a.pos[0]);
    const char *sub = cli_get(&a, "subscription"), *rg = cli_get(&a, "resource-group");
    if (!sub)
        return cli_usage_error("vault list needs --subscription");
    char *es = ck_client_escape(sub), *path;
    if (rg) {
        char *er = ck_client_escape(rg);
        path = ck_sprintf("/subscriptions/%s/resourceGroups/%s/providers/Microsoft.KeyVault/"
                          "vaults?" API_VERSION,
                          es, er);
        free(er);
    } else {
        path = ck_sprintf("/subscriptions/%s/providers/Microsoft.KeyVault/vaults?" API_VERSION, es);
    }
    free(es);
    json_t *resp = NULL;
    ck_err rc = cli_call(c, "GET", path, NULL, &resp);
    free(path);
    if (rc != CK_OK)
        return cli_fail();
    json_t *value = json_object_get(resp, "value");
    if (c->output == CLI_JSON) {
        cli_print_json(value);
        json_decref(resp);
        return 0;
    }
    json_t *rows = json_array();
    size_t i;
    json_t *v;
    json_array_foreach(value, i, v)
    {
        json_t *props = json_object_get(v, "properties");
        char *vrg = resource_group_of(v);
        json_array_append_new(rows, json_pack("{s:s,s:s,s:s,s:s,s:s}", "name", str(v, "name"),
                                              "resourceGroup", vrg, "location", str(v, "location"),
                                              "sku", str(json_object_get(props, "sku"), "name"),
                                              "vaultUri", str(props, "vaultUri")));
        free(vrg);
    }
    static const char *const cols[] = {"NAME=name", "RESOURCE GROUP=resourceGroup",
                                       "LOCATION=location", "SKU=sku", "VAULT URI=vaultUri"};
    cli_print_table(c, rows, cols, sizeof cols / sizeof *cols);
    json_decref(rows);
    json_decref(resp);
    return 0;
}

static int delete_vault(struct cli *c, int argc, char **argv)
{
    struct cli_args a;
    if (!cli_parse(argc, argv, "", &a))
        return 2;
    if (one_name(&a, "delete"))
        return 2;
    json_t *v = NULL;
    if (fetch_vault(c, a.pos[0], &v) != CK_OK)
        return cli_fail();
    char *path = arm_path(v, "");
    ck_err rc = cli_call(c, "DELETE", path, NULL, NULL);
    free(path);
    if (rc == CK_OK) {
        if (c->output == CLI_JSON) {
            json_t *o = json_pack("{s:s,s:b}", "name", str(v, "name"), "deleted", 1);
            cli_print_json(o);
            json_decref(o);
        } else {
            printf("Deleted vault %s\n", str(v, "name"));
        }
    }
    json_decref(v);
    return rc == CK_OK ? 0 : cli_fail();
}

/* The principal a policy command names: object id and tenant. Returns 0,
 * or the exit status of a failure it has reported. */
static int resolve_principal(struct cli *c, const struct cli_args *a, json_t *vault,
                             char **object_id, char **tenant)
{
    const char *upn = cli_get(a, "upn"), *oid = cli_get(a, "object-id");
    const char *app = cli_get(a, "app-id");
    if ((upn != NULL) + (oid != NULL) + (app != NULL) != 1)
        return cli_usage_error("name the principal with exactly one of --upn, --object-id or "
                               "--app-id");
    const char *ref = upn ? upn : oid ? oid : app;
    char *e = ck_client_escape(ref);
    char *path = ck_sprintf("/directory/principals/%s", e);
    json_t *p = NULL;
    ck_err rc = cli_call(c, "GET", path, NULL, &p);
    free(e);
    free(path);
    if (rc == CK_ENOTFOUND && oid) {
        /* An object id from elsewhere (another directory) is used as given,
         * in the vault's tenant. */
        *object_id = ck_strdup(oid);
        *tenant = ck_strdup(str(json_object_get(vault, "properties"), "tenantId"));
        return 0;
    }
    if (rc != CK_OK)
        return cli_fail();
    bool right_kind = upn   ? json_object_get(p, "userPrincipalName") != NULL
                      : app ? json_object_get(p, "applicationId") != NULL
                            : true;
    if (!right_kind) {
        json_decref(p);
        ck_err_set(CK_EINVAL, "'%s' is not a %s", ref, upn ? "user" : "application");
        return cli_fail();
    }
    *object_id = ck_strdup(str(p, "objectId"));
    *tenant = ck_strdup(str(p, "tenantId"));
    json_decref(p);
    return 0;
}

static void print_policy_result(struct cli *c, json_t *policies)
{
    if (c->output == CLI_JSON) {
        cli_print_json(policies);
        return;
    }
    puts("Access Policies:");
    print_policies(c, policies);
}

static int policy_set(struct cli *c, int argc, char **argv)
{
    struct cli_args a;
    if (!cli_parse(argc, argv, "upn=,object-id=,app-id=,key-permissions=", &a))
        return 2;
    if (one_name(&a, "policy set"))
        return 2;
    const char *perms = cli_get(&a, "key-permissions");
    if (!perms)
        return cli_usage_error("vault policy set needs --key-permissions (e.g. get,wrapKey,"
                               "unwrapKey)");
    json_t *v = NULL;
    if (fetch_vault(c, a.pos[0], &v) != CK_OK)
        return cli_fail();
    char *oid = NULL, *tenant = NULL;
    int st = resolve_principal(c, &a, v, &oid, &tenant);
    if (st) {
        json_decref(v);
        return st;
    }
    json_t *keys = json_array();
    char *copy = ck_strdup(perms), *save = NULL;
    for (char *t = strtok_r(copy, ", ", &save); t; t = strtok_r(NULL, ", ", &save))
        json_array_append_new(keys, json_string(t));
    free(copy);
    json_t *body = json_pack("{s:{s:[{s:s,s:s,s:{s:o,s:[],s:[],s:[]}}]}}", "properties",
                             "accessPolicies", "tenantId", tenant, "objectId", oid, "permissions",
                             "keys", keys, "secrets", "certificates", "storage");
    char *path = arm_path(v, "/accessPolicies/replace");
    json_t *resp = NULL;
    ck_err rc = cli_call(c, "PUT", path, body, &resp);
    free(path);
    json_decref(body);
    free(oid);
    free(tenant);
    json_decref(v);
    if (rc != CK_OK)
        return cli_fail();
    print_policy_result(c, json_object_get(json_object_get(resp, "properties"), "accessPolicies"));
    json_decref(resp);
    return 0;
}

static int policy_remove(struct cli *c, int argc, char **argv)
{
    struct cli_args a;
    if (!cli_parse(argc, argv, "upn=,object-id=,app-id=", &a))
        return 2;
    if (one_name(&a, "policy remove"))
        return 2;
    json_t *v = NULL;
    if (fetch_vault(c, a.pos[0], &v) != CK_OK)
        return cli_fail();
    char *oid = NULL, *tenant = NULL;
    int st = resolve_principal(c, &a, v, &oid, &tenant);
    if (st) {
        json_decref(v);
        return st;
    }
    /* Remove-AzKeyVaultAccessPolicy: drop every entry of that object id
     * (case-insensitively) and PUT the whole vault back. */
    json_t *props = json_deep_copy(json_object_get(v, "properties"));
    json_t *kept = json_array();
    size_t i, dropped = 0;
    json_t *p;
    json_array_foreach(json_object_get(props, "accessPolicies"), i, p)
    {
        if (strcasecmp(str(p, "objectId"), oid) == 0)
            dropped++;
        else
            json_array_append(kept, p);
    }
    json_object_set_new(props, "accessPolicies", kept);
    int status = 0;
    if (dropped == 0) {
        fprintf(stderr, "ckey: vault %s has no access policy for %s; nothing changed\n",
                str(v, "name"), oid);
        print_policy_result(c, kept);
    } else {
        json_t *body = json_pack("{s:s,s:O,s:O}", "location", str(v, "location"), "tags",
                                 json_object_get(v, "tags"), "properties", props);
        char *path = arm_path(v, "");
        json_t *resp = NULL;
        ck_err rc = cli_call(c, "PUT", path, body, &resp);
        free(path);
        json_decref(body);
        if (rc == CK_OK)
            print_policy_result(
                c, json_object_get(json_object_get(resp, "properties"), "accessPolicies"));
        else
            status = cli_fail();
        json_decref(resp);
    }
    json_decref(props);
    free(oid);
    free(tenant);
    json_decref(v);
    return status;
}

static int policy(struct cli *c, int argc, char **argv)
{
    static const struct cli_verb verbs[] = {
        {"set", policy_set},
        {"remove", policy_remove},
    };
    return cli_dispatch(c, argc, argv, "vault policy", help, verbs, sizeof verbs / sizeof *verbs);
}

int cli_vault(struct cli *c, int argc, char **argv)
{
    static const struct cli_verb verbs[] = {
        {"create", create},       {"show", show},     {"list", list},
        {"delete", delete_vault}, {"policy", policy},
    };
    return cli_dispatch(c, argc, argv, "vault", help, verbs, sizeof verbs / sizeof *verbs);
}
