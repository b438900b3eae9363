/**
 * The thread behind SqliteReader (sqlite-reader.ts): a read-only connection to the database file that
 * runs the queries the main thread sends it and posts their rows back. It ends after a while without
 * queries; the main thread starts a new one when needed.
 */
import { parentPort, workerData } from 'node:worker_threads';
import SQLite from 'better-sqlite3';
import { exitWhenIdle } from './idle-exit.js';

const IDLE_EXIT_MS = 60_000;

export interface ReadRequest {
  id: number;
  sql: string;
  parameters: readonly unknown[];
}
export type ReadReply = { id: number; rows: unknown[] } | { id: number; error: string };

const { file } = workerData as { file: string };
const db = new SQLite(file, { readonly: true, fileMustExist: true });
db.pragma('busy_timeout = 5000');
const statements = new Map<string, SQLite.Statement>();
const touch = exitWhenIdle(db, IDLE_EXIT_MS);

parentPort!.on('message', (message: ReadRequest) => {
  let reply: ReadReply;
  try {
    let stmt = statements.get(message.sql);
    if (stmt === undefined) {
      stmt = db.prepare(message.sql);
      if (statements.size < 64) statements.set(message.sql, stmt);
    }
    reply = { id: message.id, rows: stmt.all(...message.parameters) };
  } catch (err) {
    reply = { id: message.id, error: err instanceof Error ? err.message : String(err) };
  }
  parentPort!.postMessage(reply);
  touch();
});
