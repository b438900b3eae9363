import { readFileSync } from 'node:fs';
import { InvalidArgumentError, type Command } from 'commander';
import { loadSettings } from '../config.js';
import { systemClock } from '../domain/clock.js';
import { HandoffError } from '../domain/errors.js';
import { normalizeSfId, ORG_PREFIX, toId18 } from '../domain/ids.js';
import { describeKey } from '../domain/token.js';
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
  // reduce, not Math.max(...): `handoff leases` may print more rows than a call's arguments may hold.
  const widths = columns.map((_, i) => cells.reduce((w, row) => Math.max(w, row[i]!.length), 0));
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
    .option('--limit <n>', 'at most this many, soonest expiry first; 0: all', (v: string) => {
      const n = Number(v);
      if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError('must be 0 or a positive integer');
      return n;
    }, 1000)
    .option('--json', 'machine-readable output')
    .action((o: { org?: string; limit: number; json?: boolean }) =>
      withServices(async (s) => {
        const now = s.clock.now();
        const page = await s.leases.listLive({ ...(o.org ? { orgId: o.org.slice(0, 15) } : {}), ...(o.limit > 0 ? { limit: o.limit } : {}) });
        if (page.next !== null) process.stderr.write(`${page.leases.length} of ${page.total} live leases, soonest expiry first (--limit N for more, 0 for all)\n`);
        const rows = page.leases.map((l) => ({
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

function orgArg(v: string): string {
  const id = normalizeSfId(v, ORG_PREFIX);
  if (id === null) throw new InvalidArgumentError('must be a 15- or 18-character org ID');
  return id;
}

export function addTenantCommands(program: Command): void {
  program
    .command('orgs')
    .description('orgs with their domain, features, quotas and keys')
    .option('--json', 'machine-readable output')
    .action((o: { json?: boolean }) =>
      withServices(async (s) => {
        const rows = await Promise.all(
          (await s.store.listOrgs()).map(async (org) => {
            const keys = await s.store.listKeys(org.id);
            return {
              orgId: toId18(org.id),
              name: org.name,
              domain: org.domain,
              numberPool: org.features.numberPool,
              maxLiveLeases: org.quotas.maxLiveLeases,
              requestsPerSecond: org.quotas.requestsPerSecond,
              activeKeys: keys.filter((k) => k.revokedAt === null && (k.expiresAt === null || k.expiresAt > s.clock.now())).length,
            };
          }),
        );
        print(!!o.json, rows, ['orgId', 'name', 'domain', 'numberPool', 'maxLiveLeases', 'requestsPerSecond', 'activeKeys']);
      }),
    );

  const keys = program.command('keys').description("an org's token-signing keys: list, add, rotate, revoke");
  keys
    .command('list', { isDefault: true })
    .requiredOption('--org <orgId>', 'the org', orgArg)
    .option('--json', 'machine-readable output')
    .action((o: { org: string; json?: boolean }) =>
      withServices(async (s) => {
        const rows = (await s.store.listKeys(o.org)).map((k) => ({
          id: k.id,
          kid: k.kid,
          alg: k.alg,
          expiresAt: k.expiresAt === null ? null : new Date(k.expiresAt).toISOString(),
          revokedAt: k.revokedAt === null ? null : new Date(k.revokedAt).toISOString(),
        }));
        print(!!o.json, rows, ['id', 'kid', 'alg', 'expiresAt', 'revokedAt']);
      }),
    );
  const addKey = async (s: Services, o: { org: string; id: string; publicKey?: string; certificate?: string; kid?: string; expires?: string }) => {
    const file = o.publicKey ?? o.certificate;
    if ((o.publicKey === undefined) === (o.certificate === undefined)) throw new InvalidArgumentError('give exactly one of --public-key and --certificate');
    if (!(await s.store.getOrg(o.org))) throw new HandoffError('ORG_NOT_FOUND', `no org ${o.org}`);
    if (await s.store.getKey(o.id)) throw new HandoffError('CONFLICT', `a key named ${o.id} exists already`);
    const pem = readFileSync(file!, 'utf8').trim() + '\n';
    const desc = describeKey(pem);
    const expiresAt = o.expires ? Date.parse(o.expires) : desc.certificateExpiresAt;
    if (Number.isNaN(expiresAt)) throw new InvalidArgumentError('--expires must be an ISO 8601 date-time');
    await s.store.upsertKey({ id: o.id, orgId: o.org, kid: o.kid ?? null, alg: desc.alg, pem, expiresAt }, s.clock.now());
    return desc.alg;
  };
  keys
    .command('add')
    .description('register a public key or certificate for an org')
    .requiredOption('--org <orgId>', 'the org', orgArg)
    .requiredOption('--id <name>', 'unique name of the key')
    .option('--public-key <file>', 'SPKI public key PEM')
    .option('--certificate <file>', 'X.509 certificate PEM')
    .option('--kid <kid>', 'tokens with this kid header use this key')
    .option('--expires <date>', 'expiry (ISO 8601); a certificate expires at its notAfter anyway')
    .action((o: { org: string; id: string; publicKey?: string; certificate?: string; kid?: string; expires?: string }) =>
      withServices(async (s) => {
        process.stdout.write(`key ${o.id} (${await addKey(s, o)}) added to ${toId18(o.org)}\n`);
      }),
    );
  keys
    .command('rotate')
    .description('add a new key and revoke the old one (tokens signed by it stop within 30 s)')
    .requiredOption('--org <orgId>', 'the org', orgArg)
    .requiredOption('--id <name>', 'unique name of the new key')
    .requiredOption('--revoke <name>', 'the key it replaces')
    .option('--public-key <file>', 'SPKI public key PEM')
    .option('--certificate <file>', 'X.509 certificate PEM')
    .option('--kid <kid>', 'kid of the new key')
    .option('--expires <date>', 'expiry of the new key (ISO 8601)')
    .action((o: { org: string; id: string; revoke: string; publicKey?: string; certificate?: string; kid?: string; expires?: string }) =>
      withServices(async (s) => {
        const old = await s.store.getKey(o.revoke);
        if (!old || old.orgId !== o.org) throw new HandoffError('NOT_FOUND', `no key ${o.revoke} in org ${toId18(o.org)}`);
        await s.store.transaction(async (tx) => {
          await addKey({ ...s, store: tx }, o);
          await tx.revokeKey(o.revoke, s.clock.now());
        });
        process.stdout.write(`key ${o.id} added, ${o.revoke} revoked\n`);
      }),
    );
  keys
    .command('revoke <name>')
    .description('revoke a key (tokens signed by it stop within 30 s on every instance)')
    .action((name: string) =>
      withServices(async (s) => {
        if (!(await s.store.getKey(name))) throw new HandoffError('NOT_FOUND', `no key ${name}`);
        const done = await s.store.revokeKey(name, s.clock.now());
        process.stdout.write(done ? `key ${name} revoked\n` : `key ${name} was already revoked\n`);
      }),
    );

  program
    .command('calls')
    .description('recent calls with their hand-off path, outcome and agent')
    .option('--org <orgId>', 'only this org', orgArg)
    .option('--limit <n>', 'how many (default 20)', (v: string) => {
      const n = Number(v);
      if (!Number.isInteger(n) || n < 1 || n > 1000) throw new InvalidArgumentError('must be 1 to 1000');
      return n;
    }, 20)
    .option('--json', 'machine-readable output')
    .action((o: { org?: string; limit: number; json?: boolean }) =>
      withServices(async (s) => {
        const rows = (await s.store.listRecentCalls(o.org ?? null, o.limit)).map((c) => ({
          voiceCallId: toId18(c.id),
          orgId: toId18(c.orgId),
          createdAt: new Date(c.createdAt).toISOString(),
          from: c.fromNumber,
          to: c.toNumber,
          initiationMethod: c.initiationMethod,
          parentVoiceCallId: c.parentVoiceCallId ? toId18(c.parentVoiceCallId) : null,
          path: (c.handoff?.['path'] as string | undefined) ?? null,
          agent: (c.handoff?.['agent'] as string | undefined) ?? null,
          status: c.status,
          active: c.isActiveCall,
          disconnectReason: c.disconnectReason,
          escalated: c.escalation !== null,
        }));
        print(!!o.json, rows, ['voiceCallId', 'createdAt', 'from', 'to', 'initiationMethod', 'path', 'agent', 'status', 'disconnectReason', 'escalated']);
      }),
    );
}
