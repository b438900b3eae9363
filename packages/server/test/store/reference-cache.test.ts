import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock } from '../../src/domain/clock.js';
import { ReferenceCache } from '../../src/services/reference-cache.js';
import { RoutingService } from '../../src/services/routing.js';
import { newVoiceCallId } from '../../src/domain/ids.js';
import { describeEachBackend } from '../support/backends.js';

const ORG = { id: '00Dxx0000004CFG', name: 'Acme', domain: 'acme.my.example.com', features: { numberPool: true }, quotas: { maxLiveLeases: null, requestsPerSecond: null } };

describeEachBackend('reference cache', ({ store }) => {
  test('serves cached values for ttl, then rereads; clear() forgets at once; ttl 0 never caches', async () => {
    const clock = new ManualClock(1_000_000);
    await store().upsertOrg(ORG, clock.now());
    await store().upsertChannel({ orgId: ORG.id, devName: 'A', number: '+14155550100', callCenterApiName: null, flowName: null }, clock.now());
    await store().ensurePool('US', clock.now());
    const refs = new ReferenceCache(store(), clock, 1000);
    assert.equal((await refs.org(ORG.id))?.name, 'Acme');
    assert.equal((await refs.channelByNumber('+14155550100'))?.devName, 'A');
    assert.equal(await refs.channelByNumber('+14155550199'), null);
    assert.deepEqual(await refs.poolCountries(), ['US']);

    await store().upsertOrg({ ...ORG, name: 'Renamed' }, clock.now());
    await store().ensurePool('GB', clock.now());
    await store().upsertChannel({ orgId: ORG.id, devName: 'B', number: '+14155550199', callCenterApiName: null, flowName: null }, clock.now());
    clock.advance(999);
    assert.equal((await refs.org(ORG.id))?.name, 'Acme', 'still cached');
    assert.deepEqual(await refs.poolCountries(), ['US']);
    assert.equal(await refs.channelByNumber('+14155550199'), null, 'a cached miss');
    clock.advance(1);
    assert.equal((await refs.org(ORG.id))?.name, 'Renamed', 'reread after ttl');
    assert.deepEqual(await refs.poolCountries(), ['GB', 'US']);
    assert.equal((await refs.channelByNumber('+14155550199'))?.devName, 'B');

    await store().upsertOrg({ ...ORG, name: 'Again' }, clock.now());
    refs.clear();
    assert.equal((await refs.org(ORG.id))?.name, 'Again', 'clear() forgets');

    const off = new ReferenceCache(store(), clock, 0);
    assert.equal((await off.org(ORG.id))?.name, 'Again');
    await store().upsertOrg({ ...ORG, name: 'Live' }, clock.now());
    assert.equal((await off.org(ORG.id))?.name, 'Live');
  });

  test('flows and agents are cached like the rest; routing.decide reads through the cache and writes nothing', async () => {
    const clock = new ManualClock(2_000_000);
    await store().upsertOrg(ORG, clock.now());
    await store().upsertOrg({ ...ORG, id: '00Dxx0000009ZZZ', domain: 'zzz.my.example.com' }, clock.now());
    const flow = (agent: string) => ({ rules: [{ name: 'r', agent, set: { queue: 'AI' } }], fallback: { agent: 'spare' } });
    await store().upsertFlow({ orgId: ORG.id, name: 'f', definition: flow('bot') }, clock.now());
    const agent = (name: string, orgId: string | null = ORG.id) => ({ name, orgId, sipUri: `sip:${name}@127.0.0.1:5090`, webhookUrl: null, maxConcurrentCalls: 1, tokenHash: null });
    for (const a of [agent('bot'), agent('bot2'), agent('spare'), agent('foreign', '00Dxx0000009ZZZ')]) await store().upsertAgent(a, clock.now());
    const channel = { orgId: ORG.id, devName: 'F', number: '+14155550177', callCenterApiName: null, flowName: 'f', createdAt: 0, updatedAt: 0 };
    const refs = new ReferenceCache(store(), clock, 1000);
    assert.deepEqual((await refs.flow(ORG.id, 'f'))?.definition, flow('bot'));
    assert.equal(await refs.flow(ORG.id, 'none'), null);
    assert.equal((await refs.agent('bot'))?.sipUri, 'sip:bot@127.0.0.1:5090');

    await store().upsertFlow({ orgId: ORG.id, name: 'f', definition: flow('bot2') }, clock.now());
    await store().upsertAgent({ ...agent('bot'), maxConcurrentCalls: 7 }, clock.now());
    assert.deepEqual((await refs.flow(ORG.id, 'f'))?.definition, flow('bot'), 'still cached');
    assert.equal((await refs.agent('bot'))?.maxConcurrentCalls, 1, 'still cached');
    clock.advance(1000);
    assert.deepEqual((await refs.flow(ORG.id, 'f'))?.definition, flow('bot2'), 'reread after ttl');
    assert.equal((await refs.agent('bot'))?.maxConcurrentCalls, 7);

    // decide: the flow's choice and field changes, computed on the in-memory call, none written
    const id = newVoiceCallId();
    const input = {
      id, orgId: ORG.id, vendorCallKey: `k-${id}`, callCenterApiName: null, toNumber: channel.number, fromNumber: '+442071234567',
      initiationMethod: 'Transfer', parentVoiceCallId: null, startTime: null, endTime: null, isActiveCall: true, disconnectReason: null,
      callAttributes: null, callOrigin: null, queue: null, callSubtype: null, participants: null, telephonyProviderName: null,
      status: 'Routing', handoff: null, escalation: null,
    };
    await store().insertVoiceCall(input, clock.now());
    const routing = new RoutingService(store(), clock, refs);
    const call = (await store().getVoiceCall(ORG.id, id))!;
    const decided = await routing.decide({ orgId: ORG.id, channel, call, path: 'uui' });
    assert.equal(decided.agent?.name, 'bot2');
    assert.deepEqual(decided.patch, { queue: 'AI' });
    assert.equal((await store().getVoiceCall(ORG.id, id))?.queue, null, 'decide wrote nothing');
    const routed = await routing.route({ orgId: ORG.id, channel, call, path: 'uui' });
    assert.equal(routed.call.queue, 'AI');
    assert.equal((await store().getVoiceCall(ORG.id, id))?.queue, 'AI', 'route applies the fields');

    // the fallback agent: another agent of the org (or operator-wide); never the full one, never another org's
    assert.equal((await routing.fallbackAgent(ORG.id, channel, decided.agent!))?.name, 'spare');
    assert.equal(await routing.fallbackAgent(ORG.id, channel, (await refs.agent('spare'))!), null, 'the full agent itself');
    assert.equal(await routing.fallbackAgent(ORG.id, { ...channel, flowName: null }, decided.agent!), null, 'no flow');
    await store().upsertFlow({ orgId: ORG.id, name: 'g', definition: { rules: [], fallback: { agent: 'foreign' } } }, clock.now());
    assert.equal(await routing.fallbackAgent(ORG.id, { ...channel, flowName: 'g' }, decided.agent!), null, "another org's agent");
  });
});
