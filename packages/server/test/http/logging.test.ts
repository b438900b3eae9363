/**
 * Log lines of partner requests carry the org (and, where one is known, the VoiceCall), bound only
 * when something is logged (http/request-log.ts).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import pino from 'pino';
import type { FastifyRequest } from 'fastify';
import { bindOrg, logs } from '../../src/http/request-log.js';
import { CC_A, CHANNEL_A, makeHarness, ORG_A, type Harness } from '../support/harness.js';

describe('request logs [sqlite]', () => {
  let h: Harness;
  const lines: Record<string, unknown>[] = [];
  before(async () => {
    const sink = new Writable({
      write(chunk: Buffer, _enc, done) {
        for (const l of chunk.toString('utf8').split('\n')) if (l) lines.push(JSON.parse(l) as Record<string, unknown>);
        done();
      },
    });
    h = await makeHarness('sqlite', { logger: pino({ level: 'info' }, sink) });
  });
  after(() => h.close());

  test('a created call logs with orgId and voiceCallId; an error line of a partner request carries orgId', async () => {
    const token = await h.token('a');
    const res = await h.app.inject({
      method: 'POST',
      url: '/telephony/v1/voiceCalls',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      payload: JSON.stringify({ vendorCallKey: 'log-1', to: CHANNEL_A, from: '+14155551234', callCenterApiName: CC_A }),
    });
    assert.equal(res.statusCode, 201);
    const id = (res.json() as { voiceCallId: string }).voiceCallId;
    const created = lines.find((l) => l['msg'] === 'voice call created');
    assert.ok(created, 'logged');
    assert.equal(String(created['orgId']).slice(0, 15), ORG_A);
    assert.equal(created['voiceCallId'], id);

    const bad = await h.app.inject({ method: 'GET', url: '/telephony/v1/voiceCalls/nope', headers: { authorization: `Bearer ${token}` } });
    assert.equal(bad.statusCode, 404);
    const refused = lines.find((l) => l['errorCode'] === 'VOICE_CALL_NOT_FOUND');
    assert.ok(refused, 'the refusal is logged');
    assert.equal(String(refused['orgId']).slice(0, 15), ORG_A);
    assert.ok(!JSON.stringify(lines).includes(token), 'the token is never logged');
  });

  test('a reservation logs its lease with orgId at info', async () => {
    const token = await h.token('a');
    const vc1 = await h.app.inject({
      method: 'POST',
      url: '/telephony/v1/voiceCalls',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      payload: JSON.stringify({ vendorCallKey: 'log-2', to: CHANNEL_A, from: '+14155551234' }),
    });
    const res = await h.app.inject({
      method: 'POST',
      url: '/telephony/v1/voiceCalls/reserveRoutableNumber',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      payload: JSON.stringify({
        countryCode: 'US',
        fromNumber: '+14155550777',
        scrt2Domain: 'https://acme.my.example.com',
        toNumber: CHANNEL_A,
        callId: (vc1.json() as { voiceCallId: string }).voiceCallId,
        transactionId: 'log-tx-1',
      }),
    });
    assert.equal(res.statusCode, 200, res.body);
    const line = lines.find((l) => l['msg'] === 'routable number reserved');
    assert.ok(line, 'logged');
    assert.equal(String(line['orgId']).slice(0, 15), ORG_A);
    assert.equal(line['transactionId'], 'log-tx-1');
  });
});

describe('request-log: the org logger is created only when a line is written', () => {
  function fakeRequest(level: string) {
    const made: Record<string, unknown>[] = [];
    const base = { level, child: (bindings: Record<string, unknown>) => (made.push(bindings), { level, bindings }) };
    return { request: { log: base } as unknown as FastifyRequest, made };
  }

  test('logs() answers from the base level without creating the child; request.log creates it once', () => {
    for (const [level, info, debug] of [['warn', false, false], ['info', true, false], ['debug', true, true], ['silent', false, false]] as const) {
      const { request, made } = fakeRequest(level);
      bindOrg(request, ORG_A);
      assert.equal(logs(request, 'info'), info, `info at ${level}`);
      assert.equal(logs(request, 'debug'), debug, `debug at ${level}`);
      assert.equal(made.length, 0, 'asking created no logger');
      assert.equal(request.log, request.log);
      assert.deepEqual(made, [{ orgId: ORG_A }]);
    }
  });
});
