/*
 * rotation.c — key rotation policies and the vault's housekeeping: rotating
 * keys whose policy says so, and purging soft-deleted keys whose retention
 * has run out.
 *
 * A policy is kept as normalised JSON text:
 *   {"lifetimeActions":[{"trigger":{"timeAfterCreate":"P90D"},"action":{"type":"Rotate"}}],
 *    "attributes":{"expiryTime":"P2Y"}}
 */
#include "vault/keys_internal.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const char default_policy[] =
    "{\"lifetimeActions\":[{\"trigger\":{\"timeBeforeExpiry\":\"P30D\"},"
    "\"action\":{\"type\":\"Notify\"}}],\"attributes\":{}}";

/* Validates a policy and returns its normalised JSON text (malloc'd). */
static ck_err normalise(const char *text, char **out)
{
    json_t *in = json_loads(text, 0, NULL);
    if (!json_is_object(in)) {
        json_decref(in);
        return ck_err_set(CK_EINVAL, "the rotation policy must be a JSON object");
    }
    json_t *actions = json_object_get(in, "lifetimeActions");
    json_t *attrs = json_object_get(in, "attributes");
    json_t *norm_actions = json_array(), *norm_attrs = json_object();
    ck_err rc = CK_OK;
    if (actions && !json_is_null(actions) && !json_is_array(actions))
        rc = ck_err_set(CK_EINVAL, "lifetimeActions must be an array");
    size_t i;
    json_t *a;
    json_array_foreach(actions, i, a)
    {
        if (rc != CK_OK)
            break;
        json_t *trigger = json_object_get(a, "trigger");
        const char *type = json_string_value(json_object_get(json_object_get(a, "action"), "type"));
        const char *after = json_string_value(json_object_get(trigger, "timeAfterCreate"));
        const char *before = json_string_value(json_object_get(trigger, "timeBeforeExpiry"));
        int64_t secs;
        if (!type || (strcasecmp(type, "rotate") != 0 && strcasecmp(type, "notify") != 0))
            rc = ck_err_set(CK_EINVAL, "lifetimeActions[%zu].action.type must be Rotate or Notify",
                            i);
        else if (!after == !before)
            rc = ck_err_set(CK_EINVAL,
                            "lifetimeActions[%zu].trigger needs exactly one of timeAfterCreate "
                            "and timeBeforeExpiry",
                            i);
        else if (ck_iso_duration_parse(after ? after : before, &secs) != CK_OK)
            rc = ck_err_set(CK_EINVAL, "lifetimeActions[%zu].trigger: %s", i, ck_err_msg());
        else if (after && secs < 60)
            rc = ck_err_set(CK_EINVAL,
                            "lifetimeActions[%zu].trigger.timeAfterCreate must be at "
                            "least one minute",
                            i);
        if (rc == CK_OK)
            json_array_append_new(norm_actions,
                                  json_pack("{s:{s:s},s:{s:s}}", "trigger",
                                            after ? "timeAfterCreate" : "timeBeforeExpiry",
                                            after ? after : before, "action", "type",
                                            strcasecmp(type, "rotate") == 0 ? "Rotate" : "Notify"));
    }
    const char *expiry = json_string_value(json_object_get(attrs, "expiryTime"));
    int64_t secs;
    if (rc == CK_OK && expiry) {
        if (ck_iso_duration_parse(expiry, &secs) != CK_OK)
            rc = ck_err_set(CK_EINVAL, "attributes.expiryTime: %s", ck_err_msg());
        else
            json_object_set_new(norm_attrs, "expiryTime", json_string(expiry));
    }
    if (rc == CK_OK) {
        json_t *norm =
            json_pack("{s:o,s:o}", "lifetimeActions", norm_actions, "attributes", norm_attrs);
        *out = json_dumps(norm, JSON_COMPACT | JSON_PRESERVE_ORDER);
        json_decref(norm);
    } else {
        json_decref(norm_actions);
        json_decref(norm_attrs);
    }
    json_decref(in);
    return rc;
}

static ck_err require_live(struct ck_vaults *v, const char *vault, const char *name)
{
    bool exists, deleted;
    CK_TRY(ck_key_state(v, vault, name, &exists, &deleted));
    return exists && !deleted ? CK_OK : ck_key_not_found(name);
}

static ck_err read_policy(struct ck_vaults *v, const char *vault, const char *name, char **json,
                          int64_t *created, int64_t *updated)
{
    struct ck_stmt *st;
    CK_TRY(ck_stmt_prepare(v->store, &st,
                           "SELECT policy, created, updated FROM ck_key_rotation "
                           "WHERE vault = ? AND name = ?",
                           "tt", vault, name));
    bool row;
    ck_err rc = ck_stmt_step(st, &row);
    if (rc == CK_OK) {
        *json = ck_strdup(row ? ck_stmt_text(st, 0) : default_policy);
        if (created)
            *created = row ? ck_stmt_int(st, 1) : 0;
        if (updated)
            *updated = row ? ck_stmt_int(st, 2) : 0;
    }
    ck_stmt_finalize(st);
    return rc;
}

ck_err ck_key_rotation_policy_get(struct ck_vaults *v, const char *vault, const char *name,
                                  char **json, int64_t *created, int64_t *updated)
{
    struct ck_vault *vlt;
    CK_TRY(ck_key_vault(v, vault, &vlt));
    ck_err rc = require_live(v, vlt->name, name);
    if (rc == CK_OK)
        rc = read_policy(v, vlt->name, name, json, created, updated);
    ck_vault_free(vlt);
    return rc;
}

ck_err ck_key_rotation_policy_set(struct ck_vaults *v, const char *vault, const char *name,
                                  const char *json, int64_t *created, int64_t *updated)
{
    struct ck_vault *vlt;
    CK_TRY(ck_key_vault(v, vault, &vlt));
    char *norm = NULL;
    ck_err rc = require_live(v, vlt->name, name);
    if (rc == CK_OK)
        rc = normalise(json, &norm);
    int64_t now = ck_now();
    if (rc == CK_OK)
        rc = ck_store_run(v->store, NULL,
                          "INSERT INTO ck_key_rotation (vault, name, policy, created, updated) "
                          "VALUES (?, ?, ?, ?, ?) ON CONFLICT (vault, name) DO UPDATE SET "
                          "policy = excluded.policy, updated = excluded.updated",
                          "tttii", vlt->name, name, norm, now, now);
    free(norm);
    char *stored = NULL;
    if (rc == CK_OK)
        rc = read_policy(v, vlt->name, name, &stored, created, updated);
    free(stored);
    ck_vault_free(vlt);
    return rc;
}

ck_err ck_key_policy_expiry(struct ck_vaults *v, const char *vault, const char *name,
                            int64_t *seconds)
{
    char *text = NULL;
    CK_TRY(read_policy(v, vault, name, &text, NULL, NULL));
    json_t *p = json_loads(text, 0, NULL);
    free(text);
    const char *e =
        json_string_value(json_object_get(json_object_get(p, "attributes"), "expiryTime"));
    *seconds = 0;
    ck_err rc = e ? ck_iso_duration_parse(e, seconds) : CK_OK;
    json_decref(p);
    return rc;
}

/* Whether the policy asks for a rotation of a version created at `created`
 * expiring at `exp`, at time now. */
static bool rotation_due(const char *policy, int64_t created, int64_t exp, int64_t now)
{
    json_t *p = json_loads(policy, 0, NULL);
    bool due = false;
    size_t i;
    json_t *a;
    json_array_foreach(json_object_get(p, "lifetimeActions"), i, a)
    {
        const char *type = json_string_value(json_object_get(json_object_get(a, "action"), "type"));
        json_t *trigger = json_object_get(a, "trigger");
        const char *after = json_string_value(json_object_get(trigger, "timeAfterCreate"));
        const char *before = json_string_value(json_object_get(trigger, "timeBeforeExpiry"));
        int64_t secs;
        if (!type || strcmp(type, "Rotate") != 0)
            continue;
        if (after && ck_iso_duration_parse(after, &secs) == CK_OK && now >= created + secs)
            due = true;
        if (before && exp && ck_iso_duration_parse(before, &secs) == CK_OK && now >= exp - secs)
            due = true;
    }
    json_decref(p);
    return due;
}

/* Names of keys to act on, collected before acting so no statement is open
 * while the actions write. */
struct name_list {
    char (*vault)[25];
    char (*name)[128];
    size_t n;
};

static void name_list_add(struct name_list *l, const char *vault, const char *name)
{
    l->vault = realloc(l->vault, (l->n + 1) * sizeof *l->vault);
    l->name = realloc(l->name, (l->n + 1) * sizeof *l->name);
    if (!l->vault || !l->name)
        abort();
    snprintf(l->vault[l->n], 25, "%s", vault);
    snprintf(l->name[l->n], 128, "%s", name);
    l->n++;
}

static void name_list_free(struct name_list *l)
{
    free(l->vault);
    free(l->name);
}

ck_err ck_vault_housekeeping(struct ck_vaults *v, int64_t now, size_t *purged, size_t *rotated)
{
    struct name_list expired = {0}, due = {0};
    struct ck_stmt *st;
    bool row;
    ck_err rc;
    *purged = *rotated = 0;
    CK_TRY(ck_stmt_prepare(v->store, &st,
                           "SELECT vault, name FROM ck_key WHERE deleted > 0 AND "
                           "scheduled_purge <= ?",
                           "i", now));
    while ((rc = ck_stmt_step(st, &row)) == CK_OK && row)
        name_list_add(&expired, ck_stmt_text(st, 0), ck_stmt_text(st, 1));
    ck_stmt_finalize(st);
    if (rc == CK_OK)
        rc = ck_stmt_prepare(
            v->store, &st,
            "SELECT r.vault, r.name, r.policy, v.created, v.exp FROM ck_key_rotation r "
            "JOIN ck_key k ON k.vault = r.vault AND k.name = r.name AND k.deleted = 0 "
            "JOIN ck_key_version v ON v.vault = r.vault AND v.name = r.name AND v.seq = "
            "(SELECT MAX(seq) FROM ck_key_version x WHERE x.vault = r.vault AND x.name = r.name)",
            "");
    if (rc == CK_OK) {
        while ((rc = ck_stmt_step(st, &row)) == CK_OK && row)
            if (rotation_due(ck_stmt_text(st, 2), ck_stmt_int(st, 3), ck_stmt_int(st, 4), now))
                name_list_add(&due, ck_stmt_text(st, 0), ck_stmt_text(st, 1));
        ck_stmt_finalize(st);
    }
    for (size_t i = 0; rc == CK_OK && i < expired.n; i++) {
        rc = ck_key_destroy(v, expired.vault[i], expired.name[i]);
        if (rc == CK_OK) {
            (*purged)++;
            ck_log(CK_LOG_INFO, "purged a soft-deleted key after its retention", "vault",
                   expired.vault[i], "key", expired.name[i], NULL);
        }
    }
    for (size_t i = 0; rc == CK_OK && i < due.n; i++) {
        struct ck_key *k = NULL;
        rc = ck_key_rotate(v, due.vault[i], due.name[i], &k);
        if (rc == CK_OK) {
            (*rotated)++;
            ck_log(CK_LOG_INFO, "rotated a key by its rotation policy", "vault", due.vault[i],
                   "key", due.name[i], "version", k->version, NULL);
        }
        ck_key_free(k);
    }
    name_list_free(&expired);
    name_list_free(&due);
    return rc;
}
