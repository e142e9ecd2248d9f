/*
 * log.c — JSON-lines logging to stderr.
 *
 * One line per event, written with a single fputs under the stdio lock so
 * lines from concurrent threads never interleave. Callers pass string pairs;
 * nothing here inspects values, so callers must never pass secrets.
 */
#include "base.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>

static enum ck_log_level min_level = CK_LOG_INFO;

void ck_log_set_level(enum ck_log_level level)
{
    min_level = level;
}

void ck_log(enum ck_log_level level, const char *msg, ...)
{
    static const char *const names[] = {"debug", "info", "warn", "error"};
    if (level < min_level)
        return;
    char ts[32];
    ck_time_rfc3339(ck_now(), ts);
    json_t *o = json_object();
    json_object_set_new(o, "ts", json_string(ts));
    json_object_set_new(o, "level", json_string(names[level]));
    json_object_set_new(o, "msg", json_string(msg ? msg : ""));
    va_list ap;
    va_start(ap, msg);
    for (;;) {
        const char *k = va_arg(ap, const char *);
        if (!k)
            break;
        const char *v = va_arg(ap, const char *);
        json_object_set_new(o, k, v ? json_string(v) : json_null());
    }
    va_end(ap);
    char *line = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(o);
    if (line) {
        flockfile(stderr);
        fputs(line, stderr);
        fputc('\n', stderr);
        funlockfile(stderr);
        free(line);
    }
}
