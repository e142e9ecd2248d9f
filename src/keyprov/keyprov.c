/*
 * keyprov.c — the Azure Key Vault REST provider: key URIs, a pool of
 * keep-alive HTTPS clients, retries on transient failures, and the three
 * calls the service makes on a root key (get, wrapkey, unwrapkey).
 *
 * Every error a provider call returns is already classified (CK_EUNAVAIL,
 * CK_EFORBIDDEN or CK_EINVAL) and its message names the operation, the key
 * and what the vault said: that message ends up in the service's audit log
 * and in front of the tenant admin who has to act on it.
 *
 * The pool is a stack of idle clients under one mutex. A call takes one
 * (preferring one that last talked to the same vault, whose TLS connection
 * is still open), uses it without the lock, and puts it back; clients
 * beyond pool_size are freed instead, so at most pool_size keep-alive
 * connections stay open (each client keeps one).
 */
#include "keyprov/keyprov.h"

#include "client/client.h"

#include <assert.h>
#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#define API_VERSION "7.6"
#define WRAP_ALG "RSA-OAEP-256"
/* Backoff between attempts: BASE·2^attempt, capped, with half of it random. */
#define BACKOFF_BASE_MS 100
#define BACKOFF_MAX_MS 2000
/* A Retry-After longer than this is not waited for: the caller (and its
 * user) is better served by failing now, e.g. over to the other root key. */
#define RETRY_AFTER_MAX_S 5
#define WRAP_MAX_IN 512 /* above any RSA-4096 OAEP-256 input */

/* ---------- key URIs ---------- */

static ck_err bad_uri(const char *uri, const char *why)
{
    return ck_err_set(CK_EINVAL,
                      "'%.100s%s' is not a key URI (https://HOST[:PORT]/keys/NAME[/VERSION]): %s",
                      uri, strlen(uri) > 100 ? "..." : "", why);
}

static bool name_ok(const char *s, size_t n)
{
    if (n == 0 || n > 127)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && s[i] != '-')
            return false;
    return true;
}

static bool version_ok(const char *s, size_t n)
{
    if (n == 0 || n > 32)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]))
            return false;
    return true;
}

/* DNS labels of letters, digits and '-', or an IPv4 literal (same shape). */
static bool host_ok(const char *s, size_t n)
{
    if (n == 0 || n > 253)
        return false;
    size_t label = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '.') {
            if (label == 0)
                return false;
            label = 0;
        } else if (isalnum((unsigned char)s[i]) || s[i] == '-') {
            if (++label > 63)
                return false;
        } else {
            return false;
        }
    }
    return label > 0;
}

static bool ipv6_ok(const char *s, size_t n)
{
    if (n < 4 || n > 47 || s[0] != '[' || s[n - 1] != ']')
        return false;
    for (size_t i = 1; i + 1 < n; i++)
        if (!isxdigit((unsigned char)s[i]) && s[i] != ':' && s[i] != '.')
            return false;
    return true;
}

static bool is_ipv4(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isdigit((unsigned char)s[i]) && s[i] != '.')
            return false;
    return true;
}

ck_err ck_key_uri_parse(const char *uri, struct ck_key_uri *out)
{
    memset(out, 0, sizeof *out);
    if (!uri)
        return ck_err_set(CK_EINVAL, "no key URI given");
    if (strlen(uri) >= CK_KEY_URI_MAX)
        return bad_uri(uri, "it is too long");
    if (strncasecmp(uri, "https://", 8) != 0)
        return bad_uri(uri, "it must start with https://");
    if (strpbrk(uri, "?#"))
        return bad_uri(uri, "a key URI has no query or fragment");
    const char *auth = uri + 8, *path = strchr(auth, '/');
    if (!path)
        return bad_uri(uri, "it has no /keys/NAME path");
    size_t alen = (size_t)(path - auth);
    if (memchr(auth, '@', alen))
        return bad_uri(uri, "it carries user information");

    /* HOST[:PORT], HOST possibly [IPv6]. */
    size_t hlen = alen;
    const char *port = NULL;
    if (alen && auth[0] == '[') {
        const char *close = memchr(auth, ']', alen);
        hlen = close ? (size_t)(close - auth) + 1 : alen;
        if (hlen < alen && auth[hlen] == ':')
            port = auth + hlen + 1;
        else if (hlen != alen)
            return bad_uri(uri, "the host is not valid");
        if (!ipv6_ok(auth, hlen))
            return bad_uri(uri, "the host is not valid");
    } else {
        const char *colon = memchr(auth, ':', alen);
        if (colon) {
            hlen = (size_t)(colon - auth);
            port = colon + 1;
        }
        if (!host_ok(auth, hlen))
            return bad_uri(uri, "the host is not valid");
    }
    if (port) {
        size_t plen = (size_t)(path - port);
        long v = 0;
        for (size_t i = 0; i < plen; i++)
            v = isdigit((unsigned char)port[i]) && v < 100000 ? v * 10 + (port[i] - '0') : -1;
        if (plen == 0 || plen > 5 || v < 1 || v > 65535)
            return bad_uri(uri, "the port is not valid");
    }

    /* /keys/NAME, /keys/NAME/ (latest, as the Azure SDK writes it) or
     * /keys/NAME/VERSION. */
    if (strncmp(path, "/keys/", 6) != 0)
        return bad_uri(uri, "the path must be /keys/NAME[/VERSION]");
    const char *name = path + 6, *slash = strchr(name, '/');
    size_t nlen = slash ? (size_t)(slash - name) : strlen(name);
    if (!name_ok(name, nlen))
        return bad_uri(uri, "the key name must be 1 to 127 letters, digits or '-'");
    const char *version = slash ? slash + 1 : "";
    size_t vlen = strlen(version);
    if (vlen && !version_ok(version, vlen))
        return bad_uri(uri, "the key version must be up to 32 letters or digits");

    /* Host names are case-insensitive: keep one spelling, so that origins
     * and vault names compare equal. */
    char host[256];
    for (size_t i = 0; i < hlen; i++)
        host[i] = (char)tolower((unsigned char)auth[i]);
    host[hlen] = '\0';
    int w = port ? snprintf(out->origin, sizeof out->origin, "https://%s:%.*s", host,
                            (int)(path - port), port)
                 : snprintf(out->origin, sizeof out->origin, "https://%s", host);
    if (w < 0 || (size_t)w >= sizeof out->origin)
        return bad_uri(uri, "the host is too long");
    /* An IP literal has no vault label: the whole address names the vault
     * (a ckey vault role answers it with its default vault). */
    size_t vl = host[0] == '[' || is_ipv4(host, hlen) ? hlen : strcspn(host, ".");
    if (vl >= sizeof out->vault)
        return bad_uri(uri, "the vault name is too long");
    memcpy(out->vault, host, vl);
    memcpy(out->name, name, nlen);
    memcpy(out->version, version, vlen);
    return CK_OK;
}

/* ---------- classification ---------- */

ck_err ck_keyprov_classify(ck_err e)
{
    switch (e) {
    case CK_OK:
        return CK_OK;
    case CK_EINVAL:
    case CK_ETOOBIG:
    case CK_EMETHOD:
        return CK_EINVAL;
    case CK_ENOTFOUND:
    case CK_ECONFLICT:
    case CK_EUNAUTH:
    case CK_EFORBIDDEN:
    case CK_EGONE:
    case CK_EINTEGRITY:
    case CK_ECRYPTO:
        /* The vault, or the key, said no: the customer's decision. */
        return CK_EFORBIDDEN;
    case CK_EUNAVAIL:
    case CK_ENOMEM:
    case CK_EIO:
    case CK_EINTERNAL:
    default:
        /* Nothing the customer decided: a network, a vault or this process
         * misbehaving. Retrying later may work. */
        return CK_EUNAVAIL;
    }
}

/* ---------- the provider and its pool ---------- */

struct pooled {
    struct ck_client *c;
    unsigned gen;     /* token generation the client carries */
    char origin[256]; /* vault it last talked to ("" for none) */
};

struct ck_keyprov {
    pthread_mutex_t mu;
    struct ck_secret token; /* NUL-terminated; empty (p == NULL) when none */
    unsigned gen;           /* bumped by set_token */
    char *cacert;
    long timeout_ms;
    int attempts;
    unsigned pool_size;
    struct pooled *idle; /* stack, pool_size slots */
    unsigned nidle, busy;
    struct ck_keyprov_stats stats;
};

static ck_err set_token_locked(struct ck_keyprov *p, const char *token)
{
    if (!token || !*token) {
        ck_secret_free(&p->token);
    } else {
        CK_TRY(ck_secret_set(&p->token, token, strlen(token) + 1));
    }
    p->gen++;
    return CK_OK;
}

static const char *token_of(const struct ck_keyprov *p)
{
    return p->token.p ? (const char *)p->token.p : NULL;
}

ck_err ck_keyprov_new(const struct ck_keyprov_config *cfg, struct ck_keyprov **out)
{
    *out = NULL;
    if (cfg->cacert && access(cfg->cacert, R_OK) != 0)
        return ck_err_set(CK_EINVAL, "the CA file '%s' cannot be read", cfg->cacert);
    if (cfg->timeout_ms < 0 || cfg->pool_size > 1024)
        return ck_err_set(CK_EINVAL, "the key provider's timeout or pool size is out of range");
    struct ck_keyprov *p = ck_xcalloc(1, sizeof *p);
    pthread_mutex_init(&p->mu, NULL);
    p->cacert = ck_strdup(cfg->cacert);
    p->timeout_ms = cfg->timeout_ms ? cfg->timeout_ms : 5000;
    p->attempts = 1 + (cfg->retries > 0 ? cfg->retries : cfg->retries == 0 ? 2 : 0);
    p->pool_size = cfg->pool_size ? cfg->pool_size : 8;
    p->idle = ck_xcalloc(p->pool_size, sizeof *p->idle);
    ck_err rc = set_token_locked(p, cfg->token);
    if (rc != CK_OK) {
        ck_keyprov_free(p);
        return rc;
    }
    *out = p;
    return CK_OK;
}

void ck_keyprov_free(struct ck_keyprov *p)
{
    if (!p)
        return;
    assert(p->busy == 0);
    for (unsigned i = 0; i < p->nidle; i++)
        ck_client_free(p->idle[i].c);
    free(p->idle);
    free(p->cacert);
    ck_secret_free(&p->token);
    pthread_mutex_destroy(&p->mu);
    free(p);
}

void ck_keyprov_set_token(struct ck_keyprov *p, const char *token)
{
    pthread_mutex_lock(&p->mu);
    ck_err rc = set_token_locked(p, token);
    pthread_mutex_unlock(&p->mu);
    if (rc != CK_OK)
        ck_log(CK_LOG_ERROR, "cannot store the key provider's new token; keeping the old one",
               "error", ck_err_msg(), NULL);
}

void ck_keyprov_stats(struct ck_keyprov *p, struct ck_keyprov_stats *out)
{
    pthread_mutex_lock(&p->mu);
    *out = p->stats;
    out->kept = p->nidle;
    pthread_mutex_unlock(&p->mu);
}

/* Takes an idle client, the most recent one that talked to origin if any,
 * else creates one. Clients carrying an old token get the current one. */
static ck_err take(struct ck_keyprov *p, const char *origin, struct pooled *out)
{
    ck_err rc = CK_OK;
    pthread_mutex_lock(&p->mu);
    if (p->nidle) {
        unsigned i = p->nidle;
        while (i > 0 && strcmp(p->idle[i - 1].origin, origin) != 0)
            i--;
        i = i ? i - 1 : p->nidle - 1;
        *out = p->idle[i];
        memmove(&p->idle[i], &p->idle[i + 1], (p->nidle - i - 1) * sizeof *p->idle);
        p->nidle--;
        if (out->gen != p->gen) {
            ck_client_set_token(out->c, token_of(p));
            out->gen = p->gen;
        }
    } else {
        struct ck_client_config cc = {
            .token = token_of(p),
            .cacert = p->cacert,
            .timeout_ms = p->timeout_ms,
            .max_connections = 1,
        };
        memset(out, 0, sizeof *out);
        rc = ck_client_new(&cc, &out->c);
        out->gen = p->gen;
        if (rc == CK_OK)
            p->stats.created++;
    }
    if (rc == CK_OK && ++p->busy > p->stats.busy_max)
        p->stats.busy_max = p->busy;
    pthread_mutex_unlock(&p->mu);
    return rc;
}

static void give(struct ck_keyprov *p, struct pooled *pc, const char *origin)
{
    snprintf(pc->origin, sizeof pc->origin, "%s", origin);
    struct ck_client *drop = NULL;
    pthread_mutex_lock(&p->mu);
    p->busy--;
    if (p->nidle < p->pool_size) {
        p->idle[p->nidle++] = *pc;
        if (p->nidle > p->stats.kept_max)
            p->stats.kept_max = p->nidle;
    } else {
        drop = pc->c;
    }
    pthread_mutex_unlock(&p->mu);
    ck_client_free(drop); /* closes its connection: not under the lock */
}

/* ---------- one call, with retries ---------- */

static void sleep_ms(long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0)
        ;
}

static long jitter(long max)
{
    uint32_t r = 0;
    if (max <= 0 || ck_os_random(&r, sizeof r) != CK_OK)
        return 0;
    return (long)(r % (uint32_t)(max + 1));
}

/* How long to wait before attempt number `attempt` + 1. */
static long backoff_ms(int attempt)
{
    long d = BACKOFF_BASE_MS;
    for (int i = 0; i < attempt && d < BACKOFF_MAX_MS; i++)
        d *= 2;
    if (d > BACKOFF_MAX_MS)
        d = BACKOFF_MAX_MS;
    return d / 2 + jitter(d / 2);
}

struct call {
    const char *op;  /* "get", "wrapKey", "unwrapKey": for messages */
    const char *uri; /* the key as the caller named it */
    const char *origin;
    const char *method;
    const char *url;
    json_t *body;
    long *status; /* when set: the HTTP status of the last attempt (0 = none) */
};

/* Runs one call, retrying transient failures; on failure sets a classified
 * error that names the key and carries the vault's message. */
static ck_err run(struct ck_keyprov *p, const struct call *k, json_t **resp)
{
    struct pooled pc;
    ck_err rc = take(p, k->origin, &pc);
    if (rc != CK_OK)
        return ck_err_set(CK_EUNAVAIL, "cannot call the vault for %s on %s: %s", k->op, k->uri,
                          ck_err_msg());
    long status = 0, retry_after = 0;
    int attempt = 0;
    for (;;) {
        rc = ck_client_json(pc.c, k->method, k->url, k->body, &status, resp);
        attempt++;
        if (rc == CK_OK)
            break;
        bool transient = ck_keyprov_classify(rc) == CK_EUNAVAIL || status == 408;
        if (!transient || attempt >= p->attempts)
            break;
        retry_after = ck_client_retry_after(pc.c);
        if (retry_after > RETRY_AFTER_MAX_S)
            break;
        pthread_mutex_lock(&p->mu);
        p->stats.retries++;
        pthread_mutex_unlock(&p->mu);
        sleep_ms(retry_after > 0 ? retry_after * 1000 + jitter(BACKOFF_BASE_MS)
                                 : backoff_ms(attempt - 1));
    }
    give(p, &pc, k->origin);
    if (k->status)
        *k->status = status;
    if (rc == CK_OK)
        return CK_OK;

    char said[512];
    snprintf(said, sizeof said, "%s", ck_err_msg());
    ck_err cls = status == 408 ? CK_EUNAVAIL : ck_keyprov_classify(rc);
    if (cls == CK_EFORBIDDEN)
        return ck_err_set(CK_EFORBIDDEN, "the vault denied %s on %s (HTTP %ld): %s", k->op, k->uri,
                          status, said);
    if (cls == CK_EINVAL)
        return ck_err_set(CK_EINVAL, "the vault rejected %s on %s (HTTP %ld): %s", k->op, k->uri,
                          status, said);
    if (retry_after > RETRY_AFTER_MAX_S)
        return ck_err_set(CK_EUNAVAIL,
                          "the vault is unavailable for %s on %s (HTTP %ld) and asks to retry "
                          "after %ld s: %s",
                          k->op, k->uri, status, retry_after, said);
    if (status)
        return ck_err_set(CK_EUNAVAIL,
                          "the vault is unavailable for %s on %s (HTTP %ld, %d attempt%s): %s",
                          k->op, k->uri, status, attempt, attempt == 1 ? "" : "s", said);
    return ck_err_set(CK_EUNAVAIL, "the vault is unreachable for %s on %s (%d attempt%s): %s",
                      k->op, k->uri, attempt, attempt == 1 ? "" : "s", said);
}

/* An answer the vault should not have given: transient by classification
 * (a proxy or a broken vault, not the customer's decision). */
static ck_err bad_answer(const struct call *k, const char *what)
{
    return ck_err_set(CK_EUNAVAIL, "the vault's answer to %s on %s is not valid: %s", k->op, k->uri,
                      what);
}

/* Wipes a JSON string in place: it held key material. jansson owns the
 * bytes, which were allocated writable; only their content is cleared. */
static void wipe_json_string(json_t *s)
{
    if (json_is_string(s))
        ck_wipe((char *)json_string_value(s), json_string_length(s));
}

static json_t *wrap_body(const uint8_t *in, size_t n, bool secret)
{
    char *b64 = NULL;
    if (ck_b64url_encode(in, n, &b64) != CK_OK)
        return NULL;
    json_t *body = json_pack("{s:s,s:s}", "alg", WRAP_ALG, "value", b64);
    if (secret)
        ck_wipe(b64, strlen(b64));
    free(b64);
    return body;
}

static void free_body(json_t *body)
{
    wipe_json_string(json_object_get(body, "value"));
    json_decref(body);
}

/* The version (last path segment) of a versioned key id. */
static bool kid_version(const char *kid, char version[33])
{
    const char *v = strrchr(kid, '/');
    if (!v || !version_ok(v + 1, strlen(v + 1)))
        return false;
    snprintf(version, 33, "%s", v + 1);
    return true;
}

/* ---------- get ---------- */

static unsigned modulus_bits(const struct ck_buf *n)
{
    size_t i = 0;
    while (i < n->n && n->p[i] == 0)
        i++;
    if (i == n->n)
        return 0;
    unsigned bits = (unsigned)(n->n - i - 1) * 8, top = n->p[i];
    while (top) {
        bits++;
        top >>= 1;
    }
    return bits;
}

static int64_t int_field(json_t *o, const char *name)
{
    json_t *v = json_object_get(o, name);
    return json_is_integer(v) ? (int64_t)json_integer_value(v) : 0;
}

static ck_err parse_bundle(const struct call *k, json_t *resp, struct ck_root_key_info *info)
{
    json_t *key = json_object_get(resp, "key"), *attrs = json_object_get(resp, "attributes");
    const char *kid = json_string_value(json_object_get(key, "kid"));
    if (!kid)
        return bad_answer(k, "it has no key.kid");
    if (strlen(kid) >= sizeof info->kid)
        return bad_answer(k, "its key.kid is too long");
    if (!kid_version(kid, info->version))
        return bad_answer(k, "its key.kid has no version");
    snprintf(info->kid, sizeof info->kid, "%s", kid);
    const char *kty = json_string_value(json_object_get(key, "kty"));
    snprintf(info->kty, sizeof info->kty, "%s", kty ? kty : "");
    const char *n = json_string_value(json_object_get(key, "n"));
    if (n) {
        struct ck_buf nb = {0};
        if (ck_b64url_decode(n, strlen(n), &nb) != CK_OK)
            return bad_answer(k, "its key.n is not base64url");
        info->bits = modulus_bits(&nb);
        ck_buf_free(&nb);
    }
    size_t i;
    json_t *op;
    json_array_foreach(json_object_get(key, "key_ops"), i, op)
    {
        const char *s = json_string_value(op);
        if (s && strcmp(s, "wrapKey") == 0)
            info->can_wrap = true;
        if (s && strcmp(s, "unwrapKey") == 0)
            info->can_unwrap = true;
    }
    info->enabled = json_is_true(json_object_get(attrs, "enabled"));
    info->nbf = int_field(attrs, "nbf");
    info->exp = int_field(attrs, "exp");
    const char *level = json_string_value(json_object_get(attrs, "recoveryLevel"));
    snprintf(info->recovery_level, sizeof info->recovery_level, "%s", level ? level : "");
    info->recoverable_days = (int)int_field(attrs, "recoverableDays");
    return CK_OK;
}

ck_err ck_keyprov_get(struct ck_keyprov *p, const char *uri, struct ck_root_key_info *info)
{
    memset(info, 0, sizeof *info);
    struct ck_key_uri u;
    CK_TRY(ck_key_uri_parse(uri, &u));
    char *url = ck_sprintf("%s/keys/%s/%s?api-version=" API_VERSION, u.origin, u.name, u.version);
    struct call k = {"get", uri, u.origin, "GET", url, NULL, NULL};
    json_t *resp = NULL;
    ck_err rc = run(p, &k, &resp);
    if (rc == CK_OK)
        rc = parse_bundle(&k, resp, info);
    json_decref(resp);
    free(url);
    if (rc != CK_OK)
        memset(info, 0, sizeof *info);
    return rc;
}

/* ---------- wrap and unwrap ---------- */

static ck_err wrap(struct ck_keyprov *p, const char *uri, const uint8_t *in, size_t n,
                   struct ck_buf *out, char *kid, long *status)
{
    struct ck_key_uri u;
    CK_TRY(ck_key_uri_parse(uri, &u));
    if (!in || n == 0 || n > WRAP_MAX_IN)
        return ck_err_set(CK_EINVAL, "a key to wrap must be 1 to %d bytes (got %zu)", WRAP_MAX_IN,
                          n);
    json_t *body = wrap_body(in, n, true);
    if (!body)
        return ck_err_set(CK_EUNAVAIL, "cannot encode the key to wrap under %s", uri);
    char *url =
        ck_sprintf("%s/keys/%s/%s/wrapkey?api-version=" API_VERSION, u.origin, u.name, u.version);
    struct call k = {"wrapKey", uri, u.origin, "POST", url, body, status};
    json_t *resp = NULL;
    ck_err rc = run(p, &k, &resp);
    free_body(body);
    free(url);
    if (rc != CK_OK)
        return rc;

    const char *value = json_string_value(json_object_get(resp, "value"));
    const char *rkid = json_string_value(json_object_get(resp, "kid"));
    char version[33];
    struct ck_buf wrapped = {0};
    if (!value || ck_b64url_decode(value, strlen(value), &wrapped) != CK_OK || wrapped.n == 0)
        rc = bad_answer(&k, "its value is not base64url");
    else if (!rkid || !kid_version(rkid, version))
        rc = bad_answer(&k, "its kid has no version");
    else if (u.version[0] && strcmp(version, u.version) != 0)
        rc = bad_answer(&k, "it used another version than the one asked for");
    json_decref(resp);
    if (rc != CK_OK) {
        ck_buf_free(&wrapped);
        return rc;
    }
    /* The kid to unwrap with later is built on the origin we reached, not the
     * one the vault reports: a vault behind another name (or a ckey vault
     * answering its default vault) must be reached the same way next time. */
    if (kid) {
        int w = snprintf(kid, CK_KEY_URI_MAX, "%s/keys/%s/%s", u.origin, u.name, version);
        if (w < 0 || w >= CK_KEY_URI_MAX) {
            ck_buf_free(&wrapped);
            return ck_err_set(CK_EINVAL, "the key id of %s is too long", uri);
        }
    }
    ck_buf_free(out);
    *out = wrapped;
    return CK_OK;
}

ck_err ck_keyprov_wrap(struct ck_keyprov *p, const char *uri, const uint8_t *in, size_t n,
                       struct ck_buf *out, char *kid)
{
    return wrap(p, uri, in, n, out, kid, NULL);
}

ck_err ck_keyprov_probe_wrap(struct ck_keyprov *p, const char *uri, long *status)
{
    uint8_t probe[32];
    struct ck_buf out = {0};
    *status = 0;
    CK_TRY(ck_os_random(probe, sizeof probe));
    ck_err rc = wrap(p, uri, probe, sizeof probe, &out, NULL, status);
    ck_buf_free(&out);
    return rc;
}

ck_err ck_keyprov_unwrap(struct ck_keyprov *p, const char *kid, const uint8_t *in, size_t n,
                         struct ck_secret *out)
{
    struct ck_key_uri u;
    CK_TRY(ck_key_uri_parse(kid, &u));
    if (!u.version[0])
        return ck_err_set(CK_EINVAL, "unwrapping needs a versioned key id (got %s)", kid);
    if (!in || n == 0 || n > WRAP_MAX_IN)
        return ck_err_set(CK_EINVAL, "a wrapped key must be 1 to %d bytes (got %zu)", WRAP_MAX_IN,
                          n);
    json_t *body = wrap_body(in, n, false);
    if (!body)
        return ck_err_set(CK_EUNAVAIL, "cannot encode the key to unwrap under %s", kid);
    char *url =
        ck_sprintf("%s/keys/%s/%s/unwrapkey?api-version=" API_VERSION, u.origin, u.name, u.version);
    struct call k = {"unwrapKey", kid, u.origin, "POST", url, body, NULL};
    json_t *resp = NULL;
    ck_err rc = run(p, &k, &resp);
    json_decref(body);
    free(url);
    if (rc != CK_OK)
        return rc;
    json_t *value = json_object_get(resp, "value");
    const char *s = json_string_value(value);
    struct ck_secret key = {0};
    if (!s || ck_b64url_decode_secret(s, strlen(s), &key) != CK_OK || key.n == 0)
        rc = bad_answer(&k, "its value is not base64url");
    wipe_json_string(value);
    json_decref(resp);
    if (rc != CK_OK) {
        ck_secret_free(&key);
        return rc;
    }
    ck_secret_free(out);
    *out = key;
    return CK_OK;
}
