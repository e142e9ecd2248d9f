/*
 * bench_common.c — see bench_common.h.
 */
#include "bench_common.h"

#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static struct srv *running; /* for the exit handler */

static void remove_dir(struct srv *s)
{
    char *out = NULL;
    if (getenv("CKEY_TEST_KEEP"))
        fprintf(stderr, "bench: kept %s\n", s->dir);
    else if (strncmp(s->dir, "/tmp/ckey-bench-srv-", 20) == 0)
        sh(&out, "rm -rf '%s'", s->dir);
    free(out);
    s->dir[0] = '\0';
}

/* A benchmark that dies (bench_die) leaves no server and no gigabytes. */
static void at_exit(void)
{
    if (!running)
        return;
    srv_kill(running);
    remove_dir(running);
}

/* Ctrl-C, or a kill, must not leave a gigabyte behind either. exit() is not
 * async-signal-safe; a benchmark interrupted at a bad moment may hang or
 * crash instead of cleaning up, which is no worse than not cleaning up. */
static void on_signal(int sig)
{
    exit(128 + sig);
}

void bench_srv_start(struct srv *s)
{
    memset(s, 0, sizeof *s);
    snprintf(s->dir, sizeof s->dir, "/tmp/ckey-bench-srv-XXXXXX");
    if (!mkdtemp(s->dir))
        bench_die("cannot make a data dir under /tmp");
    if (!running) {
        atexit(at_exit);
        signal(SIGINT, on_signal);
        signal(SIGTERM, on_signal);
    }
    running = s;
    srv_start(s, true); /* reuse: this dir, a free port */
}

int bench_srv_stop(struct srv *s)
{
    int st = srv_stop(s);
    remove_dir(s);
    running = NULL;
    return st;
}

double bench_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int bench_ncores(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

void bench_emit(const char *name, double value, const char *unit, double baseline)
{
    if (baseline > 0) {
        printf(
            "{\"name\":\"%s\",\"value\":%.4g,\"unit\":\"%s\",\"baseline\":%.4g,\"ratio\":%.3f}\n",
            name, value, unit, baseline, value / baseline);
        fprintf(stderr, "  %-34s %12.4g %-8s baseline %12.4g  ratio %6.3f\n", name, value, unit,
                baseline, value / baseline);
    } else {
        printf(
            "{\"name\":\"%s\",\"value\":%.4g,\"unit\":\"%s\",\"baseline\":null,\"ratio\":null}\n",
            name, value, unit);
        fprintf(stderr, "  %-34s %12.4g %-8s\n", name, value, unit);
    }
    fflush(stdout);
}

void bench_die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("bench: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

static size_t sink(char *p, size_t size, size_t n, void *ud)
{
    struct bench_client *c = ud;
    size_t k = size * n;
    if (c->len + k + 1 > c->cap) {
        size_t cap = c->cap ? c->cap : 4096;
        while (cap < c->len + k + 1)
            cap *= 2;
        char *b = realloc(c->body, cap);
        if (!b)
            return 0;
        c->body = b;
        c->cap = cap;
    }
    memcpy(c->body + c->len, p, k);
    c->len += k;
    c->body[c->len] = '\0';
    return k;
}

void bench_client_init(struct bench_client *c, const struct srv *s, const char *token,
                       const char *content_type)
{
    memset(c, 0, sizeof *c);
    snprintf(c->url, sizeof c->url, "%s", s->url);
    c->h = curl_easy_init();
    if (!c->h)
        bench_die("curl_easy_init");
    char line[400];
    snprintf(line, sizeof line, "Content-Type: %s", content_type);
    c->hdr = curl_slist_append(c->hdr, line);
    c->hdr = curl_slist_append(c->hdr, "Expect:");
    snprintf(line, sizeof line, "Authorization: Bearer %s", token);
    c->hdr = curl_slist_append(c->hdr, line);
    curl_easy_setopt(c->h, CURLOPT_HTTPHEADER, c->hdr);
    curl_easy_setopt(c->h, CURLOPT_CAINFO, s->cacert);
    curl_easy_setopt(c->h, CURLOPT_WRITEFUNCTION, sink);
    curl_easy_setopt(c->h, CURLOPT_WRITEDATA, c);
    curl_easy_setopt(c->h, CURLOPT_TIMEOUT, 60L);
    curl_easy_setopt(c->h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c->h, CURLOPT_TCP_NODELAY, 1L);
}

long bench_request(struct bench_client *c, const char *method, const char *url, const void *body,
                   size_t n)
{
    c->len = 0;
    if (c->body)
        c->body[0] = '\0';
    curl_easy_setopt(c->h, CURLOPT_URL, url);
    if (strcmp(method, "GET") == 0) {
        curl_easy_setopt(c->h, CURLOPT_HTTPGET, 1L);
        curl_easy_setopt(c->h, CURLOPT_CUSTOMREQUEST, NULL);
    } else {
        curl_easy_setopt(c->h, CURLOPT_POST, 1L);
        curl_easy_setopt(c->h, CURLOPT_POSTFIELDS, body ? body : "");
        curl_easy_setopt(c->h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)(body ? n : 0));
        curl_easy_setopt(c->h, CURLOPT_CUSTOMREQUEST, strcmp(method, "POST") ? method : NULL);
    }
    if (curl_easy_perform(c->h) != CURLE_OK)
        return 0;
    long st = 0;
    curl_easy_getinfo(c->h, CURLINFO_RESPONSE_CODE, &st);
    return st;
}

void bench_client_free(struct bench_client *c)
{
    curl_slist_free_all(c->hdr);
    curl_easy_cleanup(c->h);
    free(c->body);
    memset(c, 0, sizeof *c);
}

json_t *bench_get_json(struct bench_client *c, const char *url)
{
    long st = bench_request(c, "GET", url, NULL, 0);
    json_t *j = st == 200 ? json_loads(c->body ? c->body : "", 0, NULL) : NULL;
    if (!j)
        bench_die("GET %s: %ld %.300s", url, st, c->body ? c->body : "");
    return j;
}

double bench_wait_job(struct bench_client *c, const char *id, double t0)
{
    char url[300];
    snprintf(url, sizeof url, "%s/jobs/%s", c->url, id);
    for (double said = bench_now();;) {
        json_t *j = bench_get_json(c, url);
        const char *state = json_string_value(json_object_get(j, "state"));
        bool done = state && strcmp(state, "done") == 0,
             failed = state && strcmp(state, "failed") == 0;
        long pct = (long)json_integer_value(json_object_get(j, "percent"));
        json_decref(j);
        double now = bench_now();
        if (failed)
            bench_die("job %s failed: %s", id, c->body);
        if (done)
            return now - t0;
        if (now - t0 > 1800)
            bench_die("job %s is not done after 30 minutes", id);
        if (now - said >= 10) {
            fprintf(stderr, "bench: job %s %ld%% after %.0f s\n", id, pct, now - t0);
            said = now;
        }
        usleep(20 * 1000);
    }
}

struct each_run {
    const struct srv *s;
    const char *token, *content_type;
    int next, to; /* next index to take (atomic) and the end */
    bench_each_fn each;
    void *ud;
};

static void *each_loop(void *arg)
{
    struct each_run *r = arg;
    struct bench_client c;
    bench_client_init(&c, r->s, r->token, r->content_type);
    for (;;) {
        int i = __atomic_fetch_add(&r->next, 1, __ATOMIC_RELAXED);
        if (i >= r->to)
            break;
        if (!r->each(&c, i, r->ud))
            bench_die("stopped at item %d", i);
    }
    bench_client_free(&c);
    return NULL;
}

void bench_each(const struct srv *s, const char *token, const char *content_type, int nthreads,
                int from, int to, bench_each_fn each, void *ud)
{
    struct each_run r = {s, token, content_type, from, to, each, ud};
    pthread_t t[64];
    if (nthreads < 1)
        nthreads = 1;
    if (nthreads > 64)
        nthreads = 64;
    for (int i = 0; i < nthreads; i++)
        if (pthread_create(&t[i], NULL, each_loop, &r) != 0)
            bench_die("pthread_create");
    for (int i = 0; i < nthreads; i++)
        pthread_join(t[i], NULL);
}

double bench_mem_mib(pid_t pid, const char *field)
{
    char path[64], line[256];
    if (pid > 0)
        snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    else
        snprintf(path, sizeof path, "/proc/self/status");
    FILE *f = fopen(path, "r");
    double kb = 0;
    size_t n = strlen(field);
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, field, n) == 0 && line[n] == ':')
            kb = strtod(line + n + 1, NULL);
    if (f)
        fclose(f);
    return kb / 1024.0;
}

double bench_cpu_seconds(pid_t pid)
{
    char path[64];
    if (pid)
        snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    else
        snprintf(path, sizeof path, "/proc/self/stat");
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    char buf[1024];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    /* Fields 14 and 15 (utime, stime) count from after the ")" that ends
     * the command name, which may itself hold spaces. */
    const char *p = strrchr(buf, ')');
    unsigned long ut = 0, st = 0;
    if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
        return 0;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

void bench_mem_reset_peak(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/clear_refs", (int)pid);
    FILE *f = fopen(path, "w");
    if (!f || fputs("5", f) < 0 || fclose(f) != 0)
        bench_die("cannot reset the peak RSS of %d through %s", (int)pid, path);
}

void bench_customer_keys(const struct srv *s, const char *prefix, const char *app_id, char *token,
                         char *uri[2])
{
    static const char *const side[2] = {"a", "b"}, *const location[2] = {"westus", "eastus"};
    struct http_result r;
    char path[200], vault[64], key[16], again[256];
    snprintf(path, sizeof path, "/directory/principals/%s", app_id);
    for (int i = 0; i < 2; i++) {
        snprintf(vault, sizeof vault, "%s-%s", prefix, side[i]);
        provision_vault(s, "alice@contoso.com", "sub1", vault, location[i], true,
                        i == 0 ? token : again);
    }
    http(s, "GET", path, token, NULL, 0, NULL, &r);
    const char *oid = json_string_value(json_object_get(r.json, "objectId"));
    if (r.status != 200 || !oid)
        bench_die("service principal %s: %ld", app_id, r.status);
    for (int i = 0; i < 2; i++) {
        snprintf(vault, sizeof vault, "%s-%s", prefix, side[i]);
        snprintf(key, sizeof key, "root-%s", side[i]);
        vault_policy(s, token, vault, "add", oid, "\"get\",\"wrapKey\",\"unwrapKey\"");
        vault_key(s, token, vault, key, "{\"kty\":\"RSA\",\"key_size\":2048,\"attributes\":{}}");
        snprintf(path, sizeof path, "/keys/%s", key);
        uri[i] = vault_url(s, vault, path);
    }
    http_free(&r);
    char *out = NULL;
    if (cli(s, NULL, &out, "tenant create contoso --admin alice@contoso.com") != 0)
        bench_die("tenant create: %s", out ? out : "");
    free(out);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

double bench_quantile(double *v, size_t n, double p)
{
    if (n == 0)
        return 0;
    qsort(v, n, sizeof *v, cmp_double);
    size_t i = (size_t)(p * (double)(n - 1) + 0.5);
    return v[i < n ? i : n - 1];
}
