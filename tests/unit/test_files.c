/* Unit tests for src/files on real SQLite stores, with no key provider:
 * geos, sites, the service-managed TIK, chunked files (round trips, ranges,
 * overwrite, abort, delete, path rules), integrity (a flipped byte, a chunk
 * moved to another file), the files.rewrap job step (driven on two
 * service-managed TIKs), registration refused without a key provider, its
 * audit record, and a writer whose memory stays flat for a large file.
 * Registration and rolls against a real vault are integration tests
 * (tests/integration/test_files.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "audit/audit.h"
#include "files/files.h"
#include "jobs/jobs.h"
#include "store/store.h"

#define TENANT "6f1c1d2e-1111-4222-8333-444455556666"
#define CHUNK (64u << 10)

struct fx {
    char dir[64];
    struct ck_store *s, *avail;
    struct ck_secret master, avail_master;
    struct ck_jobs *jobs;
    struct ck_audit *audit;
    struct ck_files *f;
    struct ck_site site;
};

static int setup(void **state)
{
    struct fx *x = calloc(1, sizeof *x);
    snprintf(x->dir, sizeof x->dir, "/tmp/ck_files_XXXXXX");
    if (!mkdtemp(x->dir))
        return -1;
    char *a = ck_sprintf("%s/main.db", x->dir), *b = ck_sprintf("%s/avail.db", x->dir);
    int bad = ck_store_open(a, &x->s) != CK_OK || ck_store_open(b, &x->avail) != CK_OK;
    free(a);
    free(b);
    if (bad || ck_secret_alloc(&x->master, 32) != CK_OK ||
        ck_secret_alloc(&x->avail_master, 32) != CK_OK)
        return -1;
    memset(x->master.p, 1, 32);
    memset(x->avail_master.p, 2, 32);
    if (ck_jobs_open(x->s, &x->jobs) != CK_OK || ck_audit_open(x->s, &x->master, &x->audit))
        return -1;
    struct ck_files_config cfg = {.store = x->s,
                                  .availability_store = x->avail,
                                  .master_key = &x->master,
                                  .availability_master_key = &x->avail_master,
                                  .jobs = x->jobs,
                                  .audit = x->audit,
                                  .chunk_size = CHUNK};
    if (ck_files_open(&cfg, &x->f) != CK_OK)
        return -1;
    if (ck_geo_add(x->f, TENANT, "EUR") != CK_OK ||
        ck_site_new(x->f, TENANT, "EUR", "/sites/team", &x->site) != CK_OK)
        return -1;
    *state = x;
    return 0;
}

static int teardown(void **state)
{
    struct fx *x = *state;
    ck_files_close(x->f);
    ck_audit_close(x->audit);
    ck_jobs_close(x->jobs);
    ck_store_close(x->s);
    ck_store_close(x->avail);
    ck_secret_free(&x->master);
    ck_secret_free(&x->avail_master);
    char *cmd = ck_sprintf("rm -rf '%s'", x->dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", x->dir);
    free(cmd);
    free(x);
    return 0;
}

/* ---------- helpers ---------- */

static uint8_t *pattern(size_t n, unsigned seed)
{
    uint8_t *p = malloc(n ? n : 1);
    uint32_t v = seed * 2654435761u + 1;
    for (size_t i = 0; i < n; i++) {
        v = v * 1103515245u + 12345u;
        p[i] = (uint8_t)(v >> 16);
    }
    return p;
}

static ck_err put(struct fx *x, const char *path, const uint8_t *p, size_t n,
                  struct ck_file_info *info)
{
    struct ck_file_writer *w;
    CK_TRY(ck_file_writer_open(x->f, TENANT, x->site.path, path, 0, &w));
    /* Uneven pieces, so that writes straddle chunk boundaries. */
    for (size_t off = 0; off < n;) {
        size_t k = n - off < 7777 ? n - off : 7777;
        ck_err rc = ck_file_writer_write(w, p + off, k);
        if (rc != CK_OK) {
            ck_file_writer_abort(w);
            return rc;
        }
        off += k;
    }
    return ck_file_writer_commit(w, info);
}

/* Reads [off, off+len) (len 0 = to the end) into a malloc'd buffer. */
static ck_err get(struct fx *x, const char *path, int64_t off, int64_t len, uint8_t **out,
                  size_t *n)
{
    struct ck_file_reader *r;
    struct ck_file_info info;
    CK_TRY(ck_file_reader_open(x->f, TENANT, x->site.path, path, off, len, &r, &info));
    size_t cap = (size_t)info.size + 1, total = 0;
    uint8_t *buf = malloc(cap);
    ck_err rc;
    for (;;) {
        size_t got;
        rc = ck_file_reader_read(r, buf + total, cap - total < 5000 ? cap - total : 5000, &got);
        if (rc != CK_OK || got == 0)
            break;
        total += got;
    }
    ck_file_reader_close(r);
    if (rc != CK_OK) {
        free(buf);
        return rc;
    }
    *out = buf;
    *n = total;
    return CK_OK;
}

static int64_t count(struct fx *x, const char *sql)
{
    struct ck_stmt *st;
    assert_int_equal(ck_stmt_prepare(x->s, &st, sql, ""), CK_OK);
    bool row;
    assert_int_equal(ck_stmt_step(st, &row), CK_OK);
    int64_t v = ck_stmt_int(st, 0);
    ck_stmt_finalize(st);
    return v;
}

/* ---------- geos and sites ---------- */

static void test_geos_and_sites(void **state)
{
    struct fx *x = *state;
    assert_int_equal(ck_geo_add(x->f, TENANT, "EUR"), CK_ECONFLICT);
    assert_int_equal(ck_geo_add(x->f, TENANT, "eur"), CK_EINVAL);
    assert_int_equal(ck_geo_add(x->f, TENANT, "E"), CK_EINVAL);
    assert_int_equal(ck_geo_add(x->f, TENANT, "ABCDEFGHI"), CK_EINVAL);
    assert_int_equal(ck_geo_add(x->f, TENANT, "NAM"), CK_OK);
    char(*geos)[9];
    size_t n;
    assert_int_equal(ck_geo_list(x->f, TENANT, &geos, &n), CK_OK);
    assert_int_equal(n, 2);
    assert_string_equal(geos[0], "EUR");
    assert_string_equal(geos[1], "NAM");
    free(geos);

    struct ck_site s;
    assert_int_equal(ck_site_new(x->f, TENANT, "EUR", "/sites/team", &s), CK_ECONFLICT);
    assert_int_equal(ck_site_new(x->f, TENANT, "APC", "/sites/other", &s), CK_ENOTFOUND);
    const char *bad[] = {"/sites/", "sites/x", "/sites/a/b", "/sites/a b", "/site/x", ""};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(ck_site_new(x->f, TENANT, "EUR", bad[i], &s), CK_EINVAL);
    char longname[200] = "/sites/";
    memset(longname + 7, 'a', 129);
    assert_int_equal(ck_site_new(x->f, TENANT, "EUR", longname, &s), CK_EINVAL);
    longname[7 + 128] = '\0';
    assert_int_equal(ck_site_new(x->f, TENANT, "NAM", longname, &s), CK_OK);
    assert_string_equal(s.geo, "NAM");

    assert_int_equal(ck_site_get(x->f, TENANT, "/sites/team", &s), CK_OK);
    assert_string_equal(s.id, x->site.id);
    assert_string_equal(s.tenant, TENANT);
    assert_int_equal(ck_site_get(x->f, "another-tenant", "/sites/team", &s), CK_ENOTFOUND);
    struct ck_site *v;
    assert_int_equal(ck_site_list(x->f, TENANT, &v, &n), CK_OK);
    assert_int_equal(n, 2);
    free(v);

    /* A site key is wrapped under the geo's current (service-managed) TIK. */
    struct ck_spo_dep d;
    assert_int_equal(ck_spo_get(x->f, TENANT, "EUR", &d), CK_OK);
    assert_int_equal(d.state, CK_SPO_UNREGISTERED);
    assert_string_equal(ck_spo_state_name(d.state), "Unregistered");
    assert_string_equal(d.tik_id, x->site.tik_id);
    assert_int_equal(d.percent, 100);
    assert_string_equal(d.primary_uri, "");
    assert_string_equal(d.job_id, "");
    assert_int_equal(ck_spo_get(x->f, TENANT, "APC", &d), CK_ENOTFOUND);
}

/* ---------- the policy without a key provider ---------- */

static void test_register_without_keyprov(void **state)
{
    struct fx *x = *state;
    struct ck_spo_dep d;
    ck_err rc = ck_spo_register(x->f, TENANT, "EUR", "https://a.vault.localhost/keys/k1",
                                "https://b.vault.localhost/keys/k2", "req-1", &d);
    assert_int_equal(rc, CK_EINVAL);
    assert_non_null(strstr(ck_err_msg(), "no key provider"));
    assert_int_equal(ck_spo_register(x->f, TENANT, "APC", "https://a.vault.localhost/keys/k1",
                                     "https://b.vault.localhost/keys/k2", "req-2", &d),
                     CK_ENOTFOUND);
    assert_int_equal(
        ck_spo_update(x->f, TENANT, "EUR", true, "https://a.vault.localhost/keys/k3", "req-3", &d),
        CK_ECONFLICT);
    assert_int_equal(ck_spo_restore(x->f, TENANT, "EUR", "https://a.vault.localhost/keys/k1",
                                    "https://b.vault.localhost/keys/k2", "req-4", &d),
                     CK_ECONFLICT);
    assert_int_equal(ck_spo_get(x->f, TENANT, "EUR", &d), CK_OK);
    assert_int_equal(d.state, CK_SPO_UNREGISTERED);
    assert_int_equal(count(x, "SELECT COUNT(*) FROM ck_tik"), 1);

    /* Audited, without key material. */
    struct ck_audit_record *recs;
    size_t n;
    assert_int_equal(ck_audit_list(x->audit, 0, 100, &recs, &n), CK_OK);
    bool seen = false;
    for (size_t i = 0; i < n; i++)
        if (strcmp(recs[i].operation, "spo.register") == 0 &&
            strcmp(recs[i].request_id, "req-1") == 0) {
            seen = true;
            assert_string_equal(recs[i].result, "EINVAL");
            assert_string_equal(recs[i].target, TENANT "/EUR");
        }
    ck_audit_records_free(recs, n);
    assert_true(seen);
}

/* ---------- files ---------- */

static void test_round_trip_and_ranges(void **state)
{
    struct fx *x = *state;
    size_t n = 3 * CHUNK + 1234;
    uint8_t *data = pattern(n, 1);
    struct ck_file_info info;
    assert_int_equal(put(x, "docs/report.bin", data, n, &info), CK_OK);
    assert_int_equal(info.version, 1);
    assert_int_equal(info.size, (int64_t)n);
    assert_int_equal(info.chunks, 4);
    assert_int_equal(info.chunk_size, CHUNK);
    assert_int_equal(count(x, "SELECT COUNT(*) FROM ck_chunk"), 4);
    /* Nothing in clear: the first plaintext bytes appear in no chunk. */
    struct ck_stmt *st;
    assert_int_equal(ck_stmt_prepare(x->s, &st, "SELECT ct FROM ck_chunk", ""), CK_OK);
    bool row;
    while (ck_stmt_step(st, &row) == CK_OK && row) {
        size_t cn;
        const uint8_t *ct = ck_stmt_blob(st, 0, &cn);
        assert_null(memmem(ct, cn, data, 32));
    }
    ck_stmt_finalize(st);

    uint8_t *back;
    size_t got;
    assert_int_equal(get(x, "docs/report.bin", 0, 0, &back, &got), CK_OK);
    assert_int_equal(got, n);
    assert_memory_equal(back, data, n);
    free(back);

    /* Ranges within a chunk, across chunks, at the end. */
    int64_t ranges[][2] = {
        {0, 1},         {CHUNK - 10, 20}, {5, 2 * CHUNK + 100}, {(int64_t)n - 1, 1},
        {3 * CHUNK, 0}, {(int64_t)n, 0}};
    for (size_t i = 0; i < sizeof ranges / sizeof ranges[0]; i++) {
        assert_int_equal(get(x, "docs/report.bin", ranges[i][0], ranges[i][1], &back, &got), CK_OK);
        size_t want = ranges[i][1] ? (size_t)ranges[i][1] : n - (size_t)ranges[i][0];
        assert_int_equal(got, want);
        assert_memory_equal(back, data + ranges[i][0], want);
        free(back);
    }
    struct ck_file_reader *r;
    assert_int_equal(ck_file_reader_open(x->f, TENANT, x->site.path, "docs/report.bin",
                                         (int64_t)n + 1, 0, &r, &info),
                     CK_EINVAL);
    assert_int_equal(ck_file_reader_open(x->f, TENANT, x->site.path, "docs/report.bin", 10,
                                         (int64_t)n, &r, &info),
                     CK_EINVAL);
    assert_int_equal(
        ck_file_reader_open(x->f, TENANT, x->site.path, "docs/report.bin", -1, 0, &r, &info),
        CK_EINVAL);
    assert_int_equal(
        ck_file_reader_open(x->f, TENANT, x->site.path, "docs/none.bin", 0, 0, &r, &info),
        CK_ENOTFOUND);
    /* By site id too. */
    assert_int_equal(
        ck_file_reader_open(x->f, TENANT, x->site.id, "docs/report.bin", 0, 0, &r, &info), CK_OK);
    ck_file_reader_close(r);

    /* Exactly one chunk, and an empty file. */
    assert_int_equal(put(x, "one", data, CHUNK, &info), CK_OK);
    assert_int_equal(info.chunks, 1);
    assert_int_equal(get(x, "one", 0, 0, &back, &got), CK_OK);
    assert_int_equal(got, CHUNK);
    assert_memory_equal(back, data, CHUNK);
    free(back);
    assert_int_equal(put(x, "empty", data, 0, &info), CK_OK);
    assert_int_equal(info.size, 0);
    assert_int_equal(info.chunks, 0);
    assert_int_equal(get(x, "empty", 0, 0, &back, &got), CK_OK);
    assert_int_equal(got, 0);
    free(back);
    free(data);
}

static void test_overwrite_abort_delete_list(void **state)
{
    struct fx *x = *state;
    uint8_t *a = pattern(2 * CHUNK + 5, 2), *b = pattern(CHUNK / 2, 3);
    struct ck_file_info info;
    assert_int_equal(put(x, "f.txt", a, 2 * CHUNK + 5, &info), CK_OK);
    assert_int_equal(put(x, "f.txt", b, CHUNK / 2, &info), CK_OK);
    assert_int_equal(info.version, 2);
    assert_int_equal(count(x, "SELECT COUNT(*) FROM ck_file"), 1);
    assert_int_equal(count(x, "SELECT COUNT(*) FROM ck_chunk"), 1);
    uint8_t *back;
    size_t got;
    assert_int_equal(get(x, "f.txt", 0, 0, &back, &got), CK_OK);
    assert_int_equal(got, CHUNK / 2);
    assert_memory_equal(back, b, got);
    free(back);

    /* An unfinished write is invisible; abort leaves nothing behind. */
    struct ck_file_writer *w;
    assert_int_equal(ck_file_writer_open(x->f, TENANT, x->site.path, "f.txt", 0, &w), CK_OK);
    assert_int_equal(ck_file_writer_write(w, a, 2 * CHUNK + 5), CK_OK);
    assert_int_equal(count(x, "SELECT COUNT(*) FROM ck_chunk"), 3);
    assert_int_equal(get(x, "f.txt", 0, 0, &back, &got), CK_OK);
    assert_int_equal(got, CHUNK / 2);
    assert_memory_equal(back, b, got);
    free(back);
    ck_file_writer_abort(w);
    ck_file_writer_abort(NULL);
    assert_int_equal(count(x, "SELECT COUNT(*) FROM ck_chunk"), 1);
    assert_int_equal(count(x, "SELECT COUNT(*) FROM ck_file"), 1);
    /* A new file aborted: no row at all. */
    assert_int_equal(ck_file_writer_open(x->f, TENANT, x->site.path, "g.txt", 0, &w), CK_OK);
    assert_int_equal(ck_file_writer_write(w, a, CHUNK + 1), CK_OK);
    ck_file_writer_abort(w);
    assert_int_equal(count(x, "SELECT COUNT(*) FROM ck_file"), 1);

    assert_int_equal(put(x, "a/b/c.txt", a, 10, &info), CK_OK);
    struct ck_file_info *v;
    size_t n;
    assert_int_equal(ck_file_list(x->f, TENANT, x->site.path, &v, &n), CK_OK);
    assert_int_equal(n, 2);
    assert_string_equal(v[0].path, "a/b/c.txt");
    assert_string_equal(v[1].path, "f.txt");
    assert_int_equal(v[1].version, 2);
    assert_int_equal(v[1].size, CHUNK / 2);
    free(v);

    assert_int_equal(ck_file_delete(x->f, TENANT, x->site.path, "f.txt"), CK_OK);
    assert_int_equal(ck_file_delete(x->f, TENANT, x->site.path, "f.txt"), CK_ENOTFOUND);
    assert_int_equal(get(x, "f.txt", 0, 0, &back, &got), CK_ENOTFOUND);
    assert_int_equal(count(x, "SELECT COUNT(*) FROM ck_chunk"), 1);
    assert_int_equal(ck_file_list(x->f, TENANT, x->site.path, &v, &n), CK_OK);
    assert_int_equal(n, 1);
    free(v);
    assert_int_equal(ck_file_list(x->f, TENANT, "/sites/none", &v, &n), CK_ENOTFOUND);
    free(a);
    free(b);
}

static void test_paths_and_chunk_sizes(void **state)
{
    struct fx *x = *state;
    struct ck_file_writer *w;
    char big[1100];
    memset(big, 'a', sizeof big);
    big[1025] = '\0';
    const char *bad[] = {"", "/a", "a/", "a//b", "./a", "a/..", "a/./b", "a\nb", "a\x7f", big};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(ck_file_writer_open(x->f, TENANT, x->site.path, bad[i], 0, &w), CK_EINVAL);
    big[1024] = '\0';
    const char *good[] = {"a", "a/b", "..a/b..", "é/ü x", big};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        assert_int_equal(ck_file_writer_open(x->f, TENANT, x->site.path, good[i], 0, &w), CK_OK);
        ck_file_writer_abort(w);
    }
    assert_int_equal(
        ck_file_writer_open(x->f, TENANT, x->site.path, "a", CK_FILES_CHUNK_MIN - 1, &w),
        CK_EINVAL);
    assert_int_equal(
        ck_file_writer_open(x->f, TENANT, x->site.path, "a", CK_FILES_CHUNK_MAX + 1, &w),
        CK_EINVAL);
    assert_int_equal(ck_file_writer_open(x->f, TENANT, "/sites/none", "a", 0, &w), CK_ENOTFOUND);
    /* A per-file chunk size is recorded and honoured. */
    uint8_t *d = pattern(300000, 9);
    assert_int_equal(ck_file_writer_open(x->f, TENANT, x->site.path, "big", 128u << 10, &w), CK_OK);
    assert_int_equal(ck_file_writer_write(w, d, 300000), CK_OK);
    struct ck_file_info info;
    assert_int_equal(ck_file_writer_commit(w, &info), CK_OK);
    assert_int_equal(info.chunk_size, 128u << 10);
    assert_int_equal(info.chunks, 3);
    uint8_t *back;
    size_t got;
    assert_int_equal(get(x, "big", 100000, 100000, &back, &got), CK_OK);
    assert_int_equal(got, 100000);
    assert_memory_equal(back, d + 100000, got);
    free(back);
    free(d);
}

/* ---------- integrity ---------- */

static void test_flipped_byte_fails(void **state)
{
    struct fx *x = *state;
    size_t n = 2 * CHUNK + 77;
    uint8_t *data = pattern(n, 4);
    assert_int_equal(put(x, "x/data.bin", data, n, NULL), CK_OK);
    /* Flip one byte of chunk 1's ciphertext. */
    struct ck_stmt *st;
    assert_int_equal(ck_stmt_prepare(x->s, &st, "SELECT ct FROM ck_chunk WHERE idx = 1", ""),
                     CK_OK);
    bool row;
    assert_int_equal(ck_stmt_step(st, &row), CK_OK);
    assert_true(row);
    size_t cn;
    const uint8_t *ct = ck_stmt_blob(st, 0, &cn);
    uint8_t *copy = malloc(cn);
    memcpy(copy, ct, cn);
    ck_stmt_finalize(st);
    copy[cn / 2] ^= 0x01;
    assert_int_equal(
        ck_store_run(x->s, NULL, "UPDATE ck_chunk SET ct = ? WHERE idx = 1", "b", copy, cn), CK_OK);
    free(copy);

    /* Chunk 0 still reads; reaching chunk 1 fails, never with wrong bytes. */
    uint8_t *back;
    size_t got;
    assert_int_equal(get(x, "x/data.bin", 0, CHUNK, &back, &got), CK_OK);
    assert_memory_equal(back, data, CHUNK);
    free(back);
    assert_int_equal(get(x, "x/data.bin", 0, 0, &back, &got), CK_EINTEGRITY);
    assert_string_equal(ck_err_msg(), "chunk 1 of x/data.bin fails its integrity check");
    struct ck_file_reader *r;
    assert_int_equal(
        ck_file_reader_open(x->f, TENANT, x->site.path, "x/data.bin", CHUNK + 5, 10, &r, NULL),
        CK_OK);
    uint8_t buf[16];
    memset(buf, 0, sizeof buf);
    assert_int_equal(ck_file_reader_read(r, buf, sizeof buf, &got), CK_EINTEGRITY);
    assert_int_equal(got, 0);
    ck_file_reader_close(r);
    free(data);
}

static void test_moved_chunk_fails(void **state)
{
    struct fx *x = *state;
    uint8_t *a = pattern(CHUNK + 10, 5), *b = pattern(CHUNK + 10, 6);
    assert_int_equal(put(x, "a.bin", a, CHUNK + 10, NULL), CK_OK);
    assert_int_equal(put(x, "b.bin", b, CHUNK + 10, NULL), CK_OK);
    /* Replace b's chunk 0 by a's: same site key, same index, other file. */
    assert_int_equal(ck_store_run(x->s, NULL,
                                  "DELETE FROM ck_chunk WHERE idx = 0 AND file_id = (SELECT id "
                                  "FROM ck_file WHERE path = ?)",
                                  "t", "b.bin"),
                     CK_OK);
    assert_int_equal(ck_store_run(x->s, NULL,
                                  "UPDATE ck_chunk SET file_id = (SELECT id FROM ck_file WHERE "
                                  "path = ?) WHERE idx = 0 AND file_id = (SELECT id FROM ck_file "
                                  "WHERE path = ?)",
                                  "tt", "b.bin", "a.bin"),
                     CK_OK);
    uint8_t *back;
    size_t got;
    assert_int_equal(get(x, "b.bin", 0, 0, &back, &got), CK_EINTEGRITY);
    assert_non_null(strstr(ck_err_msg(), "chunk 0 of b.bin"));
    /* Swapping two chunks of one file fails too (the index is bound). */
    assert_int_equal(put(x, "c.bin", a, CHUNK + 10, NULL), CK_OK);
    assert_int_equal(ck_store_run(x->s, NULL,
                                  "UPDATE ck_chunk SET idx = 11 - idx WHERE file_id = (SELECT "
                                  "id FROM ck_file WHERE path = ?)",
                                  "t", "c.bin"),
                     CK_OK);
    assert_int_equal(ck_store_run(x->s, NULL,
                                  "UPDATE ck_chunk SET idx = idx - 10 WHERE file_id = (SELECT id "
                                  "FROM ck_file WHERE path = ?)",
                                  "t", "c.bin"),
                     CK_OK);
    assert_int_equal(get(x, "c.bin", 0, 0, &back, &got), CK_EINTEGRITY);
    /* And an old version's chunk under a newer version number. */
    assert_int_equal(put(x, "d.bin", a, 100, NULL), CK_OK);
    assert_int_equal(
        ck_store_run(x->s, NULL, "UPDATE ck_file SET version = 7 WHERE path = ?", "t", "d.bin"),
        CK_OK);
    assert_int_equal(get(x, "d.bin", 0, 0, &back, &got), CK_EINTEGRITY);
    free(a);
    free(b);
}

/* ---------- the rewrap job ---------- */

/* Drives files.rewrap over 250 sites from the geo's service-managed TIK to
 * a second service-managed TIK made by adding another geo and moving its
 * TIK over: what registration does, without a vault. */
static void test_rewrap_job(void **state)
{
    struct fx *x = *state;
    uint8_t *d = pattern(CHUNK + 3, 7);
    assert_int_equal(put(x, "keep.bin", d, CHUNK + 3, NULL), CK_OK);
    char path[64];
    for (int i = 0; i < 249; i++) {
        snprintf(path, sizeof path, "/sites/s%03d", i);
        assert_int_equal(ck_site_new(x->f, TENANT, "EUR", path, NULL), CK_OK);
    }
    struct ck_spo_dep eur, tmp;
    assert_int_equal(ck_spo_get(x->f, TENANT, "EUR", &eur), CK_OK);
    assert_int_equal(ck_geo_add(x->f, TENANT, "TMP"), CK_OK);
    assert_int_equal(ck_spo_get(x->f, TENANT, "TMP", &tmp), CK_OK);
    assert_int_equal(
        ck_store_run(x->s, NULL, "UPDATE ck_tik SET geo = 'EUR' WHERE id = ?", "t", tmp.tik_id),
        CK_OK);
    assert_int_equal(ck_store_run(x->s, NULL, "DELETE FROM ck_spo_dep WHERE geo = 'TMP'", ""),
                     CK_OK);
    char job[37];
    assert_int_equal(ck_job_enqueue(x->jobs, CK_FILES_REWRAP_JOB, TENANT, TENANT "/EUR", job),
                     CK_OK);
    assert_int_equal(ck_store_run(x->s, NULL,
                                  "UPDATE ck_spo_dep SET state = 'Rolling', tik_id = ?, "
                                  "old_tik_id = ?, job_id = ? WHERE geo = 'EUR'",
                                  "ttt", tmp.tik_id, eur.tik_id, job),
                     CK_OK);
    struct ck_spo_dep d1;
    assert_int_equal(ck_spo_get(x->f, TENANT, "EUR", &d1), CK_OK);
    assert_int_equal(d1.state, CK_SPO_ROLLING);
    assert_int_equal(d1.percent, 0);
    assert_string_equal(d1.job_id, job);
    /* While rolling, a new site goes straight onto the target TIK, and
     * another roll is refused. */
    struct ck_site s;
    assert_int_equal(ck_site_new(x->f, TENANT, "EUR", "/sites/late", &s), CK_OK);
    assert_string_equal(s.tik_id, tmp.tik_id);
    assert_int_equal(
        ck_spo_update(x->f, TENANT, "EUR", true, "https://a.vault.localhost/keys/k", NULL, &d1),
        CK_ECONFLICT);

    assert_int_equal(ck_jobs_drain(x->jobs), CK_OK);
    struct ck_job *j;
    assert_int_equal(ck_job_get(x->jobs, job, &j), CK_OK);
    assert_int_equal(j->state, CK_JOB_DONE);
    assert_int_equal(j->done, 251);
    assert_int_equal(j->total, 251);
    ck_job_free(j);
    assert_int_equal(ck_spo_get(x->f, TENANT, "EUR", &d1), CK_OK);
    assert_int_equal(d1.state, CK_SPO_REGISTERED);
    assert_int_equal(d1.percent, 100);
    assert_string_equal(d1.job_id, "");
    assert_int_equal(count(x, "SELECT COUNT(*) FROM ck_tik"), 1);
    assert_int_equal(count(x, "SELECT COUNT(*) FROM ck_site WHERE tik_id <> (SELECT tik_id FROM "
                              "ck_spo_dep WHERE geo = 'EUR')"),
                     0);
    /* Files written before still read, through the rewrapped site key. */
    uint8_t *back;
    size_t got;
    assert_int_equal(get(x, "keep.bin", 0, 0, &back, &got), CK_OK);
    assert_int_equal(got, CHUNK + 3);
    assert_memory_equal(back, d, got);
    free(back);
    free(d);
}

/* ---------- the TIK cache ---------- */

/* A TIK whose roots cannot be reached is served from the cache until its
 * TTL runs out, a failed refresh-ahead included; then reads fail with
 * CK_EUNAVAIL and a clear message (never the availability key). Simulated
 * by turning the geo's TIK into a customer TIK with no key provider. */
static void test_tik_cache_expiry(void **state)
{
    struct fx *x = *state;
    struct ck_jobs *jobs;
    assert_int_equal(ck_jobs_open(x->s, &jobs), CK_OK);
    struct ck_files_config cfg = {.store = x->s,
                                  .availability_store = x->avail,
                                  .master_key = &x->master,
                                  .availability_master_key = &x->avail_master,
                                  .jobs = jobs,
                                  .tik_cache_ttl = 4,
                                  .tik_refresh_ahead = 2,
                                  .chunk_size = CHUNK};
    struct ck_files *f;
    assert_int_equal(ck_files_open(&cfg, &f), CK_OK);
    cfg.tik_refresh_ahead = 4;
    struct ck_files *f2;
    assert_int_equal(ck_files_open(&cfg, &f2), CK_EINVAL);
    uint8_t *d = pattern(100, 11);
    assert_int_equal(put(x, "c.bin", d, 100, NULL), CK_OK);
    struct ck_file_reader *r;
    /* Cached by this instance. */
    assert_int_equal(ck_file_reader_open(f, TENANT, x->site.path, "c.bin", 0, 0, &r, NULL), CK_OK);
    ck_file_reader_close(r);
    int64_t cached_at = ck_now_ms();
    assert_int_equal(ck_store_run(x->s, NULL, "UPDATE ck_tik SET service_managed = 0", ""), CK_OK);
    /* Inside the refresh-ahead window but within the TTL: the refresh fails
     * and the cached TIK is still served. On a machine so loaded that the
     * TTL passed already, that cannot be judged: only expiry is checked. */
    usleep(2200 * 1000);
    if (ck_now_ms() - cached_at < 3500) {
        assert_int_equal(ck_file_reader_open(f, TENANT, x->site.path, "c.bin", 0, 0, &r, NULL),
                         CK_OK);
        uint8_t buf[128];
        size_t got;
        assert_int_equal(ck_file_reader_read(r, buf, sizeof buf, &got), CK_OK);
        assert_int_equal(got, 100);
        assert_memory_equal(buf, d, 100);
        ck_file_reader_close(r);
    }
    /* Expired: the roots are needed and unreachable. */
    while (ck_now_ms() - cached_at < 4300)
        usleep(100 * 1000);
    assert_int_equal(ck_file_reader_open(f, TENANT, x->site.path, "c.bin", 0, 0, &r, NULL),
                     CK_EUNAVAIL);
    assert_non_null(strstr(ck_err_msg(), "the root keys of geo EUR are unreachable and the TIK "
                                         "cache has expired"));
    struct ck_file_writer *w;
    assert_int_equal(ck_file_writer_open(f, TENANT, x->site.path, "n.bin", 0, &w), CK_EUNAVAIL);
    ck_files_close(f);
    ck_jobs_close(jobs);
    free(d);
}

/* ---------- memory ---------- */

static long maxrss_kib(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

/* 64 MiB through 64 KiB chunks: the writer holds one chunk, not the file. */
static void test_writer_memory_flat(void **state)
{
    struct fx *x = *state;
    size_t piece = 1u << 20;
    uint8_t *p = pattern(piece, 8);
    struct ck_file_writer *w;
    assert_int_equal(ck_file_writer_open(x->f, TENANT, x->site.path, "huge.bin", 0, &w), CK_OK);
    assert_int_equal(ck_file_writer_write(w, p, piece), CK_OK); /* warm up */
    long before = maxrss_kib();
    for (int i = 1; i < 64; i++) {
        p[0] = (uint8_t)i;
        assert_int_equal(ck_file_writer_write(w, p, piece), CK_OK);
    }
    struct ck_file_info info;
    assert_int_equal(ck_file_writer_commit(w, &info), CK_OK);
    long grown = maxrss_kib() - before;
    assert_int_equal(info.size, 64 << 20);
    assert_int_equal(info.chunks, 1024);
    /* Far below the 64 MiB written (SQLite's page cache is the rest).
     * AddressSanitizer's quarantine keeps freed blocks resident: no
     * measure there. */
#if !defined(__SANITIZE_ADDRESS__)
    assert_true(grown < 16 * 1024);
#else
    (void)grown;
#endif
    /* Reading the last byte loads one chunk only. */
    uint8_t *back;
    size_t got;
    assert_int_equal(get(x, "huge.bin", (64 << 20) - 1, 1, &back, &got), CK_OK);
    assert_int_equal(got, 1);
    assert_int_equal(back[0], p[piece - 1]);
    free(back);
    free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_geos_and_sites, setup, teardown),
        cmocka_unit_test_setup_teardown(test_register_without_keyprov, setup, teardown),
        cmocka_unit_test_setup_teardown(test_round_trip_and_ranges, setup, teardown),
        cmocka_unit_test_setup_teardown(test_overwrite_abort_delete_list, setup, teardown),
        cmocka_unit_test_setup_teardown(test_paths_and_chunk_sizes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_flipped_byte_fails, setup, teardown),
        cmocka_unit_test_setup_teardown(test_moved_chunk_fails, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rewrap_job, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tik_cache_expiry, setup, teardown),
        cmocka_unit_test_setup_teardown(test_writer_memory_flat, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
