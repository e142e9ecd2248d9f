/*
 * audit — the append-only, hash-chained audit log.
 *
 * Each record carries time, principal, operation, target, result, request
 * id and a short detail — never key material. Records are chained: record
 * n's MAC is HMAC-SHA256(audit key, MAC(n-1) || record n's fields), with the
 * audit key derived from the master key, so whoever can edit the database
 * but does not hold the master key cannot edit, insert or delete a record
 * without `ck_audit_verify` seeing it. A MAC'd head row (last sequence number
 * and MAC) makes the deletion of the newest records visible too; what a MAC
 * chain cannot show is a database rolled back whole to an older copy.
 *
 * Owns the tables ck_audit and ck_audit_head. Calls store/ and crypto/.
 * Thread-safety: appends from any thread or process are serialised by the
 * store's write transaction. Within a process, appends that arrive while
 * one is being written are group-committed: the next transaction writes
 * them all, in arrival order. ck_audit_append returns once its record is
 * committed (or the transaction holding it failed), never before. An
 * append from a thread that holds a store transaction of its own is
 * refused (CK_EINTERNAL) and writes nothing.
 */
#ifndef CK_AUDIT_H
#define CK_AUDIT_H

#include "base/base.h"
#include "store/store.h"

struct ck_audit;

struct ck_audit_event {
    const char *principal; /* name or object id; "-" for none */
    const char *operation; /* e.g. "token.issue", "key.unwrapKey" */
    const char *target;    /* what was acted on */
    const char *result;    /* "success", "denied", "failed: <reason>" */
    const char *request_id;
    const char *detail; /* optional, no secrets */
};

struct ck_audit_record {
    int64_t seq;
    int64_t ts;
    char *principal, *operation, *target, *result, *request_id, *detail;
};

struct ck_audit_report {
    int64_t checked; /* records read */
    bool ok;
    int64_t bad_seq;   /* first record that fails, 0 when none or not a record */
    char problem[256]; /* what was wrong, "" when ok */
};

/* Derives the audit key from the master key (which is not retained) and
 * applies the module's migrations. */
ck_err ck_audit_open(struct ck_store *s, const struct ck_secret *master_key, struct ck_audit **out);
void ck_audit_close(struct ck_audit *a);
ck_err ck_audit_append(struct ck_audit *a, const struct ck_audit_event *ev);
/* Records with seq > after, oldest first, at most max. */
ck_err ck_audit_list(struct ck_audit *a, int64_t after, size_t max, struct ck_audit_record **out,
                     size_t *n);
void ck_audit_records_free(struct ck_audit_record *v, size_t n);
ck_err ck_audit_verify(struct ck_audit *a, struct ck_audit_report *rep);

#endif
