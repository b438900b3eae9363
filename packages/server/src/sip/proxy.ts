/**
 * A stateful, record-routing proxy core (RFC 3261 §16) for calls with one target: forwards an
 * initial INVITE, relays its responses upstream, forwards CANCEL, routes the dialog's in-dialog
 * requests by loose routing (§16.4, §16.6 step 6), keeps every dialog in memory, and can end a
 * dialog itself with a BYE to each party. The hand-off (handoff.ts) is its one user.
 */
import { parseNameAddr } from './header-values.js';
import { detached } from './headers.js';
import { createRequest, type SipRequest, type SipResponse, type TransportName } from './message.js';
import { destinationForUri, type SipServer } from './sip-server.js';
import type { ClientTransaction, ClientTransactionUser, ServerTransaction } from './transactions.js';
import type { SipDestination, SipSource } from './transport.js';
import { bareHost, parseUri, type SipUri } from './uri.js';

/** Where a call is: INVITE sent, provisional received, 2xx received, over. */
export type ProxyCallState = 'calling' | 'early' | 'confirmed' | 'terminated';

/** Who ended a confirmed call: the caller (upstream), the callee (the target), or this proxy. */
export type HangupSide = 'caller' | 'callee' | 'proxy';

/** What the proxy tells its user about one call. Handlers must not throw. */
export interface ProxyCallEvents<T> {
  /** The first 2xx was relayed upstream: the dialog is confirmed. */
  onAnswered?(call: ProxyCall<T>, res: SipResponse): void;
  /**
   * The INVITE ended without a dialog: `status` is the final response sent upstream (a relayed
   * 3xx-6xx, 408 when the target never answered, 503 when it could not be reached).
   */
  onFailed?(call: ProxyCall<T>, status: number): void;
  /**
   * A confirmed call ended: a BYE from `by` was forwarded (told once, before its response), or
   * {@link StatefulProxy.end} ran.
   */
  onEnded?(call: ProxyCall<T>, by: HangupSide, reason: string | null): void;
}

/** What {@link StatefulProxy.forward} needs besides the server transaction. */
export interface ForwardOptions<T> {
  /** The new Request-URI (without URI headers). */
  target: SipUri;
  /** Header fields removed from the forwarded INVITE (e.g. a UUI holding a credential). */
  remove?: readonly string[];
  /** Header fields added to it (values are sanitised: CR, LF and NUL removed). */
  add?: ReadonlyArray<readonly [string, string]>;
  events: ProxyCallEvents<T>;
  /** The user's data, kept on the call. */
  data: T;
}

const DEFAULT_PORT: Record<TransportName, number> = { udp: 5060, tcp: 5060, tls: 5061 };
/** §16.6 step 11: Timer C, reset by every provisional response, must exceed 3 minutes. */
const TIMER_C_MS = 181_000;
/** Methods a dialog may carry besides INVITE/ACK (RFC 3261, 3262, 3311, 3515, 3428, 6086, 6665). */
export const IN_DIALOG_METHODS = ['BYE', 'INFO', 'UPDATE', 'PRACK', 'REFER', 'NOTIFY', 'MESSAGE', 'SUBSCRIBE'] as const;

/**
 * One proxied call: the upstream INVITE transaction, the downstream client transaction and the
 * dialog state both legs need for in-dialog requests and for ending the call from here.
 */
export class ProxyCall<T> {
  state: ProxyCallState = 'calling';
  /** The downstream INVITE transaction. */
  client: ClientTransaction | undefined;
  /** The callee's To tag, once a response carried one. */
  calleeTag: string | undefined;
  /** The callee's Contact URI (target of requests to it), from the 2xx. */
  calleeContact: string | undefined;
  /** The To value of the 2xx (with the callee's tag). */
  answerTo: string | undefined;
  /** Route set toward the callee beyond this proxy (§12.1.2), from the 2xx's Record-Route. */
  calleeRoute: string[] = [];
  /** Highest CSeq number of in-dialog requests each side sent (BYE from here uses the next one). */
  callerCSeq: number;
  calleeCSeq = 0;
  /** Set when this proxy gave up the INVITE (CANCEL, Timer C, shutdown): the status sent or to send. */
  abortStatus: number | undefined;
  /** The reason given to {@link StatefulProxy.end}, kept for the events. */
  endReason: string | null = null;
  /** Whether onEnded has run (at the BYE, before its response: the session is over once a BYE is sent, RFC 3261 §15.1.1). */
  endNotified = false;
  /** Whether a final response has gone upstream (relayed or generated). */
  answeredUpstream = false;
  /** Whether the caller's ACK of the 2xx has passed. */
  acked = false;
  timer: NodeJS.Timeout | undefined;
  private userData: T | undefined;
  private dataReleased = false;

  constructor(
    data: T,
    /** The upstream INVITE transaction. */
    readonly invite: ServerTransaction,
    readonly events: ProxyCallEvents<T>,
    /** Where the INVITE was sent. */
    readonly targetDestination: SipDestination,
  ) {
    this.userData = data;
    this.callerCSeq = invite.request.cseq.seq;
  }

  /**
   * The user's data (ForwardOptions.data). Readable until the call's last event has run: the call
   * object itself lives on for the INVITE transactions' timers (up to 64*T1), the data does not.
   */
  get data(): T {
    if (this.dataReleased) throw new Error('ProxyCall.data read after the call was released');
    return this.userData as T;
  }

  /** @internal Lets go of the user's data (see StatefulProxy.release). */
  dropData(): void {
    this.dataReleased = true;
    this.userData = undefined;
  }

  get callId(): string {
    return this.invite.request.callId;
  }

  /** The caller's From tag (dialog key, §12). */
  get callerTag(): string {
    return this.invite.request.from.tag ?? '';
  }

  /** Route set toward the caller beyond this proxy: the INVITE's Record-Route as received. */
  get callerRoute(): string[] {
    return this.invite.request.headers.getAll('record-route');
  }

  /** The caller's Contact URI. */
  get callerContact(): string | undefined {
    const c = this.invite.request.contacts[0];
    return c && c !== '*' ? c.uri.raw : undefined;
  }

  /** Where requests to the caller go when no proxy sits between: back where the INVITE came from. */
  get upstreamDestination(): SipDestination {
    return this.invite.destination;
  }
}

function routeUri(value: string): SipUri | null {
  const na = parseNameAddr(value);
  return na && na.uri.kind === 'sip' ? na.uri : null;
}

/**
 * The proxy. Construct it on a {@link SipServer} whose options name the forwarded methods and
 * `transaction: { retransmit2xx: false }`: it registers the CANCEL, ACK, stray-response and
 * in-dialog request handlers; the user's INVITE handler calls {@link forward} for initial
 * INVITEs and {@link routeInDialog} for INVITEs with a To tag.
 *
 * @example
 * const sip = new SipServer({ udp, tcp, forwardedMethods: FORWARDED_METHODS, transaction: { retransmit2xx: false } });
 * const proxy = new StatefulProxy<{ id: string }>(sip);
 * sip.onRequest('INVITE', (tx) => {
 *   if (tx.request.to.tag !== undefined) return proxy.routeInDialog(tx);
 *   proxy.forward(tx, { target: parseUri('sip:agent@10.0.0.5') as SipUri, data: { id: '1' }, events: {
 *     onAnswered: (call) => console.log('answered', call.data.id),
 *     onEnded: (call, by) => console.log('ended by', by),
 *   } });
 * });
 */
export class StatefulProxy<T> {
  private readonly byKey = new Map<string, ProxyCall<T>>();
  /** Pending forwarded INVITEs (initial and re-INVITEs) by upstream transaction, for CANCEL. */
  private readonly pending = new Map<ServerTransaction, { client: ClientTransaction | undefined; call: ProxyCall<T> | undefined }>();

  constructor(
    readonly sip: SipServer,
    private readonly options: { timerCMs?: number } = {},
  ) {
    sip.onCancel((invite) => this.onCancel(invite));
    sip.onAck((ack, src) => this.routeAck(ack, src));
    sip.onStrayResponse((res) => this.onStray(res));
    for (const m of IN_DIALOG_METHODS) sip.onRequest(m, (tx) => this.routeInDialog(tx));
    sip.onRequest('OPTIONS', (tx) => {
      if (tx.request.to.tag !== undefined) return this.routeInDialog(tx);
      tx.reply(200, { headers: sip.capabilityHeaders() });
    });
  }

  /** Calls in progress or confirmed. */
  get size(): number {
    return this.byKey.size;
  }

  /** Every call this proxy holds. */
  calls(): IterableIterator<ProxyCall<T>> {
    return this.byKey.values();
  }

  /**
   * Forwards an initial INVITE to `opts.target` (§16.6): Request-URI replaced, Max-Forwards
   * decremented, this proxy's Record-Route added (two when the transports differ, RFC 5658),
   * pre-loaded Routes dropped (the target is this proxy's choice), then relays every response.
   */
  forward(tx: ServerTransaction, opts: ForwardOptions<T>): ProxyCall<T> {
    const req = tx.request;
    const fwd = req.clone();
    fwd.uri = opts.target.raw;
    fwd.headers.set('Max-Forwards', String((req.maxForwards ?? 70) - 1));
    fwd.headers.delete('Route');
    for (const name of opts.remove ?? []) fwd.headers.delete(name);
    const dest = destinationForUri(opts.target);
    const inbound = tx.source.transport;
    if (inbound !== dest.transport) fwd.headers.prepend('Record-Route', this.sip.recordRoute(inbound));
    fwd.headers.prepend('Record-Route', this.sip.recordRoute(dest.transport));
    for (const [name, value] of opts.add ?? []) fwd.headers.append(name, value);

    const call = new ProxyCall(opts.data, tx, opts.events, dest);
    this.byKey.set(`${call.callId}|${call.callerTag}`, call);
    const entry = { client: undefined as ClientTransaction | undefined, call };
    this.pending.set(tx, entry);
    const user: ClientTransactionUser = {
      onResponse: (_c, res) => this.onInviteResponse(call, res),
      onTimeout: () => this.giveUp(call, call.abortStatus ?? 408),
      onTransportError: () => this.giveUp(call, 503),
    };
    call.client = entry.client = this.sip.sendRequest(fwd, dest, user, { branch: this.sip.loopBranch(req) });
    this.armTimerC(call);
    return call;
  }

  /**
   * Gives up a pending INVITE (§16.10): CANCEL downstream, and `status` upstream now (`answerNow`,
   * e.g. at shutdown: the call is over at once) or the target's answer to the CANCEL (487,
   * relayed), or `status` after 64*T1 if it never answers. False when the call is not pending.
   */
  abort(call: ProxyCall<T>, status: number, answerNow = false): boolean {
    if (call.state !== 'calling' && call.state !== 'early') return false;
    call.abortStatus ??= status;
    call.client?.cancel();
    if (answerNow) {
      this.giveUp(call, status);
      return true;
    }
    clearTimeout(call.timer);
    call.timer = setTimeout(() => {
      call.client?.terminate();
      this.giveUp(call, call.abortStatus ?? status);
    }, 64 * this.sip.transactions.timing.t1);
    call.timer.unref();
    return true;
  }

  /**
   * Ends a call from here: a confirmed call gets a BYE to the callee and one to the caller (each
   * in the dialog, with its Route set and the next CSeq, §15.1.1), with an RFC 3326 Reason; a
   * pending one is cancelled. False when the call is over already.
   */
  end(call: ProxyCall<T>, reason: string): boolean {
    if (call.state === 'terminated') return false;
    call.endReason = reason;
    if (call.state !== 'confirmed') return this.abort(call, 487);
    // RFC 3326: Q.850 cause 16, normal call clearing, with the reason as text
    const extra: Array<[string, string]> = [['Reason', `Q.850 ;cause=16 ;text="${reason.replace(/["\\]/g, '')}"`]];
    this.sendBye(call, 'callee', extra);
    this.sendBye(call, 'caller', extra);
    this.finishEnded(call, 'proxy');
    return true;
  }

  /**
   * Routes a request inside a known dialog (§16.4, §16.6): this proxy's Route entries are
   * removed (a strict-routed Request-URI of ours is restored from the last Route), Max-Forwards
   * decremented, and the request forwarded to the next Route or the Request-URI; responses are
   * relayed back. A request that matches no dialog of this proxy gets 481.
   */
  routeInDialog(tx: ServerTransaction): void {
    const req = tx.request;
    const found = req.to.tag === undefined ? undefined : this.find(req);
    if (!found) {
      tx.reply(481);
      return;
    }
    const { call, fromCaller } = found;
    const fwd = this.prepareInDialog(req, call, fromCaller);
    const dest = this.nextHop(fwd, call, fromCaller);
    if (!dest) {
      tx.reply(400, { headers: [['Warning', '399 handoff "no next hop for this request"']] });
      return;
    }
    const isBye = req.method === 'BYE';
    const user: ClientTransactionUser = {
      onResponse: (_c, res) => {
        if (res.status === 100) return; // hop by hop (§16.7 step 5)
        this.relay(tx, res);
        if (res.status >= 200) {
          this.pending.delete(tx);
          if (isBye) this.finishEnded(call, fromCaller ? 'caller' : 'callee');
        }
      },
      onTimeout: () => {
        this.pending.delete(tx);
        tx.reply(408);
        if (isBye) this.finishEnded(call, fromCaller ? 'caller' : 'callee');
      },
      onTransportError: () => {
        this.pending.delete(tx);
        tx.reply(503);
        if (isBye) this.finishEnded(call, fromCaller ? 'caller' : 'callee');
      },
    };
    const client = this.sip.sendRequest(fwd, dest, user);
    if (req.method === 'INVITE') this.pending.set(tx, { client, call: undefined });
    // The record says the call ended when the BYE passes, not when (or whether) its 200 comes back;
    // the dialog stays routable until then (a BYE challenged for credentials can be sent again).
    if (isBye && call.state === 'confirmed') this.notifyEnded(call, fromCaller ? 'caller' : 'callee');
  }

  // --- internals ---

  private find(req: SipRequest): { call: ProxyCall<T>; fromCaller: boolean } | undefined {
    const fromTag = req.from.tag ?? '';
    const toTag = req.to.tag ?? '';
    const byCaller = this.byKey.get(`${req.callId}|${fromTag}`);
    if (byCaller && byCaller.state !== 'terminated' && (byCaller.calleeTag === undefined || byCaller.calleeTag === toTag)) {
      return { call: byCaller, fromCaller: true };
    }
    const byCallee = this.byKey.get(`${req.callId}|${toTag}`);
    if (byCallee && byCallee.state !== 'terminated' && (byCallee.calleeTag === undefined || byCallee.calleeTag === fromTag)) {
      return { call: byCallee, fromCaller: false };
    }
    return undefined;
  }

  private prepareInDialog(req: SipRequest, call: ProxyCall<T>, fromCaller: boolean): SipRequest {
    const fwd = req.clone();
    if (req.method !== 'ACK') {
      if (fromCaller) call.callerCSeq = Math.max(call.callerCSeq, req.cseq.seq);
      else call.calleeCSeq = Math.max(call.calleeCSeq, req.cseq.seq);
    }
    // §16.4: a previous strict router put our URI in the Request-URI; the real one is the last Route
    const ruri = req.requestUri;
    if (ruri.kind === 'sip' && this.isOwnUri(ruri)) {
      const routes = fwd.headers.getAll('route');
      const last = routes.pop();
      if (last !== undefined) {
        const uri = routeUri(last);
        if (uri) fwd.uri = uri.raw;
        if (routes.length > 0) fwd.headers.set('Route', routes);
        else fwd.headers.delete('Route');
      }
    }
    this.popOwnRoutes(fwd);
    const target = fwd.requestUri;
    if (!fwd.headers.has('route') && target.kind === 'sip' && this.isOwnUri(target)) {
      // a UA that ignored our Record-Route addressed us: the other party's remote target is meant
      const peer = fromCaller ? call.calleeContact : call.callerContact;
      if (peer !== undefined) fwd.uri = peer;
    }
    fwd.headers.set('Max-Forwards', String((req.maxForwards ?? 70) - 1));
    return fwd;
  }

  /** The next hop of an in-dialog request (§16.6 step 7), null when its Route is unusable. */
  private nextHop(fwd: SipRequest, call: ProxyCall<T>, fromCaller: boolean): SipDestination | null {
    const route = fwd.headers.get('route');
    if (route !== undefined) {
      const uri = routeUri(route);
      return uri ? destinationForUri(uri) : null;
    }
    // No proxy beyond us toward the caller: reach it where its INVITE came from (NAT, TCP reuse)
    if (!fromCaller && call.callerRoute.length === 0) return call.upstreamDestination;
    const ruri = fwd.requestUri;
    // never to ourselves: that would loop until Max-Forwards runs out
    return ruri.kind === 'sip' && !this.isOwnUri(ruri) ? destinationForUri(ruri) : null;
  }

  private routeAck(ack: SipRequest, _src: SipSource): void {
    const found = ack.to.tag === undefined ? undefined : this.find(ack);
    if (!found) {
      this.sip.counters.dropped('stray-ack');
      return;
    }
    const { call, fromCaller } = found;
    if (fromCaller && !call.acked && ack.cseq.seq === call.invite.request.cseq.seq) {
      call.acked = true;
      clearTimeout(call.timer);
    }
    const fwd = this.prepareInDialog(ack, call, fromCaller);
    const dest = this.nextHop(fwd, call, fromCaller);
    if (dest) this.sip.transactions.sendStateless(fwd, dest);
  }

  /**
   * A caller that never acknowledges the answer would hold the call (and its agent's slot) until the
   * agent gave up, if it ever does: 64*T1 after the 2xx, as a UAS would (RFC 3261 §13.3.1.4), the
   * call is ended from here with a BYE to both parties (reason 'no-ack').
   */
  private armAckTimer(call: ProxyCall<T>): void {
    call.timer = setTimeout(() => {
      if (!call.acked && call.state === 'confirmed') this.end(call, 'no-ack');
    }, 64 * this.sip.transactions.timing.t1);
    call.timer.unref();
  }

  private onCancel(invite: ServerTransaction): void {
    const entry = this.pending.get(invite);
    if (entry?.call) this.abort(entry.call, 487);
    else if (entry?.client) entry.client.cancel();
    // else: the user has not forwarded yet and sees `invite.cancelled` (see handoff.ts)
  }

  private onInviteResponse(call: ProxyCall<T>, res: SipResponse): void {
    const status = res.status;
    if (status === 100) return;
    if (status < 200) {
      if (call.state !== 'calling' && call.state !== 'early') return; // a late provisional: nothing to do
      call.state = 'early';
      if (call.calleeTag === undefined && res.to.tag !== undefined) call.calleeTag = detached(res.to.tag);
      this.armTimerC(call);
      if (!call.answeredUpstream) this.relay(call.invite, res);
      return;
    }
    if (status < 300) {
      if (call.state !== 'confirmed' && call.answeredUpstream) {
        // the caller has its final response already (shutdown, timeout): acknowledge this 2xx
        // (§13.2.2.4, every retransmission) and end the callee's leg once
        if (call.answerTo === undefined) {
          this.captureDialog(call, res);
          this.sendAck(call);
          this.sendBye(call, 'callee', []);
        } else this.sendAck(call);
        return;
      }
      if (call.state === 'terminated') return;
      if (call.state !== 'confirmed') {
        call.state = 'confirmed';
        this.captureDialog(call, res);
        clearTimeout(call.timer);
        this.pending.delete(call.invite);
        call.answeredUpstream = true;
        this.relay(call.invite, res);
        call.events.onAnswered?.(call, res);
        this.armAckTimer(call);
        return;
      }
      this.relay(call.invite, res); // a 2xx retransmission: the caller's ACK stops it (§16.7 step 10)
      return;
    }
    if (call.state === 'terminated' || call.state === 'confirmed') return;
    if (!call.answeredUpstream) {
      call.answeredUpstream = true;
      this.relay(call.invite, res);
    }
    this.finishFailed(call, status);
  }

  /** The callee's side of the dialog, from its 2xx (§12.1.2). */
  private captureDialog(call: ProxyCall<T>, res: SipResponse): void {
    // copies: slices would keep the whole response text for as long as the call lasts
    const tag = res.to.tag;
    call.calleeTag = tag === undefined ? undefined : detached(tag);
    const to = res.headers.get('to');
    call.answerTo = to === undefined ? undefined : detached(to);
    const contact = res.contacts[0];
    call.calleeContact = contact && contact !== '*' ? detached(contact.uri.raw) : undefined;
    call.calleeRoute = this.calleeRouteOf(res).map(detached);
  }

  /** §16.7 step 3: the response goes upstream with the Vias of the request as received. */
  private relay(up: ServerTransaction, res: SipResponse): void {
    res.headers.set('Via', up.request.headers.getLines('via'));
    if (up.state !== 'terminated') up.respond(res, { retransmit2xx: false });
    else if (res.status >= 200 && res.status < 300) this.sip.sendResponse(res, up.destination);
  }

  /** No final response from the target (timeout, transport error, abort guard, shutdown): answer upstream ourselves. */
  private giveUp(call: ProxyCall<T>, status: number): void {
    if (call.state === 'terminated' || call.state === 'confirmed') return;
    this.answerUpstream(call, status);
    this.finishFailed(call, status);
  }

  private answerUpstream(call: ProxyCall<T>, status: number): void {
    if (call.answeredUpstream) return;
    call.answeredUpstream = true;
    call.invite.reply(status);
  }

  private finishFailed(call: ProxyCall<T>, status: number): void {
    if (call.state === 'terminated') return;
    call.state = 'terminated';
    this.forget(call);
    call.events.onFailed?.(call, status);
    this.release(call);
  }

  private finishEnded(call: ProxyCall<T>, by: HangupSide): void {
    if (call.state === 'terminated') return;
    call.state = 'terminated';
    this.forget(call);
    this.notifyEnded(call, by);
    this.release(call);
  }

  /**
   * After the call's events: its INVITE transactions live on for their timers (up to 64*T1) only to
   * absorb retransmissions and to ACK a late 2xx, for which the requests' identity and dialog
   * headers are enough (see ServerTransaction.release).
   */
  private release(call: ProxyCall<T>): void {
    call.invite.release();
    call.client?.release();
    call.dropData();
  }

  private notifyEnded(call: ProxyCall<T>, by: HangupSide): void {
    if (call.endNotified) return;
    call.endNotified = true;
    call.events.onEnded?.(call, by, call.endReason);
  }

  private forget(call: ProxyCall<T>): void {
    clearTimeout(call.timer);
    this.pending.delete(call.invite);
    const key = `${call.callId}|${call.callerTag}`;
    if (this.byKey.get(key) === call) this.byKey.delete(key);
  }

  private armTimerC(call: ProxyCall<T>): void {
    if (call.abortStatus !== undefined) return;
    clearTimeout(call.timer);
    call.timer = setTimeout(() => {
      // §16.8: with a provisional, CANCEL; without one, behave as if a 408 arrived
      if (call.state === 'early') this.abort(call, 408);
      else {
        call.client?.terminate();
        this.giveUp(call, 408);
      }
    }, this.options.timerCMs ?? TIMER_C_MS);
    call.timer.unref();
  }

  /** Route set toward the callee beyond us: the 2xx's Record-Route entries above our own, reversed (§12.1.2). */
  private calleeRouteOf(res: SipResponse): string[] {
    const rr = res.headers.getAll('record-route');
    const ours = rr.findIndex((v) => {
      const uri = routeUri(v);
      return uri !== null && this.isOwnUri(uri);
    });
    return ours < 0 ? [] : rr.slice(0, ours).reverse();
  }

  private popOwnRoutes(req: SipRequest): number {
    let n = 0;
    for (;;) {
      const r = req.headers.get('route');
      const uri = r === undefined ? null : routeUri(r);
      if (!uri || !this.isOwnUri(uri)) return n;
      req.headers.removeFirst('route');
      n++;
    }
  }

  /** True when `uri` names this element: our advertised or bound host, on one of our ports. */
  isOwnUri(uri: SipUri): boolean {
    const host = bareHost(uri.host);
    const bound = this.sip.transport.localAddresses();
    if (host !== bareHost(this.sip.transport.advertisedHost) && !bound.some((a) => bareHost(a.address) === host)) return false;
    const port = uri.port ?? DEFAULT_PORT[destinationForUri(uri).transport];
    return bound.some((a) => a.port === port);
  }

  /** The in-dialog request to one side as this proxy sends it (BYE, or the ACK of an orphan 2xx). */
  private dialogRequest(call: ProxyCall<T>, method: string, toward: 'caller' | 'callee', cseq: number, headers: Array<[string, string]>): { req: SipRequest; dest: SipDestination } | null {
    const inv = call.invite.request;
    const callerFrom = inv.headers.get('from') ?? '';
    const calleeTo = call.answerTo ?? inv.headers.get('to') ?? '';
    const uri = toward === 'callee' ? call.calleeContact : call.callerContact;
    if (uri === undefined) return null;
    const route = toward === 'callee' ? call.calleeRoute : call.callerRoute;
    const req = createRequest({
      method,
      uri,
      from: toward === 'callee' ? callerFrom : calleeTo,
      to: toward === 'callee' ? calleeTo : callerFrom,
      callId: call.callId,
      cseq,
      headers: [...route.map((r): [string, string] => ['Route', r]), ...headers],
    });
    let dest: SipDestination | null;
    if (route[0] !== undefined) {
      const r = routeUri(route[0]);
      dest = r ? destinationForUri(r) : null;
    } else if (toward === 'caller') dest = call.upstreamDestination;
    else {
      const target = parseUri(uri);
      dest = target?.kind === 'sip' ? destinationForUri(target) : call.targetDestination;
    }
    return dest ? { req, dest } : null;
  }

  private sendBye(call: ProxyCall<T>, toward: 'caller' | 'callee', headers: Array<[string, string]>): void {
    const cseq = toward === 'callee' ? ++call.callerCSeq : ++call.calleeCSeq;
    const built = this.dialogRequest(call, 'BYE', toward, cseq, headers);
    if (built) this.sip.sendRequest(built.req, built.dest, { onResponse: () => undefined });
  }

  /** §13.2.2.4: the ACK of a 2xx, for a 2xx the caller will never see. */
  private sendAck(call: ProxyCall<T>): void {
    const built = this.dialogRequest(call, 'ACK', 'callee', call.invite.request.cseq.seq, []);
    if (built) this.sip.transactions.sendStateless(built.req, built.dest);
  }

  /** 2xx retransmissions after the client transaction ended (Timer M): forwarded statelessly. */
  private onStray(res: SipResponse): void {
    const call = res.status >= 200 && res.status < 300 && res.cseq.method === 'INVITE' ? this.byKey.get(`${res.callId}|${res.from.tag ?? ''}`) : undefined;
    if (!call || !this.sip.isOwnVia(res.via) || res.cseq.seq !== call.invite.request.cseq.seq) {
      this.sip.counters.dropped('stray-response');
      return;
    }
    res.headers.set('Via', call.invite.request.headers.getLines('via'));
    this.sip.sendResponse(res, call.invite.destination);
  }
}
