import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { newVoiceCallId, toId18 } from '@handoff/server/dist/src/domain/ids.js';
import { HandoffClient } from '../src/index.js';
import { rejectsWith } from './support/errors.js';
import { rsaKey } from './support/keys.js';
import { startProvisionedService, type Service } from './support/service.js';

const ORG = '00Dxx0000006ESC';
const CHANNEL = '+14155550400';
const AGENT = 'sdk-bot';
const AGENT_TOKEN = 'sdk-bot-escalation-secret-0123456789';
const key = rsaKey();

describe('escalate', () => {
  let svc: Service;
  let partner: HandoffClient;
  let agent: HandoffClient;
  let n = 0;

  before(async () => {
    svc = await startProvisionedService({
      orgs: [
        {
          id: ORG,
          name: 'Escalation tests',
          domain: 'esc.my.example.com',
          keys: [{ id: 'esc-rsa', publicKey: key.publicKeyPem }],
          callCenters: [{ apiName: 'EscCallCenter' }],
          flows: [{ name: 'main', rules: [{ agent: AGENT }], fallback: { reject: { status: 503 } } }],
          channels: [{ devName: 'Esc_AI', number: CHANNEL, callCenter: 'EscCallCenter', flow: 'main' }],
        },
      ],
      agents: [{ name: AGENT, sipUri: 'sip:sdk-bot@127.0.0.1:5099', org: ORG, token: AGENT_TOKEN }],
    });
    partner = new HandoffClient({ baseUrl: svc.url, orgId: ORG, subject: 'EscCallCenter', privateKeyPem: key.pkcs8 });
    // The agent runtime authenticates with its own bearer secret, not a partner JWT.
    agent = new HandoffClient({ baseUrl: svc.url, orgId: ORG, tokenProvider: () => AGENT_TOKEN });
  });
  after(() => svc.close());

  /**
   * VC1 through the API, and VC2, the AI leg, written as the SIP hand-off writes it: the in-process
   * service is not running SIP ingress here, and escalation only needs the leg's record.
   */
  async function handedOff(): Promise<{ vc1: string; vc2: string }> {
    const { voiceCallId: vc1 } = await partner.createVoiceCall({ vendorCallKey: `esc-${++n}`, to: CHANNEL, from: '+14155551234' });
    const vc2 = newVoiceCallId();
    await svc.server.store.insertVoiceCall(
      {
        id: vc2, orgId: ORG, vendorCallKey: `sip:${vc2}`, callCenterApiName: null, toNumber: CHANNEL, fromNumber: '+14155551234',
        initiationMethod: 'Transfer', parentVoiceCallId: vc1.slice(0, 15), startTime: null, endTime: null, isActiveCall: true,
        disconnectReason: null, callAttributes: null, callOrigin: null, queue: null, callSubtype: null, participants: null,
        telephonyProviderName: null, status: 'Answered', handoff: { path: 'uui', agent: AGENT }, escalation: null,
      },
      Date.now(),
    );
    return { vc1, vc2: toId18(vc2) };
  }

  test('escalates the AI leg: 200 escalated, and the partner reads the outcome on its VoiceCall', async () => {
    const { vc1, vc2 } = await handedOff();
    const result = await agent.escalate(vc2, { reason: 'caller asked for a human', summary: 'Billing dispute', targetQueue: 'Billing' });
    assert.equal(result.status, 'escalated');
    assert.equal(result.voiceCallId, vc2);
    assert.equal(result.partnerVoiceCallId, vc1);

    const record = await partner.getVoiceCall(vc1);
    assert.ok(record.escalation, 'the outcome is on the partner call');
    assert.equal(record.escalation.reason, 'caller asked for a human');
    assert.equal(record.escalation.summary, 'Billing dispute');
    assert.equal(record.escalation.targetQueue, 'Billing');
    assert.equal(record.escalation.agent, AGENT);
    assert.equal(record.legs?.[0]?.voiceCallId, vc2);
    assert.ok(record.legs?.[0]?.escalation);
  });

  test("by the partner's call ID, the agent's live leg is escalated", async () => {
    const { vc1, vc2 } = await handedOff();
    assert.equal((await agent.escalate(vc1, { reason: 'stuck' })).voiceCallId, vc2);
  });

  test('refusals come back typed: twice (409), unknown call (404), partner JWT (401), no reason (400)', async () => {
    const { vc2 } = await handedOff();
    await agent.escalate(vc2, { reason: 'first' });
    await rejectsWith(agent.escalate(vc2, { reason: 'again' }), 409, 'CONFLICT');
    await rejectsWith(agent.escalate('0LQxx0000004ABcGAM', { reason: 'x' }), 404, 'VOICE_CALL_NOT_FOUND');
    const { vc2: other } = await handedOff();
    await rejectsWith(partner.escalate(other, { reason: 'x' }), 401, 'INVALID_TOKEN');
    const missing = await rejectsWith(agent.escalate(other, {} as { reason: string }), 400, 'MISSING_FIELD');
    assert.equal(missing.details.field, 'reason');
    assert.equal((await partner.getVoiceCall(other)).escalation, null, 'refusals changed nothing');
  });
});
