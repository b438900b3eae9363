import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { HandoffApiError, HandoffClient } from '../src/index.js';
import { rejectsWith } from './support/errors.js';
import { closedPortUrl, startProxy } from './support/proxy.js';
import { startDemoService } from './support/service.js';

const svc = await startDemoService();
after(() => svc.close());
const { demo } = svc;

const client = new HandoffClient({
  baseUrl: `${svc.url}/telephony/v1/`,
  orgId: demo.orgId18,
  subject: demo.callCenterApiName,
  privateKeyPem: demo.privateKeyPem,
  telephonyProviderName: 'ClientSdkTests',
});

let calls = 0;
const newCall = () => ({ vendorCallKey: `vc-test-${++calls}`, to: demo.channelNumber, from: '+14155551234' });

describe('VoiceCalls', () => {
  test('createVoiceCall: 201 with an 18-char ID, then 200 with the same ID for the same vendorCallKey', async () => {
    const input = { ...newCall(), callCenterApiName: demo.callCenterApiName, callAttributes: { Department__c: 'Support' }, startTime: new Date('2026-11-22T10:00:00Z') };
    const first = await client.createVoiceCall(input);
    assert.equal(first.created, true);
    assert.match(first.voiceCallId, /^0LQ[A-Za-z0-9]{15}$/);
    assert.deepEqual(await client.createVoiceCall(input), { voiceCallId: first.voiceCallId, created: false });

    const record = await client.getVoiceCall(first.voiceCallId);
    assert.equal(record.voiceCallId, first.voiceCallId);
    assert.equal(record.vendorCallKey, input.vendorCallKey);
    assert.equal(record.to, demo.channelNumber);
    assert.equal(record.startTime, '2026-11-22T10:00:00.000Z');
    assert.deepEqual(JSON.parse(record.callAttributes!), { Department__c: 'Support' });
    assert.equal(record.telephonyProviderName, 'ClientSdkTests', 'Telephony-Provider-Name is sent and recorded');
    assert.deepEqual(record.legs, []);
  });

  test('updateVoiceCall by ID and by vendorCallKey, read back with getVoiceCall', async () => {
    const input = { ...newCall(), callAttributes: '{"Department__c":"Support"}' };
    const { voiceCallId } = await client.createVoiceCall(input);
    assert.equal(await client.updateVoiceCall(voiceCallId, { callAttributes: { Priority__c: 'High' }, queue: 'Support' }), undefined);
    await client.updateVoiceCall(input.vendorCallKey, { isActiveCall: false, endTime: new Date('2026-11-22T10:05:00Z'), disconnectReason: 'Customer' });

    const byKey = await client.getVoiceCall(input.vendorCallKey);
    assert.equal(byKey.voiceCallId, voiceCallId);
    assert.equal(byKey.isActiveCall, false);
    assert.equal(byKey.endTime, '2026-11-22T10:05:00.000Z');
    assert.equal(byKey.disconnectReason, 'Customer');
    assert.equal(byKey.queue, 'Support');
    assert.deepEqual(JSON.parse(byKey.callAttributes!), { Department__c: 'Support', Priority__c: 'High' });
    // The 15-char form reads the same record.
    assert.equal((await client.getVoiceCall(voiceCallId.slice(0, 15))).voiceCallId, voiceCallId);
  });

  test('server errors are thrown with their status, errorCode and details', async () => {
    const invalid = await rejectsWith(client.createVoiceCall({ ...newCall(), to: 'not a number' }), 400, 'INVALID_FIELD');
    assert.equal(invalid.details.field, 'to');
    assert.ok(invalid instanceof HandoffApiError && invalid instanceof Error);
    assert.equal(invalid.name, 'HandoffApiError');
    await rejectsWith(client.getVoiceCall('0LQxx0000009ZZZ'), 404, 'VOICE_CALL_NOT_FOUND');
    await rejectsWith(client.updateVoiceCall('no-such-vendor-key', { queue: 'x' }), 404, 'VOICE_CALL_NOT_FOUND');
    const otherCenter = new HandoffClient({ baseUrl: svc.url, orgId: demo.orgId, subject: demo.callCenterApiName, privateKeyPem: demo.privateKeyPem });
    await rejectsWith(otherCenter.createVoiceCall({ ...newCall(), callCenterApiName: 'SomeOtherCenter' }), 403, 'FORBIDDEN');
  });

  test('client-side failures: NETWORK_ERROR when nothing listens, TIMEOUT when the answer is late', async () => {
    const closed = new HandoffClient({ baseUrl: await closedPortUrl(), orgId: demo.orgId, privateKeyPem: demo.privateKeyPem });
    const network = await rejectsWith(closed.getVoiceCall('0LQxx0000009ZZZ'), 0, 'NETWORK_ERROR');
    assert.match(network.message, /ECONNREFUSED/);
    const slow = await startProxy(svc.url, () => ({ kind: 'delay', ms: 600 }));
    try {
      const impatient = new HandoffClient({ baseUrl: slow.url, orgId: demo.orgId, privateKeyPem: demo.privateKeyPem, timeoutMs: 150 });
      const started = Date.now();
      const timeout = await rejectsWith(impatient.createVoiceCall(newCall()), 0, 'TIMEOUT');
      assert.match(timeout.message, /POST \/telephony\/v1\/voiceCalls: no complete response within 150 ms/);
      assert.ok(Date.now() - started < 550, 'gave up at the timeout, not when the answer came');
      assert.equal(slow.requests.length, 1, 'one attempt: only reserveRoutableNumber retries');
    } finally {
      await slow.close();
    }
  });
});
