/*
 * base — the conventions every other module stands on.
 *
 * Errors: every fallible function returns ck_err (CK_OK is 0) and, on failure,
 * records a human-readable message for the calling thread with ck_err_set().
 * The message is per thread and lives until the next ck_err_set/ck_err_clear
 * on that thread. Messages never contain key material. An optional service
 * error code (e.g. "KeyNotFound") and inner code (e.g. "AccessDenied") can be
 * attached with ck_err_code(); the HTTP layer renders them.
 *
 * Buffers: struct ck_buf owns its bytes (malloc); ck_buf_free releases them.
 * struct ck_secret owns bytes in locked, non-dumpable memory that are wiped
 * on free; use it for every unwrapped key and every plaintext key encoding.
 *
 * Thread-safety: everything here is safe to call from any thread; the error
 * state is thread-local. Nothing here includes OpenSSL, SQLite or HTTP headers.
 */
#ifndef CK_BASE_H
#define CK_BASE_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---------- errors ---------- */

typedef enum ck_err {
    CK_OK = 0,
    CK_EINVAL,     /* bad input from the caller */
    CK_ENOTFOUND,  /* the thing addressed does not exist */
    CK_ECONFLICT,  /* the state of the thing forbids it (exists, deleted, busy) */
    CK_EUNAUTH,    /* no valid credentials */
    CK_EFORBIDDEN, /* credentials valid, permission missing */
    CK_ETOOBIG,    /* input over a size limit */
    CK_EMETHOD,    /* method not allowed on this resource */
    CK_EGONE,      /* existed, permanently destroyed */
    CK_EINTEGRITY, /* authentication tag / signature / chain check failed */
    CK_ECRYPTO,    /* a cryptographic operation failed */
    CK_EUNAVAIL,   /* transient: a dependency is unreachable, retry may work */
    CK_ENOMEM,
    CK_EIO,
    CK_EINTERNAL,
    CK_ERR_COUNT
} ck_err;

/* Records the error message for this thread and returns e, so callers can
 * write `return ck_err_set(CK_EINVAL, "...", ...)`. Clears any error code. */
ck_err ck_err_set(ck_err e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Attaches a service error code and optional inner code to the current error. */
void ck_err_code(const char *code, const char *inner);
const char *ck_err_msg(void);       /* "" when none */
const char *ck_err_code_get(void);  /* NULL when none */
const char *ck_err_inner_get(void); /* NULL when none */
void ck_err_clear(void);
const char *ck_err_name(ck_err e); /* "EINVAL", ... */

#define CK_TRY(expr)                                                                               \
    do {                                                                                           \
        ck_err ck_try_e_ = (expr);                                                                 \
        if (ck_try_e_ != CK_OK)                                                                    \
            return ck_try_e_;                                                                      \
    } while (0)

/* Jumps to `out` with rc set; for functions that have cleanup to do. */
#define CK_GUARD(expr)                                                                             \
    do {                                                                                           \
        rc = (expr);                                                                               \
        if (rc != CK_OK)                                                                           \
            goto out;                                                                              \
    } while (0)

/* ---------- byte buffers ---------- */

struct ck_buf {
    uint8_t *p;
    size_t n;
};

ck_err ck_buf_alloc(struct ck_buf *b, size_t n);              /* zeroed */
ck_err ck_buf_set(struct ck_buf *b, const void *p, size_t n); /* frees old, copies */
ck_err ck_buf_append(struct ck_buf *b, const void *p, size_t n);
void ck_buf_free(struct ck_buf *b); /* safe on a zeroed struct */

/* ---------- secrets ---------- */

/* Bytes in mlock()ed, MADV_DONTDUMP memory, wiped on free. */
struct ck_secret {
    uint8_t *p;
    size_t n;
    size_t cap_; /* mapping size; internal */
};

ck_err ck_secret_alloc(struct ck_secret *s, size_t n); /* zeroed */
ck_err ck_secret_set(struct ck_secret *s, const void *p, size_t n);
void ck_secret_free(struct ck_secret *s); /* wipes; safe on a zeroed struct */
void ck_wipe(void *p, size_t n);          /* not optimised away */
/* Constant-time equality of two equal-length byte ranges. */
bool ck_ct_equal(const void *a, const void *b, size_t n);

/* ---------- encodings ---------- */

/* base64url without padding; *out is a NUL-terminated malloc'd string. */
ck_err ck_b64url_encode(const uint8_t *p, size_t n, char **out);
/* Accepts base64url with or without '=' padding (and, leniently, '+' '/').
 * Rejects anything else, including whitespace. */
ck_err ck_b64url_decode(const char *s, size_t len, struct ck_buf *out);
ck_err ck_b64url_decode_secret(const char *s, size_t len, struct ck_secret *out);
/* Lowercase hex; out must hold 2n+1 bytes. */
void ck_hex_encode(const uint8_t *p, size_t n, char *out);
/* The value of one hex digit, -1 when c is not one. */
int ck_hex_digit(int c);
ck_err ck_hex_decode(const char *s, struct ck_buf *out);

/* ---------- identifiers and time ---------- */

/* Random (v4) UUID, lowercase, 36 chars + NUL. Uses the OS CSPRNG. */
ck_err ck_uuid_v4(char out[37]);
bool ck_uuid_valid(const char *s);
/* Fills p with n bytes from the OS CSPRNG (getrandom). */
ck_err ck_os_random(void *p, size_t n);

int64_t ck_now(void);    /* Unix seconds */
int64_t ck_now_ms(void); /* Unix milliseconds */
/* RFC 3339 UTC ("2026-12-03T17:03:22Z"); out holds 32 bytes. */
void ck_time_rfc3339(int64_t unix_seconds, char out[32]);
/* Parses a duration "90s", "15m", "1h", "7d" (or a bare number of seconds). */
ck_err ck_duration_parse(const char *s, int64_t *seconds);
/* Parses an ISO-8601 duration ("P90D", "PT12H", "P1Y2M3DT4H5M6S"); years
 * count 365 days and months 30, as key rotation policies use them. */
ck_err ck_iso_duration_parse(const char *s, int64_t *seconds);

/* ---------- logging ---------- */

enum ck_log_level { CK_LOG_DEBUG, CK_LOG_INFO, CK_LOG_WARN, CK_LOG_ERROR };

void ck_log_set_level(enum ck_log_level level);
/* One JSON line to stderr: {"ts":..,"level":..,"msg":..,k1:v1,...}.
 * The variadic part is NULL-terminated pairs of const char* key and value.
 * Values are strings; never pass key material. */
void ck_log(enum ck_log_level level, const char *msg, ...);

/* ---------- JSON memory ---------- */

/* Makes jansson wipe every block it frees: request bodies and backups carry
 * private key material through JSON. Call once at start-up, before any
 * JSON value exists. */
void ck_json_wipe_on_free(void);
/* free() that first wipes the whole malloc'd block. */
void ck_free_wiped(void *p);

/* ---------- fingerprints of destroyed blobs ---------- */

/* What a purge keeps of a stored blob it destroys (a wrapped key, a sealed
 * availability key), so that a later scan of the raw store files can prove
 * no copy survived: its length, its first 8 bytes and its SHA-256. Enough to
 * recognise the blob, useless for decrypting anything (the blobs are
 * ciphertexts; 8 bytes of one reveal nothing of the key inside). */
struct ck_blob_print {
    char what[128];          /* e.g. "TIK 9f… copy under root key 1" */
    bool availability_store; /* kept in the availability store, not the main one */
    uint32_t len;
    uint8_t head[8];
    uint8_t sha256[32];
};

/* ---------- small string helpers ---------- */

char *ck_strdup(const char *s); /* NULL-safe; aborts on OOM */
char *ck_sprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void *ck_xmalloc(size_t n); /* aborts on OOM */
void *ck_xcalloc(size_t n, size_t m);
void *ck_xrealloc(void *p, size_t n); /* aborts on OOM */

#endif
