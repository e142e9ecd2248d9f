/*
 * main.c — global options, help, and dispatch to the nouns.
 */
#include "cli/cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char usage[] =
    "ckey — a self-hosted Customer Key system: key vault, encrypting storage, and this CLI.\n"
    "\n"
    "Usage: ckey [global options] <command> [options]\n"
    "\n"
    "Commands:\n"
    "  server        run the server (vault and service roles)\n"
    "  principal     add and list users and applications\n"
    "  token         issue, list and revoke bearer tokens\n"
    "  whoami        show the principal behind the current token\n"
    "  audit         list and verify the audit log\n"
    "  subscription  create subscriptions and manage their owners\n"
    "  vault         create, show, list and delete key vaults; access policies\n"
    "  key           create, back up, restore and use keys in a vault\n"
    "  tenant        create and show tenants; admins, purge approver, offboarding\n"
    "  dep           data encryption policies for mail (New/Get/Set-DataEncryptionPolicy)\n"
    "  mailuser      mail users and the DEP they migrate under (New/Set-MailUser)\n"
    "  mailbox       mailboxes: assign DEPs, statistics, mbox import, items\n"
    "  job           background jobs (re-encryption) and their progress\n"
    "  geo           add and list a tenant's geos (files)\n"
    "  site          sites of a geo, and their encryption status\n"
    "  file          put, get, list and delete files in a site\n"
    "  spo-dep       a geo's data encryption policy for files (Register/Get/Update/\n"
    "                Restore-SPODataEncryptionPolicy)\n"
    "  purge         signed permanent data purge: document, sign, execute, certificate,\n"
    "                verify\n"
    "\n"
    "Global options (anywhere on the line):\n"
    "  --url URL          server URL (CKEY_URL; default https://127.0.0.1:8443)\n"
    "  --token T          bearer token (CKEY_TOKEN)\n"
    "  --token-file F     file holding the token (CKEY_TOKEN_FILE)\n"
    "  --cacert F         CA certificate to trust (CKEY_CACERT)\n"
    "  --data-dir DIR     use DIR/operator.token and DIR/tls/cert.pem (CKEY_DATA_DIR;\n"
    "                     ./ckey-data when it exists)\n"
    "  -o table|json      output format (default table)\n"
    "  -h, --help         this help; `ckey <command> --help` for a command's\n";

static int dispatch(struct cli *c, int argc, char **argv)
{
    static const struct {
        const char *name;
        int (*fn)(struct cli *, int, char **);
    } nouns[] = {
        {"server", cli_server},     {"principal", cli_principal},
        {"token", cli_token},       {"whoami", cli_whoami},
        {"audit", cli_audit},       {"subscription", cli_subscription},
        {"vault", cli_vault},       {"key", cli_key},
        {"tenant", cli_tenant},     {"dep", cli_dep},
        {"mailuser", cli_mailuser}, {"mailbox", cli_mailbox},
        {"job", cli_job},           {"geo", cli_geo},
        {"site", cli_site},         {"file", cli_file},
        {"spo-dep", cli_spodep},    {"purge", cli_purge},
    };
    for (size_t i = 0; i < sizeof nouns / sizeof nouns[0]; i++)
        if (strcmp(argv[0], nouns[i].name) == 0)
            return nouns[i].fn(c, argc - 1, argv + 1);
    return cli_usage_error("unknown command '%s'", argv[0]);
}

/* Takes the global options out of argv wherever they stand; the server
 * command keeps --data-dir for itself. */
static int take_globals(struct cli *c, int argc, char **argv, char **rest)
{
    int n = 0;
    bool is_server = false;
    for (int i = 1; i < argc; i++) {
        const char *w = argv[i];
        const char **slot = NULL;
        if (n == 0 && strcmp(w, "server") == 0)
            is_server = true;
        if (strcmp(w, "--url") == 0)
            slot = &c->url;
        else if (strcmp(w, "--token") == 0)
            slot = &c->token;
        else if (strcmp(w, "--token-file") == 0)
            slot = &c->token_file;
        else if (strcmp(w, "--cacert") == 0)
            slot = &c->cacert;
        else if (strcmp(w, "--data-dir") == 0 && !is_server)
            slot = &c->data_dir;
        else if (strcmp(w, "-o") == 0 || strcmp(w, "--output") == 0) {
            if (i + 1 >= argc)
                return -cli_usage_error("-o needs table or json");
            const char *v = argv[++i];
            if (strcmp(v, "json") == 0)
                c->output = CLI_JSON;
            else if (strcmp(v, "table") == 0)
                c->output = CLI_TABLE;
            else
                return -cli_usage_error("-o takes table or json, not '%s'", v);
            continue;
        }
        if (slot) {
            if (i + 1 >= argc)
                return -cli_usage_error("%s needs a value", w);
            *slot = argv[++i];
            continue;
        }
        rest[n++] = argv[i];
    }
    return n;
}

/* An environment variable set to "" counts as unset (CKEY_TOKEN= ckey ...). */
static const char *env(const char *name)
{
    const char *v = getenv(name);
    return v && *v ? v : NULL;
}

int main(int argc, char **argv)
{
    ck_json_wipe_on_free();
    struct cli c = {0};
    c.url = env("CKEY_URL");
    c.token = env("CKEY_TOKEN");
    c.token_file = env("CKEY_TOKEN_FILE");
    c.cacert = env("CKEY_CACERT");
    c.data_dir = env("CKEY_DATA_DIR");
    char **rest = ck_xcalloc((size_t)argc + 1, sizeof *rest);
    int n = take_globals(&c, argc, argv, rest);
    int status;
    if (n < 0) {
        status = -n;
    } else if (n == 0 || strcmp(rest[0], "--help") == 0 || strcmp(rest[0], "-h") == 0 ||
               strcmp(rest[0], "help") == 0) {
        fputs(usage, n == 0 ? stderr : stdout);
        status = n == 0 ? 2 : 0;
    } else {
        if (!c.url)
            c.url = "https://127.0.0.1:8443";
        /* What `make run` made in this directory: its certificate, and its
         * operator token unless another token was given. */
        if (!c.data_dir && access("ckey-data/tls/cert.pem", R_OK) == 0)
            c.data_dir = "ckey-data";
        status = dispatch(&c, n, rest);
    }
    ck_client_free(c.client);
    if (c.token_buf) {
        ck_wipe(c.token_buf, strlen(c.token_buf));
        free(c.token_buf);
    }
    free(rest);
    return status;
}
