/*
 * mail — mail users, mailboxes, their keys and items, statistics, and the
 * re-encryption job step.
 *
 * A mail user is a mailbox-to-be: it has a UPN and may be assigned a DEP
 * before migration. A mailbox has a current mailbox key, wrapped (AES-KWP)
 * by the key of the DEP it belongs to. Each item has its own random key,
 * wrapped by a mailbox key; its bytes are AES-256-GCM with a random nonce
 * and associated data binding tenant, mailbox, item id and item key id, so
 * bytes moved to another row do not decrypt.
 *
 * Assigning a DEP (or none: the tenant's service-managed DEP) makes a new
 * mailbox key under it and queues a "mail.reencrypt" job; the job moves
 * every item still under an older mailbox key to the current one, a batch
 * per transaction. Each item records the mailbox key it is under, so reads
 * work throughout. IsEncrypted is true when no item remains under another
 * key than the current mailbox key.
 *
 * Owns ck_mailbox, ck_mailbox_key and ck_mail_item. Calls store/, crypto/,
 * dep/, jobs/, audit/. Thread-safe.
 */
#ifndef CK_MAIL_H
#define CK_MAIL_H

#include "base/base.h"
#include "dep/dep.h"
#include "jobs/jobs.h"
#include "store/store.h"

#define CK_MAIL_ITEM_MAX (64u << 20)
#define CK_MAIL_REENCRYPT_JOB "mail.reencrypt"

struct ck_mail;

ck_err ck_mail_open(struct ck_store *s, struct ck_deps *deps, struct ck_jobs *jobs,
                    struct ck_mail **out);
void ck_mail_close(struct ck_mail *m);

struct ck_mailbox_info {
    char tenant[37];
    char upn[257];
    bool migrated;          /* false: still a mail user */
    char dep_id[37];        /* assigned DEP ("" = service-managed) */
    char effective_dep[37]; /* the DEP the current mailbox key is under */
    bool is_encrypted;      /* every item under the current mailbox key */
    int64_t item_count, total_size;
    int64_t pending; /* items still under an older key */
    char job_id[37]; /* newest re-encryption job, "" when none */
    int64_t created;
};

ck_err ck_mailuser_new(struct ck_mail *m, const char *tenant, const char *upn);
/* dep_id NULL = the service-managed DEP. On a mailbox this is the same as
 * ck_mailbox_set_dep. */
ck_err ck_mailuser_set_dep(struct ck_mail *m, const char *tenant, const char *upn,
                           const char *dep_id, char job_id[37]);
/* Makes a mailbox (from a mail user, or new) with a key under its DEP. */
ck_err ck_mailbox_new(struct ck_mail *m, const char *tenant, const char *upn,
                      const char *request_id);
/* New mailbox key under the DEP, then a re-encryption job (job_id). */
ck_err ck_mailbox_set_dep(struct ck_mail *m, const char *tenant, const char *upn,
                          const char *dep_id, const char *request_id, char job_id[37]);
ck_err ck_mailbox_info(struct ck_mail *m, const char *tenant, const char *upn,
                       struct ck_mailbox_info *out);
ck_err ck_mailbox_list(struct ck_mail *m, const char *tenant, struct ck_mailbox_info **out,
                       size_t *n);

/* Items: ids are 1–128 of [A-Za-z0-9._-]. put replaces. */
ck_err ck_item_put(struct ck_mail *m, const char *tenant, const char *upn, const char *id,
                   const uint8_t *data, size_t n, const char *request_id);
ck_err ck_item_get(struct ck_mail *m, const char *tenant, const char *upn, const char *id,
                   const char *request_id, struct ck_secret *out);
ck_err ck_item_delete(struct ck_mail *m, const char *tenant, const char *upn, const char *id);
struct ck_item_entry {
    char id[129];
    int64_t size, created;
};
/* Items in id order after `after` ("" = from the start), at most max. */
ck_err ck_item_list(struct ck_mail *m, const char *tenant, const char *upn, const char *after,
                    size_t max, struct ck_item_entry **out, size_t *n, bool *more);

/* ---------- the purge path (DESIGN §6, docs/purge.md) ---------- */

/* A mailbox (or mail user) under a DEP being purged, for the document. */
struct ck_mail_purge_mailbox {
    char upn[257];
    int64_t items, bytes;
};
/* The tenant's live mailboxes and mail users whose data is under the DEP:
 * assigned to it, or holding a mailbox key under it; in UPN order. */
ck_err ck_mail_purge_inventory(struct ck_mail *m, const char *tenant, const char *dep_id,
                               struct ck_mail_purge_mailbox **out, size_t *n);
/* Fingerprints of every mailbox key the purge destroys (those under the
 * DEP and every key of the mailboxes above). Item keys are counted by the
 * inventory, not printed: each is useless once its mailbox key is gone. */
ck_err ck_mail_purge_prints(struct ck_mail *m, const char *tenant, const char *dep_id,
                            struct ck_blob_print **out, size_t *n);
/* Marks those mailboxes for permanent deletion under purge_id: from here
 * every operation on them fails with CK_EGONE naming the purge, and they
 * leave mailbox lists. Idempotent. */
ck_err ck_mail_purge_mark(struct ck_mail *m, const char *tenant, const char *dep_id,
                          const char *purge_id);
/* One batch in one transaction: deletes up to 500 items of the marked
 * mailboxes; once none is left, every mailbox key of them and under the
 * DEP, and checkpoints the store; *finished then. *remaining = items left.
 * The mailbox rows stay as tombstones. Safe to repeat after a crash. */
ck_err ck_mail_purge_step(struct ck_mail *m, const char *tenant, const char *dep_id,
                          const char *purge_id, int64_t *remaining, bool *finished);
struct ck_mail_purge_remains {
    int64_t items;              /* of the marked mailboxes */
    int64_t mailbox_keys;       /* of them or under the DEP */
    int64_t unmarked_mailboxes; /* live mailboxes still under the DEP */
};
ck_err ck_mail_purge_remains(struct ck_mail *m, const char *tenant, const char *dep_id,
                             const char *purge_id, struct ck_mail_purge_remains *out);

#endif
