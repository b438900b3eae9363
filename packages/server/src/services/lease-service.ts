import { systemClock, type Clock } from '../domain/clock.js';
import { HandoffError } from '../domain/errors.js';
import {
  cooldownMs,
  DEFAULT_COOLDOWN_SECONDS,
  DEFAULT_TTL_SECONDS,
  IDEMPOTENCY_RETENTION_MS,
  leaseTtlMs,
  newLeaseUid,
  retryAfterSeconds,
} from '../domain/lease-policy.js';
import { SWEEP_BATCH, type CountryLeaseStats, type Lease, type LeaseStore, type SweepCounts } from '../store/lease-store.js';
import { leaseEvent, type WebhookService } from './webhooks.js';

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
  /** Where lease.reserved and lease.consumed go (none when absent). */
  events?: Pick<WebhookService, 'emitIfWanted'>;
}

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

/** Claims tried per reservation before giving up as exhausted; a claim only loses to a concurrent one. */
const CLAIM_ATTEMPTS = 4;

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
  private readonly events: Pick<WebhookService, 'emitIfWanted'> | null;

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
    return this.leases.transaction(async (tx): Promise<ReserveResult> => {
      const now = this.clock.now();
      const key = input.transactionId;
      if (key !== null && !(await tx.claimIdempotencyKey(input.orgId, key, input.requestHash, now, now + IDEMPOTENCY_RETENTION_MS))) {
        return this.replay(tx, input, key, now);
      }
      if (input.maxLiveLeases !== null) await this.checkQuota(tx, input.orgId, input.maxLiveLeases, now);

      await tx.lockCaller(input.fromNumber);
      const expiresAt = now + this.ttlMs;
      const holdUntil = expiresAt + this.cooldownMs;
      for (let attempt = 0; attempt < CLAIM_ATTEMPTS; attempt++) {
        const routableNumber = await tx.pickNumber(input.country, input.fromNumber, now);
        if (routableNumber === null) break;
        const uid = newLeaseUid(routableNumber, now);
        // Could lose only to a concurrent claim of the same pair, which lockCaller (PostgreSQL) and
        // serialised writers (SQLite) rule out; the claim stays atomic so correctness does not rest on
        // that lock. A lost claim has committed by then, so the next pickNumber skips the number.
        if (!(await tx.claimPair(routableNumber, input.fromNumber, uid, holdUntil, now))) continue;
        const lease: Lease = {
          uid,
          orgId: input.orgId,
          country: input.country,
          routableNumber,
          fromNumber: input.fromNumber,
          toNumber: input.toNumber,
          callId: input.callId,
          transactionId: input.transactionId,
          provider: input.provider,
          createdAt: now,
          expiresAt,
          consumedAt: null,
        };
        await tx.insertLease({ ...lease, holdUntil });
        if (key !== null) await tx.linkIdempotencyKey(input.orgId, key, lease);
        // In the lease's transaction: the event exists if and only if the lease does.
        await this.events?.emitIfWanted(tx.store, leaseEvent('lease.reserved', lease));
        return { replayed: false, lease };
      }
      const release = await tx.earliestRelease(input.country, input.fromNumber, now);
      throw new HandoffError('POOL_EXHAUSTED', `No number of the ${input.country} pool is free for this caller`, {
        retryAfter: release === null ? this.defaultRetryAfter : retryAfterSeconds(release, now),
      });
    });
  }

  /** A repeated transactionId: the same live lease, or 422 / 409 (see reserve). */
  private async replay(tx: LeaseStore, input: ReserveInput, key: string, now: number): Promise<ReserveResult> {
    const record = await tx.getIdempotencyRecord(input.orgId, key);
    if (!record || record.leaseUid === null || record.routableNumber === null || record.leaseExpiresAt === null) {
      // Unreachable while the key row and its link are written in one transaction.
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

  private async checkQuota(tx: LeaseStore, orgId: string, max: number, now: number): Promise<void> {
    await tx.lockOrg(orgId);
    const live = await tx.orgLiveLeases(orgId, now);
    if (live.count < max) return;
    throw new HandoffError('QUOTA_EXCEEDED', `The org already holds ${live.count} live leases (quota ${max})`, {
      retryAfter: live.earliestExpiresAt === null ? this.defaultRetryAfter : retryAfterSeconds(live.earliestExpiresAt, now),
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
          await this.events?.emitIfWanted(tx.store, leaseEvent('lease.consumed', lease));
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

  /** Live leases (all orgs, or one), soonest expiry first. */
  listLive(orgId?: string): Promise<Lease[]> {
    return this.leases.listLive(this.clock.now(), orgId);
  }

  /** Per pool country: numbers, live leases and utilisation (share of active numbers with a live lease). */
  async stats(): Promise<CountryUtilisation[]> {
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
