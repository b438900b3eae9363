import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import {
  IN_DIALOG_METHODS,
  SipRequest,
  SipResponse,
  StatefulProxy,
  createRequest,
  createResponse,
  parseDatagram,
  parseUri,
  serialize,
  type ProxyCall,
  type SipServer,
  type SipUri,
} from '../../src/sip/index.js';
import { LOCAL, startServer } from './helpers.js';

/** A UDP peer on loopback that records what it receives and answers through `answer`. */
class Peer {
  readonly socket = dgram.createSocket('udp4');
  received: Array<SipRequest | SipResponse> = [];
  answer: (req: SipRequest) => SipResponse | null = () => null;

  async bind(): Promise<number> {
    this.socket.on('message', (data, rinfo) => {
      const msg = parseDatagram(data);
      if (!(msg instanceof SipRequest) && !(msg instanceof SipResponse)) return;
      this.received.push(msg);
      if (msg instanceof SipRequest && msg.method !== 'ACK') {
        const res = this.answer(msg);
        if (res) this.socket.send(serialize(res), rinfo.port, rinfo.address);
      }
    });
    await new Promise<void>((r) => this.socket.bind(0, LOCAL, () => r()));
    return this.socket.address().port;
  }

  send(msg: SipRequest, port: number): void {
    this.socket.send(serialize(msg), port, LOCAL);
  }

  async waitFor(pred: (m: SipRequest | SipResponse) => boolean, ms = 3000): Promise<SipRequest | SipResponse> {
    const end = Date.now() + ms;
    for (;;) {
      const found = this.received.find(pred);
      if (found) return found;
      assert.ok(Date.now() < end, 'expected message did not arrive');
      await new Promise((r) => setTimeout(r, 5));
    }
  }
}

const isFinal = (m: SipRequest | SipResponse): m is SipResponse => m instanceof SipResponse && m.status >= 200;

describe('StatefulProxy: what a finished call keeps', () => {
  let server: SipServer;
  let proxy: StatefulProxy<{ label: string }>;
  let port = 0;
  const agent = new Peer();
  const caller = new Peer();
  let agentPort = 0;
  let callerPort = 0;
  const seen: Array<{ event: string; label: string; call: ProxyCall<{ label: string }> }> = [];

  before(async () => {
    server = await startServer({ forwardedMethods: ['INVITE', 'ACK', 'CANCEL', ...IN_DIALOG_METHODS], transaction: { retransmit2xx: false } });
    proxy = new StatefulProxy(server);
    port = server.addresses().udp!.port;
    agentPort = await agent.bind();
    callerPort = await caller.bind();
    server.onRequest('INVITE', (tx) => {
      if (tx.request.to.tag !== undefined) return proxy.routeInDialog(tx);
      proxy.forward(tx, {
        target: parseUri(`sip:agent@${LOCAL}:${agentPort}`) as SipUri,
        data: { label: tx.request.headers.get('subject') ?? '' },
        events: {
          onFailed: (call) => void seen.push({ event: 'failed', label: call.data.label, call }),
          onEnded: (call) => void seen.push({ event: 'ended', label: call.data.label, call }),
        },
      });
    });
    agent.answer = (req) => {
      if (req.method === 'BYE') return createResponse(req, 200);
      const res = createResponse(req, req.headers.get('subject') === 'busy' ? 486 : 200, { toTag: 'agent-tag' });
      if (res.status === 200) res.headers.append('Contact', `<sip:agent@${LOCAL}:${agentPort}>`);
      return res;
    };
  });

  after(async () => {
    agent.socket.close();
    caller.socket.close();
    await server.close();
  });

  function invite(subject: string, callId: string): SipRequest {
    return createRequest({
      method: 'INVITE',
      uri: `sip:svc@${LOCAL}:${port}`,
      from: `<sip:caller@${LOCAL}>;tag=caller-tag`,
      to: `<sip:svc@${LOCAL}>`,
      callId,
      cseq: 1,
      headers: [
        ['Via', `SIP/2.0/UDP ${LOCAL}:${callerPort};branch=z9hG4bK${callId}`],
        ['Contact', `<sip:caller@${LOCAL}:${callerPort}>`],
        ['Subject', subject],
      ],
    });
  }

  test('a failed call: the event reads the data, then the proxy lets go of it', async () => {
    caller.send(invite('busy', 'proxy-fail-1'), port);
    const res = (await caller.waitFor((m) => isFinal(m) && m.callId === 'proxy-fail-1')) as SipResponse;
    assert.equal(res.status, 486);
    const ev = seen.find((s) => s.call.callId === 'proxy-fail-1');
    assert.ok(ev);
    assert.deepEqual([ev.event, ev.label], ['failed', 'busy']);
    assert.throws(() => ev.call.data, /released/);
    assert.equal(ev.call.state, 'terminated');
    assert.equal(proxy.size, 0);
  });

  test('an answered call ended by a BYE: the event reads the data, then the proxy lets go of it; the dialog copies stay', async () => {
    caller.send(invite('answer', 'proxy-bye-1'), port);
    const ok = (await caller.waitFor((m) => isFinal(m) && m.callId === 'proxy-bye-1')) as SipResponse;
    assert.equal(ok.status, 200);
    const routeSet = ok.headers.getAll('record-route');
    const inDialog = (method: string, cseq: number, branch: string) =>
      createRequest({
        method,
        uri: `sip:agent@${LOCAL}:${agentPort}`,
        from: `<sip:caller@${LOCAL}>;tag=caller-tag`,
        to: ok.headers.get('to')!,
        callId: 'proxy-bye-1',
        cseq,
        headers: [['Via', `SIP/2.0/UDP ${LOCAL}:${callerPort};branch=${branch}`], ...routeSet.map((r): [string, string] => ['Route', r])],
      });
    caller.send(inDialog('ACK', 1, 'z9hG4bKack1'), port);
    await agent.waitFor((m) => m instanceof SipRequest && m.method === 'ACK' && m.callId === 'proxy-bye-1');
    const bye = inDialog('BYE', 2, 'z9hG4bKbye1');
    caller.send(bye, port);
    const byeOk = (await caller.waitFor((m) => isFinal(m) && m.callId === 'proxy-bye-1' && m.cseq.method === 'BYE')) as SipResponse;
    assert.equal(byeOk.status, 200);
    const ev = seen.find((s) => s.call.callId === 'proxy-bye-1');
    assert.ok(ev);
    assert.deepEqual([ev.event, ev.label], ['ended', 'answer']);
    assert.throws(() => ev.call.data, /released/);
    assert.equal(ev.call.calleeTag, 'agent-tag');
    assert.equal(ev.call.calleeContact, `sip:agent@${LOCAL}:${agentPort}`);
    assert.equal(proxy.size, 0);
  });
});
