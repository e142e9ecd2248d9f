/*
 * mailbox.c — `ckey mailbox new|set|stats|list|import|put|get|items`:
 * mailboxes, their DEP (Set-Mailbox -DataEncryptionPolicy), their
 * statistics (Get-MailboxStatistics), mbox import and raw items.
 *
 * `stats --wait` polls the statistics every 0.5 s until IsEncrypted is true
 * (exit 0), the re-encryption job failed (exit 1, with the job's error) or
 * the timeout passed (exit 1). `import` reads and checks the whole mbox file
 * before it sends anything, so a malformed file changes nothing.
 */
#include "cli/cli.h"
#include "cli/mbox.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define ITEM_MAX (64u << 20) /* the service's limit on one item */
#define POLL_MS 500
#define LINE_EVERY_MS 5000 /* progress lines when stderr is not a terminal */

static const char help[] =
    "Usage:\n"
    "  ckey mailbox new --tenant T --identity UPN\n"
    "  ckey mailbox set UPN --tenant T --dep ID_OR_NAME|none\n"
    "  ckey mailbox stats UPN --tenant T [--wait [--timeout SECONDS]]\n"
    "  ckey mailbox list --tenant T\n"
    "  ckey mailbox import UPN --tenant T --mbox FILE\n"
    "  ckey mailbox put UPN --tenant T --id ID --in FILE\n"
    "  ckey mailbox get UPN --tenant T --id ID --out FILE\n"
    "  ckey mailbox items UPN --tenant T\n"
    "\n"
    "set assigns a DEP (none: the tenant's service-managed keys) and starts a job\n"
    "that re-encrypts every item under it; reads keep working meanwhile. stats shows\n"
    "the assigned DEP and whether every item is encrypted under it; --wait polls\n"
    "until it is (progress on stderr), the job fails (exit 1), or --timeout passes\n"
    "(default 600). import makes the mailbox when needed and stores each message of\n"
    "an mbox file as item msg-000001, msg-000002, ...; the file is checked first and\n"
    "a malformed one is refused before anything is sent. Items are at most 64 MiB;\n"
    "ids are 1-128 of A-Z a-z 0-9 . _ -. get writes FILE with mode 0600 (- for\n"
    "stdout). --tenant defaults to $CKEY_TENANT.\n"
    "Tenant admins or the operator; a user may read their own mailbox's items and\n"
    "statistics.\n";

static const char *const stats_fields[] = {
    "Identity=Identity",
    "DataEncryptionPolicyID=DataEncryptionPolicyID",
    "IsEncrypted=IsEncrypted",
    "ItemCount=ItemCount",
    "TotalItemSize=TotalItemSize",
    "PendingItems=PendingItems",
    "PercentComplete=PercentComplete",
    "JobId=JobId",
    "JobState=JobState",
};

static void print_stats(struct cli *c, json_t *s, bool with_job)
{
    size_t n = sizeof stats_fields / sizeof *stats_fields;
    cli_print_object(c, s, stats_fields, with_job ? n : n - 2);
}

/* --tenant (or CKEY_TENANT) and exactly one UPN; prints the usage error. */
static bool tenant_and_upn(const struct cli_args *a, const char *verb, const char **tenant)
{
    *tenant = cli_tenant_arg(a);
    if (!*tenant) {
        cli_usage_error("mailbox %s needs --tenant T (or CKEY_TENANT)", verb);
        return false;
    }
    if (a->npos != 1) {
        cli_usage_error("mailbox %s needs one mailbox UPN", verb);
        return false;
    }
    return true;
}

/* ---------- files ---------- */

/* The whole file (or stdin for "-"), refusing more than max bytes. */
static ck_err read_file(const char *path, size_t max, struct ck_buf *out)
{
    int fd = strcmp(path, "-") == 0 ? 0 : open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return ck_err_set(CK_EINVAL, "cannot open %s: %s", path, strerror(errno));
    ck_err rc = CK_OK;
    uint8_t chunk[65536];
    for (;;) {
        ssize_t r = read(fd, chunk, sizeof chunk);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            rc = ck_err_set(CK_EIO, "cannot read %s: %s", path, strerror(errno));
            break;
        }
        if (r == 0)
            break;
        if (out->n + (size_t)r > max) {
            rc = ck_err_set(CK_ETOOBIG, "%s is larger than %zu bytes", path, max);
            break;
        }
        if ((rc = ck_buf_append(out, chunk, (size_t)r)) != CK_OK)
            break;
    }
    if (fd != 0)
        close(fd);
    if (rc != CK_OK)
        ck_buf_free(out);
    return rc;
}

/* Writes bytes to path with mode 0600 (an existing file is truncated and
 * its mode tightened), or to stdout for "-". */
static ck_err write_file(const char *path, const uint8_t *p, size_t n)
{
    bool to_stdout = strcmp(path, "-") == 0;
    int fd = to_stdout ? 1 : open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return ck_err_set(CK_EIO, "cannot create %s: %s", path, strerror(errno));
    ck_err rc = CK_OK;
    if (!to_stdout && fchmod(fd, 0600) != 0)
        rc = ck_err_set(CK_EIO, "cannot set the mode of %s: %s", path, strerror(errno));
    for (size_t off = 0; rc == CK_OK && off < n;) {
        ssize_t w = write(fd, p + off, n - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            rc = ck_err_set(CK_EIO, "cannot write %s: %s", path, strerror(errno));
        else
            off += (size_t)w;
    }
    if (!to_stdout && close(fd) != 0 && rc == CK_OK)
        rc = ck_err_set(CK_EIO, "cannot write %s: %s", path, strerror(errno));
    return rc;
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

static void sleep_ms(long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* ---------- new, set, list ---------- */

static int mailbox_new(struct cli *c, int argc, char **argv)
{
    struct cli_args a;
    if (!cli_parse(argc, argv, "tenant=,identity=", &a))
        return 2;
    const char *tenant = cli_tenant_arg(&a), *upn = cli_get(&a, "identity");
    if (!tenant)
        return cli_usage_error("mailbox new needs --tenant T (or CKEY_TENANT)");
    if (!upn || a.npos)
        return cli_usage_error("mailbox new needs --identity UPN (and no other arguments)");
    char *path = cli_path("/tenants/%s/mailboxes", tenant);
    json_t *body = json_pack("{s:s}", "identity", upn), *resp = NULL;
    ck_err rc = cli_call(c, "POST", path, body, &resp);
    free(path);
    json_decref(body);
    if (rc != CK_OK)
        return cli_fail();
    print_stats(c, resp, false);
    json_decref(resp);
    return 0;
}

static int mailbox_set(struct cli *c, int argc, char **argv)
{
    struct cli_args a;
    const char *tenant;
    if (!cli_parse(argc, argv, "tenant=,dep=", &a) || !tenant_and_upn(&a, "set", &tenant))
        return 2;
    const char *dep = cli_get(&a, "dep");
    if (!dep)
        return cli_usage_error("mailbox set needs --dep ID_OR_NAME (or none)");
    char *path = cli_path("/tenants/%s/mailboxes/%s", tenant, a.pos[0]);
    json_t *body = json_pack("{s:o}", "dataEncryptionPolicy", cli_dep_value(dep)), *resp = NULL;
    ck_err rc = cli_call(c, "PATCH", path, body, &resp);
    free(path);
    json_decref(body);
    if (rc != CK_OK)
        return cli_fail();
    print_stats(c, resp, true);
    json_decref(resp);
    return 0;
}

static int mailbox_list(struct cli *c, int argc, char **argv)
{
    struct cli_args a;
    if (!cli_parse(argc, argv, "tenant=", &a))
        return 2;
    const char *tenant = cli_tenant_arg(&a);
    if (!tenant)
        return cli_usage_error("mailbox list needs --tenant T (or CKEY_TENANT)");
    if (a.npos)
        return cli_usage_error("mailbox list takes no arguments");
    char *path = cli_path("/tenants/%s/mailboxes", tenant);
    static const char *const cols[] = {
        "IDENTITY=Identity",       "DEP=DataEncryptionPolicyID", "ENCRYPTED=IsEncrypted",
        "ITEMS=ItemCount",         "SIZE=TotalItemSize",         "PENDING=PendingItems",
        "PERCENT=PercentComplete", "MIGRATED=Migrated",
    };
    return cli_call_table(c, path, cols, sizeof cols / sizeof *cols);
}

/* ---------- stats ---------- */

static int64_t num(json_t *o, const char *field)
{
    json_t *v = json_object_get(o, field);
    return json_is_number(v) ? (int64_t)json_number_value(v) : 0;
}

/* The failed job's own error, when the caller may read the job. */
static int job_failed(struct cli *c, const char *upn, const char *job_id)
{
    char *msg = NULL;
    if (job_id) {
        char *path = cli_path("/jobs/%s", job_id);
        json_t *job = NULL;
        if (cli_call(c, "GET", path, NULL, &job) == CK_OK &&
            json_string_value(json_object_get(job, "error")))
            msg = ck_strdup(json_string_value(json_object_get(job, "error")));
        json_decref(job);
        free(path);
    }
    fprintf(stderr, "ckey: the re-encryption job %s of %s failed%s%s\n", job_id ? job_id : "", upn,
            msg ? ": " : "", msg ? msg : "");
    free(msg);
    return 1;
}

static void show_progress(json_t *s, const char *upn, bool tty, int64_t now, int64_t *last_line)
{
    int64_t items = num(s, "ItemCount"), pending = num(s, "PendingItems");
    int64_t pct = num(s, "PercentComplete");
    int64_t done = items > 0 ? items - pending : pct, total = items > 0 ? items : 100;
    char label[300];
    snprintf(label, sizeof label, "%s: %lld of %lld items", upn, (long long)(items - pending),
             (long long)items);
    if (tty) {
        cli_progress(label, done, total);
    } else if (*last_line == 0 || now - *last_line >= LINE_EVERY_MS) {
        fprintf(stderr, "ckey: %s: %lld%% (%lld of %lld items encrypted)\n", upn,
                (long long)(total ? done * 100 / total : 0), (long long)(items - pending),
                (long long)items);
        *last_line = now;
    }
}

static int wait_encrypted(struct cli *c, const char *path, const char *upn, double timeout)
{
    int64_t timeout_ms = (int64_t)(timeout * 1000);
    bool tty = isatty(2);
    int64_t start = ck_now_ms(), last_line = 0;
    for (;;) {
        json_t *s = NULL;
        int64_t now = ck_now_ms();
        ck_err rc = cli_call(c, "GET", path, NULL, &s);
        /* A restarting server is not a failed job: keep asking. */
        if (rc == CK_EUNAVAIL && now - start < timeout_ms) {
            sleep_ms(POLL_MS);
            continue;
        }
        if (rc != CK_OK) {
            cli_progress_end();
            return cli_fail();
        }
        const char *state = json_string_value(json_object_get(s, "JobState"));
        if (json_is_true(json_object_get(s, "IsEncrypted"))) {
            if (tty)
                cli_progress(upn, 1, 1);
            cli_progress_end();
            print_stats(c, s, true);
            json_decref(s);
            return 0;
        }
        if (state && strcmp(state, "failed") == 0) {
            cli_progress_end();
            int st = job_failed(c, upn, json_string_value(json_object_get(s, "JobId")));
            json_decref(s);
            return st;
        }
        show_progress(s, upn, tty, now, &last_line);
        if (now - start >= timeout_ms) {
            cli_progress_end();
            fprintf(stderr,
                    "ckey: %s is not encrypted yet after %g s (%lld%% done); try again "
                    "later or with a longer --timeout\n",
                    upn, timeout, (long long)num(s, "PercentComplete"));
            json_decref(s);
            return 1;
        }
        json_decref(s);
        sleep_ms(POLL_MS);
    }
}

static int mailbox_stats(struct cli *c, int argc, char **argv)
{
    struct cli_args a;
    const char *tenant;
    if (!cli_parse(argc, argv, "tenant=,wait,timeout=", &a) ||
        !tenant_and_upn(&a, "stats", &tenant))
        return 2;
    double timeout = 600;
    if (cli_get(&a, "timeout")) {
        char *end;
        timeout = strtod(cli_get(&a, "timeout"), &end);
        if (*end || !(timeout > 0) || timeout > 86400 * 30)
            return cli_usage_error("--timeout takes a number of seconds, not '%s'",
                                   cli_get(&a, "timeout"));
        if (!cli_has(&a, "wait"))
            return cli_usage_error("--timeout goes with --wait");
    }
    char *path = cli_path("/tenants/%s/mailboxes/%s", tenant, a.pos[0]);
    int st;
    if (cli_has(&a, "wait")) {
        st = wait_encrypted(c, path, a.pos[0], timeout);
    } else {
        json_t *s = NULL;
        st = cli_call(c, "GET", path, NULL, &s) == CK_OK ? 0 : cli_fail();
        if (st == 0)
            print_stats(c, s, false);
        json_decref(s);
    }
    free(path);
    return st;
}

/* ---------- import ---------- */

struct import_progress {
    size_t total_msgs;
    size_t total_bytes;
    int64_t start_ms, drawn_ms;
};

static void import_progress(struct import_progress *p, size_t msgs, size_t bytes, bool last)
{
    int64_t now = ck_now_ms();
    if (!last && now - p->drawn_ms < 100)
        return;
    p->drawn_ms = now;
    double secs = (double)(now - p->start_ms) / 1000;
    char done[32], all[32], rate[32], label[160];
    human((double)bytes, done, sizeof done);
    human((double)p->total_bytes, all, sizeof all);
    human(secs > 0 ? (double)bytes / secs : 0, rate, sizeof rate);
    snprintf(label, sizeof label, "%zu/%zu messages, %s of %s, %s/s", msgs, p->total_msgs, done,
             all, rate);
    cli_progress(label, (int64_t)msgs, (int64_t)p->total_msgs);
}

/* Every message must fit one item; checked before anything is sent. */
static ck_err check_sizes(const struct cli_mbox *m, const char *file)
{
    for (size_t i = 0; i < m->count; i++)
        if (m->msgs[i].len > ITEM_MAX)
            return ck_err_set(CK_ETOOBIG,
                              "%s: message %zu (the From line at line %zu) is %zu bytes; a "
                              "mailbox item holds at most %u bytes",
                              file, i + 1, m->msgs[i].line, m->msgs[i].len, ITEM_MAX);
    return CK_OK;
}

static int put_messages(struct cli *c, const char *tenant, const char *upn,
                        const struct cli_mbox *m)
{
    /* Zero-padded so the ids sort in file order: at least six digits. */
    int width = 6;
    for (size_t x = m->count; x >= 1000000; x /= 10)
        width++;
    struct import_progress p = {.total_msgs = m->count, .total_bytes = m->n};
    p.start_ms = ck_now_ms();
    size_t bytes = 0;
    for (size_t i = 0; i < m->count; i++) {
        char num[24], id[64];
        int len = snprintf(num, sizeof num, "%zu", i + 1);
        snprintf(id, sizeof id, "msg-%.*s%s", width > len ? width - len : 0,
                 "000000000000000000000000", num);
        char *path = cli_path("/tenants/%s/mailboxes/%s/items/%s", tenant, upn, id);
        ck_err rc = cli_call_raw(c, "PUT", path, m->data + m->msgs[i].off, m->msgs[i].len,
                                 "message/rfc822", NULL);
        free(path);
        if (rc != CK_OK) {
            cli_progress_end();
            fprintf(stderr, "ckey: message %zu (%s, from line %zu): %s\n", i + 1, id,
                    m->msgs[i].line, ck_err_msg());
            fprintf(stderr, "ckey: imported %zu of %zu messages into %s before the failure\n", i,
                    m->count, upn);
            return 1;
        }
        bytes += m->msgs[i].len;
        import_progress(&p, i + 1, bytes, i + 1 == m->count);
    }
    cli_progress_end();
    printf("imported %zu messages, %zu bytes into %s\n", m->count, bytes, upn);
    return 0;
}

static int mailbox_import(struct cli *c, int argc, char **argv)
{
    struct cli_args a;
    const char *tenant;
    if (!cli_parse(argc, argv, "tenant=,mbox=", &a) || !tenant_and_upn(&a, "import", &tenant))
        return 2;
    const char *file = cli_get(&a, "mbox"), *upn = a.pos[0];
    if (!file)
        return cli_usage_error("mailbox import needs --mbox FILE");
    struct ck_buf data = {0};
    if (read_file(file, SIZE_MAX, &data) != CK_OK)
        return cli_fail();
    struct cli_mbox m;
    ck_err rc = cli_mbox_parse(data.p, data.n, &m);
    ck_buf_free(&data);
    if (rc != CK_OK) {
        fprintf(stderr, "ckey: %s: %s; nothing was imported\n", file, ck_err_msg());
        return 1;
    }
    if (check_sizes(&m, file) != CK_OK) {
        cli_mbox_free(&m);
        fprintf(stderr, "ckey: %s; nothing was imported\n", ck_err_msg());
        return 1;
    }
    /* The mailbox may exist already: importing adds to it. */
    char *path = cli_path("/tenants/%s/mailboxes", tenant);
    json_t *body = json_pack("{s:s}", "identity", upn);
    rc = cli_call(c, "POST", path, body, NULL);
    free(path);
    json_decref(body);
    int st = rc == CK_OK || rc == CK_ECONFLICT ? put_messages(c, tenant, upn, &m) : cli_fail();
    cli_mbox_free(&m);
    return st;
}

/* ---------- raw items ---------- */

static int mailbox_put(struct cli *c, int argc, char **argv)
{
    struct cli_args a;
    const char *tenant;
    if (!cli_parse(argc, argv, "tenant=,id=,in=", &a) || !tenant_and_upn(&a, "put", &tenant))
        return 2;
    const char *id = cli_get(&a, "id"), *in = cli_get(&a, "in");
    if (!id || !in)
        return cli_usage_error("mailbox put needs --id ID and --in FILE");
    struct ck_buf data = {0}, got = {0};
    if (read_file(in, ITEM_MAX, &data) != CK_OK)
        return cli_fail();
    char *path = cli_path("/tenants/%s/mailboxes/%s/items/%s", tenant, a.pos[0], id);
    ck_err rc = cli_call_raw(c, "PUT", path, data.p, data.n, "message/rfc822", &got);
    free(path);
    ck_buf_free(&data);
    if (rc != CK_OK)
        return cli_fail();
    json_t *resp = json_loadb((const char *)got.p, got.n, 0, NULL);
    ck_buf_free(&got);
    if (!resp)
        resp = json_pack("{s:s}", "id", id);
    static const char *const fields[] = {"Id=id", "Size=size"};
    cli_print_object(c, resp, fields, sizeof fields / sizeof *fields);
    json_decref(resp);
    return 0;
}

static int mailbox_get(struct cli *c, int argc, char **argv)
{
    struct cli_args a;
    const char *tenant;
    if (!cli_parse(argc, argv, "tenant=,id=,out=", &a) || !tenant_and_upn(&a, "get", &tenant))
        return 2;
    const char *id = cli_get(&a, "id"), *out = cli_get(&a, "out");
    if (!id || !out)
        return cli_usage_error("mailbox get needs --id ID and --out FILE (- for stdout)");
    struct ck_buf got = {0};
    char *path = cli_path("/tenants/%s/mailboxes/%s/items/%s", tenant, a.pos[0], id);
    ck_err rc = cli_call_raw(c, "GET", path, NULL, 0, NULL, &got);
    free(path);
    if (rc == CK_OK)
        rc = write_file(out, got.p, got.n);
    /* Message bytes are the customer's data: no copy left behind. */
    ck_wipe(got.p, got.n);
    size_t n = got.n;
    ck_buf_free(&got);
    if (rc != CK_OK)
        return cli_fail();
    if (strcmp(out, "-") != 0)
        fprintf(stderr, "ckey: wrote %zu bytes to %s\n", n, out);
    return 0;
}

static int mailbox_items(struct cli *c, int argc, char **argv)
{
    struct cli_args a;
    const char *tenant;
    if (!cli_parse(argc, argv, "tenant=", &a) || !tenant_and_upn(&a, "items", &tenant))
        return 2;
    json_t *all = json_array();
    char *after = NULL;
    ck_err rc;
    do {
        char *path = cli_path("/tenants/%s/mailboxes/%s/items", tenant, a.pos[0]);
        if (after) {
            char *e = ck_client_escape(after), *p2 = ck_sprintf("%s?max=1000&after=%s", path, e);
            free(e);
            free(path);
            path = p2;
        } else {
            char *p2 = ck_sprintf("%s?max=1000", path);
            free(path);
            path = p2;
        }
        json_t *page = NULL;
        rc = cli_call(c, "GET", path, NULL, &page);
        free(path);
        free(after);
        after = NULL;
        if (rc == CK_OK) {
            json_array_extend(all, json_object_get(page, "value"));
            const char *next = json_string_value(json_object_get(page, "next"));
            after = next && *next ? ck_strdup(next) : NULL;
        }
        json_decref(page);
    } while (rc == CK_OK && after);
    if (rc != CK_OK) {
        json_decref(all);
        return cli_fail();
    }
    static const char *const cols[] = {"ID=id", "SIZE=size", "CREATED=created"};
    cli_print_table(c, all, cols, sizeof cols / sizeof *cols);
    json_decref(all);
    return 0;
}

int cli_mailbox(struct cli *c, int argc, char **argv)
{
    static const struct cli_verb verbs[] = {
        {"new", mailbox_new},   {"set", mailbox_set},       {"stats", mailbox_stats},
        {"list", mailbox_list}, {"import", mailbox_import}, {"put", mailbox_put},
        {"get", mailbox_get},   {"items", mailbox_items},
    };
    return cli_dispatch(c, argc, argv, "mailbox", help, verbs, sizeof verbs / sizeof *verbs);
}
