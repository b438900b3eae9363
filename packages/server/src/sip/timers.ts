import type { Clock } from '../domain/clock.js';

/**
 * Something a timer calls back. Timers carry a numeric id instead of a closure, so the hot path
 * (one or more timers per SIP transaction) allocates no function per message.
 */
export interface TimerTarget {
  onTimer(id: number): void;
}

/** A scheduled timer; `cancel()` is idempotent. */
export interface TimerHandle {
  cancel(): void;
}

/**
 * The time source and scheduler of the SIP stack. Injected, so tests drive RFC 3261 timers by
 * hand with {@link ManualTimers} instead of waiting.
 *
 * @example
 * const timers = new ManualTimers();
 * timers.schedule(500, target, 1); // target.onTimer(1) runs on timers.advance(500)
 */
export interface SipTimers extends Clock {
  schedule(ms: number, target: TimerTarget, id: number): TimerHandle;
}

/** One pending timer of {@link DurationQueues}; cancelling drops its target, so nothing it names is kept. */
class QueuedTimer implements TimerHandle {
  constructor(
    /** Due time, in whole ms of the queues' monotonic clock. */
    readonly at: number,
    public target: TimerTarget | null,
    readonly id: number,
  ) {}
  cancel(): void {
    this.target = null;
  }
}

/** The timers of one duration, due in the order they were scheduled. */
class Queue {
  items: QueuedTimer[] = [];
  head = 0;
  /** Armed for the head while the queue holds timers. */
  timeout: NodeJS.Timeout | undefined;
}

/**
 * Real timers, one FIFO queue per duration with one Node timer per queue. A SIP transaction runs a
 * few timers of a few fixed durations (multiples of T1, 64*T1, T4), most of them cancelled early;
 * a Node Timeout per timer cost ~1.5 µs to arm and ~200 bytes kept for up to 64*T1, and was a
 * tenth of the heap at a few hundred calls a second (chosen for speed). Timers of one duration
 * fall due in scheduling order, so each queue needs only its head armed. Cancelled timers stay
 * queued (without their target) until due. Unref'ed: a pending SIP timer never keeps the process alive.
 */
class DurationQueues implements SipTimers {
  private readonly queues = new Map<number, Queue>();
  /** Whole ms since this clock started: stays a small integer (no boxed double per timer). */
  private readonly origin = performance.now();

  now(): number {
    return Date.now();
  }

  schedule(ms: number, target: TimerTarget, id: number): TimerHandle {
    const duration = Math.max(0, Math.ceil(ms));
    let q = this.queues.get(duration);
    if (!q) this.queues.set(duration, (q = new Queue()));
    const timer = new QueuedTimer(this.elapsed() + duration, target, id);
    q.items.push(timer);
    if (q.timeout === undefined) this.arm(q, duration);
    return timer;
  }

  private elapsed(): number {
    return Math.floor(performance.now() - this.origin);
  }

  private arm(q: Queue, duration: number): void {
    const next = q.items[q.head];
    if (next === undefined) {
      // an empty queue goes (durations come from configuration: no map of every one ever used)
      q.timeout = undefined;
      if (this.queues.get(duration) === q) this.queues.delete(duration);
      return;
    }
    q.timeout = setTimeout(() => this.run(q, duration), Math.max(1, next.at - this.elapsed()));
    q.timeout.unref();
  }

  private run(q: Queue, duration: number): void {
    const now = this.elapsed();
    const items = q.items;
    let i = q.head;
    try {
      // timers scheduled by these callbacks land behind `end` (they are due `duration` later)
      for (const end = items.length; i < end && items[i]!.at <= now; i++) {
        const t = items[i]!;
        const target = t.target;
        if (target === null) continue;
        t.target = null; // fired: skipped if a throw leaves it at the head
        target.onTimer(t.id);
      }
    } finally {
      // also after a callback threw (like one from a setTimeout callback): the queue runs on
      q.head = i;
      this.compact(q);
      this.arm(q, duration);
    }
  }

  private compact(q: Queue): void {
    if (q.head === q.items.length) {
      q.items = [];
      q.head = 0;
    } else if (q.head > 1024 && q.head * 2 > q.items.length) {
      q.items = q.items.slice(q.head);
      q.head = 0;
    }
  }
}

/** Real timers (see {@link DurationQueues}). */
export const realTimers: SipTimers = new DurationQueues();

class ManualTimer implements TimerHandle {
  cancelled = false;
  constructor(
    readonly at: number,
    readonly seq: number,
    readonly target: TimerTarget,
    readonly id: number,
  ) {}
  cancel(): void {
    this.cancelled = true;
  }
}

/**
 * Timers driven by hand: nothing fires until {@link ManualTimers.advance}, which runs every due
 * timer in time order (timers scheduled while advancing fire too if they fall inside the window).
 *
 * @example
 * const t = new ManualTimers();
 * t.schedule(100, { onTimer: (id) => console.log('fired', id) }, 7);
 * t.advance(100); // fired 7
 */
export class ManualTimers implements SipTimers {
  private t: number;
  private seq = 0;
  private pending: ManualTimer[] = [];

  constructor(start: number = Date.UTC(2026, 0, 1)) {
    this.t = start;
  }

  now(): number {
    return this.t;
  }

  schedule(ms: number, target: TimerTarget, id: number): TimerHandle {
    const timer = new ManualTimer(this.t + Math.max(0, ms), this.seq++, target, id);
    this.pending.push(timer);
    return timer;
  }

  /** Timers not yet fired nor cancelled. */
  get pendingCount(): number {
    return this.pending.filter((p) => !p.cancelled).length;
  }

  /** Moves time forward by `ms`, firing due timers in order. */
  advance(ms: number): void {
    const end = this.t + ms;
    for (;;) {
      this.pending = this.pending.filter((p) => !p.cancelled);
      let next: ManualTimer | undefined;
      for (const p of this.pending) {
        if (p.at <= end && (!next || p.at < next.at || (p.at === next.at && p.seq < next.seq))) next = p;
      }
      if (!next) break;
      this.t = next.at;
      next.cancelled = true;
      next.target.onTimer(next.id);
    }
    this.t = end;
  }
}
