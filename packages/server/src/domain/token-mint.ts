import { createPrivateKey, generateKeyPair as generateKeyPairCallback, randomUUID, type KeyObject } from 'node:crypto';
import { promisify } from 'node:util';
import { SignJWT } from 'jose';
import { HandoffError } from './errors.js';
import type { KeyAlg } from './token.js';

const generateKeyPairAsync = promisify(generateKeyPairCallback);

/** Longest lifetime the verifier accepts (SPEC §3: `exp` at most 24 h after `iat`). */
const MAX_TTL_SECONDS = 86_400;

export interface MintTokenOptions {
  /** PKCS#8 `PRIVATE KEY` PEM (PKCS#1 `RSA PRIVATE KEY` and SEC1 `EC PRIVATE KEY` also read). */
  privateKeyPem: string;
  /** Org ID, 15 or 18 chars; written as given. */
  iss: string;
  /** Call center API name or channel developer name. */
  sub?: string;
  /** Default 3600, at most 86400. */
  ttlSeconds?: number;
  kid?: string;
  /** Default: RS256 for an RSA key, ES256 for a P-256 key; must match the key when given. */
  alg?: KeyAlg;
  /** true: a random UUID; a string: that value. */
  jti?: boolean | string;
  aud?: string;
  /** Issue time in ms; default the current time. */
  now?: number;
}

/**
 * Signs a bearer JWT the way partners do (demo setup, CLI, SDK, tests), with integer-second
 * `iat` and `exp`.
 *
 * @example
 * const token = await mintToken({ privateKeyPem, iss: '00Dxx0000004CFG', sub: 'AcmeCallCenter', jti: true });
 */
export async function mintToken(opts: MintTokenOptions): Promise<string> {
  const key = readPrivateKey(opts.privateKeyPem);
  const alg = keyAlg(key);
  if (opts.alg !== undefined && opts.alg !== alg) invalid('alg', `alg ${opts.alg} does not match the ${alg} key`);
  const ttl = opts.ttlSeconds ?? 3600;
  if (!Number.isInteger(ttl) || ttl < 1 || ttl > MAX_TTL_SECONDS) {
    invalid('ttlSeconds', `ttlSeconds must be an integer from 1 to ${MAX_TTL_SECONDS}`);
  }
  const iat = Math.floor((opts.now ?? Date.now()) / 1000);

  const jwt = new SignJWT()
    .setProtectedHeader(opts.kid === undefined ? { alg, typ: 'JWT' } : { alg, typ: 'JWT', kid: opts.kid })
    .setIssuer(opts.iss)
    .setIssuedAt(iat)
    .setExpirationTime(iat + ttl);
  if (opts.sub !== undefined) jwt.setSubject(opts.sub);
  if (opts.aud !== undefined) jwt.setAudience(opts.aud);
  if (opts.jti === true) jwt.setJti(randomUUID());
  else if (typeof opts.jti === 'string') jwt.setJti(opts.jti);
  return jwt.sign(key);
}

/**
 * A new key pair for `alg`: RSA (2048 bits unless told) for RS256, P-256 for ES256, as a PKCS#8
 * private key PEM and an SPKI public key PEM (the form `describeKey` accepts).
 *
 * @example
 * const { privateKeyPem, publicKeyPem } = await generateKeyPair('ES256');
 */
export async function generateKeyPair(
  alg: KeyAlg,
  opts: { modulusLength?: 2048 | 3072 | 4096 } = {},
): Promise<{ privateKeyPem: string; publicKeyPem: string }> {
  const { publicKey, privateKey } =
    alg === 'RS256'
      ? await generateKeyPairAsync('rsa', {
          modulusLength: opts.modulusLength ?? 2048,
          publicKeyEncoding: { type: 'spki', format: 'pem' },
          privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
        })
      : await generateKeyPairAsync('ec', {
          namedCurve: 'prime256v1',
          publicKeyEncoding: { type: 'spki', format: 'pem' },
          privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
        });
  return { privateKeyPem: privateKey, publicKeyPem: publicKey };
}

function readPrivateKey(pem: string): KeyObject {
  try {
    return createPrivateKey(pem);
  } catch {
    return invalid('privateKeyPem', 'privateKeyPem is not a readable private key PEM');
  }
}

function keyAlg(key: KeyObject): KeyAlg {
  if (key.asymmetricKeyType === 'rsa') return 'RS256';
  if (key.asymmetricKeyType === 'ec' && key.asymmetricKeyDetails?.namedCurve === 'prime256v1') return 'ES256';
  return invalid('privateKeyPem', 'privateKeyPem must be an RSA or EC P-256 key');
}

function invalid(field: string, message: string): never {
  throw new HandoffError('INVALID_FIELD', message, { details: { field } });
}
