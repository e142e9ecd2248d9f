/*
 * bench_common — shared helpers of the benchmark programs: a clock, JSON
 * result lines, a keep-alive libcurl client and a percentile.
 *
 * The programs start their own `ckey server --dev` through the integration
 * test harness (tests/integration/harness.c); CK_BIN names the binary.
 */
#ifndef CK_BENCH_COMMON_H
#define CK_BENCH_COMMON_H

#include <curl/curl.h>
#include <stdbool.h>
#include <stddef.h>

#include "harness.h"

double bench_now(void); /* monotonic seconds */
int bench_ncores(void);

/* One result: a JSON line on stdout and a table row on stderr. ratio is
 * value/baseline (baseline <= 0: null). */
void bench_emit(const char *name, double value, const char *unit, double baseline);

/* A keep-alive HTTPS client for one thread. */
struct bench_client {
    CURL *h;
    struct curl_slist *hdr;
    char *body;
    size_t len, cap;
};
void bench_client_init(struct bench_client *c, const struct srv *s, const char *token,
                       const char *content_type);
/* One request on the kept-alive connection; returns the HTTP status (0 on a
 * transport error). The body is in c->body / c->len until the next call. */
long bench_request(struct bench_client *c, const char *method, const char *url, const void *body,
                   size_t n);
void bench_client_free(struct bench_client *c);

/* The p-quantile (0..1) of v[0..n) (sorts v). */
double bench_quantile(double *v, size_t n, double p);

/* Dies with a message. */
void bench_die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

#endif
