import { test } from 'node:test';
import assert from 'node:assert/strict';
import { IndexTrust, LeaseAllocator } from '../../src/store/lease-allocator.js';
import { requestHash } from '../../src/domain/lease-policy.js';
import { reservationHash } from '../../src/services/reservations.js';

const T0 = Date.UTC(2026, 0, 1);
const N = ['+12025550100', '+12025550101', '+12025550102'] as const;

function allocator(live: { number: string; expiresAt: number }[] = [], lastLeasedAt: number[] = [0, 0, 0], cap = 8): LeaseAllocator {
  const a = new LeaseAllocator(cap);
  a.load('US', { numbers: N.map((number, i) => ({ number, lastLeasedAt: lastLeasedAt[i]! })), live }, T0);
  return a;
}

test('an unloaded country, or an instant before one already answered, is not answered', () => {
  const a = allocator();
  assert.equal(a.pick('GB', T0, []), undefined);
  assert.equal(a.pick('US', T0 + 10, []), N[0]);
  assert.equal(a.pick('US', T0 + 9, []), undefined);
  a.clear();
  assert.equal(a.has('US'), false);
  assert.equal(a.pick('US', T0 + 10, []), undefined);
});

test('order: fewest live leases, then least recently used, then the number', () => {
  const a = allocator([], [0, 0, 0]);
  assert.equal(a.pick('US', T0, []), N[0]);
  a.leased(N[0], T0, T0 + 60_000);
  assert.equal(a.pick('US', T0, []), N[1]);
  a.leased(N[1], T0 + 1, T0 + 60_001);
  a.leased(N[2], T0 + 2, T0 + 60_002);
  // One each: least recently used first.
  assert.equal(a.pick('US', T0 + 3, []), N[0]);
  a.leased(N[0], T0 + 3, T0 + 60_003);
  assert.equal(a.pick('US', T0 + 4, []), N[1]);
  // Consumption lowers the count below recency.
  a.consumed(N[2], T0 + 60_002);
  assert.equal(a.pick('US', T0 + 4, []), N[2]);
});

test('live leases are loaded, expire by the clock and are capped in the comparison', () => {
  const a = allocator(
    [
      { number: N[0], expiresAt: T0 + 10 },
      { number: N[0], expiresAt: T0 + 20 },
      { number: N[1], expiresAt: T0 + 30 },
      { number: N[2], expiresAt: T0 }, // already expired at load
    ],
    [5, 1, 9],
  );
  assert.equal(a.pick('US', T0, []), N[2]);
  a.leased(N[2], T0, T0 + 100);
  a.leased(N[2], T0, T0 + 100);
  // N0: 2, N1: 1, N2: 2 -> N1.
  assert.equal(a.pick('US', T0 + 5, []), N[1]);
  // At +10 N0 drops to 1 (tie with N1 at 1; N1 less recently used: 1 < 5)... then at +20 to 0.
  assert.equal(a.pick('US', T0 + 10, []), N[1]);
  assert.equal(a.pick('US', T0 + 20, []), N[0]);
  // A consumption after the index saw the expiry takes nothing back.
  a.consumed(N[0], T0 + 10);
  assert.equal(a.pick('US', T0 + 20, []), N[0]);

  const capped = allocator([], [3, 2, 1], 2);
  for (let i = 0; i < 5; i++) capped.leased(N[0], 0, T0 + 1000);
  for (let i = 0; i < 2; i++) capped.leased(N[1], 0, T0 + 1000);
  for (let i = 0; i < 3; i++) capped.leased(N[2], 0, T0 + 1000);
  // All at the cap of 2: recency decides (N2 least recently used, 1 < 2 < 3).
  assert.equal(capped.pick('US', T0, []), N[2]);
});

test('excluded numbers are skipped and stay in the index; removed ones leave it', () => {
  const a = allocator();
  assert.equal(a.pick('US', T0, [N[0]]), N[1]);
  assert.equal(a.pick('US', T0, [N[0], N[1]]), N[2]);
  assert.equal(a.pick('US', T0, [...N]), null);
  assert.equal(a.pick('US', T0, []), N[0]);
  a.remove(N[0]);
  assert.equal(a.pick('US', T0, []), N[1]);
  a.leased(N[0], T0, T0 + 10); // unknown now: ignored
  assert.equal(a.pick('US', T0, [N[1], N[2]]), null);
});

test('leases with different lifetimes on one number expire in expiry order', () => {
  const a = allocator([], [0, 1, 2]);
  a.leased(N[0], T0, T0 + 180_000);
  a.leased(N[0], T0, T0 + 10_000);
  a.leased(N[1], T0, T0 + 180_000);
  a.leased(N[2], T0, T0 + 180_000);
  a.leased(N[2], T0, T0 + 180_000);
  // N0: 2, N1: 1, N2: 2.
  assert.equal(a.pick('US', T0 + 1, []), N[1]);
  a.leased(N[1], T0 + 1, T0 + 180_001);
  // At +10 s N0's short lease has ended: N0 1, N1 2, N2 2.
  assert.equal(a.pick('US', T0 + 10_000, []), N[0]);
});

test('a loaded pool answers exactly as a model of the allocation order, through leases, consumptions and expiry', () => {
  // Deterministic pseudo-random walk (LCG), so a failure reproduces.
  let seed = 42;
  const rnd = (n: number) => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) % n);
  const cap = 3;
  const numbers = Array.from({ length: 300 }, (_, i) => `+1202556${String(i).padStart(4, '0')}`);
  const model = new Map(numbers.map((n) => [n, { last: rnd(50), expiries: [] as number[] }]));
  const live: { number: string; expiresAt: number }[] = [];
  for (let i = 0; i < 200; i++) {
    const n = numbers[rnd(numbers.length)]!;
    const expiresAt = T0 - 20 + rnd(400);
    live.push({ number: n, expiresAt });
    model.get(n)!.expiries.push(expiresAt);
  }
  const a = new LeaseAllocator(cap);
  a.load('US', { numbers: numbers.map((n) => ({ number: n, lastLeasedAt: model.get(n)!.last })), live }, T0);
  const best = (now: number) => {
    let out: string | null = null;
    let key: [number, number, string] | null = null;
    for (const [n, m] of model) {
      const k: [number, number, string] = [Math.min(m.expiries.filter((e) => e > now).length, cap), m.last, n];
      if (!key || k[0] < key[0] || (k[0] === key[0] && (k[1] < key[1] || (k[1] === key[1] && k[2] < key[2])))) [out, key] = [n, k];
    }
    return out;
  };
  let now = T0;
  for (let step = 0; step < 3000; step++) {
    now += rnd(5);
    const n = a.pick('US', now, []);
    assert.equal(n, best(now), `step ${step}`);
    if (rnd(4) === 0) {
      // Consume a live lease of a random number, as the resolver would.
      const m = numbers[rnd(numbers.length)]!;
      const e = model.get(m)!.expiries.find((x) => x > now);
      if (e !== undefined) {
        a.consumed(m, e);
        model.get(m)!.expiries.splice(model.get(m)!.expiries.indexOf(e), 1);
      }
    } else {
      const expiresAt = now + 1 + rnd(600);
      a.leased(n!, now, expiresAt);
      model.get(n!)!.last = now;
      model.get(n!)!.expiries.push(expiresAt);
    }
  }
});

test('a skipped country is known but never answered, and leases on it are ignored until clear()', () => {
  const a = allocator();
  a.skip('US');
  assert.equal(a.has('US'), true);
  assert.equal(a.pick('US', T0 + 1, []), undefined);
  a.leased(N[0], T0 + 1, T0 + 60_000);
  a.consumed(N[0], T0 + 60_000);
  a.remove(N[1]);
  assert.equal(a.pick('US', T0 + 2, []), undefined);
  a.clear();
  assert.equal(a.has('US'), false);
  a.load('US', { numbers: N.map((number) => ({ number, lastLeasedAt: 0 })), live: [] }, T0 + 3);
  assert.equal(a.pick('US', T0 + 3, []), N[0]);
});

test('IndexTrust: trusted at first; after a foreign commit, once quiet for the base period', () => {
  const t = new IndexTrust(1000, 60_000);
  assert.equal(t.trusted(T0), true);
  t.foreignCommit(T0 + 70_000); // trusted for over a minute: the wait stays at the base
  assert.equal(t.trusted(T0 + 70_999), false);
  assert.equal(t.trusted(T0 + 71_000), true);
  // Commits closer together than the wait keep it untrusted, and do not lengthen the wait.
  t.foreignCommit(T0 + 200_000);
  t.foreignCommit(T0 + 200_500);
  t.foreignCommit(T0 + 201_000);
  assert.equal(t.trusted(T0 + 201_999), false);
  assert.equal(t.trusted(T0 + 202_000), true);
});

test('IndexTrust: a writer committing every few seconds causes a few reloads, not one per commit; a minute of trust resets the wait', () => {
  /** Reloads in 10 minutes of a reservation every 100 ms while another writer commits every `period` ms. */
  const reloads = (t: IndexTrust, period: number) => {
    let n = 0;
    let was = true;
    for (let now = T0 + 100; now <= T0 + 600_000; now += 100) {
      if (now % period === 0) t.foreignCommit(now);
      const ok = t.trusted(now);
      if (ok && !was) n++;
      was = ok;
    }
    return n;
  };
  // A fixed one-second wait (the cap equal to the base) reloads after almost every commit.
  assert.ok(reloads(new IndexTrust(1000, 1000), 1100) >= 500);
  assert.ok(reloads(new IndexTrust(1000, 1000), 5000) >= 110);
  assert.ok(reloads(new IndexTrust(1000, 60_000), 1100) <= 1);
  assert.ok(reloads(new IndexTrust(1000, 60_000), 5000) <= 4);
  const t = new IndexTrust(1000, 60_000);
  reloads(t, 5000);
  // The writer stops: trusted again after the (grown) wait; after a minute of trust, a new commit
  // makes it wait the base period only.
  assert.equal(t.trusted(T0 + 700_000), true);
  t.foreignCommit(T0 + 760_000);
  assert.equal(t.trusted(T0 + 760_999), false);
  assert.equal(t.trusted(T0 + 761_000), true);
});

test('reservationHash is requestHash of the semantic reservation', () => {
  const cases: [string, string, string, string, string | null, string | null][] = [
    ['US', '+14155551234', '+14155550100', 'acme.my.example.com', null, null],
    ['GB', '+442071234567', '+14155550100', 'acme.my.example.com', '0LQxx0000001AAA', null],
    ['US', '+14155551234', '+14155550100', 'x.example.com:8443', '0LQxx0000001AAA', '+14155559999'],
  ];
  for (const [country, fromNumber, toNumber, scrt2Domain, callId, originalFromNumber] of cases) {
    assert.equal(
      reservationHash(country, fromNumber, toNumber, scrt2Domain, callId, originalFromNumber),
      requestHash({ country, fromNumber, toNumber, scrt2Domain, callId, originalFromNumber }),
    );
  }
});
