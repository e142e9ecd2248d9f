/*
 * Integration tests of the vault management plane: a real `ckey server
 * --dev` over HTTPS. The operator creates a subscription owned by alice and
 * issues her a token; alice manages vaults through the ARM-shaped API and
 * the ckey CLI; carol, who owns nothing, is refused. Every bad request must
 * get a 4xx with an error body and leave the vaults exactly as they were.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

static struct srv S;
static char *alice_tok, *carol_tok;
static char alice_oid[64], bob_oid[64], tenant[64];

#define RG_BASE                                                                                    \
    "/subscriptions/sub-contoso/resourceGroups/rg-ck/providers/Microsoft.KeyVault/vaults"
#define SUB_LIST                                                                                   \
    "/subscriptions/sub-contoso/providers/Microsoft.KeyVault/vaults?api-version=2023-07-01"

/* ---------- helpers ---------- */

static char *issue_token(const char *who)
{
    return token_for(&S, who, "1h", NULL);
}

/* One request with a JSON body (NULL: none); the result is the caller's. */
static void call(const char *method, const char *path, const char *token, json_t *body,
                 struct http_result *r)
{
    char *s = body ? json_dumps(body, JSON_COMPACT) : NULL;
    http(&S, method, path, token, s, s ? strlen(s) : 0, NULL, r);
    free(s);
    json_decref(body);
}

static void call_raw(const char *method, const char *path, const char *token, const char *body,
                     struct http_result *r)
{
    http(&S, method, path, token, body, body ? strlen(body) : 0, NULL, r);
}

static void assert_error(const struct http_result *r, long status, const char *code,
                         const char *mentions)
{
    if (r->status != status)
        fail_msg("status %ld, want %ld: %s", r->status, status, r->body ? r->body : "");
    assert_non_null(r->json);
    json_t *err = json_object_get(r->json, "error");
    assert_non_null(err);
    if (code)
        assert_string_equal(json_string_value(json_object_get(err, "code")), code);
    const char *msg = json_string_value(json_object_get(err, "message"));
    assert_non_null(msg);
    assert_true(strlen(msg) > 0);
    if (mentions && !strstr(msg, mentions))
        fail_msg("message '%s' does not mention '%s'", msg, mentions);
}

static char *vault_path(const char *name, const char *suffix)
{
    char *p = NULL;
    assert_true(asprintf(&p, RG_BASE "/%s%s?api-version=2026-02-01", name, suffix) > 0);
    return p;
}

static json_t *policy(const char *oid, json_t *keys)
{
    return json_pack("{s:s,s:s,s:{s:o,s:[],s:[],s:[]}}", "tenantId", tenant, "objectId", oid,
                     "permissions", "keys", keys, "secrets", "certificates", "storage");
}

static json_t *put_body(const char *location, json_t *policies)
{
    return json_pack("{s:s,s:{},s:{s:s,s:{s:s,s:s},s:o,s:b}}", "location", location, "tags",
                     "properties", "tenantId", tenant, "sku", "family", "A", "name", "standard",
                     "accessPolicies", policies, "enableSoftDelete", 1);
}

/* The JSON body of a GET (operator), for before/after comparisons. */
static json_t *snapshot(const char *path)
{
    struct http_result r;
    http(&S, "GET", path, S.token, NULL, 0, NULL, &r);
    assert_int_equal(r.status, 200);
    json_t *j = json_incref(r.json);
    http_free(&r);
    return j;
}

static json_t *find_policy(json_t *policies, const char *oid)
{
    size_t i;
    json_t *p;
    json_array_foreach(policies, i, p) if (strcmp(json_string_value(json_object_get(p, "objectId")),
                                                  oid) == 0) return p;
    return NULL;
}

static void assert_keys(json_t *policy_entry, const char *expected_csv)
{
    assert_non_null(policy_entry);
    json_t *keys = json_object_get(json_object_get(policy_entry, "permissions"), "keys");
    char buf[512] = "";
    size_t i;
    json_t *k;
    json_array_foreach(keys, i, k)
    {
        if (i)
            strcat(buf, ",");
        strcat(buf, json_string_value(k));
    }
    assert_string_equal(buf, expected_csv);
}

/* A line "Label   : value" in CLI output (both sides trimmed). */
static bool has_line(const char *out, const char *label, const char *value)
{
    const char *line = out;
    while (line && *line) {
        const char *end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line) : strlen(line);
        char *l = strndup(line, len);
        char *colon = strchr(l, ':');
        bool match = false;
        if (colon) {
            char *k = l, *v = colon + 1;
            *colon = '\0';
            while (*k == ' ')
                k++;
            for (char *e = colon - 1; e >= k && *e == ' '; e--)
                *e = '\0';
            while (*v == ' ')
                v++;
            for (char *e = v + strlen(v) - 1; e >= v && *e == ' '; e--)
                *e = '\0';
            match = strcmp(k, label) == 0 && strcmp(v, value) == 0;
        }
        free(l);
        if (match)
            return true;
        line = end ? end + 1 : NULL;
    }
    return false;
}

static void assert_line(const char *out, const char *label, const char *value)
{
    if (!has_line(out, label, value))
        fail_msg("no line '%s : %s' in:\n%s", label, value, out);
}

static void lookup_oid(const char *ref, char *oid, char *tenant_out)
{
    struct http_result r;
    char path[200];
    snprintf(path, sizeof path, "/directory/principals/%s", ref);
    http(&S, "GET", path, S.token, NULL, 0, NULL, &r);
    assert_int_equal(r.status, 200);
    snprintf(oid, 64, "%s", json_string_value(json_object_get(r.json, "objectId")));
    if (tenant_out)
        snprintf(tenant_out, 64, "%s", json_string_value(json_object_get(r.json, "tenantId")));
    http_free(&r);
}

/* ---------- setup ---------- */

static int setup(void **state)
{
    srv_start(&S, false);
    char *out = NULL;
    const char *users[] = {"alice@contoso.com", "bob@contoso.com", "carol@contoso.com"};
    for (size_t i = 0; i < 3; i++) {
        if (cli(&S, NULL, &out, "principal add --upn %s", users[i]) != 0)
            return -1;
        free(out);
    }
    if (cli(&S, NULL, &out, "principal add --app 'Contoso Sync App'") != 0)
        return -1;
    free(out);
    alice_tok = issue_token("alice@contoso.com");
    carol_tok = issue_token("carol@contoso.com");
    lookup_oid("alice@contoso.com", alice_oid, tenant);
    lookup_oid("bob@contoso.com", bob_oid, NULL);
    /* The operator creates alice's subscription with the CLI. */
    int st = cli(&S, NULL, &out, "subscription create sub-contoso --owner alice@contoso.com");
    bool ok = st == 0 && strstr(out, "alice@contoso.com") && strstr(out, "sub-contoso");
    if (!ok)
        fprintf(stderr, "subscription create: %s\n", out);
    free(out);
    return ok ? 0 : -1;
}

static int teardown(void **state)
{
    free(alice_tok);
    free(carol_tok);
    int status = srv_stop(&S);
    srv_cleanup(&S);
    return status == 0 ? 0 : -1;
}

/* ---------- subscriptions and the directory ---------- */

static void test_subscription_api(void **state)
{
    struct http_result r;
    /* Only operators create subscriptions. */
    call("PUT", "/admin/subscriptions/sub-other", alice_tok,
         json_pack("{s:[s]}", "owners", "alice@contoso.com"), &r);
    assert_error(&r, 403, "Forbidden", "not an operator");
    http_free(&r);
    /* Owners must resolve; nothing is created otherwise. */
    call("PUT", "/admin/subscriptions/sub-other", S.token,
         json_pack("{s:[s,s]}", "owners", "alice@contoso.com", "nobody@contoso.com"), &r);
    assert_error(&r, 400, "BadParameter", "nobody@contoso.com");
    http_free(&r);
    http(&S, "GET", "/admin/subscriptions/sub-other", S.token, NULL, 0, NULL, &r);
    assert_error(&r, 404, "SubscriptionNotFound", "sub-other");
    http_free(&r);

    call("PUT", "/admin/subscriptions/sub-other", S.token,
         json_pack("{s:[s]}", "owners", "alice@contoso.com"), &r);
    assert_int_equal(r.status, 201);
    assert_string_equal(json_string_value(json_object_get(r.json, "id")), "sub-other");
    json_t *owners = json_object_get(r.json, "owners");
    assert_int_equal(json_array_size(owners), 1);
    assert_string_equal(json_string_value(json_object_get(json_array_get(owners, 0), "objectId")),
                        alice_oid);
    assert_string_equal(json_string_value(json_object_get(json_array_get(owners, 0), "name")),
                        "alice@contoso.com");
    http_free(&r);
    /* Creating it twice is a conflict. */
    call("PUT", "/admin/subscriptions/sub-other", S.token, json_pack("{s:[]}", "owners"), &r);
    assert_error(&r, 409, "Conflict", "already exists");
    http_free(&r);
    /* Owners see their subscription; others do not. */
    http(&S, "GET", "/admin/subscriptions/sub-contoso", alice_tok, NULL, 0, NULL, &r);
    assert_int_equal(r.status, 200);
    http_free(&r);
    http(&S, "GET", "/admin/subscriptions/sub-contoso", carol_tok, NULL, 0, NULL, &r);
    assert_error(&r, 403, "Forbidden", "carol@contoso.com");
    http_free(&r);
}

static void test_directory_lookup(void **state)
{
    struct http_result r;
    http(&S, "GET", "/directory/principals/bob@contoso.com", carol_tok, NULL, 0, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(json_string_value(json_object_get(r.json, "objectId")), bob_oid);
    assert_string_equal(json_string_value(json_object_get(r.json, "type")), "user");
    assert_string_equal(json_string_value(json_object_get(r.json, "userPrincipalName")),
                        "bob@contoso.com");
    assert_string_equal(json_string_value(json_object_get(r.json, "tenantId")), tenant);
    assert_null(json_object_get(r.json, "roles")); /* a directory shows identity, not roles */
    http_free(&r);
    http(&S, "GET", "/directory/principals/Contoso%20Sync%20App", carol_tok, NULL, 0, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(json_string_value(json_object_get(r.json, "type")), "application");
    assert_non_null(json_object_get(r.json, "applicationId"));
    assert_string_equal(json_string_value(json_object_get(r.json, "displayName")),
                        "Contoso Sync App");
    http_free(&r);
    http(&S, "GET", "/directory/principals/nobody@contoso.com", carol_tok, NULL, 0, NULL, &r);
    assert_error(&r, 404, NULL, "nobody@contoso.com");
    http_free(&r);
    http(&S, "GET", "/directory/principals/bob@contoso.com", NULL, NULL, 0, NULL, &r);
    assert_int_equal(r.status, 401);
    http_free(&r);
}

/* ---------- ARM vaults ---------- */

/* The exact ARM shape (reference §9). */
static void assert_vault_shape(json_t *v, const char *name, const char *location, int retention,
                               bool purge_protection)
{
    char id[300], uri[200];
    snprintf(id, sizeof id, RG_BASE "/%s", name);
    snprintf(uri, sizeof uri, "https://%s.vault.localhost:%u/", name, S.port);
    assert_int_equal(json_object_size(v), 6);
    assert_string_equal(json_string_value(json_object_get(v, "id")), id);
    assert_string_equal(json_string_value(json_object_get(v, "name")), name);
    assert_string_equal(json_string_value(json_object_get(v, "type")), "Microsoft.KeyVault/vaults");
    assert_string_equal(json_string_value(json_object_get(v, "location")), location);
    assert_true(json_is_object(json_object_get(v, "tags")));
    json_t *p = json_object_get(v, "properties");
    assert_int_equal(json_object_size(p), purge_protection ? 13 : 12);
    assert_string_equal(json_string_value(json_object_get(p, "tenantId")), tenant);
    json_t *sku = json_object_get(p, "sku");
    assert_int_equal(json_object_size(sku), 2);
    assert_string_equal(json_string_value(json_object_get(sku, "family")), "A");
    assert_non_null(json_string_value(json_object_get(sku, "name")));
    assert_true(json_is_array(json_object_get(p, "accessPolicies")));
    assert_string_equal(json_string_value(json_object_get(p, "vaultUri")), uri);
    assert_true(json_is_false(json_object_get(p, "enabledForDeployment")));
    assert_true(json_is_false(json_object_get(p, "enabledForDiskEncryption")));
    assert_true(json_is_false(json_object_get(p, "enabledForTemplateDeployment")));
    assert_true(json_is_true(json_object_get(p, "enableSoftDelete")));
    assert_int_equal(json_integer_value(json_object_get(p, "softDeleteRetentionInDays")),
                     retention);
    assert_true(json_is_false(json_object_get(p, "enableRbacAuthorization")));
    if (purge_protection)
        assert_true(json_is_true(json_object_get(p, "enablePurgeProtection")));
    else
        assert_null(json_object_get(p, "enablePurgeProtection"));
    assert_string_equal(json_string_value(json_object_get(p, "provisioningState")), "Succeeded");
    assert_string_equal(json_string_value(json_object_get(p, "publicNetworkAccess")), "Enabled");
    /* Every policy has the four permission lists. */
    size_t i;
    json_t *ap;
    json_array_foreach(json_object_get(p, "accessPolicies"), i, ap)
    {
        assert_string_equal(json_string_value(json_object_get(ap, "tenantId")), tenant);
        assert_non_null(json_string_value(json_object_get(ap, "objectId")));
        json_t *perms = json_object_get(ap, "permissions");
        assert_int_equal(json_object_size(perms), 4);
        assert_true(json_is_array(json_object_get(perms, "keys")));
        assert_int_equal(json_array_size(json_object_get(perms, "secrets")), 0);
        assert_int_equal(json_array_size(json_object_get(perms, "certificates")), 0);
        assert_int_equal(json_array_size(json_object_get(perms, "storage")), 0);
    }
}

static void test_arm_put_get_list(void **state)
{
    struct http_result r;
    char *path = vault_path("Contoso-VaultA1", "");
    /* Created with an upper-case name and a display-form location. */
    call("PUT", path, alice_tok,
         put_body("West US", json_pack("[o]", policy(alice_oid, json_pack("[s]", "all")))), &r);
    if (r.status != 200)
        fail_msg("PUT: %ld %s", r.status, r.body);
    assert_vault_shape(r.json, "contoso-vaulta1", "westus", 90, false);
    json_t *pol = json_object_get(json_object_get(r.json, "properties"), "accessPolicies");
    assert_int_equal(json_array_size(pol), 1);
    assert_keys(find_policy(pol, alice_oid),
                "encrypt,decrypt,wrapKey,unwrapKey,sign,verify,get,list,create,update,import,"
                "delete,backup,restore,recover,purge,release,rotate,getrotationpolicy,"
                "setrotationpolicy");
    json_t *created = json_incref(r.json);
    http_free(&r);

    /* GET, in any case of the name, shows the same resource. */
    http(&S, "GET", path, alice_tok, NULL, 0, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_true(json_equal(r.json, created));
    http_free(&r);
    http(&S, "GET", "/ckey/vaults/contoso-vaulta1", alice_tok, NULL, 0, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_true(json_equal(r.json, created));
    http_free(&r);
    /* The vault URI follows the Host the client used. */
    http(&S, "GET", "/ckey/vaults/contoso-vaulta1", alice_tok, NULL, 0, "Host: example.test", &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(r.json, "properties"), "vaultUri")),
        "https://contoso-vaulta1.vault.localhost/");
    http_free(&r);

    /* A second vault, purge-protected, premium, 30 days, with tags. */
    char *pathb = vault_path("contoso-vaultb1", "");
    json_t *body = put_body("northeurope", json_pack("[]"));
    json_t *props = json_object_get(body, "properties");
    json_object_set_new(props, "enablePurgeProtection", json_true());
    json_object_set_new(props, "softDeleteRetentionInDays", json_integer(30));
    json_object_set_new(json_object_get(props, "sku"), "name", json_string("premium"));
    json_object_set_new(body, "tags", json_pack("{s:s}", "env", "prod"));
    call("PUT", pathb, alice_tok, body, &r);
    assert_int_equal(r.status, 200);
    assert_vault_shape(r.json, "contoso-vaultb1", "northeurope", 30, true);
    assert_string_equal(json_string_value(json_object_get(
                            json_object_get(json_object_get(r.json, "properties"), "sku"), "name")),
                        "premium");
    assert_string_equal(json_string_value(json_object_get(json_object_get(r.json, "tags"), "env")),
                        "prod");
    http_free(&r);

    /* Lists: by resource group and by subscription. */
    http(&S, "GET", RG_BASE "?api-version=2026-02-01", alice_tok, NULL, 0, NULL, &r);
    assert_int_equal(r.status, 200);
    json_t *value = json_object_get(r.json, "value");
    assert_int_equal(json_array_size(value), 2);
    assert_true(json_equal(json_array_get(value, 0), created));
    assert_string_equal(json_string_value(json_object_get(json_array_get(value, 1), "name")),
                        "contoso-vaultb1");
    http_free(&r);
    http(&S, "GET", SUB_LIST, alice_tok, NULL, 0, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_int_equal(json_array_size(json_object_get(r.json, "value")), 2);
    http_free(&r);
    http(&S, "GET",
         "/subscriptions/sub-contoso/resourceGroups/empty-rg/providers/Microsoft.KeyVault/"
         "vaults",
         alice_tok, NULL, 0, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_int_equal(json_array_size(json_object_get(r.json, "value")), 0);
    http_free(&r);

    /* A PUT of an existing vault is an update (200) that keeps what it
     * does not mention. */
    body = put_body("westus", json_pack("[]"));
    json_object_del(json_object_get(body, "properties"), "accessPolicies");
    json_object_set_new(json_object_get(body, "properties"), "softDeleteRetentionInDays",
                        json_integer(60));
    call("PUT", path, alice_tok, body, &r);
    assert_int_equal(r.status, 200);
    assert_vault_shape(r.json, "contoso-vaulta1", "westus", 60, false);
    assert_int_equal(
        json_array_size(json_object_get(json_object_get(r.json, "properties"), "accessPolicies")),
        1);
    http_free(&r);

    json_decref(created);
    free(path);
    free(pathb);
}

static void test_arm_patch(void **state)
{
    struct http_result r;
    char *path = vault_path("contoso-vaulta1", "");
    json_t *before = snapshot(path);

    call("PATCH", path, alice_tok, json_pack("{s:{s:s}}", "tags", "owner", "alice"), &r);
    assert_int_equal(r.status, 200);
    assert_vault_shape(r.json, "contoso-vaulta1", "westus", 60, false);
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(r.json, "tags"), "owner")), "alice");
    /* Only the tags changed. */
    json_t *expect = json_deep_copy(before);
    json_object_set_new(expect, "tags", json_pack("{s:s}", "owner", "alice"));
    assert_true(json_equal(r.json, expect));
    json_decref(expect);
    http_free(&r);

    call("PATCH", path, alice_tok,
         json_pack("{s:{s:i,s:{s:s,s:s}}}", "properties", "softDeleteRetentionInDays", 45, "sku",
                   "family", "A", "name", "premium"),
         &r);
    assert_int_equal(r.status, 200);
    json_t *p = json_object_get(r.json, "properties");
    assert_int_equal(json_integer_value(json_object_get(p, "softDeleteRetentionInDays")), 45);
    assert_string_equal(json_string_value(json_object_get(json_object_get(p, "sku"), "name")),
                        "premium");
    assert_true(
        json_equal(json_object_get(p, "accessPolicies"),
                   json_object_get(json_object_get(before, "properties"), "accessPolicies")));
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(r.json, "tags"), "owner")), "alice");
    http_free(&r);

    /* accessPolicies in a PATCH replace the list. */
    call("PATCH", path, alice_tok,
         json_pack("{s:{s:[o,o]}}", "properties", "accessPolicies",
                   policy(alice_oid, json_pack("[s]", "all")),
                   policy(bob_oid, json_pack("[s,s]", "get", "WRAPKEY"))),
         &r);
    assert_int_equal(r.status, 200);
    json_t *pol = json_object_get(json_object_get(r.json, "properties"), "accessPolicies");
    assert_int_equal(json_array_size(pol), 2);
    assert_keys(find_policy(pol, bob_oid), "wrapKey,get");
    http_free(&r);

    /* Purge protection on, by PATCH; it shows as true from then on. */
    call("PATCH", path, alice_tok, json_pack("{s:{s:b}}", "properties", "enablePurgeProtection", 1),
         &r);
    assert_int_equal(r.status, 200);
    assert_vault_shape(r.json, "contoso-vaulta1", "westus", 45, true);
    http_free(&r);

    /* PATCH of a missing vault. */
    char *missing = vault_path("no-such-vault", "");
    call("PATCH", missing, alice_tok, json_pack("{s:{}}", "tags"), &r);
    assert_error(&r, 404, "ResourceNotFound", "no-such-vault");
    http_free(&r);
    free(missing);
    json_decref(before);
    free(path);
}

static void test_arm_access_policies(void **state)
{
    struct http_result r;
    char *add = vault_path("contoso-vaultb1", "/accessPolicies/add");
    char *replace = vault_path("contoso-vaultb1", "/accessPolicies/replace");
    char *remove = vault_path("contoso-vaultb1", "/accessPolicies/remove");

    call("PUT", add, alice_tok,
         json_pack("{s:{s:[o]}}", "properties", "accessPolicies",
                   policy(bob_oid, json_pack("[s,s]", "get", "list"))),
         &r);
    assert_int_equal(r.status, 200);
    assert_int_equal(json_object_size(r.json), 4);
    assert_string_equal(json_string_value(json_object_get(r.json, "type")),
                        "Microsoft.KeyVault/vaults/accessPolicies");
    assert_string_equal(json_string_value(json_object_get(r.json, "id")),
                        RG_BASE "/contoso-vaultb1/accessPolicies/add");
    assert_string_equal(json_string_value(json_object_get(r.json, "name")), "add");
    json_t *pol = json_object_get(json_object_get(r.json, "properties"), "accessPolicies");
    assert_int_equal(json_array_size(pol), 1);
    assert_keys(find_policy(pol, bob_oid), "get,list");
    http_free(&r);

    /* add merges into the entry. */
    call("PUT", add, alice_tok,
         json_pack("{s:{s:[o]}}", "properties", "accessPolicies",
                   policy(bob_oid, json_pack("[s]", "wrapKey"))),
         &r);
    assert_int_equal(r.status, 200);
    pol = json_object_get(json_object_get(r.json, "properties"), "accessPolicies");
    assert_int_equal(json_array_size(pol), 1);
    assert_keys(find_policy(pol, bob_oid), "wrapKey,get,list");
    http_free(&r);

    /* replace sets it; a second principal is appended. */
    call("PUT", replace, alice_tok,
         json_pack("{s:{s:[o,o]}}", "properties", "accessPolicies",
                   policy(bob_oid, json_pack("[s]", "unwrapKey")),
                   policy(alice_oid, json_pack("[s,s]", "create", "get"))),
         &r);
    assert_int_equal(r.status, 200);
    pol = json_object_get(json_object_get(r.json, "properties"), "accessPolicies");
    assert_int_equal(json_array_size(pol), 2);
    assert_keys(find_policy(pol, bob_oid), "unwrapKey");
    assert_keys(find_policy(pol, alice_oid), "get,create");
    http_free(&r);

    /* remove with permissions takes those; without, the entry. */
    call("PUT", remove, alice_tok,
         json_pack("{s:{s:[o]}}", "properties", "accessPolicies",
                   policy(alice_oid, json_pack("[s]", "create"))),
         &r);
    assert_int_equal(r.status, 200);
    pol = json_object_get(json_object_get(r.json, "properties"), "accessPolicies");
    assert_keys(find_policy(pol, alice_oid), "get");
    http_free(&r);
    call("PUT", remove, alice_tok,
         json_pack("{s:{s:[o]}}", "properties", "accessPolicies", policy(bob_oid, json_pack("[]"))),
         &r);
    assert_int_equal(r.status, 200);
    pol = json_object_get(json_object_get(r.json, "properties"), "accessPolicies");
    assert_int_equal(json_array_size(pol), 1);
    assert_null(find_policy(pol, bob_oid));
    http_free(&r);

    /* The vault agrees. */
    char *path = vault_path("contoso-vaultb1", "");
    json_t *v = snapshot(path);
    pol = json_object_get(json_object_get(v, "properties"), "accessPolicies");
    assert_int_equal(json_array_size(pol), 1);
    assert_keys(find_policy(pol, alice_oid), "get");
    json_decref(v);
    free(path);
    free(add);
    free(replace);
    free(remove);
}

static void test_arm_authorization(void **state)
{
    struct http_result r;
    char *path = vault_path("contoso-vaulta1", "");
    json_t *before = snapshot(SUB_LIST);
    const char *methods[] = {"GET", "PATCH", "DELETE"};
    for (size_t i = 0; i < 3; i++) {
        call(methods[i], path, carol_tok, strcmp(methods[i], "PATCH") ? NULL : json_pack("{}"), &r);
        assert_error(&r, 403, "Forbidden", "carol@contoso.com");
        assert_non_null(strstr(r.body, "sub-contoso"));
        assert_string_equal(
            json_string_value(json_object_get(
                json_object_get(json_object_get(r.json, "error"), "innererror"), "code")),
            "AuthorizationFailed");
        http_free(&r);
    }
    call("PUT", path, carol_tok, put_body("westus", json_pack("[]")), &r);
    assert_error(&r, 403, "Forbidden", "carol@contoso.com");
    http_free(&r);
    char *pol = vault_path("contoso-vaulta1", "/accessPolicies/add");
    call("PUT", pol, carol_tok,
         json_pack("{s:{s:[o]}}", "properties", "accessPolicies",
                   policy("carol", json_pack("[s]", "all"))),
         &r);
    assert_error(&r, 403, "Forbidden", "carol@contoso.com");
    http_free(&r);
    free(pol);
    http(&S, "GET", SUB_LIST, carol_tok, NULL, 0, NULL, &r);
    assert_error(&r, 403, "Forbidden", "carol@contoso.com");
    http_free(&r);
    http(&S, "GET", "/ckey/vaults/contoso-vaulta1", carol_tok, NULL, 0, NULL, &r);
    assert_error(&r, 403, "Forbidden", "carol@contoso.com");
    http_free(&r);
    /* The operator may look. */
    http(&S, "GET", path, S.token, NULL, 0, NULL, &r);
    assert_int_equal(r.status, 200);
    http_free(&r);
    /* Unknown subscription and unknown vault. */
    http(&S, "GET",
         "/subscriptions/sub-nope/resourceGroups/rg-ck/providers/Microsoft.KeyVault/vaults/"
         "contoso-vaulta1",
         alice_tok, NULL, 0, NULL, &r);
    assert_error(&r, 404, "SubscriptionNotFound", "sub-nope");
    http_free(&r);
    char *missing = vault_path("no-such-vault", "");
    http(&S, "GET", missing, alice_tok, NULL, 0, NULL, &r);
    assert_error(&r, 404, "ResourceNotFound", "no-such-vault");
    http_free(&r);
    free(missing);
    /* A vault exists only under its own resource group. */
    http(&S, "GET",
         "/subscriptions/sub-contoso/resourceGroups/other-rg/providers/Microsoft.KeyVault/vaults/"
         "contoso-vaulta1",
         alice_tok, NULL, 0, NULL, &r);
    assert_error(&r, 404, "ResourceNotFound", NULL);
    http_free(&r);
    http(&S, "GET", "/ckey/vaults/no-such-vault", alice_tok, NULL, 0, NULL, &r);
    assert_error(&r, 404, "ResourceNotFound", NULL);
    http_free(&r);

    json_t *after = snapshot(SUB_LIST);
    assert_true(json_equal(before, after));
    json_decref(before);
    json_decref(after);
    free(path);
}

/* Sends one bad request and checks: 4xx, an error body mentioning what,
 * and both subscriptions' vaults exactly as before. */
static void bad(const char *method, const char *path, const char *raw, json_t *body, long status,
                const char *mentions)
{
    static const char *other =
        "/subscriptions/sub-other/providers/Microsoft.KeyVault/vaults?api-version=1";
    json_t *before = snapshot(SUB_LIST), *before_other = snapshot(other);
    struct http_result r;
    if (raw)
        call_raw(method, path, alice_tok, raw, &r);
    else
        call(method, path, alice_tok, body, &r);
    assert_error(&r, status, NULL, mentions);
    http_free(&r);
    json_t *after = snapshot(SUB_LIST), *after_other = snapshot(other);
    if (!json_equal(before, after) || !json_equal(before_other, after_other))
        fail_msg("%s %s changed the vaults", method, path);
    json_decref(before);
    json_decref(after);
    json_decref(before_other);
    json_decref(after_other);
}

static json_t *policies_n(size_t n)
{
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++) {
        char oid[40];
        snprintf(oid, sizeof oid, "object-%zu", i);
        json_array_append_new(arr, policy(oid, json_pack("[s]", "get")));
    }
    return arr;
}

static void test_arm_bad_input_changes_nothing(void **state)
{
    char *a = vault_path("contoso-vaulta1", ""), *b = vault_path("contoso-vaultb1", "");
    char *add = vault_path("contoso-vaulta1", "/accessPolicies/add");
    char *p;

    /* Names. */
    p = vault_path("ab", "");
    bad("PUT", p, NULL, put_body("westus", json_pack("[]")), 400, "'ab' is not valid");
    free(p);
    p = vault_path("bad_name", "");
    bad("PUT", p, NULL, put_body("westus", json_pack("[]")), 400, "bad_name");
    free(p);
    p = vault_path("abcdefghijklmnopqrstuvwxy", "");
    bad("PUT", p, NULL, put_body("westus", json_pack("[]")), 400, "3 to 24");
    free(p);
    /* Unique across subscriptions. */
    p = NULL;
    assert_true(asprintf(&p, "/subscriptions/sub-other/resourceGroups/rg/providers/"
                             "Microsoft.KeyVault/vaults/contoso-vaulta1") > 0);
    bad("PUT", p, NULL, put_body("westus", json_pack("[]")), 409, "already in use");
    free(p);

    /* Retention, soft delete, purge protection, location, sku, RBAC. */
    bad("PATCH", a, NULL, json_pack("{s:{s:i}}", "properties", "softDeleteRetentionInDays", 6), 400,
        "softDeleteRetentionInDays");
    bad("PATCH", a, NULL, json_pack("{s:{s:i}}", "properties", "softDeleteRetentionInDays", 91),
        400, "91");
    bad("PATCH", a, NULL, json_pack("{s:{s:s}}", "properties", "softDeleteRetentionInDays", "7"),
        400, "softDeleteRetentionInDays");
    p = vault_path("new-vault", "");
    json_t *body = put_body("westus", json_pack("[]"));
    json_object_set_new(json_object_get(body, "properties"), "softDeleteRetentionInDays",
                        json_integer(6));
    bad("PUT", p, NULL, body, 400, "softDeleteRetentionInDays");
    body = put_body("westus", json_pack("[]"));
    json_object_set_new(json_object_get(body, "properties"), "enableSoftDelete", json_false());
    bad("PUT", p, NULL, body, 400, "soft delete cannot be disabled");
    bad("PUT", p, NULL, put_body("atlantis", json_pack("[]")), 400, "atlantis");
    body = put_body("westus", json_pack("[]"));
    json_object_set_new(json_object_get(json_object_get(body, "properties"), "sku"), "name",
                        json_string("gold"));
    bad("PUT", p, NULL, body, 400, "gold");
    body = put_body("westus", json_pack("[]"));
    json_object_set_new(json_object_get(body, "properties"), "enableRbacAuthorization",
                        json_true());
    bad("PUT", p, NULL, body, 400, "enableRbacAuthorization");
    bad("PUT", p, NULL, json_pack("{s:s}", "location", "westus"), 400, "properties");
    free(p);
    bad("PATCH", a, NULL, json_pack("{s:{s:b}}", "properties", "enableSoftDelete", 0), 400,
        "soft delete cannot be disabled");
    bad("PATCH", b, NULL, json_pack("{s:{s:b}}", "properties", "enablePurgeProtection", 0), 400,
        "cannot be turned off");
    bad("PATCH", b, NULL, json_pack("{s:{s:i}}", "properties", "softDeleteRetentionInDays", 60),
        400, "cannot change");
    bad("PATCH", b, NULL, json_pack("{s:s}", "location", "eastus"), 400, "location");
    bad("PATCH", a, NULL, json_pack("{s:[]}", "tags"), 400, "tags");

    /* Access policies: too many, bad permission, bad tenant, bad kind. */
    bad("PATCH", a, NULL, json_pack("{s:{s:o}}", "properties", "accessPolicies", policies_n(1025)),
        400, "1024");
    bad("PUT", add, NULL, json_pack("{s:{s:o}}", "properties", "accessPolicies", policies_n(1025)),
        400, "1024");
    /* 1023 new entries next to the 2 there: over the limit once added. */
    bad("PUT", add, NULL, json_pack("{s:{s:o}}", "properties", "accessPolicies", policies_n(1023)),
        400, "1024");
    bad("PUT", add, NULL,
        json_pack("{s:{s:[o]}}", "properties", "accessPolicies",
                  policy(bob_oid, json_pack("[s,s]", "get", "fly"))),
        400, "'fly' is not a key permission");
    bad("PATCH", a, NULL,
        json_pack("{s:{s:[o]}}", "properties", "accessPolicies",
                  policy(bob_oid, json_pack("[s]", "teleport"))),
        400, "teleport");
    bad("PUT", add, NULL,
        json_pack("{s:{s:[{s:s,s:s}]}}", "properties", "accessPolicies", "tenantId", "not-a-guid",
                  "objectId", bob_oid),
        400, "tenantId");
    bad("PUT", add, NULL,
        json_pack("{s:{s:[{s:s}]}}", "properties", "accessPolicies", "tenantId", tenant), 400,
        "objectId");
    bad("PUT", add, NULL, json_pack("{s:{}}", "properties"), 400, "accessPolicies");
    p = vault_path("contoso-vaulta1", "/accessPolicies/merge");
    bad("PUT", p, NULL,
        json_pack("{s:{s:[o]}}", "properties", "accessPolicies",
                  policy(bob_oid, json_pack("[s]", "get"))),
        400, "add, replace or remove");
    free(p);

    /* Malformed JSON. */
    bad("PUT", a, "{\"location\": \"westus\",", NULL, 400, "not valid JSON");
    bad("PATCH", a, "{\"tags\": {", NULL, 400, "not valid JSON");
    bad("PUT", add, "[1,2", NULL, 400, "not valid JSON");
    bad("PUT", a, "[]", NULL, 400, NULL);

    free(a);
    free(b);
    free(add);
}

static void test_arm_delete(void **state)
{
    struct http_result r;
    char *path = vault_path("ck-delete-me", "");
    call("PUT", path, alice_tok, put_body("uksouth", json_pack("[]")), &r);
    assert_int_equal(r.status, 200);
    http_free(&r);
    http(&S, "DELETE", path, alice_tok, NULL, 0, NULL, &r);
    assert_int_equal(r.status, 200);
    http_free(&r);
    http(&S, "GET", path, alice_tok, NULL, 0, NULL, &r);
    assert_error(&r, 404, "ResourceNotFound", "ck-delete-me");
    http_free(&r);
    /* ARM: deleting what is not there is 204. */
    http(&S, "DELETE", path, alice_tok, NULL, 0, NULL, &r);
    assert_int_equal(r.status, 204);
    http_free(&r);
    /* The name is free again. */
    call("PUT", path, alice_tok, put_body("uksouth", json_pack("[]")), &r);
    assert_int_equal(r.status, 200);
    http_free(&r);
    http(&S, "DELETE", path, alice_tok, NULL, 0, NULL, &r);
    assert_int_equal(r.status, 200);
    http_free(&r);
    free(path);
}

static void test_audit_records(void **state)
{
    struct http_result r;
    http(&S, "GET", "/admin/audit?max=1000", S.token, NULL, 0, NULL, &r);
    assert_int_equal(r.status, 200);
    const char *want[][3] = {
        {"subscription.create", "sub-contoso", "success"},
        {"vault.create", "contoso-vaulta1", "success"},
        {"vault.update", "contoso-vaulta1", "success"},
        {"vault.policy.add", "contoso-vaultb1", "success"},
        {"vault.policy.replace", "contoso-vaultb1", "success"},
        {"vault.policy.remove", "contoso-vaultb1", "success"},
        {"vault.delete", "ck-delete-me", "success"},
        {"vault.update", "contoso-vaulta1", "denied"},
        {"vault.update", "contoso-vaultb1", "failed: EINVAL"},
    };
    json_t *value = json_object_get(r.json, "value");
    for (size_t w = 0; w < sizeof want / sizeof want[0]; w++) {
        bool found = false;
        size_t i;
        json_t *rec;
        json_array_foreach(value, i, rec)
        {
            if (strcmp(json_string_value(json_object_get(rec, "operation")), want[w][0]) == 0 &&
                strcmp(json_string_value(json_object_get(rec, "target")), want[w][1]) == 0 &&
                strcmp(json_string_value(json_object_get(rec, "result")), want[w][2]) == 0)
                found = true;
        }
        if (!found)
            fail_msg("no audit record %s %s %s", want[w][0], want[w][1], want[w][2]);
    }
    http_free(&r);
    http(&S, "POST", "/admin/audit/verify", S.token, NULL, 0, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_true(json_is_true(json_object_get(r.json, "ok")));
    http_free(&r);
}

/* ---------- the CLI ---------- */

static void test_cli_subscription(void **state)
{
    char *out = NULL;
    assert_int_equal(
        cli(&S, NULL, &out,
            "subscription create sub-cli --owner alice@contoso.com --owner bob@contoso.com"),
        0);
    assert_line(out, "Subscription", "sub-cli");
    assert_non_null(strstr(out, "alice@contoso.com"));
    assert_non_null(strstr(out, bob_oid));
    free(out);
    /* Owners may look and add owners; others may not. */
    assert_int_equal(cli(&S, alice_tok, &out, "subscription show sub-cli"), 0);
    assert_non_null(strstr(out, "bob@contoso.com"));
    assert_null(strstr(out, "carol@contoso.com"));
    free(out);
    assert_int_equal(cli(&S, carol_tok, &out, "subscription show sub-cli"), 1);
    assert_non_null(strstr(out, "does not have authorization"));
    free(out);
    assert_int_equal(
        cli(&S, alice_tok, &out, "subscription add-owner sub-cli --owner carol@contoso.com"), 0);
    assert_non_null(strstr(out, "carol@contoso.com"));
    free(out);
    assert_int_equal(cli(&S, carol_tok, &out, "-o json subscription show sub-cli"), 0);
    json_t *j = json_loads(out, 0, NULL);
    assert_non_null(j);
    assert_int_equal(json_array_size(json_object_get(j, "owners")), 3);
    json_decref(j);
    free(out);
    /* Only operators create; owners must exist; usage errors exit 2. */
    assert_int_equal(
        cli(&S, alice_tok, &out, "subscription create sub-x --owner alice@contoso.com"), 1);
    assert_non_null(strstr(out, "not an operator"));
    free(out);
    assert_int_equal(cli(&S, NULL, &out, "subscription create sub-x --owner ghost@contoso.com"), 1);
    assert_non_null(strstr(out, "ghost@contoso.com"));
    free(out);
    assert_int_equal(cli(&S, NULL, &out, "subscription create sub-x"), 2);
    free(out);
    assert_int_equal(cli(&S, NULL, &out, "subscription show sub-x"), 1);
    assert_non_null(strstr(out, "could not be found"));
    free(out);
}

static void test_cli_vaults(void **state)
{
    char *out = NULL;
    assert_int_equal(
        cli(&S, alice_tok, &out,
            "vault create CLI-Vault1 --subscription sub-contoso --resource-group rg-cli "
            "--location 'West Europe' --retention-days 30 --purge-protection --sku premium"),
        0);
    assert_line(out, "Vault Name", "cli-vault1");
    assert_line(out, "Resource Group Name", "rg-cli");
    assert_line(out, "Location", "westeurope");
    assert_line(out, "Resource ID",
                "/subscriptions/sub-contoso/resourceGroups/rg-cli/providers/Microsoft.KeyVault/"
                "vaults/cli-vault1");
    char uri[128];
    snprintf(uri, sizeof uri, "https://cli-vault1.vault.localhost:%u/", S.port);
    assert_line(out, "Vault URI", uri);
    assert_line(out, "Tenant ID", tenant);
    assert_line(out, "SKU", "Premium");
    assert_line(out, "Soft Delete Enabled?", "True");
    assert_line(out, "Soft Delete Retention Period (days)", "30");
    assert_line(out, "Purge Protection Enabled?", "True");
    /* The creator holds every key permission. */
    assert_line(out, "Object ID", alice_oid);
    assert_line(out, "Display Name", "alice@contoso.com");
    free(out);

    /* create does not overwrite an existing vault. */
    assert_int_equal(
        cli(&S, alice_tok, &out,
            "vault create cli-vault1 --subscription sub-contoso --resource-group rg-cli "
            "--location westeurope"),
        1);
    assert_non_null(strstr(out, "already exists"));
    free(out);
    assert_int_equal(cli(&S, alice_tok, &out, "vault create x1 --subscription sub-contoso"), 2);
    free(out);

    /* policy set: bob gets exactly the given permissions. */
    assert_int_equal(cli(&S, alice_tok, &out,
                         "vault policy set cli-vault1 --upn bob@contoso.com "
                         "--key-permissions get,wrapKey,unwrapKey"),
                     0);
    assert_line(out, "Object ID", bob_oid);
    assert_line(out, "Permissions to Keys", "wrapKey, unwrapKey, get");
    free(out);
    assert_int_equal(cli(&S, alice_tok, &out,
                         "vault policy set cli-vault1 --upn bob@contoso.com --key-permissions get"),
                     0);
    assert_line(out, "Permissions to Keys", "get");
    assert_false(has_line(out, "Permissions to Keys", "wrapKey, unwrapKey, get"));
    free(out);
    assert_int_equal(cli(&S, alice_tok, &out,
                         "vault policy set cli-vault1 --upn bob@contoso.com --key-permissions fly"),
                     1);
    assert_non_null(strstr(out, "'fly' is not a key permission"));
    free(out);
    assert_int_equal(
        cli(&S, alice_tok, &out,
            "vault policy set cli-vault1 --upn ghost@contoso.com --key-permissions get"),
        1);
    assert_non_null(strstr(out, "ghost@contoso.com"));
    free(out);
    /* An application by its id, and a foreign object id (shown as unknown). */
    struct http_result r;
    http(&S, "GET", "/directory/principals/Contoso%20Sync%20App", alice_tok, NULL, 0, NULL, &r);
    char app_id[64], app_oid[64];
    snprintf(app_id, sizeof app_id, "%s",
             json_string_value(json_object_get(r.json, "applicationId")));
    snprintf(app_oid, sizeof app_oid, "%s", json_string_value(json_object_get(r.json, "objectId")));
    http_free(&r);
    assert_int_equal(
        cli(&S, alice_tok, &out,
            "vault policy set cli-vault1 --app-id %s --key-permissions wrapKey,unwrapKey", app_id),
        0);
    assert_line(out, "Object ID", app_oid);
    assert_line(out, "Display Name", "Contoso Sync App");
    free(out);
    assert_int_equal(
        cli(&S, alice_tok, &out,
            "vault policy set cli-vault1 --object-id 9a9a9a9a-0000-4000-8000-000000000001 "
            "--key-permissions get"),
        0);
    assert_line(out, "Display Name", "(unknown)");
    free(out);

    assert_int_equal(cli(&S, alice_tok, &out, "vault show cli-vault1"), 0);
    assert_line(out, "Object ID", bob_oid);
    assert_line(out, "Display Name", "bob@contoso.com");
    free(out);

    /* policy remove: bob is gone, the others stay. */
    assert_int_equal(
        cli(&S, alice_tok, &out, "vault policy remove cli-vault1 --upn bob@contoso.com"), 0);
    assert_null(strstr(out, bob_oid));
    assert_line(out, "Object ID", alice_oid);
    free(out);
    assert_int_equal(cli(&S, alice_tok, &out, "vault show cli-vault1"), 0);
    assert_null(strstr(out, bob_oid));
    assert_null(strstr(out, "bob@contoso.com"));
    assert_line(out, "Object ID", alice_oid);
    assert_line(out, "Object ID", app_oid);
    assert_line(out, "Purge Protection Enabled?", "True"); /* the full PUT kept the rest */
    assert_line(out, "Soft Delete Retention Period (days)", "30");
    free(out);
    /* Removing again is harmless. */
    assert_int_equal(
        cli(&S, alice_tok, &out, "vault policy remove cli-vault1 --upn bob@contoso.com"), 0);
    assert_non_null(strstr(out, "nothing changed"));
    free(out);
    assert_int_equal(cli(&S, alice_tok, &out, "vault policy remove cli-vault1"), 2);
    free(out);

    /* list and JSON output. */
    assert_int_equal(cli(&S, alice_tok, &out, "vault list --subscription sub-contoso"), 0);
    assert_non_null(strstr(out, "cli-vault1"));
    assert_non_null(strstr(out, "contoso-vaulta1"));
    assert_non_null(strstr(out, "rg-cli"));
    free(out);
    assert_int_equal(
        cli(&S, alice_tok, &out, "vault list --subscription sub-contoso --resource-group rg-cli"),
        0);
    assert_non_null(strstr(out, "cli-vault1"));
    assert_null(strstr(out, "contoso-vaulta1"));
    free(out);
    assert_int_equal(cli(&S, alice_tok, &out, "vault list"), 2);
    free(out);
    assert_int_equal(cli(&S, alice_tok, &out, "-o json vault show cli-vault1"), 0);
    json_t *j = json_loads(out, 0, NULL);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "name")), "cli-vault1");
    assert_string_equal(json_string_value(json_object_get(j, "type")), "Microsoft.KeyVault/vaults");
    json_decref(j);
    free(out);

    /* Someone else's vault. */
    assert_int_equal(cli(&S, carol_tok, &out, "vault show cli-vault1"), 1);
    assert_non_null(strstr(out, "does not have authorization"));
    free(out);
    assert_int_equal(cli(&S, carol_tok, &out, "vault delete cli-vault1"), 1);
    free(out);

    /* delete. */
    assert_int_equal(cli(&S, alice_tok, &out, "vault delete CLI-Vault1"), 0);
    assert_non_null(strstr(out, "Deleted vault cli-vault1"));
    free(out);
    assert_int_equal(cli(&S, alice_tok, &out, "vault show cli-vault1"), 1);
    assert_non_null(strstr(out, "not found"));
    free(out);
    assert_int_equal(cli(&S, alice_tok, &out, "vault delete cli-vault1"), 1);
    free(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_subscription_api),
        cmocka_unit_test(test_directory_lookup),
        cmocka_unit_test(test_arm_put_get_list),
        cmocka_unit_test(test_arm_patch),
        cmocka_unit_test(test_arm_access_policies),
        cmocka_unit_test(test_arm_authorization),
        cmocka_unit_test(test_arm_bad_input_changes_nothing),
        cmocka_unit_test(test_arm_delete),
        cmocka_unit_test(test_cli_subscription),
        cmocka_unit_test(test_cli_vaults),
        cmocka_unit_test(test_audit_records),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
