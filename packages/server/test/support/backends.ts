import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { after, before, describe } from 'node:test';
import { openPostgres, openSqlite } from '../../src/store/open-store.js';
import type { KyselyStore } from '../../src/store/kysely-store.js';

export const TEST_PG_URL = process.env.HANDOFF_TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

export interface Backend {
  name: 'sqlite' | 'postgres';
  /** Opens another store on the same database (a second "instance"). */
  open(): Promise<KyselyStore>;
  /** Environment that points a service process at this database. */
  env: Record<string, string>;
  cleanup(): Promise<void>;
}

export function uniqueSchema(): string {
  return `t_${Date.now().toString(36)}_${randomBytes(4).toString('hex')}`;
}

export async function dropSchema(schema: string): Promise<void> {
  const c = new pg.Client({ connectionString: TEST_PG_URL });
  await c.connect();
  try {
    await c.query(`drop schema if exists "${schema}" cascade`);
  } finally {
    await c.end();
  }
}

export async function makeBackend(name: 'sqlite' | 'postgres'): Promise<Backend> {
  if (name === 'sqlite') {
    const dir = mkdtempSync(join(tmpdir(), 'handoff-test-'));
    const file = join(dir, 'handoff.sqlite');
    return {
      name,
      open: async () => openSqlite({ file }),
      env: { HANDOFF_DATA_DIR: dir },
      cleanup: async () => rmSync(dir, { recursive: true, force: true }),
    };
  }
  const schema = uniqueSchema();
  const url = new URL(TEST_PG_URL);
  url.searchParams.set('schema', schema);
  return {
    name,
    open: () => openPostgres({ url: TEST_PG_URL, schema }),
    env: { HANDOFF_DATABASE_URL: url.toString() },
    cleanup: () => dropSchema(schema),
  };
}

export const BACKENDS = ['sqlite', 'postgres'] as const;

/**
 * Runs the same suite against SQLite and PostgreSQL, each with a fresh migrated database,
 * the way kysely loops its tests over every dialect.
 */
export function describeEachBackend(title: string, body: (ctx: { store: () => KyselyStore; backend: () => Backend }) => void): void {
  for (const name of BACKENDS) {
    describe(`${title} [${name}]`, () => {
      let backend: Backend;
      let store: KyselyStore;
      before(async () => {
        backend = await makeBackend(name);
        store = await backend.open();
        await store.migrate();
      });
      after(async () => {
        await store?.close();
        await backend?.cleanup();
      });
      body({ store: () => store, backend: () => backend });
    });
  }
}
