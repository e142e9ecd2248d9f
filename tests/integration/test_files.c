/*
 * Integration tests of files and the SharePoint-style data encryption
 * policy against a real server with two real vaults: sites and files of
 * many sizes read back byte for byte through every state (service-managed,
 * Registering, Registered, Rolling), the old intermediate key gone after a
 * roll, bad input leaving everything unchanged, a corrupted stored chunk
 * failing the download, and a crash in the middle of a registration.
 *
 * The server runs with --job-throttle-ms so that the percentages of a
 * registration are observable, and there are more sites than one rewrap
 * batch (REWRAP_BATCH, 100) so that there are several.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"

#define FILES_APP_ID "66696c65-0000-4000-8000-636b65790002"
#define SERVER_ARGS "--job-throttle-ms 100 --job-lease 2"
#define NSITES 20  /* sites with files */
#define NEMPTY 480 /* more sites: 500 in the geo, a registration of several batches */
#define NCRASH 250 /* sites of the geo registered across a crash */

static struct srv S;
static char ALICE[256];
static char FILES_OID[64];
static char TMP[256]; /* local files */
static char *URI_A, *URI_B, *URI_A2, *URI_A3, *URI_B2;

/* One file put in the test: where, and its bytes. */
struct tfile {
    char site[64];
    char path[128];
    size_t size;
    uint8_t *data;
    bool skip; /* replaced, or corrupted on purpose: not read back */
};
static struct tfile FILES[64];
static size_t NFILES;

/* ---------- helpers ---------- */

/* Runs ckey as alice expecting exit status expect; returns the output. */
static char *cli_expect(int expect, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static char *cli_expect(int expect, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *args = NULL;
    if (vasprintf(&args, fmt, ap) < 0)
        fail();
    va_end(ap);
    char *out = NULL;
    int st = cli(&S, ALICE, &out, "%s", args);
    if (st != expect)
        fail_msg("ckey %s: exit %d, expected %d:\n%s", args, st, expect, out);
    free(args);
    return out;
}

/* Deterministic bytes, different for every file. */
static uint8_t *pattern(size_t n, unsigned seed)
{
    uint8_t *p = malloc(n ? n : 1);
    uint32_t x = 2463534242u ^ (seed * 2654435761u);
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        p[i] = (uint8_t)x;
    }
    return p;
}

static void write_local(const char *path, const uint8_t *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(p, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
}

/* Puts a file through the CLI (chunk 0: the default) and remembers it. */
static void put_file(const char *site, const char *path, size_t size, unsigned chunk)
{
    assert_true(NFILES < sizeof FILES / sizeof *FILES);
    struct tfile *f = &FILES[NFILES];
    snprintf(f->site, sizeof f->site, "%s", site);
    snprintf(f->path, sizeof f->path, "%s", path);
    f->size = size;
    f->data = pattern(size, (unsigned)NFILES + 1);
    char local[400];
    snprintf(local, sizeof local, "%s/put-%zu", TMP, NFILES);
    write_local(local, f->data, size);
    char cs[48] = "";
    if (chunk)
        snprintf(cs, sizeof cs, " --chunk-size %u", chunk);
    json_t *j =
        cli_json_as(&S, ALICE, NULL, 0, "file put --tenant contoso --site /sites/%s %s %s%s", site,
                    local, path, cs);
    assert_int_equal(json_integer_value(json_object_get(j, "size")), (json_int_t)size);
    if (chunk) {
        json_int_t want = size ? (json_int_t)((size + chunk - 1) / chunk) : 0;
        json_int_t chunks = json_integer_value(json_object_get(j, "chunks"));
        /* An empty file may be stored as no chunk or one empty chunk. */
        if (!(chunks == want || (size == 0 && chunks <= 1)))
            fail_msg("%s: %lld chunks, expected %lld", path, (long long)chunks, (long long)want);
    }
    json_decref(j);
    unlink(local);
    NFILES++;
}

/* Every file not deliberately corrupted reads back byte for byte through
 * `ckey file get`, with mode 0600. */
static void read_all(const char *when)
{
    for (size_t i = 0; i < NFILES; i++) {
        struct tfile *f = &FILES[i];
        if (f->skip)
            continue;
        char local[400];
        snprintf(local, sizeof local, "%s/get-%zu", TMP, i);
        char *out = NULL;
        int st = cli(&S, ALICE, &out, "file get --tenant contoso --site /sites/%s %s %s", f->site,
                     f->path, local);
        if (st != 0)
            fail_msg("%s: get %s/%s: exit %d: %s", when, f->site, f->path, st, out);
        free(out);
        struct stat sb;
        assert_int_equal(stat(local, &sb), 0);
        assert_int_equal(sb.st_mode & 0777, 0600);
        FILE *fp = fopen(local, "rb");
        assert_non_null(fp);
        uint8_t *got = malloc(f->size + 1);
        size_t n = fread(got, 1, f->size + 1, fp);
        fclose(fp);
        if (n != f->size || memcmp(got, f->data, f->size) != 0)
            fail_msg("%s: %s/%s read back %zu bytes (want %zu) or other bytes", when, f->site,
                     f->path, n, f->size);
        free(got);
        unlink(local);
    }
}

static json_t *spo_get(const char *geo)
{
    return cli_json_as(&S, ALICE, NULL, 0, "spo-dep get --tenant contoso --geo %s", geo);
}

static const char *jstr(json_t *o, const char *field)
{
    const char *s = json_string_value(json_object_get(o, field));
    return s ? s : "";
}

/* The geo's policy straight over HTTP (fast enough to see every state). */
static json_t *spo_http(const char *geo)
{
    char path[200];
    snprintf(path, sizeof path, "/tenants/contoso/geos/%s/dep", geo);
    struct http_result r;
    http(&S, "GET", path, ALICE, NULL, 0, NULL, &r);
    if (r.status != 200)
        fail_msg("GET %s: %ld %s", path, r.status, r.body);
    json_t *j = json_incref(r.json);
    http_free(&r);
    return j;
}

/* Polls until Registered; records the states and percentages seen. */
static void poll_registered(const char *geo, bool *seen_state, const char *state, int *pcts,
                            size_t *npct)
{
    *npct = 0;
    for (int tries = 0; tries < 2400; tries++) {
        json_t *d = spo_http(geo);
        const char *s = jstr(d, "State");
        int pct = (int)json_integer_value(json_object_get(d, "PercentComplete"));
        if (strcmp(s, state) == 0) {
            *seen_state = true;
            if (*npct == 0 || pcts[*npct - 1] != pct)
                pcts[(*npct)++] = pct;
        }
        bool done = strcmp(s, "Registered") == 0;
        if (!done && strcmp(s, state) != 0)
            fail_msg("geo %s: state %s while waiting for %s to end", geo, s, state);
        json_decref(d);
        if (done)
            return;
        if (*npct == 64)
            *npct = 63;
        usleep(25 * 1000);
    }
    fail_msg("geo %s is not Registered after 60 s", geo);
}

static char *sql(const char *query)
{
    char *out = NULL;
    if (sh(&out, "sqlite3 %s/ckey.db \"%s\"", S.dir, query) != 0)
        fail_msg("sqlite3 %s: %s", query, out);
    size_t n = strlen(out);
    while (n && (out[n - 1] == '\n' || out[n - 1] == '\r'))
        out[--n] = '\0';
    return out;
}

/* `spo-dep get`, `site list` and `file ls` of a site, as JSON text. */
static char *snapshot(const char *geo, const char *site)
{
    char *a = cli_expect(0, "-o json spo-dep get --tenant contoso --geo %s", geo);
    char *b = cli_expect(0, "-o json site list --tenant contoso");
    char *c = cli_expect(0, "-o json file ls --tenant contoso --site /sites/%s", site);
    char *all = NULL;
    if (asprintf(&all, "%s\n%s\n%s", a, b, c) < 0)
        fail();
    free(a);
    free(b);
    free(c);
    return all;
}

/* ---------- set-up ---------- */

static int setup(void **state)
{
    srv_start_args(&S, false, SERVER_ARGS);
    provision_vault(&S, "alice@contoso.com", "sub1", "files-a", "westus", true, ALICE);
    char again[256];
    provision_vault(&S, "alice@contoso.com", "sub1", "files-b", "eastus", true, again);
    struct http_result r;
    http(&S, "GET", "/directory/principals/" FILES_APP_ID, ALICE, NULL, 0, NULL, &r);
    if (r.status != 200)
        return -1;
    snprintf(FILES_OID, sizeof FILES_OID, "%s",
             json_string_value(json_object_get(r.json, "objectId")));
    http_free(&r);
    const char *grant = "\"get\",\"wrapKey\",\"unwrapKey\"";
    vault_policy(&S, ALICE, "files-a", "add", FILES_OID, grant);
    vault_policy(&S, ALICE, "files-b", "add", FILES_OID, grant);
    const char *rsa = "{\"kty\":\"RSA\",\"key_size\":2048,\"attributes\":{}}";
    vault_key(&S, ALICE, "files-a", "root-a", rsa);
    vault_key(&S, ALICE, "files-b", "root-b", rsa);
    vault_key(&S, ALICE, "files-a", "root-a2", rsa);
    vault_key(&S, ALICE, "files-a", "root-a3", rsa);
    vault_key(&S, ALICE, "files-b", "root-b2", rsa);
    URI_A = key_uri(&S, "files-a", "root-a");
    URI_B = key_uri(&S, "files-b", "root-b");
    URI_A2 = key_uri(&S, "files-a", "root-a2");
    URI_A3 = key_uri(&S, "files-a", "root-a3");
    URI_B2 = key_uri(&S, "files-b", "root-b2");
    char *out = NULL;
    if (cli(&S, NULL, &out, "tenant create contoso --admin alice@contoso.com") != 0) {
        fprintf(stderr, "%s\n", out);
        return -1;
    }
    free(out);
    snprintf(TMP, sizeof TMP, "/tmp/ckey-files-XXXXXX");
    if (!mkdtemp(TMP))
        return -1;
    return 0;
}

static int teardown(void **state)
{
    int status = srv_stop(&S);
    srv_cleanup(&S);
    char *out = NULL;
    sh(&out, "rm -rf %s", TMP);
    free(out);
    for (size_t i = 0; i < NFILES; i++)
        free(FILES[i].data);
    free(URI_A);
    free(URI_B);
    free(URI_A2);
    free(URI_A3);
    free(URI_B2);
    return status == 0 ? 0 : -1;
}

/* ---------- tests ---------- */

static void test_sites_and_files(void **state)
{
    json_t *g = cli_json_as(&S, ALICE, NULL, 0, "geo add --tenant contoso --geo EUR");
    assert_string_equal(jstr(g, "geo"), "EUR");
    json_decref(g);
    json_t *list = cli_json_as(&S, ALICE, NULL, 0, "geo list --tenant contoso");
    assert_int_equal(json_array_size(list), 1);
    assert_string_equal(jstr(json_array_get(list, 0), "geo"), "EUR");
    json_decref(list);

    for (int i = 0; i < NSITES; i++) {
        json_t *s = cli_json_as(&S, ALICE, NULL, 0,
                                "site new --tenant contoso --geo EUR --site /sites/site-%02d", i);
        char want[64];
        snprintf(want, sizeof want, "/sites/site-%02d", i);
        assert_string_equal(jstr(s, "site"), want);
        json_decref(s);
    }
    /* More sites, without files, over HTTP: the registration then takes
     * several batches. */
    for (int i = 0; i < NEMPTY; i++) {
        char body[128];
        int n = snprintf(body, sizeof body, "{\"geo\":\"EUR\",\"site\":\"/sites/empty-%03d\"}", i);
        struct http_result r;
        http(&S, "POST", "/tenants/contoso/sites", ALICE, body, (size_t)n, NULL, &r);
        if (r.status != 201)
            fail_msg("site empty-%03d: %ld %s", i, r.status, r.body);
        http_free(&r);
    }
    list = cli_json_as(&S, ALICE, NULL, 0, "site list --tenant contoso");
    assert_int_equal(json_array_size(list), NSITES + NEMPTY);
    json_decref(list);

    static const struct {
        size_t size;
        unsigned chunk;
    } sizes[] = {
        {0, 0},         {1, 0},          {1000, 0},       {65536, 65536},
        {65537, 65536}, {300000, 65536}, {300000, 0},     {(4u << 20) + 7, 0},
        {0, 65536},     {1, 65536},      {131072, 65536}, {77777, 0},
    };
    size_t ns = sizeof sizes / sizeof *sizes;
    for (int i = 0; i < NSITES; i++) {
        char site[32], path[64];
        snprintf(site, sizeof site, "site-%02d", i);
        snprintf(path, sizeof path, "docs/report-%02d.bin", i);
        put_file(site, path, sizes[i % ns].size, sizes[i % ns].chunk);
    }
    /* Two more in one site, one in a deeper folder; and an overwrite. */
    put_file("site-00", "a/b/c/deep.txt", 4096, 0);
    put_file("site-00", "docs/report-00.bin", 12345, 65536);
    FILES[0].skip = true; /* replaced by the overwrite */
    json_t *ls = cli_json_as(&S, ALICE, NULL, 0, "file ls --tenant contoso --site /sites/site-00");
    assert_int_equal(json_array_size(ls), 2);
    json_decref(ls);
    read_all("service-managed");

    /* rm: the file is gone, and ls shows one less. */
    char local[300];
    snprintf(local, sizeof local, "%s/small", TMP);
    write_local(local, (const uint8_t *)"0123456789", 10);
    char *out =
        cli_expect(0, "file put --tenant contoso --site /sites/site-01 %s tmp/remove-me", local);
    free(out);
    ls = cli_json_as(&S, ALICE, NULL, 0, "file ls --tenant contoso --site /sites/site-01");
    assert_int_equal(json_array_size(ls), 2);
    json_decref(ls);
    out = cli_expect(0, "file rm --tenant contoso --site /sites/site-01 tmp/remove-me");
    free(out);
    ls = cli_json_as(&S, ALICE, NULL, 0, "file ls --tenant contoso --site /sites/site-01");
    assert_int_equal(json_array_size(ls), 1);
    json_decref(ls);
    out = cli_expect(1, "file get --tenant contoso --site /sites/site-01 tmp/remove-me %s/x", TMP);
    free(out);
    char gone[300];
    snprintf(gone, sizeof gone, "%s/x", TMP);
    assert_int_equal(access(gone, F_OK), -1);

    /* Unregistered: the geo runs on service-managed keys. */
    json_t *d = spo_get("EUR");
    assert_string_equal(jstr(d, "State"), "Unregistered");
    json_decref(d);
}

static void test_register(void **state)
{
    json_t *d = cli_json_as(&S, ALICE, NULL, 0,
                            "spo-dep register --tenant contoso --geo EUR --primary-key %s "
                            "--secondary-key %s",
                            URI_A, URI_B);
    const char *st = jstr(d, "State");
    assert_true(strcmp(st, "Registering") == 0 || strcmp(st, "Registered") == 0);
    bool seen = strcmp(st, "Registering") == 0;
    json_decref(d);
    int pcts[64];
    size_t npct = 0;
    poll_registered("EUR", &seen, "Registering", pcts, &npct);
    assert_true(seen);
    /* Several percentages, never going back. */
    bool between = false;
    for (size_t i = 0; i < npct; i++) {
        if (pcts[i] > 0 && pcts[i] < 100)
            between = true;
        if (i)
            assert_true(pcts[i] >= pcts[i - 1]);
    }
    if (!between) {
        char seen_s[256] = "";
        for (size_t i = 0; i < npct; i++)
            snprintf(seen_s + strlen(seen_s), sizeof seen_s - strlen(seen_s), " %d", pcts[i]);
        fail_msg("no percentage between 0 and 100 seen while registering:%s", seen_s);
    }
    d = spo_get("EUR");
    assert_string_equal(jstr(d, "State"), "Registered");
    assert_int_equal(json_integer_value(json_object_get(d, "PercentComplete")), 100);
    assert_string_equal(jstr(d, "PrimaryKeyVaultUri"), URI_A);
    assert_string_equal(jstr(d, "SecondaryKeyVaultUri"), URI_B);
    json_decref(d);
    json_t *s = cli_json_as(&S, ALICE, NULL, 0, "site dep-status /sites/site-03 --tenant contoso");
    assert_string_equal(jstr(s, "State"), "Registered");
    assert_true(json_is_true(json_object_get(s, "SiteOnCurrentKey")));
    json_decref(s);
    read_all("registered");
}

static void test_roll_primary(void **state)
{
    char *old = sql("SELECT tik_id FROM ck_spo_dep WHERE geo='EUR'");
    assert_int_equal(strlen(old), 36);
    json_t *d = cli_json_as(&S, ALICE, NULL, 0,
                            "spo-dep update --tenant contoso --geo EUR --key-type primary --key %s",
                            URI_A2);
    const char *st = jstr(d, "State");
    assert_true(strcmp(st, "Rolling") == 0 || strcmp(st, "Registered") == 0);
    bool seen = strcmp(st, "Rolling") == 0;
    json_decref(d);
    int pcts[64];
    size_t npct;
    poll_registered("EUR", &seen, "Rolling", pcts, &npct);
    assert_true(seen);
    d = cli_json_as(&S, ALICE, NULL, 0,
                    "spo-dep get --tenant contoso --geo EUR --wait --timeout 60");
    assert_string_equal(jstr(d, "PrimaryKeyVaultUri"), URI_A2);
    assert_string_equal(jstr(d, "SecondaryKeyVaultUri"), URI_B);
    json_decref(d);
    char q[200];
    snprintf(q, sizeof q, "SELECT COUNT(*) FROM ck_tik WHERE id='%s'", old);
    char *count = sql(q);
    assert_string_equal(count, "0");
    free(count);
    char *now = sql("SELECT tik_id FROM ck_spo_dep WHERE geo='EUR'");
    assert_string_not_equal(now, old);
    free(now);
    free(old);
    read_all("after the roll");
}

static void test_bad_input_changes_nothing(void **state)
{
    char *before = snapshot("EUR", "site-02");
    char *out;
    struct http_result r;
    char body[1024];

    /* A second registration. */
    int n =
        snprintf(body, sizeof body,
                 "{\"primaryKeyVaultUri\":\"%s\",\"secondaryKeyVaultUri\":\"%s\"}", URI_A3, URI_B);
    http(&S, "POST", "/tenants/contoso/geos/EUR/dep", ALICE, body, (size_t)n, NULL, &r);
    assert_int_equal(r.status, 409);
    http_free(&r);
    out = cli_expect(
        1, "spo-dep register --tenant contoso --geo EUR --primary-key %s --secondary-key %s",
        URI_A3, URI_B);
    free(out);

    /* A missing key URI. */
    n = snprintf(body, sizeof body, "{\"primaryKeyVaultUri\":\"%s\"}", URI_A3);
    http(&S, "POST", "/tenants/contoso/geos/EUR/dep", ALICE, body, (size_t)n, NULL, &r);
    assert_int_equal(r.status, 400);
    http_free(&r);
    n = snprintf(body, sizeof body, "{\"keyType\":\"Primary\"}");
    http(&S, "PATCH", "/tenants/contoso/geos/EUR/dep", ALICE, body, (size_t)n, NULL, &r);
    assert_int_equal(r.status, 400);
    http_free(&r);
    n = snprintf(body, sizeof body, "{\"keyType\":\"Tertiary\",\"keyVaultUri\":\"%s\"}", URI_A3);
    http(&S, "PATCH", "/tenants/contoso/geos/EUR/dep", ALICE, body, (size_t)n, NULL, &r);
    assert_int_equal(r.status, 400);
    http_free(&r);
    out = cli_expect(1, "spo-dep update --tenant contoso --geo EUR --key-type primary");
    free(out);

    /* Paths with "..", and chunk sizes out of bounds. */
    char local[300];
    snprintf(local, sizeof local, "%s/small", TMP);
    write_local(local, (const uint8_t *)"hello", 5);
    out = cli_expect(1, "file put --tenant contoso --site /sites/site-02 %s docs/../evil", local);
    assert_non_null(strstr(out, "ckey: "));
    free(out);
    out = cli_expect(1, "file put --tenant contoso --site /sites/site-02 %s ../evil", local);
    free(out);
    http(&S, "PUT", "/tenants/contoso/sites/site-02/files/a/%2E%2E/b", ALICE, "x", 1, NULL, &r);
    assert_int_equal(r.status, 400);
    http_free(&r);
    out = cli_expect(1, "file put --tenant contoso --site /sites/site-02 %s ok --chunk-size 1024",
                     local);
    free(out);
    out = cli_expect(
        1, "file put --tenant contoso --site /sites/site-02 %s ok --chunk-size 16777217", local);
    free(out);
    http(&S, "PUT", "/tenants/contoso/sites/site-02/files/ok?chunkSize=65535", ALICE, "x", 1, NULL,
         &r);
    assert_int_equal(r.status, 400);
    http_free(&r);
    /* A range out of bounds. */
    http(&S, "GET", "/tenants/contoso/sites/site-02/files/docs/report-02.bin?offset=999999999",
         ALICE, NULL, 0, NULL, &r);
    assert_int_equal(r.status, 400);
    http_free(&r);
    /* An unknown site and geo. */
    out = cli_expect(1, "file put --tenant contoso --site /sites/nope %s ok", local);
    free(out);
    out = cli_expect(1, "site new --tenant contoso --geo XYZ --site /sites/orphan");
    free(out);

    char *after = snapshot("EUR", "site-02");
    assert_string_equal(before, after);
    free(before);
    free(after);
}

static void test_roll_during_roll(void **state)
{
    char body[1024];
    int n =
        snprintf(body, sizeof body, "{\"keyType\":\"Secondary\",\"keyVaultUri\":\"%s\"}", URI_B2);
    struct http_result r;
    http(&S, "PATCH", "/tenants/contoso/geos/EUR/dep", ALICE, body, (size_t)n, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(jstr(r.json, "State"), "Rolling");
    http_free(&r);
    /* 500 sites at 100 ms a batch: still rolling. */
    n = snprintf(body, sizeof body, "{\"keyType\":\"Primary\",\"keyVaultUri\":\"%s\"}", URI_A3);
    http(&S, "PATCH", "/tenants/contoso/geos/EUR/dep", ALICE, body, (size_t)n, NULL, &r);
    assert_int_equal(r.status, 409);
    http_free(&r);
    char *out = cli_expect(
        1, "spo-dep restore --tenant contoso --geo EUR --primary-key %s --secondary-key %s", URI_A3,
        URI_B);
    free(out);
    json_t *d = cli_json_as(&S, ALICE, NULL, 0,
                            "spo-dep get --tenant contoso --geo EUR --wait --timeout 60");
    assert_string_equal(jstr(d, "State"), "Registered");
    /* The refused roll changed nothing. */
    assert_string_equal(jstr(d, "PrimaryKeyVaultUri"), URI_A2);
    assert_string_equal(jstr(d, "SecondaryKeyVaultUri"), URI_B2);
    json_decref(d);
    read_all("after the second roll");
}

/* Kills the server once the geo's job has moved a batch, before the last,
 * and starts it again. */
static void crash_while(const char *geo, const char *state)
{
    for (int tries = 0; tries < 400; tries++) {
        json_t *d = spo_http(geo);
        int pct = (int)json_integer_value(json_object_get(d, "PercentComplete"));
        bool moving = strcmp(jstr(d, "State"), state) == 0;
        json_decref(d);
        if (!moving)
            fail_msg("%s left %s before the crash could land", geo, state);
        if (pct > 0)
            break;
        usleep(10 * 1000);
    }
    srv_kill(&S);
    srv_start_args(&S, true, SERVER_ARGS);
}

static void test_crash_during_registration(void **state)
{
    json_t *g = cli_json_as(&S, ALICE, NULL, 0, "geo add --tenant contoso --geo NAM");
    json_decref(g);
    for (int i = 0; i < NCRASH; i++) {
        char body[128];
        int n = snprintf(body, sizeof body, "{\"geo\":\"NAM\",\"site\":\"/sites/nam-%03d\"}", i);
        struct http_result r;
        http(&S, "POST", "/tenants/contoso/sites", ALICE, body, (size_t)n, NULL, &r);
        if (r.status != 201)
            fail_msg("site nam-%03d: %ld %s", i, r.status, r.body);
        http_free(&r);
    }
    put_file("nam-000", "x/one.bin", 70000, 65536);
    put_file("nam-123", "two.bin", 5, 0);
    put_file("nam-249", "three.bin", 200000, 0);
    json_t *d = cli_json_as(&S, ALICE, NULL, 0,
                            "spo-dep register --tenant contoso --geo NAM --primary-key %s "
                            "--secondary-key %s",
                            URI_A, URI_B);
    json_decref(d);
    crash_while("NAM", "Registering");
    d = cli_json_as(&S, ALICE, NULL, 0,
                    "spo-dep get --tenant contoso --geo NAM --wait --timeout 120");
    assert_string_equal(jstr(d, "State"), "Registered");
    json_decref(d);
    json_t *s = cli_json_as(&S, ALICE, NULL, 0, "site dep-status /sites/nam-249 --tenant contoso");
    assert_true(json_is_true(json_object_get(s, "SiteOnCurrentKey")));
    json_decref(s);
    read_all("after the crash");
}

static void test_crash_during_rolling(void **state)
{
    json_t *d;
    char old_tik[64];
    char *tik = sql("SELECT tik_id FROM ck_spo_dep WHERE geo = 'NAM'");
    snprintf(old_tik, sizeof old_tik, "%s", tik);
    free(tik);
    assert_int_equal(strlen(old_tik), 36);
    d = cli_json_as(&S, ALICE, NULL, 0,
                    "spo-dep update --tenant contoso --geo NAM --key-type secondary --key %s",
                    URI_B2);
    json_decref(d);
    crash_while("NAM", "Rolling");
    d = cli_json_as(&S, ALICE, NULL, 0,
                    "spo-dep get --tenant contoso --geo NAM --wait --timeout 120");
    assert_string_equal(jstr(d, "State"), "Registered");
    assert_string_equal(jstr(d, "SecondaryKeyVaultUri"), URI_B2);
    json_decref(d);
    char q[200];
    snprintf(q, sizeof q, "SELECT COUNT(*) FROM ck_tik WHERE id = '%s'", old_tik);
    char *n = sql(q);
    assert_int_equal(atoi(n), 0);
    free(n);
    read_all("after the crash while rolling");
}

/* The customer lost the primary key of NAM (here: disabled it): restore
 * recovers the TIK with the availability key and wraps it under new keys. */
static void test_restore_after_losing_a_key(void **state)
{
    vault_key(&S, ALICE, "files-a", "root-a4", "{\"kty\":\"RSA\",\"attributes\":{}}");
    char *a4 = key_uri(&S, "files-a", "root-a4");
    char path[200];
    snprintf(path, sizeof path, "/keys/root-a/?api-version=7.6");
    char *u = vault_url(&S, "files-a", path);
    struct http_result r;
    const char *off = "{\"attributes\":{\"enabled\":false}}";
    http(&S, "PATCH", u, ALICE, off, strlen(off), NULL, &r);
    assert_int_equal(r.status, 200);
    http_free(&r);
    free(u);
    char *before = sql("SELECT COUNT(*) FROM ck_audit WHERE operation = 'Restore with "
                       "Availability Key'");
    json_t *d = cli_json_as(&S, ALICE, NULL, 0,
                            "spo-dep restore --tenant contoso --geo NAM --primary-key %s "
                            "--secondary-key %s --wait --timeout 120",
                            a4, URI_B2);
    assert_string_equal(jstr(d, "State"), "Registered");
    assert_string_equal(jstr(d, "PrimaryKeyVaultUri"), a4);
    json_decref(d);
    char *after = sql("SELECT COUNT(*) FROM ck_audit WHERE operation = 'Restore with "
                      "Availability Key'");
    assert_int_equal(atoi(after), atoi(before) + 1);
    free(before);
    free(after);
    read_all("after the restore");
    free(a4);
}

/* Flips the first byte of chunk idx of a file in the store. */
static void corrupt(struct tfile *f, int idx)
{
    char q[1024];
    snprintf(q, sizeof q,
             "SELECT hex(c.ct) FROM ck_chunk c JOIN ck_file f ON f.id = c.file_id JOIN ck_site "
             "s ON s.id = f.site_id WHERE s.path = '/sites/%s' AND f.path = '%s' AND f.state = "
             "'current' AND c.idx = %d",
             f->site, f->path, idx);
    char *hex = sql(q);
    assert_true(strlen(hex) >= 2);
    hex[1] = hex[1] == '0' ? '1' : '0';
    snprintf(q, sizeof q,
             "SELECT c.file_id FROM ck_chunk c JOIN ck_file f ON f.id = c.file_id JOIN ck_site "
             "s ON s.id = f.site_id WHERE s.path = '/sites/%s' AND f.path = '%s' AND f.state = "
             "'current' AND c.idx = %d",
             f->site, f->path, idx);
    char *id = sql(q);
    size_t len = strlen(hex) + 200;
    char *upd = malloc(len);
    snprintf(upd, len, "UPDATE ck_chunk SET ct = X'%s' WHERE file_id = '%s' AND idx = %d", hex, id,
             idx);
    free(sql(upd));
    free(upd);
    free(hex);
    free(id);
    f->skip = true;
}

static struct tfile *find(const char *site, const char *path)
{
    for (size_t i = 0; i < NFILES; i++)
        if (!FILES[i].skip && strcmp(FILES[i].site, site) == 0 && strcmp(FILES[i].path, path) == 0)
            return &FILES[i];
    fail_msg("no file %s/%s", site, path);
    return NULL;
}

static void test_corrupted_chunk(void **state)
{
    char local[300];
    snprintf(local, sizeof local, "%s/corrupt", TMP);
    /* The first chunk: nothing of the body arrives. */
    struct tfile *f = find("site-02", "docs/report-02.bin"); /* 1000 bytes */
    corrupt(f, 0);
    char *out =
        cli_expect(1, "file get --tenant contoso --site /sites/%s %s %s", f->site, f->path, local);
    if (!strstr(out, "integrity"))
        fail_msg("no integrity error: %s", out);
    free(out);
    assert_int_equal(access(local, F_OK), -1);
    /* The second chunk: the body stops after the first. */
    f = find("site-04", "docs/report-04.bin"); /* 65537 bytes in 65536-byte chunks */
    corrupt(f, 1);
    out =
        cli_expect(1, "file get --tenant contoso --site /sites/%s %s %s", f->site, f->path, local);
    if (!strstr(out, "integrity"))
        fail_msg("no integrity error: %s", out);
    free(out);
    assert_int_equal(access(local, F_OK), -1);
    /* A file written earlier stays where it was when a get fails. */
    write_local(local, (const uint8_t *)"keep", 4);
    out =
        cli_expect(1, "file get --tenant contoso --site /sites/%s %s %s", f->site, f->path, local);
    free(out);
    struct stat sb;
    assert_int_equal(stat(local, &sb), 0);
    assert_int_equal(sb.st_size, 4);
    unlink(local);
    /* Everything else still reads. */
    read_all("after the corruption");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sites_and_files),
        cmocka_unit_test(test_register),
        cmocka_unit_test(test_roll_primary),
        cmocka_unit_test(test_bad_input_changes_nothing),
        cmocka_unit_test(test_roll_during_roll),
        cmocka_unit_test(test_crash_during_registration),
        cmocka_unit_test(test_crash_during_rolling),
        cmocka_unit_test(test_restore_after_losing_a_key),
        cmocka_unit_test(test_corrupted_chunk),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
