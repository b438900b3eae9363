/**
 * SIP workers (HANDOFF_SIP_WORKERS=2): what only several SIP threads can get wrong (the front's
 * routing, agents' limits across threads, escalation and metrics reaching every worker), then the
 * whole hand-off suite and the lifecycle suite again on two workers.
 */
import './with-sip-workers.js';
import './handoff.test.js';
import './lifecycle.test.js';
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import net from 'node:net';
import { UserAgent } from '../../src/sip/user-agent.js';
import { workerFor } from '../../src/sip/workers.js';
import { CH, DOMAIN_A, metric, ORG_A, startFixture, waitFor, type Fixture } from './fixture.js';
import { agent, assertRecordsConsistent, assertSippOk, legsOf } from './scenarios.js';
import { SKIP_SIPP } from './sipp.js';

let serial = 0;
/** A Call-ID the front hands to worker `w` of 2. */
function callIdFor(w: number): string {
  for (;;) {
    const id = `w${w}-${process.pid}-${++serial}@127.0.0.1`;
    if (workerFor(id, 2) === w) return id;
  }
}

describe('SIP workers [sqlite]', { skip: SKIP_SIPP }, () => {
  let f: Fixture;
  let ua: UserAgent;
  before(async () => {
    f = await startFixture({ env: { HANDOFF_SIP_WORKERS: '2', HANDOFF_SIP_RATE_LIMIT: '100' } });
    ua = await UserAgent.start();
  });
  after(async () => {
    await ua?.close();
    await f?.close();
  });
  const dest = () => ({ transport: 'udp' as const, host: '127.0.0.1', port: f.sip.udp });
  const uui = async (tx: string, callId?: string) =>
    f.uui({ orgId: ORG_A, scrt2Domain: DOMAIN_A, token: await f.token('a'), transactionId: tx, ...(callId ? { callId } : {}) });

  test('the front: an INVITE and its retransmissions reach one worker; the answers leave from the public port', { timeout: 30_000 }, async () => {
    const refused = () => metric(f, /handoff_sip_invite_response_seconds_count\{status="404"\} (\d+)/);
    const before404 = await refused();
    const datagram = Buffer.from(
      [
        'INVITE sip:+19995550123@127.0.0.1 SIP/2.0',
        'Via: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKfront1',
        'Max-Forwards: 70',
        'From: <sip:+14155550001@x>;tag=f1',
        'To: <sip:+19995550123@127.0.0.1>',
        `Call-ID: front-${process.pid}-${Date.now()}`,
        'CSeq: 1 INVITE',
        'Content-Length: 0',
        '',
        '',
      ].join('\r\n'),
    );
    const sock = dgram.createSocket('udp4');
    const answers: Array<{ text: string; port: number }> = [];
    sock.on('message', (m, rinfo) => answers.push({ text: m.toString('latin1'), port: rinfo.port }));
    await new Promise<void>((r) => sock.bind(0, '127.0.0.1', () => r()));
    try {
      for (let i = 0; i < 6; i++) {
        sock.send(datagram, f.sip.udp, '127.0.0.1');
        await waitFor(() => answers.filter((a) => a.text.startsWith('SIP/2.0 404')).length > i, 5000);
      }
      const finals = answers.filter((a) => a.text.startsWith('SIP/2.0 404'));
      assert.equal(finals.length, 6);
      assert.ok(
        finals.every((a) => a.text === finals[0]!.text),
        'every retransmission got the same refusal, byte for byte (one transaction)',
      );
      assert.ok(
        answers.every((a) => a.port === f.sip.udp),
        'answers come from the port the INVITE was sent to',
      );
      assert.equal((await refused()) - before404, 1, 'one INVITE handled, five retransmissions absorbed');
    } finally {
      sock.close();
    }
  });

  test("an agent's limit holds across workers: full on one worker is full on the other", { timeout: 60_000 }, async () => {
    const tiny = await agent(f, 'tiny', { kind: 'answer', then: 'wait-bye' }, 2);
    const held = ua.invite(dest(), CH.tiny, '+14155556001', [['User-to-User', await uui('tx-w-1')]], callIdFor(0));
    assert.equal((await held.final).status, 200);
    assert.equal(f.server.sip.activeCalls('tiny-bot'), 1);
    const refused = ua.invite(dest(), CH.tiny, '+14155556002', [['User-to-User', await uui('tx-w-2')]], callIdFor(1));
    const res = await refused.final;
    assert.equal(res.status, 503, 'the other worker sees the slot taken');
    assert.equal(res.headers.get('retry-after'), '5');
    assert.equal((await held.bye()).status, 200);
    assert.ok(await waitFor(() => f.server.sip.activeCalls('tiny-bot') === 0), 'slot released');
    const next = ua.invite(dest(), CH.tiny, '+14155556003', [['User-to-User', await uui('tx-w-3')]], callIdFor(1));
    assert.equal((await next.final).status, 200, 'and then taken by the other worker');
    assert.equal((await next.bye()).status, 200);
    assertSippOk(await tiny.done, 'tiny agent');
  });

  test('escalation reaches the worker that holds the call; the agents gauge adds up the workers', { timeout: 60_000 }, async () => {
    const bot = await agent(f, 'bot', { kind: 'answer', then: 'wait-bye' }, 2);
    const vc1 = await f.createCall();
    const [c0, c1] = await Promise.all(
      [0, 1].map(async (w) => ua.invite(dest(), CH.main, `+1415555620${w}`, [['User-to-User', await uui(`tx-esc-${w}`, vc1)]], callIdFor(w))),
    );
    for (const c of [c0!, c1!]) assert.equal((await c.final).status, 200);
    assert.ok(await waitFor(async () => (await metric(f, /handoff_agent_active_calls\{agent="bot"\} (\d+)/)) === 2), 'two calls up, one per worker');
    const legs = await waitFor(async () => {
      const l = await legsOf(f, vc1, (leg) => leg.status === 'Answered');
      return l.length === 2 ? l : null;
    });
    assert.ok(legs, 'both answered');
    for (const leg of legs) assert.equal(await f.server.sip.endCall(leg.voiceCallId, 'escalated-test'), true);
    await Promise.all([c0!.byeArrived, c1!.byeArrived]);
    assertSippOk(await bot.done, 'agent got both BYEs');
    for (const leg of legs) assert.equal(await f.server.sip.endCall(leg.voiceCallId, 'again'), false, 'ended already');
    const ended = await legsOf(f, vc1, (leg) => leg.isActiveCall === false && leg.disconnectReason === 'escalated-test');
    assert.equal(ended.length, 2);
    assert.ok(await waitFor(async () => (await metric(f, /handoff_agent_active_calls\{agent="bot"\} (\d+)/)) === 0));
  });

  test('the front rate-limits by source before any worker sees the datagram', { timeout: 30_000 }, async () => {
    // A room for every answer, and the OPTIONS sent 50 at a time: UDP may drop what overflows a socket's
    // buffer, which neither the front nor a worker would ever see.
    const sock = dgram.createSocket({ type: 'udp4', recvBufferSize: 1 << 20 });
    let answered = 0;
    sock.on('message', () => answered++);
    await new Promise<void>((r) => sock.bind(0, '127.0.0.1', () => r()));
    try {
      for (let i = 0; i < 600; i++) {
        if (i % 50 === 0) await new Promise((r) => setTimeout(r, 5));
        const text = [
          'OPTIONS sip:127.0.0.1 SIP/2.0',
          `Via: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKrl${i}`,
          'Max-Forwards: 70',
          'From: <sip:probe@x>;tag=rl',
          'To: <sip:127.0.0.1>',
          `Call-ID: rl-${i}-${process.pid}`,
          'CSeq: 1 OPTIONS',
          'Content-Length: 0',
          '',
          '',
        ].join('\r\n');
        sock.send(text, f.sip.udp, '127.0.0.1');
      }
      const dropped = () => metric(f, /handoff_sip_dropped_total\{reason="rate-limited"\} (\d+)/);
      await waitFor(async () => answered + (await dropped()) >= 600, 5000);
      await new Promise((r) => setTimeout(r, 100));
      assert.ok(answered > 0 && answered < 600, `${answered} of 600 answered`);
      assert.equal(answered + (await dropped()), 600, 'each OPTIONS answered by a worker or dropped by the front');
    } finally {
      sock.close();
    }
  });

  test('afterwards every hand-off VoiceCall is consistent', async () => {
    assert.ok((await assertRecordsConsistent(f)) >= 4);
  });
});

/** Whether a UDP (and TCP) port of 127.0.0.1 can be bound now. */
async function bindable(port: number): Promise<boolean> {
  const udp = dgram.createSocket('udp4');
  const u = await new Promise<boolean>((resolve) => {
    udp.once('error', () => resolve(false));
    udp.bind(port, '127.0.0.1', () => resolve(true));
  });
  udp.close();
  const tcp = net.createServer();
  const t = await new Promise<boolean>((resolve) => {
    tcp.once('error', () => resolve(false));
    tcp.listen(port, '127.0.0.1', () => resolve(true));
  });
  if (t) await new Promise((r) => tcp.close(r));
  return u && t;
}

describe('SIP workers that cannot start', () => {
  test("a worker's port in use: the start fails with the reason, and nothing is left listening", { timeout: 30_000 }, async () => {
    // Below the kernel's ephemeral range, where every other test's port 0 lands, so no parallel test
    // takes these ports meanwhile: base (worker 0's UDP) and base + 2 (worker 1's UDP and TCP).
    let base = 0;
    for (let tries = 0; tries < 50 && base === 0; tries++) {
      const p = 20_000 + 2 * Math.floor(Math.random() * 5_000);
      if ((await bindable(p)) && (await bindable(p + 2))) base = p;
    }
    assert.ok(base > 0, 'two free ports');
    const taken = dgram.createSocket('udp4');
    await new Promise<void>((r) => taken.bind(base + 2, '127.0.0.1', () => r()));
    try {
      await assert.rejects(
        startFixture({ env: { HANDOFF_SIP_WORKERS: '2', HANDOFF_SIP_WORKER_PORT: String(base) } }),
        (err: Error) => /SIP worker 1: .*EADDRINUSE/.test(err.message),
      );
    } finally {
      taken.close();
    }
    // Worker 0's port and worker 1's were let go: both can be bound again
    assert.equal(await bindable(base), true, "worker 0's port");
    assert.equal(await bindable(base + 2), true, "worker 1's ports");
  });
});
