import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { HANDOFF_BIN, opensslToken, readJson, startService, waitReady, type ServiceProcess } from '../support/process.js';
import type { DemoInfo } from '../../src/services/demo.js';

describe('handoff orgs, keys and calls beside a running service', () => {
  const dir = mkdtempSync(join(tmpdir(), 'handoff-cli2-'));
  let svc: ServiceProcess | undefined;
  after(async () => {
    await svc?.stop();
    rmSync(dir, { recursive: true, force: true });
  });
  const env = { ...process.env, HANDOFF_DATA_DIR: dir };
  const cli = (...args: string[]) => execFileSync(process.execPath, [HANDOFF_BIN, ...args], { env, encoding: 'utf8' });
  const cliFails = (...args: string[]) => spawnSync(process.execPath, [HANDOFF_BIN, ...args], { env, encoding: 'utf8' });
  const keyPair = (name: string, bits = 2048) => {
    const priv = join(dir, `${name}.pem`);
    const pub = join(dir, `${name}.pub.pem`);
    execFileSync('openssl', ['genpkey', '-algorithm', 'RSA', '-pkeyopt', `rsa_keygen_bits:${bits}`, '-out', priv], { stdio: 'ignore' });
    execFileSync('openssl', ['pkey', '-in', priv, '-pubout', '-out', pub], { stdio: 'ignore' });
    return { priv, pub };
  };

  test('keys can be added, rotated and revoked; tokens follow', async () => {
    svc = startService({ HANDOFF_DATA_DIR: dir });
    const url = await waitReady(svc);
    const demo = readJson<DemoInfo>(join(dir, 'demo.json'))!;
    const orgs = JSON.parse(cli('orgs', '--json'));
    assert.deepEqual(orgs.map((o: { orgId: string; activeKeys: number }) => [o.orgId, o.activeKeys]), [[demo.orgId18, 1]]);

    const now = Math.floor(Date.now() / 1000);
    const claims = { iss: demo.orgId, iat: now, exp: now + 600 };
    const get = async (token: string) => (await fetch(`${url}/telephony/v1/voiceCalls/nope`, { headers: { authorization: `Bearer ${token}` } })).status;

    const k2 = keyPair('k2');
    assert.match(cli('keys', 'add', '--org', demo.orgId, '--id', 'second', '--public-key', k2.pub, '--kid', 'k2'), /key second \(RS256\) added/);
    // A token nobody has used yet, so no cache is involved.
    assert.equal(await get(opensslToken(k2.priv, { ...claims, jti: 'a' })), 404, 'the new key works at once');

    const k3 = keyPair('k3');
    assert.match(cli('keys', 'rotate', '--org', demo.orgId18, '--id', 'third', '--revoke', 'second', '--public-key', k3.pub), /third added, second revoked/);
    assert.equal(await get(opensslToken(k3.priv, { ...claims, jti: 'b' })), 404);
    assert.equal(await get(opensslToken(k2.priv, { ...claims, jti: 'c' })), 401, 'the rotated-out key is refused');
    const listed = JSON.parse(cli('keys', '--org', demo.orgId, '--json')) as { id: string; revokedAt: string | null }[];
    assert.deepEqual(listed.map((k) => [k.id, k.revokedAt !== null]), [['demo-key', false], ['second', true], ['third', false]]);
    assert.match(cli('keys', 'revoke', 'third'), /third revoked/);
    assert.match(cli('keys', 'revoke', 'third'), /already revoked/);
    assert.equal(await get(opensslToken(k3.priv, { ...claims, jti: 'd' })), 401);

    const weak = keyPair('weak', 1024);
    const r1 = cliFails('keys', 'add', '--org', demo.orgId, '--id', 'weak', '--public-key', weak.pub);
    assert.equal(r1.status, 2);
    assert.match(r1.stderr, /RSA keys must be/);
    assert.match(cliFails('keys', 'add', '--org', demo.orgId, '--id', 'demo-key', '--public-key', k2.pub).stderr, /exists already/);
    assert.match(cliFails('keys', 'revoke', 'ghost').stderr, /no key ghost/);
    assert.match(cliFails('keys', '--org', 'not-an-org').stderr, /org ID/);
    assert.match(cliFails('keys', 'add', '--org', demo.orgId, '--id', 'x', '--public-key', k2.pub, '--certificate', k2.pub).stderr, /exactly one/);
  });

  test('calls lists recent calls newest first with their outcome', async () => {
    const demo = readJson<DemoInfo>(join(dir, 'demo.json'))!;
    const now = Math.floor(Date.now() / 1000);
    const token = opensslToken(demo.privateKeyPath, { iss: demo.orgId, sub: demo.callCenterApiName, iat: now, exp: now + 600 });
    for (const key of ['c-1', 'c-2']) {
      const r = await fetch(`${demo.httpUrl}/telephony/v1/voiceCalls`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body: JSON.stringify({ vendorCallKey: key, to: demo.channelNumber, from: '+14155551234' }),
      });
      assert.equal(r.status, 201);
    }
    const calls = JSON.parse(cli('calls', '--json', '--limit', '5')) as { status: string; from: string; escalated: boolean }[];
    assert.equal(calls.length, 2);
    assert.deepEqual(calls.map((c) => [c.status, c.from, c.escalated]), [['New', '+14155551234', false], ['New', '+14155551234', false]]);
    assert.match(cli('calls'), /^voiceCallId\s+createdAt\s+from/);
    assert.notEqual(cliFails('calls', '--limit', '0').status, 0);
  });
});
