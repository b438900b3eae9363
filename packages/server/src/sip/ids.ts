import { createHash, randomBytes } from 'node:crypto';

/** RFC 3261 §8.1.1.7: branches of RFC 3261 elements start with this magic cookie. */
export const MAGIC_COOKIE = 'z9hG4bK';

const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
const POOL_SIZE = 4096;
let pool = randomBytes(POOL_SIZE);
let poolPos = 0;

/**
 * `n` random characters of `[A-Za-z0-9_-]` (6 bits each), drawn from a refilled pool of
 * crypto-random bytes so the hot path makes no syscall per identifier.
 */
export function randomToken(n: number): string {
  if (poolPos + n > POOL_SIZE) {
    pool = randomBytes(POOL_SIZE);
    poolPos = 0;
  }
  let s = '';
  for (let i = 0; i < n; i++) s += ALPHABET[pool[poolPos++]! & 63];
  return s;
}

/**
 * A new RFC 3261 branch: the magic cookie plus 22 random characters (132 bits).
 *
 * @example
 * newBranch(); // 'z9hG4bKq3V...'
 */
export function newBranch(): string {
  return MAGIC_COOKIE + randomToken(22);
}

/** A new From/To tag (§19.3: at least 32 bits of randomness; this has 72). */
export function newTag(): string {
  return randomToken(12);
}

/**
 * A new Call-ID (§8.1.1.4), `random@host` when a host is given.
 *
 * @example
 * newCallId('sip.example.com'); // 'pQ3...@sip.example.com'
 */
export function newCallId(host?: string): string {
  const id = randomToken(24);
  return host ? `${id}@${host}` : id;
}

/** A short, stable, non-reversible digest of `parts` (base64url of MD5, 16 chars). */
export function digest16(parts: readonly string[]): string {
  const h = createHash('md5');
  for (const p of parts) {
    h.update(p);
    h.update('\u0001');
  }
  return h.digest('base64url').slice(0, 16);
}
