import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { realTimers, type TimerTarget } from '../../src/sip/index.js';

/** Records which timer ids fired, in order, with the ms elapsed since the test started. */
function recorder(): TimerTarget & { fired: Array<[number, number]>; start: number } {
  const start = performance.now();
  const fired: Array<[number, number]> = [];
  return { start, fired, onTimer: (id) => void fired.push([id, performance.now() - start]) };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('realTimers (one queue per duration)', () => {
  test('timers of several durations fire in due order, none early; cancelled ones never fire', async () => {
    const r = recorder();
    realTimers.schedule(60, r, 6);
    realTimers.schedule(20, r, 2);
    const cancelled = realTimers.schedule(40, r, 99);
    realTimers.schedule(40, r, 4);
    realTimers.schedule(0, r, 0);
    realTimers.schedule(20, r, 3);
    cancelled.cancel();
    cancelled.cancel(); // idempotent
    await sleep(150);
    assert.deepEqual(
      r.fired.map(([id]) => id),
      [0, 2, 3, 4, 6],
    );
    const due: Record<number, number> = { 0: 0, 2: 20, 3: 20, 4: 40, 6: 60 };
    for (const [id, at] of r.fired) assert.ok(at >= due[id]! - 1, `timer ${id} fired at ${at.toFixed(1)} ms, due at ${due[id]}`);
  });

  test('a timer scheduled from a callback, same duration, fires one duration later; cancelling from a callback works', async () => {
    const fired: Array<[number, number]> = [];
    const start = performance.now();
    let later: { cancel(): void } | undefined;
    const target: TimerTarget = {
      onTimer: (id) => {
        fired.push([id, performance.now() - start]);
        if (id === 1) realTimers.schedule(30, target, 2);
        if (id === 3) later?.cancel();
      },
    };
    realTimers.schedule(30, target, 1);
    realTimers.schedule(30, target, 3);
    later = realTimers.schedule(50, target, 4); // due after 3 (which cancels it), before 2
    await sleep(130);
    assert.deepEqual(
      fired.map(([id]) => id),
      [1, 3, 2],
    );
    assert.ok(fired[2]![1] >= 59, `rescheduled timer fired at ${fired[2]![1].toFixed(1)} ms`);
  });

  test('a cancelled timer lets go of its target at once', () => {
    const target: TimerTarget = { onTimer: () => undefined };
    const handle = realTimers.schedule(60_000, target, 1) as unknown as { target: TimerTarget | null; cancel(): void };
    assert.equal(handle.target, target);
    handle.cancel();
    assert.equal(handle.target, null);
  });

  test('many timers at once: each fires once', async () => {
    const counts = new Map<number, number>();
    const target: TimerTarget = { onTimer: (id) => void counts.set(id, (counts.get(id) ?? 0) + 1) };
    const handles = [];
    for (let i = 0; i < 5000; i++) handles.push(realTimers.schedule(10 + (i % 5), target, i));
    for (let i = 0; i < 5000; i += 2) handles[i]!.cancel();
    await sleep(100);
    assert.equal(counts.size, 2500);
    const queues = (realTimers as unknown as { queues: Map<number, unknown> }).queues;
    for (let ms = 10; ms < 15; ms++) assert.equal(queues.has(ms), false, 'a drained queue is dropped');
    for (const [id, n] of counts) {
      assert.equal(id % 2, 1);
      assert.equal(n, 1);
    }
  });

  test('a queue drained in parts keeps its order (its spent head is dropped on the way)', async () => {
    const fired: number[] = [];
    const target: TimerTarget = { onTimer: (id) => void fired.push(id) };
    for (let i = 0; i < 2000; i++) realTimers.schedule(20, target, i);
    await sleep(8);
    for (let i = 2000; i < 3000; i++) realTimers.schedule(20, target, i);
    await sleep(80);
    assert.equal(fired.length, 3000);
    assert.deepEqual(fired, Array.from({ length: 3000 }, (_, i) => i));
  });
});
