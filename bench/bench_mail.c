/*
 * bench_mail — mail items written and read through a real server (PUT/GET
 * /tenants/{t}/mailboxes/{upn}/items/{id}) with warm key caches, 4 KiB and
 * 64 KiB, one keep-alive connection per core, against the same bytes as
 * plain BLOBs in SQLite through ck_store (same pragmas, no encryption).
 * Then DEP refresh with 10 and with 10,000 mailboxes (--quick: 1000), and
 * the server's RSS.
 *
 *   bench_mail [--quick]      (CK_BIN names the ckey binary)
 */
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/base.h"
#include "bench_common.h"
#include "store/store.h"

#define MAIL_APP_ID "6d61696c-0000-4000-8000-636b65790001"
#define UPN "bob@contoso.com"

static struct srv S;
static char ALICE[256];
static struct ck_store *BASE;

struct job {
    int idx;
    bool write, local;
    size_t size;
    const uint8_t *data;
    double until;
    long ops, errors, written; /* written: items this thread put (ids 0..written-1) */
};

/* Set between runs only: the server loops GET /healthz instead of items. */
static bool floor_mode;

static void item_id(char *out, size_t n, int thread, long i, size_t size)
{
    snprintf(out, n, "b%zu-t%d-%07ld", size, thread, i);
}

static void *loop(void *arg)
{
    struct job *j = arg;
    struct bench_client c;
    if (!j->local)
        bench_client_init(&c, &S, ALICE, "message/rfc822");
    char id[64], url[400];
    unsigned seed = (unsigned)j->idx * 7919u + 1;
    for (long i = 0; bench_now() < j->until; i++) {
        long k =
            j->write ? j->written : (long)(rand_r(&seed) % (unsigned)(j->written ? j->written : 1));
        item_id(id, sizeof id, j->idx, k, j->size);
        bool ok;
        if (floor_mode) {
            snprintf(url, sizeof url, "%s/healthz", S.url);
            ok = bench_request(&c, "GET", url, NULL, 0) == 200;
        } else if (!j->local) {
            snprintf(url, sizeof url, "%s/tenants/contoso/mailboxes/" UPN "/items/%s", S.url, id);
            long st = j->write ? bench_request(&c, "PUT", url, j->data, j->size)
                               : bench_request(&c, "GET", url, NULL, 0);
            ok = j->write ? st == 201 || st == 200 : st == 200 && c.len == j->size;
            if (!ok && j->errors == 0)
                fprintf(stderr, "bench_mail: %s %s: %ld %.200s\n", j->write ? "PUT" : "GET", id, st,
                        c.body ? c.body : "");
        } else if (j->write) {
            ok = ck_store_run(BASE, NULL, "INSERT INTO items(mbox, id, data) VALUES (?, ?, ?)",
                              "ttb", UPN, id, j->data, j->size) == CK_OK;
        } else {
            struct ck_stmt *st = NULL;
            bool row = false;
            size_t n = 0;
            ok = ck_stmt_prepare(BASE, &st, "SELECT data FROM items WHERE mbox = ? AND id = ?",
                                 "tt", UPN, id) == CK_OK &&
                 ck_stmt_step(st, &row) == CK_OK && row;
            if (ok) {
                const void *p = ck_stmt_blob(st, 0, &n);
                /* The server hands out a copy; so does the baseline. */
                void *copy = malloc(n);
                memcpy(copy, p, n);
                free(copy);
                ok = n == j->size;
            }
            ck_stmt_finalize(st);
        }
        if (ok) {
            j->ops++;
            if (j->write && !floor_mode)
                j->written++;
        } else {
            j->errors++;
        }
    }
    if (!j->local)
        bench_client_free(&c);
    return NULL;
}

/* n threads for secs seconds; items/s. jobs[] carries `written` between runs. */
static double run(struct job *jobs, int n, bool write, bool local, size_t size, const uint8_t *data,
                  double secs)
{
    pthread_t t[64];
    double start = bench_now();
    for (int i = 0; i < n; i++) {
        jobs[i].idx = i;
        jobs[i].write = write;
        jobs[i].local = local;
        jobs[i].size = size;
        jobs[i].data = data;
        jobs[i].until = start + secs;
        jobs[i].ops = jobs[i].errors = 0;
        if (pthread_create(&t[i], NULL, loop, &jobs[i]) != 0)
            bench_die("pthread_create");
    }
    long ops = 0, errors = 0;
    for (int i = 0; i < n; i++) {
        pthread_join(t[i], NULL);
        ops += jobs[i].ops;
        errors += jobs[i].errors;
    }
    if (errors)
        fprintf(stderr, "bench_mail: %ld errors\n", errors);
    return (double)ops / (bench_now() - start);
}

static void bench_size(size_t size, int n, double secs)
{
    uint8_t *data = malloc(size);
    for (size_t i = 0; i < size; i++)
        data[i] = (uint8_t)("From: a@b\nSubject: x\n\nbody text "[i % 32]);
    struct job srv[64] = {0}, loc[64] = {0};
    /* Warm-up: connections and the DEP/mailbox key caches. */
    run(srv, n, true, false, size, data, 0.5);
    run(srv, n, false, false, size, data, 0.3);
    double sw = run(srv, n, true, false, size, data, secs);
    double sr = run(srv, n, false, false, size, data, secs);
    double lw = run(loc, n, true, true, size, data, secs);
    double lr = run(loc, n, false, true, size, data, secs);
    double mb = (double)size / 1e6;
    char name[80];
    unsigned kib = (unsigned)(size / 1024);
    snprintf(name, sizeof name, "mail_write_%ukib_items", kib);
    bench_emit(name, sw, "items/s", lw);
    snprintf(name, sizeof name, "mail_write_%ukib_mbps", kib);
    bench_emit(name, sw * mb, "MB/s", lw * mb);
    snprintf(name, sizeof name, "mail_read_%ukib_items", kib);
    bench_emit(name, sr, "items/s", lr);
    snprintf(name, sizeof name, "mail_read_%ukib_mbps", kib);
    bench_emit(name, sr * mb, "MB/s", lr * mb);
    if (size == 4096) {
        /* Diagnostic: the same connections asking for GET /healthz (no
         * token check, no database): the rate of HTTPS requests this
         * machine serves at all, the ceiling for any mail read. */
        floor_mode = true;
        double fl = run(srv, n, false, false, size, data, secs / 2);
        floor_mode = false;
        bench_emit("mail_read_4kib_vs_https_floor", sr, "items/s", fl);
    }
    free(data);
}

static json_t *post_json(const char *path, const char *body, long want)
{
    struct http_result r;
    http(&S, "POST", path, ALICE, body, body ? strlen(body) : 0, NULL, &r);
    if (r.status != want)
        bench_die("POST %s: %ld %s", path, r.status, r.body ? r.body : "");
    json_t *j = json_incref(r.json);
    http_free(&r);
    return j;
}

/* Mail user userNNNNN under the DEP, made a mailbox (two requests). */
static bool add_mailbox(struct bench_client *c, int i, void *dep)
{
    char url[300], body[300];
    snprintf(body, sizeof body,
             "{\"identity\":\"user%05d@contoso.com\",\"dataEncryptionPolicy\":\"%s\"}", i,
             (const char *)dep);
    snprintf(url, sizeof url, "%s/tenants/contoso/mailusers", S.url);
    long st = bench_request(c, "POST", url, body, strlen(body));
    if (st == 201) {
        snprintf(body, sizeof body, "{\"identity\":\"user%05d@contoso.com\"}", i);
        snprintf(url, sizeof url, "%s/tenants/contoso/mailboxes", S.url);
        st = bench_request(c, "POST", url, body, strlen(body));
    }
    if (st != 201)
        fprintf(stderr, "bench_mail: mailbox %d: %ld %.200s\n", i, st, c->body ? c->body : "");
    return st == 201;
}

static double refresh_ms(struct bench_client *c, const char *dep, int reps)
{
    char url[300];
    snprintf(url, sizeof url, "%s/tenants/contoso/deps/%s/refresh", S.url, dep);
    bench_request(c, "POST", url, NULL, 0); /* warm */
    double ms[64];
    if (reps > 64)
        reps = 64;
    for (int i = 0; i < reps; i++) {
        double t0 = bench_now();
        long st = bench_request(c, "POST", url, NULL, 0);
        if (st != 200)
            bench_die("refresh: %ld %s", st, c->body);
        ms[i] = (bench_now() - t0) * 1000.0;
    }
    /* The median: one slow fdatasync (another process's I/O) moves a mean
     * of a few refreshes by half. */
    return bench_quantile(ms, (size_t)reps, 0.5);
}

int main(int argc, char **argv)
{
    bool quick = argc > 1 && strcmp(argv[1], "--quick") == 0;
    double t = quick ? 2 : 8;
    int n = bench_ncores();
    if (n > 64)
        n = 64;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    fprintf(stderr, "bench_mail: %d client threads, %.0f s per run\n", n, t);
    bench_srv_start(&S);
    sleep(1);
    double idle = bench_mem_mib(S.pid, "VmRSS"), self = bench_mem_mib(0, "VmRSS");

    /* Tenant, two vaults with the mail service's grant, a DEP, a mailbox. */
    char *uri[2];
    bench_customer_keys(&S, "mail", MAIL_APP_ID, ALICE, uri);
    char body[1024];
    snprintf(body, sizeof body, "{\"name\":\"DEP1\",\"azureKeyIds\":[\"%s\",\"%s\"]}", uri[0],
             uri[1]);
    free(uri[0]);
    free(uri[1]);
    json_t *d = post_json("/tenants/contoso/deps", body, 201);
    char dep[64];
    snprintf(dep, sizeof dep, "%s", json_string_value(json_object_get(d, "Identity")));
    json_decref(d);
    snprintf(body, sizeof body, "{\"identity\":\"" UPN "\",\"dataEncryptionPolicy\":\"%s\"}", dep);
    json_decref(post_json("/tenants/contoso/mailusers", body, 201));
    json_decref(post_json("/tenants/contoso/mailboxes", "{\"identity\":\"" UPN "\"}", 201));

    /* The baseline database, beside the server's. */
    char dbpath[400];
    snprintf(dbpath, sizeof dbpath, "%s/bench-baseline.db", S.dir);
    if (ck_store_open(dbpath, &BASE) != CK_OK ||
        ck_store_exec(BASE, "CREATE TABLE items (mbox TEXT NOT NULL, id TEXT NOT NULL, "
                            "data BLOB NOT NULL, PRIMARY KEY (mbox, id))") != CK_OK)
        bench_die("baseline store: %s", ck_err_msg());

    bench_size(4096, n, t);
    bench_size(65536, n, t);
    double peak = bench_mem_mib(S.pid, "VmHWM");

    /* DEP refresh: 10 mailboxes under the DEP, then many more. The mailboxes
     * are made over two connections per core: each commit waits for its
     * fsync, so more requests in flight than cores keep the disk busy. */
    struct bench_client c;
    bench_client_init(&c, &S, ALICE, "application/json");
    int reps = quick ? 11 : 21, many = quick ? 1000 : 10000;
    bench_each(&S, ALICE, "application/json", 2 * n, 1, 10, add_mailbox, dep);
    double r10 = refresh_ms(&c, dep, reps);
    double t0 = bench_now();
    bench_each(&S, ALICE, "application/json", 2 * n, 10, many, add_mailbox, dep);
    fprintf(stderr, "bench_mail: %d mailboxes made in %.1f s\n", many - 10, bench_now() - t0);
    double rmany = refresh_ms(&c, dep, reps);
    bench_client_free(&c);
    fprintf(stderr, "bench_mail: DEP refresh %.1f ms with %d mailboxes, %.1f ms with 10\n", rmany,
            many, r10);
    bench_emit("dep_refresh_many_vs_10_mailboxes", rmany, "ms", r10);

    bench_emit("server_rss_idle", idle, "MiB", self);
    bench_emit("server_rss_peak_mail_load", peak, "MiB", idle);

    ck_store_close(BASE);
    int st = bench_srv_stop(&S);
    curl_global_cleanup();
    return st == 0 ? 0 : 1;
}
