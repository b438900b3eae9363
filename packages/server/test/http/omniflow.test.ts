import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { CHANNEL_A, CHANNEL_B, makeHarness, type Harness } from '../support/harness.js';

describe('PATCH /voiceCalls/{id}/omniFlow [sqlite]', () => {
  let h: Harness;
  let tok: string;
  let n = 0;
  before(async () => {
    h = await makeHarness('sqlite');
    tok = await h.token('a');
  });
  after(() => h.close());

  const create = async (extra: Record<string, unknown> = {}) => {
    const r = await h.app.inject({
      method: 'POST',
      url: '/telephony/v1/voiceCalls',
      headers: { authorization: `Bearer ${tok}`, 'content-type': 'application/json' },
      payload: { vendorCallKey: `of-${++n}`, to: CHANNEL_A, from: '+14155551234', ...extra },
    });
    return r.json().voiceCallId as string;
  };
  const omni = (id: string, body: unknown) =>
    h.app.inject({ method: 'PATCH', url: `/telephony/v1/voiceCalls/${id}/omniFlow`, headers: { authorization: `Bearer ${tok}`, 'content-type': 'application/json' }, payload: JSON.stringify(body) });
  const get = async (id: string) => (await h.app.inject({ method: 'GET', url: `/telephony/v1/voiceCalls/${id}`, headers: { authorization: `Bearer ${tok}` } })).json();

  test("the channel's flow of the number the call was made to, by default", async () => {
    const r = await omni(await create(), {});
    assert.equal(r.statusCode, 200, r.body);
    assert.deepEqual(r.json(), { agent: 'bot', queue: null });
  });

  test('a named flow on callAttributes; the fields it sets are stored on the call', async () => {
    const id = await create({ callAttributes: '{"Department__c":"Billing"}' });
    assert.deepEqual((await omni(id, { flowDevName: 'byDept' })).json(), { agent: 'bot', queue: null });
    assert.equal((await get(id)).callSubtype, 'Billing');
  });

  test('flowInputParameters count as attributes (string or object)', async () => {
    const id = await create();
    assert.deepEqual((await omni(id, { flowDevName: 'byDept', flowInputParameters: '{"Department__c":"Billing"}' })).json(), { agent: 'bot', queue: null });
    assert.deepEqual((await omni(id, { flowDevName: 'byDept', flowInputParameters: { Department__c: 'Sales' } })).json(), { agent: null, queue: 'Humans' });
    assert.equal((await get(id)).queue, 'Humans', 'the fallback queue is stored');
  });

  test('a rejecting fallback is reported; a fallbackQueue replaces it', async () => {
    const id = await create();
    assert.deepEqual((await omni(id, { flowDevName: 'rejecting' })).json(), { agent: null, queue: null, reject: { status: 486, reason: 'Busy here' } });
    assert.deepEqual((await omni(id, { flowDevName: 'rejecting', fallbackQueue: 'Overflow' })).json(), { agent: null, queue: 'Overflow' });
    assert.deepEqual((await omni(id, { flowDevName: 'NoSuchFlow', fallbackQueue: 'Overflow' })).json(), { agent: null, queue: 'Overflow' });
  });

  test('refusals', async () => {
    const id = await create();
    const cases: [string, unknown, number, string][] = [
      [id, { dialedNumber: '+14155550999' }, 404, 'CHANNEL_NOT_FOUND'],
      [id, { dialedNumber: CHANNEL_B }, 404, 'CHANNEL_NOT_FOUND'],
      [id, { flowDevName: 'NoSuchFlow' }, 404, 'NOT_FOUND'],
      [id, { flowDevName: 'bad name' }, 400, 'INVALID_FIELD'],
      [id, { flowInputParameters: 'not json' }, 400, 'INVALID_FIELD'],
      ['0LQxx0000004ABcGAM', {}, 404, 'VOICE_CALL_NOT_FOUND'],
    ];
    for (const [callId, body, status, code] of cases) {
      const r = await omni(callId, body);
      assert.equal(r.statusCode, status, JSON.stringify(body));
      assert.equal(r.json().errors[0].errorCode, code);
    }
  });
});
