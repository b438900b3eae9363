import assert from 'node:assert/strict';
import type { Kysely } from 'kysely';
import type { KyselyStore } from '../../src/store/kysely-store.js';
import type { LeaseTables, LeasesTable } from '../../src/store/lease-schema.js';
import type { Database } from '../../src/store/schema.js';

/** What a client learned from a successful reservation. */
export interface ReservedHandle {
  uid: string;
  routableNumber: string;
  fromNumber: string;
}

/**
 * Checks SPEC §5's invariants from the leases table of one pool country:
 * - every success is its own lease row, and no lease row exists that no client was told about;
 * - each row is consistent (created < expires <= hold; consumed, if at all, while live);
 * - no (number, caller) pair ever had two leases whose [created_at, hold_until) intervals overlap,
 *   i.e. a pair was never held by two leases at once, cool-down included.
 * Returns the rows for further checks.
 */
export async function assertLeaseInvariants(store: KyselyStore, country: string, successes: ReservedHandle[]): Promise<LeasesTable[]> {
  const db = store.executor as unknown as Kysely<Database & LeaseTables>;
  const rows = await db.selectFrom('leases').selectAll().where('country', '=', country).execute();
  const byUid = new Map(rows.map((r) => [r.uid, r]));

  assert.equal(new Set(successes.map((s) => s.uid)).size, successes.length, 'every success has its own uid');
  for (const s of successes) {
    const row = byUid.get(s.uid);
    assert.ok(row, `lease ${s.uid} was reported but is not stored`);
    assert.equal(row.routable_number, s.routableNumber);
    assert.equal(row.from_number, s.fromNumber);
  }
  assert.equal(rows.length, successes.length, 'no stored lease that no client was told about');

  const pairs = new Map<string, LeasesTable[]>();
  for (const r of rows) {
    assert.ok(r.created_at < r.expires_at, `lease ${r.uid} expires after it starts`);
    if (r.consumed_at === null) {
      assert.ok(r.hold_until >= r.expires_at, `lease ${r.uid} holds its pair at least until expiry`);
    } else {
      assert.ok(r.consumed_at >= r.created_at && r.consumed_at < r.expires_at, `lease ${r.uid} consumed while not live`);
      assert.ok(r.hold_until >= r.consumed_at, `lease ${r.uid} holds its pair at least until consumption`);
    }
    const key = `${r.routable_number}|${r.from_number}`;
    pairs.set(key, [...(pairs.get(key) ?? []), r]);
  }
  for (const [key, leases] of pairs) {
    leases.sort((a, b) => a.created_at - b.created_at);
    for (let i = 1; i < leases.length; i++) {
      const prev = leases[i - 1]!;
      const next = leases[i]!;
      assert.ok(
        next.created_at >= prev.hold_until,
        `pair ${key} held twice: ${prev.uid} [${prev.created_at}, ${prev.hold_until}) and ${next.uid} from ${next.created_at}`,
      );
    }
  }
  return rows;
}
