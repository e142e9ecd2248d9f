/*
 * subscription.c — `ckey subscription create|show|add-owner`: the
 * subscriptions vaults live in, and the principals who own them.
 */
#include "cli/cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char help[] =
    "Usage:\n"
    "  ckey subscription create SUB --owner PRINCIPAL [--owner PRINCIPAL ...]\n"
    "  ckey subscription show SUB\n"
    "  ckey subscription add-owner SUB --owner PRINCIPAL\n"
    "\n"
    "A subscription holds vaults; its owners may create and manage them. PRINCIPAL is a\n"
    "UPN, an application id, an object id or an application name. create is for\n"
    "operators; show and add-owner for operators and the subscription's owners.\n";

static void print_subscription(struct cli *c, json_t *s)
{
    if (c->output == CLI_JSON) {
        cli_print_json(s);
        return;
    }
    printf("Subscription : %s\n", json_string_value(json_object_get(s, "id")));
    printf("Created      : %s\n", json_string_value(json_object_get(s, "created")));
    json_t *owners = json_object_get(s, "owners");
    if (json_array_size(owners) == 0) {
        puts("Owners       : (none)");
        return;
    }
    size_t i;
    json_t *o;
    json_array_foreach(owners, i, o)
    {
        const char *name = json_string_value(json_object_get(o, "name"));
        const char *oid = json_string_value(json_object_get(o, "objectId"));
        printf("%s : %s (%s)\n", i == 0 ? "Owners      " : "            ",
               name ? name : "(unknown)", oid ? oid : "");
    }
}

static char *sub_path(const char *sub, const char *suffix)
{
    char *e = ck_client_escape(sub);
    char *p = ck_sprintf("/admin/subscriptions/%s%s", e, suffix);
    free(e);
    return p;
}

static int one_sub(const struct cli_args *a, const char *cmd)
{
    if (a->npos != 1)
        return cli_usage_error("subscription %s needs exactly one subscription id", cmd);
    return 0;
}

static int create(struct cli *c, int argc, char **argv)
{
    struct cli_args a;
    if (!cli_parse(argc, argv, "owner=", &a))
        return 2;
    if (one_sub(&a, "create"))
        return 2;
    json_t *owners = json_array();
    for (int i = 0; i < a.nkv; i++)
        if (a.keylen[i] == 5 && strncmp(a.key[i], "owner", 5) == 0)
            json_array_append_new(owners, json_string(a.val[i]));
    if (json_array_size(owners) == 0) {
        json_decref(owners);
        return cli_usage_error("subscription create needs at least one --owner");
    }
    json_t *body = json_pack("{s:o}", "owners", owners);
    char *path = sub_path(a.pos[0], "");
    return cli_call_show(c, "PUT", path, body, print_subscription);
}

static int show(struct cli *c, int argc, char **argv)
{
    struct cli_args a;
    if (!cli_parse(argc, argv, "", &a))
        return 2;
    if (one_sub(&a, "show"))
        return 2;
    char *path = sub_path(a.pos[0], "");
    return cli_call_show(c, "GET", path, NULL, print_subscription);
}

static int add_owner(struct cli *c, int argc, char **argv)
{
    struct cli_args a;
    if (!cli_parse(argc, argv, "owner=", &a))
        return 2;
    if (one_sub(&a, "add-owner"))
        return 2;
    const char *owner = cli_get(&a, "owner");
    if (!owner)
        return cli_usage_error("subscription add-owner needs --owner");
    json_t *body = json_pack("{s:s}", "owner", owner);
    char *path = sub_path(a.pos[0], "/owners");
    return cli_call_show(c, "POST", path, body, print_subscription);
}

int cli_subscription(struct cli *c, int argc, char **argv)
{
    static const struct cli_verb verbs[] = {
        {"create", create},
        {"show", show},
        {"add-owner", add_owner},
    };
    return cli_dispatch(c, argc, argv, "subscription", help, verbs, sizeof verbs / sizeof *verbs);
}
