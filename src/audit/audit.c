/*
 * audit.c — appending to, listing and verifying the MAC chain.
 *
 * The MAC input is length-prefixed field by field, so no two different
 * records can serialise to the same bytes by moving text between fields.
 *
 * Appends are group-committed. A record needs the previous record's MAC, so
 * appends cannot overlap; one write transaction (and one fsync) per record
 * made every key operation wait in line for the disk. Instead, an appending
 * thread queues its record; when no thread is writing, it becomes the
 * leader and writes every queued record, its own included, in one
 * transaction, chained in queue order, with one head update. Each caller
 * returns only once the transaction holding its record has committed, with
 * that transaction's result, so a successful return means the same as
 * before: the record is on disk.
 */
#include "audit/audit.h"
#include "crypto/crypto.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Records written in one transaction at most: bounds the leader's work. */
#define AUDIT_BATCH_MAX 256

/* An append waiting for its record to be committed. It lives on the stack of
 * the appending thread, which does not return before `done` is set. */
struct pending {
    const char *fields[6];
    struct pending *next;
    bool done;
    ck_err rc;
    char msg[256]; /* the error message when rc is not CK_OK */
};

struct ck_audit {
    struct ck_store *store;
    struct ck_secret key; /* 32 bytes */
    pthread_mutex_t mu;   /* guards the queue and `writing` */
    pthread_cond_t cv;    /* signalled when a batch is done */
    struct pending *queue, **queue_end;
    bool writing; /* a leader is writing a batch */
};

static const struct ck_migration audit_migrations[] = {
    {1, "CREATE TABLE ck_audit ("
        "  seq BIGINT PRIMARY KEY,"
        "  ts BIGINT NOT NULL,"
        "  principal TEXT NOT NULL,"
        "  operation TEXT NOT NULL,"
        "  target TEXT NOT NULL,"
        "  result TEXT NOT NULL,"
        "  request_id TEXT NOT NULL,"
        "  detail TEXT NOT NULL,"
        "  mac BLOB NOT NULL);"
        "CREATE TABLE ck_audit_head ("
        "  id INTEGER PRIMARY KEY,"
        "  seq BIGINT NOT NULL,"
        "  mac BLOB NOT NULL,"
        "  head_mac BLOB NOT NULL);"},
};

ck_err ck_audit_open(struct ck_store *s, const struct ck_secret *master_key, struct ck_audit **out)
{
    CK_TRY(ck_store_migrate(s, "audit", audit_migrations,
                            sizeof audit_migrations / sizeof audit_migrations[0]));
    struct ck_audit *a = ck_xcalloc(1, sizeof *a);
    a->store = s;
    pthread_mutex_init(&a->mu, NULL);
    pthread_cond_init(&a->cv, NULL);
    a->queue_end = &a->queue;
    static const char info[] = "ckey audit chain v1";
    ck_err rc = ck_secret_alloc(&a->key, 32);
    if (rc == CK_OK)
        rc = ck_hkdf_sha256(NULL, 0, master_key->p, master_key->n, (const uint8_t *)info,
                            sizeof info - 1, a->key.p, 32);
    if (rc != CK_OK) {
        ck_audit_close(a);
        return rc;
    }
    *out = a;
    return CK_OK;
}

void ck_audit_close(struct ck_audit *a)
{
    if (!a)
        return;
    ck_secret_free(&a->key);
    pthread_cond_destroy(&a->cv);
    pthread_mutex_destroy(&a->mu);
    free(a);
}

static void put_u64(struct ck_buf *b, uint64_t v)
{
    uint8_t x[8];
    for (int i = 0; i < 8; i++)
        x[i] = (uint8_t)(v >> (56 - 8 * i));
    ck_buf_append(b, x, 8);
}

static void put_str(struct ck_buf *b, const char *s)
{
    size_t n = s ? strlen(s) : 0;
    put_u64(b, n);
    ck_buf_append(b, s, n);
}

static ck_err record_mac(const struct ck_audit *a, const uint8_t prev[32], int64_t seq, int64_t ts,
                         const char *const fields[6], uint8_t out[32])
{
    struct ck_buf b = {0};
    ck_buf_append(&b, prev, 32);
    put_u64(&b, (uint64_t)seq);
    put_u64(&b, (uint64_t)ts);
    for (int i = 0; i < 6; i++)
        put_str(&b, fields[i]);
    ck_err rc = ck_hmac_sha256(a->key.p, 32, b.p, b.n, out);
    ck_buf_free(&b);
    return rc;
}

static ck_err head_mac(const struct ck_audit *a, int64_t seq, const uint8_t mac[32],
                       uint8_t out[32])
{
    struct ck_buf b = {0};
    ck_buf_append(&b, "head", 4);
    put_u64(&b, (uint64_t)seq);
    ck_buf_append(&b, mac, 32);
    ck_err rc = ck_hmac_sha256(a->key.p, 32, b.p, b.n, out);
    ck_buf_free(&b);
    return rc;
}

/* Reads the head row: *seq 0 and a zero MAC when the log is empty. */
static ck_err read_head(struct ck_audit *a, int64_t *seq, uint8_t mac[32], uint8_t hmac[32],
                        bool *present)
{
    struct ck_stmt *st;
    CK_TRY(ck_stmt_prepare(a->store, &st,
                           "SELECT seq, mac, head_mac FROM ck_audit_head WHERE id = 1", ""));
    bool row;
    ck_err rc = ck_stmt_step(st, &row);
    *seq = 0;
    memset(mac, 0, 32);
    memset(hmac, 0, 32);
    *present = false;
    if (rc == CK_OK && row) {
        size_t n1, n2;
        const void *m = ck_stmt_blob(st, 1, &n1), *h = ck_stmt_blob(st, 2, &n2);
        *seq = ck_stmt_int(st, 0);
        if (n1 == 32)
            memcpy(mac, m, 32);
        if (n2 == 32)
            memcpy(hmac, h, 32);
        *present = true;
    }
    ck_stmt_finalize(st);
    return rc;
}

static const char *or_dash(const char *s)
{
    return s && *s ? s : "-";
}

/* Appends the records of a batch, in order, in one transaction. */
static ck_err write_batch(struct ck_audit *a, const struct pending *batch)
{
    CK_TRY(ck_store_begin(a->store));
    int64_t seq;
    uint8_t prev[32], hm[32], mac[32];
    bool present;
    ck_err rc;
    CK_GUARD(read_head(a, &seq, prev, hm, &present));
    for (const struct pending *p = batch; p; p = p->next) {
        const char *const *f = p->fields;
        int64_t ts = ck_now();
        seq++;
        CK_GUARD(record_mac(a, prev, seq, ts, f, mac));
        CK_GUARD(ck_store_run(a->store, NULL,
                              "INSERT INTO ck_audit (seq, ts, principal, operation, target, "
                              "result, request_id, detail, mac) VALUES (?,?,?,?,?,?,?,?,?)",
                              "iittttttb", seq, ts, f[0], f[1], f[2], f[3], f[4], f[5], mac,
                              (size_t)32));
        memcpy(prev, mac, 32);
    }
    CK_GUARD(head_mac(a, seq, prev, hm));
    CK_GUARD(ck_store_run(a->store, NULL,
                          "INSERT INTO ck_audit_head (id, seq, mac, head_mac) VALUES (1, ?, ?, ?) "
                          "ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, mac = excluded.mac, "
                          "head_mac = excluded.head_mac",
                          "ibb", seq, prev, (size_t)32, hm, (size_t)32));
    rc = ck_store_commit(a->store);
out:
    if (rc != CK_OK)
        ck_store_rollback(a->store);
    return rc;
}

/* Takes up to AUDIT_BATCH_MAX records off the front of the queue (lock held). */
static struct pending *take_batch(struct ck_audit *a)
{
    struct pending *batch = a->queue, *last = batch;
    for (int i = 1; i < AUDIT_BATCH_MAX && last->next; i++)
        last = last->next;
    a->queue = last->next;
    if (!a->queue)
        a->queue_end = &a->queue;
    last->next = NULL;
    return batch;
}

ck_err ck_audit_append(struct ck_audit *a, const struct ck_audit_event *ev)
{
    /* Refused before it joins the queue: as a leader, this thread would
     * write the records of others inside its own transaction. */
    if (ck_store_in_tx(a->store))
        return ck_err_set(CK_EINTERNAL, "an audit record cannot be appended inside a store "
                                        "transaction");
    struct pending me = {.fields = {or_dash(ev->principal), or_dash(ev->operation),
                                    or_dash(ev->target), or_dash(ev->result),
                                    or_dash(ev->request_id), ev->detail ? ev->detail : ""}};
    pthread_mutex_lock(&a->mu);
    *a->queue_end = &me;
    a->queue_end = &me.next;
    while (!me.done) {
        if (a->writing) {
            pthread_cond_wait(&a->cv, &a->mu);
            continue;
        }
        /* Lead: the queue holds this record, unless an earlier batch took
         * it (then it is done) or it is past the batch limit (then the next
         * round of the loop leads again). */
        a->writing = true;
        struct pending *batch = take_batch(a);
        pthread_mutex_unlock(&a->mu);
        ck_err rc = write_batch(a, batch);
        pthread_mutex_lock(&a->mu);
        for (struct pending *p = batch, *next; p; p = next) {
            next = p->next; /* p's owner may return as soon as done is set */
            p->rc = rc;
            if (rc != CK_OK)
                snprintf(p->msg, sizeof p->msg, "%s", ck_err_msg());
            p->done = true;
        }
        a->writing = false;
        pthread_cond_broadcast(&a->cv);
    }
    pthread_mutex_unlock(&a->mu);
    if (me.rc != CK_OK)
        return ck_err_set(me.rc, "%s", me.msg);
    return CK_OK;
}

static char *col(struct ck_stmt *st, int i)
{
    return ck_strdup(ck_stmt_text(st, i) ? ck_stmt_text(st, i) : "");
}

static ck_err record_fill(struct ck_stmt *st, void *elem, void *arg)
{
    (void)arg;
    struct ck_audit_record *r = elem;
    r->seq = ck_stmt_int(st, 0);
    r->ts = ck_stmt_int(st, 1);
    r->principal = col(st, 2);
    r->operation = col(st, 3);
    r->target = col(st, 4);
    r->result = col(st, 5);
    r->request_id = col(st, 6);
    r->detail = col(st, 7);
    return CK_OK;
}

static void record_drop(void *elem)
{
    struct ck_audit_record *r = elem;
    free(r->principal);
    free(r->operation);
    free(r->target);
    free(r->result);
    free(r->request_id);
    free(r->detail);
}

ck_err ck_audit_list(struct ck_audit *a, int64_t after, size_t max, struct ck_audit_record **out,
                     size_t *n)
{
    struct ck_stmt *st;
    CK_TRY(ck_stmt_prepare(a->store, &st,
                           "SELECT seq, ts, principal, operation, target, result, request_id, "
                           "detail FROM ck_audit WHERE seq > ? ORDER BY seq LIMIT ?",
                           "ii", after, (int64_t)max));
    void *v;
    CK_TRY(ck_stmt_collect(st, sizeof **out, record_fill, NULL, record_drop, &v, n));
    *out = v;
    return CK_OK;
}

void ck_audit_records_free(struct ck_audit_record *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        record_drop(&v[i]);
    free(v);
}

static void fail(struct ck_audit_report *rep, int64_t seq, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void fail(struct ck_audit_report *rep, int64_t seq, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(rep->problem, sizeof rep->problem, fmt, ap);
    va_end(ap);
    rep->ok = false;
    rep->bad_seq = seq;
}

/* Walks the chain in sequence order; stops at the first problem. */
static ck_err walk(struct ck_audit *a, struct ck_audit_report *rep, int64_t *last_seq,
                   uint8_t last_mac[32])
{
    struct ck_stmt *st;
    CK_TRY(ck_stmt_prepare(a->store, &st,
                           "SELECT seq, ts, principal, operation, target, result, request_id, "
                           "detail, mac FROM ck_audit ORDER BY seq",
                           ""));
    uint8_t prev[32] = {0};
    int64_t expect = 1;
    bool row;
    ck_err rc;
    while ((rc = ck_stmt_step(st, &row)) == CK_OK && row) {
        int64_t seq = ck_stmt_int(st, 0);
        rep->checked++;
        if (seq != expect) {
            fail(rep, expect, "record %lld is %s (the sequence jumps)", (long long)expect,
                 seq > expect ? "missing" : "duplicated");
            break;
        }
        const char *fields[6];
        for (int i = 0; i < 6; i++)
            fields[i] = ck_stmt_text(st, 2 + i) ? ck_stmt_text(st, 2 + i) : "";
        uint8_t mac[32];
        size_t mn;
        const void *stored = ck_stmt_blob(st, 8, &mn);
        CK_GUARD(record_mac(a, prev, seq, ck_stmt_int(st, 1), fields, mac));
        if (mn != 32 || !ck_ct_equal(stored, mac, 32)) {
            fail(rep, seq, "record %lld does not match its MAC: edited, inserted or re-ordered",
                 (long long)seq);
            break;
        }
        memcpy(prev, mac, 32);
        expect++;
    }
out:
    ck_stmt_finalize(st);
    *last_seq = expect - 1;
    memcpy(last_mac, prev, 32);
    return rc;
}

ck_err ck_audit_verify(struct ck_audit *a, struct ck_audit_report *rep)
{
    memset(rep, 0, sizeof *rep);
    rep->ok = true;
    int64_t last_seq, head_seq;
    uint8_t last_mac[32], hmac_stored[32], head_last[32], hm[32];
    bool present;
    CK_TRY(walk(a, rep, &last_seq, last_mac));
    if (!rep->ok)
        return CK_OK;
    CK_TRY(read_head(a, &head_seq, head_last, hmac_stored, &present));
    if (!present) {
        if (last_seq > 0)
            fail(rep, 0, "the log head is missing (%lld records)", (long long)last_seq);
        return CK_OK;
    }
    CK_TRY(head_mac(a, head_seq, head_last, hm));
    if (!ck_ct_equal(hm, hmac_stored, 32))
        fail(rep, 0, "the log head was edited");
    else if (head_seq != last_seq || !ck_ct_equal(head_last, last_mac, 32))
        fail(rep, last_seq + 1, "records after %lld are missing: the head names record %lld",
             (long long)last_seq, (long long)head_seq);
    return CK_OK;
}
