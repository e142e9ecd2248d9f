/*
 * purge — the customer's exit: the signed permanent data purge of a mail
 * DEP or of a files geo (DESIGN §6), its certificate and its verification,
 * and tenant offboarding back to service-managed keys. docs/purge.md.
 *
 * A purge goes requested → document issued → executing n% → done:
 *   request   the tenant admin asks; dep/ or files/ first proves with a
 *             wrapKey probe that both root keys refuse the service (403);
 *   document  the service issues the canonical purge document (sorted-key
 *             compact JSON: tenant, policy, the mailboxes or sites with
 *             counts and sizes, reason, contact, times, document id);
 *   sign      the tenant's approver signs the document's exact bytes with
 *             Ed25519, offline (the CLI; no server involved);
 *   execute   the operator submits document and signature; the service
 *             checks the bytes against the issued document, the signature
 *             against the approver key registered at onboarding, and the
 *             document against the data as it is now, then records the
 *             fingerprints of every stored blob it will destroy and starts
 *             the durable "purge" job;
 *   job       mail: the DEP row (every wrapped copy of its key), then the
 *             mailboxes' items and keys, then the availability key; files:
 *             the sites' chunks, files and site keys, then the TIKs and
 *             their availability keys. Each step is one transaction and is
 *             idempotent, so a crash at any point resumes;
 *   done      a purge certificate (what was destroyed, when, on whose
 *             signature) signed with the service's own Ed25519 key, written
 *             to the audit log and kept for `ckey purge certificate`.
 * Verification re-checks the store for any row that should be gone and
 * scans the raw database and WAL files of both stores for any copy of a
 * destroyed blob.
 *
 * This module sits above dep/, mail/ and files/: each of those destroys what
 * it owns (DESIGN §5 puts "purge path" in dep/; the orchestration needs mail
 * and files too, which dep/ may not call, so it lives here). Owns the tables
 * ck_purge, ck_purge_approver and ck_purge_signing_key, and the job kinds
 * "purge" and "tenant.offboard". Calls store/, crypto/, auth/ (tenant
 * names), audit/, jobs/, dep/, mail/, files/. Thread-safe.
 */
#ifndef CK_PURGE_H
#define CK_PURGE_H

#include <jansson.h>

#include "audit/audit.h"
#include "base/base.h"
#include "dep/dep.h"
#include "files/files.h"
#include "jobs/jobs.h"
#include "mail/mail.h"
#include "store/store.h"

#define CK_PURGE_JOB "purge"
#define CK_OFFBOARD_JOB "tenant.offboard"

struct ck_purges;

struct ck_purge_config {
    struct ck_store *store;              /* purge records, with the mail and files data */
    struct ck_store *availability_store; /* scanned by verification */
    const struct ck_secret *master_key;  /* seals the service signing key */
    struct ck_deps *deps;
    struct ck_mail *mail;
    struct ck_files *files;
    struct ck_jobs *jobs;
    struct ck_audit *audit;
};

ck_err ck_purges_open(const struct ck_purge_config *cfg, struct ck_purges **out);
void ck_purges_close(struct ck_purges *p);

/* ---------- keys that sign ---------- */

/* "SHA256:" + lowercase hex of SHA-256 over the 32 public key bytes. */
#define CK_PURGE_FPR_LEN 72
void ck_purge_fingerprint(const uint8_t pub[32], char out[CK_PURGE_FPR_LEN]);

/* The service's certificate signing key (made on first open, sealed under
 * the master key): its public half as PEM (malloc'd) and fingerprint. */
ck_err ck_purge_signing_key(struct ck_purges *p, char **pem, char fpr[CK_PURGE_FPR_LEN]);

struct ck_purge_approver {
    uint8_t public_key[32];
    char fingerprint[CK_PURGE_FPR_LEN];
    char set_by[300];
    int64_t set_at;
};
/* CK_ENOTFOUND when the tenant registered none. */
ck_err ck_purge_approver_get(struct ck_purges *p, const char *tenant,
                             struct ck_purge_approver *out);
/* Registers the tenant's purge approver (an Ed25519 public key, PEM). The
 * first registration is the tenant admin's (at onboarding); replacing it
 * needs the operator (as_operator), else CK_EFORBIDDEN. Audited, with
 * both fingerprints when it replaces one. */
ck_err ck_purge_approver_set(struct ck_purges *p, const char *tenant, const char *pem,
                             bool as_operator, const char *by, const char *request_id,
                             struct ck_purge_approver *out);

/* ---------- purges ---------- */

enum ck_purge_kind { CK_PURGE_MAIL, CK_PURGE_FILES };
enum ck_purge_stage {
    CK_PURGE_REQUESTED,
    CK_PURGE_DOCUMENT_ISSUED,
    CK_PURGE_EXECUTING,
    CK_PURGE_DONE,
};
const char *ck_purge_kind_name(enum ck_purge_kind k);   /* "mail" | "files" */
const char *ck_purge_stage_name(enum ck_purge_stage s); /* "requested", "document issued", ... */

struct ck_purge {
    char id[37];
    char tenant[37];
    enum ck_purge_kind kind;
    char target[37];      /* the DEP id, or the geo */
    char target_name[65]; /* the DEP's name, or the geo */
    enum ck_purge_stage stage;
    char reason[513], contact[257];
    char requested_by[300];
    int64_t requested_at;
    char document_id[37]; /* "" until issued */
    int64_t issued_at;
    char executed_by[300];
    int64_t executed_at, completed_at;
    char job_id[37];
    int percent; /* of the job, while executing; 100 when done */
};

/* Requests the purge of the tenant's mail DEP (id or name): see
 * ck_dep_purge_request for the checks. Recorded as a purge in stage
 * requested; a DEP whose request was recorded earlier is CK_ECONFLICT. */
ck_err ck_purge_request_mail(struct ck_purges *p, const char *tenant, const char *dep_ref,
                             const char *reason, const char *contact, const char *by,
                             const char *request_id, struct ck_purge *out);
/* The same for the files of a geo: see ck_spo_purge_request. */
ck_err ck_purge_request_files(struct ck_purges *p, const char *tenant, const char *geo,
                              const char *reason, const char *contact, const char *by,
                              const char *request_id, struct ck_purge *out);
/* tenant NULL: any tenant's. */
ck_err ck_purge_get(struct ck_purges *p, const char *tenant, const char *id, struct ck_purge *out);
ck_err ck_purge_list(struct ck_purges *p, const char *tenant, struct ck_purge **out, size_t *n);

/* The purge document (malloc'd canonical JSON, the exact bytes to sign).
 * Issued on the first call (stage document issued); later calls return the
 * same document, unless reissue, which issues a new one (new document id)
 * — needed when the data changed since. CK_ECONFLICT once executing. */
ck_err ck_purge_document(struct ck_purges *p, const char *tenant, const char *id, bool reissue,
                         const char *request_id, char **doc);

/* Executes a signed purge document (the operator). Refused, changing
 * nothing: a missing or malformed signature (CK_EINVAL); a document that
 * names no purge (CK_ENOTFOUND) or differs in any byte from the one issued
 * (CK_EINVAL); a purge already executing or done (CK_ECONFLICT); a tenant
 * with no approver (CK_ECONFLICT); a signature that does not verify with the
 * tenant's approver key (CK_EFORBIDDEN); data that changed since the
 * document was issued (CK_ECONFLICT: reissue it). */
ck_err ck_purge_execute(struct ck_purges *p, const char *doc, size_t doc_len, const uint8_t sig[64],
                        const char *by, const char *request_id, struct ck_purge *out);

/* The signed certificate of a done purge: {"certificate": {...},
 * "signature": base64url Ed25519 over the certificate's canonical JSON,
 * "algorithm": "Ed25519", "signingKey": fingerprint}. CK_ECONFLICT before
 * the purge is done. */
ck_err ck_purge_certificate(struct ck_purges *p, const char *tenant, const char *id, json_t **out);
/* Checks a certificate file's signature with the public key given (32
 * bytes): CK_OK, or CK_EINTEGRITY saying what is wrong. */
ck_err ck_purge_certificate_check(const json_t *file, const uint8_t pub[32]);

/* Verifies a done purge: the certificate's signature; that no row of the
 * destroyed keys or purged objects remains; and, scanning every byte of the
 * database, WAL and journal files of both stores, that no copy of any
 * destroyed blob remains. *report: {"purgeId", "result": "pass" | "fail",
 * "checks": [{"check", "result", "detail"}], "scanned": [{"file",
 * "bytes"}]}. CK_OK whatever the result; errors only when it cannot check. */
ck_err ck_purge_verify(struct ck_purges *p, const char *tenant, const char *id, json_t **report);

/* ---------- offboarding ---------- */

/* Starts (or finds running) the tenant's offboarding job: every mailbox
 * and mail user goes back to the service-managed DEP (re-encryption jobs),
 * every registered geo back to service-managed keys (ck_spo_unregister);
 * when all have finished, the tenant's DEPs are disabled. DEPs and geos
 * with a purge request are left to their purge. Nothing is deleted. */
ck_err ck_offboard_start(struct ck_purges *p, const char *tenant, const char *request_id,
                         char job_id[37]);
/* Progress: {"state": "none" | "queued" | "running" | "done" | "failed",
 * "jobId", "percent", "mailboxes": {"total", "moved"}, "geos": {"total",
 * "moved"}, "policiesDisabled", "error"?}. */
ck_err ck_offboard_status(struct ck_purges *p, const char *tenant, json_t **out);

#endif
