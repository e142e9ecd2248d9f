/*
 * roots.c — the rules a customer root key must meet (DESIGN §4), shared by
 * mail DEPs and files DEPs, and the proven wrap under a pair of them.
 */
#include "keyprov/keyprov.h"

#include <stdio.h>
#include <string.h>

static ck_err invalid(const char *which, const char *uri, const char *why)
{
    return ck_err_set(CK_EINVAL, "%s (%s) %s", which, uri, why);
}

ck_err ck_root_check(struct ck_keyprov *p, const char *which, const char *uri,
                     const char *principal, struct ck_root_key_info *info)
{
    struct ck_key_uri parsed;
    if (!uri || ck_key_uri_parse(uri, &parsed) != CK_OK)
        return invalid(which, uri ? uri : "", "is not a key URI (https://VAULT/keys/NAME)");
    ck_err rc = ck_keyprov_get(p, uri, info);
    if (rc != CK_OK) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", ck_err_msg());
        bool transient = ck_keyprov_classify(rc) == CK_EUNAVAIL;
        if (transient)
            return ck_err_set(CK_EINVAL, "%s (%s) is not reachable (%s)", which, uri, msg);
        return ck_err_set(CK_EINVAL,
                          "%s (%s) does not exist or cannot be read by the %s: grant it get, "
                          "wrapKey and unwrapKey on the vault (%s)",
                          which, uri, principal, msg);
    }
    if (strncmp(info->kty, "RSA", 3) != 0)
        return invalid(which, uri, "is not an RSA key");
    if (info->bits < 2048)
        return invalid(which, uri, "is shorter than 2048 bits");
    if (!info->can_wrap || !info->can_unwrap)
        return invalid(which, uri, "must allow wrapKey and unwrapKey in its key_ops");
    if (!info->enabled)
        return invalid(which, uri, "is disabled");
    if (info->exp)
        return invalid(which, uri,
                       "has an expiry date: root keys for Customer Key must not expire");
    if (info->nbf && info->nbf > ck_now())
        return invalid(which, uri, "is not valid yet (nbf)");
    if (strncmp(info->recovery_level, "Recoverable", 11) != 0 ||
        strstr(info->recovery_level, "Purgeable") || info->recoverable_days < 90)
        return ck_err_set(CK_EINVAL,
                          "%s (%s) is in a vault without 90-day soft delete and purge protection "
                          "(recoveryLevel %s, %d days)",
                          which, uri, info->recovery_level, info->recoverable_days);
    return CK_OK;
}

ck_err ck_root_check_pair(struct ck_keyprov *p, const char *const uri[2],
                          const char *const which[2], const char *principal,
                          struct ck_root_key_info info[2])
{
    struct ck_key_uri parsed[2];
    for (int i = 0; i < 2; i++)
        if (!uri[i] || ck_key_uri_parse(uri[i], &parsed[i]) != CK_OK)
            return invalid(which[i], uri[i] ? uri[i] : "",
                           "is not a key URI (https://VAULT/keys/NAME)");
    if (strcmp(parsed[0].origin, parsed[1].origin) == 0)
        return ck_err_set(CK_EINVAL,
                          "both keys are in vault %s: the two root keys must be in two "
                          "different vaults",
                          parsed[0].vault);
    for (int i = 0; i < 2; i++)
        CK_TRY(ck_root_check(p, which[i], uri[i], principal, &info[i]));
    return CK_OK;
}

ck_err ck_root_wrap_pair(struct ck_keyprov *p, const char *const uri[2], const char *const which[2],
                         const char *principal, const struct ck_secret *key,
                         struct ck_buf wrapped[2], char kid[2][CK_KEY_URI_MAX])
{
    for (int i = 0; i < 2; i++) {
        ck_err rc = ck_keyprov_wrap(p, uri[i], key->p, key->n, &wrapped[i], kid[i]);
        if (rc != CK_OK)
            return ck_err_set(CK_EINVAL, "%s (%s) refused wrapKey for the %s", which[i], uri[i],
                              principal);
        struct ck_secret back = {0};
        rc = ck_keyprov_unwrap(p, kid[i], wrapped[i].p, wrapped[i].n, &back);
        bool same = rc == CK_OK && back.n == key->n && ck_ct_equal(back.p, key->p, key->n);
        ck_secret_free(&back);
        if (!same)
            return ck_err_set(CK_EINVAL, "%s (%s) refused unwrapKey for the %s", which[i], uri[i],
                              principal);
    }
    return CK_OK;
}

/* What one root key's vault answered a wrapKey probe: CK_OK for 403 (the
 * access is gone), else the refusal class, with its reason appended to why. */
static ck_err probe_one(struct ck_keyprov *p, const char *uri, const char *principal, char *why,
                        size_t wn)
{
    struct ck_key_uri u;
    if (ck_key_uri_parse(uri, &u) != CK_OK) {
        snprintf(u.vault, sizeof u.vault, "?");
        snprintf(u.name, sizeof u.name, "%.127s", uri);
    }
    long status = 0;
    ck_err rc = ck_keyprov_probe_wrap(p, uri, &status);
    if (status == 403)
        return CK_OK;
    char msg[256];
    snprintf(msg, sizeof msg, "%s", rc == CK_OK ? "" : ck_err_msg());
    size_t used = strlen(why);
    char *at = why + used;
    size_t room = wn - used;
    const char *sep = used ? "; " : "";
    if (status >= 200 && status < 300) {
        snprintf(at, room,
                 "%sthe vault '%s' still grants wrapKey on %s to the %s: remove its access "
                 "policy (wrapKey and unwrapKey) first",
                 sep, u.vault, u.name, principal);
        return CK_ECONFLICT;
    }
    if (status == 0 || status == 429 || status >= 500) {
        if (status == 0)
            snprintf(at, room, "%sthe vault '%s' did not answer a wrapKey probe on %s (%s)", sep,
                     u.vault, u.name, msg);
        else
            snprintf(at, room, "%sthe vault '%s' answered %ld to a wrapKey probe on %s (%s)", sep,
                     u.vault, status, u.name, msg);
        return CK_EUNAVAIL;
    }
    snprintf(at, room,
             "%sthe vault '%s' answered %ld to a wrapKey probe on %s (%s); a purge request needs "
             "403 (access denied to the %s) from both root keys' vaults",
             sep, u.vault, status, u.name, msg, principal);
    return CK_ECONFLICT;
}

ck_err ck_root_check_revoked(struct ck_keyprov *p, const char *const uri[2], const char *principal)
{
    if (!p)
        return ck_err_set(CK_EUNAVAIL, "no key provider: the root keys cannot be probed");
    char why[1200] = "";
    ck_err r1 = probe_one(p, uri[0], principal, why, sizeof why);
    ck_err r2 = probe_one(p, uri[1], principal, why, sizeof why);
    if (r1 == CK_OK && r2 == CK_OK) {
        ck_err_clear();
        return CK_OK;
    }
    /* A key that still grants outweighs one that did not answer: the
     * customer has something to do either way, and that first. */
    if (r1 == CK_ECONFLICT || r2 == CK_ECONFLICT) {
        ck_err rc = ck_err_set(CK_ECONFLICT, "%s", why);
        ck_err_code("Conflict", "RootKeyAccessNotRemoved");
        return rc;
    }
    ck_err rc = ck_err_set(CK_EUNAVAIL, "%s; try again", why);
    ck_err_code("ServiceUnavailable", "CustomerKeyUnreachable");
    return rc;
}
