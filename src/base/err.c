/*
 * err.c — the per-thread error state behind ck_err.
 *
 * One fixed buffer per thread: recording an error never allocates, so an
 * out-of-memory path can still say what failed.
 */
#include "base.h"

#include <stdio.h>
#include <string.h>

static _Thread_local char err_msg[512];
static _Thread_local const char *err_code;
static _Thread_local const char *err_inner;

ck_err ck_err_set(ck_err e, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err_msg, sizeof err_msg, fmt, ap);
    va_end(ap);
    err_code = NULL;
    err_inner = NULL;
    return e;
}

void ck_err_code(const char *code, const char *inner)
{
    /* Codes are string literals: they outlive the thread's error state. */
    err_code = code;
    err_inner = inner;
}

const char *ck_err_msg(void)
{
    return err_msg;
}

const char *ck_err_code_get(void)
{
    return err_code;
}

const char *ck_err_inner_get(void)
{
    return err_inner;
}

void ck_err_clear(void)
{
    err_msg[0] = '\0';
    err_code = NULL;
    err_inner = NULL;
}

const char *ck_err_name(ck_err e)
{
    static const char *const names[CK_ERR_COUNT] = {
        [CK_OK] = "OK",
        [CK_EINVAL] = "EINVAL",
        [CK_ENOTFOUND] = "ENOTFOUND",
        [CK_ECONFLICT] = "ECONFLICT",
        [CK_EUNAUTH] = "EUNAUTH",
        [CK_EFORBIDDEN] = "EFORBIDDEN",
        [CK_ETOOBIG] = "ETOOBIG",
        [CK_EMETHOD] = "EMETHOD",
        [CK_EGONE] = "EGONE",
        [CK_EINTEGRITY] = "EINTEGRITY",
        [CK_ECRYPTO] = "ECRYPTO",
        [CK_EUNAVAIL] = "EUNAVAIL",
        [CK_ENOMEM] = "ENOMEM",
        [CK_EIO] = "EIO",
        [CK_EINTERNAL] = "EINTERNAL",
    };
    if ((unsigned)e >= CK_ERR_COUNT)
        return "EUNKNOWN";
    return names[e];
}
