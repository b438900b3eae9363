import { createHash, randomBytes } from 'node:crypto';

/** Leases never live longer than this (SPEC §5). */
export const MAX_TTL_SECONDS = 180;
/** Default lease lifetime. */
export const DEFAULT_TTL_SECONDS = 180;
/** Default cool-down a (number, caller) pair stays held after its lease is consumed or expires. */
export const DEFAULT_COOLDOWN_SECONDS = 10;
/** Idempotency records are kept at least this long (SPEC §5: "kept at least 24 h"). */
export const IDEMPOTENCY_RETENTION_MS = 24 * 60 * 60 * 1000;
/** Every lease uid starts with this, followed by the routable number. */
export const LEASE_UID_PREFIX = 'lease:did:';

const LEASE_UID_RE = /^lease:did:\+[1-9]\d{1,14}:\d+:[0-9a-f]{16}$/;

/**
 * Validates a configured lease TTL and returns it in milliseconds: above 180 s (or not a number) is a
 * configuration error; anything below 1 s is raised to 1 s so a lease is always usable.
 *
 * @example
 * leaseTtlMs(30); // 30000
 */
export function leaseTtlMs(seconds: number): number {
  if (!Number.isFinite(seconds) || seconds > MAX_TTL_SECONDS) {
    throw new RangeError(`lease TTL must be a number of seconds no greater than ${MAX_TTL_SECONDS} (got ${seconds})`);
  }
  return Math.round(Math.max(1, seconds) * 1000);
}

/** Validates a configured cool-down (seconds, 0 or more) and returns it in milliseconds. */
export function cooldownMs(seconds: number): number {
  if (!Number.isFinite(seconds) || seconds < 0) throw new RangeError(`cool-down must be a non-negative number of seconds (got ${seconds})`);
  return Math.round(seconds * 1000);
}

/**
 * A new lease uid: `lease:did:<routableNumber>:<epochSeconds>:<16 hex>`. Unique (64 random bits) and
 * opaque to clients; the readable prefix only helps operators reading logs.
 *
 * @example
 * newLeaseUid('+14155559876', 1716234311000); // 'lease:did:+14155559876:1716234311:9f0c2b7d1e4a5630'
 */
export function newLeaseUid(routableNumber: string, nowMs: number): string {
  return `${LEASE_UID_PREFIX}${routableNumber}:${Math.floor(nowMs / 1000)}:${randomHex16()}`;
}

// One getrandom call per 512 uids instead of one per uid: randomBytes showed up in reservation profiles.
let entropy = Buffer.alloc(0);
let entropyOffset = 0;

function randomHex16(): string {
  if (entropyOffset + 8 > entropy.length) {
    entropy = randomBytes(4096);
    entropyOffset = 0;
  }
  entropyOffset += 8;
  return entropy.toString('hex', entropyOffset - 8, entropyOffset);
}

/** True when s has the shape newLeaseUid produces. */
export function isLeaseUid(s: string): boolean {
  return LEASE_UID_RE.test(s);
}

/**
 * Whole seconds a client should wait until `untilMs`, for a Retry-After header: rounded up, at least 1.
 *
 * @example
 * retryAfterSeconds(10_001, 0); // 11
 */
export function retryAfterSeconds(untilMs: number, nowMs: number): number {
  return Math.max(1, Math.ceil((untilMs - nowMs) / 1000));
}

/** The semantic content of a reservation that idempotent retries must repeat exactly. */
export interface ReservationRequest {
  country: string;
  fromNumber: string;
  toNumber: string;
  scrt2Domain?: string | null | undefined;
  callId?: string | null | undefined;
  transactionId?: string | null | undefined;
  originalFromNumber?: string | null | undefined;
  [field: string]: unknown;
}

/**
 * The canonical hash of a reservation body, used to tell a retry from a different request under one
 * transactionId. Callers pass the *semantic* fields (after mapping the flat and nested shapes to one
 * form), so the same request in JSON or XML, flat or nested, hashes alike. Keys are sorted at every
 * level and null/undefined members are dropped, so absent and null are the same thing.
 *
 * @example
 * requestHash({ country: 'US', fromNumber: '+1...', toNumber: '+1...', callId: null }) ===
 *   requestHash({ toNumber: '+1...', fromNumber: '+1...', country: 'US' }); // true
 */
export function requestHash(request: ReservationRequest): string {
  return createHash('sha256').update(canonicalJson(request)).digest('hex');
}

/** JSON with object keys sorted and null/undefined members left out. */
export function canonicalJson(value: unknown): string {
  if (value === null || value === undefined) return 'null';
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== null && v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
  }
  return JSON.stringify(value);
}
