/**
 * Hostile peers on both sides of the proxy: a partner sending thousands of mutated INVITEs (both
 * paths, built from valid ones), ACKs, BYEs, CANCELs and responses over UDP and TCP, and an agent
 * answering the INVITEs that get through with mutated responses. The service must neither crash nor
 * stop serving: no handler error, no unhandled rejection (node:test fails on one), every agent slot
 * given back (answered calls never acknowledged are ended 64*T1 after their 2xx, established ones at
 * HANDOFF_SIP_MAX_CALL_SECONDS, ringing ones at Timer C), OPTIONS answered, and a clean call through
 * the same agent afterwards.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import net from 'node:net';
import { createResponse, SipRequest } from '../../src/sip/message.js';
import { parseDatagram } from '../../src/sip/parser.js';
import { serialize } from '../../src/sip/serializer.js';
import { UserAgent } from '../../src/sip/user-agent.js';
import { answersOptions } from '../sip/helpers.js';
import { CH, DOMAIN_A, metric, ORG_A, POOL, startFixture, waitFor, type Fixture } from './fixture.js';

/** Deterministic, so a failure is reproducible from the seed. */
function random(seed: number): () => number {
  let s = seed;
  return () => {
    s = (Math.imul(s, 1103515245) + 12345) & 0x7fffffff;
    return s / 0x7fffffff;
  };
}

const TOKENS = [
  '\r\n', '\n', '\r', '\0', ':', ';', ',', '<', '>', '"', '\\', ' ', '\t', '=', '@', '%', '%00', 'sip:', 'tel:',
  'SIP/2.0', 'z9hG4bK', ';branch=', ';tag=', '\r\nVia: SIP/2.0/UDP 127.0.0.1:1;branch=z9hG4bKx', '\r\nContent-Length: 99999999999',
  '\r\nContent-Length: -1', '\r\nCSeq: 99999999999999999999 INVITE', '\r\nMax-Forwards: -5', '\r\n\r\n', '\xff', '[', ']', '::1',
  ';rport', ';received=', '\r\ni: x', '\r\nUser-to-User: 00', ';encoding=hex', ';pd=4', '\r\nContact: *', '\r\nRecord-Route: <sip:x>',
  '\r\nRoute: <sip:127.0.0.1;lr>', '\r\nTo: <sip:a@b>;tag=', '7b7d', '{"__proto__":1}',
];

function mutate(rnd: () => number, input: Buffer): Buffer {
  let s = input;
  const n = 1 + Math.floor(rnd() * 5);
  for (let i = 0; i < n; i++) {
    const pos = Math.floor(rnd() * (s.length + 1));
    switch (Math.floor(rnd() * 5)) {
      case 0:
        if (s.length > 0) {
          s = Buffer.from(s);
          s[Math.min(pos, s.length - 1)] = Math.floor(rnd() * 256);
        }
        break;
      case 1:
        s = Buffer.concat([s.subarray(0, pos), Buffer.from(TOKENS[Math.floor(rnd() * TOKENS.length)]!, 'latin1'), s.subarray(pos)]);
        break;
      case 2:
        s = Buffer.concat([s.subarray(0, pos), s.subarray(pos + Math.floor(rnd() * 24))]);
        break;
      case 3:
        s = s.subarray(0, Math.max(pos, Math.floor(s.length * 0.6))); // truncated
        break;
      default:
        s = Buffer.concat([s.subarray(0, pos), s.subarray(pos, pos + Math.floor(rnd() * 120)), s.subarray(pos)]); // a span repeated
    }
  }
  return s;
}

function invite(uri: string, from: string, callId: string, extra: string[], port: number): Buffer {
  const sdp = 'v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n';
  return Buffer.from(
    [
      `INVITE ${uri} SIP/2.0`,
      `Via: SIP/2.0/UDP 127.0.0.1:${port};branch=z9hG4bK-${callId};rport`,
      'Max-Forwards: 70',
      `From: <sip:${from}@127.0.0.1>;tag=f-${callId}`,
      `To: <${uri}>`,
      `Call-ID: ${callId}`,
      'CSeq: 1 INVITE',
      `Contact: <sip:partner@127.0.0.1:${port}>`,
      ...extra,
      'Content-Type: application/sdp',
      `Content-Length: ${Buffer.byteLength(sdp)}`,
      '',
      sdp,
    ].join('\r\n'),
    'latin1',
  );
}

function inDialog(method: string, uri: string, callId: string, port: number): Buffer {
  return Buffer.from(
    [
      `${method} ${uri} SIP/2.0`,
      `Via: SIP/2.0/UDP 127.0.0.1:${port};branch=z9hG4bK-${method}-${callId};rport`,
      'Max-Forwards: 70',
      `From: <sip:+16465550000@127.0.0.1>;tag=f-${callId}`,
      `To: <${uri}>${method === 'CANCEL' ? '' : ';tag=agent-tag'}`,
      `Call-ID: ${callId}`,
      `CSeq: ${method === 'CANCEL' || method === 'ACK' ? 1 : 2} ${method}`,
      'Content-Length: 0',
      '',
      '',
    ].join('\r\n'),
    'latin1',
  );
}

describe('hostile partner and agent [sqlite]', () => {
  let f: Fixture;
  const agents: dgram.Socket[] = [];
  /** The hostile agent answers cleanly (true) or with mutated responses (false). */
  let clean = false;
  const agentRnd = random(7);
  /** INVITEs the agents received: the barrage must reach the hand-off, not stop at the parser or the rate limit. */
  let invitesReached = 0;

  /** An agent on `port` answering INVITEs 180 + 200 and anything else 200, mutated while `hostile()`. */
  async function startAgent(port: number, hostile: () => boolean): Promise<void> {
    const agent = dgram.createSocket('udp4');
    agents.push(agent);
    await new Promise<void>((r) => agent.bind(port, '127.0.0.1', () => r()));
    agent.on('message', (buf, rinfo) => {
      const req = parseDatagram(buf);
      if (!(req instanceof SipRequest) || req.method === 'ACK') return;
      const reply = (status: number) => {
        const res = createResponse(req, status, { toTag: 'agent-tag', headers: [['Contact', `<sip:bot@127.0.0.1:${port}>`]] });
        const bytes = serialize(res);
        agent.send(hostile() ? mutate(agentRnd, bytes) : bytes, rinfo.port, rinfo.address);
      };
      if (req.method === 'INVITE') {
        invitesReached++;
        reply(180);
        reply(200);
        if (hostile()) reply(200); // and a duplicate
      } else reply(200);
    });
  }

  before(async () => {
    f = await startFixture({ webhooks: false, env: { HANDOFF_SIP_MAX_CALL_SECONDS: '5', HANDOFF_SIP_TIMER_C_SECONDS: '5', HANDOFF_SIP_RATE_LIMIT: '0' } });
    await startAgent(f.agents.bot, () => !clean);
  });
  after(async () => {
    for (const a of agents) a.close();
    await f?.close();
  });

  test('thousands of mutated messages: no crash, no handler error, every slot given back, still serving', { timeout: 120_000 }, async () => {
    const rnd = random(20261205);
    const partner = dgram.createSocket('udp4');
    await new Promise<void>((r) => partner.bind(0, '127.0.0.1', () => r()));
    partner.on('message', () => {}); // answers are not awaited: the service must cope with a peer that never ACKs
    const port = partner.address().port;
    const uuiBase = { orgId: ORG_A, scrt2Domain: DOMAIN_A, token: await f.token('a') };
    const vc1 = await f.createCall();
    // a few leases so that some path A INVITEs reach the agent
    const leased: Array<{ number: string; caller: string }> = [];
    for (let i = 0; i < 5; i++) {
      const caller = `+1646555${String(7000 + i)}`;
      leased.push({ number: await f.reserve(caller, vc1, `fuzz-lease-${i}`), caller });
    }
    const channelUri = `sip:${CH.main}@127.0.0.1:${f.sip.udp}`;
    const templates = (i: number): Buffer[] => {
      const id = `fuzz-${i}`;
      const lease = leased[i % leased.length]!;
      return [
        invite(channelUri, '+16465550001', id, [`User-to-User: ${f.uui({ ...uuiBase, callId: vc1, transactionId: `tx-${i}` })}`], port),
        invite(`sip:${lease.number}@127.0.0.1:${f.sip.udp}`, lease.caller, id, [`P-Asserted-Identity: <tel:${lease.caller}>`], port),
        invite(`sip:${POOL.from}@127.0.0.1:${f.sip.udp}`, '+16465550002', id, [], port),
        inDialog('ACK', channelUri, `fuzz-${i - 1}`, port),
        inDialog('BYE', channelUri, `fuzz-${i - 2}`, port),
        inDialog('CANCEL', channelUri, `fuzz-${i - 1}`, port),
        Buffer.from(`SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:${f.sip.udp};branch=z9hG4bKnothing\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>;tag=2\r\nCall-ID: ${id}\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n`, 'latin1'),
      ];
    };
    const N = 3000;
    for (let i = 0; i < N; i++) {
      const all = templates(i);
      const msg = all[Math.floor(rnd() * all.length)]!;
      // one in five is sent as it is, so whole calls also get through and run into mutated answers
      partner.send(rnd() < 0.2 ? msg : mutate(rnd, msg), f.sip.udp, '127.0.0.1');
      if (i % 50 === 49) await new Promise((r) => setTimeout(r, 5)); // stay under the kernel buffer
    }
    // the same over one TCP connection: framing errors may close it; a new one is opened then
    let sock: net.Socket | null = null;
    for (let i = 0; i < 300; i++) {
      if (!sock || sock.destroyed) {
        sock = net.connect(f.sip.tcp, '127.0.0.1');
        sock.on('error', () => {});
        sock.on('data', () => {});
        await new Promise<void>((r) => {
          sock!.once('connect', () => r());
          sock!.once('close', () => r());
        });
      }
      const all = templates(N + i);
      if (!sock.destroyed) sock.write(mutate(rnd, all[Math.floor(rnd() * all.length)]!));
      if (i % 20 === 19) await new Promise((r) => setTimeout(r, 5));
    }
    sock?.destroy();
    await new Promise((r) => setTimeout(r, 500));
    partner.close();

    clean = true;
    // every slot comes back: established calls after 5 s, ringing ones after Timer C (5 s) and 64*T1
    // more when the CANCEL gets no 487, answers never acknowledged 64*T1 after their 2xx
    const active = () => metric(f, /handoff_agent_active_calls\{agent="bot"\} (\d+)/);
    await waitFor(async () => (await active()) === 0, 60_000);
    const open = (await f.handoffCalls()).filter((c) => c.status !== 'Ended' && c.status !== 'Failed');
    assert.equal(await active(), 0, `the agent has every slot back; open: ${JSON.stringify(open.map((c) => [c.status, c.handoff, c.startTime, c.endTime]))}`);
    assert.equal(await metric(f, /handoff_sip_dropped_total\{reason="internal-error"\} (\d+)/), 0, 'no handler threw');
    assert.equal(await metric(f, /handoff_sip_responses_total\{direction="out",status="500"\} (\d+)/), 0, 'no request failed inside');
    // what the barrage reached: refusals of both paths, hand-offs of both paths, the agent
    assert.ok((await metric(f, /handoff_sip_responses_total\{direction="out",status="400"\} (\d+)/)) > 100);
    assert.ok((await metric(f, /handoff_resolutions_total\{path="sip-uui",outcome="resolved"\} (\d+)/)) > 10);
    assert.ok((await metric(f, /handoff_resolutions_total\{path="sip-number",outcome="consumed"\} (\d+)/)) > 0);
    assert.ok(invitesReached > 10, `${invitesReached} INVITEs reached the agent`);
    // still serving: OPTIONS, and a clean path B call through the same agent, answered and ended
    const ua = await UserAgent.start();
    try {
      const dest = { transport: 'udp' as const, host: '127.0.0.1', port: f.sip.udp };
      assert.ok(await answersOptions(f.sip.udp), 'OPTIONS answered 200');
      const call = ua.invite(dest, CH.main, '+16465559999', [['User-to-User', f.uui({ ...uuiBase, callId: vc1, transactionId: 'tx-after-fuzz' })]]);
      const fin = await call.final;
      assert.equal(fin.status, 200, `${fin.status} ${fin.headers.get('warning')} active: ${await metric(f, /handoff_agent_active_calls\{agent="bot"\} (\d+)/)}`);
      assert.equal((await call.bye()).status, 200);
    } finally {
      await ua.close();
    }
    const readyz = await fetch(`${f.server.httpUrl}/readyz`);
    assert.equal(readyz.status, 200);
  });
});

describe('an answer the caller never acknowledges [sqlite]', () => {
  let f: Fixture;
  let agent: dgram.Socket;
  const agentHeard: string[] = [];
  before(async () => {
    f = await startFixture({ webhooks: false });
    agent = dgram.createSocket('udp4');
    await new Promise<void>((r) => agent.bind(f.agents.small, '127.0.0.1', () => r()));
    agent.on('message', (buf, rinfo) => {
      agentHeard.push(buf.toString('latin1'));
      const req = parseDatagram(buf);
      if (!(req instanceof SipRequest) || req.method === 'ACK') return;
      const res = createResponse(req, 200, { toTag: 'agent-tag', headers: [['Contact', `<sip:bot@127.0.0.1:${f.agents.small}>`]] });
      agent.send(serialize(res), rinfo.port, rinfo.address);
    });
  });
  after(async () => {
    agent?.close();
    await f?.close();
  });

  test('is ended 64*T1 after the 2xx with a BYE to both parties; the agent slot is given back', { timeout: 60_000 }, async () => {
    const silent = dgram.createSocket('udp4');
    const heard: string[] = [];
    silent.on('message', (m) => heard.push(m.toString('latin1')));
    await new Promise<void>((r) => silent.bind(0, '127.0.0.1', () => r()));
    try {
      const vc1 = await f.createCall();
      const uui = f.uui({ orgId: ORG_A, scrt2Domain: DOMAIN_A, token: await f.token('a'), callId: vc1, transactionId: 'tx-no-ack' });
      silent.send(invite(`sip:${CH.small}@127.0.0.1:${f.sip.udp}`, '+16465558888', 'never-acked', [`User-to-User: ${uui}`], silent.address().port), f.sip.udp, '127.0.0.1');
      await waitFor(() => heard.some((m) => m.startsWith('BYE ')), 45_000);
      assert.ok(heard.some((m) => m.startsWith('SIP/2.0 200')), 'the caller was answered');
      const bye = heard.find((m) => m.startsWith('BYE '));
      assert.ok(bye, 'and, never acknowledging, got a BYE');
      assert.match(bye, /Reason: Q\.850 ;cause=16 ;text="no-ack"/);
      assert.ok(agentHeard.some((m) => m.startsWith('BYE ') && m.includes('text="no-ack"')), 'the agent got one too');
      await new Promise((r) => setTimeout(r, 200));
      assert.equal(await metric(f, /handoff_agent_active_calls\{agent="small-bot"\} (\d+)/), 0, 'the slot is free');
      const leg = (await f.handoffCalls()).find((c) => c.handoff?.['transactionId'] === 'tx-no-ack');
      assert.equal(leg?.status, 'Ended');
      assert.equal(leg?.disconnectReason, 'no-ack');
    } finally {
      silent.close();
    }
  });
});
