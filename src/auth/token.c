/*
 * token.c — bearer tokens: issue, check, revoke, list.
 *
 * A token is "ck_" followed by 256 random bits in base64url. Only its
 * SHA-256 is stored, so a copy of the database grants nothing. The row is
 * found by hash (an index lookup on a value the caller cannot steer), and
 * the fetched hash is compared again in constant time before it is trusted.
 */
#include "auth/auth.h"
#include "crypto/crypto.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TOKEN_PREFIX "ck_"

ck_err ck_token_issue(struct ck_store *s, const char *object_id, int64_t ttl, char **token,
                      struct ck_token_info *info)
{
    if (ttl <= 0 || ttl > CK_TOKEN_MAX_TTL)
        return ck_err_set(CK_EINVAL, "a token lifetime must be between 1 second and 366 days");
    uint8_t raw[32], hash[32];
    char *b64 = NULL;
    struct ck_token_info ti = {0};
    ck_err rc = ck_rand_bytes(raw, sizeof raw);
    if (rc == CK_OK)
        rc = ck_b64url_encode(raw, sizeof raw, &b64);
    ck_wipe(raw, sizeof raw);
    if (rc != CK_OK)
        return rc;
    char *tok = ck_sprintf(TOKEN_PREFIX "%s", b64);
    ck_wipe(b64, strlen(b64));
    free(b64);
    CK_GUARD(ck_sha256(tok, strlen(tok), hash));
    CK_GUARD(ck_uuid_v4(ti.id));
    snprintf(ti.object_id, sizeof ti.object_id, "%s", object_id);
    ti.created = ck_now();
    ti.expires = ti.created + ttl;
    rc = ck_store_run(s, NULL,
                      "INSERT INTO ck_token (id, hash, object_id, created, expires) "
                      "VALUES (?,?,?,?,?)",
                      "tbtii", ti.id, hash, sizeof hash, object_id, ti.created, ti.expires);
    if (rc == CK_ECONFLICT)
        rc = ck_err_set(CK_ENOTFOUND, "no principal with object id %s", object_id);
out:
    if (rc != CK_OK) {
        ck_wipe(tok, strlen(tok));
        free(tok);
        return rc;
    }
    *token = tok;
    if (info)
        *info = ti;
    return CK_OK;
}

/* Finds the token row; *object_id empty when not found. */
static ck_err lookup(struct ck_store *s, const char *token, struct ck_token_info *ti, bool *found)
{
    *found = false;
    size_t n = strlen(token);
    if (n < sizeof TOKEN_PREFIX || strncmp(token, TOKEN_PREFIX, strlen(TOKEN_PREFIX)) != 0 ||
        n > 128)
        return CK_OK;
    uint8_t hash[32];
    CK_TRY(ck_sha256(token, n, hash));
    struct ck_stmt *st;
    CK_TRY(ck_stmt_prepare(s, &st,
                           "SELECT id, object_id, created, expires, revoked, hash FROM ck_token "
                           "WHERE hash = ?",
                           "b", hash, sizeof hash));
    bool row;
    ck_err rc = ck_stmt_step(st, &row);
    if (rc == CK_OK && row) {
        size_t hn;
        const void *h = ck_stmt_blob(st, 5, &hn);
        if (hn == sizeof hash && ck_ct_equal(h, hash, sizeof hash)) {
            snprintf(ti->id, sizeof ti->id, "%s", ck_stmt_text(st, 0));
            snprintf(ti->object_id, sizeof ti->object_id, "%s", ck_stmt_text(st, 1));
            ti->created = ck_stmt_int(st, 2);
            ti->expires = ck_stmt_int(st, 3);
            ti->revoked = ck_stmt_int(st, 4);
            *found = true;
        }
    }
    ck_stmt_finalize(st);
    return rc;
}

static ck_err check(struct ck_store *s, const char *token, struct ck_token_info *ti)
{
    bool found;
    CK_TRY(lookup(s, token, ti, &found));
    if (!found)
        return ck_err_set(CK_EUNAUTH, "the bearer token is not valid");
    if (ti->revoked)
        return ck_err_set(CK_EUNAUTH, "the bearer token %s was revoked", ti->id);
    if (ti->expires <= ck_now())
        return ck_err_set(CK_EUNAUTH, "the bearer token %s has expired", ti->id);
    return CK_OK;
}

ck_err ck_token_check(struct ck_store *s, const char *token, struct ck_principal **out)
{
    struct ck_token_info ti;
    CK_TRY(check(s, token, &ti));
    ck_err rc = ck_principal_find(s, ti.object_id, out);
    if (rc == CK_ENOTFOUND)
        return ck_err_set(CK_EUNAUTH, "the bearer token's principal no longer exists");
    return rc;
}

ck_err ck_token_valid(struct ck_store *s, const char *token, bool *valid)
{
    struct ck_token_info ti;
    ck_err rc = check(s, token, &ti);
    *valid = rc == CK_OK;
    return rc == CK_EUNAUTH ? CK_OK : rc;
}

ck_err ck_token_revoke(struct ck_store *s, const char *id)
{
    int64_t changes = 0;
    CK_TRY(ck_store_run(s, &changes, "UPDATE ck_token SET revoked = ? WHERE id = ? AND revoked = 0",
                        "it", ck_now(), id));
    if (changes == 0) {
        struct ck_stmt *st;
        bool row = false;
        CK_TRY(ck_stmt_prepare(s, &st, "SELECT 1 FROM ck_token WHERE id = ?", "t", id));
        ck_err rc = ck_stmt_step(st, &row);
        ck_stmt_finalize(st);
        CK_TRY(rc);
        if (!row)
            return ck_err_set(CK_ENOTFOUND, "no token with id %s", id);
        /* Already revoked: revoking again is not an error. */
    }
    return CK_OK;
}

static ck_err token_fill(struct ck_stmt *st, void *elem, void *arg)
{
    (void)arg;
    struct ck_token_info *t = elem;
    snprintf(t->id, sizeof t->id, "%s", ck_stmt_text(st, 0));
    snprintf(t->object_id, sizeof t->object_id, "%s", ck_stmt_text(st, 1));
    t->created = ck_stmt_int(st, 2);
    t->expires = ck_stmt_int(st, 3);
    t->revoked = ck_stmt_int(st, 4);
    return CK_OK;
}

ck_err ck_token_list(struct ck_store *s, const char *object_id, struct ck_token_info **out,
                     size_t *n)
{
    struct ck_stmt *st;
    CK_TRY(ck_stmt_prepare(s, &st,
                           "SELECT id, object_id, created, expires, revoked FROM ck_token "
                           "WHERE CAST(? AS TEXT) IS NULL OR object_id = ? ORDER BY created, id",
                           "tt", object_id, object_id));
    void *v;
    CK_TRY(ck_stmt_collect(st, sizeof **out, token_fill, NULL, NULL, &v, n));
    *out = v;
    return CK_OK;
}
