import { test } from 'node:test';
import assert from 'node:assert/strict';
import { validateProvisioning, ConfigError } from '../../src/config.js';
import { generateKeyPair } from '../../src/domain/token-mint.js';
import { applyProvisioning } from '../../src/services/provisioning.js';
import { describeEachBackend } from '../support/backends.js';
import { provisioningDoc, ORG_A, ORG_B, CHANNEL_A } from '../support/harness.js';
import { generateKeyPairSync } from 'node:crypto';

describeEachBackend('provisioning', ({ store }) => {
  let doc: ReturnType<typeof provisioningDoc>;

  test('applies everything, then a second apply changes nothing', async () => {
    const pairs = await Promise.all([1, 2, 3].map(() => generateKeyPair('RS256')));
    const ec = await generateKeyPair('ES256');
    doc = provisioningDoc({ a: pairs[0]!.publicKeyPem, a2: pairs[1]!.publicKeyPem, aEc: ec.publicKeyPem, b: pairs[2]!.publicKeyPem });
    const first = await applyProvisioning(store(), validateProvisioning(structuredClone(doc), 't', '.'), 1000);
    assert.ok(first.changed > 10);
    assert.deepEqual(first.touchedOrgs.sort(), [ORG_A, ORG_B]);
    const second = await applyProvisioning(store(), validateProvisioning(structuredClone(doc), 't', '.'), 2000);
    assert.deepEqual(second, { changed: 0, touchedOrgs: [] });
    assert.equal((await store().getOrg(ORG_A))?.updatedAt, 1000);
    assert.deepEqual((await store().listKeys(ORG_A)).map((k) => [k.id, k.alg, k.kid]), [
      ['acme-1', 'RS256', null],
      ['acme-2', 'RS256', 'rot-2'],
      ['acme-ec', 'ES256', null],
    ]);
    assert.equal((await store().getChannelByNumber(CHANNEL_A))?.flowName, 'main');
    assert.deepEqual(await store().listPools(), [{ country: 'US', numbers: 5, active: 5, draining: 0 }]);
  });

  test('a change is applied and reported for its org only', async () => {
    const changed = structuredClone(doc);
    changed.orgs[1]!.callCenters!.push({ apiName: 'BravoTwo' });
    const r = await applyProvisioning(store(), validateProvisioning(changed, 't', '.'), 3000);
    assert.deepEqual(r, { changed: 1, touchedOrgs: [ORG_B] });
  });

  test('a weak key refuses the whole file and writes nothing', async () => {
    const weak = generateKeyPairSync('rsa', { modulusLength: 1024 }).publicKey.export({ type: 'spki', format: 'pem' }).toString();
    const bad = structuredClone(doc);
    bad.orgs[0]!.name = 'Renamed';
    bad.orgs[0]!.keys!.push({ id: 'weak', publicKey: weak } as never);
    await assert.rejects(applyProvisioning(store(), validateProvisioning(bad, 't', '.'), 4000), (e: unknown) => e instanceof ConfigError && /orgs\.0\.keys\.3: RSA keys must be/.test(e.message));
    assert.equal((await store().getOrg(ORG_A))?.name, 'Acme', 'rolled back');
    assert.equal(await store().getKey('weak'), null);
  });

  test('a channel number owned by another channel refuses the file', async () => {
    const bad = structuredClone(doc);
    bad.orgs[1]!.channels![0]!.number = CHANNEL_A;
    bad.orgs[0]!.channels = [];
    await assert.rejects(applyProvisioning(store(), validateProvisioning(bad, 't', '.'), 5000), /already belongs to channel Acme_AI/);
  });

  test('a pool range holding a channel number refuses the file and writes nothing', async () => {
    const bad = structuredClone(doc);
    bad.orgs[0]!.name = 'Renamed';
    bad.pools = [{ country: 'GB', ranges: [{ from: CHANNEL_A.slice(0, -2) + '00', to: CHANNEL_A.slice(0, -2) + '99' }] }];
    await assert.rejects(applyProvisioning(store(), validateProvisioning(bad, 't', '.'), 6000), (e: unknown) => e instanceof ConfigError && e.message.startsWith(`pools.0: ${CHANNEL_A} is the address of channel`));
    assert.equal((await store().getOrg(ORG_A))?.name, 'Acme', 'rolled back');
    assert.deepEqual((await store().listPools()).map((p) => p.country), ['US']);
  });

  test('a channel whose number is already a pool number refuses the file', async () => {
    const pooled = '+12125550103';
    assert.ok(await store().getPoolNumber(pooled));
    const bad = structuredClone(doc);
    bad.orgs[0]!.channels![0]!.number = pooled;
    await assert.rejects(applyProvisioning(store(), validateProvisioning(bad, 't', '.'), 7000), (e: unknown) => e instanceof ConfigError && /orgs\.0\.channels\.0\.number: \+12125550103 is a number of the US pool/.test(e.message));
    assert.equal((await store().getChannelByNumber(pooled)), null);
  });
});
