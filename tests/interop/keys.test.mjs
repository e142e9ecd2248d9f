// KeyClient against a ckey vault: creating, importing, reading, updating,
// rotating keys and their rotation policies, and random bytes.
import { env, alice, clientOptions, vaultUrl, uniqueName, rejectsWith, collect, credentialFor, raw } from "./setup.mjs";
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { generateKeyPairSync, publicEncrypt, constants, createHash, createVerify } from "node:crypto";
import { KeyClient, CryptographyClient } from "@azure/keyvault-keys";

const client = new KeyClient(vaultUrl(env.vaultA), alice, clientOptions());
const DEFAULT_OPS = ["encrypt", "decrypt", "sign", "verify", "wrapKey", "unwrapKey"];
const b = (x) => Buffer.from(x);

function assertRecent(date, what) {
  assert.ok(date instanceof Date, `${what} is a Date`);
  assert.ok(Math.abs(date.getTime() - Date.now()) < 5 * 60e3, `${what} (${date.toISOString()}) is about now`);
}

describe("create", () => {
  test("createRsaKey 2048: an RSA key with a 2048-bit modulus, e=65537 and the default key_ops", async () => {
    const name = uniqueName("rsa2048");
    const key = await client.createRsaKey(name, { keySize: 2048 });
    assert.equal(key.name, name);
    assert.equal(key.keyType, "RSA");
    assert.equal(key.key.kty, "RSA");
    assert.equal(b(key.key.n).length, 256);
    assert.deepEqual([...b(key.key.e)], [1, 0, 1]);
    assert.equal(key.key.d, undefined, "no private material in a response");
    assert.deepEqual([...key.keyOperations].sort(), [...DEFAULT_OPS].sort());
    assert.match(key.properties.version, /^[0-9a-f]{32}$/);
    assert.equal(key.id, `${vaultUrl(env.vaultA)}/keys/${name}/${key.properties.version}`);
    assert.equal(key.properties.vaultUrl, vaultUrl(env.vaultA));
    assert.equal(key.properties.enabled, true);
    assert.equal(key.properties.recoverableDays, 90);
    assert.equal(key.properties.recoveryLevel, "Recoverable+Purgeable");
    assertRecent(key.properties.createdOn, "createdOn");
    assertRecent(key.properties.updatedOn, "updatedOn");
  });

  test("createRsaKey 3072", async () => {
    const key = await client.createRsaKey(uniqueName("rsa3072"), { keySize: 3072 });
    assert.equal(b(key.key.n).length, 384);
  });

  test("createRsaKey with hsm: true gives an RSA-HSM key", async () => {
    const key = await client.createRsaKey(uniqueName("rsahsm"), { hsm: true });
    assert.equal(key.keyType, "RSA-HSM");
    assert.equal(b(key.key.n).length, 256, "the default size is 2048");
  });

  test("createKey with attributes, tags and key_ops keeps them", async () => {
    const nbf = new Date(Math.floor(Date.now() / 1000 - 3600) * 1000);
    const exp = new Date(Math.floor(Date.now() / 1000 + 86400 * 365) * 1000);
    const key = await client.createKey(uniqueName("attrs"), "RSA", {
      keySize: 2048,
      keyOps: ["wrapKey", "unwrapKey"],
      tags: { owner: "alice", purpose: "interop" },
      notBefore: nbf,
      expiresOn: exp,
      enabled: true,
    });
    assert.deepEqual([...key.keyOperations].sort(), ["unwrapKey", "wrapKey"]);
    assert.deepEqual(key.properties.tags, { owner: "alice", purpose: "interop" });
    assert.equal(key.properties.notBefore?.getTime(), nbf.getTime());
    assert.equal(key.properties.expiresOn?.getTime(), exp.getTime());
  });

  test("createKey twice under one name makes a second version", async () => {
    const name = uniqueName("twice");
    const v1 = await client.createRsaKey(name);
    const v2 = await client.createRsaKey(name);
    assert.notEqual(v1.properties.version, v2.properties.version);
    assert.notDeepEqual(b(v1.key.n), b(v2.key.n));
  });

  test("createEcKey is refused with 400 and a message naming RSA", async () => {
    const err = await rejectsWith(client.createEcKey(uniqueName("ec"), { curve: "P-256" }), 400);
    assert.match(err.message, /RSA/, `message: ${err.message}`);
    assert.match(err.message, /EC|curve/, `message: ${err.message}`);
  });

  test("createEcKey without a curve is refused with 400", async () => {
    const err = await rejectsWith(client.createEcKey(uniqueName("ec")), 400);
    assert.match(err.message, /RSA/, `message: ${err.message}`);
  });

  test("createOctKey is refused with 400", async () => {
    await rejectsWith(client.createOctKey(uniqueName("oct")), 400);
  });

  test("an invalid key name is refused with 400", async () => {
    await rejectsWith(client.createRsaKey("bad_name!"), 400);
  });
});

describe("import", () => {
  const pair = generateKeyPairSync("rsa", { modulusLength: 2048 });
  const jwk = pair.privateKey.export({ format: "jwk" });
  const bytes = (s) => new Uint8Array(Buffer.from(s, "base64url"));
  const sdkJwk = (extra = {}) => ({
    kty: "RSA",
    n: bytes(jwk.n),
    e: bytes(jwk.e),
    d: bytes(jwk.d),
    p: bytes(jwk.p),
    q: bytes(jwk.q),
    dp: bytes(jwk.dp),
    dq: bytes(jwk.dq),
    qi: bytes(jwk.qi),
    ...extra,
  });

  test("importKey: the public n/e match and the private half works in the vault", async () => {
    const name = uniqueName("imported");
    const key = await client.importKey(name, sdkJwk({ keyOps: DEFAULT_OPS }), {
      tags: { source: "node:crypto" },
    });
    assert.equal(key.name, name);
    assert.equal(key.keyType, "RSA");
    assert.ok(b(key.key.n).equals(Buffer.from(jwk.n, "base64url")), "n matches");
    assert.ok(b(key.key.e).equals(Buffer.from(jwk.e, "base64url")), "e matches");
    assert.equal(key.key.d, undefined, "d is not returned");
    assert.deepEqual(key.properties.tags, { source: "node:crypto" });

    // Encrypt here with our own public key, decrypt in the vault.
    const crypto = new CryptographyClient(key, alice, clientOptions());
    const secret = Buffer.from("imported key says hello");
    const ct = publicEncrypt(
      { key: pair.publicKey, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: "sha256" },
      secret,
    );
    const pt = await crypto.decrypt({ algorithm: "RSA-OAEP-256", ciphertext: ct });
    assert.ok(b(pt.result).equals(secret));
    // Sign in the vault, verify here.
    const digest = createHash("sha256").update("data").digest();
    const sig = await crypto.sign("RS256", digest);
    assert.ok(createVerify("sha256").update("data").verify(pair.publicKey, b(sig.result)));
  });

  test("importKey with hardwareProtected gives an RSA-HSM key", async () => {
    const key = await client.importKey(uniqueName("imported-hsm"), sdkJwk(), { hardwareProtected: true });
    assert.equal(key.keyType, "RSA-HSM");
  });

  test("importKey of an EC key is refused with 400", async () => {
    const ec = generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey.export({ format: "jwk" });
    await rejectsWith(
      client.importKey(uniqueName("imported-ec"), {
        kty: "EC",
        crv: "P-256",
        x: bytes(ec.x),
        y: bytes(ec.y),
        d: bytes(ec.d),
      }),
      400,
    );
  });
});

describe("get", () => {
  test("getKey returns the latest version; getKey by version returns that version", async () => {
    const name = uniqueName("get");
    const v1 = await client.createRsaKey(name);
    const v2 = await client.createRsaKey(name);
    const latest = await client.getKey(name);
    assert.equal(latest.id, v2.id);
    assert.ok(b(latest.key.n).equals(b(v2.key.n)));
    const first = await client.getKey(name, { version: v1.properties.version });
    assert.equal(first.id, v1.id);
    assert.equal(first.properties.version, v1.properties.version);
    assert.ok(b(first.key.n).equals(b(v1.key.n)));
  });

  test("getKey of a missing key is 404 KeyNotFound", async () => {
    const name = uniqueName("missing");
    const err = await rejectsWith(client.getKey(name), 404, "KeyNotFound");
    assert.match(err.message, new RegExp(name));
  });

  test("getKey of a missing version is 404 KeyNotFound", async () => {
    const name = uniqueName("nover");
    await client.createRsaKey(name);
    await rejectsWith(client.getKey(name, { version: "0".repeat(32) }), 404, "KeyNotFound");
  });
});

describe("updateKeyProperties", () => {
  test("changes only the fields present", async () => {
    const name = uniqueName("update");
    const created = await client.createRsaKey(name, { keyOps: ["wrapKey", "unwrapKey"] });
    const tagged = await client.updateKeyProperties(name, { tags: { team: "mail" } });
    assert.deepEqual(tagged.properties.tags, { team: "mail" });
    assert.equal(tagged.properties.enabled, true);
    assert.equal(tagged.id, created.id, "no new version");

    const disabled = await client.updateKeyProperties(name, { enabled: false });
    assert.equal(disabled.properties.enabled, false);
    assert.deepEqual(disabled.properties.tags, { team: "mail" }, "tags kept");
    assert.deepEqual([...disabled.keyOperations].sort(), ["unwrapKey", "wrapKey"], "key_ops kept");

    const exp = new Date(Math.floor(Date.now() / 1000 + 86400 * 30) * 1000);
    const expiring = await client.updateKeyProperties(name, { expiresOn: exp, keyOps: ["wrapKey"] });
    assert.equal(expiring.properties.expiresOn?.getTime(), exp.getTime());
    assert.deepEqual(expiring.keyOperations, ["wrapKey"]);
    assert.equal(expiring.properties.enabled, false, "enabled kept");
    assert.deepEqual(expiring.properties.tags, { team: "mail" }, "tags kept");

    const fetched = await client.getKey(name);
    assert.equal(fetched.properties.enabled, false);
    assert.deepEqual(fetched.properties.tags, { team: "mail" });
    assert.ok(fetched.properties.updatedOn.getTime() >= fetched.properties.createdOn.getTime());
  });

  test("with a version changes only that version", async () => {
    const name = uniqueName("updver");
    const v1 = await client.createRsaKey(name);
    const v2 = await client.createRsaKey(name);
    const upd = await client.updateKeyProperties(name, v1.properties.version, { tags: { old: "yes" } });
    assert.equal(upd.id, v1.id);
    assert.deepEqual(upd.properties.tags, { old: "yes" });
    const latest = await client.getKey(name);
    assert.equal(latest.id, v2.id);
    assert.equal(latest.properties.tags, undefined);
  });

  test("of a missing key is 404", async () => {
    await rejectsWith(client.updateKeyProperties(uniqueName("nokey"), { enabled: false }), 404, "KeyNotFound");
  });
});

describe("rotate", () => {
  test("rotateKey makes a new version that becomes the latest", async () => {
    const name = uniqueName("rotate");
    const v1 = await client.createRsaKey(name, { keySize: 2048, tags: { t: "1" } });
    const v2 = await client.rotateKey(name);
    assert.equal(v2.name, name);
    assert.notEqual(v2.properties.version, v1.properties.version);
    assert.notDeepEqual(b(v2.key.n), b(v1.key.n));
    assert.equal(b(v2.key.n).length, 256, "same size as the key rotated");
    assert.equal(v2.keyType, "RSA");
    const latest = await client.getKey(name);
    assert.equal(latest.id, v2.id);
    const versions = await collect(client.listPropertiesOfKeyVersions(name));
    assert.deepEqual(versions.map((p) => p.version).sort(), [v1.properties.version, v2.properties.version].sort());
  });

  test("rotateKey of a missing key is 404", async () => {
    await rejectsWith(client.rotateKey(uniqueName("norot")), 404, "KeyNotFound");
  });

  test("getKeyRotationPolicy / updateKeyRotationPolicy round-trip", async () => {
    const name = uniqueName("policy");
    await client.createRsaKey(name);
    const before = await client.getKeyRotationPolicy(name);
    assert.equal(before.id, `${vaultUrl(env.vaultA)}/keys/${name}/rotationpolicy`);
    assert.ok(Array.isArray(before.lifetimeActions), "lifetimeActions is an array");

    const updated = await client.updateKeyRotationPolicy(name, {
      lifetimeActions: [
        { action: "Rotate", timeAfterCreate: "P30D" },
        { action: "Notify", timeBeforeExpiry: "P7D" },
      ],
      expiresIn: "P90D",
    });
    assert.equal(updated.id, `${vaultUrl(env.vaultA)}/keys/${name}/rotationpolicy`);
    assert.equal(updated.expiresIn, "P90D");
    const byAction = Object.fromEntries(updated.lifetimeActions.map((a) => [a.action, a]));
    assert.equal(byAction.Rotate?.timeAfterCreate, "P30D");
    assert.equal(byAction.Notify?.timeBeforeExpiry, "P7D");
    assertRecent(updated.createdOn, "policy createdOn");
    assertRecent(updated.updatedOn, "policy updatedOn");

    const after = await client.getKeyRotationPolicy(name);
    assert.equal(after.expiresIn, "P90D");
    assert.deepEqual(
      after.lifetimeActions.map((a) => [a.action, a.timeAfterCreate, a.timeBeforeExpiry]).sort(),
      [["Notify", undefined, "P7D"], ["Rotate", "P30D", undefined]],
    );

    const changed = await client.updateKeyRotationPolicy(name, {
      lifetimeActions: [{ action: "Rotate", timeAfterCreate: "P60D" }],
    });
    assert.deepEqual(
      changed.lifetimeActions.map((a) => [a.action, a.timeAfterCreate]),
      [["Rotate", "P60D"]],
    );
  });

  test("getKeyRotationPolicy of a missing key is 404", async () => {
    await rejectsWith(client.getKeyRotationPolicy(uniqueName("nopol")), 404, "KeyNotFound");
  });
});

describe("random bytes", () => {
  test("getRandomBytes(32) returns 32 bytes, different each time", async () => {
    const a = await client.getRandomBytes(32);
    const c = await client.getRandomBytes(32);
    assert.ok(a instanceof Uint8Array);
    assert.equal(a.length, 32);
    assert.equal(c.length, 32);
    assert.notDeepEqual(b(a), b(c));
  });

  test("getRandomBytes(129) is refused with 400", async () => {
    await rejectsWith(client.getRandomBytes(129), 400);
  });
});

test("an unknown vault host is 404", async () => {
  const other = new KeyClient(vaultUrl("no-such-vault"), alice, clientOptions());
  await rejectsWith(other.getKey("x"), 404);
});

test("the first request is challenged and the credential is asked for the vault scope", async () => {
  const cred = credentialFor(env.aliceToken);
  const c = new KeyClient(vaultUrl(env.vaultA), cred, clientOptions());
  await c.getRandomBytes(4);
  assert.deepEqual(cred.scopesSeen, ["https://vault.azure.net/.default"]);
});

test("any api-version is accepted (serviceVersion 7.5, 7.6 and the 2025-07-01 default)", async () => {
  const name = uniqueName("apiver");
  await client.createRsaKey(name);
  for (const serviceVersion of ["7.5", "7.6", "2025-07-01"]) {
    const c = new KeyClient(vaultUrl(env.vaultA), alice, { ...clientOptions(), serviceVersion });
    assert.equal((await c.getKey(name)).name, name, serviceVersion);
  }
});

test("without a token: 401 with an AKV challenge, and the body is not looked at", async () => {
  const res = await raw("POST", `/keys/${uniqueName("nobody")}/create?api-version=7.6`, "", "{not json",
    `${env.vaultA}.vault.localhost`);
  assert.equal(res.status, 401);
  const challenge = res.headers["www-authenticate"];
  assert.match(challenge, /^Bearer /);
  assert.match(challenge, /authorization="https:\/\/login\.[a-z.]+\/[0-9a-f-]{36}"/);
  assert.match(challenge, /resource="https:\/\/vault\.azure\.net"/);
  assert.equal(res.json?.error?.code, "Unauthorized");
});
