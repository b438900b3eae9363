/**
 * Agents' concurrent-call counts (`maxConcurrentCalls`), kept where every SIP worker of one
 * instance sees them: a SharedArrayBuffer table updated with Atomics, so a slot is taken or
 * refused synchronously, by compare-and-swap, whichever thread handles the call.
 */
import { createHash } from 'node:crypto';

/** Takes and releases slots of agents' concurrent-call limits. */
export interface AgentSlots {
  /** Takes a slot of `name` unless `max` are taken; false when full. */
  take(name: string, max: number): boolean;
  release(name: string): void;
  /** Slots of `name` taken now. */
  count(name: string): number;
}

/** Slots counted in this thread only (one SIP thread per instance). */
export class LocalAgentSlots implements AgentSlots {
  private readonly counts = new Map<string, number>();

  take(name: string, max: number): boolean {
    const n = this.counts.get(name) ?? 0;
    if (n >= max) return false;
    this.counts.set(name, n + 1);
    return true;
  }

  release(name: string): void {
    this.counts.set(name, Math.max(0, (this.counts.get(name) ?? 0) - 1));
  }

  count(name: string): number {
    return this.counts.get(name) ?? 0;
  }
}

/** Agents a shared table holds at most (12 bytes each). */
export const SHARED_AGENT_CAPACITY = 65_536;

/**
 * An open-addressing table in shared memory: per entry a 64-bit key (a digest of the agent's name;
 * 0 marks a free entry) and a 32-bit count. Entries are claimed by compare-and-swap on the key and
 * never freed, so an index once found stays the agent's. Create it in one thread and pass
 * {@link SharedAgentSlots.buffer} to the others (`workerData`).
 *
 * @example
 * const slots = new SharedAgentSlots();
 * new Worker(file, { workerData: { slots: slots.buffer } }); // there: new SharedAgentSlots(workerData.slots)
 * slots.take('bot', 2); // true, true, then false until a release
 */
export class SharedAgentSlots implements AgentSlots {
  readonly buffer: SharedArrayBuffer;
  private readonly keys: BigInt64Array;
  private readonly counts: Int32Array;
  private readonly capacity: number;
  /** name → entry, per thread: the digest and the probe are paid once per agent. */
  private readonly index = new Map<string, number>();

  constructor(buffer?: SharedArrayBuffer, capacity = SHARED_AGENT_CAPACITY) {
    this.buffer = buffer ?? new SharedArrayBuffer(capacity * 12);
    this.capacity = this.buffer.byteLength / 12;
    if (!Number.isInteger(this.capacity) || this.capacity < 1) throw new RangeError('shared agent table of a wrong size');
    this.keys = new BigInt64Array(this.buffer, 0, this.capacity);
    this.counts = new Int32Array(this.buffer, this.capacity * 8, this.capacity);
  }

  take(name: string, max: number): boolean {
    const i = this.entry(name);
    for (;;) {
      const n = Atomics.load(this.counts, i);
      if (n >= max) return false;
      if (Atomics.compareExchange(this.counts, i, n, n + 1) === n) return true;
    }
  }

  release(name: string): void {
    const i = this.entry(name);
    for (;;) {
      const n = Atomics.load(this.counts, i);
      if (n <= 0) return;
      if (Atomics.compareExchange(this.counts, i, n, n - 1) === n) return;
    }
  }

  count(name: string): number {
    return Atomics.load(this.counts, this.entry(name));
  }

  private entry(name: string): number {
    const known = this.index.get(name);
    if (known !== undefined) return known;
    let key = createHash('sha256').update(name).digest().readBigInt64LE(0);
    if (key === 0n) key = 1n;
    let i = Number(BigInt.asUintN(32, key) % BigInt(this.capacity));
    for (let probes = 0; probes < this.capacity; probes++, i = (i + 1) % this.capacity) {
      const seen = Atomics.compareExchange(this.keys, i, 0n, key);
      if (seen === 0n || seen === key) {
        this.index.set(name, i);
        return i;
      }
    }
    throw new RangeError(`more than ${this.capacity} agents in the shared slot table`);
  }
}
