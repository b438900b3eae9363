import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createPublicKey, verify } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { HandoffClient, isHandoffApiError, mintToken } from '../src/index.js';
import { TokenCache } from '../src/token.js';
import { decodeJwt, ecKey, rsaKey } from './support/keys.js';
import { startProvisionedService, type Service } from './support/service.js';

const ORG = '00Dxx0000005SDK';
const CALL_CENTER = 'SdkCallCenter';
const rsa = rsaKey();
const ec = ecKey();

function verifies(token: string, publicKeyPem: string): boolean {
  const { header, signingInput, signature } = decodeJwt(token);
  const key = createPublicKey(publicKeyPem);
  const data = Buffer.from(signingInput);
  return header.alg === 'ES256' ? verify('sha256', data, { key, dsaEncoding: 'ieee-p1363' }, signature) : verify('sha256', data, key, signature);
}

describe('mintToken', () => {
  test('signs RS256 with integer iat/exp, iss, sub and the default 1 h lifetime', () => {
    const now = Date.UTC(2026, 10, 22, 12, 0, 0, 750);
    const token = mintToken({ privateKeyPem: rsa.pkcs8, orgId: ORG, subject: CALL_CENTER, now });
    const { header, claims } = decodeJwt(token);
    assert.deepEqual(header, { alg: 'RS256', typ: 'JWT' });
    assert.deepEqual(claims, { iss: ORG, sub: CALL_CENTER, iat: Math.floor(now / 1000), exp: Math.floor(now / 1000) + 3600 });
    assert.ok(verifies(token, rsa.publicKeyPem));
  });

  test('reads PKCS#1 and SEC1 keys; ES256 signatures are raw r||s; kid and ttl are written; no sub when none is given', () => {
    const fromPkcs1 = mintToken({ privateKeyPem: rsa.traditional, orgId: ORG, keyId: 'rsa-1' });
    assert.deepEqual(decodeJwt(fromPkcs1).header, { alg: 'RS256', typ: 'JWT', kid: 'rsa-1' });
    assert.ok(verifies(fromPkcs1, rsa.publicKeyPem));

    const es = mintToken({ privateKeyPem: ec.traditional, orgId: ORG, ttlSeconds: 86_400 });
    const { header, claims, signature } = decodeJwt(es);
    assert.deepEqual(header, { alg: 'ES256', typ: 'JWT' });
    assert.equal(signature.length, 64, 'IEEE P1363: 32-byte r and s, not DER');
    assert.equal(claims.sub, undefined);
    assert.equal((claims.exp as number) - (claims.iat as number), 86_400);
    assert.ok(verifies(es, ec.publicKeyPem));
    assert.ok(verifies(mintToken({ privateKeyPem: ec.pkcs8, orgId: ORG }), ec.publicKeyPem));
  });

  test('refuses keys and lifetimes the service would not accept', () => {
    assert.throws(() => mintToken({ privateKeyPem: rsa.pkcs8, orgId: ORG, alg: 'ES256' }), TypeError);
    assert.throws(() => mintToken({ privateKeyPem: ecKey('P-384').pkcs8, orgId: ORG }), TypeError);
    assert.throws(() => mintToken({ privateKeyPem: 'not a key', orgId: ORG }), TypeError);
    assert.throws(() => mintToken({ privateKeyPem: rsa.publicKeyPem, orgId: ORG }), TypeError);
    for (const ttlSeconds of [0, 86_401, 1.5]) assert.throws(() => mintToken({ privateKeyPem: rsa.pkcs8, orgId: ORG, ttlSeconds }), RangeError);
  });
});

describe('token cache', () => {
  test('reuses a token until less than min(60 s, 10% of its lifetime) is left', () => {
    for (const [ttl, marginMs] of [[3600, 60_000], [100, 10_000]] as const) {
      let mints = 0;
      const cache = new TokenCache((now) => {
        mints++;
        const iat = Math.floor(now / 1000);
        return { token: `t${mints}`, iat, exp: iat + ttl };
      });
      const t0 = 1_800_000_000_000;
      assert.equal(cache.get(t0), 't1');
      assert.equal(cache.get(t0 + ttl * 1000 - marginMs - 1), 't1', `ttl ${ttl}: still reused just before the margin`);
      assert.equal(cache.get(t0 + ttl * 1000 - marginMs), 't2', `ttl ${ttl}: refreshed at the margin`);
      assert.equal(mints, 2);
    }
  });
});

describe('HandoffClient tokens against the service', () => {
  let svc: Service;
  before(async () => {
    svc = await startProvisionedService({
      orgs: [
        {
          id: ORG,
          name: 'SDK tests',
          domain: 'sdk.my.example.com',
          keys: [
            { id: 'sdk-rsa', kid: 'rsa-1', publicKey: rsa.publicKeyPem },
            { id: 'sdk-ec', kid: 'ec-1', publicKey: ec.publicKeyPem },
          ],
          callCenters: [{ apiName: CALL_CENTER }],
        },
      ],
    });
  });
  after(() => svc.close());

  /** A client whose fetch records the Authorization header of every request. */
  function recordingClient(options: Partial<ConstructorParameters<typeof HandoffClient>[0]>) {
    const authorizations: string[] = [];
    const client = new HandoffClient({
      baseUrl: svc.url,
      orgId: ORG,
      subject: CALL_CENTER,
      privateKeyPem: ec.traditional,
      fetch: (url, init) => {
        authorizations.push(new Headers(init?.headers).get('authorization') ?? '');
        return fetch(url, init);
      },
      ...options,
    } as ConstructorParameters<typeof HandoffClient>[0]);
    return { client, authorizations };
  }

  let calls = 0;
  const newCall = () => ({ vendorCallKey: `token-test-${++calls}`, to: '+14155550300', from: '+14155551234' });

  test('the service accepts RS256 from a PKCS#1 key and ES256 from a SEC1 key, with and without kid', async () => {
    for (const options of [
      { privateKeyPem: rsa.traditional, keyId: 'rsa-1' },
      { privateKeyPem: rsa.pkcs8 },
      { privateKeyPem: ec.traditional, keyId: 'ec-1' },
      { privateKeyPem: ec.pkcs8 },
    ]) {
      const client = new HandoffClient({ baseUrl: svc.url, orgId: ORG, subject: CALL_CENTER, ...options });
      const created = await client.createVoiceCall(newCall());
      assert.equal(created.created, true, JSON.stringify(options.keyId));
    }
  });

  test('signs once per token lifetime: every request, sequential or concurrent, carries the same token', async () => {
    // ECDSA signatures are randomised, so two signatures never give the same token: distinct headers count signatures.
    const { client, authorizations } = recordingClient({});
    const { voiceCallId } = await client.createVoiceCall(newCall());
    await client.getVoiceCall(voiceCallId);
    await client.updateVoiceCall(voiceCallId, { queue: 'q1' });
    await Promise.all([1, 2, 3, 4].map(() => client.getVoiceCall(voiceCallId)));
    assert.equal(authorizations.length, 7);
    assert.equal(new Set(authorizations).size, 1);
    assert.equal(authorizations[0], `Bearer ${await client.getToken()}`);
  });

  test('mints a new token shortly before expiry, which the service accepts', async () => {
    const { client, authorizations } = recordingClient({ tokenTtlSeconds: 2 });
    const { voiceCallId } = await client.createVoiceCall(newCall());
    await client.getVoiceCall(voiceCallId);
    await sleep(2000); // the first token has at most 0.2 s left (or has expired): refreshed, not sent
    await client.getVoiceCall(voiceCallId);
    await client.getVoiceCall(voiceCallId);
    assert.equal(authorizations.length, 4);
    assert.equal(authorizations[0], authorizations[1]);
    assert.notEqual(authorizations[1], authorizations[2]);
    assert.equal(authorizations[2], authorizations[3]);
    const [first, second] = [authorizations[0]!, authorizations[2]!].map((a) => decodeJwt(a.slice('Bearer '.length)).claims);
    assert.ok((second!.exp as number) > (first!.exp as number));
  });

  test('tokens live at most 24 h', async () => {
    const { client } = recordingClient({ tokenTtlSeconds: 86_400 });
    const { claims } = decodeJwt(await client.getToken());
    assert.equal((claims.exp as number) - (claims.iat as number), 86_400);
    assert.equal((await client.createVoiceCall(newCall())).created, true);
    assert.throws(() => recordingClient({ tokenTtlSeconds: 86_401 }), RangeError);
  });

  test('a tokenProvider is asked before every request', async () => {
    let asked = 0;
    const client = new HandoffClient({
      baseUrl: svc.url,
      orgId: ORG,
      tokenProvider: async () => {
        asked++;
        return mintToken({ privateKeyPem: rsa.pkcs8, orgId: ORG, subject: CALL_CENTER });
      },
    });
    const { voiceCallId } = await client.createVoiceCall(newCall());
    await client.getVoiceCall(voiceCallId);
    assert.equal(asked, 2);
  });

  test('refuses unusable options at construction', () => {
    const both = { baseUrl: svc.url, orgId: ORG, privateKeyPem: rsa.pkcs8, tokenProvider: () => 'x' };
    assert.throws(() => new HandoffClient(both as unknown as ConstructorParameters<typeof HandoffClient>[0]), TypeError);
    assert.throws(() => new HandoffClient({ baseUrl: svc.url, orgId: ORG } as ConstructorParameters<typeof HandoffClient>[0]), TypeError);
    assert.throws(() => new HandoffClient({ baseUrl: svc.url, orgId: ORG, privateKeyPem: rsa.pkcs8, alg: 'ES256' }), TypeError);
    assert.throws(() => new HandoffClient({ baseUrl: 'localhost:8080', orgId: ORG, privateKeyPem: rsa.pkcs8 }), TypeError);
    assert.throws(() => new HandoffClient({ baseUrl: svc.url, orgId: ORG, privateKeyPem: rsa.pkcs8, timeoutMs: 0 }), RangeError);
  });

  test('a key the org never registered gets 401 INVALID_TOKEN', async () => {
    const client = new HandoffClient({ baseUrl: svc.url, orgId: ORG, subject: CALL_CENTER, privateKeyPem: rsaKey().pkcs8 });
    await assert.rejects(client.createVoiceCall(newCall()), (err: unknown) => {
      assert.ok(isHandoffApiError(err));
      assert.equal(err.status, 401);
      assert.equal(err.errorCode, 'INVALID_TOKEN');
      return true;
    });
  });
});
