/*
 * harness.c — see harness.h.
 */
#include "harness.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void die(const char *what)
{
    fprintf(stderr, "harness: %s\n", what);
    exit(1);
}

static unsigned free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) != 0)
        die("cannot find a free port");
    unsigned port = ntohs(a.sin_port);
    close(fd);
    return port;
}

static bool read_token(struct srv *s)
{
    char path[320];
    snprintf(path, sizeof path, "%s/operator.token", s->dir);
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    bool ok = fgets(s->token, sizeof s->token, f) != NULL;
    fclose(f);
    s->token[strcspn(s->token, "\r\n")] = '\0';
    return ok && s->token[0];
}

void srv_start(struct srv *s, bool reuse)
{
    srv_start_args(s, reuse, NULL);
}

void srv_kill(struct srv *s)
{
    if (s->pid <= 0)
        return;
    kill(s->pid, SIGKILL);
    waitpid(s->pid, NULL, 0);
    s->pid = 0;
}

void srv_start_args(struct srv *s, bool reuse, const char *extra)
{
    const char *bin = getenv("CK_BIN");
    if (!bin)
        die("CK_BIN is not set");
    if (!reuse) {
        snprintf(s->dir, sizeof s->dir, "/tmp/ckey-it-XXXXXX");
        if (!mkdtemp(s->dir))
            die("mkdtemp");
    }
    if (!reuse || !s->port)
        s->port = free_port();
    snprintf(s->url, sizeof s->url, "https://127.0.0.1:%u", s->port);
    snprintf(s->cacert, sizeof s->cacert, "%s/tls/cert.pem", s->dir);
    char listen[64], log[320];
    snprintf(listen, sizeof listen, "127.0.0.1:%u", s->port);
    snprintf(log, sizeof log, "%s/server.log", s->dir);
    pid_t parent = getpid();
    s->pid = fork();
    if (s->pid == 0) {
        /* The server dies with the test: a test that fails in its set-up
         * must not leave a server holding ctest's output pipe open. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(1);
        FILE *f = freopen(log, "a", stderr);
        (void)f;
        char *argv[64] = {(char *)bin, "server", "--dev",     "--data-dir", s->dir,
                          "--listen",  listen,   "--threads", "4"};
        int argc = 9;
        char *copy = extra ? strdup(extra) : NULL, *save = NULL;
        for (char *w = copy ? strtok_r(copy, " ", &save) : NULL; w && argc < 63;
             w = strtok_r(NULL, " ", &save))
            argv[argc++] = w;
        argv[argc] = NULL;
        execv(bin, argv);
        _exit(127);
    }
    for (int i = 0; i < 300; i++) {
        struct http_result r;
        usleep(100 * 1000);
        if (!read_token(s))
            continue;
        http(s, "GET", "/healthz", NULL, NULL, 0, NULL, &r);
        long st = r.status;
        http_free(&r);
        if (st == 200)
            return;
        int status;
        if (waitpid(s->pid, &status, WNOHANG) == s->pid)
            break;
    }
    char *out = NULL;
    sh(&out, "cat %s", log);
    fprintf(stderr, "%s\n", out ? out : "");
    die("the server did not come up");
}

int srv_stop(struct srv *s)
{
    int status = 0;
    if (s->pid <= 0)
        return 0;
    kill(s->pid, SIGTERM);
    waitpid(s->pid, &status, 0);
    s->pid = 0;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

void srv_cleanup(struct srv *s)
{
    char *out = NULL;
    if (getenv("CKEY_TEST_KEEP")) {
        fprintf(stderr, "harness: kept %s\n", s->dir);
        return;
    }
    if (s->dir[0] && strncmp(s->dir, "/tmp/ckey-it-", 13) == 0)
        sh(&out, "rm -rf '%s'", s->dir);
    free(out);
}

static size_t collect(char *p, size_t size, size_t n, void *ud)
{
    FILE *f = ud;
    return fwrite(p, size, n, f);
}

void http(const struct srv *s, const char *method, const char *url_or_path, const char *token,
          const char *body, size_t body_len, const char *extra_header, struct http_result *r)
{
    memset(r, 0, sizeof *r);
    CURL *h = curl_easy_init();
    char url[2048], auth[400];
    if (strncmp(url_or_path, "https://", 8) == 0)
        snprintf(url, sizeof url, "%s", url_or_path);
    else
        snprintf(url, sizeof url, "%s%s", s->url, url_or_path);
    size_t hlen = 0;
    FILE *bf = open_memstream(&r->body, &r->body_len);
    FILE *hf = open_memstream(&r->headers, &hlen);
    struct curl_slist *hdr = NULL;
    hdr = curl_slist_append(hdr, "Content-Type: application/json");
    if (!extra_header || strncasecmp(extra_header, "Expect", 6) != 0)
        hdr = curl_slist_append(hdr, "Expect:");
    if (token) {
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", token);
        hdr = curl_slist_append(hdr, auth);
    }
    if (extra_header)
        hdr = curl_slist_append(hdr, extra_header);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdr);
    curl_easy_setopt(h, CURLOPT_CAINFO, s->cacert);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, bf);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, collect);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, hf);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, 30L);
    curl_easy_setopt(h, CURLOPT_PATH_AS_IS, 1L);
    if (body) {
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
    }
    CURLcode cc = curl_easy_perform(h);
    if (cc == CURLE_OK)
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &r->status);
    curl_slist_free_all(hdr);
    curl_easy_cleanup(h);
    fclose(bf);
    fclose(hf);
    if (r->body_len)
        r->json = json_loadb(r->body, r->body_len, 0, NULL);
}

void http_free(struct http_result *r)
{
    free(r->body);
    free(r->headers);
    json_decref(r->json);
    memset(r, 0, sizeof *r);
}

char *http_header(const struct http_result *r, const char *name)
{
    size_t n = strlen(name);
    for (const char *line = r->headers; line && *line;) {
        const char *end = strstr(line, "\r\n");
        if (!end)
            break;
        if (strncasecmp(line, name, n) == 0 && line[n] == ':') {
            const char *v = line + n + 1;
            while (*v == ' ')
                v++;
            return strndup(v, (size_t)(end - v));
        }
        line = end + 2;
    }
    return NULL;
}

static int run_capture(char **out, const char *cmd)
{
    FILE *p = popen(cmd, "r");
    if (!p)
        die("popen");
    size_t len = 0;
    char *discard = NULL;
    if (!out)
        out = &discard;
    FILE *o = open_memstream(out, &len);
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, p)) > 0)
        fwrite(buf, 1, n, o);
    fclose(o);
    free(discard);
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

int sh(char **out, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *cmd = NULL;
    if (vasprintf(&cmd, fmt, ap) < 0)
        die("vasprintf");
    va_end(ap);
    char *full = NULL;
    if (asprintf(&full, "%s 2>&1", cmd) < 0)
        die("asprintf");
    int st = run_capture(out, full);
    free(cmd);
    free(full);
    return st;
}

int cli(const struct srv *s, const char *token, char **out, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *args = NULL;
    if (vasprintf(&args, fmt, ap) < 0)
        die("vasprintf");
    va_end(ap);
    char *cmd = NULL;
    if (asprintf(&cmd, "env -u CKEY_DATA_DIR CKEY_URL=%s CKEY_CACERT=%s CKEY_TOKEN=%s %s %s 2>&1",
                 s->url, s->cacert, token ? token : s->token, getenv("CK_BIN"), args) < 0)
        die("asprintf");
    int st = run_capture(out, cmd);
    free(args);
    free(cmd);
    return st;
}

json_t *cli_json_as(const struct srv *s, const char *token, char **out, int expect, const char *fmt,
                    ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *args = NULL;
    if (vasprintf(&args, fmt, ap) < 0)
        die("vasprintf");
    va_end(ap);
    char *o = NULL;
    int st = cli(s, token, &o, "-o json %s", args);
    if (st != expect) {
        fprintf(stderr, "harness: ckey %s: exit %d, expected %d:\n%s\n", args, st, expect,
                o ? o : "");
        exit(1);
    }
    /* Progress lines of --wait (stderr, captured too) come first. */
    const char *p = o ? o : "";
    while (strncmp(p, "ckey: ", 6) == 0 && strchr(p, '\n'))
        p = strchr(p, '\n') + 1;
    json_t *j = json_loads(p, JSON_DISABLE_EOF_CHECK, NULL);
    if (out)
        *out = o;
    else
        free(o);
    free(args);
    return j;
}

void whoami(const struct srv *s, const char *token, char *object_id, char *tenant_id)
{
    struct http_result r;
    http(s, "GET", "/whoami", token, NULL, 0, NULL, &r);
    if (r.status != 200)
        die("whoami failed");
    snprintf(object_id, 37, "%s", json_string_value(json_object_get(r.json, "objectId")));
    snprintf(tenant_id, 37, "%s", json_string_value(json_object_get(r.json, "tenantId")));
    http_free(&r);
}

char *vault_url(const struct srv *s, const char *vault, const char *path)
{
    char *u = NULL;
    if (asprintf(&u, "https://%s.vault.localhost:%u%s", vault, s->port, path) < 0)
        die("asprintf");
    return u;
}

char *key_uri(const struct srv *s, const char *vault, const char *name)
{
    char path[200];
    snprintf(path, sizeof path, "/keys/%s", name);
    return vault_url(s, vault, path);
}

char *token_for(const struct srv *s, const char *principal, const char *ttl, char *id)
{
    char *out = NULL;
    if (cli(s, NULL, &out, "-o json token issue --principal '%s' --ttl %s", principal, ttl) != 0) {
        fprintf(stderr, "%s\n", out ? out : "");
        die("token issue failed");
    }
    json_t *j = json_loads(out, 0, NULL);
    const char *tok = json_string_value(json_object_get(j, "token"));
    if (!tok)
        die("no token in the answer");
    char *copy = strdup(tok);
    if (id)
        snprintf(id, 37, "%s", json_string_value(json_object_get(j, "id")));
    json_decref(j);
    free(out);
    return copy;
}

void provision_vault(const struct srv *s, const char *upn, const char *sub, const char *name,
                     const char *location, bool purge_protection, char *token)
{
    char *out = NULL, body[1024], path[512];
    struct http_result r;
    cli(s, NULL, &out, "principal add --upn %s", upn); /* may exist already */
    free(out);
    char *tok = token_for(s, upn, "2h", NULL);
    snprintf(token, 256, "%s", tok);
    free(tok);
    snprintf(body, sizeof body, "{\"owners\":[\"%s\"]}", upn);
    snprintf(path, sizeof path, "/admin/subscriptions/%s", sub);
    http(s, "PUT", path, s->token, body, strlen(body), NULL, &r); /* may exist already */
    http_free(&r);
    char oid[37], tid[37];
    whoami(s, token, oid, tid);
    snprintf(body, sizeof body,
             "{\"location\":\"%s\",\"properties\":{\"tenantId\":\"%s\",\"sku\":{\"family\":"
             "\"A\",\"name\":\"standard\"},\"enablePurgeProtection\":%s,\"accessPolicies\":[{"
             "\"tenantId\":\"%s\",\"objectId\":\"%s\",\"permissions\":{\"keys\":[\"all\"]}}]}}",
             location, tid, purge_protection ? "true" : "false", tid, oid);
    snprintf(path, sizeof path,
             "/subscriptions/%s/resourceGroups/rg1/providers/Microsoft.KeyVault/vaults/%s"
             "?api-version=2023-02-01",
             sub, name);
    http(s, "PUT", path, token, body, strlen(body), NULL, &r);
    if (r.status != 200 && r.status != 201) {
        fprintf(stderr, "vault PUT: %ld %s\n", r.status, r.body ? r.body : "");
        die("cannot create the vault");
    }
    http_free(&r);
}

void vault_policy(const struct srv *s, const char *token, const char *vault, const char *op,
                  const char *object_id, const char *perms)
{
    char path[300], body[800], me[37], tid[37];
    whoami(s, token, me, tid);
    snprintf(path, sizeof path,
             "/subscriptions/sub1/resourceGroups/rg1/providers/Microsoft.KeyVault/vaults/%s/"
             "accessPolicies/%s?api-version=2023-02-01",
             vault, op);
    snprintf(body, sizeof body,
             "{\"properties\":{\"accessPolicies\":[{\"tenantId\":\"%s\",\"objectId\":\"%s\","
             "\"permissions\":{\"keys\":[%s]}}]}}",
             tid, object_id, perms);
    struct http_result r;
    http(s, "PUT", path, token, body, strlen(body), NULL, &r);
    if (r.status != 200) {
        fprintf(stderr, "policy %s on %s: %ld %s\n", op, vault, r.status, r.body ? r.body : "");
        die("cannot edit the access policy");
    }
    http_free(&r);
}

void vault_key(const struct srv *s, const char *token, const char *vault, const char *name,
               const char *body)
{
    char path[200];
    snprintf(path, sizeof path, "/keys/%s/create?api-version=7.6", name);
    char *u = vault_url(s, vault, path);
    struct http_result r;
    http(s, "POST", u, token, body, strlen(body), NULL, &r);
    if (r.status != 200) {
        fprintf(stderr, "create key %s/%s: %ld %s\n", vault, name, r.status, r.body ? r.body : "");
        die("cannot create the key");
    }
    http_free(&r);
    free(u);
}
