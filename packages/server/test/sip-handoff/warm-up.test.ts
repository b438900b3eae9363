/**
 * The SIP warm-up (HANDOFF_SIP_WARMUP_CALLS): whole hand-offs on loopback before a SIP thread takes
 * traffic, on a scratch database, leaving nothing behind in the service.
 */
import { after, afterEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { sql } from 'kysely';
import { pino } from 'pino';
import { loadSettings } from '../../src/config.js';
import { UserAgent } from '../../src/sip/user-agent.js';
import { warmUp, warmUpThread } from '../../src/sip/warm-up.js';
import type { KyselyStore } from '../../src/store/kysely-store.js';
import { startServer } from '../../src/server.js';
import { CH, DOMAIN_A, ORG_A, selfSignedCert, startFixture, type Fixture } from './fixture.js';
import { freePort } from './sipp.js';

const dir = mkdtempSync(path.join(tmpdir(), 'handoff-warm-up-'));
after(() => rmSync(dir, { recursive: true, force: true }));

/** Open sockets, servers and files: what a warm-up must not leave behind. */
function openHandles(): string[] {
  return process
    .getActiveResourcesInfo()
    .filter((r) => /UDP|TCP|TLS|FileHandle/.test(r))
    .sort();
}

/** The sum of every series of a metric in the service's /metrics. */
async function metricTotal(f: Fixture, name: string): Promise<number> {
  const text = await (await fetch(`${f.server.httpUrl}/metrics`)).text();
  let total = 0;
  for (const line of text.split('\n')) if (line.startsWith(`${name}{`) || line.startsWith(`${name} `)) total += Number(line.split(' ').pop());
  return total;
}

describe('warmUp', () => {
  test('runs whole hand-offs on both paths and closes every socket and its database', { timeout: 60_000 }, async () => {
    const settings = loadSettings({ HANDOFF_DATA_DIR: dir, HANDOFF_SIP_PORT: '0' });
    const before = openHandles();
    const report = await warmUp({ calls: 40, settings });
    assert.equal(report.calls, 40);
    assert.equal(report.completed, 40, 'every call reached the agent and ended with a BYE');
    assert.ok(report.ms >= 0);
    assert.deepEqual(openHandles(), before);
  });

  test('redirect mode, as a worker thread: the calls end at the 302 the mode answers', { timeout: 60_000 }, async () => {
    const settings = loadSettings({ HANDOFF_DATA_DIR: dir, HANDOFF_SIP_PORT: '0', HANDOFF_SIP_MODE: 'redirect' });
    const report = await warmUp({ calls: 10, settings, workerThread: 0 });
    assert.deepEqual([report.calls, report.completed], [10, 10]);
  });

  test('with TLS configured, on the main thread and as a worker thread: it listens as the thread does and completes', { timeout: 60_000 }, async () => {
    const tls = selfSignedCert(dir);
    const settings = loadSettings({ HANDOFF_DATA_DIR: dir, HANDOFF_SIP_PORT: '0', HANDOFF_SIP_TLS_PORT: '0', HANDOFF_SIP_TLS_CERT: tls.cert, HANDOFF_SIP_TLS_KEY: tls.key });
    const before = openHandles();
    for (const workerThread of [undefined, 0]) {
      const report = await warmUp({ calls: 10, settings, ...(workerThread === undefined ? {} : { workerThread }) });
      assert.deepEqual([report.calls, report.completed, report.error], [10, 10, undefined]);
    }
    assert.deepEqual(openHandles(), before);
  });

  test('calls that keep failing end it early, and it says so', { timeout: 60_000 }, async () => {
    // UUI limited to 64 characters: every path B call is refused 400, every path A call completes
    const settings = loadSettings({ HANDOFF_DATA_DIR: dir, HANDOFF_SIP_PORT: '0', HANDOFF_UUI_MAX_DECODED: '64' });
    const report = await warmUp({ calls: 400, settings });
    assert.ok(report.calls < 400, `stopped early (${report.calls} calls)`);
    assert.ok(report.calls - report.completed > 20, `more than 20 failed (${report.calls - report.completed})`);
    assert.ok(report.completed > 0);
    assert.equal(report.error, undefined);
  });

  test('when it cannot run at all it reports why, throws nothing and leaves nothing open', async () => {
    const settings = loadSettings({ HANDOFF_DATA_DIR: dir, HANDOFF_SIP_PORT: '0' });
    const before = openHandles();
    const tmp = process.env.TMPDIR;
    process.env.TMPDIR = path.join(dir, 'no', 'such', 'dir');
    try {
      const report = await warmUp({ calls: 10, settings });
      assert.match(report.error ?? '', /ENOENT/);
      assert.equal(report.completed, 0);
    } finally {
      if (tmp === undefined) delete process.env.TMPDIR;
      else process.env.TMPDIR = tmp;
    }
    assert.deepEqual(openHandles(), before);
  });

  test('warmUpThread runs HANDOFF_SIP_WARMUP_CALLS calls and logs how it went (a warning when incomplete)', { timeout: 60_000 }, async () => {
    const lines: Array<{ level: number; msg: string; calls?: number; completed?: number }> = [];
    const logger = pino({ level: 'info' }, { write: (line: string) => void lines.push(JSON.parse(line)) });
    await warmUpThread(loadSettings({ HANDOFF_DATA_DIR: dir, HANDOFF_SIP_PORT: '0' }), logger);
    assert.equal(lines.length, 0, 'off by default: nothing run, nothing logged');
    await warmUpThread(loadSettings({ HANDOFF_DATA_DIR: dir, HANDOFF_SIP_PORT: '0', HANDOFF_SIP_WARMUP_CALLS: '12' }), logger);
    assert.deepEqual(lines.map((l) => [l.level, l.msg, l.calls, l.completed]), [[30, 'SIP warm-up done', 12, 12]]);
    lines.length = 0;
    await warmUpThread(loadSettings({ HANDOFF_DATA_DIR: dir, HANDOFF_SIP_PORT: '0', HANDOFF_SIP_WARMUP_CALLS: '400', HANDOFF_UUI_MAX_DECODED: '64' }), logger);
    assert.deepEqual(lines.map((l) => [l.level, l.msg]), [[40, 'SIP warm-up incomplete: this SIP thread starts (partly) cold']]);
  });

  test('no calls asked: none placed', async () => {
    const settings = loadSettings({ HANDOFF_DATA_DIR: dir, HANDOFF_SIP_PORT: '0' });
    const report = await warmUp({ calls: 0, settings });
    assert.deepEqual([report.calls, report.completed], [0, 0]);
  });
});

test('/readyz answers 503 while the SIP side warms up, 200 once it has', { timeout: 60_000 }, async () => {
  const port = await freePort('tcp');
  const settings = loadSettings({
    HANDOFF_DATA_DIR: mkdtempSync(path.join(dir, 'ready-')),
    HANDOFF_HTTP_PORT: String(port),
    HANDOFF_SIP_PORT: '0',
    HANDOFF_LOG_LEVEL: 'silent',
    HANDOFF_SIP_WARMUP_CALLS: '400',
  });
  const starting = startServer(settings);
  const first = new Map<number, number>();
  const until = Date.now() + 50_000;
  while (!first.has(200) && Date.now() < until) {
    const status = await fetch(`http://127.0.0.1:${port}/readyz`).then((r) => r.status, () => 0);
    if (!first.has(status)) first.set(status, performance.now());
    await new Promise((r) => setTimeout(r, 10));
  }
  const server = await starting;
  try {
    assert.ok(first.has(503) && first.has(200), `503 while warming up, then 200 (seen: ${[...first.keys()]})`);
    // 400 calls take well over 150 ms; the rest of the start after HTTP listens, a few ms
    assert.ok(first.get(200)! - first.get(503)! > 150, `not ready for ${Math.round(first.get(200)! - first.get(503)!)} ms`);
  } finally {
    await server.close();
  }
});

for (const workers of ['1', '2']) {
  describe(`a service started with HANDOFF_SIP_WARMUP_CALLS (${workers} SIP thread(s))`, () => {
    let f: Fixture | undefined;
    afterEach(async () => {
      await f?.close();
    });

    test('keeps no trace of the warm-up calls and takes real ones', { timeout: 60_000 }, async () => {
      f = await startFixture({ env: { HANDOFF_SIP_WARMUP_CALLS: '30', HANDOFF_SIP_WORKERS: workers } });
      const store = f.server.store as KyselyStore;
      const count = async (table: 'voice_calls' | 'orgs' | 'leases' | 'pool_numbers') =>
        Number((await sql<{ n: number }>`select count(*) as n from ${sql.table(table)}`.execute(store.executor)).rows[0]!.n);
      assert.equal(await count('voice_calls'), 0, 'no warm-up VoiceCall in the service database');
      assert.equal(await count('leases'), 0);
      assert.equal(await count('orgs'), 3, 'only the provisioned orgs');
      assert.equal(await count('pool_numbers'), 10, 'only the provisioned pool');
      assert.equal(await metricTotal(f, 'handoff_resolutions_total'), 0, 'no warm-up resolution in the metrics');
      assert.equal(await metricTotal(f, 'handoff_sip_requests_total'), 0, 'no warm-up SIP request in the metrics');

      const ua = await UserAgent.start();
      try {
        const uui = f.uui({ orgId: ORG_A, scrt2Domain: DOMAIN_A, token: await f.token('a'), transactionId: 'tx-after-warm-up' });
        // the busy channel's flow refuses with 486 once the hand-off is resolved and recorded
        const call = ua.invite({ transport: 'udp', host: '127.0.0.1', port: f.sip.udp }, CH.busy, '+14155554400', [['User-to-User', uui]]);
        assert.equal((await call.final).status, 486);
      } finally {
        await ua.close();
      }
      assert.equal(await count('voice_calls'), 1, 'the real call is recorded');
      assert.equal(await metricTotal(f, 'handoff_resolutions_total'), 1);
    });
  });
}
