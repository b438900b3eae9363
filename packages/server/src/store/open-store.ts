import { createHash } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import SQLite from 'better-sqlite3';
import { CompiledQuery, Kysely, PostgresDialect, SqliteDialect, SqliteDriver, type DatabaseConnection } from 'kysely';
import pg from 'pg';
import { KyselyStore } from './kysely-store.js';
import { SqliteReader } from './sqlite-reader.js';
import { SqliteCheckpointer, WRITER_AUTOCHECKPOINT_PAGES } from './sqlite-checkpointer.js';
import type { Database } from './schema.js';
import { WriteLock } from './write-lock.js';

export interface SqliteOptions {
  /** Path of the database file, or ':memory:'. */
  file: string;
  /** Shared with the other threads of this process that write the same file (SIP workers): see write-lock.ts. */
  writeLock?: SharedArrayBuffer;
}

export interface PostgresOptions {
  url: string;
  /** Schema to use (created when missing); tests give each run its own. */
  schema?: string;
  poolSize?: number;
}

/**
 * SQLite's default BEGIN takes the write lock lazily, so two processes can both read and then fail
 * to upgrade (SQLITE_BUSY, which busy_timeout does not retry). BEGIN IMMEDIATE queues writers instead.
 */
class ImmediateSqliteDriver extends SqliteDriver {
  /** Whether this connection holds the process's write lock (one transaction at a time per connection). */
  private holding = false;

  constructor(
    cfg: ConstructorParameters<typeof SqliteDriver>[0],
    private readonly checkpointer: SqliteCheckpointer | null,
    private readonly lock: WriteLock | null,
  ) {
    super(cfg);
  }

  override async beginTransaction(connection: DatabaseConnection): Promise<void> {
    if (this.lock) this.holding = await this.lock.acquire();
    try {
      await connection.executeQuery(CompiledQuery.raw('begin immediate'));
    } catch (err) {
      this.unlock();
      throw err;
    }
  }

  override async commitTransaction(connection: DatabaseConnection): Promise<void> {
    try {
      await super.commitTransaction(connection);
    } finally {
      this.unlock();
    }
    this.checkpointer?.committed();
  }

  override async rollbackTransaction(connection: DatabaseConnection): Promise<void> {
    try {
      await super.rollbackTransaction(connection);
    } finally {
      this.unlock();
    }
  }

  override async destroy(): Promise<void> {
    await super.destroy();
    await this.checkpointer?.close();
  }

  private unlock(): void {
    if (!this.holding) return;
    this.holding = false;
    this.lock!.release();
  }
}

class ImmediateSqliteDialect extends SqliteDialect {
  constructor(
    private readonly cfg: ConstructorParameters<typeof SqliteDialect>[0],
    private readonly checkpointer: SqliteCheckpointer | null,
    private readonly lock: WriteLock | null,
  ) {
    super(cfg);
  }
  override createDriver() {
    return new ImmediateSqliteDriver(this.cfg, this.checkpointer, this.lock);
  }
}

const STATEMENT_CACHE_SIZE = 256;

/**
 * Kysely prepares every query anew; compiling SQL is a large share of a small query's cost in SQLite
 * (measured ~170 µs of a reservation), so prepared statements are kept by SQL text. better-sqlite3
 * runs synchronously, so one statement is never in use twice at once.
 */
function withStatementCache(database: SQLite.Database) {
  const cache = new Map<string, SQLite.Statement>();
  return {
    close: () => database.close(),
    prepare: (text: string) => {
      let stmt = cache.get(text);
      if (stmt === undefined) {
        stmt = database.prepare(text);
        if (cache.size >= STATEMENT_CACHE_SIZE) cache.delete(cache.keys().next().value!);
        cache.set(text, stmt);
      }
      return stmt;
    },
  };
}

export function openSqlite(opts: SqliteOptions): KyselyStore {
  if (opts.file !== ':memory:') mkdirSync(dirname(opts.file), { recursive: true });
  const database = new SQLite(opts.file);
  database.pragma('journal_mode = WAL');
  database.pragma('synchronous = NORMAL');
  database.pragma('busy_timeout = 5000');
  database.pragma('foreign_keys = ON');
  // WAL checkpoints run in a worker after commits, not on the event loop (see sqlite-checkpointer.ts)
  let checkpointer: SqliteCheckpointer | null = null;
  if (opts.file !== ':memory:') {
    database.pragma(`wal_autocheckpoint = ${WRITER_AUTOCHECKPOINT_PAGES}`);
    checkpointer = new SqliteCheckpointer(database.name);
  }
  const lock = opts.writeLock ? new WriteLock(opts.writeLock) : null;
  const db = new Kysely<Database>({ dialect: new ImmediateSqliteDialect({ database: withStatementCache(database) }, checkpointer, lock) });
  return new KyselyStore(db, 'sqlite', db, opts.file === ':memory:' ? null : new SqliteReader(database.name));
}

/**
 * Parameterised queries become named prepared statements, per connection, keyed by a hash of their
 * text: PostgreSQL then parses each once instead of on every call (the allocation query's planning
 * was measured at ~1.2 ms). Queries without parameters (migrations, several statements) stay simple.
 */
const statementNames = new Map<string, string>();

function useNamedStatements(client: pg.PoolClient): void {
  const query = client.query.bind(client) as (...args: unknown[]) => unknown;
  (client as unknown as { query: (...args: unknown[]) => unknown }).query = (...args: unknown[]) => {
    const [text, values, ...rest] = args;
    if (typeof text === 'string' && Array.isArray(values) && values.length > 0) {
      let name = statementNames.get(text);
      if (name === undefined) {
        name = 'h' + createHash('sha1').update(text).digest('hex').slice(0, 30);
        if (statementNames.size < 10_000) statementNames.set(text, name);
      }
      return query({ name, text, values }, ...rest);
    }
    return query(...args);
  };
}

const SCHEMA_RE = /^[a-z_][a-z0-9_]{0,62}$/;

export async function openPostgres(opts: PostgresOptions): Promise<KyselyStore> {
  if (opts.schema !== undefined && !SCHEMA_RE.test(opts.schema)) throw new Error(`invalid schema name ${opts.schema}`);
  const types = {
    // BIGINT (epoch ms) and COUNT come back as strings by default; every value we store fits a double.
    getTypeParser: (oid: number, format?: 'text' | 'binary') =>
      oid === 20 ? (v: string) => Number(v) : pg.types.getTypeParser(oid, format as 'text'),
  };
  if (opts.schema) {
    const admin = new pg.Client({ connectionString: opts.url });
    await admin.connect();
    try {
      await admin.query(`create schema if not exists "${opts.schema}"`);
    } finally {
      await admin.end();
    }
  }
  const pool = new pg.Pool({
    connectionString: opts.url,
    max: opts.poolSize ?? 10,
    types,
    ...(opts.schema ? { options: `-c search_path=${opts.schema}` } : {}),
  });
  pool.on('connect', useNamedStatements);
  const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
  return new KyselyStore(db, 'postgres', db);
}

/**
 * Picks the backend: a postgres:// URL selects PostgreSQL (a `schema` query parameter selects the
 * schema); otherwise SQLite in the given file.
 */
export async function openStore(opts: { databaseUrl?: string | undefined; sqliteFile: string; writeLock?: SharedArrayBuffer }): Promise<KyselyStore> {
  const url = opts.databaseUrl;
  if (url && /^postgres(ql)?:\/\//i.test(url)) {
    const parsed = new URL(url);
    const schema = parsed.searchParams.get('schema');
    parsed.searchParams.delete('schema');
    return openPostgres({ url: parsed.toString(), ...(schema ? { schema } : {}) });
  }
  if (url) throw new Error(`HANDOFF_DATABASE_URL must be a postgres:// URL (got a ${url.split(':')[0]}: URL)`);
  return openSqlite({ file: opts.sqliteFile, ...(opts.writeLock ? { writeLock: opts.writeLock } : {}) });
}
