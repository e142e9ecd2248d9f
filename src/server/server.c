/*
 * server.c — start-up, wiring and shutdown of `ckey server`.
 *
 * Signals are blocked before any thread starts, so every thread inherits the
 * mask and only the main thread, in sigwait(), ever sees SIGTERM/SIGINT;
 * shutdown then runs as ordinary code rather than in a signal handler.
 */
#include "server/server.h"

#include "api/api.h"
#include "audit/audit.h"
#include "auth/auth.h"
#include "crypto/crypto.h"
#include "http/http.h"
#include "store/store.h"
#include "vault/vault.h"
#include "dep/dep.h"
#include "jobs/jobs.h"
#include "keyprov/keyprov.h"
#include "mail/mail.h"
#include "files/files.h"
#include "purge/purge.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define OPERATOR_TOKEN_TTL (90 * 86400)
/* Service principals get a new token at every start. */
#define SERVICE_TOKEN_TTL (30 * 86400)

struct server {
    struct ck_store *store;
    struct ck_audit *audit;
    struct ck_vaults *vaults;
    struct ck_secret master;
    /* Service role. */
    struct ck_store *avail_store;
    struct ck_secret avail_master;
    struct ck_keyprov *keyprov;
    struct ck_deps *deps;
    struct ck_jobs *jobs;
    struct ck_mail *mail;
    struct ck_keyprov *files_keyprov;
    struct ck_files *files;
    struct ck_purges *purges;
    char *cert_pem;
    struct ck_secret key_pem;
    struct ck_router *router;
    struct ck_api api;
    char *challenge;
    struct ck_http_server *http;
    /* Housekeeping thread: vault purges and rotations. */
    pthread_t housekeeper;
    bool housekeeper_running;
    pthread_mutex_t hk_lock;
    pthread_cond_t hk_wake;
    bool stopping;
    unsigned hk_interval;
};

/* ---------- files ---------- */

static ck_err read_file(const char *path, size_t max, struct ck_secret *out)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return ck_err_set(CK_EIO, "cannot open %s: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || (size_t)sb.st_size > max) {
        close(fd);
        return ck_err_set(CK_EINVAL, "%s is larger than %zu bytes", path, max);
    }
    ck_err rc = ck_secret_alloc(out, (size_t)sb.st_size + 1);
    size_t got = 0;
    while (rc == CK_OK && got < (size_t)sb.st_size) {
        ssize_t r = read(fd, out->p + got, (size_t)sb.st_size - got);
        if (r <= 0) {
            rc = ck_err_set(CK_EIO, "cannot read %s", path);
            break;
        }
        got += (size_t)r;
    }
    close(fd);
    if (rc != CK_OK) {
        ck_secret_free(out);
        return rc;
    }
    out->p[got] = '\0'; /* PEM users want a C string; n excludes the NUL */
    out->n = got;
    return CK_OK;
}

/* Writes atomically (temp file + rename) with the given mode. */
static ck_err write_file(const char *path, const void *p, size_t n, mode_t mode)
{
    char *tmp = ck_sprintf("%s.tmp.%d", path, (int)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (fd < 0) {
        ck_err rc = ck_err_set(CK_EIO, "cannot create %s: %s", tmp, strerror(errno));
        free(tmp);
        return rc;
    }
    const uint8_t *b = p;
    size_t done = 0;
    while (done < n) {
        ssize_t w = write(fd, b + done, n - done);
        if (w <= 0)
            break;
        done += (size_t)w;
    }
    bool ok = done == n && fchmod(fd, mode) == 0 && fsync(fd) == 0;
    ok = close(fd) == 0 && ok;
    ok = ok && rename(tmp, path) == 0;
    if (!ok)
        unlink(tmp);
    free(tmp);
    return ok ? CK_OK : ck_err_set(CK_EIO, "cannot write %s: %s", path, strerror(errno));
}

static bool exists(const char *path)
{
    return access(path, F_OK) == 0;
}

static ck_err ensure_dir(const char *path, mode_t mode)
{
    if (mkdir(path, mode) != 0 && errno != EEXIST)
        return ck_err_set(CK_EIO, "cannot create directory %s: %s", path, strerror(errno));
    return CK_OK;
}

/* ---------- development set-up ---------- */

static ck_err dev_tls(const char *dir, char **cert_path, char **key_path)
{
    char *tls = ck_sprintf("%s/tls", dir);
    ck_err rc = ensure_dir(tls, 0700);
    *cert_path = ck_sprintf("%s/cert.pem", tls);
    *key_path = ck_sprintf("%s/key.pem", tls);
    free(tls);
    if (rc != CK_OK || (exists(*cert_path) && exists(*key_path)))
        return rc;
    static const char *const dns[] = {"localhost", "*.vault.localhost"};
    static const char *const ips[] = {"127.0.0.1", "::1"};
    char *cert = NULL;
    struct ck_secret key = {0};
    CK_TRY(ck_tls_selfsigned(dns, 2, ips, 2, &cert, &key));
    rc = write_file(*key_path, key.p, key.n, 0600);
    if (rc == CK_OK)
        rc = write_file(*cert_path, cert, strlen(cert), 0644);
    free(cert);
    ck_secret_free(&key);
    if (rc == CK_OK)
        ck_log(CK_LOG_INFO, "created a self-signed TLS certificate", "path", *cert_path, NULL);
    return rc;
}

static ck_err dev_master_key(const char *dir, char **path)
{
    *path = ck_sprintf("%s/master.key", dir);
    if (exists(*path))
        return CK_OK;
    struct ck_secret k = {0};
    CK_TRY(ck_secret_alloc(&k, 32));
    ck_err rc = ck_rand_bytes(k.p, 32);
    if (rc == CK_OK)
        rc = write_file(*path, k.p, 32, 0600);
    ck_secret_free(&k);
    if (rc == CK_OK)
        ck_log(CK_LOG_INFO, "created a master key", "path", *path, NULL);
    return rc;
}

/* The operator principal exists and DIR/operator.token holds a live token. */
static ck_err dev_operator(struct server *sv, const char *dir)
{
    struct ck_principal *op = NULL;
    ck_err rc = ck_principal_find(sv->store, "operator", &op);
    if (rc == CK_ENOTFOUND)
        rc = ck_principal_add_user(sv->store, "operator", NULL, CK_ROLE_OPERATOR, &op);
    CK_TRY(rc);
    char *path = ck_sprintf("%s/operator.token", dir);
    bool valid = false;
    if (exists(path)) {
        struct ck_secret cur = {0};
        if (read_file(path, 4096, &cur) == CK_OK) {
            while (cur.n && (cur.p[cur.n - 1] == '\n' || cur.p[cur.n - 1] == '\r'))
                cur.p[--cur.n] = '\0';
            rc = ck_token_valid(sv->store, (const char *)cur.p, &valid);
            ck_secret_free(&cur);
        }
    }
    if (rc == CK_OK && !valid) {
        char *token = NULL;
        rc = ck_token_issue(sv->store, op->object_id, OPERATOR_TOKEN_TTL, &token, NULL);
        if (rc == CK_OK) {
            char *line = ck_sprintf("%s\n", token);
            rc = write_file(path, line, strlen(line), 0600);
            ck_wipe(line, strlen(line));
            ck_wipe(token, strlen(token));
            free(line);
            free(token);
            if (rc == CK_OK)
                ck_log(CK_LOG_INFO, "issued the operator token", "path", path, NULL);
        }
    }
    free(path);
    ck_principal_free(op);
    return rc;
}

/* ---------- housekeeping ---------- */

/* Purges soft-deleted keys past their retention and carries out rotation
 * policies, every hk_interval seconds until the server stops. */
static void *housekeeping(void *arg)
{
    struct server *sv = arg;
    pthread_mutex_lock(&sv->hk_lock);
    while (!sv->stopping) {
        pthread_mutex_unlock(&sv->hk_lock);
        size_t purged = 0, rotated = 0;
        if (ck_vault_housekeeping(sv->vaults, ck_now(), &purged, &rotated) != CK_OK)
            ck_log(CK_LOG_ERROR, "vault housekeeping failed", "detail", ck_err_msg(), NULL);
        pthread_mutex_lock(&sv->hk_lock);
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += sv->hk_interval;
        while (!sv->stopping && pthread_cond_timedwait(&sv->hk_wake, &sv->hk_lock, &until) == 0)
            ;
    }
    pthread_mutex_unlock(&sv->hk_lock);
    return NULL;
}

static void housekeeping_stop(struct server *sv)
{
    if (!sv->housekeeper_running)
        return;
    pthread_mutex_lock(&sv->hk_lock);
    sv->stopping = true;
    pthread_cond_signal(&sv->hk_wake);
    pthread_mutex_unlock(&sv->hk_lock);
    pthread_join(sv->housekeeper, NULL);
    sv->housekeeper_running = false;
}

/* ---------- wiring ---------- */

static void server_free(struct server *sv)
{
    ck_jobs_close(sv->jobs); /* stops the workers first */
    ck_purges_close(sv->purges);
    ck_files_close(sv->files);
    ck_keyprov_free(sv->files_keyprov);
    ck_mail_close(sv->mail);
    ck_deps_close(sv->deps);
    ck_keyprov_free(sv->keyprov);
    ck_store_close(sv->avail_store);
    ck_secret_free(&sv->avail_master);
    ck_router_free(sv->router);
    ck_vaults_close(sv->vaults);
    ck_audit_close(sv->audit);
    ck_store_close(sv->store);
    ck_secret_free(&sv->master);
    ck_secret_free(&sv->key_pem);
    free(sv->cert_pem);
    free(sv->challenge);
}

/* A 32-byte key file that only its owner may read. */
static ck_err read_secret_key(const char *path, struct ck_secret *out)
{
    struct stat sb;
    if (stat(path, &sb) == 0 && (sb.st_mode & 077))
        return ck_err_set(
            CK_EINVAL, "the key file %s must not be readable by group or others (chmod 600)", path);
    CK_TRY(read_file(path, 64, out));
    if (out->n != 32)
        return ck_err_set(CK_EINVAL, "the key file %s must hold exactly 32 bytes", path);
    return CK_OK;
}

/* The service principals of DESIGN §1, with fixed application ids so that
 * customers can name them in access policies before the service exists. */
static const struct {
    const char *name, *app_id;
} service_principals[] = {
    {"ckey Mail Service", CK_MAIL_SERVICE_APP_ID},
    {"ckey Files Service", CK_FILES_SERVICE_APP_ID},
};

/* Makes sure the service principal exists and returns a fresh token for it
 * (kept in memory only); its older tokens are revoked. */
static ck_err service_token(struct server *sv, const char *name, const char *app_id, char **token)
{
    struct ck_principal *p = NULL;
    ck_err rc = ck_principal_find(sv->store, app_id, &p);
    if (rc == CK_ENOTFOUND)
        rc = ck_principal_add_app(sv->store, name, app_id, NULL, 0, &p);
    CK_TRY(rc);
    struct ck_token_info *old = NULL;
    size_t n = 0;
    rc = ck_token_list(sv->store, p->object_id, &old, &n);
    for (size_t i = 0; rc == CK_OK && i < n; i++)
        if (!old[i].revoked)
            rc = ck_token_revoke(sv->store, old[i].id);
    free(old);
    if (rc == CK_OK)
        rc = ck_token_issue(sv->store, p->object_id, SERVICE_TOKEN_TTL, token, NULL);
    ck_principal_free(p);
    return rc;
}

/* The availability store and its master key: apart from everything else. */
static ck_err open_availability(struct server *sv, const struct ck_server_options *o)
{
    char *store = NULL, *keyfile = NULL;
    ck_err rc = CK_OK;
    if (o->dev) {
        store = ck_sprintf("sqlite:%s/availability.db", o->data_dir);
        keyfile = ck_sprintf("%s/availability.key", o->data_dir);
        if (!exists(keyfile)) {
            struct ck_secret k = {0};
            rc = ck_secret_alloc(&k, 32);
            if (rc == CK_OK)
                rc = ck_rand_bytes(k.p, 32);
            if (rc == CK_OK)
                rc = write_file(keyfile, k.p, 32, 0600);
            ck_secret_free(&k);
        }
    } else if (!o->availability_store || !o->availability_key_file) {
        rc = ck_err_set(CK_EINVAL, "the service role needs --availability-store and "
                                   "--availability-key-file (without --dev)");
    } else {
        store = ck_strdup(o->availability_store);
        keyfile = ck_strdup(o->availability_key_file);
    }
    if (rc == CK_OK)
        rc = read_secret_key(keyfile, &sv->avail_master);
    if (rc == CK_OK)
        rc = ck_store_open(store, &sv->avail_store);
    free(store);
    free(keyfile);
    return rc;
}

/* Replaces *token (wiped) with the one in path. */
static ck_err token_from_file(const char *path, char **token)
{
    struct ck_secret t = {0};
    CK_TRY(read_file(path, 4096, &t));
    while (t.n && (t.p[t.n - 1] == '\n' || t.p[t.n - 1] == '\r'))
        t.p[--t.n] = '\0';
    if (*token) {
        ck_wipe(*token, strlen(*token));
        free(*token);
    }
    *token = ck_strdup((const char *)t.p);
    ck_secret_free(&t);
    return CK_OK;
}

/* A key provider calling vaults with token, which it consumes: the token is
 * wiped and freed whatever happens (out NULL: only that). */
static ck_err make_keyprov(char *token, const char *cacert, struct ck_keyprov **out)
{
    ck_err rc = CK_OK;
    if (out) {
        struct ck_keyprov_config kc = {.token = token, .cacert = cacert};
        rc = ck_keyprov_new(&kc, out);
    }
    if (token) {
        ck_wipe(token, strlen(token));
        free(token);
    }
    return rc;
}

static ck_err setup_service(struct server *sv, const struct ck_server_options *o,
                            const char *cacert)
{
    char *mail_token = NULL;
    CK_TRY(open_availability(sv, o));
    char *files_token = NULL;
    ck_err trc =
        service_token(sv, service_principals[0].name, service_principals[0].app_id, &mail_token);
    if (trc == CK_OK)
        trc = service_token(sv, service_principals[1].name, service_principals[1].app_id,
                            &files_token);
    /* Vaults elsewhere know the services by the tokens they issued. */
    if (o->vault_token_file && trc == CK_OK)
        trc = token_from_file(o->vault_token_file, &mail_token);
    if (o->files_vault_token_file && trc == CK_OK)
        trc = token_from_file(o->files_vault_token_file, &files_token);
    if (trc != CK_OK) {
        make_keyprov(mail_token, NULL, NULL);
        make_keyprov(files_token, NULL, NULL);
        return trc;
    }
    const char *ca = o->vault_cacert ? o->vault_cacert : cacert;
    ck_err rc = make_keyprov(mail_token, ca, &sv->keyprov);
    if (rc == CK_OK)
        rc = make_keyprov(files_token, ca, &sv->files_keyprov);
    else
        make_keyprov(files_token, NULL, NULL);
    CK_TRY(rc);
    struct ck_deps_config dc = {
        .store = sv->store,
        .availability_store = sv->avail_store,
        .master_key = &sv->master,
        .availability_master_key = &sv->avail_master,
        .keyprov = sv->keyprov,
        .audit = sv->audit,
        .cache_ttl = o->key_cache_ttl,
    };
    CK_TRY(ck_deps_open(&dc, &sv->deps));
    CK_TRY(ck_jobs_open(sv->store, &sv->jobs));
    CK_TRY(ck_mail_open(sv->store, sv->deps, sv->jobs, &sv->mail));
    struct ck_files_config fc = {
        .store = sv->store,
        .availability_store = sv->avail_store,
        .master_key = &sv->master,
        .availability_master_key = &sv->avail_master,
        .keyprov = sv->files_keyprov,
        .jobs = sv->jobs,
        .audit = sv->audit,
        .tik_cache_ttl = o->tik_cache_ttl,
        .tik_refresh_ahead = o->tik_refresh_ahead,
    };
    CK_TRY(ck_files_open(&fc, &sv->files));
    struct ck_purge_config pc = {
        .store = sv->store,
        .availability_store = sv->avail_store,
        .master_key = &sv->master,
        .deps = sv->deps,
        .mail = sv->mail,
        .files = sv->files,
        .jobs = sv->jobs,
        .audit = sv->audit,
    };
    CK_TRY(ck_purges_open(&pc, &sv->purges));
    sv->api.purges = sv->purges;
    sv->api.files = sv->files;
    sv->api.deps = sv->deps;
    sv->api.mail = sv->mail;
    sv->api.jobs = sv->jobs;
    return CK_OK;
}

static ck_err setup(struct server *sv, const struct ck_server_options *o)
{
    char *cert = NULL, *key = NULL, *master = NULL, *store = NULL;
    ck_err rc = CK_OK;
    if (o->dev) {
        if (!o->data_dir)
            return ck_err_set(CK_EINVAL, "--dev needs --data-dir DIR");
        CK_GUARD(ensure_dir(o->data_dir, 0700));
        CK_GUARD(dev_tls(o->data_dir, &cert, &key));
        CK_GUARD(dev_master_key(o->data_dir, &master));
        store = ck_sprintf("sqlite:%s/ckey.db", o->data_dir);
    } else {
        if (!o->tls_cert || !o->tls_key || !o->master_key_file || !o->store) {
            rc = ck_err_set(CK_EINVAL, "without --dev, give --tls-cert, --tls-key, "
                                       "--master-key-file and --store");
            goto out;
        }
        cert = ck_strdup(o->tls_cert);
        key = ck_strdup(o->tls_key);
        master = ck_strdup(o->master_key_file);
        store = ck_strdup(o->store);
    }
    struct ck_secret cert_pem = {0};
    CK_GUARD(read_file(cert, 1 << 20, &cert_pem));
    sv->cert_pem = ck_strdup((const char *)cert_pem.p);
    ck_secret_free(&cert_pem);
    CK_GUARD(read_file(key, 1 << 20, &sv->key_pem));
    CK_GUARD(read_secret_key(master, &sv->master));
    CK_GUARD(ck_store_open(store, &sv->store));
    CK_GUARD(ck_auth_migrate(sv->store));
    CK_GUARD(ck_audit_open(sv->store, &sv->master, &sv->audit));
    CK_GUARD(ck_auth_home_tenant(sv->store, sv->api.home_tenant));
    bool vault_role = strcmp(o->role ? o->role : "all", "service") != 0;
    if (vault_role)
        CK_GUARD(ck_vaults_open(sv->store, &sv->master, &sv->vaults));
    if (o->dev)
        CK_GUARD(dev_operator(sv, o->data_dir));
    if (strcmp(o->role ? o->role : "all", "vault") != 0)
        CK_GUARD(setup_service(sv, o, cert));
    sv->api.store = sv->store;
    sv->api.audit = sv->audit;
    sv->api.vaults = sv->vaults;
    sv->api.vault_suffix = o->vault_suffix ? o->vault_suffix : "vault.localhost";
    sv->api.default_vault = o->default_vault;
    sv->challenge = ck_api_challenge(&sv->api);
    sv->router = ck_router_new();
    ck_api_register_admin(sv->router, &sv->api);
    if (sv->vaults) {
        ck_api_register_vaults(sv->router, &sv->api);
        ck_api_register_keys(sv->router, &sv->api);
    }
    if (sv->mail) {
        ck_api_register_tenants(sv->router, &sv->api);
        ck_api_register_deps(sv->router, &sv->api);
        ck_api_register_mail(sv->router, &sv->api);
        ck_api_register_files(sv->router, &sv->api);
        ck_api_register_purge(sv->router, &sv->api);
    }
out:
    free(cert);
    free(key);
    free(master);
    free(store);
    return rc;
}

int ck_server_main(const struct ck_server_options *o)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    ck_json_wipe_on_free();

    struct server sv = {0};
    ck_err rc = setup(&sv, o);
    if (rc == CK_OK) {
        struct ck_http_config cfg = {
            .listen = o->listen ? o->listen : "127.0.0.1:8443",
            .cert_pem = sv.cert_pem,
            .key_pem = (const char *)sv.key_pem.p,
            .threads = o->threads,
            /* The service role calls the vault role of this same process. */
            .thread_per_connection = sv.vaults && sv.mail,
            .auth = {.authenticate = ck_api_authenticate,
                     .principal_free = ck_api_principal_free,
                     .ctx = &sv.api,
                     .challenge = sv.challenge},
            .router = sv.router,
        };
        rc = ck_http_start(&cfg, &sv.http);
    }
    if (rc != CK_OK) {
        fprintf(stderr, "ckey server: %s\n", ck_err_msg());
        server_free(&sv);
        return 1;
    }
    char port[8];
    snprintf(port, sizeof port, "%u", ck_http_port(sv.http));
    if (sv.jobs)
        ck_jobs_set_throttle(sv.jobs, o->job_throttle_ms);
    if (sv.jobs && ck_jobs_start(sv.jobs, o->job_workers ? o->job_workers : 2,
                                 o->job_lease ? o->job_lease : 10) != CK_OK)
        ck_log(CK_LOG_ERROR, "cannot start the job workers", "detail", ck_err_msg(), NULL);
    if (sv.vaults) {
        pthread_mutex_init(&sv.hk_lock, NULL);
        pthread_cond_init(&sv.hk_wake, NULL);
        sv.hk_interval = o->housekeeping_interval ? o->housekeeping_interval : 60;
        sv.housekeeper_running = pthread_create(&sv.housekeeper, NULL, housekeeping, &sv) == 0;
    }
    if (sv.purges) {
        /* Anyone may check a purge certificate against this key: print it. */
        char *pem = NULL, fpr[CK_PURGE_FPR_LEN];
        if (ck_purge_signing_key(sv.purges, &pem, fpr) == CK_OK)
            ck_log(CK_LOG_INFO, "purge certificate signing key (Ed25519)", "fingerprint", fpr,
                   "public_key", pem, "url", "/purge/signing-key", NULL);
        free(pem);
    }
    ck_log(CK_LOG_INFO, "listening", "listen", o->listen ? o->listen : "127.0.0.1:8443", "port",
           port, "data_dir", o->data_dir ? o->data_dir : "-", NULL);

    int sig = 0;
    sigwait(&set, &sig);
    ck_log(CK_LOG_INFO, "shutting down", "signal", sig == SIGTERM ? "SIGTERM" : "SIGINT", NULL);
    ck_http_stop(sv.http, 10000);
    housekeeping_stop(&sv);
    server_free(&sv);
    ck_log(CK_LOG_INFO, "stopped", NULL);
    return 0;
}
