/*
 * files — geos, sites, chunked encrypted files, and the SharePoint-style
 * data encryption policy of each geo (DESIGN §3, §4 "Files DEP").
 *
 * Hierarchy per geo:  TIK (tenant intermediate key) → site key → chunk key
 * → chunk bytes. A file is split into chunks (4 MiB by default); each chunk
 * has its own random key wrapped (AES-KWP) by its site's key, and its bytes
 * are AES-256-GCM with associated data binding tenant, site, file path,
 * version and chunk index. A site key is wrapped by the geo's current TIK.
 *
 * A geo's TIK: before a DEP is registered the geo runs on a service-managed
 * TIK (wrapped under the tenant's service root key, like the service-managed
 * mail DEP). A registered TIK exists only as three wrapped copies: under
 * the primary and the secondary customer root keys (RSA-OAEP-256 through
 * keyprov, as the files service principal) and under the files availability
 * key of the DEP, which is used ONLY by an explicit restore, never by reads.
 *
 * States (struct ck_spo_dep.state):
 *   Unregistered → Registering (n% of sites moved to the new TIK) → Registered
 *   Registered → Rolling (n%) after a roll of the primary or secondary key:
 *                a new TIK, every site key rewrapped, the old TIK deleted
 *   Registered → Recovering (n%) during a restore: the TIK recovered with
 *                the availability key and wrapped under the new root keys
 *   Registered → Unregistering (n%) → Unregistered: back to a
 *                service-managed TIK (offboarding)
 *   Registered (purge requested) → Purging (n% of sites destroyed) → Purged
 * One registration/roll/restore/unregistration at a time per geo; each runs
 * as a durable job ("files.rewrap") moving site keys in batches, resumable
 * after a crash.
 *
 * TIK cache: unwrapped TIKs are cached with a TTL and refreshed ahead of
 * expiry (both configurable). When the vaults are unreachable, files keep
 * being served from the cache until it expires, then requests fail with
 * CK_EUNAVAIL (503) and a clear message; the availability key is not used.
 *
 * Owns the tables ck_geo, ck_site, ck_tik, ck_spo_dep, ck_file, ck_chunk and
 * (availability store) ck_files_availability_key. Calls store/, crypto/,
 * keyprov/, jobs/, audit/. Never vault/. Thread-safe.
 */
#ifndef CK_FILES_H
#define CK_FILES_H

#include "audit/audit.h"
#include "base/base.h"
#include "jobs/jobs.h"
#include "keyprov/keyprov.h"
#include "store/store.h"

#define CK_FILES_CHUNK_DEFAULT (4u << 20)
#define CK_FILES_CHUNK_MIN (64u << 10)
#define CK_FILES_CHUNK_MAX (16u << 20)
#define CK_FILES_REWRAP_JOB "files.rewrap"

struct ck_files;

struct ck_files_config {
    struct ck_store *store;
    struct ck_store *availability_store;
    const struct ck_secret *master_key;              /* seals service-managed TIK roots */
    const struct ck_secret *availability_master_key; /* seals files availability keys */
    struct ck_keyprov *keyprov;                      /* the files service principal's */
    struct ck_jobs *jobs;
    struct ck_audit *audit;
    int64_t tik_cache_ttl;     /* seconds; 0 = 3600 */
    int64_t tik_refresh_ahead; /* seconds before expiry a TIK is refreshed; 0 = ttl/4 */
    size_t chunk_size;         /* 0 = CK_FILES_CHUNK_DEFAULT */
};

ck_err ck_files_open(const struct ck_files_config *cfg, struct ck_files **out);
void ck_files_close(struct ck_files *f);

/* ---------- geos and sites ---------- */

/* geo: 2–8 uppercase letters ("EUR", "NAM"). */
ck_err ck_geo_add(struct ck_files *f, const char *tenant, const char *geo);
ck_err ck_geo_list(struct ck_files *f, const char *tenant, char (**geos)[9], size_t *n);

struct ck_site {
    char id[37];
    char tenant[37];
    char geo[9];
    char path[257]; /* "/sites/NAME" */
    char tik_id[37];
    int64_t created;
};
/* path: "/sites/NAME", NAME of [A-Za-z0-9._-]{1,128}. */
ck_err ck_site_new(struct ck_files *f, const char *tenant, const char *geo, const char *path,
                   struct ck_site *out);
/* A site of a Purging or Purged geo: CK_EGONE, "the site /sites/x was
 * permanently purged (purge ID)". */
ck_err ck_site_get(struct ck_files *f, const char *tenant, const char *path, struct ck_site *out);
/* Lists purged sites too: they remain as tombstones (their path cannot be
 * used again), with tik_id "" once the purge destroyed their key. */
ck_err ck_site_list(struct ck_files *f, const char *tenant, struct ck_site **out, size_t *n);

/* ---------- files ---------- */

/* Paths: 1–1024 bytes of segments separated by '/', none empty, "." or
 * "..", no control characters. */
struct ck_file_info {
    char path[1025];
    int64_t version;
    int64_t size;
    uint32_t chunk_size;
    int64_t chunks;
    int64_t created;
};

/* Streaming write: chunks are encrypted and stored as they fill; the new
 * version becomes visible atomically at commit (an overwrite replaces the
 * old version in one transaction); abort leaves nothing behind. */
struct ck_file_writer;
ck_err ck_file_writer_open(struct ck_files *f, const char *tenant, const char *site,
                           const char *path, size_t chunk_size /* 0 = default */,
                           struct ck_file_writer **out);
ck_err ck_file_writer_write(struct ck_file_writer *w, const uint8_t *p, size_t n);
ck_err ck_file_writer_commit(struct ck_file_writer *w, struct ck_file_info *info);
void ck_file_writer_abort(struct ck_file_writer *w); /* also frees; NULL-safe */

/* Streaming read of the current version, chunk by chunk. A chunk that
 * fails its integrity check fails the read with CK_EINTEGRITY (never wrong
 * bytes). offset/length select a range (length 0 = to the end); out of
 * bounds is CK_EINVAL. */
struct ck_file_reader;
ck_err ck_file_reader_open(struct ck_files *f, const char *tenant, const char *site,
                           const char *path, int64_t offset, int64_t length,
                           struct ck_file_reader **out, struct ck_file_info *info);
/* Fills up to max bytes; *got 0 at the end. */
ck_err ck_file_reader_read(struct ck_file_reader *r, uint8_t *buf, size_t max, size_t *got);
void ck_file_reader_close(struct ck_file_reader *r); /* NULL-safe */

ck_err ck_file_delete(struct ck_files *f, const char *tenant, const char *site, const char *path);
ck_err ck_file_list(struct ck_files *f, const char *tenant, const char *site,
                    struct ck_file_info **out, size_t *n);

/* ---------- the geo's data encryption policy ---------- */

enum ck_spo_state {
    CK_SPO_UNREGISTERED,
    CK_SPO_REGISTERING,
    CK_SPO_REGISTERED,
    CK_SPO_ROLLING,
    CK_SPO_RECOVERING,
    CK_SPO_UNREGISTERING, /* moving back to service-managed keys (offboarding) */
    CK_SPO_PURGING,       /* a signed purge is destroying the geo's keys */
    CK_SPO_PURGED,        /* final: nothing of the geo's data can be read */
};
const char *ck_spo_state_name(enum ck_spo_state s); /* "Unregistered", ... */

struct ck_spo_dep {
    char tenant[37];
    char geo[9];
    enum ck_spo_state state;
    int percent;                      /* of sites moved (destroyed, when Purging) */
    char primary_uri[CK_KEY_URI_MAX]; /* "" when unregistered */
    char secondary_uri[CK_KEY_URI_MAX];
    char primary_version[33], secondary_version[33];
    char tik_id[37]; /* the TIK sites are (being) moved to */
    char job_id[37]; /* the running job, "" when none */
    bool purge_requested;
    char purge_id[37]; /* the purge (request) this geo is under, "" when none */
    char purge_reason[513], purge_contact[257];
    int64_t purge_requested_at;
};

/* Validated like mail DEP keys (for the files service principal); one per
 * geo: a second registration is CK_ECONFLICT. */
ck_err ck_spo_register(struct ck_files *f, const char *tenant, const char *geo,
                       const char *primary_uri, const char *secondary_uri, const char *request_id,
                       struct ck_spo_dep *out);
ck_err ck_spo_get(struct ck_files *f, const char *tenant, const char *geo, struct ck_spo_dep *out);
/* Rolls one root key: primary (true) or secondary. Refused with
 * CK_ECONFLICT and a clear message while a registration, roll or restore
 * runs. */
ck_err ck_spo_update(struct ck_files *f, const char *tenant, const char *geo, bool primary,
                     const char *uri, const char *request_id, struct ck_spo_dep *out);
/* Recovery after a lost root key: the TIK through the availability key,
 * wrapped under the (new) root keys given; state Recovering until done. */
ck_err ck_spo_restore(struct ck_files *f, const char *tenant, const char *geo,
                      const char *primary_uri, const char *secondary_uri, const char *request_id,
                      struct ck_spo_dep *out);

/* ---------- offboarding and purge (docs/purge.md) ---------- */

/* Moves the geo back to service-managed keys: a new service-managed TIK,
 * then a files.rewrap job moves every site to it (state Unregistering, with
 * percent) and ends in Unregistered with the old TIKs (and their
 * availability keys) deleted. The job may call the customer's root keys
 * only to unwrap the old TIK (system use); afterwards the geo never calls
 * them again. Already Unregistered, or Unregistering: CK_OK, nothing to do
 * (out shows it).
 * Refused (CK_ECONFLICT) while another move runs or a purge was requested. */
ck_err ck_spo_unregister(struct ck_files *f, const char *tenant, const char *geo,
                         const char *request_id, struct ck_spo_dep *out);

/* Records a purge request for the geo, only after proving that the files
 * service principal has lost wrapKey on both root keys: each is sent a
 * wrapKey of random bytes (ck_keyprov_probe_wrap) and both must answer 403.
 * Otherwise CK_ECONFLICT naming the vault (and key) that still grants
 * wrapKey, or CK_EUNAVAIL naming the one that did not answer; nothing
 * changes. Requires state Registered and no earlier request (CK_ECONFLICT).
 * reason 1–512 bytes, contact 1–256 bytes (CK_EINVAL). Audited. From then
 * on register, update, restore, unregister and new sites in the geo are
 * refused with CK_ECONFLICT saying a purge was requested. */
ck_err ck_spo_purge_request(struct ck_files *f, const char *tenant, const char *geo,
                            const char *purge_id, const char *reason, const char *contact,
                            const char *request_id, struct ck_spo_dep *out);

/* One site of a geo, as the purge document lists it. */
struct ck_files_purge_site {
    char path[257];
    int64_t files;  /* file versions (rows), all states */
    int64_t chunks; /* chunk keys */
    int64_t bytes;  /* sum of file sizes */
};
/* The geo's sites in path order. */
ck_err ck_files_purge_inventory(struct ck_files *f, const char *tenant, const char *geo,
                                struct ck_files_purge_site **out, size_t *n);

/* Fingerprints (ck_blob_print_make) of every stored blob the purge of the
 * geo destroys: each TIK's copies (under root key 1 and 2, under its
 * availability key), each TIK availability key as sealed in the
 * availability store (availability_store = true), each site's wrapped site
 * key. Chunk keys are counted, not printed (there are millions; each is
 * useless once its site key is gone). tik_ids gets the TIK ids. */
ck_err ck_files_purge_prints(struct ck_files *f, const char *tenant, const char *geo,
                             struct ck_blob_print **out, size_t *n, char (**tik_ids)[37],
                             size_t *ntik);

/* Marks the geo Purging under purge_id: from here every operation on the
 * geo's sites and files (read, write, list, delete, new site) fails with
 * CK_EGONE naming the purge ("... was permanently purged (purge ID)"), and
 * so does ck_site_get. Requires a purge request with this purge_id.
 * Idempotent. */
ck_err ck_files_purge_mark(struct ck_files *f, const char *tenant, const char *geo,
                           const char *purge_id);

/* One resumable batch of the geo's purge: deletes up to 100 sites' chunks,
 * files and wrapped site keys (the site rows stay as tombstones so reads
 * answer 410); when no site is left, deletes every TIK of the geo, their
 * cache entries and their availability keys, checkpoints both stores
 * (ck_store_checkpoint) and sets the state Purged. *done and *total count
 * sites; *finished when Purged. Each batch is one transaction; calling it
 * again after a crash, or after finished, is safe. */
ck_err ck_files_purge_step(struct ck_files *f, const char *tenant, const char *geo, int64_t *done,
                           int64_t *total, bool *finished);

/* What remains of the geo's key material and data, for verification:
 * all zero after a finished purge. */
struct ck_files_purge_remains {
    int64_t site_keys;         /* sites still holding a wrapped site key */
    int64_t files, chunks;     /* rows left */
    int64_t tiks;              /* TIK rows of the geo */
    int64_t availability_keys; /* of those TIKs (by the ids from ck_files_purge_prints) */
};
ck_err ck_files_purge_remains(struct ck_files *f, const char *tenant, const char *geo,
                              const char (*tik_ids)[37], size_t ntik,
                              struct ck_files_purge_remains *out);

#endif
