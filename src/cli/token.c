/*
 * token.c — `ckey token issue|list|revoke`.
 */
#include "cli/cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char help[] =
    "Usage:\n"
    "  ckey token issue --principal UPN_OR_APPID [--ttl 1h]   prints the token (shown once)\n"
    "  ckey token list [--principal UPN_OR_APPID]\n"
    "  ckey token revoke TOKEN_ID\n"
    "\n"
    "Tokens are stored only as SHA-256 hashes; a lost token cannot be shown again.\n"
    "--ttl takes 90s, 15m, 8h, 30d (default 8h, at most 366d). Operator only.\n";

static int issue(struct cli *c, int argc, char **argv)
{
    struct cli_args a;
    if (!cli_parse(argc, argv, "principal=,ttl=", &a))
        return 2;
    const char *who = cli_get(&a, "principal");
    if (!who)
        return cli_usage_error("token issue needs --principal");
    json_t *body = json_pack("{s:s}", "principal", who);
    if (cli_get(&a, "ttl")) {
        int64_t ttl;
        if (ck_duration_parse(cli_get(&a, "ttl"), &ttl) != CK_OK) {
            json_decref(body);
            return cli_usage_error("%s", ck_err_msg());
        }
        json_object_set_new(body, "ttl", json_integer(ttl));
    }
    json_t *resp = NULL;
    ck_err rc = cli_call(c, "POST", "/admin/tokens", body, &resp);
    json_decref(body);
    if (rc != CK_OK)
        return cli_fail();
    if (c->output == CLI_JSON) {
        cli_print_json(resp);
    } else {
        /* The token alone on stdout, so `T=$(ckey token issue ...)` works. */
        puts(json_string_value(json_object_get(resp, "token")));
        fprintf(stderr, "ckey: token %s for %s expires %s\n",
                json_string_value(json_object_get(resp, "id")),
                json_string_value(json_object_get(resp, "principal")),
                json_string_value(json_object_get(resp, "expires")));
    }
    json_t *tok = json_object_get(resp, "token");
    if (json_is_string(tok))
        ck_wipe((char *)json_string_value(tok), json_string_length(tok));
    json_decref(resp);
    return 0;
}

static int list(struct cli *c, int argc, char **argv)
{
    struct cli_args a;
    if (!cli_parse(argc, argv, "principal=", &a))
        return 2;
    char *path;
    if (cli_get(&a, "principal")) {
        char *e = ck_client_escape(cli_get(&a, "principal"));
        path = ck_sprintf("/admin/tokens?principal=%s", e);
        free(e);
    } else {
        path = ck_strdup("/admin/tokens");
    }
    static const char *const cols[] = {"ID=id", "PRINCIPAL=principal", "STATE=state",
                                       "CREATED=created", "EXPIRES=expires"};
    return cli_call_table(c, path, cols, sizeof cols / sizeof *cols);
}

static int revoke(struct cli *c, int argc, char **argv)
{
    struct cli_args a;
    if (!cli_parse(argc, argv, "", &a))
        return 2;
    if (a.npos != 1)
        return cli_usage_error("token revoke needs one TOKEN_ID (see `ckey token list`)");
    char *e = ck_client_escape(a.pos[0]);
    char *path = ck_sprintf("/admin/tokens/%s", e);
    free(e);
    ck_err rc = cli_call(c, "DELETE", path, NULL, NULL);
    free(path);
    if (rc != CK_OK)
        return cli_fail();
    fprintf(stderr, "ckey: token %s revoked\n", a.pos[0]);
    return 0;
}

int cli_token(struct cli *c, int argc, char **argv)
{
    static const struct cli_verb verbs[] = {
        {"issue", issue},
        {"list", list},
        {"revoke", revoke},
    };
    return cli_dispatch(c, argc, argv, "token", help, verbs, sizeof verbs / sizeof *verbs);
}
