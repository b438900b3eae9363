import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';

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
    help: 'Lease resolutions by path (sip, http) and outcome (consumed, no_lease, expired, consumed_already)',
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
