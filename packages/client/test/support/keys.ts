import { generateKeyPairSync, type KeyObject } from 'node:crypto';

export interface TestKey {
  privateKey: KeyObject;
  publicKeyPem: string;
  pkcs8: string;
  /** PKCS#1 (`RSA PRIVATE KEY`) or SEC1 (`EC PRIVATE KEY`), the key type's traditional form. */
  traditional: string;
}

export function rsaKey(): TestKey {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return {
    privateKey,
    publicKeyPem: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
    pkcs8: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    traditional: privateKey.export({ type: 'pkcs1', format: 'pem' }).toString(),
  };
}

export function ecKey(namedCurve = 'P-256'): TestKey {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve });
  return {
    privateKey,
    publicKeyPem: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
    pkcs8: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    traditional: privateKey.export({ type: 'sec1', format: 'pem' }).toString(),
  };
}

/** The header, claims and signature of a compact JWS, unverified. */
export function decodeJwt(token: string): { header: Record<string, unknown>; claims: Record<string, unknown>; signingInput: string; signature: Buffer } {
  const [h, c, s] = token.split('.');
  if (h === undefined || c === undefined || s === undefined) throw new Error('not a compact JWS');
  return {
    header: JSON.parse(Buffer.from(h, 'base64url').toString()) as Record<string, unknown>,
    claims: JSON.parse(Buffer.from(c, 'base64url').toString()) as Record<string, unknown>,
    signingInput: `${h}.${c}`,
    signature: Buffer.from(s, 'base64url'),
  };
}
