// KeyClient paging against a ckey vault. This file alone uses the
// northeurope vault, so it can count what it lists while other files run.
import { env, alice, clientOptions, vaultUrl, collect, recorder } from "./setup.mjs";
import { test, before } from "node:test";
import assert from "node:assert/strict";
import { KeyClient } from "@azure/keyvault-keys";

const rec = recorder();
const client = new KeyClient(vaultUrl(env.vaultEU), alice, { ...clientOptions(), ...rec });
const NAMES = ["list-a", "list-b", "list-c", "list-d", "list-e"];
const versions = [];

before(async () => {
  // One call first: with @azure/keyvault-common 2.1.0, concurrent first
  // requests of a fresh client race on the challenge, and the request that
  // started it can be retried without its body (an SDK bug, not the server's).
  await client.createRsaKey(NAMES[0]);
  await Promise.all(NAMES.slice(1).map((n) => client.createRsaKey(n)));
  // list-c gets 4 more versions (5 in all).
  for (let i = 0; i < 4; i++) versions.push((await client.createRsaKey("list-c")).properties.version);
  const all = await collect(client.listPropertiesOfKeyVersions("list-c"));
  versions.splice(0, versions.length, ...all.map((p) => p.version));
});

async function pages(iter) {
  const out = [];
  for await (const page of iter.byPage({ maxPageSize: 2 })) out.push(page);
  return out;
}

test("listPropertiesOfKeys byPage({maxPageSize: 2}) gives pages of 2 covering every key once", async () => {
  rec.clear();
  const ps = await pages(client.listPropertiesOfKeys());
  assert.deepEqual(ps.map((p) => p.length), [2, 2, 1]);
  const names = ps.flat().map((p) => p.name);
  assert.deepEqual([...names].sort(), NAMES);
  for (const p of ps.flat()) {
    assert.equal(p.vaultUrl, vaultUrl(env.vaultEU));
    assert.equal(p.id, `${vaultUrl(env.vaultEU)}/keys/${p.name}`, "the kid of a /keys item has no version");
    assert.equal(p.enabled, true);
    assert.ok(p.createdOn instanceof Date);
    assert.equal(p.recoveryLevel, "Recoverable+Purgeable");
  }
  // Three GETs: /keys, then two nextLinks on the same origin.
  const gets = rec.requests.filter((r) => new URL(r.url).pathname === "/keys");
  assert.equal(gets.length, 3, rec.paths().join("\n"));
  for (const r of gets) {
    const u = new URL(r.url);
    assert.equal(u.origin, vaultUrl(env.vaultEU));
    assert.equal(u.searchParams.get("maxresults"), "2");
    assert.equal(r.status, 200);
  }
});

test("listPropertiesOfKeys without a page size lists every key", async () => {
  const all = await collect(client.listPropertiesOfKeys());
  assert.deepEqual(all.map((p) => p.name).sort(), NAMES);
});

test("listPropertiesOfKeyVersions byPage({maxPageSize: 2}) gives every version once", async () => {
  const ps = await pages(client.listPropertiesOfKeyVersions("list-c"));
  assert.deepEqual(ps.map((p) => p.length), [2, 2, 1]);
  const got = ps.flat();
  assert.deepEqual(got.map((p) => p.version).sort(), [...versions].sort());
  assert.equal(new Set(got.map((p) => p.version)).size, 5);
  for (const p of got) {
    assert.equal(p.name, "list-c");
    assert.match(p.version, /^[0-9a-f]{32}$/);
    assert.equal(p.id, `${vaultUrl(env.vaultEU)}/keys/list-c/${p.version}`, "version kids are versioned");
  }
  const latest = await client.getKey("list-c");
  assert.ok(versions.includes(latest.properties.version));
});

test("listPropertiesOfKeyVersions of a missing key is empty or 404", async () => {
  try {
    const got = await collect(client.listPropertiesOfKeyVersions("no-such-key"));
    assert.deepEqual(got, []);
  } catch (e) {
    assert.equal(e.statusCode, 404, e.message);
  }
});

test("listDeletedKeys byPage({maxPageSize: 2}) after deleting three keys", async () => {
  const gone = ["list-a", "list-b", "list-d"];
  for (const n of gone) await (await client.beginDeleteKey(n, { intervalInMs: 50 })).pollUntilDone();
  const ps = await pages(client.listDeletedKeys());
  assert.deepEqual(ps.map((p) => p.length), [2, 1]);
  const got = ps.flat();
  assert.deepEqual(got.map((d) => d.name).sort(), gone);
  for (const d of got) {
    assert.equal(d.properties.recoveryId, `${vaultUrl(env.vaultEU)}/deletedkeys/${d.name}`);
    assert.ok(d.properties.deletedOn instanceof Date);
    assert.ok(d.properties.scheduledPurgeDate instanceof Date);
  }
  const live = await collect(client.listPropertiesOfKeys());
  assert.deepEqual(live.map((p) => p.name).sort(), ["list-c", "list-e"]);
});
