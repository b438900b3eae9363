/**
 * The pieces of SIP workers that need no network: the front's choice of a worker (Call-ID digging
 * and hashing) and the agents' slot table shared between threads.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Worker } from 'node:worker_threads';
import { LocalAgentSlots, SharedAgentSlots } from '../../src/sip/agent-slots.js';
import { createRequest } from '../../src/sip/message.js';
import { serialize } from '../../src/sip/serializer.js';
import { callIdOf, workerFor, workerPorts } from '../../src/sip/workers.js';

const msg = (lines: string[], body = '') => Buffer.from(lines.join('\r\n') + '\r\n\r\n' + body, 'latin1');

describe('callIdOf: the Call-ID the front routes by', () => {
  test('long and compact names, any case, blanks around the colon and the value', () => {
    const start = 'INVITE sip:+14155550100@h SIP/2.0';
    assert.equal(callIdOf(msg([start, 'Via: SIP/2.0/UDP h;branch=z9hG4bK1', 'Call-ID: abc@h'])), 'abc@h');
    assert.equal(callIdOf(msg([start, 'call-id   :\t abc@h  '])), 'abc@h');
    assert.equal(callIdOf(msg([start, 'CALL-ID:abc@h'])), 'abc@h');
    assert.equal(callIdOf(msg([start, 'i: abc@h'])), 'abc@h');
    assert.equal(callIdOf(msg([start, 'I :abc@h'])), 'abc@h');
    assert.equal(callIdOf(msg(['SIP/2.0 200 OK', 'From: <sip:a@h>;tag=1', 'i: resp@h'])), 'resp@h');
  });

  test('LF-only line ends', () => {
    assert.equal(callIdOf(Buffer.from('OPTIONS sip:h SIP/2.0\nVia: x\nCall-ID: lf@h\n\n')), 'lf@h');
  });

  test('headers that only start like it, a body that carries it, none at all: not taken', () => {
    const start = 'INVITE sip:h SIP/2.0';
    assert.equal(callIdOf(msg([start, 'Call-Info: <http://x>', 'Info: y', 'i-x: z'])), null);
    assert.equal(callIdOf(msg([start, 'Via: x'], 'Call-ID: in-the-body\r\n')), null);
    assert.equal(callIdOf(msg([start, 'Call-ID:   '])), null);
    assert.equal(callIdOf(Buffer.from('garbage without lines')), null);
    assert.equal(callIdOf(Buffer.alloc(0)), null);
    assert.equal(callIdOf(Buffer.from('\n\n\n')), null);
  });

  test('what the serializer writes is what the front reads', () => {
    const req = createRequest({ method: 'INVITE', uri: 'sip:+1@h', from: '<sip:a@h>;tag=1', to: '<sip:b@h>', callId: 'ser-1@h', cseq: 1 });
    assert.equal(callIdOf(serialize(req)), 'ser-1@h');
  });

  test('workerFor: the same Call-ID always goes to the same worker; Call-IDs spread over all', () => {
    const seen = new Map<number, number>();
    for (let i = 0; i < 4000; i++) {
      const id = `${i.toString(36)}-call@10.0.0.1`;
      const w = workerFor(id, 4);
      assert.equal(workerFor(id, 4), w);
      seen.set(w, (seen.get(w) ?? 0) + 1);
    }
    assert.deepEqual([...seen.keys()].sort(), [0, 1, 2, 3]);
    for (const n of seen.values()) assert.ok(n > 800 && n < 1200, `uneven: ${[...seen.values()]}`);
    assert.equal(workerFor(null, 4), 0, 'no Call-ID: worker 0 answers it');
    assert.equal(workerFor('anything', 1), 0);
  });

  test('workerPorts: two ports per worker from the base; base 0 means free ports', () => {
    assert.deepEqual(workerPorts(5160, 0), { udp: 5160, tls: 5161 });
    assert.deepEqual(workerPorts(5160, 3), { udp: 5166, tls: 5167 });
    assert.deepEqual(workerPorts(0, 3), { udp: 0, tls: 0 });
  });
});

describe('agent slots', () => {
  for (const [name, make] of [
    ['local', () => new LocalAgentSlots()],
    ['shared', () => new SharedAgentSlots(undefined, 64)],
  ] as const) {
    test(`${name}: take up to the limit, release, count per agent; a release never goes below 0`, () => {
      const s = make();
      assert.equal(s.take('a', 2), true);
      assert.equal(s.take('a', 2), true);
      assert.equal(s.take('a', 2), false);
      assert.equal(s.take('b', 1), true);
      assert.equal(s.count('a'), 2);
      assert.equal(s.count('b'), 1);
      assert.equal(s.count('c'), 0);
      s.release('a');
      assert.equal(s.take('a', 2), true);
      s.release('b');
      s.release('b');
      assert.equal(s.count('b'), 0);
      assert.equal(s.take('b', 0), false, 'a limit of 0 admits nothing');
    });
  }

  test('shared: another view of the buffer sees the same counts; a full table says so', () => {
    const a = new SharedAgentSlots(undefined, 4);
    const b = new SharedAgentSlots(a.buffer);
    assert.equal(a.take('x', 1), true);
    assert.equal(b.take('x', 1), false);
    assert.equal(b.count('x'), 1);
    for (const n of ['y', 'z', 'w']) assert.equal(b.take(n, 5), true);
    assert.throws(() => a.take('v', 5), /more than 4 agents/);
    assert.throws(() => new SharedAgentSlots(new SharedArrayBuffer(7)), RangeError);
  });

  test('shared: four threads hammering three agents never hold more than each limit', { timeout: 60_000 }, async () => {
    const slots = new SharedAgentSlots(undefined, 1024);
    // holders[i]: calls of agent i held right now, checked by the thread that took the slot
    const holders = new Int32Array(new SharedArrayBuffer(4 * 3));
    const limits = [1, 2, 5];
    const url = new URL('../../src/sip/agent-slots.js', import.meta.url).href;
    const code = `
      const { workerData, parentPort } = require('node:worker_threads');
      import(${JSON.stringify(url)}).then(({ SharedAgentSlots }) => {
        const slots = new SharedAgentSlots(workerData.slots);
        const holders = new Int32Array(workerData.holders);
        let taken = 0, refused = 0, over = 0;
        for (let i = 0; i < 200000; i++) {
          const a = i % 3;
          if (!slots.take('agent-' + a, workerData.limits[a])) { refused++; continue; }
          taken++;
          if (Atomics.add(holders, a, 1) + 1 > workerData.limits[a]) over++;
          Atomics.sub(holders, a, 1);
          slots.release('agent-' + a);
        }
        parentPort.postMessage({ taken, refused, over });
      });`;
    const runs = await Promise.all(
      [0, 1, 2, 3].map(
        () =>
          new Promise<{ taken: number; refused: number; over: number }>((resolve, reject) => {
            const w = new Worker(code, { eval: true, workerData: { slots: slots.buffer, holders: holders.buffer, limits } });
            w.once('message', resolve);
            w.once('error', reject);
          }),
      ),
    );
    assert.equal(runs.reduce((n, r) => n + r.over, 0), 0, 'a limit was exceeded');
    assert.equal(runs.reduce((n, r) => n + r.taken + r.refused, 0), 800_000);
    assert.ok(runs.reduce((n, r) => n + r.taken, 0) > 0);
    for (const a of [0, 1, 2]) assert.equal(slots.count(`agent-${a}`), 0, `agent-${a} released all`);
  });
});
