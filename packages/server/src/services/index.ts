import type { Clock } from '../domain/clock.js';
import { Metrics } from '../metrics.js';
import type { KyselyStore } from '../store/kysely-store.js';
import { KyselyLeaseStore } from '../store/lease-store.js';
import type { Store } from '../store/store.js';
import { AuthService } from './auth.js';
import { EscalationService } from './escalation.js';
import { LeaseService } from './lease-service.js';
import { OperatorAuth } from './operator-auth.js';
import { PoolAdmin } from './pools.js';
import { ReferenceCache } from './reference-cache.js';
import { ReservationService } from './reservations.js';
import { RoutingService } from './routing.js';
import { VoiceCallService } from './voice-calls.js';
import { WebhookService, type WebhookOptions } from './webhooks.js';

export interface ServiceOptions {
  acceptedAudiences?: string[];
  /** Lease lifetime in seconds (at most 180). */
  leaseTtlSeconds?: number;
  /** How long a (number, caller) pair stays held after consumption or expiry. */
  leaseCooldownSeconds?: number;
  metrics?: Metrics;
  /** Bearer secret of the operator endpoints; without it they are not served. */
  operatorToken?: string;
  /** How long orgs, channels and pool countries are cached (ms, default 1000; 0 disables). */
  referenceCacheMs?: number;
  /** Webhook retry policy, dispatcher tuning and the logger of delivery failures. */
  webhooks?: WebhookOptions;
}

/** The services HTTP, SIP and the CLI share; built once by the composition root. */
export interface Services {
  store: Store;
  clock: Clock;
  metrics: Metrics;
  auth: AuthService;
  voiceCalls: VoiceCallService;
  leases: LeaseService;
  reservations: ReservationService;
  pools: PoolAdmin;
  operator: OperatorAuth | null;
  refs: ReferenceCache;
  routing: RoutingService;
  escalation: EscalationService;
  webhooks: WebhookService;
}

export function createServices(store: KyselyStore, clock: Clock, opts: ServiceOptions = {}): Services {
  const refs = new ReferenceCache(store, clock, opts.referenceCacheMs ?? 1000);
  const metrics = opts.metrics ?? new Metrics();
  const webhooks = new WebhookService(store, clock, metrics, opts.webhooks);
  const leases = new LeaseService(new KyselyLeaseStore(store), {
    clock,
    events: webhooks,
    ...(opts.leaseTtlSeconds !== undefined ? { ttlSeconds: opts.leaseTtlSeconds } : {}),
    ...(opts.leaseCooldownSeconds !== undefined ? { cooldownSeconds: opts.leaseCooldownSeconds } : {}),
  });
  return {
    store,
    clock,
    metrics,
    auth: new AuthService(store, clock, refs, opts),
    voiceCalls: new VoiceCallService(store, clock, webhooks),
    leases,
    reservations: new ReservationService(store, leases, refs),
    pools: new PoolAdmin(store, leases, clock, refs),
    operator: opts.operatorToken ? new OperatorAuth(opts.operatorToken) : null,
    refs,
    routing: new RoutingService(store, clock, refs),
    escalation: new EscalationService(store, clock, webhooks),
    webhooks,
  };
}
