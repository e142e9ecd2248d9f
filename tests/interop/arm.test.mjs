// @azure/arm-keyvault KeyVaultManagementClient against ckey's ARM-shaped
// management plane: vaults and access policies.
import { env, alice, bob, clientOptions, vaultUrl, uniqueName, rejectsWith, collect, credentialFor } from "./setup.mjs";
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { KeyVaultManagementClient } from "@azure/arm-keyvault";
import { KeyClient } from "@azure/keyvault-keys";

const armCredential = credentialFor(env.aliceToken);
// `endpoint` replaces https://management.azure.com; `credentials.scopes` is
// what the bearer policy asks the credential for.
const armOptions = {
  endpoint: env.url,
  credentials: { scopes: ["https://management.azure.com/.default"] },
  retryOptions: { maxRetries: 0 },
};
const arm = new KeyVaultManagementClient(armCredential, env.subscription, armOptions);
const RG = env.resourceGroup;
const vaultId = (name) =>
  `/subscriptions/${env.subscription}/resourceGroups/${RG}/providers/Microsoft.KeyVault/vaults/${name}`;
const policy = (objectId, keys) => ({ tenantId: env.tenantId, objectId, permissions: { keys } });

describe("vaults.get", () => {
  test("the westus vault without purge protection", async () => {
    const v = await arm.vaults.get(RG, env.vaultA);
    assert.equal(v.name, env.vaultA);
    assert.equal(v.id, vaultId(env.vaultA));
    assert.equal(v.type, "Microsoft.KeyVault/vaults");
    assert.equal(v.location, "westus");
    assert.equal(v.properties.tenantId, env.tenantId);
    assert.deepEqual(v.properties.sku, { family: "A", name: "standard" });
    assert.equal(v.properties.vaultUri, `${vaultUrl(env.vaultA)}/`);
    assert.equal(v.properties.enableSoftDelete, true);
    assert.equal(v.properties.softDeleteRetentionInDays, 90);
    assert.ok(!v.properties.enablePurgeProtection, "no purge protection");
    assert.equal(v.properties.provisioningState, "Succeeded");
    const mine = v.properties.accessPolicies.find((p) => p.objectId === env.aliceOid);
    assert.ok(mine, "alice has an access policy");
    assert.equal(mine.tenantId, env.tenantId);
    assert.ok(mine.permissions.keys.length >= 19, `alice has all key permissions: ${mine.permissions.keys}`);
    const bobs = v.properties.accessPolicies.find((p) => p.objectId === env.bobOid);
    assert.equal(bobs.permissions.keys.includes("unwrapKey"), false);
    const app = v.properties.accessPolicies.find((p) => p.objectId === env.appOid);
    assert.deepEqual([...app.permissions.keys].sort(), ["get", "unwrapKey", "wrapKey"]);
    assert.ok(armCredential.scopesSeen.includes("https://management.azure.com/.default"));
  });

  test("the purge-protected vault and the northeurope vault", async () => {
    const pp = await arm.vaults.get(RG, env.vaultPP);
    assert.equal(pp.properties.enablePurgeProtection, true);
    const eu = await arm.vaults.get(RG, env.vaultEU);
    assert.equal(eu.location, "northeurope");
  });

  test("a missing vault is 404 ResourceNotFound", async () => {
    await rejectsWith(arm.vaults.get(RG, "no-such-vault"), 404, "ResourceNotFound");
  });

  test("bob does not own the subscription: 403", async () => {
    const asBob = new KeyVaultManagementClient(credentialFor(env.bobToken), env.subscription, armOptions);
    await rejectsWith(asBob.vaults.get(RG, env.vaultA), 403);
  });
});

describe("vault lifecycle", () => {
  test("beginCreateOrUpdateAndWait → keys work → listByResourceGroup → update → access policies → delete", async () => {
    const name = uniqueName("arm").slice(0, 24);
    const created = await arm.vaults.beginCreateOrUpdateAndWait(RG, name, {
      location: "westus",
      tags: { env: "interop" },
      properties: {
        tenantId: env.tenantId,
        sku: { family: "A", name: "premium" },
        accessPolicies: [policy(env.aliceOid, ["all"])],
        softDeleteRetentionInDays: 30,
      },
    });
    assert.equal(created.name, name);
    assert.equal(created.id, vaultId(name));
    assert.equal(created.location, "westus");
    assert.deepEqual(created.tags, { env: "interop" });
    assert.equal(created.properties.sku.name, "premium");
    assert.ok(!created.properties.enablePurgeProtection);
    assert.equal(created.properties.softDeleteRetentionInDays, 30);
    assert.equal(created.properties.provisioningState, "Succeeded");
    assert.equal(created.properties.vaultUri, `${vaultUrl(name)}/`);

    // The data plane of the new vault, at its vaultUri.
    const keys = new KeyClient(created.properties.vaultUri, alice, clientOptions());
    const key = await keys.createRsaKey("root-1");
    assert.equal(key.properties.recoverableDays, 30);
    assert.equal(key.properties.recoveryLevel, "CustomizedRecoverable+Purgeable");

    const listed = await collect(arm.vaults.listByResourceGroup(RG));
    const names = listed.map((v) => v.name);
    for (const n of [env.vaultA, env.vaultPP, env.vaultEU, name]) assert.ok(names.includes(n), `${n} in ${names}`);
    const bySub = await collect(arm.vaults.listBySubscription());
    assert.ok(bySub.some((v) => v.name === name));

    const patched = await arm.vaults.update(RG, name, { tags: { env: "interop", owner: "alice" } });
    assert.deepEqual(patched.tags, { env: "interop", owner: "alice" });
    assert.equal(patched.properties.sku.name, "premium", "PATCH keeps what it does not name");
    assert.equal(patched.properties.accessPolicies.length, 1);

    // Bob has no access policy on the new vault.
    const bobKeys = new KeyClient(created.properties.vaultUri, bob, clientOptions());
    await rejectsWith(bobKeys.getKey("root-1"), 403, "Forbidden");

    const added = await arm.vaults.updateAccessPolicy(RG, name, "add", {
      properties: { accessPolicies: [policy(env.bobOid, ["get", "list"])] },
    });
    const bobPolicy = added.properties.accessPolicies.find((p) => p.objectId === env.bobOid);
    assert.deepEqual([...bobPolicy.permissions.keys].sort(), ["get", "list"]);
    assert.ok(added.properties.accessPolicies.some((p) => p.objectId === env.aliceOid), "alice kept");
    assert.equal((await bobKeys.getKey("root-1")).id, key.id, "bob can read now");

    const removed = await arm.vaults.updateAccessPolicy(RG, name, "remove", {
      properties: { accessPolicies: [policy(env.bobOid, ["get", "list"])] },
    });
    assert.equal(removed.properties.accessPolicies.some((p) => p.objectId === env.bobOid), false);
    assert.ok(removed.properties.accessPolicies.some((p) => p.objectId === env.aliceOid));
    await rejectsWith(bobKeys.getKey("root-1"), 403, "Forbidden");

    const after = await arm.vaults.get(RG, name);
    assert.deepEqual(after.properties.accessPolicies.map((p) => p.objectId), [env.aliceOid]);

    // ckey refuses to delete a vault that holds keys, live or soft-deleted
    // (docs/vault.md "Vault deletion"; Azure would soft-delete the vault).
    const refused = await rejectsWith(arm.vaults.delete(RG, name), 409, "Conflict");
    assert.match(refused.message, /keys/);
    await (await keys.beginDeleteKey("root-1", { intervalInMs: 50 })).pollUntilDone();
    await rejectsWith(arm.vaults.delete(RG, name), 409, "Conflict");
    await keys.purgeDeletedKey("root-1");

    await arm.vaults.delete(RG, name);
    await rejectsWith(arm.vaults.get(RG, name), 404, "ResourceNotFound");
    const listedAfter = await collect(arm.vaults.listByResourceGroup(RG));
    assert.equal(listedAfter.some((v) => v.name === name), false);
    await rejectsWith(keys.getKey("root-1"), 404);
  });

  test("beginCreateOrUpdateAndWait on an existing vault updates it in place", async () => {
    const name = uniqueName("armupd").slice(0, 24);
    const body = {
      location: "northeurope",
      properties: { tenantId: env.tenantId, sku: { family: "A", name: "standard" }, accessPolicies: [policy(env.aliceOid, ["all"])] },
    };
    await arm.vaults.beginCreateOrUpdateAndWait(RG, name, body);
    const keys = new KeyClient(vaultUrl(name), alice, clientOptions());
    const key = await keys.createRsaKey("survivor");
    const again = await arm.vaults.beginCreateOrUpdateAndWait(RG, name, { ...body, tags: { second: "put" } });
    assert.deepEqual(again.tags, { second: "put" });
    assert.equal((await keys.getKey("survivor")).id, key.id, "keys survive a PUT on the vault");
    await (await keys.beginDeleteKey("survivor", { intervalInMs: 50 })).pollUntilDone();
    await keys.purgeDeletedKey("survivor");
    await arm.vaults.delete(RG, name);
    // Deleting what is gone succeeds (ARM: 204), so deletes can be retried.
    await arm.vaults.delete(RG, name);
  });

  test("an invalid vault name is refused with 400", async () => {
    await rejectsWith(
      arm.vaults.beginCreateOrUpdateAndWait(RG, "x_", {
        location: "westus",
        properties: { tenantId: env.tenantId, sku: { family: "A", name: "standard" }, accessPolicies: [] },
      }),
      400,
    );
  });
});
