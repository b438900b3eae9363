/**
 * The hand-off's record and load rules: overload shedding (503 before any work), the record ending
 * at the BYE rather than at its 200, answered calls ended with a BYE at shutdown, and a refused
 * hand-off written once as Failed.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import path from 'node:path';
import { createResponse, SipRequest } from '../../src/sip/message.js';
import { parseDatagram } from '../../src/sip/parser.js';
import { serialize } from '../../src/sip/serializer.js';
import { UserAgent } from '../../src/sip/user-agent.js';
import { openSqlite } from '../../src/store/open-store.js';
import { CH, DOMAIN_A, metric, ORG_A, startFixture, waitFor, WORKERS_LABEL, type Fixture } from './fixture.js';
import { agent, assertSippOk } from './scenarios.js';
import { headerOf, messagesStarting, SKIP_SIPP } from './sipp.js';

async function uuiFor(f: Fixture, transactionId: string): Promise<string> {
  return f.uui({ orgId: ORG_A, scrt2Domain: DOMAIN_A, token: await f.token('a'), transactionId });
}

describe(`overload shedding [sqlite]${WORKERS_LABEL}`, () => {
  let f: Fixture;
  before(async () => {
    f = await startFixture({ env: { HANDOFF_SIP_MAX_PENDING: '1' } });
  });
  after(async () => {
    await f?.close();
  });

  test('a burst beyond HANDOFF_SIP_MAX_PENDING gets 503 Retry-After 1 at once; the rest are handled; then calls are taken again', { timeout: 30_000 }, async () => {
    const ua = await UserAgent.start();
    try {
      const dest = { transport: 'udp' as const, host: '127.0.0.1', port: f.sip.udp };
      const uui = await uuiFor(f, 'tx-burst');
      // the busy channel's flow rejects with 486: no agent is needed, every admitted call is answered 486
      const calls = Array.from({ length: 30 }, (_, i) => ua.invite(dest, CH.busy, `+1415555${String(4200 + i)}`, [['User-to-User', uui]]));
      const finals = await Promise.all(calls.map((c) => c.final));
      const shed = finals.filter((r) => r.status === 503);
      const handled = finals.filter((r) => r.status === 486);
      assert.equal(shed.length + handled.length, 30, `statuses: ${finals.map((r) => r.status).join(',')}`);
      assert.ok(shed.length > 0, 'some were shed');
      assert.ok(handled.length > 0, 'some were handled');
      for (const r of shed) {
        assert.equal(r.headers.get('retry-after'), '1');
        assert.match(r.headers.get('warning') ?? '', /overloaded/);
      }
      assert.equal(await metric(f, /handoff_sip_overload_rejections_total\{cause="pending"\} (\d+)/), shed.length);
      // shed calls created no record; handled ones one Failed VC2 each
      const legs = (await f.handoffCalls()).filter((c) => c.handoff?.['transactionId'] === 'tx-burst');
      assert.equal(legs.length, handled.length);
      for (const leg of legs) {
        assert.equal(leg.status, 'Failed');
        assert.equal(leg.disconnectReason, 'sip-486');
        assert.equal(leg.isActiveCall, false);
      }
      assert.equal((await ua.invite(dest, CH.busy, '+14155554299', [['User-to-User', uui]]).final).status, 486, 'taken again once the burst is over');
    } finally {
      await ua.close();
    }
  });
});

describe(`record ends at the BYE [sqlite]${WORKERS_LABEL}`, () => {
  let f: Fixture;
  before(async () => {
    f = await startFixture();
  });
  after(async () => {
    await f?.close();
  });

  test('an agent that never answers the BYE: VC2 is Ended at once, not when the BYE times out', { timeout: 30_000 }, async () => {
    // A minimal agent on the bot's port: answers the INVITE, ignores ACK and BYE
    const sock = dgram.createSocket('udp4');
    await new Promise<void>((r) => sock.bind(f.agents.bot, '127.0.0.1', () => r()));
    const byes: SipRequest[] = [];
    sock.on('message', (buf, rinfo) => {
      const msg = parseDatagram(buf);
      if (!(msg instanceof SipRequest)) return;
      if (msg.method === 'INVITE') {
        const ok = createResponse(msg, 200, {
          headers: [...msg.headers.getAll('record-route').map((v) => ['Record-Route', v] as [string, string]), ['Contact', `<sip:bot@127.0.0.1:${f.agents.bot}>`]],
        });
        sock.send(serialize(ok), rinfo.port, rinfo.address);
      } else if (msg.method === 'BYE') byes.push(msg);
    });
    const ua = await UserAgent.start();
    try {
      const call = ua.invite({ transport: 'udp', host: '127.0.0.1', port: f.sip.udp }, CH.main, '+14155554301', [['User-to-User', await uuiFor(f, 'tx-lost-200')]]);
      assert.equal((await call.final).status, 200);
      const leg = await waitFor(async () => (await f.handoffCalls()).find((c) => c.handoff?.['transactionId'] === 'tx-lost-200' && c.status === 'Answered'));
      assert.ok(leg, 'answered');
      const sentAt = Date.now();
      void call.bye(); // its 200 never comes (the transaction times out after 32 s)
      const ended = await waitFor(async () => {
        const v = await f.server.store.getVoiceCall(ORG_A, leg.id);
        return v?.status === 'Ended' ? v : null;
      }, 3000);
      assert.ok(ended, 'Ended without the 200');
      assert.ok(Date.now() - sentAt < 3000);
      assert.equal(ended.disconnectReason, 'caller-hangup');
      assert.equal(ended.isActiveCall, false);
      assert.ok(byes.length >= 1, 'the BYE reached the agent');
      assert.equal(f.server.sip.activeCalls('bot'), 0, 'the agent slot is free');
    } finally {
      await ua.close();
      sock.close();
    }
  });
});

describe(`shutdown with an answered call${WORKERS_LABEL}`, { skip: SKIP_SIPP }, () => {
  test('both parties get a BYE with Reason "shutdown"; VC2 ends with disconnectReason shutdown', { timeout: 60_000 }, async () => {
    const f = await startFixture();
    const ua = await UserAgent.start();
    try {
      const bot = await agent(f, 'bot', { kind: 'answer', then: 'wait-bye' });
      const call = ua.invite({ transport: 'udp', host: '127.0.0.1', port: f.sip.udp }, CH.main, '+14155554401', [['User-to-User', await uuiFor(f, 'tx-shutdown')]]);
      assert.equal((await call.final).status, 200);
      const leg = await waitFor(async () => (await f.handoffCalls()).find((c) => c.handoff?.['transactionId'] === 'tx-shutdown' && c.status === 'Answered'));
      assert.ok(leg, 'answered');
      // the partner's ACK first (this UA shares the service's event loop): the agent expects it before a BYE
      await waitFor(async () => (await metric(f, /handoff_sip_requests_total\{direction="out",method="ACK"\} (\d+)/)) >= 1);
      await f.stopServer();
      await call.byeArrived;
      const run = await bot.done;
      assertSippOk(run, 'agent (it got the BYE)');
      assert.match(headerOf(messagesStarting(run, 'BYE ')[0]!, 'Reason') ?? '', /cause=16.*text="shutdown"/);
      const store = openSqlite({ file: path.join(f.dir, 'handoff.sqlite') });
      try {
        const v = await store.getVoiceCall(ORG_A, leg.id);
        assert.equal(v?.status, 'Ended');
        assert.equal(v?.disconnectReason, 'shutdown');
        assert.equal(v?.isActiveCall, false);
        assert.ok(v?.endTime);
      } finally {
        await store.close();
      }
    } finally {
      await ua.close();
      await f.close();
    }
  });
});
