import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { dropSchema, TEST_PG_URL, uniqueSchema } from '../support/backends.js';
import { HANDOFF_BIN, opensslToken, readJson, startService, waitReady, type ServiceProcess } from '../support/process.js';
import type { DemoInfo } from '../../src/services/demo.js';

interface Handle {
  routableNumber: string;
  uid: string;
  expiresAt: string;
}

function partnerToken(demo: DemoInfo): string {
  const now = Math.floor(Date.now() / 1000);
  return opensslToken(demo.privateKeyPath, { iss: demo.orgId, sub: demo.callCenterApiName, iat: now, exp: now + 3600 });
}

async function reserve(url: string, token: string, body: Record<string, unknown>) {
  const res = await fetch(`${url}/telephony/v1/voiceCalls/reserveRoutableNumber`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: JSON.stringify({ countryCode: 'GB', scrt2Domain: 'https://demo.my.example.com', toNumber: '+14155550100', ...body }),
  });
  return { status: res.status, body: (await res.json()) as { handle?: Handle; errors?: { errorCode: string }[] } };
}

async function resolve(url: string, operator: string, calledNumber: string, callerNumber: string) {
  const res = await fetch(`${url}/telephony/v1/routableNumbers/resolve`, {
    method: 'POST',
    headers: { authorization: `Bearer ${operator}`, 'content-type': 'application/json' },
    body: JSON.stringify({ calledNumber, callerNumber }),
  });
  return res.status;
}

describe('leases from the outside: two service processes on one PostgreSQL database', () => {
  const schema = uniqueSchema();
  const dataDir = mkdtempSync(join(tmpdir(), 'handoff-2i-'));
  const procs: ServiceProcess[] = [];
  after(async () => {
    await Promise.all(procs.map((p) => p.stop()));
    await dropSchema(schema);
    rmSync(dataDir, { recursive: true, force: true });
  });

  test('concurrent reservations, racing retries and resolutions keep every invariant', async () => {
    const url = new URL(TEST_PG_URL);
    url.searchParams.set('schema', schema);
    const env = { HANDOFF_DATA_DIR: dataDir, HANDOFF_DATABASE_URL: url.toString(), HANDOFF_LOG_LEVEL: 'warn' };
    // The second instance starts once the first has provisioned, sharing its data dir (demo key).
    procs.push(startService({ ...env, HANDOFF_LOG_LEVEL: 'info' }));
    const a = await waitReady(procs[0]!);
    procs.push(startService({ ...env, HANDOFF_LOG_LEVEL: 'info' }));
    const b = await waitReady(procs[1]!);
    const demo = readJson<DemoInfo>(join(dataDir, 'demo.json'))!;
    const operator = readFileSync(demo.operatorTokenPath!, 'utf8').trim();
    const token = partnerToken(demo);

    // Shrink GB to 4 numbers so callers compete for pairs.
    const gb = Array.from({ length: 100 }, (_, i) => `+4420794600${String(i).padStart(2, '0')}`);
    for (const n of gb.slice(4)) {
      await fetch(`${a}/admin/v1/pool-numbers/${encodeURIComponent(n)}/drain`, { method: 'POST', headers: { authorization: `Bearer ${operator}` } });
    }

    const callers = Array.from({ length: 12 }, (_, i) => `+4477009000${String(i).padStart(2, '0')}`);
    const results = await Promise.all(
      Array.from({ length: 120 }, (_, i) => reserve(i % 2 ? a : b, token, { fromNumber: callers[i % callers.length] })),
    );
    const ok = results.filter((r) => r.status === 200);
    const exhausted = results.filter((r) => r.status === 503);
    assert.equal(ok.length + exhausted.length, results.length, JSON.stringify(results.find((r) => r.status !== 200 && r.status !== 503)));
    // Each caller can hold at most one live lease per number: 12 callers x 4 numbers.
    assert.equal(ok.length, 48);
    assert.equal(new Set(ok.map((r) => r.body.handle!.uid)).size, ok.length, 'every success is a distinct lease');
    assert.ok(ok.every((r) => gb.slice(0, 4).includes(r.body.handle!.routableNumber)), 'drained numbers are never leased');

    // Racing retries of one transactionId across both instances: one lease.
    const retries = await Promise.all(
      Array.from({ length: 20 }, (_, i) => reserve(i % 2 ? a : b, token, { fromNumber: '+447700900999', transactionId: 'race-1' })),
    );
    assert.ok(retries.every((r) => r.status === 200));
    const uid = retries[0]!.body.handle!.uid;
    assert.ok(retries.every((r) => r.body.handle!.uid === uid));

    // Resolutions from both instances at once: exactly one consumes.
    const h = retries[0]!.body.handle!;
    const statuses = await Promise.all(Array.from({ length: 10 }, (_, i) => resolve(i % 2 ? a : b, operator, h.routableNumber, '+447700900999')));
    assert.deepEqual(statuses.sort(), [200, 404, 404, 404, 404, 404, 404, 404, 404, 404]);
    assert.equal((await reserve(a, token, { fromNumber: '+447700900999', transactionId: 'race-1' })).status, 409);

    // From the database: no (number, caller) pair ever had two leases whose holds overlap.
    const c = new pg.Client({ connectionString: TEST_PG_URL });
    await c.connect();
    try {
      const overlaps = await c.query(
        `select count(*)::int as n from "${schema}".leases x join "${schema}".leases y
           on x.routable_number = y.routable_number and x.from_number = y.from_number and x.uid < y.uid
          and x.created_at < y.hold_until and y.created_at < x.hold_until`,
      );
      assert.equal(overlaps.rows[0].n, 0);
      const count = await c.query(`select count(*)::int as n from "${schema}".leases`);
      assert.equal(count.rows[0].n, 49);
    } finally {
      await c.end();
    }
  });
});

describe('handoff pools and handoff leases beside a running service (SQLite)', () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'handoff-cli-'));
  let svc: ServiceProcess | undefined;
  after(async () => {
    await svc?.stop();
    rmSync(dataDir, { recursive: true, force: true });
  });
  const cli = (...args: string[]) => execFileSync(process.execPath, [HANDOFF_BIN, ...args], { env: { ...process.env, HANDOFF_DATA_DIR: dataDir }, encoding: 'utf8' });

  test('add, list, drain, and see a live lease with its time left', async () => {
    svc = startService({ HANDOFF_DATA_DIR: dataDir, HANDOFF_LEASE_TTL_SECONDS: '60' });
    const url = await waitReady(svc);
    const demo = readJson<DemoInfo>(join(dataDir, 'demo.json'))!;
    assert.match(cli('pools', 'add', 'fr', '+33100000000', '--range', '+33100000001-+33100000002'), /added 3 of 3 number\(s\) to FR/);
    const pools = JSON.parse(cli('pools', '--json')) as { country: string; numbers: number }[];
    assert.deepEqual(pools.map((p) => [p.country, p.numbers]), [['FR', 3], ['GB', 100], ['US', 100]]);
    assert.match(cli('pools'), /^country\s+numbers\s+active\s+draining\s+liveLeases\s+busyNumbers\s+utilisation\nFR\s+3\s+3/);
    assert.match(cli('pools', 'drain', '+33100000000'), /draining/);
    const r = await reserve(url, partnerToken(demo), { countryCode: 'FR', fromNumber: '+14155551234' });
    assert.equal(r.status, 200);
    assert.notEqual(r.body.handle!.routableNumber, '+33100000000');
    const leases = JSON.parse(cli('leases', '--json')) as { routableNumber: string; secondsLeft: number }[];
    assert.equal(leases.length, 1);
    assert.equal(leases[0]!.routableNumber, r.body.handle!.routableNumber);
    assert.ok(leases[0]!.secondsLeft > 50 && leases[0]!.secondsLeft <= 60);
    assert.throws(() => cli('pools', 'remove', '+33100000001'), /is active: drain it first/);
  });
});
