/* Unit tests for src/http: routing (empty segments, captures, 404/405),
 * percent-decoding, the error table and error bodies, JSON field helpers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "http/http_internal.h"

static ck_err h_wrap(struct ck_http_req *req, struct ck_http_resp *resp)
{
    return CK_OK;
}
static ck_err h_get(struct ck_http_req *req, struct ck_http_resp *resp)
{
    return CK_OK;
}
static ck_err h_files(struct ck_http_req *req, struct ck_http_resp *resp)
{
    return CK_OK;
}

struct matched {
    struct ck_http_req req;
    struct ck_route_match m;
    ck_err rc;
};

static void match(struct ck_router *r, const char *method, const char *path, struct matched *out)
{
    memset(out, 0, sizeof *out);
    out->req.method = method;
    out->req.path = path;
    out->req.seg = ck_http_split_path(path, &out->req.nseg);
    out->rc = ck_router_match(r, &out->req, &out->m);
}

static void unmatch(struct matched *x)
{
    for (size_t i = 0; i < x->req.nseg; i++)
        free(x->req.seg[i]);
    free(x->req.seg);
    for (size_t i = 0; i < x->req.nparam_; i++)
        free(x->req.param_values_[i]);
    free(x->req.param_values_);
}

static struct ck_router *router(void)
{
    struct ck_router *r = ck_router_new();
    ck_router_add(r, "POST", "/keys/{name}/{version}/wrapkey", h_wrap, NULL, 0, 0);
    ck_router_add(r, "GET", "/keys/{name}/{version}", h_get, NULL, 0, 0);
    ck_router_add(r, "GET", "/sites/{site}/files/{*path}", h_files, NULL, CK_ROUTE_RAW, 4096);
    return r;
}

static void test_empty_version_segment_reaches_handler(void **state)
{
    struct ck_router *r = router();
    struct matched x;
    match(r, "POST", "/keys/k//wrapkey", &x);
    assert_int_equal(x.rc, CK_OK);
    assert_ptr_equal(x.m.handler, h_wrap);
    assert_string_equal(ck_http_param(&x.req, "name"), "k");
    assert_string_equal(ck_http_param(&x.req, "version"), "");
    assert_int_equal(x.m.max_body, CK_HTTP_JSON_LIMIT);
    unmatch(&x);

    /* GET /keys/k/ is "latest": name k, empty version. */
    match(r, "GET", "/keys/k/", &x);
    assert_int_equal(x.rc, CK_OK);
    assert_ptr_equal(x.m.handler, h_get);
    assert_string_equal(ck_http_param(&x.req, "version"), "");
    unmatch(&x);

    match(r, "GET", "/keys/k/0123abcd", &x);
    assert_int_equal(x.rc, CK_OK);
    assert_string_equal(ck_http_param(&x.req, "version"), "0123abcd");
    assert_null(ck_http_param(&x.req, "nope"));
    unmatch(&x);
    ck_router_free(r);
}

static void test_rest_capture_and_limits(void **state)
{
    struct ck_router *r = router();
    struct matched x;
    match(r, "GET", "/sites/s1/files/a/b/c.txt", &x);
    assert_int_equal(x.rc, CK_OK);
    assert_string_equal(ck_http_param(&x.req, "path"), "a/b/c.txt");
    assert_int_equal(x.m.flags, CK_ROUTE_RAW);
    assert_int_equal(x.m.max_body, 4096);
    unmatch(&x);
    ck_router_free(r);
}

static void test_not_found_and_method_not_allowed(void **state)
{
    struct ck_router *r = router();
    struct matched x;
    match(r, "DELETE", "/keys/k/v", &x);
    assert_int_equal(x.rc, CK_EMETHOD);
    unmatch(&x);
    match(r, "GET", "/keys/k", &x);
    assert_int_equal(x.rc, CK_ENOTFOUND);
    unmatch(&x);
    match(r, "GET", "/keys/k/v/extra", &x);
    assert_int_equal(x.rc, CK_ENOTFOUND);
    unmatch(&x);
    ck_router_free(r);
}

static void test_pct_decode(void **state)
{
    char a[] = "my%20key%2Fx";
    assert_true(ck_http_pct_decode(a));
    assert_string_equal(a, "my key/x");
    char b[] = "bad%2";
    assert_false(ck_http_pct_decode(b));
    char c[] = "nul%00";
    assert_false(ck_http_pct_decode(c));
    char d[] = "%zz";
    assert_false(ck_http_pct_decode(d));
}

static void test_error_table_and_body(void **state)
{
    assert_int_equal(ck_http_status_of(CK_EINVAL), 400);
    assert_int_equal(ck_http_status_of(CK_EUNAUTH), 401);
    assert_int_equal(ck_http_status_of(CK_EFORBIDDEN), 403);
    assert_int_equal(ck_http_status_of(CK_ENOTFOUND), 404);
    assert_int_equal(ck_http_status_of(CK_EMETHOD), 405);
    assert_int_equal(ck_http_status_of(CK_ECONFLICT), 409);
    assert_int_equal(ck_http_status_of(CK_EGONE), 410);
    assert_int_equal(ck_http_status_of(CK_ETOOBIG), 413);
    assert_int_equal(ck_http_status_of(CK_EUNAVAIL), 503);
    assert_int_equal(ck_http_status_of(CK_EIO), 500);

    ck_err_set(CK_EFORBIDDEN, "no unwrapKey for bob");
    ck_err_code("Forbidden", "AccessDenied");
    json_t *b = ck_http_error_body(CK_EFORBIDDEN, "rid");
    json_t *e = json_object_get(b, "error");
    assert_string_equal(json_string_value(json_object_get(e, "code")), "Forbidden");
    assert_string_equal(json_string_value(json_object_get(e, "message")), "no unwrapKey for bob");
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(e, "innererror"), "code")),
        "AccessDenied");
    json_decref(b);

    /* 5xx never echo internal detail; they quote the request id. */
    ck_err_set(CK_EIO, "disk full at /secret/path");
    b = ck_http_error_body(CK_EIO, "req-123");
    const char *msg = json_string_value(json_object_get(json_object_get(b, "error"), "message"));
    assert_null(strstr(msg, "/secret/path"));
    assert_non_null(strstr(msg, "req-123"));
    json_decref(b);

    /* 503 tells the caller which dependency is down. */
    ck_err_set(CK_EUNAVAIL, "the root keys of geo EUR are unreachable");
    b = ck_http_error_body(CK_EUNAVAIL, "req-9");
    msg = json_string_value(json_object_get(json_object_get(b, "error"), "message"));
    assert_string_equal(msg, "the root keys of geo EUR are unreachable");
    json_decref(b);
}

static void test_json_fields(void **state)
{
    json_t *o = json_pack("{s:s,s:i,s:b,s:n}", "name", "k", "size", 2048, "on", 1, "nul");
    const char *s = NULL;
    int64_t i = 0;
    bool b = false, present = false;
    assert_int_equal(ck_json_str(o, "name", true, &s), CK_OK);
    assert_string_equal(s, "k");
    assert_int_equal(ck_json_int(o, "size", true, &i, &present), CK_OK);
    assert_int_equal(i, 2048);
    assert_true(present);
    assert_int_equal(ck_json_bool(o, "on", false, &b, NULL), CK_OK);
    assert_true(b);
    assert_int_equal(ck_json_int(o, "name", false, &i, NULL), CK_EINVAL);
    assert_non_null(strstr(ck_err_msg(), "'name'"));
    assert_int_equal(ck_json_str(o, "missing", true, &s), CK_EINVAL);
    assert_int_equal(ck_json_int(o, "nul", false, &i, &present), CK_OK);
    assert_false(present);
    assert_int_equal(ck_json_str(NULL, "x", true, &s), CK_EINVAL);
    json_decref(o);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty_version_segment_reaches_handler),
        cmocka_unit_test(test_rest_capture_and_limits),
        cmocka_unit_test(test_not_found_and_method_not_allowed),
        cmocka_unit_test(test_pct_decode),
        cmocka_unit_test(test_error_table_and_body),
        cmocka_unit_test(test_json_fields),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
