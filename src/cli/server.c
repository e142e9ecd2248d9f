/*
 * server.c — `ckey server`: options to struct ck_server_options.
 */
#include "cli/cli.h"
#include "server/server.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char help[] =
    "Usage: ckey server [--dev --data-dir DIR] [options]\n"
    "\n"
    "Runs the HTTPS server: the key vault role and the encrypting service role.\n"
    "\n"
    "  --dev                 embedded default: SQLite, self-signed TLS, generated master key\n"
    "                        and an operator token, all under --data-dir (created on first start)\n"
    "  --data-dir DIR        where --dev keeps its files\n"
    "  --listen HOST:PORT    default 127.0.0.1:8443 ([::1]:PORT for IPv6)\n"
    "  --tls-cert FILE       PEM certificate (required without --dev)\n"
    "  --tls-key FILE        PEM private key (required without --dev)\n"
    "  --master-key-file F   32 random bytes, mode 0600 (required without --dev)\n"
    "  --store URI           sqlite:/path/ckey.db (required without --dev)\n"
    "  --role all|vault|service   roles to host (default all)\n"
    "  --default-vault NAME  vault addressed by requests to a bare IP or localhost\n"
    "  --vault-suffix S      vault hosts are NAME.S (default vault.localhost)\n"
    "  --threads N           worker threads (default: one per core)\n"
    "  --housekeeping-interval SECONDS  how often soft-deleted keys past retention are\n"
    "                        purged and rotation policies carried out (default 60)\n"
    "  --log-level debug|info|warn|error\n"
    "\n"
    "Service role:\n"
    "  --availability-store URI     store of the availability keys (required without --dev)\n"
    "  --availability-key-file F    their own master key, 32 bytes, 0600 (required without\n"
    "                        --dev)\n"
    "  --vault-cacert F      CAs for the vaults holding root keys (default: --tls-cert)\n"
    "  --vault-token-file F  the mail service's bearer token for vaults run elsewhere\n"
    "                        (default: a token this server issues itself)\n"
    "  --files-vault-token-file F  the same for the files service\n"
    "  --key-cache-ttl SECONDS   how long unwrapped DEP keys stay cached (default 300)\n"
    "  --job-workers N       re-encryption workers (default 2)\n"
    "  --job-lease SECONDS   how long a worker's claim on a job lasts (default 10)\n"
    "  --job-throttle-ms N   pause between re-encryption batches (default 0)\n"
    "  --tik-cache-ttl SECONDS   how long unwrapped TIKs stay cached (default 3600)\n"
    "  --tik-refresh-ahead SECONDS   refresh a TIK this long before it expires\n"
    "                        (default a quarter of the TTL)\n"
    "\n"
    "SIGTERM or SIGINT drains requests in flight and exits.\n";

int cli_server(struct cli *c, int argc, char **argv)
{
    struct cli_args a;
    if (!cli_parse(
            argc, argv,
            "dev,data-dir=,listen=,tls-cert=,tls-key=,master-key-file=,store=,role=,"
            "default-vault=,vault-suffix=,threads=,housekeeping-interval=,log-level=,"
            "availability-store=,availability-key-file=,vault-cacert=,vault-token-file=,"
            "files-vault-token-file=,"
            "key-cache-ttl=,"
            "job-workers=,job-lease=,job-throttle-ms=,tik-cache-ttl=,tik-refresh-ahead=,help",
            &a))
        return 2;
    if (cli_has(&a, "help")) {
        fputs(help, stdout);
        return 0;
    }
    if (a.npos)
        return cli_usage_error("ckey server takes no arguments, got '%s'", a.pos[0]);
    struct ck_server_options o = {
        .dev = cli_has(&a, "dev"),
        .data_dir = cli_get(&a, "data-dir"),
        .listen = cli_get(&a, "listen"),
        .tls_cert = cli_get(&a, "tls-cert"),
        .tls_key = cli_get(&a, "tls-key"),
        .master_key_file = cli_get(&a, "master-key-file"),
        .store = cli_get(&a, "store"),
        .role = cli_get(&a, "role") ? cli_get(&a, "role") : "all",
        .default_vault = cli_get(&a, "default-vault"),
        .vault_suffix = cli_get(&a, "vault-suffix"),
    };
    if (strcmp(o.role, "all") && strcmp(o.role, "vault") && strcmp(o.role, "service"))
        return cli_usage_error("--role takes all, vault or service");
    const char *threads = cli_get(&a, "threads");
    if (threads) {
        char *end;
        long t = strtol(threads, &end, 10);
        if (*end || t < 1 || t > 256)
            return cli_usage_error("--threads takes a number from 1 to 256");
        o.threads = (unsigned)t;
    }
    o.availability_store = cli_get(&a, "availability-store");
    o.availability_key_file = cli_get(&a, "availability-key-file");
    o.vault_cacert = cli_get(&a, "vault-cacert");
    o.vault_token_file = cli_get(&a, "vault-token-file");
    o.files_vault_token_file = cli_get(&a, "files-vault-token-file");
    static const struct {
        const char *flag;
        long min, max;
    } numbers[] = {{"key-cache-ttl", 1, 86400},     {"job-workers", 1, 64},
                   {"job-lease", 2, 3600},          {"job-throttle-ms", 0, 60000},
                   {"tik-cache-ttl", 2, 7 * 86400}, {"tik-refresh-ahead", 1, 86400}};
    long values[6] = {0, 0, 0, 0, 0, 0};
    for (size_t i = 0; i < 6; i++) {
        const char *v = cli_get(&a, numbers[i].flag);
        if (!v)
            continue;
        char *end;
        values[i] = strtol(v, &end, 10);
        if (*end || values[i] < numbers[i].min || values[i] > numbers[i].max)
            return cli_usage_error("--%s takes %ld to %ld", numbers[i].flag, numbers[i].min,
                                   numbers[i].max);
    }
    o.key_cache_ttl = values[0];
    o.job_workers = (unsigned)values[1];
    o.job_lease = values[2];
    o.job_throttle_ms = (unsigned)values[3];
    o.tik_cache_ttl = values[4];
    o.tik_refresh_ahead = values[5];
    const char *hk = cli_get(&a, "housekeeping-interval");
    if (hk) {
        char *end;
        long t = strtol(hk, &end, 10);
        if (*end || t < 1 || t > 86400)
            return cli_usage_error("--housekeeping-interval takes 1 to 86400 seconds");
        o.housekeeping_interval = (unsigned)t;
    }
    const char *level = cli_get(&a, "log-level");
    if (level) {
        static const char *const names[] = {"debug", "info", "warn", "error"};
        size_t i = 0;
        while (i < 4 && strcmp(level, names[i]) != 0)
            i++;
        if (i == 4)
            return cli_usage_error("--log-level takes debug, info, warn or error");
        ck_log_set_level((enum ck_log_level)i);
    }
    return ck_server_main(&o);
}
