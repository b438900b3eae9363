/**
 * The built-in demo AI agent (demo tenant only): a small SIP user agent on its own
 * {@link SipServer} that answers the calls the hand-off routes to it, logs the context it received,
 * and hangs up after a while, so `npm start` plus sipp shows a whole hand-off with no other software.
 */
import type { Logger } from 'pino';
import { parseNameAddr } from './header-values.js';
import { createRequest, type TransportName } from './message.js';
import { destinationForUri, SipServer } from './sip-server.js';
import type { ServerTransaction } from './transactions.js';
import type { SipDestination } from './transport.js';
import { parseUri } from './uri.js';

export interface DemoAgentOptions {
  /** Listening port of UDP and TCP (0: a free one each). */
  port: number;
  /** Address to bind (default 127.0.0.1). */
  host?: string;
  /** The agent hangs up this long after answering. */
  hangupSeconds: number;
  logger: Logger;
  /** Ringing time before the 200 (default 0). */
  ringMs?: number;
  /** Calls kept in {@link DemoAgent.calls} (default 100, oldest dropped first). */
  keep?: number;
}

/** A call the demo agent handled, with the hand-off context it received. */
export interface DemoAgentCall {
  sipCallId: string;
  /** X-Handoff-Voice-Call-Id (VC2), X-Handoff-Partner-Voice-Call-Id (VC1), ... as received. */
  voiceCallId: string | null;
  partnerVoiceCallId: string | null;
  transactionId: string | null;
  orgId: string | null;
  from: string | null;
  state: 'ringing' | 'answered' | 'ended' | 'cancelled';
  /** Who hung up: the agent itself (its timer) or the other side (a BYE it received). */
  endedBy: 'agent' | 'caller' | null;
  startedAt: string;
  endedAt: string | null;
}

const SDP = [
  'v=0',
  'o=handoff-demo-agent 1 1 IN IP4 127.0.0.1',
  's=Handoff demo agent',
  'c=IN IP4 127.0.0.1',
  't=0 0',
  'm=audio 40000 RTP/AVP 0',
  'a=rtpmap:0 PCMU/8000',
  'a=sendrecv',
  '',
].join('\r\n');

/** Dialog state for the agent's own BYE (RFC 3261 §12.1.1: the UAS's route set and remote target). */
interface Dialog {
  call: DemoAgentCall;
  byeTo: string;
  byeFrom: string;
  remoteTarget: string;
  routes: string[];
  via: TransportName;
  timer: NodeJS.Timeout | undefined;
}

/**
 * @example
 * const agent = new DemoAgent({ port: 5061, hangupSeconds: 30, logger });
 * await agent.start();
 * agent.uri; // 'sip:demo-agent@127.0.0.1:5061': the demo agent's sipUri
 * agent.calls(); // [{ voiceCallId: '0LQ...', state: 'answered', ... }]
 */
export class DemoAgent {
  readonly sip: SipServer;
  private readonly host: string;
  private readonly log: Logger;
  private readonly handled: DemoAgentCall[] = [];
  private readonly dialogs = new Map<string, Dialog>();

  constructor(private readonly opts: DemoAgentOptions) {
    this.host = opts.host ?? '127.0.0.1';
    this.log = opts.logger.child({ component: 'demo-agent' });
    this.sip = new SipServer({ udp: { host: this.host, port: opts.port }, tcp: { host: this.host, port: opts.port } });
    this.sip.onRequest('INVITE', (tx) => this.onInvite(tx));
    this.sip.onRequest('BYE', (tx) => this.onBye(tx));
  }

  async start(): Promise<void> {
    await this.sip.start();
  }

  /** Hangs up nothing: pending timers are cleared, the listeners closed. */
  async close(): Promise<void> {
    for (const d of this.dialogs.values()) clearTimeout(d.timer);
    this.dialogs.clear();
    await this.sip.close();
  }

  /** The agent's SIP URI (UDP). */
  get uri(): string {
    return `sip:demo-agent@${this.host}:${this.sip.addresses().udp?.port ?? this.opts.port}`;
  }

  /** The calls handled, oldest first. */
  calls(): DemoAgentCall[] {
    return this.handled.map((c) => ({ ...c }));
  }

  private onInvite(tx: ServerTransaction): void {
    const req = tx.request;
    if (req.to.tag !== undefined) {
      // a re-INVITE (session refresh, hold): same answer
      tx.reply(200, { body: SDP, contentType: 'application/sdp', headers: [['Contact', this.contact(tx.source.transport)]] });
      return;
    }
    // §12.1.1: responses that create the dialog carry the Record-Route of the request
    const recordRoute = req.headers.getLines('record-route').map((v): [string, string] => ['Record-Route', v]);
    const h = (name: string) => req.headers.get(name) || null;
    const call: DemoAgentCall = {
      sipCallId: req.callId,
      voiceCallId: h('X-Handoff-Voice-Call-Id'),
      partnerVoiceCallId: h('X-Handoff-Partner-Voice-Call-Id'),
      transactionId: h('X-Handoff-Transaction-Id'),
      orgId: h('X-Handoff-Org-Id'),
      from: req.from.uri.raw,
      state: 'ringing',
      endedBy: null,
      startedAt: new Date().toISOString(),
      endedAt: null,
    };
    this.handled.push(call);
    if (this.handled.length > (this.opts.keep ?? 100)) this.handled.shift();
    this.log.info(
      { voiceCallId: call.voiceCallId, partnerVoiceCallId: call.partnerVoiceCallId, transactionId: call.transactionId, orgId: call.orgId, from: call.from },
      'demo agent received a hand-off',
    );
    tx.reply(180, { headers: recordRoute });
    const answer = () => {
      if (tx.cancelled || tx.finalSent) {
        call.state = 'cancelled';
        call.endedAt = new Date().toISOString();
        return;
      }
      tx.reply(200, { body: SDP, contentType: 'application/sdp', headers: [...recordRoute, ['Contact', this.contact(tx.source.transport)]] });
      call.state = 'answered';
      const contact = req.contacts[0];
      const d: Dialog = {
        call,
        byeFrom: `${req.headers.get('to')};tag=${tx.toTag}`,
        byeTo: req.headers.get('from') ?? '',
        remoteTarget: contact && contact !== '*' ? contact.uri.raw : req.from.uri.raw,
        routes: req.headers.getAll('record-route'),
        via: tx.source.transport,
        timer: undefined,
      };
      d.timer = setTimeout(() => this.hangUp(d), this.opts.hangupSeconds * 1000);
      d.timer.unref();
      this.dialogs.set(req.callId, d);
    };
    if (this.opts.ringMs) setTimeout(answer, this.opts.ringMs).unref();
    else answer();
  }

  private onBye(tx: ServerTransaction): void {
    const d = this.dialogs.get(tx.request.callId);
    tx.reply(d ? 200 : 481);
    if (!d) return;
    clearTimeout(d.timer);
    this.dialogs.delete(tx.request.callId);
    d.call.state = 'ended';
    d.call.endedBy = 'caller';
    d.call.endedAt = new Date().toISOString();
    this.log.info({ voiceCallId: d.call.voiceCallId }, 'demo agent: the other side hung up');
  }

  /** The agent's own BYE, through the Record-Route set it received (§12.1.1, §15.1.1). */
  private hangUp(d: Dialog): void {
    this.dialogs.delete(d.call.sipCallId);
    const bye = createRequest({
      method: 'BYE',
      uri: d.remoteTarget,
      from: d.byeFrom,
      to: d.byeTo,
      callId: d.call.sipCallId,
      cseq: 1,
      headers: d.routes.map((r): [string, string] => ['Route', r]),
    });
    const first = d.routes[0] === undefined ? parseUri(d.remoteTarget) : (parseNameAddr(d.routes[0])?.uri ?? null);
    if (first?.kind !== 'sip') return;
    const dest: SipDestination = destinationForUri(first);
    this.sip.sendRequest(bye, dest, { onResponse: () => undefined });
    d.call.state = 'ended';
    d.call.endedBy = 'agent';
    d.call.endedAt = new Date().toISOString();
    this.log.info({ voiceCallId: d.call.voiceCallId, afterSeconds: this.opts.hangupSeconds }, 'demo agent hung up');
  }

  private contact(transport: TransportName): string {
    const port = this.sip.addresses()[transport]?.port ?? this.opts.port;
    return `<sip:demo-agent@${this.host}:${port}${transport === 'udp' ? '' : `;transport=${transport}`}>`;
  }
}
