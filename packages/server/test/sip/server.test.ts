import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { HandoffError } from '../../src/domain/errors.js';
import {
  SipError,
  SipRequest,
  SipResponse,
  createRequest,
  newCallId,
  newTag,
  parseDatagram,
  serialize,
  type ClientTransaction,
  type SipServer,
} from '../../src/sip/index.js';
import { LOCAL, hasFinal, optionsRequest, startServer, statuses, udpExchange } from './helpers.js';

function request(lines: string[], body = ''): Buffer {
  return Buffer.from([...lines, `Content-Length: ${Buffer.byteLength(body)}`, '', body].join('\r\n'));
}

let n = 0;
function req(method: string, extra: string[] = [], opts: { uri?: string; branch?: string; callId?: string; cseqMethod?: string; body?: string } = {}): Buffer {
  n++;
  return request(
    [
      `${method} ${opts.uri ?? 'sip:svc@127.0.0.1'} SIP/2.0`,
      `Via: SIP/2.0/UDP 127.0.0.1:9;branch=${opts.branch ?? `z9hG4bKt${n}x${Date.now()}`};rport`,
      'To: <sip:svc@127.0.0.1>',
      `From: <sip:tester@127.0.0.1>;tag=f${n}`,
      `Call-ID: ${opts.callId ?? `c${n}-${Date.now()}`}`,
      `CSeq: 1 ${opts.cseqMethod ?? method}`,
      ...extra,
    ],
    opts.body,
  );
}

function responses(bufs: Buffer[]): SipResponse[] {
  return bufs.map((b) => parseDatagram(b)).filter((r): r is SipResponse => r instanceof SipResponse);
}

async function finalOf(port: number, data: Buffer): Promise<SipResponse> {
  const got = responses(await udpExchange(port, data, 2000, hasFinal)).filter((r) => r.status >= 200);
  assert.ok(got[0], 'a final response');
  return got[0];
}

describe('SipServer endpoint behaviour (UDP)', () => {
  let server: SipServer;
  let port = 0;

  before(async () => {
    server = await startServer({ supported: ['timer'], forwardedMethods: ['INFO'], limits: { maxMessageSize: 2048 } });
    server.onRequest('INVITE', (tx) => {
      const subject = tx.request.headers.get('subject');
      if (subject === 'handoff') throw new HandoffError('LEASE_NOT_FOUND', 'no lease\r\nInjected: yes');
      if (subject === 'sip') throw new SipError(503, { headers: [['Retry-After', '7']], warning: 'busy' });
      if (subject === 'boom') return Promise.reject(new Error('internal detail'));
      if (subject === 'ring') {
        tx.reply(180);
        return;
      }
      tx.reply(486);
    });
    server.onRequest('INFO', (tx) => void tx.reply(200));
    port = server.addresses().udp!.port;
  });

  after(async () => {
    await server.close();
  });

  test('OPTIONS → 200 with Allow, Accept, Supported', async () => {
    const res = await finalOf(port, req('OPTIONS'));
    assert.equal(res.status, 200);
    assert.deepEqual(res.headers.getAll('allow').sort(), ['ACK', 'CANCEL', 'INFO', 'INVITE', 'OPTIONS']);
    assert.equal(res.headers.get('accept'), 'application/sdp');
    assert.equal(res.headers.get('supported'), 'timer');
    assert.ok(res.to.tag, 'To tag added');
  });

  test('known method without handler → 405 with Allow; unknown → 501 with Allow', async () => {
    const r405 = await finalOf(port, req('BYE'));
    assert.equal(r405.status, 405);
    assert.ok(r405.headers.getAll('allow').includes('INVITE'));
    const r501 = await finalOf(port, req('FROBNICATE'));
    assert.equal(r501.status, 501);
    assert.ok(r501.headers.has('allow'));
  });

  test('an INVITE refused before any handler keeps only its identity and the answer while it waits for the ACK', async () => {
    const callId = `refused-${Date.now()}`;
    const long = 'a header value long enough to be a slice of the datagram text';
    const res = await finalOf(port, req('INVITE', ['Require: foo', `X-Note: ${long}`], { callId }));
    assert.equal(res.status, 420);
    const servers = (server.transactions as unknown as { servers: Map<string, { request: SipRequest; lastStatus: number; state: string }> }).servers;
    const tx = [...servers.values()].find((t) => t.request.callId === callId);
    assert.ok(tx, 'the INVITE transaction waits for its ACK');
    assert.equal(tx.state, 'completed');
    assert.equal(tx.lastStatus, 420);
    assert.equal(tx.request.headers.get('x-note'), undefined);
    assert.equal(tx.request.cseq.method, 'INVITE');
  });

  test('unsupported Request-URI scheme → 416; unsupported Require → 420 with Unsupported', async () => {
    assert.equal((await finalOf(port, req('OPTIONS', [], { uri: 'mailto:a@example.com' }))).status, 416);
    const r420 = await finalOf(port, req('OPTIONS', ['Require: timer, foo, bar']));
    assert.equal(r420.status, 420);
    assert.equal(r420.headers.get('unsupported'), 'foo');
    assert.deepEqual(r420.headers.getAll('unsupported'), ['foo', 'bar']);
    assert.equal((await finalOf(port, req('OPTIONS', ['Require: timer']))).status, 200);
  });

  test('a body the endpoint cannot read → 415 with Accept', async () => {
    const res = await finalOf(port, req('INVITE', ['Content-Type: text/plain'], { body: 'hello' }));
    assert.equal(res.status, 415);
    assert.equal(res.headers.get('accept'), 'application/sdp');
  });

  test('forwarded methods: Max-Forwards 0 → 483, own looped Via → 482; OPTIONS with 0 is still answered', async () => {
    assert.equal((await finalOf(port, req('INFO', ['Max-Forwards: 0']))).status, 483);
    assert.equal((await finalOf(port, req('OPTIONS', ['Max-Forwards: 0']))).status, 200);
    assert.equal((await finalOf(port, req('INFO', ['Max-Forwards: 5']))).status, 200);
    // a request that went out through us and came back unchanged
    const original = parseDatagram(req('INFO', ['Max-Forwards: 5'], { callId: 'loop-1' })) as SipRequest;
    const looped = original.clone();
    looped.headers.prepend('Via', server.transactions.localVia({ transport: 'udp', host: LOCAL, port }, server.loopBranch(original)));
    looped.headers.prepend('Via', 'SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKnexthop;rport');
    assert.equal(server.isLooped(looped), true);
    assert.equal((await finalOf(port, serialize(looped))).status, 482);
    // a spiral: same Via of ours, but the Request-URI was retargeted
    const spiral = looped.clone();
    spiral.uri = 'sip:other@127.0.0.1';
    spiral.headers.replaceFirst('via', 'SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKnexthop2;rport');
    assert.equal(server.isLooped(spiral), false);
  });

  test('merged request (same From tag/Call-ID/CSeq, other branch) → 482', async () => {
    const sock = dgram.createSocket('udp4');
    const got: Buffer[] = [];
    sock.on('message', (m) => got.push(m));
    await new Promise<void>((r) => sock.bind(0, LOCAL, () => r()));
    const a = request(['INVITE sip:svc@127.0.0.1 SIP/2.0', 'Via: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKm1;rport', 'To: <sip:svc@127.0.0.1>', 'From: <sip:x@127.0.0.1>;tag=same', 'Call-ID: merged-1', 'CSeq: 1 INVITE', 'Subject: ring']);
    const b = Buffer.from(a.toString('latin1').replace('z9hG4bKm1', 'z9hG4bKm2'), 'latin1');
    sock.send(a, port, LOCAL);
    await new Promise((r) => setTimeout(r, 50));
    sock.send(b, port, LOCAL);
    await new Promise((r) => setTimeout(r, 100));
    sock.close();
    const byBranch = responses(got).map((r) => `${r.via.branch}:${r.status}`);
    assert.ok(byBranch.includes('z9hG4bKm1:180'));
    assert.ok(byBranch.includes('z9hG4bKm2:482'), byBranch.join(','));
  });

  test('CANCEL → 200 to the CANCEL and 487 to the INVITE', async () => {
    const sock = dgram.createSocket('udp4');
    const got: Buffer[] = [];
    sock.on('message', (m) => got.push(m));
    await new Promise<void>((r) => sock.bind(0, LOCAL, () => r()));
    const invite = req('INVITE', ['Subject: ring'], { branch: 'z9hG4bKcancelme', callId: 'cancel-1' });
    sock.send(invite, port, LOCAL);
    await new Promise((r) => setTimeout(r, 50));
    const cancelText = invite.toString('latin1').replace('INVITE sip:', 'CANCEL sip:').replace('CSeq: 1 INVITE', 'CSeq: 1 CANCEL').replace('Subject: ring\r\n', '');
    sock.send(Buffer.from(cancelText, 'latin1'), port, LOCAL);
    await new Promise((r) => setTimeout(r, 100));
    sock.close();
    const seen = responses(got).map((r) => `${r.cseq.method} ${r.status}`);
    // the handler rang at once, so no 100 Trying was needed
    assert.deepEqual(seen, ['INVITE 180', 'CANCEL 200', 'INVITE 487']);
  });

  test('handler errors: HandoffError → its SIP status with a sanitised Warning; SipError; others → 500', async () => {
    const h = await finalOf(port, req('INVITE', ['Subject: handoff']));
    assert.equal(h.status, 404);
    assert.match(h.headers.get('warning')!, /^399 \S+ "no leaseInjected: yes"$/);
    assert.equal(h.headers.has('injected'), false);
    const s = await finalOf(port, req('INVITE', ['Subject: sip']));
    assert.equal(s.status, 503);
    assert.equal(s.headers.get('retry-after'), '7');
    const e = await finalOf(port, req('INVITE', ['Subject: boom']));
    assert.equal(e.status, 500);
    assert.equal(e.headers.has('warning'), false, 'internal details are not echoed');
  });

  test('over the size limit → 513; a response or an ACK is never answered', async () => {
    const big = req('OPTIONS', [`X-Pad: ${'p'.repeat(3000)}`]);
    assert.equal((await finalOf(port, big)).status, 513);
    assert.deepEqual(await udpExchange(port, req('ACK', ['CSeq: 2 ACK'])), [], 'a malformed ACK (two CSeq) is not answered');
    assert.deepEqual(await udpExchange(port, Buffer.from('SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKx\r\n\r\n')), []);
  });

  test('counters: by method and status', () => {
    const c = server.counters.snapshot();
    assert.ok(c.receivedRequests.OPTIONS! >= 4);
    assert.ok(c.receivedRequests.OTHER! >= 1);
    assert.ok(c.sentResponses['200']! >= 4);
    assert.ok(c.sentResponses['513']! >= 1);
  });
});

describe('rate limit', () => {
  test('drop: a burst above the bucket is dropped before parsing, others still served', async () => {
    const server = await startServer({ rateLimit: { perSecond: 1, burst: 5, action: 'drop' } });
    try {
      const port = server.addresses().udp!.port;
      const sock = dgram.createSocket('udp4');
      const got: Buffer[] = [];
      sock.on('message', (m) => got.push(m));
      await new Promise<void>((r) => sock.bind(0, LOCAL, () => r()));
      for (let i = 0; i < 20; i++) sock.send(optionsRequest(), port, LOCAL);
      await new Promise((r) => setTimeout(r, 200));
      sock.close();
      assert.equal(got.length, 5);
      assert.equal(server.counters.snapshot().dropped['rate-limited'], 15);
    } finally {
      await server.close();
    }
  });

  test('503: answered with Retry-After', async () => {
    const server = await startServer({ rateLimit: { perSecond: 1, burst: 1, action: '503', retryAfter: 9 } });
    try {
      const port = server.addresses().udp!.port;
      assert.equal((await finalOf(port, optionsRequest())).status, 200);
      const res = await finalOf(port, optionsRequest());
      assert.equal(res.status, 503);
      assert.equal(res.headers.get('retry-after'), '9');
    } finally {
      await server.close();
    }
  });
});

describe('client transactions over real sockets', () => {
  let uas: SipServer;
  let uac: SipServer;

  before(async () => {
    uas = await startServer();
    uas.onRequest('INVITE', (tx) => void tx.reply(486));
    uac = await startServer();
  });

  after(async () => {
    await Promise.all([uas.close(), uac.close()]);
  });

  function send(method: string, transport: 'udp' | 'tcp', host = LOCAL): Promise<number[]> {
    const addr = uas.addresses()[transport]!;
    const r = createRequest({
      method,
      uri: `sip:svc@${LOCAL}:${addr.port}`,
      from: `<sip:uac@${LOCAL}>;tag=${newTag()}`,
      to: `<sip:svc@${LOCAL}>`,
      callId: newCallId(LOCAL),
      cseq: 1,
    });
    return new Promise((resolve) => {
      const seen: number[] = [];
      const timer = setTimeout(() => resolve(seen), 2000);
      uac.sendRequest(r, { transport, host, port: addr.port }, {
        onResponse(_tx: ClientTransaction, res: SipResponse) {
          seen.push(res.status);
          if (res.status >= 200) {
            clearTimeout(timer);
            resolve(seen);
          }
        },
      });
    });
  }

  test('a UDP destination given by host name is resolved (IP literals skip the resolver)', async () => {
    assert.deepEqual(await send('OPTIONS', 'udp', 'localhost'), [200]);
    assert.deepEqual(await send('OPTIONS', 'udp', LOCAL), [200]);
  });

  test('OPTIONS and INVITE over UDP and TCP (ACK of the 486 generated; no 100 before an immediate 486)', async () => {
    assert.deepEqual(await send('OPTIONS', 'udp'), [200]);
    assert.deepEqual(await send('INVITE', 'udp'), [486]);
    assert.deepEqual(await send('OPTIONS', 'tcp'), [200]);
    assert.deepEqual(await send('INVITE', 'tcp'), [486]);
    assert.equal(uac.transport.connectionCount, 1, 'the TCP connection is reused');
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(uas.counters.snapshot().receivedRequests.ACK, 2);
    assert.equal(uas.counters.snapshot().retransmissions, 0, 'the ACK stopped timer G');
  });

  test('connect failure reaches the transaction user', async () => {
    const err = await new Promise<string>((resolve) => {
      const r = createRequest({ method: 'OPTIONS', uri: 'sip:x@127.0.0.1:1', from: '<sip:a@b>;tag=1', to: '<sip:x@b>', callId: newCallId(), cseq: 1 });
      uac.sendRequest(r, { transport: 'tcp', host: LOCAL, port: 1 }, {
        onResponse: () => resolve('response?'),
        onTransportError: (_tx, e) => resolve(e.message),
      });
    });
    assert.match(err, /ECONNREFUSED|closed/);
  });

  test('statuses helper sanity', () => {
    assert.deepEqual(statuses('SIP/2.0 200 OK\r\nX: y\r\n\r\nSIP/2.0 100 Trying\r\n'), [200, 100]);
  });
});

describe('robustness', () => {
  test('a throwing ACK handler is contained and counted; the server keeps answering', async () => {
    const server = await startServer();
    try {
      server.onAck(() => {
        throw new Error('handler bug');
      });
      const port = server.addresses().udp!.port;
      await udpExchange(port, req('ACK', [], { cseqMethod: 'ACK' }), 100);
      assert.equal(server.counters.snapshot().dropped['internal-error'], 1);
      assert.equal((await finalOf(port, optionsRequest())).status, 200);
    } finally {
      await server.close();
    }
  });
});
