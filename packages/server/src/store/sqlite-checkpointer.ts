import { Worker } from 'node:worker_threads';

/** At most one checkpoint request per this interval while commits keep coming. */
const INTERVAL_MS = 50;
/** After a worker failure, checkpoints are left to the writer for this long. */
const BACKOFF_MS = 10_000;
/**
 * The writer's own auto-checkpoint threshold (pages) while a checkpointer runs: only a safety net
 * for a worker that cannot keep up; SQLite's default is 1,000.
 */
export const WRITER_AUTOCHECKPOINT_PAGES = 10_000;

/**
 * Moves SQLite's WAL checkpoints off the event loop. In WAL mode every commit appends the pages it
 * touched to the WAL, and every 1,000 pages the committing connection copies them back into the
 * database file and fsyncs it, synchronously, on the thread that committed: for reserveRoutableNumber
 * that was about a third of SQLite's time. Here a worker thread with its own connection runs PASSIVE
 * checkpoints (which never block or wait for the writer) shortly after commits, so the writer's WAL
 * stays short and its auto-checkpoint (raised to WRITER_AUTOCHECKPOINT_PAGES) never fires
 * (chosen for speed). The worker never keeps the process alive and ends itself when idle.
 */
export class SqliteCheckpointer {
  private worker: Worker | null = null;
  private inFlight = false;
  private again = false;
  private lastAsked = 0;
  private disabledUntil = 0;
  private timer: NodeJS.Timeout | null = null;

  constructor(private readonly file: string) {}

  /** Call after each commit of the writer. */
  committed(): void {
    if (this.inFlight) {
      this.again = true;
      return;
    }
    const wait = this.lastAsked + INTERVAL_MS - Date.now();
    if (wait > 0) {
      if (!this.timer) {
        this.timer = setTimeout(() => {
          this.timer = null;
          this.ask();
        }, wait);
        this.timer.unref();
      }
      return;
    }
    this.ask();
  }

  /** Ends the worker (the store is closing); later commits no longer ask for checkpoints. */
  async close(): Promise<void> {
    this.disabledUntil = Number.MAX_SAFE_INTEGER;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    const worker = this.worker;
    this.worker = null;
    if (worker) await worker.terminate();
  }

  private ask(): void {
    if (this.inFlight || Date.now() < this.disabledUntil) return;
    const worker = this.worker ?? this.start();
    if (!worker) return;
    this.inFlight = true;
    this.again = false;
    this.lastAsked = Date.now();
    worker.postMessage('checkpoint');
  }

  private start(): Worker | null {
    let worker: Worker;
    try {
      worker = new Worker(new URL('./sqlite-checkpoint-worker.js', import.meta.url), { workerData: { file: this.file } });
    } catch {
      this.disabledUntil = Date.now() + BACKOFF_MS;
      return null;
    }
    worker.unref();
    worker.on('message', () => {
      this.inFlight = false;
      if (this.again) this.committed();
    });
    worker.on('error', () => {
      this.disabledUntil = Date.now() + BACKOFF_MS;
    });
    worker.on('exit', () => {
      if (this.worker === worker) this.worker = null;
      this.inFlight = false;
    });
    this.worker = worker;
    return worker;
  }
}
