import { systemClock, type Clock } from '../domain/clock.js';
import { HandoffError } from '../domain/errors.js';
import {
  cooldownMs,
  DEFAULT_COOLDOWN_SECONDS,
  DEFAULT_TTL_SECONDS,
  IDEMPOTENCY_RETENTION_MS,
  isLeaseUid,
  LEASE_UID_PREFIX,
  leaseTtlMs,
  newLeaseUid,
  retryAfterSeconds,
} from '../domain/lease-policy.js';
import {
  ReservationRaceLost,
  SWEEP_BATCH,
  type CountryLeaseStats,
  type Lease,
  type LeaseStore,
  type OneStatementOutcome,
  type SweepCounts,
} from '../store/lease-store.js';
import type { WebhookEventType } from '../domain/webhook-signature.js';
import { leaseEvent, type WebhookEventInput, type WebhookService } from './webhooks.js';

export type { Lease } from '../store/lease-store.js';

export interface LeaseServiceOptions {
  clock?: Clock;
  /** Lease lifetime in seconds (default 180, at most 180; below 1 counts as 1). */
  ttlSeconds?: number;
  /** How long a pair stays held after its lease is consumed or expires (default 10 s). */
  cooldownSeconds?: number;
  /** Retry-After when no release time is known: a pool without active numbers, a quota of 0 (default 30 s). */
  defaultRetryAfterSeconds?: number;
  /** Lease rows are kept this long after expiry for diagnostics, then swept (default 1 h). */
  leaseRetentionSeconds?: number;
  /**
   * Where lease.reserved and lease.consumed go (none when absent). With `wants` (whether an org would
   * get an event of a type), a PostgreSQL reservation of an org that wants no lease.reserved event is
   * one statement outside any transaction: one round trip instead of three.
   */
  events?: LeaseEvents;
}

export type LeaseEvents = Pick<WebhookService, 'emitIfWanted'> & { wants?: (orgId: string, type: WebhookEventType) => Promise<boolean> };

export interface ReserveInput {
  orgId: string;
  /** Pool country (ISO 3166 alpha-2); the caller has checked the pool exists. */
  country: string;
  fromNumber: string;
  toNumber: string;
  callId: string | null;
  /** transactionId, or the Idempotency-Key header when that is absent; null disables idempotency. */
  transactionId: string | null;
  provider: string | null;
  /** requestHash() of the semantic request body (domain/lease-policy.ts). */
  requestHash: string;
  /** The org's live-lease quota; null means unlimited. */
  maxLiveLeases: number | null;
}

export interface ReserveResult {
  /** True when an idempotent retry returned the lease created by an earlier request. */
  replayed: boolean;
  lease: Lease;
}

export type ResolveResult = { ok: true; lease: Lease } | { ok: false; reason: 'no_lease' | 'expired' | 'consumed' };

export interface CountryUtilisation extends CountryLeaseStats {
  /** busyNumbers / activeNumbers; 0 when there are no active numbers. */
  utilisation: number;
}

/**
 * Claims tried per reservation before giving up as exhausted. A claim loses only to a concurrent one,
 * or on SQLite to a choice of the in-memory pool index that the caller already holds (a few at most
 * before the allocation query decides).
 */
const CLAIM_ATTEMPTS = 8;

/**
 * leaseEvent() with its data built only when read: most orgs subscribe to no lease event, and the
 * event's dates cost more than the check that skips it.
 */
class LazyLeaseEvent implements WebhookEventInput {
  readonly orgId: string;
  readonly voiceCallId: string | null;
  private built: Record<string, unknown> | undefined;

  constructor(
    readonly type: 'lease.reserved' | 'lease.consumed',
    private readonly lease: Lease,
  ) {
    this.orgId = lease.orgId;
    this.voiceCallId = lease.callId;
  }

  get data(): Record<string, unknown> {
    return (this.built ??= leaseEvent(this.type, this.lease).data);
  }
}

const lazyLeaseEvent = (type: 'lease.reserved' | 'lease.consumed', lease: Lease): WebhookEventInput => new LazyLeaseEvent(type, lease);

/** The client-facing handle of a lease, as in the reserveRoutableNumber response and 409 errors. */
export function leaseHandle(lease: Pick<Lease, 'routableNumber' | 'uid' | 'expiresAt'>): { routableNumber: string; uid: string; expiresAt: string } {
  return { routableNumber: lease.routableNumber, uid: lease.uid, expiresAt: new Date(lease.expiresAt).toISOString() };
}

/**
 * Number-pool leases (SPEC §5): reservation with sharing, spreading, idempotency, quotas and cool-down,
 * and one-time resolution. Correct across instances sharing one database: every rule is decided by
 * the database inside one transaction, and expiry by comparing with the clock on every read.
 */
export class LeaseService {
  readonly ttlMs: number;
  readonly cooldownMs: number;
  private readonly clock: Clock;
  private readonly defaultRetryAfter: number;
  private readonly retentionMs: number;
  private readonly events: LeaseEvents | null;
  private statsInFlight: Promise<CountryUtilisation[]> | null = null;

  constructor(
    private readonly leases: LeaseStore,
    options: LeaseServiceOptions = {},
  ) {
    this.clock = options.clock ?? systemClock;
    this.ttlMs = leaseTtlMs(options.ttlSeconds ?? DEFAULT_TTL_SECONDS);
    this.cooldownMs = cooldownMs(options.cooldownSeconds ?? DEFAULT_COOLDOWN_SECONDS);
    this.defaultRetryAfter = options.defaultRetryAfterSeconds ?? 30;
    this.retentionMs = (options.leaseRetentionSeconds ?? 3600) * 1000;
    this.events = options.events ?? null;
  }

  /**
   * Reserves a routable number for (fromNumber → toNumber), all in one transaction.
   *
   * @throws HandoffError IDEMPOTENCY_MISMATCH (422) when transactionId was used with another body;
   *   LEASE_NOT_LIVE (409, details.handle = the original handle) when its lease was consumed or expired;
   *   QUOTA_EXCEEDED (429) when the org holds maxLiveLeases live leases; POOL_EXHAUSTED (503) when no
   *   number is free for this caller. 429 and 503 carry retryAfter (seconds).
   */
  async reserve(input: ReserveInput): Promise<ReserveResult> {
    if (this.leases.dialect === 'postgres' && input.maxLiveLeases === null && !(await this.eventWanted(input.orgId))) {
      // No event to write with the lease: one statement, committed on its own (one round trip).
      const now = this.clock.now();
      const done = await this.atOnce(this.leases, input, now).catch((error: unknown) => {
        if (error instanceof ReservationRaceLost) return null; // rolled back with its statement
        throw error;
      });
      if (done) return done;
      return this.leases.transaction((tx) => this.reserveIn(tx, input, false));
    }
    try {
      return await this.leases.transaction((tx) => this.reserveIn(tx, input, true));
    } catch (error) {
      // The one-statement reservation lost a pair claim after writing the key and its transaction was
      // rolled back: the general path decides.
      if (!(error instanceof ReservationRaceLost)) throw error;
      return this.leases.transaction((tx) => this.reserveIn(tx, input, false));
    }
  }

  /** Whether lease.reserved may have to be written with the org's lease (true when it cannot be told). */
  private async eventWanted(orgId: string): Promise<boolean> {
    if (!this.events) return false;
    return this.events.wants ? this.events.wants(orgId, 'lease.reserved') : true;
  }

  /**
   * PostgreSQL's ordinary reservation in one statement (LeaseStore.reserveAtOnce): the lease, or a
   * replay, or null when the general path must decide (no number free of locks; nothing written).
   */
  private async atOnce(tx: LeaseStore, input: ReserveInput, now: number): Promise<ReserveResult | null> {
    const expiresAt = now + this.ttlMs;
    const uidSuffix = newLeaseUid('', now).slice(LEASE_UID_PREFIX.length);
    const outcome = await tx.reserveAtOnce({
      orgId: input.orgId,
      country: input.country,
      fromNumber: input.fromNumber,
      toNumber: input.toNumber,
      callId: input.callId,
      transactionId: input.transactionId,
      provider: input.provider,
      requestHash: input.requestHash,
      createdAt: now,
      expiresAt,
      holdUntil: expiresAt + this.cooldownMs,
      keyExpiresAt: now + IDEMPOTENCY_RETENTION_MS,
      uidSuffix,
    });
    if (outcome === null || outcome.kind === 'declined') return null;
    if (outcome.kind === 'replay') return this.replay(tx, input, input.transactionId!, now);
    const lease: Lease = {
      uid: `${LEASE_UID_PREFIX}${outcome.routableNumber}${uidSuffix}`,
      orgId: input.orgId,
      country: input.country,
      routableNumber: outcome.routableNumber,
      fromNumber: input.fromNumber,
      toNumber: input.toNumber,
      callId: input.callId,
      transactionId: input.transactionId,
      provider: input.provider,
      createdAt: now,
      expiresAt,
      consumedAt: null,
    };
    if (this.events) await this.events.emitIfWanted(tx.store, lazyLeaseEvent('lease.reserved', lease));
    return { replayed: false, lease };
  }

  /** A reservation inside transaction `tx`; `atOnce` tries PostgreSQL's one-statement path first. */
  private async reserveIn(tx: LeaseStore, input: ReserveInput, atOnce: boolean): Promise<ReserveResult> {
    const now = this.clock.now();
    const key = input.transactionId;
    // Everything that can refuse is decided before the first write, so a refusal writes nothing
    // (which is what lets SQLite's group commit do without savepoints).
    if (input.maxLiveLeases !== null) {
      await tx.lockOrg(input.orgId);
      const live = await tx.orgLiveLeases(input.orgId, now);
      if (live.count >= input.maxLiveLeases) {
        // A replay is not a new lease: the quota does not apply to it.
        const replayed = key === null ? null : await this.replay(tx, input, key, now);
        if (replayed) return replayed;
        throw new HandoffError('QUOTA_EXCEEDED', `The org already holds ${live.count} live leases (quota ${input.maxLiveLeases})`, {
          retryAfter: live.earliestExpiresAt === null ? this.defaultRetryAfter : retryAfterSeconds(live.earliestExpiresAt, now),
        });
      }
    } else if (atOnce && tx.dialect === 'postgres') {
      const done = await this.atOnce(tx, input, now);
      if (done) return done;
    }

    await tx.lockCaller(input.fromNumber);
    // SQLite has one writer at a time: a key read as absent stays absent until this transaction ends,
    // so it is read first and written with the lease, and nothing is written unless a lease is.
    // PostgreSQL writes the key first instead: that insert is what serialises racing retries.
    const keyFirst = key !== null && tx.dialect === 'postgres';
    if (key !== null && !keyFirst) {
      const replayed = await this.replay(tx, input, key, now);
      if (replayed) return replayed;
    }
    const expiresAt = now + this.ttlMs;
    const holdUntil = expiresAt + this.cooldownMs;
    let keyed: Lease | null = null;
    const lost: string[] = [];
    for (let attempt = 0; attempt < CLAIM_ATTEMPTS; attempt++) {
      const routableNumber = await tx.pickNumber(input.country, input.fromNumber, now, lost);
      if (routableNumber === null) break;
      const lease: Lease = {
        uid: newLeaseUid(routableNumber, now),
        orgId: input.orgId,
        country: input.country,
        routableNumber,
        fromNumber: input.fromNumber,
        toNumber: input.toNumber,
        callId: input.callId,
        transactionId: key,
        provider: input.provider,
        createdAt: now,
        expiresAt,
        consumedAt: null,
      };
      if (keyFirst) {
        if (keyed === null) {
          // Of racing retries only one writes the key (and creates a lease); the others find its
          // record after waiting for its transaction.
          if (!(await tx.putIdempotencyKey(input.orgId, key!, input.requestHash, lease, now, now + IDEMPOTENCY_RETENTION_MS))) {
            const replayed = await this.replay(tx, input, key!, now);
            if (replayed) return replayed;
            throw new Error(`idempotency key ${key} is held by a record that cannot be read`);
          }
        } else {
          await tx.linkIdempotencyKey(input.orgId, key!, lease);
        }
        keyed = lease;
      }
      // Loses to a concurrent claim of the same pair (PostgreSQL: lockCaller makes that rare; the claim
      // stays atomic so correctness does not rest on that lock), or on SQLite when the in-memory pool
      // index chose a number this caller holds. Either way the next pickNumber skips the number.
      if (!(await tx.createLease({ ...lease, holdUntil }))) {
        lost.push(routableNumber);
        continue;
      }
      if (key !== null && !keyFirst && !(await tx.putIdempotencyKey(input.orgId, key, input.requestHash, lease, now, now + IDEMPOTENCY_RETENTION_MS))) {
        throw new Error(`idempotency key ${key} was written by a concurrent writer`); // unreachable: see keyFirst
      }
      // In the lease's transaction: the event exists if and only if the lease does.
      if (this.events) await this.events.emitIfWanted(tx.store, lazyLeaseEvent('lease.reserved', lease));
      return { replayed: false, lease };
    }
    // No number for this caller; unless a live key says this is a replay (PostgreSQL: not known yet
    // unless a key was written here, which rolls back with this transaction).
    const replayed = keyFirst && keyed === null ? await this.replay(tx, input, key!, now) : null;
    if (replayed) return replayed;
    const release = await tx.earliestRelease(input.country, input.fromNumber, now);
    throw new HandoffError('POOL_EXHAUSTED', `No number of the ${input.country} pool is free for this caller`, {
      retryAfter: release === null ? this.defaultRetryAfter : retryAfterSeconds(release, now),
    });
  }

  /**
   * A repeated transactionId: the same live lease, or 422 / 409 (see reserve); null when the key is
   * unknown or has expired (then it is a new request).
   */
  private async replay(tx: LeaseStore, input: ReserveInput, key: string, now: number): Promise<ReserveResult | null> {
    const record = await tx.getIdempotencyRecord(input.orgId, key, input.fromNumber);
    if (!record || record.expiresAt <= now) return null;
    if (record.leaseUid === null || record.routableNumber === null || record.leaseExpiresAt === null) {
      // Unreachable: a key is written with its handle.
      throw new Error(`idempotency key ${key} has no lease`);
    }
    if (record.requestHash !== input.requestHash) {
      throw new HandoffError('IDEMPOTENCY_MISMATCH', 'This transactionId was already used with a different request body');
    }
    const lease = record.lease;
    if (lease && lease.consumedAt === null && lease.expiresAt > now) return { replayed: true, lease };
    throw new HandoffError('LEASE_NOT_LIVE', 'The lease reserved under this transactionId was already consumed or has expired', {
      details: { handle: leaseHandle({ routableNumber: record.routableNumber, uid: record.leaseUid, expiresAt: record.leaseExpiresAt }) },
    });
  }

  /**
   * Consumes the live lease of (calledNumber, callerNumber) exactly once: of concurrent resolutions,
   * one gets the lease and the others 'consumed'. A lease past expiresAt never resolves, whether or
   * not a sweep has run.
   */
  async resolve(calledNumber: string, callerNumber: string): Promise<ResolveResult> {
    return this.leases.transaction(async (tx): Promise<ResolveResult> => {
      // Two attempts: if the pair's latest lease is live after a failed consume, it was committed after
      // the UPDATE took its snapshot (the previous hold had just ended), and is the one to consume.
      for (let attempt = 0; attempt < 2; attempt++) {
        const now = this.clock.now();
        const lease = await tx.consumeLease(calledNumber, callerNumber, now, this.cooldownMs);
        if (lease) {
          if (this.events) await this.events.emitIfWanted(tx.store, lazyLeaseEvent('lease.consumed', lease));
          return { ok: true, lease };
        }
        const latest = await tx.latestLease(calledNumber, callerNumber);
        if (!latest) return { ok: false, reason: 'no_lease' };
        if (latest.consumedAt !== null) return { ok: false, reason: 'consumed' };
        if (latest.expiresAt <= now) return { ok: false, reason: 'expired' };
      }
      return { ok: false, reason: 'consumed' };
    });
  }

  /**
   * The live lease of (calledNumber, callerNumber) without consuming it, or null: lets the SIP
   * ingress check the lease's org (trunk allow-list) before {@link resolve} spends the lease.
   */
  async peek(calledNumber: string, callerNumber: string): Promise<Lease | null> {
    const latest = await this.leases.transaction((tx) => tx.latestLease(calledNumber, callerNumber));
    return latest && latest.consumedAt === null && latest.expiresAt > this.clock.now() ? latest : null;
  }

  /** Tells the allocation that pool numbers were added, drained, activated or removed. */
  poolsChanged(): void {
    this.leases.poolsChanged();
  }

  /**
   * A page of the live leases (all or one org's), soonest expiry first, and how many are live in all:
   * at most `limit`, after the cursor `after` (a page's `next`); `next` is null on the last page.
   */
  async listLive(opts: { orgId?: string; limit?: number; after?: string } = {}): Promise<{ leases: Lease[]; total: number; next: string | null }> {
    const now = this.clock.now();
    const after = opts.after === undefined ? undefined : parseLeaseCursor(opts.after);
    const limit = opts.limit;
    const [leases, total] = await Promise.all([
      this.leases.listLive(now, { ...(opts.orgId !== undefined ? { orgId: opts.orgId } : {}), ...(limit !== undefined ? { limit: limit + 1 } : {}), ...(after ? { after } : {}) }),
      this.leases.countLive(now, opts.orgId !== undefined ? { orgId: opts.orgId } : {}),
    ]);
    if (limit === undefined || leases.length <= limit) return { leases, total, next: null };
    leases.length = limit;
    const last = leases[limit - 1]!;
    return { leases, total, next: `${last.expiresAt}.${last.uid}` };
  }

  /** How many live leases a number holds. */
  liveOnNumber(routableNumber: string): Promise<number> {
    return this.leases.countLive(this.clock.now(), { routableNumber });
  }

  /**
   * Per pool country: numbers, live leases and utilisation (share of active numbers with a live lease).
   * Callers asking while a count runs share it: its cost grows with the live leases, and scrapers and
   * operators asking at once should not multiply it.
   */
  stats(): Promise<CountryUtilisation[]> {
    this.statsInFlight ??= this.countStats().finally(() => {
      this.statsInFlight = null;
    });
    return this.statsInFlight;
  }

  private async countStats(): Promise<CountryUtilisation[]> {
    const countries = await this.leases.countryStats(this.clock.now());
    return countries.map((c) => ({ ...c, utilisation: c.activeNumbers === 0 ? 0 : c.busyNumbers / c.activeNumbers }));
  }

  /**
   * Tidies storage: lease rows expired longer than the retention, ended pair holds and expired
   * idempotency keys, in batches that yield to other work. Nothing depends on it for correctness.
   */
  async sweep(): Promise<SweepCounts> {
    const total: SweepCounts = { leases: 0, pairHolds: 0, idempotencyKeys: 0 };
    for (;;) {
      const now = this.clock.now();
      const n = await this.leases.sweepBatch(now, now - this.retentionMs);
      total.leases += n.leases;
      total.pairHolds += n.pairHolds;
      total.idempotencyKeys += n.idempotencyKeys;
      if (n.leases < SWEEP_BATCH && n.pairHolds < SWEEP_BATCH && n.idempotencyKeys < SWEEP_BATCH) return total;
      await new Promise((resolve) => setImmediate(resolve));
    }
  }
}

/** A listing cursor (`<expiresAt ms>.<uid>`, as listLive's `next` gives it); INVALID_FIELD otherwise. */
function parseLeaseCursor(cursor: string): { expiresAt: number; uid: string } {
  const dot = cursor.indexOf('.');
  const expiresAt = dot > 0 && dot <= 16 && /^\d+$/.test(cursor.slice(0, dot)) ? Number(cursor.slice(0, dot)) : NaN;
  const uid = cursor.slice(dot + 1);
  if (Number.isNaN(expiresAt) || !isLeaseUid(uid)) {
    throw new HandoffError('INVALID_FIELD', 'after: not a cursor of this listing (use its "next")', { details: { field: 'after' } });
  }
  return { expiresAt, uid };
}
