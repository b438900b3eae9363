import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock } from '../../src/domain/clock.js';
import { ReferenceCache } from '../../src/services/reference-cache.js';
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
});
