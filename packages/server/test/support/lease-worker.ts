/**
 * A separate OS process driving the lease engine, for lease-multiprocess.test.ts. It opens the store
 * the way the service does (HANDOFF_DATABASE_URL, else SQLite in HANDOFF_DATA_DIR), waits for the
 * agreed start instant, runs reservations and resolutions with the real clock, and prints one JSON
 * line of WorkerReport on stdout.
 *
 * Usage: LEASE_WORKER='{"country":"MP",...}' node dist/test/support/lease-worker.js
 */
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { HandoffError } from '../../src/domain/errors.js';
import { requestHash } from '../../src/domain/lease-policy.js';
import { KyselyLeaseStore } from '../../src/store/lease-store.js';
import { openStore } from '../../src/store/open-store.js';
import { LeaseService } from '../../src/services/lease-service.js';
import type { ReservedHandle } from './lease-invariants.js';

export interface WorkerConfig {
  name: string;
  orgId: string;
  country: string;
  numbers: string[];
  callers: string[];
  /** Reservations to attempt in total, over `concurrency` parallel loops. */
  reservations: number;
  concurrency: number;
  /** Each loop pauses up to this long (uniformly random) between operations, so the run spans expiries. */
  pauseMs: number;
  /** Epoch ms at which every worker starts, so their work overlaps. */
  startAt: number;
  ttlSeconds: number;
  cooldownSeconds: number;
  /** A transactionId every worker sends at start, racing the other processes. */
  sharedTransactionId: string;
}

export interface WorkerReport {
  name: string;
  startedAt: number;
  finishedAt: number;
  successes: ReservedHandle[];
  sharedUid: string;
  failures: Record<string, number>;
  resolved: number;
}

async function main(): Promise<void> {
  const cfg = JSON.parse(process.env.LEASE_WORKER!) as WorkerConfig;
  const store = await openStore({ databaseUrl: process.env.HANDOFF_DATABASE_URL, sqliteFile: join(process.env.HANDOFF_DATA_DIR ?? '.', 'handoff.sqlite') });
  const leases = new LeaseService(new KyselyLeaseStore(store), { ttlSeconds: cfg.ttlSeconds, cooldownSeconds: cfg.cooldownSeconds });
  const report: WorkerReport = { name: cfg.name, startedAt: 0, finishedAt: 0, successes: [], sharedUid: '', failures: {}, resolved: 0 };
  const pick = <T>(xs: T[]): T => xs[Math.floor(Math.random() * xs.length)]!;
  const reserve = (fromNumber: string, transactionId: string | null) => {
    const body = { country: cfg.country, fromNumber, toNumber: '+14155550100', transactionId };
    return leases.reserve({ orgId: cfg.orgId, ...body, callId: null, provider: cfg.name, requestHash: requestHash(body), maxLiveLeases: null });
  };

  await sleep(Math.max(0, cfg.startAt - Date.now()));
  report.startedAt = Date.now();
  try {
    const shared = await reserve(cfg.callers[0]!, cfg.sharedTransactionId);
    report.sharedUid = shared.lease.uid;
    if (!shared.replayed) report.successes.push({ uid: shared.lease.uid, routableNumber: shared.lease.routableNumber, fromNumber: cfg.callers[0]! });
  } catch (e) {
    // Another process's resolution may already have consumed the shared lease: 409 with its handle.
    if (!(e instanceof HandoffError && e.code === 'LEASE_NOT_LIVE')) throw e;
    report.sharedUid = (e.details?.handle as { uid: string }).uid;
  }

  let remaining = cfg.reservations;
  const loop = async () => {
    while (remaining-- > 0) {
      const fromNumber = pick(cfg.callers);
      try {
        const { lease } = await reserve(fromNumber, null);
        report.successes.push({ uid: lease.uid, routableNumber: lease.routableNumber, fromNumber });
      } catch (e) {
        const code = e instanceof HandoffError ? e.code : String(e);
        report.failures[code] = (report.failures[code] ?? 0) + 1;
      }
      if (Math.random() < 0.4 && (await leases.resolve(pick(cfg.numbers), pick(cfg.callers))).ok) report.resolved++;
      await sleep(Math.random() * cfg.pauseMs);
    }
  };
  await Promise.all(Array.from({ length: cfg.concurrency }, loop));
  report.finishedAt = Date.now();
  await store.close();
  process.stdout.write(`${JSON.stringify(report)}\n`);
}

// Without a configuration (e.g. picked up by `node --test` scanning test/) there is nothing to do.
if (process.env.LEASE_WORKER) {
  main().catch((e: unknown) => {
    process.stderr.write(`${e instanceof Error ? e.stack : String(e)}\n`);
    process.exit(1);
  });
}
