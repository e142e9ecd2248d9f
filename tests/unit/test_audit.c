/* Unit tests for src/audit on a real SQLite store: the MAC chain detects
 * edits, insertions, deletions and a tampered head; a different master key
 * does not verify. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "audit/audit.h"

struct fx {
    char dir[64];
    struct ck_store *s;
    struct ck_secret master;
    struct ck_audit *a;
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "/tmp/ck-audit-XXXXXX");
    if (!mkdtemp(f->dir))
        return -1;
    char uri[128];
    snprintf(uri, sizeof uri, "sqlite:%s/t.db", f->dir);
    if (ck_store_open(uri, &f->s) != CK_OK || ck_secret_alloc(&f->master, 32) != CK_OK)
        return -1;
    memset(f->master.p, 7, 32);
    if (ck_audit_open(f->s, &f->master, &f->a) != CK_OK)
        return -1;
    for (int i = 0; i < 5; i++) {
        char target[32];
        snprintf(target, sizeof target, "key-%d", i);
        struct ck_audit_event ev = {"alice@contoso.com",
                                    "key.create",
                                    target,
                                    "success",
                                    "00000000-0000-4000-8000-000000000000",
                                    NULL};
        if (ck_audit_append(f->a, &ev) != CK_OK)
            return -1;
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    ck_audit_close(f->a);
    ck_store_close(f->s);
    ck_secret_free(&f->master);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", f->dir);
    int rc = system(cmd);
    free(f);
    return rc;
}

static void verify(struct fx *f, bool ok, int64_t bad_seq, const char *problem)
{
    struct ck_audit_report rep;
    assert_int_equal(ck_audit_verify(f->a, &rep), CK_OK);
    if (rep.ok != ok || (problem && !strstr(rep.problem, problem)))
        fail_msg("verify: ok=%d problem='%s'", rep.ok, rep.problem);
    assert_int_equal(rep.bad_seq, bad_seq);
}

static void sql(struct fx *f, const char *stmt)
{
    assert_int_equal(ck_store_run(f->s, NULL, stmt, ""), CK_OK);
}

static void test_intact_and_listed(void **state)
{
    struct fx *f = *state;
    verify(f, true, 0, NULL);
    struct ck_audit_record *v;
    size_t n;
    assert_int_equal(ck_audit_list(f->a, 2, 10, &v, &n), CK_OK);
    assert_int_equal(n, 3);
    assert_int_equal(v[0].seq, 3);
    assert_string_equal(v[0].target, "key-2");
    assert_string_equal(v[0].principal, "alice@contoso.com");
    ck_audit_records_free(v, n);
}

static void test_edit_detected(void **state)
{
    struct fx *f = *state;
    sql(f, "UPDATE ck_audit SET result = 'denied' WHERE seq = 3");
    verify(f, false, 3, "does not match its MAC");
}

static void test_moved_text_between_fields_detected(void **state)
{
    struct fx *f = *state;
    sql(f, "UPDATE ck_audit SET operation = 'key.create' || 'k', target = 'ey-1' WHERE seq = 2");
    verify(f, false, 2, "does not match");
}

static void test_deletion_detected(void **state)
{
    struct fx *f = *state;
    sql(f, "DELETE FROM ck_audit WHERE seq = 2");
    verify(f, false, 2, "missing");
}

static void test_tail_deletion_detected(void **state)
{
    struct fx *f = *state;
    sql(f, "DELETE FROM ck_audit WHERE seq = 5");
    verify(f, false, 5, "missing");
    /* Rewinding the head to the previous record's values does not help. */
    sql(f, "UPDATE ck_audit_head SET seq = 4, mac = (SELECT mac FROM ck_audit WHERE seq = 4)");
    verify(f, false, 0, "head was edited");
}

static void test_wrong_key_fails(void **state)
{
    struct fx *f = *state;
    struct ck_secret other = {0};
    assert_int_equal(ck_secret_alloc(&other, 32), CK_OK);
    memset(other.p, 8, 32);
    struct ck_audit *b;
    assert_int_equal(ck_audit_open(f->s, &other, &b), CK_OK);
    struct ck_audit_report rep;
    assert_int_equal(ck_audit_verify(b, &rep), CK_OK);
    assert_false(rep.ok);
    assert_int_equal(rep.bad_seq, 1);
    ck_audit_close(b);
    ck_secret_free(&other);
}

static void test_appends_continue_chain(void **state)
{
    struct fx *f = *state;
    struct ck_audit_event ev = {NULL, "token.issue", NULL, "success", "r", "detail"};
    assert_int_equal(ck_audit_append(f->a, &ev), CK_OK);
    verify(f, true, 0, NULL);
    struct ck_audit_record *v;
    size_t n;
    assert_int_equal(ck_audit_list(f->a, 5, 10, &v, &n), CK_OK);
    assert_int_equal(n, 1);
    assert_string_equal(v[0].principal, "-");
    assert_string_equal(v[0].detail, "detail");
    ck_audit_records_free(v, n);
}

struct appender {
    struct ck_audit *a;
    int id;
    int failed;
};

enum { APPENDERS = 8, APPENDS = 25 };

static void *append_many(void *arg)
{
    struct appender *ap = arg;
    for (int i = 0; i < APPENDS; i++) {
        char target[32];
        snprintf(target, sizeof target, "t%d-%d", ap->id, i);
        struct ck_audit_event ev = {"bob", "key.unwrapKey", target, "success", "r", NULL};
        if (ck_audit_append(ap->a, &ev) != CK_OK)
            ap->failed++;
    }
    return NULL;
}

/* Concurrent appends, group-committed: every record is there once, each
 * thread's records in the order it appended them, and the chain and head
 * verify. */
static void test_concurrent_appends_chain(void **state)
{
    struct fx *f = *state;
    pthread_t t[APPENDERS];
    struct appender ap[APPENDERS];
    for (int i = 0; i < APPENDERS; i++) {
        ap[i] = (struct appender){.a = f->a, .id = i};
        assert_int_equal(pthread_create(&t[i], NULL, append_many, &ap[i]), 0);
    }
    for (int i = 0; i < APPENDERS; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(ap[i].failed, 0);
    }
    verify(f, true, 0, NULL);
    struct ck_audit_record *v;
    size_t n;
    assert_int_equal(ck_audit_list(f->a, 5, 1000, &v, &n), CK_OK);
    assert_int_equal(n, APPENDERS * APPENDS);
    int next[APPENDERS] = {0};
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(v[i].seq, 6 + (int64_t)i);
        int id, k;
        assert_int_equal(sscanf(v[i].target, "t%d-%d", &id, &k), 2);
        assert_in_range(id, 0, APPENDERS - 1);
        assert_int_equal(k, next[id]);
        next[id]++;
    }
    ck_audit_records_free(v, n);
    struct ck_audit_report rep;
    assert_int_equal(ck_audit_verify(f->a, &rep), CK_OK);
    assert_int_equal(rep.checked, 5 + APPENDERS * APPENDS);
}

/* An append from inside a store transaction is refused and writes nothing:
 * the caller's transaction is not the audit's to commit. */
static void test_append_inside_transaction_refused(void **state)
{
    struct fx *f = *state;
    struct ck_audit_event ev = {"bob", "key.sign", "k", "success", "r", NULL};
    assert_int_equal(ck_store_begin(f->s), CK_OK);
    assert_int_equal(ck_audit_append(f->a, &ev), CK_EINTERNAL);
    assert_non_null(strstr(ck_err_msg(), "inside a store transaction"));
    ck_store_rollback(f->s);
    struct ck_audit_report rep;
    assert_int_equal(ck_audit_verify(f->a, &rep), CK_OK);
    int64_t before = rep.checked;
    assert_int_equal(ck_audit_append(f->a, &ev), CK_OK);
    assert_int_equal(ck_audit_verify(f->a, &rep), CK_OK);
    assert_int_equal(rep.checked, before + 1);
}

/* An append that cannot be committed reports the failure to its caller. */
static void test_failed_append_reports(void **state)
{
    struct fx *f = *state;
    sql(f, "CREATE TRIGGER no_more BEFORE INSERT ON ck_audit BEGIN SELECT RAISE(ABORT, 'full'); "
           "END");
    struct ck_audit_event ev = {"bob", "key.sign", "k", "success", "r", NULL};
    assert_int_not_equal(ck_audit_append(f->a, &ev), CK_OK);
    assert_non_null(strstr(ck_err_msg(), "full"));
    sql(f, "DROP TRIGGER no_more");
    assert_int_equal(ck_audit_append(f->a, &ev), CK_OK);
    verify(f, true, 0, NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_intact_and_listed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_edit_detected, setup, teardown),
        cmocka_unit_test_setup_teardown(test_moved_text_between_fields_detected, setup, teardown),
        cmocka_unit_test_setup_teardown(test_deletion_detected, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tail_deletion_detected, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wrong_key_fails, setup, teardown),
        cmocka_unit_test_setup_teardown(test_appends_continue_chain, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_appends_chain, setup, teardown),
        cmocka_unit_test_setup_teardown(test_append_inside_transaction_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failed_append_reports, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
