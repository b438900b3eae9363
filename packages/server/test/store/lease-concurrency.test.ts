import { test } from 'node:test';
import assert from 'node:assert/strict';
import { describeEachBackend } from '../support/backends.js';
import { assertLeaseInvariants, type ReservedHandle } from '../support/lease-invariants.js';
import { ManualClock } from '../../src/domain/clock.js';
import { HandoffError } from '../../src/domain/errors.js';
import { requestHash } from '../../src/domain/lease-policy.js';
import { KyselyLeaseStore } from '../../src/store/lease-store.js';
import type { KyselyStore } from '../../src/store/kysely-store.js';
import { LeaseService } from '../../src/services/lease-service.js';

const T0 = Date.UTC(2026, 0, 1);
const ORGS = ['00Dxx0000004CFG', '00Dxx0000009ZZZ'];

/** A small deterministic PRNG (mulberry32), so a failing run can be replayed. */
function prng(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

describeEachBackend('lease invariants under load', ({ store, backend }) => {
  test('400 concurrent reservations by 40 callers on 5 numbers, with consumption and time moving, never hold a pair twice', async () => {
    // On PostgreSQL, three store instances on one schema stand for three service instances.
    const extra: KyselyStore[] = backend().name === 'postgres' ? [await backend().open(), await backend().open()] : [];
    try {
      const clock = new ManualClock(T0);
      const services = [store(), ...extra].map((s) => new LeaseService(new KyselyLeaseStore(s), { clock, ttlSeconds: 20, cooldownSeconds: 5 }));
      const country = 'LD';
      const numbers = Array.from({ length: 5 }, (_, i) => `+1202555010${i}`);
      await store().addPoolNumbers(country, numbers, T0);
      const callers = Array.from({ length: 40 }, (_, i) => `+1650555${String(1000 + i)}`);
      const random = prng(backend().name === 'postgres' ? 7 : 3);
      const pick = <T>(xs: T[]): T => xs[Math.floor(random() * xs.length)]!;

      const successes: ReservedHandle[] = [];
      const replays: ReservedHandle[] = [];
      const failures = new Map<string, number>();
      let resolved = 0;
      let k = 0;
      for (let wave = 0; wave < 10; wave++) {
        const ops: Promise<unknown>[] = [];
        for (let i = 0; i < 40; i++, k++) {
          const svc = services[k % services.length]!;
          const fromNumber = pick(callers);
          const body = { country, fromNumber, toNumber: '+14155550100' };
          // A quarter carry a transactionId; some of those are sent twice, racing.
          const transactionId = i % 4 === 0 ? `w${wave}-${i}` : null;
          const reserve = () =>
            svc
              .reserve({ orgId: pick(ORGS), ...body, callId: null, transactionId, provider: null, requestHash: requestHash({ ...body, transactionId }), maxLiveLeases: null })
              .then(
                (r) => (r.replayed ? replays : successes).push({ uid: r.lease.uid, routableNumber: r.lease.routableNumber, fromNumber }),
                (e: unknown) => {
                  const code = e instanceof HandoffError ? e.code : String(e);
                  failures.set(code, (failures.get(code) ?? 0) + 1);
                },
              );
          ops.push(reserve());
          if (transactionId !== null && i % 8 === 0) ops.push(reserve());
          if (i % 3 === 0) ops.push(pick(services).resolve(pick(numbers), pick(callers)).then((r) => (resolved += r.ok ? 1 : 0)));
          // The clock also moves while operations are in flight.
          if (i % 10 === 9) ops.push(Promise.resolve().then(() => clock.advance(Math.floor(random() * 2000))));
        }
        await Promise.all(ops);
        clock.advance(Math.floor(random() * 6000));
      }

      assert.deepEqual([...failures.keys()].filter((c) => c !== 'POOL_EXHAUSTED' && c !== 'LEASE_NOT_LIVE'), [], 'only exhaustion or a not-live replay may fail');
      assert.ok(successes.length > 100, `only ${successes.length} successes`);
      assert.ok(resolved > 10, `only ${resolved} resolutions`);
      const rows = await assertLeaseInvariants(store(), country, successes);
      const created = new Set(successes.map((s) => s.uid));
      assert.ok(replays.every((r) => created.has(r.uid)), 'a replay returns a lease some request created');
      assert.ok(rows.some((r) => r.consumed_at !== null));
      // Sharing happened: some number had several live leases at once.
      const overlapping = rows.some((a) => rows.some((b) => a !== b && a.routable_number === b.routable_number && b.created_at < a.expires_at && a.created_at < b.expires_at));
      assert.ok(overlapping, 'numbers are shared between callers');
    } finally {
      await Promise.all(extra.map((s) => s.close()));
    }
  });

  test('racing retries of one transactionId through every instance yield one lease', async () => {
    const extra: KyselyStore[] = backend().name === 'postgres' ? [await backend().open(), await backend().open()] : [];
    try {
      const clock = new ManualClock(T0);
      const services = [store(), ...extra].map((s) => new LeaseService(new KyselyLeaseStore(s), { clock }));
      const country = 'LR';
      await store().addPoolNumbers(country, ['+12025550200', '+12025550201'], T0);
      const body = { country, fromNumber: '+16505552000', toNumber: '+14155550100', transactionId: 'same-txn' };
      const results = await Promise.all(
        Array.from({ length: 60 }, (_, i) =>
          services[i % services.length]!.reserve({ orgId: ORGS[0]!, ...body, callId: null, provider: null, requestHash: requestHash(body), maxLiveLeases: null }),
        ),
      );
      assert.equal(new Set(results.map((r) => r.lease.uid)).size, 1);
      assert.equal(results.filter((r) => !r.replayed).length, 1);
      const first = results.find((r) => !r.replayed)!;
      await assertLeaseInvariants(store(), country, [{ uid: first.lease.uid, routableNumber: first.lease.routableNumber, fromNumber: body.fromNumber }]);
    } finally {
      await Promise.all(extra.map((s) => s.close()));
    }
  });
});
