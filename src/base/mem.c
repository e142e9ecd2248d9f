/*
 * mem.c — byte buffers, locked secret memory, wiping and constant-time compare.
 *
 * Secrets live in anonymous mappings of their own, apart from the malloc
 * heap, so that mlock() and MADV_DONTDUMP apply to them alone: a core dump
 * or swap never holds them. mlock can fail under a low RLIMIT_MEMLOCK; we log
 * once and carry on with the memory still excluded from dumps, rather than
 * refusing to serve.
 *
 * Mapping, locking and unmapping per secret cost more than the work most
 * secrets are used for (and every munmap is a TLB shootdown on every core),
 * so secrets up to 1 MiB come from a pool: power-of-two size classes, carved
 * from a few large locked regions or kept as locked mappings for reuse. A
 * block is wiped whole when it is freed, before it goes back on a free list,
 * so the pool never holds a freed secret. One mutex guards the free lists;
 * it is held only to link or unlink a block (and to map a new region).
 */
#include "base.h"

#include <jansson.h>
#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

void *ck_xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) {
        fputs("ckey: out of memory\n", stderr);
        abort();
    }
    return p;
}

void *ck_xcalloc(size_t n, size_t m)
{
    void *p = calloc(n ? n : 1, m ? m : 1);
    if (!p) {
        fputs("ckey: out of memory\n", stderr);
        abort();
    }
    return p;
}

void *ck_xrealloc(void *p, size_t n)
{
    void *np = realloc(p, n ? n : 1);
    if (!np) {
        fputs("ckey: out of memory\n", stderr);
        abort();
    }
    return np;
}

char *ck_strdup(const char *s)
{
    if (!s)
        return NULL;
    size_t n = strlen(s) + 1;
    char *d = ck_xmalloc(n);
    memcpy(d, s, n);
    return d;
}

char *ck_sprintf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *s = ck_xmalloc((size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return s;
}

ck_err ck_buf_alloc(struct ck_buf *b, size_t n)
{
    b->p = calloc(n ? n : 1, 1);
    if (!b->p)
        return ck_err_set(CK_ENOMEM, "out of memory allocating %zu bytes", n);
    b->n = n;
    return CK_OK;
}

ck_err ck_buf_set(struct ck_buf *b, const void *p, size_t n)
{
    struct ck_buf nb;
    CK_TRY(ck_buf_alloc(&nb, n));
    if (n)
        memcpy(nb.p, p, n);
    ck_buf_free(b);
    *b = nb;
    return CK_OK;
}

ck_err ck_buf_append(struct ck_buf *b, const void *p, size_t n)
{
    uint8_t *np = realloc(b->p, b->n + n + 1);
    if (!np)
        return ck_err_set(CK_ENOMEM, "out of memory growing a buffer");
    if (n)
        memcpy(np + b->n, p, n);
    b->p = np;
    b->n += n;
    return CK_OK;
}

void ck_buf_free(struct ck_buf *b)
{
    free(b->p);
    b->p = NULL;
    b->n = 0;
}

void ck_wipe(void *p, size_t n)
{
    if (p && n)
        explicit_bzero(p, n);
}

bool ck_ct_equal(const void *a, const void *b, size_t n)
{
    const volatile uint8_t *x = a, *y = b;
    uint8_t d = 0;
    for (size_t i = 0; i < n; i++)
        d |= x[i] ^ y[i];
    return d == 0;
}

/* ---------- the secret pool ---------- */

/* Size classes are powers of two. Up to SLAB_MAX the blocks are carved from
 * shared REGION-sized mappings that are never returned; from there up to
 * POOL_MAX each block is its own mapping, kept for reuse within a byte
 * budget. Larger secrets (file chunks) get a mapping per allocation, whose
 * cost is small next to the work done on that many bytes. */
#define MIN_SHIFT 4       /* 16 bytes: keeps every block 16-byte aligned */
#define SLAB_MAX_SHIFT 16 /* 64 KiB */
#define POOL_MAX_SHIFT 20 /* 1 MiB */
#define NCLASSES (POOL_MAX_SHIFT - MIN_SHIFT + 1)
#define REGION ((size_t)1 << 20)
#define LARGE_KEEP ((size_t)4 << 20) /* free blocks above SLAB_MAX kept for reuse */

/* A free block holds nothing but a link to the next free block of its class;
 * the rest of it was wiped when it was freed. */
struct free_block {
    struct free_block *next;
};

static struct {
    pthread_mutex_t mu;
    struct free_block *free[NCLASSES];
    uint8_t *bump; /* the unused tail of the newest region */
    size_t left;
    size_t large_kept; /* bytes on the free lists of the classes above SLAB_MAX */
} pool = {.mu = PTHREAD_MUTEX_INITIALIZER};

/* Under AddressSanitizer the pool poisons what nobody owns, so that a use
 * after ck_secret_free or past s->n is still reported as it would be for
 * malloc'd memory. */
#if defined(__SANITIZE_ADDRESS__)
#define CK_POOL_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CK_POOL_ASAN 1
#endif
#endif
#ifdef CK_POOL_ASAN
#include <sanitizer/asan_interface.h>
#define POISON(p, n) ASAN_POISON_MEMORY_REGION((p), (n))
#define UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#else
#define POISON(p, n) ((void)(p), (void)(n))
#define UNPOISON(p, n) ((void)(p), (void)(n))
#endif

/* An anonymous mapping excluded from core dumps and locked in RAM. NULL
 * when it cannot be mapped. */
static void *map_locked(size_t n)
{
    static int warned;
    void *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return NULL;
    (void)madvise(p, n, MADV_DONTDUMP);
    if (mlock(p, n) != 0 && !__atomic_exchange_n(&warned, 1, __ATOMIC_RELAXED))
        ck_log(CK_LOG_WARN, "mlock failed; secrets stay out of core dumps but may be swapped",
               "hint", "raise RLIMIT_MEMLOCK (ulimit -l)", NULL);
    return p;
}

static void unmap_locked(void *p, size_t n)
{
    munlock(p, n);
    munmap(p, n);
}

/* The class index of n bytes, or -1 when n is above POOL_MAX. */
static int class_of(size_t n)
{
    if (n > ((size_t)1 << POOL_MAX_SHIFT))
        return -1;
    int c = 0;
    while (((size_t)1 << (MIN_SHIFT + c)) < n)
        c++;
    return c;
}

/* Takes a block of class c, NULL when no memory can be mapped. The block is
 * zero but for the free-list link, which the caller clears. */
static void *pool_take(int c)
{
    size_t size = (size_t)1 << (MIN_SHIFT + c);
    bool large = MIN_SHIFT + c > SLAB_MAX_SHIFT;
    void *p = NULL;
    pthread_mutex_lock(&pool.mu);
    struct free_block *b = pool.free[c];
    if (b) {
        UNPOISON(b, sizeof *b);
        pool.free[c] = b->next;
        if (large)
            pool.large_kept -= size;
        p = b;
    } else if (!large) {
        if (pool.left < size) {
            /* The rest of the old region (less than one block of this
             * class) stays unused. */
            uint8_t *r = map_locked(REGION);
            if (r) {
                POISON(r, REGION);
                pool.bump = r;
                pool.left = REGION;
            }
        }
        if (pool.left >= size) {
            p = pool.bump;
            pool.bump += size;
            pool.left -= size;
        }
    }
    pthread_mutex_unlock(&pool.mu);
    if (!p && large) {
        p = map_locked(size);
        if (p)
            POISON(p, size);
    }
    return p;
}

/* Returns a wiped block of class c to its free list (or, for a large class
 * over the budget, to the system). */
static void pool_give(int c, void *p)
{
    size_t size = (size_t)1 << (MIN_SHIFT + c);
    bool large = MIN_SHIFT + c > SLAB_MAX_SHIFT;
    pthread_mutex_lock(&pool.mu);
    if (large && pool.large_kept + size > LARGE_KEEP) {
        pthread_mutex_unlock(&pool.mu);
        unmap_locked(p, size);
        return;
    }
    struct free_block *b = p;
    b->next = pool.free[c];
    pool.free[c] = b;
    if (large)
        pool.large_kept += size;
    POISON(p, size);
    pthread_mutex_unlock(&pool.mu);
}

ck_err ck_secret_alloc(struct ck_secret *s, size_t n)
{
    int c = class_of(n ? n : 1);
    if (c < 0) {
        size_t page = (size_t)sysconf(_SC_PAGESIZE);
        size_t cap = (n + page - 1) / page * page;
        void *p = map_locked(cap);
        if (!p)
            return ck_err_set(CK_ENOMEM, "cannot map %zu bytes of secret memory", cap);
        s->p = p;
        s->n = n;
        s->cap_ = cap;
        return CK_OK;
    }
    size_t cap = (size_t)1 << (MIN_SHIFT + c);
    uint8_t *p = pool_take(c);
    if (!p)
        return ck_err_set(CK_ENOMEM, "cannot map %zu bytes of secret memory", cap);
    UNPOISON(p, cap);
    memset(p, 0, sizeof(struct free_block));
    POISON(p, cap);
    UNPOISON(p, n);
    s->p = p;
    s->n = n;
    s->cap_ = cap;
    return CK_OK;
}

ck_err ck_secret_set(struct ck_secret *s, const void *p, size_t n)
{
    struct ck_secret ns;
    CK_TRY(ck_secret_alloc(&ns, n));
    if (n)
        memcpy(ns.p, p, n);
    ck_secret_free(s);
    *s = ns;
    return CK_OK;
}

void ck_secret_free(struct ck_secret *s)
{
    if (!s->p)
        return;
    /* The whole block: callers may have shortened s->n after writing. */
    UNPOISON(s->p, s->cap_);
    ck_wipe(s->p, s->cap_);
    int c = class_of(s->cap_); /* pool blocks are exactly their class's size */
    if (c >= 0)
        pool_give(c, s->p);
    else
        unmap_locked(s->p, s->cap_);
    s->p = NULL;
    s->n = 0;
    s->cap_ = 0;
}

void ck_free_wiped(void *p)
{
    if (p) {
        ck_wipe(p, malloc_usable_size(p));
        free(p);
    }
}

void ck_json_wipe_on_free(void)
{
    json_set_alloc_funcs(malloc, ck_free_wiped);
}
