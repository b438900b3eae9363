import { randomBytes, randomUUID } from 'node:crypto';
import { pino, type Logger } from 'pino';
import type { Clock } from '../domain/clock.js';
import { HandoffError } from '../domain/errors.js';
import { normalizeSfId, ORG_PREFIX, toId18, VOICE_CALL_PREFIX } from '../domain/ids.js';
import { SIGNATURE_HEADER, signWebhook, webhookUrlProblem, type WebhookEvent, type WebhookEventType } from '../domain/webhook-signature.js';
import type { Metrics } from '../metrics.js';
import type { Lease } from '../store/lease-store.js';
import type { Store } from '../store/store.js';
import {
  normalizeEventFilter,
  WebhookStore,
  type DeliveryFilter,
  type DeliveryStatus,
  type NewWebhookEvent,
  type WebhookDelivery,
  type WebhookEventFilter,
  type WebhookSubscription,
} from '../store/webhook-store.js';

/** What the rest of the code emits; see {@link WebhookService.emit}. */
export interface WebhookEventInput {
  /** 15- or 18-char org ID. */
  orgId: string;
  type: WebhookEventType;
  /** 15- or 18-char VoiceCall ID the event is about: its events are delivered in order. */
  voiceCallId?: string | null;
  data: Record<string, unknown>;
}

/** Retry policy of deliveries. */
export interface WebhookPolicy {
  /** Attempts before a delivery is given up as failed (default 15, about an hour of retries). */
  maxAttempts: number;
  /** Time a receiver has to answer one attempt (default 10 s). */
  attemptTimeoutMs: number;
  /** Wait after the first failed attempt; doubled after each further one (default 1 s). */
  retryBaseMs: number;
  /** Longest wait between attempts (default 10 min). */
  retryMaxMs: number;
}

export interface WebhookOptions extends Partial<WebhookPolicy> {
  logger?: Logger;
  /** How often the dispatcher looks for work it was not woken for, e.g. emitted by another instance (default 1 s). */
  pollMs?: number;
  /** Deliveries attempted at once per instance (default 16). */
  concurrency?: number;
  /** How often expired leases are looked for and old deliveries purged (default 5 s). */
  maintenanceMs?: number;
  /** Delivered and failed rows are kept this long for the admin API (default 7 days). */
  retentionMs?: number;
}

export const DEFAULT_WEBHOOK_POLICY: WebhookPolicy = { maxAttempts: 15, attemptTimeoutMs: 10_000, retryBaseMs: 1000, retryMaxMs: 600_000 };

/** Emitters wake the dispatcher this long after an in-transaction emit, so the transaction has committed. */
const AFTER_COMMIT_WAKE_MS = 20;
/** How long emitAfterCommit trusts its knowledge of an org's subscriptions. */
const SUBSCRIPTION_CACHE_MS = 1000;
/** A claim outlives the attempt's timeout by this much; a crashed instance's claims lapse after it. */
const CLAIM_MARGIN_MS = 5000;
const EXPIRY_BATCH = 500;
const PURGE_BATCH = 1000;
const PURGE_EVERY_MS = 60_000;

/**
 * Wait before the attempt after `attempts` failed ones: base, 2 × base, 4 × base ... capped.
 *
 * @example
 * retryDelayMs(3, DEFAULT_WEBHOOK_POLICY); // 4000
 */
export function retryDelayMs(attempts: number, policy: Pick<WebhookPolicy, 'retryBaseMs' | 'retryMaxMs'>): number {
  return Math.min(policy.retryMaxMs, policy.retryBaseMs * 2 ** Math.min(Math.max(attempts - 1, 0), 40));
}

/** The event input of a lease state change; `voiceCallId` is the call the partner reserved for. */
export function leaseEvent(type: 'lease.reserved' | 'lease.consumed' | 'lease.expired', lease: Lease): WebhookEventInput {
  const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());
  return {
    orgId: lease.orgId,
    type,
    voiceCallId: lease.callId,
    data: {
      uid: lease.uid,
      country: lease.country,
      routableNumber: lease.routableNumber,
      fromNumber: lease.fromNumber,
      toNumber: lease.toNumber,
      transactionId: lease.transactionId,
      provider: lease.provider,
      reservedAt: iso(lease.createdAt),
      expiresAt: iso(lease.expiresAt),
      consumedAt: iso(lease.consumedAt),
    },
  };
}

/** The admin API view of a subscription: everything but the secret. */
export function subscriptionView(s: WebhookSubscription): Record<string, unknown> {
  return {
    id: s.id,
    orgId: toId18(s.orgId),
    url: s.url,
    events: s.events,
    createdAt: new Date(s.createdAt).toISOString(),
    updatedAt: new Date(s.updatedAt).toISOString(),
  };
}

/** The admin API view of a delivery. */
export function deliveryView(d: WebhookDelivery): Record<string, unknown> {
  return {
    eventId: d.eventId,
    eventType: d.eventType,
    orgId: toId18(d.orgId),
    subscriptionId: d.subscriptionId,
    voiceCallId: d.voiceCallId === null ? null : toId18(d.voiceCallId),
    status: d.status,
    attempts: d.attempts,
    lastStatusCode: d.lastStatusCode,
    lastError: d.lastError,
    nextAttemptAt: d.status === 'pending' ? new Date(d.nextAttemptAt).toISOString() : null,
    createdAt: new Date(d.createdAt).toISOString(),
    completedAt: d.completedAt === null ? null : new Date(d.completedAt).toISOString(),
  };
}

function requireId(value: string, prefix: string, what: string): string {
  const id = normalizeSfId(value, prefix);
  if (id === null) throw new TypeError(`webhook event: ${what} must be a 15- or 18-character ID (got "${value}")`);
  return id;
}

/**
 * Webhooks (SPEC §7): subscriptions, emission into a durable outbox, and the dispatcher that
 * delivers it. Delivery is at least once, in order per (subscription, call), across restarts and
 * instances.
 *
 * @example
 * // Inside the transaction of the state change, so the event exists iff the change committed:
 * await store.transaction(async (tx) => {
 *   await tx.updateVoiceCall(orgId, id, { status: 'Routed' }, now);
 *   await webhooks.emit(tx, { orgId, type: 'call.routed', voiceCallId: id, data: { agent: 'support-bot' } });
 * });
 * // After a change committed elsewhere (never throws; a failure is logged and counted):
 * await webhooks.emitAfterCommit({ orgId, type: 'call.ended', voiceCallId: id, data: { reason: 'bye' } });
 */
export class WebhookService {
  readonly policy: WebhookPolicy;
  private readonly logger: Logger;
  private dispatcher: WebhookDispatcher | null = null;
  private queued: { row: NewWebhookEvent; resolve: () => void; reject: (err: unknown) => void }[] = [];
  private readonly filters = new Map<string, { at: number; events: Set<WebhookEventFilter> }>();

  constructor(
    private readonly store: Store,
    private readonly clock: Clock,
    private readonly metrics: Metrics,
    private readonly options: WebhookOptions = {},
  ) {
    this.policy = {
      maxAttempts: options.maxAttempts ?? DEFAULT_WEBHOOK_POLICY.maxAttempts,
      attemptTimeoutMs: options.attemptTimeoutMs ?? DEFAULT_WEBHOOK_POLICY.attemptTimeoutMs,
      retryBaseMs: options.retryBaseMs ?? DEFAULT_WEBHOOK_POLICY.retryBaseMs,
      retryMaxMs: options.retryMaxMs ?? DEFAULT_WEBHOOK_POLICY.retryMaxMs,
    };
    this.logger = (options.logger ?? pino({ level: 'silent' })).child({ component: 'webhooks' });
  }

  /**
   * Writes the event into the outbox through `tx`, one row per subscription of the org that listens
   * to its type. Pass the transaction of the state change the event reports: then the event exists
   * if and only if the change committed. Returns the event (also when no subscription wants it).
   */
  async emit(tx: Store, input: WebhookEventInput): Promise<WebhookEvent> {
    const hooks = WebhookStore.of(tx);
    const row = this.outboxRow(input);
    if ((await hooks.insertEvent(row)) > 0) this.dispatcher?.wake(hooks.inTransaction ? AFTER_COMMIT_WAKE_MS : 0);
    return row.event;
  }

  /**
   * {@link emit} inside `tx`, but only when a subscription of the org wants the type (from the
   * subscription cache, read through `tx` when stale): the hot lease path of an org without
   * subscriptions then writes nothing more.
   */
  async emitIfWanted(tx: Store, input: WebhookEventInput): Promise<void> {
    if (await this.wants(input.orgId, input.type, tx)) await this.emit(tx, input);
  }

  /**
   * Emits outside any transaction, for a state change that has already committed. A crash between
   * that commit and this write loses the event, so prefer {@link emit} inside the transaction where
   * one is at hand. Never throws: a failure is logged and counted (handoff_webhook_emit_failures_total)
   * and yields null, because the change it reports stands either way.
   */
  async emitAfterCommit(input: WebhookEventInput): Promise<WebhookEvent | null> {
    try {
      const row = this.outboxRow(input);
      if (!(await this.wants(row.orgId, row.type))) return row.event;
      if (this.store.dialect === 'sqlite') await this.groupWrite(row);
      else if ((await WebhookStore.of(this.store).insertEvent(row)) > 0) this.dispatcher?.wake(0);
      return row.event;
    } catch (err) {
      this.metrics.webhookEmitFailures.inc({ type: input.type });
      this.logger.error({ err, eventType: input.type, orgId: input.orgId, voiceCallId: input.voiceCallId ?? null }, 'webhook event lost: outbox write failed');
      return null;
    }
  }

  /**
   * Whether any subscription of the org wants this type, from a cache of at most SUBSCRIPTION_CACHE_MS
   * (dropped at once when this process changes a subscription): after-commit emits of orgs without
   * subscriptions then cost no write. A subscription added by another process applies to them
   * within that time. Real time, not the injected clock: this is freshness, not a rule.
   */
  async wants(orgId: string, type: WebhookEventType, via: Store = this.store): Promise<boolean> {
    orgId = requireId(orgId, ORG_PREFIX, 'orgId');
    let entry = this.filters.get(orgId);
    if (!entry || Date.now() - entry.at >= SUBSCRIPTION_CACHE_MS) {
      // Through the caller's transaction when there is one: on SQLite its connection is the only one.
      const subs = await WebhookStore.of(via).listSubscriptions(orgId);
      entry = { at: Date.now(), events: new Set(subs.flatMap((s) => s.events)) };
      this.filters.set(orgId, entry);
    }
    return entry.events.has('*') || entry.events.has(type);
  }

  /** The event and its outbox row; throws TypeError on malformed IDs (a caller's bug). */
  private outboxRow(input: WebhookEventInput): NewWebhookEvent & { event: WebhookEvent } {
    const orgId = requireId(input.orgId, ORG_PREFIX, 'orgId');
    const voiceCallId = input.voiceCallId == null ? null : requireId(input.voiceCallId, VOICE_CALL_PREFIX, 'voiceCallId');
    const now = this.clock.now();
    const event: WebhookEvent = {
      id: randomUUID(),
      type: input.type,
      createdAt: new Date(now).toISOString(),
      orgId: toId18(orgId),
      voiceCallId: voiceCallId === null ? null : toId18(voiceCallId),
      data: input.data,
    };
    return { event, eventId: event.id, orgId, type: event.type, voiceCallId, payload: JSON.stringify(event), now };
  }

  /**
   * SQLite: the after-commit writes of one event-loop turn share one transaction. A commit per
   * reservation on top of the lease group commit cost about 30% of reserveRoutableNumber's
   * throughput; shared, it is one commit per group (chosen for speed, as in lease-store.ts).
   */
  private groupWrite(row: NewWebhookEvent): Promise<void> {
    return new Promise((resolve, reject) => {
      this.queued.push({ row, resolve, reject });
      if (this.queued.length === 1) setImmediate(() => void this.flushQueued());
    });
  }

  private async flushQueued(): Promise<void> {
    const batch = this.queued;
    this.queued = [];
    try {
      const rows = await this.store.transaction(async (tx) => {
        let n = 0;
        for (const q of batch) n += await WebhookStore.of(tx).insertEvent(q.row);
        return n;
      });
      if (rows > 0) this.dispatcher?.wake(0);
      for (const q of batch) q.resolve();
    } catch (err) {
      for (const q of batch) q.reject(err);
    }
  }

  /**
   * Emits lease.expired for every lease that expired unconsumed and was not reported yet, marking
   * each in the same transaction, so each is reported exactly once across instances. Returns how many.
   */
  async emitExpiredLeases(): Promise<number> {
    let total = 0;
    for (;;) {
      const now = this.clock.now();
      if (!(await WebhookStore.of(this.store).hasUnnotifiedExpiredLeases(now))) return total;
      const n = await this.store.transaction(async (tx) => {
        const leases = await WebhookStore.of(tx).markExpiredLeases(now, EXPIRY_BATCH);
        for (const lease of leases) await this.emit(tx, leaseEvent('lease.expired', lease));
        return leases.length;
      });
      total += n;
      if (n < EXPIRY_BATCH) return total;
    }
  }

  async listSubscriptions(orgIdRaw: string): Promise<WebhookSubscription[]> {
    return WebhookStore.of(this.store).listSubscriptions(await this.requireOrg(orgIdRaw));
  }

  /**
   * Adds a subscription (admin API). Without a secret one is generated; it is returned here and
   * never again. CONFLICT when the org already has this id.
   */
  async createSubscription(
    orgIdRaw: string,
    input: { id?: string | undefined; url: string; secret?: string | undefined; events?: WebhookEventFilter[] | undefined },
  ): Promise<{ subscription: WebhookSubscription; generatedSecret: string | null }> {
    const orgId = await this.requireOrg(orgIdRaw);
    const problem = webhookUrlProblem(input.url);
    if (problem) throw new HandoffError('INVALID_FIELD', `url: ${problem}`, { details: { field: 'url' } });
    const generatedSecret = input.secret === undefined ? `whsec_${randomBytes(24).toString('base64url')}` : null;
    const sub = {
      orgId,
      id: input.id ?? `wh_${randomBytes(6).toString('hex')}`,
      url: input.url,
      secret: input.secret ?? generatedSecret!,
      events: normalizeEventFilter(input.events ?? ['*']),
    };
    const hooks = WebhookStore.of(this.store);
    if (!(await hooks.insertSubscription(sub, this.clock.now()))) {
      throw new HandoffError('CONFLICT', `The org already has a webhook subscription ${sub.id}`);
    }
    this.filters.delete(orgId);
    return { subscription: (await hooks.getSubscription(orgId, sub.id))!, generatedSecret };
  }

  /** Deletes a subscription; its pending deliveries are given up. NOT_FOUND when it does not exist. */
  async deleteSubscription(orgIdRaw: string, id: string): Promise<{ cancelledDeliveries: number }> {
    const orgId = await this.requireOrg(orgIdRaw);
    const r = await this.store.transaction((tx) => WebhookStore.of(tx).deleteSubscription(orgId, id, this.clock.now()));
    this.filters.delete(orgId);
    if (!r) throw new HandoffError('NOT_FOUND', `No webhook subscription ${id} in this org`);
    return { cancelledDeliveries: r.cancelled };
  }

  /** Deliveries, newest first; `orgId` and `voiceCallId` may be 15 or 18 characters. */
  async listDeliveries(filter: { orgId?: string; status?: DeliveryStatus; subscriptionId?: string; voiceCallId?: string; limit?: number }): Promise<WebhookDelivery[]> {
    const f: DeliveryFilter = { limit: filter.limit ?? 100 };
    if (filter.orgId !== undefined) f.orgId = normalizeSfId(filter.orgId, ORG_PREFIX) ?? invalidField('orgId', 'must be a 15- or 18-character org ID');
    if (filter.voiceCallId !== undefined) f.voiceCallId = normalizeSfId(filter.voiceCallId, VOICE_CALL_PREFIX) ?? invalidField('voiceCallId', 'must be a 15- or 18-character VoiceCall ID');
    if (filter.status !== undefined) f.status = filter.status;
    if (filter.subscriptionId !== undefined) f.subscriptionId = filter.subscriptionId;
    return WebhookStore.of(this.store).listDeliveries(f);
  }

  /** Starts delivering from the outbox in this process (the service does; the CLI does not). */
  start(): void {
    if (this.dispatcher) return;
    this.dispatcher = new WebhookDispatcher(this, WebhookStore.of(this.store), this.clock, this.metrics, this.logger, this.policy, this.options);
    this.dispatcher.start();
  }

  /** Stops delivering: attempts in flight are aborted and their claims released (not counted as attempts). */
  async stop(): Promise<void> {
    const d = this.dispatcher;
    this.dispatcher = null;
    await d?.stop();
  }

  private async requireOrg(orgIdRaw: string): Promise<string> {
    const orgId = normalizeSfId(orgIdRaw, ORG_PREFIX) ?? invalidField('orgId', 'must be a 15- or 18-character org ID');
    if (!(await this.store.getOrg(orgId))) throw new HandoffError('ORG_NOT_FOUND', `No org ${orgIdRaw}`);
    return orgId;
  }
}

function invalidField(field: string, message: string): never {
  throw new HandoffError('INVALID_FIELD', `${field}: ${message}`, { details: { field } });
}

/** A short, secret-free reason of a failed fetch. */
function fetchFailure(err: unknown, timeoutMs: number): string {
  const e = err as { name?: string; message?: string; cause?: { code?: string; message?: string } };
  if (e.name === 'TimeoutError') return `timeout after ${timeoutMs} ms`;
  return String(e.cause?.code ?? e.cause?.message ?? e.message ?? err).slice(0, 200);
}

/**
 * Delivers the outbox: claims due rows (woken on emit, else polling), POSTs each signed, and records
 * the outcome. At most `concurrency` attempts run at once, and at most one per (subscription, call),
 * which is what keeps a call's events in order.
 */
class WebhookDispatcher {
  /** Identifies this process's claims. */
  private readonly owner = randomUUID();
  private readonly abort = new AbortController();
  private readonly inFlight = new Map<string, Promise<void>>();
  private readonly pollMs: number;
  private readonly concurrency: number;
  private readonly retentionMs: number;
  private readonly maintenanceMs: number;
  private running = false;
  private loopDone: Promise<void> = Promise.resolve();
  private woken = false;
  private endSleep: (() => void) | null = null;
  private delayedWake: NodeJS.Timeout | null = null;
  private maintenanceTimer: NodeJS.Timeout | null = null;
  private maintenance: Promise<void> | null = null;
  private lastPurge = 0;

  constructor(
    private readonly service: WebhookService,
    private readonly hooks: WebhookStore,
    private readonly clock: Clock,
    private readonly metrics: Metrics,
    private readonly logger: Logger,
    private readonly policy: WebhookPolicy,
    options: WebhookOptions,
  ) {
    this.pollMs = options.pollMs ?? 1000;
    this.concurrency = options.concurrency ?? 16;
    this.retentionMs = options.retentionMs ?? 7 * 24 * 3600 * 1000;
    this.maintenanceMs = options.maintenanceMs ?? 5000;
  }

  start(): void {
    this.running = true;
    this.loopDone = this.loop();
    this.maintenanceTimer = setInterval(() => this.maintain(), this.maintenanceMs);
    this.maintenanceTimer.unref();
    this.maintain();
  }

  async stop(): Promise<void> {
    this.running = false;
    if (this.maintenanceTimer) clearInterval(this.maintenanceTimer);
    if (this.delayedWake) clearTimeout(this.delayedWake);
    this.abort.abort();
    this.poke();
    await this.loopDone;
    await Promise.all([...this.inFlight.values(), this.maintenance]);
  }

  /** Looks for work now, or after `delayMs` (an emitter's transaction still has to commit). */
  wake(delayMs: number): void {
    if (!this.running) return;
    if (delayMs <= 0) return this.poke();
    if (this.delayedWake) return;
    this.delayedWake = setTimeout(() => {
      this.delayedWake = null;
      this.poke();
    }, delayMs);
    this.delayedWake.unref();
  }

  private poke(): void {
    this.woken = true;
    this.endSleep?.();
  }

  private sleep(ms: number): Promise<void> {
    if (this.woken || !this.running) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const timer = setTimeout(() => this.endSleep?.(), ms);
      timer.unref();
      this.endSleep = () => {
        this.endSleep = null;
        clearTimeout(timer);
        resolve();
      };
    });
  }

  private async loop(): Promise<void> {
    while (this.running) {
      this.woken = false;
      let delay = this.pollMs;
      try {
        const free = this.concurrency - this.inFlight.size;
        if (free > 0) {
          const now = this.clock.now();
          const claimed = await this.hooks.claimDue(now, this.owner, free, now + this.policy.attemptTimeoutMs + CLAIM_MARGIN_MS);
          for (const d of claimed) this.track(d);
          if (claimed.length > 0) continue;
          const due = await this.hooks.nextDueAt();
          // A floor, so rows another instance is claiming right now are not polled for in a hot loop.
          if (due !== null) delay = Math.min(this.pollMs, Math.max(10, due - this.clock.now()));
        }
      } catch (err) {
        if (this.running) this.logger.warn({ err }, 'webhook outbox scan failed');
      }
      await this.sleep(delay);
    }
  }

  private track(d: WebhookDelivery): void {
    const key = `${d.eventId}/${d.subscriptionId}`;
    const attempt = this.attempt(d)
      .catch((err) => this.logger.warn({ err, eventId: d.eventId, subscriptionId: d.subscriptionId }, 'webhook attempt could not be recorded'))
      .finally(() => {
        this.inFlight.delete(key);
        this.poke();
      });
    this.inFlight.set(key, attempt);
  }

  private async attempt(d: WebhookDelivery): Promise<void> {
    const log = { eventId: d.eventId, eventType: d.eventType, subscriptionId: d.subscriptionId, orgId: d.orgId, attempt: d.attempts + 1 };
    const sub = await this.hooks.getSubscription(d.orgId, d.subscriptionId);
    if (!sub) {
      await this.hooks.failUnattempted(d, this.owner, 'subscription deleted', this.clock.now());
      return;
    }
    let statusCode: number | null = null;
    let error: string | null = null;
    try {
      const res = await fetch(sub.url, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          'user-agent': 'Handoff-Webhooks/1',
          'handoff-event-id': d.eventId,
          'handoff-event-type': d.eventType,
          // Real time, not the injected clock: receivers check it against their own clocks.
          [SIGNATURE_HEADER]: signWebhook(sub.secret, d.payload, Date.now()),
        },
        body: d.payload,
        // A redirect is a failed attempt: deliveries go where the operator pointed them, nowhere else.
        redirect: 'manual',
        signal: AbortSignal.any([AbortSignal.timeout(this.policy.attemptTimeoutMs), this.abort.signal]),
      });
      statusCode = res.status;
      await res.body?.cancel().catch(() => {});
    } catch (err) {
      if (this.abort.signal.aborted) {
        await this.hooks.releaseClaim(d, this.owner);
        return;
      }
      error = fetchFailure(err, this.policy.attemptTimeoutMs);
    }
    const now = this.clock.now();
    const attempts = d.attempts + 1;
    const delivered = statusCode !== null && statusCode >= 200 && statusCode < 300;
    const status: DeliveryStatus = delivered ? 'delivered' : attempts >= this.policy.maxAttempts ? 'failed' : 'pending';
    const nextAttemptAt = status === 'pending' ? now + retryDelayMs(attempts, this.policy) : d.nextAttemptAt;
    if (!delivered && error === null) error = `HTTP ${statusCode}`;
    const recorded = await this.hooks.recordAttempt(d, this.owner, { status, nextAttemptAt, statusCode, error: delivered ? null : error, now });
    const outcome = status === 'delivered' ? 'delivered' : status === 'failed' ? 'failed' : 'retry';
    this.metrics.webhookDeliveries.inc({ outcome });
    if (!recorded) this.logger.warn(log, 'webhook attempt outcome dropped: the claim had lapsed');
    else if (status === 'delivered') this.logger.debug({ ...log, statusCode }, 'webhook delivered');
    else if (status === 'failed') this.logger.warn({ ...log, statusCode, error }, 'webhook delivery failed for good');
    else this.logger.info({ ...log, statusCode, error, retryInMs: nextAttemptAt - now }, 'webhook attempt failed; will retry');
  }

  /** Reports expired leases and purges old deliveries; one run at a time. */
  private maintain(): void {
    if (this.maintenance || !this.running) return;
    this.maintenance = (async () => {
      try {
        await this.service.emitExpiredLeases();
        const now = this.clock.now();
        if (now - this.lastPurge >= PURGE_EVERY_MS) {
          this.lastPurge = now;
          while ((await this.hooks.purgeCompleted(now - this.retentionMs, PURGE_BATCH)) === PURGE_BATCH);
        }
      } catch (err) {
        if (this.running) this.logger.warn({ err }, 'webhook maintenance failed');
      } finally {
        this.maintenance = null;
      }
    })();
  }
}
