import { createPrivateKey, sign, type KeyObject } from 'node:crypto';

/** JWS algorithms the service accepts: RS256 for RSA keys, ES256 for EC P-256 keys. */
export type TokenAlg = 'RS256' | 'ES256';

/** Longest lifetime the service accepts (`exp` at most 24 h after `iat`). */
export const MAX_TOKEN_TTL_SECONDS = 86_400;
const DEFAULT_TTL_SECONDS = 3600;

export interface MintTokenOptions {
  /** The private key as PEM: PKCS#8 (`PRIVATE KEY`), PKCS#1 (`RSA PRIVATE KEY`) or SEC1 (`EC PRIVATE KEY`). */
  privateKeyPem: string;
  /** The org ID (15 or 18 chars), written as `iss`. */
  orgId: string;
  /** `sub`: the call center API name or channel developer name; omit it if you are not a call center. */
  subject?: string | undefined;
  /** `kid` header: selects the registered key directly. */
  keyId?: string | undefined;
  /** Inferred from the key; when given it must match the key. */
  alg?: TokenAlg | undefined;
  /** Lifetime in whole seconds, 1 to 86400; default 3600. */
  ttlSeconds?: number | undefined;
  /** Issue time in milliseconds since the epoch; default now. */
  now?: number | undefined;
}

/** A signing key read once, with its algorithm. */
export interface SigningKey {
  key: KeyObject;
  alg: TokenAlg;
}

/** A minted token with its integer `iat` and `exp` (seconds). */
export interface SignedToken {
  token: string;
  iat: number;
  exp: number;
}

/**
 * Signs a bearer JWT the service accepts: header `{alg, typ, kid?}`, claims `{iss, sub?, iat, exp}`
 * with integer seconds. Use it for tokens you pass around yourself (a UUI, another process);
 * {@link HandoffClient} mints and caches its own.
 *
 * @example
 * import { readFileSync } from 'node:fs';
 * const token = mintToken({
 *   privateKeyPem: readFileSync('data/demo-private-key.pem', 'utf8'),
 *   orgId: '00Dxx0000001DMO',
 *   subject: 'DemoCallCenter',
 *   ttlSeconds: 86_400, // partners that reuse one token across calls use the maximum
 * });
 */
export function mintToken(options: MintTokenOptions): string {
  return signToken(readSigningKey(options.privateKeyPem, options.alg), options).token;
}

/** Reads a PEM private key and infers (or checks) its algorithm. Throws TypeError on a bad key. */
export function readSigningKey(privateKeyPem: string, alg?: TokenAlg): SigningKey {
  let key: KeyObject;
  try {
    key = createPrivateKey(privateKeyPem);
  } catch (err) {
    throw new TypeError('privateKeyPem is not a readable, unencrypted private key PEM', { cause: err });
  }
  let keyAlg: TokenAlg;
  if (key.asymmetricKeyType === 'rsa') keyAlg = 'RS256';
  else if (key.asymmetricKeyType === 'ec' && key.asymmetricKeyDetails?.namedCurve === 'prime256v1') keyAlg = 'ES256';
  else throw new TypeError('privateKeyPem must be an RSA key (RS256) or an EC P-256 key (ES256)');
  if (alg !== undefined && alg !== keyAlg) throw new TypeError(`alg ${alg} does not match the ${keyAlg} key`);
  return { key, alg: keyAlg };
}

/** Checks a token lifetime and returns it, or the default. */
export function tokenTtl(ttlSeconds: number | undefined): number {
  const ttl = ttlSeconds ?? DEFAULT_TTL_SECONDS;
  if (!Number.isInteger(ttl) || ttl < 1 || ttl > MAX_TOKEN_TTL_SECONDS) {
    throw new RangeError(`token TTL must be an integer from 1 to ${MAX_TOKEN_TTL_SECONDS} seconds (got ${ttlSeconds})`);
  }
  return ttl;
}

export function signToken(signer: SigningKey, claims: Omit<MintTokenOptions, 'privateKeyPem' | 'alg'>): SignedToken {
  const iat = Math.floor((claims.now ?? Date.now()) / 1000);
  const exp = iat + tokenTtl(claims.ttlSeconds);
  const header = claims.keyId === undefined ? { alg: signer.alg, typ: 'JWT' } : { alg: signer.alg, typ: 'JWT', kid: claims.keyId };
  const payload = claims.subject === undefined ? { iss: claims.orgId, iat, exp } : { iss: claims.orgId, sub: claims.subject, iat, exp };
  const input = `${base64url(header)}.${base64url(payload)}`;
  // JWS wants ECDSA signatures as raw r||s (IEEE P1363), not Node's default DER.
  const signature = sign('sha256', Buffer.from(input), signer.alg === 'ES256' ? { key: signer.key, dsaEncoding: 'ieee-p1363' } : signer.key);
  return { token: `${input}.${signature.toString('base64url')}`, iat, exp };
}

function base64url(value: object): string {
  return Buffer.from(JSON.stringify(value)).toString('base64url');
}

/**
 * One token reused until shortly before it expires: it is refreshed once less than
 * min(60 s, 10% of its lifetime) is left, so a request never leaves with a token about to lapse.
 */
export class TokenCache {
  private current: { token: string; refreshAt: number } | undefined;

  constructor(private readonly mint: (now: number) => SignedToken) {}

  get(now = Date.now()): string {
    if (this.current !== undefined && now < this.current.refreshAt) return this.current.token;
    const { token, iat, exp } = this.mint(now);
    const marginMs = Math.min(60_000, ((exp - iat) * 1000) / 10);
    this.current = { token, refreshAt: exp * 1000 - marginMs };
    return token;
  }
}
