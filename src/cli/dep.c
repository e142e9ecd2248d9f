/*
 * dep.c — `ckey dep new|get|set|refresh`: a tenant's data encryption
 * policies for mail, as New-, Get- and Set-DataEncryptionPolicy manage them.
 *
 * `get` with a DEP prints Get-DataEncryptionPolicy's properties one per
 * line; without one it lists the tenant's customer DEPs as a table.
 */
#include "cli/cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const char help[] =
    "Usage:\n"
    "  ckey dep new --tenant T --name NAME --key URI1 --key URI2 [--description D]\n"
    "               [--enabled true|false]\n"
    "  ckey dep get --tenant T [ID_OR_NAME]\n"
    "  ckey dep set --tenant T ID_OR_NAME [--name NAME] [--description D]\n"
    "               [--enabled true|false]\n"
    "  ckey dep refresh --tenant T ID_OR_NAME\n"
    "  ckey dep purge-request --tenant T ID_OR_NAME --reason R --contact C\n"
    "\n"
    "A DEP wraps its key with two RSA root keys in two different vaults (--key: key\n"
    "URIs such as https://contoso-vaulta1.vault.localhost:8443/keys/key1, without a\n"
    "version) and a service-held availability key. The keys must allow wrapKey and\n"
    "unwrapKey, have no expiry, and sit in vaults with purge protection; the service\n"
    "checks them. A tenant has at most 50 DEPs. --enabled false stops new\n"
    "assignments. refresh rewraps the DEP key under the newest version of each root\n"
    "key (run it after rolling a key). purge-request asks for the permanent purge of\n"
    "every mailbox under the DEP (docs/purge.md); it is refused until both root keys\n"
    "deny wrapKey to the ckey Mail Service. --tenant defaults to $CKEY_TENANT.\n"
    "Tenant admins or the operator.\n";

static const char *const dep_fields[] = {
    "Identity=Identity",
    "Name=Name",
    "Description=Description",
    "AzureKeyIDs=AzureKeyIDs",
    "Enabled=Enabled",
    "KeyVersions=KeyVersions",
    "WhenCreatedUTC=WhenCreatedUTC",
    "WhenChangedUTC=WhenChangedUTC",
    "PermanentDataPurgeRequested=PermanentDataPurgeRequested",
    "PermanentDataPurgeReason=PermanentDataPurgeReason",
    "PermanentDataPurgeContact=PermanentDataPurgeContact",
};

static void print_dep(struct cli *c, json_t *dep)
{
    cli_print_object(c, dep, dep_fields, sizeof dep_fields / sizeof *dep_fields);
}

/* --enabled true|false into *out. */
static bool parse_enabled(const char *v, bool *out)
{
    if (strcasecmp(v, "true") == 0 || strcasecmp(v, "$true") == 0) {
        *out = true;
        return true;
    }
    if (strcasecmp(v, "false") == 0 || strcasecmp(v, "$false") == 0) {
        *out = false;
        return true;
    }
    return false;
}

/* Every --key value, also split at commas ("--key URI1,URI2"). */
static json_t *key_uris(const struct cli_args *a)
{
    json_t *arr = json_array();
    for (int i = 0; i < a->nkv; i++) {
        if (a->keylen[i] != 3 || strncmp(a->key[i], "key", 3) != 0)
            continue;
        char *copy = ck_strdup(a->val[i]), *save = NULL;
        for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save))
            json_array_append_new(arr, json_string(t));
        free(copy);
    }
    return arr;
}

/* Sets the optional --name, --description and --enabled into body; a usage
 * error (2) for a bad --enabled. */
static int optional_fields(const struct cli_args *a, json_t *body)
{
    if (cli_get(a, "name"))
        json_object_set_new(body, "name", json_string(cli_get(a, "name")));
    if (cli_get(a, "description"))
        json_object_set_new(body, "description", json_string(cli_get(a, "description")));
    if (cli_get(a, "enabled")) {
        bool on;
        if (!parse_enabled(cli_get(a, "enabled"), &on))
            return cli_usage_error("--enabled takes true or false, not '%s'",
                                   cli_get(a, "enabled"));
        json_object_set_new(body, "enabled", json_boolean(on));
    }
    return 0;
}

/* The answer of one call printed as a DEP. */
static int call_and_print(struct cli *c, const char *method, const char *path, json_t *body)
{
    json_t *resp = NULL;
    ck_err rc = cli_call(c, method, path, body, &resp);
    json_decref(body);
    if (rc != CK_OK)
        return cli_fail();
    print_dep(c, resp);
    json_decref(resp);
    return 0;
}

static int dep_new(struct cli *c, int argc, char **argv)
{
    struct cli_args a;
    if (!cli_parse(argc, argv, "tenant=,name=,key=,description=,enabled=", &a))
        return 2;
    const char *tenant = cli_tenant_arg(&a);
    if (!tenant)
        return cli_usage_error("dep new needs --tenant T (or CKEY_TENANT)");
    if (a.npos)
        return cli_usage_error("dep new takes no arguments; name the DEP with --name");
    if (!cli_get(&a, "name"))
        return cli_usage_error("dep new needs --name NAME");
    json_t *keys = key_uris(&a);
    if (json_array_size(keys) != 2) {
        size_t n = json_array_size(keys);
        json_decref(keys);
        return cli_usage_error("dep new needs two root keys (--key URI1 --key URI2), got %zu", n);
    }
    json_t *body = json_pack("{s:o}", "azureKeyIds", keys);
    int st = optional_fields(&a, body);
    if (st) {
        json_decref(body);
        return st;
    }
    char *path = cli_path("/tenants/%s/deps", tenant);
    st = call_and_print(c, "POST", path, body);
    free(path);
    return st;
}

static int dep_get(struct cli *c, int argc, char **argv)
{
    struct cli_args a;
    if (!cli_parse(argc, argv, "tenant=", &a))
        return 2;
    const char *tenant = cli_tenant_arg(&a);
    if (!tenant)
        return cli_usage_error("dep get needs --tenant T (or CKEY_TENANT)");
    if (a.npos > 1)
        return cli_usage_error("dep get takes at most one DEP (id or name)");
    if (a.npos == 1) {
        char *path = cli_path("/tenants/%s/deps/%s", tenant, a.pos[0]);
        int st = call_and_print(c, "GET", path, NULL);
        free(path);
        return st;
    }
    char *path = cli_path("/tenants/%s/deps", tenant);
    static const char *const cols[] = {"NAME=Name",
                                       "IDENTITY=Identity",
                                       "ENABLED=Enabled",
                                       "KEYVERSIONS=KeyVersions",
                                       "WHENCHANGEDUTC=WhenChangedUTC",
                                       "PURGEREQUESTED=PermanentDataPurgeRequested"};
    return cli_call_table(c, path, cols, sizeof cols / sizeof *cols);
}

static int dep_set(struct cli *c, int argc, char **argv)
{
    struct cli_args a;
    if (!cli_parse(argc, argv, "tenant=,name=,description=,enabled=", &a))
        return 2;
    const char *tenant = cli_tenant_arg(&a);
    if (!tenant)
        return cli_usage_error("dep set needs --tenant T (or CKEY_TENANT)");
    if (a.npos != 1)
        return cli_usage_error("dep set needs one DEP (id or name)");
    json_t *body = json_object();
    int st = optional_fields(&a, body);
    if (!st && json_object_size(body) == 0)
        st = cli_usage_error("dep set needs something to change: --name, --description or "
                             "--enabled");
    if (st) {
        json_decref(body);
        return st;
    }
    char *path = cli_path("/tenants/%s/deps/%s", tenant, a.pos[0]);
    st = call_and_print(c, "PATCH", path, body);
    free(path);
    return st;
}

static int dep_refresh(struct cli *c, int argc, char **argv)
{
    struct cli_args a;
    if (!cli_parse(argc, argv, "tenant=", &a))
        return 2;
    const char *tenant = cli_tenant_arg(&a);
    if (!tenant)
        return cli_usage_error("dep refresh needs --tenant T (or CKEY_TENANT)");
    if (a.npos != 1)
        return cli_usage_error("dep refresh needs one DEP (id or name)");
    char *path = cli_path("/tenants/%s/deps/%s/refresh", tenant, a.pos[0]);
    int st = call_and_print(c, "POST", path, NULL);
    free(path);
    return st;
}

static int dep_purge_request(struct cli *c, int argc, char **argv)
{
    struct cli_args a;
    if (!cli_parse(argc, argv, "tenant=,reason=,contact=", &a))
        return 2;
    const char *tenant = cli_tenant_arg(&a);
    if (!tenant)
        return cli_usage_error("dep purge-request needs --tenant T (or CKEY_TENANT)");
    if (a.npos != 1)
        return cli_usage_error("dep purge-request needs one DEP (id or name)");
    return cli_purge_request(c, cli_path("/tenants/%s/deps/%s/purge-request", tenant, a.pos[0]),
                             &a);
}

int cli_dep(struct cli *c, int argc, char **argv)
{
    static const struct cli_verb verbs[] = {
        {"new", dep_new},
        {"get", dep_get},
        {"set", dep_set},
        {"refresh", dep_refresh},
        {"purge-request", dep_purge_request},
    };
    return cli_dispatch(c, argc, argv, "dep", help, verbs, sizeof verbs / sizeof *verbs);
}
