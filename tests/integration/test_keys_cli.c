/*
 * Integration tests of `ckey key ...`: the CLI against a real server, as a
 * subscription owner (alice) on her own vault, reached the way any AKV
 * client reaches it, at https://cli-a.vault.localhost:PORT.
 *
 * Also the two properties a user cannot see from the CLI alone: keys work
 * with OpenSSL (export the public key, wrap with openssl, unwrap in the
 * vault, and the reverse for an imported key), and an imported private key
 * never reaches the disk in any readable form.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/base.h"
#include "crypto/crypto.h"
#include "harness.h"

static struct srv S;
static char *alice;     /* alice's token */
static char W[64];      /* work dir for files the CLI reads and writes */
static char vault[160]; /* https://cli-a.vault.localhost:PORT */

/* ---------- helpers ---------- */

static void expect_in(const char *out, const char *needle)
{
    if (!out || !strstr(out, needle)) {
        fprintf(stderr, "expected '%s' in:\n%s\n", needle, out ? out : "(null)");
        fail();
    }
}

static void expect_not_in(const char *out, const char *needle)
{
    if (out && strstr(out, needle)) {
        fprintf(stderr, "did not expect '%s' in:\n%s\n", needle, out);
        fail();
    }
}

/* `ckey ARGS` as alice, asserting the exit status; returns the output. */
static char *key_cli(int want, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static char *key_cli(int want, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *args = NULL;
    assert_true(vasprintf(&args, fmt, ap) >= 0);
    va_end(ap);
    char *out = NULL;
    int st = cli(&S, alice, &out, "%s", args);
    if (st != want) {
        fprintf(stderr, "ckey %s: exit %d, wanted %d:\n%s\n", args, st, want, out);
        fail();
    }
    free(args);
    return out;
}

/* Like key_cli but through the shell, so ARGS may redirect stdout; the
 * output returned is stderr. */
static int key_sh(char **out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int key_sh(char **out, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *args = NULL;
    assert_true(vasprintf(&args, fmt, ap) >= 0);
    va_end(ap);
    int st = sh(out, "env -u CKEY_DATA_DIR CKEY_URL=%s CKEY_CACERT=%s CKEY_TOKEN=%s %s %s", S.url,
                S.cacert, alice, getenv("CK_BIN"), args);
    free(args);
    return st;
}

/* The value of "Label : value" in CLI object output (malloc'd). */
static char *field_of(const char *out, const char *label)
{
    size_t n = strlen(label);
    for (const char *line = out; line && *line;) {
        const char *end = strchr(line, '\n');
        if (!end)
            end = line + strlen(line);
        if (strncmp(line, label, n) == 0 && (line[n] == ' ' || line[n] == ':')) {
            const char *colon = strstr(line, " : ");
            if (colon && colon < end)
                return strndup(colon + 3, (size_t)(end - colon - 3));
        }
        line = *end ? end + 1 : end;
    }
    fprintf(stderr, "no field '%s' in:\n%s\n", label, out);
    fail();
    return NULL;
}

static size_t count_lines(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

static char *issue_token(const char *who)
{
    return token_for(&S, who, "1h", NULL);
}

static void create_vault(const char *name, const char *token)
{
    struct http_result r;
    http(&S, "GET", "/whoami", token, NULL, 0, NULL, &r);
    assert_int_equal(r.status, 200);
    const char *tid = json_string_value(json_object_get(r.json, "tenantId"));
    const char *oid = json_string_value(json_object_get(r.json, "objectId"));
    json_t *body =
        json_pack("{s:s,s:{s:s,s:{s:s,s:s},s:[{s:s,s:s,s:{s:[s]}}]}}", "location", "westus",
                  "properties", "tenantId", tid, "sku", "family", "A", "name", "standard",
                  "accessPolicies", "tenantId", tid, "objectId", oid, "permissions", "keys", "all");
    char *text = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    http_free(&r);
    char path[200];
    snprintf(path, sizeof path,
             "/subscriptions/sub1/resourceGroups/rg1/providers/Microsoft.KeyVault/vaults/%s"
             "?api-version=2023-02-01",
             name);
    http(&S, "PUT", path, token, text, strlen(text), NULL, &r);
    if (r.status != 200 && r.status != 201)
        fprintf(stderr, "vault PUT: %ld %s\n", r.status, r.body);
    assert_true(r.status == 200 || r.status == 201);
    http_free(&r);
    free(text);
}

static int setup(void **state)
{
    srv_start(&S, false);
    char *out = NULL;
    if (cli(&S, NULL, &out, "principal add --upn alice@contoso.com") != 0)
        return -1;
    free(out);
    alice = issue_token("alice@contoso.com");
    struct http_result r;
    const char *sub = "{\"owners\":[\"alice@contoso.com\"]}";
    http(&S, "PUT", "/admin/subscriptions/sub1", S.token, sub, strlen(sub), NULL, &r);
    long st = r.status;
    http_free(&r);
    if (st != 200 && st != 201)
        return -1;
    create_vault("cli-a", alice);
    snprintf(vault, sizeof vault, "https://cli-a.vault.localhost:%u", S.port);
    snprintf(W, sizeof W, "/tmp/ckey-kcli-XXXXXX");
    return mkdtemp(W) ? 0 : -1;
}

static int teardown(void **state)
{
    char *out = NULL;
    sh(&out, "rm -rf '%s'", W);
    free(out);
    free(alice);
    int status = srv_stop(&S);
    srv_cleanup(&S);
    return status == 0 ? 0 : -1;
}

/* ---------- help and usage ---------- */

static void test_help_and_usage_errors(void **state)
{
    char *out = key_cli(0, "key --help");
    expect_in(out, "ckey key create --vault V --name K");
    expect_in(out, "ckey key unwrap");
    free(out);
    out = key_cli(0, "key backup --help");
    expect_in(out, "ckey key backup --vault V --name K --out FILE");
    expect_not_in(out, "ckey key create");
    free(out);
    out = key_cli(0, "--help");
    expect_in(out, "  key ");
    free(out);
    out = key_cli(2, "key");
    free(out);
    out = key_cli(2, "key frobnicate --vault cli-a");
    expect_in(out, "unknown key command");
    free(out);
    out = key_cli(2, "key show --name k");
    expect_in(out, "--vault");
    free(out);
    out = key_cli(2, "key show --vault cli-a");
    expect_in(out, "--name");
    free(out);
    out = key_cli(2, "key create --vault cli-a --name k --size 1024");
    free(out);
    out = key_cli(2, "key create --vault cli-a --name k --ops fly");
    expect_in(out, "not a key operation");
    free(out);
    out = key_cli(2, "key create --vault cli-a --name k --expires tomorrow");
    free(out);
    out = key_cli(2, "key update --vault cli-a --name k");
    expect_in(out, "something to change");
    free(out);
    out = key_cli(2, "key wrap --vault cli-a --name k --alg A256KW --in x --out y");
    free(out);
    out = key_cli(2, "key show --vault 'bad/name' --name k");
    free(out);
    /* None of that created anything. */
    out = key_cli(0, "key list --vault cli-a");
    assert_int_equal(count_lines(out), 1);
    free(out);
}

/* ---------- the key lifecycle ---------- */

static void test_lifecycle(void **state)
{
    char *out = key_cli(0, "key create --vault cli-a --name k1 --tag env=prod --tag team=blue "
                           "--expires 2030-01-01T00:00:00Z");
    char prefix[256];
    snprintf(prefix, sizeof prefix, "%s/keys/k1/", vault);
    char *v1 = field_of(out, "Version"), *id = field_of(out, "Id");
    assert_int_equal(strlen(v1), 32);
    assert_true(strncmp(id, prefix, strlen(prefix)) == 0);
    expect_in(out, "Vault Name      : cli-a\n");
    expect_in(out, "Name            : k1\n");
    expect_in(out, "Key Type        : RSA\n");
    expect_in(out, "Key Size        : 2048\n");
    expect_in(out, "Key Ops         : encrypt, decrypt, sign, verify, wrapKey, unwrapKey\n");
    expect_in(out, "Enabled         : True\n");
    expect_in(out, "Expires         : 2030-01-01T00:00:00Z\n");
    expect_in(out, "Recovery Level  : Recoverable+Purgeable\n");
    expect_in(out, "Tags            : env=prod, team=blue\n");
    free(out);

    out = key_cli(0, "key create --vault cli-a --name k3 --kty RSA-HSM --size 3072 --disabled "
                     "--ops wrapKey,unwrapKey --not-before 1900000000");
    expect_in(out, "Key Type        : RSA-HSM\n");
    expect_in(out, "Key Size        : 3072\n");
    expect_in(out, "Key Ops         : wrapKey, unwrapKey\n");
    expect_in(out, "Enabled         : False\n");
    expect_in(out, "Not Before      : 2030-03-17T17:46:40Z\n");
    free(out);

    out = key_cli(0, "key show --vault cli-a --name k1");
    char *shown = field_of(out, "Version");
    assert_string_equal(shown, v1);
    free(shown);
    free(out);

    out = key_cli(0, "key rotate --vault cli-a --name k1");
    char *v2 = field_of(out, "Version");
    assert_string_not_equal(v1, v2);
    free(out);

    out = key_cli(0, "key versions --vault cli-a --name k1");
    expect_in(out, "VERSION");
    expect_in(out, "ENABLED");
    expect_in(out, "CREATED");
    expect_in(out, "EXPIRES");
    expect_in(out, v1);
    expect_in(out, v2);
    expect_in(out, "2030-01-01T00:00:00Z");
    assert_int_equal(count_lines(out), 3);
    free(out);

    out = key_cli(0, "key list --vault cli-a");
    expect_in(out, "NAME");
    expect_in(out, "RECOVERY LEVEL");
    expect_in(out, "\nk1 ");
    expect_in(out, "\nk3 ");
    expect_in(out, "Recoverable+Purgeable");
    assert_int_equal(count_lines(out), 3);
    free(out);

    /* update changes only what is given, on the latest version. */
    out = key_cli(0, "key update --vault cli-a --name k1 --disable --ops wrapKey,unwrapKey "
                     "--tag env=dev");
    expect_in(out, "Enabled         : False\n");
    expect_in(out, "Key Ops         : wrapKey, unwrapKey\n");
    expect_in(out, "Tags            : env=dev\n");
    char *updated = field_of(out, "Version");
    assert_string_equal(updated, v2);
    free(updated);
    free(out);
    out = key_cli(0, "key show --vault cli-a --name k1 --version %s", v1);
    expect_in(out, "Enabled         : True\n");
    expect_in(out, "Tags            : env=prod, team=blue\n");
    free(out);
    out = key_cli(0, "key update --vault cli-a --name k1 --version %s --expires 2031-06-01", v1);
    expect_in(out, "Expires         : 2031-06-01T00:00:00Z\n");
    expect_in(out, "Enabled         : True\n");
    free(out);
    out = key_cli(0, "key update --vault cli-a --name k1 --enable");
    expect_in(out, "Enabled         : True\n");
    expect_in(out, "Key Ops         : wrapKey, unwrapKey\n");
    free(out);

    /* -o json gives the bundle itself. */
    out = key_cli(0, "-o json key show --vault cli-a --name k1");
    json_t *j = json_loads(out, 0, NULL);
    assert_non_null(j);
    assert_non_null(json_object_get(json_object_get(j, "key"), "n"));
    assert_null(json_object_get(json_object_get(j, "key"), "d"));
    json_decref(j);
    free(out);

    /* delete → list-deleted → recover. */
    out = key_cli(0, "key delete --vault cli-a --name k1");
    expect_in(out, "Recovery Id     : ");
    expect_in(out, "/deletedkeys/k1\n");
    expect_in(out, "Scheduled Purge : ");
    free(out);
    out = key_cli(0, "key list --vault cli-a");
    expect_not_in(out, "k1");
    free(out);
    out = key_cli(0, "key list-deleted --vault cli-a");
    expect_in(out, "NAME");
    expect_in(out, "DELETED");
    expect_in(out, "SCHEDULED PURGE");
    expect_in(out, "\nk1 ");
    free(out);
    out = key_cli(1, "key show --vault cli-a --name k1");
    expect_in(out, "ckey: ");
    expect_in(out, "not found");
    free(out);
    out = key_cli(1, "key create --vault cli-a --name k1");
    expect_in(out, "deleted");
    free(out);
    out = key_cli(0, "key recover --vault cli-a --name k1");
    expect_in(out, "Name            : k1\n");
    free(out);
    out = key_cli(0, "key versions --vault cli-a --name k1");
    expect_in(out, v1);
    expect_in(out, v2);
    free(out);
    out = key_cli(0, "key list-deleted --vault cli-a");
    expect_not_in(out, "k1");
    free(out);

    /* delete → purge: gone for good. */
    free(key_cli(0, "key delete --vault cli-a --name k3"));
    out = key_cli(0, "key purge --vault cli-a --name k3");
    expect_in(out, "purged");
    free(out);
    out = key_cli(0, "key list-deleted --vault cli-a");
    expect_not_in(out, "k3");
    free(out);
    out = key_cli(1, "key purge --vault cli-a --name k3");
    expect_in(out, "ckey: ");
    free(out);
    out = key_cli(0, "key list --vault cli-a");
    expect_in(out, "\nk1 ");
    expect_not_in(out, "k3");
    free(out);

    free(v1);
    free(v2);
    free(id);
}

static void test_vault_addressing_and_errors(void **state)
{
    char *out = key_cli(0, "key show --vault-url %s/ --name k1", vault);
    expect_in(out, "Name            : k1\n");
    free(out);
    out = key_cli(1, "key list --vault nosuchvault");
    expect_in(out, "ckey: the vault 'nosuchvault' does not exist");
    free(out);
    out = key_cli(2, "key list --vault-url http://cli-a.vault.localhost:%u", S.port);
    free(out);

    /* Someone without an access policy gets the vault's own message. */
    assert_int_equal(cli(&S, NULL, &out, "principal add --upn bob@contoso.com"), 0);
    free(out);
    char *bob = issue_token("bob@contoso.com");
    assert_int_equal(cli(&S, bob, &out, "key list --vault cli-a"), 1);
    expect_in(out, "ckey: The user, group or application");
    expect_in(out, "does not have keys list permission");
    free(out);
    free(bob);
}

/* ---------- backup and restore ---------- */

/* Copies the first keep bytes of src to dst, with the byte at flip (if
 * not -1) changed. */
static void copy_damaged(const char *src, const char *dst, off_t keep, long flip)
{
    FILE *f = fopen(src, "rb");
    assert_non_null(f);
    uint8_t *b = malloc((size_t)keep);
    assert_int_equal(fread(b, 1, (size_t)keep, f), (size_t)keep);
    fclose(f);
    if (flip >= 0)
        b[flip] ^= 0x01;
    f = fopen(dst, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(b, 1, (size_t)keep, f), (size_t)keep);
    fclose(f);
    free(b);
}

static void test_backup_restore(void **state)
{
    free(key_cli(0, "key create --vault cli-a --name kb --tag purpose=backup"));
    free(key_cli(0, "key rotate --vault cli-a --name kb"));
    free(key_cli(0, "key update --vault cli-a --name kb --disable"));
    free(key_cli(0, "key rotate --vault cli-a --name kb"));
    char *before = key_cli(0, "key versions --vault cli-a --name kb");
    assert_int_equal(count_lines(before), 4);

    char *out = key_cli(0, "key backup --vault cli-a --name kb --out %s/kb.bak", W);
    expect_in(out, "kb.bak");
    free(out);
    char bak[128];
    snprintf(bak, sizeof bak, "%s/kb.bak", W);
    struct stat st;
    assert_int_equal(stat(bak, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_true(st.st_size > 100);
    off_t size = st.st_size;

    /* An existing file is kept unless --force. */
    out = key_cli(1, "key backup --vault cli-a --name kb --out %s", bak);
    expect_in(out, "exists");
    free(out);
    free(key_cli(0, "key backup --vault cli-a --name kb --out %s --force", bak));
    assert_int_equal(stat(bak, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);

    /* Restore while the key exists (live, then deleted): a conflict. */
    out = key_cli(1, "key restore --vault cli-a --in %s", bak);
    expect_in(out, "conflict");
    free(out);
    free(key_cli(0, "key delete --vault cli-a --name kb"));
    out = key_cli(1, "key restore --vault cli-a --in %s", bak);
    expect_in(out, "conflict");
    free(out);
    free(key_cli(0, "key purge --vault cli-a --name kb"));
    free(key_cli(1, "key show --vault cli-a --name kb"));

    /* Damaged backups are refused and change nothing. */
    char *list_before = key_cli(0, "key list --vault cli-a");
    char damaged[128];
    snprintf(damaged, sizeof damaged, "%s/damaged.bak", W);
    copy_damaged(bak, damaged, size - 10, -1);
    out = key_cli(1, "key restore --vault cli-a --in %s", damaged);
    expect_in(out, "ckey: the key backup cannot be restored");
    free(out);
    long offsets[] = {0, 4, 20, (long)size / 2, (long)size - 1};
    for (size_t i = 0; i < sizeof offsets / sizeof *offsets; i++) {
        copy_damaged(bak, damaged, size, offsets[i]);
        out = key_cli(1, "key restore --vault cli-a --in %s", damaged);
        expect_in(out, "ckey: the key backup cannot be restored");
        free(out);
    }
    char *list_after = key_cli(0, "key list --vault cli-a");
    assert_string_equal(list_before, list_after);
    expect_not_in(list_after, "kb");
    free(list_before);
    free(list_after);
    free(key_cli(1, "key restore --vault cli-a --in %s/does-not-exist.bak", W));

    /* The good backup brings back every version as it was. */
    out = key_cli(0, "key restore --vault cli-a --in %s", bak);
    expect_in(out, "Name            : kb\n");
    expect_in(out, "Tags            : purpose=backup\n");
    free(out);
    char *after = key_cli(0, "key versions --vault cli-a --name kb");
    assert_string_equal(before, after);
    free(before);
    free(after);
}

/* ---------- OpenSSL interop ---------- */

static void test_openssl_interop(void **state)
{
    free(key_cli(0, "key create --vault cli-a --name kw"));
    char *out = NULL;
    assert_int_equal(
        key_sh(&out, "key export-public --vault cli-a --name kw --pem > %s/pub.pem", W), 0);
    free(out);
    assert_int_equal(sh(&out, "openssl pkey -pubin -in %s/pub.pem -noout -text", W), 0);
    expect_in(out, "2048 bit");
    free(out);
    /* Without --pem: the JWK, public parts only. */
    out = key_cli(0, "key export-public --vault cli-a --name kw");
    json_t *jwk = json_loads(out, 0, NULL);
    assert_non_null(jwk);
    assert_string_equal(json_string_value(json_object_get(jwk, "kty")), "RSA");
    assert_non_null(json_object_get(jwk, "n"));
    assert_null(json_object_get(jwk, "d"));
    json_decref(jwk);
    free(out);

    /* openssl wraps with the exported public key; the vault unwraps. */
    assert_int_equal(sh(&out,
                        "(cd %s && openssl rand -out secret.bin 32 && "
                        "openssl pkeyutl -encrypt -pubin -inkey pub.pem "
                        "-pkeyopt rsa_padding_mode:oaep -pkeyopt rsa_oaep_md:sha256 "
                        "-pkeyopt rsa_mgf1_md:sha256 -in secret.bin -out wrapped.bin && "
                        "openssl pkeyutl -encrypt -pubin -inkey pub.pem "
                        "-pkeyopt rsa_padding_mode:oaep -in secret.bin -out wrapped1.bin)",
                        W),
                     0);
    free(out);
    free(key_cli(0,
                 "key unwrap --vault cli-a --name kw --alg RSA-OAEP-256 --in %s/wrapped.bin "
                 "--out %s/unwrapped.bin",
                 W, W));
    assert_int_equal(sh(&out, "cmp %s/secret.bin %s/unwrapped.bin", W, W), 0);
    free(out);
    char path[128];
    struct stat st;
    snprintf(path, sizeof path, "%s/unwrapped.bin", W);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    free(key_cli(0,
                 "key unwrap --vault cli-a --name kw --alg RSA-OAEP --in %s/wrapped1.bin "
                 "--out %s/unwrapped1.bin",
                 W, W));
    assert_int_equal(sh(&out, "cmp %s/secret.bin %s/unwrapped1.bin", W, W), 0);
    free(out);

    /* The wrong algorithm fails, and leaves no file behind. */
    out = key_cli(1,
                  "key unwrap --vault cli-a --name kw --alg RSA-OAEP --in %s/wrapped.bin "
                  "--out %s/wrong.bin",
                  W, W);
    expect_in(out, "ckey: ");
    free(out);
    snprintf(path, sizeof path, "%s/wrong.bin", W);
    assert_int_not_equal(access(path, F_OK), 0);

    /* An existing --out file is not overwritten. */
    out = key_cli(1,
                  "key unwrap --vault cli-a --name kw --alg RSA-OAEP-256 --in %s/wrapped.bin "
                  "--out %s/secret.bin",
                  W, W);
    expect_in(out, "exists");
    free(out);

    /* ckey wrap → ckey unwrap, for every algorithm, on an explicit version too. */
    out = key_cli(0, "key show --vault cli-a --name kw");
    char *version = field_of(out, "Version");
    free(out);
    static const char *const algs[] = {"RSA-OAEP", "RSA-OAEP-256", "RSA1_5"};
    for (size_t i = 0; i < 3; i++) {
        free(key_cli(0,
                     "key wrap --vault cli-a --name kw --alg %s --in %s/secret.bin "
                     "--out %s/w%zu.bin",
                     algs[i], W, W, i));
        free(key_cli(0,
                     "key unwrap --vault cli-a --name kw --version %s --alg %s --in %s/w%zu.bin "
                     "--out %s/u%zu.bin",
                     version, algs[i], W, i, W, i));
        assert_int_equal(sh(&out, "cmp %s/secret.bin %s/u%zu.bin", W, W, i), 0);
        free(out);
        assert_int_equal(sh(&out, "cmp -s %s/secret.bin %s/w%zu.bin", W, W, i), 1);
        free(out);
    }
    free(version);
}

/* ---------- the private exponent never reaches the disk ---------- */

/* The hex dump under "label:" in `openssl pkey -text` output, as bytes
 * without leading zeros. */
static struct ck_buf hex_section(const char *text, const char *label)
{
    char head[64];
    snprintf(head, sizeof head, "\n%s:\n", label);
    const char *p = strstr(text, head);
    assert_non_null(p);
    p += strlen(head);
    char *hex = calloc(1, strlen(p) + 1);
    size_t n = 0;
    while (*p == ' ') {
        while (*p && *p != '\n') {
            if (strchr("0123456789abcdefABCDEF", *p))
                hex[n++] = *p;
            p++;
        }
        if (*p)
            p++;
    }
    struct ck_buf b = {0};
    assert_int_equal(ck_hex_decode(hex, &b), CK_OK);
    free(hex);
    size_t z = 0;
    while (z < b.n && b.p[z] == 0)
        z++;
    memmove(b.p, b.p + z, b.n - z);
    b.n -= z;
    return b;
}

static char *b64(const struct ck_buf *b)
{
    char *s = NULL;
    assert_int_equal(ck_b64url_encode(b->p, b->n, &s), CK_OK);
    return s;
}

struct needle {
    const char *what;
    const void *p;
    size_t n;
    int hits;
};

static void scan_file(const char *path, struct needle *nd, size_t nn)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return;
    struct ck_buf all = {0};
    char buf[65536];
    size_t got;
    while ((got = fread(buf, 1, sizeof buf, f)) > 0)
        assert_int_equal(ck_buf_append(&all, buf, got), CK_OK);
    fclose(f);
    for (size_t i = 0; i < nn; i++)
        if (all.n && memmem(all.p, all.n, nd[i].p, nd[i].n)) {
            fprintf(stderr, "%s found in %s\n", nd[i].what, path);
            nd[i].hits++;
        }
    ck_buf_free(&all);
}

/* Every file under dir, recursively. Returns how many were read. */
static int scan_tree(const char *dir, struct needle *nd, size_t nn)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    int files = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        struct stat st;
        if (lstat(path, &st) != 0)
            continue;
        if (S_ISDIR(st.st_mode)) {
            files += scan_tree(path, nd, nn);
        } else if (S_ISREG(st.st_mode)) {
            scan_file(path, nd, nn);
            files++;
        }
    }
    closedir(d);
    return files;
}

static void test_private_exponent_never_on_disk(void **state)
{
    char *out = NULL;
    assert_int_equal(sh(&out,
                        "(cd %s && openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 "
                        "-out priv.pem && openssl pkcs8 -topk8 -nocrypt -in priv.pem "
                        "-outform DER -out priv.der)",
                        W),
                     0);
    free(out);
    char *text = NULL;
    assert_int_equal(sh(&text, "openssl pkey -in %s/priv.pem -text -noout", W), 0);
    struct ck_buf n = hex_section(text, "modulus"), d = hex_section(text, "privateExponent");
    struct ck_buf p = hex_section(text, "prime1"), q = hex_section(text, "prime2");
    struct ck_buf dp = hex_section(text, "exponent1"), dq = hex_section(text, "exponent2");
    struct ck_buf qi = hex_section(text, "coefficient");
    free(text);

    /* The parse agrees with the crypto module's view of the same key. */
    char der_path[128];
    snprintf(der_path, sizeof der_path, "%s/priv.der", W);
    FILE *f = fopen(der_path, "rb");
    assert_non_null(f);
    uint8_t der[4096];
    size_t dern = fread(der, 1, sizeof der, f);
    fclose(f);
    struct ck_rsa *rsa = NULL;
    assert_int_equal(ck_rsa_from_der(der, dern, &rsa), CK_OK);
    struct ck_buf cn = {0}, ce = {0};
    struct ck_secret cd = {0};
    assert_int_equal(ck_rsa_public_ne(rsa, &cn, &ce), CK_OK);
    assert_int_equal(ck_rsa_private_d(rsa, &cd), CK_OK);
    assert_int_equal(cn.n, n.n);
    assert_memory_equal(cn.p, n.p, n.n);
    assert_int_equal(cd.n, d.n);
    assert_memory_equal(cd.p, d.p, d.n);
    ck_rsa_free(rsa);

    /* Import it as a JWK over the AKV API. */
    char *s_n = b64(&n), *s_e = b64(&ce), *s_d = b64(&d), *s_p = b64(&p), *s_q = b64(&q);
    char *s_dp = b64(&dp), *s_dq = b64(&dq), *s_qi = b64(&qi);
    json_t *body =
        json_pack("{s:{s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s}}", "key", "kty", "RSA", "n", s_n, "e",
                  s_e, "d", s_d, "p", s_p, "q", s_q, "dp", s_dp, "dq", s_dq, "qi", s_qi);
    char *json = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    char url[256];
    snprintf(url, sizeof url, "%s/keys/imported?api-version=7.6", vault);
    struct http_result r;
    http(&S, "PUT", url, alice, json, strlen(json), NULL, &r);
    if (r.status != 200)
        fprintf(stderr, "import: %ld %s\n", r.status, r.body);
    assert_int_equal(r.status, 200);
    assert_string_equal(json_string_value(json_object_get(json_object_get(r.json, "key"), "n")),
                        s_n);
    assert_null(json_object_get(json_object_get(r.json, "key"), "d"));
    http_free(&r);
    free(json);

    /* The imported key works with OpenSSL the other way round: the vault
     * wraps, openssl unwraps with the private key. */
    assert_int_equal(sh(&out, "openssl rand -out %s/dek.bin 32", W), 0);
    free(out);
    free(key_cli(0,
                 "key wrap --vault cli-a --name imported --alg RSA-OAEP-256 --in %s/dek.bin "
                 "--out %s/dek.wrapped",
                 W, W));
    assert_int_equal(sh(&out,
                        "(cd %s && openssl pkeyutl -decrypt -inkey priv.pem "
                        "-pkeyopt rsa_padding_mode:oaep -pkeyopt rsa_oaep_md:sha256 "
                        "-pkeyopt rsa_mgf1_md:sha256 -in dek.wrapped -out dek.openssl && "
                        "cmp dek.bin dek.openssl)",
                        W),
                     0);
    free(out);
    /* Exercise the paths that handle the private key: backup and get. */
    free(key_cli(0, "key backup --vault cli-a --name imported --out %s/imported.bak", W));
    free(key_cli(0, "key show --vault cli-a --name imported"));

    /* d in every form it could be written in, and p and q. */
    char *d_hex = calloc(1, 2 * d.n + 1), *d_HEX = calloc(1, 2 * d.n + 1);
    ck_hex_encode(d.p, d.n, d_hex);
    for (size_t i = 0; d_hex[i]; i++)
        d_HEX[i] = (char)(d_hex[i] >= 'a' ? d_hex[i] - 32 : d_hex[i]);
    char *d_b64std = strdup(s_d);
    for (char *c = d_b64std; *c; c++)
        *c = *c == '-' ? '+' : *c == '_' ? '/' : *c;
    struct needle never[] = {
        {"d (raw)", d.p, d.n, 0},
        {"d (hex)", d_hex, strlen(d_hex), 0},
        {"d (HEX)", d_HEX, strlen(d_HEX), 0},
        {"d (base64url)", s_d, strlen(s_d), 0},
        {"d (base64)", d_b64std, strlen(d_b64std), 0},
        {"p (raw)", p.p, p.n, 0},
        {"q (raw)", q.p, q.n, 0},
        {"p (base64url)", s_p, strlen(s_p), 0},
    };
    size_t nn = sizeof never / sizeof *never;

    /* Before the checkpoint (the WAL holds the latest writes) and after. */
    assert_true(scan_tree(S.dir, never, nn) >= 3);
    assert_int_equal(sh(&out, "sqlite3 %s/ckey.db 'PRAGMA wal_checkpoint(TRUNCATE)'", S.dir), 0);
    free(out);
    assert_true(scan_tree(S.dir, never, nn) >= 3);
    char bak[128];
    snprintf(bak, sizeof bak, "%s/imported.bak", W);
    scan_file(bak, never, nn);
    for (size_t i = 0; i < nn; i++)
        assert_int_equal(never[i].hits, 0);

    /* The search does find what is stored in the clear. */
    struct needle pub[] = {{"n (raw)", n.p, n.n, 0}};
    char db[300];
    snprintf(db, sizeof db, "%s/ckey.db", S.dir);
    scan_file(db, pub, 1);
    assert_int_equal(pub[0].hits, 1);

    free(d_hex);
    free(d_HEX);
    free(d_b64std);
    free(s_n);
    free(s_e);
    free(s_d);
    free(s_p);
    free(s_q);
    free(s_dp);
    free(s_dq);
    free(s_qi);
    struct ck_buf *bufs[] = {&n, &d, &p, &q, &dp, &dq, &qi, &cn, &ce};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++)
        ck_buf_free(bufs[i]);
    ck_secret_free(&cd);
}

/* ---------- paging ---------- */

static void test_lists_follow_next_link(void **state)
{
    create_vault("cli-p", alice);
    char url[256];
    const char *body = "{\"kty\":\"RSA\",\"key_size\":2048,\"attributes\":{}}";
    for (int i = 0; i < 27; i++) {
        snprintf(url, sizeof url,
                 "https://cli-p.vault.localhost:%u/keys/p%02d/create"
                 "?api-version=7.6",
                 S.port, i);
        struct http_result r;
        http(&S, "POST", url, alice, body, strlen(body), NULL, &r);
        assert_int_equal(r.status, 200);
        http_free(&r);
    }
    /* A first page of 25 is followed by a second. */
    snprintf(url, sizeof url, "https://cli-p.vault.localhost:%u/keys?api-version=7.6", S.port);
    struct http_result r;
    http(&S, "GET", url, alice, NULL, 0, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_int_equal(json_array_size(json_object_get(r.json, "value")), 25);
    assert_true(json_is_string(json_object_get(r.json, "nextLink")));
    http_free(&r);

    char *out = key_cli(0, "key list --vault cli-p");
    assert_int_equal(count_lines(out), 28);
    for (int i = 0; i < 27; i++) {
        char name[8];
        snprintf(name, sizeof name, "\np%02d ", i);
        expect_in(out, name);
    }
    free(out);
    out = key_cli(0, "-o json key list --vault cli-p");
    json_t *j = json_loads(out, 0, NULL);
    assert_true(json_is_array(j));
    assert_int_equal(json_array_size(j), 27);
    json_decref(j);
    free(out);

    for (int i = 0; i < 26; i++)
        free(key_cli(0, "key rotate --vault cli-p --name p00"));
    out = key_cli(0, "key versions --vault cli-p --name p00");
    assert_int_equal(count_lines(out), 28);
    free(out);

    for (int i = 0; i < 26; i++)
        free(key_cli(0, "key delete --vault cli-p --name p%02d", i));
    out = key_cli(0, "key list-deleted --vault cli-p");
    assert_int_equal(count_lines(out), 27);
    expect_in(out, "\np25 ");
    free(out);
    out = key_cli(0, "key list --vault cli-p");
    assert_int_equal(count_lines(out), 2);
    expect_in(out, "\np26 ");
    free(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_help_and_usage_errors),
        cmocka_unit_test(test_lifecycle),
        cmocka_unit_test(test_vault_addressing_and_errors),
        cmocka_unit_test(test_backup_restore),
        cmocka_unit_test(test_openssl_interop),
        cmocka_unit_test(test_private_exponent_never_on_disk),
        cmocka_unit_test(test_lists_follow_next_link),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
