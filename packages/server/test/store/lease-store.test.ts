import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { describeEachBackend } from '../support/backends.js';
import { ManualClock, systemClock, type Clock } from '../../src/domain/clock.js';
import { HandoffError } from '../../src/domain/errors.js';
import { isLeaseUid, requestHash } from '../../src/domain/lease-policy.js';
import { CompiledQuery } from 'kysely';
import { KyselyLeaseStore } from '../../src/store/lease-store.js';
import type { KyselyStore } from '../../src/store/kysely-store.js';
import { LeaseService, type LeaseServiceOptions, type ReserveInput } from '../../src/services/lease-service.js';

const ORG = '00Dxx0000004CFG';
const OTHER_ORG = '00Dxx0000009ZZZ';
/** Only the quota test reserves for this org, so no other test's leases count against it. */
const QUOTA_ORG = '00Dxx0000005QQQ';
const T0 = Date.UTC(2026, 0, 1);
const TTL = 180_000;
const COOLDOWN = 10_000;

let seq = 0;
/** A fresh pool country per test, so tests sharing one database never see each other's numbers. */
function country(): string {
  seq += 1;
  return `P${seq}`;
}

function num(prefix: number, i: number): string {
  return `+1${prefix}${String(i).padStart(6, '0')}`;
}

function input(c: string, fromNumber: string, overrides: Partial<ReserveInput> = {}): ReserveInput {
  const base = { country: c, fromNumber, toNumber: '+14155550100', callId: null, transactionId: null };
  return {
    orgId: ORG,
    ...base,
    provider: 'Genesys',
    requestHash: requestHash({ ...base, ...overrides }),
    maxLiveLeases: null,
    ...overrides,
  };
}

async function rejectsWith(p: Promise<unknown>, code: string): Promise<HandoffError> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof HandoffError, `expected a HandoffError, got ${String(e)}`);
    assert.equal(e.code, code);
    return e;
  }
  assert.fail(`expected ${code}`);
}

async function ensureOrg(store: KyselyStore, id: string): Promise<void> {
  await store.upsertOrg(
    { id, name: id, domain: `${id.toLowerCase()}.my.example.com`, features: { numberPool: true }, quotas: { maxLiveLeases: null, requestsPerSecond: null } },
    T0,
  );
}

describeEachBackend('lease service', ({ store, backend }) => {
  function service(clock: Clock, options: LeaseServiceOptions = {}): LeaseService {
    return new LeaseService(new KyselyLeaseStore(store()), { clock, ...options });
  }

  async function pool(size: number, prefix = 200 + seq): Promise<{ c: string; numbers: string[] }> {
    const c = country();
    const numbers = Array.from({ length: size }, (_, i) => num(prefix, i));
    await store().addPoolNumbers(c, numbers, T0);
    return { c, numbers };
  }

  test('a reservation returns a live lease with an opaque uid and expiresAt = now + TTL', async () => {
    const clock = new ManualClock(T0);
    const { c, numbers } = await pool(1);
    const { replayed, lease } = await service(clock).reserve(input(c, '+14155551001', { callId: '0LQxx0000001AAA', transactionId: 't-1' }));
    assert.equal(replayed, false);
    assert.equal(lease.routableNumber, numbers[0]);
    assert.ok(isLeaseUid(lease.uid), lease.uid);
    assert.ok(lease.uid.startsWith(`lease:did:${numbers[0]}:${T0 / 1000}:`));
    assert.equal(lease.createdAt, T0);
    assert.equal(lease.expiresAt, T0 + TTL);
    assert.deepEqual(
      { orgId: lease.orgId, country: lease.country, fromNumber: lease.fromNumber, toNumber: lease.toNumber, callId: lease.callId, transactionId: lease.transactionId, provider: lease.provider, consumedAt: lease.consumedAt },
      { orgId: ORG, country: c, fromNumber: '+14155551001', toNumber: '+14155550100', callId: '0LQxx0000001AAA', transactionId: 't-1', provider: 'Genesys', consumedAt: null },
    );
    assert.deepEqual((await service(clock).listLive({ orgId: ORG })).leases.filter((l) => l.country === c), [lease]);
  });

  test('TTL is configurable, never above 180 s', async () => {
    const clock = new ManualClock(T0);
    const { c } = await pool(1);
    const { lease } = await service(clock, { ttlSeconds: 30 }).reserve(input(c, '+14155551002'));
    assert.equal(lease.expiresAt, T0 + 30_000);
    assert.throws(() => service(clock, { ttlSeconds: 181 }), RangeError);
    assert.equal(service(clock, { ttlSeconds: 0 }).ttlMs, 1000);
  });

  test('idempotent replay: same transactionId and body while live -> the same lease, nothing new stored', async () => {
    const clock = new ManualClock(T0);
    const { c } = await pool(3);
    const svc = service(clock);
    const first = await svc.reserve(input(c, '+14155551003', { transactionId: 'replay-1' }));
    clock.advance(5_000);
    const again = await svc.reserve(input(c, '+14155551003', { transactionId: 'replay-1' }));
    assert.equal(again.replayed, true);
    assert.deepEqual(again.lease, first.lease);
    assert.equal((await svc.listLive({ orgId: ORG })).leases.filter((l) => l.country === c).length, 1);
  });

  test('the same transactionId with a different body is 422', async () => {
    const clock = new ManualClock(T0);
    const { c } = await pool(3);
    const svc = service(clock);
    await svc.reserve(input(c, '+14155551004', { transactionId: 'mismatch-1' }));
    const altered = { ...input(c, '+14155551004', { transactionId: 'mismatch-1' }), requestHash: requestHash({ country: c, fromNumber: '+14155551004', toNumber: '+14155550199', transactionId: 'mismatch-1' }) };
    const e = await rejectsWith(svc.reserve(altered), 'IDEMPOTENCY_MISMATCH');
    assert.equal(e.httpStatus, 422);
  });

  test('a retry after consumption is 409 carrying the original handle', async () => {
    const clock = new ManualClock(T0);
    const { c } = await pool(2);
    const svc = service(clock);
    const { lease } = await svc.reserve(input(c, '+14155551005', { transactionId: 'consumed-1' }));
    assert.equal((await svc.resolve(lease.routableNumber, '+14155551005')).ok, true);
    const e = await rejectsWith(svc.reserve(input(c, '+14155551005', { transactionId: 'consumed-1' })), 'LEASE_NOT_LIVE');
    assert.equal(e.httpStatus, 409);
    assert.deepEqual(e.details, { handle: { routableNumber: lease.routableNumber, uid: lease.uid, expiresAt: new Date(T0 + TTL).toISOString() } });
  });

  test('a retry after expiry is 409 carrying the original handle, even once the lease row is swept', async () => {
    const clock = new ManualClock(T0);
    const { c } = await pool(2);
    const svc = service(clock);
    const { lease } = await svc.reserve(input(c, '+14155551006', { transactionId: 'expired-1' }));
    clock.set(lease.expiresAt);
    const handle = { routableNumber: lease.routableNumber, uid: lease.uid, expiresAt: new Date(lease.expiresAt).toISOString() };
    assert.deepEqual((await rejectsWith(svc.reserve(input(c, '+14155551006', { transactionId: 'expired-1' })), 'LEASE_NOT_LIVE')).details, { handle });
    clock.advance(2 * 3600_000);
    assert.ok((await svc.sweep()).leases >= 1);
    assert.deepEqual((await rejectsWith(svc.reserve(input(c, '+14155551006', { transactionId: 'expired-1' })), 'LEASE_NOT_LIVE')).details, { handle });
  });

  test('idempotency keys are scoped by org and forgotten after 24 h', async () => {
    const clock = new ManualClock(T0);
    const { c } = await pool(3);
    const svc = service(clock);
    const a = await svc.reserve(input(c, '+14155551007', { transactionId: 'scoped-1' }));
    const b = await svc.reserve({ ...input(c, '+14155551008', { transactionId: 'scoped-1' }), orgId: OTHER_ORG });
    assert.equal(b.replayed, false);
    assert.notEqual(a.lease.uid, b.lease.uid);
    clock.advance(24 * 3600_000 - 1);
    await rejectsWith(svc.reserve(input(c, '+14155551007', { transactionId: 'scoped-1' })), 'LEASE_NOT_LIVE');
    clock.advance(1);
    const reused = await svc.reserve(input(c, '+14155559999', { transactionId: 'scoped-1' }));
    assert.equal(reused.replayed, false, 'a key older than 24 h counts as absent');
  });

  test('without a transactionId there is no idempotency: every call is a new lease', async () => {
    const clock = new ManualClock(T0);
    const { c } = await pool(2);
    const svc = service(clock);
    const a = await svc.reserve(input(c, '+14155551009'));
    const b = await svc.reserve(input(c, '+14155551009'));
    assert.notEqual(a.lease.uid, b.lease.uid);
    assert.notEqual(a.lease.routableNumber, b.lease.routableNumber, 'the pair is held, so the second lease takes another number');
  });

  test('50 racing retries of one transactionId make one lease, and all carry its uid', async () => {
    const clock = new ManualClock(T0);
    const { c } = await pool(5);
    const svc = service(clock);
    const results = await Promise.all(Array.from({ length: 50 }, () => svc.reserve(input(c, '+14155551010', { transactionId: 'race-1' }))));
    const uids = new Set(results.map((r) => r.lease.uid));
    assert.equal(uids.size, 1);
    assert.equal(results.filter((r) => !r.replayed).length, 1);
    assert.equal((await svc.listLive({ orgId: ORG })).leases.filter((l) => l.country === c).length, 1);
  });

  test('sharing: one number is leased to several callers at once', async () => {
    const clock = new ManualClock(T0);
    const { c, numbers } = await pool(1);
    const svc = service(clock);
    const leases = [];
    for (const caller of ['+14155551011', '+14155551012', '+14155551013']) leases.push((await svc.reserve(input(c, caller))).lease);
    assert.deepEqual(leases.map((l) => l.routableNumber), [numbers[0], numbers[0], numbers[0]]);
    assert.equal((await svc.listLive({ orgId: ORG })).leases.filter((l) => l.country === c).length, 3);
  });

  test('a pair is never held by two live leases, across orgs too', async () => {
    const clock = new ManualClock(T0);
    const { c, numbers } = await pool(2);
    const svc = service(clock);
    const a = await svc.reserve(input(c, '+14155551014'));
    const b = await svc.reserve({ ...input(c, '+14155551014'), orgId: OTHER_ORG });
    assert.deepEqual(new Set([a.lease.routableNumber, b.lease.routableNumber]), new Set(numbers));
    await rejectsWith(svc.reserve(input(c, '+14155551014')), 'POOL_EXHAUSTED');
    await rejectsWith(svc.reserve({ ...input(c, '+14155551014'), orgId: OTHER_ORG }), 'POOL_EXHAUSTED');
  });

  test('cool-down after consumption: the pair stays held, then frees', async () => {
    const clock = new ManualClock(T0);
    const { c, numbers } = await pool(1);
    const svc = service(clock);
    await svc.reserve(input(c, '+14155551015'));
    clock.advance(5_000);
    assert.equal((await svc.resolve(numbers[0]!, '+14155551015')).ok, true);
    clock.advance(COOLDOWN - 1);
    const e = await rejectsWith(svc.reserve(input(c, '+14155551015')), 'POOL_EXHAUSTED');
    assert.equal(e.retryAfter, 1);
    clock.advance(1);
    assert.equal((await svc.reserve(input(c, '+14155551015'))).lease.routableNumber, numbers[0]);
  });

  test('cool-down after expiry: the pair stays held past expiresAt, then frees', async () => {
    const clock = new ManualClock(T0);
    const { c, numbers } = await pool(1);
    const svc = service(clock, { ttlSeconds: 60, cooldownSeconds: 15 });
    const { lease } = await svc.reserve(input(c, '+14155551016'));
    clock.set(lease.expiresAt);
    assert.deepEqual(await svc.resolve(numbers[0]!, '+14155551016'), { ok: false, reason: 'expired' });
    const e = await rejectsWith(svc.reserve(input(c, '+14155551016')), 'POOL_EXHAUSTED');
    assert.equal(e.retryAfter, 15);
    clock.set(lease.expiresAt + 15_000 - 1);
    await rejectsWith(svc.reserve(input(c, '+14155551016')), 'POOL_EXHAUSTED');
    clock.advance(1);
    const next = await svc.reserve(input(c, '+14155551016'));
    assert.notEqual(next.lease.uid, lease.uid);
  });

  test('draining numbers are never chosen; a pool with no active number is 503 with the default Retry-After', async () => {
    const clock = new ManualClock(T0);
    const { c, numbers } = await pool(3);
    await store().setPoolNumberState(numbers[0]!, 'draining');
    await store().setPoolNumberState(numbers[2]!, 'draining');
    const svc = service(clock, { defaultRetryAfterSeconds: 42 });
    for (let i = 0; i < 5; i++) assert.equal((await svc.reserve(input(c, `+1415555200${i}`))).lease.routableNumber, numbers[1]);
    await store().setPoolNumberState(numbers[1]!, 'draining');
    const e = await rejectsWith(svc.reserve(input(c, '+14155552009')), 'POOL_EXHAUSTED');
    assert.equal(e.retryAfter, 42);
    assert.equal(e.httpStatus, 503);
    // Draining leaves live leases alone: they still resolve.
    assert.equal((await svc.resolve(numbers[1]!, '+14155552000')).ok, true);
  });

  test('spreading: fewest live leases first (consumption lowers the count), then least recently used', async () => {
    const clock = new ManualClock(T0);
    const { c, numbers } = await pool(3);
    const [n1, n2, n3] = numbers as [string, string, string];
    const svc = service(clock);
    const at = async (caller: string) => {
      clock.advance(1000);
      return (await svc.reserve(input(c, caller))).lease.routableNumber;
    };
    // Never-leased numbers tie on count and recency; the number breaks the tie.
    assert.deepEqual([await at('+14155553001'), await at('+14155553002'), await at('+14155553003')], [n1, n2, n3]);
    // n3 is the most recently used, but its only lease is consumed: fewest live beats LRU.
    assert.equal((await svc.resolve(n3, '+14155553003')).ok, true);
    assert.equal(await at('+14155553004'), n3);
    // One live lease each: the least recently used (n1) wins.
    assert.equal(await at('+14155553005'), n1);
    // Consume everything: all at zero, so pure LRU order n2 (t+2 s), n3 (t+4 s), n1 (t+5 s), which is
    // not the numbers' order.
    for (const [n, caller] of [[n1, '+14155553001'], [n2, '+14155553002'], [n3, '+14155553004'], [n1, '+14155553005']] as const) {
      assert.equal((await svc.resolve(n, caller)).ok, true);
    }
    assert.deepEqual([await at('+14155553006'), await at('+14155553007'), await at('+14155553008')], [n2, n3, n1]);
  });

  test('spreading: an expired lease no longer counts, with no sweeper having run', async () => {
    const clock = new ManualClock(T0);
    const { c, numbers } = await pool(2);
    const [m1, m2] = numbers as [string, string];
    const long = service(clock);
    const short = service(clock, { ttlSeconds: 10 });
    clock.advance(1000);
    assert.equal((await long.reserve(input(c, '+14155553101'))).lease.routableNumber, m1);
    clock.advance(1000);
    assert.equal((await short.reserve(input(c, '+14155553102'))).lease.routableNumber, m2);
    clock.advance(9_999);
    // m2's lease is still live: one each, m1 is least recently used.
    assert.equal((await long.reserve(input(c, '+14155553103'))).lease.routableNumber, m1);
    clock.advance(1);
    // m2's lease expired: m2 has fewer live leases although m1 is... now the most recent.
    assert.equal((await long.reserve(input(c, '+14155553104'))).lease.routableNumber, m2);
    clock.advance(1);
    // m1: two live, m2: one live and most recently used -> m2.
    assert.equal((await long.reserve(input(c, '+14155553105'))).lease.routableNumber, m2);
  });

  test('503 Retry-After is the time until the caller\'s earliest release', async () => {
    const clock = new ManualClock(T0);
    const { c } = await pool(2);
    const svc = service(clock);
    await svc.reserve(input(c, '+14155554001'));
    clock.advance(20_000);
    await svc.reserve(input(c, '+14155554001'));
    clock.advance(10_500);
    const e = await rejectsWith(svc.reserve(input(c, '+14155554001')), 'POOL_EXHAUSTED');
    // Earliest hold ends at T0 + TTL + cooldown; now is T0 + 30.5 s.
    assert.equal(e.retryAfter, Math.ceil((TTL + COOLDOWN - 30_500) / 1000));
    // Another caller is not exhausted.
    assert.equal((await svc.reserve(input(c, '+14155554002'))).replayed, false);
  });

  test('429 when the org holds its quota of live leases, with Retry-After until the earliest expiry', async () => {
    const clock = new ManualClock(T0);
    await ensureOrg(store(), QUOTA_ORG);
    const { c } = await pool(5);
    const svc = service(clock);
    const q = (caller: string, overrides: Partial<ReserveInput> = {}) => ({ ...input(c, caller, overrides), orgId: QUOTA_ORG, maxLiveLeases: 2 });
    const first = await svc.reserve(q('+14155555001', { transactionId: 'quota-1' }));
    clock.advance(7_000);
    await svc.reserve(q('+14155555002'));
    clock.advance(3_500);
    const e = await rejectsWith(svc.reserve(q('+14155555003')), 'QUOTA_EXCEEDED');
    assert.equal(e.httpStatus, 429);
    assert.equal(e.retryAfter, Math.ceil((TTL - 10_500) / 1000));
    // A replay is not a new lease: the quota does not apply to it.
    assert.equal((await svc.reserve(q('+14155555001', { transactionId: 'quota-1' }))).lease.uid, first.lease.uid);
    // Other orgs are not affected; consuming a lease frees a slot.
    await svc.reserve({ ...q('+14155555003'), orgId: '00Dxx0000008QQQ' });
    assert.equal((await svc.resolve(first.lease.routableNumber, '+14155555001')).ok, true);
    assert.equal((await svc.reserve(q('+14155555003'))).replayed, false);
    await rejectsWith(svc.reserve(q('+14155555004')), 'QUOTA_EXCEEDED');
    // Expiry frees slots too, with no sweeper.
    clock.set(first.lease.expiresAt + 7_000);
    assert.equal((await svc.reserve(q('+14155555004'))).replayed, false);
  });

  test('the quota holds under concurrent reservations', async () => {
    const clock = new ManualClock(T0 + 3600_000);
    const org = '00Dxx0000006QQQ';
    await ensureOrg(store(), org);
    const { c } = await pool(5);
    const svc = service(clock);
    const results = await Promise.allSettled(
      Array.from({ length: 30 }, (_, i) => svc.reserve({ ...input(c, `+1415555${String(6100 + i)}`), orgId: org, maxLiveLeases: 7 })),
    );
    assert.equal(results.filter((r) => r.status === 'fulfilled').length, 7);
    for (const r of results) if (r.status === 'rejected') assert.equal((r.reason as HandoffError).code, 'QUOTA_EXCEEDED');
  });

  test('resolve consumes once and returns the lease context; a second resolve is "consumed"', async () => {
    const clock = new ManualClock(T0);
    const { c } = await pool(1);
    const svc = service(clock);
    const { lease } = await svc.reserve(input(c, '+14155556001', { callId: '0LQxx0000001AAA', transactionId: 'resolve-1' }));
    clock.advance(2_000);
    const r = await svc.resolve(lease.routableNumber, '+14155556001');
    assert.deepEqual(r, { ok: true, lease: { ...lease, consumedAt: T0 + 2_000 } });
    assert.deepEqual(await svc.resolve(lease.routableNumber, '+14155556001'), { ok: false, reason: 'consumed' });
    assert.equal((await svc.listLive({ orgId: ORG })).leases.some((l) => l.uid === lease.uid), false);
  });

  test('a lease past expiresAt does not resolve, with no sweeper having run', async () => {
    const clock = new ManualClock(T0);
    const { c } = await pool(1);
    const svc = service(clock);
    const { lease } = await svc.reserve(input(c, '+14155556002'));
    clock.set(lease.expiresAt - 1);
    assert.equal((await svc.listLive({ orgId: ORG })).leases.some((l) => l.uid === lease.uid), true);
    clock.set(lease.expiresAt);
    assert.equal((await svc.listLive({ orgId: ORG })).leases.some((l) => l.uid === lease.uid), false);
    assert.deepEqual(await svc.resolve(lease.routableNumber, '+14155556002'), { ok: false, reason: 'expired' });
  });

  test('live leases come a page at a time, soonest expiry first, with a cursor; counted by org and by number', async () => {
    const org = '00Dxx0000006PAG';
    await ensureOrg(store(), org);
    const clock = new ManualClock(T0);
    const svc = service(clock);
    const { c, numbers } = await pool(3);
    const made: string[] = [];
    for (let i = 0; i < 7; i++) {
      made.push((await svc.reserve(input(c, `+1415556${String(i).padStart(4, '0')}`, { orgId: org }))).lease.uid);
      if (i % 3 === 2) clock.advance(1000); // some leases share an expiry, some do not
    }
    const all = await svc.listLive({ orgId: org });
    assert.equal(all.total, 7);
    assert.equal(all.next, null);
    assert.deepEqual([...all.leases.map((l) => l.uid)].sort(), [...made].sort());
    assert.ok(all.leases.every((l, i) => i === 0 || all.leases[i - 1]!.expiresAt <= l.expiresAt), 'soonest expiry first');
    const seen: string[] = [];
    let after: string | undefined;
    let pages = 0;
    do {
      const page = await svc.listLive({ orgId: org, limit: 3, ...(after !== undefined ? { after } : {}) });
      assert.equal(page.total, 7);
      assert.ok(page.leases.length <= 3);
      seen.push(...page.leases.map((l) => l.uid));
      after = page.next ?? undefined;
      pages++;
    } while (after !== undefined);
    assert.deepEqual(seen, all.leases.map((l) => l.uid), 'the pages are the listing, each lease once');
    assert.equal(pages, 3);
    assert.equal((await svc.listLive({ orgId: org, limit: 7 })).next, null, 'a page ending on the last lease has no next');
    assert.equal(await svc.liveOnNumber(numbers[0]!), all.leases.filter((l) => l.routableNumber === numbers[0]).length);
    assert.ok((await svc.listLive({ limit: 1 })).total >= 7, 'all orgs');
    await rejectsWith(svc.listLive({ after: 'not-a-cursor' }), 'INVALID_FIELD');
    await rejectsWith(svc.listLive({ after: `${T0}.lease:did:+1` }), 'INVALID_FIELD');
    clock.advance(TTL);
    assert.deepEqual(await svc.listLive({ orgId: org }), { leases: [], total: 0, next: null });
    assert.equal(await svc.liveOnNumber(numbers[0]!), 0);
  });

  test('resolve of an unknown pair is "no_lease"', async () => {
    const svc = service(new ManualClock(T0));
    assert.deepEqual(await svc.resolve('+19999999999', '+14155556003'), { ok: false, reason: 'no_lease' });
  });

  test('concurrent resolves of one lease: exactly one winner', async () => {
    const clock = new ManualClock(T0);
    const { c } = await pool(1);
    const svc = service(clock);
    const { lease } = await svc.reserve(input(c, '+14155556004'));
    const results = await Promise.all(Array.from({ length: 20 }, () => svc.resolve(lease.routableNumber, '+14155556004')));
    assert.equal(results.filter((r) => r.ok).length, 1);
    assert.ok(results.every((r) => r.ok || r.reason === 'consumed'));
  });

  test('a failed reservation leaves nothing behind, even next to successful ones committed with it', async () => {
    const clock = new ManualClock(T0);
    const { c, numbers } = await pool(1);
    const svc = service(clock);
    await svc.reserve(input(c, '+14155557001'));
    const [failed, ok] = await Promise.allSettled([
      svc.reserve(input(c, '+14155557001', { transactionId: 'rollback-1' })),
      svc.reserve(input(c, '+14155557002', { transactionId: 'rollback-2' })),
    ]);
    assert.equal(failed.status, 'rejected');
    assert.equal(ok.status, 'fulfilled');
    // The failed attempt's idempotency key was rolled back: the key is free for a different body.
    const other = await svc.reserve(input(c, '+14155557003', { transactionId: 'rollback-1' }));
    assert.equal(other.lease.routableNumber, numbers[0]);
  });

  test('stats report live leases and utilisation per country; sweep tidies ended rows', async () => {
    const clock = new ManualClock(T0 + 100 * 24 * 3600_000);
    const { c, numbers } = await pool(4);
    await store().setPoolNumberState(numbers[3]!, 'draining');
    const svc = service(clock);
    await svc.reserve(input(c, '+14155558001', { transactionId: 'stats-1' }));
    await svc.reserve(input(c, '+14155558002'));
    const mine = (await svc.stats()).find((s) => s.country === c);
    assert.deepEqual(mine, { country: c, numbers: 4, activeNumbers: 3, liveLeases: 2, busyNumbers: 2, utilisation: 2 / 3 });
    clock.advance(25 * 3600_000);
    const swept = await svc.sweep();
    // SQLite keeps a pair's hold on its leases; PostgreSQL in pair_holds rows.
    const holds = backend().name === 'postgres' ? swept.pairHolds >= 2 : swept.pairHolds === 0;
    assert.ok(swept.leases >= 2 && holds && swept.idempotencyKeys >= 1, JSON.stringify(swept));
    assert.deepEqual(await svc.sweep(), { leases: 0, pairHolds: 0, idempotencyKeys: 0 });
    assert.equal((await svc.stats()).find((s) => s.country === c)?.liveLeases, 0);
  });

  test('stats count each country\'s live leases and busy numbers, leaving out consumed and expired leases', async () => {
    const clock = new ManualClock(T0 + 200 * 24 * 3600_000);
    const one = await pool(3);
    const two = await pool(2);
    const svc = service(clock);
    const held = [];
    for (const caller of ['+14155558101', '+14155558102', '+14155558103', '+14155558104']) held.push((await svc.reserve(input(one.c, caller))).lease);
    const short = (await service(clock, { ttlSeconds: 30 }).reserve(input(one.c, '+14155558105'))).lease;
    await svc.reserve(input(two.c, '+14155558106'));
    const byCountry = async (c: string) => (await svc.stats()).find((s) => s.country === c);
    assert.deepEqual(await byCountry(one.c), { country: one.c, numbers: 3, activeNumbers: 3, liveLeases: 5, busyNumbers: 3, utilisation: 1 });
    assert.equal((await svc.resolve(held[0]!.routableNumber, held[0]!.fromNumber)).ok, true);
    clock.advance(31_000);
    assert.equal(short.expiresAt <= clock.now(), true);
    const live = held.slice(1);
    const busy = new Set(live.map((l) => l.routableNumber)).size;
    assert.deepEqual(await byCountry(one.c), { country: one.c, numbers: 3, activeNumbers: 3, liveLeases: 3, busyNumbers: busy, utilisation: busy / 3 });
    assert.deepEqual(await byCountry(two.c), { country: two.c, numbers: 2, activeNumbers: 2, liveLeases: 1, busyNumbers: 1, utilisation: 0.5 });
    // Asked at once, the count runs once and both callers get its answer.
    const [a, b] = await Promise.all([svc.stats(), svc.stats()]);
    assert.equal(a, b);
    clock.advance(180_000);
    assert.equal((await byCountry(one.c))?.liveLeases, 0);
  });

  test('a number drained behind the allocation\'s back is not leased again', async () => {
    const clock = new ManualClock(T0);
    const { c, numbers } = await pool(2);
    const svc = service(clock);
    assert.equal((await svc.reserve(input(c, '+14155557101'))).lease.routableNumber, numbers[0]);
    // Straight to the store, not through the pool admin: nothing tells the lease service.
    await store().setPoolNumberState(numbers[1]!, 'draining');
    for (let i = 2; i < 6; i++) {
      clock.advance(1);
      assert.equal((await svc.reserve(input(c, `+1415555710${i}`, { transactionId: `drained-${i}` }))).lease.routableNumber, numbers[0]);
    }
    await store().setPoolNumberState(numbers[0]!, 'draining');
    await rejectsWith(svc.reserve(input(c, '+14155557109')), 'POOL_EXHAUSTED');
  });

  test('a caller holding the best numbers gets the next free one, then 503', async () => {
    const clock = new ManualClock(T0);
    const { c, numbers } = await pool(6);
    const svc = service(clock);
    const got: string[] = [];
    for (let i = 0; i < 6; i++) {
      clock.advance(1);
      got.push((await svc.reserve(input(c, '+14155557201', { transactionId: `holder-${i}` }))).lease.routableNumber);
    }
    assert.deepEqual([...got].sort(), [...numbers].sort());
    await rejectsWith(svc.reserve(input(c, '+14155557201', { transactionId: 'holder-6' })), 'POOL_EXHAUSTED');
    // The refused key was not kept: it works for another caller.
    assert.equal((await svc.reserve(input(c, '+14155557202', { transactionId: 'holder-6' }))).replayed, false);
  });

  test('leases written by another connection are counted when allocating', async () => {
    if (backend().name !== 'sqlite') return; // PostgreSQL allocates in SQL; SQLite keeps an in-memory index
    const other = await backend().open();
    try {
      const clock = new ManualClock(T0);
      const { c, numbers } = await pool(2);
      const [n1, n2] = numbers as [string, string];
      const mine = service(clock);
      const theirs = new LeaseService(new KyselyLeaseStore(other), { clock });
      const at = async (svc: LeaseService, caller: string) => {
        clock.advance(1000);
        return (await svc.reserve(input(c, caller))).lease.routableNumber;
      };
      assert.equal(await at(mine, '+14155557301'), n1);
      // Through the other connection: n2 (fewest), n1 (tie, least recently used), n2.
      assert.deepEqual([await at(theirs, '+14155557302'), await at(theirs, '+14155557303'), await at(theirs, '+14155557304')], [n2, n1, n2]);
      // Two live leases each; n1 is the least recently used. An index that missed the other
      // connection's leases would say n2 (none of its own there).
      assert.equal(await at(mine, '+14155557305'), n1);
      assert.equal(await at(mine, '+14155557306'), n2);
    } finally {
      await other.close();
    }
  });

  test('PostgreSQL: a one-statement reservation that loses its pair claim after writing the key falls back', async () => {
    if (backend().name !== 'postgres') return;
    const clock = new ManualClock(T0);
    const { c, numbers } = await pool(2);
    const [n1, n2] = numbers as [string, string];
    const svc = service(clock);
    const caller = '+14155557401';
    // n1 for the caller, n2 for someone else just after: n1 is the least recently used.
    assert.equal((await svc.reserve(input(c, caller))).lease.routableNumber, n1);
    clock.advance(1);
    assert.equal((await svc.reserve(input(c, '+14155557402'))).lease.routableNumber, n2);
    // Every lease and hold has ended.
    clock.advance(TTL + COOLDOWN + 1000);
    const lost: unknown[] = [];
    const leases = new KyselyLeaseStore(store());
    const original = leases.reserveAtOnce.bind(leases);
    leases.reserveAtOnce = (r) => original(r).catch((e: unknown) => { lost.push(e); throw e; });
    const racing = new LeaseService(leases, { clock });
    // Another transaction re-takes the (n1, caller) hold and keeps its row locked for a moment.
    const other = await backend().open();
    try {
      const { pending } = await other.executor.transaction().execute(async (trx) => {
        await trx.executeQuery(CompiledQuery.raw(`UPDATE pair_holds SET hold_until = $1 WHERE routable_number = $2 AND from_number = $3`, [T0 + 10 * TTL, n1, caller]));
        const p = racing.reserve(input(c, caller, { transactionId: 'race-lost-1' }));
        p.catch(() => {}); // awaited below, once this transaction has committed
        await sleep(300);
        return { pending: p };
      });
      const reservation = await pending;
      // The statement chose n1 (free in its snapshot), wrote the key, lost the claim and was undone.
      assert.equal(lost.length, 1, 'the one-statement reservation lost its claim');
      assert.equal(reservation.replayed, false);
      assert.equal(reservation.lease.routableNumber, n2);
      const again = await svc.reserve(input(c, caller, { transactionId: 'race-lost-1' }));
      assert.equal(again.replayed, true);
      assert.equal(again.lease.uid, reservation.lease.uid);
    } finally {
      await other.close();
    }
  });

  test('real time: a 1 s lease expires on its own and neither resolves nor replays', async () => {
    const { c } = await pool(1);
    const svc = service(systemClock, { ttlSeconds: 1, cooldownSeconds: 0 });
    const { lease } = await svc.reserve(input(c, '+14155559001', { transactionId: 'realtime-1' }));
    assert.ok(lease.expiresAt - Date.now() <= 1000);
    await sleep(lease.expiresAt - Date.now() + 20);
    assert.deepEqual(await svc.resolve(lease.routableNumber, '+14155559001'), { ok: false, reason: 'expired' });
    await rejectsWith(svc.reserve(input(c, '+14155559001', { transactionId: 'realtime-1' })), 'LEASE_NOT_LIVE');
  });
});
