/* Unit tests for the keys half of src/vault on a real SQLite store:
 * versions, soft delete, backup/restore, rotation, crypto rules and
 * housekeeping. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vault/keys_internal.h"
#include "vault/vault.h"

struct fx {
    char dir[64];
    struct ck_store *s;
    struct ck_secret master;
    struct ck_vaults *v;
};

static void put_vault(struct ck_vaults *v, const char *name, const char *location, bool protect)
{
    struct ck_vault in = {0};
    snprintf(in.name, sizeof in.name, "%s", name);
    snprintf(in.subscription, sizeof in.subscription, "sub1");
    snprintf(in.resource_group, sizeof in.resource_group, "rg1");
    snprintf(in.location, sizeof in.location, "%s", location);
    snprintf(in.tenant_id, sizeof in.tenant_id, "00000000-0000-4000-8000-000000000001");
    snprintf(in.sku, sizeof in.sku, "standard");
    in.retention_days = 90;
    in.purge_protection = protect;
    in.tags_json = "{}";
    bool created;
    if (ck_vault_put(v, &in, &created) != CK_OK)
        fail_msg("vault put %s: %s", name, ck_err_msg());
}

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "/tmp/ck-keys-XXXXXX");
    if (!mkdtemp(f->dir))
        return -1;
    char uri[128];
    snprintf(uri, sizeof uri, "sqlite:%s/t.db", f->dir);
    if (ck_store_open(uri, &f->s) != CK_OK || ck_secret_alloc(&f->master, 32) != CK_OK)
        return -1;
    memset(f->master.p, 0x42, 32);
    if (ck_vaults_open(f->s, &f->master, &f->v) != CK_OK)
        return -1;
    if (ck_subscription_create(f->v, "sub1", "00000000-0000-4000-8000-0000000000aa") != CK_OK)
        return -1;
    put_vault(f->v, "vault-a", "westus", false);
    put_vault(f->v, "vault-b", "eastus", false);
    put_vault(f->v, "vault-pp", "westus", true);
    put_vault(f->v, "vault-eu", "northeurope", false);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    ck_vaults_close(f->v);
    ck_store_close(f->s);
    ck_secret_free(&f->master);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", f->dir);
    int rc = system(cmd);
    free(f);
    return rc;
}

static struct ck_key *create(struct fx *f, const char *vault, const char *name)
{
    struct ck_key *k = NULL;
    assert_int_equal(ck_key_create(f->v, vault, name, "RSA", 2048, NULL, &k), CK_OK);
    return k;
}

static void test_create_get_update(void **state)
{
    struct fx *f = *state;
    struct ck_key_props p = {.has_tags = true, .tags_json = "{\"app\":\"mail\"}"};
    struct ck_key *k, *g;
    assert_int_equal(ck_key_create(f->v, "vault-a", "root1", "RSA-HSM", 3072, &p, &k), CK_OK);
    assert_int_equal(strlen(k->version), 32);
    for (int i = 0; i < 32; i++)
        assert_non_null(strchr("0123456789abcdef", k->version[i]));
    assert_string_equal(k->kty, "RSA-HSM");
    assert_int_equal(k->n.n, 384);
    assert_int_equal(k->ops, CK_OP_DEFAULT_RSA);
    assert_true(k->enabled);
    assert_string_equal(k->recovery_level, "Recoverable+Purgeable");
    assert_int_equal(k->recoverable_days, 90);

    assert_int_equal(ck_key_get(f->v, "VAULT-A", "root1", "", &g), CK_OK);
    assert_string_equal(g->version, k->version);
    ck_key_free(g);
    assert_int_equal(ck_key_get(f->v, "vault-a", "root1", k->version, &g), CK_OK);
    ck_key_free(g);
    assert_int_equal(ck_key_get(f->v, "vault-a", "root1", "0000", &g), CK_ENOTFOUND);
    assert_int_equal(ck_key_get(f->v, "vault-a", "nope", NULL, &g), CK_ENOTFOUND);
    assert_int_equal(ck_key_get(f->v, "novault", "root1", NULL, &g), CK_ENOTFOUND);

    /* Only the fields given change. */
    struct ck_key_props u = {.has_enabled = true, .enabled = false};
    assert_int_equal(ck_key_update(f->v, "vault-a", "root1", "", &u, &g), CK_OK);
    assert_false(g->enabled);
    assert_string_equal(g->tags_json, "{\"app\":\"mail\"}");
    assert_int_equal(g->ops, CK_OP_DEFAULT_RSA);
    ck_key_free(g);
    ck_key_free(k);
}

static void test_bad_create_changes_nothing(void **state)
{
    struct fx *f = *state;
    struct ck_key *k = NULL, **v;
    size_t n;
    bool more;
    assert_int_equal(ck_key_create(f->v, "vault-a", "ec", "EC", 0, NULL, &k), CK_EINVAL);
    assert_non_null(strstr(ck_err_msg(), "not supported"));
    assert_int_equal(ck_key_create(f->v, "vault-a", "small", "RSA", 1024, NULL, &k), CK_EINVAL);
    assert_int_equal(ck_key_create(f->v, "vault-a", "bad_name", "RSA", 2048, NULL, &k), CK_EINVAL);
    assert_int_equal(ck_key_create(f->v, "vault-a", "", "RSA", 2048, NULL, &k), CK_EINVAL);
    assert_int_equal(ck_key_create(f->v, "missing", "k", "RSA", 2048, NULL, &k), CK_ENOTFOUND);
    assert_int_equal(ck_key_list(f->v, "vault-a", 0, 25, &v, &n, &more), CK_OK);
    assert_int_equal(n, 0);
    ck_key_list_free(v, n);
}

static void test_paging_and_versions(void **state)
{
    struct fx *f = *state;
    const char *names[] = {"k1", "k2", "k3", "k4", "k5"};
    for (size_t i = 0; i < 5; i++)
        ck_key_free(create(f, "vault-a", names[i]));
    struct ck_key **v;
    size_t n, total = 0;
    bool more = true;
    for (size_t skip = 0; more; skip += n) {
        assert_int_equal(ck_key_list(f->v, "vault-a", skip, 2, &v, &n, &more), CK_OK);
        assert_true(n <= 2);
        assert_string_equal(v[0]->name, names[skip]);
        total += n;
        ck_key_list_free(v, n);
    }
    assert_int_equal(total, 5);
    assert_int_equal(ck_key_list(f->v, "vault-a", 0, 26, &v, &n, &more), CK_EINVAL);
    assert_int_equal(ck_key_list(f->v, "vault-a", 0, 0, &v, &n, &more), CK_EINVAL);

    struct ck_key *r1, *r2;
    assert_int_equal(ck_key_rotate(f->v, "vault-a", "k1", &r1), CK_OK);
    assert_int_equal(ck_key_rotate(f->v, "vault-a", "k1", &r2), CK_OK);
    assert_string_not_equal(r1->version, r2->version);
    assert_int_equal(ck_key_list_versions(f->v, "vault-a", "k1", 0, 25, &v, &n, &more), CK_OK);
    assert_int_equal(n, 3);
    assert_false(more);
    assert_string_equal(v[1]->version, r1->version);
    assert_string_equal(v[2]->version, r2->version);
    ck_key_list_free(v, n);
    struct ck_key *latest;
    assert_int_equal(ck_key_get(f->v, "vault-a", "k1", NULL, &latest), CK_OK);
    assert_string_equal(latest->version, r2->version);
    ck_key_free(latest);
    ck_key_free(r1);
    ck_key_free(r2);
}

static void test_soft_delete_recover_purge(void **state)
{
    struct fx *f = *state;
    struct ck_key *k = create(f, "vault-a", "gone"), *d, *x = NULL;
    assert_int_equal(ck_key_delete(f->v, "vault-a", "gone", &d), CK_OK);
    assert_true(d->deleted > 0);
    assert_int_equal(d->scheduled_purge, d->deleted + 90 * 86400);
    assert_string_equal(d->version, k->version);
    ck_key_free(d);
    assert_int_equal(ck_key_get(f->v, "vault-a", "gone", NULL, &x), CK_ENOTFOUND);
    assert_int_equal(ck_key_delete(f->v, "vault-a", "gone", &x), CK_ENOTFOUND);
    /* The name cannot be reused while soft-deleted. */
    assert_int_equal(ck_key_create(f->v, "vault-a", "gone", "RSA", 2048, NULL, &x), CK_ECONFLICT);
    assert_string_equal(ck_err_code_get(), "Conflict");
    assert_int_equal(ck_key_get_deleted(f->v, "vault-a", "gone", &d), CK_OK);
    ck_key_free(d);
    assert_int_equal(ck_key_recover(f->v, "vault-a", "gone", &d), CK_OK);
    assert_int_equal(d->deleted, 0);
    ck_key_free(d);
    assert_int_equal(ck_key_recover(f->v, "vault-a", "gone", &d), CK_ENOTFOUND);
    /* Purge needs the soft-deleted state. */
    assert_int_equal(ck_key_purge(f->v, "vault-a", "gone"), CK_ENOTFOUND);
    assert_int_equal(ck_key_delete(f->v, "vault-a", "gone", &d), CK_OK);
    ck_key_free(d);
    assert_int_equal(ck_key_purge(f->v, "vault-a", "gone"), CK_OK);
    assert_int_equal(ck_key_get_deleted(f->v, "vault-a", "gone", &d), CK_ENOTFOUND);
    ck_key_free(k);

    /* Purge protection. */
    ck_key_free(create(f, "vault-pp", "kept"));
    assert_int_equal(ck_key_delete(f->v, "vault-pp", "kept", &d), CK_OK);
    assert_string_equal(d->recovery_level, "Recoverable");
    ck_key_free(d);
    assert_int_equal(ck_key_purge(f->v, "vault-pp", "kept"), CK_EFORBIDDEN);
    assert_non_null(strstr(ck_err_msg(), "purge protection"));
    assert_int_equal(ck_key_get_deleted(f->v, "vault-pp", "kept", &d), CK_OK);
    ck_key_free(d);
}

static void test_crypto_rules(void **state)
{
    struct fx *f = *state;
    struct ck_key *k = create(f, "vault-a", "c1"), *u;
    uint8_t dek[32];
    memset(dek, 0x5a, sizeof dek);
    enum ck_crypto_alg algs[] = {CK_ALG_RSA_OAEP, CK_ALG_RSA_OAEP_256, CK_ALG_RSA1_5};
    char ver[33];
    for (size_t i = 0; i < 3; i++) {
        struct ck_buf w = {0};
        struct ck_secret plain = {0};
        assert_int_equal(
            ck_key_crypto(f->v, "vault-a", "c1", "", CK_KEY_WRAP, algs[i], dek, 32, &w, NULL, ver),
            CK_OK);
        assert_string_equal(ver, k->version);
        assert_int_equal(w.n, 256);
        assert_int_equal(ck_key_crypto(f->v, "vault-a", "c1", k->version, CK_KEY_UNWRAP, algs[i],
                                       w.p, w.n, NULL, &plain, ver),
                         CK_OK);
        assert_int_equal(plain.n, 32);
        assert_memory_equal(plain.p, dek, 32);
        /* One flipped byte: a uniform failure. */
        w.p[10] ^= 1;
        ck_secret_free(&plain);
        assert_int_equal(ck_key_crypto(f->v, "vault-a", "c1", "", CK_KEY_UNWRAP, algs[i], w.p, w.n,
                                       NULL, &plain, ver),
                         CK_EINTEGRITY);
        ck_buf_free(&w);
    }
    /* Sign and verify over a digest. */
    uint8_t digest[32] = {1, 2, 3};
    struct ck_buf sig = {0};
    bool valid = false;
    assert_int_equal(ck_key_crypto(f->v, "vault-a", "c1", "", CK_KEY_SIGN, CK_ALG_PS256, digest, 32,
                                   &sig, NULL, ver),
                     CK_OK);
    assert_int_equal(ck_key_verify(f->v, "vault-a", "c1", "", CK_ALG_PS256, digest, 32, sig.p,
                                   sig.n, &valid, ver),
                     CK_OK);
    assert_true(valid);
    digest[0] ^= 1;
    assert_int_equal(ck_key_verify(f->v, "vault-a", "c1", "", CK_ALG_PS256, digest, 32, sig.p,
                                   sig.n, &valid, ver),
                     CK_OK);
    assert_false(valid);
    assert_int_equal(ck_key_crypto(f->v, "vault-a", "c1", "", CK_KEY_SIGN, CK_ALG_RS512, digest, 32,
                                   &sig, NULL, ver),
                     CK_EINVAL);
    ck_buf_free(&sig);
    struct ck_buf w = {0};
    assert_int_equal(
        ck_key_crypto(f->v, "vault-a", "c1", "", CK_KEY_WRAP, CK_ALG_RS256, dek, 32, &w, NULL, ver),
        CK_EINVAL);
    /* Too long for OAEP-256 with a 2048-bit key (256 - 66 = 190). */
    uint8_t big[191] = {0};
    assert_int_equal(ck_key_crypto(f->v, "vault-a", "c1", "", CK_KEY_WRAP, CK_ALG_RSA_OAEP_256, big,
                                   sizeof big, &w, NULL, ver),
                     CK_EINVAL);

    /* Disabled, outside nbf/exp, operation not in key_ops. */
    struct {
        struct ck_key_props p;
        const char *inner;
    } cases[] = {
        {{.has_enabled = true, .enabled = false}, "KeyDisabled"},
        {{.has_enabled = true, .enabled = true, .has_exp = true, .exp = 1000}, "KeyExpired"},
        {{.has_exp = true, .exp = 0, .has_nbf = true, .nbf = ck_now() + 3600}, "KeyNotYetValid"},
        {{.has_nbf = true, .nbf = 0, .has_ops = true, .ops = CK_OP_WRAPKEY},
         "KeyOperationForbidden"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        assert_int_equal(ck_key_update(f->v, "vault-a", "c1", "", &cases[i].p, &u), CK_OK);
        ck_key_free(u);
        struct ck_secret plain = {0};
        assert_int_equal(ck_key_crypto(f->v, "vault-a", "c1", "", CK_KEY_UNWRAP, CK_ALG_RSA_OAEP,
                                       dek, 32, NULL, &plain, ver),
                         CK_EFORBIDDEN);
        assert_string_equal(ck_err_inner_get(), cases[i].inner);
    }
    /* wrapKey is still in key_ops. */
    assert_int_equal(ck_key_crypto(f->v, "vault-a", "c1", "", CK_KEY_WRAP, CK_ALG_RSA_OAEP, dek, 32,
                                   &w, NULL, ver),
                     CK_OK);
    ck_buf_free(&w);
    ck_key_free(k);
}

static void test_backup_restore(void **state)
{
    struct fx *f = *state;
    struct ck_key *k = create(f, "vault-a", "bk"), *r, *x = NULL;
    assert_int_equal(ck_key_rotate(f->v, "vault-a", "bk", &r), CK_OK);
    assert_int_equal(ck_key_rotation_policy_set(
                         f->v, "vault-a", "bk",
                         "{\"lifetimeActions\":[{\"trigger\":{\"timeAfterCreate\":\"P30D\"},"
                         "\"action\":{\"type\":\"Rotate\"}}],\"attributes\":{}}",
                         NULL, NULL),
                     CK_OK);
    struct ck_buf blob = {0};
    assert_int_equal(ck_key_backup(f->v, "vault-a", "bk", &blob), CK_OK);
    assert_memory_equal(blob.p, "CKB1", 4);

    /* While the key exists, and while it is soft-deleted: conflict. */
    assert_int_equal(ck_key_restore(f->v, "vault-a", blob.p, blob.n, &x), CK_ECONFLICT);
    struct ck_key *d;
    assert_int_equal(ck_key_delete(f->v, "vault-a", "bk", &d), CK_OK);
    ck_key_free(d);
    assert_int_equal(ck_key_restore(f->v, "vault-a", blob.p, blob.n, &x), CK_ECONFLICT);
    assert_int_equal(ck_key_purge(f->v, "vault-a", "bk"), CK_OK);

    /* Damaged blobs: truncated, flipped, not a backup; nothing restored. */
    assert_int_equal(ck_key_restore(f->v, "vault-a", blob.p, blob.n - 1, &x), CK_EINVAL);
    assert_non_null(strstr(ck_err_msg(), "cannot be restored"));
    blob.p[blob.n / 2] ^= 0x80;
    assert_int_equal(ck_key_restore(f->v, "vault-a", blob.p, blob.n, &x), CK_EINVAL);
    blob.p[blob.n / 2] ^= 0x80;
    assert_int_equal(ck_key_restore(f->v, "vault-a", (const uint8_t *)"CKB1", 4, &x), CK_EINVAL);
    assert_int_equal(
        ck_key_restore(f->v, "vault-a", (const uint8_t *)"hello world, not a backup", 25, &x),
        CK_EINVAL);
    /* Another geography. */
    assert_int_equal(ck_key_restore(f->v, "vault-eu", blob.p, blob.n, &x), CK_EINVAL);
    assert_non_null(strstr(ck_err_msg(), "geography"));
    assert_int_equal(ck_key_get(f->v, "vault-a", "bk", NULL, &x), CK_ENOTFOUND);
    assert_int_equal(ck_key_get(f->v, "vault-eu", "bk", NULL, &x), CK_ENOTFOUND);

    /* The intact blob restores every version, into another vault of the
     * same geography too. */
    assert_int_equal(ck_key_restore(f->v, "vault-a", blob.p, blob.n, &x), CK_OK);
    assert_string_equal(x->version, r->version);
    ck_key_free(x);
    assert_int_equal(ck_key_restore(f->v, "vault-b", blob.p, blob.n, &x), CK_OK);
    ck_key_free(x);
    struct ck_key **v;
    size_t n;
    bool more;
    assert_int_equal(ck_key_list_versions(f->v, "vault-b", "bk", 0, 25, &v, &n, &more), CK_OK);
    assert_int_equal(n, 2);
    assert_string_equal(v[0]->version, k->version);
    assert_string_equal(v[1]->version, r->version);
    ck_key_list_free(v, n);
    char *policy = NULL;
    assert_int_equal(ck_key_rotation_policy_get(f->v, "vault-b", "bk", &policy, NULL, NULL), CK_OK);
    assert_non_null(strstr(policy, "P30D"));
    free(policy);
    /* The restored key works. */
    uint8_t dek[32] = {9};
    struct ck_buf w = {0};
    char ver[33];
    assert_int_equal(ck_key_crypto(f->v, "vault-b", "bk", k->version, CK_KEY_WRAP,
                                   CK_ALG_RSA_OAEP_256, dek, 32, &w, NULL, ver),
                     CK_OK);
    struct ck_secret plain = {0};
    assert_int_equal(ck_key_crypto(f->v, "vault-b", "bk", k->version, CK_KEY_UNWRAP,
                                   CK_ALG_RSA_OAEP_256, w.p, w.n, NULL, &plain, ver),
                     CK_OK);
    assert_memory_equal(plain.p, dek, 32);
    ck_secret_free(&plain);
    ck_buf_free(&w);

    /* A backup from an installation with another master key is foreign. */
    struct ck_secret other = {0};
    assert_int_equal(ck_secret_alloc(&other, 32), CK_OK);
    memset(other.p, 0x43, 32);
    struct ck_vaults *v2;
    assert_int_equal(ck_vaults_open(f->s, &other, &v2), CK_OK);
    assert_int_equal(ck_key_restore(v2, "vault-b", blob.p, blob.n, &x), CK_EINVAL);
    assert_non_null(strstr(ck_err_msg(), "another ckey installation"));
    ck_vaults_close(v2);
    ck_secret_free(&other);
    ck_buf_free(&blob);
    ck_key_free(k);
    ck_key_free(r);
}

static void test_rotation_policy_and_housekeeping(void **state)
{
    struct fx *f = *state;
    struct ck_key *k = create(f, "vault-a", "rot"), *d;
    char *policy = NULL;
    assert_int_equal(ck_key_rotation_policy_get(f->v, "vault-a", "rot", &policy, NULL, NULL),
                     CK_OK);
    assert_non_null(strstr(policy, "Notify"));
    free(policy);
    const char *bad[] = {
        "[]",
        "{\"lifetimeActions\":[{\"trigger\":{},\"action\":{\"type\":\"Rotate\"}}]}",
        "{\"lifetimeActions\":[{\"trigger\":{\"timeAfterCreate\":\"90 days\"},\"action\":{"
        "\"type\":\"Rotate\"}}]}",
        "{\"lifetimeActions\":[{\"trigger\":{\"timeAfterCreate\":\"P1D\"},\"action\":{}}]}",
        "{\"lifetimeActions\":{}}",
        "{\"attributes\":{\"expiryTime\":\"soon\"}}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(ck_key_rotation_policy_set(f->v, "vault-a", "rot", bad[i], NULL, NULL),
                         CK_EINVAL);
    assert_int_equal(ck_key_rotation_policy_set(
                         f->v, "vault-a", "rot",
                         "{\"lifetimeActions\":[{\"trigger\":{\"timeAfterCreate\":\"P1D\"},"
                         "\"action\":{\"type\":\"rotate\"}}],\"attributes\":{\"expiryTime\":"
                         "\"P1Y\"}}",
                         NULL, NULL),
                     CK_OK);
    size_t purged, rotated;
    assert_int_equal(ck_vault_housekeeping(f->v, ck_now(), &purged, &rotated), CK_OK);
    assert_int_equal(rotated, 0);
    assert_int_equal(ck_vault_housekeeping(f->v, ck_now() + 2 * 86400, &purged, &rotated), CK_OK);
    assert_int_equal(rotated, 1);
    struct ck_key *latest;
    assert_int_equal(ck_key_get(f->v, "vault-a", "rot", NULL, &latest), CK_OK);
    assert_string_not_equal(latest->version, k->version);
    /* The new version expires per attributes.expiryTime. */
    assert_in_range(latest->exp - latest->created, 365 * 86400 - 5, 365 * 86400 + 5);
    ck_key_free(latest);

    /* A soft-deleted key is purged once its date passes, protected or not. */
    ck_key_free(create(f, "vault-pp", "old"));
    assert_int_equal(ck_key_delete(f->v, "vault-pp", "old", &d), CK_OK);
    ck_key_free(d);
    assert_int_equal(ck_vault_housekeeping(f->v, ck_now() + 89 * 86400, &purged, &rotated), CK_OK);
    assert_int_equal(purged, 0);
    assert_int_equal(ck_vault_housekeeping(f->v, ck_now() + 91 * 86400, &purged, &rotated), CK_OK);
    assert_int_equal(purged, 1);
    assert_int_equal(ck_key_get_deleted(f->v, "vault-pp", "old", &d), CK_ENOTFOUND);
    ck_key_free(k);
}

static void test_sealed_key_bound_to_its_row(void **state)
{
    struct fx *f = *state;
    struct ck_key *a = create(f, "vault-a", "a1"), *b = create(f, "vault-a", "b1");
    /* Move a1's sealed private key into b1's row: it must not open there. */
    assert_int_equal(ck_store_run(f->s, NULL,
                                  "UPDATE ck_key_version SET sealed = (SELECT sealed FROM "
                                  "ck_key_version WHERE name = 'a1') WHERE name = 'b1'",
                                  ""),
                     CK_OK);
    uint8_t dek[32] = {0};
    struct ck_buf w = {0};
    char ver[33];
    assert_int_equal(
        ck_key_crypto(f->v, "vault-a", "b1", "", CK_KEY_SIGN, CK_ALG_RS256, dek, 32, &w, NULL, ver),
        CK_EINTERNAL);
    ck_key_free(a);
    ck_key_free(b);
}

/* Unwraps w with the latest (or the given) version of vault-a/name; returns
 * the status and checks the plaintext on success. */
static ck_err unwrap(struct fx *f, const char *name, const char *version, const struct ck_buf *w,
                     const uint8_t dek[32])
{
    struct ck_secret plain = {0};
    char ver[33];
    ck_err rc = ck_key_crypto(f->v, "vault-a", name, version, CK_KEY_UNWRAP, CK_ALG_RSA_OAEP_256,
                              w->p, w->n, NULL, &plain, ver);
    if (rc == CK_OK && (plain.n != 32 || memcmp(plain.p, dek, 32) != 0))
        rc = CK_EINTERNAL;
    ck_secret_free(&plain);
    return rc;
}

static void wrap(struct fx *f, const char *name, const uint8_t dek[32], struct ck_buf *w)
{
    char ver[33];
    assert_int_equal(ck_key_crypto(f->v, "vault-a", name, "", CK_KEY_WRAP, CK_ALG_RSA_OAEP_256, dek,
                                   32, w, NULL, ver),
                     CK_OK);
}

/* The cache of opened keys saves the unseal and parse only: every change to
 * a key shows in the very next operation, and what the cache holds for it
 * is dropped. */
static void test_opened_key_cache_follows_changes(void **state)
{
    struct fx *f = *state;
    ck_key_cache_drop(NULL, NULL);
    struct ck_key *k = create(f, "vault-a", "cached"), *u;
    uint8_t dek[32];
    memset(dek, 0x3c, sizeof dek);
    struct ck_buf w = {0};
    wrap(f, "cached", dek, &w);
    assert_int_equal(unwrap(f, "cached", "", &w, dek), CK_OK);
    assert_int_equal(ck_key_cache_count(), 1);
    assert_int_equal(unwrap(f, "cached", k->version, &w, dek), CK_OK);
    assert_int_equal(ck_key_cache_count(), 1); /* the same entry */

    /* Disabled through the API: refused at once, and the key is dropped. */
    struct ck_key_props off = {.has_enabled = true, .enabled = false};
    struct ck_key_props on = {.has_enabled = true, .enabled = true};
    assert_int_equal(ck_key_update(f->v, "vault-a", "cached", "", &off, &u), CK_OK);
    ck_key_free(u);
    assert_int_equal(ck_key_cache_count(), 0);
    assert_int_equal(unwrap(f, "cached", "", &w, dek), CK_EFORBIDDEN);
    assert_string_equal(ck_err_inner_get(), "KeyDisabled");
    assert_int_equal(ck_key_cache_count(), 0);
    assert_int_equal(ck_key_update(f->v, "vault-a", "cached", "", &on, &u), CK_OK);
    ck_key_free(u);
    assert_int_equal(unwrap(f, "cached", "", &w, dek), CK_OK);
    assert_int_equal(ck_key_cache_count(), 1);

    /* Changed behind the API's back (no drop): the row still decides. */
    const char *edits[][2] = {
        {"UPDATE ck_key_version SET enabled = 0 WHERE name = 'cached'", "KeyDisabled"},
        {"UPDATE ck_key_version SET enabled = 1, exp = 1000 WHERE name = 'cached'", "KeyExpired"},
        {"UPDATE ck_key_version SET exp = 0, ops = 16 WHERE name = 'cached'",
         "KeyOperationForbidden"},
    };
    for (size_t i = 0; i < sizeof edits / sizeof edits[0]; i++) {
        assert_int_equal(ck_store_run(f->s, NULL, edits[i][0], ""), CK_OK);
        assert_int_equal(unwrap(f, "cached", "", &w, dek), CK_EFORBIDDEN);
        assert_string_equal(ck_err_inner_get(), edits[i][1]);
        assert_int_equal(ck_key_cache_count(), 1);
    }
    struct ck_key_props ops = {.has_ops = true, .ops = CK_OP_DEFAULT_RSA};
    assert_int_equal(ck_key_update(f->v, "vault-a", "cached", "", &ops, &u), CK_OK);
    ck_key_free(u);
    assert_int_equal(unwrap(f, "cached", "", &w, dek), CK_OK);

    /* Another key's sealed bytes moved into the row: not served from the
     * cache, and they do not open there. */
    struct ck_key *other = create(f, "vault-a", "other");
    assert_int_equal(ck_store_run(f->s, NULL,
                                  "UPDATE ck_key_version SET sealed = (SELECT sealed FROM "
                                  "ck_key_version WHERE name = 'other') WHERE name = 'cached'",
                                  ""),
                     CK_OK);
    assert_int_equal(unwrap(f, "cached", "", &w, dek), CK_EINTERNAL);
    ck_key_free(other);
    ck_buf_free(&w);
    ck_key_free(k);

    /* Rotation: the new version is used, the old one still opens by name. */
    k = create(f, "vault-a", "rotating");
    wrap(f, "rotating", dek, &w);
    assert_int_equal(unwrap(f, "rotating", "", &w, dek), CK_OK);
    struct ck_key *r;
    assert_int_equal(ck_key_rotate(f->v, "vault-a", "rotating", &r), CK_OK);
    assert_int_equal(unwrap(f, "rotating", "", &w, dek), CK_EINTEGRITY);
    assert_int_equal(unwrap(f, "rotating", k->version, &w, dek), CK_OK);
    ck_key_free(r);

    /* Soft delete and purge. */
    struct ck_key *d;
    assert_int_equal(ck_key_delete(f->v, "vault-a", "rotating", &d), CK_OK);
    ck_key_free(d);
    assert_int_equal(unwrap(f, "rotating", k->version, &w, dek), CK_ENOTFOUND);
    assert_int_equal(ck_key_recover(f->v, "vault-a", "rotating", &d), CK_OK);
    ck_key_free(d);
    assert_int_equal(unwrap(f, "rotating", k->version, &w, dek), CK_OK);
    assert_int_equal(ck_key_delete(f->v, "vault-a", "rotating", &d), CK_OK);
    ck_key_free(d);
    assert_int_equal(ck_key_purge(f->v, "vault-a", "rotating"), CK_OK);
    assert_int_equal(unwrap(f, "rotating", k->version, &w, dek), CK_ENOTFOUND);
    ck_key_free(k);
    ck_buf_free(&w);
}

/* A domain with another sealing key on the same store finds nothing of the
 * first domain's cache: the key does not open for it. */
static void test_opened_key_cache_is_per_sealing_key(void **state)
{
    struct fx *f = *state;
    struct ck_key *k = create(f, "vault-a", "mine");
    uint8_t dek[32] = {9};
    struct ck_buf w = {0};
    wrap(f, "mine", dek, &w);
    assert_int_equal(unwrap(f, "mine", "", &w, dek), CK_OK);
    struct ck_secret other = {0};
    assert_int_equal(ck_secret_alloc(&other, 32), CK_OK);
    memset(other.p, 0x43, 32);
    struct ck_vaults *v2;
    assert_int_equal(ck_vaults_open(f->s, &other, &v2), CK_OK);
    struct ck_secret plain = {0};
    char ver[33];
    assert_int_equal(ck_key_crypto(v2, "vault-a", "mine", "", CK_KEY_UNWRAP, CK_ALG_RSA_OAEP_256,
                                   w.p, w.n, NULL, &plain, ver),
                     CK_EINTERNAL);
    ck_vaults_close(v2);
    ck_secret_free(&other);
    assert_int_equal(unwrap(f, "mine", "", &w, dek), CK_OK);
    ck_buf_free(&w);
    ck_key_free(k);
}

struct racer {
    struct fx *f;
    const struct ck_buf *w;
    const uint8_t *dek;
    const int *stop;
    int ok, refused, bad;
};

static void *unwrap_loop(void *arg)
{
    struct racer *r = arg;
    while (!__atomic_load_n(r->stop, __ATOMIC_ACQUIRE)) {
        ck_err rc = unwrap(r->f, "shared", "", r->w, r->dek);
        if (rc == CK_OK)
            r->ok++;
        else if (rc == CK_EFORBIDDEN)
            r->refused++;
        else
            r->bad++;
    }
    return NULL;
}

/* Operations share cached keys while another thread disables and enables
 * the key: each one either succeeds with the right plaintext or is refused. */
static void test_opened_key_cache_threads(void **state)
{
    struct fx *f = *state;
    struct ck_key *k = create(f, "vault-a", "shared"), *u;
    uint8_t dek[32];
    memset(dek, 0x71, sizeof dek);
    struct ck_buf w = {0};
    wrap(f, "shared", dek, &w);
    enum { N = 3 };
    int stop = 0;
    pthread_t t[N];
    struct racer r[N];
    for (int i = 0; i < N; i++) {
        r[i] = (struct racer){.f = f, .w = &w, .dek = dek, .stop = &stop};
        assert_int_equal(pthread_create(&t[i], NULL, unwrap_loop, &r[i]), 0);
    }
    for (int i = 0; i < 20; i++) {
        struct ck_key_props p = {.has_enabled = true, .enabled = i % 2 == 1};
        assert_int_equal(ck_key_update(f->v, "vault-a", "shared", "", &p, &u), CK_OK);
        ck_key_free(u);
        usleep(2000);
    }
    __atomic_store_n(&stop, 1, __ATOMIC_RELEASE);
    for (int i = 0; i < N; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(r[i].bad, 0);
    }
    /* The last change enabled the key: the cache serves it again. */
    assert_int_equal(unwrap(f, "shared", "", &w, dek), CK_OK);
    ck_buf_free(&w);
    ck_key_free(k);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_create_get_update, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_create_changes_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_paging_and_versions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_soft_delete_recover_purge, setup, teardown),
        cmocka_unit_test_setup_teardown(test_crypto_rules, setup, teardown),
        cmocka_unit_test_setup_teardown(test_backup_restore, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rotation_policy_and_housekeeping, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sealed_key_bound_to_its_row, setup, teardown),
        cmocka_unit_test_setup_teardown(test_opened_key_cache_follows_changes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_opened_key_cache_is_per_sealing_key, setup, teardown),
        cmocka_unit_test_setup_teardown(test_opened_key_cache_threads, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
