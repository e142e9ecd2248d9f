// CryptographyClient against a ckey vault: encrypt/decrypt, wrap/unwrap,
// sign/verify, disabled keys and access-policy refusals.
//
// What runs where (SDK 4.10, RSA keys): encrypt and wrapKey with RSA-OAEP or
// RSA1_5, and verifyData, run LOCALLY with the public key the SDK fetched;
// RSA-OAEP-256, decrypt, unwrapKey, sign and verify(digest) go to the
// server. Carol has no "get" permission, so her clients cannot fetch the key
// and send every operation to the server.
import {
  env, alice, bob, carol, mailService, clientOptions, vaultUrl, uniqueName, rejectsWith, recorder,
} from "./setup.mjs";
import { test, describe, before } from "node:test";
import assert from "node:assert/strict";
import {
  randomBytes, createHash, createPublicKey, generateKeyPairSync, privateDecrypt, verify as nodeVerify,
  constants,
} from "node:crypto";
import { KeyClient, CryptographyClient } from "@azure/keyvault-keys";

const keys = new KeyClient(vaultUrl(env.vaultA), alice, clientOptions());
const ENC_ALGS = ["RSA-OAEP", "RSA-OAEP-256", "RSA1_5"];
const LOCAL_ALGS = new Set(["RSA-OAEP", "RSA1_5"]);
const SIGN_ALGS = { RS256: "sha256", RS384: "sha384", RS512: "sha512", PS256: "sha256", PS384: "sha384", PS512: "sha512" };
const b = (x) => Buffer.from(x);
const publicKeyOf = (key) =>
  createPublicKey({
    format: "jwk",
    key: { kty: "RSA", n: b(key.key.n).toString("base64url"), e: b(key.key.e).toString("base64url") },
  });
const opPaths = (rec, op) => rec.requests.filter((r) => r.method === "POST" && new URL(r.url).pathname.endsWith(`/${op}`));

let key; // an RSA-2048 key of alice's
before(async () => {
  key = await keys.createRsaKey(uniqueName("crypto"), { keySize: 2048 });
});

describe("encrypt / decrypt", () => {
  for (const alg of ENC_ALGS) {
    test(`${alg}: encrypt then decrypt gives the plaintext back`, async () => {
      const rec = recorder();
      const crypto = new CryptographyClient(key, alice, { ...clientOptions(), ...rec });
      const plaintext = randomBytes(48);
      const enc = await crypto.encrypt({ algorithm: alg, plaintext });
      assert.equal(enc.algorithm, alg);
      assert.equal(b(enc.result).length, 256);
      assert.equal(enc.keyID, key.id);
      assert.equal(opPaths(rec, "encrypt").length, LOCAL_ALGS.has(alg) ? 0 : 1,
        `${alg} encrypt runs ${LOCAL_ALGS.has(alg) ? "locally" : "in the vault"}: ${rec.paths()}`);
      const dec = await crypto.decrypt({ algorithm: alg, ciphertext: enc.result });
      assert.ok(b(dec.result).equals(plaintext));
      assert.equal(dec.keyID, key.id);
      const [d] = opPaths(rec, "decrypt");
      assert.equal(new URL(d.url).pathname, `/keys/${key.name}/${key.properties.version}/decrypt`);
      assert.equal(d.status, 200);
    });
  }

  test("decrypt of a tampered ciphertext is refused with 400", async () => {
    const crypto = new CryptographyClient(key, alice, clientOptions());
    const enc = await crypto.encrypt({ algorithm: "RSA-OAEP-256", plaintext: randomBytes(16) });
    const bad = b(enc.result);
    bad[10] ^= 0xff;
    await rejectsWith(crypto.decrypt({ algorithm: "RSA-OAEP-256", ciphertext: bad }), 400);
  });

  test("the vault's encryption is standard RSA: an imported key's ciphertexts decrypt with node:crypto", async () => {
    const pair = generateKeyPairSync("rsa", { modulusLength: 2048 });
    const jwk = pair.privateKey.export({ format: "jwk" });
    const u8 = (s) => new Uint8Array(Buffer.from(s, "base64url"));
    const imported = await keys.importKey(uniqueName("interop-rsa"), {
      kty: "RSA", n: u8(jwk.n), e: u8(jwk.e), d: u8(jwk.d), p: u8(jwk.p), q: u8(jwk.q),
      dp: u8(jwk.dp), dq: u8(jwk.dq), qi: u8(jwk.qi),
    });
    // Carol's client cannot fetch the key, so encrypt runs in the vault for all three.
    const remote = new CryptographyClient(imported.id, carol, clientOptions());
    const opts = {
      "RSA-OAEP": { padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: "sha1" },
      "RSA-OAEP-256": { padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: "sha256" },
    };
    for (const alg of ENC_ALGS) {
      const plaintext = randomBytes(32);
      const enc = await remote.encrypt({ algorithm: alg, plaintext });
      let pt;
      if (alg === "RSA1_5") {
        // Node 20 refuses PKCS#1 v1.5 decryption (CVE-2023-46809): undo the
        // padding by hand: 00 02 <non-zero padding> 00 <message>.
        const em = privateDecrypt({ key: pair.privateKey, padding: constants.RSA_NO_PADDING }, b(enc.result));
        assert.equal(em[0], 0);
        assert.equal(em[1], 2);
        const sep = em.indexOf(0, 2);
        assert.ok(sep >= 10, "at least 8 bytes of padding");
        pt = em.subarray(sep + 1);
      } else {
        pt = privateDecrypt({ key: pair.privateKey, ...opts[alg] }, b(enc.result));
      }
      assert.ok(pt.equals(plaintext), alg);
    }
  });
});

describe("wrapKey / unwrapKey", () => {
  for (const alg of ENC_ALGS) {
    test(`${alg}: wrapKey then unwrapKey gives the key back`, async () => {
      const rec = recorder();
      const crypto = new CryptographyClient(key, alice, { ...clientOptions(), ...rec });
      const cek = randomBytes(32);
      const wrapped = await crypto.wrapKey(alg, cek);
      assert.equal(wrapped.algorithm, alg);
      assert.equal(b(wrapped.result).length, 256);
      assert.equal(opPaths(rec, "wrapkey").length, LOCAL_ALGS.has(alg) ? 0 : 1, rec.paths().join(", "));
      const unwrapped = await crypto.unwrapKey(alg, wrapped.result);
      assert.ok(b(unwrapped.result).equals(cek));
      assert.equal(unwrapped.keyID, key.id);
      assert.equal(opPaths(rec, "unwrapkey").length, 1);
    });
  }

  test("local RSA-OAEP wrap + remote unwrap: the SDK wraps with the public key, the vault unwraps", async () => {
    const rec = recorder();
    const crypto = new CryptographyClient(key, alice, { ...clientOptions(), ...rec });
    const cek = randomBytes(32);
    const wrapped = await crypto.wrapKey("RSA-OAEP", cek);
    assert.deepEqual(rec.requests, [], "wrapKey RSA-OAEP sent nothing to the server");
    const unwrapped = await crypto.unwrapKey("RSA-OAEP", wrapped.result);
    assert.ok(b(unwrapped.result).equals(cek));
    assert.deepEqual(rec.paths(), [`POST /keys/${key.name}/${key.properties.version}/unwrapkey`]);
    assert.equal(rec.requests[0].status, 200);
  });

  test("a client from a versionless key id fetches the latest key, then unwraps at /keys/NAME//unwrapkey", async () => {
    const rec = recorder();
    const crypto = new CryptographyClient(`${vaultUrl(env.vaultA)}/keys/${key.name}`, alice, { ...clientOptions(), ...rec });
    const cek = randomBytes(32);
    const wrapped = await crypto.wrapKey("RSA-OAEP", cek);
    assert.equal(wrapped.keyID, key.id, "the fetched key's kid is versioned");
    const unwrapped = await crypto.unwrapKey("RSA-OAEP", wrapped.result);
    assert.ok(b(unwrapped.result).equals(cek));
    assert.deepEqual(rec.paths(), [`GET /keys/${key.name}/`, `POST /keys/${key.name}//unwrapkey`]);
  });

  test("carol (no get) is remote-only: every wrap and unwrap reaches the vault", async () => {
    const rec = recorder();
    const id = `${vaultUrl(env.vaultA)}/keys/${key.name}`;
    const crypto = new CryptographyClient(id, carol, { ...clientOptions(), ...rec });
    for (const alg of ENC_ALGS) {
      const cek = randomBytes(32);
      const wrapped = await crypto.wrapKey(alg, cek);
      assert.equal(wrapped.keyID, id, "a remote-only client reports the id it was given");
      const unwrapped = await crypto.unwrapKey(alg, wrapped.result);
      assert.ok(b(unwrapped.result).equals(cek), alg);
    }
    const paths = rec.paths();
    assert.equal(paths[0], `GET /keys/${key.name}/`);
    assert.equal(rec.requests[0].status, 403, "carol may not get the key");
    assert.equal(paths.filter((p) => p === `POST /keys/${key.name}//wrapkey`).length, 3, paths.join(", "));
    assert.equal(paths.filter((p) => p === `POST /keys/${key.name}//unwrapkey`).length, 3, paths.join(", "));
  });

  test("the mail service wraps and unwraps with RSA-OAEP-256", async () => {
    const crypto = new CryptographyClient(key.id, mailService, clientOptions());
    const dep = randomBytes(32);
    const wrapped = await crypto.wrapKey("RSA-OAEP-256", dep);
    const unwrapped = await crypto.unwrapKey("RSA-OAEP-256", wrapped.result);
    assert.ok(b(unwrapped.result).equals(dep));
  });
});

describe("sign / verify", () => {
  for (const [alg, hash] of Object.entries(SIGN_ALGS)) {
    test(`${alg}: sign(digest) and signData verify, in the vault and with node:crypto`, async () => {
      const crypto = new CryptographyClient(key, alice, clientOptions());
      const data = Buffer.from(`message for ${alg}`);
      const digest = createHash(hash).update(data).digest();
      const pss = alg.startsWith("PS");
      const nodeOpts = {
        key: publicKeyOf(key),
        padding: pss ? constants.RSA_PKCS1_PSS_PADDING : constants.RSA_PKCS1_PADDING,
        saltLength: pss ? constants.RSA_PSS_SALTLEN_DIGEST : undefined,
      };

      const signed = await crypto.sign(alg, digest);
      assert.equal(signed.algorithm, alg);
      assert.equal(b(signed.result).length, 256);
      assert.equal(signed.keyID, key.id);
      assert.ok(nodeVerify(hash, data, nodeOpts, b(signed.result)), "node:crypto accepts the signature");

      const ok = await crypto.verify(alg, digest, signed.result);
      assert.equal(ok.result, true, "the vault accepts its signature");
      const other = createHash(hash).update("something else").digest();
      const bad = await crypto.verify(alg, other, signed.result);
      assert.equal(bad.result, false, "the vault rejects it for another digest");

      const signedData = await crypto.signData(alg, data);
      assert.ok(nodeVerify(hash, data, nodeOpts, b(signedData.result)));
      if (!pss) {
        // verifyData runs locally in the SDK (PKCS#1 v1.5 only).
        assert.equal((await crypto.verifyData(alg, data, signedData.result)).result, true);
        assert.equal((await crypto.verifyData(alg, Buffer.from("tampered"), signedData.result)).result, false);
      }
      // Carol's client cannot fetch the key: verifyData goes to the vault.
      const remote = new CryptographyClient(key.id, carol, clientOptions());
      assert.equal((await remote.verifyData(alg, data, signedData.result)).result, true);
      assert.equal((await remote.verifyData(alg, Buffer.from("tampered"), signedData.result)).result, false);
    });
  }

  test("sign with a digest of the wrong length is refused with 400", async () => {
    const crypto = new CryptographyClient(key, alice, clientOptions());
    await rejectsWith(crypto.sign("RS256", randomBytes(20)), 400);
  });
});

describe("refusals", () => {
  test("a disabled key: the vault refuses decrypt, unwrapKey and sign with 403", async () => {
    const name = uniqueName("disabled");
    const k = await keys.createRsaKey(name);
    const local = new CryptographyClient(k, alice, clientOptions());
    const ct = (await local.encrypt({ algorithm: "RSA-OAEP", plaintext: Buffer.from("before") })).result;
    const wrapped = (await local.wrapKey("RSA-OAEP-256", randomBytes(32))).result;
    const disabled = await keys.updateKeyProperties(name, { enabled: false });
    assert.equal(disabled.properties.enabled, false);

    // A client holding the (enabled) key object: the SDK cannot know; the server refuses.
    const rec = recorder();
    const stale = new CryptographyClient(k, alice, { ...clientOptions(), ...rec });
    const err = await rejectsWith(stale.decrypt({ algorithm: "RSA-OAEP", ciphertext: ct }), 403, "Forbidden");
    assert.match(err.message, /disabled/i);
    assert.deepEqual(rec.paths(), [`POST /keys/${name}/${k.properties.version}/decrypt`], "refused by the server");

    // A client built from the key id: it fetches the key (still readable), then the server refuses.
    const byId = new CryptographyClient(k.id, alice, clientOptions());
    await rejectsWith(byId.unwrapKey("RSA-OAEP-256", wrapped), 403, "Forbidden");
    await rejectsWith(byId.sign("RS256", randomBytes(32)), 403, "Forbidden");
    await rejectsWith(byId.encrypt({ algorithm: "RSA-OAEP-256", plaintext: Buffer.from("x") }), 403, "Forbidden");
    const read = await keys.getKey(name);
    assert.equal(read.properties.enabled, false, "a disabled key can still be read");

    await keys.updateKeyProperties(name, { enabled: true });
    const pt = await byId.decrypt({ algorithm: "RSA-OAEP", ciphertext: ct });
    assert.equal(b(pt.result).toString(), "before", "enabled again, it decrypts");
  });

  test("bob has no unwrapKey permission: 403 Forbidden from the vault", async () => {
    const crypto = new CryptographyClient(key.id, bob, clientOptions());
    const cek = randomBytes(32);
    const wrapped = await crypto.wrapKey("RSA-OAEP", cek); // local, with the key bob may get
    const err = await rejectsWith(crypto.unwrapKey("RSA-OAEP", wrapped.result), 403, "Forbidden");
    assert.match(err.message, /unwrapKey/);
    assert.match(err.message, new RegExp(env.vaultA));
    // The same ciphertext unwraps for alice.
    const ok = await new CryptographyClient(key, alice, clientOptions()).unwrapKey("RSA-OAEP", wrapped.result);
    assert.ok(b(ok.result).equals(cek));
  });

  test("bob may wrap remotely (RSA-OAEP-256) but not unwrap", async () => {
    const crypto = new CryptographyClient(key.id, bob, clientOptions());
    const wrapped = await crypto.wrapKey("RSA-OAEP-256", randomBytes(32));
    await rejectsWith(crypto.unwrapKey("RSA-OAEP-256", wrapped.result), 403, "Forbidden");
  });

  test("an operation outside the key's key_ops is refused by the server", async () => {
    const name = uniqueName("wraponly");
    const k = await keys.createRsaKey(name, { keyOps: ["wrapKey", "unwrapKey"] });
    // Alice's client refuses locally (ensureValid); carol's goes to the vault.
    const remote = new CryptographyClient(k.id, carol, clientOptions());
    const err = await remote.sign("RS256", randomBytes(32)).catch((e) => e);
    assert.equal(err.name, "RestError", String(err));
    assert.ok([400, 403].includes(err.statusCode), `status ${err.statusCode}: ${err.message}`);
    assert.match(err.message, /sign/);
  });
});
