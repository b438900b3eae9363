/**
 * Path A's no-lease channel (HANDOFF_SIP_NO_LEASE_CHANNEL, SPEC §6 "or sent to the channel's
 * fallback, as configured"): a call to a pool number that matches no live lease becomes an inbound
 * call of that channel, run by its flow, instead of a 404.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { loadSettings } from '../../src/config.js';
import { UserAgent } from '../../src/sip/user-agent.js';
import { CH, POOL, startFixture, waitFor, type Fixture } from './fixture.js';
import { agent, assertSippOk } from './scenarios.js';
import { headerOf, messagesStarting, SKIP_SIPP } from './sipp.js';

describe('path A without a lease, to the no-lease channel [sqlite]', { skip: SKIP_SIPP }, () => {
  let f: Fixture;
  before(async () => {
    f = await startFixture({ env: { HANDOFF_SIP_NO_LEASE_CHANNEL: CH.main } });
  });
  after(async () => {
    await f?.close();
  });

  test('the call reaches the channel flow\'s agent as an inbound call with no partner context', { timeout: 60_000 }, async () => {
    const ua = await UserAgent.start();
    const bot = await agent(f, 'bot', { kind: 'answer', then: 'wait-bye' }, 1);
    try {
      const dest = { transport: 'udp' as const, host: '127.0.0.1', port: f.sip.udp };
      const call = ua.invite(dest, POOL.from, '+14155554001'); // no lease was reserved for this caller
      const res = await call.final;
      assert.equal(res.status, 200);
      assert.equal((await call.bye()).status, 200);
      const run = await bot.done;
      assertSippOk(run, 'agent');
      const invite = messagesStarting(run, 'INVITE ')[0]!;
      assert.equal(headerOf(invite, 'X-Handoff-Partner-Voice-Call-Id'), '');
      assert.equal(headerOf(invite, 'X-Handoff-Transaction-Id'), '');
      const id = headerOf(invite, 'X-Handoff-Voice-Call-Id')!;
      const leg = await waitFor(async () => {
        const r = await f.api('GET', `/telephony/v1/voiceCalls/${id}`);
        return r.status === 200 && r.json.status === 'Ended' ? r.json : null;
      });
      assert.ok(leg, 'VC2 ends');
      assert.equal(leg.initiationMethod, 'Inbound');
      assert.equal(leg.parentVoiceCallId, null);
      assert.equal(leg.to, CH.main);
      assert.equal(leg.from, '+14155554001');
      assert.equal(leg.handoff.path, 'number');
      assert.equal(leg.handoff.noLease, 'no_lease');
      assert.equal(leg.handoff.agent, 'bot');
      const metrics = await (await fetch(`${f.server.httpUrl}/metrics`)).text();
      assert.match(metrics, /handoff_resolutions_total\{path="sip-number",outcome="no_lease_channel"\} 1/);
    } finally {
      bot.stop();
      await ua.close();
    }
  });

  test('a number that is neither a pool number nor a channel is still 404', { timeout: 30_000 }, async () => {
    const ua = await UserAgent.start();
    try {
      const res = await ua.invite({ transport: 'udp', host: '127.0.0.1', port: f.sip.udp }, '+19995550000', '+14155554002').final;
      assert.equal(res.status, 404);
    } finally {
      await ua.close();
    }
  });
});

describe('HANDOFF_SIP_NO_LEASE_CHANNEL', () => {
  test('must be an E.164 number; absent means 404', () => {
    assert.equal(loadSettings({}).sip.noLeaseChannel, null);
    assert.equal(loadSettings({ HANDOFF_SIP_NO_LEASE_CHANNEL: '+14155550100' }).sip.noLeaseChannel, '+14155550100');
    for (const bad of ['14155550100', 'sip:+14155550100@x', '+1 415 555 0100']) {
      assert.throws(() => loadSettings({ HANDOFF_SIP_NO_LEASE_CHANNEL: bad }), /HANDOFF_SIP_NO_LEASE_CHANNEL must be/);
    }
  });
});
