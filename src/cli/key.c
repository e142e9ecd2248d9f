/*
 * key.c — `ckey key ...`: keys in a vault, through the Azure Key Vault keys
 * data plane (src/api/keys.c), the way any AKV client reaches a vault.
 *
 * Vault V is https://V.vault.localhost:PORT, the port taken from the global
 * --url (libcurl resolves *.localhost to loopback and the dev certificate
 * covers *.vault.localhost); --vault-url addresses a vault directly. Every
 * request carries api-version=7.6. nextLink pages are followed only on the
 * vault's own origin, so the bearer token never goes anywhere else.
 *
 * Files: --out files are created with mode 0600 and never replace an
 * existing file without --force (then atomically, through a temporary file
 * and rename). Unwrapped key material and wrap input live in ck_secret
 * buffers and are wiped; jansson wipes what it frees (main.c).
 */
#include "cli/cli.h"
#include "crypto/crypto.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define API_VERSION "api-version=7.6"
#define VAULT_SUFFIX "vault.localhost"
#define MAX_BACKUP (16u << 20)
#define MAX_WRAP_IN (64u << 10)
#define MAX_PAGES 10000

/* The vault a command addresses. */
struct kv {
    struct cli *c;
    char *base;        /* https://host[:port], no trailing slash */
    const char *vault; /* --vault, or NULL */
};

/* ---------- usage ---------- */

struct sub {
    const char *name;
    const char *spec;
    const char *usage;
    const char *about;
    int (*fn)(struct kv *, const struct cli_args *);
};

static const char common_help[] =
    "The vault V is reached at https://V." VAULT_SUFFIX ":PORT, PORT taken from --url;\n"
    "--vault-url URL (e.g. https://contoso.vault.azure.net) addresses a vault directly and\n"
    "may replace --vault. T is RFC 3339 (2027-01-31T00:00:00Z), a date (2027-01-31) or Unix\n"
    "seconds. OP is encrypt, decrypt, sign, verify, wrapKey, unwrapKey, import or export.\n"
    "Files written with --out get mode 0600 and are not overwritten without --force.\n";

/* ---------- small helpers ---------- */

static const char *str(json_t *o, const char *field)
{
    const char *s = json_string_value(json_object_get(o, field));
    return s ? s : "";
}

static const char *tf(json_t *v)
{
    return json_is_true(v) ? "True" : "False";
}

/* Unix seconds as RFC 3339, "" when absent or 0. */
static void when(json_t *v, char out[32])
{
    out[0] = '\0';
    if (json_is_integer(v) && json_integer_value(v) > 0)
        ck_time_rfc3339((int64_t)json_integer_value(v), out);
}

static bool digits(const char *p, int n, int *v)
{
    *v = 0;
    for (int i = 0; i < n; i++) {
        if (!isdigit((unsigned char)p[i]))
            return false;
        *v = *v * 10 + (p[i] - '0');
    }
    return true;
}

/* RFC 3339 ("2027-01-31T00:00:00Z", "...T01:00:00.5+01:00"), a bare date
 * (midnight UTC), or Unix seconds. */
static bool parse_time(const char *s, int64_t *out)
{
    size_t len = strlen(s);
    if (len > 0 && strspn(s, "0123456789") == len) {
        if (len > 12)
            return false;
        *out = strtoll(s, NULL, 10);
        return true;
    }
    int y, mo, d, h = 0, mi = 0, se = 0, oh = 0, om = 0;
    long off = 0;
    if (len < 10 || !digits(s, 4, &y) || s[4] != '-' || !digits(s + 5, 2, &mo) || s[7] != '-' ||
        !digits(s + 8, 2, &d))
        return false;
    const char *p = s + 10;
    if (*p == 'T' || *p == 't' || *p == ' ') {
        p++;
        if (strlen(p) < 8 || !digits(p, 2, &h) || p[2] != ':' || !digits(p + 3, 2, &mi) ||
            p[5] != ':' || !digits(p + 6, 2, &se))
            return false;
        p += 8;
        if (*p == '.') {
            p++;
            if (!isdigit((unsigned char)*p))
                return false;
            while (isdigit((unsigned char)*p))
                p++;
        }
        if (*p == 'Z' || *p == 'z') {
            p++;
        } else if ((*p == '+' || *p == '-') && strlen(p) == 6 && digits(p + 1, 2, &oh) &&
                   p[3] == ':' && digits(p + 4, 2, &om) && oh < 24 && om < 60) {
            off = (*p == '+' ? 1 : -1) * (oh * 3600L + om * 60L);
            p += 6;
        } else {
            return false;
        }
    }
    if (*p || y < 1970 || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || se > 60)
        return false;
    struct tm tm = {.tm_year = y - 1900,
                    .tm_mon = mo - 1,
                    .tm_mday = d,
                    .tm_hour = h,
                    .tm_min = mi,
                    .tm_sec = se > 59 ? 59 : se};
    time_t t = timegm(&tm);
    struct tm back;
    if (t == (time_t)-1 || !gmtime_r(&t, &back) || back.tm_mday != d) /* Feb 30 */
        return false;
    *out = (int64_t)t - off;
    return *out >= 0;
}

static int time_option(const struct cli_args *a, const char *name, json_t *attrs, const char *field)
{
    const char *v = cli_get(a, name);
    if (!v)
        return 0;
    int64_t t;
    if (!parse_time(v, &t))
        return cli_usage_error("--%s takes an RFC 3339 time, a date or Unix seconds, not '%s'",
                               name, v);
    json_object_set_new(attrs, field, json_integer(t));
    return 0;
}

static int ops_option(const struct cli_args *a, json_t *body)
{
    static const char *const known[] = {"encrypt", "decrypt",   "sign",   "verify",
                                        "wrapKey", "unwrapKey", "import", "export"};
    const char *v = cli_get(a, "ops");
    if (!v)
        return 0;
    json_t *ops = json_array();
    char *copy = ck_strdup(v), *save = NULL;
    int rc = 0;
    for (char *t = strtok_r(copy, ",", &save); t && !rc; t = strtok_r(NULL, ",", &save)) {
        while (*t == ' ')
            t++;
        size_t i = 0;
        while (i < sizeof known / sizeof *known && strcasecmp(t, known[i]) != 0)
            i++;
        if (i == sizeof known / sizeof *known)
            rc = cli_usage_error("'%s' is not a key operation (encrypt, decrypt, sign, verify, "
                                 "wrapKey, unwrapKey, import, export)",
                                 t);
        else
            json_array_append_new(ops, json_string(known[i]));
    }
    free(copy);
    if (rc) {
        json_decref(ops);
        return rc;
    }
    json_object_set_new(body, "key_ops", ops);
    return 0;
}

/* Every --tag K=V; none → no "tags" field. */
static int tags_option(const struct cli_args *a, json_t *body)
{
    json_t *tags = NULL;
    for (int i = 0; i < a->nkv; i++) {
        if (a->keylen[i] != 3 || strncmp(a->key[i], "tag", 3) != 0)
            continue;
        const char *v = a->val[i], *eq = strchr(v, '=');
        if (!eq || eq == v) {
            json_decref(tags);
            return cli_usage_error("--tag takes NAME=VALUE, not '%s'", v);
        }
        if (!tags)
            tags = json_object();
        char *k = strndup(v, (size_t)(eq - v));
        json_object_set_new(tags, k, json_string(eq + 1));
        free(k);
    }
    if (tags)
        json_object_set_new(body, "tags", tags);
    return 0;
}

/* ---------- the vault's address and calls ---------- */

static bool valid_vault_name(const char *v)
{
    size_t n = strlen(v);
    return n >= 1 && n <= 24 &&
           strspn(v, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                     "0123456789-") == n;
}

/* https://V.vault.localhost[:PORT] from the global --url. */
static int vault_base(struct kv *k, const char *vault_url)
{
    if (vault_url) {
        if (strncmp(vault_url, "https://", 8) != 0 || !vault_url[8])
            return cli_usage_error("--vault-url must be an https:// URL, not '%s'", vault_url);
        k->base = ck_strdup(vault_url);
        size_t n = strlen(k->base);
        while (n > 8 && k->base[n - 1] == '/')
            k->base[--n] = '\0';
        return 0;
    }
    if (!valid_vault_name(k->vault))
        return cli_usage_error("'%s' is not a vault name (1-24 letters, digits and hyphens)",
                               k->vault);
    const char *u = k->c->url;
    if (strncmp(u, "https://", 8) != 0)
        return cli_usage_error("--url must be an https:// URL, not '%s'", u);
    const char *host = u + 8;
    size_t hl = strcspn(host, "/?#");
    const char *port = NULL;
    if (host[0] == '[') { /* [::1]:8443 */
        const char *close = memchr(host, ']', hl);
        if (close && close + 1 < host + hl && close[1] == ':')
            port = close + 2;
    } else {
        const char *colon = memchr(host, ':', hl);
        if (colon)
            port = colon + 1;
    }
    int plen = port ? (int)(host + hl - port) : 0;
    k->base = ck_sprintf("https://%s.%s%s%.*s", k->vault, VAULT_SUFFIX, plen ? ":" : "", plen,
                         port ? port : "");
    return 0;
}

/* The request path "/keys/..." on the vault, with the api-version. */
static ck_err kv_call(struct kv *k, const char *method, const char *path, json_t *body,
                      json_t **resp)
{
    char *url = ck_sprintf("%s%s?" API_VERSION, k->base, path);
    ck_err rc = cli_call(k->c, method, url, body, resp);
    free(url);
    return rc;
}

/* True when url is on the origin (scheme://host:port) of base. */
static bool same_origin(const char *base, const char *url)
{
    size_t n = 8 + strcspn(base + 8, "/?#");
    return strncasecmp(base, url, n) == 0 && (url[n] == '/' || url[n] == '?' || !url[n]);
}

/* GETs path and every nextLink page; *items gets all "value" entries. */
static ck_err kv_list(struct kv *k, const char *path, json_t **items)
{
    json_t *all = json_array();
    char *url = ck_sprintf("%s%s?" API_VERSION, k->base, path);
    ck_err rc = CK_OK;
    for (int page = 0; url && rc == CK_OK; page++) {
        json_t *resp = NULL;
        rc = page == MAX_PAGES ? ck_err_set(CK_EINTERNAL, "the vault keeps sending pages")
                               : cli_call(k->c, "GET", url, NULL, &resp);
        free(url);
        url = NULL;
        if (rc != CK_OK)
            break;
        json_t *value = json_object_get(resp, "value");
        const char *next = json_string_value(json_object_get(resp, "nextLink"));
        if (!json_is_array(value))
            rc = ck_err_set(CK_EINTERNAL, "the vault's answer has no list of values");
        else
            json_array_extend(all, value);
        if (rc == CK_OK && next && *next) {
            if (!same_origin(k->base, next))
                rc = ck_err_set(CK_EINTERNAL, "the vault's next page (%s) is not on %s", next,
                                k->base);
            else if (strstr(next, "api-version="))
                url = ck_strdup(next);
            else
                url = ck_sprintf("%s%s" API_VERSION, next, strchr(next, '?') ? "&" : "?");
        }
        json_decref(resp);
    }
    free(url);
    if (rc != CK_OK) {
        json_decref(all);
        return rc;
    }
    *items = all;
    return CK_OK;
}

/* "/keys/NAME/VERSION/suffix", the version segment empty for the latest. */
static char *key_path(const struct cli_args *a, const char *suffix)
{
    char *n = ck_client_escape(cli_get(a, "name"));
    char *v = ck_client_escape(cli_get(a, "version") ? cli_get(a, "version") : "");
    char *p = ck_sprintf("/keys/%s/%s%s", n, v, suffix);
    free(n);
    free(v);
    return p;
}

/* "/PREFIX/NAME/suffix" */
static char *name_path(const struct cli_args *a, const char *prefix, const char *suffix)
{
    char *n = ck_client_escape(cli_get(a, "name"));
    char *p = ck_sprintf("/%s/%s%s", prefix, n, suffix);
    free(n);
    return p;
}

/* ---------- files ---------- */

static ck_err read_all(int fd, uint8_t *p, size_t n, const char *path)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, p + got, n - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return ck_err_set(CK_EIO, "cannot read %s: %s", path,
                              r ? strerror(errno) : "it changed while being read");
        got += (size_t)r;
    }
    return CK_OK;
}

/* A regular file of 1..max bytes, into a ck_secret (secret) or a ck_buf. */
static ck_err read_file(const char *path, size_t max, struct ck_secret *secret, struct ck_buf *buf)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return ck_err_set(CK_EIO, "cannot open %s: %s", path, strerror(errno));
    struct stat st;
    ck_err rc = CK_OK;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
        rc = ck_err_set(CK_EINVAL, "%s is not a regular file", path);
    else if (st.st_size == 0)
        rc = ck_err_set(CK_EINVAL, "%s is empty", path);
    else if ((uint64_t)st.st_size > max)
        rc = ck_err_set(CK_ETOOBIG, "%s is larger than %zu bytes", path, max);
    else if (secret)
        rc = ck_secret_alloc(secret, (size_t)st.st_size);
    else
        rc = ck_buf_alloc(buf, (size_t)st.st_size);
    if (rc == CK_OK)
        rc = secret ? read_all(fd, secret->p, secret->n, path) : read_all(fd, buf->p, buf->n, path);
    close(fd);
    if (rc != CK_OK) {
        if (secret)
            ck_secret_free(secret);
        else
            ck_buf_free(buf);
    }
    return rc;
}

static ck_err refuse_existing(const char *path, bool force)
{
    struct stat st;
    if (!force && lstat(path, &st) == 0)
        return ck_err_set(CK_ECONFLICT, "%s exists; add --force to replace it", path);
    return CK_OK;
}

static ck_err write_fd(int fd, const uint8_t *p, size_t n, const char *path)
{
    size_t done = 0;
    while (done < n) {
        ssize_t w = write(fd, p + done, n - done);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return ck_err_set(CK_EIO, "cannot write %s: %s", path, strerror(errno));
        done += (size_t)w;
    }
    if (fsync(fd) != 0)
        return ck_err_set(CK_EIO, "cannot write %s: %s", path, strerror(errno));
    return CK_OK;
}

/* Mode 0600. Without force an existing path is refused (O_EXCL, so a file
 * appearing meanwhile is not clobbered); with force the bytes go to a
 * temporary file beside it that is renamed over it, so a reader never sees
 * half a file and the old file's mode does not carry over. */
static ck_err write_private_file(const char *path, const uint8_t *p, size_t n, bool force)
{
    char *tmp = force ? ck_sprintf("%s.XXXXXX", path) : NULL;
    int fd = force ? mkostemp(tmp, O_CLOEXEC)
                   : open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
        ck_err rc = errno == EEXIST
                        ? ck_err_set(CK_ECONFLICT, "%s exists; add --force to replace it", path)
                        : ck_err_set(CK_EIO, "cannot create %s: %s", path, strerror(errno));
        free(tmp);
        return rc;
    }
    ck_err rc = write_fd(fd, p, n, path);
    if (close(fd) != 0 && rc == CK_OK)
        rc = ck_err_set(CK_EIO, "cannot write %s: %s", path, strerror(errno));
    if (rc == CK_OK && tmp && rename(tmp, path) != 0)
        rc = ck_err_set(CK_EIO, "cannot replace %s: %s", path, strerror(errno));
    if (rc != CK_OK)
        unlink(tmp ? tmp : path);
    free(tmp);
    return rc;
}

/* ---------- output ---------- */

#define FIELD(label, value) printf("%-15s : %s\n", label, value)

/* Segment i (0 the name, 1 the version) after "/keys/" in a kid, malloc'd. */
static char *kid_segment(const char *kid, int i)
{
    const char *p = strstr(kid, "://");
    p = p ? strchr(p + 3, '/') : NULL;
    if (!p || strncmp(p, "/keys/", 6) != 0)
        return ck_strdup("");
    p += 6;
    for (; i > 0; i--) {
        p = strchr(p, '/');
        if (!p)
            return ck_strdup("");
        p++;
    }
    return strndup(p, strcspn(p, "/?#"));
}

/* The first label of the kid's host. */
static char *kid_vault(const char *kid)
{
    const char *p = strstr(kid, "://");
    p = p ? p + 3 : kid;
    return strndup(p, strcspn(p, ".:/"));
}

static char *joined(json_t *arr, const char *sep)
{
    struct ck_buf b = {0};
    size_t i;
    json_t *x;
    json_array_foreach(arr, i, x)
    {
        if (i)
            ck_buf_append(&b, sep, strlen(sep));
        const char *s = json_string_value(x);
        ck_buf_append(&b, s ? s : "", s ? strlen(s) : 0);
    }
    ck_buf_append(&b, "", 1);
    return (char *)b.p;
}

static char *tags_text(json_t *tags)
{
    struct ck_buf b = {0};
    const char *k;
    json_t *v;
    bool first = true;
    json_object_foreach(tags, k, v)
    {
        if (!first)
            ck_buf_append(&b, ", ", 2);
        first = false;
        ck_buf_append(&b, k, strlen(k));
        ck_buf_append(&b, "=", 1);
        ck_buf_append(&b, str(tags, k), strlen(str(tags, k)));
    }
    ck_buf_append(&b, "", 1);
    return (char *)b.p;
}

/* Bits of the modulus (base64url n), 0 when unreadable. */
static unsigned modulus_bits(const char *n64)
{
    struct ck_buf n = {0};
    unsigned bits = 0;
    if (n64 && ck_b64url_decode(n64, strlen(n64), &n) == CK_OK) {
        size_t i = 0;
        while (i < n.n && n.p[i] == 0)
            i++;
        if (i < n.n) {
            bits = (unsigned)(n.n - i - 1) * 8;
            for (unsigned top = n.p[i]; top; top >>= 1)
                bits++;
        }
    }
    ck_buf_free(&n);
    return bits;
}

/* Add-AzKeyVaultKey's layout of a KeyBundle (or DeletedKeyBundle). */
static void print_bundle(struct kv *k, json_t *b)
{
    if (k->c->output == CLI_JSON) {
        cli_print_json(b);
        return;
    }
    json_t *key = json_object_get(b, "key"), *attrs = json_object_get(b, "attributes");
    const char *id = str(key, "kid");
    char *vault = k->vault ? ck_strdup(k->vault) : kid_vault(id);
    char *name = kid_segment(id, 0), *version = kid_segment(id, 1);
    char *ops = joined(json_object_get(key, "key_ops"), ", ");
    char *tags = tags_text(json_object_get(b, "tags"));
    char size[16], t[32];
    snprintf(size, sizeof size, "%u", modulus_bits(json_string_value(json_object_get(key, "n"))));
    FIELD("Vault Name", vault);
    FIELD("Name", name);
    FIELD("Version", version);
    FIELD("Id", id);
    FIELD("Key Type", str(key, "kty"));
    FIELD("Key Size", size);
    FIELD("Key Ops", ops);
    FIELD("Enabled", tf(json_object_get(attrs, "enabled")));
    when(json_object_get(attrs, "exp"), t);
    FIELD("Expires", t);
    when(json_object_get(attrs, "nbf"), t);
    FIELD("Not Before", t);
    when(json_object_get(attrs, "created"), t);
    FIELD("Created", t);
    when(json_object_get(attrs, "updated"), t);
    FIELD("Updated", t);
    FIELD("Recovery Level", str(attrs, "recoveryLevel"));
    FIELD("Tags", tags);
    if (json_object_get(b, "recoveryId")) {
        when(json_object_get(b, "deletedDate"), t);
        FIELD("Deleted", t);
        when(json_object_get(b, "scheduledPurgeDate"), t);
        FIELD("Scheduled Purge", t);
        FIELD("Recovery Id", str(b, "recoveryId"));
    }
    free(vault);
    free(name);
    free(version);
    free(ops);
    free(tags);
}

/* One call whose answer is a bundle, printed. */
static int bundle_call(struct kv *k, const char *method, char *path, json_t *body)
{
    json_t *resp = NULL;
    ck_err rc = kv_call(k, method, path, body, &resp);
    free(path);
    json_decref(body);
    if (rc != CK_OK)
        return cli_fail();
    print_bundle(k, resp);
    json_decref(resp);
    return 0;
}

/* ---------- commands ---------- */

static int need(const struct cli_args *a, const char *sub, const char *opt)
{
    if (!cli_get(a, opt))
        return cli_usage_error("key %s needs --%s", sub, opt);
    return 0;
}

static int create(struct kv *k, const struct cli_args *a)
{
    if (need(a, "create", "name"))
        return 2;
    const char *kty = cli_get(a, "kty") ? cli_get(a, "kty") : "RSA";
    const char *size = cli_get(a, "size");
    if (strcmp(kty, "RSA") != 0 && strcmp(kty, "RSA-HSM") != 0)
        return cli_usage_error("--kty takes RSA or RSA-HSM, not '%s'", kty);
    if (size && strcmp(size, "2048") != 0 && strcmp(size, "3072") != 0 && strcmp(size, "4096") != 0)
        return cli_usage_error("--size takes 2048, 3072 or 4096, not '%s'", size);
    json_t *attrs = json_object();
    json_t *body = json_pack("{s:s,s:o}", "kty", kty, "attributes", attrs);
    if (size)
        json_object_set_new(body, "key_size", json_integer(atoi(size)));
    if (cli_has(a, "disabled"))
        json_object_set_new(attrs, "enabled", json_false());
    if (ops_option(a, body) || tags_option(a, body) || time_option(a, "expires", attrs, "exp") ||
        time_option(a, "not-before", attrs, "nbf")) {
        json_decref(body);
        return 2;
    }
    return bundle_call(k, "POST", name_path(a, "keys", "/create"), body);
}

static int show(struct kv *k, const struct cli_args *a)
{
    if (need(a, "show", "name"))
        return 2;
    return bundle_call(k, "GET", key_path(a, ""), NULL);
}

static int update(struct kv *k, const struct cli_args *a)
{
    if (need(a, "update", "name"))
        return 2;
    if (cli_has(a, "enable") && cli_has(a, "disable"))
        return cli_usage_error("--enable and --disable exclude each other");
    json_t *attrs = json_object();
    json_t *body = json_object();
    if (cli_has(a, "enable") || cli_has(a, "disable"))
        json_object_set_new(attrs, "enabled", json_boolean(cli_has(a, "enable")));
    if (ops_option(a, body) || tags_option(a, body) || time_option(a, "expires", attrs, "exp") ||
        time_option(a, "not-before", attrs, "nbf")) {
        json_decref(attrs);
        json_decref(body);
        return 2;
    }
    /* PATCH changes only the fields present. */
    if (json_object_size(attrs))
        json_object_set_new(body, "attributes", attrs);
    else
        json_decref(attrs);
    if (json_object_size(body) == 0) {
        json_decref(body);
        return cli_usage_error("key update needs something to change (--enable, --disable, "
                               "--ops, --tag, --expires, --not-before)");
    }
    return bundle_call(k, "PATCH", key_path(a, ""), body);
}

static int print_items(struct kv *k, const char *path, const char *const *cols, size_t ncol,
                       json_t *(*row)(json_t *item))
{
    json_t *items = NULL;
    if (kv_list(k, path, &items) != CK_OK)
        return cli_fail();
    if (k->c->output == CLI_JSON) {
        cli_print_json(items);
        json_decref(items);
        return 0;
    }
    json_t *rows = json_array();
    size_t i;
    json_t *it;
    json_array_foreach(items, i, it) json_array_append_new(rows, row(it));
    cli_print_table(k->c, rows, cols, ncol);
    json_decref(rows);
    json_decref(items);
    return 0;
}

static json_t *version_row(json_t *it)
{
    json_t *attrs = json_object_get(it, "attributes");
    char *version = kid_segment(str(it, "kid"), 1);
    char created[32], expires[32];
    when(json_object_get(attrs, "created"), created);
    when(json_object_get(attrs, "exp"), expires);
    json_t *r =
        json_pack("{s:s,s:s,s:s,s:s}", "version", version, "enabled",
                  tf(json_object_get(attrs, "enabled")), "created", created, "expires", expires);
    free(version);
    return r;
}

static int versions(struct kv *k, const struct cli_args *a)
{
    if (need(a, "versions", "name"))
        return 2;
    static const char *const cols[] = {"VERSION=version", "ENABLED=enabled", "CREATED=created",
                                       "EXPIRES=expires"};
    char *path = name_path(a, "keys", "/versions");
    int st = print_items(k, path, cols, sizeof cols / sizeof *cols, version_row);
    free(path);
    return st;
}

static json_t *key_row(json_t *it)
{
    json_t *attrs = json_object_get(it, "attributes");
    char *name = kid_segment(str(it, "kid"), 0);
    char updated[32];
    when(json_object_get(attrs, "updated"), updated);
    json_t *r = json_pack("{s:s,s:s,s:s,s:s}", "name", name, "enabled",
                          tf(json_object_get(attrs, "enabled")), "updated", updated,
                          "recoveryLevel", str(attrs, "recoveryLevel"));
    free(name);
    return r;
}

static int list(struct kv *k, const struct cli_args *a)
{
    static const char *const cols[] = {"NAME=name", "ENABLED=enabled", "UPDATED=updated",
                                       "RECOVERY LEVEL=recoveryLevel"};
    return print_items(k, "/keys", cols, sizeof cols / sizeof *cols, key_row);
}

static json_t *deleted_row(json_t *it)
{
    char *name = kid_segment(str(it, "kid"), 0);
    char deleted[32], purge[32];
    when(json_object_get(it, "deletedDate"), deleted);
    when(json_object_get(it, "scheduledPurgeDate"), purge);
    json_t *r = json_pack("{s:s,s:s,s:s}", "name", name, "deleted", deleted, "purge", purge);
    free(name);
    return r;
}

static int list_deleted(struct kv *k, const struct cli_args *a)
{
    static const char *const cols[] = {"NAME=name", "DELETED=deleted", "SCHEDULED PURGE=purge"};
    return print_items(k, "/deletedkeys", cols, sizeof cols / sizeof *cols, deleted_row);
}

static int delete_key(struct kv *k, const struct cli_args *a)
{
    if (need(a, "delete", "name"))
        return 2;
    return bundle_call(k, "DELETE", name_path(a, "keys", ""), NULL);
}

static int recover(struct kv *k, const struct cli_args *a)
{
    if (need(a, "recover", "name"))
        return 2;
    return bundle_call(k, "POST", name_path(a, "deletedkeys", "/recover"), NULL);
}

static int rotate(struct kv *k, const struct cli_args *a)
{
    if (need(a, "rotate", "name"))
        return 2;
    return bundle_call(k, "POST", name_path(a, "keys", "/rotate"), NULL);
}

static int purge(struct kv *k, const struct cli_args *a)
{
    if (need(a, "purge", "name"))
        return 2;
    char *path = name_path(a, "deletedkeys", "");
    ck_err rc = kv_call(k, "DELETE", path, NULL, NULL);
    free(path);
    if (rc != CK_OK)
        return cli_fail();
    fprintf(stderr, "ckey: key %s purged\n", cli_get(a, "name"));
    return 0;
}

static int backup(struct kv *k, const struct cli_args *a)
{
    if (need(a, "backup", "name") || need(a, "backup", "out"))
        return 2;
    const char *out = cli_get(a, "out");
    bool force = cli_has(a, "force");
    /* Checked before the vault is asked, so a refused file costs no backup;
     * the create below is exclusive all the same. */
    if (refuse_existing(out, force) != CK_OK)
        return cli_fail();
    json_t *resp = NULL;
    char *path = name_path(a, "keys", "/backup");
    ck_err rc = kv_call(k, "POST", path, NULL, &resp);
    free(path);
    if (rc != CK_OK)
        return cli_fail();
    const char *v = json_string_value(json_object_get(resp, "value"));
    struct ck_buf blob = {0};
    if (!v || !*v || ck_b64url_decode(v, strlen(v), &blob) != CK_OK)
        rc = ck_err_set(CK_EINTERNAL, "the vault's backup is not base64url");
    if (rc == CK_OK)
        rc = write_private_file(out, blob.p, blob.n, force);
    json_decref(resp);
    size_t n = blob.n;
    ck_buf_free(&blob);
    if (rc != CK_OK)
        return cli_fail();
    fprintf(stderr, "ckey: wrote the backup of key %s (%zu bytes) to %s\n", cli_get(a, "name"), n,
            out);
    return 0;
}

static int restore(struct kv *k, const struct cli_args *a)
{
    if (need(a, "restore", "in"))
        return 2;
    struct ck_buf blob = {0};
    char *v = NULL;
    ck_err rc = read_file(cli_get(a, "in"), MAX_BACKUP, NULL, &blob);
    if (rc == CK_OK)
        rc = ck_b64url_encode(blob.p, blob.n, &v);
    ck_buf_free(&blob);
    if (rc != CK_OK)
        return cli_fail();
    json_t *body = json_pack("{s:s}", "value", v);
    free(v);
    return bundle_call(k, "POST", ck_strdup("/keys/restore"), body);
}

static int export_public(struct kv *k, const struct cli_args *a)
{
    if (need(a, "export-public", "name"))
        return 2;
    json_t *resp = NULL;
    char *path = key_path(a, "");
    ck_err rc = kv_call(k, "GET", path, NULL, &resp);
    free(path);
    if (rc != CK_OK)
        return cli_fail();
    json_t *key = json_object_get(resp, "key");
    if (!cli_has(a, "pem")) {
        cli_print_json(key);
        json_decref(resp);
        return 0;
    }
    const char *n = json_string_value(json_object_get(key, "n"));
    const char *e = json_string_value(json_object_get(key, "e"));
    struct ck_rsa_jwk jwk = {0};
    struct ck_rsa *rsa = NULL;
    char *pem = NULL;
    if (!n || !e || ck_b64url_decode(n, strlen(n), &jwk.n) != CK_OK ||
        ck_b64url_decode(e, strlen(e), &jwk.e) != CK_OK)
        rc = ck_err_set(CK_EINVAL, "the key %s has no RSA public key (n, e)", str(key, "kid"));
    if (rc == CK_OK)
        rc = ck_rsa_from_jwk(&jwk, &rsa);
    if (rc == CK_OK)
        rc = ck_rsa_public_pem(rsa, &pem);
    if (rc == CK_OK)
        fputs(pem, stdout);
    free(pem);
    ck_rsa_free(rsa);
    ck_buf_free(&jwk.n);
    ck_buf_free(&jwk.e);
    json_decref(resp);
    return rc == CK_OK ? 0 : cli_fail();
}

/* wrapkey / unwrapkey: bytes in, bytes out. Both directions read their
 * input into a ck_secret (wrap input is key material) and write the output
 * from one (unwrap output is). */
static int crypto_file(struct kv *k, const struct cli_args *a, const char *op)
{
    static const char *const algs[] = {"RSA-OAEP", "RSA-OAEP-256", "RSA1_5"};
    const char *sub = strcmp(op, "wrapkey") == 0 ? "wrap" : "unwrap";
    if (need(a, sub, "name") || need(a, sub, "alg") || need(a, sub, "in") || need(a, sub, "out"))
        return 2;
    const char *alg = cli_get(a, "alg"), *out = cli_get(a, "out");
    size_t i = 0;
    while (i < sizeof algs / sizeof *algs && strcmp(alg, algs[i]) != 0)
        i++;
    if (i == sizeof algs / sizeof *algs)
        return cli_usage_error("--alg takes RSA-OAEP, RSA-OAEP-256 or RSA1_5, not '%s'", alg);
    bool force = cli_has(a, "force");
    if (refuse_existing(out, force) != CK_OK)
        return cli_fail();

    struct ck_secret in = {0}, result = {0};
    char *v = NULL, *path = NULL;
    json_t *body = NULL, *resp = NULL;
    ck_err rc;
    CK_GUARD(read_file(cli_get(a, "in"), MAX_WRAP_IN, &in, NULL));
    CK_GUARD(ck_b64url_encode(in.p, in.n, &v));
    body = json_pack("{s:s,s:s}", "alg", alg, "value", v);
    char *suffix = ck_sprintf("/%s", op);
    path = key_path(a, suffix);
    free(suffix);
    CK_GUARD(kv_call(k, "POST", path, body, &resp));
    json_t *value = json_object_get(resp, "value");
    if (!json_is_string(value) ||
        ck_b64url_decode_secret(json_string_value(value), json_string_length(value), &result) !=
            CK_OK)
        CK_GUARD(ck_err_set(CK_EINTERNAL, "the vault's answer has no base64url value"));
    ck_wipe((char *)json_string_value(value), json_string_length(value));
    CK_GUARD(write_private_file(out, result.p, result.n, force));
    fprintf(stderr, "ckey: wrote %zu bytes to %s (key %s)\n", result.n, out, str(resp, "kid"));
out:
    if (v)
        ck_wipe(v, strlen(v));
    free(v);
    free(path);
    json_decref(body);
    json_decref(resp);
    ck_secret_free(&in);
    ck_secret_free(&result);
    return rc == CK_OK ? 0 : cli_fail();
}

static int wrap(struct kv *k, const struct cli_args *a)
{
    return crypto_file(k, a, "wrapkey");
}

static int unwrap(struct kv *k, const struct cli_args *a)
{
    return crypto_file(k, a, "unwrapkey");
}

/* ---------- dispatch ---------- */

#define V "vault=,vault-url=,"

static const struct sub subs[] = {
    {"create", V "name=,kty=,size=,ops=,tag=,disabled,expires=,not-before=",
     "ckey key create --vault V --name K [--kty RSA|RSA-HSM] [--size 2048|3072|4096]\n"
     "                  [--ops OP,OP] [--tag NAME=VALUE]... [--disabled] [--expires T]\n"
     "                  [--not-before T]",
     "Creates a key (RSA 2048 unless told), or a new version of an existing one.\n", create},
    {"show", V "name=,version=", "ckey key show --vault V --name K [--version X]",
     "Shows a key's latest version, or version X.\n", show},
    {"versions", V "name=", "ckey key versions --vault V --name K",
     "Lists every version of a key.\n", versions},
    {"list", V "", "ckey key list --vault V", "Lists the keys of a vault.\n", list},
    {"list-deleted", V "", "ckey key list-deleted --vault V",
     "Lists the deleted keys that can still be recovered or purged.\n", list_deleted},
    {"update", V "name=,version=,enable,disable,ops=,tag=,expires=,not-before=",
     "ckey key update --vault V --name K [--version X] [--enable|--disable] [--ops OP,OP]\n"
     "                  [--tag NAME=VALUE]... [--expires T] [--not-before T]",
     "Changes only what is given, on the latest version or version X; --tag replaces all\n"
     "the version's tags.\n",
     update},
    {"delete", V "name=", "ckey key delete --vault V --name K",
     "Deletes a key (every version); it can be recovered until it is purged.\n", delete_key},
    {"recover", V "name=", "ckey key recover --vault V --name K", "Brings back a deleted key.\n",
     recover},
    {"purge", V "name=", "ckey key purge --vault V --name K", "Destroys a deleted key for good.\n",
     purge},
    {"rotate", V "name=", "ckey key rotate --vault V --name K",
     "Creates a new version of a key with the same settings.\n", rotate},
    {"backup", V "name=,out=,force", "ckey key backup --vault V --name K --out FILE [--force]",
     "Writes a protected backup of every version of a key to FILE. It restores only into\n"
     "this installation, into a vault of the same geography.\n",
     backup},
    {"restore", V "in=", "ckey key restore --vault V --in FILE",
     "Restores a key, with every version, from a backup file; refused while a key of that\n"
     "name exists (deleted or not).\n",
     restore},
    {"export-public", V "name=,version=,pem",
     "ckey key export-public --vault V --name K [--version X] [--pem]",
     "Prints the public key as JWK JSON, or with --pem as a SubjectPublicKeyInfo PEM that\n"
     "OpenSSL reads. The vault never hands out private keys.\n",
     export_public},
    {"wrap", V "name=,version=,alg=,in=,out=,force",
     "ckey key wrap --vault V --name K [--version X] --alg RSA-OAEP|RSA-OAEP-256|RSA1_5\n"
     "                  --in FILE --out FILE [--force]",
     "Encrypts the bytes of --in (a key to protect) with the vault key; writes the result.\n",
     wrap},
    {"unwrap", V "name=,version=,alg=,in=,out=,force",
     "ckey key unwrap --vault V --name K [--version X] --alg RSA-OAEP|RSA-OAEP-256|RSA1_5\n"
     "                  --in FILE --out FILE [--force]",
     "Decrypts wrapped bytes with the vault key; writes the key they held to --out.\n", unwrap},
};

static void print_help(FILE *f)
{
    fputs("Usage:\n", f);
    for (size_t i = 0; i < sizeof subs / sizeof *subs; i++)
        fprintf(f, "  %s\n", subs[i].usage);
    fprintf(f, "\n%s", common_help);
}

static bool wants_help(int argc, char **argv)
{
    for (int i = 0; i < argc; i++)
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
            return true;
    return false;
}

int cli_key(struct cli *c, int argc, char **argv)
{
    if (argc == 0 || strcmp(argv[0], "--help") == 0 || strcmp(argv[0], "-h") == 0 ||
        strcmp(argv[0], "help") == 0) {
        print_help(argc ? stdout : stderr);
        return argc ? 0 : 2;
    }
    const struct sub *s = NULL;
    for (size_t i = 0; i < sizeof subs / sizeof *subs; i++)
        if (strcmp(argv[0], subs[i].name) == 0)
            s = &subs[i];
    if (!s)
        return cli_usage_error("unknown key command '%s'", argv[0]);
    if (wants_help(argc - 1, argv + 1)) {
        printf("Usage:\n  %s\n\n%s\n%s", s->usage, s->about, common_help);
        return 0;
    }
    struct cli_args a;
    if (!cli_parse(argc - 1, argv + 1, s->spec, &a))
        return 2;
    if (a.npos)
        return cli_usage_error("unexpected argument '%s'", a.pos[0]);
    struct kv k = {.c = c, .vault = cli_get(&a, "vault")};
    if (!k.vault && !cli_get(&a, "vault-url"))
        return cli_usage_error("key %s needs --vault (or --vault-url)", s->name);
    int st = vault_base(&k, cli_get(&a, "vault-url"));
    if (st == 0)
        st = s->fn(&k, &a);
    free(k.base);
    return st;
}
