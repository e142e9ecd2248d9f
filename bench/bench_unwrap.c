/*
 * bench_unwrap — Vault unwrapKey (RSA-OAEP-256) through a real server over
 * HTTPS keep-alive with one client connection per core, against the same
 * number of threads doing ck_rsa_decrypt in this process; then p50/p99
 * latency at half the measured load. RSA-2048, 3072 and 4096. Last, the
 * server's peak RSS over all of it against its RSS just before.
 *
 *   bench_unwrap [--quick]      (CK_BIN names the ckey binary)
 */
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/base.h"
#include "bench_common.h"
#include "crypto/crypto.h"

static struct srv S;
static char TOKEN[256];

struct job {
    /* in */
    const char *url;
    const char *body;
    const struct ck_rsa *rsa;
    const struct ck_buf *ct;
    const struct ck_secret *der; /* set: load the key from DER for every operation */
    double until;
    double interval; /* latency runs: seconds between requests; 0 = closed loop */
    /* out */
    long ops, errors;
    double *lat;
    size_t nlat, caplat;
};

static void *server_loop(void *arg)
{
    struct job *j = arg;
    struct bench_client c;
    bench_client_init(&c, &S, TOKEN, "application/json");
    double next = bench_now();
    for (;;) {
        double now = bench_now();
        if (now >= j->until)
            break;
        if (j->interval > 0) {
            if (next > now) {
                double d = next - now;
                struct timespec ts = {(time_t)d, (long)((d - (double)(time_t)d) * 1e9)};
                nanosleep(&ts, NULL);
            }
            /* Latency from the scheduled start, so a late start counts. */
            now = next > now ? next : now;
            next += j->interval;
            if (now >= j->until)
                break;
        }
        long st = bench_request(&c, "POST", j->url, j->body, strlen(j->body));
        double t = bench_now();
        if (st != 200) {
            if (j->errors++ == 0)
                fprintf(stderr, "bench_unwrap: status %ld: %.200s\n", st, c.body ? c.body : "");
            continue;
        }
        j->ops++;
        if (j->interval > 0) {
            if (j->nlat == j->caplat) {
                j->caplat = j->caplat ? 2 * j->caplat : 1024;
                j->lat = realloc(j->lat, j->caplat * sizeof *j->lat);
                if (!j->lat)
                    bench_die("out of memory");
            }
            j->lat[j->nlat++] = (t - now) * 1000.0;
        }
    }
    bench_client_free(&c);
    return NULL;
}

static void *local_loop(void *arg)
{
    struct job *j = arg;
    while (bench_now() < j->until) {
        struct ck_secret pt = {0};
        struct ck_rsa *k = (struct ck_rsa *)j->rsa;
        if (j->der && ck_rsa_from_der(j->der->p, j->der->n, &k) != CK_OK) {
            j->errors++;
            continue;
        }
        if (ck_rsa_decrypt(k, CK_RSA_OAEP_256, NULL, 0, j->ct->p, j->ct->n, &pt) != CK_OK ||
            pt.n != 32)
            j->errors++;
        else
            j->ops++;
        ck_secret_free(&pt);
        if (j->der)
            ck_rsa_free(k);
    }
    return NULL;
}

/* Runs n threads of fn for secs seconds; returns ops/s; jobs[] keeps the rest. */
static double run(void *(*fn)(void *), struct job *proto, struct job *jobs, int n, double secs)
{
    pthread_t t[64];
    double start = bench_now();
    for (int i = 0; i < n; i++) {
        jobs[i] = *proto;
        jobs[i].until = start + secs;
        if (pthread_create(&t[i], NULL, fn, &jobs[i]) != 0)
            bench_die("pthread_create");
    }
    long ops = 0, errors = 0;
    for (int i = 0; i < n; i++) {
        pthread_join(t[i], NULL);
        ops += jobs[i].ops;
        errors += jobs[i].errors;
    }
    double el = bench_now() - start;
    if (errors)
        fprintf(stderr, "bench_unwrap: %ld errors\n", errors);
    return (double)ops / el;
}

static void bench_bits(unsigned bits, int n, double secs)
{
    char name[64], path[200], body[200];
    snprintf(name, sizeof name, "k%u", bits);
    snprintf(body, sizeof body, "{\"kty\":\"RSA\",\"key_size\":%u,\"attributes\":{}}", bits);
    vault_key(&S, TOKEN, "bench-v", name, body);

    /* Wrap 32 bytes once. */
    uint8_t key[32];
    ck_os_random(key, sizeof key);
    char *b64 = NULL;
    if (ck_b64url_encode(key, sizeof key, &b64) != CK_OK)
        bench_die("b64");
    char wbody[300];
    snprintf(wbody, sizeof wbody, "{\"alg\":\"RSA-OAEP-256\",\"value\":\"%s\"}", b64);
    free(b64);
    snprintf(path, sizeof path, "/keys/%s//wrapkey?api-version=7.6", name);
    char *wurl = vault_url(&S, "bench-v", path);
    struct http_result r;
    http(&S, "POST", wurl, TOKEN, wbody, strlen(wbody), NULL, &r);
    const char *wrapped = json_string_value(json_object_get(r.json, "value"));
    if (r.status != 200 || !wrapped)
        bench_die("wrapkey: %ld %s", r.status, r.body ? r.body : "");
    char ubody[2048];
    snprintf(ubody, sizeof ubody, "{\"alg\":\"RSA-OAEP-256\",\"value\":\"%s\"}", wrapped);
    http_free(&r);
    free(wurl);
    snprintf(path, sizeof path, "/keys/%s//unwrapkey?api-version=7.6", name);
    char *uurl = vault_url(&S, "bench-v", path);

    struct job jobs[64], proto = {.url = uurl, .body = ubody};
    /* Warm-up: connections, key caches. */
    run(server_loop, &proto, jobs, n, 0.3);
    double cpu0 = bench_cpu_seconds(S.pid), t0 = bench_now();
    double server = run(server_loop, &proto, jobs, n, secs);
    double server_cpu = bench_cpu_seconds(S.pid) - cpu0, server_ops = server * (bench_now() - t0);

    struct ck_rsa *rsa = NULL;
    struct ck_buf ct = {0};
    if (ck_rsa_generate(bits, &rsa) != CK_OK ||
        ck_rsa_encrypt(rsa, CK_RSA_OAEP_256, NULL, 0, key, sizeof key, &ct) != CK_OK)
        bench_die("local RSA");
    struct job lproto = {.rsa = rsa, .ct = &ct};
    double lcpu0 = bench_cpu_seconds(0), lt0 = bench_now();
    double local = run(local_loop, &lproto, jobs, n, secs);
    double local_cpu = bench_cpu_seconds(0) - lcpu0, local_ops = local * (bench_now() - lt0);

    char metric[80];
    snprintf(metric, sizeof metric, "unwrap_rsa%u_throughput", bits);
    bench_emit(metric, server, "ops/s", local);
    /* Diagnostic: the server's CPU time per unwrap against the in-process
     * loop's per decryption: what a request costs beyond the RSA operation,
     * whatever the client, the disk or the other work on the machine. */
    snprintf(metric, sizeof metric, "unwrap_rsa%u_server_cpu_per_op", bits);
    bench_emit(metric, server_ops > 0 ? 1000.0 * server_cpu / server_ops : 0, "ms",
               local_ops > 0 ? 1000.0 * local_cpu / local_ops : 0);

    /* Diagnostic: four connections per core. Each request waits for its
     * audit record's commit; with more requests in flight, their records
     * share commits, and the rate shows what the server does when the
     * clients do not wait on one request at a time. */
    if (bits == 2048) {
        int m = 4 * n > 64 ? 64 : 4 * n;
        run(server_loop, &proto, jobs, m, 0.3);
        double wide = run(server_loop, &proto, jobs, m, secs / 2);
        bench_emit("unwrap_rsa2048_throughput_4_conns_per_core", wide, "ops/s", local);
    }

    /* Diagnostic: the in-process loop when the key is parsed from its
     * PKCS#8 DER for every operation, as the server does after unsealing. */
    struct ck_secret der = {0};
    if (ck_rsa_private_der(rsa, &der) != CK_OK)
        bench_die("private DER");
    struct job dproto = {.rsa = rsa, .ct = &ct, .der = &der};
    double reload = run(local_loop, &dproto, jobs, n, secs / 2);
    ck_secret_free(&der);
    snprintf(metric, sizeof metric, "unwrap_rsa%u_local_key_per_op", bits);
    bench_emit(metric, reload, "ops/s", local);

    /* Latency at half the measured load, spread over n threads. */
    double rate = server / 2;
    struct job lat = {.url = uurl, .body = ubody, .interval = rate > 0 ? n / rate : 1};
    run(server_loop, &lat, jobs, n, secs);
    size_t total = 0;
    for (int i = 0; i < n; i++)
        total += jobs[i].nlat;
    double *all = malloc((total ? total : 1) * sizeof *all);
    size_t k = 0;
    for (int i = 0; i < n; i++) {
        if (jobs[i].nlat)
            memcpy(all + k, jobs[i].lat, jobs[i].nlat * sizeof *all);
        k += jobs[i].nlat;
        free(jobs[i].lat);
    }
    /* Baseline: one in-process decrypt on one core. */
    double one = local > 0 ? 1000.0 * n / local : 0;
    snprintf(metric, sizeof metric, "unwrap_rsa%u_p50_half_load", bits);
    bench_emit(metric, bench_quantile(all, total, 0.50), "ms", one);
    snprintf(metric, sizeof metric, "unwrap_rsa%u_p99_half_load", bits);
    bench_emit(metric, bench_quantile(all, total, 0.99), "ms", one);
    free(all);
    ck_buf_free(&ct);
    ck_rsa_free(rsa);
    free(uurl);
}

int main(int argc, char **argv)
{
    bool quick = argc > 1 && strcmp(argv[1], "--quick") == 0;
    double t = quick ? 3 : 10;
    int n = bench_ncores();
    if (n > 64)
        n = 64;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    fprintf(stderr, "bench_unwrap: %d client threads, %.0f s per run\n", n, t);
    bench_srv_start(&S);
    provision_vault(&S, "bench@contoso.com", "sub1", "bench-v", "westus", false, TOKEN);
    double before = bench_mem_mib(S.pid, "VmRSS");
    bench_mem_reset_peak(S.pid);
    bench_bits(2048, n, t);
    bench_bits(3072, n, t / 2);
    bench_bits(4096, n, t / 2);
    bench_emit("server_rss_under_unwrap_load", bench_mem_mib(S.pid, "VmHWM"), "MiB", before);
    int st = bench_srv_stop(&S);
    curl_global_cleanup();
    return st == 0 ? 0 : 1;
}
