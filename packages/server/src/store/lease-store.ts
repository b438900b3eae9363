import { CompiledQuery, type Kysely, type Transaction } from 'kysely';
import type { KyselyStore } from './kysely-store.js';
import type { LeaseTables, LeasesTable } from './lease-schema.js';
import type { Database } from './schema.js';
import type { Dialect, Store } from './store.js';
import { INDEX_MAX_NUMBERS, IndexTrust, LeaseAllocator, type PoolSnapshot } from './lease-allocator.js';
import { Statement } from './statement.js';
import { TurnBatcher } from './group-commit.js';
import { LEASE_UID_PREFIX } from '../domain/lease-policy.js';

/** A number-pool lease as the rest of the code sees it; times are epoch ms. */
export interface Lease {
  uid: string;
  orgId: string;
  country: string;
  routableNumber: string;
  fromNumber: string;
  toNumber: string;
  /** The VoiceCall (VC1) the partner reserved for, when it said. */
  callId: string | null;
  transactionId: string | null;
  /** The Telephony-Provider-Name of the reservation. */
  provider: string | null;
  createdAt: number;
  expiresAt: number;
  consumedAt: number | null;
}

/** A lease about to be written, with the instant its (number, caller) pair becomes free again. */
export interface NewLease extends Omit<Lease, 'consumedAt'> {
  holdUntil: number;
}

/** What an idempotency key remembers; `lease` is null once the lease row has been swept. */
export interface IdempotencyRecord {
  requestHash: string;
  /** When the key itself is forgotten; a record past it counts as absent. */
  expiresAt: number;
  leaseUid: string | null;
  routableNumber: string | null;
  leaseExpiresAt: number | null;
  lease: Lease | null;
}

/**
 * How many least-recently-used free numbers the allocation query compares (PostgreSQL; SQLite while
 * its in-memory pool index is not usable, which ranks the whole pool). Spreading is exact for pools up to
 * this size (while no number has LIVE_COUNT_CAP live leases); beyond, the fewest-live choice is made
 * among the least recently used ones, which under LRU allocation are also the ones whose leases have
 * had the longest time to end. A bounded window keeps a reservation's cost independent of pool size.
 */
export const ALLOCATION_WINDOW = 16;
/** Live leases are counted up to this; numbers at or above it compare by recency only. */
export const LIVE_COUNT_CAP = 8;
/** Rows of each kind one sweepBatch deletes at most, so a sweep never holds the write lock for long. */
export const SWEEP_BATCH = 1000;

export interface CountryLeaseStats {
  country: string;
  numbers: number;
  activeNumbers: number;
  liveLeases: number;
  /** Numbers with at least one live lease. */
  busyNumbers: number;
}

/** A reservation for {@link LeaseStore.reserveAtOnce}: the lease minus its number. */
export interface OneStatementReservation {
  orgId: string;
  country: string;
  fromNumber: string;
  toNumber: string;
  callId: string | null;
  transactionId: string | null;
  provider: string | null;
  requestHash: string;
  createdAt: number;
  expiresAt: number;
  holdUntil: number;
  keyExpiresAt: number;
  /** The lease uid is `lease:did:<number>` followed by this (the number is chosen by the statement). */
  uidSuffix: string;
}

/**
 * What {@link LeaseStore.reserveAtOnce} did: `leased` (the lease on `routableNumber` is written, with
 * its key), `replay` (the transactionId has a live record; nothing written), or `declined` (no number
 * the statement could take without waiting; nothing written).
 */
export type OneStatementOutcome = { kind: 'leased'; routableNumber: string } | { kind: 'replay' } | { kind: 'declined' };

/** The one-statement reservation lost a race after writing; its transaction must be rolled back. */
export class ReservationRaceLost extends Error {
  constructor() {
    super('the one-statement reservation lost its pair claim to a concurrent reservation');
  }
}

/** A page of {@link LeaseStore.listLive}. */
export interface LiveListing {
  orgId?: string;
  limit?: number;
  after?: { expiresAt: number; uid: string };
}

export interface SweepCounts {
  leases: number;
  pairHolds: number;
  idempotencyKeys: number;
}

/**
 * Storage of leases, pair holds and idempotency keys. Every method takes `now` from the caller: the
 * store never reads a clock, and "live" always means `consumed_at IS NULL AND expires_at > now`.
 */
export interface LeaseStore {
  readonly dialect: Dialect;
  /** The Store this lease store runs on (inside transaction(), bound to that transaction). */
  readonly store: Store;
  /**
   * Runs fn atomically: all of its writes or none. Inside a Store transaction it joins that one. On
   * SQLite, concurrent calls are group-committed into one transaction (see GroupCommit): a failing fn
   * still undoes all of its own writes and none of the others', but fn may run a second time, so it
   * must have no effect outside the database.
   */
  transaction<T>(fn: (tx: LeaseStore) => Promise<T>): Promise<T>;

  /**
   * The key's record (expired or not), with its lease joined while the lease row exists and was
   * reserved for `fromNumber` (the caller of the request that replays it).
   */
  getIdempotencyRecord(orgId: string, key: string, fromNumber: string): Promise<IdempotencyRecord | null>;
  /**
   * Records (orgId, key) with the handle of `lease` unless a record that has not expired exists; true
   * when this call wrote it. Concurrent writes of one key yield one winner; on PostgreSQL the others
   * wait for its transaction.
   */
  putIdempotencyKey(orgId: string, key: string, requestHash: string, lease: Lease, now: number, expiresAt: number): Promise<boolean>;
  /** Points the key's handle at another lease of the same transaction. */
  linkIdempotencyKey(orgId: string, key: string, lease: Lease): Promise<void>;

  /** Serialises reservations of one org for the quota check (PostgreSQL row lock; SQLite already is). */
  lockOrg(orgId: string): Promise<void>;
  /**
   * Serialises reservations for one caller number (PostgreSQL advisory lock; SQLite already is), so two
   * transactions never wait on each other's pair-hold rows in opposite orders.
   */
  lockCaller(fromNumber: string): Promise<void>;
  /** The org's live leases: how many, and when the first of them expires. */
  orgLiveLeases(orgId: string, now: number): Promise<{ count: number; earliestExpiresAt: number | null }>;

  /**
   * The best number of the pool for this caller: among the ALLOCATION_WINDOW least recently used
   * active numbers the caller does not hold, the one with the fewest live leases (counted up to
   * LIVE_COUNT_CAP), then the least recently used. Null when the caller holds every active number.
   * `exclude` lists numbers whose claim this reservation already lost. (On SQLite the choice may come
   * from an in-memory index of the pool, which ranks the whole pool rather than a window, and may
   * name a number the caller holds: createLease refuses it, and the caller asks again.)
   */
  pickNumber(country: string, fromNumber: string, now: number, exclude: readonly string[]): Promise<string | null>;
  /**
   * Takes the lease's (number, caller) pair unless it is held past `createdAt`, then writes the lease
   * and marks its number as just leased; false (and nothing written) when the pair is held.
   */
  createLease(lease: NewLease): Promise<boolean>;
  /**
   * PostgreSQL only (null elsewhere): the whole of an ordinary reservation in one statement, one
   * round trip: choose a number (SKIP LOCKED), write the idempotency key, claim the pair, write the
   * lease and mark the number. Throws ReservationRaceLost (the transaction must be rolled back) in the
   * rare case where the pair claim loses after the key was written.
   */
  reserveAtOnce(r: OneStatementReservation): Promise<OneStatementOutcome | null>;
  /**
   * When the caller's first hold on an active number of the pool ends (for a 503's Retry-After); null
   * when the caller holds none, e.g. because the pool has no active number.
   */
  earliestRelease(country: string, fromNumber: string, now: number): Promise<number | null>;

  /**
   * Consumes the pair's live lease, if any, and shortens the pair's hold to consumption + cooldownMs.
   * At most one concurrent caller gets the lease. A lease stamped later than `now` (created after this
   * caller read its clock, or by an instance whose clock is ahead) is consumed at its creation time,
   * so a lease's consumption never precedes its creation.
   */
  consumeLease(routableNumber: string, fromNumber: string, now: number, cooldownMs: number): Promise<Lease | null>;
  /** The pair's most recent lease, live or not (a pair's holds never overlap, so the latest hold is it). */
  latestLease(routableNumber: string, fromNumber: string): Promise<Lease | null>;

  /** Pool numbers were added, drained, activated or removed. */
  poolsChanged(): void;

  /**
   * Live leases, all or one org's, soonest expiry first (then by uid): at most `limit` (all when
   * absent), those after `after` (the last lease of the previous page) when given.
   */
  listLive(now: number, opts?: LiveListing): Promise<Lease[]>;
  /** How many leases are live: all, one org's, or on one number. */
  countLive(now: number, of?: { orgId?: string; routableNumber?: string }): Promise<number>;
  /** Per pool country (every pool, with or without leases): sizes and live leases. */
  countryStats(now: number): Promise<CountryLeaseStats[]>;
  /**
   * Deletes up to SWEEP_BATCH rows of each kind that nothing needs any more: leases that expired before
   * leaseCutoff, ended pair holds, expired idempotency keys. Returns how many went.
   */
  sweepBatch(now: number, leaseCutoff: number): Promise<SweepCounts>;
}

type LeaseDb = Kysely<Database & LeaseTables> | Transaction<Database & LeaseTables>;

const LIVE = 'consumed_at IS NULL AND expires_at > :now';

/**
 * Whether a pair is held past :now. PostgreSQL keeps one pair_holds row per pair, claimed atomically
 * by an upsert. SQLite reads the hold from the pair's leases (leases_pair_hold): its writers are
 * serialised, so a check and an insert in one write transaction are atomic, and a reservation writes
 * one row fewer (chosen for speed).
 */
const PAIR_HELD: Record<Dialect, string> = {
  postgres: 'EXISTS (SELECT 1 FROM pair_holds h WHERE h.routable_number = p.number AND h.from_number = :from AND h.hold_until > :now)',
  sqlite: 'EXISTS (SELECT 1 FROM leases h WHERE h.routable_number = p.number AND h.from_number = :from AND h.hold_until > :now)',
};

/** The ALLOCATION_WINDOW least recently used active numbers the caller does not hold, with their live leases (capped). */
function allocationWindow(dialect: Dialect): string {
  return `
    SELECT c.number, c.last_leased_at,
      (SELECT count(*) FROM (SELECT 1 FROM leases l WHERE l.routable_number = c.number AND l.consumed_at IS NULL
        AND l.expires_at > :now LIMIT ${LIVE_COUNT_CAP}) capped) AS live
    FROM (
      SELECT p.number, p.last_leased_at FROM pool_numbers p
      WHERE p.country = :country AND p.state = 'active'
        AND NOT ${PAIR_HELD[dialect]}
      ORDER BY p.last_leased_at, p.number
      LIMIT ${ALLOCATION_WINDOW}
    ) c`;
}

/** The allocation query: the window's best number (see SQL.pickNumber). */
function pickNumberSql(dialect: Dialect): string {
  return `SELECT w.number FROM (${allocationWindow(dialect)}) w ORDER BY w.live, w.last_leased_at, w.number LIMIT 1`;
}

/**
 * PostgreSQL: the window's best number that no other transaction has locked, locked (that row only;
 * the state is re-checked on the locked row). Concurrent reservations rank the same window and each
 * takes the best row still free: they spread instead of queueing on one row to update last_leased_at,
 * and only one row lock (a WAL record) is written per reservation (chosen for speed).
 */
const PICK_LOCKED_PG = `
  SELECT p.number FROM pool_numbers p JOIN (${allocationWindow('postgres')}) w ON w.number = p.number
  WHERE p.state = 'active'
  ORDER BY w.live, w.last_leased_at, w.number
  LIMIT 1
  FOR UPDATE OF p SKIP LOCKED`;

const SQL = {
  // Written once the number is known, with the handle: one statement instead of a claim and a link.
  // Overwrites a record only once it has expired; PostgreSQL waits for a concurrent writer of the key
  // and re-checks the WHERE against its committed row.
  putIdempotencyKey: new Statement(`
    INSERT INTO idempotency_keys (org_id, key, request_hash, lease_uid, routable_number, lease_expires_at, created_at, expires_at)
    VALUES (:org, :key, :hash, :uid, :number, :lease_expires, :now, :expires)
    ON CONFLICT (org_id, key) DO UPDATE SET
      request_hash = excluded.request_hash, lease_uid = excluded.lease_uid, routable_number = excluded.routable_number,
      lease_expires_at = excluded.lease_expires_at, created_at = excluded.created_at, expires_at = excluded.expires_at
    WHERE idempotency_keys.expires_at <= :now`),
  getIdempotencyRecord: new Statement(`
    SELECT i.request_hash, i.expires_at AS key_expires_at, i.lease_uid, i.routable_number AS handle_number, i.lease_expires_at, l.*
    FROM idempotency_keys i
    LEFT JOIN leases l ON l.routable_number = i.routable_number AND l.from_number = :from AND l.uid = i.lease_uid
    WHERE i.org_id = :org AND i.key = :key`),
  linkIdempotencyKey: new Statement(`
    UPDATE idempotency_keys SET lease_uid = :uid, routable_number = :number, lease_expires_at = :expires
    WHERE org_id = :org AND key = :key`),
  lockOrg: new Statement(`SELECT 1 FROM orgs WHERE id = :org FOR UPDATE`),
  lockCaller: new Statement(`SELECT pg_advisory_xact_lock(7215302, hashtext(:from))`),
  orgLiveLeases: new Statement(`
    SELECT count(*) AS n, min(expires_at) AS earliest FROM leases WHERE org_id = :org AND ${LIVE}`),
  // The inner query walks pool_numbers_lru in order and probes the pair's hold by index, stopping
  // after ALLOCATION_WINDOW rows, so its cost does not grow with the pool. Live leases are counted per candidate
  // on leases_number_live (a pure range scan) and capped, so the cost does not grow with the load
  // either: a busy 1,000-number pool costs what an idle 100,000-number one does. Both limits are
  // literals: a bound LIMIT makes SQLite's plan markedly slower (chosen for speed).
  pickNumber: { sqlite: new Statement(pickNumberSql('sqlite')), postgres: new Statement(pickNumberSql('postgres')) },
  // PostgreSQL: see PICK_LOCKED_PG; when every row of the window is locked (tiny pools) the plain
  // query runs, and createLease waits for the row it chose.
  pickNumberSkipLocked: new Statement(PICK_LOCKED_PG),
  // PostgreSQL: claim, lease and recency in one round trip (the lease row only if the claim won). The
  // claim is atomic: the row is inserted, or overwritten only when its hold has passed; PostgreSQL
  // re-checks the WHERE against the latest committed version after waiting for a writer. The number's
  // row is locked before the pair's, as reserveAtOnce does (its SKIP LOCKED choice): a transaction
  // holding a pair row never waits for a pool row, so the two paths cannot deadlock.
  createLeasePg: new Statement(`
    WITH chosen AS MATERIALIZED (
      SELECT number FROM pool_numbers WHERE number = :number FOR UPDATE
    ), claim AS (
      INSERT INTO pair_holds (routable_number, from_number, lease_uid, hold_until)
      SELECT number, CAST(:from AS TEXT), CAST(:uid AS TEXT), CAST(:hold AS BIGINT) FROM chosen
      ON CONFLICT (routable_number, from_number) DO UPDATE SET lease_uid = excluded.lease_uid, hold_until = excluded.hold_until
      WHERE pair_holds.hold_until <= :now
      RETURNING routable_number
    ), lease AS (
      INSERT INTO leases (uid, org_id, country, routable_number, from_number, to_number, call_id, transaction_id, provider,
        created_at, expires_at, consumed_at, hold_until)
      SELECT CAST(:uid AS TEXT), CAST(:org AS TEXT), CAST(:country AS TEXT), routable_number, CAST(:from AS TEXT), CAST(:to AS TEXT),
        CAST(:call AS TEXT), CAST(:txn AS TEXT), CAST(:provider AS TEXT), CAST(:now AS BIGINT), CAST(:expires AS BIGINT), NULL,
        CAST(:hold AS BIGINT)
      FROM claim
      RETURNING routable_number
    ), mark AS (
      UPDATE pool_numbers SET last_leased_at = :now WHERE number IN (SELECT routable_number FROM lease) RETURNING 1
    )
    SELECT (SELECT count(*) FROM lease) AS leased`),
  // PostgreSQL: a whole reservation (see LeaseStore.reserveAtOnce). Data-modifying CTEs run in the
  // order their RETURNING rows feed each other: the key (only with a chosen number), then the claim
  // (only when the key was written or there is none), then the lease. Nothing is written when no
  // number is free of locks or the key is live. When the claim loses after the key was written, the
  // lease row is offered a NULL uid: the NOT NULL violation aborts the statement and its key.
  reserveAtOnce: new Statement(`
    WITH cand AS MATERIALIZED (${PICK_LOCKED_PG}
    ), k AS (
      INSERT INTO idempotency_keys (org_id, key, request_hash, lease_uid, routable_number, lease_expires_at, created_at, expires_at)
      SELECT CAST(:org AS TEXT), CAST(:key AS TEXT), CAST(:hash AS TEXT), CAST(:prefix AS TEXT) || number || CAST(:suffix AS TEXT), number,
        CAST(:expires AS BIGINT), CAST(:now AS BIGINT), CAST(:key_expires AS BIGINT)
      FROM cand WHERE CAST(:key AS TEXT) IS NOT NULL
      ON CONFLICT (org_id, key) DO UPDATE SET
        request_hash = excluded.request_hash, lease_uid = excluded.lease_uid, routable_number = excluded.routable_number,
        lease_expires_at = excluded.lease_expires_at, created_at = excluded.created_at, expires_at = excluded.expires_at
      WHERE idempotency_keys.expires_at <= :now
      RETURNING 1
    ), go AS (
      SELECT number, CAST(:prefix AS TEXT) || number || CAST(:suffix AS TEXT) AS uid FROM cand
      WHERE CAST(:key AS TEXT) IS NULL OR EXISTS (SELECT 1 FROM k)
    ), claim AS (
      INSERT INTO pair_holds (routable_number, from_number, lease_uid, hold_until)
      SELECT number, CAST(:from AS TEXT), uid, CAST(:hold AS BIGINT) FROM go
      ON CONFLICT (routable_number, from_number) DO UPDATE SET lease_uid = excluded.lease_uid, hold_until = excluded.hold_until
      WHERE pair_holds.hold_until <= :now
      RETURNING lease_uid
    ), lease AS (
      INSERT INTO leases (uid, org_id, country, routable_number, from_number, to_number, call_id, transaction_id, provider,
        created_at, expires_at, consumed_at, hold_until)
      SELECT c.lease_uid, CAST(:org AS TEXT), CAST(:country AS TEXT), g.number, CAST(:from AS TEXT), CAST(:to AS TEXT),
        CAST(:call AS TEXT), CAST(:key AS TEXT), CAST(:provider AS TEXT), CAST(:now AS BIGINT), CAST(:expires AS BIGINT), NULL,
        CAST(:hold AS BIGINT)
      FROM go g LEFT JOIN claim c ON true
      RETURNING routable_number
    ), mark AS (
      UPDATE pool_numbers SET last_leased_at = :now WHERE number IN (SELECT routable_number FROM lease) RETURNING number
    )
    SELECT (SELECT number FROM cand) AS candidate, (SELECT number FROM mark) AS leased`),
  // SQLite: the claim and the lease are one statement (see PAIR_HELD).
  insertLeaseIfFree: new Statement(`
    INSERT INTO leases (uid, org_id, country, routable_number, from_number, to_number, call_id, transaction_id, provider,
      created_at, expires_at, consumed_at, hold_until)
    SELECT :uid, :org, :country, :number, :from, :to, :call, :txn, :provider, :now, :expires, NULL, :hold
    WHERE NOT EXISTS (SELECT 1 FROM leases h WHERE h.routable_number = :number AND h.from_number = :from AND h.hold_until > :now)`),
  // Refuses (no row) a number that is no longer active, which only the in-memory index can choose.
  markNumberLeased: new Statement(`UPDATE pool_numbers SET last_leased_at = :now WHERE number = :number AND state = 'active'`),
  // Named as PoolSnapshot names them, so the rows are handed over as they come. One row more than an
  // index holds says the pool is too large to index.
  activeNumbers: new Statement(`
    SELECT number, last_leased_at AS "lastLeasedAt" FROM pool_numbers WHERE country = :country AND state = 'active'
    LIMIT ${INDEX_MAX_NUMBERS + 1}`),
  liveOfCountry: new Statement(`
    SELECT l.routable_number AS number, l.expires_at AS "expiresAt" FROM leases l JOIN pool_numbers p ON p.number = l.routable_number
    WHERE p.country = :country AND p.state = 'active' AND l.consumed_at IS NULL AND l.expires_at > :now`),
  earliestRelease: {
    postgres: new Statement(`
      SELECT min(h.hold_until) AS earliest
      FROM pool_numbers p JOIN pair_holds h ON h.routable_number = p.number AND h.from_number = :from
      WHERE p.country = :country AND p.state = 'active' AND h.hold_until > :now`),
    sqlite: new Statement(`
      SELECT min(h.hold_until) AS earliest
      FROM pool_numbers p JOIN leases h ON h.routable_number = p.number AND h.from_number = :from AND h.hold_until > :now
      WHERE p.country = :country AND p.state = 'active'`),
  },
  consumeLease: new Statement(`
    UPDATE leases SET
      consumed_at = CASE WHEN created_at > :now THEN created_at ELSE :now END,
      hold_until = CASE WHEN created_at > :now THEN created_at + :cooldown ELSE :now + :cooldown END
    WHERE routable_number = :number AND from_number = :from AND hold_until > :now AND ${LIVE}
    RETURNING *`),
  shortenPairHold: new Statement(`
    UPDATE pair_holds SET hold_until = :hold
    WHERE routable_number = :number AND from_number = :from AND lease_uid = :uid`),
  // A pair's holds never overlap, so the latest hold is the latest lease (expiry alone can misorder
  // them when a lease consumed early is followed by one with a shorter TTL).
  latestLease: new Statement(`
    SELECT * FROM leases WHERE routable_number = :number AND from_number = :from ORDER BY hold_until DESC LIMIT 1`),
  // Pages in (expires_at, uid) order: :after_exp -1 starts at the first. The LIMIT is bound: these
  // serve operators, not the reservation path.
  listLive: new Statement(`
    SELECT * FROM leases WHERE ${LIVE} AND expires_at >= :after_exp AND (expires_at > :after_exp OR uid > :after_uid)
    ORDER BY expires_at, uid LIMIT :limit`),
  listLiveOfOrg: new Statement(`
    SELECT * FROM leases WHERE org_id = :org AND ${LIVE} AND expires_at >= :after_exp AND (expires_at > :after_exp OR uid > :after_uid)
    ORDER BY expires_at, uid LIMIT :limit`),
  countLive: new Statement(`SELECT count(*) AS n FROM leases WHERE ${LIVE}`),
  countLiveOfOrg: new Statement(`SELECT count(*) AS n FROM leases WHERE org_id = :org AND ${LIVE}`),
  countLiveOnNumber: new Statement(`SELECT count(*) AS n FROM leases WHERE routable_number = :number AND ${LIVE}`),
  // Counted per number first, from leases_number_live alone (it covers these columns): scanning by
  // expiry read each live lease's row and sorted them twice (measured 115 ms against 16 ms for
  // 175,000 live leases on 1,000 numbers).
  liveByCountry: new Statement(`
    SELECT country, sum(n) AS live, count(*) AS busy FROM
      (SELECT min(country) AS country, count(*) AS n FROM leases WHERE ${LIVE} GROUP BY routable_number) per_number
    GROUP BY country`),
  // Sweeps delete in batches of SWEEP_BATCH. The outer condition is re-checked by PostgreSQL against a
  // row a reservation has just re-claimed, so a fresh hold or key is never deleted.
  // A lease row also holds its pair on SQLite: never swept before its hold ends.
  sweepLeases: new Statement(`
    DELETE FROM leases WHERE expires_at <= :cutoff AND hold_until <= :now AND uid IN
      (SELECT uid FROM leases WHERE expires_at <= :cutoff AND hold_until <= :now LIMIT ${SWEEP_BATCH})`),
  sweepPairHolds: new Statement(`
    DELETE FROM pair_holds WHERE hold_until <= :now AND (routable_number, from_number) IN
      (SELECT routable_number, from_number FROM pair_holds WHERE hold_until <= :now LIMIT ${SWEEP_BATCH})`),
  sweepIdempotencyKeys: new Statement(`
    DELETE FROM idempotency_keys WHERE expires_at <= :now AND (org_id, key) IN
      (SELECT org_id, key FROM idempotency_keys WHERE expires_at <= :now LIMIT ${SWEEP_BATCH})`),
} as const;

/** A leases row as a Lease (also used by the webhook store for lease events). */
export function toLease(r: LeasesTable): Lease {
  return {
    uid: r.uid,
    orgId: r.org_id,
    country: r.country,
    routableNumber: r.routable_number,
    fromNumber: r.from_number,
    toNumber: r.to_number,
    callId: r.call_id,
    transactionId: r.transaction_id,
    provider: r.provider,
    createdAt: r.created_at,
    expiresAt: r.expires_at,
    consumedAt: r.consumed_at,
  };
}

/** Aggregates come back as numbers (SQLite) or BIGINT-parsed numbers (PostgreSQL); null stays null. */
const num = (v: unknown): number => Number(v ?? 0);
export const numOrNull = (v: unknown): number | null => (v === null || v === undefined ? null : Number(v));

interface Job {
  fn: (tx: LeaseStore) => Promise<unknown>;
  resolve: (value: unknown) => void;
  reject: (error: unknown) => void;
}

/** Thrown inside a group transaction to roll it back because a job failed after writing. */
class BatchAborted extends Error {}

/**
 * Group commit for SQLite. Transactions requested in one turn of the event loop are run one after
 * another inside a single database transaction, and their results released after the one COMMIT.
 * SQLite serialises writers anyway, and the COMMIT (appending the touched pages to the WAL) is most
 * of a small write transaction's cost, so sharing it multiplies throughput (chosen for speed).
 * Durability is unchanged: nobody hears of a result before its commit.
 *
 * Jobs run without savepoints (a savepoint copies every page it touches to a sub-journal: measured at
 * a tenth of a reservation's SQLite time). A job that fails before writing anything (a replay's 409,
 * exhaustion, a quota refusal: the lease service checks before it writes) just reports its error. A
 * job that fails after writing rolls the whole group back, and every job of the group is then run
 * again in a transaction of its own, so each still gets all of its writes or none.
 */
class GroupCommit {
  private readonly batcher = new TurnBatcher<Job>((batch) => this.flush(batch));
  /** The in-memory pool index (see lease-allocator.ts), usable only while it is known to be exact. */
  readonly allocator = new LeaseAllocator(LIVE_COUNT_CAP);
  /** PRAGMA data_version at the last batch: it changes when another connection commits. */
  private dataVersion: number | undefined;
  /** Whether the index may be used, given when other connections committed. */
  private readonly trust = new IndexTrust(ALLOCATOR_QUIET_MS);
  /** Jobs running outside the group (after a rollback): their writes bypass the index. */
  private alone = 0;

  constructor(private readonly store: KyselyStore) {}

  /** One group commit per database: every lease store on it batches together. */
  static of(store: KyselyStore): GroupCommit {
    let gc = groupCommits.get(store);
    if (!gc) groupCommits.set(store, (gc = new GroupCommit(store)));
    return gc;
  }

  run<T>(fn: (tx: LeaseStore) => Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => this.batcher.push({ fn, resolve: resolve as (value: unknown) => void, reject }));
  }

  private async flush(batch: Job[]): Promise<void> {
    const outcomes: { ok: boolean; value: unknown }[] = [];
    try {
      await this.store.transaction(async (tx) => {
        const db = (tx as KyselyStore).executor;
        const allocator = await this.usableAllocator(db);
        for (const job of batch) {
          const leases = new KyselyLeaseStore(tx as KyselyStore, allocator);
          try {
            outcomes.push({ ok: true, value: await job.fn(leases) });
          } catch (error) {
            if (leases.wrote) throw new BatchAborted();
            outcomes.push({ ok: false, value: error });
          }
        }
      });
    } catch (error) {
      if (error instanceof BatchAborted) return this.runAlone(batch);
      // Nothing of the batch was committed: the in-memory index may count its leases.
      this.allocator.clear();
      for (const job of batch) job.reject(error);
      return;
    }
    batch.forEach((job, i) => {
      const outcome = outcomes[i]!;
      if (outcome.ok) job.resolve(outcome.value);
      else job.reject(outcome.value);
    });
  }

  /**
   * The allocator for a batch (which holds the write lock), or null while it cannot be trusted: for a
   * while after another connection (a SIP worker, the CLI, another process on the file) committed (see
   * IndexTrust), and while jobs run outside the group. Whatever it held is dropped then, and reloaded
   * when trusted again.
   */
  private async usableAllocator(db: KyselyStore['executor']): Promise<LeaseAllocator | null> {
    const { rows } = await db.executeQuery<{ data_version: number }>(DATA_VERSION);
    const version = Number(rows[0]?.data_version);
    if (this.dataVersion !== undefined && version !== this.dataVersion) {
      this.allocator.clear();
      this.trust.foreignCommit(Date.now());
    }
    this.dataVersion = version;
    return this.alone === 0 && this.trust.trusted(Date.now()) ? this.allocator : null;
  }

  /** After a rollback: each job again, in its own transaction. */
  private async runAlone(batch: Job[]): Promise<void> {
    this.alone++;
    this.allocator.clear();
    try {
      for (const job of batch) {
        try {
          job.resolve(await this.store.transaction((tx) => job.fn(new KyselyLeaseStore(tx as KyselyStore))));
        } catch (error) {
          job.reject(error);
        }
      }
    } finally {
      this.alone--;
      this.allocator.clear();
    }
  }
}

const groupCommits = new WeakMap<KyselyStore, GroupCommit>();
const DATA_VERSION = CompiledQuery.raw('pragma data_version');
/** How long after another connection's commit the in-memory pool index stays unused, at first (see IndexTrust). */
const ALLOCATOR_QUIET_MS = 1000;
/** Choices taken from the in-memory index per reservation before the allocation query decides. */
const INDEX_TRIES = 3;

/** The LeaseStore on the KyselyStore's database (SQLite or PostgreSQL). */
export class KyselyLeaseStore implements LeaseStore {
  readonly dialect: Dialect;
  /** Whether this store may have written (inside a group commit: whether its job needs a rollback). */
  wrote = false;
  private readonly groupCommit: GroupCommit | null;

  /**
   * @param allocator the in-memory pool index, given only to jobs of a SQLite group commit while it is
   *   exact; every lease written or consumed through this store then updates it.
   */
  constructor(
    private readonly kyselyStore: KyselyStore,
    private readonly allocator: LeaseAllocator | null = null,
  ) {
    this.dialect = kyselyStore.dialect;
    this.groupCommit = kyselyStore.dialect === 'sqlite' && !kyselyStore.executor.isTransaction ? GroupCommit.of(kyselyStore) : null;
  }

  /** Handing out the Store lets the caller write through it: counted as a write. */
  get store(): Store {
    this.wrote = true;
    return this.kyselyStore;
  }

  private get db(): LeaseDb {
    return this.kyselyStore.executor as unknown as LeaseDb;
  }

  private async rows<R>(stmt: Statement, params: Record<string, unknown>): Promise<R[]> {
    return (await this.db.executeQuery<R>(stmt.compile(this.dialect, params))).rows;
  }

  /** Runs a write and returns how many rows it changed (a write that changed none wrote nothing). */
  private async changes(stmt: Statement, params: Record<string, unknown>): Promise<number> {
    const n = Number((await this.db.executeQuery(stmt.compile(this.dialect, params))).numAffectedRows ?? 0n);
    if (n > 0) this.wrote = true;
    return n;
  }

  transaction<T>(fn: (tx: LeaseStore) => Promise<T>): Promise<T> {
    if (this.groupCommit) return this.groupCommit.run(fn);
    return this.kyselyStore.transaction((tx) => fn(new KyselyLeaseStore(tx as KyselyStore)));
  }

  async getIdempotencyRecord(orgId: string, key: string, fromNumber: string): Promise<IdempotencyRecord | null> {
    type Row = LeasesTable & {
      request_hash: string;
      key_expires_at: number;
      lease_uid: string | null;
      handle_number: string | null;
      lease_expires_at: number | null;
    };
    const [r] = await this.rows<Row>(SQL.getIdempotencyRecord, { org: orgId, key, from: fromNumber });
    if (!r) return null;
    return {
      requestHash: r.request_hash,
      expiresAt: Number(r.key_expires_at),
      leaseUid: r.lease_uid,
      routableNumber: r.handle_number,
      leaseExpiresAt: numOrNull(r.lease_expires_at),
      lease: r.uid === null ? null : toLease(r),
    };
  }

  async putIdempotencyKey(orgId: string, key: string, requestHash: string, lease: Lease, now: number, expiresAt: number): Promise<boolean> {
    const params = { org: orgId, key, hash: requestHash, uid: lease.uid, number: lease.routableNumber, lease_expires: lease.expiresAt, now, expires: expiresAt };
    return (await this.changes(SQL.putIdempotencyKey, params)) > 0;
  }

  async linkIdempotencyKey(orgId: string, key: string, lease: Lease): Promise<void> {
    await this.changes(SQL.linkIdempotencyKey, { org: orgId, key, uid: lease.uid, number: lease.routableNumber, expires: lease.expiresAt });
  }

  async lockOrg(orgId: string): Promise<void> {
    if (this.dialect === 'postgres') await this.rows(SQL.lockOrg, { org: orgId });
  }

  async lockCaller(fromNumber: string): Promise<void> {
    if (this.dialect === 'postgres') await this.rows(SQL.lockCaller, { from: fromNumber });
  }

  async orgLiveLeases(orgId: string, now: number): Promise<{ count: number; earliestExpiresAt: number | null }> {
    const [r] = await this.rows<{ n: unknown; earliest: unknown }>(SQL.orgLiveLeases, { org: orgId, now });
    return { count: num(r?.n), earliestExpiresAt: numOrNull(r?.earliest) };
  }

  async pickNumber(country: string, fromNumber: string, now: number, exclude: readonly string[]): Promise<string | null> {
    const allocator = this.allocator;
    if (allocator && exclude.length < INDEX_TRIES) {
      if (!allocator.has(country)) await this.loadCountry(allocator, country, now);
      const n = allocator.pick(country, now, exclude);
      if (n) return n;
    }
    const params = { country, from: fromNumber, now };
    if (this.dialect === 'postgres') {
      const [locked] = await this.rows<{ number: string }>(SQL.pickNumberSkipLocked, params);
      if (locked) return locked.number;
    }
    const [r] = await this.rows<{ number: string }>(SQL.pickNumber[this.dialect], params);
    return r?.number ?? null;
  }

  /** Only ever on SQLite, whose integers come back as numbers: the rows are a PoolSnapshot as read. */
  private async loadCountry(allocator: LeaseAllocator, country: string, now: number): Promise<void> {
    const numbers = await this.rows<PoolSnapshot['numbers'][number]>(SQL.activeNumbers, { country });
    if (numbers.length > INDEX_MAX_NUMBERS) return allocator.skip(country);
    const live = await this.rows<PoolSnapshot['live'][number]>(SQL.liveOfCountry, { country, now });
    allocator.load(country, { numbers, live }, now);
  }

  poolsChanged(): void {
    if (this.dialect === 'sqlite' && !this.kyselyStore.executor.isTransaction) GroupCommit.of(this.kyselyStore).allocator.clear();
  }

  async createLease(lease: NewLease): Promise<boolean> {
    const now = lease.createdAt;
    const row = {
      uid: lease.uid,
      org: lease.orgId,
      country: lease.country,
      number: lease.routableNumber,
      from: lease.fromNumber,
      to: lease.toNumber,
      call: lease.callId,
      txn: lease.transactionId,
      provider: lease.provider,
      now,
      expires: lease.expiresAt,
      hold: lease.holdUntil,
    };
    if (this.dialect === 'postgres') {
      const [r] = await this.rows<{ leased: unknown }>(SQL.createLeasePg, row);
      if (Number(r?.leased) === 0) return false;
      this.wrote = true;
      return true;
    }
    if ((await this.changes(SQL.insertLeaseIfFree, row)) === 0) return false;
    if ((await this.changes(SQL.markNumberLeased, { number: lease.routableNumber, now })) === 0 && this.allocator) {
      // Chosen by the in-memory index after it was drained or removed here behind its back (the
      // allocation query only returns active numbers): undone by the group commit's rollback, and
      // the reservation runs again on the allocation query.
      throw new Error(`pool number ${lease.routableNumber} is no longer active`);
    }
    this.allocator?.leased(lease.routableNumber, now, lease.expiresAt);
    return true;
  }

  async reserveAtOnce(r: OneStatementReservation): Promise<OneStatementOutcome | null> {
    if (this.dialect !== 'postgres') return null;
    const params = {
      country: r.country,
      from: r.fromNumber,
      now: r.createdAt,
      org: r.orgId,
      key: r.transactionId,
      hash: r.requestHash,
      prefix: LEASE_UID_PREFIX,
      suffix: r.uidSuffix,
      expires: r.expiresAt,
      key_expires: r.keyExpiresAt,
      hold: r.holdUntil,
      to: r.toNumber,
      call: r.callId,
      provider: r.provider,
    };
    let row: { candidate: string | null; leased: string | null } | undefined;
    try {
      [row] = await this.rows<{ candidate: string | null; leased: string | null }>(SQL.reserveAtOnce, params);
    } catch (error) {
      const e = error as { code?: string; table?: string; column?: string };
      if (e.code === '23502' && e.table === 'leases' && e.column === 'uid') throw new ReservationRaceLost();
      throw error;
    }
    if (row?.leased) {
      this.wrote = true;
      return { kind: 'leased', routableNumber: row.leased };
    }
    return row?.candidate ? { kind: 'replay' } : { kind: 'declined' };
  }

  async earliestRelease(country: string, fromNumber: string, now: number): Promise<number | null> {
    const [r] = await this.rows<{ earliest: unknown }>(SQL.earliestRelease[this.dialect], { country, from: fromNumber, now });
    return numOrNull(r?.earliest);
  }

  async consumeLease(routableNumber: string, fromNumber: string, now: number, cooldownMs: number): Promise<Lease | null> {
    const [r] = await this.rows<LeasesTable>(SQL.consumeLease, { number: routableNumber, from: fromNumber, now, cooldown: cooldownMs });
    if (!r) return null;
    this.wrote = true;
    this.allocator?.consumed(r.routable_number, Number(r.expires_at));
    if (this.dialect === 'postgres') await this.changes(SQL.shortenPairHold, { number: routableNumber, from: fromNumber, uid: r.uid, hold: r.hold_until });
    return toLease(r);
  }

  async latestLease(routableNumber: string, fromNumber: string): Promise<Lease | null> {
    const [r] = await this.rows<LeasesTable>(SQL.latestLease, { number: routableNumber, from: fromNumber });
    return r ? toLease(r) : null;
  }

  async listLive(now: number, opts: LiveListing = {}): Promise<Lease[]> {
    const page = { now, after_exp: opts.after?.expiresAt ?? -1, after_uid: opts.after?.uid ?? '', limit: opts.limit ?? Number.MAX_SAFE_INTEGER };
    const rows =
      opts.orgId === undefined
        ? await this.rows<LeasesTable>(SQL.listLive, page)
        : await this.rows<LeasesTable>(SQL.listLiveOfOrg, { ...page, org: opts.orgId });
    return rows.map(toLease);
  }

  async countLive(now: number, of: { orgId?: string; routableNumber?: string } = {}): Promise<number> {
    // A number's leases are one short index range; an org's or all of them are counted off the event loop (readRows)
    const [r] =
      of.routableNumber !== undefined
        ? await this.rows<{ n: unknown }>(SQL.countLiveOnNumber, { now, number: of.routableNumber })
        : await this.kyselyStore.readRows<{ n: unknown }>(
            of.orgId !== undefined ? SQL.countLiveOfOrg.compile(this.dialect, { now, org: of.orgId }) : SQL.countLive.compile(this.dialect, { now }),
          );
    return num(r?.n);
  }

  async countryStats(now: number): Promise<CountryLeaseStats[]> {
    const sizes = await this.kyselyStore.listPools();
    const live = await this.kyselyStore.readRows<{ country: string; live: unknown; busy: unknown }>(SQL.liveByCountry.compile(this.dialect, { now }));
    const byCountry = new Map(live.map((r) => [r.country, r]));
    return sizes.map((s) => ({
      country: s.country,
      numbers: s.numbers,
      activeNumbers: s.active,
      liveLeases: num(byCountry.get(s.country)?.live),
      busyNumbers: num(byCountry.get(s.country)?.busy),
    }));
  }

  async sweepBatch(now: number, leaseCutoff: number): Promise<SweepCounts> {
    // Each statement commits on its own (no transaction): a sweep never holds the write lock for long.
    return {
      leases: await this.changes(SQL.sweepLeases, { cutoff: leaseCutoff, now }),
      pairHolds: await this.changes(SQL.sweepPairHolds, { now }),
      idempotencyKeys: await this.changes(SQL.sweepIdempotencyKeys, { now }),
    };
  }
}
