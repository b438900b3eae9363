/**
 * The serve process's guard against unhandled promise rejections (server.ts guardProcess): logged at
 * error and counted, the process goes on. The handler is called directly: node:test itself fails a
 * test on a real unhandled rejection.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { Metrics } from '../../src/metrics.js';
import { guardProcess, rejectionHandler } from '../../src/server.js';
import type { Services } from '../../src/services/index.js';

describe('unhandled rejections', () => {
  const lines: Record<string, any>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const l of chunk.toString('utf8').split('\n')) if (l) lines.push(JSON.parse(l));
      done();
    },
  });
  const server = { logger: pino({ level: 'info' }, sink), services: { metrics: new Metrics() } as unknown as Services };

  test('each is logged at error with its error and counted', async () => {
    const handle = rejectionHandler(server);
    handle(new Error('forgotten catch'));
    handle('a bare reason');
    await new Promise((r) => setImmediate(r));
    const logged = lines.filter((l) => l['msg']?.startsWith('unhandled promise rejection'));
    assert.equal(logged.length, 2);
    assert.equal(logged[0]!['level'], 50);
    assert.equal(logged[0]!['err'].message, 'forgotten catch');
    assert.match(logged[0]!['err'].stack, /forgotten catch/);
    const text = await server.services.metrics.registry.metrics();
    assert.match(text, /^handoff_unhandled_rejections_total 2$/m);
  });

  test('guardProcess installs one listener and its uninstaller removes it', () => {
    const before = process.listenerCount('unhandledRejection');
    const off = guardProcess(server);
    assert.equal(process.listenerCount('unhandledRejection'), before + 1);
    off();
    assert.equal(process.listenerCount('unhandledRejection'), before);
  });
});
