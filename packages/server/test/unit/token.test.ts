import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHmac, createPrivateKey, createPublicKey, generateKeyPairSync, sign } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ManualClock } from '../../src/domain/clock.js';
import { HandoffError } from '../../src/domain/errors.js';
import { toId18 } from '../../src/domain/ids.js';
import {
  describeKey,
  TokenVerifier,
  type RegisteredKey,
  type TokenRejectReason,
  type TokenVerifierDeps,
} from '../../src/domain/token.js';
import { generateKeyPair, mintToken, type MintTokenOptions } from '../../src/domain/token-mint.js';

const ORG = '00Dxx0000004CFG';
const OTHER_ORG = '00Dxx0000009XYZ';
const DAY_MS = 86_400_000;

const rsa = await generateKeyPair('RS256');
const rsa2 = await generateKeyPair('RS256');
const ec = await generateKeyPair('ES256');
const otherOrgKey = await generateKeyPair('RS256');

/** A self-signed RSA certificate valid from now for `days`, made by the openssl CLI. */
function makeCertificate(days: number): { privateKeyPem: string; certPem: string } {
  const dir = mkdtempSync(join(tmpdir(), 'handoff-cert-'));
  try {
    execFileSync(
      'openssl',
      ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem')]
        .concat(['-days', String(days), '-subj', '/CN=handoff-test']),
      { stdio: 'pipe' },
    );
    return {
      privateKeyPem: readFileSync(join(dir, 'key.pem'), 'utf8'),
      certPem: readFileSync(join(dir, 'cert.pem'), 'utf8'),
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function registered(id: string, pem: string, extra: Partial<RegisteredKey> = {}): RegisteredKey {
  return { id, orgId: ORG, kid: null, pem, expiresAt: null, revoked: false, ...extra };
}

interface SetupOptions {
  keys?: RegisteredKey[];
  clock?: ManualClock;
  deps?: Partial<TokenVerifierDeps>;
}

/** A verifier over in-memory keys, subjects and jti store; `mint` signs with the main RSA key by default. */
function setup(opts: SetupOptions = {}) {
  const clock = opts.clock ?? new ManualClock();
  const registry = new Map<string, RegisteredKey[]>();
  for (const key of opts.keys ?? [registered('k1', rsa.publicKeyPem)]) {
    registry.set(key.orgId, [...(registry.get(key.orgId) ?? []), key]);
  }
  const subjects = new Set([`${ORG}/AcmeCallCenter`, `${ORG}/Support_Channel`]);
  const jtis = new Set<string>();
  const verifier = new TokenVerifier({
    clock,
    loadKeys: async (orgId) => registry.get(orgId) ?? null,
    subjectExists: async (orgId, sub) => subjects.has(`${orgId}/${sub}`),
    claimJti: async (orgId, jti) => {
      const key = `${orgId}/${jti}`;
      if (jtis.has(key)) return false;
      jtis.add(key);
      return true;
    },
    ...opts.deps,
  });
  const mint = (o: Partial<MintTokenOptions> = {}) =>
    mintToken({ privateKeyPem: rsa.privateKeyPem, iss: ORG, now: clock.now(), ...o });
  /** Claims valid at the clock's now; an `undefined` value drops the claim. */
  const claims = (extra: Record<string, unknown> = {}) => {
    const iat = Math.floor(clock.now() / 1000);
    return { iss: ORG, iat, exp: iat + 300, ...extra };
  };
  return { clock, verifier, registry, subjects, jtis, mint, claims };
}

function b64json(value: unknown): string {
  return Buffer.from(JSON.stringify(value)).toString('base64url');
}

/** Signs arbitrary header and payload JSON, for tokens a well-behaved library would not produce. */
function signRaw(header: Record<string, unknown>, payload: Record<string, unknown>, privateKeyPem = rsa.privateKeyPem) {
  const input = `${b64json(header)}.${b64json(payload)}`;
  const key = createPrivateKey(privateKeyPem);
  const signature =
    key.asymmetricKeyType === 'ec'
      ? sign('sha256', Buffer.from(input), { key, dsaEncoding: 'ieee-p1363' })
      : sign('sha256', Buffer.from(input), key);
  return `${input}.${signature.toString('base64url')}`;
}

async function assertRejected(verifier: TokenVerifier, token: string, reason: TokenRejectReason): Promise<void> {
  await assert.rejects(verifier.verify(token), (e: unknown) => {
    assert.ok(e instanceof HandoffError, `expected a HandoffError, got ${String(e)}`);
    assert.equal(e.code, 'INVALID_TOKEN');
    assert.equal(e.details?.['reason'], reason, e.message);
    if (token.length > 8) assert.ok(!e.message.includes(token), 'the message must not contain the token');
    return true;
  });
}

function assertInvalidKey(fn: () => unknown): void {
  assert.throws(fn, (e: unknown) => e instanceof HandoffError && e.code === 'INVALID_FIELD');
}

describe('TokenVerifier accepts', () => {
  test('RS256 signed with a registered SPKI key', async () => {
    const { verifier, mint, clock } = setup();
    const iat = Math.floor(clock.now() / 1000);
    const verified = await verifier.verify(await mint());
    assert.deepEqual(verified, {
      orgId: ORG,
      sub: null,
      jti: null,
      iat,
      exp: iat + 3600,
      aud: null,
      keyId: 'k1',
      alg: 'RS256',
    });
  });

  test('RS256 signed with the key of a registered X.509 certificate', async () => {
    const cert = makeCertificate(30);
    const { verifier, mint } = setup({ keys: [registered('cert', cert.certPem)], clock: new ManualClock(Date.now()) });
    const verified = await verifier.verify(await mint({ privateKeyPem: cert.privateKeyPem }));
    assert.equal(verified.keyId, 'cert');
  });

  test('ES256 signed with a P-256 key', async () => {
    const { verifier, mint } = setup({ keys: [registered('ec', ec.publicKeyPem)] });
    const verified = await verifier.verify(await mint({ privateKeyPem: ec.privateKeyPem }));
    assert.equal(verified.alg, 'ES256');
    assert.equal(verified.keyId, 'ec');
  });

  test('RS256 signed with an RSA 4096 key', async () => {
    const big = await generateKeyPair('RS256', { modulusLength: 4096 });
    const { verifier, mint } = setup({ keys: [registered('big', big.publicKeyPem)] });
    assert.equal((await verifier.verify(await mint({ privateKeyPem: big.privateKeyPem }))).keyId, 'big');
  });

  test('key rotation: a token signed by either of two keys without kid', async () => {
    const { verifier, mint } = setup({ keys: [registered('old', rsa.publicKeyPem), registered('new', rsa2.publicKeyPem)] });
    assert.equal((await verifier.verify(await mint())).keyId, 'old');
    assert.equal((await verifier.verify(await mint({ privateKeyPem: rsa2.privateKeyPem }))).keyId, 'new');
  });

  test('kid selects the key, and only that key is tried', async () => {
    const { verifier, mint } = setup({
      keys: [registered('a', rsa.publicKeyPem, { kid: 'a' }), registered('b', rsa2.publicKeyPem, { kid: 'b' })],
    });
    const verified = await verifier.verify(await mint({ privateKeyPem: rsa2.privateKeyPem, kid: 'b' }));
    assert.equal(verified.keyId, 'b');
    assert.equal(verifier.stats.signatureChecks, 1);
    await assertRejected(verifier, await mint({ kid: 'b' }), 'bad_signature');
  });

  test('an unknown kid falls back to the keys without a kid', async () => {
    const { verifier, mint } = setup({
      keys: [registered('a', rsa2.publicKeyPem, { kid: 'a' }), registered('plain', rsa.publicKeyPem)],
    });
    assert.equal((await verifier.verify(await mint({ kid: 'rotated-away' }))).keyId, 'plain');
  });

  test('18-char iss, normalized to the 15-char org ID', async () => {
    const { verifier, mint } = setup();
    assert.equal((await verifier.verify(await mint({ iss: toId18(ORG) }))).orgId, ORG);
  });

  test('iat up to 60 s in the future', async () => {
    const { verifier, claims } = setup();
    const { iat } = claims();
    await verifier.verify(signRaw({ alg: 'RS256' }, claims({ iat: iat + 60 })));
  });

  test('a lifetime of exactly 24 h, and nbf within the skew', async () => {
    const { verifier, claims } = setup();
    const { iat } = claims();
    await verifier.verify(signRaw({ alg: 'RS256' }, claims({ exp: iat + 86_400, nbf: iat + 30 })));
  });

  test('sub naming a call center or a channel of the org', async () => {
    const { verifier, mint } = setup();
    assert.equal((await verifier.verify(await mint({ sub: 'AcmeCallCenter' }))).sub, 'AcmeCallCenter');
    assert.equal((await verifier.verify(await mint({ sub: 'Support_Channel' }))).sub, 'Support_Channel');
  });

  test('aud with an accepted audience, as a string or in an array', async () => {
    const { verifier, mint, claims } = setup({ deps: { acceptedAudiences: ['https://handoff.example.com'] } });
    const verified = await verifier.verify(await mint({ aud: 'https://handoff.example.com' }));
    assert.deepEqual(verified.aud, ['https://handoff.example.com']);
    const token = signRaw({ alg: 'RS256' }, claims({ aud: ['other', 'https://handoff.example.com'] }));
    assert.deepEqual((await verifier.verify(token)).aud, ['other', 'https://handoff.example.com']);
  });

  test('a token without jti, reused until it expires (with and without the cache)', async () => {
    for (const cacheSize of [0, 10]) {
      const { verifier, mint } = setup({ deps: { cacheSize } });
      const token = await mint();
      await verifier.verify(token);
      await verifier.verify(token);
      await verifier.verify(token);
    }
  });

  test('a mintToken round trip with kid, sub, aud and jti', async () => {
    const { verifier, mint, jtis } = setup({
      keys: [registered('ec', ec.publicKeyPem, { kid: 'ec-2026' })],
      deps: { acceptedAudiences: ['handoff'] },
    });
    const token = await mint({ privateKeyPem: ec.privateKeyPem, kid: 'ec-2026', sub: 'AcmeCallCenter', aud: 'handoff', jti: true });
    const verified = await verifier.verify(token);
    assert.equal(verified.keyId, 'ec');
    assert.equal(verified.sub, 'AcmeCallCenter');
    assert.deepEqual(verified.aud, ['handoff']);
    assert.match(verified.jti ?? '', /^[0-9a-f-]{36}$/);
    assert.ok(jtis.has(`${ORG}/${verified.jti}`));
  });
});

describe('TokenVerifier rejects', () => {
  test('too_long: a token over maxTokenLength, before any parsing', async () => {
    const { verifier, mint } = setup({ deps: { maxTokenLength: 100 } });
    await assertRejected(verifier, await mint(), 'too_long');
    await assertRejected(setup().verifier, 'a'.repeat(8193), 'too_long');
  });

  test('malformed: not a compact JWS of base64url JSON objects', async () => {
    const { verifier, mint } = setup();
    const [h, p, s] = (await mint()).split('.') as [string, string, string];
    const cases = [
      '',
      'abc',
      `${h}.${p}`,
      `${h}.${p}.${s}.${s}`,
      `${h}.${p}.`,
      `${h}..${s}`,
      `.${p}.${s}`,
      `${h}.${p}.${s}=`,
      `${h}.${p}+.${s}`,
      `${b64json('RS256')}.${p}.${s}`,
      `${Buffer.from('{"alg":').toString('base64url')}.${p}.${s}`,
      `${h}.${b64json([1, 2])}.${s}`,
      `${h}.${Buffer.from('not json').toString('base64url')}.${s}`,
      `${b64json({ alg: 'RS256', kid: 7 })}.${p}.${s}`,
    ];
    for (const token of cases) await assertRejected(verifier, token, 'malformed');
  });

  test('malformed: a JWE-shaped 5-part token', async () => {
    const { verifier } = setup();
    const header = b64json({ alg: 'RSA-OAEP-256', enc: 'A256GCM' });
    await assertRejected(verifier, `${header}.a2V5.aXY.Y2lwaGVy.dGFn`, 'malformed');
  });

  test('alg_not_allowed: alg none', async () => {
    const { verifier, claims } = setup();
    await assertRejected(verifier, `${b64json({ alg: 'none' })}.${b64json(claims())}.`, 'alg_not_allowed');
    await assertRejected(verifier, `${b64json({ alg: 'none' })}.${b64json(claims())}.c2ln`, 'alg_not_allowed');
  });

  test('alg_not_allowed: HS256 signed with the public key bytes as HMAC secret (key confusion)', async () => {
    const { verifier, claims } = setup();
    const input = `${b64json({ alg: 'HS256', typ: 'JWT' })}.${b64json(claims())}`;
    const mac = createHmac('sha256', rsa.publicKeyPem).update(input).digest('base64url');
    await assertRejected(verifier, `${input}.${mac}`, 'alg_not_allowed');
  });

  test('alg_not_allowed: any other algorithm, or a missing one', async () => {
    const { verifier, claims } = setup();
    for (const alg of ['PS256', 'RS384', 'RS512', 'ES384', 'EdDSA', 'HS512', 'rs256', undefined]) {
      await assertRejected(verifier, signRaw({ alg }, claims()), 'alg_not_allowed');
    }
  });

  test('alg_not_allowed: the alg does not match the registered key type', async () => {
    const rsaOnly = setup();
    await assertRejected(rsaOnly.verifier, signRaw({ alg: 'ES256' }, rsaOnly.claims(), ec.privateKeyPem), 'alg_not_allowed');
    const ecOnly = setup({ keys: [registered('ec', ec.publicKeyPem)] });
    await assertRejected(ecOnly.verifier, signRaw({ alg: 'RS256' }, ecOnly.claims()), 'alg_not_allowed');
  });

  test('unsupported_crit: a crit header', async () => {
    const { verifier, claims } = setup();
    await assertRejected(verifier, signRaw({ alg: 'RS256', crit: ['exp'], exp: 1 }, claims()), 'unsupported_crit');
  });

  test('bad_signature: an embedded jwk header is never used as the key', async () => {
    const { verifier, claims } = setup();
    const attacker = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const jwk = attacker.publicKey.export({ format: 'jwk' });
    const pem = attacker.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
    const token = signRaw({ alg: 'RS256', jwk, jku: 'https://evil.example/jwks', x5u: 'https://evil.example/x5u' }, claims(), pem);
    await assertRejected(verifier, token, 'bad_signature');
  });

  test('bad_iss: iss missing, not an org ID, or 18 chars with a wrong suffix', async () => {
    const { verifier, claims } = setup();
    const id18 = toId18(ORG);
    const wrongSuffix = `${ORG}${id18.endsWith('AAA') ? 'BBB' : 'AAA'}`;
    for (const iss of [undefined, 42, '', '0LQxx0000004ABc', '00Dxx0000004CF', wrongSuffix, ORG.toLowerCase()]) {
      await assertRejected(verifier, signRaw({ alg: 'RS256' }, claims({ iss })), 'bad_iss');
    }
  });

  test('unknown_issuer: an org without keys', async () => {
    const { verifier, mint } = setup();
    await assertRejected(verifier, await mint({ iss: OTHER_ORG }), 'unknown_issuer');
  });

  test('bad_signature: a token signed by another org\'s key', async () => {
    const { verifier, mint } = setup({
      keys: [registered('k1', rsa.publicKeyPem), registered('other', otherOrgKey.publicKeyPem, { orgId: OTHER_ORG })],
    });
    await verifier.verify(await mint({ iss: OTHER_ORG, privateKeyPem: otherOrgKey.privateKeyPem }));
    await assertRejected(verifier, await mint({ privateKeyPem: otherOrgKey.privateKeyPem }), 'bad_signature');
  });

  test('bad_signature: a tampered payload', async () => {
    const { verifier, mint, claims } = setup();
    const [h, , s] = (await mint()).split('.') as [string, string, string];
    await assertRejected(verifier, `${h}.${b64json(claims({ exp: claims().iat + 3600, sub: 'AcmeCallCenter' }))}.${s}`, 'bad_signature');
  });

  test('no_key: a kid no key has, when every key has a kid', async () => {
    const { verifier, mint } = setup({ keys: [registered('a', rsa.publicKeyPem, { kid: 'a' })] });
    await assertRejected(verifier, await mint({ kid: 'b' }), 'no_key');
  });

  test('key_revoked: a revoked key', async () => {
    const { verifier, mint } = setup({ keys: [registered('k1', rsa.publicKeyPem, { revoked: true })] });
    await assertRejected(verifier, await mint(), 'key_revoked');
  });

  test('key_expired: a key past its registered expiry', async () => {
    const clock = new ManualClock();
    const { verifier, mint } = setup({ clock, keys: [registered('k1', rsa.publicKeyPem, { expiresAt: clock.now() - 1 })] });
    await assertRejected(verifier, await mint(), 'key_expired');
  });

  test('key_expired: a certificate past its notAfter', async () => {
    const cert = makeCertificate(1);
    const { verifier, mint } = setup({
      keys: [registered('cert', cert.certPem)],
      clock: new ManualClock(Date.now() + 2 * DAY_MS),
    });
    await assertRejected(verifier, await mint({ privateKeyPem: cert.privateKeyPem }), 'key_expired');
  });

  test('missing_exp: exp absent or not a number', async () => {
    const { verifier, claims } = setup();
    await assertRejected(verifier, signRaw({ alg: 'RS256' }, claims({ exp: undefined })), 'missing_exp');
    await assertRejected(verifier, signRaw({ alg: 'RS256' }, claims({ exp: String(claims().exp) })), 'missing_exp');
  });

  test('expired: exp at or before now (no skew)', async () => {
    const { verifier, claims } = setup();
    const { iat } = claims();
    await assertRejected(verifier, signRaw({ alg: 'RS256' }, claims({ iat: iat - 600, exp: iat })), 'expired');
    await assertRejected(verifier, signRaw({ alg: 'RS256' }, claims({ iat: iat - 600, exp: iat - 1 })), 'expired');
  });

  test('missing_iat: iat absent or not a number', async () => {
    const { verifier, claims } = setup();
    await assertRejected(verifier, signRaw({ alg: 'RS256' }, claims({ iat: undefined })), 'missing_iat');
    await assertRejected(verifier, signRaw({ alg: 'RS256' }, claims({ iat: null })), 'missing_iat');
  });

  test('iat_in_future: iat more than 60 s ahead', async () => {
    const { verifier, claims } = setup();
    await assertRejected(verifier, signRaw({ alg: 'RS256' }, claims({ iat: claims().iat + 61 })), 'iat_in_future');
  });

  test('lifetime_too_long: exp more than 24 h after iat', async () => {
    const { verifier, claims } = setup();
    await assertRejected(verifier, signRaw({ alg: 'RS256' }, claims({ exp: claims().iat + 86_401 })), 'lifetime_too_long');
  });

  test('bad_nbf: nbf not a number', async () => {
    const { verifier, claims } = setup();
    await assertRejected(verifier, signRaw({ alg: 'RS256' }, claims({ nbf: 'soon' })), 'bad_nbf');
  });

  test('nbf_in_future: nbf more than 60 s ahead', async () => {
    const { verifier, claims } = setup();
    await assertRejected(verifier, signRaw({ alg: 'RS256' }, claims({ nbf: claims().iat + 61 })), 'nbf_in_future');
  });

  test('bad_sub: sub naming nothing of the org, or not a string', async () => {
    const { verifier, mint, claims } = setup();
    await assertRejected(verifier, await mint({ sub: 'NoSuchCallCenter' }), 'bad_sub');
    await assertRejected(verifier, signRaw({ alg: 'RS256' }, claims({ sub: 123 })), 'bad_sub');
  });

  test('bad_aud: aud not in the accepted list, any aud when none is configured, or a bad type', async () => {
    const configured = setup({ deps: { acceptedAudiences: ['handoff'] } });
    await assertRejected(configured.verifier, await configured.mint({ aud: 'someone-else' }), 'bad_aud');
    await assertRejected(configured.verifier, signRaw({ alg: 'RS256' }, configured.claims({ aud: [] })), 'bad_aud');
    await assertRejected(configured.verifier, signRaw({ alg: 'RS256' }, configured.claims({ aud: ['handoff', 1] })), 'bad_aud');
    const unconfigured = setup();
    await assertRejected(unconfigured.verifier, await unconfigured.mint({ aud: 'handoff' }), 'bad_aud');
  });

  test('bad_jti: jti not a non-empty string', async () => {
    const { verifier, claims } = setup();
    await assertRejected(verifier, signRaw({ alg: 'RS256' }, claims({ jti: 42 })), 'bad_jti');
    await assertRejected(verifier, signRaw({ alg: 'RS256' }, claims({ jti: '' })), 'bad_jti');
  });

  test('replayed: a jti seen before, even in a different token', async () => {
    const { verifier, mint, clock } = setup({ deps: { cacheSize: 0 } });
    const token = await mint({ jti: 'call-1' });
    await verifier.verify(token);
    await assertRejected(verifier, token, 'replayed');
    clock.advance(5000);
    await assertRejected(verifier, await mint({ jti: 'call-1' }), 'replayed');
  });

  test('a rejected token does not burn its jti', async () => {
    const { verifier, mint, jtis } = setup();
    await assertRejected(verifier, await mint({ jti: 'call-2', sub: 'NoSuchCallCenter' }), 'bad_sub');
    assert.equal(jtis.size, 0);
    await verifier.verify(await mint({ jti: 'call-2' }));
  });
});

describe('TokenVerifier cache', () => {
  test('a hit skips the signature check', async () => {
    const { verifier, mint } = setup();
    const token = await mint();
    const first = await verifier.verify(token);
    const second = await verifier.verify(token);
    assert.deepEqual(second, first);
    assert.deepEqual(verifier.stats, { cacheHits: 1, signatureChecks: 1 });
  });

  test('exp is still enforced on a hit', async () => {
    const { verifier, mint, clock } = setup();
    const token = await mint({ ttlSeconds: 60 });
    await verifier.verify(token);
    clock.advance(59_999);
    await verifier.verify(token);
    clock.advance(1);
    await assertRejected(verifier, token, 'expired');
    assert.deepEqual(verifier.stats, { cacheHits: 1, signatureChecks: 1 });
  });

  test('a jti is still claimed on a hit, so a replay is rejected', async () => {
    const { verifier, mint } = setup();
    const token = await mint({ jti: true });
    await verifier.verify(token);
    await assertRejected(verifier, token, 'replayed');
    assert.deepEqual(verifier.stats, { cacheHits: 1, signatureChecks: 1 });
  });

  test('a signing key that expired since the hit was cached is reported', async () => {
    const clock = new ManualClock();
    const { verifier, mint } = setup({ clock, keys: [registered('k1', rsa.publicKeyPem, { expiresAt: clock.now() + 30_000 })] });
    const token = await mint();
    await verifier.verify(token);
    clock.advance(30_000);
    await assertRejected(verifier, token, 'key_expired');
  });

  test('failures are never cached', async () => {
    const { verifier, mint, subjects } = setup();
    const token = await mint({ sub: 'NewCallCenter' });
    await assertRejected(verifier, token, 'bad_sub');
    await assertRejected(verifier, token, 'bad_sub');
    subjects.add(`${ORG}/NewCallCenter`);
    await verifier.verify(token);
    assert.deepEqual(verifier.stats, { cacheHits: 0, signatureChecks: 3 });
  });

  test('invalidateOrg forces re-verification of that org only', async () => {
    const { verifier, mint, registry } = setup({
      keys: [registered('k1', rsa.publicKeyPem), registered('other', otherOrgKey.publicKeyPem, { orgId: OTHER_ORG })],
    });
    const token = await mint();
    const otherToken = await mint({ iss: OTHER_ORG, privateKeyPem: otherOrgKey.privateKeyPem });
    await verifier.verify(token);
    await verifier.verify(otherToken);
    verifier.invalidateOrg(toId18(ORG));
    await verifier.verify(token);
    await verifier.verify(otherToken);
    assert.deepEqual(verifier.stats, { cacheHits: 1, signatureChecks: 3 });

    registry.set(ORG, [registered('k1', rsa.publicKeyPem, { revoked: true })]);
    await verifier.verify(token);
    verifier.invalidateOrg(ORG);
    await assertRejected(verifier, token, 'key_revoked');
  });

  test('maxCacheAgeSeconds: a revocation made elsewhere is seen once the entry is that old', async () => {
    const clock = new ManualClock();
    const { verifier, mint, registry } = setup({ clock, deps: { maxCacheAgeSeconds: 30 } });
    const token = await mint({ ttlSeconds: 3600 });
    await verifier.verify(token);
    registry.set(ORG, [registered('k1', rsa.publicKeyPem, { revoked: true })]);
    clock.advance(29_000);
    await verifier.verify(token);
    assert.deepEqual(verifier.stats, { cacheHits: 1, signatureChecks: 1 });
    clock.advance(1_000);
    await assertRejected(verifier, token, 'key_revoked');
  });

  test('clear forgets every entry', async () => {
    const { verifier, mint } = setup();
    const token = await mint();
    await verifier.verify(token);
    verifier.clear();
    await verifier.verify(token);
    assert.deepEqual(verifier.stats, { cacheHits: 0, signatureChecks: 2 });
  });

  test('the cache is bounded, evicting the least recently used entry', async () => {
    const { verifier, mint, clock } = setup({ deps: { cacheSize: 2 } });
    const tokens: string[] = [];
    for (let i = 0; i < 3; i++) {
      tokens.push(await mint());
      clock.advance(1000);
    }
    const [t1, t2, t3] = tokens as [string, string, string];
    await verifier.verify(t1);
    await verifier.verify(t2);
    await verifier.verify(t1);
    await verifier.verify(t3);
    assert.deepEqual(verifier.stats, { cacheHits: 1, signatureChecks: 3 });
    await verifier.verify(t1);
    await verifier.verify(t2);
    assert.deepEqual(verifier.stats, { cacheHits: 2, signatureChecks: 4 });
  });
});

describe('describeKey', () => {
  test('an RSA 2048 SPKI key', () => {
    assert.deepEqual(describeKey(rsa.publicKeyPem), { alg: 'RS256', certificateExpiresAt: null, modulusLength: 2048 });
  });

  test('a P-256 SPKI key', () => {
    assert.deepEqual(describeKey(ec.publicKeyPem), { alg: 'ES256', certificateExpiresAt: null, curve: 'P-256' });
  });

  test('an X.509 certificate, with its notAfter', () => {
    const { certPem } = makeCertificate(10);
    const description = describeKey(certPem);
    assert.equal(description.alg, 'RS256');
    assert.equal(description.modulusLength, 2048);
    const expected = Date.now() + 10 * DAY_MS;
    assert.ok(Math.abs((description.certificateExpiresAt ?? 0) - expected) < 60_000);
  });

  test('rejects RSA 1024', () => {
    const { publicKey } = generateKeyPairSync('rsa', { modulusLength: 1024 });
    assertInvalidKey(() => describeKey(publicKey.export({ type: 'spki', format: 'pem' }).toString()));
  });

  test('rejects EC P-384', () => {
    const { publicKey } = generateKeyPairSync('ec', { namedCurve: 'secp384r1' });
    assertInvalidKey(() => describeKey(publicKey.export({ type: 'spki', format: 'pem' }).toString()));
  });

  test('rejects Ed25519, private keys, PKCS#1 public keys and garbage', () => {
    const { publicKey } = generateKeyPairSync('ed25519');
    assertInvalidKey(() => describeKey(publicKey.export({ type: 'spki', format: 'pem' }).toString()));
    assertInvalidKey(() => describeKey(rsa.privateKeyPem));
    const pkcs1 = createPublicKey(rsa.publicKeyPem).export({ type: 'pkcs1', format: 'pem' }).toString();
    assertInvalidKey(() => describeKey(pkcs1));
    assertInvalidKey(() => describeKey('-----BEGIN PUBLIC KEY-----\nbm9wZQ==\n-----END PUBLIC KEY-----\n'));
    assertInvalidKey(() => describeKey('not a pem'));
  });
});

describe('mintToken', () => {
  test('integer iat and exp, 1 h by default, iss as given', async () => {
    const now = Date.UTC(2026, 0, 1, 12, 0, 0, 750);
    const token = await mintToken({ privateKeyPem: rsa.privateKeyPem, iss: toId18(ORG), now });
    const [header, payload] = token.split('.').slice(0, 2).map((p) => JSON.parse(Buffer.from(p, 'base64url').toString()));
    assert.deepEqual(header, { alg: 'RS256', typ: 'JWT' });
    const iat = Math.floor(now / 1000);
    assert.deepEqual(payload, { iss: toId18(ORG), iat, exp: iat + 3600 });
  });

  test('rejects a lifetime over 24 h, an alg not matching the key, and a bad key', async () => {
    const base = { privateKeyPem: rsa.privateKeyPem, iss: ORG };
    for (const opts of [
      { ...base, ttlSeconds: 86_401 },
      { ...base, ttlSeconds: 0 },
      { ...base, alg: 'ES256' as const },
      { ...base, privateKeyPem: rsa.publicKeyPem },
    ]) {
      await assert.rejects(mintToken(opts), (e: unknown) => e instanceof HandoffError && e.code === 'INVALID_FIELD');
    }
  });
});
