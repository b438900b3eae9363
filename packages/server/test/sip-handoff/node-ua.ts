/**
 * A tiny partner UA on the in-house stack, for what sipp cannot do here (TLS: the packaged sipp
 * is built without it): INVITE, ACK of the 2xx and BYE through the Record-Route set (§12.1.2).
 */
import {
  SipServer,
  createRequest,
  createResponse,
  destinationForUri,
  newCallId,
  newTag,
  parseNameAddr,
  parseUri,
  type ClientTransaction,
  type SipDestination,
  type SipRequest,
  type SipResponse,
} from '../../src/sip/index.js';

const SDP = 'v=0\r\no=partner 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 41000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n';

export class UaCall {
  readonly responses: SipResponse[] = [];
  readonly final: Promise<SipResponse>;
  private resolveFinal!: (r: SipResponse) => void;
  private routes: string[] = [];
  private target = '';
  private toValue = '';
  private cseq = 1;
  byeReceived = false;

  constructor(
    private readonly ua: NodeUa,
    readonly invite: SipRequest,
  ) {
    this.final = new Promise((r) => (this.resolveFinal = r));
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
    if (first?.kind !== 'sip') throw new Error('no SIP next hop');
    return { req, dest: destinationForUri(first) };
  }

  private ack(): void {
    const { req, dest } = this.inDialog('ACK', 1);
    this.ua.sip.transactions.sendStateless(req, dest);
  }

  /**
   * Sends a BYE through the route set; resolves with its final response. `direct` sends it to that
   * Request-URI and destination without Route headers instead, as a UA ignoring Record-Route does.
   */
  bye(direct?: { uri: string; dest: SipDestination }): Promise<SipResponse> {
    const { req, dest } = this.inDialog('BYE', ++this.cseq, direct);
    return new Promise((resolve, reject) => {
      this.ua.sip.sendRequest(req, dest, {
        onResponse: (_t, r) => r.status >= 200 && resolve(r),
        onTimeout: () => reject(new Error('BYE timed out')),
        onTransportError: (_t, e) => reject(e),
      });
    });
  }
}

/**
 * @example
 * const ua = await NodeUa.start();
 * const call = ua.invite({ transport: 'tls', host: '127.0.0.1', port: 5061 }, '+14155550100', '+14155550123', [['User-to-User', hex]]);
 * assert.equal((await call.final).status, 200);
 * await call.bye();
 */
export class NodeUa {
  readonly calls = new Map<string, UaCall>();

  private constructor(readonly sip: SipServer) {}

  static async start(): Promise<NodeUa> {
    const sip = new SipServer({ udp: { host: '127.0.0.1', port: 0 }, tcp: { host: '127.0.0.1', port: 0 }, tlsClient: { rejectUnauthorized: false } });
    const ua = new NodeUa(sip);
    sip.onRequest('BYE', (tx) => {
      const call = ua.calls.get(tx.request.callId);
      if (call) call.byeReceived = true;
      tx.reply(call ? 200 : 481);
    });
    await sip.start();
    return ua;
  }

  /** Sends an INVITE for `called` at the service (`dest`) from `caller`. */
  invite(dest: SipDestination, called: string, caller: string, headers: Array<[string, string]> = []): UaCall {
    const transport = dest.transport;
    return this.inviteUri(dest, `sip:${called}@${dest.host}:${dest.port}${transport === 'udp' ? '' : `;transport=${transport}`}`, caller, headers);
  }

  /** Sends an INVITE with this Request-URI (which may carry URI headers). */
  inviteUri(dest: SipDestination, uri: string, caller: string, headers: Array<[string, string]> = []): UaCall {
    const transport = dest.transport;
    const req = createRequest({
      method: 'INVITE',
      uri,
      from: `<sip:${caller}@127.0.0.1>;tag=${newTag()}`,
      to: `<${uri.replace(/\?.*$/, '')}>`,
      callId: newCallId('127.0.0.1'),
      cseq: 1,
      contact: `<sip:partner@127.0.0.1:${this.sip.addresses().udp!.port}${transport === 'udp' ? '' : `;transport=${transport}`}>`,
      headers,
      body: SDP,
      contentType: 'application/sdp',
    });
    const call = new UaCall(this, req);
    this.calls.set(req.callId, call);
    this.sip.sendRequest(req, dest, {
      onResponse: (_t: ClientTransaction, res) => call.onResponse(res),
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
