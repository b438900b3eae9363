import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { AGENT_TOKEN, CHANNEL_A, makeHarness, ORG_A, OTHER_AGENT_TOKEN, type Harness } from '../support/harness.js';
import { newVoiceCallId, toId18 } from '../../src/domain/ids.js';

for (const backend of ['sqlite', 'postgres'] as const) {
  describe(`POST /voiceCalls/{id}/escalate [${backend}]`, () => {
    let h: Harness;
    let tok: string;
    let n = 0;
    const ended: string[] = [];
    before(async () => {
      h = await makeHarness(backend);
      tok = await h.token('a');
      h.services.escalation.callControl = {
        endCall: async (id) => {
          ended.push(id);
          await h.store.updateVoiceCall(ORG_A, id, { isActiveCall: false, status: 'Ended', disconnectReason: 'escalated' }, Date.now());
          return true;
        },
      };
      // The dispatcher is not started here, so emitted events stay in the outbox to be inspected.
      await h.services.webhooks.createSubscription(ORG_A, { id: 'esc', url: 'http://127.0.0.1:9/hook', secret: 'a-test-secret-of-16+', events: ['call.escalated'] });
    });
    const escalatedEvents = async (vc2: string) =>
      (await h.services.webhooks.listDeliveries({ orgId: ORG_A, voiceCallId: vc2.slice(0, 15) })).filter((d) => d.eventType === 'call.escalated');
    after(() => h.close());

    /** VC1 through the API, VC2 as the SIP hand-off writes it. */
    async function handedOff(agent = 'bot') {
      const r = await h.app.inject({
        method: 'POST',
        url: '/telephony/v1/voiceCalls',
        headers: { authorization: `Bearer ${tok}`, 'content-type': 'application/json' },
        payload: { vendorCallKey: `esc-${backend}-${++n}`, to: CHANNEL_A, from: '+14155551234' },
      });
      const vc1 = r.json().voiceCallId as string;
      const vc2 = newVoiceCallId();
      await h.store.insertVoiceCall(
        {
          id: vc2, orgId: ORG_A, vendorCallKey: `sip:${vc2}`, callCenterApiName: null, toNumber: CHANNEL_A, fromNumber: '+14155551234',
          initiationMethod: 'Transfer', parentVoiceCallId: vc1.slice(0, 15), startTime: null, endTime: null, isActiveCall: true,
          disconnectReason: null, callAttributes: null, callOrigin: null, queue: null, callSubtype: null, participants: null,
          telephonyProviderName: null, status: 'Answered', handoff: { path: 'uui', agent }, escalation: null,
        },
        Date.now(),
      );
      return { vc1, vc2: toId18(vc2) };
    }
    const escalate = (id: string, body: unknown, token = AGENT_TOKEN) =>
      h.app.inject({ method: 'POST', url: `/telephony/v1/voiceCalls/${id}/escalate`, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, payload: JSON.stringify(body) });

    test('stores the outcome on both calls, ends the AI leg, and the partner reads it', async () => {
      const { vc1, vc2 } = await handedOff();
      const r = await escalate(vc2, { reason: 'customer asked for a human', summary: 'Refund over limit', targetQueue: 'Billing_Tier2' });
      assert.equal(r.statusCode, 200, r.body);
      const out = r.json();
      assert.equal(out.status, 'escalated');
      assert.equal(out.voiceCallId, vc2);
      assert.equal(out.partnerVoiceCallId, vc1);
      assert.equal(out.aiLegEnded, true);
      assert.deepEqual(ended.at(-1), vc2.slice(0, 15));
      const partner = (await h.app.inject({ method: 'GET', url: `/telephony/v1/voiceCalls/${vc1}`, headers: { authorization: `Bearer ${tok}` } })).json();
      assert.equal(partner.escalation.reason, 'customer asked for a human');
      assert.equal(partner.escalation.targetQueue, 'Billing_Tier2');
      assert.equal(partner.escalation.agent, 'bot');
      assert.equal(partner.legs[0].status, 'Ended');
      assert.equal(partner.legs[0].isActiveCall, false);
      const events = await escalatedEvents(vc2);
      assert.equal(events.length, 1, 'a call.escalated webhook is queued with the outcome');
      const payload = JSON.parse(events[0]!.payload);
      assert.equal(payload.voiceCallId, vc2);
      assert.equal(payload.data.reason, 'customer asked for a human');
      assert.equal(payload.data.partnerVoiceCallId, vc1);
    });

    test("by the partner's call ID, the agent's live leg is escalated", async () => {
      const { vc1, vc2 } = await handedOff();
      const r = await escalate(vc1, { reason: 'stuck' });
      assert.equal(r.statusCode, 200, r.body);
      assert.equal(r.json().voiceCallId, vc2);
    });

    test('refusals: twice, ended, unknown, another agent, partner JWT, bad body', async () => {
      const { vc2 } = await handedOff();
      assert.equal((await escalate(vc2, { reason: 'x' })).statusCode, 200);
      const again = await escalate(vc2, { reason: 'x' });
      assert.equal(again.statusCode, 409);
      assert.equal(again.json().errors[0].errorCode, 'CONFLICT');

      const { vc2: endedLeg } = await handedOff();
      await h.store.updateVoiceCall(ORG_A, endedLeg.slice(0, 15), { isActiveCall: false }, Date.now());
      assert.equal((await escalate(endedLeg, { reason: 'x' })).statusCode, 409);

      assert.equal((await escalate('0LQxx0000004ABcGAM', { reason: 'x' })).json().errors[0].errorCode, 'VOICE_CALL_NOT_FOUND');
      const { vc2: mine } = await handedOff();
      assert.equal((await escalate(mine, { reason: 'x' }, OTHER_AGENT_TOKEN)).statusCode, 404, "another agent's call");
      assert.equal((await escalate(mine, { reason: 'x' }, tok)).statusCode, 401, 'a partner JWT is not an agent credential');
      assert.equal((await escalate(mine, { reason: 'x' }, 'nope')).statusCode, 401);
      const noReason = await escalate(mine, { summary: 'x' });
      assert.equal(noReason.statusCode, 400);
      assert.equal(noReason.json().errors[0].errorCode, 'MISSING_FIELD');
      assert.equal((await escalate(mine, { reason: 'x'.repeat(256) })).statusCode, 400);
      const rec = (await h.app.inject({ method: 'GET', url: `/telephony/v1/voiceCalls/${mine}`, headers: { authorization: `Bearer ${tok}` } })).json();
      assert.equal(rec.escalation, null, 'refusals changed nothing');
      assert.deepEqual(await escalatedEvents(mine), [], 'and emitted nothing');
    });
  });
}
