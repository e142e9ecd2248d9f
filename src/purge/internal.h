/*
 * internal.h — what the purge module's sources share; not part of its
 * contract (purge.h is).
 */
#ifndef CK_PURGE_INTERNAL_H
#define CK_PURGE_INTERNAL_H

#include "auth/auth.h"
#include "crypto/crypto.h"
#include "purge/purge.h"

struct ck_purges {
    struct ck_store *store, *avail;
    struct ck_secret master; /* copy, 32 bytes */
    struct ck_deps *deps;
    struct ck_mail *mail;
    struct ck_files *files;
    struct ck_jobs *jobs;
    struct ck_audit *audit;
    uint8_t pub[32];       /* the service's certificate signing key */
    struct ck_secret seed; /* its private half (Ed25519 seed) */
};

void purge_audit(struct ck_purges *p, const char *principal, const char *operation,
                 const char *target, const char *request_id, ck_err rc, const char *detail);
char *purge_canonical(const json_t *j);
/* The "tenant.offboard" job step (offboard.c). */
ck_err purge_offboard_step(void *ctx, const struct ck_job *j, int64_t *done, int64_t *total,
                           bool *finished);

#endif
