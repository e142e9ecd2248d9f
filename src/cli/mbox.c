/*
 * mbox.c — splitting an mbox file into messages (see mbox.h for the rules).
 *
 * One pass over the lines. A blank line is held back ("pending") instead of
 * copied: if the next line is a From_ line the blank line was the separator
 * and is dropped; otherwise it belongs to the message and is copied first.
 * At the end of the file a pending blank line is the last separator and is
 * dropped too, so the last message reads the same whether or not the writer
 * ended the file with one.
 */
#include "cli/mbox.h"

#include <stdlib.h>
#include <string.h>

static bool starts_with(const uint8_t *p, size_t n, const char *s)
{
    size_t l = strlen(s);
    return n >= l && memcmp(p, s, l) == 0;
}

/* A line with nothing but its ending ("\n", "\r\n"). */
static bool blank(const uint8_t *p, size_t n)
{
    return (n == 1 && p[0] == '\n') || (n == 2 && p[0] == '\r' && p[1] == '\n');
}

/* ^>+From  */
static bool escaped_from(const uint8_t *p, size_t n)
{
    size_t i = 0;
    while (i < n && p[i] == '>')
        i++;
    return i > 0 && starts_with(p + i, n - i, "From ");
}

static void add_message(struct cli_mbox *m, size_t *cap, size_t off, size_t line)
{
    if (m->count == *cap) {
        *cap = *cap ? *cap * 2 : 16;
        m->msgs = realloc(m->msgs, *cap * sizeof *m->msgs);
        if (!m->msgs)
            abort();
    }
    m->msgs[m->count++] = (struct cli_mbox_msg){.off = off, .len = 0, .line = line};
}

/* The message just ended must hold something. */
static ck_err close_message(struct cli_mbox *m)
{
    if (m->count == 0)
        return CK_OK;
    struct cli_mbox_msg *last = &m->msgs[m->count - 1];
    last->len = m->n - last->off;
    if (last->len == 0)
        return ck_err_set(CK_EINVAL,
                          "not a valid mbox file: message %zu (the From line at line %zu) is empty",
                          m->count, last->line);
    return CK_OK;
}

ck_err cli_mbox_parse(const uint8_t *data, size_t n, struct cli_mbox *out)
{
    memset(out, 0, sizeof *out);
    if (n == 0)
        return ck_err_set(CK_EINVAL, "not a valid mbox file: it is empty");
    const uint8_t *nul = memchr(data, 0, n);
    if (nul)
        return ck_err_set(CK_EINVAL, "not a valid mbox file: it holds a NUL byte at offset %zu",
                          (size_t)(nul - data));
    if (!starts_with(data, n, "From "))
        return ck_err_set(CK_EINVAL, "not a valid mbox file: it must start with a \"From \" line");

    struct cli_mbox m = {.data = ck_xmalloc(n)};
    size_t cap = 0, line = 0;
    const uint8_t *pending = NULL; /* a held-back blank line */
    size_t pending_n = 0;
    bool after_blank = true; /* the start of the file counts as after a blank line */
    ck_err rc = CK_OK;
    for (size_t pos = 0; pos < n && rc == CK_OK;) {
        const uint8_t *p = data + pos;
        const uint8_t *nl = memchr(p, '\n', n - pos);
        size_t len = nl ? (size_t)(nl - p) + 1 : n - pos;
        pos += len;
        line++;
        if (after_blank && starts_with(p, len, "From ")) {
            pending = NULL; /* the separator */
            rc = close_message(&m);
            add_message(&m, &cap, m.n, line);
            after_blank = false;
            continue;
        }
        if (pending) {
            memcpy(m.data + m.n, pending, pending_n);
            m.n += pending_n;
            pending = NULL;
        }
        after_blank = blank(p, len);
        if (after_blank) {
            pending = p;
            pending_n = len;
        } else if (escaped_from(p, len)) {
            memcpy(m.data + m.n, p + 1, len - 1);
            m.n += len - 1;
        } else {
            memcpy(m.data + m.n, p, len);
            m.n += len;
        }
    }
    if (rc == CK_OK)
        rc = close_message(&m);
    if (rc != CK_OK) {
        cli_mbox_free(&m);
        return rc;
    }
    *out = m;
    return CK_OK;
}

void cli_mbox_free(struct cli_mbox *m)
{
    if (!m)
        return;
    free(m->data);
    free(m->msgs);
    memset(m, 0, sizeof *m);
}
