import { describe, test, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFileSync, spawnSync } from 'node:child_process';
import { dropSchema, TEST_PG_URL, uniqueSchema } from '../support/backends.js';
import { HANDOFF_BIN, freeDualPort, opensslToken, readJson, startService, waitReady } from '../support/process.js';
import type { DemoInfo } from '../../src/services/demo.js';

function claims(demo: DemoInfo, extra: Record<string, unknown> = {}) {
  const now = Math.floor(Date.now() / 1000);
  return { iss: demo.orgId, sub: demo.callCenterApiName, iat: now, exp: now + 600, ...extra };
}

async function api(url: string, method: string, token: string, body?: string, contentType = 'application/json') {
  const res = await fetch(url, {
    method,
    headers: { authorization: `Bearer ${token}`, ...(body !== undefined ? { 'content-type': contentType } : {}) },
    ...(body !== undefined ? { body } : {}),
  });
  return { status: res.status, text: await res.text(), headers: res.headers };
}

/** The whole first-start journey through `handoff serve`, on one backend. */
async function journey(envIn: Record<string, string>, dataDir: string) {
  // A fixed demo agent port: with a new one at each start, the demo agent's sipUri would change
  const env: Record<string, string> = { HANDOFF_DEMO_AGENT_PORT: String(await freeDualPort()), ...envIn };
  const svc = startService({ HANDOFF_DATA_DIR: dataDir, ...env });
  try {
    const httpUrl = await waitReady(svc);
    const demo = readJson<DemoInfo>(join(dataDir, 'demo.json'));
    assert.ok(demo, 'demo.json written');
    for (const k of ['orgId', 'domain', 'callCenterApiName', 'channelNumber', 'privateKeyPath', 'countries', 'httpUrl', 'sipHost', 'sipPort'] as const) {
      assert.ok(demo[k] !== undefined && demo[k] !== '', `demo.json has ${k}`);
    }
    assert.equal(demo.httpUrl, httpUrl);
    assert.ok(demo.countries.includes('US') && demo.countries.includes('GB'));
    assert.equal(statSync(demo.privateKeyPath).mode & 0o777, 0o600, 'private key is 0600');
    assert.match(svc.output(), /curl -s -X POST/, 'prints a ready example');
    assert.equal((await fetch(`${httpUrl}/readyz`)).status, 200);

    // A token made by openssl, not by Handoff's code.
    const token = opensslToken(demo.privateKeyPath, claims(demo));
    const created = await api(`${httpUrl}/telephony/v1/voiceCalls`, 'POST', token, JSON.stringify({ vendorCallKey: 'e2e-1', to: demo.channelNumber, from: '+14155551234', callAttributes: '{"Department__c":"Support"}' }));
    assert.equal(created.status, 201, created.text);
    const id = JSON.parse(created.text).voiceCallId as string;
    const xml = await api(
      `${httpUrl}/telephony/v1/voiceCalls`,
      'POST',
      token,
      `<VoiceCall><vendorCallKey>e2e-2</vendorCallKey><to>${demo.channelNumber}</to><from>+442079460001</from></VoiceCall>`,
      'application/xml',
    );
    assert.equal(xml.status, 201, xml.text);
    assert.match(xml.text, /<voiceCallId>0LQ[A-Za-z0-9]{15}<\/voiceCallId>/);
    const patched = await api(`${httpUrl}/telephony/v1/voiceCalls/${id}`, 'PATCH', token, '<r><isActiveCall>false</isActiveCall><endTime>2026-11-22T10:00:00Z</endTime></r>', 'application/xml');
    assert.equal(patched.status, 200, patched.text);
    const read = JSON.parse((await api(`${httpUrl}/telephony/v1/voiceCalls/${id}`, 'GET', token)).text);
    assert.equal(read.isActiveCall, false);
    assert.equal(read.endTime, '2026-11-22T10:00:00Z');

    // Forged, expired, replayed and foreign tokens are refused and change nothing.
    const forged = token.slice(0, token.lastIndexOf('.') + 1) + Buffer.from('forged').toString('base64url');
    const expired = opensslToken(demo.privateKeyPath, claims(demo, { iat: 1_700_000_000, exp: 1_700_000_600 }));
    const jti = opensslToken(demo.privateKeyPath, claims(demo, { jti: 'once-only' }));
    assert.equal((await api(`${httpUrl}/telephony/v1/voiceCalls/${id}`, 'GET', jti)).status, 200);
    for (const bad of [forged, expired, jti]) {
      const r = await api(`${httpUrl}/telephony/v1/voiceCalls/${id}`, 'PATCH', bad, JSON.stringify({ queue: 'hijacked' }));
      assert.equal(r.status, 401);
      assert.match(r.headers.get('www-authenticate') ?? '', /invalid_token/);
    }
    assert.equal(JSON.parse((await api(`${httpUrl}/telephony/v1/voiceCalls/${id}`, 'GET', token)).text).queue, null);
    assert.ok(!svc.output().includes(token), 'the token is never logged');

    // SIGTERM: clean exit, and the SQLite WAL is checkpointed away.
    assert.equal(await svc.stop('SIGTERM'), 0);
    if (!env.HANDOFF_DATABASE_URL) assert.equal(existsSync(join(dataDir, 'handoff.sqlite-wal')), false);

    // A restart changes nothing and keeps the key: the same token still reads the same call.
    const again = startService({ HANDOFF_DATA_DIR: dataDir, ...env });
    try {
      const url2 = await waitReady(again);
      assert.match(again.output(), /"source":"demo","changed":0/);
      const r = await api(`${url2}/telephony/v1/voiceCalls/${id}`, 'GET', token);
      assert.equal(r.status, 200);
    } finally {
      assert.equal(await again.stop(), 0);
    }
  } finally {
    await svc.stop('SIGKILL');
  }
}

describe('npm start code path (handoff serve)', () => {
  const dirs: string[] = [];
  const tmp = () => {
    const d = mkdtempSync(join(tmpdir(), 'handoff-e2e-'));
    dirs.push(d);
    return d;
  };
  after(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

  test('first start on an empty data dir with SQLite', async () => {
    await journey({}, join(tmp(), 'data'));
  });

  test('the same with HANDOFF_DATABASE_URL pointing at PostgreSQL', async () => {
    const schema = uniqueSchema();
    const url = new URL(TEST_PG_URL);
    url.searchParams.set('schema', schema);
    try {
      await journey({ HANDOFF_DATABASE_URL: url.toString() }, tmp());
    } finally {
      await dropSchema(schema);
    }
  });

  test('a bad config file stops the start, naming the file, the field and the fault', () => {
    const dir = tmp();
    const file = join(dir, 'handoff.yaml');
    writeFileSync(file, 'orgs:\n  - id: 00Dxx0000004CFG\n    name: Acme\n    domain: acme.example.com\n    channels:\n      - devName: Acme_AI\n        number: "4155550100"\n');
    const r = spawnSync(process.execPath, [HANDOFF_BIN, 'serve'], { env: { ...process.env, HANDOFF_DATA_DIR: dir, HANDOFF_CONFIG: file, HANDOFF_HTTP_PORT: '0' }, encoding: 'utf8' });
    assert.equal(r.status, 2);
    assert.match(r.stderr, /handoff\.yaml: orgs\.0\.channels\.0\.number: /);
  });

  test('a bad environment setting stops the start with a clear message', () => {
    const r = spawnSync(process.execPath, [HANDOFF_BIN, 'serve'], { env: { ...process.env, HANDOFF_HTTP_PORT: 'eighty' }, encoding: 'utf8' });
    assert.equal(r.status, 2);
    assert.match(r.stderr, /HANDOFF_HTTP_PORT must be a port number/);
  });

  test('handoff token prints a token; bad options are refused', () => {
    const dir = tmp();
    const key = join(dir, 'k.pem');
    execFileSync('openssl', ['genpkey', '-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:2048', '-out', key], { stdio: 'ignore' });
    const out = execFileSync(process.execPath, [HANDOFF_BIN, 'token', '--private-key', key, '--iss', '00Dxx0000004CFG', '--sub', 'cc', '--ttl', '60', '--jti', '--kid', 'k1'], { encoding: 'utf8' }).trim();
    const [h, p] = out.split('.').slice(0, 2).map((s) => JSON.parse(Buffer.from(s, 'base64url').toString()));
    assert.equal(h.alg, 'RS256');
    assert.equal(h.kid, 'k1');
    assert.equal(p.iss, '00Dxx0000004CFG');
    assert.equal(p.sub, 'cc');
    assert.equal(p.exp - p.iat, 60);
    assert.match(p.jti, /^[0-9a-f-]{36}$/);
    const bad = spawnSync(process.execPath, [HANDOFF_BIN, 'token', '--private-key', key, '--iss', 'x', '--ttl', '100000'], { encoding: 'utf8' });
    assert.notEqual(bad.status, 0);
    assert.match(bad.stderr, /86400|ttl/i);
    const noKey = spawnSync(process.execPath, [HANDOFF_BIN, 'token', '--iss', 'x'], { encoding: 'utf8' });
    assert.notEqual(noKey.status, 0);
    assert.match(noKey.stderr, /--private-key/);
  });
});
