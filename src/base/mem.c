/*
 * mem.c — byte buffers, locked secret memory, wiping and constant-time compare.
 *
 * Secrets get their own anonymous mapping so that mlock() and
 * MADV_DONTDUMP apply to them alone: a core dump or swap never holds them.
 * mlock can fail under a low RLIMIT_MEMLOCK; we log once and carry on with
 * the memory still excluded from dumps, rather than refusing to serve.
 */
#include "base.h"

#include <jansson.h>
#include <malloc.h>
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

ck_err ck_secret_alloc(struct ck_secret *s, size_t n)
{
    static int warned;
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t cap = ((n ? n : 1) + page - 1) / page * page;
    void *p = mmap(NULL, cap, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return ck_err_set(CK_ENOMEM, "cannot map %zu bytes of secret memory", cap);
    (void)madvise(p, cap, MADV_DONTDUMP);
    if (mlock(p, cap) != 0 && !__atomic_exchange_n(&warned, 1, __ATOMIC_RELAXED))
        ck_log(CK_LOG_WARN, "mlock failed; secrets stay out of core dumps but may be swapped",
               "hint", "raise RLIMIT_MEMLOCK (ulimit -l)", NULL);
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
    ck_wipe(s->p, s->cap_);
    munlock(s->p, s->cap_);
    munmap(s->p, s->cap_);
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
