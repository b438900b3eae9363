import { randomBytes } from 'node:crypto';

/** Alphabet of Salesforce-style IDs (base 62). */
const BASE62 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
/** Alphabet the case-safe suffix indexes into with a 5-bit number. */
const SUFFIX_ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ012345';

const ID15_RE = /^[A-Za-z0-9]{15}$/;
const ID18_RE = /^[A-Za-z0-9]{18}$/;
const PREFIX_RE = /^[A-Za-z0-9]{3}$/;

/** Key prefix of VoiceCall records. */
export const VOICE_CALL_PREFIX = '0LQ';
/** Key prefix of org IDs. */
export const ORG_PREFIX = '00D';

/**
 * The 3-char case-safe suffix of a 15-char ID: for each block of five chars, a 5-bit number whose
 * bit i is set when char i of the block is upper-case, mapped through `A-Z0-5`.
 *
 * @example
 * caseSafeSuffix('0LQxx0000004ABc'); // 'GAM'
 */
export function caseSafeSuffix(id15: string): string {
  if (!ID15_RE.test(id15)) throw new TypeError('caseSafeSuffix expects a 15-char base-62 ID');
  let suffix = '';
  for (let block = 0; block < 3; block++) {
    let bits = 0;
    for (let i = 0; i < 5; i++) {
      const c = id15.charCodeAt(block * 5 + i);
      if (c >= 65 && c <= 90) bits |= 1 << i;
    }
    suffix += SUFFIX_ALPHABET[bits];
  }
  return suffix;
}

/**
 * The 18-char form of a 15-char ID (the ID followed by its case-safe suffix).
 *
 * @example
 * toId18('00Dxx0000004CFG'); // '00Dxx0000004CFGEA2'
 */
export function toId18(id15: string): string {
  return id15 + caseSafeSuffix(id15);
}

/**
 * Validates a 15- or 18-char ID and returns its canonical 15-char form, or null when invalid.
 * An 18-char ID must carry the suffix of its first 15 chars; the suffix is compared
 * case-insensitively, because some tools lower-case it and its alphabet (`A-Z0-5`) makes that
 * lossless. `prefix`, when given, must match the first three chars exactly (IDs are case-sensitive).
 *
 * @example
 * normalizeSfId('0LQxx0000004ABcGAM', '0LQ'); // '0LQxx0000004ABc'
 * normalizeSfId('0LQxx0000004ABcGAM', '00D'); // null
 */
export function normalizeSfId(input: unknown, prefix?: string): string | null {
  if (typeof input !== 'string') return null;
  let id15: string;
  if (ID15_RE.test(input)) {
    id15 = input;
  } else if (ID18_RE.test(input)) {
    id15 = input.slice(0, 15);
    if (input.slice(15).toUpperCase() !== caseSafeSuffix(id15)) return null;
  } else {
    return null;
  }
  if (prefix !== undefined && !id15.startsWith(prefix)) return null;
  return id15;
}

/**
 * A new random 15-char ID with the given 3-char key prefix and 12 uniformly random base-62 chars.
 *
 * @example
 * newSfId('00D'); // e.g. '00Dk3V9qPz0aB7w'
 */
export function newSfId(prefix3: string): string {
  if (!PREFIX_RE.test(prefix3)) throw new TypeError('newSfId expects a 3-char base-62 prefix');
  return prefix3 + randomBase62(12);
}

/**
 * A new random VoiceCall ID (15-char form; use {@link toId18} on the wire).
 *
 * @example
 * toId18(newVoiceCallId()); // e.g. '0LQ8fK2mZq01xYtAAQ'
 */
export function newVoiceCallId(): string {
  return newSfId(VOICE_CALL_PREFIX);
}

/** 248 = 4 * 62: bytes at or above it are discarded so `byte % 62` is unbiased. */
const REJECT_FROM = 248;

/** Random bytes drawn by randomBase62, refilled when used up: no crypto call per ID on the hot path. */
const POOL_SIZE = 4096;
let pool = randomBytes(POOL_SIZE);
let poolPos = 0;

function randomBase62(length: number): string {
  let out = '';
  while (out.length < length) {
    if (poolPos === POOL_SIZE) {
      pool = randomBytes(POOL_SIZE);
      poolPos = 0;
    }
    const byte = pool[poolPos++]!;
    if (byte >= REJECT_FROM) continue;
    out += BASE62[byte % 62];
  }
  return out;
}
