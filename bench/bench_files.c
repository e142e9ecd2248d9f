/*
 * bench_files — the files service through a real server:
 *
 * - Roll: a geo's DEP registered, 10,000 sites (--quick: 1000) made under
 *   it, then the primary root key rolled (PATCH .../geos/EUR/dep); the time
 *   runs from the PATCH to State Registered, in sites/s. Baseline: the
 *   job's cryptography alone, in this process on one thread (the job runs
 *   on one worker): per site one AES-KWP unwrap under the old TIK and one
 *   AES-KWP wrap under the new one.
 * - A file of 1 GiB (--quick: 128 MiB) uploaded (PUT, streamed from
 *   memory, default 4 MiB chunks) and downloaded (GET, streamed, every byte
 *   compared), in MB/s. Baseline: the same bytes through AES-256-GCM in
 *   4 MiB chunks (ck_aes_gcm_encrypt / _decrypt, one thread) plus a plain
 *   copy of a file of the same bytes (read, write, fsync) in /tmp: the
 *   rate of doing both one after the other, 1 / (1/gcm + 1/copy).
 * - The server's peak RSS (VmHWM, reset just before) over the upload and
 *   the download, against its RSS just before.
 *
 *   bench_files [--quick]      (CK_BIN names the ckey binary)
 */
#include <fcntl.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/base.h"
#include "bench_common.h"
#include "crypto/crypto.h"

#define FILES_APP_ID "66696c65-0000-4000-8000-636b65790002"
#define POOL (64u << 20) /* random bytes; the file is this, repeated */
#define CHUNK (4u << 20) /* the server's default chunk, and the baseline's */
#define BLOCK (4u << 20) /* the plain copy's read/write size */
#define SITE_KEY_LEN 32

static struct srv S;
static char ALICE[256];
static uint8_t *DATA;

/* ---------- the roll ---------- */

static bool add_site(struct bench_client *c, int i, void *ud)
{
    (void)ud;
    char url[300], body[200];
    snprintf(url, sizeof url, "%s/tenants/contoso/sites", S.url);
    snprintf(body, sizeof body, "{\"geo\":\"EUR\",\"site\":\"/sites/s%05d\"}", i);
    long st = bench_request(c, "POST", url, body, strlen(body));
    if (st != 201)
        fprintf(stderr, "bench_files: site %d: %ld %.200s\n", i, st, c->body ? c->body : "");
    return st == 201;
}

/* Waits for the geo's DEP to be Registered: for its job when one runs;
 * seconds since t0. */
static double wait_registered(struct bench_client *c, double t0)
{
    char url[300], job[64];
    snprintf(url, sizeof url, "%s/tenants/contoso/geos/EUR/dep", S.url);
    for (;;) {
        json_t *d = bench_get_json(c, url);
        const char *state = json_string_value(json_object_get(d, "State"));
        const char *id = json_string_value(json_object_get(d, "JobId"));
        bool done = state && strcmp(state, "Registered") == 0;
        snprintf(job, sizeof job, "%s", id ? id : "");
        json_decref(d);
        if (done)
            return bench_now() - t0;
        if (!job[0])
            bench_die("the geo's DEP is %s, with no job", c->body);
        bench_wait_job(c, job, t0);
    }
}

static void dep_call(const char *method, const char *body, long want)
{
    struct http_result r;
    http(&S, method, "/tenants/contoso/geos/EUR/dep", ALICE, body, strlen(body), NULL, &r);
    if (r.status != want)
        bench_die("%s geo DEP: %ld %s", method, r.status, r.body ? r.body : "");
    http_free(&r);
}

/* The job's cryptography per site, in this process: sites/s. */
static double roll_baseline(int nsites)
{
    uint8_t old_tik[32], new_tik[32], sk[SITE_KEY_LEN];
    ck_os_random(old_tik, sizeof old_tik);
    ck_os_random(new_tik, sizeof new_tik);
    struct ck_buf *wrapped = calloc((size_t)nsites, sizeof *wrapped);
    for (int i = 0; i < nsites; i++) {
        ck_os_random(sk, sizeof sk);
        if (ck_aes_kwp_wrap(old_tik, sizeof old_tik, sk, sizeof sk, &wrapped[i]) != CK_OK)
            bench_die("KWP wrap: %s", ck_err_msg());
    }
    double t0 = bench_now();
    for (int i = 0; i < nsites; i++) {
        struct ck_secret plain = {0};
        struct ck_buf again = {0};
        if (ck_aes_kwp_unwrap(old_tik, sizeof old_tik, wrapped[i].p, wrapped[i].n, &plain) !=
                CK_OK ||
            ck_aes_kwp_wrap(new_tik, sizeof new_tik, plain.p, plain.n, &again) != CK_OK)
            bench_die("KWP: %s", ck_err_msg());
        ck_secret_free(&plain);
        ck_buf_free(&again);
    }
    double secs = bench_now() - t0;
    for (int i = 0; i < nsites; i++)
        ck_buf_free(&wrapped[i]);
    free(wrapped);
    return nsites / secs;
}

static void bench_roll(int nsites, int nthreads)
{
    char *uri[2], body[1024];
    bench_customer_keys(&S, "files", FILES_APP_ID, ALICE, uri);
    vault_key(&S, ALICE, "files-a", "root-a2",
              "{\"kty\":\"RSA\",\"key_size\":2048,\"attributes\":{}}");
    char *uri_a2 = vault_url(&S, "files-a", "/keys/root-a2");
    struct http_result r;
    http(&S, "POST", "/tenants/contoso/geos", ALICE, "{\"geo\":\"EUR\"}", 13, NULL, &r);
    if (r.status != 201)
        bench_die("geo: %ld %s", r.status, r.body ? r.body : "");
    http_free(&r);
    snprintf(body, sizeof body, "{\"primaryKeyVaultUri\":\"%s\",\"secondaryKeyVaultUri\":\"%s\"}",
             uri[0], uri[1]);
    struct bench_client c;
    bench_client_init(&c, &S, ALICE, "application/json");
    dep_call("POST", body, 201);
    wait_registered(&c, bench_now());

    double t0 = bench_now();
    bench_each(&S, ALICE, "application/json", nthreads, 0, nsites, add_site, NULL);
    fprintf(stderr, "bench_files: %d sites made in %.1f s\n", nsites, bench_now() - t0);

    snprintf(body, sizeof body, "{\"keyType\":\"Primary\",\"keyVaultUri\":\"%s\"}", uri_a2);
    t0 = bench_now();
    dep_call("PATCH", body, 200);
    double patch = bench_now() - t0, secs = wait_registered(&c, t0);
    fprintf(stderr, "bench_files: roll of %d sites took %.2f s (the PATCH itself %.2f s)\n", nsites,
            secs, patch);
    bench_client_free(&c);
    bench_emit("files_roll_sites_per_s", nsites / secs, "sites/s", roll_baseline(nsites));
    free(uri[0]);
    free(uri[1]);
    free(uri_a2);
}

/* ---------- upload and download ---------- */

struct stream {
    uint64_t off, size; /* bytes sent or received so far, of size */
    bool bad;           /* a received byte differs */
};

static size_t send_bytes(char *buf, size_t size, size_t nitems, void *ud)
{
    struct stream *s = ud;
    size_t want = size * nitems, n = 0;
    while (n < want && s->off < s->size) {
        size_t at = (size_t)(s->off % POOL), k = POOL - at;
        if (k > want - n)
            k = want - n;
        if (k > s->size - s->off)
            k = (size_t)(s->size - s->off);
        memcpy(buf + n, DATA + at, k);
        n += k;
        s->off += k;
    }
    return n;
}

static size_t recv_bytes(char *p, size_t size, size_t nitems, void *ud)
{
    struct stream *s = ud;
    size_t got = size * nitems, n = 0;
    while (n < got) {
        size_t at = (size_t)(s->off % POOL), k = POOL - at;
        if (k > got - n)
            k = got - n;
        if (s->off + k > s->size || memcmp(p + n, DATA + at, k) != 0)
            s->bad = true;
        n += k;
        s->off += k;
    }
    return got;
}

/* PUT (upload) or GET of the file; seconds. */
static double transfer(bool upload, uint64_t size)
{
    char url[300];
    snprintf(url, sizeof url, "%s/tenants/contoso/sites/big/files/bench/big.bin", S.url);
    struct bench_client c;
    bench_client_init(&c, &S, ALICE, "application/octet-stream");
    struct stream s = {0, size, false};
    curl_easy_setopt(c.h, CURLOPT_URL, url);
    curl_easy_setopt(c.h, CURLOPT_TIMEOUT, 0L);
    if (upload) {
        curl_easy_setopt(c.h, CURLOPT_UPLOAD, 1L);
        curl_easy_setopt(c.h, CURLOPT_READFUNCTION, send_bytes);
        curl_easy_setopt(c.h, CURLOPT_READDATA, &s);
        curl_easy_setopt(c.h, CURLOPT_INFILESIZE_LARGE, (curl_off_t)size);
    } else {
        curl_easy_setopt(c.h, CURLOPT_WRITEFUNCTION, recv_bytes);
        curl_easy_setopt(c.h, CURLOPT_WRITEDATA, &s);
    }
    double t0 = bench_now();
    CURLcode rc = curl_easy_perform(c.h);
    double secs = bench_now() - t0;
    long st = 0;
    curl_easy_getinfo(c.h, CURLINFO_RESPONSE_CODE, &st);
    if (rc != CURLE_OK || st != (upload ? 201 : 200) || s.off != size || s.bad)
        bench_die("%s of %llu bytes: %s, status %ld, %llu bytes%s %.200s", upload ? "PUT" : "GET",
                  (unsigned long long)size, curl_easy_strerror(rc), st, (unsigned long long)s.off,
                  s.bad ? ", wrong bytes" : "", upload && c.body ? c.body : "");
    bench_client_free(&c);
    return secs;
}

/* AES-256-GCM over size bytes in CHUNK pieces, one thread: MB/s of
 * encryption (*enc) and of decryption (*dec). Each chunk has its own nonce
 * (the server gives each its own key); the ciphertext of the last pass over
 * DATA is what is decrypted. */
static void gcm_baseline(uint64_t size, double *enc, double *dec)
{
    enum { SLOTS = POOL / CHUNK };
    uint8_t key[32], iv[SLOTS][CK_GCM_IV_LEN] = {{0}}, tag[SLOTS][CK_GCM_TAG_LEN];
    ck_os_random(key, sizeof key);
    uint8_t *ct = malloc(POOL), *pt = malloc(CHUNK);
    if (!ct || !pt)
        bench_die("out of memory");
    double t0 = bench_now();
    for (uint64_t off = 0; off < size; off += CHUNK) {
        size_t at = (size_t)(off % POOL), k = at / CHUNK;
        memcpy(iv[k], &off, sizeof off);
        if (ck_aes_gcm_encrypt(key, sizeof key, iv[k], CK_GCM_IV_LEN, NULL, 0, DATA + at, CHUNK,
                               ct + at, tag[k]) != CK_OK)
            bench_die("GCM encrypt: %s", ck_err_msg());
    }
    *enc = (double)size / 1e6 / (bench_now() - t0);
    t0 = bench_now();
    for (uint64_t off = 0; off < size; off += CHUNK) {
        size_t at = (size_t)(off % POOL), k = at / CHUNK;
        if (ck_aes_gcm_decrypt(key, sizeof key, iv[k], CK_GCM_IV_LEN, NULL, 0, ct + at, CHUNK,
                               tag[k], CK_GCM_TAG_LEN, pt) != CK_OK)
            bench_die("GCM decrypt: %s", ck_err_msg());
    }
    *dec = (double)size / 1e6 / (bench_now() - t0);
    free(ct);
    free(pt);
}

static void write_all(int fd, const uint8_t *p, size_t n)
{
    while (n > 0) {
        ssize_t k = write(fd, p, n);
        if (k <= 0)
            bench_die("write failed");
        p += k;
        n -= (size_t)k;
    }
}

/* A plain copy of a file of size bytes (read, write, fsync): MB/s. */
static double copy_baseline(uint64_t size)
{
    char dir[64] = "/tmp/ckey-bench-XXXXXX", src[128], dst[128];
    if (!mkdtemp(dir))
        bench_die("mkdtemp");
    snprintf(src, sizeof src, "%s/src.bin", dir);
    snprintf(dst, sizeof dst, "%s/dst.bin", dir);
    int in = open(src, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (in < 0)
        bench_die("cannot create %s", src);
    for (uint64_t off = 0; off < size; off += POOL)
        write_all(in, DATA, size - off < POOL ? (size_t)(size - off) : POOL);
    fsync(in);
    close(in);
    uint8_t *buf = malloc(BLOCK);
    double t0 = bench_now();
    in = open(src, O_RDONLY);
    int out = open(dst, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (in < 0 || out < 0 || !buf)
        bench_die("copy: cannot open");
    ssize_t k;
    while ((k = read(in, buf, BLOCK)) > 0)
        write_all(out, buf, (size_t)k);
    if (k < 0 || fsync(out) != 0)
        bench_die("copy failed");
    close(in);
    close(out);
    double secs = bench_now() - t0;
    free(buf);
    unlink(src);
    unlink(dst);
    rmdir(dir);
    return (double)size / 1e6 / secs;
}

static void bench_big_file(uint64_t size)
{
    struct http_result r;
    const char *site = "{\"geo\":\"EUR\",\"site\":\"/sites/big\"}";
    http(&S, "POST", "/tenants/contoso/sites", ALICE, site, strlen(site), NULL, &r);
    if (r.status != 201)
        bench_die("site big: %ld %s", r.status, r.body ? r.body : "");
    http_free(&r);

    double enc, dec, copy = copy_baseline(size);
    gcm_baseline(size, &enc, &dec);
    fprintf(stderr,
            "bench_files: baselines over %llu MiB: AES-256-GCM encrypt %.0f MB/s, decrypt %.0f "
            "MB/s, file copy %.0f MB/s\n",
            (unsigned long long)(size >> 20), enc, dec, copy);

    double before = bench_mem_mib(S.pid, "VmRSS");
    bench_mem_reset_peak(S.pid);
    double up = transfer(true, size);
    double peak_up = bench_mem_mib(S.pid, "VmHWM");
    bench_mem_reset_peak(S.pid);
    double down = transfer(false, size);
    double peak_down = bench_mem_mib(S.pid, "VmHWM");
    fprintf(stderr,
            "bench_files: server peak RSS %.1f MiB in the upload, %.1f MiB in the download\n",
            peak_up, peak_down);
    double mb = (double)size / 1e6;
    bench_emit("files_upload_mbps", mb / up, "MB/s", 1 / (1 / enc + 1 / copy));
    bench_emit("files_download_mbps", mb / down, "MB/s", 1 / (1 / dec + 1 / copy));
    bench_emit("files_server_peak_rss", peak_up > peak_down ? peak_up : peak_down, "MiB", before);
    /* No DELETE: with secure_delete it would zero the whole gigabyte, and
     * the data dir goes anyway. */
}

int main(int argc, char **argv)
{
    bool quick = argc > 1 && strcmp(argv[1], "--quick") == 0;
    int nsites = quick ? 1000 : 10000;
    uint64_t size = (uint64_t)(quick ? 128 : 1024) << 20;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    fprintf(stderr, "bench_files: %d sites, a file of %llu MiB\n", nsites,
            (unsigned long long)(size >> 20));
    DATA = malloc(POOL);
    if (!DATA || ck_os_random(DATA, POOL) != CK_OK)
        bench_die("random bytes");
    bench_srv_start(&S);
    /* Two connections per core: each site's commit waits for its fsync. */
    bench_roll(nsites, 2 * bench_ncores());
    bench_big_file(size);
    int st = bench_srv_stop(&S);
    free(DATA);
    curl_global_cleanup();
    return st == 0 ? 0 : 1;
}
