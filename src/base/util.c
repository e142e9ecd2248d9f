/*
 * util.c — identifiers, time and durations.
 */
#include "base.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

ck_err ck_os_random(void *p, size_t n)
{
    uint8_t *o = p;
    while (n > 0) {
        ssize_t r = getrandom(o, n, 0);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return ck_err_set(CK_EIO, "getrandom failed: %s", strerror(errno));
        }
        o += r;
        n -= (size_t)r;
    }
    return CK_OK;
}

ck_err ck_uuid_v4(char out[37])
{
    uint8_t b[16];
    CK_TRY(ck_os_random(b, sizeof b));
    b[6] = (uint8_t)((b[6] & 0x0f) | 0x40);
    b[8] = (uint8_t)((b[8] & 0x3f) | 0x80);
    snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0],
             b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13],
             b[14], b[15]);
    return CK_OK;
}

bool ck_uuid_valid(const char *s)
{
    if (!s || strlen(s) != 36)
        return false;
    for (int i = 0; i < 36; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (s[i] != '-')
                return false;
        } else if (!isxdigit((unsigned char)s[i])) {
            return false;
        }
    }
    return true;
}

int64_t ck_now(void)
{
    return (int64_t)time(NULL);
}

int64_t ck_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void ck_time_rfc3339(int64_t t, char out[32])
{
    time_t tt = (time_t)t;
    struct tm tm;
    gmtime_r(&tt, &tm);
    strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

ck_err ck_duration_parse(const char *s, int64_t *seconds)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (end == s || errno || v < 0)
        return ck_err_set(CK_EINVAL, "invalid duration '%s' (use e.g. 90s, 15m, 1h, 7d)", s);
    int64_t mult = 1;
    if (*end == 's')
        end++;
    else if (*end == 'm')
        mult = 60, end++;
    else if (*end == 'h')
        mult = 3600, end++;
    else if (*end == 'd')
        mult = 86400, end++;
    if (*end != '\0' || v > INT64_MAX / mult)
        return ck_err_set(CK_EINVAL, "invalid duration '%s' (use e.g. 90s, 15m, 1h, 7d)", s);
    *seconds = v * mult;
    return CK_OK;
}

ck_err ck_iso_duration_parse(const char *s, int64_t *seconds)
{
    const char *p = s;
    if (*p++ != 'P')
        return ck_err_set(CK_EINVAL, "'%s' is not an ISO-8601 duration (e.g. P90D, PT12H)", s);
    bool time = false, any = false;
    int64_t total = 0;
    while (*p) {
        if (*p == 'T' && !time) {
            time = true;
            p++;
            continue;
        }
        char *end;
        errno = 0;
        long long v = strtoll(p, &end, 10);
        if (end == p || errno || v < 0 || v > 100000)
            return ck_err_set(CK_EINVAL, "'%s' is not an ISO-8601 duration (e.g. P90D, PT12H)", s);
        int64_t unit;
        switch (*end) {
        case 'Y':
            unit = time ? -1 : 365 * 86400;
            break;
        case 'M':
            unit = time ? 60 : 30 * 86400;
            break;
        case 'W':
            unit = time ? -1 : 7 * 86400;
            break;
        case 'D':
            unit = time ? -1 : 86400;
            break;
        case 'H':
            unit = time ? 3600 : -1;
            break;
        case 'S':
            unit = time ? 1 : -1;
            break;
        default:
            unit = -1;
        }
        if (unit < 0)
            return ck_err_set(CK_EINVAL, "'%s' is not an ISO-8601 duration (e.g. P90D, PT12H)", s);
        total += v * unit;
        any = true;
        p = end + 1;
    }
    if (!any)
        return ck_err_set(CK_EINVAL, "'%s' is not an ISO-8601 duration (e.g. P90D, PT12H)", s);
    *seconds = total;
    return CK_OK;
}
