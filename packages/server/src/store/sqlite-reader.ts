import { Worker } from 'node:worker_threads';
import type { ReadReply, ReadRequest } from './sqlite-reader-worker.js';

/** After the worker fails to start or dies, reads run on the caller's connection for this long. */
const BACKOFF_MS = 10_000;

/**
 * Runs long read-only queries (aggregates over every live lease, for metrics and pool listings) on a
 * worker thread with its own read-only connection, so they never block the event loop that serves
 * reservations and fronts the SIP workers: better-sqlite3 runs a query synchronously on the calling
 * thread, and counting 175,000 live leases was measured at 60–115 ms. In WAL mode the reader sees the
 * last committed state and never blocks or waits for the writer. The worker never keeps the process
 * alive and ends itself when idle.
 */
export class SqliteReader {
  private worker: Worker | null = null;
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (rows: unknown[]) => void; reject: (err: Error) => void }>();
  private disabledUntil = 0;

  constructor(private readonly file: string) {}

  /** Whether reads can go to the worker now (otherwise run them on your own connection). */
  get available(): boolean {
    return Date.now() >= this.disabledUntil;
  }

  /** The rows of one query (positional `?` parameters). Rejects when the query fails or the worker dies. */
  all<R>(sql: string, parameters: readonly unknown[]): Promise<R[]> {
    const worker = this.worker ?? this.start();
    if (!worker) return Promise.reject(new Error('SQLite reader unavailable'));
    const id = this.nextId++;
    return new Promise<R[]>((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (rows: unknown[]) => void, reject });
      if (this.pending.size === 1) worker.ref();
      worker.postMessage({ id, sql, parameters } satisfies ReadRequest);
    });
  }

  async close(): Promise<void> {
    const worker = this.worker;
    this.worker = null;
    this.disabledUntil = Number.MAX_SAFE_INTEGER;
    if (worker) await worker.terminate();
    this.failAll(new Error('SQLite reader closed'));
  }

  private start(): Worker | null {
    if (!this.available) return null;
    let worker: Worker;
    try {
      worker = new Worker(new URL('./sqlite-reader-worker.js', import.meta.url), { workerData: { file: this.file } });
    } catch {
      this.disabledUntil = Date.now() + BACKOFF_MS;
      return null;
    }
    worker.unref();
    worker.on('message', (reply: ReadReply) => {
      const p = this.pending.get(reply.id);
      if (!p) return;
      this.pending.delete(reply.id);
      if (this.pending.size === 0) worker.unref();
      if ('rows' in reply) p.resolve(reply.rows);
      else p.reject(new Error(reply.error));
    });
    worker.on('error', () => {
      this.disabledUntil = Date.now() + BACKOFF_MS;
    });
    worker.on('exit', () => {
      if (this.worker === worker) this.worker = null;
      // Queries it had not answered (it ended while idle-exiting, or died) are not lost: callers fall back.
      this.failAll(new Error('SQLite reader ended'));
    });
    this.worker = worker;
    return worker;
  }

  private failAll(err: Error): void {
    const pending = [...this.pending.values()];
    this.pending.clear();
    for (const p of pending) p.reject(err);
  }
}
