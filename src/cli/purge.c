/*
 * purge.c — `ckey purge …`: the signed permanent data purge (docs/purge.md).
 *
 * `sign`, `keygen` and `check-certificate --public-key` work with no server:
 * the approver signs the document's exact bytes on their own machine. The
 * signature file is the 64-byte Ed25519 signature in base64url and a
 * newline; `execute` also takes a raw 64-byte signature (what
 * `openssl pkeyutl -sign -rawin` writes).
 */
#include "cli/cli.h"
#include "crypto/crypto.h"
#include "purge/purge.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define DOC_MAX (64u << 20)
#define POLL_MS 500

static const char help[] =
    "Usage:\n"
    "  ckey purge list --tenant T\n"
    "  ckey purge status ID [--wait [--timeout SECONDS]]\n"
    "  ckey purge document ID --out doc.json [--reissue]\n"
    "  ckey purge sign --in doc.json --key approver.pem --out doc.sig     (offline)\n"
    "  ckey purge execute --doc doc.json --sig doc.sig [--wait]           (operator)\n"
    "  ckey purge certificate ID --out cert.json\n"
    "  ckey purge verify ID\n"
    "  ckey purge check-certificate --in cert.json [--public-key service.pem]\n"
    "  ckey purge signing-key [--out service.pem]\n"
    "  ckey purge keygen --out approver.pem --public-out approver.pub.pem (offline)\n"
    "\n"
    "A purge is requested with `ckey dep purge-request` (mail) or `ckey spo-dep\n"
    "purge-request` (files), after the customer removed the service's access to both\n"
    "root keys. Then: issue the document, have the approver registered for the tenant\n"
    "(`ckey tenant approver set`) sign it, and the operator executes it. The service\n"
    "destroys every key of the policy, then signs a certificate with its own key\n"
    "(`ckey purge signing-key`, also served at /purge/signing-key). `verify` re-checks\n"
    "the store, byte by byte, for any copy of a destroyed key; it exits 1 on a failure.\n";

static void print_purge(struct cli *c, json_t *p)
{
    static const char *const fields[] = {
        "Id=id",
        "Tenant=tenant",
        "Kind=kind",
        "Policy=policy",
        "PolicyName=policyName",
        "Stage=stage",
        "Percent=percent",
        "Reason=reason",
        "Contact=contact",
        "RequestedBy=requestedBy",
        "RequestedAt=requestedAt",
        "DocumentId=documentId",
        "IssuedAt=issuedAt",
        "ExecutedBy=executedBy",
        "ExecutedAt=executedAt",
        "CompletedAt=completedAt",
        "JobId=jobId",
    };
    cli_print_object(c, p, fields, sizeof fields / sizeof *fields);
}

/* Shared with dep.c and spodep.c: `purge-request` with --reason and --contact. */
int cli_purge_request(struct cli *c, char *path, const struct cli_args *a)
{
    const char *reason = cli_get(a, "reason"), *contact = cli_get(a, "contact");
    if (!reason || !contact) {
        free(path);
        return cli_usage_error("purge-request needs --reason R and --contact C");
    }
    json_t *body = json_pack("{s:s,s:s}", "reason", reason, "contact", contact);
    int st = cli_call_show(c, "POST", path, body, print_purge);
    if (st == 0 && c->output != CLI_JSON)
        fprintf(stderr, "ckey: next: `ckey purge document ID --out doc.json`, signed by the "
                        "tenant's approver\n");
    return st;
}

static int need_one(const struct cli_args *a, const char *verb)
{
    if (a->npos != 1)
        return cli_usage_error("purge %s needs one purge ID", verb);
    return 0;
}

static int purge_list(struct cli *c, int argc, char **argv)
{
    struct cli_args a;
    if (!cli_parse(argc, argv, "tenant=", &a))
        return 2;
    const char *tenant = cli_tenant_arg(&a);
    if (!tenant)
        return cli_usage_error("purge list needs --tenant T (or CKEY_TENANT)");
    static const char *const cols[] = {"ID=id",       "KIND=kind",       "POLICY=policyName",
                                       "STAGE=stage", "PERCENT=percent", "REQUESTED=requestedAt"};
    return cli_call_table(c, cli_path("/tenants/%s/purges", tenant), cols,
                          sizeof cols / sizeof *cols);
}

/* Polls the purge until done (0), a failed job (1) or the timeout (1). */
static int wait_done(struct cli *c, const char *id, double timeout)
{
    char *path = cli_path("/purges/%s", id);
    int64_t start = ck_now_ms();
    int st = 1;
    for (;;) {
        json_t *p = NULL;
        ck_err rc = cli_call(c, "GET", path, NULL, &p);
        if (rc == CK_EUNAVAIL && ck_now_ms() - start < (int64_t)(timeout * 1000)) {
            usleep(POLL_MS * 1000);
            continue;
        }
        if (rc != CK_OK) {
            cli_progress_end();
            st = cli_fail();
            break;
        }
        const char *stage = json_string_value(json_object_get(p, "stage"));
        json_int_t pct = json_integer_value(json_object_get(p, "percent"));
        if (stage && strcmp(stage, "done") == 0) {
            cli_progress("purge", 100, 100);
            cli_progress_end();
            print_purge(c, p);
            json_decref(p);
            st = 0;
            break;
        }
        /* A failed job stays failed: say so rather than wait forever. */
        const char *job = json_string_value(json_object_get(p, "jobId"));
        json_t *j = NULL;
        if (job) {
            char *jp = cli_path("/jobs/%s", job);
            if (cli_call(c, "GET", jp, NULL, &j) == CK_OK) {
                const char *state = json_string_value(json_object_get(j, "state"));
                if (state && strcmp(state, "failed") == 0) {
                    cli_progress_end();
                    fprintf(stderr, "ckey: the purge job failed: %s\n",
                            json_string_value(json_object_get(j, "error")));
                    json_decref(j);
                    json_decref(p);
                    free(jp);
                    break;
                }
            }
            json_decref(j);
            free(jp);
        }
        cli_progress(stage ? stage : "purge", pct, 100);
        json_decref(p);
        if (ck_now_ms() - start >= (int64_t)(timeout * 1000)) {
            cli_progress_end();
            fprintf(stderr,
                    "ckey: the purge %s is not done after %g s; `ckey purge status %s` "
                    "shows where it is\n",
                    id, timeout, id);
            break;
        }
        usleep(POLL_MS * 1000);
    }
    free(path);
    return st;
}

static double timeout_arg(const struct cli_args *a)
{
    const char *t = cli_get(a, "timeout");
    return t ? atof(t) : 600;
}

static int purge_status(struct cli *c, int argc, char **argv)
{
    struct cli_args a;
    if (!cli_parse(argc, argv, "wait,timeout=", &a))
        return 2;
    int st = need_one(&a, "status");
    if (st)
        return st;
    if (cli_has(&a, "wait"))
        return wait_done(c, a.pos[0], timeout_arg(&a));
    return cli_call_show(c, "GET", cli_path("/purges/%s", a.pos[0]), NULL, print_purge);
}

static int purge_document(struct cli *c, int argc, char **argv)
{
    struct cli_args a;
    if (!cli_parse(argc, argv, "out=,reissue", &a))
        return 2;
    int st = need_one(&a, "document");
    if (st)
        return st;
    if (!cli_get(&a, "out"))
        return cli_usage_error("purge document needs --out FILE (the exact bytes to sign)");
    char *path = cli_path("/purges/%s/document", a.pos[0]);
    json_t *body = json_pack("{s:b}", "reissue", cli_has(&a, "reissue"));
    json_t *resp = NULL;
    ck_err rc = cli_call(c, "POST", path, body, &resp);
    free(path);
    json_decref(body);
    if (rc != CK_OK)
        return cli_fail();
    const char *doc = json_string_value(json_object_get(resp, "document"));
    rc = doc ? cli_write_file(cli_get(&a, "out"), doc, strlen(doc), 0644)
             : ck_err_set(CK_EIO, "the server sent no document");
    if (rc == CK_OK && strcmp(cli_get(&a, "out"), "-") != 0)
        fprintf(stderr,
                "ckey: wrote purge document %s to %s; the tenant's approver signs it "
                "with `ckey purge sign`\n",
                json_string_value(json_object_get(resp, "documentId")), cli_get(&a, "out"));
    json_decref(resp);
    return rc == CK_OK ? 0 : cli_fail();
}

static int purge_sign(struct cli *c, int argc, char **argv)
{
    (void)c;
    struct cli_args a;
    if (!cli_parse(argc, argv, "in=,key=,out=", &a))
        return 2;
    if (!cli_get(&a, "in") || !cli_get(&a, "key") || !cli_get(&a, "out") || a.npos)
        return cli_usage_error("purge sign needs --in DOC --key APPROVER.pem --out SIG");
    struct ck_buf doc = {0}, pem = {0};
    struct ck_secret seed = {0};
    uint8_t sig[64];
    char *b64 = NULL;
    ck_err rc = cli_read_file(cli_get(&a, "in"), DOC_MAX, &doc);
    if (rc == CK_OK)
        rc = cli_read_file(cli_get(&a, "key"), 64 << 10, &pem);
    if (rc == CK_OK)
        rc = ck_buf_append(&pem, "", 1);
    if (rc == CK_OK && ck_ed25519_private_from_pem((const char *)pem.p, &seed) != CK_OK)
        rc = ck_err_set(CK_EINVAL, "%s is not an Ed25519 private key in PEM", cli_get(&a, "key"));
    if (rc == CK_OK)
        rc = ck_ed25519_sign(seed.p, doc.p, doc.n, sig);
    if (rc == CK_OK)
        rc = ck_b64url_encode(sig, sizeof sig, &b64);
    if (rc == CK_OK) {
        char *line = ck_sprintf("%s\n", b64);
        rc = cli_write_file(cli_get(&a, "out"), line, strlen(line), 0644);
        free(line);
    }
    ck_wipe(pem.p, pem.n);
    ck_buf_free(&pem);
    ck_buf_free(&doc);
    ck_secret_free(&seed);
    free(b64);
    return rc == CK_OK ? 0 : cli_fail();
}

/* A signature file: 64 raw bytes, or base64url/base64 text. */
static ck_err read_signature(const char *path, char **b64)
{
    struct ck_buf raw = {0}, sig = {0};
    ck_err rc = cli_read_file(path, 4096, &raw);
    if (rc == CK_OK && raw.n == 64) {
        rc = ck_b64url_encode(raw.p, raw.n, b64);
    } else if (rc == CK_OK) {
        size_t n = raw.n;
        while (n && isspace(raw.p[n - 1]))
            n--;
        if (ck_b64url_decode((const char *)raw.p, n, &sig) != CK_OK || sig.n != 64)
            rc = ck_err_set(CK_EINVAL,
                            "%s is not an Ed25519 signature (64 bytes, raw or "
                            "base64url)",
                            path);
        else
            rc = ck_b64url_encode(sig.p, sig.n, b64);
    }
    ck_buf_free(&raw);
    ck_buf_free(&sig);
    return rc;
}

static int purge_execute(struct cli *c, int argc, char **argv)
{
    struct cli_args a;
    if (!cli_parse(argc, argv, "doc=,sig=,wait,timeout=", &a))
        return 2;
    if (!cli_get(&a, "doc") || a.npos)
        return cli_usage_error("purge execute needs --doc DOC --sig SIG");
    struct ck_buf doc = {0};
    char *sig = NULL;
    ck_err rc = cli_read_file(cli_get(&a, "doc"), DOC_MAX, &doc);
    if (rc == CK_OK)
        rc = ck_buf_append(&doc, "", 1);
    if (rc == CK_OK && cli_get(&a, "sig"))
        rc = read_signature(cli_get(&a, "sig"), &sig);
    if (rc != CK_OK) {
        ck_buf_free(&doc);
        return cli_fail();
    }
    /* Without --sig the server is asked anyway: it refuses, and says why. */
    json_t *body = json_pack("{s:s}", "document", (const char *)doc.p);
    ck_buf_free(&doc);
    if (!body) {
        free(sig);
        return cli_usage_error("%s is not a text document", cli_get(&a, "doc"));
    }
    if (sig)
        json_object_set_new(body, "signature", json_string(sig));
    free(sig);
    json_t *resp = NULL;
    rc = cli_call(c, "POST", "/purges/execute", body, &resp);
    json_decref(body);
    if (rc != CK_OK)
        return cli_fail();
    char id[37];
    snprintf(id, sizeof id, "%s", json_string_value(json_object_get(resp, "id")));
    if (!cli_has(&a, "wait")) {
        print_purge(c, resp);
        json_decref(resp);
        return 0;
    }
    json_decref(resp);
    return wait_done(c, id, timeout_arg(&a));
}

static int purge_certificate(struct cli *c, int argc, char **argv)
{
    struct cli_args a;
    if (!cli_parse(argc, argv, "out=", &a))
        return 2;
    int st = need_one(&a, "certificate");
    if (st)
        return st;
    char *path = cli_path("/purges/%s/certificate", a.pos[0]);
    json_t *resp = NULL;
    ck_err rc = cli_call(c, "GET", path, NULL, &resp);
    free(path);
    if (rc != CK_OK)
        return cli_fail();
    char *text = json_dumps(resp, JSON_INDENT(2) | JSON_SORT_KEYS);
    json_decref(resp);
    const char *out = cli_get(&a, "out") ? cli_get(&a, "out") : "-";
    rc = cli_write_file(out, text, strlen(text), 0644);
    free(text);
    return rc == CK_OK ? 0 : cli_fail();
}

static int purge_verify(struct cli *c, int argc, char **argv)
{
    struct cli_args a;
    if (!cli_parse(argc, argv, "", &a))
        return 2;
    int st = need_one(&a, "verify");
    if (st)
        return st;
    char *path = cli_path("/purges/%s/verify", a.pos[0]);
    json_t *resp = NULL;
    ck_err rc = cli_call(c, "POST", path, NULL, &resp);
    free(path);
    if (rc != CK_OK)
        return cli_fail();
    const char *result = json_string_value(json_object_get(resp, "result"));
    bool pass = result && strcmp(result, "pass") == 0;
    if (c->output == CLI_JSON) {
        cli_print_json(resp);
    } else {
        static const char *const cols[] = {"CHECK=check", "RESULT=result", "DETAIL=detail"};
        cli_print_table(c, json_object_get(resp, "checks"), cols, sizeof cols / sizeof *cols);
        size_t i;
        json_t *f;
        int64_t bytes = 0;
        json_array_foreach(json_object_get(resp, "scanned"), i, f)
        {
            bytes += json_integer_value(json_object_get(f, "bytes"));
        }
        printf("\nscanned %zu store files (%lld bytes)\nresult: %s\n",
               json_array_size(json_object_get(resp, "scanned")), (long long)bytes,
               pass ? "PASS" : "FAIL");
    }
    json_decref(resp);
    return pass ? 0 : 1;
}

static ck_err fetch_signing_key(struct cli *c, char **pem)
{
    json_t *resp = NULL;
    CK_TRY(cli_call(c, "GET", "/purge/signing-key", NULL, &resp));
    const char *p = json_string_value(json_object_get(resp, "publicKey"));
    *pem = ck_strdup(p);
    json_decref(resp);
    return p ? CK_OK : ck_err_set(CK_EIO, "the server sent no signing key");
}

static int purge_signing_key(struct cli *c, int argc, char **argv)
{
    struct cli_args a;
    if (!cli_parse(argc, argv, "out=", &a))
        return 2;
    char *pem = NULL;
    ck_err rc = fetch_signing_key(c, &pem);
    if (rc == CK_OK)
        rc = cli_write_file(cli_get(&a, "out") ? cli_get(&a, "out") : "-", pem, strlen(pem), 0644);
    free(pem);
    return rc == CK_OK ? 0 : cli_fail();
}

static int purge_check_certificate(struct cli *c, int argc, char **argv)
{
    struct cli_args a;
    if (!cli_parse(argc, argv, "in=,public-key=", &a))
        return 2;
    if (!cli_get(&a, "in") || a.npos)
        return cli_usage_error("purge check-certificate needs --in CERT [--public-key PEM]");
    struct ck_buf file = {0}, pemb = {0};
    char *pem = NULL;
    uint8_t pub[32];
    json_t *cert = NULL;
    ck_err rc = cli_read_file(cli_get(&a, "in"), DOC_MAX, &file);
    if (rc == CK_OK && cli_get(&a, "public-key")) {
        rc = cli_read_file(cli_get(&a, "public-key"), 64 << 10, &pemb);
        if (rc == CK_OK)
            rc = ck_buf_append(&pemb, "", 1);
        if (rc == CK_OK)
            pem = ck_strdup((const char *)pemb.p);
    } else if (rc == CK_OK) {
        rc = fetch_signing_key(c, &pem);
    }
    if (rc == CK_OK && ck_ed25519_public_from_pem(pem, pub) != CK_OK)
        rc = ck_err_set(CK_EINVAL, "the signing key is not an Ed25519 public key in PEM");
    json_error_t e;
    if (rc == CK_OK && !(cert = json_loadb((const char *)file.p, file.n, 0, &e)))
        rc = ck_err_set(CK_EINVAL, "%s is not JSON: %s", cli_get(&a, "in"), e.text);
    if (rc == CK_OK)
        rc = ck_purge_certificate_check(cert, pub);
    if (rc == CK_OK)
        printf("certificate %s of purge %s: signature valid\n",
               json_string_value(
                   json_object_get(json_object_get(cert, "certificate"), "certificateId")),
               json_string_value(json_object_get(json_object_get(cert, "certificate"), "purgeId")));
    json_decref(cert);
    ck_buf_free(&file);
    ck_buf_free(&pemb);
    free(pem);
    return rc == CK_OK ? 0 : cli_fail();
}

static int purge_keygen(struct cli *c, int argc, char **argv)
{
    (void)c;
    struct cli_args a;
    if (!cli_parse(argc, argv, "out=,public-out=", &a))
        return 2;
    if (!cli_get(&a, "out") || !cli_get(&a, "public-out") || a.npos)
        return cli_usage_error("purge keygen needs --out PRIVATE.pem --public-out PUBLIC.pem");
    if (access(cli_get(&a, "out"), F_OK) == 0)
        return cli_usage_error("%s exists: not overwriting a private key", cli_get(&a, "out"));
    uint8_t pub[32];
    struct ck_secret seed = {0}, pem = {0};
    char *pub_pem = NULL;
    ck_err rc = ck_ed25519_keygen(pub, &seed);
    if (rc == CK_OK)
        rc = ck_ed25519_private_pem(seed.p, &pem);
    if (rc == CK_OK)
        rc = ck_ed25519_public_pem(pub, &pub_pem);
    if (rc == CK_OK)
        rc = cli_write_file(cli_get(&a, "out"), pem.p, strlen((const char *)pem.p), 0600);
    if (rc == CK_OK)
        rc = cli_write_file(cli_get(&a, "public-out"), pub_pem, strlen(pub_pem), 0644);
    ck_secret_free(&seed);
    ck_secret_free(&pem);
    free(pub_pem);
    return rc == CK_OK ? 0 : cli_fail();
}

int cli_purge(struct cli *c, int argc, char **argv)
{
    static const struct cli_verb verbs[] = {
        {"list", purge_list},
        {"status", purge_status},
        {"document", purge_document},
        {"sign", purge_sign},
        {"execute", purge_execute},
        {"certificate", purge_certificate},
        {"verify", purge_verify},
        {"check-certificate", purge_check_certificate},
        {"signing-key", purge_signing_key},
        {"keygen", purge_keygen},
    };
    return cli_dispatch(c, argc, argv, "purge", help, verbs, sizeof verbs / sizeof *verbs);
}
