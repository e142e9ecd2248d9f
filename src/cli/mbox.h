/*
 * mbox — a parser for mbox files (mboxrd, and mboxo read the same way), used
 * by `ckey mailbox import`.
 *
 * A message starts with a "From " line at the start of the file or after a
 * blank line. Its bytes are the lines after that From_ line up to, not
 * including, the blank line before the next From_ line (for the last message:
 * up to the end of the file, less one final blank line). Lines keep their
 * endings as in the file (LF or CRLF). Lines matching ^>+From  lose one '>'
 * (mboxrd un-escaping).
 *
 * The whole file is checked before anything is returned: it must start with
 * "From ", hold at least one message, hold no NUL byte, and no message may be
 * empty. CK_EINVAL with a message naming the line otherwise.
 *
 * Ownership: *out owns one copy of the un-escaped message bytes and the
 * message table; cli_mbox_free releases both. Pure: no I/O, no globals.
 */
#ifndef CK_CLI_MBOX_H
#define CK_CLI_MBOX_H

#include "base/base.h"

struct cli_mbox_msg {
    size_t off;  /* into cli_mbox.data */
    size_t len;  /* bytes of the message */
    size_t line; /* 1-based line of its From_ line in the file */
};

struct cli_mbox {
    uint8_t *data; /* every message's bytes, back to back */
    size_t n;
    struct cli_mbox_msg *msgs;
    size_t count;
};

ck_err cli_mbox_parse(const uint8_t *data, size_t n, struct cli_mbox *out);
void cli_mbox_free(struct cli_mbox *m); /* safe on a zeroed struct */

#endif
