// KeyClient against a ckey vault: soft delete, recover, purge, backup and
// restore, and purge protection.
import { env, alice, bob, clientOptions, vaultUrl, uniqueName, rejectsWith, collect } from "./setup.mjs";
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { randomBytes, generateKeyPairSync } from "node:crypto";
import { KeyClient, CryptographyClient } from "@azure/keyvault-keys";

const client = new KeyClient(vaultUrl(env.vaultA), alice, clientOptions());
const ppClient = new KeyClient(vaultUrl(env.vaultPP), alice, clientOptions());
const POLL = { intervalInMs: 50 };
const DAY = 86400e3;

async function deleteKey(c, name) {
  const poller = await c.beginDeleteKey(name, POLL);
  return poller.pollUntilDone();
}

describe("soft delete", () => {
  test("beginDeleteKey → getDeletedKey → listDeletedKeys → beginRecoverDeletedKey", async () => {
    const name = uniqueName("softdel");
    const created = await client.createRsaKey(name, { tags: { keep: "me" } });

    const deleted = await deleteKey(client, name);
    assert.equal(deleted.name, name);
    assert.equal(deleted.id, created.id);
    assert.equal(deleted.properties.recoveryId, `${vaultUrl(env.vaultA)}/deletedkeys/${name}`);
    assert.ok(deleted.properties.deletedOn instanceof Date, "deletedOn is set");
    assert.ok(Math.abs(deleted.properties.deletedOn.getTime() - Date.now()) < 5 * 60e3);
    assert.equal(
      deleted.properties.scheduledPurgeDate.getTime() - deleted.properties.deletedOn.getTime(),
      90 * DAY,
      "purge is scheduled 90 days after the delete",
    );
    assert.deepEqual(deleted.properties.tags, { keep: "me" });

    const err = await rejectsWith(client.getKey(name), 404, "KeyNotFound");
    assert.match(err.message, new RegExp(name));

    const got = await client.getDeletedKey(name);
    assert.equal(got.name, name);
    assert.equal(got.id, created.id);
    assert.equal(got.properties.recoveryId, deleted.properties.recoveryId);
    assert.equal(got.properties.deletedOn.getTime(), deleted.properties.deletedOn.getTime());
    assert.ok(Buffer.from(got.key.n).equals(Buffer.from(created.key.n)));

    const listed = await collect(client.listDeletedKeys());
    const mine = listed.find((d) => d.name === name);
    assert.ok(mine, `${name} is in listDeletedKeys`);
    assert.equal(mine.properties.recoveryId, deleted.properties.recoveryId);
    assert.ok(mine.properties.deletedOn instanceof Date);
    assert.ok(mine.properties.scheduledPurgeDate instanceof Date);
    assert.equal((await collect(client.listPropertiesOfKeys())).some((p) => p.name === name), false,
      "a deleted key is not in listPropertiesOfKeys");

    const recoverPoller = await client.beginRecoverDeletedKey(name, POLL);
    const recovered = await recoverPoller.pollUntilDone();
    assert.equal(recovered.name, name);
    assert.equal(recovered.id, created.id);

    const back = await client.getKey(name);
    assert.equal(back.id, created.id);
    assert.deepEqual(back.properties.tags, { keep: "me" });
    await rejectsWith(client.getDeletedKey(name), 404, "KeyNotFound");
  });

  test("creating or importing over a soft-deleted name is 409 Conflict", async () => {
    const name = uniqueName("reuse");
    await client.createRsaKey(name);
    await deleteKey(client, name);
    const err = await rejectsWith(client.createRsaKey(name), 409, "Conflict");
    assert.match(err.message, /deleted/i);
    assert.match(err.message, new RegExp(name));
    const jwk = generateKeyPairSync("rsa", { modulusLength: 2048 }).privateKey.export({ format: "jwk" });
    const u8 = (f) => new Uint8Array(Buffer.from(jwk[f], "base64url"));
    await rejectsWith(
      client.importKey(name, { kty: "RSA", n: u8("n"), e: u8("e"), d: u8("d"), p: u8("p"), q: u8("q"), dp: u8("dp"), dq: u8("dq"), qi: u8("qi") }),
      409,
      "Conflict",
    );
    const key = await client.getDeletedKey(name);
    assert.equal(key.name, name, "the deleted key is untouched");
  });

  test("purgeDeletedKey resolves, and the name is free again", async () => {
    const name = uniqueName("purge");
    const v1 = await client.createRsaKey(name);
    await deleteKey(client, name);
    const result = await client.purgeDeletedKey(name);
    assert.equal(result, undefined);
    await rejectsWith(client.getDeletedKey(name), 404, "KeyNotFound");
    await rejectsWith(client.getKey(name), 404, "KeyNotFound");
    const listed = await collect(client.listDeletedKeys());
    assert.equal(listed.some((d) => d.name === name), false);

    const fresh = await client.createRsaKey(name);
    assert.notEqual(fresh.properties.version, v1.properties.version);
    const versions = await collect(client.listPropertiesOfKeyVersions(name));
    assert.deepEqual(versions.map((p) => p.version), [fresh.properties.version], "old versions are gone");
  });

  test("purgeDeletedKey of a key that is not deleted is 404", async () => {
    const name = uniqueName("notdel");
    await client.createRsaKey(name);
    await rejectsWith(client.purgeDeletedKey(name), 404);
    await client.getKey(name);
  });

  test("deleting a missing key is 404 KeyNotFound", async () => {
    await rejectsWith(client.beginDeleteKey(uniqueName("nodel"), POLL), 404, "KeyNotFound");
  });

  test("recovering a key that is not deleted: the SDK sees it exists; the raw recover is 404", async () => {
    const name = uniqueName("norecover");
    await client.createRsaKey(name);
    // The recover poller first GETs the key and stops if it exists.
    const poller = await client.beginRecoverDeletedKey(name, POLL);
    const k = await poller.pollUntilDone();
    assert.equal(k.name, name);
    // A missing name: GET fails (swallowed), then POST …/recover is 404.
    await rejectsWith(
      (async () => (await client.beginRecoverDeletedKey(uniqueName("ghost"), POLL)).pollUntilDone())(),
      404,
      "KeyNotFound",
    );
  });

  test("bob (no purge permission) cannot purge: 403 Forbidden", async () => {
    const name = uniqueName("bobpurge");
    await client.createRsaKey(name);
    await deleteKey(client, name);
    const bobClient = new KeyClient(vaultUrl(env.vaultA), bob, clientOptions());
    const err = await rejectsWith(bobClient.purgeDeletedKey(name), 403, "Forbidden");
    assert.match(err.message, /purge/);
    await client.getDeletedKey(name);
  });
});

describe("backup and restore", () => {
  test("backupKey → delete → purge → restoreKeyBackup brings every version back", async () => {
    const name = uniqueName("backup");
    const v1 = await client.createRsaKey(name, { tags: { gen: "1" } });
    const v2 = await client.rotateKey(name);
    const v3 = await client.createRsaKey(name, { keySize: 3072 });
    const before = (await collect(client.listPropertiesOfKeyVersions(name))).map((p) => p.id).sort();
    assert.equal(before.length, 3);

    // Something encrypted under v2 must decrypt again after the restore.
    const secret = randomBytes(32);
    const wrapped = await new CryptographyClient(v2, alice, clientOptions()).wrapKey("RSA-OAEP-256", secret);

    const backup = await client.backupKey(name);
    assert.ok(backup instanceof Uint8Array, "a backup is bytes");
    assert.ok(backup.length > 100, "a backup is not empty");
    assert.equal(Buffer.from(backup).includes(Buffer.from(v1.key.n)), false, "not obviously plain key material");

    const conflict = await rejectsWith(client.restoreKeyBackup(backup), 409, "Conflict");
    assert.match(conflict.message, /conflict restoring/i);

    await deleteKey(client, name);
    const conflictDeleted = await rejectsWith(client.restoreKeyBackup(backup), 409, "Conflict");
    assert.match(conflictDeleted.message, /deleted|conflict/i);

    await client.purgeDeletedKey(name);
    await rejectsWith(client.getKey(name), 404, "KeyNotFound");

    const restored = await client.restoreKeyBackup(backup);
    assert.equal(restored.name, name);
    assert.equal(restored.id, v3.id, "the latest version is the latest again");
    assert.equal(Buffer.from(restored.key.n).length, 384);
    const after = (await collect(client.listPropertiesOfKeyVersions(name))).map((p) => p.id).sort();
    assert.deepEqual(after, before, "the same version ids");
    const old = await client.getKey(name, { version: v1.properties.version });
    assert.deepEqual(old.properties.tags, { gen: "1" });
    assert.ok(Buffer.from(old.key.n).equals(Buffer.from(v1.key.n)));

    const unwrapped = await new CryptographyClient(v2.id, alice, clientOptions()).unwrapKey(
      "RSA-OAEP-256",
      wrapped.result,
    );
    assert.ok(Buffer.from(unwrapped.result).equals(secret), "v2 still unwraps what it wrapped");
  });

  test("restoreKeyBackup of garbage is 400", async () => {
    await rejectsWith(client.restoreKeyBackup(new Uint8Array(randomBytes(64))), 400);
  });

  test("backupKey of a missing key is 404", async () => {
    await rejectsWith(client.backupKey(uniqueName("nobackup")), 404, "KeyNotFound");
  });

  test("a backup restores into another vault of the same subscription", async () => {
    const name = uniqueName("crossvault");
    const key = await client.createRsaKey(name);
    const backup = await client.backupKey(name);
    const restored = await ppClient.restoreKeyBackup(backup);
    assert.equal(restored.name, name);
    assert.equal(restored.properties.version, key.properties.version);
    assert.equal(restored.properties.vaultUrl, vaultUrl(env.vaultPP));
    assert.equal(restored.properties.recoveryLevel, "Recoverable", "the target vault's recovery level");
  });

  test("a backup does not restore into a vault in another geography: 400", async () => {
    const name = uniqueName("crossgeo");
    await client.createRsaKey(name);
    const backup = await client.backupKey(name);
    const euClient = new KeyClient(vaultUrl(env.vaultEU), alice, clientOptions());
    const err = await rejectsWith(euClient.restoreKeyBackup(backup), 400);
    assert.match(err.message, /geograph|location|region/i);
    await rejectsWith(euClient.getKey(name), 404, "KeyNotFound");
  });
});

describe("purge protection", () => {
  test("keys in a purge-protected vault are Recoverable, and purge is 403", async () => {
    const name = uniqueName("protected");
    const key = await ppClient.createRsaKey(name);
    assert.equal(key.properties.recoveryLevel, "Recoverable");
    assert.equal(key.properties.recoverableDays, 90);
    await deleteKey(ppClient, name);
    const err = await rejectsWith(ppClient.purgeDeletedKey(name), 403, "Forbidden");
    assert.match(err.message, /purge protection/i);
    const still = await ppClient.getDeletedKey(name);
    assert.equal(still.name, name);
    await (await ppClient.beginRecoverDeletedKey(name, POLL)).pollUntilDone();
    assert.equal((await ppClient.getKey(name)).id, key.id);
  });
});
