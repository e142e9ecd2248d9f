/*
 * bench_common.c — see bench_common.h.
 */
#include "bench_common.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

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
