import { CompiledQuery, type Kysely, type Transaction } from 'kysely';
import type { KyselyStore } from './kysely-store.js';
import type { LeaseTables, LeasesTable } from './lease-schema.js';
import type { Database } from './schema.js';
import type { Dialect, Store } from './store.js';

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
  leaseUid: string | null;
  routableNumber: string | null;
  leaseExpiresAt: number | null;
  lease: Lease | null;
}

/**
 * How many least-recently-used free numbers allocation compares. Spreading is exact for pools up to
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
   * SQLite, concurrent calls are group-committed: each runs in its own savepoint of a shared
   * transaction, so a failing fn undoes only its own writes.
   */
  transaction<T>(fn: (tx: LeaseStore) => Promise<T>): Promise<T>;

  /**
   * Records (orgId, key) unless a record that has not expired exists; true when this call wrote it.
   * Concurrent claims of one key yield one winner; on PostgreSQL the others wait for its transaction.
   */
  claimIdempotencyKey(orgId: string, key: string, requestHash: string, now: number, expiresAt: number): Promise<boolean>;
  /** The key's record, with its lease joined while the lease row exists. */
  getIdempotencyRecord(orgId: string, key: string): Promise<IdempotencyRecord | null>;
  /** Stores the handle of the lease created under an idempotency key. */
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
   */
  pickNumber(country: string, fromNumber: string, now: number): Promise<string | null>;
  /** Atomically takes the (number, caller) pair unless it is held past `now`; true when taken. */
  claimPair(routableNumber: string, fromNumber: string, leaseUid: string, holdUntil: number, now: number): Promise<boolean>;
  /** Writes a lease and marks its number as just leased. */
  insertLease(lease: NewLease): Promise<void>;
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
  /** The pair's most recent lease, live or not (a pair's leases never overlap, so expiry orders them). */
  latestLease(routableNumber: string, fromNumber: string): Promise<Lease | null>;

  /** Live leases, all or one org's, soonest expiry first. */
  listLive(now: number, orgId?: string): Promise<Lease[]>;
  /** Per pool country (every pool, with or without leases): sizes and live leases. */
  countryStats(now: number): Promise<CountryLeaseStats[]>;
  /**
   * Deletes up to SWEEP_BATCH rows of each kind that nothing needs any more: leases that expired before
   * leaseCutoff, ended pair holds, expired idempotency keys. Returns how many went.
   */
  sweepBatch(now: number, leaseCutoff: number): Promise<SweepCounts>;
}

type LeaseDb = Kysely<Database & LeaseTables> | Transaction<Database & LeaseTables>;

/**
 * One SQL text with `:named` parameters, converted once per dialect to positional form. The lease path
 * runs these directly rather than through Kysely's query builder: building and compiling a query costs
 * tens of microseconds each time, a real share of a reservation's budget (chosen for speed).
 */
class Statement {
  private readonly forms: Record<Dialect, { text: string; names: string[] }>;

  constructor(text: string) {
    const names: string[] = [];
    const sqlite = text.replace(/:([a-z_]+)/g, (_, name: string) => {
      names.push(name);
      return '?';
    });
    const pgNames: string[] = [];
    const postgres = text.replace(/:([a-z_]+)/g, (_, name: string) => {
      let i = pgNames.indexOf(name);
      if (i < 0) i = pgNames.push(name) - 1;
      return `$${i + 1}`;
    });
    this.forms = { sqlite: { text: sqlite, names }, postgres: { text: postgres, names: pgNames } };
  }

  compile(dialect: Dialect, params: Record<string, unknown>): CompiledQuery {
    const form = this.forms[dialect];
    return CompiledQuery.raw(
      form.text,
      form.names.map((n) => {
        const v = params[n];
        if (v === undefined) throw new Error(`missing SQL parameter :${n}`);
        return v;
      }),
    );
  }
}

const LIVE = 'consumed_at IS NULL AND expires_at > :now';

/** See SQL.pickNumber; `lock` is an optional row-locking clause of the window scan. */
function pickNumberSql(lock: string): string {
  return `
    SELECT c.number, c.last_leased_at,
      (SELECT count(*) FROM (SELECT 1 FROM leases l WHERE l.routable_number = c.number AND l.consumed_at IS NULL
        AND l.expires_at > :now LIMIT ${LIVE_COUNT_CAP}) capped) AS live
    FROM (
      SELECT p.number, p.last_leased_at FROM pool_numbers p
      WHERE p.country = :country AND p.state = 'active'
        AND NOT EXISTS (SELECT 1 FROM pair_holds h WHERE h.routable_number = p.number AND h.from_number = :from AND h.hold_until > :now)
      ORDER BY p.last_leased_at, p.number
      LIMIT ${ALLOCATION_WINDOW}
      ${lock}
    ) c
    ORDER BY live, c.last_leased_at, c.number
    LIMIT 1`;
}

const SQL = {
  claimIdempotencyKey: new Statement(`
    INSERT INTO idempotency_keys (org_id, key, request_hash, lease_uid, routable_number, lease_expires_at, created_at, expires_at)
    VALUES (:org, :key, :hash, NULL, NULL, NULL, :now, :expires)
    ON CONFLICT (org_id, key) DO UPDATE SET
      request_hash = excluded.request_hash, lease_uid = NULL, routable_number = NULL, lease_expires_at = NULL,
      created_at = excluded.created_at, expires_at = excluded.expires_at
    WHERE idempotency_keys.expires_at <= :now`),
  getIdempotencyRecord: new Statement(`
    SELECT i.request_hash, i.lease_uid, i.routable_number AS handle_number, i.lease_expires_at, l.*
    FROM idempotency_keys i LEFT JOIN leases l ON l.uid = i.lease_uid
    WHERE i.org_id = :org AND i.key = :key`),
  linkIdempotencyKey: new Statement(`
    UPDATE idempotency_keys SET lease_uid = :uid, routable_number = :number, lease_expires_at = :expires
    WHERE org_id = :org AND key = :key`),
  lockOrg: new Statement(`SELECT 1 FROM orgs WHERE id = :org FOR UPDATE`),
  lockCaller: new Statement(`SELECT pg_advisory_xact_lock(7215302, hashtext(:from))`),
  orgLiveLeases: new Statement(`
    SELECT count(*) AS n, min(expires_at) AS earliest FROM leases WHERE org_id = :org AND ${LIVE}`),
  // The inner query walks pool_numbers_lru in order and probes pair_holds by primary key, stopping
  // after ALLOCATION_WINDOW rows, so its cost does not grow with the pool. Live leases are counted per candidate
  // on leases_number_live (a pure range scan) and capped, so the cost does not grow with the load
  // either: a busy 1,000-number pool costs what an idle 100,000-number one does. Both limits are
  // literals: a bound LIMIT makes SQLite's plan markedly slower (chosen for speed).
  pickNumber: new Statement(pickNumberSql('')),
  // PostgreSQL: concurrent reservations would all pick the same least recently used number and then
  // queue on its row to update last_leased_at. SKIP LOCKED hands each transaction its own window
  // instead; when everything is locked (tiny pools) the plain query runs and waits (chosen for speed).
  pickNumberSkipLocked: new Statement(pickNumberSql('FOR UPDATE OF p SKIP LOCKED')),
  // Atomic on both dialects: the row is inserted, or overwritten only when its hold has passed;
  // PostgreSQL re-checks the WHERE against the latest committed version after waiting for a writer.
  claimPair: new Statement(`
    INSERT INTO pair_holds (routable_number, from_number, lease_uid, hold_until) VALUES (:number, :from, :uid, :hold)
    ON CONFLICT (routable_number, from_number) DO UPDATE SET lease_uid = excluded.lease_uid, hold_until = excluded.hold_until
    WHERE pair_holds.hold_until <= :now`),
  insertLease: new Statement(`
    INSERT INTO leases (uid, org_id, country, routable_number, from_number, to_number, call_id, transaction_id, provider,
      created_at, expires_at, consumed_at, hold_until)
    VALUES (:uid, :org, :country, :number, :from, :to, :call, :txn, :provider, :now, :expires, NULL, :hold)`),
  markNumberLeased: new Statement(`UPDATE pool_numbers SET last_leased_at = :now WHERE number = :number`),
  earliestRelease: new Statement(`
    SELECT min(h.hold_until) AS earliest
    FROM pool_numbers p JOIN pair_holds h ON h.routable_number = p.number AND h.from_number = :from
    WHERE p.country = :country AND p.state = 'active' AND h.hold_until > :now`),
  consumeLease: new Statement(`
    UPDATE leases SET
      consumed_at = CASE WHEN created_at > :now THEN created_at ELSE :now END,
      hold_until = CASE WHEN created_at > :now THEN created_at + :cooldown ELSE :now + :cooldown END
    WHERE routable_number = :number AND from_number = :from AND ${LIVE}
    RETURNING *`),
  shortenPairHold: new Statement(`
    UPDATE pair_holds SET hold_until = :hold
    WHERE routable_number = :number AND from_number = :from AND lease_uid = :uid`),
  latestLease: new Statement(`
    SELECT * FROM leases WHERE routable_number = :number AND from_number = :from ORDER BY expires_at DESC LIMIT 1`),
  listLive: new Statement(`SELECT * FROM leases WHERE ${LIVE} ORDER BY expires_at, uid`),
  listLiveOfOrg: new Statement(`SELECT * FROM leases WHERE org_id = :org AND ${LIVE} ORDER BY expires_at, uid`),
  poolSizes: new Statement(`
    SELECT p.country, count(n.number) AS numbers, coalesce(sum(CASE WHEN n.state = 'active' THEN 1 ELSE 0 END), 0) AS active
    FROM pools p LEFT JOIN pool_numbers n ON n.country = p.country
    GROUP BY p.country ORDER BY p.country`),
  liveByCountry: new Statement(`
    SELECT country, count(*) AS live, count(DISTINCT routable_number) AS busy FROM leases WHERE ${LIVE} GROUP BY country`),
  // Sweeps delete in batches of SWEEP_BATCH. The outer condition is re-checked by PostgreSQL against a
  // row a reservation has just re-claimed, so a fresh hold or key is never deleted.
  sweepLeases: new Statement(`
    DELETE FROM leases WHERE expires_at <= :cutoff AND uid IN
      (SELECT uid FROM leases WHERE expires_at <= :cutoff LIMIT ${SWEEP_BATCH})`),
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

const MAX_BATCH = 128;
const SAVEPOINT = CompiledQuery.raw('savepoint lease_job');
const RELEASE = CompiledQuery.raw('release lease_job');
const ROLLBACK_TO = CompiledQuery.raw('rollback to lease_job');

/**
 * Group commit for SQLite. Transactions requested in one turn of the event loop are run one after
 * another inside a single database transaction, each in a savepoint, and their results released after
 * the one COMMIT. SQLite serialises writers anyway, and the COMMIT (appending the touched pages to the
 * WAL) is most of a small write transaction's cost, so sharing it multiplies throughput (chosen for
 * speed). Durability is unchanged: nobody hears of a result before its commit.
 */
class GroupCommit {
  private queue: Job[] = [];
  private scheduled = false;

  constructor(private readonly store: KyselyStore) {}

  run<T>(fn: (tx: LeaseStore) => Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.queue.push({ fn, resolve: resolve as (value: unknown) => void, reject });
      if (!this.scheduled) {
        this.scheduled = true;
        // setImmediate, not a microtask: requests read from sockets in this poll phase join the batch.
        setImmediate(() => void this.flush());
      }
    });
  }

  private async flush(): Promise<void> {
    // Bounded so one batch never holds the write lock (and delays its first member) for long.
    const batch = this.queue.splice(0, MAX_BATCH);
    this.scheduled = this.queue.length > 0;
    if (this.scheduled) setImmediate(() => void this.flush());
    const outcomes: { ok: boolean; value: unknown }[] = [];
    try {
      await this.store.transaction(async (tx) => {
        const kysely = (tx as KyselyStore).executor;
        const leases = new KyselyLeaseStore(tx as KyselyStore);
        for (const job of batch) {
          await kysely.executeQuery(SAVEPOINT);
          try {
            outcomes.push({ ok: true, value: await job.fn(leases) });
          } catch (error) {
            await kysely.executeQuery(ROLLBACK_TO);
            outcomes.push({ ok: false, value: error });
          }
          await kysely.executeQuery(RELEASE);
        }
      });
    } catch (error) {
      for (const job of batch) job.reject(error);
      return;
    }
    batch.forEach((job, i) => {
      const outcome = outcomes[i]!;
      if (outcome.ok) job.resolve(outcome.value);
      else job.reject(outcome.value);
    });
  }
}

/** The LeaseStore on the KyselyStore's database (SQLite or PostgreSQL). */
export class KyselyLeaseStore implements LeaseStore {
  readonly dialect: Dialect;
  private readonly groupCommit: GroupCommit | null;

  constructor(readonly store: KyselyStore) {
    this.dialect = store.dialect;
    this.groupCommit = store.dialect === 'sqlite' && !store.executor.isTransaction ? new GroupCommit(store) : null;
  }

  private get db(): LeaseDb {
    return this.store.executor as unknown as LeaseDb;
  }

  private async rows<R>(stmt: Statement, params: Record<string, unknown>): Promise<R[]> {
    return (await this.db.executeQuery<R>(stmt.compile(this.dialect, params))).rows;
  }

  private async changes(stmt: Statement, params: Record<string, unknown>): Promise<number> {
    return Number((await this.db.executeQuery(stmt.compile(this.dialect, params))).numAffectedRows ?? 0n);
  }

  transaction<T>(fn: (tx: LeaseStore) => Promise<T>): Promise<T> {
    if (this.groupCommit) return this.groupCommit.run(fn);
    return this.store.transaction((tx) => fn(new KyselyLeaseStore(tx as KyselyStore)));
  }

  async claimIdempotencyKey(orgId: string, key: string, requestHash: string, now: number, expiresAt: number): Promise<boolean> {
    return (await this.changes(SQL.claimIdempotencyKey, { org: orgId, key, hash: requestHash, now, expires: expiresAt })) > 0;
  }

  async getIdempotencyRecord(orgId: string, key: string): Promise<IdempotencyRecord | null> {
    type Row = LeasesTable & { request_hash: string; lease_uid: string | null; handle_number: string | null; lease_expires_at: number | null };
    const [r] = await this.rows<Row>(SQL.getIdempotencyRecord, { org: orgId, key });
    if (!r) return null;
    return {
      requestHash: r.request_hash,
      leaseUid: r.lease_uid,
      routableNumber: r.handle_number,
      leaseExpiresAt: numOrNull(r.lease_expires_at),
      lease: r.uid === null ? null : toLease(r),
    };
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

  async pickNumber(country: string, fromNumber: string, now: number): Promise<string | null> {
    const params = { country, from: fromNumber, now };
    if (this.dialect === 'postgres') {
      const [locked] = await this.rows<{ number: string }>(SQL.pickNumberSkipLocked, params);
      if (locked) return locked.number;
    }
    const [r] = await this.rows<{ number: string }>(SQL.pickNumber, params);
    return r?.number ?? null;
  }

  async claimPair(routableNumber: string, fromNumber: string, leaseUid: string, holdUntil: number, now: number): Promise<boolean> {
    return (await this.changes(SQL.claimPair, { number: routableNumber, from: fromNumber, uid: leaseUid, hold: holdUntil, now })) > 0;
  }

  async insertLease(lease: NewLease): Promise<void> {
    await this.changes(SQL.insertLease, {
      uid: lease.uid,
      org: lease.orgId,
      country: lease.country,
      number: lease.routableNumber,
      from: lease.fromNumber,
      to: lease.toNumber,
      call: lease.callId,
      txn: lease.transactionId,
      provider: lease.provider,
      now: lease.createdAt,
      expires: lease.expiresAt,
      hold: lease.holdUntil,
    });
    await this.changes(SQL.markNumberLeased, { number: lease.routableNumber, now: lease.createdAt });
  }

  async earliestRelease(country: string, fromNumber: string, now: number): Promise<number | null> {
    const [r] = await this.rows<{ earliest: unknown }>(SQL.earliestRelease, { country, from: fromNumber, now });
    return numOrNull(r?.earliest);
  }

  async consumeLease(routableNumber: string, fromNumber: string, now: number, cooldownMs: number): Promise<Lease | null> {
    const [r] = await this.rows<LeasesTable>(SQL.consumeLease, { number: routableNumber, from: fromNumber, now, cooldown: cooldownMs });
    if (!r) return null;
    await this.changes(SQL.shortenPairHold, { number: routableNumber, from: fromNumber, uid: r.uid, hold: r.hold_until });
    return toLease(r);
  }

  async latestLease(routableNumber: string, fromNumber: string): Promise<Lease | null> {
    const [r] = await this.rows<LeasesTable>(SQL.latestLease, { number: routableNumber, from: fromNumber });
    return r ? toLease(r) : null;
  }

  async listLive(now: number, orgId?: string): Promise<Lease[]> {
    const rows =
      orgId === undefined
        ? await this.rows<LeasesTable>(SQL.listLive, { now })
        : await this.rows<LeasesTable>(SQL.listLiveOfOrg, { now, org: orgId });
    return rows.map(toLease);
  }

  async countryStats(now: number): Promise<CountryLeaseStats[]> {
    const sizes = await this.rows<{ country: string; numbers: unknown; active: unknown }>(SQL.poolSizes, {});
    const live = await this.rows<{ country: string; live: unknown; busy: unknown }>(SQL.liveByCountry, { now });
    const byCountry = new Map(live.map((r) => [r.country, r]));
    return sizes.map((s) => ({
      country: s.country,
      numbers: num(s.numbers),
      activeNumbers: num(s.active),
      liveLeases: num(byCountry.get(s.country)?.live),
      busyNumbers: num(byCountry.get(s.country)?.busy),
    }));
  }

  async sweepBatch(now: number, leaseCutoff: number): Promise<SweepCounts> {
    return {
      leases: await this.changes(SQL.sweepLeases, { cutoff: leaseCutoff }),
      pairHolds: await this.changes(SQL.sweepPairHolds, { now }),
      idempotencyKeys: await this.changes(SQL.sweepIdempotencyKeys, { now }),
    };
  }
}
