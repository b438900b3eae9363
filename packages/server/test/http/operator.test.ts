import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { BACKENDS } from '../support/backends.js';
import { CHANNEL_A, makeHarness, OPERATOR_TOKEN, type Harness } from '../support/harness.js';
import { ManualClock } from '../../src/domain/clock.js';

for (const backend of BACKENDS) {
  describe(`operator endpoints [${backend}]`, () => {
    const clock = new ManualClock(Date.UTC(2026, 10, 22, 12, 0, 0));
    let h: Harness;
    let tokA: string;
    let n = 0;
    const caller = () => `+4477009${String(++n).padStart(5, '0')}`;

    before(async () => {
      h = await makeHarness(backend, { clock, services: { leaseTtlSeconds: 30, leaseCooldownSeconds: 5 } });
      tokA = await h.token('a', { ttlSeconds: 86400 });
    });
    after(() => h.close());

    const op = (method: 'GET' | 'POST' | 'DELETE', url: string, payload?: unknown, token = OPERATOR_TOKEN) =>
      h.app.inject({ method, url, headers: { authorization: `Bearer ${token}`, ...(payload ? { 'content-type': 'application/json' } : {}) }, ...(payload ? { payload: JSON.stringify(payload) } : {}) });
    const reserve = async (from: string) => {
      const res = await h.app.inject({
        method: 'POST',
        url: '/telephony/v1/voiceCalls/reserveRoutableNumber',
        headers: { authorization: `Bearer ${tokA}`, 'content-type': 'application/json' },
        payload: { countryCode: 'US', fromNumber: from, scrt2Domain: 'acme.my.example.com', toNumber: CHANNEL_A, transactionId: `t-${from}` },
      });
      assert.equal(res.statusCode, 200, res.body);
      return res.json().handle as { routableNumber: string; uid: string; expiresAt: string };
    };
    const resolve = (calledNumber: string, callerNumber: string, token?: string) => op('POST', '/telephony/v1/routableNumbers/resolve', { calledNumber, callerNumber }, token);

    describe('resolver', () => {
      test('the first matching call consumes the lease and gets its context; the second gets 404 consumed', async () => {
        const from = caller();
        const handle = await reserve(from);
        const r1 = await resolve(handle.routableNumber, `tel:${from}`);
        assert.equal(r1.statusCode, 200, r1.body);
        assert.equal(r1.json().lease.uid, handle.uid);
        assert.equal(r1.json().lease.orgId, '00Dxx0000004CFGEA2');
        assert.equal(r1.json().lease.transactionId, `t-${from}`);
        assert.equal(r1.json().lease.toNumber, CHANNEL_A);
        const r2 = await resolve(handle.routableNumber, from);
        assert.equal(r2.statusCode, 404);
        assert.equal(r2.json().errors[0].errorCode, 'LEASE_NOT_FOUND');
        assert.equal(r2.json().errors[0].resolution, 'consumed');
      });

      test('another caller on the same number does not match', async () => {
        const handle = await reserve(caller());
        const r = await resolve(handle.routableNumber, caller());
        assert.equal(r.statusCode, 404);
        assert.equal(r.json().errors[0].resolution, 'no_lease');
      });

      test('a lease past expiresAt does not resolve, with no sweeper having run', async () => {
        const from = caller();
        const handle = await reserve(from);
        clock.advance(30_000);
        const r = await resolve(handle.routableNumber, from);
        assert.equal(r.statusCode, 404);
        assert.equal(r.json().errors[0].resolution, 'expired');
      });

      test('concurrent resolutions: exactly one winner', async () => {
        const from = caller();
        const handle = await reserve(from);
        const all = await Promise.all(Array.from({ length: 10 }, () => resolve(handle.routableNumber, from)));
        assert.equal(all.filter((r) => r.statusCode === 200).length, 1);
      });

      test('bad input is 400; partner JWTs and missing or wrong secrets are 401', async () => {
        assert.equal((await resolve('12125550100', caller())).statusCode, 400);
        assert.equal((await op('POST', '/telephony/v1/routableNumbers/resolve', { calledNumber: '+12125550100' })).statusCode, 400);
        assert.equal((await resolve('+12125550100', caller(), tokA)).statusCode, 401);
        assert.equal((await resolve('+12125550100', caller(), 'wrong')).statusCode, 401);
        const none = await h.app.inject({ method: 'POST', url: '/telephony/v1/routableNumbers/resolve', headers: { 'content-type': 'application/json' }, payload: '{}' });
        assert.equal(none.statusCode, 401);
      });

      test('the operator secret does not open partner endpoints', async () => {
        const r = await h.app.inject({ method: 'GET', url: '/telephony/v1/voiceCalls/x', headers: { authorization: `Bearer ${OPERATOR_TOKEN}` } });
        assert.equal(r.statusCode, 401);
      });
    });

    describe('pool administration', () => {
      test('add numbers one by one, as a range and as CSV; repeats are not added twice', async () => {
        const r = await op('POST', '/admin/v1/pools/gb/numbers', {
          numbers: ['+442079460900'],
          ranges: [{ from: '+442079460901', to: '+442079460903' }],
          csv: 'number,label\n+442079460904,desk\n\n# comment\n+442079460900\n',
        });
        assert.equal(r.statusCode, 200, r.body);
        assert.deepEqual(r.json(), { added: 5, given: 6 });
        const pools = (await op('GET', '/admin/v1/pools')).json().pools;
        assert.deepEqual(pools.find((p: { country: string }) => p.country === 'GB'), { country: 'GB', numbers: 5, active: 5, draining: 0, liveLeases: 0, busyNumbers: 0, utilisation: 0 });
      });

      test('bad additions are refused whole', async () => {
        const before = (await op('GET', '/admin/v1/pools')).json();
        const cases: [unknown, number, string][] = [
          [{ numbers: ['+442079460950', '02079460951'] }, 400, 'INVALID_FIELD'],
          [{ csv: '+442079460950\nnot-a-number\n' }, 400, 'INVALID_FIELD'],
          [{ ranges: [{ from: '+442079460999', to: '+442079460950' }] }, 400, 'INVALID_FIELD'],
          [{}, 400, 'INVALID_REQUEST'],
          [{ numbers: [CHANNEL_A] }, 409, 'CONFLICT'],
        ];
        for (const [payload, status, code] of cases) {
          const r = await op('POST', '/admin/v1/pools/GB/numbers', payload);
          assert.equal(r.statusCode, status, JSON.stringify(payload));
          assert.equal(r.json().errors[0].errorCode, code);
        }
        assert.equal((await op('POST', '/admin/v1/pools/GBR/numbers', { numbers: ['+442079460950'] })).statusCode, 400);
        assert.deepEqual((await op('GET', '/admin/v1/pools')).json(), before);
      });

      test('a range larger than a call may spread is added whole, and reservations go on over it', async () => {
        const r = await op('POST', '/admin/v1/pools/CA/numbers', { ranges: [{ from: '+16135550000', to: '+16135699999' }] });
        assert.equal(r.statusCode, 200, r.body);
        assert.deepEqual(r.json(), { added: 150_000, given: 150_000 });
        const ca = (await op('GET', '/admin/v1/pools')).json().pools.find((p: { country: string }) => p.country === 'CA');
        assert.equal(ca.active, 150_000);
        const res = await h.app.inject({
          method: 'POST',
          url: '/telephony/v1/voiceCalls/reserveRoutableNumber',
          headers: { authorization: `Bearer ${tokA}`, 'content-type': 'application/json' },
          payload: { countryCode: 'CA', fromNumber: caller(), scrt2Domain: 'acme.my.example.com', toNumber: CHANNEL_A },
        });
        assert.equal(res.statusCode, 200, res.body);
        // Larger than the in-memory index takes: the allocation query picks the least recently used.
        assert.equal(res.json().handle.routableNumber, '+16135550000');
      });

      test('a request over the total is refused before its ranges are expanded; a channel number anywhere refuses it', async () => {
        const before = (await op('GET', '/admin/v1/pools')).json();
        // Three ranges of 999,999 numbers: each allowed alone, 2,999,997 together.
        const huge = [
          { from: '+12000000000', to: '+12000999998' },
          { from: '+13000000000', to: '+13000999998' },
          { from: '+14000000000', to: '+14000999998' },
        ];
        const over = await op('POST', '/admin/v1/pools/MX/numbers', { ranges: huge });
        assert.equal(over.statusCode, 400, over.body);
        assert.deepEqual(over.json().errors[0], { errorCode: 'INVALID_REQUEST', message: 'At most 1000000 numbers at once' });
        const mixed = await op('POST', '/admin/v1/pools/MX/numbers', { numbers: ['+525555550000'], ranges: [{ from: '+525500000000', to: '+525500999999' }] });
        assert.equal(mixed.statusCode, 400, 'the numbers count towards the total');
        // CHANNEL_A (+14155550100) is the 20,101st number of this range: the whole list is checked.
        const clash = await op('POST', '/admin/v1/pools/US/numbers', { ranges: [{ from: '+14155530000', to: '+14155559999' }] });
        assert.equal(clash.statusCode, 409, clash.body);
        assert.match(clash.json().errors[0].message, /^\+14155550100 is the address of channel Acme_AI/);
        assert.deepEqual((await op('GET', '/admin/v1/pools')).json(), before);
      });

      test('drain: no new leases on the number; live ones finish; remove only when drained and idle', async () => {
        clock.advance(60_000);
        const from = caller();
        const handle = await reserve(from);
        const number = handle.routableNumber;
        assert.equal((await op('DELETE', `/admin/v1/pool-numbers/${encodeURIComponent(number)}`)).statusCode, 409, 'active numbers are not removed');
        const d = await op('POST', `/admin/v1/pool-numbers/${encodeURIComponent(number)}/drain`);
        assert.equal(d.json().number.state, 'draining');
        for (let i = 0; i < 12; i++) assert.notEqual((await reserve(caller())).routableNumber, number);
        const busy = await op('DELETE', `/admin/v1/pool-numbers/${encodeURIComponent(number)}`);
        assert.equal(busy.statusCode, 409, 'a live lease keeps it');
        assert.equal((await resolve(number, from)).statusCode, 200, 'the live lease still resolves');
        assert.equal((await op('DELETE', `/admin/v1/pool-numbers/${encodeURIComponent(number)}`)).statusCode, 200);
        assert.equal((await op('POST', `/admin/v1/pool-numbers/${encodeURIComponent(number)}/drain`)).statusCode, 404);
        const us = (await op('GET', '/admin/v1/pools')).json().pools.find((p: { country: string }) => p.country === 'US');
        assert.equal(us.numbers, 4);
        // Put it back for the next tests.
        await op('POST', '/admin/v1/pools/US/numbers', { numbers: [number] });
      });

      test('live leases listed with time left; metrics show pool gauges', async () => {
        clock.advance(60_000);
        const handle = await reserve(caller());
        clock.advance(10_000);
        const leases = (await op('GET', '/admin/v1/leases')).json().leases;
        const mine = leases.find((l: { uid: string }) => l.uid === handle.uid);
        assert.equal(mine.secondsLeft, 20);
        assert.equal(mine.country, 'US');
        const metrics = (await h.app.inject('/metrics')).body;
        assert.match(metrics, /handoff_leases_live\{country="US"\} [1-9]/);
        assert.match(metrics, /handoff_pool_utilisation_ratio\{country="US"\} 0\.\d+/);
        assert.match(metrics, /handoff_pool_numbers\{country="GB",state="active"\} 5/);
        assert.match(metrics, /handoff_resolutions_total\{path="http",outcome="consumed"\} \d+/);
      });

      test('leases come a page at a time: limit, total, next; a bad page is 400', async () => {
        await reserve(caller());
        await reserve(caller());
        const all = (await op('GET', '/admin/v1/leases')).json();
        assert.ok(all.total >= 2 && all.total === all.leases.length && all.next === null, JSON.stringify(all).slice(0, 200));
        const first = (await op('GET', '/admin/v1/leases?limit=1')).json();
        assert.equal(first.leases.length, 1);
        assert.equal(first.total, all.total);
        assert.equal(typeof first.next, 'string');
        const second = (await op('GET', `/admin/v1/leases?limit=1&after=${encodeURIComponent(first.next)}`)).json();
        assert.deepEqual([first.leases[0].uid, second.leases[0].uid], [all.leases[0].uid, all.leases[1].uid]);
        for (const q of ['limit=0', 'limit=10001', 'limit=x', 'after=x', `after=${encodeURIComponent('1.lease:did:+1:2:zz')}`]) {
          const r = await op('GET', `/admin/v1/leases?${q}`);
          assert.equal(r.statusCode, 400, q);
          assert.equal(r.json().errors[0].errorCode, 'INVALID_FIELD', q);
        }
      });

      test('admin endpoints need the operator secret', async () => {
        for (const [m, u] of [['GET', '/admin/v1/pools'], ['GET', '/admin/v1/leases'], ['POST', '/admin/v1/pool-numbers/%2B12125550100/drain']] as const) {
          assert.equal((await op(m, u, undefined, tokA)).statusCode, 401);
        }
      });
    });
  });
}
