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
