import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import {
  ManualTimers,
  SipRequest,
  SipResponse,
  TransactionLayer,
  createRequest,
  createResponse,
  formatVia,
  parseDatagram,
  serialize,
  type ClientTransaction,
  type ServerTransaction,
  type SipDestination,
  type SipMessage,
  type SipSource,
  type TransactionOptions,
  type TransactionTransport,
  type TransactionUser,
} from '../../src/sip/index.js';

const T1 = 500;
const T2 = 4000;
const T4 = 5000;

interface Sent {
  at: number;
  msg: SipMessage;
  dest: SipDestination;
  resend: boolean;
  /** What resend() was given. */
  bytes?: Buffer;
}

/** A transport that records what the transaction layer sends, stamped with manual time. */
class FakeTransport implements TransactionTransport {
  sent: Sent[] = [];
  advertisedHost = '192.0.2.1';
  constructor(private readonly timers: ManualTimers) {}
  advertisedPort(): number {
    return 5060;
  }
  send(msg: SipMessage, dest: SipDestination): Buffer {
    const data = serialize(msg);
    this.sent.push({ at: this.timers.now(), msg, dest, resend: false });
    return data;
  }
  resend(data: Buffer, dest: SipDestination): void {
    this.sent.push({ at: this.timers.now(), msg: parseDatagram(data) as SipMessage, dest, resend: true, bytes: data });
  }
  statuses(): number[] {
    return this.sent.filter((s) => s.msg.kind === 'response').map((s) => (s.msg as SipResponse).status);
  }
}

class FakeTu implements TransactionUser {
  requests: ServerTransaction[] = [];
  acks: Array<{ ack: SipRequest; invite: ServerTransaction | undefined }> = [];
  cancels: ServerTransaction[] = [];
  strays: SipResponse[] = [];
  ackTimeouts: ServerTransaction[] = [];
  onRequest(tx: ServerTransaction): void {
    this.requests.push(tx);
  }
  onAck(ack: SipRequest, _src: SipSource, invite: ServerTransaction | undefined): void {
    this.acks.push({ ack, invite });
  }
  onCancel(invite: ServerTransaction, _cancel: SipRequest): void {
    this.cancels.push(invite);
    invite.reply(487);
  }
  onStrayResponse(res: SipResponse): void {
    this.strays.push(res);
  }
  onParseError(): void {}
  onAckTimeout(tx: ServerTransaction): void {
    this.ackTimeouts.push(tx);
  }
}

function setup(opts: TransactionOptions = {}) {
  const timers = new ManualTimers(0);
  const transport = new FakeTransport(timers);
  const tu = new FakeTu();
  const layer = new TransactionLayer(transport, tu, { t1: T1, t2: T2, t4: T4, ...opts }, timers);
  return { timers, transport, tu, layer };
}

const UDP_SRC: SipSource = { transport: 'udp', remoteAddress: '192.0.2.9', remotePort: 5062, localAddress: '192.0.2.1', localPort: 5060, connectionId: 0 };
const TCP_SRC: SipSource = { ...UDP_SRC, transport: 'tcp', connectionId: 7 };

function incoming(method: string, opts: { branch?: string | null; cseq?: number; callId?: string; toTag?: string; fromTag?: string } = {}): SipRequest {
  const branch = opts.branch === undefined ? 'z9hG4bKclient1' : opts.branch;
  const req = createRequest({
    method,
    uri: 'sip:svc@192.0.2.1',
    from: `<sip:caller@192.0.2.9>;tag=${opts.fromTag ?? 'ft'}`,
    to: `<sip:svc@192.0.2.1>${opts.toTag ? `;tag=${opts.toTag}` : ''}`,
    callId: opts.callId ?? 'call-1',
    cseq: opts.cseq ?? 1,
    via: `SIP/2.0/UDP 192.0.2.9:5062${branch === null ? '' : `;branch=${branch}`}`,
  });
  return req;
}

function retransmitTimes(t: FakeTransport): number[] {
  return t.sent.filter((s) => s.resend).map((s) => s.at);
}

describe('server INVITE transaction', () => {
  test('no 100 Trying when the TU answered in the same turn: one datagram for a refusal or a ring', () => {
    for (const status of [503, 404, 180]) {
      const { layer, tu, transport } = setup();
      tu.onRequest = (tx) => void tx.reply(status);
      layer.onRequest(incoming('INVITE'), UDP_SRC);
      assert.deepEqual(transport.statuses(), [status]);
      layer.onRequest(incoming('INVITE'), UDP_SRC);
      assert.deepEqual(transport.statuses(), [status, status], 'a retransmission replays it');
    }
  });

  test('100 Trying at once; retransmissions absorbed and the last response replayed', () => {
    const { layer, tu, transport } = setup();
    layer.onRequest(incoming('INVITE'), UDP_SRC);
    assert.deepEqual(transport.statuses(), [100]);
    layer.onRequest(incoming('INVITE'), UDP_SRC);
    assert.equal(tu.requests.length, 1, 'the TU sees the INVITE once');
    assert.deepEqual(transport.statuses(), [100, 100], '100 replayed');
    tu.requests[0]!.reply(180);
    layer.onRequest(incoming('INVITE'), UDP_SRC);
    assert.deepEqual(transport.statuses(), [100, 100, 180, 180]);
    assert.equal(transport.sent[0]!.dest.host, '192.0.2.9');
    assert.equal(transport.sent[0]!.dest.port, 5062);
  });

  test('non-2xx final: timer G doubles up to T2 until ACK, then timer I', () => {
    const { layer, tu, transport, timers } = setup();
    layer.onRequest(incoming('INVITE'), UDP_SRC);
    const tx = tu.requests[0]!;
    tx.reply(486);
    timers.advance(8000);
    assert.deepEqual(retransmitTimes(transport), [500, 1500, 3500, 7500]);
    timers.advance(4000);
    assert.deepEqual(retransmitTimes(transport), [500, 1500, 3500, 7500, 11500], 'capped at T2');
    // an INVITE retransmission replays the final response
    layer.onRequest(incoming('INVITE'), UDP_SRC);
    assert.equal(transport.statuses().at(-1), 486);
    const ack = incoming('ACK', { toTag: tx.toTag });
    layer.onRequest(ack, UDP_SRC);
    assert.equal(tx.state, 'confirmed');
    assert.equal(tu.acks.length, 0, 'the ACK of a non-2xx stays in the transaction');
    const count = transport.sent.length;
    timers.advance(10_000);
    assert.equal(transport.sent.length, count, 'no retransmission after ACK');
    assert.equal(tx.state, 'terminated');
    assert.deepEqual(layer.size, { server: 0, client: 0 });
    assert.equal(timers.pendingCount, 0, 'every timer cancelled or fired');
  });

  test('timer H: no ACK within 64*T1 ends the transaction and tells the TU', () => {
    const { layer, tu, transport, timers } = setup();
    layer.onRequest(incoming('INVITE'), UDP_SRC);
    tu.requests[0]!.reply(603);
    timers.advance(64 * T1 - 1);
    assert.equal(tu.ackTimeouts.length, 0);
    assert.deepEqual(retransmitTimes(transport), [500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500]);
    timers.advance(1);
    assert.equal(tu.ackTimeouts.length, 1);
    assert.equal(tu.requests[0]!.state, 'terminated');
  });

  test('over TCP: no retransmission, timer I is zero', () => {
    const { layer, tu, transport, timers } = setup();
    layer.onRequest(incoming('INVITE'), TCP_SRC);
    const tx = tu.requests[0]!;
    tx.reply(404);
    timers.advance(10_000);
    assert.deepEqual(retransmitTimes(transport), []);
    assert.equal(transport.sent[0]!.dest.connectionId, 7);
    layer.onRequest(incoming('ACK', { toTag: tx.toTag }), TCP_SRC);
    timers.advance(0);
    assert.equal(tx.state, 'terminated');
  });

  test('2xx (UA core): retransmitted until the ACK (new branch) arrives; INVITE retransmissions absorbed', () => {
    const { layer, tu, transport, timers } = setup();
    layer.onRequest(incoming('INVITE'), UDP_SRC);
    const tx = tu.requests[0]!;
    tx.reply(200);
    assert.equal(tx.state, 'accepted');
    timers.advance(4000);
    assert.deepEqual(retransmitTimes(transport), [500, 1500, 3500]);
    const before = transport.sent.length;
    layer.onRequest(incoming('INVITE'), UDP_SRC);
    assert.equal(transport.sent.length, before, 'absorbed in Accepted (RFC 6026)');
    assert.equal(tu.requests.length, 1);
    layer.onRequest(incoming('ACK', { branch: 'z9hG4bKack2xx', toTag: tx.toTag }), UDP_SRC);
    assert.equal(tu.acks.length, 1);
    assert.equal(tu.acks[0]!.invite, tx);
    timers.advance(10_000);
    assert.deepEqual(retransmitTimes(transport), [500, 1500, 3500], 'stopped by the ACK');
    timers.advance(64 * T1);
    assert.equal(tx.state, 'terminated', 'timer L');
    assert.equal(tu.ackTimeouts.length, 0);
  });

  test('2xx never ACKed: retransmission stops at 64*T1 and the TU is told', () => {
    const { layer, tu, timers } = setup();
    layer.onRequest(incoming('INVITE'), UDP_SRC);
    tu.requests[0]!.reply(200);
    timers.advance(64 * T1);
    assert.equal(tu.ackTimeouts.length, 1);
  });

  test('2xx (proxy mode): forwarded once, not retransmitted; further 2xx pass', () => {
    const { layer, tu, transport, timers } = setup({ retransmit2xx: false });
    layer.onRequest(incoming('INVITE'), UDP_SRC);
    const tx = tu.requests[0]!;
    tx.reply(200);
    tx.reply(200);
    tx.reply(486);
    timers.advance(10_000);
    assert.deepEqual(transport.statuses(), [100, 200, 200]);
  });

  test('CANCEL: 200 to the CANCEL with the INVITE To tag, then 487 to the INVITE', () => {
    const { layer, tu, transport } = setup();
    layer.onRequest(incoming('INVITE'), UDP_SRC);
    const invite = tu.requests[0]!;
    invite.reply(180);
    layer.onRequest(incoming('CANCEL'), UDP_SRC);
    assert.equal(tu.cancels[0], invite);
    assert.equal(invite.cancelled, true);
    const [cancel200, final487] = transport.sent.slice(-2).map((s) => s.msg as SipResponse);
    assert.equal(cancel200!.status, 200);
    assert.equal(cancel200!.cseq.method, 'CANCEL');
    assert.equal(cancel200!.to.tag, invite.toTag);
    assert.equal(final487!.status, 487);
    assert.equal(final487!.to.tag, invite.toTag);
    // the CANCEL retransmitted: 200 replayed, TU not told again
    layer.onRequest(incoming('CANCEL'), UDP_SRC);
    assert.equal(tu.cancels.length, 1);
    assert.equal(transport.statuses().at(-1), 200);
  });

  test('CANCEL matching nothing gets 481; CANCEL after the final gets 200 only', () => {
    const { layer, tu, transport } = setup();
    layer.onRequest(incoming('CANCEL', { branch: 'z9hG4bKnothing' }), UDP_SRC);
    assert.equal(transport.statuses().at(-1), 481);
    layer.onRequest(incoming('INVITE'), UDP_SRC);
    tu.requests[0]!.reply(486);
    layer.onRequest(incoming('CANCEL'), UDP_SRC);
    assert.equal(transport.statuses().at(-1), 200);
    assert.equal(tu.cancels.length, 0);
  });

  test('RFC 2543 peer (no branch): retransmission and ACK matched by §17.2.3 rules', () => {
    const { layer, tu, transport, timers } = setup();
    layer.onRequest(incoming('INVITE', { branch: null }), UDP_SRC);
    layer.onRequest(incoming('INVITE', { branch: null }), UDP_SRC);
    assert.equal(tu.requests.length, 1);
    const tx = tu.requests[0]!;
    tx.reply(480);
    layer.onRequest(incoming('ACK', { branch: null, toTag: tx.toTag }), UDP_SRC);
    assert.equal(tx.state, 'confirmed');
    layer.onRequest(incoming('INVITE', { branch: 'z9hG4bK' }), UDP_SRC);
    assert.equal(tu.requests.length, 2, 'a bare magic cookie is not an RFC 3261 branch (RFC 4475 badbranch)');
    timers.advance(T4);
    assert.equal(tx.state, 'terminated');
    assert.deepEqual(transport.statuses(), [100, 100, 480, 100]);
  });

  test('delayed 100 Trying: sent after 200 ms only when the TU has not answered', () => {
    const { layer, tu, transport, timers } = setup({ trying: 'delayed' });
    layer.onRequest(incoming('INVITE', { callId: 'a' }), UDP_SRC);
    layer.onRequest(incoming('INVITE', { callId: 'b', branch: 'z9hG4bKother' }), UDP_SRC);
    tu.requests[1]!.reply(180);
    timers.advance(200);
    assert.deepEqual(transport.statuses(), [180, 100]);
  });

  test('merged request: same From tag, Call-ID and CSeq on another branch', () => {
    const { layer, tu } = setup();
    layer.onRequest(incoming('INVITE'), UDP_SRC);
    layer.onRequest(incoming('INVITE', { branch: 'z9hG4bKforked' }), UDP_SRC);
    assert.equal(tu.requests[1]!.mergedWith, tu.requests[0]);
  });
});

describe('server non-INVITE transaction', () => {
  test('retransmission absorbed in Trying, replayed after the response; timer J', () => {
    const { layer, tu, transport, timers } = setup();
    layer.onRequest(incoming('OPTIONS'), UDP_SRC);
    layer.onRequest(incoming('OPTIONS'), UDP_SRC);
    assert.equal(transport.sent.length, 0, 'nothing to replay in Trying');
    tu.requests[0]!.reply(200);
    layer.onRequest(incoming('OPTIONS'), UDP_SRC);
    assert.deepEqual(transport.statuses(), [200, 200]);
    assert.equal(tu.requests.length, 1);
    timers.advance(64 * T1 - 1);
    assert.equal(layer.size.server, 1);
    timers.advance(1);
    assert.equal(layer.size.server, 0, 'timer J');
    layer.onRequest(incoming('OPTIONS'), UDP_SRC);
    assert.equal(tu.requests.length, 2, 'a new transaction after J');
  });
});

describe('what a transaction keeps once completed or released', () => {
  const LONG = 'a value long enough to be a slice of the datagram text';

  test('server, over UDP: the response bytes and the request identity only, retransmissions still replayed', () => {
    const { layer, tu, transport, timers } = setup();
    const req = incoming('BYE', { toTag: 'tt' });
    req.headers.append('X-Custom', LONG);
    req.body = Buffer.from('a body');
    layer.onRequest(req, UDP_SRC);
    const tx = tu.requests[0]!;
    assert.equal(tx.request.headers.get('x-custom'), LONG, 'whole until the final response');
    const res = tx.reply(200);
    assert.equal(tx.lastStatus, 200);
    assert.equal(tx.finalSent, true);
    assert.equal(tx.lastResponse, undefined);
    assert.equal(tx.request.headers.get('x-custom'), undefined);
    assert.equal(tx.request.body.length, 0);
    const r = tx.request;
    assert.deepEqual(
      [r.method, r.uri, r.callId, r.cseq.seq, r.cseq.method, r.from.tag, r.to.tag, r.via.branch],
      ['BYE', 'sip:svc@192.0.2.1', 'call-1', 1, 'BYE', 'ft', 'tt', 'z9hG4bKclient1'],
    );
    layer.onRequest(incoming('BYE', { toTag: 'tt' }), UDP_SRC);
    assert.equal(tu.requests.length, 1, 'the retransmission is absorbed');
    const replayed = transport.sent.at(-1)!;
    assert.equal(replayed.resend, true);
    assert.equal(serialize(replayed.msg).toString(), serialize(res).toString(), 'the same response, byte for byte');
    assert.equal(replayed.bytes!.buffer.byteLength, replayed.bytes!.byteLength, 'kept in memory of its own, not in a slab of the shared pool');
    timers.advance(64 * T1);
    assert.equal(layer.size.server, 0, 'timer J');
  });

  test('server, dialogless: the merged-request entry still goes with timer J', () => {
    const { layer, tu, timers } = setup();
    layer.onRequest(incoming('OPTIONS'), UDP_SRC);
    tu.requests[0]!.reply(200);
    timers.advance(64 * T1);
    layer.onRequest(incoming('OPTIONS', { branch: 'z9hG4bKlater' }), UDP_SRC);
    assert.equal(tu.requests.length, 2);
    assert.equal(tu.requests[1]!.mergedWith, undefined);
  });

  test('server, over TCP: the transaction ends at once and keeps its request whole', () => {
    const { layer, tu, timers } = setup();
    const req = incoming('BYE', { toTag: 'tt' });
    req.headers.append('X-Custom', LONG);
    layer.onRequest(req, TCP_SRC);
    const tx = tu.requests[0]!;
    tx.reply(200);
    assert.equal(tx.request.headers.get('x-custom'), LONG);
    assert.equal(tx.lastResponse?.status, 200);
    timers.advance(0);
    assert.equal(tx.state, 'terminated');
  });

  test('server: the TU gets the whole CANCEL though its transaction keeps only the identity', () => {
    const { layer, tu } = setup();
    const cancels: SipRequest[] = [];
    tu.onCancel = (invite: ServerTransaction, cancel: SipRequest) => {
      cancels.push(cancel);
      invite.reply(487);
    };
    layer.onRequest(incoming('INVITE'), UDP_SRC);
    const cancel = incoming('CANCEL');
    cancel.headers.append('Reason', 'SIP;cause=200;text="Call completed elsewhere"');
    layer.onRequest(cancel, UDP_SRC);
    assert.equal(cancels.length, 1);
    assert.equal(cancels[0]!.headers.get('reason'), 'SIP;cause=200;text="Call completed elsewhere"');
  });

  test('server INVITE released by its user after the 2xx: identity and dialog headers stay, retransmissions are absorbed, a further 2xx goes out', () => {
    const { layer, tu, transport, timers } = setup({ retransmit2xx: false });
    const req = incoming('INVITE');
    req.headers.append('Contact', '<sip:caller@192.0.2.9:5062>');
    req.headers.append('Record-Route', '<sip:edge.example.com;lr>');
    req.headers.append('X-Custom', LONG);
    req.body = Buffer.from('v=0');
    layer.onRequest(req, UDP_SRC);
    const tx = tu.requests[0]!;
    tx.reply(200);
    tx.release();
    assert.equal(tx.state, 'accepted');
    assert.equal(tx.lastResponse, undefined);
    assert.equal(tx.finalSent, true);
    const r = tx.request;
    assert.equal(r.headers.get('x-custom'), undefined);
    assert.equal(r.body.length, 0);
    const contact = r.contacts[0];
    assert.ok(contact && contact !== '*');
    assert.equal(contact.uri.raw, 'sip:caller@192.0.2.9:5062');
    assert.deepEqual(r.headers.getAll('record-route'), ['<sip:edge.example.com;lr>']);
    assert.deepEqual([r.callId, r.cseq.seq, r.from.tag, r.via.branch], ['call-1', 1, 'ft', 'z9hG4bKclient1']);
    const sent = transport.sent.length;
    layer.onRequest(incoming('INVITE'), UDP_SRC);
    assert.equal(tu.requests.length, 1);
    assert.equal(transport.sent.length, sent, 'an INVITE retransmission is absorbed in Accepted');
    tx.reply(200);
    assert.equal(transport.sent.length, sent + 1, 'a further 2xx still passes');
    assert.equal(transport.statuses().at(-1), 200);
    timers.advance(64 * T1);
    assert.equal(layer.size.server, 0, 'timer L');
  });

  test('client INVITE released after its 2xx: a late 2xx still reaches its user; releasing an ended transaction changes nothing', () => {
    const { layer, timers } = setup();
    const dest: SipDestination = { transport: 'udp', host: '192.0.2.50', port: 5060 };
    const req = createRequest({ method: 'INVITE', uri: 'sip:agent@192.0.2.50', from: '<sip:me@192.0.2.1>;tag=me', to: '<sip:agent@192.0.2.50>', callId: 'out-2', cseq: 7 });
    req.headers.append('X-Custom', LONG);
    const statuses: number[] = [];
    const tx = layer.sendRequest(req, dest, { onResponse: (_t, res) => void statuses.push(res.status) });
    layer.onResponse(createResponse(tx.request, 200, { toTag: 'uas' }), UDP_SRC);
    tx.release();
    assert.equal(tx.request.headers.get('x-custom'), undefined);
    assert.equal(tx.request.cseq.seq, 7);
    assert.equal(tx.request.via.branch, tx.branch);
    layer.onResponse(createResponse(tx.request, 200, { toTag: 'uas' }), UDP_SRC);
    assert.deepEqual(statuses, [200, 200]);
    timers.advance(64 * T1);
    assert.equal(tx.state, 'terminated');

    const { layer: l2, tu: tu2 } = setup();
    const bye = incoming('BYE', { toTag: 'tt' });
    bye.headers.append('X-Custom', LONG);
    l2.onRequest(bye, TCP_SRC);
    const ended = tu2.requests[0]!;
    ended.terminate();
    ended.release();
    assert.equal(ended.request.headers.get('x-custom'), LONG);
  });

  test('client, over UDP: the user sees the whole request, then the transaction lets it and the user go', () => {
    const { layer, timers } = setup();
    const dest: SipDestination = { transport: 'udp', host: '192.0.2.50', port: 5060 };
    const req = createRequest({ method: 'BYE', uri: 'sip:agent@192.0.2.50', from: '<sip:me@192.0.2.1>;tag=me', to: '<sip:agent@192.0.2.50>;tag=uas', callId: 'out-1', cseq: 6 });
    req.headers.append('X-Custom', LONG);
    const seen: Array<[number, string | undefined]> = [];
    const user = { onResponse: (t: ClientTransaction, res: SipResponse) => void seen.push([res.status, t.request.headers.get('x-custom')]) };
    const tx = layer.sendRequest(req, dest, user);
    const ok = createResponse(tx.request, 200);
    layer.onResponse(ok, UDP_SRC);
    assert.deepEqual(seen, [[200, LONG]]);
    assert.notEqual(tx.user, user);
    assert.equal(tx.lastResponse, undefined);
    assert.equal(tx.request.headers.get('x-custom'), undefined);
    assert.equal(tx.request.via.branch, tx.branch);
    layer.onResponse(createResponse(tx.request, 200), UDP_SRC);
    assert.equal(seen.length, 1, 'a retransmitted final response is absorbed');
    timers.advance(T4);
    assert.equal(tx.state, 'terminated');
    assert.equal(layer.size.client, 0);
  });
});

describe('client transactions', () => {
  const dest: SipDestination = { transport: 'udp', host: '192.0.2.50', port: 5060 };

  function outgoing(method: string): SipRequest {
    return createRequest({ method, uri: 'sip:agent@192.0.2.50', from: '<sip:me@192.0.2.1>;tag=me', to: '<sip:agent@192.0.2.50>', callId: 'out-1', cseq: 5 });
  }

  class Recorder {
    responses: number[] = [];
    timeouts = 0;
    onResponse(_tx: ClientTransaction, res: SipResponse): void {
      this.responses.push(res.status);
    }
    onTimeout(): void {
      this.timeouts++;
    }
  }

  function answer(tx: ClientTransaction, status: number): SipResponse {
    return createResponse(tx.request, status, { toTag: 'uas' });
  }

  test('INVITE: timer A doubles without cap, timer B times out', () => {
    const { layer, transport, timers } = setup();
    const rec = new Recorder();
    const tx = layer.sendRequest(outgoing('INVITE'), dest, rec);
    assert.match(tx.request.headers.get('via')!, /^SIP\/2.0\/UDP 192.0.2.1:5060;branch=z9hG4bK[\w-]+;rport$/);
    timers.advance(64 * T1);
    assert.deepEqual(retransmitTimes(transport), [500, 1500, 3500, 7500, 15500, 31500]);
    assert.equal(rec.timeouts, 1);
    assert.equal(tx.state, 'terminated');
  });

  test('INVITE: a provisional stops A and B; a non-2xx final is ACKed (and re-ACKed), timer D', () => {
    const { layer, transport, timers } = setup();
    const rec = new Recorder();
    const tx = layer.sendRequest(outgoing('INVITE'), dest, rec);
    layer.onResponse(answer(tx, 180), UDP_SRC);
    timers.advance(40_000);
    assert.deepEqual(retransmitTimes(transport), []);
    assert.equal(rec.timeouts, 0);
    layer.onResponse(answer(tx, 486), UDP_SRC);
    const ack = transport.sent.at(-1)!.msg as SipRequest;
    assert.equal(ack.method, 'ACK');
    assert.equal(ack.cseq.seq, 5);
    assert.equal(ack.cseq.method, 'ACK');
    assert.equal(ack.to.tag, 'uas');
    assert.equal(ack.via.branch, tx.branch);
    layer.onResponse(answer(tx, 486), UDP_SRC);
    assert.equal((transport.sent.at(-1)!.msg as SipRequest).method, 'ACK');
    assert.deepEqual(rec.responses, [180, 486], 'the retransmitted final is not passed up');
    timers.advance(32_000);
    assert.equal(tx.state, 'terminated');
  });

  test('INVITE: every 2xx goes to the TU (Accepted, timer M)', () => {
    const { layer, timers } = setup();
    const rec = new Recorder();
    const tx = layer.sendRequest(outgoing('INVITE'), dest, rec);
    layer.onResponse(answer(tx, 200), UDP_SRC);
    layer.onResponse(answer(tx, 200), UDP_SRC);
    assert.deepEqual(rec.responses, [200, 200]);
    timers.advance(64 * T1);
    assert.equal(tx.state, 'terminated');
  });

  test('non-INVITE: timer E caps at T2 (T2 at once in Proceeding), F times out, K ends', () => {
    const { layer, transport, timers } = setup();
    const rec = new Recorder();
    const tx = layer.sendRequest(outgoing('OPTIONS'), dest, rec);
    timers.advance(12_000);
    assert.deepEqual(retransmitTimes(transport), [500, 1500, 3500, 7500, 11500]);
    timers.advance(64 * T1 - 12_000);
    assert.equal(rec.timeouts, 1);

    const { layer: l2, transport: t2, timers: tm2 } = setup();
    const tx2 = l2.sendRequest(outgoing('OPTIONS'), dest, rec);
    tm2.advance(500);
    l2.onResponse(answer(tx2, 100), UDP_SRC);
    tm2.advance(9_000);
    assert.deepEqual(retransmitTimes(t2), [500, 1500, 5500, 9500]);
    l2.onResponse(answer(tx2, 200), UDP_SRC);
    l2.onResponse(answer(tx2, 200), UDP_SRC);
    assert.equal(tx2.state, 'completed');
    tm2.advance(T4);
    assert.equal(tx2.state, 'terminated');
    assert.deepEqual(rec.responses, [100, 200]);
    assert.equal(tx.state, 'terminated');
  });

  test('cancel(): waits for a provisional, then sends CANCEL on the same branch', () => {
    const { layer, transport } = setup();
    const rec = new Recorder();
    const tx = layer.sendRequest(outgoing('INVITE'), dest, rec);
    tx.cancel();
    assert.equal(transport.sent.length, 1, 'no CANCEL before a provisional');
    layer.onResponse(answer(tx, 180), UDP_SRC);
    const cancel = transport.sent.at(-1)!.msg as SipRequest;
    assert.equal(cancel.method, 'CANCEL');
    assert.equal(cancel.via.branch, tx.branch);
    assert.equal(cancel.cseq.seq, 5);
    assert.equal(layer.size.client, 2);
  });

  test('responses matching nothing go to the TU as strays', () => {
    const { layer, tu } = setup();
    const stray = createResponse(incoming('INVITE'), 200);
    layer.onResponse(stray, UDP_SRC);
    assert.equal(tu.strays.length, 1);
  });
});

describe('request/response helpers', () => {
  test('formatVia + createRequest build a parseable request', () => {
    const req = createRequest({
      method: 'INVITE',
      uri: 'sip:a@b',
      from: '<sip:c@d>;tag=1',
      to: '<sip:a@b>',
      callId: 'x',
      cseq: 1,
      via: formatVia({ transport: 'TCP', host: '10.0.0.1', port: 5060, branch: 'z9hG4bKz' }),
      contact: '<sip:c@10.0.0.1>',
    });
    const back = parseDatagram(serialize(req));
    assert.ok(back instanceof SipRequest);
    assert.equal(back.via.transport, 'TCP');
  });
});
