/**
 * Log lines of partner requests carry the org (and, where one is known, the VoiceCall), bound only
 * when something is logged (app.ts bindOrg).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import pino from 'pino';
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
});
