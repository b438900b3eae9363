/**
 * The SIP hand-off end to end (SPEC §6, issue 4): a real service on SQLite, sipp as the partner
 * and as the AI agent, a Node UA for TLS.
 */
import { after, before, describe, test } from 'node:test';
import type { SipHandoff } from '../../src/sip/handoff.js';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { readdirSync, readFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { tortureDir } from '../sip/helpers.js';
import { newVoiceCallId, toId18 } from '../../src/domain/ids.js';
import { BOT_TOKEN, CH, DOMAIN_A, DOMAIN_B, metric, ORG_A, ORG_B, POOL, startFixture, waitFor, WORKERS_LABEL, type Fixture } from './fixture.js';
import { UserAgent as NodeUa } from '../../src/sip/user-agent.js';
import { agent, assertRecordsConsistent, assertSippOk, legsOf, numberPathJourney, partner, receivedInvite, uuiPathJourney } from './scenarios.js';
import { SKIP_SIPP, headerOf, messagesStarting, type SippResult } from './sipp.js';

/** Final responses the partner received, in call order. */
function finals(r: SippResult): string[] {
  return r.messages.filter((m) => /^SIP\/2\.0 [2-6]\d\d /.test(m));
}

describe(`SIP hand-off with sipp [sqlite]${WORKERS_LABEL}`, { skip: SKIP_SIPP }, () => {
  let f: Fixture;
  before(async () => {
    f = await startFixture({ tls: true });
  });
  after(async () => {
    await f?.close();
  });

  test('path A: the INVITE from the leased caller consumes the lease once and reaches the agent', { timeout: 60_000 }, async () => {
    await numberPathJourney(f, '+14155551001', 'tx-a-1');
  });

  test('path B: a valid token reaches the agent with the X-Handoff-* context; VC2 is linked to VC1', { timeout: 60_000 }, async () => {
    await uuiPathJourney(f, 'tx-b-1');
  });

  test('path B: X-User-to-User, a User-to-User URI header, hex with encoding=hex and a PD octet, raw JSON', { timeout: 60_000 }, async () => {
    const ua = await NodeUa.start();
    const bot = await agent(f, 'bot', { kind: 'answer', then: 'wait-bye' }, 4);
    try {
      const ctx = async (tx: string) => ({ orgId: ORG_A, scrt2Domain: DOMAIN_A, token: await f.token('a'), transactionId: tx });
      const hex = (fields: Record<string, unknown>) => f.uui(fields);
      const dest = { transport: 'udp' as const, host: '127.0.0.1', port: f.sip.udp };
      const variants: Array<{ tx: string; headers: Array<[string, string]>; uri?: boolean }> = [
        // with spoofed context headers, which never reach the agent
        { tx: 'tx-x', headers: [['X-User-to-User', hex(await ctx('tx-x'))], ['X-Handoff-Org-Id', 'spoofed'], ['x-handoff-voice-call-id', 'spoofed']] },
        { tx: 'tx-uri', headers: [], uri: true },
        { tx: 'tx-pd', headers: [['User-to-User', `04${hex(await ctx('tx-pd'))};encoding=hex;purpose=call`]] },
        { tx: 'tx-json', headers: [['User-to-User', JSON.stringify(await ctx('tx-json'))]] },
      ];
      for (const v of variants) {
        const call = v.uri
          ? ua.inviteUri(dest, `sip:${CH.main}@127.0.0.1:${f.sip.udp}?User-to-User=${hex(await ctx(v.tx))}`, '+14155553003')
          : ua.invite(dest, CH.main, '+14155553003', v.headers);
        const res = await call.final;
        assert.equal(res.status, 200, `${v.tx}: ${res.status}`);
        assert.equal((await call.bye()).status, 200, `${v.tx}: BYE`);
      }
      const agentRun = await bot.done;
      assertSippOk(agentRun, 'agent');
      const txs = messagesStarting(agentRun, 'INVITE ').map((m) => headerOf(m, 'X-Handoff-Transaction-Id'));
      assert.deepEqual(txs, ['tx-x', 'tx-uri', 'tx-pd', 'tx-json']);
      for (const m of messagesStarting(agentRun, 'INVITE ')) {
        assert.match(m, /^INVITE sip:bot@127\.0\.0\.1:\d+ SIP\/2\.0/, 'no URI header is forwarded');
        assert.doesNotMatch(m, /User-to-User/i);
        assert.doesNotMatch(m, /spoofed/);
        assert.equal(m.match(/^X-Handoff-Org-Id:/gim)?.length, 1);
      }
    } finally {
      bot.stop();
      await ua.close();
    }
  });

  test('every refusal: 400 malformed or duplicate UUI, 403 token/org/domain/trunk, 404 unknown number/call/lease', { timeout: 90_000 }, async () => {
    const before = (await f.handoffCalls()).length;
    const good = await f.token('a');
    const uui = (fields: Record<string, unknown>) => `User-to-User: ${f.uui(fields)}`;
    const base = { orgId: ORG_A, scrt2Domain: DOMAIN_A, token: good };
    const caller = '+14155554004';
    const hexOf = (text: string) => `User-to-User: ${Buffer.from(text).toString('hex')}`;

    const cases: Array<{ status: number; rows: string[][] }> = [
      {
        status: 400,
        rows: [
          [CH.main, caller, 'User-to-User: 7B2'], // odd length
          [CH.main, caller, 'User-to-User: 7G7D'], // not hex
          [CH.main, caller, uui(base), `X-User-to-User: ${f.uui(base)}`], // two values
          [CH.main, caller, `User-to-User: ${f.uui(base)}, ${f.uui(base)}`], // two values in one header
          [CH.main, caller], // no UUI on a channel
          [CH.main, caller, uui({ orgId: ORG_A, scrt2Domain: DOMAIN_A })], // no token
          [CH.main, caller, hexOf(`{"token":"a","token":"b","scrt2Domain":"${DOMAIN_A}"}`)], // duplicate key
          [CH.main, caller, uui({ ...base, pad: 'x'.repeat(1100) })], // decoded text over 1,024
          [CH.main, caller, `User-to-User: ${Buffer.from([0xff, 0xfe]).toString('hex')}`], // not UTF-8
        ],
      },
      {
        status: 403,
        rows: [
          [CH.main, caller, uui({ ...base, token: await f.token('b', { iss: ORG_A }) })], // signed with another org's key
          [CH.main, caller, uui({ ...base, orgId: ORG_B, scrt2Domain: DOMAIN_B })], // orgId is not the token's
          [CH.main, caller, uui({ ...base, scrt2Domain: 'evil.example.com' })], // domain with orgId
          [CH.main, caller, uui({ scrt2Domain: 'evil.example.com', token: good })], // domain, without orgId
          [CH.main, caller, uui({ ...base, token: await f.token('a', { now: Date.now() - 7_200_000 }) })], // expired
          [CH.c, caller, uui({ orgId: '00Dxx0000009CCC', scrt2Domain: 'charlie.my.example.com', token: good })], // trunk allow-list
        ],
      },
      {
        status: 404,
        rows: [
          ['+14155550999', caller, uui(base)], // neither a channel nor a pool number
          [CH.main, caller, uui({ ...base, callId: toId18(newVoiceCallId()) })], // no such VoiceCall
          [CH.b, caller, uui(base)], // another org's channel
          [POOL.to, caller], // a pool number without a lease
          [POOL.to, 'anonymous'], // a pool number, no caller number at all
        ],
      },
    ];
    for (const c of cases) {
      const r = await partner(f, { kind: 'reject', status: c.status }, c.rows);
      assertSippOk(r, `${c.status} group`);
      const got = finals(r);
      assert.equal(got.length, c.rows.length, `${c.status}: one final response per call`);
      for (const [i, m] of got.entries()) {
        assert.ok(m.startsWith(`SIP/2.0 ${c.status} `), `${c.status} row ${i}: ${m.split('\r\n')[0]}`);
        assert.match(headerOf(m, 'Warning') ?? '', /^399 handoff ".+"$/, `${c.status} row ${i} has a Warning`);
        assert.ok(!m.includes(good) && !m.includes(good.slice(0, 40)), 'no response echoes the token');
        assert.ok(!/7B22/i.test(headerOf(m, 'Warning') ?? ''), 'no response echoes the raw UUI');
      }
    }
    assert.equal((await f.handoffCalls()).length, before, 'a refused INVITE creates no VoiceCall');
    const metrics = await (await fetch(`${f.server.httpUrl}/metrics`)).text();
    assert.match(metrics, /handoff_resolutions_total\{path="sip-uui",outcome="invalid_token"\} [1-9]/);
    assert.match(metrics, /handoff_resolutions_total\{path="sip-uui",outcome="invalid_uui"\} [1-9]/);
    assert.match(metrics, /handoff_resolutions_total\{path="sip-number",outcome="no_lease"\} [1-9]/);
    assert.match(metrics, /handoff_resolutions_total\{path="sip-uui",outcome="source_not_allowed"\} 1/);
  });

  test('the flow decides: its rejection with a Reason, 480 when it only names a queue', { timeout: 60_000 }, async () => {
    const ctx = { orgId: ORG_A, scrt2Domain: DOMAIN_A, token: await f.token('a') };
    const busy = await partner(f, { kind: 'reject', status: 486 }, [[CH.busy, '+14155555005', `User-to-User: ${f.uui({ ...ctx, transactionId: 'tx-busy' })}`]]);
    assertSippOk(busy, '486');
    assert.equal(headerOf(finals(busy)[0]!, 'Reason'), 'SIP ;cause=486 ;text="Busy here"');
    const queued = await partner(f, { kind: 'reject', status: 480 }, [[CH.queued, '+14155555005', `User-to-User: ${f.uui({ ...ctx, transactionId: 'tx-queue' })}`]]);
    assertSippOk(queued, '480');
    assert.match(headerOf(finals(queued)[0]!, 'Reason') ?? '', /queue Humans/);
    const records = await f.handoffCalls();
    const busyLeg = records.find((c) => c.handoff?.['transactionId'] === 'tx-busy');
    assert.equal(busyLeg?.status, 'Failed');
    assert.equal(busyLeg?.disconnectReason, 'sip-486');
    assert.equal(records.find((c) => c.handoff?.['transactionId'] === 'tx-queue')?.disconnectReason, 'sip-480');
  });

  test('CANCEL before the answer: the agent leg is cancelled, 487 upstream, VC2 failed', { timeout: 60_000 }, async () => {
    const vc1 = await f.createCall();
    const bot = await agent(f, 'bot', { kind: 'ring', then: 'wait-cancel' });
    const uui = f.uui({ orgId: ORG_A, scrt2Domain: DOMAIN_A, token: await f.token('a'), callId: vc1, transactionId: 'tx-cancel' });
    const call = await partner(f, { kind: 'cancel', afterMs: 200 }, [[CH.main, '+14155556006', `User-to-User: ${uui}`]]);
    assertSippOk(call, 'partner');
    assertSippOk(await bot.done, 'agent');
    const [leg] = await legsOf(f, vc1, (l) => l.status === 'Failed');
    assert.equal(leg.disconnectReason, 'sip-487');
    assert.equal(leg.isActiveCall, false);
  });

  test('agent at capacity: the flow fallback agent takes the call, or 503 with Retry-After', { timeout: 90_000 }, async () => {
    const ctx = async (tx: string) => `User-to-User: ${f.uui({ orgId: ORG_A, scrt2Domain: DOMAIN_A, token: await f.token('a'), transactionId: tx })}`;
    // small-bot holds one call; the next goes to the flow's fallback agent spare-bot
    const small = await agent(f, 'small', { kind: 'answer', then: 'wait-bye' });
    const first = partner(f, { kind: 'answer', then: 'bye', afterMs: 2500 }, [[CH.small, '+14155557001', await ctx('tx-cap-1')]]);
    assert.ok(await waitFor(() => f.server.sip.activeCalls('small-bot') === 1, 5000), 'small-bot is busy');
    const spare = await agent(f, 'spare', { kind: 'answer', then: 'wait-bye' });
    const second = await partner(f, { kind: 'answer', then: 'bye', afterMs: 100 }, [[CH.small, '+14155557002', await ctx('tx-cap-2')]]);
    assertSippOk(second, 'second call');
    const spareRun = await spare.done;
    assertSippOk(spareRun, 'spare agent');
    assert.equal(headerOf(receivedInvite(spareRun), 'X-Handoff-Transaction-Id'), 'tx-cap-2');
    assertSippOk(await first, 'first call');
    assertSippOk(await small.done, 'small agent');

    // tiny-bot holds one call and the flow's fallback is a rejection: 503 with Retry-After
    const tiny = await agent(f, 'tiny', { kind: 'answer', then: 'wait-bye' });
    const held = partner(f, { kind: 'answer', then: 'bye', afterMs: 2000 }, [[CH.tiny, '+14155557003', await ctx('tx-cap-3')]]);
    assert.ok(await waitFor(() => f.server.sip.activeCalls('tiny-bot') === 1, 5000), 'tiny-bot is busy');
    const refused = await partner(f, { kind: 'reject', status: 503 }, [[CH.tiny, '+14155557004', await ctx('tx-cap-4')]]);
    assertSippOk(refused, 'refused call');
    assert.equal(headerOf(finals(refused)[0]!, 'Retry-After'), '5');
    assertSippOk(await held, 'held call');
    assertSippOk(await tiny.done, 'tiny agent');
    assert.ok(await waitFor(() => f.server.sip.activeCalls('tiny-bot') === 0 && f.server.sip.activeCalls('small-bot') === 0), 'slots released');
    const refusedLeg = (await f.handoffCalls()).find((c) => c.handoff?.['transactionId'] === 'tx-cap-4');
    assert.equal(refusedLeg?.disconnectReason, 'sip-503');
  });

  test('TCP: a partner over TCP to a UDP agent (two Record-Routes), and an agent over TCP', { timeout: 60_000 }, async () => {
    const ctx = async (tx: string) => `User-to-User: ${f.uui({ orgId: ORG_A, scrt2Domain: DOMAIN_A, token: await f.token('a'), transactionId: tx })}`;
    const bot = await agent(f, 'bot', { kind: 'answer', then: 'wait-bye' });
    const overTcp = await partner(f, { kind: 'answer', then: 'bye', afterMs: 200 }, [[CH.main, '+14155558001', await ctx('tx-tcp-1')]], 'tcp');
    assertSippOk(overTcp, 'partner over TCP');
    const botRun = await bot.done;
    assertSippOk(botRun, 'UDP agent');
    const rr = receivedInvite(botRun).split('\r\n').filter((l) => /^Record-Route:/i.test(l)).join(', ');
    assert.match(rr, /<sip:127\.0\.0\.1:\d+;lr>.*;transport=tcp;lr>/, `RFC 5658 double Record-Route: ${rr}`);

    const tcpBot = await agent(f, 'tcp', { kind: 'answer', then: 'bye', afterMs: 200 });
    const toTcpAgent = await partner(f, { kind: 'answer', then: 'wait-bye' }, [[CH.tcp, '+14155558002', await ctx('tx-tcp-2')]]);
    assertSippOk(toTcpAgent, 'partner to the TCP agent');
    assertSippOk(await tcpBot.done, 'TCP agent');
    const legs = await waitFor(async () => {
      const all = await f.handoffCalls();
      const l1 = all.find((c) => c.handoff?.['transactionId'] === 'tx-tcp-1');
      const l2 = all.find((c) => c.handoff?.['transactionId'] === 'tx-tcp-2');
      return l1?.status === 'Ended' && l2?.status === 'Ended' ? [l1, l2] : null;
    });
    assert.ok(legs, 'both calls ended');
    assert.equal(legs[0]!.disconnectReason, 'caller-hangup');
    assert.equal(legs[1]!.disconnectReason, 'agent-hangup');
  });

  test('an agent that cannot be reached: 503 upstream, VC2 failed, the slot released', { timeout: 30_000 }, async () => {
    // nothing listens on tcp-bot's port: the TCP connect is refused
    const uui = f.uui({ orgId: ORG_A, scrt2Domain: DOMAIN_A, token: await f.token('a'), transactionId: 'tx-unreachable' });
    const r = await partner(f, { kind: 'reject', status: 503 }, [[CH.tcp, '+14155558003', `User-to-User: ${uui}`]]);
    assertSippOk(r, 'partner');
    const leg = await waitFor(async () => (await f.handoffCalls()).find((c) => c.handoff?.['transactionId'] === 'tx-unreachable' && c.status === 'Failed'));
    assert.equal(leg?.disconnectReason, 'sip-503');
    assert.equal(f.server.sip.activeCalls('tcp-bot'), 0);
  });

  test('TLS: a partner over TLS reaches the agent and hangs up', { timeout: 60_000 }, async () => {
    assert.ok(f.sip.tls, 'the TLS listener is up');
    const ua = await NodeUa.start();
    const bot = await agent(f, 'bot', { kind: 'answer', then: 'wait-bye' });
    try {
      const vc1 = await f.createCall();
      const uui = f.uui({ orgId: ORG_A, scrt2Domain: DOMAIN_A, token: await f.token('a'), callId: vc1, transactionId: 'tx-tls' });
      const call = ua.invite({ transport: 'tls', host: '127.0.0.1', port: f.sip.tls! }, CH.main, '+14155559001', [['User-to-User', uui]]);
      const res = await call.final;
      assert.equal(res.status, 200);
      assert.match(res.headers.getAll('record-route').join(','), /;transport=tls;lr>/);
      assert.equal((await call.bye()).status, 200);
      assertSippOk(await bot.done, 'agent');
      const [leg] = await legsOf(f, vc1, (l) => l.status === 'Ended');
      assert.equal(leg.disconnectReason, 'caller-hangup');
    } finally {
      bot.stop();
      await ua.close();
    }
  });

  test('a BYE sent to the proxy itself (Record-Route ignored) still reaches the other party', { timeout: 60_000 }, async () => {
    const ua = await NodeUa.start();
    const bot = await agent(f, 'bot', { kind: 'answer', then: 'wait-bye' });
    try {
      const vc1 = await f.createCall();
      const uui = f.uui({ orgId: ORG_A, scrt2Domain: DOMAIN_A, token: await f.token('a'), callId: vc1, transactionId: 'tx-direct-bye' });
      const dest = { transport: 'udp' as const, host: '127.0.0.1', port: f.sip.udp };
      const acks = () => metric(f, /handoff_sip_requests_total\{direction="out",method="ACK"\} (\d+)/);
      const acked = await acks();
      const call = ua.invite(dest, CH.main, '+14155559004', [['User-to-User', uui]]);
      assert.equal((await call.final).status, 200);
      // The ACK follows the Record-Route; this BYE goes to the public port: with SIP workers through
      // the front, a path the ACK does not take, so it could overtake it (UDP keeps no order)
      assert.ok(await waitFor(async () => (await acks()) > acked), 'the ACK reached the agent');
      assert.equal((await call.bye({ uri: `sip:${CH.main}@127.0.0.1:${f.sip.udp}`, dest })).status, 200);
      assertSippOk(await bot.done, 'agent got the BYE');
      const [leg] = await legsOf(f, vc1, (l) => l.status === 'Ended');
      assert.equal(leg.disconnectReason, 'caller-hangup');
    } finally {
      bot.stop();
      await ua.close();
    }
  });

  test('endCall ends an answered call: BYE to the agent and to the partner', { timeout: 60_000 }, async () => {
    const vc1 = await f.createCall();
    const bot = await agent(f, 'bot', { kind: 'answer', then: 'wait-bye' });
    const uui = f.uui({ orgId: ORG_A, scrt2Domain: DOMAIN_A, token: await f.token('a'), callId: vc1, transactionId: 'tx-end' });
    const call = partner(f, { kind: 'answer', then: 'wait-bye' }, [[CH.main, '+14155559002', `User-to-User: ${uui}`]]);
    const [leg] = await legsOf(f, vc1, (l) => l.status === 'Answered');
    assert.ok(leg, 'answered');
    assert.equal(await f.server.sip.endCall(leg.voiceCallId, 'test-ended'), true);
    assertSippOk(await call, 'partner got a BYE');
    assertSippOk(await bot.done, 'agent got a BYE');
    const [ended] = await legsOf(f, vc1, (l) => l.isActiveCall === false);
    assert.equal(ended.status, 'Ended');
    assert.equal(ended.disconnectReason, 'test-ended');
    assert.equal(await f.server.sip.endCall(leg.voiceCallId, 'again'), false, 'not active any more');
    assert.equal(await f.server.sip.endCall('0LQxx0000000000', 'unknown'), false);
  });

  test('escalation over HTTP ends the AI leg through the proxy', { timeout: 60_000 }, async () => {
    const vc1 = await f.createCall();
    const bot = await agent(f, 'bot', { kind: 'answer', then: 'wait-bye' });
    const uui = f.uui({ orgId: ORG_A, scrt2Domain: DOMAIN_A, token: await f.token('a'), callId: vc1, transactionId: 'tx-esc' });
    const call = partner(f, { kind: 'answer', then: 'wait-bye' }, [[CH.main, '+14155559003', `User-to-User: ${uui}`]]);
    const [leg] = await legsOf(f, vc1, (l) => l.status === 'Answered');
    const r = await f.api('POST', `/telephony/v1/voiceCalls/${leg.voiceCallId}/escalate`, { reason: 'customer asked for a human' }, BOT_TOKEN);
    assert.equal(r.status, 200, JSON.stringify(r.json));
    assert.equal(r.json.aiLegEnded, true);
    assertSippOk(await call, 'partner got a BYE');
    assertSippOk(await bot.done, 'agent got a BYE');
    const [ended] = await legsOf(f, vc1, (l) => l.isActiveCall === false);
    assert.equal(ended.status, 'Escalated');
    assert.equal(ended.disconnectReason, 'escalated');
  });

  test('metrics: SIP messages, INVITE latency, active calls per agent', async () => {
    const text = await (await fetch(`${f.server.httpUrl}/metrics`)).text();
    assert.match(text, /handoff_sip_requests_total\{direction="in",method="INVITE"\} [1-9]/);
    assert.match(text, /handoff_sip_responses_total\{direction="out",status="200"\} [1-9]/);
    assert.match(text, /handoff_sip_invite_response_seconds_count\{status="200"\} [1-9]/);
    assert.match(text, /handoff_agent_active_calls\{agent="bot"\} 0/);
    assert.match(text, /handoff_resolutions_total\{path="sip-number",outcome="consumed"\} 1/);
  });

  test('hostile input: the RFC 4475 corpus and malformed hand-offs leave the ingress up, creating nothing', { timeout: 30_000 }, async () => {
    const before = (await f.handoffCalls()).length;
    const dir = tortureDir();
    const corpus = dir ? readdirSync(dir).filter((n) => n.endsWith('.dat')).map((n) => readFileSync(path.join(dir, n))) : [];
    const invite = (uri: string, extra: string[], i: number) =>
      Buffer.from(
        [
          `INVITE ${uri} SIP/2.0`,
          `Via: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKhostile${i}`,
          'Max-Forwards: 70',
          `From: <sip:+14155550001@x>;tag=h${i}`,
          'To: <sip:x@y>',
          `Call-ID: hostile-${i}-${Date.now()}`,
          'CSeq: 1 INVITE',
          ...extra,
          'Content-Length: 0',
          '',
          '',
        ].join('\r\n'),
      );
    const hostile = [
      invite(`sip:${CH.main}@127.0.0.1`, Array.from({ length: 100 }, () => 'User-to-User: 7B7D'), 1),
      invite(`sip:${CH.main}@127.0.0.1`, [`User-to-User: ${'A'.repeat(7000)}`], 2),
      invite(`sip:${CH.main}@127.0.0.1`, [`User-to-User: {"token":${'['.repeat(500)}}`], 3),
      invite(`sip:${CH.main}@127.0.0.1?User-to-User=7B%0D%0AX-Injected:1`, [], 4),
      invite('sip:%00%0d%0a@127.0.0.1', [], 5),
      invite(`sip:${POOL.from}@127.0.0.1`, ['P-Asserted-Identity: <<<', `Route: <sip:127.0.0.1:${f.sip.udp};lr>`], 6),
      invite(`sip:${CH.main}@127.0.0.1`, [`User-to-User: ${Buffer.from('{"token":"x","scrt2Domain":"a.b","callId":"zzz"}').toString('hex')}`], 7),
    ];
    const sock = dgram.createSocket('udp4');
    const answers: string[] = [];
    sock.on('message', (m) => answers.push(m.toString('latin1')));
    await new Promise<void>((r) => sock.bind(0, '127.0.0.1', () => r()));
    for (const m of [...corpus, ...hostile]) sock.send(m, f.sip.udp, '127.0.0.1');
    const tcp = net.connect(f.sip.tcp, '127.0.0.1');
    tcp.on('error', () => undefined);
    await new Promise((r) => tcp.once('connect', r));
    for (const m of hostile) tcp.write(m);
    await waitFor(() => answers.filter((a) => / handoff "/.test(a)).length >= hostile.length, 5000);
    sock.close();
    tcp.destroy();
    assert.ok(!answers.some((a) => /^X-Injected/m.test(a)), 'nothing injected into a response');
    assert.equal((await fetch(`${f.server.httpUrl}/healthz`)).status, 200);
    const ua = await NodeUa.start();
    try {
      const probe = ua.invite({ transport: 'udp', host: '127.0.0.1', port: f.sip.udp }, '+14155550999', '+14155550001');
      assert.equal((await probe.final).status, 404, 'the ingress still answers');
    } finally {
      await ua.close();
    }
    assert.equal((await f.handoffCalls()).length, before);
  });

  // It reads the transactions of the main thread's hand-off, which SIP workers do not have
  const inMainThread = process.env.HANDOFF_TEST_SIP_WORKERS ? { skip: 'the SIP side runs on worker threads' } : {};
  test('a refused INVITE: its transaction keeps only its identity and the refusal, which a retransmission gets again', { timeout: 30_000, ...inMainThread }, async () => {
    const callId = `refused-${Date.now()}`;
    const note = 'a header long enough to be a slice of the datagram text, and more';
    const datagram = Buffer.from(
      [
        'INVITE sip:+19995550123@127.0.0.1 SIP/2.0',
        'Via: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKrefused1',
        'Max-Forwards: 70',
        'From: <sip:+14155550001@x>;tag=r1',
        'To: <sip:+19995550123@127.0.0.1>',
        `Call-ID: ${callId}`,
        'CSeq: 1 INVITE',
        `X-Note: ${note}`,
        'Content-Length: 0',
        '',
        '',
      ].join('\r\n'),
    );
    const sock = dgram.createSocket('udp4');
    const answers: string[] = [];
    sock.on('message', (m) => answers.push(m.toString('latin1')));
    await new Promise<void>((r) => sock.bind(0, '127.0.0.1', () => r()));
    try {
      sock.send(datagram, f.sip.udp, '127.0.0.1');
      await waitFor(() => answers.some((a) => a.startsWith('SIP/2.0 404')), 5000);
      const servers = ((f.server.sip as SipHandoff).sip.transactions as unknown as { servers: Map<string, { request: { callId: string; headers: { get(n: string): string | undefined } }; lastStatus: number }> }).servers;
      const tx = [...servers.values()].find((t) => t.request.callId === callId);
      assert.ok(tx, 'the transaction waits for its ACK');
      assert.equal(tx.lastStatus, 404);
      assert.equal(tx.request.headers.get('x-note'), undefined, 'the rest of the INVITE is let go');
      const finals = () => answers.filter((a) => a.startsWith('SIP/2.0 404')).length;
      sock.send(datagram, f.sip.udp, '127.0.0.1');
      await waitFor(() => finals() >= 2, 5000);
      const [first, again] = answers.filter((a) => a.startsWith('SIP/2.0 404'));
      assert.equal(again, first, 'the same refusal, byte for byte');
    } finally {
      sock.close();
    }
  });

  test('afterwards every hand-off VoiceCall is consistent', async () => {
    const n = await assertRecordsConsistent(f);
    assert.ok(n >= 15, `${n} hand-off records checked`);
  });
});
