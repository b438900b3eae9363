import type { Clock } from '../domain/clock.js';

/** Per-source request rate limit (token bucket). */
export interface RateLimitOptions {
  /** Sustained requests per second allowed from one source address. */
  perSecond: number;
  /** Bucket size: requests allowed in a burst. */
  burst: number;
  /** What to do with a request over the limit: drop silently, or answer 503 with Retry-After. */
  action: 'drop' | '503';
  /** Retry-After seconds of the 503 (default 5). */
  retryAfter?: number;
  /** Sources tracked at most; past it, idle buckets are forgotten (default 100,000). */
  maxSources?: number;
}

/**
 * The ingress's limit for HANDOFF_SIP_RATE_LIMIT (requests per second per source; 0: none): a burst
 * of twice that, and drops. One policy for the hand-off's transport and the SIP workers' front.
 */
export function ingressRateLimit(perSecond: number): RateLimitOptions | null {
  return perSecond > 0 ? { perSecond, burst: 2 * perSecond, action: 'drop' } : null;
}

interface Bucket {
  tokens: number;
  at: number;
}

/**
 * Token buckets keyed by source address. Memory is bounded by `maxSources`: when full, buckets
 * that have refilled are dropped, and if none has, all are (failing open rather than growing).
 *
 * @example
 * const rl = new RateLimiter({ perSecond: 50, burst: 100, action: 'drop' }, systemClock);
 * if (!rl.allow('192.0.2.7')) return; // over the limit
 */
export class RateLimiter {
  private readonly buckets = new Map<string, Bucket>();
  private readonly maxSources: number;

  constructor(
    readonly options: RateLimitOptions,
    private readonly clock: Clock,
  ) {
    this.maxSources = options.maxSources ?? 100_000;
  }

  /** Takes one token for `source`; false when its bucket is empty. */
  allow(source: string): boolean {
    const now = this.clock.now();
    const { perSecond, burst } = this.options;
    let b = this.buckets.get(source);
    if (!b) {
      if (this.buckets.size >= this.maxSources) this.evict(now);
      b = { tokens: burst, at: now };
      this.buckets.set(source, b);
    } else {
      b.tokens = Math.min(burst, b.tokens + ((now - b.at) * perSecond) / 1000);
      b.at = now;
    }
    if (b.tokens < 1) return false;
    b.tokens -= 1;
    return true;
  }

  private evict(now: number): void {
    const { perSecond, burst } = this.options;
    for (const [k, b] of this.buckets) {
      if (b.tokens + ((now - b.at) * perSecond) / 1000 >= burst) this.buckets.delete(k);
    }
    if (this.buckets.size >= this.maxSources) this.buckets.clear();
  }
}
