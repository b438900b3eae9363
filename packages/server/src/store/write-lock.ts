/**
 * One SQLite writer at a time among the threads of a process (main thread and SIP workers), waited
 * for without blocking an event loop. SQLite serialises writers itself, but a connection that finds
 * the write lock taken sleeps in its busy handler (1, 2, 5, 10... ms) on its thread, stalling that
 * thread's event loop well past the moment the lock is free; here it awaits the holder's release
 * instead. Only an optimisation: a wait longer than WAIT_MS gives up and lets SQLite's busy handler
 * decide, so a thread that died holding it cannot stop the others.
 */

/** ES2024's Atomics.waitAsync (in Node since 16), not in this project's TypeScript lib. */
type WaitAsync = (cell: Int32Array, index: number, value: number, timeoutMs: number) => { async: false; value: string } | { async: true; value: Promise<string> };
const waitAsync = (Atomics as unknown as { waitAsync: WaitAsync }).waitAsync;

/** Longest wait for another thread's write transaction before leaving it to SQLite (ms). */
const WAIT_MS = 2000;

export class WriteLock {
  readonly buffer: SharedArrayBuffer;
  private readonly cell: Int32Array;

  /** A new lock, or a view of one another thread created (its `buffer`). */
  constructor(buffer: SharedArrayBuffer = new SharedArrayBuffer(4)) {
    this.buffer = buffer;
    this.cell = new Int32Array(buffer, 0, 1);
  }

  /** Resolves true when taken (release it after COMMIT or ROLLBACK), false after WAIT_MS without it. */
  async acquire(): Promise<boolean> {
    const deadline = Date.now() + WAIT_MS;
    for (;;) {
      if (Atomics.compareExchange(this.cell, 0, 0, 1) === 0) return true;
      const left = deadline - Date.now();
      if (left <= 0) return false;
      const r = waitAsync(this.cell, 0, 1, left);
      if (!r.async) continue;
      // A pending waitAsync does not keep Node's event loop alive: a timer does
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([r.value, new Promise((resolve) => (timer = setTimeout(resolve, left)))]);
      clearTimeout(timer);
    }
  }

  release(): void {
    Atomics.store(this.cell, 0, 0);
    Atomics.notify(this.cell, 0, 1);
  }
}
