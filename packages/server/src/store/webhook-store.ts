import { sql, type Kysely, type RawBuilder, type Transaction } from 'kysely';
import type { WebhookEventType } from '../domain/webhook-signature.js';
import { KyselyStore } from './kysely-store.js';
import type { LeasesTable } from './lease-schema.js';
import { numOrNull, toLease, type Lease } from './lease-store.js';
import type { Database } from './schema.js';
import type { Store } from './store.js';

/** What a subscription listens to: event types, or '*' for every type (also ones added later). */
export type WebhookEventFilter = WebhookEventType | '*';

export interface WebhookSubscription {
  /** Canonical 15-char org ID. */
  orgId: string;
  /** Operator-chosen name, unique within the org. */
  id: string;
  url: string;
  /** HMAC key of the signatures; never shown by the API nor logged. */
  secret: string;
  /** Sorted, without duplicates; ['*'] when it listens to everything. */
  events: WebhookEventFilter[];
  createdAt: number;
  updatedAt: number;
}

export type DeliveryStatus = 'pending' | 'delivered' | 'failed';

/** One outbox row: an event on its way to one subscription. Times are epoch ms. */
export interface WebhookDelivery {
  eventId: string;
  subscriptionId: string;
  orgId: string;
  seq: number;
  eventType: WebhookEventType;
  /** Canonical 15-char VoiceCall ID, or null. */
  voiceCallId: string | null;
  /** The exact JSON body sent on every attempt. */
  payload: string;
  status: DeliveryStatus;
  attempts: number;
  /** When the next attempt may start (pending rows). */
  nextAttemptAt: number;
  /** An instance is attempting the row until then. */
  lockedUntil: number | null;
  lastStatusCode: number | null;
  lastError: string | null;
  createdAt: number;
  updatedAt: number;
  /** When it was delivered or given up. */
  completedAt: number | null;
}

export interface NewWebhookEvent {
  eventId: string;
  orgId: string;
  type: WebhookEventType;
  voiceCallId: string | null;
  payload: string;
  now: number;
}

export interface AttemptOutcome {
  status: DeliveryStatus;
  nextAttemptAt: number;
  statusCode: number | null;
  error: string | null;
  now: number;
}

export interface DeliveryFilter {
  orgId?: string;
  status?: DeliveryStatus;
  subscriptionId?: string;
  voiceCallId?: string;
  limit: number;
}

interface WebhookSubscriptionsTable {
  org_id: string;
  id: string;
  url: string;
  secret: string;
  events: string;
  created_at: number;
  updated_at: number;
}

interface WebhookDeliveriesTable {
  event_id: string;
  subscription_id: string;
  org_id: string;
  seq: number;
  event_type: string;
  voice_call_id: string | null;
  payload: string;
  status: string;
  attempts: number;
  next_attempt_at: number;
  locked_until: number | null;
  locked_by: string | null;
  last_status_code: number | null;
  last_error: string | null;
  created_at: number;
  updated_at: number;
  completed_at: number | null;
}

/** Kysely table types of migrations/003_webhooks.sql. */
interface WebhookTables {
  webhook_subscriptions: WebhookSubscriptionsTable;
  webhook_deliveries: WebhookDeliveriesTable;
}

type WebhookDb = Kysely<Database & WebhookTables> | Transaction<Database & WebhookTables>;

const ALL_EVENTS = JSON.stringify(['*']);

/** The stored form of a filter: sorted, unique, and just ["*"] when '*' is among them (so upserts compare equal). */
export function normalizeEventFilter(events: readonly WebhookEventFilter[]): WebhookEventFilter[] {
  if (events.length === 0 || events.includes('*')) return ['*'];
  return [...new Set(events)].sort();
}

function toSubscription(r: WebhookSubscriptionsTable): WebhookSubscription {
  return {
    orgId: r.org_id,
    id: r.id,
    url: r.url,
    secret: r.secret,
    events: JSON.parse(r.events) as WebhookEventFilter[],
    createdAt: Number(r.created_at),
    updatedAt: Number(r.updated_at),
  };
}

function toDelivery(r: WebhookDeliveriesTable): WebhookDelivery {
  return {
    eventId: r.event_id,
    subscriptionId: r.subscription_id,
    orgId: r.org_id,
    seq: Number(r.seq),
    eventType: r.event_type as WebhookEventType,
    voiceCallId: r.voice_call_id,
    payload: r.payload,
    status: r.status as DeliveryStatus,
    attempts: Number(r.attempts),
    nextAttemptAt: Number(r.next_attempt_at),
    lockedUntil: numOrNull(r.locked_until),
    lastStatusCode: numOrNull(r.last_status_code),
    lastError: r.last_error,
    createdAt: Number(r.created_at),
    updatedAt: Number(r.updated_at),
    completedAt: numOrNull(r.completed_at),
  };
}


/**
 * "No earlier delivery of the same (subscription, call) is still pending": the per-call ordering
 * rule. Events without a call are never held back.
 */
const NOT_BLOCKED = sql`(d.voice_call_id IS NULL OR NOT EXISTS (
  SELECT 1 FROM webhook_deliveries e
  WHERE e.status = 'pending' AND e.org_id = d.org_id AND e.subscription_id = d.subscription_id
    AND e.voice_call_id = d.voice_call_id AND (e.seq < d.seq OR (e.seq = d.seq AND e.event_id < d.event_id))))`;

/** Leases that expired unconsumed and have not been reported yet. */
const EXPIRED_UNNOTIFIED = (now: number) => sql`consumed_at IS NULL AND expiry_notified_at IS NULL AND expires_at <= ${now}`;

/** Storage of webhook subscriptions and the delivery outbox, on the KyselyStore's database. */
export class WebhookStore {
  constructor(private readonly store: KyselyStore) {}

  /** The webhook store of a Store (or of the transaction a Store is bound to). */
  static of(store: Store): WebhookStore {
    if (!(store instanceof KyselyStore)) throw new TypeError('webhooks need the Kysely store');
    return new WebhookStore(store);
  }

  private get db(): WebhookDb {
    return this.store.executor as unknown as WebhookDb;
  }

  /** True when bound to an open transaction (its writes are not visible to others until it commits). */
  get inTransaction(): boolean {
    return this.store.executor.isTransaction;
  }

  private async rows<R>(query: RawBuilder<R>): Promise<R[]> {
    return (await query.execute(this.db)).rows;
  }

  /** Creates or updates a subscription; a no-op (false) when nothing differs. */
  async upsertSubscription(sub: Omit<WebhookSubscription, 'createdAt' | 'updatedAt'>, now: number): Promise<boolean> {
    const events = JSON.stringify(normalizeEventFilter(sub.events));
    const r = await this.db
      .insertInto('webhook_subscriptions')
      .values({ org_id: sub.orgId, id: sub.id, url: sub.url, secret: sub.secret, events, created_at: now, updated_at: now })
      .onConflict((oc) =>
        oc
          .columns(['org_id', 'id'])
          .doUpdateSet((eb) => ({ url: eb.ref('excluded.url'), secret: eb.ref('excluded.secret'), events: eb.ref('excluded.events'), updated_at: now }))
          .where((eb) =>
            eb.or(
              (['url', 'secret', 'events'] as const).map((c) => eb(eb.ref(`webhook_subscriptions.${c}`), 'is distinct from', eb.ref(`excluded.${c}`))),
            ),
          ),
      )
      .executeTakeFirst();
    return (r.numInsertedOrUpdatedRows ?? 0n) > 0n;
  }

  /** Creates a subscription; false when the org already has one with this id. */
  async insertSubscription(sub: Omit<WebhookSubscription, 'createdAt' | 'updatedAt'>, now: number): Promise<boolean> {
    const events = JSON.stringify(normalizeEventFilter(sub.events));
    const r = await this.db
      .insertInto('webhook_subscriptions')
      .values({ org_id: sub.orgId, id: sub.id, url: sub.url, secret: sub.secret, events, created_at: now, updated_at: now })
      .onConflict((oc) => oc.columns(['org_id', 'id']).doNothing())
      .executeTakeFirst();
    return (r.numInsertedOrUpdatedRows ?? 0n) > 0n;
  }

  async getSubscription(orgId: string, id: string): Promise<WebhookSubscription | null> {
    const r = await this.db.selectFrom('webhook_subscriptions').selectAll().where('org_id', '=', orgId).where('id', '=', id).executeTakeFirst();
    return r ? toSubscription(r) : null;
  }

  async listSubscriptions(orgId: string): Promise<WebhookSubscription[]> {
    const rows = await this.db.selectFrom('webhook_subscriptions').selectAll().where('org_id', '=', orgId).orderBy('id').execute();
    return rows.map(toSubscription);
  }

  /** Deletes a subscription and gives up its pending deliveries; null when there was none. */
  async deleteSubscription(orgId: string, id: string, now: number): Promise<{ cancelled: number } | null> {
    const r = await this.db.deleteFrom('webhook_subscriptions').where('org_id', '=', orgId).where('id', '=', id).executeTakeFirst();
    if (r.numDeletedRows === 0n) return null;
    const c = await this.db
      .updateTable('webhook_deliveries')
      .set({ status: 'failed', last_error: 'subscription deleted', locked_until: null, locked_by: null, updated_at: now, completed_at: now })
      .where('org_id', '=', orgId)
      .where('subscription_id', '=', id)
      .where('status', '=', 'pending')
      .executeTakeFirst();
    return { cancelled: Number(c.numUpdatedRows) };
  }

  /**
   * Writes one pending delivery per subscription of the org that listens to the event type, in one
   * statement; returns how many. seq is max + 1: a transaction that starts after another committed
   * sees its rows, so causally later events always sort later (concurrent ones may share a seq).
   */
  async insertEvent(e: NewWebhookEvent): Promise<number> {
    // Parameters are cast: PostgreSQL cannot infer the type of a bare parameter in a SELECT list.
    const r = await sql`
      INSERT INTO webhook_deliveries (event_id, subscription_id, org_id, seq, event_type, voice_call_id, payload, status,
        attempts, next_attempt_at, created_at, updated_at)
      SELECT CAST(${e.eventId} AS TEXT), s.id, s.org_id, (SELECT coalesce(max(seq), 0) + 1 FROM webhook_deliveries),
        CAST(${e.type} AS TEXT), CAST(${e.voiceCallId} AS TEXT), CAST(${e.payload} AS TEXT), 'pending',
        0, CAST(${e.now} AS BIGINT), CAST(${e.now} AS BIGINT), CAST(${e.now} AS BIGINT)
      FROM webhook_subscriptions s
      WHERE s.org_id = ${e.orgId} AND (s.events = ${ALL_EVENTS} OR s.events LIKE ${`%"${e.type}"%`})`.execute(this.db);
    return Number(r.numAffectedRows ?? 0n);
  }

  /**
   * Claims up to `limit` due deliveries for `owner` until `lockUntil`, oldest first, never one that
   * an earlier pending delivery of its call precedes. On PostgreSQL, SKIP LOCKED keeps concurrent
   * claimers off each other's rows; the outer conditions are re-checked against the latest version,
   * so a row is attempted by one instance at a time.
   */
  async claimDue(now: number, owner: string, limit: number, lockUntil: number): Promise<WebhookDelivery[]> {
    const lock = this.store.dialect === 'postgres' ? sql`FOR UPDATE OF d SKIP LOCKED` : sql``;
    const rows = await this.rows<WebhookDeliveriesTable>(sql`
      UPDATE webhook_deliveries SET locked_until = ${lockUntil}, locked_by = ${owner}
      WHERE status = 'pending' AND (locked_until IS NULL OR locked_until <= ${now})
        AND (event_id, subscription_id) IN (
          SELECT d.event_id, d.subscription_id FROM webhook_deliveries d
          WHERE d.status = 'pending' AND d.next_attempt_at <= ${now} AND (d.locked_until IS NULL OR d.locked_until <= ${now})
            AND ${NOT_BLOCKED}
          ORDER BY d.seq, d.event_id
          LIMIT ${limit}
          ${lock})
      RETURNING *`);
    return rows.map(toDelivery).sort((a, b) => a.seq - b.seq || (a.eventId < b.eventId ? -1 : 1));
  }

  /** When the next delivery becomes claimable (due and unclaimed, not held back by its call); null when none is pending. */
  async nextDueAt(): Promise<number | null> {
    const [r] = await this.rows<{ due: unknown }>(sql`
      SELECT min(CASE WHEN d.locked_until IS NOT NULL AND d.locked_until > d.next_attempt_at THEN d.locked_until ELSE d.next_attempt_at END) AS due
      FROM webhook_deliveries d WHERE d.status = 'pending' AND ${NOT_BLOCKED}`);
    return numOrNull(r?.due);
  }

  /** Records an attempt made under `owner`'s claim and releases it; false when the claim was lost meanwhile. */
  async recordAttempt(d: Pick<WebhookDelivery, 'eventId' | 'subscriptionId'>, owner: string, o: AttemptOutcome): Promise<boolean> {
    const r = await this.db
      .updateTable('webhook_deliveries')
      .set({
        status: o.status,
        attempts: sql<number>`attempts + 1`,
        next_attempt_at: o.nextAttemptAt,
        last_status_code: o.statusCode,
        last_error: o.error,
        locked_until: null,
        locked_by: null,
        updated_at: o.now,
        completed_at: o.status === 'pending' ? null : o.now,
      })
      .where('event_id', '=', d.eventId)
      .where('subscription_id', '=', d.subscriptionId)
      .where('locked_by', '=', owner)
      .where('status', '=', 'pending')
      .executeTakeFirst();
    return r.numUpdatedRows > 0n;
  }

  /** Gives up a delivery without an attempt (its subscription is gone). */
  async failUnattempted(d: Pick<WebhookDelivery, 'eventId' | 'subscriptionId'>, owner: string, error: string, now: number): Promise<void> {
    await this.db
      .updateTable('webhook_deliveries')
      .set({ status: 'failed', last_error: error, locked_until: null, locked_by: null, updated_at: now, completed_at: now })
      .where('event_id', '=', d.eventId)
      .where('subscription_id', '=', d.subscriptionId)
      .where('locked_by', '=', owner)
      .where('status', '=', 'pending')
      .execute();
  }

  /** Releases a claim without counting an attempt (the attempt was interrupted by a shutdown). */
  async releaseClaim(d: Pick<WebhookDelivery, 'eventId' | 'subscriptionId'>, owner: string): Promise<void> {
    await this.db
      .updateTable('webhook_deliveries')
      .set({ locked_until: null, locked_by: null })
      .where('event_id', '=', d.eventId)
      .where('subscription_id', '=', d.subscriptionId)
      .where('locked_by', '=', owner)
      .execute();
  }

  /** Deliveries, newest first. */
  async listDeliveries(f: DeliveryFilter): Promise<WebhookDelivery[]> {
    let q = this.db.selectFrom('webhook_deliveries').selectAll();
    if (f.orgId !== undefined) q = q.where('org_id', '=', f.orgId);
    if (f.status !== undefined) q = q.where('status', '=', f.status);
    if (f.subscriptionId !== undefined) q = q.where('subscription_id', '=', f.subscriptionId);
    if (f.voiceCallId !== undefined) q = q.where('voice_call_id', '=', f.voiceCallId);
    const rows = await q.orderBy('seq', 'desc').orderBy('event_id', 'desc').limit(f.limit).execute();
    return rows.map(toDelivery);
  }

  /** Deletes up to `limit` delivered or failed rows completed before `cutoff`; returns how many went. */
  async purgeCompleted(cutoff: number, limit: number): Promise<number> {
    const r = await sql`
      DELETE FROM webhook_deliveries WHERE status <> 'pending' AND completed_at < ${cutoff} AND (event_id, subscription_id) IN
        (SELECT event_id, subscription_id FROM webhook_deliveries WHERE status <> 'pending' AND completed_at < ${cutoff} LIMIT ${limit})`.execute(this.db);
    return Number(r.numAffectedRows ?? 0n);
  }

  /** Whether any lease expired unconsumed without having been reported (a read, so idle scans take no write lock). */
  async hasUnnotifiedExpiredLeases(now: number): Promise<boolean> {
    const rows = await this.rows(sql`SELECT 1 AS one FROM leases WHERE ${EXPIRED_UNNOTIFIED(now)} LIMIT 1`);
    return rows.length > 0;
  }

  /**
   * Marks up to `limit` leases that expired unconsumed as reported and returns them, soonest expiry
   * first. A lease is marked once: concurrent scans (PostgreSQL re-checks the WHERE after waiting
   * for a row lock) never both get it.
   */
  async markExpiredLeases(now: number, limit: number): Promise<Lease[]> {
    const rows = await this.rows<LeasesTable>(sql`
      UPDATE leases SET expiry_notified_at = ${now}
      WHERE ${EXPIRED_UNNOTIFIED(now)} AND uid IN (SELECT uid FROM leases WHERE ${EXPIRED_UNNOTIFIED(now)} ORDER BY expires_at LIMIT ${limit})
      RETURNING *`);
    return rows.map(toLease).sort((a, b) => a.expiresAt - b.expiresAt || (a.uid < b.uid ? -1 : 1));
  }
}
