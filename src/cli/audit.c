/*
 * audit.c — `ckey audit list|verify`.
 */
#include "cli/cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char help[] =
    "Usage:\n"
    "  ckey audit list [--after SEQ] [--max N]\n"
    "  ckey audit verify     checks the MAC chain; exit 1 when a record was edited,\n"
    "                        inserted or deleted\n"
    "Operator only.\n";

static int list(struct cli *c, int argc, char **argv)
{
    struct cli_args a;
    if (!cli_parse(argc, argv, "after=,max=", &a))
        return 2;
    const char *after = cli_get(&a, "after") ? cli_get(&a, "after") : "0";
    const char *max = cli_get(&a, "max") ? cli_get(&a, "max") : "100";
    char *ea = ck_client_escape(after), *em = ck_client_escape(max);
    char *path = ck_sprintf("/admin/audit?after=%s&max=%s", ea, em);
    free(ea);
    free(em);
    static const char *const cols[] = {
        "SEQ=seq",       "TIME=time",     "PRINCIPAL=principal", "OPERATION=operation",
        "TARGET=target", "RESULT=result", "REQUEST ID=requestId"};
    return cli_call_table(c, path, cols, sizeof cols / sizeof *cols);
}

static int verify(struct cli *c, int argc, char **argv)
{
    struct cli_args a;
    if (!cli_parse(argc, argv, "", &a))
        return 2;
    json_t *resp = NULL;
    if (cli_call(c, "POST", "/admin/audit/verify", NULL, &resp) != CK_OK)
        return cli_fail();
    bool ok = json_is_true(json_object_get(resp, "ok"));
    if (c->output == CLI_JSON) {
        cli_print_json(resp);
    } else if (ok) {
        printf("audit log intact: %lld records verified\n",
               (long long)json_integer_value(json_object_get(resp, "checked")));
    } else {
        printf("audit log TAMPERED: %s\n", json_string_value(json_object_get(resp, "problem")));
    }
    json_decref(resp);
    return ok ? 0 : 1;
}

int cli_audit(struct cli *c, int argc, char **argv)
{
    static const struct cli_verb verbs[] = {
        {"list", list},
        {"verify", verify},
    };
    return cli_dispatch(c, argc, argv, "audit", help, verbs, sizeof verbs / sizeof *verbs);
}
