/**
 * A small SIP user agent on the in-house stack, playing a partner's side: INVITE with SDP, ACK of
 * the 2xx and BYE through the Record-Route set (RFC 3261 §12.1.2, §13.2.2.4), and BYEs it receives
 * answered. Used by `handoff demo` and by the tests (e.g. for TLS, which Debian's sipp lacks).
 */
import { createRequest, createResponse } from './message.js';
import type { SipRequest, SipResponse } from './message.js';
import { parseNameAddr } from './header-values.js';
import { newCallId, newTag } from './ids.js';
import { SipServer, destinationForUri } from './sip-server.js';
import type { SipDestination } from './transport.js';
import { parseUri } from './uri.js';

const SDP = 'v=0\r\no=handoff-ua 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 41000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n';

export class UaCall {
  readonly responses: SipResponse[] = [];
  readonly final: Promise<SipResponse>;
  /** Resolves when the other side sends a BYE (answered 200). */
  readonly byeArrived: Promise<void>;
  byeReceived = false;
  private resolveFinal!: (r: SipResponse) => void;
  private resolveBye!: () => void;
  private routes: string[] = [];
  private target = '';
  private toValue = '';
  private cseq = 1;

  constructor(
    private readonly sip: SipServer,
    readonly invite: SipRequest,
  ) {
    this.final = new Promise((r) => (this.resolveFinal = r));
    this.byeArrived = new Promise((r) => (this.resolveBye = r));
  }

  get callId(): string {
    return this.invite.callId;
  }

  /** @internal */
  onResponse(res: SipResponse): void {
    this.responses.push(res);
    if (res.status < 200) return;
    if (res.status < 300) {
      const contact = res.contacts[0];
      this.target = contact && contact !== '*' ? contact.uri.raw : this.invite.uri;
      this.routes = res.headers.getAll('record-route').reverse();
      this.toValue = res.headers.get('to') ?? '';
      this.ack(); // every 2xx, retransmissions included (§13.2.2.4)
    }
    this.resolveFinal(res);
  }

  /** @internal */
  onBye(): void {
    this.byeReceived = true;
    this.resolveBye();
  }

  private inDialog(method: string, cseq: number, direct?: { uri: string; dest: SipDestination }): { req: SipRequest; dest: SipDestination } {
    const req = createRequest({
      method,
      uri: direct?.uri ?? this.target,
      from: this.invite.headers.get('from')!,
      to: this.toValue,
      callId: this.callId,
      cseq,
      headers: direct ? [] : this.routes.map((r): [string, string] => ['Route', r]),
    });
    if (direct) return { req, dest: direct.dest };
    const first = this.routes[0] === undefined ? parseUri(this.target) : parseNameAddr(this.routes[0])?.uri;
    if (first?.kind !== 'sip') throw new Error(`no SIP next hop for the ${method}`);
    return { req, dest: destinationForUri(first) };
  }

  private ack(): void {
    const { req, dest } = this.inDialog('ACK', 1);
    this.sip.transactions.sendStateless(req, dest);
  }

  /**
   * Sends a BYE through the route set; resolves with its final response. `direct` sends it to that
   * Request-URI and destination without Route headers instead, as a UA ignoring Record-Route does.
   */
  bye(direct?: { uri: string; dest: SipDestination }): Promise<SipResponse> {
    const { req, dest } = this.inDialog('BYE', ++this.cseq, direct);
    return new Promise((resolve, reject) => {
      this.sip.sendRequest(req, dest, {
        onResponse: (_t, r) => r.status >= 200 && resolve(r),
        onTimeout: () => reject(new Error('the BYE timed out')),
        onTransportError: (_t, e) => reject(new Error(`the BYE could not be sent: ${e.message}`)),
      });
    });
  }
}

/**
 * @example
 * const ua = await UserAgent.start();
 * const call = ua.invite({ transport: 'udp', host: '127.0.0.1', port: 5060 }, '+14155550100', '+14155550123', [['User-to-User', hex]]);
 * assert.equal((await call.final).status, 200);
 * await call.bye();
 */
export class UserAgent {
  readonly calls = new Map<string, UaCall>();

  private constructor(readonly sip: SipServer) {}

  /** Listens on ephemeral UDP and TCP ports of 127.0.0.1; TLS servers are not verified (test and demo use). */
  static async start(): Promise<UserAgent> {
    const sip = new SipServer({ udp: { host: '127.0.0.1', port: 0 }, tcp: { host: '127.0.0.1', port: 0 }, tlsClient: { rejectUnauthorized: false } });
    const ua = new UserAgent(sip);
    sip.onRequest('BYE', (tx) => {
      const call = ua.calls.get(tx.request.callId);
      tx.reply(call ? 200 : 481);
      call?.onBye();
    });
    await sip.start();
    return ua;
  }

  /** Sends an INVITE for `called` at the service (`dest`) from `caller`. */
  invite(dest: SipDestination, called: string, caller: string, headers: Array<[string, string]> = [], callId?: string): UaCall {
    const host = dest.host.includes(':') ? `[${dest.host}]` : dest.host;
    return this.inviteUri(dest, `sip:${called}@${host}:${dest.port}${dest.transport === 'udp' ? '' : `;transport=${dest.transport}`}`, caller, headers, callId);
  }

  /** Sends an INVITE with this Request-URI (which may carry URI headers). */
  inviteUri(dest: SipDestination, uri: string, caller: string, headers: Array<[string, string]> = [], callId = newCallId('127.0.0.1')): UaCall {
    const transport = dest.transport;
    const req = createRequest({
      method: 'INVITE',
      uri,
      from: `<sip:${caller}@127.0.0.1>;tag=${newTag()}`,
      to: `<${uri.replace(/\?.*$/, '')}>`,
      callId,
      cseq: 1,
      contact: `<sip:partner@127.0.0.1:${this.sip.addresses().udp!.port}${transport === 'udp' ? '' : `;transport=${transport}`}>`,
      headers,
      body: SDP,
      contentType: 'application/sdp',
    });
    const call = new UaCall(this.sip, req);
    this.calls.set(req.callId, call);
    this.sip.sendRequest(req, dest, {
      onResponse: (_t, res) => call.onResponse(res),
      // stand-in finals for a transaction that timed out or could not be sent
      onTimeout: () => call.onResponse(createResponse(req, 408)),
      onTransportError: () => call.onResponse(createResponse(req, 503)),
    });
    return call;
  }

  close(): Promise<void> {
    return this.sip.close();
  }
}
