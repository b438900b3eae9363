/**
 * Redirect mode, the demo tenant's built-in agent, and shutdown with a call in flight: each on
 * its own service.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { loadSettings } from '../../src/config.js';
import { toId18 } from '../../src/domain/ids.js';
import { mintToken } from '../../src/domain/token-mint.js';
import { encodeUui } from '../../src/domain/uui.js';
import { startServer, type RunningServer } from '../../src/server.js';
import type { DemoInfo } from '../../src/services/demo.js';
import { parseNameAddr } from '../../src/sip/index.js';
import { openSqlite } from '../../src/store/open-store.js';
import { CH, DOMAIN_A, ORG_A, startFixture, waitFor, type Fixture } from './fixture.js';
import { agent, assertRecordsConsistent, assertSippOk, legsOf, partner } from './scenarios.js';
import { SKIP_SIPP, headerOf, messagesStarting } from './sipp.js';

describe('redirect mode', { skip: SKIP_SIPP }, () => {
  let f: Fixture;
  before(async () => {
    f = await startFixture({ env: { HANDOFF_SIP_MODE: 'redirect' } });
  });
  after(async () => {
    await f?.close();
  });

  test('302 with the agent as Contact and the context as escaped URI headers', { timeout: 60_000 }, async () => {
    const vc1 = await f.createCall();
    const tx = 'tx redirect&1';
    const uui = f.uui({ orgId: ORG_A, scrt2Domain: DOMAIN_A, token: await f.token('a'), callId: vc1, transactionId: tx });
    const r = await partner(f, { kind: 'reject', status: 302 }, [[CH.main, '+14155550601', `User-to-User: ${uui}`]]);
    assertSippOk(r, 'partner');
    const contact = headerOf(messagesStarting(r, 'SIP/2.0 302')[0]!, 'Contact')!;
    assert.match(contact, /X-Handoff-Transaction-Id=tx%20redirect%261/);
    const uri = parseNameAddr(contact)?.uri;
    assert.ok(uri?.kind === 'sip');
    assert.equal(`${uri.user}@${uri.host}:${uri.port}`, `bot@127.0.0.1:${f.agents.bot}`);
    const headers = Object.fromEntries(uri.headers);
    assert.equal(headers['X-Handoff-Partner-Voice-Call-Id'], vc1);
    assert.equal(headers['X-Handoff-Transaction-Id'], tx);
    assert.equal(headers['X-Handoff-Org-Id'], toId18(ORG_A));
    const [leg] = await legsOf(f, vc1, (l) => l.status === 'Redirected');
    assert.equal(headers['X-Handoff-Voice-Call-Id'], leg.voiceCallId);
    assert.equal(leg.isActiveCall, false);
    assert.equal(leg.disconnectReason, 'redirected');
    assert.equal(leg.handoff.agent, 'bot');
    assert.equal(f.server.sip.activeCalls('bot'), 0, 'a redirected call holds no slot');
    assert.equal(await assertRecordsConsistent(f), 1);
  });
});

describe('demo tenant: the built-in demo agent', { skip: SKIP_SIPP }, () => {
  let server: RunningServer;
  let dir: string;
  let demo: DemoInfo;
  before(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'handoff-demo-sip-'));
    server = await startServer(
      loadSettings({
        HANDOFF_DATA_DIR: dir,
        HANDOFF_HTTP_PORT: '0',
        HANDOFF_SIP_PORT: '0',
        HANDOFF_LOG_LEVEL: process.env.HANDOFF_TEST_LOG_LEVEL ?? 'silent',
        HANDOFF_DEMO_AGENT_HANGUP_SECONDS: '1',
      }),
    );
    demo = JSON.parse(readFileSync(path.join(dir, 'demo.json'), 'utf8')) as DemoInfo;
  });
  after(async () => {
    await server?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const context = async (transactionId: string) => {
    const token = await mintToken({ privateKeyPem: readFileSync(demo.privateKeyPath, 'utf8'), iss: demo.orgId, sub: demo.callCenterApiName });
    const res = await fetch(`${server.httpUrl}/telephony/v1/voiceCalls`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ vendorCallKey: `demo-${transactionId}`, to: demo.channelNumber, from: '+14155550701' }),
    });
    const vc1 = ((await res.json()) as { voiceCallId: string }).voiceCallId;
    const uui = encodeUui({ orgId: demo.orgId, scrt2Domain: demo.domain, token, callId: vc1, transactionId }).replace(/;encoding=hex$/, '');
    return { vc1, token, uui };
  };

  test('demo.json names the real SIP ports and the demo agent, which the demo tenant uses', async () => {
    assert.equal(demo.sipPort, server.sipPorts.udp);
    assert.notEqual(demo.sipPort, 0);
    assert.deepEqual(demo.sipPorts, server.sipPorts);
    assert.equal(demo.demoAgentUri, server.demoAgent!.uri);
    assert.equal((await server.store.getAgent('demo-agent'))?.sipUri, server.demoAgent!.uri);
  });

  test('the demo agent answers, logs the context, and hangs up on its own', { timeout: 60_000 }, async () => {
    const { vc1, uui } = await context('tx-demo-1');
    const r = await partner({ dir, sip: server.sipPorts }, { kind: 'answer', then: 'wait-bye' }, [[demo.channelNumber, '+14155550701', `User-to-User: ${uui}`]]);
    assertSippOk(r, 'partner (the demo agent hung up)');
    const call = server.demoAgent!.calls().find((c) => c.transactionId === 'tx-demo-1');
    assert.ok(call);
    assert.equal(call.partnerVoiceCallId, vc1);
    assert.equal(call.orgId, toId18(demo.orgId));
    assert.equal(call.state, 'ended');
    assert.equal(call.endedBy, 'agent');
    const leg = await waitFor(async () => {
      const v = await server.store.getVoiceCall(demo.orgId, call.voiceCallId!.slice(0, 15));
      return v?.status === 'Ended' ? v : null;
    });
    assert.equal(leg?.disconnectReason, 'agent-hangup');
    assert.equal(leg?.parentVoiceCallId, vc1.slice(0, 15));
  });

  test('a caller hanging up first ends the demo call too', { timeout: 60_000 }, async () => {
    const { uui } = await context('tx-demo-2');
    const r = await partner({ dir, sip: server.sipPorts }, { kind: 'answer', then: 'bye', afterMs: 100 }, [[demo.channelNumber, '+14155550702', `User-to-User: ${uui}`]]);
    assertSippOk(r, 'partner');
    const call = server.demoAgent!.calls().find((c) => c.transactionId === 'tx-demo-2');
    assert.equal(call?.endedBy, 'caller');
  });
});

describe('shutdown with a call in flight', { skip: SKIP_SIPP }, () => {
  test('an INVITE still ringing at its agent gets 503, the agent a CANCEL, VC2 is failed', { timeout: 60_000 }, async () => {
    const f = await startFixture();
    try {
      const vc1 = await f.createCall();
      const bot = await agent(f, 'bot', { kind: 'ring', then: 'wait-cancel' });
      const uui = f.uui({ orgId: ORG_A, scrt2Domain: DOMAIN_A, token: await f.token('a'), callId: vc1 });
      const call = partner(f, { kind: 'reject', status: 503 }, [[CH.main, '+14155550801', `User-to-User: ${uui}`]]);
      assert.ok(await waitFor(() => f.server.sip.activeCalls('bot') === 1), 'ringing at the agent');
      await f.stopServer();
      assertSippOk(await call, 'partner got its final response');
      bot.stop();
      assert.ok(messagesStarting(await bot.done, 'CANCEL ').length === 1, 'the agent got a CANCEL');
      const store = await openSqlite({ file: path.join(f.dir, 'handoff.sqlite') });
      try {
        const legs = await store.listChildCalls(ORG_A, vc1.slice(0, 15));
        assert.equal(legs.length, 1);
        assert.equal(legs[0]!.status, 'Failed');
        assert.equal(legs[0]!.disconnectReason, 'sip-503');
        assert.equal(legs[0]!.isActiveCall, false);
      } finally {
        await store.close();
      }
    } finally {
      await f.close();
    }
  });
});

describe('protection', () => {
  let f: Fixture;
  before(async () => {
    f = await startFixture({ env: { HANDOFF_SIP_RATE_LIMIT: '5' } });
  });
  after(async () => {
    await f?.close();
  });

  /** Sends raw datagrams from one socket; collects the status codes answered within `ms`. */
  async function blast(messages: string[], ms = 500): Promise<number[]> {
    const sock = dgram.createSocket('udp4');
    const got: number[] = [];
    sock.on('message', (m) => {
      const s = /^SIP\/2\.0 (\d{3})/.exec(m.toString('latin1'));
      if (s) got.push(Number(s[1]));
    });
    await new Promise<void>((r) => sock.bind(0, '127.0.0.1', () => r()));
    for (const m of messages) sock.send(m, f.sip.udp, '127.0.0.1');
    await new Promise((r) => setTimeout(r, ms));
    sock.close();
    return got;
  }

  const request = (method: string, i: number, extra: string[] = []) =>
    [
      `${method} sip:+14155550100@127.0.0.1 SIP/2.0`,
      `Via: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKprot${i}x${Date.now()}`,
      'Max-Forwards: 70',
      `From: <sip:+14155550001@127.0.0.1>;tag=p${i}`,
      'To: <sip:+14155550100@127.0.0.1>;tag=unknown',
      `Call-ID: prot-${i}-${Date.now()}`,
      `CSeq: 1 ${method}`,
      ...extra,
      'Content-Length: 0',
      '',
      '',
    ].join('\r\n');

  test('in-dialog requests of a dialog this proxy does not hold get 481; OPTIONS 200', async () => {
    const got = await blast([request('BYE', 1), request('INFO', 2), request('OPTIONS', 3).replace(';tag=unknown', '')]);
    assert.deepEqual(got.sort(), [200, 481, 481]);
  });

  test('a flood from one source is cut at the per-source rate (burst of twice the rate), and counted', async () => {
    await new Promise((r) => setTimeout(r, 2100)); // a full bucket
    const got = await blast(Array.from({ length: 40 }, (_, i) => request('OPTIONS', 100 + i).replace(';tag=unknown', '')));
    assert.ok(got.length >= 10 && got.length <= 13, `${got.length} of 40 answered`);
    const metrics = await (await fetch(`${f.server.httpUrl}/metrics`)).text();
    assert.match(metrics, /handoff_sip_dropped_total\{reason="rate-limited"\} (2[7-9]|30)/);
  });
});
