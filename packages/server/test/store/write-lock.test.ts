/**
 * The SQLite write lock shared by the threads of a process: one holder at a time, waiters do not
 * block their event loop, and a holder that never releases only delays the others.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Worker } from 'node:worker_threads';
import { WriteLock } from '../../src/store/write-lock.js';

describe('WriteLock', () => {
  test('one holder at a time; a waiter gets it at the release, and its event loop keeps turning', async () => {
    const a = new WriteLock();
    const b = new WriteLock(a.buffer);
    assert.equal(await a.acquire(), true);
    let got = false;
    const waiting = b.acquire().then((ok) => (got = ok));
    let ticks = 0;
    const ticker = setInterval(() => ticks++, 5);
    await new Promise((r) => setTimeout(r, 60));
    clearInterval(ticker);
    assert.equal(got, false, 'still held');
    assert.ok(ticks >= 5, `the waiting thread's timers ran (${ticks})`);
    a.release();
    await waiting;
    assert.equal(got, true);
    b.release();
    assert.equal(await a.acquire(), true, 'free again');
    a.release();
  });

  test('four threads counting under it never overlap', { timeout: 60_000 }, async () => {
    const lock = new WriteLock();
    const state = new Int32Array(new SharedArrayBuffer(8)); // [inside, overlaps]
    const url = new URL('../../src/store/write-lock.js', import.meta.url).href;
    const code = `
      const { workerData, parentPort } = require('node:worker_threads');
      import(${JSON.stringify(url)}).then(async ({ WriteLock }) => {
        const lock = new WriteLock(workerData.lock);
        const state = new Int32Array(workerData.state);
        for (let i = 0; i < 2000; i++) {
          if (!(await lock.acquire())) throw new Error('gave up');
          if (Atomics.add(state, 0, 1) !== 0) Atomics.add(state, 1, 1);
          if (i % 50 === 0) await new Promise((r) => setImmediate(r)); // hold it across a turn now and then
          Atomics.sub(state, 0, 1);
          lock.release();
        }
        parentPort.postMessage('done');
      });`;
    await Promise.all(
      [0, 1, 2, 3].map(
        () =>
          new Promise((resolve, reject) => {
            const w = new Worker(code, { eval: true, workerData: { lock: lock.buffer, state: state.buffer } });
            w.once('message', resolve);
            w.once('error', reject);
          }),
      ),
    );
    assert.equal(Atomics.load(state, 1), 0, 'two holders at once');
    assert.equal(await lock.acquire(), true);
    lock.release();
  });

  test('a holder that never releases: the wait gives up (SQLite then decides) instead of hanging', { timeout: 10_000 }, async () => {
    const a = new WriteLock();
    assert.equal(await a.acquire(), true);
    const started = Date.now();
    assert.equal(await new WriteLock(a.buffer).acquire(), false);
    assert.ok(Date.now() - started >= 1900);
  });
});
