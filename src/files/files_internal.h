/*
 * files_internal.h — what the files module's sources share; not part of the
 * module's contract (files.h is). Owned by src/files only.
 */
#ifndef CK_FILES_INTERNAL_H
#define CK_FILES_INTERNAL_H

#include "files/files.h"

#include <pthread.h>

#define FILES_KEY_LEN 32
#define FILES_PRINCIPAL "ckey Files Service"
#define FILES_SERVICE_ROOT_URI "ckey:files-service-root"
#define FILES_BATCH 100 /* sites per rewrap or purge transaction */

/* One unwrapped TIK in the cache (locked memory). */
struct tik_entry {
    char id[37];
    struct ck_secret key;
    int64_t fetched; /* when it was last unwrapped through its roots */
    bool refreshing; /* a refresh-ahead is in flight (not holding the lock) */
    struct tik_entry *next;
};

struct ck_files {
    struct ck_store *store, *avail;
    struct ck_secret master, avail_master;
    struct ck_keyprov *keyprov;
    struct ck_jobs *jobs;
    struct ck_audit *audit;
    int64_t ttl, refresh_ahead;
    size_t chunk_size;
    pthread_mutex_t mu; /* guards tiks */
    struct tik_entry *tiks;
};

/* ---- validation (files.c) ---- */
ck_err files_check_tenant(const char *tenant);
ck_err files_check_geo(const char *geo);

/* ---- TIKs (tik.c) ---- */
/* The tenant's files service root key (made on first use). */
ck_err files_service_root(struct ck_files *f, const char *tenant, struct ck_secret *root);
/* A new service-managed TIK: a fresh id and 32 random bytes wrapped under
 * the tenant's service root key (the one blob stands for both root copies).
 * Then its ck_tik row, inside the caller's transaction if one is open. */
ck_err files_service_tik_make(struct ck_files *f, const char *tenant, char tik_id[37],
                              struct ck_buf *wrapped);
ck_err files_service_tik_insert(struct ck_files *f, const char *tenant, const char *geo,
                                const char *tik_id, const struct ck_buf *wrapped);
/* Makes a TIK's availability key, stores it sealed, wraps tik under it. */
ck_err files_avail_create(struct ck_files *f, const char *tik_id, const struct ck_secret *tik,
                          struct ck_buf *wrapped);
ck_err files_avail_key(struct ck_files *f, const char *tik_id, struct ck_secret *key);
void files_avail_delete(struct ck_files *f, const char *tik_id);
/* The TIK through the cache, else its service root or customer root keys.
 * Never the availability key. */
ck_err files_tik(struct ck_files *f, const char *tik_id, struct ck_secret *out);
void files_tik_cache_put(struct ck_files *f, const char *tik_id, const struct ck_secret *key);
void files_tik_cache_drop(struct ck_files *f, const char *tik_id);
void files_tik_cache_free(struct ck_files *f);

/* ---- sites (files.c) ---- */
struct files_site_row {
    struct ck_site site;
    struct ck_buf wrapped_key;
};
/* site: a site path ("/sites/X") or a site id. CK_EGONE for a site of a
 * purged (or Purging) geo. */
ck_err files_site_load(struct ck_files *f, const char *tenant, const char *site,
                       struct files_site_row *out);
/* The unwrapped key of a loaded site (reloads r once if its TIK is gone). */
ck_err files_site_key(struct ck_files *f, struct files_site_row *r, struct ck_secret *key);

/* ---- SPO (spo.c) ---- */
/* The policy row (and the old TIK id, when old_tik is not NULL) without
 * the percentage. */
ck_err files_spo_load(struct ck_files *f, const char *tenant, const char *geo,
                      struct ck_spo_dep *out, char old_tik[37]);
/* CK_ECONFLICT when a purge was requested for the geo, CK_EGONE when it is
 * Purging or Purged, each with its message; CK_OK otherwise. */
ck_err files_purge_guard(const struct ck_spo_dep *d);
ck_err files_rewrap_step(void *ctx, const struct ck_job *j, int64_t *done, int64_t *total,
                         bool *finished);
void files_audit(struct ck_files *f, const char *operation, const char *target,
                 const char *request_id, ck_err rc, const char *detail);

/* ---- purge (purge.c) ---- */
/* Sites of the geo: all of them, and those whose key the purge destroyed. */
ck_err files_purge_counts(struct ck_files *f, const char *tenant, const char *geo, int64_t *purged,
                          int64_t *all);

#endif
