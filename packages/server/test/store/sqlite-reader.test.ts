/**
 * Long read-only queries of a SQLite store run on a worker thread's read-only connection, never on the
 * event loop's; where they cannot (inside a transaction, in memory, reader gone) they run on the
 * store's own connection with the same answer.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CompiledQuery, sql } from 'kysely';
import { openSqlite } from '../../src/store/open-store.js';
import { SqliteReader } from '../../src/store/sqlite-reader.js';
import type { KyselyStore } from '../../src/store/kysely-store.js';

const COUNT_POOLS = CompiledQuery.raw('SELECT count(*) AS n FROM pools');

async function countPools(store: KyselyStore): Promise<number> {
  const [row] = await store.readRows<{ n: number }>(COUNT_POOLS);
  return row!.n;
}

describe('SqliteReader', () => {
  let dir: string;
  let file: string;
  let store: KyselyStore;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'handoff-reader-'));
    file = join(dir, 'handoff.sqlite');
    store = openSqlite({ file });
    await store.migrate();
    await store.ensurePool('US', 1);
    await store.ensurePool('GB', 1);
    // A temporary table exists only on the connection that made it, and shadows the real one there:
    // the event loop's connection now counts 0 pools, any other connection 2.
    await sql`CREATE TEMP TABLE pools (country TEXT)`.execute(store.executor);
  });
  after(async () => {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test('readRows outside a transaction runs on the reader connection', async () => {
    assert.equal(await countPools(store), 2);
    const [a, b] = await Promise.all([countPools(store), countPools(store)]);
    assert.deepEqual([a, b], [2, 2]);
  });

  test('inside a transaction readRows runs on the transaction, and sees its uncommitted writes; the reader does not', async () => {
    await store.transaction(async (tx) => {
      await sql`INSERT INTO main.pools (country, created_at) VALUES ('FR', 1)`.execute((tx as KyselyStore).executor);
      const seen = await (tx as KyselyStore).readRows<{ n: number }>(CompiledQuery.raw('SELECT count(*) AS n FROM main.pools'));
      assert.equal(seen[0]!.n, 3);
      const reader = new SqliteReader(file);
      try {
        const rows = await reader.all<{ n: number }>('SELECT count(*) AS n FROM pools', []);
        assert.equal(rows[0]!.n, 2, 'the uncommitted pool is not visible to another connection');
      } finally {
        await reader.close();
      }
    });
    assert.equal(await countPools(store), 3, 'committed: visible to the reader');
  });

  test('parameters are bound; a failing query rejects with SQLite\'s message', async () => {
    const reader = new SqliteReader(file);
    try {
      const rows = await reader.all<{ country: string }>('SELECT country FROM pools WHERE country = ? OR country = ? ORDER BY country', ['GB', 'US']);
      assert.deepEqual(rows, [{ country: 'GB' }, { country: 'US' }]);
      await assert.rejects(reader.all('SELECT * FROM no_such_table', []), /no such table: no_such_table/);
      // The reader connection is read-only: a write cannot slip through it.
      await assert.rejects(reader.all("INSERT INTO pools (country, created_at) VALUES ('DE', 1) RETURNING country", []), /readonly/);
      assert.deepEqual(await reader.all('SELECT 1 AS one', []), [{ one: 1 }], 'still serving after errors');
    } finally {
      await reader.close();
    }
  });

  test('a reader that cannot open its file rejects; a closed one too, and the store falls back to its own connection', async () => {
    const missing = new SqliteReader(join(dir, 'absent.sqlite'));
    await assert.rejects(missing.all('SELECT 1', []));
    await missing.close();
    await assert.rejects(missing.all('SELECT 1', []), /unavailable/);

    const other = openSqlite({ file });
    await sql`CREATE TEMP TABLE pools (country TEXT)`.execute(other.executor);
    assert.equal(await countPools(other), 3, 'through its reader');
    await (other as unknown as { reader: SqliteReader }).reader.close();
    assert.equal(await countPools(other), 0, 'on its own connection (the temporary table)');
    await other.close();
  });

  test('an in-memory store has no reader: readRows runs on its connection', async () => {
    const mem = openSqlite({ file: ':memory:' });
    await mem.migrate();
    await mem.ensurePool('US', 1);
    assert.equal(await countPools(mem), 1);
    await mem.close();
  });
});
