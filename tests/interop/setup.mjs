// Shared setup for the interop tests: import this module FIRST.
//
// scripts/run-interop.sh starts a ckey server, provisions principals, tokens
// and vaults, and exports CKEY_* variables (see there). This module
//  - makes every *.localhost name resolve to 127.0.0.1 (Node does not do it
//    by itself; the vault is the first label of the Host header, so the SDK
//    must talk to https://NAME.vault.localhost:PORT),
//  - builds unmodified Azure SDK clients with a dummy credential that hands
//    out a ckey bearer token.
import dns from "node:dns";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";

// ---------- *.localhost → 127.0.0.1 ----------
const isLocalhost = (h) => typeof h === "string" && /(^|\.)localhost\.?$/i.test(h);

const originalLookup = dns.lookup;
dns.lookup = function lookup(hostname, options, callback) {
  if (typeof options === "function") {
    callback = options;
    options = {};
  } else if (typeof options === "number") {
    options = { family: options };
  } else if (options == null) {
    options = {};
  }
  if (!isLocalhost(hostname)) return originalLookup.call(this, hostname, options, callback);
  if (options.all) {
    process.nextTick(callback, null, [{ address: "127.0.0.1", family: 4 }]);
  } else {
    process.nextTick(callback, null, "127.0.0.1", 4);
  }
  return {};
};
const originalPromisesLookup = dns.promises.lookup;
dns.promises.lookup = async function lookup(hostname, options = {}) {
  if (!isLocalhost(hostname)) return originalPromisesLookup.call(this, hostname, options);
  const opts = typeof options === "number" ? { family: options } : options;
  return opts.all ? [{ address: "127.0.0.1", family: 4 }] : { address: "127.0.0.1", family: 4 };
};

// ---------- environment ----------
function need(name) {
  const v = process.env[name];
  if (!v) {
    throw new Error(
      `${name} is not set: run the interop tests through scripts/run-interop.sh build/ckey`,
    );
  }
  return v;
}

export const env = {
  url: need("CKEY_URL"),
  port: need("CKEY_PORT"),
  operatorToken: need("CKEY_OPERATOR_TOKEN"),
  aliceToken: need("CKEY_ALICE_TOKEN"),
  bobToken: need("CKEY_BOB_TOKEN"),
  carolToken: need("CKEY_CAROL_TOKEN"),
  appToken: need("CKEY_APP_TOKEN"),
  aliceOid: need("CKEY_ALICE_OID"),
  bobOid: need("CKEY_BOB_OID"),
  carolOid: need("CKEY_CAROL_OID"),
  appOid: need("CKEY_APP_OID"),
  appId: need("CKEY_APP_ID"),
  tenantId: need("CKEY_TENANT_ID"),
  subscription: need("CKEY_SUBSCRIPTION"),
  resourceGroup: need("CKEY_RESOURCE_GROUP"),
  vaultA: need("CKEY_VAULT_A"),
  vaultPP: need("CKEY_VAULT_PP"),
  vaultEU: need("CKEY_VAULT_EU"),
};

/** https://NAME.vault.localhost:PORT — the data plane of vault NAME. */
export const vaultUrl = (name) => `https://${name}.vault.localhost:${env.port}`;

// ---------- credentials and clients ----------
/** A TokenCredential that hands out a fixed ckey bearer token. */
export function credentialFor(token) {
  const scopesSeen = [];
  return {
    scopesSeen,
    async getToken(scopes) {
      scopesSeen.push(...(Array.isArray(scopes) ? scopes : [scopes]));
      return { token, expiresOnTimestamp: Date.now() + 3600e3 };
    },
  };
}

export const alice = credentialFor(env.aliceToken);
export const bob = credentialFor(env.bobToken);
export const carol = credentialFor(env.carolToken);
export const mailService = credentialFor(env.appToken);

/** Options every data-plane client gets. The challenge names resource
 * https://vault.azure.net, which a *.vault.localhost host does not match,
 * so resource verification must be off. No retries: a server error should
 * show at once, not after back-off. */
export const clientOptions = () => ({
  disableChallengeResourceVerification: true,
  retryOptions: { maxRetries: 0 },
});

// ---------- helpers ----------
/** A key name unique to this run and test. */
export function uniqueName(prefix) {
  return `${prefix}-${randomBytes(4).toString("hex")}`;
}

/** Awaits p, which must reject with a RestError of that status (and code). */
export async function rejectsWith(p, status, code, messagePattern) {
  let err;
  try {
    await p;
  } catch (e) {
    err = e;
  }
  assert.ok(err, `expected a ${status}${code ? " " + code : ""} error, but the call succeeded`);
  assert.equal(
    err.name,
    "RestError",
    `expected a RestError, got ${err.name}: ${err.message}\n${err.stack}`,
  );
  assert.equal(
    err.statusCode,
    status,
    `expected status ${status}, got ${err.statusCode} (${err.code}): ${err.message}`,
  );
  if (code) assert.equal(err.code, code, `expected code ${code}: ${err.message}`);
  if (messagePattern) assert.match(err.message, messagePattern);
  return err;
}

/** The version part of a kid. */
export const versionOf = (kid) => new URL(kid).pathname.split("/")[3];

/** Collects an async iterable. */
export async function collect(iter) {
  const out = [];
  for await (const x of iter) out.push(x);
  return out;
}

/** A raw HTTPS call (for what the SDK cannot show, e.g. the challenge
 * header). host defaults to the server's IP; no token sends no header. */
export async function raw(method, path, token, body, host) {
  const https = await import("node:https");
  const url = new URL(path, host ? `https://${host}:${env.port}` : env.url);
  return new Promise((resolve, reject) => {
    const req = https.request(
      url,
      {
        method,
        headers: {
          ...(token ? { authorization: `Bearer ${token}` } : {}),
          "content-type": "application/json",
        },
      },
      (res) => {
        let data = "";
        res.setEncoding("utf8");
        res.on("data", (c) => (data += c));
        res.on("end", () => {
          let json;
          try {
            json = data ? JSON.parse(data) : undefined;
          } catch {
            json = undefined;
          }
          resolve({ status: res.statusCode, headers: res.headers, body: data, json });
        });
      },
    );
    req.on("error", reject);
    if (body !== undefined) req.write(typeof body === "string" ? body : JSON.stringify(body));
    req.end();
  });
}

/** A pipeline policy that records every request the SDK sends (method, URL
 * and final status), for asserting what ran locally and what remotely. */
export function recorder() {
  const requests = [];
  return {
    requests,
    /** "METHOD /path" of every recorded request. */
    paths: () => requests.map((r) => `${r.method} ${new URL(r.url).pathname}`),
    clear: () => requests.splice(0),
    additionalPolicies: [
      {
        position: "perCall",
        policy: {
          name: "ckeyInteropRecorder",
          async sendRequest(request, next) {
            const response = await next(request);
            requests.push({ method: request.method, url: request.url, status: response.status });
            return response;
          },
        },
      },
    ],
  };
}
