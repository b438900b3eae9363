/**
 * bench:reserve — reserveRoutableNumber throughput and latency of a real service process on its
 * embedded default (SQLite), with pools of 1,000 and 100,000 numbers, and on PostgreSQL; and in the
 * same run a bare Fastify route as the baseline. Writes bench/results/reserve.json.
 *
 * The machine's speed drifts within minutes (the bare route alone has measured 14,000–26,000 req/s in
 * consecutive runs), so the SQLite runs are repeated in BENCH_ROUNDS rounds, each round running the
 * baseline and both pool sizes back to back; a round's ratios compare runs a few seconds apart, and the
 * summary gives the median of each figure and of each round's ratios.
 *
 * Options (environment): BENCH_DURATION (seconds per run, default 10), BENCH_CONNECTIONS (default 32),
 * BENCH_ROUNDS (default 3), BENCH_PG_URL (default postgres://postgres@127.0.0.1:5432/test; "off"
 * skips PostgreSQL, which runs once, after the rounds).
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import autocannon from 'autocannon';
import pg from 'pg';
import { mintToken } from '../src/domain/token-mint.js';
import { cpuSeconds, HANDOFF_BIN, machine, startProcess, writeResults, type Proc } from './support.js';

const DURATION = Number(process.env.BENCH_DURATION ?? 10);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 32);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
if (!Number.isInteger(ROUNDS) || ROUNDS < 1) throw new Error(`BENCH_ROUNDS must be a positive integer (got ${process.env.BENCH_ROUNDS})`);
const PG_URL = process.env.BENCH_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const BARE = fileURLToPath(new URL('./bare-server.js', import.meta.url));

interface RunResult {
  name: string;
  /** 1-based; PostgreSQL's run, after the rounds, has none. */
  round?: number;
  requestsPerSecond: number;
  latencyMs: { p50: number; p90: number; p99: number; max: number };
  ok: number;
  non2xx: number;
  errors: number;
  serverCpuPercent: number;
}

let seq = 0;
/** Distinct callers and transactionIds, as real traffic has. */
function body(): string {
  const n = ++seq;
  return JSON.stringify({
    countryCode: 'US',
    fromNumber: `+1646${String(n % 10_000_000).padStart(7, '0')}`,
    scrt2Domain: 'https://demo.my.example.com',
    toNumber: '+14155550100',
    transactionId: `bench-${process.pid}-${n}`,
  });
}

async function drive(name: string, url: string, headers: Record<string, string>, pid: number): Promise<RunResult> {
  // Warm-up: JIT, connection pools, the token cache.
  await autocannon({ url, method: 'POST', connections: CONNECTIONS, duration: 2, headers, requests: [{ setupRequest: (r: any) => ({ ...r, body: body() }) }] });
  const cpu0 = cpuSeconds(pid);
  const t0 = Date.now();
  const r = await autocannon({ url, method: 'POST', connections: CONNECTIONS, duration: DURATION, headers, requests: [{ setupRequest: (req: any) => ({ ...req, body: body() }) }] });
  const wall = (Date.now() - t0) / 1000;
  const result: RunResult = {
    name,
    requestsPerSecond: Math.round(r.requests.average),
    latencyMs: { p50: r.latency.p50, p90: r.latency.p90, p99: r.latency.p99, max: r.latency.max },
    ok: r['2xx'],
    non2xx: r.non2xx,
    errors: r.errors + r.timeouts,
    serverCpuPercent: Math.round(((cpuSeconds(pid) - cpu0) / wall) * 100),
  };
  console.log(
    `${name.padEnd(34)} ${String(result.requestsPerSecond).padStart(7)} req/s  p50 ${result.latencyMs.p50} ms  p99 ${result.latencyMs.p99} ms  ` +
      `2xx ${result.ok}  non-2xx ${result.non2xx}  errors ${result.errors}  server CPU ${result.serverCpuPercent}%`,
  );
  return result;
}

async function withService<T>(env: Record<string, string>, poolSize: number, fn: (p: Proc, headers: Record<string, string>) => Promise<T>): Promise<T> {
  const dataDir = mkdtempSync(join(tmpdir(), 'handoff-bench-'));
  const proc = await startProcess([HANDOFF_BIN, 'serve'], { HANDOFF_DATA_DIR: dataDir, HANDOFF_HTTP_PORT: '0', HANDOFF_LOG_LEVEL: 'warn', ...env }, /-X POST (http:\/\/[^\s]+)\/telephony\/v1/);
  try {
    const demo = JSON.parse(readFileSync(join(dataDir, 'demo.json'), 'utf8'));
    const operator = readFileSync(join(dataDir, 'operator-token'), 'utf8').trim();
    // The demo US pool holds 100 numbers; grow it to the size under test.
    if (poolSize > 100) {
      const res = await fetch(`${proc.url}/admin/v1/pools/US/numbers`, {
        method: 'POST',
        headers: { authorization: `Bearer ${operator}`, 'content-type': 'application/json' },
        body: JSON.stringify({ ranges: [{ from: '+13125550000', to: `+${13125550000 + poolSize - 100 - 1}` }] }),
      });
      if (!res.ok) throw new Error(`adding numbers failed: ${res.status} ${await res.text()}`);
    }
    const token = await mintToken({ privateKeyPem: readFileSync(demo.privateKeyPath, 'utf8'), iss: demo.orgId, sub: demo.callCenterApiName, ttlSeconds: 3600 });
    return await fn(proc, { authorization: `Bearer ${token}`, 'content-type': 'application/json', 'telephony-provider-name': 'bench' });
  } finally {
    await proc.stop();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

async function pgSchema(): Promise<{ url: string; drop(): Promise<void> } | null> {
  if (PG_URL === 'off') return null;
  const schema = `bench_${Date.now().toString(36)}`;
  const c = new pg.Client({ connectionString: PG_URL });
  try {
    await c.connect();
  } catch (e) {
    console.log(`PostgreSQL unavailable (${(e as Error).message}); skipping that run`);
    return null;
  }
  await c.end();
  const u = new URL(PG_URL);
  u.searchParams.set('schema', schema);
  return {
    url: u.toString(),
    drop: async () => {
      const d = new pg.Client({ connectionString: PG_URL });
      await d.connect();
      await d.query(`drop schema if exists "${schema}" cascade`);
      await d.end();
    },
  };
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

const BASELINE = 'baseline: bare Fastify route';
const path = '/telephony/v1/voiceCalls/reserveRoutableNumber';
const runs: RunResult[] = [];
console.log(`bench:reserve — ${CONNECTIONS} connections, ${DURATION} s per run, ${ROUNDS} round(s), ${machine().cpus} CPUs, Node ${process.version}`);

for (let round = 1; round <= ROUNDS; round++) {
  if (ROUNDS > 1) console.log(`round ${round} of ${ROUNDS}`);
  const bare = await startProcess([BARE], {}, /listening (\S+)/);
  try {
    runs.push({ ...(await drive(BASELINE, `${bare.url}/reserve`, { 'content-type': 'application/json' }, bare.child.pid!)), round });
  } finally {
    await bare.stop();
  }
  for (const size of [1_000, 100_000]) {
    await withService({}, size, async (p, headers) => {
      runs.push({ ...(await drive(`sqlite, ${size.toLocaleString('en')} numbers`, p.url + path, headers, p.child.pid!)), round });
    });
  }
}
const pgs = await pgSchema();
if (pgs) {
  try {
    await withService({ HANDOFF_DATABASE_URL: pgs.url }, 1_000, async (p, headers) => {
      runs.push(await drive('postgres, 1,000 numbers', p.url + path, headers, p.child.pid!));
    });
  } finally {
    await pgs.drop();
  }
}

/** Per run name: the median of each figure over the rounds. */
const names = [...new Set(runs.map((r) => r.name))];
const medians = names.map((name) => {
  const rs = runs.filter((r) => r.name === name);
  return {
    name,
    runs: rs.length,
    requestsPerSecond: Math.round(median(rs.map((r) => r.requestsPerSecond))),
    p50Ms: median(rs.map((r) => r.latencyMs.p50)),
    p99Ms: median(rs.map((r) => r.latencyMs.p99)),
    serverCpuPercent: Math.round(median(rs.map((r) => r.serverCpuPercent))),
  };
});
const byName = (name: string) => medians.find((m) => m.name === name)!;
/** Each round's ratio of `name` to that round's baseline (PostgreSQL, outside the rounds: to the median baseline). */
const roundRatios = (name: string): number[] => {
  const rs = runs.filter((r) => r.name === name);
  return rs.map((r) => {
    const base = r.round === undefined ? byName(BASELINE).requestsPerSecond : runs.find((b) => b.name === BASELINE && b.round === r.round)!.requestsPerSecond;
    return +(r.requestsPerSecond / base).toFixed(3);
  });
};
const perRound = (round: number, name: string) => runs.find((r) => r.round === round && r.name === name)!.requestsPerSecond;
const rounds = Array.from({ length: ROUNDS }, (_, i) => i + 1);
const s1k = byName('sqlite, 1,000 numbers');
const ratio1k = median(roundRatios(s1k.name));
const ratio100kTo1k = median(rounds.map((r) => perRound(r, 'sqlite, 100,000 numbers') / perRound(r, s1k.name)));
const summary = {
  medians,
  ratioToBaseline: Object.fromEntries(names.slice(1).map((n) => [n, +median(roundRatios(n)).toFixed(3)])),
  ratioToBaselineByRound: Object.fromEntries(names.slice(1).map((n) => [n, roundRatios(n)])),
  ratio100kTo1k: +ratio100kTo1k.toFixed(3),
  targets: {
    'ratio to baseline on SQLite >= 0.5': ratio1k >= 0.5,
    'p99 <= 10 ms on SQLite': s1k.p99Ms <= 10,
    '100,000 numbers >= 0.9 of 1,000': ratio100kTo1k >= 0.9,
    'no errors': runs.every((r) => r.errors === 0 && r.non2xx === 0),
  },
};
console.log(`\nmedians over ${ROUNDS} round(s):`);
for (const m of medians) console.log(`  ${m.name.padEnd(32)} ${String(m.requestsPerSecond).padStart(7)} req/s  p50 ${m.p50Ms} ms  p99 ${m.p99Ms} ms  server CPU ${m.serverCpuPercent}%`);
console.log('ratio to baseline (median of the rounds; each round compares runs seconds apart):');
for (const [k, v] of Object.entries(summary.ratioToBaseline)) console.log(`  ${k.padEnd(32)} ${v}  (rounds: ${summary.ratioToBaselineByRound[k]!.join(', ')})`);
console.log(`  100,000 vs 1,000 numbers        ${summary.ratio100kTo1k}`);
for (const [k, v] of Object.entries(summary.targets)) console.log(`  target ${k}: ${v ? 'met' : 'MISSED'}`);
const file = writeResults('reserve', { benchmark: 'reserve', date: new Date().toISOString(), machine: machine(), connections: CONNECTIONS, durationSeconds: DURATION, rounds: ROUNDS, runs, summary });
console.log(`\nwritten to ${file}`);
