/*
 * json.c — typed access to request members, with errors that name the field.
 */
#include "http/http.h"

static ck_err member(json_t *obj, const char *field, bool required, json_t **v)
{
    *v = obj && json_is_object(obj) ? json_object_get(obj, field) : NULL;
    if (*v && json_is_null(*v))
        *v = NULL;
    if (!*v && required)
        return ck_err_set(CK_EINVAL, "the request body must have the field '%s'", field);
    return CK_OK;
}

ck_err ck_json_str(json_t *obj, const char *field, bool required, const char **out)
{
    json_t *v;
    CK_TRY(member(obj, field, required, &v));
    if (!v)
        return CK_OK;
    if (!json_is_string(v))
        return ck_err_set(CK_EINVAL, "the field '%s' must be a string", field);
    *out = json_string_value(v);
    return CK_OK;
}

ck_err ck_json_int(json_t *obj, const char *field, bool required, int64_t *out, bool *present)
{
    json_t *v;
    CK_TRY(member(obj, field, required, &v));
    if (present)
        *present = v != NULL;
    if (!v)
        return CK_OK;
    if (!json_is_integer(v))
        return ck_err_set(CK_EINVAL, "the field '%s' must be an integer", field);
    *out = json_integer_value(v);
    return CK_OK;
}

ck_err ck_json_bool(json_t *obj, const char *field, bool required, bool *out, bool *present)
{
    json_t *v;
    CK_TRY(member(obj, field, required, &v));
    if (present)
        *present = v != NULL;
    if (!v)
        return CK_OK;
    if (!json_is_boolean(v))
        return ck_err_set(CK_EINVAL, "the field '%s' must be true or false", field);
    *out = json_is_true(v);
    return CK_OK;
}

ck_err ck_http_ok(struct ck_http_resp *resp, json_t *body)
{
    resp->status = 200;
    resp->json = body;
    return CK_OK;
}
