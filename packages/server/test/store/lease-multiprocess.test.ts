import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describeEachBackend } from '../support/backends.js';
import { assertLeaseInvariants } from '../support/lease-invariants.js';
import type { WorkerConfig, WorkerReport } from '../support/lease-worker.js';

const WORKER = fileURLToPath(new URL('../support/lease-worker.js', import.meta.url));

/** Runs the worker script as its own OS process; resolves with its report. */
function runWorker(env: Record<string, string>, cfg: WorkerConfig): Promise<WorkerReport> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [WORKER], { env: { ...process.env, ...env, LEASE_WORKER: JSON.stringify(cfg) }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    child.on('error', reject);
    child.on('exit', (code) => {
      if (code !== 0) reject(new Error(`worker ${cfg.name} exited with ${code}:\n${err}`));
      else resolve(JSON.parse(out) as WorkerReport);
    });
  });
}

describeEachBackend('leases across processes', ({ store, backend }) => {
  test('three processes on one database, hammering at once, keep every lease invariant', { timeout: 120_000 }, async () => {
    const country = 'MP';
    const numbers = Array.from({ length: 4 }, (_, i) => `+1303555010${i}`);
    await store().addPoolNumbers(country, numbers, Date.now());
    const callers = Array.from({ length: 30 }, (_, i) => `+1720555${String(1000 + i)}`);
    const startAt = Date.now() + 1500;
    const reports = await Promise.all(
      ['a', 'b', 'c'].map((name) =>
        runWorker(backend().env, {
          name,
          orgId: '00Dxx0000004CFG',
          country,
          numbers,
          callers,
          reservations: 240,
          concurrency: 6,
          pauseMs: 60,
          startAt,
          ttlSeconds: 1,
          cooldownSeconds: 0.2,
          sharedTransactionId: 'mp-shared',
        }),
      ),
    );

    // The processes really ran at the same time.
    assert.ok(Math.max(...reports.map((r) => r.startedAt)) < Math.min(...reports.map((r) => r.finishedAt)), 'workers overlapped');
    for (const r of reports) {
      assert.deepEqual(Object.keys(r.failures).filter((c) => c !== 'POOL_EXHAUSTED'), [], `worker ${r.name}: ${JSON.stringify(r.failures)}`);
    }
    // One transactionId raced from three processes: one lease, the same uid everywhere.
    assert.equal(new Set(reports.map((r) => r.sharedUid)).size, 1);

    const successes = reports.flatMap((r) => r.successes);
    assert.ok(successes.length > 200, `only ${successes.length} successes`);
    assert.ok(reports.reduce((n, r) => n + r.resolved, 0) > 0, 'some leases were consumed');
    const rows = await assertLeaseInvariants(store(), country, successes);
    assert.equal(new Set(rows.map((r) => r.provider)).size, 3, 'every process created leases');
    const pairs = new Set(rows.map((r) => `${r.routable_number}|${r.from_number}`));
    assert.ok(pairs.size < rows.length, 'pairs were leased again after their hold ended');
  });
});
