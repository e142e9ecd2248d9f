/*
 * bench_common — shared helpers of the benchmark programs: a clock, JSON
 * result lines, a keep-alive libcurl client and a percentile.
 *
 * The programs start their own `ckey server --dev` through the integration
 * test harness (tests/integration/harness.c); CK_BIN names the binary.
 * Helpers here die (bench_die) on any failure: a benchmark that cannot set
 * itself up has nothing to report.
 */
#ifndef CK_BENCH_COMMON_H
#define CK_BENCH_COMMON_H

#include <curl/curl.h>
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "harness.h"

/* Starts `ckey server --dev` (harness srv_start) in a fresh data dir of the
 * bench's own, /tmp/ckey-bench-srv-XXXXXX: a sweep of the test runs'
 * /tmp/ckey-it-* dirs must not pull the store out from under a benchmark. */
void bench_srv_start(struct srv *s);
/* Stops it (SIGTERM) and removes its data dir (kept with CKEY_TEST_KEEP);
 * returns the server's exit status. */
int bench_srv_stop(struct srv *s);

double bench_now(void); /* monotonic seconds */
int bench_ncores(void);

/* One result: a JSON line on stdout and a table row on stderr. ratio is
 * value/baseline (baseline <= 0: null). */
void bench_emit(const char *name, double value, const char *unit, double baseline);

/* A keep-alive HTTPS client for one thread. */
struct bench_client {
    char url[64]; /* the server's, https://127.0.0.1:PORT */
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

/* GET url on c: the parsed JSON body (the caller decrefs); dies unless 200. */
json_t *bench_get_json(struct bench_client *c, const char *url);

/* Polls GET /jobs/{id} every 20 ms until the job is done (dies when it
 * failed, or after 30 minutes; says its percentage on stderr every 10 s):
 * seconds since t0. A job poll reads one row, where a poll of the
 * mailbox's or geo's own state would count items or sites, competing with
 * the job it watches. */
double bench_wait_job(struct bench_client *c, const char *id, double t0);

/* Calls each(c, i, ud) for every i in [from, to), spread over nthreads
 * threads with a keep-alive client each (token, content_type). each returns
 * false after printing what failed: the program dies. */
typedef bool (*bench_each_fn)(struct bench_client *c, int i, void *ud);
void bench_each(const struct srv *s, const char *token, const char *content_type, int nthreads,
                int from, int to, bench_each_fn each, void *ud);

/* A field of /proc/PID/status ("VmRSS", "VmHWM") in MiB; 0 when unreadable.
 * pid 0: this process. */
double bench_mem_mib(pid_t pid, const char *field);
/* CPU seconds (user + system, all threads) the process has used so far,
 * from /proc/PID/stat; 0 when unreadable. pid 0: this process. */
double bench_cpu_seconds(pid_t pid);
/* Sets the process's VmHWM back to its current RSS (clear_refs 5), so that
 * VmHWM read later is the peak of what happened in between. */
void bench_mem_reset_peak(pid_t pid);

/* The customer side of a DEP, in tenant contoso: alice@contoso.com (her
 * token into token, 256 bytes) owns vaults PREFIX-a (westus) and PREFIX-b
 * (eastus) with purge protection, each with an RSA-2048 key (root-a,
 * root-b; their URIs, malloc'd, into uri[0], uri[1]) on which the service
 * application app_id may get, wrapKey and unwrapKey; contoso has alice as
 * its admin. */
void bench_customer_keys(const struct srv *s, const char *prefix, const char *app_id, char *token,
                         char *uri[2]);

/* The p-quantile (0..1) of v[0..n) (sorts v). */
double bench_quantile(double *v, size_t n, double p);

/* Dies with a message. */
void bench_die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

#endif
