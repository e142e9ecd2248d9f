/*
 * A 2 GiB file through the files service: uploaded and downloaded with the
 * ckey CLI (both stream), read back byte-identical, and the server's peak
 * resident memory (VmHWM) stays under 128 MiB — chunks pass through one at
 * a time. Skipped under the sanitizers, whose memory use says nothing.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

static struct srv S;

static long peak_rss_kib(pid_t pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    long kib = -1;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmHWM: %ld kB", &kib) == 1)
            break;
    if (f)
        fclose(f);
    return kib;
}

static void test_two_gib_file(void **state)
{
    const char *san = getenv("CK_SANITIZED");
    if (san && strcmp(san, "1") == 0)
        skip();
    srv_start(&S, false);
    char *out = NULL;
    assert_int_equal(cli(&S, NULL, &out, "principal add --upn alice@contoso.com"), 0);
    free(out);
    assert_int_equal(cli(&S, NULL, &out, "tenant create contoso --admin alice@contoso.com"), 0);
    free(out);
    char *alice = token_for(&S, "alice@contoso.com", "1h", NULL);
    assert_int_equal(cli(&S, alice, &out, "geo add --tenant contoso --geo EUR"), 0);
    free(out);
    assert_int_equal(cli(&S, alice, &out, "site new --tenant contoso --geo EUR --site /sites/big"),
                     0);
    free(out);
    long idle = peak_rss_kib(S.pid);

    /* 2 GiB of varied bytes: 64 MiB of random data, repeated. */
    assert_int_equal(sh(&out,
                        "cd %s && head -c 67108864 /dev/urandom > part && for i in $(seq 32); "
                        "do cat part; done > big.bin && rm part && stat -c %%s big.bin",
                        S.dir),
                     0);
    assert_int_equal(atoll(out), 2147483648LL);
    free(out);
    int st = cli(&S, alice, &out,
                 "file put --tenant contoso --site /sites/big %s/big.bin "
                 "archive/big.bin",
                 S.dir);
    if (st != 0)
        fail_msg("%s", out);
    free(out);
    long after_put = peak_rss_kib(S.pid);
    st = cli(&S, alice, &out,
             "file get --tenant contoso --site /sites/big archive/big.bin %s/back.bin", S.dir);
    if (st != 0)
        fail_msg("%s", out);
    free(out);
    long after_get = peak_rss_kib(S.pid);
    assert_int_equal(sh(&out, "cmp %s/big.bin %s/back.bin", S.dir, S.dir), 0);
    free(out);
    print_message("server peak RSS: idle %ld KiB, after 2 GiB upload %ld KiB, after download "
                  "%ld KiB\n",
                  idle, after_put, after_get);
    assert_true(after_get > 0 && after_get < 128 * 1024);
    free(alice);
    assert_int_equal(srv_stop(&S), 0);
    srv_cleanup(&S);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_two_gib_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
