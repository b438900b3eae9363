import { test } from 'node:test';
import assert from 'node:assert/strict';
import { describeEachBackend } from '../support/backends.js';
import type { VoiceCallInput } from '../../src/store/store.js';
import { POOL_ADD_CHUNK } from '../../src/store/kysely-store.js';

const ORG = '00Dxx0000004CFG';
const OTHER = '00Dxx0000009ZZZ';
const T0 = 1_800_000_000_000;

function call(id: string, overrides: Partial<VoiceCallInput> = {}): VoiceCallInput {
  return {
    id,
    orgId: ORG,
    vendorCallKey: null,
    callCenterApiName: 'acmeCC',
    toNumber: '+14155550100',
    fromNumber: '+14155551234',
    initiationMethod: 'Inbound',
    parentVoiceCallId: null,
    startTime: null,
    endTime: null,
    isActiveCall: true,
    disconnectReason: null,
    callAttributes: '{"Department__c":"Support"}',
    callOrigin: null,
    queue: null,
    callSubtype: null,
    participants: [{ participantKey: '+14155551234', type: 'END_USER' }],
    telephonyProviderName: 'Genesys',
    status: null,
    handoff: null,
    escalation: null,
    ...overrides,
  };
}

describeEachBackend('store', ({ store, backend }) => {
  test('migrate is idempotent and safe when two instances start at once', async () => {
    const [a, b] = await Promise.all([backend().open(), backend().open()]);
    try {
      const [ra, rb] = await Promise.all([a.migrate(), b.migrate()]);
      assert.deepEqual([...ra, ...rb], [], 'already applied by the suite setup');
    } finally {
      await Promise.all([a.close(), b.close()]);
    }
  });

  test('org upsert writes once, then is a no-op for identical input, then updates a change', async () => {
    const org = {
      id: ORG,
      name: 'Acme',
      domain: 'acme.my.example.com',
      features: { numberPool: true },
      quotas: { maxLiveLeases: 10, requestsPerSecond: null },
    };
    assert.equal(await store().upsertOrg(org, T0), true);
    assert.equal(await store().upsertOrg(org, T0 + 1), false);
    const got = await store().getOrg(ORG);
    assert.equal(got?.updatedAt, T0);
    assert.deepEqual(got?.features, { numberPool: true });
    assert.deepEqual(got?.quotas, { maxLiveLeases: 10, requestsPerSecond: null });
    assert.equal(await store().upsertOrg({ ...org, name: 'Acme Inc' }, T0 + 2), true);
    assert.equal((await store().getOrg(ORG))?.name, 'Acme Inc');
    assert.equal((await store().getOrg(ORG))?.createdAt, T0);
    await store().upsertOrg({ ...org, id: OTHER, domain: 'other.my.example.com' }, T0);
    assert.deepEqual((await store().listOrgs()).map((o) => o.id), [ORG, OTHER]);
    assert.equal(await store().getOrg('00Dxx0000000NON'), null);
  });

  test('a domain belongs to one org only', async () => {
    await assert.rejects(
      store().upsertOrg({ id: '00Dxx0000007DUP', name: 'x', domain: 'acme.my.example.com', features: { numberPool: false }, quotas: { maxLiveLeases: null, requestsPerSecond: null } }, T0),
    );
    assert.equal(await store().getOrg('00Dxx0000007DUP'), null);
  });

  test('keys: upsert, list per org, revoke once', async () => {
    const key = { id: 'acme-1', orgId: ORG, kid: 'k1', alg: 'RS256' as const, pem: 'PEM-A', expiresAt: null };
    assert.equal(await store().upsertKey(key, T0), true);
    assert.equal(await store().upsertKey(key, T0), false);
    assert.equal(await store().upsertKey({ ...key, id: 'acme-2', kid: null, pem: 'PEM-B' }, T0 + 1), true);
    assert.deepEqual((await store().listKeys(ORG)).map((k) => k.id), ['acme-1', 'acme-2']);
    assert.deepEqual(await store().listKeys(OTHER), []);
    assert.equal(await store().revokeKey('acme-1', T0 + 5), true);
    assert.equal(await store().revokeKey('acme-1', T0 + 6), false);
    assert.equal((await store().getKey('acme-1'))?.revokedAt, T0 + 5);
    assert.equal(await store().revokeKey('nope', T0), false);
  });

  test('call centers, flows, channels and agents round-trip and upsert idempotently', async () => {
    assert.equal(await store().upsertCallCenter({ orgId: ORG, apiName: 'acmeCC', name: 'Acme CC' }, T0), true);
    assert.equal(await store().upsertCallCenter({ orgId: ORG, apiName: 'acmeCC', name: 'Acme CC' }, T0), false);
    assert.equal((await store().getCallCenter(ORG, 'acmeCC'))?.name, 'Acme CC');
    assert.equal(await store().getCallCenter(OTHER, 'acmeCC'), null);

    const def = { rules: [{ when: { path: 'uui' }, agent: 'demo' }], fallback: { reject: 503 } };
    assert.equal(await store().upsertFlow({ orgId: ORG, name: 'main', definition: def }, T0), true);
    assert.equal(await store().upsertFlow({ orgId: ORG, name: 'main', definition: def }, T0), false);
    assert.deepEqual((await store().getFlow(ORG, 'main'))?.definition, def);

    const ch = { orgId: ORG, devName: 'Acme_AI', number: '+14155550100', callCenterApiName: 'acmeCC', flowName: 'main' };
    assert.equal(await store().upsertChannel(ch, T0), true);
    assert.equal(await store().upsertChannel(ch, T0), false);
    assert.equal((await store().getChannelByNumber('+14155550100'))?.devName, 'Acme_AI');
    assert.equal((await store().getChannel(ORG, 'Acme_AI'))?.number, '+14155550100');
    assert.equal(await store().getChannel(OTHER, 'Acme_AI'), null);
    // A channel number is globally unique: SIP routes on it before knowing the org.
    await assert.rejects(store().upsertChannel({ ...ch, orgId: OTHER, devName: 'Other_AI' }, T0));

    const agent = { name: 'demo', orgId: null, sipUri: 'sip:demo@127.0.0.1:5070', webhookUrl: null, maxConcurrentCalls: 5, tokenHash: 'ab'.repeat(32) };
    assert.equal(await store().upsertAgent(agent, T0), true);
    assert.equal(await store().upsertAgent(agent, T0), false);
    assert.equal(await store().upsertAgent({ ...agent, maxConcurrentCalls: 6 }, T0), true);
    assert.equal((await store().getAgent('demo'))?.maxConcurrentCalls, 6);
    assert.equal((await store().listAgents()).length, 1);
    assert.equal((await store().getAgentByTokenHash('ab'.repeat(32)))?.name, 'demo');
    assert.equal(await store().getAgentByTokenHash('cd'.repeat(32)), null);
  });

  test('pools: add numbers once, drain, summarise', async () => {
    assert.equal(await store().addPoolNumbers('US', ['+12125550100', '+12125550101'], T0), 2);
    assert.equal(await store().addPoolNumbers('US', ['+12125550101', '+12125550102'], T0), 1);
    const many = Array.from({ length: 1200 }, (_, i) => `+4420794${String(i).padStart(5, '0')}`);
    assert.equal(await store().addPoolNumbers('GB', many, T0), 1200);
    assert.equal(await store().setPoolNumberState('+12125550100', 'draining'), true);
    assert.equal(await store().setPoolNumberState('+12125550100', 'draining'), false);
    assert.equal(await store().ensurePool('FR', T0), true);
    assert.deepEqual(await store().listPools(), [
      { country: 'FR', numbers: 0, active: 0, draining: 0 },
      { country: 'GB', numbers: 1200, active: 1200, draining: 0 },
      { country: 'US', numbers: 3, active: 2, draining: 1 },
    ]);
  });

  test('a large pool addition commits in chunks: a write made meanwhile does not wait for all of it', async () => {
    const numbers = Array.from({ length: POOL_ADD_CHUNK * 3 + 7 }, (_, i) => `+1555${String(i).padStart(7, '0')}`);
    assert.equal(await store().addPoolNumbers('ZZ', numbers.slice(0, 10), T0), 10);
    let addDone = false;
    const adding = store()
      .addPoolNumbers('ZZ', numbers, T0)
      .then((n) => ((addDone = true), n));
    assert.equal(await store().ensurePool('ZY', T0), true);
    assert.equal(addDone, false, 'the other write committed while the addition was under way');
    assert.equal(await adding, numbers.length - 10, 'numbers already there are not counted, in any chunk');
    assert.equal((await store().listPools()).find((p) => p.country === 'ZZ')?.numbers, numbers.length);
  });

  test('voice calls: insert, read, org isolation, JSON fields', async () => {
    const r = await store().insertVoiceCall(call('0LQxx0000001AAA'), T0);
    assert.equal(r.created, true);
    const got = await store().getVoiceCall(ORG, '0LQxx0000001AAA');
    assert.equal(got?.callAttributes, '{"Department__c":"Support"}');
    assert.deepEqual(got?.participants, [{ participantKey: '+14155551234', type: 'END_USER' }]);
    assert.equal(got?.isActiveCall, true);
    assert.equal(got?.createdAt, T0);
    assert.equal(await store().getVoiceCall(OTHER, '0LQxx0000001AAA'), null, 'another org never sees it');
    // IDs are case-sensitive: a case-changed id is another record.
    assert.equal(await store().getVoiceCall(ORG, '0LQXX0000001AAA'), null);
    // What a hand-off copies from it: the same values, under the same rules
    assert.deepEqual(await store().getPartnerCall(ORG, '0LQxx0000001AAA'), {
      id: '0LQxx0000001AAA',
      callAttributes: got?.callAttributes,
      telephonyProviderName: got?.telephonyProviderName,
    });
    assert.equal(await store().getPartnerCall(OTHER, '0LQxx0000001AAA'), null, 'another org never sees it');
    assert.equal(await store().getPartnerCall(ORG, '0LQXX0000001AAA'), null);
    assert.equal(await store().getPartnerCall(ORG, '0LQxx0000009ZZZ'), null);
  });

  test('voice calls: a repeated vendorCallKey returns the existing record, also under a race', async () => {
    const ids = Array.from({ length: 20 }, (_, i) => `0LQxx00000${String(10 + i)}VK1`.slice(0, 15));
    const results = await Promise.all(ids.map((id) => store().insertVoiceCall(call(id, { vendorCallKey: 'conv-42' }), T0)));
    assert.equal(results.filter((r) => r.created).length, 1);
    const winner = results.find((r) => r.created)!.call.id;
    assert.ok(results.every((r) => r.call.id === winner));
    // The same key in another org is another call.
    const other = await store().insertVoiceCall(call('0LQxx0000099VK2', { orgId: OTHER, vendorCallKey: 'conv-42' }), T0);
    assert.equal(other.created, true);
    assert.equal((await store().getVoiceCallByVendorKey(ORG, 'conv-42'))?.id, winner);
  });

  test('voice calls: patch updates only given fields; null clears; unknown id changes nothing', async () => {
    await store().insertVoiceCall(call('0LQxx0000002BBB', { queue: 'Q1' }), T0);
    const u = await store().updateVoiceCall(ORG, '0LQxx0000002BBB', { endTime: '2026-01-01T00:00:00Z', isActiveCall: false, queue: null, escalation: { reason: 'x' } }, T0 + 10);
    assert.equal(u?.endTime, '2026-01-01T00:00:00Z');
    assert.equal(u?.isActiveCall, false);
    assert.equal(u?.queue, null);
    assert.deepEqual(u?.escalation, { reason: 'x' });
    assert.equal(u?.callAttributes, '{"Department__c":"Support"}');
    assert.equal(u?.updatedAt, T0 + 10);
    assert.equal(await store().updateVoiceCall(OTHER, '0LQxx0000002BBB', { queue: 'stolen' }, T0), null);
    assert.equal((await store().getVoiceCall(ORG, '0LQxx0000002BBB'))?.queue, null);
  });

  test('voice calls: children listed by parent', async () => {
    await store().insertVoiceCall(call('0LQxx0000003CC1'), T0);
    await store().insertVoiceCall(call('0LQxx0000003CC2', { initiationMethod: 'Transfer', parentVoiceCallId: '0LQxx0000003CC1' }), T0 + 1);
    assert.deepEqual((await store().listChildCalls(ORG, '0LQxx0000003CC1')).map((c) => c.id), ['0LQxx0000003CC2']);
    assert.deepEqual(await store().listChildCalls(OTHER, '0LQxx0000003CC1'), []);
  });

  test('transactions roll back everything on error', async () => {
    await assert.rejects(
      store().transaction(async (tx) => {
        await tx.insertVoiceCall(call('0LQxx0000004DDD'), T0);
        throw new Error('boom');
      }),
      /boom/,
    );
    assert.equal(await store().getVoiceCall(ORG, '0LQxx0000004DDD'), null);
  });

  test('jti claims: first wins, concurrent claims yield one winner, expired ones can be reclaimed and purged', async () => {
    const results = await Promise.all(Array.from({ length: 10 }, () => store().claimJti(ORG, 'j-1', T0 + 1000, T0)));
    assert.equal(results.filter(Boolean).length, 1);
    assert.equal(await store().claimJti(OTHER, 'j-1', T0 + 1000, T0), true, 'jti scoped by org');
    assert.equal(await store().claimJti(ORG, 'j-1', T0 + 5000, T0 + 999), false);
    assert.equal(await store().claimJti(ORG, 'j-1', T0 + 5000, T0 + 1000), true);
    await store().claimJti(ORG, 'j-2', T0 + 10, T0);
    assert.equal(await store().purgeExpiredJtis(T0 + 1001), 2);
  });
});
