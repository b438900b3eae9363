import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { BACKENDS } from '../support/backends.js';
import { CHANNEL_A, CHANNEL_B, makeHarness, ORG_A, type Harness } from '../support/harness.js';
import { ManualClock } from '../../src/domain/clock.js';
import { parseXmlBody } from '../../src/http/body-codec.js';

const URL_ = '/telephony/v1/voiceCalls/reserveRoutableNumber';
const POOL = ['+12125550100', '+12125550101', '+12125550102', '+12125550103', '+12125550104'];

for (const backend of BACKENDS) {
  describe(`reserveRoutableNumber [${backend}]`, () => {
    const clock = new ManualClock(Date.UTC(2026, 10, 22, 12, 0, 0));
    let h: Harness;
    let tokA: string;
    let tokB: string;
    let vc1: string;
    let caller = 0;
    const nextCaller = () => `+1415555${String(1000 + ++caller).padStart(4, '0')}`;

    before(async () => {
      h = await makeHarness(backend, { clock, services: { leaseTtlSeconds: 60, leaseCooldownSeconds: 10 } });
      tokA = await h.token('a', { ttlSeconds: 86400 });
      tokB = await h.token('b', { ttlSeconds: 86400 });
      const res = await h.app.inject({
        method: 'POST',
        url: '/telephony/v1/voiceCalls',
        headers: { authorization: `Bearer ${tokA}`, 'content-type': 'application/json' },
        payload: { vendorCallKey: `vc1-${backend}`, to: CHANNEL_A, from: '+14155551234' },
      });
      vc1 = res.json().voiceCallId;
    });
    after(() => h.close());

    const flat = (o: Record<string, unknown> = {}) => ({
      countryCode: 'US',
      fromNumber: nextCaller(),
      scrt2Domain: 'https://acme.my.example.com',
      toNumber: CHANNEL_A,
      callId: vc1,
      ...o,
    });
    const reserve = (payload: unknown, headers: Record<string, string> = {}, token = tokA) =>
      h.app.inject({
        method: 'POST',
        url: URL_,
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', ...headers },
        payload: typeof payload === 'string' ? payload : JSON.stringify(payload),
      });

    test('flat body: 200 with a handle; expiresAt = now + TTL; uid prefix', async () => {
      const res = await reserve(flat({ transactionId: 'tx-flat' }), { 'telephony-provider-name': 'Amazon Connect' });
      assert.equal(res.statusCode, 200, res.body);
      const out = res.json();
      assert.equal(out.status, 'success');
      assert.equal(out.mode, 'number');
      assert.ok(POOL.includes(out.handle.routableNumber));
      assert.ok(out.handle.uid.startsWith(`lease:did:${out.handle.routableNumber}:`));
      assert.equal(out.handle.expiresAt, new Date(clock.now() + 60_000).toISOString());
    });

    test('nested body with country, and nested with countryCode, as in the source document', async () => {
      for (const countryKey of ['country', 'countryCode']) {
        const res = await reserve({
          [countryKey]: 'US',
          fromNumber: nextCaller(),
          context: { scrt2Domain: 'acme.my.example.com/telephony/v1', toNumber: CHANNEL_A, callId: vc1.slice(0, 15), transactionId: `tx-nested-${countryKey}` },
        });
        assert.equal(res.statusCode, 200, res.body);
      }
    });

    test('XML in and out', async () => {
      const res = await h.app.inject({
        method: 'POST',
        url: URL_,
        headers: { authorization: `Bearer ${tokA}`, 'content-type': 'application/xml' },
        payload: `<reserveRoutableNumber><country>US</country><fromNumber>${nextCaller()}</fromNumber><context><scrt2Domain>https://acme.my.example.com</scrt2Domain><toNumber>${CHANNEL_A}</toNumber></context></reserveRoutableNumber>`,
      });
      assert.equal(res.statusCode, 200, res.body);
      const out = parseXmlBody(res.body) as { status: string; handle: { routableNumber: string } };
      assert.equal(out.status, 'success');
      assert.ok(POOL.includes(out.handle.routableNumber));
    });

    test('idempotency: same body -> same handle (also via Idempotency-Key), other body -> 422', async () => {
      const body: Record<string, unknown> = flat({ transactionId: 'tx-idem' });
      const a = (await reserve(body)).json();
      const b = (await reserve(body)).json();
      assert.deepEqual(b, a);
      const { transactionId: _, ...noTx } = body;
      const c = await reserve(noTx, { 'idempotency-key': 'tx-idem' });
      assert.deepEqual(c.json(), a, 'the header is an alias');
      const d = await reserve({ ...body, fromNumber: nextCaller() });
      assert.equal(d.statusCode, 422);
      assert.equal(d.json().errors[0].errorCode, 'IDEMPOTENCY_MISMATCH');
      const e = await reserve(body, { 'idempotency-key': 'other' });
      assert.equal(e.statusCode, 400);
    });

    test('an empty transactionId or Idempotency-Key is no key: each such request gets its own lease', async () => {
      const caller = nextCaller();
      const a = await reserve(flat({ fromNumber: caller, transactionId: '' }));
      assert.equal(a.statusCode, 200, a.body);
      // Another body with an empty key: neither a replay nor a 422.
      const b = await reserve(flat({ transactionId: '' }), { 'idempotency-key': '' });
      assert.equal(b.statusCode, 200, b.body);
      assert.notEqual(b.json().handle.uid, a.json().handle.uid);
      const c = await reserve(flat({ context: { transactionId: '' } }));
      assert.equal(c.statusCode, 200, c.body);
      assert.notEqual(c.json().handle.uid, b.json().handle.uid);
    });

    test('idempotency keys are scoped by org', async () => {
      await h.store.upsertOrg({ ...(await h.store.getOrg('00Dxx0000008BBB'))!, features: { numberPool: true } }, clock.now());
      const res = await reserve(flat({ transactionId: 'tx-idem', scrt2Domain: 'bravo.my.example.com', toNumber: CHANNEL_B, callId: undefined }), {}, tokB);
      assert.equal(res.statusCode, 200, res.body);
    });

    test('racing retries of one transactionId yield one lease', async () => {
      const body = flat({ transactionId: 'tx-race' });
      const all = await Promise.all(Array.from({ length: 20 }, () => reserve(body)));
      const uids = new Set(all.map((r) => (assert.equal(r.statusCode, 200, r.body), r.json().handle.uid)));
      assert.equal(uids.size, 1);
    });

    test('after expiry the transactionId is 409 with the original handle', async () => {
      const body = flat({ transactionId: 'tx-expire' });
      const first = (await reserve(body)).json();
      clock.advance(60_000);
      const res = await reserve(body);
      assert.equal(res.statusCode, 409);
      assert.equal(res.json().errors[0].errorCode, 'LEASE_NOT_LIVE');
      assert.deepEqual(res.json().errors[0].handle, first.handle);
    });

    test('after consumption the transactionId is 409 with the original handle', async () => {
      const body = flat({ transactionId: 'tx-consume' });
      const first = (await reserve(body)).json();
      const resolved = await h.services.leases.resolve(first.handle.routableNumber, body.fromNumber as string);
      assert.equal(resolved.ok, true);
      const res = await reserve(body);
      assert.equal(res.statusCode, 409);
      assert.deepEqual(res.json().errors[0].handle, first.handle);
    });

    test('exhaustion: one caller holds every number -> 503 with Retry-After until the earliest release', async () => {
      const who = nextCaller();
      clock.advance(120_000); // earlier tests' leases are gone
      for (let i = 0; i < POOL.length; i++) {
        assert.equal((await reserve(flat({ fromNumber: who }))).statusCode, 200);
        clock.advance(1000);
      }
      const res = await reserve(flat({ fromNumber: who }));
      assert.equal(res.statusCode, 503);
      assert.equal(res.json().errors[0].errorCode, 'POOL_EXHAUSTED');
      // The first lease was reserved 5 s ago; it expires 60 s after that and its pair is held 10 s more.
      assert.equal(res.headers['retry-after'], String(60 + 10 - 5));
    });

    test('quota: an org at maxLiveLeases -> 429 with Retry-After until its earliest expiry', async () => {
      clock.advance(200_000);
      const org = (await h.store.getOrg(ORG_A))!;
      await h.store.upsertOrg({ ...org, quotas: { ...org.quotas, maxLiveLeases: 2 } }, clock.now());
      try {
        assert.equal((await reserve(flat())).statusCode, 200);
        clock.advance(7000);
        assert.equal((await reserve(flat())).statusCode, 200);
        const res = await reserve(flat());
        assert.equal(res.statusCode, 429);
        assert.equal(res.json().errors[0].errorCode, 'QUOTA_EXCEEDED');
        assert.equal(res.headers['retry-after'], String(60 - 7));
      } finally {
        await h.store.upsertOrg(org, clock.now());
      }
    });

    describe('validation: each refusal is precise and leaves no lease', () => {
      const cases: [string, () => Promise<{ statusCode: number; json(): any }>, number, string][] = [
        ['missing countryCode', () => reserve(flat({ countryCode: undefined })), 400, 'MISSING_FIELD'],
        ['country and countryCode differ', () => reserve(flat({ country: 'GB' })), 400, 'INVALID_FIELD'],
        ['unsupported country lists the supported', () => reserve(flat({ countryCode: 'FR' })), 400, 'UNSUPPORTED_COUNTRY'],
        ['malformed country', () => reserve(flat({ countryCode: 'U1' })), 400, 'INVALID_FIELD'],
        ['fromNumber not E.164', () => reserve(flat({ fromNumber: '004155551234' })), 400, 'INVALID_FIELD'],
        ['missing fromNumber', () => reserve(flat({ fromNumber: undefined })), 400, 'MISSING_FIELD'],
        ['toNumber not E.164', () => reserve(flat({ toNumber: '+1-415-555-0100' })), 400, 'INVALID_FIELD'],
        ['toNumber is no channel of the org', () => reserve(flat({ toNumber: '+14155550999' })), 404, 'CHANNEL_NOT_FOUND'],
        ["toNumber is another org's channel", () => reserve(flat({ toNumber: CHANNEL_B })), 404, 'CHANNEL_NOT_FOUND'],
        ['missing scrt2Domain', () => reserve(flat({ scrt2Domain: undefined })), 400, 'MISSING_FIELD'],
        ["scrt2Domain of another org", () => reserve(flat({ scrt2Domain: 'bravo.my.example.com' })), 400, 'INVALID_FIELD'],
        ['scrt2Domain not a domain', () => reserve(flat({ scrt2Domain: 'not a domain' })), 400, 'INVALID_FIELD'],
        ['callId malformed', () => reserve(flat({ callId: '0LQ123' })), 400, 'INVALID_FIELD'],
        ['callId unknown', () => reserve(flat({ callId: '0LQxx0000004ABcGAM' })), 404, 'VOICE_CALL_NOT_FOUND'],
        ['flat and context disagree', () => reserve(flat({ context: { toNumber: '+14155550101' } })), 400, 'INVALID_FIELD'],
        [
          'org without numberPool',
          async () => {
            const org = (await h.store.getOrg('00Dxx0000008BBB'))!;
            await h.store.upsertOrg({ ...org, features: { numberPool: false } }, clock.now());
            return reserve(flat({ scrt2Domain: 'bravo.my.example.com', toNumber: CHANNEL_B, callId: undefined }), {}, tokB);
          },
          403,
          'FEATURE_NOT_ENABLED',
        ],
        ['no token', () => h.app.inject({ method: 'POST', url: URL_, headers: { 'content-type': 'application/json' }, payload: JSON.stringify(flat()) }) as any, 401, 'INVALID_TOKEN'],
        ['malformed JSON', () => reserve('{"countryCode":'), 400, 'INVALID_REQUEST'],
        ['wrong type', () => reserve(flat({ fromNumber: 14155551234 })), 400, 'INVALID_FIELD'],
      ];
      for (const [name, run, status, code] of cases) {
        test(`${name} -> ${status} ${code}`, async () => {
          const before = (await h.services.leases.listLive()).total;
          const res = await run();
          assert.equal(res.statusCode, status, JSON.stringify(res.json()));
          assert.equal(res.json().errors[0].errorCode, code);
          if (code === 'UNSUPPORTED_COUNTRY') assert.deepEqual(res.json().errors[0].supportedCountries, ['US']);
          assert.equal((await h.services.leases.listLive()).total, before);
        });
      }
    });

    test('metrics count reservations by outcome', async () => {
      const m = (await h.app.inject('/metrics')).body;
      assert.match(m, /handoff_reservations_total\{outcome="reserved",country="US"\} \d+/);
      assert.match(m, /handoff_reservations_total\{outcome="POOL_EXHAUSTED",country=""\} 1/);
      assert.match(m, /handoff_reservation_duration_seconds_count \d+/);
    });
  });
}
