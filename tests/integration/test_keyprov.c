/*
 * Integration tests of the key provider against a real `ckey server` over
 * HTTPS, as the service uses it: the "ckey Mail Service" application holds
 * get, wrapKey and unwrapKey on vault kp-a, and reaches root keys only by
 * their URIs. What a user of the service would observe is checked: the
 * bytes that come back, the versions used, and which failures are
 * transient (the availability key may step in) and which are denials (fail
 * closed), with messages that name the key.
 *
 * A second, fake vault (libmicrohttpd in this process) answers with
 * scripted 5xx, 429 + Retry-After, slow and broken answers, which a real
 * vault cannot be made to give on demand: it shows the retries, the
 * backoff and their bounds.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "crypto/crypto.h"
#include "harness.h"
#include "keyprov/keyprov.h"

static struct srv S;
static char ALICE[256], TID[37], OID[37];
static char *APP; /* the ckey Mail Service's token */
static struct ck_keyprov *P;

#define POLICIES                                                                                   \
    "/subscriptions/sub1/resourceGroups/rg1/providers/Microsoft.KeyVault/vaults/kp-a/"             \
    "accessPolicies/"

/* ---------- helpers ---------- */

static long vault_call(const char *method, const char *path, const char *body, json_t **json)
{
    char *u = vault_url(&S, "kp-a", path);
    struct http_result r;
    http(&S, method, u, ALICE, body, body ? strlen(body) : 0, NULL, &r);
    free(u);
    long status = r.status;
    if (status != 200)
        fprintf(stderr, "%s %s: %ld %s\n", method, path, status, r.body ? r.body : "");
    if (json)
        *json = json_incref(r.json);
    http_free(&r);
    return status;
}

static void create_key(const char *name)
{
    char path[200];
    snprintf(path, sizeof path, "/keys/%s/create?api-version=7.6", name);
    assert_int_equal(
        vault_call("POST", path, "{\"kty\":\"RSA\",\"key_size\":2048,\"attributes\":{}}", NULL),
        200);
}

/* The app's key permissions on kp-a: op "add" or "remove". */
static void app_policy(const char *op, const char *keys)
{
    char body[512];
    snprintf(body, sizeof body,
             "{\"properties\":{\"accessPolicies\":[{\"tenantId\":\"%s\",\"objectId\":\"%s\","
             "\"permissions\":{\"keys\":[%s]}}]}}",
             TID, OID, keys);
    char path[300];
    snprintf(path, sizeof path, POLICIES "%s?api-version=2023-02-01", op);
    struct http_result r;
    http(&S, "PUT", path, ALICE, body, strlen(body), NULL, &r);
    if (r.status != 200)
        fail_msg("accessPolicies/%s: %ld %s", op, r.status, r.body ? r.body : "");
    http_free(&r);
}

static struct ck_keyprov *provider(const char *token, long timeout_ms, int retries, unsigned pool)
{
    struct ck_keyprov_config cfg = {
        .token = token,
        .cacert = S.cacert,
        .timeout_ms = timeout_ms,
        .retries = retries,
        .pool_size = pool,
    };
    struct ck_keyprov *p = NULL;
    if (ck_keyprov_new(&cfg, &p) != CK_OK)
        fail_msg("ck_keyprov_new: %s", ck_err_msg());
    return p;
}

static void assert_msg_has(const char *needle)
{
    if (!strstr(ck_err_msg(), needle))
        fail_msg("error message '%s' lacks '%s'", ck_err_msg(), needle);
}

static bool is_hex32(const char *s)
{
    if (strlen(s) != 32)
        return false;
    for (; *s; s++)
        if (!strchr("0123456789abcdef", *s))
            return false;
    return true;
}

/* Wraps 32 random bytes under uri; returns the kid, fills key. */
static void wrap_random(struct ck_keyprov *p, const char *uri, uint8_t key[32], struct ck_buf *w,
                        char kid[CK_KEY_URI_MAX])
{
    assert_int_equal(ck_rand_bytes(key, 32), CK_OK);
    ck_err rc = ck_keyprov_wrap(p, uri, key, 32, w, kid);
    if (rc != CK_OK)
        fail_msg("wrap under %s: %s", uri, ck_err_msg());
}

static void expect_unwrap(struct ck_keyprov *p, const char *kid, const struct ck_buf *w,
                          const uint8_t key[32])
{
    struct ck_secret got = {0};
    ck_err rc = ck_keyprov_unwrap(p, kid, w->p, w->n, &got);
    if (rc != CK_OK)
        fail_msg("unwrap under %s: %s", kid, ck_err_msg());
    assert_int_equal(got.n, 32);
    assert_memory_equal(got.p, key, 32);
    ck_secret_free(&got);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---------- setup ---------- */

/* The application id of "ckey Mail Service" ("" when there is none yet). */
static void mail_service_app_id(char app_id[64])
{
    app_id[0] = '\0';
    char *out = NULL;
    if (cli(&S, NULL, &out, "-o json principal list") == 0) {
        json_t *rows = json_loads(out, 0, NULL), *row;
        size_t i;
        json_array_foreach(rows, i, row)
        {
            const char *name = json_string_value(json_object_get(row, "displayName"));
            const char *id = json_string_value(json_object_get(row, "applicationId"));
            if (name && id && strcmp(name, "ckey Mail Service") == 0)
                snprintf(app_id, 64, "%s", id);
        }
        json_decref(rows);
    }
    free(out);
}

static int setup(void **state)
{
    srv_start(&S, false);
    provision_vault(&S, "alice@contoso.com", "sub1", "kp-a", "westus", true, ALICE);
    /* The service role may have made the principal already (with its fixed
     * application id); otherwise the operator adds it. */
    char app_id[64];
    mail_service_app_id(app_id);
    if (!app_id[0]) {
        char *out = NULL;
        int st = cli(&S, NULL, &out, "principal add --app 'ckey Mail Service'");
        if (st != 0)
            fprintf(stderr, "%s\n", out ? out : "");
        free(out);
        mail_service_app_id(app_id);
    }
    if (!app_id[0]) {
        srv_stop(&S);
        srv_cleanup(&S);
        return -1;
    }
    APP = token_for(&S, app_id, "2h", NULL);
    whoami(&S, APP, OID, TID);
    app_policy("add", "\"get\",\"wrapKey\",\"unwrapKey\"");
    P = provider(APP, 0, 0, 0);
    return 0;
}

static int teardown(void **state)
{
    ck_keyprov_free(P);
    free(APP);
    int status = srv_stop(&S);
    srv_cleanup(&S);
    return status == 0 ? 0 : -1;
}

/* ---------- against the real vault ---------- */

static void test_get(void **state)
{
    create_key("root1");
    char *uri = key_uri(&S, "kp-a", "root1");
    struct ck_root_key_info info;
    if (ck_keyprov_get(P, uri, &info) != CK_OK)
        fail_msg("get %s: %s", uri, ck_err_msg());
    assert_int_equal(info.bits, 2048);
    assert_string_equal(info.kty, "RSA");
    assert_true(info.can_wrap);
    assert_true(info.can_unwrap);
    assert_true(info.enabled);
    assert_int_equal(info.nbf, 0);
    assert_int_equal(info.exp, 0);
    /* soft delete, 90 days, purge protection on */
    assert_string_equal(info.recovery_level, "Recoverable");
    assert_int_equal(info.recoverable_days, 90);
    assert_true(is_hex32(info.version));
    /* kid = the URI asked + "/" + version */
    assert_true(strncmp(info.kid, uri, strlen(uri)) == 0);
    assert_int_equal(info.kid[strlen(uri)], '/');
    assert_string_equal(info.kid + strlen(uri) + 1, info.version);

    /* the versioned URI names the same version */
    struct ck_root_key_info again;
    assert_int_equal(ck_keyprov_get(P, info.kid, &again), CK_OK);
    assert_string_equal(again.version, info.version);
    free(uri);
}

static void test_wrap_unwrap_round_trip(void **state)
{
    char *uri = key_uri(&S, "kp-a", "root1");
    uint8_t key[32];
    struct ck_buf w = {0};
    char kid[CK_KEY_URI_MAX];
    wrap_random(P, uri, key, &w, kid);
    assert_int_equal(w.n, 256); /* RSA-2048 */
    assert_memory_not_equal(w.p, key, 32);
    struct ck_root_key_info info;
    assert_int_equal(ck_keyprov_get(P, uri, &info), CK_OK);
    char want[CK_KEY_URI_MAX];
    snprintf(want, sizeof want, "%s/%s", uri, info.version);
    assert_string_equal(kid, want);
    expect_unwrap(P, kid, &w, key);

    /* a versioned URI wraps under that version */
    struct ck_buf w2 = {0};
    char kid2[CK_KEY_URI_MAX];
    wrap_random(P, kid, key, &w2, kid2);
    assert_string_equal(kid2, kid);
    expect_unwrap(P, kid2, &w2, key);

    /* a ciphertext that is not one is the caller's error, not a denial */
    struct ck_secret s = {0};
    w2.p[10] ^= 1;
    assert_int_equal(ck_keyprov_unwrap(P, kid, w2.p, w2.n, &s), CK_EINVAL);
    assert_null(s.p);
    ck_buf_free(&w);
    ck_buf_free(&w2);
    free(uri);
}

static void test_rotate_keeps_old_versions(void **state)
{
    char *uri = key_uri(&S, "kp-a", "root1");
    uint8_t key[32];
    struct ck_buf w = {0};
    char old_kid[CK_KEY_URI_MAX];
    wrap_random(P, uri, key, &w, old_kid);

    json_t *bundle = NULL;
    assert_int_equal(vault_call("POST", "/keys/root1/rotate?api-version=7.6", NULL, &bundle), 200);
    const char *new_kid = json_string_value(json_object_get(json_object_get(bundle, "key"), "kid"));
    assert_non_null(new_kid);
    const char *new_version = strrchr(new_kid, '/') + 1;
    assert_string_not_equal(new_version, strrchr(old_kid, '/') + 1);

    /* old wrapped copies still unwrap under their own version */
    expect_unwrap(P, old_kid, &w, key);
    /* new wraps use the new version */
    struct ck_buf w2 = {0};
    char kid2[CK_KEY_URI_MAX];
    wrap_random(P, uri, key, &w2, kid2);
    assert_string_equal(strrchr(kid2, '/') + 1, new_version);
    expect_unwrap(P, kid2, &w2, key);
    struct ck_root_key_info info;
    assert_int_equal(ck_keyprov_get(P, uri, &info), CK_OK);
    assert_string_equal(info.version, new_version);
    json_decref(bundle);
    ck_buf_free(&w);
    ck_buf_free(&w2);
    free(uri);
}

static void test_missing_key_is_denied(void **state)
{
    char *uri = key_uri(&S, "kp-a", "nokey");
    struct ck_root_key_info info;
    assert_int_equal(ck_keyprov_get(P, uri, &info), CK_EFORBIDDEN);
    assert_msg_has("denied get on");
    assert_msg_has(uri);
    assert_msg_has("404");
    uint8_t key[32] = {0};
    struct ck_buf w = {0};
    char kid[CK_KEY_URI_MAX];
    assert_int_equal(ck_keyprov_wrap(P, uri, key, 32, &w, kid), CK_EFORBIDDEN);
    assert_msg_has("denied wrapKey on");
    assert_null(w.p);
    free(uri);
}

static void test_removed_permission_is_denied(void **state)
{
    char *uri = key_uri(&S, "kp-a", "root1");
    uint8_t key[32];
    struct ck_buf w = {0};
    char kid[CK_KEY_URI_MAX];
    wrap_random(P, uri, key, &w, kid);

    app_policy("remove", "\"unwrapKey\"");
    struct ck_secret s = {0};
    assert_int_equal(ck_keyprov_unwrap(P, kid, w.p, w.n, &s), CK_EFORBIDDEN);
    assert_null(s.p);
    assert_msg_has("the vault denied unwrapKey on ");
    assert_msg_has(kid);
    assert_msg_has("403");
    assert_msg_has("unwrapKey permission"); /* what the vault said */
    /* wrapKey was not removed */
    struct ck_buf w2 = {0};
    char kid2[CK_KEY_URI_MAX];
    wrap_random(P, uri, key, &w2, kid2);

    /* granted again, it works again: nothing stale in the pooled clients */
    app_policy("add", "\"unwrapKey\"");
    expect_unwrap(P, kid2, &w2, key);
    ck_buf_free(&w);
    ck_buf_free(&w2);
    free(uri);
}

static void test_unreachable_vault_is_transient_and_bounded(void **state)
{
    struct ck_keyprov *p = provider(APP, 500, 1, 2);
    struct ck_root_key_info info;
    double t0 = now_s();
    assert_int_equal(ck_keyprov_get(p, "https://kp-a.vault.localhost:1/keys/root1", &info),
                     CK_EUNAVAIL);
    assert_true(now_s() - t0 < 5.0);
    assert_msg_has("unreachable");
    assert_msg_has("2 attempts");

    /* a free port nobody listens on, with unwrap */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    close(fd);
    char kid[200];
    snprintf(kid, sizeof kid, "https://kp-a.vault.localhost:%u/keys/root1/%s", ntohs(a.sin_port),
             "0123456789abcdef0123456789abcdef");
    uint8_t in[256] = {0};
    struct ck_secret s = {0};
    t0 = now_s();
    assert_int_equal(ck_keyprov_unwrap(p, kid, in, sizeof in, &s), CK_EUNAVAIL);
    assert_true(now_s() - t0 < 5.0);
    assert_msg_has(kid);
    struct ck_keyprov_stats st;
    ck_keyprov_stats(p, &st);
    assert_int_equal(st.retries, 2);
    ck_keyprov_free(p);
}

static void test_disabled_key_is_denied(void **state)
{
    create_key("root2");
    char *uri = key_uri(&S, "kp-a", "root2");
    uint8_t key[32];
    struct ck_buf w = {0};
    char kid[CK_KEY_URI_MAX];
    wrap_random(P, uri, key, &w, kid);
    assert_int_equal(vault_call("PATCH", "/keys/root2/?api-version=7.6",
                                "{\"attributes\":{\"enabled\":false}}", NULL),
                     200);
    struct ck_secret s = {0};
    assert_int_equal(ck_keyprov_unwrap(P, kid, w.p, w.n, &s), CK_EFORBIDDEN);
    assert_msg_has("denied unwrapKey on");
    assert_msg_has("disabled");
    struct ck_root_key_info info;
    assert_int_equal(ck_keyprov_get(P, uri, &info), CK_OK);
    assert_false(info.enabled);
    ck_buf_free(&w);
    free(uri);
}

static void test_bad_token_is_denied(void **state)
{
    char *uri = key_uri(&S, "kp-a", "root1");
    struct ck_keyprov *p = provider("ck_not-a-real-token", 0, 0, 0);
    struct ck_root_key_info info;
    assert_int_equal(ck_keyprov_get(p, uri, &info), CK_EFORBIDDEN);
    assert_msg_has("401");
    /* the token is swapped in the pooled client too */
    ck_keyprov_set_token(p, APP);
    assert_int_equal(ck_keyprov_get(p, uri, &info), CK_OK);
    ck_keyprov_set_token(p, "ck_revoked");
    assert_int_equal(ck_keyprov_get(p, uri, &info), CK_EFORBIDDEN);
    struct ck_keyprov_stats st;
    ck_keyprov_stats(p, &st);
    assert_int_equal(st.created, 1);
    assert_int_equal(st.retries, 0); /* denials are not retried */
    ck_keyprov_free(p);
    free(uri);
}

/* Established TCP connections from this machine to port (client side). */
static int connections_to(unsigned port)
{
    int n = 0;
    const char *files[] = {"/proc/net/tcp", "/proc/net/tcp6"};
    for (size_t f = 0; f < 2; f++) {
        FILE *fp = fopen(files[f], "r");
        if (!fp)
            continue;
        char line[512];
        while (fgets(line, sizeof line, fp)) {
            char local[64], remote[64];
            unsigned st;
            if (sscanf(line, " %*d: %63s %63s %x", local, remote, &st) != 3)
                continue;
            const char *colon = strrchr(remote, ':');
            if (colon && strtoul(colon + 1, NULL, 16) == port && st == 1 /* ESTABLISHED */)
                n++;
        }
        fclose(fp);
    }
    return n;
}

struct worker {
    struct ck_keyprov *p;
    const char *kid;
    const struct ck_buf *w;
    const uint8_t *key;
    int ok;
};

static void *unwrap_worker(void *arg)
{
    struct worker *w = arg;
    for (int i = 0; i < 20; i++) {
        struct ck_secret s = {0};
        if (ck_keyprov_unwrap(w->p, w->kid, w->w->p, w->w->n, &s) == CK_OK && s.n == 32 &&
            memcmp(s.p, w->key, 32) == 0)
            w->ok++;
        else
            fprintf(stderr, "unwrap: %s\n", ck_err_msg());
        ck_secret_free(&s);
    }
    return NULL;
}

static void test_threads_share_one_provider(void **state)
{
    char *uri = key_uri(&S, "kp-a", "root1");
    uint8_t key[32];
    struct ck_buf w = {0};
    char kid[CK_KEY_URI_MAX];
    wrap_random(P, uri, key, &w, kid);

    int before = connections_to(S.port);
    struct ck_keyprov *p = provider(APP, 0, 0, 4);
    pthread_t t[8];
    struct worker wk[8];
    for (int i = 0; i < 8; i++) {
        wk[i] = (struct worker){p, kid, &w, key, 0};
        assert_int_equal(pthread_create(&t[i], NULL, unwrap_worker, &wk[i]), 0);
    }
    for (int i = 0; i < 8; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(wk[i].ok, 20);
    }
    struct ck_keyprov_stats st;
    ck_keyprov_stats(p, &st);
    assert_true(st.kept <= 4);
    assert_true(st.kept_max <= 4);
    assert_true(st.busy_max >= 2); /* the threads did overlap */
    assert_true(st.busy_max <= 8);
    /* Connections: at most pool_size more are open than before. */
    int after = connections_to(S.port);
    if (after - before > 4)
        fail_msg("%d connections kept open (before: %d)", after - before, before);
    ck_keyprov_free(p);
    ck_buf_free(&w);
    free(uri);
}

/* ---------- against a fake vault with scripted answers ---------- */

struct answer {
    unsigned status;
    const char *retry_after; /* header value or NULL */
    const char *body;        /* NULL: a default for the status */
    unsigned delay_ms;
};

static struct fake {
    struct MHD_Daemon *d;
    char *cert;
    struct ck_secret key;
    char cacert[64];
    unsigned port;
    pthread_mutex_t mu;
    struct answer script[8];
    int nscript, next;
    int requests;
    char auth[300]; /* last Authorization header */
} F = {.mu = PTHREAD_MUTEX_INITIALIZER};

static const char UNWRAPPED[] = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8"; /* 0..31 */

static enum MHD_Result on_fake(void *cls, struct MHD_Connection *conn, const char *url,
                               const char *method, const char *version, const char *upload,
                               size_t *upload_size, void **con_cls)
{
    if (!*con_cls) {
        *con_cls = conn;
        return MHD_YES;
    }
    if (*upload_size) {
        *upload_size = 0;
        return MHD_YES;
    }
    pthread_mutex_lock(&F.mu);
    struct answer a = F.next < F.nscript ? F.script[F.next++] : F.script[F.nscript - 1];
    F.requests++;
    const char *auth = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Authorization");
    snprintf(F.auth, sizeof F.auth, "%s", auth ? auth : "");
    pthread_mutex_unlock(&F.mu);
    if (a.delay_ms)
        usleep(a.delay_ms * 1000);
    char body[512];
    if (a.body)
        snprintf(body, sizeof body, "%s", a.body);
    else if (a.status == 200)
        snprintf(body, sizeof body,
                 "{\"kid\":\"https://127.0.0.1:%u/keys/k/0123456789abcdef0123456789abcdef\","
                 "\"value\":\"%s\"}",
                 F.port, UNWRAPPED);
    else
        snprintf(body, sizeof body, "{\"error\":{\"code\":\"Busy\",\"message\":\"fake says %u\"}}",
                 a.status);
    struct MHD_Response *r =
        MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_COPY);
    MHD_add_response_header(r, "Content-Type", "application/json");
    if (a.retry_after)
        MHD_add_response_header(r, "Retry-After", a.retry_after);
    enum MHD_Result ok = MHD_queue_response(conn, a.status, r);
    MHD_destroy_response(r);
    return ok;
}

static void fake_start(void)
{
    const char *dns[] = {"localhost"}, *ips[] = {"127.0.0.1"};
    assert_int_equal(ck_tls_selfsigned(dns, 1, ips, 1, &F.cert, &F.key), CK_OK);
    snprintf(F.cacert, sizeof F.cacert, "/tmp/ckey-kp-ca-XXXXXX");
    int fd = mkstemp(F.cacert);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, F.cert, strlen(F.cert)), (ssize_t)strlen(F.cert));
    close(fd);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    F.d = MHD_start_daemon(
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION | MHD_USE_TLS, 0, NULL,
        NULL, on_fake, NULL, MHD_OPTION_SOCK_ADDR, &a, MHD_OPTION_HTTPS_MEM_CERT, F.cert,
        MHD_OPTION_HTTPS_MEM_KEY, (const char *)F.key.p, MHD_OPTION_END);
    assert_non_null(F.d);
    F.port = MHD_get_daemon_info(F.d, MHD_DAEMON_INFO_BIND_PORT)->port;
}

static void fake_stop(void)
{
    MHD_stop_daemon(F.d);
    unlink(F.cacert);
    free(F.cert);
    ck_secret_free(&F.key);
}

static void script(const struct answer *a, int n)
{
    pthread_mutex_lock(&F.mu);
    memcpy(F.script, a, (size_t)n * sizeof *a);
    F.nscript = n;
    F.next = 0;
    F.requests = 0;
    pthread_mutex_unlock(&F.mu);
}

static struct ck_keyprov *fake_provider(long timeout_ms, int retries)
{
    struct ck_keyprov_config cfg = {
        .token = "fake-token", .cacert = F.cacert, .timeout_ms = timeout_ms, .retries = retries};
    struct ck_keyprov *p = NULL;
    assert_int_equal(ck_keyprov_new(&cfg, &p), CK_OK);
    return p;
}

/* One unwrap against the fake; returns its result, *secs the time taken. */
static ck_err fake_unwrap(struct ck_keyprov *p, double *secs)
{
    char kid[200];
    snprintf(kid, sizeof kid, "https://127.0.0.1:%u/keys/k/0123456789abcdef0123456789abcdef",
             F.port);
    uint8_t in[256] = {1};
    struct ck_secret s = {0};
    double t0 = now_s();
    ck_err rc = ck_keyprov_unwrap(p, kid, in, sizeof in, &s);
    if (secs)
        *secs = now_s() - t0;
    if (rc == CK_OK) {
        assert_int_equal(s.n, 32);
        for (int i = 0; i < 32; i++)
            assert_int_equal(s.p[i], i);
    }
    ck_secret_free(&s);
    return rc;
}

static void test_fake_retries_5xx(void **state)
{
    fake_start();
    struct ck_keyprov *p = fake_provider(2000, 2);
    /* two 503s, then an answer: the caller sees only the answer */
    script((struct answer[]){{503, NULL, NULL, 0}, {502, NULL, NULL, 0}, {200, NULL, NULL, 0}}, 3);
    assert_int_equal(fake_unwrap(p, NULL), CK_OK);
    assert_int_equal(F.requests, 3);
    assert_string_equal(F.auth, "Bearer fake-token");
    struct ck_keyprov_stats st;
    ck_keyprov_stats(p, &st);
    assert_int_equal(st.retries, 2);

    /* 500 every time: transient, after 1 + retries attempts, bounded */
    script((struct answer[]){{500, NULL, NULL, 0}}, 1);
    double secs;
    assert_int_equal(fake_unwrap(p, &secs), CK_EUNAVAIL);
    assert_int_equal(F.requests, 3);
    assert_msg_has("HTTP 500, 3 attempts");
    assert_msg_has("fake says 500");
    assert_true(secs < 2.0); /* backoff: ~0.1 s + ~0.2 s */

    /* denials and bad requests are not retried */
    script((struct answer[]){{403, NULL, NULL, 0}}, 1);
    assert_int_equal(fake_unwrap(p, NULL), CK_EFORBIDDEN);
    assert_int_equal(F.requests, 1);
    assert_msg_has("fake says 403");
    script((struct answer[]){{404, NULL, NULL, 0}}, 1);
    assert_int_equal(fake_unwrap(p, NULL), CK_EFORBIDDEN);
    assert_int_equal(F.requests, 1);
    script((struct answer[]){{400, NULL, NULL, 0}}, 1);
    assert_int_equal(fake_unwrap(p, NULL), CK_EINVAL);
    assert_int_equal(F.requests, 1);

    /* a 200 that is not JSON, or lacks the value, is not a key */
    script((struct answer[]){{200, NULL, "<html>proxy</html>", 0}}, 1);
    assert_int_equal(fake_unwrap(p, NULL), CK_EUNAVAIL);
    script((struct answer[]){{200, NULL, "{\"kid\":\"x\"}", 0}}, 1);
    assert_int_equal(fake_unwrap(p, NULL), CK_EUNAVAIL);
    assert_msg_has("not valid");

    /* a new token reaches the pooled client */
    ck_keyprov_set_token(p, "fake-token-2");
    script((struct answer[]){{200, NULL, NULL, 0}}, 1);
    assert_int_equal(fake_unwrap(p, NULL), CK_OK);
    assert_string_equal(F.auth, "Bearer fake-token-2");
    ck_keyprov_free(p);
}

static void test_fake_retry_after(void **state)
{
    struct ck_keyprov *p = fake_provider(2000, 1);
    /* 429 asking for 1 s: honoured */
    script((struct answer[]){{429, "1", NULL, 0}, {200, NULL, NULL, 0}}, 2);
    double secs;
    assert_int_equal(fake_unwrap(p, &secs), CK_OK);
    assert_int_equal(F.requests, 2);
    assert_true(secs >= 1.0);
    assert_true(secs < 3.0);

    /* asking for two minutes: not waited for, transient at once */
    script((struct answer[]){{429, "120", NULL, 0}, {200, NULL, NULL, 0}}, 2);
    assert_int_equal(fake_unwrap(p, &secs), CK_EUNAVAIL);
    assert_int_equal(F.requests, 1);
    assert_true(secs < 1.0);
    assert_msg_has("retry after 120 s");

    /* 503 with Retry-After is honoured the same way */
    script((struct answer[]){{503, "1", NULL, 0}, {200, NULL, NULL, 0}}, 2);
    assert_int_equal(fake_unwrap(p, &secs), CK_OK);
    assert_true(secs >= 1.0);
    ck_keyprov_free(p);
}

static void test_fake_timeout(void **state)
{
    struct ck_keyprov *p = fake_provider(300, 1);
    script((struct answer[]){{200, NULL, NULL, 1500}}, 1);
    double secs;
    assert_int_equal(fake_unwrap(p, &secs), CK_EUNAVAIL);
    assert_int_equal(F.requests, 2);
    assert_msg_has("2 attempts");
    assert_true(secs < 2.5); /* 2 × 0.3 s + backoff; without the timeout, 2 × 1.5 s */

    /* slow once, then fast: the retry succeeds */
    script((struct answer[]){{200, NULL, NULL, 1500}, {200, NULL, NULL, 0}}, 2);
    assert_int_equal(fake_unwrap(p, NULL), CK_OK);
    ck_keyprov_free(p);
    fake_stop();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_get),
        cmocka_unit_test(test_wrap_unwrap_round_trip),
        cmocka_unit_test(test_rotate_keeps_old_versions),
        cmocka_unit_test(test_missing_key_is_denied),
        cmocka_unit_test(test_removed_permission_is_denied),
        cmocka_unit_test(test_unreachable_vault_is_transient_and_bounded),
        cmocka_unit_test(test_disabled_key_is_denied),
        cmocka_unit_test(test_bad_token_is_denied),
        cmocka_unit_test(test_threads_share_one_provider),
        cmocka_unit_test(test_fake_retries_5xx),
        cmocka_unit_test(test_fake_retry_after),
        cmocka_unit_test(test_fake_timeout),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
