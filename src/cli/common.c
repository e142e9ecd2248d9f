/*
 * common.c — argument parsing, server calls and output shared by the nouns.
 */
#include "cli/cli.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

bool cli_parse(int argc, char **argv, const char *spec, struct cli_args *a)
{
    memset(a, 0, sizeof *a);
    for (int i = 0; i < argc; i++) {
        const char *w = argv[i];
        if (strncmp(w, "--", 2) != 0 || strlen(w) == 2) {
            if (a->npos == 16) {
                cli_usage_error("too many arguments");
                return false;
            }
            a->pos[a->npos++] = w;
            continue;
        }
        const char *name = w + 2;
        const char *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        /* Find name in spec. */
        const char *p = spec;
        bool found = false, takes = false;
        while (*p) {
            const char *end = strchr(p, ',');
            size_t l = end ? (size_t)(end - p) : strlen(p);
            bool v = l > 0 && p[l - 1] == '=';
            size_t nl = v ? l - 1 : l;
            if (nl == len && strncmp(p, name, len) == 0) {
                found = true;
                takes = v;
                break;
            }
            if (!end)
                break;
            p = end + 1;
        }
        if (!found || a->nkv == 32) {
            cli_usage_error("unknown option --%.*s", (int)len, name);
            return false;
        }
        a->key[a->nkv] = name;
        a->keylen[a->nkv] = len;
        if (takes) {
            if (eq) {
                a->val[a->nkv] = eq + 1;
            } else if (i + 1 < argc) {
                a->val[a->nkv] = argv[++i];
            } else {
                cli_usage_error("--%.*s needs a value", (int)len, name);
                return false;
            }
        } else if (eq) {
            cli_usage_error("--%.*s takes no value", (int)len, name);
            return false;
        }
        a->nkv++;
    }
    return true;
}

static bool key_is(const struct cli_args *a, int i, const char *name)
{
    return strlen(name) == a->keylen[i] && strncmp(a->key[i], name, a->keylen[i]) == 0;
}

const char *cli_get(const struct cli_args *a, const char *name)
{
    for (int i = a->nkv - 1; i >= 0; i--)
        if (key_is(a, i, name))
            return a->val[i];
    return NULL;
}

bool cli_has(const struct cli_args *a, const char *name)
{
    for (int i = 0; i < a->nkv; i++)
        if (key_is(a, i, name))
            return true;
    return false;
}

int cli_dispatch(struct cli *c, int argc, char **argv, const char *noun, const char *help,
                 const struct cli_verb *verbs, size_t n)
{
    if (argc == 0) {
        fputs(help, stderr);
        return 2;
    }
    if (strcmp(argv[0], "--help") == 0 || strcmp(argv[0], "-h") == 0 ||
        strcmp(argv[0], "help") == 0) {
        fputs(help, stdout);
        return 0;
    }
    for (size_t i = 0; i < n; i++)
        if (strcmp(argv[0], verbs[i].name) == 0)
            return verbs[i].run(c, argc - 1, argv + 1);
    return cli_usage_error("unknown %s command '%s'", noun, argv[0]);
}

int cli_usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("ckey: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputs(" (see --help)\n", stderr);
    va_end(ap);
    return 2;
}

int cli_fail(void)
{
    fprintf(stderr, "ckey: %s\n", *ck_err_msg() ? ck_err_msg() : "failed");
    return 1;
}

static ck_err read_token_file(struct cli *c, const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return ck_err_set(CK_EINVAL, "cannot read the token file %s", path);
    char buf[512];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' '))
        buf[--n] = '\0';
    c->token_buf = ck_strdup(buf);
    ck_wipe(buf, sizeof buf);
    c->token = c->token_buf;
    return CK_OK;
}

static ck_err connect(struct cli *c)
{
    if (c->client)
        return CK_OK;
    char *cacert = NULL;
    if (!c->token && c->token_file)
        CK_TRY(read_token_file(c, c->token_file));
    if (c->data_dir) {
        char *tf = ck_sprintf("%s/operator.token", c->data_dir);
        ck_err rc = !c->token && access(tf, R_OK) == 0 ? read_token_file(c, tf) : CK_OK;
        free(tf);
        CK_TRY(rc);
        if (!c->cacert)
            cacert = ck_sprintf("%s/tls/cert.pem", c->data_dir);
    }
    struct ck_client_config cfg = {
        .url = c->url,
        .token = c->token,
        .cacert = c->cacert ? c->cacert : cacert,
    };
    ck_err rc = ck_client_new(&cfg, &c->client);
    free(cacert);
    return rc;
}

ck_err cli_connect(struct cli *c)
{
    return connect(c);
}

ck_err cli_call(struct cli *c, const char *method, const char *path, json_t *body, json_t **resp)
{
    CK_TRY(connect(c));
    return ck_client_json(c->client, method, path, body, NULL, resp);
}

ck_err cli_call_raw(struct cli *c, const char *method, const char *path, const uint8_t *body,
                    size_t n, const char *content_type, struct ck_buf *resp)
{
    CK_TRY(connect(c));
    return ck_client_raw(c->client, method, path, body, n, content_type, NULL, resp);
}

char *cli_path(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    struct ck_buf b = {0};
    for (const char *p = fmt; *p; p++) {
        if (p[0] == '%' && p[1] == 's') {
            char *e = ck_client_escape(va_arg(ap, const char *));
            ck_buf_append(&b, e, strlen(e));
            free(e);
            p++;
        } else {
            ck_buf_append(&b, p, 1);
        }
    }
    va_end(ap);
    ck_buf_append(&b, "", 1);
    return (char *)b.p;
}

const char *cli_tenant_arg(const struct cli_args *a)
{
    const char *t = cli_get(a, "tenant");
    if (!t)
        t = getenv("CKEY_TENANT");
    return t && *t ? t : NULL;
}

json_t *cli_dep_value(const char *dep)
{
    if (strcasecmp(dep, "none") == 0 || strcasecmp(dep, "null") == 0 ||
        strcasecmp(dep, "$null") == 0)
        return json_null();
    return json_string(dep);
}

/* Whether a bar is on the terminal's current line. */
static bool progress_drawn;

void cli_progress(const char *label, int64_t done, int64_t total)
{
    if (!isatty(2))
        return;
    enum { WIDTH = 30 };
    int64_t pct = total > 0 ? done * 100 / total : 0;
    if (pct < 0)
        pct = 0;
    if (pct > 100)
        pct = 100;
    char bar[WIDTH + 1];
    int full = (int)(pct * WIDTH / 100);
    for (int i = 0; i < WIDTH; i++)
        bar[i] = i < full ? '#' : '.';
    bar[WIDTH] = '\0';
    /* \033[K clears what a longer previous label left behind. */
    fprintf(stderr, "\r[%s] %3lld%% %s\033[K", bar, (long long)pct, label);
    fflush(stderr);
    progress_drawn = true;
}

void cli_progress_end(void)
{
    if (progress_drawn)
        fputc('\n', stderr);
    progress_drawn = false;
}

int cli_call_show(struct cli *c, const char *method, char *path, json_t *body,
                  void (*print)(struct cli *c, json_t *resp))
{
    json_t *resp = NULL;
    ck_err rc = cli_call(c, method, path, body, &resp);
    free(path);
    json_decref(body);
    if (rc != CK_OK)
        return cli_fail();
    print(c, resp);
    json_decref(resp);
    return 0;
}

int cli_call_table(struct cli *c, char *path, const char *const *columns, size_t ncol)
{
    json_t *resp = NULL;
    ck_err rc = cli_call(c, "GET", path, NULL, &resp);
    free(path);
    if (rc != CK_OK)
        return cli_fail();
    cli_print_table(c, json_object_get(resp, "value"), columns, ncol);
    json_decref(resp);
    return 0;
}

void cli_print_json(json_t *v)
{
    char *s = json_dumps(v, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_ENCODE_ANY);
    if (s) {
        puts(s);
        free(s);
    }
}

/* "a.b" → obj["a"]["b"] */
static json_t *field(json_t *obj, const char *path)
{
    char *copy = ck_strdup(path), *save = NULL;
    json_t *v = obj;
    for (char *t = strtok_r(copy, ".", &save); t && v; t = strtok_r(NULL, ".", &save))
        v = json_object_get(v, t);
    free(copy);
    return v;
}

static char *cell(json_t *v)
{
    if (!v || json_is_null(v))
        return ck_strdup("");
    if (json_is_string(v))
        return ck_strdup(json_string_value(v));
    if (json_is_array(v)) {
        struct ck_buf b = {0};
        size_t i;
        json_t *x;
        json_array_foreach(v, i, x)
        {
            char *s = cell(x);
            if (i)
                ck_buf_append(&b, ",", 1);
            ck_buf_append(&b, s, strlen(s));
            free(s);
        }
        ck_buf_append(&b, "", 1);
        return (char *)b.p;
    }
    return json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
}

static void split_column(const char *col, char *header, size_t hn, const char **path)
{
    const char *eq = strchr(col, '=');
    snprintf(header, hn, "%.*s", (int)(eq - col), col);
    *path = eq + 1;
}

void cli_print_table(struct cli *c, json_t *rows, const char *const *columns, size_t ncol)
{
    if (c->output == CLI_JSON) {
        cli_print_json(rows);
        return;
    }
    size_t nrows = json_array_size(rows);
    size_t *width = ck_xcalloc(ncol, sizeof *width);
    char ***cells = ck_xcalloc(nrows + 1, sizeof *cells);
    for (size_t r = 0; r <= nrows; r++) {
        cells[r] = ck_xcalloc(ncol, sizeof(char *));
        for (size_t k = 0; k < ncol; k++) {
            char header[64];
            const char *path;
            split_column(columns[k], header, sizeof header, &path);
            cells[r][k] =
                r == 0 ? ck_strdup(header) : cell(field(json_array_get(rows, r - 1), path));
            size_t w = strlen(cells[r][k]);
            if (w > width[k])
                width[k] = w;
        }
    }
    for (size_t r = 0; r <= nrows; r++) {
        for (size_t k = 0; k < ncol; k++) {
            if (k + 1 < ncol)
                printf("%-*s  ", (int)width[k], cells[r][k]);
            else
                printf("%s", cells[r][k]);
            free(cells[r][k]);
        }
        putchar('\n');
        free(cells[r]);
    }
    free(cells);
    free(width);
}

void cli_print_object(struct cli *c, json_t *obj, const char *const *fields, size_t nfields)
{
    if (c->output == CLI_JSON) {
        cli_print_json(obj);
        return;
    }
    size_t width = 0;
    for (size_t k = 0; k < nfields; k++) {
        const char *eq = strchr(fields[k], '=');
        if ((size_t)(eq - fields[k]) > width)
            width = (size_t)(eq - fields[k]);
    }
    for (size_t k = 0; k < nfields; k++) {
        char header[64];
        const char *path;
        split_column(fields[k], header, sizeof header, &path);
        json_t *v = field(obj, path);
        if (!v)
            continue;
        char *s = cell(v);
        printf("%-*s : %s\n", (int)width, header, s);
        free(s);
    }
}

/* ---------- files ---------- */

ck_err cli_read_file(const char *path, size_t max, struct ck_buf *out)
{
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    if (!f)
        return ck_err_set(CK_EINVAL, "cannot open %s: %s", path, strerror(errno));
    ck_err rc = CK_OK;
    uint8_t chunk[16384];
    size_t r;
    while (rc == CK_OK && (r = fread(chunk, 1, sizeof chunk, f)) > 0) {
        if (out->n + r > max)
            rc = ck_err_set(CK_ETOOBIG, "%s is larger than %zu bytes", path, max);
        else
            rc = ck_buf_append(out, chunk, r);
    }
    if (rc == CK_OK && ferror(f))
        rc = ck_err_set(CK_EIO, "cannot read %s", path);
    if (f != stdin)
        fclose(f);
    ck_wipe(chunk, sizeof chunk);
    return rc;
}

ck_err cli_write_file(const char *path, const void *p, size_t n, unsigned mode)
{
    if (strcmp(path, "-") == 0) {
        if (fwrite(p, 1, n, stdout) != n || fflush(stdout) != 0)
            return ck_err_set(CK_EIO, "cannot write to standard output");
        return CK_OK;
    }
    char *tmp = ck_sprintf("%s.tmp.%d", path, (int)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, (mode_t)mode);
    ck_err rc = CK_OK;
    if (fd < 0)
        rc = ck_err_set(CK_EIO, "cannot create %s: %s", tmp, strerror(errno));
    for (size_t done = 0; rc == CK_OK && done < n;) {
        ssize_t w = write(fd, (const uint8_t *)p + done, n - done);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            rc = ck_err_set(CK_EIO, "cannot write %s: %s", tmp, strerror(errno));
        else
            done += (size_t)w;
    }
    if (rc == CK_OK && fsync(fd) != 0)
        rc = ck_err_set(CK_EIO, "cannot write %s: %s", tmp, strerror(errno));
    if (fd >= 0)
        close(fd);
    if (rc == CK_OK && rename(tmp, path) != 0)
        rc = ck_err_set(CK_EIO, "cannot write %s: %s", path, strerror(errno));
    if (rc != CK_OK && fd >= 0)
        unlink(tmp);
    free(tmp);
    return rc;
}
