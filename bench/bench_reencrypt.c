/*
 * bench_reencrypt — re-encryption of a whole mailbox after a DEP change: a
 * mailbox of 1 GiB (--quick: 128 MiB) in 1 MiB items under DEP1 is assigned
 * to DEP2, and the time runs from the PATCH to the mail.reencrypt job done
 * and the mailbox IsEncrypted, in MB/s. The baseline copies the same rows
 * within SQLite, unencrypted, in this process through ck_store (the same
 * pragmas): INSERT INTO copy SELECT ... FROM items, one transaction per 50
 * rows, as the job commits one per batch of REENCRYPT_BATCH (50) items.
 *
 *   bench_reencrypt [--quick]      (CK_BIN names the ckey binary)
 */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/base.h"
#include "bench_common.h"
#include "store/store.h"

#define MAIL_APP_ID "6d61696c-0000-4000-8000-636b65790001"
#define UPN "bob@contoso.com"
#define ITEM (1u << 20)  /* bytes per item */
#define POOL (64u << 20) /* random bytes the items are cut from */
#define BATCH 50         /* rows per baseline transaction: the job's batch */

static struct srv S;
static char ALICE[256];
static uint8_t *DATA;

/* Item i: ITEM bytes of DATA from an offset of its own. */
static const uint8_t *item_bytes(int i)
{
    return DATA + ((size_t)i * 1048573u) % (POOL - ITEM);
}

static bool put_item(struct bench_client *c, int i, void *ud)
{
    (void)ud;
    char url[300];
    snprintf(url, sizeof url, "%s/tenants/contoso/mailboxes/" UPN "/items/m%06d", S.url, i);
    long st = bench_request(c, "PUT", url, item_bytes(i), ITEM);
    if (st != 201 && st != 200)
        fprintf(stderr, "bench_reencrypt: PUT item %d: %ld %.200s\n", i, st,
                c->body ? c->body : "");
    return st == 201 || st == 200;
}

static char *new_dep(const char *name, char *const uri[2])
{
    char body[1024];
    snprintf(body, sizeof body, "{\"name\":\"%s\",\"azureKeyIds\":[\"%s\",\"%s\"]}", name, uri[0],
             uri[1]);
    struct http_result r;
    http(&S, "POST", "/tenants/contoso/deps", ALICE, body, strlen(body), NULL, &r);
    const char *id = json_string_value(json_object_get(r.json, "Identity"));
    if (r.status != 201 || !id)
        bench_die("DEP %s: %ld %s", name, r.status, r.body ? r.body : "");
    char *dep = ck_strdup(id);
    http_free(&r);
    return dep;
}

/* Assigns the mailbox to dep and waits for its re-encryption job; seconds
 * from the PATCH to the job done with the mailbox IsEncrypted. */
static double reencrypt(struct bench_client *c, const char *dep)
{
    char url[300], body[200], job[64];
    snprintf(url, sizeof url, "%s/tenants/contoso/mailboxes/" UPN, S.url);
    snprintf(body, sizeof body, "{\"dataEncryptionPolicy\":\"%s\"}", dep);
    double t0 = bench_now();
    long st = bench_request(c, "PATCH", url, body, strlen(body));
    json_t *m = st == 200 ? json_loads(c->body, 0, NULL) : NULL;
    const char *id = json_string_value(json_object_get(m, "JobId"));
    if (!id)
        bench_die("PATCH mailbox: %ld %s", st, c->body);
    snprintf(job, sizeof job, "%s", id);
    json_decref(m);
    double secs = bench_wait_job(c, job, t0);
    m = bench_get_json(c, url);
    bool encrypted = json_is_true(json_object_get(m, "IsEncrypted"));
    json_decref(m);
    if (!encrypted)
        bench_die("the job is done but the mailbox is not IsEncrypted: %s", c->body);
    return secs;
}

/* The same rows copied within SQLite without encryption; MB/s. */
static double baseline(int nitems)
{
    char dir[64] = "/tmp/ckey-bench-XXXXXX", path[128];
    if (!mkdtemp(dir))
        bench_die("mkdtemp");
    snprintf(path, sizeof path, "%s/baseline.db", dir);
    struct ck_store *db = NULL;
    if (ck_store_open(path, &db) != CK_OK ||
        ck_store_exec(db, "CREATE TABLE items (mbox TEXT NOT NULL, id TEXT NOT NULL, data BLOB "
                          "NOT NULL, PRIMARY KEY (mbox, id));"
                          "CREATE TABLE copy (mbox TEXT NOT NULL, id TEXT NOT NULL, data BLOB "
                          "NOT NULL, PRIMARY KEY (mbox, id))") != CK_OK)
        bench_die("baseline store: %s", ck_err_msg());
    char id[16], end[16];
    for (int i = 0; i < nitems; i += BATCH) {
        if (ck_store_begin(db) != CK_OK)
            bench_die("baseline: %s", ck_err_msg());
        for (int k = i; k < i + BATCH && k < nitems; k++) {
            snprintf(id, sizeof id, "m%06d", k);
            if (ck_store_run(db, NULL, "INSERT INTO items (mbox, id, data) VALUES (?, ?, ?)", "ttb",
                             UPN, id, item_bytes(k), (size_t)ITEM) != CK_OK)
                bench_die("baseline insert: %s", ck_err_msg());
        }
        if (ck_store_commit(db) != CK_OK)
            bench_die("baseline: %s", ck_err_msg());
    }
    double t0 = bench_now();
    for (int i = 0; i < nitems; i += BATCH) {
        snprintf(id, sizeof id, "m%06d", i);
        snprintf(end, sizeof end, "m%06d", i + BATCH);
        if (ck_store_begin(db) != CK_OK ||
            ck_store_run(db, NULL,
                         "INSERT INTO copy (mbox, id, data) SELECT mbox, id, data FROM items "
                         "WHERE mbox = ? AND id >= ? AND id < ?",
                         "ttt", UPN, id, end) != CK_OK ||
            ck_store_commit(db) != CK_OK)
            bench_die("baseline copy: %s", ck_err_msg());
    }
    double secs = bench_now() - t0;
    ck_store_close(db);
    char *out = NULL;
    sh(&out, "rm -rf %s", dir);
    free(out);
    return (double)nitems * ITEM / 1e6 / secs;
}

int main(int argc, char **argv)
{
    bool quick = argc > 1 && strcmp(argv[1], "--quick") == 0;
    int nitems = quick ? 128 : 1024;
    int n = bench_ncores();
    curl_global_init(CURL_GLOBAL_DEFAULT);
    fprintf(stderr, "bench_reencrypt: a mailbox of %d items of %u KiB\n", nitems, ITEM / 1024);
    DATA = malloc(POOL);
    if (!DATA || ck_os_random(DATA, POOL) != CK_OK)
        bench_die("random bytes");
    bench_srv_start(&S);

    char *uri[2];
    bench_customer_keys(&S, "mail", MAIL_APP_ID, ALICE, uri);
    char *dep1 = new_dep("DEP1", uri), *dep2 = new_dep("DEP2", uri);
    free(uri[0]);
    free(uri[1]);
    char body[300];
    struct http_result r;
    snprintf(body, sizeof body, "{\"identity\":\"" UPN "\",\"dataEncryptionPolicy\":\"%s\"}", dep1);
    http(&S, "POST", "/tenants/contoso/mailusers", ALICE, body, strlen(body), NULL, &r);
    long st1 = r.status;
    http_free(&r);
    snprintf(body, sizeof body, "{\"identity\":\"" UPN "\"}");
    http(&S, "POST", "/tenants/contoso/mailboxes", ALICE, body, strlen(body), NULL, &r);
    if (st1 != 201 || r.status != 201)
        bench_die("mailbox: %ld, %ld %s", st1, r.status, r.body ? r.body : "");
    http_free(&r);

    /* Fill: two connections per core, so that one waits for its commit's
     * fsync while the other sends. */
    double t0 = bench_now();
    bench_each(&S, ALICE, "message/rfc822", 2 * n, 0, nitems, put_item, NULL);
    double fill = bench_now() - t0;
    fprintf(stderr, "bench_reencrypt: filled %d MiB in %.1f s (%.0f MB/s)\n", nitems, fill,
            (double)nitems * ITEM / 1e6 / fill);

    struct bench_client c;
    bench_client_init(&c, &S, ALICE, "application/json");
    double before = bench_mem_mib(S.pid, "VmRSS");
    bench_mem_reset_peak(S.pid);
    double secs = reencrypt(&c, dep2);
    double peak = bench_mem_mib(S.pid, "VmHWM");
    bench_client_free(&c);
    fprintf(stderr, "bench_reencrypt: re-encrypted %d MiB in %.1f s\n", nitems, secs);
    int st = bench_srv_stop(&S); /* the server's 1 GiB goes before the baseline's 2 */

    double base = baseline(nitems);
    bench_emit("mail_reencrypt_mbps", (double)nitems * ITEM / 1e6 / secs, "MB/s", base);
    bench_emit("server_rss_peak_reencrypt", peak, "MiB", before);
    free(dep1);
    free(dep2);
    free(DATA);
    curl_global_cleanup();
    return st == 0 ? 0 : 1;
}
