import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { loadSettings } from '../config.js';
import { systemClock } from '../domain/clock.js';
import { toId18 } from '../domain/ids.js';
import { createServices, type Services } from '../services/index.js';
import { openStore } from '../store/open-store.js';

/** Opens the same database the service uses (HANDOFF_DATABASE_URL or the SQLite file in HANDOFF_DATA_DIR). */
async function withServices<T>(fn: (s: Services) => Promise<T>): Promise<T> {
  const settings = loadSettings();
  const store = await openStore({ databaseUrl: settings.databaseUrl, sqliteFile: `${settings.dataDir}/handoff.sqlite` });
  try {
    await store.migrate();
    return await fn(createServices(store, systemClock, { leaseTtlSeconds: settings.leaseTtlSeconds, leaseCooldownSeconds: settings.leaseCooldownSeconds }));
  } finally {
    await store.close();
  }
}

/** A plain aligned table for people; --json gives the rows to scripts. */
export function table(rows: Record<string, unknown>[], columns: string[]): string {
  const cells = [columns, ...rows.map((r) => columns.map((c) => String(r[c] ?? '')))];
  const widths = columns.map((_, i) => Math.max(...cells.map((row) => row[i]!.length)));
  return cells.map((row) => row.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd()).join('\n') + '\n';
}

function print(json: boolean, rows: Record<string, unknown>[], columns: string[]): void {
  process.stdout.write(json ? JSON.stringify(rows, null, 2) + '\n' : rows.length ? table(rows, columns) : '(none)\n');
}

export function addAdminCommands(program: Command): void {
  const pools = program.command('pools').description('number pools: list, add, drain, activate, remove');
  pools
    .command('list', { isDefault: true })
    .description('pools with their numbers, live leases and utilisation')
    .option('--json', 'machine-readable output')
    .action((o: { json?: boolean }) =>
      withServices(async (s) => {
        const rows = (await s.pools.list()).map((p) => ({ ...p, utilisation: o.json ? p.utilisation : `${(p.utilisation * 100).toFixed(1)}%` }));
        print(!!o.json, rows, ['country', 'numbers', 'active', 'draining', 'liveLeases', 'busyNumbers', 'utilisation']);
      }),
    );
  pools
    .command('add <country> [numbers...]')
    .description('add numbers to a pool (created when missing)')
    .option('--range <from-to>', 'an inclusive range, e.g. +12125550100-+12125550199', (v: string, acc: string[]) => [...acc, v], [] as string[])
    .option('--csv <file>', 'a CSV file whose first column holds the numbers')
    .action((country: string, numbers: string[], o: { range: string[]; csv?: string }) =>
      withServices(async (s) => {
        const ranges = o.range.map((r) => {
          const m = /^(\+\d+)-(\+\d+)$/.exec(r);
          if (!m) throw new Error(`--range must look like +12125550100-+12125550199 (got ${r})`);
          return { from: m[1]!, to: m[2]! };
        });
        const r = await s.pools.add(country, { numbers, ranges, ...(o.csv ? { csv: readFileSync(o.csv, 'utf8') } : {}) });
        process.stdout.write(`added ${r.added} of ${r.given} number(s) to ${country.toUpperCase()}\n`);
      }),
    );
  for (const [name, description] of [
    ['drain', 'stop new leases on a number (live ones finish)'],
    ['activate', 'put a drained number back in service'],
    ['remove', 'remove a drained number without live leases'],
  ] as const) {
    pools
      .command(`${name} <number>`)
      .description(description)
      .action((number: string) =>
        withServices(async (s) => {
          if (name === 'remove') await s.pools.remove(number);
          else await s.pools[name](number);
          process.stdout.write(`${number}: ${name === 'remove' ? 'removed' : name === 'drain' ? 'draining' : 'active'}\n`);
        }),
      );
  }

  program
    .command('leases')
    .description('live leases with the time they have left')
    .option('--org <orgId>', 'only this org')
    .option('--json', 'machine-readable output')
    .action((o: { org?: string; json?: boolean }) =>
      withServices(async (s) => {
        const now = s.clock.now();
        const rows = (await s.leases.listLive(o.org?.slice(0, 15))).map((l) => ({
          routableNumber: l.routableNumber,
          fromNumber: l.fromNumber,
          orgId: toId18(l.orgId),
          toNumber: l.toNumber,
          voiceCallId: l.callId ? toId18(l.callId) : null,
          transactionId: l.transactionId,
          expiresAt: new Date(l.expiresAt).toISOString(),
          secondsLeft: Math.max(0, Math.ceil((l.expiresAt - now) / 1000)),
          uid: l.uid,
        }));
        print(!!o.json, rows, ['routableNumber', 'fromNumber', 'orgId', 'voiceCallId', 'transactionId', 'secondsLeft']);
      }),
    );
}
