import { AggregatorRegistry, collectDefaultMetrics, Counter, Gauge, Histogram, Registry, type MetricObjectWithValues, type MetricValue } from 'prom-client';
import type { SipCountersSnapshot } from './sip/counters.js';

/** A registry's metrics as JSON (`registry.getMetricsAsJSON()`), as a worker thread posts them. */
export type PeerMetrics = MetricObjectWithValues<MetricValue<string>>[];

/** One registry per running service, so several services in one process (tests) stay apart. */
export class Metrics {
  readonly registry = new Registry();
  readonly httpRequests = new Counter({
    name: 'handoff_http_requests_total',
    help: 'HTTP requests by method, route and status',
    labelNames: ['method', 'route', 'status'] as const,
    registers: [this.registry],
  });
  readonly httpDuration = new Histogram({
    name: 'handoff_http_request_duration_seconds',
    help: 'HTTP request latency by method and route',
    labelNames: ['method', 'route'] as const,
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers: [this.registry],
  });
  readonly authFailures = new Counter({
    name: 'handoff_auth_failures_total',
    help: 'Refused bearer tokens by reason',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });

  readonly reservations = new Counter({
    name: 'handoff_reservations_total',
    help: 'reserveRoutableNumber outcomes (reserved, replayed, or the error code)',
    labelNames: ['outcome', 'country'] as const,
    registers: [this.registry],
  });
  readonly reservationSeconds = new Histogram({
    name: 'handoff_reservation_duration_seconds',
    help: 'reserveRoutableNumber latency inside the service (validation and the lease transaction)',
    buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
    registers: [this.registry],
  });
  readonly resolutions = new Counter({
    name: 'handoff_resolutions_total',
    help: 'Lease and UUI resolutions by path (http, sip-number, sip-uui) and outcome (consumed/resolved, or why not)',
    labelNames: ['path', 'outcome'] as const,
    registers: [this.registry],
  });
  readonly liveLeases = new Gauge({
    name: 'handoff_leases_live',
    help: 'Live leases per pool country',
    labelNames: ['country'] as const,
    registers: [this.registry],
  });
  readonly poolUtilisation = new Gauge({
    name: 'handoff_pool_utilisation_ratio',
    help: 'Share of active numbers of a pool that hold at least one live lease',
    labelNames: ['country'] as const,
    registers: [this.registry],
  });
  readonly poolNumbers = new Gauge({
    name: 'handoff_pool_numbers',
    help: 'Numbers per pool country and state',
    labelNames: ['country', 'state'] as const,
    registers: [this.registry],
  });

  readonly webhookDeliveries = new Counter({
    name: 'handoff_webhook_deliveries_total',
    help: 'Webhook delivery attempts by outcome (delivered, retry, failed = given up)',
    labelNames: ['outcome'] as const,
    registers: [this.registry],
  });
  readonly webhookEmitFailures = new Counter({
    name: 'handoff_webhook_emit_failures_total',
    help: 'Webhook events lost because their outbox write after a committed change failed',
    labelNames: ['type'] as const,
    registers: [this.registry],
  });

  /** Reads the SIP ingress counters at scrape time (set by the SIP hand-off). */
  private sipCounters: (() => SipCountersSnapshot) | null = null;
  readonly sipRequests = new Counter({
    name: 'handoff_sip_requests_total',
    help: 'SIP requests received (in) and sent (out) by the ingress, by method',
    labelNames: ['direction', 'method'] as const,
    registers: [this.registry],
    collect: () => this.collectSip(),
  });
  readonly sipResponses = new Counter({
    name: 'handoff_sip_responses_total',
    help: 'SIP responses received (in) and sent (out) by the ingress, by status',
    labelNames: ['direction', 'status'] as const,
    registers: [this.registry],
  });
  readonly sipDropped = new Counter({
    name: 'handoff_sip_dropped_total',
    help: 'SIP input discarded without an answer, by reason (garbage, rate-limited, oversize...)',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });
  readonly sipRetransmissions = new Counter({
    name: 'handoff_sip_retransmissions_total',
    help: 'SIP messages retransmitted by the ingress transaction layer',
    registers: [this.registry],
  });
  readonly sipParseErrors = new Counter({
    name: 'handoff_sip_parse_errors_total',
    help: 'Malformed SIP messages received',
    registers: [this.registry],
  });
  readonly sipInviteSeconds = new Histogram({
    name: 'handoff_sip_invite_response_seconds',
    help: 'Time from an initial INVITE to the final response sent upstream, by status',
    labelNames: ['status'] as const,
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [this.registry],
  });
  readonly unhandledRejections = new Counter({
    name: 'handoff_unhandled_rejections_total',
    help: 'Promise rejections nothing handled (each one a bug, logged at error): counted instead of stopping the service',
    registers: [this.registry],
  });
  readonly sipOverloadRejections = new Counter({
    name: 'handoff_sip_overload_rejections_total',
    help: 'Initial INVITEs answered 503 at once because the ingress was overloaded, by cause (pending hand-offs, event-loop lag)',
    labelNames: ['cause'] as const,
    registers: [this.registry],
  });
  readonly agentActiveCalls = new Gauge({
    name: 'handoff_agent_active_calls',
    help: 'Calls this instance has proxied to each agent and not yet ended',
    labelNames: ['agent'] as const,
    registers: [this.registry],
  });

  /** Other registries scraped with this one (SIP worker threads, see sip/workers.ts): their series are added up. */
  private readonly peers: Array<() => Promise<PeerMetrics>> = [];

  /** Adds a source whose metrics {@link Metrics.render} adds to this registry's. */
  addPeer(source: () => Promise<PeerMetrics>): void {
    this.peers.push(source);
  }

  /** The exposition text: this registry, plus its peers' series summed (counters, histograms, gauges). */
  async render(): Promise<string> {
    if (this.peers.length === 0) return this.registry.metrics();
    const all = await Promise.all([this.registry.getMetricsAsJSON(), ...this.peers.map((p) => p())]);
    return AggregatorRegistry.aggregate(all as Parameters<typeof AggregatorRegistry.aggregate>[0]).metrics();
  }

  /** Exposes a SIP stack's counters (sip.counters.snapshot) as the handoff_sip_* metrics. */
  watchSip(snapshot: () => SipCountersSnapshot): void {
    this.sipCounters = snapshot;
  }

  private collectSip(): void {
    if (!this.sipCounters) return;
    const s = this.sipCounters();
    // The stack counts totals itself; the counters are reset and set to them at every scrape.
    for (const m of [this.sipRequests, this.sipResponses, this.sipDropped, this.sipRetransmissions, this.sipParseErrors]) m.reset();
    for (const [method, n] of Object.entries(s.receivedRequests)) this.sipRequests.inc({ direction: 'in', method }, n);
    for (const [method, n] of Object.entries(s.sentRequests)) this.sipRequests.inc({ direction: 'out', method }, n);
    for (const [status, n] of Object.entries(s.receivedResponses)) this.sipResponses.inc({ direction: 'in', status }, n);
    for (const [status, n] of Object.entries(s.sentResponses)) this.sipResponses.inc({ direction: 'out', status }, n);
    for (const [reason, n] of Object.entries(s.dropped)) this.sipDropped.inc({ reason }, n);
    this.sipRetransmissions.inc(s.retransmissions);
    this.sipParseErrors.inc(s.parseErrors);
  }

  /** Sets the pool gauges from a fresh reading (done at every scrape, so they never go stale). */
  setPoolStats(stats: { country: string; activeNumbers: number; numbers: number; liveLeases: number; utilisation: number }[]): void {
    this.liveLeases.reset();
    this.poolUtilisation.reset();
    this.poolNumbers.reset();
    for (const s of stats) {
      this.liveLeases.set({ country: s.country }, s.liveLeases);
      this.poolUtilisation.set({ country: s.country }, s.utilisation);
      this.poolNumbers.set({ country: s.country, state: 'active' }, s.activeNumbers);
      this.poolNumbers.set({ country: s.country, state: 'draining' }, s.numbers - s.activeNumbers);
    }
  }

  constructor(opts: { defaultMetrics?: boolean } = {}) {
    if (opts.defaultMetrics !== false) collectDefaultMetrics({ register: this.registry, prefix: 'handoff_' });
  }
}
