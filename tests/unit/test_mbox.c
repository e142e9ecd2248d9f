/* Unit tests for the CLI's mbox parser (src/cli/mbox.c): splitting,
 * mboxrd un-escaping, CRLF files, and the files it must refuse. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <string.h>

#include "cli/mbox.h"

static ck_err parse(const char *s, size_t n, struct cli_mbox *m)
{
    return cli_mbox_parse((const uint8_t *)s, n, m);
}

static void assert_msg(const struct cli_mbox *m, size_t i, const char *want)
{
    assert_true(i < m->count);
    const struct cli_mbox_msg *x = &m->msgs[i];
    assert_true(x->off + x->len <= m->n);
    if (x->len != strlen(want) || memcmp(m->data + x->off, want, x->len) != 0)
        fail_msg("message %zu is \"%.*s\", want \"%s\"", i, (int)x->len,
                 (const char *)m->data + x->off, want);
}

static void test_three_messages(void **state)
{
    static const char f[] = "From alice@contoso.com Thu Jan  1 00:00:00 2026\n"
                            "Subject: one\n"
                            "\n"
                            "first body\n"
                            "\n"
                            "From bob@contoso.com Thu Jan  1 00:00:01 2026\n"
                            "Subject: two\n"
                            "\n"
                            "second body\n"
                            "\n"
                            "\n"
                            "From carol@contoso.com Thu Jan  1 00:00:02 2026\n"
                            "Subject: three\n"
                            "\n"
                            "third body\n"
                            "\n";
    struct cli_mbox m;
    assert_int_equal(parse(f, strlen(f), &m), CK_OK);
    assert_int_equal(m.count, 3);
    assert_msg(&m, 0, "Subject: one\n\nfirst body\n");
    /* Only the one blank line before the next From_ line is a separator. */
    assert_msg(&m, 1, "Subject: two\n\nsecond body\n\n");
    /* The last message loses the file's final blank line too. */
    assert_msg(&m, 2, "Subject: three\n\nthird body\n");
    assert_int_equal(m.msgs[0].line, 1);
    assert_int_equal(m.msgs[1].line, 6);
    assert_int_equal(m.msgs[2].line, 12);
    cli_mbox_free(&m);
}

static void test_from_unescaping(void **state)
{
    static const char f[] = "From a@b.c Thu Jan  1 00:00:00 2026\n"
                            "Subject: quoting\n"
                            "\n"
                            ">From the start\n"
                            ">>From deeper\n"
                            "From not after a blank line stays in the body\n"
                            "> From with a space is not escaped\n"
                            ">Fromage neither\n";
    struct cli_mbox m;
    assert_int_equal(parse(f, strlen(f), &m), CK_OK);
    assert_int_equal(m.count, 1);
    assert_msg(&m, 0,
               "Subject: quoting\n\n"
               "From the start\n"
               ">From deeper\n"
               "From not after a blank line stays in the body\n"
               "> From with a space is not escaped\n"
               ">Fromage neither\n");
    cli_mbox_free(&m);
}

static void test_crlf_file(void **state)
{
    static const char f[] = "From a@b.c Thu Jan  1 00:00:00 2026\r\n"
                            "Subject: one\r\n"
                            "\r\n"
                            ">From here\r\n"
                            "\r\n"
                            "From a@b.c Thu Jan  1 00:00:01 2026\r\n"
                            "Subject: two\r\n"
                            "\r\n"
                            "body\r\n"
                            "\r\n";
    struct cli_mbox m;
    assert_int_equal(parse(f, strlen(f), &m), CK_OK);
    assert_int_equal(m.count, 2);
    assert_msg(&m, 0, "Subject: one\r\n\r\nFrom here\r\n");
    assert_msg(&m, 1, "Subject: two\r\n\r\nbody\r\n");
    cli_mbox_free(&m);
}

static void test_last_message_without_newline(void **state)
{
    static const char f[] = "From a@b.c Thu Jan  1 00:00:00 2026\n"
                            "Subject: one\n"
                            "\n"
                            "x\n"
                            "\n"
                            "From a@b.c Thu Jan  1 00:00:01 2026\n"
                            "Subject: two\n"
                            "\n"
                            "no newline at the end";
    struct cli_mbox m;
    assert_int_equal(parse(f, strlen(f), &m), CK_OK);
    assert_int_equal(m.count, 2);
    assert_msg(&m, 0, "Subject: one\n\nx\n");
    assert_msg(&m, 1, "Subject: two\n\nno newline at the end");
    cli_mbox_free(&m);
}

static void assert_refused(const char *f, size_t n, const char *mentions)
{
    struct cli_mbox m = {0};
    assert_int_equal(parse(f, n, &m), CK_EINVAL);
    assert_null(m.data);
    assert_int_equal(m.count, 0);
    if (!strstr(ck_err_msg(), mentions))
        fail_msg("error \"%s\" does not mention \"%s\"", ck_err_msg(), mentions);
}

static void test_refused_files(void **state)
{
    assert_refused("", 0, "empty");
    assert_refused("Subject: no From line\n\nbody\n", 28, "must start");
    assert_refused("\nFrom a@b.c\nSubject: x\n", 23, "must start");
    static const char nul[] = "From a@b.c\nSubject: x\n\nbo\0dy\n";
    assert_refused(nul, sizeof nul - 1, "NUL byte at offset 25");
    /* A From_ line with nothing after it, alone or between messages. */
    assert_refused("From a@b.c\n", 11, "message 1");
    static const char empty_mid[] = "From a@b.c\nSubject: x\n\nbody\n\n"
                                    "From a@b.c\n\n"
                                    "From a@b.c\nSubject: y\n\nbody\n";
    assert_refused(empty_mid, sizeof empty_mid - 1, "message 2 (the From line at line 6) is empty");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_three_messages), cmocka_unit_test(test_from_unescaping),
        cmocka_unit_test(test_crlf_file),      cmocka_unit_test(test_last_message_without_newline),
        cmocka_unit_test(test_refused_files),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
