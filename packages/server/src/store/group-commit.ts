import type { Store } from './store.js';

interface Job {
  fn: (tx: Store) => Promise<unknown>;
  resolve: (value: unknown) => void;
  reject: (error: unknown) => void;
}

/** Jobs of one group at most, so a group never holds SQLite's write lock (and delays its first job) for long. */
export const MAX_GROUP = 64;

const writers = new WeakMap<Store, GroupCommit>();

/** How long a deferred job may wait for company (ms). */
export const DEFER_MS = 10;

/**
 * Collects what is submitted in one turn of the event loop and hands it to `flush` in groups of at
 * most `max` (the scheduling both group commits share: this one and the lease store's). setImmediate,
 * not a microtask: what is read from the sockets in this poll phase joins the group. A deferred job
 * ({@link TurnBatcher.defer}) waits up to DEFER_MS instead, joining the next group flushed in that time.
 */
export class TurnBatcher<J> {
  private queue: J[] = [];
  private scheduled = false;
  private deferred: NodeJS.Timeout | undefined;

  constructor(
    private readonly flush: (group: J[]) => Promise<void>,
    private readonly max = MAX_GROUP,
  ) {}

  push(job: J): void {
    this.queue.push(job);
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(() => this.next());
    }
  }

  defer(job: J): void {
    this.queue.push(job);
    if (this.scheduled || this.deferred !== undefined) return;
    this.deferred = setTimeout(() => {
      this.deferred = undefined;
      if (this.scheduled || this.queue.length === 0) return;
      this.scheduled = true;
      this.next();
    }, DEFER_MS);
  }

  private next(): void {
    const group = this.queue.splice(0, this.max);
    this.scheduled = this.queue.length > 0;
    if (this.scheduled) setImmediate(() => this.next());
    else if (this.deferred !== undefined) {
      clearTimeout(this.deferred);
      this.deferred = undefined;
    }
    void this.flush(group);
  }
}

/**
 * Group commit of small write transactions on SQLite: the jobs submitted in one turn of the event
 * loop run one after another in a single database transaction, and each learns its outcome only
 * after the one COMMIT. SQLite serialises writers anyway and a commit is most of a small write
 * transaction's cost, so a SIP hand-off's record writes share it (chosen for speed: a hand-off's
 * commits were the largest item of its profile). A job that throws rolls the group back; every job
 * of the group then runs again in a transaction of its own, so each gets all of its writes or none.
 * On PostgreSQL, whose writers run concurrently, each job is simply its own transaction.
 *
 * Jobs must not depend on each other's outcome and must be safe to run twice up to their commit
 * (they may be rolled back and re-run).
 *
 * @example
 * await GroupCommit.of(store).run((tx) => tx.patchVoiceCall(orgId, id, { status: 'Answered' }, now));
 */
export class GroupCommit {
  private readonly batcher = new TurnBatcher<Job>((group) => this.flush(group));

  private constructor(private readonly store: Store) {}

  /** The one group commit of a store (every user of the store batches together). */
  static of(store: Store): GroupCommit {
    let gc = writers.get(store);
    if (!gc) writers.set(store, (gc = new GroupCommit(store)));
    return gc;
  }

  run<T>(fn: (tx: Store) => Promise<T>): Promise<T> {
    if (this.store.dialect !== 'sqlite') return this.store.transaction(fn);
    return new Promise<T>((resolve, reject) => this.batcher.push({ fn, resolve: resolve as (value: unknown) => void, reject }));
  }

  /**
   * Like {@link run}, for a write nobody waits on: it may wait up to DEFER_MS (10 ms) to share a
   * COMMIT with others (a hand-off's answer and end updates: BEGIN and COMMIT were a third of its
   * SQL time when each went alone).
   */
  runDeferred<T>(fn: (tx: Store) => Promise<T>): Promise<T> {
    if (this.store.dialect !== 'sqlite') return this.store.transaction(fn);
    return new Promise<T>((resolve, reject) => this.batcher.defer({ fn, resolve: resolve as (value: unknown) => void, reject }));
  }

  private async flush(group: Job[]): Promise<void> {
    if (group.length === 1) return this.alone(group[0]!);
    let results: unknown[];
    try {
      results = await this.store.transaction(async (tx) => {
        const out: unknown[] = [];
        for (const job of group) out.push(await job.fn(tx));
        return out;
      });
    } catch {
      for (const job of group) await this.alone(job);
      return;
    }
    group.forEach((job, i) => job.resolve(results[i]));
  }

  private async alone(job: Job): Promise<void> {
    try {
      job.resolve(await this.store.transaction(job.fn));
    } catch (error) {
      job.reject(error);
    }
  }
}
