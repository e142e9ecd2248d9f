/*
 * data.c — chunked encrypted files: the streaming writer and reader, delete
 * and list.
 *
 * A version of a file is a ck_file row (state 'writing' until commit, then
 * 'current') and its ck_chunk rows. Each chunk has its own random key,
 * wrapped (AES-KWP) under the site key, and its bytes are AES-256-GCM with a
 * random 96-bit nonce and associated data
 *   "ckey-file/v1" \0 tenant \0 site_id \0 path \0 version \0 index
 * (decimal numbers), so a chunk moved to another file, version or position
 * fails its tag check. The writer keeps one chunk of plaintext (locked
 * memory) and inserts each full chunk as its own statement: memory stays
 * flat and no transaction spans the upload. Commit is one transaction that
 * makes the new version current and deletes the previous one; abort deletes
 * the partial rows. A writer open when its geo is marked for purge fails at
 * its next chunk or its commit (CK_EGONE): a chunk is stored only while its
 * version's row exists and its geo is not Purging, so no chunk outlives the
 * purge batch of its site.
 */
#include "files/files_internal.h"
#include "crypto/crypto.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static ck_err check_path(const char *path)
{
    size_t n = path ? strlen(path) : 0;
    if (n == 0 || n > 1024)
        return ck_err_set(CK_EINVAL, "a file path must have 1 to 1024 bytes");
    const char *seg = path;
    for (size_t i = 0; i <= n; i++) {
        unsigned char c = (unsigned char)path[i];
        if (c && (c < 0x20 || c == 0x7f))
            return ck_err_set(CK_EINVAL, "a file path must not hold control characters");
        if (c == '/' || c == 0) {
            size_t len = (size_t)(path + i - seg);
            if (len == 0 || (len == 1 && seg[0] == '.') ||
                (len == 2 && seg[0] == '.' && seg[1] == '.'))
                return ck_err_set(CK_EINVAL,
                                  "'%.300s' is not a file path: segments separated by '/', none "
                                  "empty, '.' or '..'",
                                  path);
            seg = path + i + 1;
        }
    }
    return CK_OK;
}

static ck_err chunk_aad(const char *tenant, const char *site_id, const char *path, int64_t version,
                        int64_t idx, struct ck_buf *aad)
{
    char num[2][24];
    snprintf(num[0], sizeof num[0], "%lld", (long long)version);
    snprintf(num[1], sizeof num[1], "%lld", (long long)idx);
    const char *parts[] = {"ckey-file/v1", tenant, site_id, path, num[0], num[1]};
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) {
        if (i)
            CK_TRY(ck_buf_append(aad, "", 1)); /* the NUL separator */
        CK_TRY(ck_buf_append(aad, parts[i], strlen(parts[i])));
    }
    return CK_OK;
}

/* ---------- writer ---------- */

struct ck_file_writer {
    struct ck_files *f;
    char tenant[37], site_id[37], file_id[37];
    char path[1025];
    int64_t version, size, chunks;
    size_t chunk_size;
    struct ck_secret site_key;
    struct ck_secret buf; /* one chunk of plaintext; buf.n is its capacity */
    struct ck_buf ct;     /* one chunk of ciphertext, reused */
    size_t fill;
    bool failed;
};

static void delete_version(struct ck_files *f, const char *file_id)
{
    if (ck_store_run(f->store, NULL, "DELETE FROM ck_chunk WHERE file_id = ?", "t", file_id) !=
            CK_OK ||
        ck_store_run(f->store, NULL, "DELETE FROM ck_file WHERE id = ? AND state = 'writing'", "t",
                     file_id) != CK_OK)
        ck_log(CK_LOG_WARN, "could not delete an unfinished file version", "file", file_id, NULL);
}

ck_err ck_file_writer_open(struct ck_files *f, const char *tenant, const char *site,
                           const char *path, size_t chunk_size, struct ck_file_writer **out)
{
    CK_TRY(check_path(path));
    if (chunk_size == 0)
        chunk_size = f->chunk_size;
    if (chunk_size < CK_FILES_CHUNK_MIN || chunk_size > CK_FILES_CHUNK_MAX)
        return ck_err_set(CK_EINVAL, "the chunk size must be between %u and %u bytes",
                          CK_FILES_CHUNK_MIN, CK_FILES_CHUNK_MAX);
    struct files_site_row r;
    CK_TRY(files_site_load(f, tenant, site, &r));
    struct ck_file_writer *w = ck_xcalloc(1, sizeof *w);
    w->f = f;
    w->chunk_size = chunk_size;
    snprintf(w->tenant, sizeof w->tenant, "%s", r.site.tenant);
    snprintf(w->site_id, sizeof w->site_id, "%s", r.site.id);
    snprintf(w->path, sizeof w->path, "%s", path);
    ck_err rc;
    CK_GUARD(files_site_key(f, &r, &w->site_key));
    CK_GUARD(ck_secret_alloc(&w->buf, chunk_size));
    CK_GUARD(ck_buf_alloc(&w->ct, chunk_size));
    CK_GUARD(ck_uuid_v4(w->file_id));
    /* The version: one above any row of this path, writing ones included; a
     * racing writer that took the same number makes us try again. */
    for (int attempt = 0; attempt < 8; attempt++) {
        struct ck_stmt *st;
        CK_GUARD(ck_stmt_prepare(f->store, &st,
                                 "SELECT COALESCE(MAX(version), 0) FROM ck_file WHERE site_id = "
                                 "? AND path = ?",
                                 "tt", w->site_id, path));
        bool row;
        rc = ck_stmt_step(st, &row);
        w->version = rc == CK_OK && row ? ck_stmt_int(st, 0) + 1 : 1;
        ck_stmt_finalize(st);
        CK_GUARD(rc);
        rc = ck_store_run(f->store, NULL,
                          "INSERT INTO ck_file (id, tenant, site_id, path, version, size, "
                          "chunk_size, chunks, state, created) VALUES (?,?,?,?,?,0,?,0,"
                          "'writing',?)",
                          "ttttiii", w->file_id, w->tenant, w->site_id, path, w->version,
                          (int64_t)chunk_size, ck_now());
        if (rc != CK_ECONFLICT)
            break;
    }
out:
    ck_buf_free(&r.wrapped_key);
    if (rc != CK_OK) {
        ck_secret_free(&w->site_key);
        ck_secret_free(&w->buf);
        ck_buf_free(&w->ct);
        free(w);
        return rc;
    }
    *out = w;
    return CK_OK;
}

/* Encrypts and stores the buffered bytes as chunk number w->chunks. */
static ck_err flush_chunk(struct ck_file_writer *w)
{
    struct ck_secret ck = {0};
    struct ck_buf wrapped = {0}, aad = {0};
    uint8_t nonce[CK_GCM_IV_LEN], tag[CK_GCM_TAG_LEN];
    ck_err rc;
    CK_GUARD(ck_secret_alloc(&ck, FILES_KEY_LEN));
    CK_GUARD(ck_rand_bytes(ck.p, ck.n));
    CK_GUARD(ck_rand_bytes(nonce, sizeof nonce));
    CK_GUARD(ck_aes_kwp_wrap(w->site_key.p, w->site_key.n, ck.p, ck.n, &wrapped));
    CK_GUARD(chunk_aad(w->tenant, w->site_id, w->path, w->version, w->chunks, &aad));
    CK_GUARD(ck_aes_gcm_encrypt(ck.p, ck.n, nonce, sizeof nonce, aad.p, aad.n, w->buf.p, w->fill,
                                w->ct.p, tag));
    int64_t changes = 0;
    CK_GUARD(ck_store_run(w->f->store, &changes,
                          "INSERT INTO ck_chunk (file_id, idx, wrapped_key, nonce, ct, tag) "
                          "SELECT ?,?,?,?,?,? WHERE EXISTS (SELECT 1 FROM ck_file fl JOIN "
                          "ck_site s ON s.id = fl.site_id JOIN ck_spo_dep p ON p.tenant = "
                          "s.tenant AND p.geo = s.geo WHERE fl.id = ? AND fl.state = 'writing' "
                          "AND p.state <> ? AND p.state <> ?)",
                          "tibbbbttt", w->file_id, w->chunks, wrapped.p, wrapped.n, nonce,
                          sizeof nonce, w->ct.p, w->fill, tag, sizeof tag, w->file_id,
                          ck_spo_state_name(CK_SPO_PURGING), ck_spo_state_name(CK_SPO_PURGED)));
    if (changes != 1) {
        /* The version's row is gone, or its geo marked for purge. */
        struct files_site_row r;
        rc = files_site_load(w->f, w->tenant, w->site_id, &r);
        ck_buf_free(&r.wrapped_key);
        if (rc == CK_OK)
            rc = ck_err_set(CK_ECONFLICT, "the new version of %s vanished before its commit",
                            w->path);
        goto out;
    }
    w->chunks++;
    w->size += (int64_t)w->fill;
    ck_wipe(w->buf.p, w->fill);
    w->fill = 0;
out:
    ck_secret_free(&ck);
    ck_buf_free(&wrapped);
    ck_buf_free(&aad);
    return rc;
}

ck_err ck_file_writer_write(struct ck_file_writer *w, const uint8_t *p, size_t n)
{
    if (!w)
        return ck_err_set(CK_EINVAL, "no file writer");
    if (w->failed)
        return ck_err_set(CK_ECONFLICT, "this file writer failed earlier; abort it");
    while (n > 0) {
        size_t take = w->chunk_size - w->fill;
        if (take > n)
            take = n;
        memcpy(w->buf.p + w->fill, p, take);
        w->fill += take;
        p += take;
        n -= take;
        if (w->fill == w->chunk_size) {
            ck_err rc = flush_chunk(w);
            if (rc != CK_OK) {
                w->failed = true;
                return rc;
            }
        }
    }
    return CK_OK;
}

static void writer_free(struct ck_file_writer *w)
{
    ck_secret_free(&w->site_key);
    ck_secret_free(&w->buf);
    ck_buf_free(&w->ct);
    free(w);
}

static ck_err fill_info_row(struct ck_stmt *st, void *elem, void *arg);

ck_err ck_file_writer_commit(struct ck_file_writer *w, struct ck_file_info *info)
{
    if (!w)
        return ck_err_set(CK_EINVAL, "no file writer");
    struct ck_files *f = w->f;
    ck_err rc = w->failed ? ck_err_set(CK_ECONFLICT, "this file writer failed earlier") : CK_OK;
    if (rc == CK_OK && w->fill > 0)
        rc = flush_chunk(w);
    bool began = false;
    if (rc == CK_OK)
        began = (rc = ck_store_begin(f->store)) == CK_OK;
    if (rc == CK_OK) {
        /* Not into a site whose geo was marked for purge meanwhile. */
        struct files_site_row r;
        rc = files_site_load(f, w->tenant, w->site_id, &r);
        ck_buf_free(&r.wrapped_key);
    }
    int64_t changes = 0;
    if (rc == CK_OK)
        rc = ck_store_run(f->store, &changes,
                          "UPDATE ck_file SET state = 'current', size = ?, chunks = ? WHERE id = "
                          "? AND state = 'writing'",
                          "iit", w->size, w->chunks, w->file_id);
    if (rc == CK_OK && changes != 1)
        rc = ck_err_set(CK_ECONFLICT, "the new version of %s vanished before its commit", w->path);
    if (rc == CK_OK)
        rc = ck_store_run(f->store, NULL,
                          "DELETE FROM ck_chunk WHERE file_id IN (SELECT id FROM ck_file WHERE "
                          "site_id = ? AND path = ? AND state = 'current' AND id <> ?)",
                          "ttt", w->site_id, w->path, w->file_id);
    if (rc == CK_OK)
        rc = ck_store_run(f->store, NULL,
                          "DELETE FROM ck_file WHERE site_id = ? AND path = ? AND state = "
                          "'current' AND id <> ?",
                          "ttt", w->site_id, w->path, w->file_id);
    if (rc == CK_OK)
        rc = ck_store_commit(f->store);
    if (rc != CK_OK) {
        if (began)
            ck_store_rollback(f->store);
        char saved[512];
        snprintf(saved, sizeof saved, "%s", ck_err_msg());
        delete_version(f, w->file_id);
        ck_err_set(rc, "%s", saved);
        writer_free(w);
        return rc;
    }
    if (info) {
        memset(info, 0, sizeof *info);
        snprintf(info->path, sizeof info->path, "%s", w->path);
        info->version = w->version;
        info->size = w->size;
        info->chunk_size = (uint32_t)w->chunk_size;
        info->chunks = w->chunks;
        info->created = ck_now();
    }
    writer_free(w);
    return CK_OK;
}

void ck_file_writer_abort(struct ck_file_writer *w)
{
    if (!w)
        return;
    delete_version(w->f, w->file_id);
    writer_free(w);
}

/* ---------- reader ---------- */

#define FILE_COLUMNS "path, version, size, chunk_size, chunks, created, id"

/* A ck_stmt_fill_fn: the file info from FILE_COLUMNS at column 0. */
static ck_err fill_info_row(struct ck_stmt *st, void *elem, void *arg)
{
    (void)arg;
    struct ck_file_info *info = elem;
    memset(info, 0, sizeof *info);
    snprintf(info->path, sizeof info->path, "%s", ck_stmt_text(st, 0));
    info->version = ck_stmt_int(st, 1);
    info->size = ck_stmt_int(st, 2);
    info->chunk_size = (uint32_t)ck_stmt_int(st, 3);
    info->chunks = ck_stmt_int(st, 4);
    info->created = ck_stmt_int(st, 5);
    return CK_OK;
}

struct ck_file_reader {
    struct ck_files *f;
    char tenant[37], site_id[37], file_id[37];
    struct ck_file_info info;
    struct ck_secret site_key;
    int64_t pos, end;
    int64_t loaded; /* index of the chunk in plain, -1 none */
    struct ck_secret plain;
};

static ck_err current_version(struct ck_files *f, const char *site_id, const char *path,
                              struct ck_file_info *info, char file_id[37])
{
    struct ck_stmt *st;
    CK_TRY(ck_stmt_prepare(f->store, &st,
                           "SELECT " FILE_COLUMNS " FROM ck_file WHERE site_id = ? AND path = ? "
                           "AND state = 'current'",
                           "tt", site_id, path));
    bool row;
    ck_err rc = ck_stmt_step(st, &row);
    if (rc == CK_OK && row) {
        fill_info_row(st, info, NULL);
        snprintf(file_id, 37, "%s", ck_stmt_text(st, 6));
    } else if (rc == CK_OK) {
        rc = ck_err_set(CK_ENOTFOUND, "no file '%.300s' in this site", path);
        ck_err_code("FileNotFound", NULL);
    }
    ck_stmt_finalize(st);
    return rc;
}

ck_err ck_file_reader_open(struct ck_files *f, const char *tenant, const char *site,
                           const char *path, int64_t offset, int64_t length,
                           struct ck_file_reader **out, struct ck_file_info *info)
{
    CK_TRY(check_path(path));
    struct files_site_row r;
    CK_TRY(files_site_load(f, tenant, site, &r));
    struct ck_file_reader *rd = ck_xcalloc(1, sizeof *rd);
    rd->f = f;
    rd->loaded = -1;
    snprintf(rd->tenant, sizeof rd->tenant, "%s", r.site.tenant);
    snprintf(rd->site_id, sizeof rd->site_id, "%s", r.site.id);
    ck_err rc;
    CK_GUARD(current_version(f, r.site.id, path, &rd->info, rd->file_id));
    int64_t size = rd->info.size;
    if (offset < 0 || length < 0 || offset > size || length > size - offset) {
        rc = ck_err_set(CK_EINVAL, "the range %lld+%lld is outside %s (%lld bytes)",
                        (long long)offset, (long long)length, path, (long long)size);
        goto out;
    }
    rd->pos = offset;
    rd->end = length ? offset + length : size;
    CK_GUARD(files_site_key(f, &r, &rd->site_key));
out:
    ck_buf_free(&r.wrapped_key);
    if (rc != CK_OK) {
        ck_file_reader_close(rd);
        return rc;
    }
    if (info)
        *info = rd->info;
    *out = rd;
    return CK_OK;
}

static ck_err load_chunk(struct ck_file_reader *rd, int64_t idx)
{
    ck_secret_free(&rd->plain);
    rd->loaded = -1;
    struct ck_stmt *st;
    CK_TRY(ck_stmt_prepare(rd->f->store, &st,
                           "SELECT wrapped_key, nonce, ct, tag FROM ck_chunk WHERE file_id = ? "
                           "AND idx = ?",
                           "ti", rd->file_id, idx));
    bool row;
    ck_err rc = ck_stmt_step(st, &row);
    struct ck_secret ck = {0};
    struct ck_buf aad = {0};
    if (rc == CK_OK && !row)
        rc = ck_err_set(CK_ECONFLICT,
                        "chunk %lld of %s is gone: the file was changed or deleted while being "
                        "read",
                        (long long)idx, rd->info.path);
    if (rc == CK_OK) {
        size_t wn, nn, cn, tn;
        const void *wk = ck_stmt_blob(st, 0, &wn), *nonce = ck_stmt_blob(st, 1, &nn);
        const void *ct = ck_stmt_blob(st, 2, &cn), *tag = ck_stmt_blob(st, 3, &tn);
        bool ok = ck_aes_kwp_unwrap(rd->site_key.p, rd->site_key.n, wk, wn, &ck) == CK_OK;
        if (ok)
            ok = (rc = chunk_aad(rd->tenant, rd->site_id, rd->info.path, rd->info.version, idx,
                                 &aad)) == CK_OK;
        if (ok && cn > 0)
            ok = (rc = ck_secret_alloc(&rd->plain, cn)) == CK_OK;
        else
            ok = false;
        if (ok && nn == CK_GCM_IV_LEN &&
            ck_aes_gcm_decrypt(ck.p, ck.n, nonce, nn, aad.p, aad.n, ct, cn, tag, tn, rd->plain.p) ==
                CK_OK)
            rd->loaded = idx;
        else if (rc == CK_OK)
            rc = CK_EINTEGRITY;
        /* A chunk must be exactly chunk_size long, but for the last one. */
        int64_t want = idx + 1 < rd->info.chunks
                           ? (int64_t)rd->info.chunk_size
                           : rd->info.size - idx * (int64_t)rd->info.chunk_size;
        if (rc == CK_OK && (int64_t)cn != want)
            rc = CK_EINTEGRITY;
        if (rc == CK_EINTEGRITY)
            ck_err_set(CK_EINTEGRITY, "chunk %lld of %s fails its integrity check", (long long)idx,
                       rd->info.path);
    }
    ck_stmt_finalize(st);
    ck_secret_free(&ck);
    ck_buf_free(&aad);
    if (rc != CK_OK) {
        ck_secret_free(&rd->plain);
        rd->loaded = -1;
    }
    return rc;
}

ck_err ck_file_reader_read(struct ck_file_reader *rd, uint8_t *buf, size_t max, size_t *got)
{
    *got = 0;
    if (!rd)
        return ck_err_set(CK_EINVAL, "no file reader");
    int64_t cs = rd->info.chunk_size;
    while (*got < max && rd->pos < rd->end) {
        int64_t idx = rd->pos / cs;
        if (rd->loaded != idx)
            CK_TRY(load_chunk(rd, idx));
        int64_t in = rd->pos - idx * cs;
        int64_t avail = (int64_t)rd->plain.n - in;
        int64_t want = rd->end - rd->pos;
        int64_t room = (int64_t)(max - *got);
        int64_t take = avail < want ? avail : want;
        if (take > room)
            take = room;
        if (take <= 0)
            return ck_err_set(CK_EINTEGRITY, "chunk %lld of %s fails its integrity check",
                              (long long)idx, rd->info.path);
        memcpy(buf + *got, rd->plain.p + in, (size_t)take);
        *got += (size_t)take;
        rd->pos += take;
    }
    return CK_OK;
}

void ck_file_reader_close(struct ck_file_reader *rd)
{
    if (!rd)
        return;
    ck_secret_free(&rd->plain);
    ck_secret_free(&rd->site_key);
    free(rd);
}

/* ---------- delete, list ---------- */

ck_err ck_file_delete(struct ck_files *f, const char *tenant, const char *site, const char *path)
{
    CK_TRY(check_path(path));
    struct files_site_row r;
    CK_TRY(files_site_load(f, tenant, site, &r));
    ck_buf_free(&r.wrapped_key);
    ck_err rc = ck_store_begin(f->store);
    CK_TRY(rc);
    int64_t changes = 0;
    rc = ck_store_run(f->store, NULL,
                      "DELETE FROM ck_chunk WHERE file_id IN (SELECT id FROM ck_file WHERE "
                      "site_id = ? AND path = ? AND state = 'current')",
                      "tt", r.site.id, path);
    if (rc == CK_OK)
        rc = ck_store_run(f->store, &changes,
                          "DELETE FROM ck_file WHERE site_id = ? AND path = ? AND state = "
                          "'current'",
                          "tt", r.site.id, path);
    if (rc == CK_OK && changes == 0) {
        rc = ck_err_set(CK_ENOTFOUND, "no file '%.300s' in this site", path);
        ck_err_code("FileNotFound", NULL);
    }
    if (rc == CK_OK)
        return ck_store_commit(f->store);
    ck_store_rollback(f->store);
    return rc;
}

ck_err ck_file_list(struct ck_files *f, const char *tenant, const char *site,
                    struct ck_file_info **out, size_t *n)
{
    struct files_site_row r;
    CK_TRY(files_site_load(f, tenant, site, &r));
    ck_buf_free(&r.wrapped_key);
    struct ck_stmt *st;
    CK_TRY(ck_stmt_prepare(f->store, &st,
                           "SELECT " FILE_COLUMNS " FROM ck_file WHERE site_id = ? AND state = "
                           "'current' ORDER BY path",
                           "t", r.site.id));
    void *v;
    CK_TRY(ck_stmt_collect(st, sizeof **out, fill_info_row, NULL, NULL, &v, n));
    *out = v;
    return CK_OK;
}
