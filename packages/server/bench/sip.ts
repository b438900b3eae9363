/**
 * bench:sip — SIP hand-off throughput of a real `handoff serve` process (SQLite, its embedded
 * default) with sipp as the partner (UAC) and sipp as the AI agent (UAS), on both hand-off paths:
 *
 *   A (number): the partner calls a leased pool number (leases reserved over HTTP right before each
 *               step, one per call, distinct callers), INVITE → Handoff → agent.
 *   B (UUI):    the partner calls the channel with a hex User-to-User holding {orgId, scrt2Domain,
 *               token, callId, transactionId}; one RS256 token without jti, reused for every call.
 *
 * Each call: INVITE → (100) → 180 → 200 → ACK → BYE from the partner → 200, all through Handoff's
 * record-routing proxy. The call rate steps up (BENCH_SIP_RATES) until a step fails; a step passes
 * when every call succeeded, retransmissions are under 1% of the SIP messages both sipps saw, and
 * calls were answered at no less than 90% of the offered rate. In the same run the same calls go
 * from the sipp UAC straight to the sipp UAS (no Handoff) as the baseline. Each step reports the
 * INVITE → 200 time at the partner (p50/p90/p99/max, sipp's 1 ms resolution) and the CPU of Handoff,
 * both sipps and the rest of the machine (it is shared) while the calls were offered, and Handoff's
 * memory at its end and garbage-collection time during it (from its /metrics). Afterwards the
 * service must still be up and every hand-off VoiceCall over (read from its SQLite file).
 * Writes bench/results/sip.json. Scenarios: bench/sip-partner-number.xml, sip-partner-uui.xml (also
 * the baseline's), sip-agent.xml.
 *
 * Options (environment): BENCH_SIP_STEP_SECONDS (seconds of calls per step, default 5),
 * BENCH_SIP_RATES (calls/s, comma-separated, default 100,250,500,750,1000,1250,1500,2000,3000,4000),
 * BENCH_SIP_PATHS (default baseline,number,uui), BENCH_SIP_KEEP=1 keeps the work directory (sipp's
 * statistics, screens and error logs per step), BENCH_SIP_TRACE=1 also keeps every SIP message there,
 * BENCH_SIP_NODE_ARGS (node options of the service process, e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof"),
 * BENCH_SIP_RETRY_OTHERS_PERCENT (default 40: a step that fails while processes outside the benchmark
 * take that much CPU, % of one core, is run once more; 0 never retries), BENCH_SIP_SUSTAIN_SECONDS
 * (default 40; 0 skips the sustained runs, see SUSTAIN_SECONDS), BENCH_SIP_WORKERS (the service's
 * HANDOFF_SIP_WORKERS, default 2).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { toId18 } from '../src/domain/ids.js';
import { generateKeyPair, mintToken } from '../src/domain/token-mint.js';
import { freePort, LOCAL, SIPP } from '../test/sip-handoff/sipp.js';
import { childrenCpuSeconds, cpuSeconds, HANDOFF_BIN, machine, writeResults } from './support.js';

const STEP_SECONDS = Number(process.env.BENCH_SIP_STEP_SECONDS ?? 5);
const RATES = (process.env.BENCH_SIP_RATES ?? '100,250,500,750,1000,1250,1500,2000,3000,4000').split(',').map(Number);
const PATHS = (process.env.BENCH_SIP_PATHS ?? 'baseline,number,uui').split(',') as PathName[];
const KEEP = process.env.BENCH_SIP_KEEP === '1';
/** Every SIP message both sipps saw, in <work>/step-*\/{uac,uas}.msg (slows sipp down: for diagnosis). */
const TRACE = process.env.BENCH_SIP_TRACE === '1';
/** Retransmissions must stay under this share of all SIP messages (%). */
const MAX_RETRANS_PERCENT = 1;
/** Calls must be answered at no less than this share of the offered rate. */
const MIN_RATE_SHARE = 0.9;
/** sipp's -rtt_freq: it writes response times in batches of this many calls. */
const RTT_FREQ = 50;
/** A step that fails while processes outside the benchmark take at least this much CPU (%) is run once more (0: never). */
const RETRY_OTHERS_PERCENT = Number(process.env.BENCH_SIP_RETRY_OTHERS_PERCENT ?? 40);
/**
 * After the steps, each Handoff path's highest passing rate is held this long, then the next lower
 * passing rate if that fails (at most SUSTAIN_TRIES rates): the sustained rate. Longer than 64*T1
 * (32 s), the longest a finished call's transactions are kept, so Handoff's memory (and its
 * collector's work) reaches its steady state: a 5 s step ends before it does and overstates.
 */
/** SIP threads of the service (HANDOFF_SIP_WORKERS): two use both of this machine's cores. */
const WORKERS = Number(process.env.BENCH_SIP_WORKERS ?? 2);
if (!Number.isInteger(WORKERS) || WORKERS < 1 || WORKERS > 64) throw new Error('BENCH_SIP_WORKERS must be a whole number from 1 to 64');
const SUSTAIN_SECONDS = Number(process.env.BENCH_SIP_SUSTAIN_SECONDS ?? 40);
if (!Number.isFinite(SUSTAIN_SECONDS) || SUSTAIN_SECONDS < 0) throw new Error('BENCH_SIP_SUSTAIN_SECONDS must be a number of seconds, 0 or more');
const SUSTAIN_TRIES = 3;
/**
 * Before a sustained run and before a path that follows another through Handoff, the benchmark
 * waits this long after the traffic stopped, so the run does not start with the transactions of the
 * one before (kept 64*T1 = 32 s) in Handoff's heap.
 */
const REST_MS = 33_000;
/** A step's partner is stopped this long after its calls should have ended (each ends within ~25 s: 10 s receive timeouts). */
const BACKSTOP_SECONDS = 40;

const SCENARIOS = fileURLToPath(new URL('../../bench/', import.meta.url));
const UAC_NUMBER = join(SCENARIOS, 'sip-partner-number.xml');
const UAC_UUI = join(SCENARIOS, 'sip-partner-uui.xml');
const UAS = join(SCENARIOS, 'sip-agent.xml');

const ORG = '00Dxx0000005BEN';
const DOMAIN = 'bench.my.example.com';
/** Each path has its own channel, flow and agent (sipp UAS port), so one path's leftovers never reach the next one's agent. */
const CHANNEL: Record<'number' | 'uui', string> = { number: '+14155550100', uui: '+14155550101' };
const POOL = { from: '+12125550000', to: '+12125550999' };
const OPERATOR_TOKEN = 'operator-secret-for-bench-sip-0123456789';

type PathName = 'baseline' | 'number' | 'uui';
const LABEL: Record<PathName, string> = {
  baseline: 'baseline: sipp UAC -> sipp UAS',
  number: 'path A (number/lease)',
  uui: 'path B (UUI, RS256)',
};

interface SippStats {
  exitCode: number | null;
  successful: number;
  failed: number;
  /** Sum of the Messages column of sipp's scenario screen (sent and received). */
  messages: number;
  /** Sum of its Retrans column (retransmissions sent, and received ones it recognised). */
  retransmissions: number;
  timeouts: number;
  unexpected: number;
  deadCallMsgs: number;
  outOfCallMsgs: number;
  watchdogMajor: number;
  cpuSeconds: number;
  /** No final screen: messages estimated from the calls, retransmissions from the statistics file. */
  messagesEstimated?: boolean;
  /** The last lines of sipp's error log, when there was one. */
  errors?: string;
}

interface Step {
  rate: number;
  calls: number;
  pass: boolean;
  why: string[];
  wallSeconds: number;
  /** Calls answered per second: 200s to INVITEs at the partner, from the first to the last. */
  achievedRate: number;
  /** Handoff's CPU time per call (ms): all its CPU from the first INVITE until the agent is done. */
  handoffCpuMsPerCall: number | null;
  /** The window of cpuPercent: the seconds while calls were offered. */
  cpuWindowSeconds: number | null;
  retransPercent: number;
  /** INVITE sent → 200 received at the partner, ms (sipp's resolution: 1 ms). */
  inviteMs: { p50: number; p90: number; p99: number; max: number; mean: number; samples: number };
  /**
   * CPU of each process while the calls were offered (cpuWindowSeconds), % of one core (200% = both cores); `machine` is every CPU's
   * busy time, `others` what processes outside this benchmark took (the machine is shared).
   */
  cpuPercent: { handoff: number | null; uac: number; uas: number; bench: number; machine: number; others: number };
  uac: SippStats;
  uas: SippStats;
  /** Handoff's own counters over the step (from /metrics), with its garbage-collection time (gc_seconds_<kind>). */
  server?: Record<string, number>;
  /** Handoff's memory at the end of the step (from /metrics): V8 heap used, off-heap (external) and resident, MB. */
  memory?: { heapMB: number; externalMB: number; rssMB: number };
  /** UDP datagrams the kernel dropped during the step, machine-wide (/proc/net/snmp): a receiver's socket buffer was full. */
  udpDropsByKernel: { receiveBufferErrors: number; sendBufferErrors: number; atSocket: { handoff: number; uac: number; uas: number } };
  /** This attempt failed while other processes took much CPU, and the step was run again (the next one). */
  retried?: boolean;
  /** Why the partner sipp was stopped before all its calls ended (BACKSTOP_SECONDS). */
  stoppedEarly?: string;
  /** Path A: the leases reserved over HTTP before the step. */
  reserve?: { leases: number; seconds: number; perSecond: number };
}

interface PathResult {
  path: PathName;
  label: string;
  steps: Step[];
  highestPassingRate: number;
  /** The runs of SUSTAIN_SECONDS, highest rate first, until one passed. */
  sustainSteps: Step[];
  /** The rate of the sustained run that passed; 0 when none did; null when not measured. */
  sustainedRate: number | null;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// ---------------------------------------------------------------------------------------------
// The service

interface Service {
  child: ChildProcess;
  pid: number;
  httpUrl: string;
  sipPort: number;
  dataDir: string;
  logLines: { warn: number; error: number; fatal: number; samples: string[] };
  output(): string;
  stop(): Promise<number | null>;
}

/** A port free on 127.0.0.1 for both UDP and TCP (the SIP listener binds both). */
async function freeSipPort(): Promise<number> {
  for (let i = 0; i < 20; i++) {
    const p = await freePort('udp');
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.createServer();
      s.once('error', () => resolve(false));
      s.listen(p, LOCAL, () => s.close(() => resolve(true)));
    });
    if (ok) return p;
  }
  throw new Error('no free SIP port');
}

async function startService(dir: string, agentPorts: Record<'number' | 'uui', number>, publicKeyPem: string): Promise<Service> {
  const dataDir = join(dir, 'data');
  mkdirSync(dataDir, { recursive: true });
  // No quotas (maxLiveLeases, requestsPerSecond: unlimited when absent); a pool of 1,000 numbers,
  // shared by distinct callers (a lease is per (number, caller) pair); agents with room for any load.
  const provisioning = {
    orgs: [
      {
        id: ORG,
        name: 'Bench',
        domain: DOMAIN,
        features: { numberPool: true },
        keys: [{ id: 'bench-1', publicKey: publicKeyPem }],
        callCenters: [{ apiName: 'BenchCC' }],
        flows: (['number', 'uui'] as const).map((p) => ({ name: `bench_${p}`, rules: [{ name: 'to the bot', agent: `bot-${p}` }], fallback: { reject: { status: 503, reason: 'No agent' } } })),
        channels: (['number', 'uui'] as const).map((p) => ({ devName: `Bench_${p}`, number: CHANNEL[p], callCenter: 'BenchCC', flow: `bench_${p}` })),
      },
    ],
    pools: [{ country: 'US', ranges: [POOL] }],
    agents: (['number', 'uui'] as const).map((p) => ({ name: `bot-${p}`, sipUri: `sip:bot-${p}@${LOCAL}:${agentPorts[p]}`, maxConcurrentCalls: 100_000 })),
  };
  const configFile = join(dir, 'handoff.json');
  writeFileSync(configFile, JSON.stringify(provisioning, null, 2));
  const httpPort = await freePort('tcp');
  const sipPort = await freeSipPort();
  const nodeArgs = (process.env.BENCH_SIP_NODE_ARGS ?? '').split(' ').filter(Boolean);
  const child = spawn(process.execPath, [...nodeArgs, HANDOFF_BIN, 'serve'], {
    env: {
      ...process.env,
      HANDOFF_DATA_DIR: dataDir,
      HANDOFF_CONFIG: configFile,
      HANDOFF_HTTP_PORT: String(httpPort),
      HANDOFF_SIP_PORT: String(sipPort),
      HANDOFF_SIP_RATE_LIMIT: '0',
      HANDOFF_SIP_WORKERS: String(WORKERS),
      HANDOFF_SIP_WORKER_PORT: '0',
      HANDOFF_LOG_LEVEL: 'warn',
      HANDOFF_OPERATOR_TOKEN: OPERATOR_TOKEN,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let tail = '';
  let partial = '';
  const logLines = { warn: 0, error: 0, fatal: 0, samples: [] as string[] };
  const onData = (d: Buffer) => {
    const text = d.toString();
    tail = (tail + text).slice(-20_000);
    const lines = (partial + text).split('\n');
    partial = lines.pop() ?? '';
    for (const line of lines) {
      const level = /"level":(\d+)/.exec(line)?.[1];
      const kind = level === '40' ? 'warn' : level === '50' ? 'error' : level === '60' ? 'fatal' : line.trim() && !level ? 'error' : null;
      if (!kind) continue;
      logLines[kind]++;
      if (logLines.samples.length < 10) logLines.samples.push(line.slice(0, 600));
    }
  };
  child.stdout!.on('data', onData);
  child.stderr!.on('data', onData);
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const httpUrl = `http://${LOCAL}:${httpPort}`;
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`handoff exited with ${child.exitCode}:\n${tail}`);
    try {
      if ((await fetch(`${httpUrl}/readyz`)).status === 200) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`handoff not ready in 60 s:\n${tail}`);
    }
    await sleep(100);
  }
  return {
    child,
    pid: child.pid!,
    httpUrl,
    sipPort,
    dataDir,
    logLines,
    output: () => tail,
    stop: async () => {
      if (child.exitCode !== null) return child.exitCode;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
      const code = await exited;
      clearTimeout(timer);
      return code;
    },
  };
}

/** Sum of every series of each handoff_sip_* counter, and responses by status, from /metrics. */
async function serverCounters(httpUrl: string): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  try {
    const text = await (await fetch(`${httpUrl}/metrics`)).text();
    for (const line of text.split('\n')) {
      const m = /^(handoff_sip_(?:requests|responses|dropped|retransmissions|parse_errors|overload_rejections)_total|handoff_resolutions_total)(\{[^}]*\})?\s+(\S+)$/.exec(line);
      if (!m) continue;
      const value = Number(m[3]);
      const name = m[1]!.replace(/^handoff_/, '').replace(/_total$/, '');
      out[name] = (out[name] ?? 0) + value;
      const status = /status="(\d+)"/.exec(m[2] ?? '')?.[1];
      if (name === 'sip_responses' && status) out[`sip_responses_${status}`] = (out[`sip_responses_${status}`] ?? 0) + value;
      const outcome = /outcome="([^"]+)"/.exec(m[2] ?? '')?.[1];
      const path = /path="([^"]+)"/.exec(m[2] ?? '')?.[1];
      if (name === 'resolutions' && outcome && path?.startsWith('sip')) out[`resolutions_${path}_${outcome}`] = (out[`resolutions_${path}_${outcome}`] ?? 0) + value;
      const reason = /reason="([^"]+)"/.exec(m[2] ?? '')?.[1];
      if (name === 'sip_dropped' && reason) out[`sip_dropped_${reason}`] = (out[`sip_dropped_${reason}`] ?? 0) + value;
      const cause = /cause="([^"]+)"/.exec(m[2] ?? '')?.[1];
      if (name === 'sip_overload_rejections' && cause) out[`sip_overload_rejections_${cause}`] = (out[`sip_overload_rejections_${cause}`] ?? 0) + value;
    }
    for (const m of text.matchAll(/^handoff_nodejs_gc_duration_seconds_sum\{kind="([a-z_]+)"\}\s+(\S+)$/gm)) out[`gc_seconds_${m[1]}`] = Number(m[2]);
  } catch {
    // metrics are a bonus; the step is judged by sipp
  }
  return out;
}

/** Handoff's memory gauges from /metrics (MB), or undefined when they cannot be read. */
async function serverMemory(httpUrl: string): Promise<Step['memory']> {
  try {
    const text = await (await fetch(`${httpUrl}/metrics`)).text();
    const mb = (name: string) => {
      const m = new RegExp(`^${name}\\s+(\\S+)$`, 'm').exec(text);
      return m ? Math.round(Number(m[1]) / 1e6) : NaN;
    };
    // SIP worker threads have heaps of their own
    const workersMB = [...text.matchAll(/^handoff_sip_worker_heap_used_bytes\{[^}]*\}\s+(\S+)$/gm)].reduce((n, m) => n + Math.round(Number(m[1]) / 1e6), 0);
    const memory = { heapMB: mb('handoff_nodejs_heap_size_used_bytes') + workersMB, externalMB: mb('handoff_nodejs_external_memory_bytes'), rssMB: mb('handoff_process_resident_memory_bytes') };
    return Object.values(memory).some(Number.isNaN) ? undefined : memory;
  } catch {
    return undefined; // a bonus, like the counters
  }
}

/**
 * Waits until Handoff's SIP traffic has stopped (its counters unchanged for 2 s, at most `maxMs`):
 * after an overloaded step it still retransmits and times transactions out for up to 32 s (timer B/F).
 */
/** quiesce, then REST_MS: the transactions of the traffic before are gone. */
async function rest(s: Service, why: string): Promise<void> {
  const waited = await quiesce(s);
  console.log(`  (${why}: ${(waited + REST_MS / 1000).toFixed(0)} s rest, so that Handoff no longer holds the transactions of the calls before)`);
  await sleep(REST_MS);
}

async function quiesce(s: Service, maxMs = 15_000): Promise<number> {
  const t0 = Date.now();
  const key = async () => {
    const c = await serverCounters(s.httpUrl);
    return `${c['sip_requests']}/${c['sip_responses']}/${c['sip_retransmissions']}/${c['sip_dropped']}`;
  };
  let last = await key();
  let stableSince = Date.now();
  while (Date.now() - t0 < maxMs && Date.now() - stableSince < 2000) {
    await sleep(500);
    const now = await key();
    if (now !== last) {
      last = now;
      stableSince = Date.now();
    }
  }
  return (Date.now() - t0) / 1000;
}

function counterDelta(a: Record<string, number>, b: Record<string, number>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, v] of Object.entries(b)) {
    const d = v - (a[k] ?? 0);
    if (d !== 0) out[k] = d;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// HTTP: VC1s and leases

async function api(s: Service, token: string, method: string, url: string, body: unknown): Promise<{ status: number; json: any }> {
  const res = await fetch(`${s.httpUrl}${url}`, {
    method,
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', 'telephony-provider-name': 'bench' },
    body: JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, json: text ? JSON.parse(text) : null };
}

async function createVc1(s: Service, token: string, what: 'number' | 'uui'): Promise<string> {
  const r = await api(s, token, 'POST', '/telephony/v1/voiceCalls', {
    vendorCallKey: `bench-sip-${what}-${process.pid}-${Date.now()}`,
    to: CHANNEL[what],
    from: '+14155559000',
    callAttributes: '{"Department__c":"Support"}',
  });
  if (r.status !== 201) throw new Error(`creating VC1: ${r.status} ${JSON.stringify(r.json)}`);
  return r.json.voiceCallId as string;
}

let callerSeq = 0;
/** A caller number no call of this run used before (leases are per (number, caller) pair). */
function nextCaller(prefix: string): string {
  return `+1${prefix}${String(2_000_000 + ++callerSeq).padStart(7, '0')}`;
}

/** Reserves `n` leases (32 requests in flight), one per new caller; returns [routableNumber, caller] rows. */
async function reserveLeases(s: Service, token: string, vc1: string, n: number): Promise<{ rows: string[][]; seconds: number }> {
  const rows: string[][] = new Array(n);
  let next = 0;
  const t0 = performance.now();
  const worker = async () => {
    for (;;) {
      const i = next++;
      if (i >= n) return;
      const caller = nextCaller('646');
      const r = await api(s, token, 'POST', '/telephony/v1/voiceCalls/reserveRoutableNumber', {
        countryCode: 'US',
        fromNumber: caller,
        scrt2Domain: `https://${DOMAIN}`,
        toNumber: CHANNEL.number,
        callId: vc1,
        transactionId: `bench-a-${process.pid}-${callerSeq}-${i}`,
      });
      if (r.status !== 200) throw new Error(`reserveRoutableNumber: ${r.status} ${JSON.stringify(r.json)}`);
      rows[i] = [r.json.handle.routableNumber as string, caller];
    }
  };
  await Promise.all(Array.from({ length: 32 }, worker));
  return { rows, seconds: (performance.now() - t0) / 1000 };
}

// ---------------------------------------------------------------------------------------------
// sipp

interface SippRun {
  child: ChildProcess;
  exited: Promise<{ code: number | null; cpu: number; at: number }>;
}

/** Children's CPU as last read; each exit takes the difference, so two sipps overlapping are told apart. */
let childCpuMark = childrenCpuSeconds();

/** sipp processes still running, killed if the benchmark stops half-way. */
const liveSipps = new Set<ChildProcess>();

function startSipp(args: string[], cwd: string): SippRun {
  const child = spawn(SIPP!, args, { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  liveSipps.add(child);
  child.once('exit', () => liveSipps.delete(child));
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out = (out + d.toString()).slice(-4000)));
  child.stderr!.on('data', (d: Buffer) => (out = (out + d.toString()).slice(-4000)));
  const exited = new Promise<{ code: number | null; cpu: number; at: number }>((resolve) => {
    child.once('exit', (code) => {
      const now = childrenCpuSeconds();
      const cpu = now - childCpuMark;
      childCpuMark = now;
      if (code !== 0 && out.trim()) writeFileSync(join(cwd, `sipp-${child.pid}.out`), out);
      resolve({ code, cpu, at: performance.now() });
    });
  });
  return { child, exited };
}

function readFileSyncSafe(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return '';
  }
}

interface CpuSample {
  at: number;
  handoff: number;
  uac: number;
  uas: number;
  bench: number;
  machine: number;
}

/** CPU % of one core of each process between two samples; `others` is the machine's busy time no process here accounts for. */
function cpuWindow(a: CpuSample, b: CpuSample | null): { seconds: number; percent: Step['cpuPercent'] & { handoff: number } } | null {
  if (!b || [b.uac, b.uas].some(Number.isNaN)) return null;
  const seconds = (b.at - a.at) / 1000;
  const pct = (k: keyof Omit<CpuSample, 'at'>) => Math.round(((b[k] - a[k]) / seconds) * 100);
  const percent = { handoff: pct('handoff'), uac: pct('uac'), uas: pct('uas'), bench: pct('bench'), machine: pct('machine'), others: 0 };
  percent.others = Math.max(0, percent.machine - percent.handoff - percent.uac - percent.uas - percent.bench);
  return { seconds, percent };
}

/** Datagrams the kernel dropped at each UDP socket bound on 127.0.0.1 (its receive buffer was full), by port, from /proc/net/udp. */
function socketDrops(): Map<number, number> {
  const out = new Map<number, number>();
  for (const line of readFileSyncSafe('/proc/net/udp').split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    const local = f[1];
    if (!local?.startsWith('0100007F:') || f.length < 13) continue;
    const port = parseInt(local.slice(9), 16);
    out.set(port, (out.get(port) ?? 0) + Number(f[f.length - 1]));
  }
  return out;
}

/** The kernel's UDP RcvbufErrors and SndbufErrors counters (all sockets), from /proc/net/snmp. */
function udpErrors(): { rcvbuf: number; sndbuf: number } {
  const lines = readFileSyncSafe('/proc/net/snmp').split('\n').filter((l) => l.startsWith('Udp:'));
  if (lines.length < 2) return { rcvbuf: 0, sndbuf: 0 };
  const head = lines[0]!.split(/\s+/);
  const values = lines[1]!.split(/\s+/).map(Number);
  const get = (k: string) => values[head.indexOf(k)] ?? 0;
  return { rcvbuf: get('RcvbufErrors'), sndbuf: get('SndbufErrors') };
}

/** Busy CPU seconds of the whole machine (all CPUs), from /proc/stat. */
function machineCpu(): { busy: number } {
  const line = readFileSyncSafe('/proc/stat').split('\n')[0] ?? '';
  const v = line.trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal
  const busy = (v[0] ?? 0) + (v[1] ?? 0) + (v[2] ?? 0) + (v[5] ?? 0) + (v[6] ?? 0) + (v[7] ?? 0);
  return { busy: busy / 100 };
}

function lastStatRow(file: string): Record<string, string> {
  if (!existsSync(file)) return {};
  const lines = readFileSync(file, 'utf8').trim().split('\n');
  if (lines.length < 2) return {};
  const head = lines[0]!.split(';');
  const row = lines[lines.length - 1]!.split(';');
  return Object.fromEntries(head.map((h, i) => [h, row[i] ?? '']));
}

/** Messages, retransmissions, timeouts and unexpected messages from sipp's final scenario screen. */
function screenCounts(file: string): { messages: number; retransmissions: number; timeouts: number; unexpected: number } {
  const out = { messages: 0, retransmissions: 0, timeouts: 0, unexpected: 0 };
  if (!existsSync(file)) return out;
  const text = readFileSync(file, 'utf8');
  const start = text.indexOf('Messages  Retrans');
  if (start < 0) return out;
  for (const line of text.slice(start).split('\n').slice(1)) {
    if (/^-{5,} /.test(line.trim())) break;
    // "INVITE ---------->  B-RTD1 5000 0 0", "100 <---------- 0 0 0 0", "----------> INVITE 5000 0 0 0"
    const m = /^\s*(?:\S+\s+(?:-{5,}>|<-{5,})|(?:-{5,}>|<-{5,})\s+\S+)\s+(?:[BE]-RTD\d+\s+)?(\d+)\s+(\d+)(?:\s+(\d+))?(?:\s+(\d+))?/.exec(line);
    if (!m) continue;
    out.messages += Number(m[1]);
    out.retransmissions += Number(m[2]);
    out.timeouts += Number(m[3] ?? 0);
    out.unexpected += Number(m[4] ?? 0);
  }
  return out;
}

function sippStats(dir: string, name: string, exit: { code: number | null; cpu: number }, messagesPerCall: number): SippStats {
  const stat = lastStatRow(join(dir, `${name}.stat.csv`));
  const n = (k: string) => Number(stat[k] ?? 0) || 0;
  let screen = screenCounts(join(dir, `${name}.screen`));
  const estimated = screen.messages === 0;
  if (estimated) {
    // no final screen (sipp was killed): its last periodic statistics (sent retransmissions only)
    screen = { messages: (n('SuccessfulCall(C)') + n('FailedCall(C)')) * messagesPerCall, retransmissions: n('Retransmissions(C)'), timeouts: 0, unexpected: 0 };
  }
  const errFile = join(dir, `${name}.err`);
  const errors = existsSync(errFile) ? readFileSync(errFile, 'utf8').trim() : '';
  return {
    exitCode: exit.code,
    successful: n('SuccessfulCall(C)'),
    failed: n('FailedCall(C)'),
    messages: screen.messages,
    retransmissions: screen.retransmissions,
    timeouts: screen.timeouts,
    unexpected: screen.unexpected,
    deadCallMsgs: n('DeadCallMsgs(C)'),
    outOfCallMsgs: n('OutOfCallMsgs(C)'),
    watchdogMajor: n('WatchdogMajor(C)'),
    cpuSeconds: +exit.cpu.toFixed(2),
    ...(estimated ? { messagesEstimated: true } : {}),
    ...(errors ? { errors: errors.slice(-1500) } : {}),
  };
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

/** INVITE response times (ms) and the rate calls were answered at, from sipp's -trace_rtt file. */
function rtt(dir: string): { inviteMs: Step['inviteMs']; achievedRate: number } {
  const file = readdirSync(dir).find((f) => f.endsWith('_rtt.csv'));
  const times: number[] = [];
  const values: number[] = [];
  if (file) {
    for (const line of readFileSync(join(dir, file), 'utf8').split('\n').slice(1)) {
      const [at, ms] = line.split(';');
      if (ms === undefined || ms === '') continue;
      times.push(Number(at));
      values.push(Number(ms));
    }
  }
  values.sort((a, b) => a - b);
  // A loop, not Math.max(...times): a long step has more samples than a call's arguments may hold.
  let first = Infinity;
  let last = -Infinity;
  for (const t of times) {
    if (t < first) first = t;
    if (t > last) last = t;
  }
  const span = times.length > 1 ? (last - first) / 1000 : 0;
  return {
    inviteMs: {
      p50: percentile(values, 50),
      p90: percentile(values, 90),
      p99: percentile(values, 99),
      max: values.length ? values[values.length - 1]! : NaN,
      mean: values.length ? +(values.reduce((a, b) => a + b, 0) / values.length).toFixed(2) : NaN,
      samples: values.length,
    },
    achievedRate: span > 0 ? Math.round((times.length - 1) / span) : times.length,
  };
}

interface PathContext {
  service: Service | null;
  agentPort: number;
  token: string;
  vc1: string;
  uuiHead: string;
  uuiTail: string;
}

let stepSeq = 0;

async function runStep(path: PathName, rate: number, ctx: PathContext, work: string, seconds = STEP_SECONDS): Promise<Step> {
  // A multiple of RTT_FREQ: sipp writes its -trace_rtt file in batches and drops a last partial one
  const calls = Math.max(RTT_FREQ, Math.ceil((rate * seconds) / RTT_FREQ) * RTT_FREQ);
  const dir = join(work, `step-${++stepSeq}-${path}-${rate}`);
  mkdirSync(dir, { recursive: true });

  // Rows of the -inf file: path A [routable number, caller]; baseline and path B [transactionId hex, caller].
  let rows: string[][];
  let reserve: Step['reserve'];
  if (path === 'number') {
    const r = await reserveLeases(ctx.service!, ctx.token, ctx.vc1, calls);
    rows = r.rows;
    reserve = { leases: calls, seconds: +r.seconds.toFixed(2), perSecond: Math.round(calls / r.seconds) };
    await sleep(500);
  } else {
    rows = Array.from({ length: calls }, () => {
      const caller = nextCaller('917');
      return [Buffer.from(`${path[0]}-${process.pid}-${callerSeq}`).toString('hex').toUpperCase(), caller];
    });
  }
  const inf = join(dir, 'calls.csv');
  writeFileSync(inf, ['SEQUENTIAL', ...rows.map((r) => r.join(';'))].join('\n') + '\n');

  // sipp's own limit, past our backstop (SIGUSR1, which still writes the screen)
  const timeout = `${Math.ceil(seconds + BACKSTOP_SECONDS + 15)}s`;
  // -recv_timeout: a call waiting 10 s for a message fails (an unanswered INVITE is CANCELled, sipp's
  // default behaviour), so every call of a step ends within bounds, failed or not
  const common = ['-i', LOCAL, '-t', 'u1', '-nostdin', '-buff_size', String(4 * 1024 * 1024), '-recv_timeout', '10000', '-timeout', timeout, '-timeout_error'];
  const traces = (name: string) => [
    '-trace_stat', '-stf', join(dir, `${name}.stat.csv`), '-fd', '1',
    '-trace_screen', '-screen_file', join(dir, `${name}.screen`),
    '-trace_err', '-error_file', join(dir, `${name}.err`),
    ...(TRACE ? ['-trace_msg', '-message_file', join(dir, `${name}.msg`)] : []),
  ];

  // The agent takes calls until told to stop (SIGUSR1) after the partner is done, so the two never
  // exit together and each one's CPU is read apart (childrenCpuSeconds after each exit).
  const uas = startSipp(['-sf', UAS, '-p', String(ctx.agentPort), ...common, ...traces('uas')], dir);
  await sleep(300);
  const target = path === 'baseline' ? `${LOCAL}:${ctx.agentPort}` : `${LOCAL}:${ctx.service!.sipPort}`;
  const counters0 = ctx.service ? await serverCounters(ctx.service.httpUrl) : {};
  const cpu0 = ctx.service ? cpuSeconds(ctx.service.pid) : NaN;
  const udp0 = udpErrors();
  const uacPort = await freePort('udp');
  // Per-socket drops: the sipp sockets die with their processes, so the last value seen counts
  const drops0 = socketDrops();
  const drops = { handoff: 0, uac: 0, uas: 0 };
  const readDrops = () => {
    const d = socketDrops();
    if (ctx.service && d.has(ctx.service.sipPort)) drops.handoff = d.get(ctx.service.sipPort)! - (drops0.get(ctx.service.sipPort) ?? 0);
    if (d.has(uacPort)) drops.uac = d.get(uacPort)!;
    if (d.has(ctx.agentPort)) drops.uas = d.get(ctx.agentPort)!;
  };
  const dropPoll = setInterval(readDrops, 250);
  const t0 = performance.now();
  const uac = startSipp(
    [
      target,
      '-sf', path === 'number' ? UAC_NUMBER : UAC_UUI,
      '-p', String(uacPort),
      '-r', String(rate), '-rp', '1000',
      '-l', String(Math.max(1000, rate * 10)),
      '-inf', inf,
      ...(path === 'number' ? [] : ['-key', 'channel', CHANNEL.uui, '-key', 'uui_head', ctx.uuiHead, '-key', 'uui_tail', ctx.uuiTail]),
      '-m', String(calls),
      '-trace_rtt', '-rtt_freq', String(RTT_FREQ),
      ...common,
      ...traces('uac'),
    ],
    dir,
  );
  // CPU while the calls are offered (the step's first `calls / rate` seconds): every process, and the machine
  const sample = (): CpuSample => ({
    at: performance.now(),
    handoff: ctx.service ? cpuSeconds(ctx.service.pid) : 0,
    uac: cpuSeconds(uac.child.pid!),
    uas: cpuSeconds(uas.child.pid!),
    bench: cpuSeconds(process.pid),
    machine: machineCpu().busy,
  });
  const w0 = sample();
  let w1: CpuSample | null = null;
  const windowTimer = setTimeout(() => (w1 = sample()), Math.max(500, (calls / rate) * 1000 - 200));
  // Every call ends by itself (answered, or failed after a 10 s receive timeout); past that the
  // partner is stopped (SIGUSR1: sipp quits and still writes its screen).
  let stoppedEarly: string | undefined;
  let uacKill: NodeJS.Timeout | undefined;
  const uacStop = setTimeout(() => {
    stoppedEarly = `partner stopped ${BACKSTOP_SECONDS} s after its calls should have ended (${lastStatRow(join(dir, 'uac.stat.csv'))['CurrentCall'] ?? '?'} calls open)`;
    uac.child.kill('SIGUSR1');
    uacKill = setTimeout(() => uac.child.exitCode === null && uac.child.kill('SIGKILL'), 5000);
  }, (seconds + BACKSTOP_SECONDS) * 1000);
  const uacExit = await uac.exited;
  clearTimeout(uacStop);
  clearTimeout(uacKill);
  clearTimeout(windowTimer);
  const wall = (uacExit.at - t0) / 1000;
  // The agent's calls end with the partner's, or fail 10 s after their last message: once its
  // statistics (written every second) show no call open, or 20 s on, it is asked to quit (SIGUSR1:
  // it writes its screen).
  const uasRows = () => readFileSyncSafe(join(dir, 'uas.stat.csv')).split('\n').length;
  const rows0 = uasRows();
  const uasDeadline = performance.now() + 20_000;
  while (uas.child.exitCode === null && performance.now() < uasDeadline) {
    await sleep(250);
    if (uasRows() > rows0 && lastStatRow(join(dir, 'uas.stat.csv'))['CurrentCall'] === '0') break;
  }
  readDrops();
  clearInterval(dropPoll);
  uas.child.kill('SIGUSR1');
  const uasKill = setTimeout(() => uas.child.exitCode === null && uas.child.kill('SIGKILL'), 5000);
  const uasExit = await uas.exited;
  clearTimeout(uasKill);
  const counters1 = ctx.service ? await serverCounters(ctx.service.httpUrl) : {};
  const memory = ctx.service ? await serverMemory(ctx.service.httpUrl) : undefined;
  const cpu1 = ctx.service ? cpuSeconds(ctx.service.pid) : NaN;
  const udp1 = udpErrors();
  const win = cpuWindow(w0, w1);

  // Messages per call when a screen is missing (sipp killed): INVITE, (100), 180, 200, ACK, BYE, 200
  const uacStats = sippStats(dir, 'uac', uacExit, path === 'baseline' ? 6 : 7);
  const uasStats = sippStats(dir, 'uas', uasExit, 6);
  const { inviteMs, achievedRate } = rtt(dir);
  const messages = uacStats.messages + uasStats.messages;
  const retransPercent = messages > 0 ? +(((uacStats.retransmissions + uasStats.retransmissions) / messages) * 100).toFixed(3) : 0;
  const why: string[] = [];
  if (uacStats.failed > 0) {
    // Handoff's own overload refusals (503 at once), by cause, when it said so
    const shed = ctx.service ? counterDelta(counters0, counters1) : {};
    const causes = Object.entries(shed)
      .filter(([k, v]) => k.startsWith('sip_overload_rejections_') && v > 0)
      .map(([k, v]) => `${v} ${k.slice('sip_overload_rejections_'.length)}`);
    why.push(`${uacStats.failed} of ${calls} calls failed${causes.length ? ` (shed by Handoff: ${causes.join(', ')})` : ''}`);
  } else if (uacStats.successful < calls) why.push(`${calls - uacStats.successful} of ${calls} calls did not complete`);
  if (uacExit.code !== 0 && uacStats.failed === 0) why.push(`partner sipp exit ${uacExit.code}`);
  if (uasStats.failed > 0) why.push(`${uasStats.failed} failed at the agent`);
  if (retransPercent >= MAX_RETRANS_PERCENT) why.push(`retransmissions ${retransPercent}%`);
  if (achievedRate < rate * MIN_RATE_SHARE) why.push(`only ${achievedRate} calls/s answered`);
  if (stoppedEarly) why.push(stoppedEarly);
  const step: Step = {
    rate,
    calls,
    pass: why.length === 0,
    why,
    wallSeconds: +wall.toFixed(2),
    achievedRate,
    handoffCpuMsPerCall: ctx.service ? +(((cpu1 - cpu0) * 1000) / calls).toFixed(2) : null,
    cpuWindowSeconds: win ? +win.seconds.toFixed(2) : null,
    retransPercent,
    inviteMs,
    cpuPercent: win
      ? { ...win.percent, handoff: ctx.service ? win.percent.handoff : null }
      : // the partner ended before the window did: whole-step figures
        {
          handoff: ctx.service ? Math.round(((cpu1 - cpu0) / wall) * 100) : null,
          uac: Math.round((uacStats.cpuSeconds / wall) * 100),
          uas: Math.round((uasStats.cpuSeconds / wall) * 100),
          bench: NaN,
          machine: NaN,
          others: NaN,
        },
    uac: uacStats,
    uas: uasStats,
    ...(ctx.service ? { server: counterDelta(counters0, counters1) } : {}),
    ...(memory ? { memory } : {}),
    ...(reserve ? { reserve } : {}),
    ...(stoppedEarly ? { stoppedEarly } : {}),
    udpDropsByKernel: { receiveBufferErrors: udp1.rcvbuf - udp0.rcvbuf, sendBufferErrors: udp1.sndbuf - udp0.sndbuf, atSocket: drops },
  };
  printStep(path, step);
  return step;
}

// ---------------------------------------------------------------------------------------------
// Output

const fmt = (n: number | null, w: number) => String(n === null || Number.isNaN(n) ? '-' : n).padStart(w);

function printStepHeader(): void {
  console.log(
    `  ${'rate'.padStart(5)} ${'calls'.padStart(6)} ${'ans/s'.padStart(6)} ${'fail'.padStart(5)} ${'retr%'.padStart(6)} ` +
      `${'p50'.padStart(4)} ${'p90'.padStart(4)} ${'p99'.padStart(4)} ${'max'.padStart(5)}  ${'cpu% handoff'.padStart(12)} ${'uac'.padStart(4)} ${'uas'.padStart(4)} ${'other'.padStart(5)}  result`,
  );
}

function printStep(_path: PathName, s: Step): void {
  console.log(
    `  ${fmt(s.rate, 5)} ${fmt(s.calls, 6)} ${fmt(s.achievedRate, 6)} ${fmt(s.calls - s.uac.successful, 5)} ${s.retransPercent.toFixed(2).padStart(6)} ` +
      `${fmt(s.inviteMs.p50, 4)} ${fmt(s.inviteMs.p90, 4)} ${fmt(s.inviteMs.p99, 4)} ${fmt(s.inviteMs.max, 5)}  ${fmt(s.cpuPercent.handoff, 12)} ${fmt(s.cpuPercent.uac, 4)} ${fmt(s.cpuPercent.uas, 4)} ${fmt(s.cpuPercent.others, 5)}  ` +
      (s.pass ? 'pass' : `${s.retried ? 'fail' : 'FAIL'}: ${s.why.join('; ')}`) +
      (s.udpDropsByKernel.receiveBufferErrors
        ? `  [kernel dropped ${s.udpDropsByKernel.receiveBufferErrors} UDP datagrams, receive buffer full: ` +
          `${s.udpDropsByKernel.atSocket.handoff} at Handoff, ${s.udpDropsByKernel.atSocket.uac} at the UAC, ${s.udpDropsByKernel.atSocket.uas} at the UAS]`
        : '') +
      (s.reserve ? `  (${s.reserve.leases} leases reserved in ${s.reserve.seconds} s)` : '') +
      (s.memory
        ? `  [heap ${s.memory.heapMB} MB, off-heap ${s.memory.externalMB} MB, RSS ${s.memory.rssMB} MB; GC ${(((s.server?.['gc_seconds_minor'] ?? 0) + (s.server?.['gc_seconds_major'] ?? 0) + (s.server?.['gc_seconds_incremental'] ?? 0)) * 1000).toFixed(0)} ms]`
        : ''),
  );
}

// ---------------------------------------------------------------------------------------------
// After the run: is the service up, are the VoiceCall records consistent?

interface Check {
  serviceUp: boolean;
  readyz: number | null;
  healthz: number | null;
  voiceCalls: number;
  partnerCalls: number;
  handoffLegs: number;
  legsByPath: Record<string, number>;
  legsByStatus: Record<string, number>;
  disconnectReasons: Record<string, number>;
  /** Legs not over: status Routing/Routed/Answered, or still active, or without endTime. */
  stuck: number;
  stuckSamples: unknown[];
  leases: { total: number; consumed: number; unconsumed: number };
  successfulCallsThroughHandoff: number;
  secondsWaitedForSettling: number;
  /** Legs not over at the first look, right after the last step (the rest ended while we waited). */
  stuckRightAfterTheRun: number;
  vc1LegsViaHttp: Record<string, number | string>;
  serviceExitCode: number | null;
  serviceLog: Service['logLines'];
}

function dbSnapshot(file: string) {
  const db = new Database(file, { readonly: true, fileMustExist: true });
  db.pragma('busy_timeout = 5000');
  try {
    const group = (sql: string) => Object.fromEntries((db.prepare(sql).all() as { k: string | null; n: number }[]).map((r) => [String(r.k), r.n]));
    const notOver = `initiation_method = 'Transfer' AND (status IN ('Routing', 'Routed', 'Answered') OR is_active_call = 1 OR end_time IS NULL)`;
    return {
      voiceCalls: (db.prepare('SELECT count(*) AS n FROM voice_calls').get() as { n: number }).n,
      partnerCalls: (db.prepare(`SELECT count(*) AS n FROM voice_calls WHERE initiation_method <> 'Transfer'`).get() as { n: number }).n,
      handoffLegs: (db.prepare(`SELECT count(*) AS n FROM voice_calls WHERE initiation_method = 'Transfer'`).get() as { n: number }).n,
      legsByPath: group(`SELECT json_extract(handoff, '$.path') AS k, count(*) AS n FROM voice_calls WHERE initiation_method = 'Transfer' GROUP BY k`),
      legsByStatus: group(`SELECT status || CASE WHEN is_active_call = 1 THEN ' (active)' ELSE '' END AS k, count(*) AS n FROM voice_calls WHERE initiation_method = 'Transfer' GROUP BY k`),
      disconnectReasons: group(`SELECT disconnect_reason AS k, count(*) AS n FROM voice_calls WHERE initiation_method = 'Transfer' GROUP BY k`),
      stuck: (db.prepare(`SELECT count(*) AS n FROM voice_calls WHERE ${notOver}`).get() as { n: number }).n,
      stuckSamples: db.prepare(`SELECT id, status, is_active_call, end_time, disconnect_reason, json_extract(handoff, '$.path') AS path, json_extract(handoff, '$.sipCallId') AS sipCallId FROM voice_calls WHERE ${notOver} LIMIT 5`).all(),
      leases: db.prepare(`SELECT count(*) AS total, count(consumed_at) AS consumed, count(*) - count(consumed_at) AS unconsumed FROM leases`).get() as Check['leases'],
    };
  } finally {
    db.close();
  }
}

async function check(s: Service, token: string, vc1s: Record<string, string>, successful: number): Promise<Check> {
  const status = async (url: string) => {
    try {
      return (await fetch(`${s.httpUrl}${url}`)).status;
    } catch {
      return null;
    }
  };
  const readyz = await status('/readyz');
  const healthz = await status('/healthz');
  const dbFile = join(s.dataDir, 'handoff.sqlite');
  // The service finishes records (answered, ended) after the SIP messages; a BYE to an agent that
  // never answers it ends the call when its transaction times out (timer F, 32 s): wait up to 40 s.
  const t0 = Date.now();
  let snap = dbSnapshot(dbFile);
  const stuckAtFirst = snap.stuck;
  while (snap.stuck > 0 && Date.now() - t0 < 40_000) {
    await sleep(1000);
    snap = dbSnapshot(dbFile);
  }
  const waited = (Date.now() - t0) / 1000;
  // The partner's view: GET /voiceCalls/{VC1} counts the hand-off legs of each VC1 (legsTotal; it lists the newest 100).
  const vc1LegsViaHttp: Record<string, number | string> = {};
  for (const [path, id] of Object.entries(vc1s)) {
    try {
      const t = performance.now();
      const res = await fetch(`${s.httpUrl}/telephony/v1/voiceCalls/${id}`, { headers: { authorization: `Bearer ${token}` }, signal: AbortSignal.timeout(30_000) });
      const body = (await res.json()) as { legs?: unknown[]; legsTotal?: number };
      vc1LegsViaHttp[path] = res.status === 200 ? (body.legsTotal ?? body.legs?.length ?? 0) : `HTTP ${res.status}`;
      vc1LegsViaHttp[`${path}: ms`] = Math.round(performance.now() - t);
    } catch (e) {
      vc1LegsViaHttp[path] = `error: ${(e as Error).message}`;
    }
  }
  const serviceUp = s.child.exitCode === null && readyz === 200 && (await status('/readyz')) === 200;
  return {
    serviceUp,
    readyz,
    healthz,
    ...snap,
    successfulCallsThroughHandoff: successful,
    secondsWaitedForSettling: +waited.toFixed(1),
    stuckRightAfterTheRun: stuckAtFirst,
    vc1LegsViaHttp,
    serviceExitCode: null,
    serviceLog: s.logLines,
  };
}

// ---------------------------------------------------------------------------------------------
// Main

if (!SIPP) {
  console.error('bench:sip needs sipp (Debian package sip-tester): apt-get install -y sip-tester');
  process.exit(1);
}

const started = Date.now();
const work = mkdtempSync(join(tmpdir(), 'handoff-bench-sip-'));
const m = machine();
console.log(
  `bench:sip — ${m.cpus} CPUs (${m.cpuModel}), Node ${m.node}, load ${loadavg().map((l) => l.toFixed(2)).join(' ')}; ` +
    `UDP, ${WORKERS} SIP thread(s), ${STEP_SECONDS} s per step, rates ${RATES.join(', ')} calls/s; pass = no failed call, retransmissions < ${MAX_RETRANS_PERCENT}%, ` +
    `calls answered at >= ${MIN_RATE_SHARE * 100}% of the offered rate`,
);

const keys = await generateKeyPair('RS256');
const agentPorts: Record<PathName, number> = { baseline: await freePort('udp'), number: await freePort('udp'), uui: await freePort('udp') };
let service: Service | null = null;
const results: PathResult[] = [];
let checked: Check | null = null;
const vc1s: Record<string, string> = {};
let failure: Error | null = null;
try {
  service = await startService(work, agentPorts, keys.publicKeyPem);
  // One RS256 token without jti, as partners reuse it for every call (a jti would make reuse a replay).
  const token = await mintToken({ privateKeyPem: keys.privateKeyPem, iss: ORG, sub: 'BenchCC', ttlSeconds: 3600 });
  vc1s.number = await createVc1(service, token, 'number');
  vc1s.uui = await createVc1(service, token, 'uui');
  const uuiJson = JSON.stringify({ orgId: toId18(ORG), scrt2Domain: `https://${DOMAIN}`, token, callId: vc1s.uui, transactionId: '\u0000' });
  const [head, tail] = uuiJson.split('\\u0000') as [string, string];
  const hex = (s: string) => Buffer.from(s, 'utf8').toString('hex').toUpperCase();
  console.log(`handoff pid ${service.pid}: HTTP ${service.httpUrl}, SIP udp ${LOCAL}:${service.sipPort}; agents (sipp UAS) udp ports ${JSON.stringify(agentPorts)}; UUI about ${head.length + tail.length + 16} characters decoded (token ${token.length})`);

  for (const path of PATHS) {
    const ctx: PathContext = {
      service: path === 'baseline' ? null : service,
      agentPort: agentPorts[path],
      token,
      vc1: vc1s[path] ?? '',
      uuiHead: hex(head),
      uuiTail: hex(tail),
    };
    console.log(`\n${LABEL[path]}`);
    if (ctx.service && results.some((r) => r.path !== 'baseline')) await rest(ctx.service, 'before this path');
    printStepHeader();
    const steps: Step[] = [];
    for (const rate of RATES) {
      let step = await runStep(path, rate, ctx, work);
      steps.push(step);
      if (!step.pass && RETRY_OTHERS_PERCENT > 0 && step.cpuPercent.others >= RETRY_OTHERS_PERCENT) {
        // The machine is shared: a step that failed while other processes took much CPU is run once more
        step.retried = true;
        const waited = ctx.service ? await quiesce(ctx.service) : 0;
        console.log(`  (other processes took ${step.cpuPercent.others}% CPU during that step: running it again${waited > 2.5 ? ` after ${waited.toFixed(1)} s for Handoff to settle` : ''})`);
        step = await runStep(path, rate, ctx, work);
        steps.push(step);
      }
      if (!step.pass) break;
      await sleep(500);
    }
    if (ctx.service && steps.some((s) => !s.pass) && path !== PATHS[PATHS.length - 1]) {
      const waited = await quiesce(ctx.service);
      console.log(`  (waited ${waited.toFixed(1)} s for Handoff's SIP traffic to stop before the next path)`);
    }
    const passing = steps.filter((s) => s.pass && !s.retried);
    const sustainSteps: Step[] = [];
    let sustainedRate: number | null = null;
    if (ctx.service && SUSTAIN_SECONDS > 0 && passing.length) {
      sustainedRate = 0;
      const candidates = [...new Set(passing.map((s) => s.rate))].reverse().slice(0, SUSTAIN_TRIES);
      for (const rate of candidates) {
        await rest(ctx.service, `before ${rate} calls/s sustained`);
        console.log(`  sustained: ${rate} calls/s for ${SUSTAIN_SECONDS} s`);
        const step = await runStep(path, rate, ctx, work, SUSTAIN_SECONDS);
        sustainSteps.push(step);
        if (step.pass) {
          sustainedRate = rate;
          break;
        }
      }
    }
    results.push({ path, label: LABEL[path], steps, highestPassingRate: passing.length ? passing[passing.length - 1]!.rate : 0, sustainSteps, sustainedRate });
    await sleep(1000);
  }

  const successful = results.filter((r) => r.path !== 'baseline').reduce((a, r) => a + [...r.steps, ...r.sustainSteps].reduce((b, s) => b + s.uac.successful, 0), 0);
  checked = await check(service, token, Object.fromEntries(Object.entries(vc1s).filter(([p]) => PATHS.includes(p as PathName))), successful);
} catch (e) {
  failure = e as Error;
} finally {
  for (const child of liveSipps) child.kill('SIGKILL');
  if (service) {
    const code = await service.stop();
    if (checked) checked.serviceExitCode = code;
  }
}

// ---------------------------------------------------------------------------------------------
// Summary

/** What stopped a path, from its first failing step. */
function limitOf(r: PathResult): string {
  const failed = r.steps.find((x) => !x.pass && !x.retried);
  if (!failed) return `none found: every step up to ${r.highestPassingRate} calls/s passed`;
  const c = failed.cpuPercent;
  const parts: string[] = [];
  if (c.handoff !== null && c.handoff >= 90) {
    parts.push(`Handoff saturated (${c.handoff}% CPU, ${failed.handoffCpuMsPerCall} ms CPU per call) at ${failed.rate} calls/s`);
  }
  if (c.uac >= 90 || c.uas >= 90) parts.push(`a sipp process saturated (UAC ${c.uac}%, UAS ${c.uas}%)`);
  if (c.machine >= 180) parts.push(`both CPUs busy (${c.machine}% of 200%, ${c.others}% by other processes)`);
  else if (c.others >= 30) parts.push(`other processes took ${c.others}% CPU`);
  if (parts.length === 0) parts.push(`no process saturated (Handoff ${c.handoff ?? '-'}%, UAC ${c.uac}%, UAS ${c.uas}%, machine ${c.machine}%)`);
  return `${failed.why.join('; ')} — ${parts.join('; ')}`;
}

/** What the summary repeats of a step. */
const figures = (t: Step | null | undefined) =>
  t ? { inviteMs: t.inviteMs, cpuPercent: t.cpuPercent, retransPercent: t.retransPercent, achievedRate: t.achievedRate, handoffCpuMsPerCall: t.handoffCpuMsPerCall, memory: t.memory ?? null } : null;
const baseline = results.find((r) => r.path === 'baseline');
const top = (r: PathResult) => r.steps.filter((s) => s.pass && !s.retried).at(-1) ?? null;
const summary = Object.fromEntries(
  results.map((r) => {
    const s = top(r);
    const failed = r.steps.find((x) => !x.pass && !x.retried) ?? null;
    return [
      r.path,
      {
        label: r.label,
        highestPassingRate: r.highestPassingRate,
        sustainedRate: r.sustainedRate,
        sustainedRatioToBaseline: r.sustainedRate !== null && baseline?.highestPassingRate ? +(r.sustainedRate / baseline.highestPassingRate).toFixed(3) : null,
        atSustainedRate: figures(r.sustainSteps.find((x) => x.pass)),
        ratioToBaseline: r.path !== 'baseline' && baseline?.highestPassingRate ? +(r.highestPassingRate / baseline.highestPassingRate).toFixed(3) : null,
        atHighestPassingRate: figures(s),
        firstFailingStep: failed ? { rate: failed.rate, why: failed.why, cpuPercent: failed.cpuPercent, inviteMs: failed.inviteMs } : null,
        handoffCpuMsPerCall: s?.handoffCpuMsPerCall ?? null,
        limit: limitOf(r),
      },
    ];
  }),
);
const targets: Record<string, boolean> = {};
if (baseline && !baseline.steps.some((x) => !x.pass && !x.retried)) {
  console.log(`\nnote: the baseline passed every step, so sipp -> sipp does more than ${baseline.highestPassingRate} calls/s and the ratios are upper bounds`);
}
for (const p of ['number', 'uui'] as const) {
  const r = results.find((x) => x.path === p);
  if (!r) continue;
  // held for SUSTAIN_SECONDS where measured: a rate that only lasts a short step is not the service's
  const rate = r.sustainedRate ?? r.highestPassingRate;
  targets[`${p}: >= 2000 calls/s with no failure`] = rate >= 2000;
  if (baseline?.highestPassingRate) targets[`${p}: >= 0.5 of the baseline rate`] = rate / baseline.highestPassingRate >= 0.5;
}
if (checked) {
  targets['service up after the run'] = checked.serviceUp;
  targets['no hand-off VoiceCall left Routing/Routed/Answered/active'] = checked.stuck === 0;
}

console.log('\nsummary (at the highest passing rate of each path):');
console.log(
  `  ${'path'.padEnd(30)} ${'max calls/s'.padStart(11)} ${'sustained'.padStart(9)} ${'ratio'.padStart(6)}  ${'INVITE->200 ms p50/p90/p99/max'.padStart(30)}  ${'cpu% handoff/uac/uas'.padStart(20)}  ${'handoff CPU/call'.padStart(16)}  first failing step`,
);
for (const r of results) {
  const s = top(r);
  const sum = summary[r.path] as { ratioToBaseline: number | null; firstFailingStep: { rate: number; why: string[] } | null };
  console.log(
    `  ${r.label.padEnd(30)} ${fmt(r.highestPassingRate, 11)} ${fmt(r.sustainedRate, 9)} ${fmt(sum.ratioToBaseline, 6)}  ` +
      `${(s ? `${s.inviteMs.p50}/${s.inviteMs.p90}/${s.inviteMs.p99}/${s.inviteMs.max}` : '-').padStart(30)}  ` +
      `${(s ? `${s.cpuPercent.handoff ?? '-'}/${s.cpuPercent.uac}/${s.cpuPercent.uas}` : '-').padStart(20)}  ` +
      `${(s?.handoffCpuMsPerCall != null ? `${s.handoffCpuMsPerCall} ms` : '-').padStart(16)}  ` +
      (sum.firstFailingStep ? `${sum.firstFailingStep.rate} calls/s` : 'none'),
  );
}
console.log('limits (first failing step: why — what was saturated):');
for (const r of results) console.log(`  ${r.label}: ${limitOf(r)}`);
if (results.some((r) => r.sustainSteps.length)) {
  console.log(`sustained (${SUSTAIN_SECONDS} s at a passing rate, from the highest down):`);
  for (const r of results) {
    if (!r.sustainSteps.length) continue;
    const runs = r.sustainSteps.map((t) =>
      t.pass
        ? `${t.rate} calls/s passed (INVITE->200 p99 ${t.inviteMs.p99} ms, Handoff ${t.cpuPercent.handoff}% CPU, ${t.handoffCpuMsPerCall} ms/call, heap ${t.memory?.heapMB ?? '-'} MB)`
        : `${t.rate} calls/s failed (${t.why.join('; ')})`,
    );
    console.log(`  ${r.label}: ${runs.join('; then ')}`);
  }
}
if (checked) {
  console.log('\nafter the run:');
  console.log(`  service up: ${checked.serviceUp} (readyz ${checked.readyz}, healthz ${checked.healthz}); exit code on SIGTERM ${checked.serviceExitCode}`);
  console.log(`  VoiceCalls ${checked.voiceCalls}: partner VC1s ${checked.partnerCalls}, hand-off legs (VC2) ${checked.handoffLegs} ${JSON.stringify(checked.legsByPath)}; successful sipp calls through Handoff ${checked.successfulCallsThroughHandoff}`);
  console.log(`  legs by status ${JSON.stringify(checked.legsByStatus)}; disconnect reasons ${JSON.stringify(checked.disconnectReasons)}`);
  console.log(
    `  legs not over (Routing/Routed/Answered, active or no endTime): ${checked.stuck} after waiting ${checked.secondsWaitedForSettling} s ` +
      `(${checked.stuckRightAfterTheRun} right after the last step)${checked.stuck ? ' ' + JSON.stringify(checked.stuckSamples) : ''}`,
  );
  console.log(`  leases: ${checked.leases.total} reserved, ${checked.leases.consumed} consumed, ${checked.leases.unconsumed} unconsumed`);
  console.log(`  GET /voiceCalls/{VC1} legs: ${JSON.stringify(checked.vc1LegsViaHttp)}`);
  console.log(`  service log: ${checked.serviceLog.warn} warn, ${checked.serviceLog.error} error, ${checked.serviceLog.fatal} fatal line(s)`);
  for (const line of checked.serviceLog.samples.slice(0, 5)) console.log(`    ${line.slice(0, 300)}`);
}
console.log('');
for (const [k, v] of Object.entries(targets)) console.log(`  target ${k}: ${v ? 'met' : 'MISSED'}`);

const file = writeResults('sip', {
  benchmark: 'sip',
  date: new Date().toISOString(),
  machine: { ...m, loadavgAtStart: loadavg() },
  settings: {
    transport: 'udp',
    stepSeconds: STEP_SECONDS,
    sustainSeconds: SUSTAIN_SECONDS,
    rates: RATES,
    pass: { maxRetransPercent: MAX_RETRANS_PERCENT, minRateShare: MIN_RATE_SHARE, failedCalls: 0 },
    service: { backend: 'sqlite', HANDOFF_SIP_RATE_LIMIT: 0, HANDOFF_SIP_WORKERS: WORKERS, HANDOFF_LOG_LEVEL: 'warn', mode: 'proxy' },
    scenarios: { partnerNumber: 'bench/sip-partner-number.xml', partnerUui: 'bench/sip-partner-uui.xml (also the baseline)', agent: 'bench/sip-agent.xml' },
    sipp: SIPP,
  },
  paths: results,
  summary,
  targets,
  check: checked,
  error: failure ? failure.message : null,
  runtimeSeconds: Math.round((Date.now() - started) / 1000),
});
console.log(`\nwritten to ${file} (${Math.round((Date.now() - started) / 1000)} s)`);
if (KEEP) console.log(`work directory kept: ${work}`);
else rmSync(work, { recursive: true, force: true });
if (failure) {
  console.error(`\nbench:sip failed: ${failure.stack ?? failure.message}`);
  if (service) console.error(service.output().slice(-3000));
  process.exitCode = 1;
}
