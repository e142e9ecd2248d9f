/*
 * cache.c — the cache of unwrapped keys: a hash map from id to a key in
 * locked memory (ck_secret) with an expiry time, under one mutex.
 *
 * Expiry runs on the monotonic clock, so a wall-clock step neither keeps a
 * key past its time-to-live nor drops a fresh one. Every path that removes
 * an entry (expiry, replace, drop, sweep, free) goes through entry_free,
 * which wipes the key. A ttl of 0 or less caches nothing.
 */
#include "keyprov/keyprov.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct entry {
    struct entry *next;
    uint64_t hash;
    int64_t expires_ms; /* monotonic */
    struct ck_secret key;
    char id[]; /* NUL-terminated */
};

struct ck_keycache {
    pthread_mutex_t mu;
    int64_t ttl;
    uint64_t seed; /* random, so ids cannot be chosen to collide */
    struct entry **bucket;
    size_t nbucket; /* a power of two */
    size_t count;
};

#define INITIAL_BUCKETS 64

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* FNV-1a over the seed and the id. */
static uint64_t hash_of(const struct ck_keycache *c, const char *id)
{
    uint64_t h = 14695981039346656037ull ^ c->seed;
    for (const unsigned char *s = (const unsigned char *)id; *s; s++) {
        h ^= *s;
        h *= 1099511628211ull;
    }
    return h;
}

static void entry_free(struct entry *e)
{
    ck_secret_free(&e->key);
    free(e);
}

struct ck_keycache *ck_keycache_new(int64_t ttl_seconds)
{
    struct ck_keycache *c = ck_xcalloc(1, sizeof *c);
    pthread_mutex_init(&c->mu, NULL);
    c->ttl = ttl_seconds > 0 ? ttl_seconds : 0;
    if (ck_os_random(&c->seed, sizeof c->seed) != CK_OK)
        c->seed = (uint64_t)mono_ms();
    c->nbucket = INITIAL_BUCKETS;
    c->bucket = ck_xcalloc(c->nbucket, sizeof *c->bucket);
    return c;
}

void ck_keycache_free(struct ck_keycache *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->nbucket; i++)
        for (struct entry *e = c->bucket[i], *next; e; e = next) {
            next = e->next;
            entry_free(e);
        }
    free(c->bucket);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

int64_t ck_keycache_ttl(const struct ck_keycache *c)
{
    return c->ttl;
}

/* The link that points at id's entry (or at the NULL ending its chain). */
static struct entry **find(struct ck_keycache *c, const char *id, uint64_t h)
{
    struct entry **pp = &c->bucket[h & (c->nbucket - 1)];
    while (*pp && ((*pp)->hash != h || strcmp((*pp)->id, id) != 0))
        pp = &(*pp)->next;
    return pp;
}

static void unlink_free(struct ck_keycache *c, struct entry **pp)
{
    struct entry *e = *pp;
    *pp = e->next;
    entry_free(e);
    c->count--;
}

static void grow(struct ck_keycache *c)
{
    size_t n = c->nbucket * 2;
    struct entry **b = calloc(n, sizeof *b);
    if (!b)
        return; /* longer chains, still correct */
    for (size_t i = 0; i < c->nbucket; i++)
        for (struct entry *e = c->bucket[i], *next; e; e = next) {
            next = e->next;
            e->next = b[e->hash & (n - 1)];
            b[e->hash & (n - 1)] = e;
        }
    free(c->bucket);
    c->bucket = b;
    c->nbucket = n;
}

bool ck_keycache_get(struct ck_keycache *c, const char *id, struct ck_secret *out)
{
    if (!id)
        return false;
    bool hit = false;
    uint64_t h = hash_of(c, id);
    pthread_mutex_lock(&c->mu);
    struct entry **pp = find(c, id, h);
    if (*pp && (*pp)->expires_ms <= mono_ms())
        unlink_free(c, pp);
    else if (*pp)
        hit = ck_secret_set(out, (*pp)->key.p, (*pp)->key.n) == CK_OK;
    pthread_mutex_unlock(&c->mu);
    return hit;
}

void ck_keycache_put(struct ck_keycache *c, const char *id, const uint8_t *key, size_t n)
{
    if (!id || c->ttl <= 0)
        return;
    uint64_t h = hash_of(c, id);
    pthread_mutex_lock(&c->mu);
    /* Replacing: the old key is wiped first, so a failed allocation below
     * leaves no entry rather than a stale one. */
    struct entry **pp = find(c, id, h);
    if (*pp)
        unlink_free(c, pp);
    size_t idlen = strlen(id);
    struct entry *e = ck_xcalloc(1, sizeof *e + idlen + 1);
    memcpy(e->id, id, idlen + 1);
    e->hash = h;
    e->expires_ms = mono_ms() + c->ttl * 1000;
    if (ck_secret_set(&e->key, key, n) != CK_OK) {
        entry_free(e);
    } else {
        if (c->count >= c->nbucket)
            grow(c);
        struct entry **head = &c->bucket[h & (c->nbucket - 1)];
        e->next = *head;
        *head = e;
        c->count++;
    }
    pthread_mutex_unlock(&c->mu);
}

void ck_keycache_drop(struct ck_keycache *c, const char *id)
{
    if (!id)
        return;
    uint64_t h = hash_of(c, id);
    pthread_mutex_lock(&c->mu);
    struct entry **pp = find(c, id, h);
    if (*pp)
        unlink_free(c, pp);
    pthread_mutex_unlock(&c->mu);
}

void ck_keycache_sweep(struct ck_keycache *c)
{
    pthread_mutex_lock(&c->mu);
    int64_t now = mono_ms();
    for (size_t i = 0; i < c->nbucket; i++) {
        struct entry **pp = &c->bucket[i];
        while (*pp) {
            if ((*pp)->expires_ms <= now)
                unlink_free(c, pp);
            else
                pp = &(*pp)->next;
        }
    }
    pthread_mutex_unlock(&c->mu);
}

size_t ck_keycache_count(struct ck_keycache *c)
{
    pthread_mutex_lock(&c->mu);
    size_t n = c->count;
    pthread_mutex_unlock(&c->mu);
    return n;
}
