import { createHash, createPublicKey, X509Certificate, type KeyObject } from 'node:crypto';
import { compactVerify, errors as joseErrors, importSPKI, type CryptoKey } from 'jose';
import type { Clock } from './clock.js';
import { HandoffError } from './errors.js';
import { normalizeSfId, ORG_PREFIX } from './ids.js';

/** Signature algorithms a registered key can be used with (RSA keys: RS256, P-256 keys: ES256). */
export type KeyAlg = 'RS256' | 'ES256';

/** A public key an org registered to sign its bearer tokens. */
export interface RegisteredKey {
  /** Stable name of the key (unique across the install). */
  id: string;
  /** 15-char org ID. */
  orgId: string;
  kid: string | null;
  /** SPKI `PUBLIC KEY` PEM or X.509 `CERTIFICATE` PEM. */
  pem: string;
  /** Expiry set at registration (ms); a certificate's notAfter also applies. */
  expiresAt: number | null;
  revoked: boolean;
}

/** What the verifier needs from the outside world; every callback is async so it can hit a store. */
export interface TokenVerifierDeps {
  clock: Clock;
  /** Active keys of an org (15-char id); [] or null when the org is unknown. */
  loadKeys(orgId: string): Promise<RegisteredKey[] | null>;
  /** True when `sub` names a call center API name or channel developer name of the org. */
  subjectExists(orgId: string, sub: string): Promise<boolean>;
  /** Record a jti; resolves false when it was already recorded (replay). Store keeps it until expMs. */
  claimJti(orgId: string, jti: string, expMs: number): Promise<boolean>;
  /** A token with `aud` needs one value in this list; when empty or absent, any `aud` is rejected. */
  acceptedAudiences?: string[];
  /** Tolerance for `iat` and `nbf` in the future; default 60. */
  maxSkewSeconds?: number;
  /** Upper bound of `exp - iat`; default 86400. */
  maxLifetimeSeconds?: number;
  /** Checked before any parsing or crypto; default 8192. */
  maxTokenLength?: number;
  /** Entries of the verification cache; default 10000, 0 disables it. */
  cacheSize?: number;
  /**
   * A cached verification is redone after this long (default: until exp), so a key revoked by
   * another process (CLI, another instance) stops working within it.
   */
  maxCacheAgeSeconds?: number;
}

/** The claims of an accepted token, normalized. */
export interface VerifiedToken {
  /** 15-char org ID from `iss`. */
  orgId: string;
  sub: string | null;
  jti: string | null;
  /** Seconds since the epoch, as in the token. */
  iat: number;
  /** Seconds since the epoch, as in the token. */
  exp: number;
  aud: string[] | null;
  /** `RegisteredKey.id` of the key that verified the signature. */
  keyId: string;
  alg: KeyAlg;
}

/** Machine reason of an INVALID_TOKEN rejection, found in `details.reason` (for logs and metrics). */
export type TokenRejectReason =
  | 'too_long'
  | 'malformed'
  | 'alg_not_allowed'
  | 'unsupported_crit'
  | 'bad_iss'
  | 'unknown_issuer'
  | 'no_key'
  | 'key_revoked'
  | 'key_expired'
  | 'bad_signature'
  | 'missing_exp'
  | 'expired'
  | 'missing_iat'
  | 'iat_in_future'
  | 'lifetime_too_long'
  | 'bad_nbf'
  | 'nbf_in_future'
  | 'bad_aud'
  | 'bad_sub'
  | 'bad_jti'
  | 'replayed';

/** Public facts about a registered key PEM. */
export interface KeyDescription {
  alg: KeyAlg;
  /** notAfter of an X.509 certificate (ms), null for a bare SPKI key. */
  certificateExpiresAt: number | null;
  modulusLength?: number;
  curve?: string;
}

const ALLOWED_RSA_BITS = new Set([2048, 3072, 4096]);
const BASE64URL_RE = /^[A-Za-z0-9_-]+$/;
const PEM_LABEL_RE = /-----BEGIN ([A-Z0-9 ]+)-----/;
/** Imported keys kept; far above the keys of the orgs active at once. */
const KEY_CACHE_SIZE = 1024;

/**
 * Reads a registered key PEM and checks it is one Handoff accepts: an SPKI public key or an X.509
 * certificate holding an RSA key of 2048, 3072 or 4096 bits, or an EC P-256 key.
 * Throws HandoffError('INVALID_FIELD') otherwise.
 *
 * @example
 * describeKey(pem); // { alg: 'RS256', certificateExpiresAt: null, modulusLength: 2048 }
 */
export function describeKey(pem: string): KeyDescription {
  return inspectKey(pem).description;
}

function inspectKey(pem: string): { description: KeyDescription; keyObject: KeyObject } {
  const { keyObject, certificateExpiresAt } = readPublicKey(pem);
  const details = keyObject.asymmetricKeyDetails ?? {};
  // 'rsa-pss' keys are deliberately refused: they cannot produce RS256 (PKCS#1 v1.5) signatures.
  if (keyObject.asymmetricKeyType === 'rsa') {
    const bits = details.modulusLength;
    if (bits === undefined || !ALLOWED_RSA_BITS.has(bits)) {
      invalidKey(`RSA keys must be 2048, 3072 or 4096 bits (got ${bits ?? 'unknown'})`);
    }
    return { keyObject, description: { alg: 'RS256', certificateExpiresAt, modulusLength: bits } };
  }
  if (keyObject.asymmetricKeyType === 'ec') {
    if (details.namedCurve !== 'prime256v1') {
      invalidKey(`EC keys must use curve P-256 (got ${details.namedCurve ?? 'unknown'})`);
    }
    return { keyObject, description: { alg: 'ES256', certificateExpiresAt, curve: 'P-256' } };
  }
  return invalidKey(`unsupported key type ${keyObject.asymmetricKeyType ?? 'unknown'}`);
}

function readPublicKey(pem: string): { keyObject: KeyObject; certificateExpiresAt: number | null } {
  // The label is checked first so a private key pasted by mistake is refused, not silently derived.
  const label = typeof pem === 'string' ? PEM_LABEL_RE.exec(pem)?.[1] : undefined;
  try {
    if (label === 'PUBLIC KEY') return { keyObject: createPublicKey(pem), certificateExpiresAt: null };
    if (label === 'CERTIFICATE') {
      const cert = new X509Certificate(pem);
      const notAfter = Date.parse(cert.validTo);
      if (Number.isNaN(notAfter)) return invalidKey('certificate has an unreadable notAfter');
      return { keyObject: cert.publicKey, certificateExpiresAt: notAfter };
    }
  } catch (e) {
    if (e instanceof HandoffError) throw e;
    return invalidKey(`unreadable ${label} PEM`);
  }
  return invalidKey('expected a PUBLIC KEY (SPKI) or CERTIFICATE PEM');
}

function invalidKey(message: string): never {
  throw new HandoffError('INVALID_FIELD', message, { details: { field: 'pem' } });
}

function reject(reason: TokenRejectReason, message: string): never {
  throw new HandoffError('INVALID_TOKEN', message, { details: { reason } });
}

/** A small insertion-ordered map that forgets its least recently used entry when full. */
class LruMap<K, V> {
  private readonly map = new Map<K, V>();
  constructor(private readonly capacity: number) {}

  get(key: K): V | undefined {
    const value = this.map.get(key);
    if (value !== undefined) {
      this.map.delete(key);
      this.map.set(key, value);
    }
    return value;
  }

  set(key: K, value: V): void {
    if (this.capacity <= 0) return;
    this.map.delete(key);
    this.map.set(key, value);
    if (this.map.size > this.capacity) {
      const oldest = this.map.keys().next();
      if (!oldest.done) this.map.delete(oldest.value);
    }
  }

  delete(key: K): void {
    this.map.delete(key);
  }

  deleteWhere(predicate: (value: V) => boolean): void {
    for (const [key, value] of this.map) if (predicate(value)) this.map.delete(key);
  }

  clear(): void {
    this.map.clear();
  }
}

interface PreparedKey {
  alg: KeyAlg;
  /** Earliest of the registered expiry and the certificate's notAfter (ms). */
  expiresAt: number | null;
  cryptoKey: CryptoKey;
}

interface KeyCacheEntry {
  orgId: string;
  pem: string;
  /** Resolves null for a PEM that cannot be used (it is then skipped, like a missing key). */
  prepared: Promise<PreparedKey | null>;
}

interface CacheEntry {
  token: VerifiedToken;
  /** Expiry of the key that verified it: past it, the token is verified again (and refused). */
  keyExpiresAt: number | null;
  /** When it was verified: entries older than maxCacheAgeSeconds are verified again. */
  verifiedAt: number;
}

interface ParsedToken {
  alg: KeyAlg;
  kid: string | undefined;
  payload: Record<string, unknown>;
}

/**
 * Verifies the bearer JWTs of SPEC §3: RS256/ES256 compact JWS signed by a registered key of the
 * org named in `iss`, with `iat`/`exp` (and optional `nbf`, `sub`, `aud`, `jti`) checked against the
 * injected clock. Every failure is a HandoffError('INVALID_TOKEN') whose `details.reason` is a
 * {@link TokenRejectReason}; messages never contain the token.
 *
 * Results are cached by token hash until `exp`; call {@link TokenVerifier.invalidateOrg} when an
 * org's keys, call centers or channels change.
 *
 * @example
 * const verifier = new TokenVerifier({ clock: systemClock, loadKeys, subjectExists, claimJti });
 * const { orgId, sub } = await verifier.verify(bearerToken);
 */
export class TokenVerifier {
  readonly stats = { cacheHits: 0, signatureChecks: 0 };

  private readonly skewMs: number;
  private readonly maxLifetimeSeconds: number;
  private readonly maxCacheAgeMs: number;
  private readonly maxTokenLength: number;
  private readonly acceptedAudiences: ReadonlySet<string>;
  private readonly cache: LruMap<string, CacheEntry>;
  private readonly keys = new LruMap<string, KeyCacheEntry>(KEY_CACHE_SIZE);

  constructor(private readonly deps: TokenVerifierDeps) {
    this.skewMs = (deps.maxSkewSeconds ?? 60) * 1000;
    this.maxLifetimeSeconds = deps.maxLifetimeSeconds ?? 86_400;
    this.maxCacheAgeMs = (deps.maxCacheAgeSeconds ?? Infinity) * 1000;
    this.maxTokenLength = deps.maxTokenLength ?? 8192;
    this.acceptedAudiences = new Set(deps.acceptedAudiences ?? []);
    this.cache = new LruMap(deps.cacheSize ?? 10_000);
  }

  /**
   * Resolves the verified claims of `token` (the bare JWT, without `Bearer `), or rejects with
   * HandoffError('INVALID_TOKEN').
   *
   * @example
   * const { orgId, jti } = await verifier.verify(token);
   */
  async verify(token: string): Promise<VerifiedToken> {
    if (typeof token !== 'string' || token.length === 0) reject('malformed', 'token is empty');
    if (token.length > this.maxTokenLength) reject('too_long', 'token is too long');

    const cacheKey = createHash('sha256').update(token).digest('base64url');
    const cached = this.cache.get(cacheKey);
    if (cached !== undefined) {
      const now = this.deps.clock.now();
      if (now >= cached.token.exp * 1000) {
        this.cache.delete(cacheKey);
        reject('expired', 'token has expired');
      }
      if ((cached.keyExpiresAt === null || now < cached.keyExpiresAt) && now - cached.verifiedAt < this.maxCacheAgeMs) {
        this.stats.cacheHits++;
        await this.claimJti(cached.token);
        return cached.token;
      }
      // The signing key expired, or the entry is old enough that a revocation elsewhere must be seen.
      this.cache.delete(cacheKey);
    }

    const parsed = parseToken(token);
    const orgId = readIssuer(parsed.payload['iss']);
    const keys = await this.deps.loadKeys(orgId);
    if (keys === null || keys.length === 0) reject('unknown_issuer', 'issuer is not a known org');

    const candidates = await this.selectKeys(keys, parsed);
    const used = await this.checkSignature(token, parsed.alg, candidates);
    const verified = await this.checkClaims(parsed, orgId, used.key.id);
    await this.claimJti(verified);
    this.cache.set(cacheKey, { token: verified, keyExpiresAt: used.prepared.expiresAt, verifiedAt: this.deps.clock.now() });
    return verified;
  }

  /**
   * Forgets cached verifications and imported keys of an org (15- or 18-char ID); call it whenever
   * the org's keys, call centers or channels change.
   *
   * @example
   * verifier.invalidateOrg('00Dxx0000004CFG');
   */
  invalidateOrg(orgId: string): void {
    const id15 = normalizeSfId(orgId, ORG_PREFIX) ?? orgId;
    this.cache.deleteWhere((entry) => entry.token.orgId === id15);
    this.keys.deleteWhere((entry) => entry.orgId === id15);
  }

  /** Forgets every cached verification and imported key. */
  clear(): void {
    this.cache.clear();
    this.keys.clear();
  }

  /**
   * Keys the token may be signed with: by `kid` when present (falling back to the org's keys
   * without a kid), else every key; only unrevoked, unexpired keys of the header's algorithm.
   */
  private async selectKeys(
    keys: RegisteredKey[],
    parsed: ParsedToken,
  ): Promise<Array<{ key: RegisteredKey; prepared: PreparedKey }>> {
    let matching = keys;
    if (parsed.kid !== undefined) {
      matching = keys.filter((k) => k.kid === parsed.kid);
      if (matching.length === 0) matching = keys.filter((k) => k.kid === null);
    }
    const now = this.deps.clock.now();
    const candidates: Array<{ key: RegisteredKey; prepared: PreparedKey }> = [];
    let expired = 0;
    let revoked = 0;
    let otherAlg = 0;
    for (const key of matching) {
      const prepared = await this.prepareKey(key);
      if (prepared === null) continue;
      if (prepared.alg !== parsed.alg) {
        if (!key.revoked) otherAlg++;
      } else if (key.revoked) {
        revoked++;
      } else if (prepared.expiresAt !== null && now >= prepared.expiresAt) {
        expired++;
      } else {
        candidates.push({ key, prepared });
      }
    }
    if (candidates.length > 0) return candidates;
    // Report the most specific cause: a key of the right algorithm that is no longer usable.
    if (expired > 0) reject('key_expired', 'signing key has expired');
    if (revoked > 0) reject('key_revoked', 'signing key has been revoked');
    if (otherAlg > 0) reject('alg_not_allowed', 'alg does not match the registered key');
    return reject('no_key', 'no registered key matches the token');
  }

  private prepareKey(key: RegisteredKey): Promise<PreparedKey | null> {
    const hit = this.keys.get(key.id);
    if (hit !== undefined && hit.pem === key.pem && hit.orgId === key.orgId) return hit.prepared;
    const prepared = importKey(key);
    this.keys.set(key.id, { orgId: key.orgId, pem: key.pem, prepared });
    return prepared;
  }

  private async checkSignature(
    token: string,
    alg: KeyAlg,
    candidates: Array<{ key: RegisteredKey; prepared: PreparedKey }>,
  ): Promise<{ key: RegisteredKey; prepared: PreparedKey }> {
    for (const candidate of candidates) {
      this.stats.signatureChecks++;
      try {
        // `algorithms` pins jose to the header alg we already matched against the key.
        await compactVerify(token, candidate.prepared.cryptoKey, { algorithms: [alg] });
        return candidate;
      } catch (e) {
        if (e instanceof joseErrors.JWSSignatureVerificationFailed) continue;
        if (e instanceof joseErrors.JOSEError) reject('malformed', 'token is not a valid JWS');
        throw e;
      }
    }
    return reject('bad_signature', 'signature does not verify');
  }

  private async checkClaims(parsed: ParsedToken, orgId: string, keyId: string): Promise<VerifiedToken> {
    const { payload } = parsed;
    const now = this.deps.clock.now();
    const exp = payload['exp'];
    const iat = payload['iat'];
    const nbf = payload['nbf'];
    if (!isNumericDate(exp)) reject('missing_exp', 'exp claim is missing or not a number');
    if (!isNumericDate(iat)) reject('missing_iat', 'iat claim is missing or not a number');
    // exp gets no skew: SPEC §3 wants "after now", and tokens are short-lived anyway.
    if (exp * 1000 <= now) reject('expired', 'token has expired');
    if (iat * 1000 > now + this.skewMs) reject('iat_in_future', 'iat is in the future');
    if (exp - iat > this.maxLifetimeSeconds) reject('lifetime_too_long', 'exp is too far after iat');
    if (nbf !== undefined) {
      if (!isNumericDate(nbf)) reject('bad_nbf', 'nbf claim is not a number');
      if (nbf * 1000 > now + this.skewMs) reject('nbf_in_future', 'token is not valid yet');
    }
    const aud = this.readAudience(payload['aud']);
    const jti = readOptionalString(payload['jti'], 'bad_jti', 'jti');
    const sub = readOptionalString(payload['sub'], 'bad_sub', 'sub');
    if (sub !== null && !(await this.deps.subjectExists(orgId, sub))) {
      reject('bad_sub', 'sub is not a call center or channel of the org');
    }
    return Object.freeze({ orgId, sub, jti, iat, exp, aud, keyId, alg: parsed.alg });
  }

  private readAudience(aud: unknown): string[] | null {
    if (aud === undefined) return null;
    const values = typeof aud === 'string' ? [aud] : aud;
    if (!Array.isArray(values) || !values.every((v): v is string => typeof v === 'string')) {
      reject('bad_aud', 'aud claim is not a string or an array of strings');
    }
    if (!values.some((v) => this.acceptedAudiences.has(v))) reject('bad_aud', 'aud is not an accepted audience');
    return Object.freeze([...values]) as string[];
  }

  /** Runs last, so a token refused for any other reason does not burn its jti. */
  private async claimJti(token: VerifiedToken): Promise<void> {
    if (token.jti === null) return;
    if (!(await this.deps.claimJti(token.orgId, token.jti, token.exp * 1000))) {
      reject('replayed', 'jti has already been used');
    }
  }
}

async function importKey(key: RegisteredKey): Promise<PreparedKey | null> {
  try {
    const { description, keyObject } = inspectKey(key.pem);
    const spki = keyObject.export({ type: 'spki', format: 'pem' }).toString();
    const cryptoKey = await importSPKI(spki, description.alg);
    const expiries = [key.expiresAt, description.certificateExpiresAt].filter((t): t is number => t !== null);
    return { alg: description.alg, expiresAt: expiries.length > 0 ? Math.min(...expiries) : null, cryptoKey };
  } catch {
    // A bad PEM is refused at registration; one that slipped into the store is just not usable.
    return null;
  }
}

/**
 * Splits and decodes a compact JWS without trusting anything yet: the header must name an allowed
 * alg and no `crit`; `jku`/`jwk`/`x5u`/`x5c` are ignored, keys only ever come from the registry.
 */
function parseToken(token: string): ParsedToken {
  const parts = token.split('.');
  if (parts.length === 5) reject('malformed', 'encrypted tokens (JWE) are not accepted');
  if (parts.length !== 3) reject('malformed', 'token is not a compact JWS');
  const [encodedHeader, encodedPayload, signature] = parts as [string, string, string];
  // The header goes first so `alg: none` (usually sent with an empty signature) is named as such.
  const header = decodeJsonObject(encodedHeader, 'header');
  const alg = header['alg'];
  if (alg !== 'RS256' && alg !== 'ES256') reject('alg_not_allowed', 'alg is not RS256 or ES256');
  if (header['crit'] !== undefined) reject('unsupported_crit', 'crit header parameters are not supported');
  const kid = header['kid'];
  if (kid !== undefined && typeof kid !== 'string') reject('malformed', 'kid header is not a string');
  if (!BASE64URL_RE.test(signature)) reject('malformed', 'signature is not base64url');
  return { alg, kid, payload: decodeJsonObject(encodedPayload, 'payload') };
}

function decodeJsonObject(part: string, what: string): Record<string, unknown> {
  if (!BASE64URL_RE.test(part)) reject('malformed', `${what} is not base64url`);
  let value: unknown;
  try {
    value = JSON.parse(Buffer.from(part, 'base64url').toString('utf8'));
  } catch {
    return reject('malformed', `${what} is not JSON`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    reject('malformed', `${what} is not a JSON object`);
  }
  return value as Record<string, unknown>;
}

function readIssuer(iss: unknown): string {
  if (iss === undefined) reject('bad_iss', 'iss claim is missing');
  const orgId = normalizeSfId(iss, ORG_PREFIX);
  if (orgId === null) reject('bad_iss', 'iss is not a valid org ID');
  return orgId;
}

function readOptionalString(value: unknown, reason: TokenRejectReason, claim: string): string | null {
  if (value === undefined) return null;
  if (typeof value !== 'string' || value.length === 0) reject(reason, `${claim} claim is not a non-empty string`);
  return value;
}

function isNumericDate(value: unknown): value is number {
  return typeof value === 'number' && Number.isFinite(value);
}
