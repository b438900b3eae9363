import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { HandoffClient, type ReserveRoutableNumberInput } from '../src/index.js';
import { rejectsWith } from './support/errors.js';
import { rsaKey } from './support/keys.js';
import { closedPortUrl, errorBody, startProxy, type ProxiedRequest, type TestProxy } from './support/proxy.js';
import { liveLeases, operator, startDemoService, startProvisionedService, type DemoService, type Service } from './support/service.js';

const UUID_V4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
const reserveRequests = (proxy: TestProxy): ProxiedRequest[] => proxy.requests.filter((r) => r.url.endsWith('/reserveRoutableNumber'));
const transactionIdOf = (r: ProxiedRequest): unknown => (JSON.parse(r.body) as { transactionId?: unknown }).transactionId;

/** A fetch that records the status of every answer (and passes it on untouched). */
function statusRecorder(): { fetch: typeof fetch; statuses: number[] } {
  const statuses: number[] = [];
  return {
    statuses,
    fetch: async (url, init) => {
      const res = await fetch(url, init);
      statuses.push(res.status);
      return res;
    },
  };
}

describe('reserveRoutableNumber against the demo tenant', () => {
  let svc: DemoService;
  let client: HandoffClient;
  let callId: string;
  let callers = 0;
  /** A request for a caller no other test uses. */
  const request = (extra: Partial<ReserveRoutableNumberInput> = {}): ReserveRoutableNumberInput => ({
    countryCode: 'US',
    fromNumber: `+1415555${String(2000 + ++callers)}`,
    toNumber: svc.demo.channelNumber,
    scrt2Domain: `https://${svc.demo.domain}`,
    callId,
    ...extra,
  });
  const clientVia = (baseUrl: string, options: { timeoutMs?: number; fetch?: typeof fetch } = {}) =>
    new HandoffClient({ baseUrl, orgId: svc.demo.orgId, subject: svc.demo.callCenterApiName, privateKeyPem: svc.demo.privateKeyPem, ...options });
  /** The service's live leases held under this transactionId. */
  const leasesOf = async (transactionId: string) => (await liveLeases(svc, svc.demo.orgId)).filter((l) => l.transactionId === transactionId);

  before(async () => {
    svc = await startDemoService();
    client = clientVia(svc.url);
    callId = (await client.createVoiceCall({ vendorCallKey: 'reserve-vc1', to: svc.demo.channelNumber, from: '+14155551234' })).voiceCallId;
  });
  after(() => svc.close());

  test('generates a transactionId and returns the handle of the one lease held under it', async () => {
    const input = request();
    const lease = await client.reserveRoutableNumber(input);
    assert.match(lease.transactionId, UUID_V4);
    assert.match(lease.routableNumber, /^\+121255501\d\d$/);
    assert.match(lease.uid, /^lease:/);
    const expiresIn = Date.parse(lease.expiresAt) - Date.now();
    assert.ok(expiresIn > 170_000 && expiresIn <= 180_000, `expires in ${expiresIn} ms`);
    const held = await leasesOf(lease.transactionId);
    assert.equal(held.length, 1);
    assert.equal(held[0]!.uid, lease.uid);
    assert.equal(held[0]!.fromNumber, input.fromNumber);
    assert.equal(held[0]!.voiceCallId, callId);
  });

  test('a given transactionId is sent as is, and repeating it returns the same handle', async () => {
    const input = request({ transactionId: 'order-2026-0122-5489' });
    const first = await client.reserveRoutableNumber(input);
    assert.equal(first.transactionId, 'order-2026-0122-5489');
    assert.deepEqual(await client.reserveRoutableNumber(input), first);
    assert.equal((await leasesOf(first.transactionId)).length, 1);
  });

  test('a lost answer is retried with the same transactionId: same handle, one lease', async () => {
    const proxy = await startProxy(svc.url, (r) => (r.url.endsWith('/reserveRoutableNumber') && reserveRequests(proxy).length === 0 ? { kind: 'drop' } : { kind: 'forward' }));
    try {
      const input = request();
      const lease = await clientVia(proxy.url).reserveRoutableNumber(input);
      const [lost, retry, ...more] = reserveRequests(proxy);
      assert.equal(more.length, 0);
      assert.equal(lost?.action, 'drop');
      assert.equal(lost?.upstreamStatus, 200, 'the service reserved before the answer was lost');
      assert.equal(retry?.action, 'forward');
      assert.equal(transactionIdOf(lost!), lease.transactionId);
      assert.equal(transactionIdOf(retry!), lease.transactionId);
      assert.equal(retry?.body, lost?.body, 'the retry repeats the request byte for byte');

      const held = await leasesOf(lease.transactionId);
      assert.equal(held.length, 1, 'exactly one lease for the transaction');
      assert.equal(held[0]!.uid, lease.uid);
      assert.equal((await liveLeases(svc, svc.demo.orgId)).filter((l) => l.fromNumber === input.fromNumber).length, 1, 'and for the caller');
    } finally {
      await proxy.close();
    }
  });

  test('an answer later than timeoutMs is retried with the same transactionId: same handle, one lease', async () => {
    const proxy = await startProxy(svc.url, (r) => (r.url.endsWith('/reserveRoutableNumber') && reserveRequests(proxy).length === 0 ? { kind: 'delay', ms: 1000 } : { kind: 'forward' }));
    try {
      const started = Date.now();
      const lease = await clientVia(proxy.url, { timeoutMs: 300 }).reserveRoutableNumber(request());
      assert.ok(Date.now() - started < 1000, 'did not wait for the late answer');
      const [late, retry] = reserveRequests(proxy);
      assert.equal(late?.action, 'delay');
      assert.equal(retry?.action, 'forward');
      assert.equal(transactionIdOf(late!), transactionIdOf(retry!));
      assert.equal((await leasesOf(lease.transactionId)).length, 1);
    } finally {
      await proxy.close();
    }
  });

  test('a 5xx without Retry-After (a load balancer page) is retried after a back-off', async () => {
    const proxy = await startProxy(svc.url, (_r, i) =>
      i === 0 ? { kind: 'reply', status: 502, headers: { 'content-type': 'text/html' }, body: '<html>502 Bad Gateway</html>' } : { kind: 'forward' },
    );
    try {
      const started = Date.now();
      const lease = await clientVia(proxy.url).reserveRoutableNumber(request());
      assert.ok(Date.now() - started >= 125, 'backed off before retrying');
      assert.deepEqual(reserveRequests(proxy).map((r) => [r.action, transactionIdOf(r)]), [['reply', lease.transactionId], ['forward', lease.transactionId]]);
    } finally {
      await proxy.close();
    }
  });

  test('a 429 is retried after its Retry-After', async () => {
    const proxy = await startProxy(svc.url, (_r, i) =>
      i === 0 ? { kind: 'reply', status: 429, headers: { 'retry-after': '1' }, body: errorBody('RATE_LIMITED', 'slow down') } : { kind: 'forward' },
    );
    try {
      const started = Date.now();
      const lease = await clientVia(proxy.url).reserveRoutableNumber(request());
      const elapsed = Date.now() - started;
      assert.ok(elapsed >= 1000 && elapsed < 3000, `waited ${elapsed} ms for Retry-After: 1`);
      assert.deepEqual(reserveRequests(proxy).map(transactionIdOf), [lease.transactionId, lease.transactionId]);
    } finally {
      await proxy.close();
    }
  });

  test('never sleeps past the deadline: a Retry-After beyond it ends the call at once with DEADLINE_EXCEEDED', async () => {
    const proxy = await startProxy(svc.url, () => ({ kind: 'reply', status: 503, headers: { 'retry-after': '2' }, body: errorBody('POOL_EXHAUSTED', 'no number free') }));
    try {
      const started = Date.now();
      const err = await rejectsWith(clientVia(proxy.url).reserveRoutableNumber(request({ transactionId: 'tx-deadline' }), { deadlineMs: 1500 }), 0, 'DEADLINE_EXCEEDED');
      assert.ok(Date.now() - started < 500, 'gave up without waiting');
      assert.equal(reserveRequests(proxy).length, 1);
      assert.equal(err.retryAfter, 2);
      assert.deepEqual(err.details, { transactionId: 'tx-deadline', attempts: 1, lastErrorCode: 'POOL_EXHAUSTED', lastStatus: 503 });
      assert.equal((err.cause as { errorCode?: string }).errorCode, 'POOL_EXHAUSTED');
    } finally {
      await proxy.close();
    }
  });

  test('network errors are retried with back-off until the deadline, never past it', async () => {
    const started = Date.now();
    const err = await rejectsWith(clientVia(await closedPortUrl()).reserveRoutableNumber(request(), { deadlineMs: 1000 }), 0, 'DEADLINE_EXCEEDED');
    const elapsed = Date.now() - started;
    assert.ok(elapsed < 1000, `gave up after ${elapsed} ms`);
    assert.equal(err.details.lastErrorCode, 'NETWORK_ERROR');
    assert.ok((err.details.attempts as number) >= 3, `${err.details.attempts} attempts`);
    assert.match(err.details.transactionId as string, UUID_V4, 'the transactionId to pick the lease up with later');
  });

  test('400, 401, 404, 409 and 422 are thrown at once with their errorCode', async () => {
    const proxy = await startProxy(svc.url, () => ({ kind: 'forward' }));
    const attempts = () => reserveRequests(proxy).length;
    try {
      const viaProxy = clientVia(proxy.url);
      const unsupported = await rejectsWith(viaProxy.reserveRoutableNumber(request({ countryCode: 'ZZ' })), 400, 'UNSUPPORTED_COUNTRY');
      assert.deepEqual([...(unsupported.details.supportedCountries as string[])].sort(), ['GB', 'US']);
      assert.equal(attempts(), 1);

      const stranger = new HandoffClient({ baseUrl: proxy.url, orgId: svc.demo.orgId, privateKeyPem: rsaKey().pkcs8 });
      await rejectsWith(stranger.reserveRoutableNumber(request()), 401, 'INVALID_TOKEN');
      assert.equal(attempts(), 2);

      await rejectsWith(viaProxy.reserveRoutableNumber(request({ toNumber: '+14155559999' })), 404, 'CHANNEL_NOT_FOUND');
      assert.equal(attempts(), 3);

      const input = request({ transactionId: 'tx-reused' });
      const original = await viaProxy.reserveRoutableNumber(input);
      await rejectsWith(viaProxy.reserveRoutableNumber({ ...input, fromNumber: '+14155550001' }), 422, 'IDEMPOTENCY_MISMATCH');
      assert.equal(attempts(), 5);

      // The call arrives and consumes the lease; a late retry learns the original handle.
      const resolved = await operator(svc, 'POST', '/telephony/v1/routableNumbers/resolve', { calledNumber: original.routableNumber, callerNumber: input.fromNumber });
      assert.equal(resolved.status, 200);
      const gone = await rejectsWith(viaProxy.reserveRoutableNumber(input), 409, 'LEASE_NOT_LIVE');
      assert.deepEqual(gone.details.handle, { routableNumber: original.routableNumber, uid: original.uid, expiresAt: original.expiresAt });
      assert.equal(attempts(), 6);
    } finally {
      await proxy.close();
    }
  });
});

describe('reserveRoutableNumber back-off against a real quota (429) and an exhausted pool (503)', () => {
  const QUOTA_ORG = '00Dxx0000007QTA';
  const POOL_ORG = '00Dxx0000007POL';
  const ONLY_NUMBER = '+12125550100';
  const keys = { quota: rsaKey(), pool: rsaKey() };
  let svc: Service;

  before(async () => {
    svc = await startProvisionedService(
      {
        orgs: [
          {
            id: QUOTA_ORG,
            name: 'Quota of one',
            domain: 'quota.my.example.com',
            features: { numberPool: true },
            quotas: { maxLiveLeases: 1 },
            keys: [{ id: 'quota-key', publicKey: keys.quota.publicKeyPem }],
            channels: [{ devName: 'Quota_AI', number: '+14155550500' }],
          },
          {
            id: POOL_ORG,
            name: 'No quota',
            domain: 'pool.my.example.com',
            features: { numberPool: true },
            keys: [{ id: 'pool-key', publicKey: keys.pool.publicKeyPem }],
            channels: [{ devName: 'Pool_AI', number: '+14155550600' }],
          },
        ],
        pools: [{ country: 'US', numbers: [ONLY_NUMBER] }],
      },
      // Leases of 2 s and no cool-down: a Retry-After is about 2 s and waiting it out succeeds.
      { HANDOFF_LEASE_TTL_SECONDS: '2', HANDOFF_LEASE_COOLDOWN_SECONDS: '0' },
    );
  });
  after(() => svc.close());

  const clientFor = (org: 'quota' | 'pool', fetchFn?: typeof fetch) =>
    new HandoffClient({ baseUrl: svc.url, orgId: org === 'quota' ? QUOTA_ORG : POOL_ORG, privateKeyPem: keys[org].pkcs8, ...(fetchFn ? { fetch: fetchFn } : {}) });
  const input = (org: 'quota' | 'pool', fromNumber: string): ReserveRoutableNumberInput => ({
    countryCode: 'US',
    fromNumber,
    toNumber: org === 'quota' ? '+14155550500' : '+14155550600',
    scrt2Domain: `${org}.my.example.com`,
  });

  test('429 QUOTA_EXCEEDED: gives up at a short deadline, waits out Retry-After within a long one', async () => {
    await clientFor('quota').reserveRoutableNumber(input('quota', '+14155553001'));

    let started = Date.now();
    const err = await rejectsWith(clientFor('quota').reserveRoutableNumber(input('quota', '+14155553002'), { deadlineMs: 500 }), 0, 'DEADLINE_EXCEEDED');
    assert.ok(Date.now() - started < 500);
    assert.equal(err.details.lastErrorCode, 'QUOTA_EXCEEDED');
    assert.equal(err.details.lastStatus, 429);
    assert.ok(err.retryAfter === 1 || err.retryAfter === 2, `Retry-After ${err.retryAfter}`);

    const recorder = statusRecorder();
    started = Date.now();
    const lease = await clientFor('quota', recorder.fetch).reserveRoutableNumber(input('quota', '+14155553002'));
    assert.ok(Date.now() - started >= 900, 'waited for the first lease to expire');
    assert.deepEqual(recorder.statuses, [429, 200]);
    assert.equal(lease.routableNumber, ONLY_NUMBER);
    assert.equal((await liveLeases(svc, QUOTA_ORG)).length, 1);
  });

  test('503 POOL_EXHAUSTED: gives up at a short deadline, waits out Retry-After within a long one', async () => {
    const caller = '+14155553101';
    const first = await clientFor('pool').reserveRoutableNumber(input('pool', caller));

    let started = Date.now();
    const err = await rejectsWith(clientFor('pool').reserveRoutableNumber(input('pool', caller), { deadlineMs: 500 }), 0, 'DEADLINE_EXCEEDED');
    assert.ok(Date.now() - started < 500);
    assert.equal(err.details.lastErrorCode, 'POOL_EXHAUSTED');
    assert.equal(err.details.lastStatus, 503);

    const recorder = statusRecorder();
    started = Date.now();
    const second = await clientFor('pool', recorder.fetch).reserveRoutableNumber(input('pool', caller));
    assert.ok(Date.now() - started >= 900, 'waited for the pair to be released');
    assert.deepEqual(recorder.statuses, [503, 200]);
    assert.equal(second.routableNumber, ONLY_NUMBER);
    assert.notEqual(second.uid, first.uid);
    assert.notEqual(second.transactionId, first.transactionId);
  });
});
