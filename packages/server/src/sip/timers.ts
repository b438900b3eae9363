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

function fire(target: TimerTarget, id: number): void {
  target.onTimer(id);
}

class NodeTimerHandle implements TimerHandle {
  constructor(private readonly t: NodeJS.Timeout) {}
  cancel(): void {
    clearTimeout(this.t);
  }
}

/** Real timers (unref'ed: a pending SIP timer never keeps the process alive on its own). */
export const realTimers: SipTimers = {
  now: () => Date.now(),
  schedule(ms, target, id) {
    const t = setTimeout(fire, ms, target, id);
    t.unref();
    return new NodeTimerHandle(t);
  },
};

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
