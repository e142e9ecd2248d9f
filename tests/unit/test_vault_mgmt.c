/*
 * Unit tests for src/vault/mgmt.c: the geography table, key permission
 * names, subscriptions and owners, vault validation and update rules,
 * access policy edits, and the permissions a principal holds. Each test
 * gets a fresh SQLite store in its own temporary directory.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vault/internal.h"

#define TENANT "72f988bf-86f1-41af-91ab-2d7cd011db47"
#define ALICE "11111111-1111-4111-8111-111111111111"
#define BOB "22222222-2222-4222-8222-222222222222"
#define APP "33333333-3333-4333-8333-333333333333"

struct fixture {
    char dir[256];
    struct ck_store *s;
    struct ck_vaults *v;
};

static int setup(void **state)
{
    struct fixture *fx = calloc(1, sizeof *fx);
    const char *tmp = getenv("TMPDIR");
    snprintf(fx->dir, sizeof fx->dir, "%s/ck-vmgmt-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(fx->dir))
        return -1;
    char db[300];
    snprintf(db, sizeof db, "%s/ck.db", fx->dir);
    struct ck_secret master = {0};
    if (ck_secret_alloc(&master, 32) != CK_OK)
        return -1;
    memset(master.p, 0x42, 32);
    ck_err rc = ck_store_open(db, &fx->s);
    if (rc == CK_OK)
        rc = ck_vaults_open(fx->s, &master, &fx->v);
    ck_secret_free(&master);
    if (rc != CK_OK) {
        fprintf(stderr, "setup: %s\n", ck_err_msg());
        return -1;
    }
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *fx = *state;
    ck_vaults_close(fx->v);
    ck_store_close(fx->s);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", fx->dir);
    int r = system(cmd);
    (void)r;
    free(fx);
    return 0;
}

#define assert_ok(expr)                                                                            \
    do {                                                                                           \
        ck_err e_ = (expr);                                                                        \
        if (e_ != CK_OK)                                                                           \
            fail_msg("%s: %s: %s", #expr, ck_err_name(e_), ck_err_msg());                          \
    } while (0)

/* The error, and that its message mentions what. */
static void assert_err(ck_err got, ck_err want, const char *what)
{
    if (got != want)
        fail_msg("got %s (%s), want %s", ck_err_name(got), ck_err_msg(), ck_err_name(want));
    if (what && !strstr(ck_err_msg(), what))
        fail_msg("message '%s' does not mention '%s'", ck_err_msg(), what);
}

/* A valid vault description in subscription sub-a, resource group rg. */
static void vault_init(struct ck_vault *x, const char *name)
{
    memset(x, 0, sizeof *x);
    snprintf(x->name, sizeof x->name, "%s", name);
    snprintf(x->subscription, sizeof x->subscription, "sub-a");
    snprintf(x->resource_group, sizeof x->resource_group, "rg");
    snprintf(x->location, sizeof x->location, "westus");
    snprintf(x->tenant_id, sizeof x->tenant_id, TENANT);
    snprintf(x->sku, sizeof x->sku, "standard");
    x->retention_days = 90;
    x->tags_json = NULL;
}

static struct ck_access_policy policy(const char *oid, const char *app, unsigned keys)
{
    struct ck_access_policy p = {.keys = keys};
    snprintf(p.tenant_id, sizeof p.tenant_id, TENANT);
    snprintf(p.object_id, sizeof p.object_id, "%s", oid);
    snprintf(p.application_id, sizeof p.application_id, "%s", app ? app : "");
    return p;
}

static void make_subscription(struct fixture *fx, const char *id)
{
    assert_ok(ck_subscription_create(fx->v, id, ALICE));
}

/* ---------- geography and permissions ---------- */

static void test_geography(void **state)
{
    assert_string_equal(ck_geography_of("westus"), "us");
    assert_string_equal(ck_geography_of("West US"), "us");
    assert_string_equal(ck_geography_of("EASTUS2"), "us");
    assert_string_equal(ck_geography_of("northeurope"), "europe");
    assert_string_equal(ck_geography_of("West Europe"), "europe");
    assert_string_equal(ck_geography_of("uksouth"), "uk");
    assert_string_equal(ck_geography_of("southeastasia"), "asia");
    assert_string_equal(ck_geography_of("japanwest"), "japan");
    assert_string_equal(ck_geography_of("australiaeast"), "australia");
    assert_string_equal(ck_geography_of("canadaeast"), "canada");
    assert_string_equal(ck_geography_of("centralindia"), "india");
    assert_string_equal(ck_geography_of("brazilsouth"), "brazil");
    assert_string_equal(ck_geography_of("local"), "local");
    assert_null(ck_geography_of("moon"));
    assert_null(ck_geography_of(""));
    assert_null(ck_geography_of("   "));
    assert_null(ck_geography_of(NULL));
    assert_null(ck_geography_of("westus-2"));
}

static void test_perm_names(void **state)
{
    for (unsigned b = 0; b < 20; b++) {
        const char *n = ck_perm_name((enum ck_key_perm)(1u << b));
        assert_non_null(n);
        unsigned bits = 0;
        assert_ok(ck_perm_parse(n, &bits));
        assert_int_equal(bits, 1u << b);
    }
    assert_string_equal(ck_perm_name(CK_PERM_WRAPKEY), "wrapKey");
    assert_string_equal(ck_perm_name(CK_PERM_UNWRAPKEY), "unwrapKey");
    assert_string_equal(ck_perm_name(CK_PERM_GETROTATIONPOLICY), "getrotationpolicy");
    assert_string_equal(ck_perm_name(CK_PERM_ALL_BITS), "all");
    assert_null(ck_perm_name(CK_PERM_GET | CK_PERM_LIST));

    unsigned bits = 0;
    assert_ok(ck_perm_parse("all", &bits));
    assert_int_equal(bits, CK_PERM_ALL_BITS);
    assert_ok(ck_perm_parse("ALL", &bits));
    assert_int_equal(bits, CK_PERM_ALL_BITS);
    assert_ok(ck_perm_parse("WRAPKEY", &bits));
    assert_int_equal(bits, CK_PERM_WRAPKEY);
    assert_ok(ck_perm_parse("GetRotationPolicy", &bits));
    assert_int_equal(bits, CK_PERM_GETROTATIONPOLICY);

    bits = 7;
    assert_err(ck_perm_parse("fly", &bits), CK_EINVAL, "'fly' is not a key permission");
    assert_int_equal(bits, 7);
    assert_err(ck_perm_parse("", &bits), CK_EINVAL, "not a key permission");
    assert_err(ck_perm_parse("set", &bits), CK_EINVAL, "set"); /* a secrets permission */
}

/* ---------- subscriptions ---------- */

static void test_subscriptions(void **state)
{
    struct fixture *fx = *state;
    const char *owners[] = {ALICE, BOB};
    assert_ok(ck_subscription_create_many(fx->v, "Contoso-Prod", owners, 2));
    bool owner = false;
    assert_ok(ck_subscription_is_owner(fx->v, "contoso-prod", ALICE, &owner));
    assert_true(owner);
    /* Ids and GUIDs are case-insensitive. */
    assert_ok(ck_subscription_is_owner(fx->v, "CONTOSO-PROD",
                                       "22222222-2222-4222-8222-222222222222", &owner));
    assert_true(owner);
    assert_ok(ck_subscription_is_owner(fx->v, "contoso-prod", APP, &owner));
    assert_false(owner);

    assert_err(ck_subscription_create(fx->v, "contoso-prod", APP), CK_ECONFLICT, "already exists");
    /* The failed create added nobody. */
    assert_ok(ck_subscription_is_owner(fx->v, "contoso-prod", APP, &owner));
    assert_false(owner);

    assert_ok(ck_subscription_add_owner(fx->v, "contoso-prod", APP));
    assert_ok(ck_subscription_add_owner(fx->v, "contoso-prod", APP)); /* idempotent */
    assert_ok(ck_subscription_is_owner(fx->v, "contoso-prod", APP, &owner));
    assert_true(owner);

    struct ck_subscription *s;
    assert_ok(ck_subscription_get(fx->v, "Contoso-Prod", &s));
    assert_string_equal(s->id, "contoso-prod");
    assert_int_equal(s->nowners, 3);
    assert_string_equal(s->owners[0], ALICE);
    assert_string_equal(s->owners[1], BOB);
    assert_string_equal(s->owners[2], APP);
    assert_true(s->created > 0);
    ck_subscription_free(s);

    assert_err(ck_subscription_is_owner(fx->v, "nope", ALICE, &owner), CK_ENOTFOUND, "nope");
    assert_string_equal(ck_err_code_get(), "SubscriptionNotFound");
    assert_err(ck_subscription_add_owner(fx->v, "nope", ALICE), CK_ENOTFOUND, "nope");
    assert_err(ck_subscription_get(fx->v, "nope", &s), CK_ENOTFOUND, "nope");

    /* Bad ids and owners. */
    assert_err(ck_subscription_create(fx->v, "", ALICE), CK_EINVAL, "subscription id");
    assert_err(ck_subscription_create(fx->v, "a/b", ALICE), CK_EINVAL, "a/b");
    char longid[80];
    memset(longid, 'a', 65);
    longid[65] = '\0';
    assert_err(ck_subscription_create(fx->v, longid, ALICE), CK_EINVAL, "subscription id");
    assert_err(ck_subscription_create(fx->v, "ok-id", ""), CK_EINVAL, "owner");
    assert_err(ck_subscription_add_owner(fx->v, "contoso-prod", "has space"), CK_EINVAL, "owner");
    /* A subscription with no owner is allowed (the operator manages it). */
    assert_ok(ck_subscription_create(fx->v, "ownerless", NULL));
    assert_ok(ck_subscription_get(fx->v, "ownerless", &s));
    assert_int_equal(s->nowners, 0);
    ck_subscription_free(s);
}

/* ---------- vault validation ---------- */

static void test_vault_names(void **state)
{
    struct fixture *fx = *state;
    make_subscription(fx, "sub-a");
    struct ck_vault x;
    bool created = false;

    vault_init(&x, "ab");
    assert_err(ck_vault_put(fx->v, &x, &created), CK_EINVAL, "'ab' is not valid");
    vault_init(&x, "abc");
    assert_ok(ck_vault_put(fx->v, &x, &created));
    assert_true(created);
    vault_init(&x, "a_b-vault");
    assert_err(ck_vault_put(fx->v, &x, &created), CK_EINVAL, "a_b-vault");
    vault_init(&x, "vault.one");
    assert_err(ck_vault_put(fx->v, &x, &created), CK_EINVAL, "vault.one");
    vault_init(&x, "");
    assert_err(ck_vault_put(fx->v, &x, &created), CK_EINVAL, "vault name");
    /* 24 is the limit; the struct cannot even hold 25, so check the
     * normaliser directly for that. */
    vault_init(&x, "abcdefghijklmnopqrstuvwx");
    assert_ok(ck_vault_put(fx->v, &x, &created));
    char out[25];
    assert_err(ck_vault_name_norm("abcdefghijklmnopqrstuvwxy", out), CK_EINVAL, "3 to 24");
    assert_ok(ck_vault_name_norm("Contoso-VaultA1", out));
    assert_string_equal(out, "contoso-vaulta1");

    /* Stored lowercased, found case-insensitively. */
    vault_init(&x, "Contoso-VaultA1");
    assert_ok(ck_vault_put(fx->v, &x, &created));
    struct ck_vault *got;
    assert_ok(ck_vault_get(fx->v, "CONTOSO-vaulta1", &got));
    assert_string_equal(got->name, "contoso-vaulta1");
    ck_vault_free(got);
    assert_err(ck_vault_get(fx->v, "no-such-vault", &got), CK_ENOTFOUND, "no-such-vault");
    assert_err(ck_vault_get(fx->v, "bad_name", &got), CK_ENOTFOUND, NULL);
}

static void test_vault_fields(void **state)
{
    struct fixture *fx = *state;
    make_subscription(fx, "sub-a");
    struct ck_vault x;

    vault_init(&x, "fields1");
    x.retention_days = 6;
    assert_err(ck_vault_put(fx->v, &x, NULL), CK_EINVAL, "softDeleteRetentionInDays");
    x.retention_days = 91;
    assert_err(ck_vault_put(fx->v, &x, NULL), CK_EINVAL, "got 91");
    x.retention_days = 7;
    snprintf(x.location, sizeof x.location, "atlantis");
    assert_err(ck_vault_put(fx->v, &x, NULL), CK_EINVAL, "'atlantis' is not a known");
    snprintf(x.location, sizeof x.location, "West Europe");
    snprintf(x.sku, sizeof x.sku, "gold");
    assert_err(ck_vault_put(fx->v, &x, NULL), CK_EINVAL, "sku 'gold'");
    snprintf(x.sku, sizeof x.sku, "Premium");
    snprintf(x.tenant_id, sizeof x.tenant_id, "not-a-guid");
    assert_err(ck_vault_put(fx->v, &x, NULL), CK_EINVAL, "tenantId");
    snprintf(x.tenant_id, sizeof x.tenant_id, TENANT);
    snprintf(x.resource_group, sizeof x.resource_group, "rg.");
    assert_err(ck_vault_put(fx->v, &x, NULL), CK_EINVAL, "resource group");
    snprintf(x.resource_group, sizeof x.resource_group, "rg");
    x.tags_json = "[1]";
    assert_err(ck_vault_put(fx->v, &x, NULL), CK_EINVAL, "tags");
    x.tags_json = "{\"env\":5}";
    assert_err(ck_vault_put(fx->v, &x, NULL), CK_EINVAL, "env");
    x.tags_json = "{\"env\":\"prod\"}";
    snprintf(x.subscription, sizeof x.subscription, "missing");
    assert_err(ck_vault_put(fx->v, &x, NULL), CK_ENOTFOUND, "missing");
    assert_string_equal(ck_err_code_get(), "SubscriptionNotFound");
    snprintf(x.subscription, sizeof x.subscription, "SUB-A");

    struct ck_access_policy bad[1] = {policy(ALICE, NULL, CK_PERM_GET)};
    x.policies = bad;
    x.npolicies = 1;
    snprintf(bad[0].tenant_id, sizeof bad[0].tenant_id, "x");
    assert_err(ck_vault_put(fx->v, &x, NULL), CK_EINVAL, "access policy 0: the tenantId");
    bad[0] = policy("", NULL, CK_PERM_GET);
    assert_err(ck_vault_put(fx->v, &x, NULL), CK_EINVAL, "objectId");
    bad[0] = policy(ALICE, "not-a-guid", CK_PERM_GET);
    assert_err(ck_vault_put(fx->v, &x, NULL), CK_EINVAL, "applicationId");
    bad[0] = policy(ALICE, NULL, CK_PERM_GET);

    /* Nothing of the above was stored. */
    struct ck_vault *got;
    assert_err(ck_vault_get(fx->v, "fields1", &got), CK_ENOTFOUND, NULL);

    bool created = false;
    assert_ok(ck_vault_put(fx->v, &x, &created));
    assert_true(created);
    assert_ok(ck_vault_get(fx->v, "fields1", &got));
    assert_string_equal(got->subscription, "sub-a");
    assert_string_equal(got->location, "westeurope");
    assert_string_equal(got->sku, "premium");
    assert_int_equal(got->retention_days, 7);
    assert_false(got->purge_protection);
    assert_string_equal(got->tags_json, "{\"env\":\"prod\"}");
    assert_int_equal(got->npolicies, 1);
    assert_string_equal(got->policies[0].object_id, ALICE);
    assert_int_equal(got->policies[0].keys, CK_PERM_GET);
    assert_true(got->created > 0 && got->updated >= got->created);
    ck_vault_free(got);

    /* NULL tags are stored as an empty object. */
    vault_init(&x, "fields2");
    assert_ok(ck_vault_put(fx->v, &x, NULL));
    assert_ok(ck_vault_get(fx->v, "fields2", &got));
    assert_string_equal(got->tags_json, "{}");
    assert_int_equal(got->npolicies, 0);
    ck_vault_free(got);
}

static void test_vault_update_rules(void **state)
{
    struct fixture *fx = *state;
    make_subscription(fx, "sub-a");
    make_subscription(fx, "sub-b");
    struct ck_vault x;
    bool created = true;

    vault_init(&x, "rules");
    assert_ok(ck_vault_put(fx->v, &x, &created));
    assert_true(created);
    /* Same subscription, resource group in another case: an update. */
    snprintf(x.resource_group, sizeof x.resource_group, "RG");
    x.retention_days = 30;
    assert_ok(ck_vault_put(fx->v, &x, &created));
    assert_false(created);

    /* The name belongs to the installation, not the subscription. */
    snprintf(x.subscription, sizeof x.subscription, "sub-b");
    assert_err(ck_vault_put(fx->v, &x, &created), CK_ECONFLICT, "already in use");
    snprintf(x.subscription, sizeof x.subscription, "sub-a");
    snprintf(x.resource_group, sizeof x.resource_group, "other-rg");
    assert_err(ck_vault_put(fx->v, &x, &created), CK_ECONFLICT, "already in use");
    snprintf(x.resource_group, sizeof x.resource_group, "rg");

    snprintf(x.location, sizeof x.location, "eastus");
    assert_err(ck_vault_put(fx->v, &x, &created), CK_EINVAL, "location cannot change");
    snprintf(x.location, sizeof x.location, "westus");

    /* Purge protection: on is for good, and it freezes the retention. */
    x.purge_protection = true;
    assert_ok(ck_vault_put(fx->v, &x, &created));
    x.purge_protection = false;
    assert_err(ck_vault_put(fx->v, &x, &created), CK_EINVAL, "cannot be turned off");
    x.purge_protection = true;
    x.retention_days = 90;
    assert_err(ck_vault_put(fx->v, &x, &created), CK_EINVAL, "cannot change");
    x.retention_days = 30;
    snprintf(x.sku, sizeof x.sku, "premium");
    assert_ok(ck_vault_put(fx->v, &x, &created));

    struct ck_vault *got;
    assert_ok(ck_vault_get(fx->v, "rules", &got));
    assert_true(got->purge_protection);
    assert_int_equal(got->retention_days, 30);
    assert_string_equal(got->sku, "premium");
    assert_string_equal(got->resource_group, "rg");
    ck_vault_free(got);

    /* Listing by subscription and by resource group (case-insensitive). */
    vault_init(&x, "rules2");
    snprintf(x.resource_group, sizeof x.resource_group, "Other");
    assert_ok(ck_vault_put(fx->v, &x, NULL));
    struct ck_vault **list;
    size_t n;
    assert_ok(ck_vault_list(fx->v, "sub-a", NULL, &list, &n));
    assert_int_equal(n, 2);
    assert_string_equal(list[0]->name, "rules");
    assert_string_equal(list[1]->name, "rules2");
    ck_vault_list_free(list, n);
    assert_ok(ck_vault_list(fx->v, "SUB-A", "other", &list, &n));
    assert_int_equal(n, 1);
    assert_string_equal(list[0]->name, "rules2");
    ck_vault_list_free(list, n);
    assert_ok(ck_vault_list(fx->v, "sub-b", NULL, &list, &n));
    assert_int_equal(n, 0);
    ck_vault_list_free(list, n);
}

static void test_vault_delete(void **state)
{
    struct fixture *fx = *state;
    make_subscription(fx, "sub-a");
    struct ck_vault x;
    vault_init(&x, "doomed");
    struct ck_access_policy p[1] = {policy(ALICE, NULL, CK_PERM_ALL_BITS)};
    x.policies = p;
    x.npolicies = 1;
    assert_ok(ck_vault_put(fx->v, &x, NULL));

    /* A vault holding a key (here a soft-deleted one, written directly)
     * is not deleted. */
    assert_ok(ck_store_run(fx->s, NULL,
                           "INSERT INTO ck_key (vault, name, created, deleted) VALUES (?, ?, ?, ?)",
                           "ttii", "doomed", "k1", (int64_t)1, (int64_t)2));
    assert_err(ck_vault_delete(fx->v, "doomed"), CK_ECONFLICT,
               "vault doomed still holds keys (live or soft-deleted); delete and purge them first");
    struct ck_vault *got;
    assert_ok(ck_vault_get(fx->v, "doomed", &got));
    assert_int_equal(got->npolicies, 1);
    ck_vault_free(got);

    assert_ok(ck_store_run(fx->s, NULL, "DELETE FROM ck_key WHERE vault = ?", "t", "doomed"));
    assert_ok(ck_vault_delete(fx->v, "Doomed"));
    assert_err(ck_vault_get(fx->v, "doomed", &got), CK_ENOTFOUND, NULL);
    assert_err(ck_vault_delete(fx->v, "doomed"), CK_ENOTFOUND, "doomed");
    /* No orphaned policies. */
    struct ck_stmt *st;
    assert_ok(ck_stmt_prepare(fx->s, &st, "SELECT COUNT(*) FROM ck_vault_policy", ""));
    bool row;
    assert_ok(ck_stmt_step(st, &row));
    assert_int_equal(ck_stmt_int(st, 0), 0);
    ck_stmt_finalize(st);

    /* The name is free again, in any subscription. */
    assert_ok(ck_subscription_create(fx->v, "sub-b", BOB));
    snprintf(x.subscription, sizeof x.subscription, "sub-b");
    bool created = false;
    assert_ok(ck_vault_put(fx->v, &x, &created));
    assert_true(created);
}

/* ---------- access policies ---------- */

static void test_policy_edit(void **state)
{
    struct fixture *fx = *state;
    make_subscription(fx, "sub-a");
    struct ck_vault x;
    vault_init(&x, "pol");
    struct ck_access_policy initial[1] = {policy(ALICE, NULL, CK_PERM_ALL_BITS)};
    x.policies = initial;
    x.npolicies = 1;
    assert_ok(ck_vault_put(fx->v, &x, NULL));
    struct ck_vault *out = NULL;

    /* add appends a new identity, then merges into it. */
    struct ck_access_policy p = policy(BOB, NULL, CK_PERM_GET | CK_PERM_LIST);
    assert_ok(ck_vault_policy_edit(fx->v, "pol", CK_POLICY_ADD, &p, 1, &out));
    assert_int_equal(out->npolicies, 2);
    assert_string_equal(out->policies[1].object_id, BOB);
    assert_int_equal(out->policies[1].keys, CK_PERM_GET | CK_PERM_LIST);
    ck_vault_free(out);
    p = policy("22222222-2222-4222-8222-222222222222", NULL, CK_PERM_WRAPKEY);
    assert_ok(ck_vault_policy_edit(fx->v, "POL", CK_POLICY_ADD, &p, 1, &out));
    assert_int_equal(out->npolicies, 2);
    assert_int_equal(out->policies[1].keys, CK_PERM_GET | CK_PERM_LIST | CK_PERM_WRAPKEY);
    ck_vault_free(out);

    /* The same object with an application id is another identity. */
    p = policy(BOB, APP, CK_PERM_SIGN);
    assert_ok(ck_vault_policy_edit(fx->v, "pol", CK_POLICY_ADD, &p, 1, &out));
    assert_int_equal(out->npolicies, 3);
    assert_string_equal(out->policies[2].application_id, APP);
    ck_vault_free(out);

    /* replace sets the permissions. */
    p = policy(BOB, NULL, CK_PERM_UNWRAPKEY);
    assert_ok(ck_vault_policy_edit(fx->v, "pol", CK_POLICY_REPLACE, &p, 1, &out));
    assert_int_equal(out->npolicies, 3);
    assert_int_equal(out->policies[1].keys, CK_PERM_UNWRAPKEY);
    ck_vault_free(out);
    /* ... and appends when absent. */
    struct ck_access_policy carol = policy("carol-object", NULL, CK_PERM_GET);
    assert_ok(ck_vault_policy_edit(fx->v, "pol", CK_POLICY_REPLACE, &carol, 1, &out));
    assert_int_equal(out->npolicies, 4);
    ck_vault_free(out);

    /* remove with permissions takes only those away. */
    p = policy(ALICE, NULL, CK_PERM_PURGE | CK_PERM_DELETE);
    assert_ok(ck_vault_policy_edit(fx->v, "pol", CK_POLICY_REMOVE, &p, 1, &out));
    assert_int_equal(out->policies[0].keys, CK_PERM_ALL_BITS & ~(CK_PERM_PURGE | CK_PERM_DELETE));
    ck_vault_free(out);
    /* An entry left with nothing goes. */
    p = policy(BOB, NULL, CK_PERM_UNWRAPKEY);
    assert_ok(ck_vault_policy_edit(fx->v, "pol", CK_POLICY_REMOVE, &p, 1, &out));
    assert_int_equal(out->npolicies, 3);
    assert_string_equal(out->policies[1].object_id, BOB);
    assert_string_equal(out->policies[1].application_id, APP); /* the compound one stays */
    ck_vault_free(out);
    /* remove without permissions drops the entry; order is kept. */
    p = policy(BOB, APP, 0);
    assert_ok(ck_vault_policy_edit(fx->v, "pol", CK_POLICY_REMOVE, &p, 1, &out));
    assert_int_equal(out->npolicies, 2);
    assert_string_equal(out->policies[0].object_id, ALICE);
    assert_string_equal(out->policies[1].object_id, "carol-object");
    ck_vault_free(out);
    /* Removing what is not there changes nothing. */
    p = policy(BOB, NULL, 0);
    assert_ok(ck_vault_policy_edit(fx->v, "pol", CK_POLICY_REMOVE, &p, 1, NULL));

    struct ck_vault *got;
    assert_ok(ck_vault_get(fx->v, "pol", &got));
    assert_int_equal(got->npolicies, 2);
    ck_vault_free(got);

    /* Bad input and unknown vaults change nothing. */
    p = policy(BOB, NULL, CK_PERM_GET);
    snprintf(p.tenant_id, sizeof p.tenant_id, "nope");
    assert_err(ck_vault_policy_edit(fx->v, "pol", CK_POLICY_ADD, &p, 1, NULL), CK_EINVAL,
               "tenantId");
    p = policy(BOB, NULL, CK_PERM_GET);
    assert_err(ck_vault_policy_edit(fx->v, "absent", CK_POLICY_ADD, &p, 1, NULL), CK_ENOTFOUND,
               "absent");
    assert_err(ck_vault_policy_edit(fx->v, "pol", (enum ck_policy_op)9, &p, 1, NULL), CK_EINVAL,
               NULL);
    assert_ok(ck_vault_get(fx->v, "pol", &got));
    assert_int_equal(got->npolicies, 2);
    ck_vault_free(got);
}

static void test_policy_limit(void **state)
{
    struct fixture *fx = *state;
    make_subscription(fx, "sub-a");
    size_t n = CK_VAULT_MAX_POLICIES + 1;
    struct ck_access_policy *many = calloc(n, sizeof *many);
    for (size_t i = 0; i < n; i++) {
        char oid[40];
        snprintf(oid, sizeof oid, "object-%zu", i);
        many[i] = policy(oid, NULL, CK_PERM_GET);
    }
    struct ck_vault x;
    vault_init(&x, "limits");
    x.policies = many;
    x.npolicies = n;
    assert_err(ck_vault_put(fx->v, &x, NULL), CK_EINVAL, "at most 1024");
    x.npolicies = n - 1;
    assert_ok(ck_vault_put(fx->v, &x, NULL));

    /* One more through add is refused; a merge into an existing entry is not. */
    struct ck_access_policy extra = policy("one-too-many", NULL, CK_PERM_GET);
    assert_err(ck_vault_policy_edit(fx->v, "limits", CK_POLICY_ADD, &extra, 1, NULL), CK_EINVAL,
               "at most 1024");
    struct ck_access_policy merge = policy("object-0", NULL, CK_PERM_LIST);
    assert_ok(ck_vault_policy_edit(fx->v, "limits", CK_POLICY_ADD, &merge, 1, NULL));
    assert_err(ck_vault_policy_edit(fx->v, "limits", CK_POLICY_ADD, many, n, NULL), CK_EINVAL,
               "at most 1024");

    struct ck_vault *got;
    assert_ok(ck_vault_get(fx->v, "limits", &got));
    assert_int_equal(got->npolicies, CK_VAULT_MAX_POLICIES);
    assert_int_equal(got->policies[0].keys, CK_PERM_GET | CK_PERM_LIST);
    assert_string_equal(got->policies[1023].object_id, "object-1023");
    ck_vault_free(got);
    free(many);
}

static void test_permissions_union(void **state)
{
    struct ck_access_policy p[] = {
        policy(ALICE, NULL, CK_PERM_GET),
        policy(BOB, NULL, CK_PERM_LIST),
        policy("11111111-1111-4111-8111-111111111111", NULL, CK_PERM_WRAPKEY),
        policy(ALICE, NULL, CK_PERM_UNWRAPKEY),
        /* A compound identity (Alice through an app) grants Alice alone nothing. */
        policy(ALICE, APP, CK_PERM_PURGE),
    };
    struct ck_vault x = {.policies = p, .npolicies = 5};
    assert_int_equal(ck_vault_permissions(&x, ALICE),
                     CK_PERM_GET | CK_PERM_WRAPKEY | CK_PERM_UNWRAPKEY);
    assert_int_equal(ck_vault_permissions(&x, "11111111-1111-4111-8111-111111111111"),
                     CK_PERM_GET | CK_PERM_WRAPKEY | CK_PERM_UNWRAPKEY);
    assert_int_equal(ck_vault_permissions(&x, BOB), CK_PERM_LIST);
    assert_int_equal(ck_vault_permissions(&x, APP), 0);
    assert_int_equal(ck_vault_permissions(&x, "nobody"), 0);
    assert_int_equal(ck_vault_permissions(NULL, ALICE), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_geography),
        cmocka_unit_test(test_perm_names),
        cmocka_unit_test_setup_teardown(test_subscriptions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_vault_names, setup, teardown),
        cmocka_unit_test_setup_teardown(test_vault_fields, setup, teardown),
        cmocka_unit_test_setup_teardown(test_vault_update_rules, setup, teardown),
        cmocka_unit_test_setup_teardown(test_vault_delete, setup, teardown),
        cmocka_unit_test_setup_teardown(test_policy_edit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_policy_limit, setup, teardown),
        cmocka_unit_test(test_permissions_union),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
