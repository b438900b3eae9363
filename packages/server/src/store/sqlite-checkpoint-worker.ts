/**
 * The thread behind SqliteCheckpointer (sqlite-checkpointer.ts): its own connection to the database
 * file, running a PASSIVE checkpoint (copy WAL frames back into the database, never waiting for or
 * blocking a writer) whenever the main thread asks. It closes its connection and ends after a while
 * without requests; the main thread starts a new one when needed.
 */
import { parentPort, workerData } from 'node:worker_threads';
import SQLite from 'better-sqlite3';
import { exitWhenIdle } from './idle-exit.js';

const IDLE_EXIT_MS = 10_000;

const { file } = workerData as { file: string };
const db = new SQLite(file, { fileMustExist: true });
const touch = exitWhenIdle(db, IDLE_EXIT_MS);

parentPort!.on('message', () => {
  try {
    db.pragma('wal_checkpoint(PASSIVE)');
  } catch {
    // A checkpoint is an optimisation: the writer's own auto-checkpoint still bounds the WAL.
  }
  parentPort!.postMessage('done');
  touch();
});
