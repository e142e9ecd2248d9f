/*
 * prints.c — fingerprints of destroyed blobs and the scan of raw files for
 * them (struct ck_blob_print, base.h).
 *
 * The file is read by a child process (see ck_blob_print_scan for why),
 * which sends back only the windows that start like one of the blobs; the
 * parent hashes those.
 *
 * The scan slides over every byte offset of a file, looks the 8 bytes there
 * up in an open-addressing set of the blobs' heads, and on a hit compares
 * the SHA-256 of the `len` bytes from that offset. One pass whatever the
 * number of blobs, so proving thousands of site keys gone from a database of
 * gigabytes costs one read of it. The file is read in windows that overlap
 * by the longest blob, so a copy across a window edge is still found.
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/crypto.h>

#define SCAN_WINDOW (8u << 20)

ck_err ck_blob_print_make(const char *what, bool availability_store, const void *p, size_t n,
                          struct ck_blob_print *out)
{
    if (!p || n < sizeof out->head || n > UINT32_MAX)
        return ck_err_set(CK_EINVAL, "a blob to fingerprint must be at least 8 bytes");
    memset(out, 0, sizeof *out);
    snprintf(out->what, sizeof out->what, "%s", what);
    out->availability_store = availability_store;
    out->len = (uint32_t)n;
    memcpy(out->head, p, sizeof out->head);
    return ck_sha256(p, n, out->sha256);
}

static uint64_t head64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

static size_t slot_of(uint64_t h, size_t mask)
{
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    return (size_t)h & mask;
}

/* slots[i] = index + 1 of a blob whose head hashes there; 0 = empty. Blobs
 * with equal heads chain through the next slots (linear probing). */
struct headset {
    size_t *slots;
    size_t mask;
};

static void headset_build(struct headset *hs, const struct ck_blob_print *v, size_t n)
{
    size_t cap = 16;
    while (cap < n * 4)
        cap *= 2;
    hs->slots = ck_xcalloc(cap, sizeof *hs->slots);
    hs->mask = cap - 1;
    for (size_t i = 0; i < n; i++) {
        size_t s = slot_of(head64(v[i].head), hs->mask);
        while (hs->slots[s])
            s = (s + 1) & hs->mask;
        hs->slots[s] = i + 1;
    }
}

/* The child's report: a candidate copy of blob idx (len bytes follow), or
 * with idx END the number of bytes read, or with idx FAILED an errno. */
#define END UINT32_MAX
#define FAILED (UINT32_MAX - 1)
struct record {
    uint32_t idx, len;
    int64_t value;
};

static bool put(int fd, const void *p, size_t n)
{
    const uint8_t *b = p;
    while (n) {
        ssize_t w = write(fd, b, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return false;
        b += w;
        n -= (size_t)w;
    }
    return true;
}

static bool get(int fd, void *p, size_t n)
{
    uint8_t *b = p;
    while (n) {
        ssize_t r = read(fd, b, n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return false;
        b += r;
        n -= (size_t)r;
    }
    return true;
}

/* The child: reads the file and sends every window whose first 8 bytes
 * are some blob's head. Only read, write and memory: nothing here may take
 * a lock another thread of the parent held when it forked. */
static void scan_child(const char *path, const struct ck_blob_print *v, const struct headset *hs,
                       size_t longest, uint8_t *buf, size_t cap, int out)
{
    struct record rec = {0};
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        rec.idx = errno == ENOENT ? END : FAILED;
        rec.value = errno == ENOENT ? 0 : errno;
        put(out, &rec, sizeof rec);
        _exit(0);
    }
    size_t have = 0;
    int64_t total = 0;
    bool eof = false;
    while (!eof) {
        ssize_t got = read(fd, buf + have, cap - have);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0) {
            rec.idx = FAILED;
            rec.value = errno;
            put(out, &rec, sizeof rec);
            _exit(0);
        }
        eof = got == 0;
        have += (size_t)got;
        total += got;
        /* Offsets whose every possible blob lies in buf: all of them at the
         * end, else those with `longest` bytes after them. */
        size_t last = eof ? have : (have >= longest ? have - longest + 1 : 0);
        for (size_t off = 0; off + sizeof v->head <= have && off < last; off++) {
            uint64_t h = head64(buf + off);
            for (size_t s = slot_of(h, hs->mask); hs->slots[s]; s = (s + 1) & hs->mask) {
                const struct ck_blob_print *b = &v[hs->slots[s] - 1];
                if (head64(b->head) != h || b->len > have - off)
                    continue;
                rec.idx = (uint32_t)(hs->slots[s] - 1);
                rec.len = b->len;
                if (!put(out, &rec, sizeof rec) || !put(out, buf + off, b->len))
                    _exit(1);
            }
        }
        if (!eof && last > 0) {
            memmove(buf, buf + last, have - last);
            have -= last;
        }
    }
    close(fd);
    rec.idx = END;
    rec.len = 0;
    rec.value = total;
    put(out, &rec, sizeof rec);
    _exit(0);
}

/* Why a child process: SQLite holds POSIX advisory locks on its files, and
 * POSIX drops every lock a process holds on a file when the process closes
 * ANY descriptor of that file. Opening the live database in the server
 * process would silently release SQLite's locks and let another process
 * corrupt it. The child's descriptors are its own; its close touches no
 * lock of the parent's. */
ck_err ck_blob_print_scan(const char *path, const struct ck_blob_print *v, size_t n, bool *found,
                          int64_t *bytes)
{
    *bytes = 0;
    size_t longest = sizeof v->head;
    for (size_t i = 0; i < n; i++)
        if (v[i].len > longest)
            longest = v[i].len;
    struct headset hs;
    headset_build(&hs, v, n);
    size_t cap = SCAN_WINDOW + longest;
    uint8_t *buf = ck_xmalloc(cap), *window = ck_xmalloc(longest);
    int fds[2];
    ck_err rc = CK_OK;
    if (pipe2(fds, O_CLOEXEC) != 0) {
        rc = ck_err_set(CK_EIO, "cannot scan %s: pipe: %s", path, strerror(errno));
        goto out;
    }
    pid_t pid = fork();
    if (pid < 0) {
        rc = ck_err_set(CK_EIO, "cannot scan %s: fork: %s", path, strerror(errno));
        close(fds[0]);
        close(fds[1]);
        goto out;
    }
    if (pid == 0) {
        close(fds[0]);
        scan_child(path, v, &hs, longest, buf, cap, fds[1]);
    }
    close(fds[1]);
    bool ended = false;
    struct record rec;
    while (rc == CK_OK && !ended && get(fds[0], &rec, sizeof rec)) {
        if (rec.idx == END) {
            *bytes = rec.value;
            ended = true;
        } else if (rec.idx == FAILED) {
            rc = ck_err_set(CK_EIO, "cannot read %s: %s", path, strerror((int)rec.value));
        } else if (rec.idx >= n || rec.len != v[rec.idx].len || !get(fds[0], window, rec.len)) {
            rc = ck_err_set(CK_EIO, "the scan of %s broke off", path);
        } else {
            uint8_t d[32];
            rc = ck_sha256(window, rec.len, d);
            if (rc == CK_OK && CRYPTO_memcmp(d, v[rec.idx].sha256, sizeof d) == 0)
                found[rec.idx] = true;
        }
    }
    close(fds[0]);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    if (rc == CK_OK && !ended)
        rc = ck_err_set(CK_EIO, "the scan of %s broke off", path);
out:
    free(hs.slots);
    free(buf);
    free(window);
    return rc;
}
