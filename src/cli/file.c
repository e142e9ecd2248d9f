/*
 * file.c — `ckey file put|get|ls|rm`: files in a site, streamed both ways
 * (a file of any size never sits whole in memory, here or on the server).
 *
 * get writes the file with mode 0600 and checks that every byte announced
 * arrived: the server sends the status line before it decrypts the first
 * chunk, so a stored chunk failing its integrity check shows as a body
 * that ends early. Then the partial (temporary) file is deleted and get exits 1 with
 * "integrity error: the server stopped after N of M bytes".
 */
#include "cli/cli.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char help[] =
    "Usage:\n"
    "  ckey file put --tenant T --site /sites/NAME LOCAL_FILE PATH [--chunk-size BYTES]\n"
    "  ckey file get --tenant T --site /sites/NAME PATH LOCAL_FILE\n"
    "  ckey file ls --tenant T --site /sites/NAME\n"
    "  ckey file rm --tenant T --site /sites/NAME PATH\n"
    "\n"
    "PATH is the file's path in the site: segments separated by '/' (a leading '/'\n"
    "is dropped), none empty, '.' or '..'. put streams LOCAL_FILE (- for stdin) and\n"
    "replaces any earlier version at once when it is complete; --chunk-size sets the\n"
    "encryption chunk (65536 to 16777216 bytes; default 4 MiB). get streams to\n"
    "LOCAL_FILE (mode 0600; - for stdout) through a temporary file, and leaves\n"
    "LOCAL_FILE alone when the server stops early (exit 1, \"integrity error\").\n"
    "Progress is drawn when stderr is a terminal.\n"
    "--tenant defaults to $CKEY_TENANT. Tenant admins or the operator.\n";

/* --tenant and --site (NAME from "/sites/NAME"); prints the usage error. */
static bool tenant_and_site(const struct cli_args *a, const char *verb, const char **tenant,
                            const char **site)
{
    *tenant = cli_tenant_arg(a);
    *site = cli_get(a, "site");
    if (!*tenant) {
        cli_usage_error("file %s needs --tenant T (or CKEY_TENANT)", verb);
        return false;
    }
    if (!*site || !**site) {
        cli_usage_error("file %s needs --site /sites/NAME", verb);
        return false;
    }
    if (strncmp(*site, "/sites/", 7) == 0)
        *site += 7;
    return true;
}

/* /tenants/T/sites/NAME/files/PATH with each segment of PATH encoded on
 * its own; "." and ".." are encoded too, so that they reach the server
 * (which refuses them) instead of being folded away by the URL parser. */
static char *file_url(const char *tenant, const char *site, const char *path)
{
    while (*path == '/')
        path++;
    char *base = cli_path("/tenants/%s/sites/%s/files", tenant, site);
    struct ck_buf b = {0};
    ck_buf_append(&b, base, strlen(base));
    free(base);
    const char *p = path;
    for (;;) {
        const char *slash = strchr(p, '/');
        size_t n = slash ? (size_t)(slash - p) : strlen(p);
        ck_buf_append(&b, "/", 1);
        if ((n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.')) {
            for (size_t i = 0; i < n; i++)
                ck_buf_append(&b, "%2E", 3);
        } else {
            char *seg = ck_sprintf("%.*s", (int)n, p);
            char *e = ck_client_escape(seg);
            ck_buf_append(&b, e, strlen(e));
            free(e);
            free(seg);
        }
        if (!slash)
            break;
        p = slash + 1;
    }
    ck_buf_append(&b, "", 1);
    return (char *)b.p;
}

/* "12.3 MiB" */
static void human(double bytes, char *out, size_t n)
{
    static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    size_t u = 0;
    while (bytes >= 1024 && u + 1 < sizeof units / sizeof *units) {
        bytes /= 1024;
        u++;
    }
    snprintf(out, n, u ? "%.1f %s" : "%.0f %s", bytes, units[u]);
}

struct progress {
    const char *name;
    int64_t start_ms, drawn_ms;
};

static void draw(void *ctx, int64_t done, int64_t total)
{
    struct progress *p = ctx;
    int64_t now = ck_now_ms();
    if (now - p->drawn_ms < 100 && done != total)
        return;
    p->drawn_ms = now;
    double secs = (double)(now - p->start_ms) / 1000;
    char d[32], t[32], rate[32], label[400];
    human((double)done, d, sizeof d);
    human(total > 0 ? (double)total : 0, t, sizeof t);
    human(secs > 0 ? (double)done / secs : 0, rate, sizeof rate);
    snprintf(label, sizeof label, "%s: %s of %s, %s/s", p->name, d, t, rate);
    /* An empty file is done at once. */
    cli_progress(label, total > 0 ? done : 1, total > 0 ? total : 1);
}

static int file_put(struct cli *c, int argc, char **argv)
{
    struct cli_args a;
    const char *tenant, *site;
    if (!cli_parse(argc, argv, "tenant=,site=,chunk-size=", &a) ||
        !tenant_and_site(&a, "put", &tenant, &site))
        return 2;
    if (a.npos != 2)
        return cli_usage_error("file put needs LOCAL_FILE and PATH");
    const char *local = a.pos[0], *path = a.pos[1];
    char *url = file_url(tenant, site, path);
    const char *cs = cli_get(&a, "chunk-size");
    if (cs) {
        char *end;
        errno = 0;
        unsigned long long v = strtoull(cs, &end, 10);
        if (!*cs || *end || errno || v == 0) {
            free(url);
            return cli_usage_error("--chunk-size takes a number of bytes, not '%s'", cs);
        }
        /* The server checks the bounds. */
        char *with = ck_sprintf("%s?chunkSize=%llu", url, v);
        free(url);
        url = with;
    }
    bool is_stdin = strcmp(local, "-") == 0;
    int fd = is_stdin ? 0 : open(local, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        fprintf(stderr, "ckey: cannot open %s: %s\n", local, strerror(errno));
        free(url);
        return 1;
    }
    struct stat st;
    int64_t size = -1;
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode))
        size = (int64_t)st.st_size;
    else if (!is_stdin) {
        fprintf(stderr, "ckey: %s is not a regular file\n", local);
        close(fd);
        free(url);
        return 1;
    }
    struct progress p = {.name = path, .start_ms = ck_now_ms()};
    json_t *resp = NULL;
    ck_err rc = cli_connect(c);
    if (rc == CK_OK)
        rc = ck_client_upload(c->client, "PUT", url, fd, size, isatty(2) ? draw : NULL, &p, NULL,
                              &resp);
    cli_progress_end();
    if (!is_stdin)
        close(fd);
    free(url);
    if (rc != CK_OK)
        return cli_fail();
    static const char *const fields[] = {"Path=path", "Version=version", "Size=size",
                                         "Chunks=chunks", "ChunkSize=chunkSize"};
    cli_print_object(c, resp, fields, sizeof fields / sizeof *fields);
    json_decref(resp);
    return 0;
}

static int file_get(struct cli *c, int argc, char **argv)
{
    struct cli_args a;
    const char *tenant, *site;
    if (!cli_parse(argc, argv, "tenant=,site=", &a) || !tenant_and_site(&a, "get", &tenant, &site))
        return 2;
    if (a.npos != 2)
        return cli_usage_error("file get needs PATH and LOCAL_FILE");
    const char *path = a.pos[0], *local = a.pos[1];
    ck_err rc = cli_connect(c);
    if (rc != CK_OK)
        return cli_fail();
    /* Into a temporary file beside LOCAL_FILE (mode 0600), renamed over it
     * once every byte is in: a failed get leaves an existing file alone. */
    bool to_stdout = strcmp(local, "-") == 0;
    char *tmp = to_stdout ? NULL : ck_sprintf("%s.ckey-XXXXXX", local);
    int fd = to_stdout ? 1 : mkstemp(tmp);
    if (fd < 0) {
        fprintf(stderr, "ckey: cannot create %s: %s\n", tmp, strerror(errno));
        free(tmp);
        return 1;
    }
    char *url = file_url(tenant, site, path);
    struct progress p = {.name = path, .start_ms = ck_now_ms()};
    long status = 0;
    int64_t got = 0, expected = -1;
    rc = ck_client_download(c->client, url, fd, isatty(2) ? draw : NULL, &p, &status, &got,
                            &expected);
    cli_progress_end();
    free(url);
    int st = 0;
    if (!to_stdout && close(fd) != 0 && rc == CK_OK)
        rc = ck_err_set(CK_EIO, "cannot write %s: %s", local, strerror(errno));
    if (rc != CK_OK && status >= 200 && status <= 299 && expected >= 0 && got < expected) {
        fprintf(stderr,
                "ckey: integrity error: the server stopped after %lld of %lld bytes of %s "
                "(a stored chunk failed its check, or the connection broke)%s\n",
                (long long)got, (long long)expected, path,
                to_stdout ? "" : "; nothing was written");
        st = 1;
    } else if (rc != CK_OK) {
        st = cli_fail();
    }
    if (!to_stdout) {
        if (st == 0 && rename(tmp, local) != 0) {
            fprintf(stderr, "ckey: cannot write %s: %s\n", local, strerror(errno));
            st = 1;
        }
        if (st != 0)
            unlink(tmp);
        free(tmp);
    }
    return st;
}

static int file_ls(struct cli *c, int argc, char **argv)
{
    struct cli_args a;
    const char *tenant, *site;
    if (!cli_parse(argc, argv, "tenant=,site=", &a) || !tenant_and_site(&a, "ls", &tenant, &site))
        return 2;
    if (a.npos)
        return cli_usage_error("file ls takes no arguments");
    static const char *const cols[] = {"PATH=path", "VERSION=version", "SIZE=size", "CHUNKS=chunks",
                                       "CREATED=created"};
    return cli_call_table(c, cli_path("/tenants/%s/sites/%s/files", tenant, site), cols,
                          sizeof cols / sizeof *cols);
}

static int file_rm(struct cli *c, int argc, char **argv)
{
    struct cli_args a;
    const char *tenant, *site;
    if (!cli_parse(argc, argv, "tenant=,site=", &a) || !tenant_and_site(&a, "rm", &tenant, &site))
        return 2;
    if (a.npos != 1)
        return cli_usage_error("file rm needs PATH");
    char *url = file_url(tenant, site, a.pos[0]);
    ck_err rc = cli_call(c, "DELETE", url, NULL, NULL);
    free(url);
    return rc == CK_OK ? 0 : cli_fail();
}

int cli_file(struct cli *c, int argc, char **argv)
{
    static const struct cli_verb verbs[] = {
        {"put", file_put}, {"get", file_get}, {"ls", file_ls}, {"rm", file_rm}};
    return cli_dispatch(c, argc, argv, "file", help, verbs, sizeof verbs / sizeof *verbs);
}
