/*
 * keys.c — the Azure Key Vault keys data plane, as the Azure SDK speaks it
 * (../shared/reference/azure-key-vault-api.md is the contract).
 *
 * The vault is the first label of the Host header ("contoso-a.vault.localhost"
 * → "contoso-a"); a bare IP or "localhost" addresses --default-vault. Every
 * call checks the vault's access policies for the caller (403 Forbidden /
 * AccessDenied naming principal, permission and vault) and writes an audit
 * record. kid, recoveryId and nextLink are built from the request's own
 * origin, so they work through whatever name and port the client used.
 * Every byte field is base64url without padding; input may carry padding.
 */
#include "api/api.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MAX_TAGS 15
#define DEFAULT_PAGE 25

/* The vault a request addresses and the caller's standing on it. */
struct target {
    struct ck_api *api;
    struct ck_vault *vault;
    const struct ck_principal *caller;
    const char *key;     /* the {name} path parameter, or NULL */
    const char *version; /* the {version} path parameter, or NULL */
};

static void target_free(struct target *t)
{
    ck_vault_free(t->vault);
    t->vault = NULL;
}

static bool is_ip_or_localhost(const char *host, size_t len)
{
    if (len == 9 && strncasecmp(host, "localhost", 9) == 0)
        return true;
    if (host[0] == '[')
        return true;
    for (size_t i = 0; i < len; i++)
        if (!isdigit((unsigned char)host[i]) && host[i] != '.')
            return false;
    return true;
}

/* The vault name from the Host header, into out. */
static ck_err vault_of_host(const struct ck_api *api, const char *host, char out[64])
{
    size_t len = strlen(host);
    const char *colon = host[0] == '[' ? strstr(host, "]:") : strrchr(host, ':');
    if (colon)
        len = (size_t)(colon - host) + (host[0] == '[' ? 1 : 0);
    if (len == 0 || is_ip_or_localhost(host, len)) {
        if (!api->default_vault)
            return ck_err_set(CK_ENOTFOUND,
                              "no vault is addressed: send requests to "
                              "https://NAME.%s:PORT, or start the server with --default-vault",
                              api->vault_suffix);
        snprintf(out, 64, "%s", api->default_vault);
        return CK_OK;
    }
    const char *dot = memchr(host, '.', len);
    size_t label = dot ? (size_t)(dot - host) : len;
    if (label == 0 || label > 24)
        return ck_err_set(CK_ENOTFOUND, "the host '%s' names no vault", host);
    snprintf(out, 64, "%.*s", (int)label, host);
    return CK_OK;
}

/* Resolves the vault and checks that the caller holds `perm` on it. */
static ck_err authorize(struct ck_http_req *req, enum ck_key_perm perm, const char *operation,
                        struct target *t)
{
    memset(t, 0, sizeof *t);
    t->api = req->ctx;
    t->caller = ck_api_caller(req);
    t->key = ck_http_param(req, "name");
    t->version = ck_http_param(req, "version");
    char name[64];
    CK_TRY(vault_of_host(t->api, req->host, name));
    ck_err rc = ck_vault_get(t->api->vaults, name, &t->vault);
    if (rc == CK_ENOTFOUND) {
        ck_err_set(CK_ENOTFOUND, "the vault '%s' does not exist", name);
        ck_err_code("VaultNotFound", NULL);
    }
    CK_TRY(rc);
    if (perm && !(ck_vault_permissions(t->vault, t->caller->object_id) & perm)) {
        ck_err_set(CK_EFORBIDDEN,
                   "The user, group or application '%s' (oid=%s;tid=%s) does not have keys %s "
                   "permission on key vault '%s;location=%s'. For help resolving this issue, "
                   "please see https://go.microsoft.com/fwlink/?linkid=2125287",
                   ck_principal_name(t->caller), t->caller->object_id, t->caller->tenant_id,
                   ck_perm_name(perm), t->vault->name, t->vault->location);
        ck_err_code("Forbidden", "AccessDenied");
        char *target = ck_sprintf("%s/%s", t->vault->name, t->key ? t->key : "-");
        ck_api_audit(t->api, req, operation, target, CK_EFORBIDDEN, ck_perm_name(perm));
        free(target);
        target_free(t);
        return CK_EFORBIDDEN;
    }
    return CK_OK;
}

static void audit(struct ck_http_req *req, struct target *t, const char *operation,
                  const char *version, ck_err result)
{
    char *target = ck_sprintf("%s/%s%s%s", t->vault->name, t->key ? t->key : "-",
                              version && *version ? "/" : "", version ? version : "");
    ck_api_audit(t->api, req, operation, target, result, NULL);
    free(target);
}

/* ---------- rendering ---------- */

static json_t *b64(const struct ck_buf *b)
{
    char *s;
    if (ck_b64url_encode(b->p, b->n, &s) != CK_OK)
        return json_null();
    json_t *j = json_string(s);
    free(s);
    return j;
}

static json_t *ops_json(unsigned ops)
{
    json_t *a = json_array();
    for (unsigned bit = 1; bit <= CK_OP_EXPORT; bit <<= 1)
        if (ops & bit)
            json_array_append_new(a, json_string(ck_key_op_name((enum ck_key_op)bit)));
    return a;
}

static json_t *attributes_json(const struct ck_key *k)
{
    json_t *a =
        json_pack("{s:b,s:I,s:I,s:i,s:s,s:b}", "enabled", k->enabled, "created",
                  (json_int_t)k->created, "updated", (json_int_t)k->updated, "recoverableDays",
                  k->recoverable_days, "recoveryLevel", k->recovery_level, "exportable", 0);
    if (k->nbf)
        json_object_set_new(a, "nbf", json_integer(k->nbf));
    if (k->exp)
        json_object_set_new(a, "exp", json_integer(k->exp));
    return a;
}

static void add_tags(json_t *o, const struct ck_key *k)
{
    json_t *tags = k->tags_json ? json_loads(k->tags_json, 0, NULL) : NULL;
    if (tags)
        json_object_set_new(o, "tags", tags);
}

static char *kid(const struct ck_http_req *req, const struct ck_key *k, bool versioned)
{
    return versioned ? ck_sprintf("%s/keys/%s/%s", req->origin, k->name, k->version)
                     : ck_sprintf("%s/keys/%s", req->origin, k->name);
}

static void add_deleted(json_t *o, const struct ck_http_req *req, const struct ck_key *k)
{
    if (!k->deleted)
        return;
    char *rid = ck_sprintf("%s/deletedkeys/%s", req->origin, k->name);
    json_object_set_new(o, "recoveryId", json_string(rid));
    json_object_set_new(o, "deletedDate", json_integer(k->deleted));
    json_object_set_new(o, "scheduledPurgeDate", json_integer(k->scheduled_purge));
    free(rid);
}

static json_t *bundle_json(const struct ck_http_req *req, const struct ck_key *k)
{
    char *id = kid(req, k, true);
    json_t *key = json_pack("{s:s,s:s,s:o,s:o,s:o}", "kid", id, "kty", k->kty, "key_ops",
                            ops_json(k->ops), "n", b64(&k->n), "e", b64(&k->e));
    free(id);
    json_t *o = json_pack("{s:o,s:o}", "key", key, "attributes", attributes_json(k));
    add_tags(o, k);
    add_deleted(o, req, k);
    return o;
}

static json_t *item_json(const struct ck_http_req *req, const struct ck_key *k, bool versioned)
{
    char *id = kid(req, k, versioned);
    json_t *o = json_pack("{s:s,s:o}", "kid", id, "attributes", attributes_json(k));
    free(id);
    add_tags(o, k);
    add_deleted(o, req, k);
    return o;
}

static ck_err send_bundle(struct ck_http_req *req, struct ck_http_resp *resp, struct ck_key *k)
{
    json_t *o = bundle_json(req, k);
    ck_key_free(k);
    return ck_http_ok(resp, o);
}

/* ---------- request parsing ---------- */

static ck_err parse_time(json_t *attrs, const char *field, bool *has, int64_t *out)
{
    json_t *v = json_object_get(attrs, field);
    if (!v || json_is_null(v))
        return CK_OK;
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return ck_err_set(CK_EINVAL, "attributes.%s must be Unix seconds", field);
    /* The SDK sends 0 for "not set". */
    *has = true;
    *out = json_integer_value(v);
    return CK_OK;
}

static ck_err parse_ops(json_t *ops, unsigned *out)
{
    if (!json_is_array(ops))
        return ck_err_set(CK_EINVAL, "key_ops must be an array of operation names");
    unsigned bits = 0;
    size_t i;
    json_t *x;
    json_array_foreach(ops, i, x)
    {
        unsigned bit;
        if (!json_is_string(x))
            return ck_err_set(CK_EINVAL, "key_ops must be an array of operation names");
        CK_TRY(ck_key_op_parse(json_string_value(x), &bit));
        bits |= bit;
    }
    *out = bits;
    return CK_OK;
}

/* key_ops, attributes and tags of a create, import or update body. The tags
 * text is malloc'd into *tags_text. */
static ck_err parse_props(json_t *body, struct ck_key_props *p, char **tags_text)
{
    memset(p, 0, sizeof *p);
    *tags_text = NULL;
    json_t *ops = json_object_get(body, "key_ops");
    if (ops && !json_is_null(ops)) {
        CK_TRY(parse_ops(ops, &p->ops));
        p->has_ops = true;
    }
    json_t *attrs = json_object_get(body, "attributes");
    if (attrs && !json_is_null(attrs)) {
        if (!json_is_object(attrs))
            return ck_err_set(CK_EINVAL, "attributes must be an object");
        CK_TRY(ck_json_bool(attrs, "enabled", false, &p->enabled, &p->has_enabled));
        CK_TRY(parse_time(attrs, "nbf", &p->has_nbf, &p->nbf));
        CK_TRY(parse_time(attrs, "exp", &p->has_exp, &p->exp));
        bool exportable = false;
        CK_TRY(ck_json_bool(attrs, "exportable", false, &exportable, NULL));
        if (exportable)
            return ck_err_set(CK_EINVAL, "exportable keys need a release policy, which ckey does "
                                         "not support");
    }
    if (p->has_nbf && p->has_exp && p->nbf && p->exp && p->exp <= p->nbf)
        return ck_err_set(CK_EINVAL, "attributes.exp must be later than attributes.nbf");
    json_t *tags = json_object_get(body, "tags");
    if (tags && !json_is_null(tags)) {
        if (!json_is_object(tags) || json_object_size(tags) > MAX_TAGS)
            return ck_err_set(CK_EINVAL, "tags must be an object of at most %d strings", MAX_TAGS);
        const char *k;
        json_t *v;
        json_object_foreach(tags, k, v)
        {
            if (!json_is_string(v) || strlen(k) > 512 || json_string_length(v) > 512)
                return ck_err_set(CK_EINVAL,
                                  "tag '%s' must be a string of at most 512 "
                                  "characters",
                                  k);
        }
        p->has_tags = true;
        *tags_text = json_dumps(tags, JSON_COMPACT | JSON_SORT_KEYS);
        p->tags_json = *tags_text;
    }
    if (json_object_get(body, "release_policy") &&
        !json_is_null(json_object_get(body, "release_policy")))
        return ck_err_set(CK_EINVAL, "release policies are not supported by ckey");
    return CK_OK;
}

static ck_err b64_field(json_t *body, const char *field, bool required, struct ck_buf *out)
{
    const char *s = NULL;
    CK_TRY(ck_json_str(body, field, required, &s));
    if (!s)
        return CK_OK;
    ck_err rc = ck_b64url_decode(s, strlen(s), out);
    if (rc != CK_OK)
        return ck_err_set(CK_EINVAL, "the field '%s' is not base64url", field);
    return CK_OK;
}

/* ---------- paging ---------- */

static ck_err page_params(const struct ck_http_req *req, size_t *skip, size_t *max)
{
    *skip = 0;
    *max = DEFAULT_PAGE;
    char *m = ck_http_query(req, "maxresults");
    char *tok = ck_http_query(req, "$skiptoken");
    ck_err rc = CK_OK;
    if (m) {
        char *end;
        long v = strtol(m, &end, 10);
        if (!*m || *end || v < 1 || v > 25)
            rc = ck_err_set(CK_EINVAL, "maxresults must be a number from 1 to 25");
        else
            *max = (size_t)v;
    }
    if (rc == CK_OK && tok) {
        struct ck_buf b = {0};
        char text[24] = {0};
        if (ck_b64url_decode(tok, strlen(tok), &b) == CK_OK && b.n > 5 && b.n < sizeof text)
            memcpy(text, b.p, b.n);
        ck_buf_free(&b);
        char *end;
        long long v = strncmp(text, "skip:", 5) == 0 ? strtoll(text + 5, &end, 10) : -1;
        if (v < 0 || *end)
            rc = ck_err_set(CK_EINVAL, "the $skiptoken is not one this vault issued");
        else
            *skip = (size_t)v;
    }
    free(m);
    free(tok);
    return rc;
}

static void add_next_link(const struct ck_http_req *req, json_t *body, bool more, size_t skip,
                          size_t n, size_t max)
{
    if (!more) {
        json_object_set_new(body, "nextLink", json_null());
        return;
    }
    char text[32], *tok;
    snprintf(text, sizeof text, "skip:%zu", skip + n);
    ck_b64url_encode((const uint8_t *)text, strlen(text), &tok);
    char *apiv = ck_http_query(req, "api-version");
    char *apiv_e = apiv ? ck_sprintf("api-version=%s&", apiv) : ck_strdup("");
    for (char *p = apiv_e; *p; p++)
        if (*p == ' ' || *p == '#')
            *p = '-';
    char *link =
        ck_sprintf("%s%s?%s$skiptoken=%s&maxresults=%zu", req->origin, req->path, apiv_e, tok, max);
    json_object_set_new(body, "nextLink", json_string(link));
    free(link);
    free(apiv_e);
    free(apiv);
    free(tok);
}

static ck_err send_page(struct ck_http_req *req, struct ck_http_resp *resp, struct ck_key **v,
                        size_t n, bool more, size_t skip, size_t max, bool versioned)
{
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(arr, item_json(req, v[i], versioned));
    ck_key_list_free(v, n);
    json_t *body = json_pack("{s:o}", "value", arr);
    add_next_link(req, body, more, skip, n, max);
    return ck_http_ok(resp, body);
}

/* ---------- handlers: keys ---------- */

/* The handlers that take a key name and answer with one key bundle. */
typedef ck_err (*key_fn)(struct ck_vaults *v, const char *vault, const char *name,
                         struct ck_key **out);

static ck_err key_op(struct ck_http_req *req, struct ck_http_resp *resp, enum ck_key_perm perm,
                     const char *operation, key_fn fn, bool audited)
{
    struct target t;
    CK_TRY(authorize(req, perm, operation, &t));
    struct ck_key *k = NULL;
    ck_err rc = fn(t.api->vaults, t.vault->name, t.key, &k);
    if (audited)
        audit(req, &t, operation, k ? k->version : NULL, rc);
    target_free(&t);
    CK_TRY(rc);
    return send_bundle(req, resp, k);
}

static ck_err delete_key(struct ck_http_req *req, struct ck_http_resp *resp)
{
    return key_op(req, resp, CK_PERM_DELETE, "key.delete", ck_key_delete, true);
}

static ck_err rotate_key(struct ck_http_req *req, struct ck_http_resp *resp)
{
    return key_op(req, resp, CK_PERM_ROTATE, "key.rotate", ck_key_rotate, true);
}

static ck_err get_deleted(struct ck_http_req *req, struct ck_http_resp *resp)
{
    return key_op(req, resp, CK_PERM_GET, "key.getDeleted", ck_key_get_deleted, false);
}

static ck_err recover_key(struct ck_http_req *req, struct ck_http_resp *resp)
{
    return key_op(req, resp, CK_PERM_RECOVER, "key.recover", ck_key_recover, true);
}

enum listing { LIST_KEYS, LIST_VERSIONS, LIST_DELETED };

static ck_err list(struct ck_http_req *req, struct ck_http_resp *resp, enum listing which)
{
    static const char *const operations[] = {"key.list", "key.versions", "key.listDeleted"};
    struct target t;
    CK_TRY(authorize(req, CK_PERM_LIST, operations[which], &t));
    size_t skip, max, n = 0;
    bool more = false;
    struct ck_key **v = NULL;
    ck_err rc = page_params(req, &skip, &max);
    if (rc == CK_OK && which == LIST_KEYS)
        rc = ck_key_list(t.api->vaults, t.vault->name, skip, max, &v, &n, &more);
    else if (rc == CK_OK && which == LIST_DELETED)
        rc = ck_key_list_deleted(t.api->vaults, t.vault->name, skip, max, &v, &n, &more);
    else if (rc == CK_OK)
        rc = ck_key_list_versions(t.api->vaults, t.vault->name, t.key, skip, max, &v, &n, &more);
    target_free(&t);
    CK_TRY(rc);
    return send_page(req, resp, v, n, more, skip, max, which == LIST_VERSIONS);
}

static ck_err list_keys(struct ck_http_req *req, struct ck_http_resp *resp)
{
    return list(req, resp, LIST_KEYS);
}

static ck_err list_versions(struct ck_http_req *req, struct ck_http_resp *resp)
{
    return list(req, resp, LIST_VERSIONS);
}

static ck_err list_deleted(struct ck_http_req *req, struct ck_http_resp *resp)
{
    return list(req, resp, LIST_DELETED);
}

static ck_err create_key(struct ck_http_req *req, struct ck_http_resp *resp)
{
    struct target t;
    CK_TRY(authorize(req, CK_PERM_CREATE, "key.create", &t));
    const char *kty = NULL;
    int64_t size = 0;
    struct ck_key_props p;
    char *tags = NULL;
    struct ck_key *k = NULL;
    ck_err rc = ck_json_str(req->json, "kty", true, &kty);
    if (rc == CK_OK)
        rc = ck_json_int(req->json, "key_size", false, &size, NULL);
    if (rc == CK_OK && (size < 0 || size > 16384))
        rc = ck_err_set(CK_EINVAL, "key_size %lld is not supported", (long long)size);
    if (rc == CK_OK && json_object_get(req->json, "crv"))
        rc = ck_err_set(CK_EINVAL,
                        "the key type '%s' with a curve is not supported: ckey vaults "
                        "hold RSA and RSA-HSM keys",
                        kty);
    if (rc == CK_OK)
        rc = parse_props(req->json, &p, &tags);
    if (rc == CK_OK)
        rc = ck_key_create(t.api->vaults, t.vault->name, t.key, kty, (unsigned)size, &p, &k);
    audit(req, &t, "key.create", k ? k->version : NULL, rc);
    free(tags);
    target_free(&t);
    CK_TRY(rc);
    return send_bundle(req, resp, k);
}

static void jwk_free(struct ck_rsa_jwk *j)
{
    struct ck_buf *parts[] = {&j->n, &j->e, &j->d, &j->p, &j->q, &j->dp, &j->dq, &j->qi};
    for (size_t i = 0; i < 8; i++) {
        ck_wipe(parts[i]->p, parts[i]->n);
        ck_buf_free(parts[i]);
    }
}

static ck_err parse_jwk(json_t *key, struct ck_rsa_jwk *j, bool *hsm)
{
    const char *kty = NULL;
    CK_TRY(ck_json_str(key, "kty", true, &kty));
    if (strcmp(kty, "RSA") != 0 && strcmp(kty, "RSA-HSM") != 0)
        return ck_err_set(CK_EINVAL,
                          "the key type '%s' is not supported: ckey vaults hold RSA "
                          "and RSA-HSM keys",
                          kty);
    *hsm = *hsm || strcmp(kty, "RSA-HSM") == 0;
    static const char *const names[] = {"n", "e", "d", "p", "q", "dp", "dq", "qi"};
    struct ck_buf *parts[] = {&j->n, &j->e, &j->d, &j->p, &j->q, &j->dp, &j->dq, &j->qi};
    for (size_t i = 0; i < 8; i++) {
        char field[8];
        snprintf(field, sizeof field, "%s", names[i]);
        CK_TRY(b64_field(key, field, i < 2, parts[i]));
    }
    return CK_OK;
}

static ck_err import_key(struct ck_http_req *req, struct ck_http_resp *resp)
{
    struct target t;
    CK_TRY(authorize(req, CK_PERM_IMPORT, "key.import", &t));
    json_t *jwk = json_object_get(req->json, "key");
    struct ck_rsa_jwk j = {0};
    struct ck_key_props p;
    char *tags = NULL;
    struct ck_key *k = NULL;
    bool hsm = false;
    ck_err rc = ck_json_bool(req->json, "Hsm", false, &hsm, NULL);
    if (rc == CK_OK && !json_is_object(jwk))
        rc = ck_err_set(CK_EINVAL, "the request body must have the field 'key' (a JWK)");
    if (rc == CK_OK)
        rc = parse_jwk(jwk, &j, &hsm);
    if (rc == CK_OK)
        rc = parse_props(req->json, &p, &tags);
    /* key_ops may come inside the JWK instead. */
    json_t *jops = json_object_get(jwk, "key_ops");
    if (rc == CK_OK && !p.has_ops && jops && !json_is_null(jops)) {
        rc = parse_ops(jops, &p.ops);
        p.has_ops = true;
    }
    if (rc == CK_OK)
        rc = ck_key_import(t.api->vaults, t.vault->name, t.key, &j, hsm, &p, &k);
    audit(req, &t, "key.import", k ? k->version : NULL, rc);
    jwk_free(&j);
    free(tags);
    target_free(&t);
    CK_TRY(rc);
    return send_bundle(req, resp, k);
}

static ck_err get_key(struct ck_http_req *req, struct ck_http_resp *resp)
{
    struct target t;
    CK_TRY(authorize(req, CK_PERM_GET, "key.get", &t));
    struct ck_key *k = NULL;
    ck_err rc = ck_key_get(t.api->vaults, t.vault->name, t.key, t.version, &k);
    audit(req, &t, "key.get", k ? k->version : t.version, rc);
    target_free(&t);
    CK_TRY(rc);
    return send_bundle(req, resp, k);
}

static ck_err update_key(struct ck_http_req *req, struct ck_http_resp *resp)
{
    struct target t;
    CK_TRY(authorize(req, CK_PERM_UPDATE, "key.update", &t));
    struct ck_key_props p;
    char *tags = NULL;
    struct ck_key *k = NULL;
    ck_err rc = parse_props(req->json, &p, &tags);
    if (rc == CK_OK)
        rc = ck_key_update(t.api->vaults, t.vault->name, t.key, t.version, &p, &k);
    audit(req, &t, "key.update", k ? k->version : t.version, rc);
    free(tags);
    target_free(&t);
    CK_TRY(rc);
    return send_bundle(req, resp, k);
}

static ck_err backup_key(struct ck_http_req *req, struct ck_http_resp *resp)
{
    struct target t;
    CK_TRY(authorize(req, CK_PERM_BACKUP, "key.backup", &t));
    struct ck_buf blob = {0};
    ck_err rc = ck_key_backup(t.api->vaults, t.vault->name, t.key, &blob);
    audit(req, &t, "key.backup", NULL, rc);
    target_free(&t);
    CK_TRY(rc);
    json_t *o = json_pack("{s:o}", "value", b64(&blob));
    ck_buf_free(&blob);
    return ck_http_ok(resp, o);
}

static ck_err restore_key(struct ck_http_req *req, struct ck_http_resp *resp)
{
    struct target t;
    CK_TRY(authorize(req, CK_PERM_RESTORE, "key.restore", &t));
    struct ck_buf blob = {0};
    struct ck_key *k = NULL;
    ck_err rc = b64_field(req->json, "value", true, &blob);
    if (rc == CK_OK)
        rc = ck_key_restore(t.api->vaults, t.vault->name, blob.p, blob.n, &k);
    t.key = k ? k->name : NULL;
    audit(req, &t, "key.restore", NULL, rc);
    ck_buf_free(&blob);
    target_free(&t);
    CK_TRY(rc);
    return send_bundle(req, resp, k);
}

/* ---------- handlers: deleted keys ---------- */

static ck_err purge_key(struct ck_http_req *req, struct ck_http_resp *resp)
{
    struct target t;
    CK_TRY(authorize(req, CK_PERM_PURGE, "key.purge", &t));
    ck_err rc = ck_key_purge(t.api->vaults, t.vault->name, t.key);
    audit(req, &t, "key.purge", NULL, rc);
    target_free(&t);
    CK_TRY(rc);
    resp->status = 204;
    return CK_OK;
}

/* ---------- handlers: rotation policy ---------- */

static ck_err send_policy(struct ck_http_req *req, struct ck_http_resp *resp, const char *name,
                          char *text, int64_t created, int64_t updated)
{
    json_t *p = json_loads(text, 0, NULL);
    free(text);
    if (!p)
        return ck_err_set(CK_EINTERNAL, "a stored rotation policy does not parse");
    char *id = ck_sprintf("%s/keys/%s/rotationpolicy", req->origin, name);
    json_object_set_new(p, "id", json_string(id));
    free(id);
    json_t *attrs = json_object_get(p, "attributes");
    if (created)
        json_object_set_new(attrs, "created", json_integer(created));
    if (updated)
        json_object_set_new(attrs, "updated", json_integer(updated));
    return ck_http_ok(resp, p);
}

static ck_err get_policy(struct ck_http_req *req, struct ck_http_resp *resp)
{
    struct target t;
    CK_TRY(authorize(req, CK_PERM_GETROTATIONPOLICY, "key.getRotationPolicy", &t));
    char *text = NULL;
    int64_t created = 0, updated = 0;
    ck_err rc =
        ck_key_rotation_policy_get(t.api->vaults, t.vault->name, t.key, &text, &created, &updated);
    target_free(&t);
    CK_TRY(rc);
    return send_policy(req, resp, ck_http_param(req, "name"), text, created, updated);
}

static ck_err set_policy(struct ck_http_req *req, struct ck_http_resp *resp)
{
    struct target t;
    CK_TRY(authorize(req, CK_PERM_SETROTATIONPOLICY, "key.setRotationPolicy", &t));
    char *in = req->json ? json_dumps(req->json, JSON_COMPACT) : ck_strdup("{}");
    int64_t created = 0, updated = 0;
    ck_err rc =
        ck_key_rotation_policy_set(t.api->vaults, t.vault->name, t.key, in, &created, &updated);
    free(in);
    char *text = NULL;
    if (rc == CK_OK)
        rc = ck_key_rotation_policy_get(t.api->vaults, t.vault->name, t.key, &text, NULL, NULL);
    audit(req, &t, "key.setRotationPolicy", NULL, rc);
    target_free(&t);
    CK_TRY(rc);
    return send_policy(req, resp, ck_http_param(req, "name"), text, created, updated);
}

/* ---------- handlers: crypto ---------- */

static const struct {
    const char *path;
    enum ck_key_perm perm;
    const char *audit;
    int op; /* enum ck_key_crypto_op, or -1 for verify */
} crypto_ops[] = {
    {"encrypt", CK_PERM_ENCRYPT, "key.encrypt", CK_KEY_ENCRYPT},
    {"decrypt", CK_PERM_DECRYPT, "key.decrypt", CK_KEY_DECRYPT},
    {"wrapkey", CK_PERM_WRAPKEY, "key.wrapKey", CK_KEY_WRAP},
    {"unwrapkey", CK_PERM_UNWRAPKEY, "key.unwrapKey", CK_KEY_UNWRAP},
    {"sign", CK_PERM_SIGN, "key.sign", CK_KEY_SIGN},
    {"verify", CK_PERM_VERIFY, "key.verify", -1},
};

static ck_err crypto_op(struct ck_http_req *req, struct ck_http_resp *resp)
{
    const char *opname = ck_http_param(req, "op");
    size_t i = 0;
    while (i < sizeof crypto_ops / sizeof crypto_ops[0] && strcasecmp(opname, crypto_ops[i].path))
        i++;
    if (i == sizeof crypto_ops / sizeof crypto_ops[0])
        return ck_err_set(CK_ENOTFOUND, "no such key operation: %s", opname);
    struct target t;
    CK_TRY(authorize(req, crypto_ops[i].perm, crypto_ops[i].audit, &t));
    const char *alg_name = NULL;
    enum ck_crypto_alg alg = CK_ALG_RSA_OAEP;
    struct ck_buf in = {0}, out = {0}, sig = {0};
    struct ck_secret plain = {0};
    char version[33] = "";
    bool valid = false;
    ck_err rc = ck_json_str(req->json, "alg", true, &alg_name);
    if (rc == CK_OK)
        rc = ck_crypto_alg_parse(alg_name, &alg);
    if (rc == CK_OK && crypto_ops[i].op < 0) {
        rc = b64_field(req->json, "digest", true, &in);
        if (rc == CK_OK)
            rc = b64_field(req->json, "value", true, &sig);
        if (rc == CK_OK)
            rc = ck_key_verify(t.api->vaults, t.vault->name, t.key, t.version, alg, in.p, in.n,
                               sig.p, sig.n, &valid, version);
    } else if (rc == CK_OK) {
        rc = b64_field(req->json, "value", true, &in);
        if (rc == CK_OK)
            rc = ck_key_crypto(t.api->vaults, t.vault->name, t.key, t.version,
                               (enum ck_key_crypto_op)crypto_ops[i].op, alg, in.p, in.n, &out,
                               &plain, version);
    }
    audit(req, &t, crypto_ops[i].audit, version, rc);
    target_free(&t);
    ck_wipe(in.p, in.n);
    ck_buf_free(&in);
    ck_buf_free(&sig);
    if (rc != CK_OK) {
        ck_buf_free(&out);
        ck_secret_free(&plain);
        return rc;
    }
    json_t *body;
    if (crypto_ops[i].op < 0) {
        body = json_pack("{s:b}", "value", valid);
    } else {
        struct ck_buf view = plain.p ? (struct ck_buf){plain.p, plain.n} : out;
        char *id = ck_sprintf("%s/keys/%s/%s", req->origin, ck_http_param(req, "name"), version);
        body = json_pack("{s:s,s:o}", "kid", id, "value", b64(&view));
        free(id);
    }
    ck_buf_free(&out);
    ck_secret_free(&plain);
    return ck_http_ok(resp, body);
}

static ck_err random_bytes(struct ck_http_req *req, struct ck_http_resp *resp)
{
    struct target t;
    CK_TRY(authorize(req, 0, "rng", &t));
    bool any = ck_vault_permissions(t.vault, t.caller->object_id) != 0;
    target_free(&t);
    if (!any) {
        ck_err_set(CK_EFORBIDDEN, "the principal '%s' has no permission on this vault",
                   ck_principal_name(t.caller));
        ck_err_code("Forbidden", "AccessDenied");
        return CK_EFORBIDDEN;
    }
    int64_t count = 0;
    CK_TRY(ck_json_int(req->json, "count", true, &count, NULL));
    if (count < 1 || count > 128)
        return ck_err_set(CK_EINVAL, "count must be between 1 and 128");
    struct ck_buf b = {0};
    CK_TRY(ck_buf_alloc(&b, (size_t)count));
    ck_err rc = ck_rand_bytes(b.p, b.n);
    json_t *o = rc == CK_OK ? json_pack("{s:o}", "value", b64(&b)) : NULL;
    ck_buf_free(&b);
    CK_TRY(rc);
    return ck_http_ok(resp, o);
}

void ck_api_register_keys(struct ck_router *r, struct ck_api *api)
{
    /* Literal segments before captures: the router takes the first match. */
    ck_router_add(r, "POST", "/keys/restore", restore_key, api, 0, 0);
    ck_router_add(r, "GET", "/keys", list_keys, api, 0, 0);
    ck_router_add(r, "POST", "/keys/{name}/create", create_key, api, 0, 0);
    ck_router_add(r, "POST", "/keys/{name}/backup", backup_key, api, 0, 0);
    ck_router_add(r, "POST", "/keys/{name}/rotate", rotate_key, api, 0, 0);
    ck_router_add(r, "GET", "/keys/{name}/versions", list_versions, api, 0, 0);
    ck_router_add(r, "GET", "/keys/{name}/rotationpolicy", get_policy, api, 0, 0);
    ck_router_add(r, "PUT", "/keys/{name}/rotationpolicy", set_policy, api, 0, 0);
    ck_router_add(r, "PUT", "/keys/{name}", import_key, api, 0, 0);
    ck_router_add(r, "GET", "/keys/{name}", get_key, api, 0, 0);
    ck_router_add(r, "DELETE", "/keys/{name}", delete_key, api, 0, 0);
    ck_router_add(r, "GET", "/keys/{name}/{version}", get_key, api, 0, 0);
    ck_router_add(r, "PATCH", "/keys/{name}/{version}", update_key, api, 0, 0);
    ck_router_add(r, "POST", "/keys/{name}/{version}/{op}", crypto_op, api, 0, 0);
    ck_router_add(r, "GET", "/deletedkeys", list_deleted, api, 0, 0);
    ck_router_add(r, "GET", "/deletedkeys/{name}", get_deleted, api, 0, 0);
    ck_router_add(r, "DELETE", "/deletedkeys/{name}", purge_key, api, 0, 0);
    ck_router_add(r, "POST", "/deletedkeys/{name}/recover", recover_key, api, 0, 0);
    ck_router_add(r, "POST", "/rng", random_bytes, api, 0, 0);
}
