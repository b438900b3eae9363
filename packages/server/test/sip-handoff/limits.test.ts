/**
 * HANDOFF_SIP_MAX_CALL_SECONDS: an answered call that outlives it is ended from here, with a BYE to
 * the agent and to the partner, so a party that vanished without a BYE cannot hold its agent's slot
 * (and this instance's dialog state) forever.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { loadSettings } from '../../src/config.js';
import { UserAgent } from '../../src/sip/user-agent.js';
import { CH, DOMAIN_A, ORG_A, startFixture, waitFor, type Fixture } from './fixture.js';
import { agent, assertSippOk } from './scenarios.js';
import { headerOf, messagesStarting, SKIP_SIPP } from './sipp.js';

describe('maximum call duration [sqlite]', { skip: SKIP_SIPP }, () => {
  let f: Fixture;
  before(async () => {
    f = await startFixture({ env: { HANDOFF_SIP_MAX_CALL_SECONDS: '1' } });
  });
  after(async () => {
    await f?.close();
  });

  test('an answered call is ended after the limit: BYE to both parties, VC2 Ended max-duration, slot released', { timeout: 60_000 }, async () => {
    const ua = await UserAgent.start();
    const bot = await agent(f, 'bot', { kind: 'answer', then: 'wait-bye' }, 1);
    try {
      const uui = f.uui({ orgId: ORG_A, scrt2Domain: DOMAIN_A, token: await f.token('a'), transactionId: 'tx-limit' });
      const call = ua.invite({ transport: 'udp', host: '127.0.0.1', port: f.sip.udp }, CH.main, '+14155554101', [['User-to-User', uui]]);
      const answeredAt = Date.now();
      assert.equal((await call.final).status, 200);
      await call.byeArrived;
      const after = Date.now() - answeredAt;
      assert.ok(after >= 900 && after < 5000, `BYE from the proxy after ${after} ms`);
      const run = await bot.done;
      assertSippOk(run, 'agent (it received the BYE)');
      const bye = messagesStarting(run, 'BYE ')[0]!;
      assert.match(headerOf(bye, 'Reason') ?? '', /text="max-duration"/);
      const id = headerOf(messagesStarting(run, 'INVITE ')[0]!, 'X-Handoff-Voice-Call-Id')!;
      const leg = await waitFor(async () => {
        const r = await f.api('GET', `/telephony/v1/voiceCalls/${id}`);
        return r.status === 200 && r.json.status === 'Ended' ? r.json : null;
      });
      assert.ok(leg, 'VC2 ends');
      assert.equal(leg.disconnectReason, 'max-duration');
      assert.equal(leg.isActiveCall, false);
      assert.equal(f.server.sip.activeCalls('bot'), 0);
    } finally {
      bot.stop();
      await ua.close();
    }
  });
});

describe('HANDOFF_SIP_MAX_CALL_SECONDS', () => {
  test('defaults to 4 hours; 0 disables; bounded to a week', () => {
    assert.equal(loadSettings({}).sip.maxCallSeconds, 14_400);
    assert.equal(loadSettings({ HANDOFF_SIP_MAX_CALL_SECONDS: '0' }).sip.maxCallSeconds, 0);
    for (const bad of ['-1', '604801', 'soon']) assert.throws(() => loadSettings({ HANDOFF_SIP_MAX_CALL_SECONDS: bad }), /HANDOFF_SIP_MAX_CALL_SECONDS/);
  });
});
