/**
 * The RFC 3261 §17 transaction layer, with the RFC 6026 "Accepted" states: server INVITE and
 * non-INVITE transactions (retransmissions absorbed, last response replayed, timers G/H/I/J/L),
 * client INVITE and non-INVITE transactions (timers A/B/D/E/F/K/M, ACK of non-2xx), CANCEL
 * matching (§9.2), 2xx retransmission until ACK for a UA core (§13.3.1.4). All timers go through
 * the injected {@link SipTimers}.
 */
import {
  createAckForFailure,
  createCancel,
  createResponse,
  type ResponseOptions,
  type SipMessage,
  type SipRequest,
  type SipResponse,
  type TransportName,
} from './message.js';
import { formatVia } from './header-values.js';
import { detached } from './headers.js';
import { MAGIC_COOKIE, newBranch, newTag } from './ids.js';
import type { SipParseError } from './parser.js';
import {
  responseDestination,
  type SendErrorListener,
  type SipDestination,
  type SipSource,
  type SipTransportUser,
} from './transport.js';
import { realTimers, type SipTimers, type TimerHandle, type TimerTarget } from './timers.js';

/** What the transaction layer needs of a transport ({@link SipTransport} provides it). */
export interface TransactionTransport {
  send(msg: SipMessage, dest: SipDestination, listener?: SendErrorListener): Buffer;
  resend(data: Buffer, dest: SipDestination, listener?: SendErrorListener): void;
  readonly advertisedHost: string;
  advertisedPort(transport: TransportName): number;
}

export interface TransactionOptions {
  /** RTT estimate (default 500 ms). */
  t1?: number;
  /** Maximum retransmit interval of non-INVITE requests and INVITE responses (default 4 s). */
  t2?: number;
  /** Maximum time a message stays in the network (default 5 s). */
  t4?: number;
  /**
   * INVITE server transactions: send `100 Trying` as soon as the INVITE arrives unless the TU
   * answered it in the same turn ('immediate', default), or only if the TU has not answered within
   * 200 ms ('delayed', §17.2.1).
   */
  trying?: 'immediate' | 'delayed';
  /**
   * Default for 2xx responses to INVITE: retransmit them until the ACK arrives, as a UA core
   * must (§13.3.1.4; default true). A stateful proxy sets false: it forwards 2xx statelessly and
   * the downstream UAS retransmits (§16.7 step 10).
   */
  retransmit2xx?: boolean;
  /** See {@link SipTransportOptions.forceRport} (default true). */
  forceRport?: boolean;
}

/** The transaction user (the SIP core). */
export interface TransactionUser {
  /** A new request, each in its own server transaction (never ACK). */
  onRequest(tx: ServerTransaction): void;
  /**
   * An ACK that is not a retransmission absorbed by a transaction: the ACK of a 2xx (a new
   * transaction of its own, §17.1.1.3). `invite` is the INVITE transaction whose 2xx it
   * acknowledges, when this layer knows it.
   */
  onAck(ack: SipRequest, src: SipSource, invite: ServerTransaction | undefined): void;
  /** A CANCEL matched `invite` (still pending); 200 has already been sent to the CANCEL. */
  onCancel(invite: ServerTransaction, cancel: SipRequest): void;
  /** A response that matches no client transaction. */
  onStrayResponse(res: SipResponse, src: SipSource): void;
  /** A malformed message (see {@link SipTransportUser.onParseError}). */
  onParseError(err: SipParseError, src: SipSource): void;
  /** A final response to an INVITE was never acknowledged (timer H, or 64*T1 after a 2xx). */
  onAckTimeout?(tx: ServerTransaction): void;
}

/** The user of one client transaction (often one long-lived object for all of them). */
export interface ClientTransactionUser {
  onResponse(tx: ClientTransaction, res: SipResponse): void;
  /** Timer B or F fired: no final response (treat as 408, §8.1.3.1). */
  onTimeout?(tx: ClientTransaction): void;
  /** The request could not be sent (treat as 503, §8.1.3.1). */
  onTransportError?(tx: ClientTransaction, err: Error): void;
}

export type ServerState = 'trying' | 'proceeding' | 'completed' | 'confirmed' | 'accepted' | 'terminated';
export type ClientState = 'calling' | 'trying' | 'proceeding' | 'completed' | 'accepted' | 'terminated';

// Timer ids (RFC 3261 §17 names)
const TIMER_TRYING = 1;
const TIMER_G = 2;
const TIMER_H = 3;
const TIMER_I = 4;
const TIMER_J = 5;
const TIMER_L = 6;
const TIMER_2XX = 7;
const TIMER_AE = 8; // A (INVITE) or E (non-INVITE)
const TIMER_BF = 9; // B or F
const TIMER_DK = 10; // D or K
const TIMER_M = 11;

function hasRfc3261Branch(branch: string | undefined): branch is string {
  // RFC 4475 badbranch: the bare cookie identifies nothing, so fall back to RFC 2543 matching
  return branch !== undefined && branch.length > MAGIC_COOKIE.length && branch.startsWith(MAGIC_COOKIE);
}

/**
 * The key matching a request to its server transaction (§17.2.3): branch + sent-by + method for
 * RFC 3261 peers, plus Call-ID and CSeq number, which any genuine retransmission, ACK or CANCEL
 * repeats and which keep apart peers that reuse a branch (RFC 4475 unkscm and novelsc share
 * one). For RFC 2543 peers: Request-URI, From tag, Call-ID, CSeq number and top Via.
 * ACK and CANCEL look for the INVITE with `method` 'INVITE'.
 */
function serverKey(req: SipRequest, method: string): string {
  const via = req.via;
  const sentBy = via.host.toLowerCase() + ':' + (via.port ?? '');
  if (hasRfc3261Branch(via.branch)) return `${via.branch}|${sentBy}|${req.callId}|${req.cseq.seq}|${method}`;
  return `2543|${req.uri}|${req.from.tag ?? ''}|${req.callId}|${req.cseq.seq}|${sentBy}|${via.branch ?? ''}|${method}`;
}

function ackKey(callId: string, seq: number, toTag: string | undefined): string {
  return `${callId}|${seq}|${toTag ?? ''}`;
}

/**
 * `b` in memory of its own. Messages are serialized into Node's shared 8 KiB pool; bytes kept for
 * replays (up to 64*T1) would otherwise pin a whole slab each, which was most of the process's
 * off-heap memory at a few hundred calls a second.
 */
function ownBytes(b: Buffer): Buffer {
  if (b.byteLength === b.buffer.byteLength) return b;
  const out = Buffer.allocUnsafeSlow(b.byteLength);
  b.copy(out);
  return out;
}

/**
 * A server transaction: the request, where its responses go, and the retransmission state.
 * Respond with {@link ServerTransaction.reply} (builds the response) or
 * {@link ServerTransaction.respond} (sends one built by the caller).
 *
 * @example
 * server.onRequest('INVITE', (tx) => {
 *   tx.reply(180);
 *   setTimeout(() => tx.reply(200, { body: sdp, contentType: 'application/sdp', headers: [['Contact', '<sip:me@10.0.0.1>']] }), 1000);
 * });
 */
export class ServerTransaction implements TimerTarget, SendErrorListener {
  state: ServerState;
  /** Set once a CANCEL matched this INVITE transaction. */
  cancelled = false;
  /** Where responses are sent (§18.2.2). */
  readonly destination: SipDestination;
  /** The last response sent (released, like most of the request, once only retransmissions are absorbed: see release()). */
  lastResponse: SipResponse | undefined;
  private status = 0;
  private lastBytes: Buffer | undefined;
  private tag: string | undefined;
  private interval = 0;
  private retransmitTimer: TimerHandle | undefined;
  private endTimer: TimerHandle | undefined;
  private ack2xxKey: string | undefined;

  constructor(
    private readonly layer: TransactionLayer,
    private req: SipRequest,
    readonly source: SipSource,
    readonly key: string,
    /** A pending request with the same From tag, Call-ID and CSeq but another branch (§8.2.2.2). */
    readonly mergedWith: ServerTransaction | undefined,
    /** @internal its key in the layer's merged-request index, if it has one (read at the end, without the request). */
    readonly mergeKey?: string,
  ) {
    this.state = req.method === 'INVITE' ? 'proceeding' : 'trying';
    this.destination = responseDestination(req.via, source, layer.forceRport);
  }

  /**
   * The request; after release(), only what identifies it (see SipRequest.identity): once a
   * non-INVITE transaction over UDP has sent its final response, or its user released it.
   */
  get request(): SipRequest {
    return this.req;
  }

  get isInvite(): boolean {
    return this.req.method === 'INVITE';
  }

  /** Status of the last response sent; 0 before the first (kept when the response itself is released). */
  get lastStatus(): number {
    return this.status;
  }

  /** The To tag of this transaction's responses (generated once, §8.2.6.2). */
  get toTag(): string {
    return (this.tag ??= this.request.to.tag ?? newTag());
  }

  /** True once a final response was sent. */
  get finalSent(): boolean {
    return this.lastStatus >= 200;
  }

  /**
   * Builds a response (with this transaction's To tag) and sends it.
   * @returns the response sent
   */
  reply(status: number, opts: ResponseOptions = {}): SipResponse {
    const res = createResponse(this.request, status, { toTag: this.toTag, ...opts });
    this.respond(res);
    return res;
  }

  /**
   * Sends a response through the transaction. Ignored once the transaction cannot send it
   * (a second final response, or after termination; a 2xx after a 2xx is allowed, as a proxy
   * forwards every 2xx of a forked INVITE).
   * @param opts.retransmit2xx override of the layer's default for this 2xx to INVITE
   */
  respond(res: SipResponse, opts: { retransmit2xx?: boolean } = {}): void {
    const s = this.state;
    const final = res.status >= 200;
    if (s === 'terminated' || s === 'completed' || s === 'confirmed') return;
    if (s === 'accepted' && !(res.status >= 200 && res.status < 300)) return;
    this.layer.clearTryingTimer(this);
    this.lastResponse = res;
    this.status = res.status;
    this.lastBytes = this.layer.transport.send(res, this.destination, this);
    if (!final) {
      if (s === 'trying') this.state = 'proceeding';
      return;
    }
    const { t1 } = this.layer.timing;
    const unreliable = this.destination.transport === 'udp';
    if (!this.isInvite) {
      this.state = 'completed';
      this.endTimer = this.layer.timers.schedule(unreliable ? 64 * t1 : 0, this, TIMER_J);
      if (unreliable) this.release();
      return;
    }
    if (res.status < 300) {
      // RFC 6026: Accepted absorbs INVITE retransmissions and lets further 2xx through
      if (this.state !== 'accepted') {
        this.state = 'accepted';
        this.endTimer = this.layer.timers.schedule(64 * t1, this, TIMER_L);
      }
      if (opts.retransmit2xx ?? this.layer.retransmit2xx) {
        // §13.3.1.4: on every transport, since the ACK is end to end and may cross UDP hops
        this.interval = t1;
        this.retransmitTimer?.cancel();
        this.retransmitTimer = this.layer.timers.schedule(t1, this, TIMER_2XX);
        this.ack2xxKey = detached(ackKey(res.callId, res.cseq.seq, res.to.tag));
        this.layer.await2xxAck(this.ack2xxKey, this);
      }
      return;
    }
    this.state = 'completed';
    if (unreliable) {
      this.interval = t1;
      this.retransmitTimer = this.layer.timers.schedule(t1, this, TIMER_G);
    }
    this.endTimer = this.layer.timers.schedule(64 * t1, this, TIMER_H);
  }

  /** @internal the same request arrived again */
  onRetransmission(): void {
    const s = this.state;
    // §17.2.1/§17.2.2: replay the last response; nothing to replay in Trying; Accepted absorbs
    if (this.lastBytes && (s === 'proceeding' || s === 'completed')) this.layer.transport.resend(this.lastBytes, this.destination);
  }

  /** @internal an ACK matched this transaction by key */
  onAck(ack: SipRequest, src: SipSource): void {
    if (this.state === 'completed') {
      this.state = 'confirmed';
      this.retransmitTimer?.cancel();
      this.endTimer?.cancel();
      const unreliable = this.destination.transport === 'udp';
      this.endTimer = this.layer.timers.schedule(unreliable ? this.layer.timing.t4 : 0, this, TIMER_I);
    } else if (this.state === 'accepted') {
      this.ackedTwoHundred();
      this.layer.tu.onAck(ack, src, this);
    }
  }

  /** @internal the ACK of a 2xx arrived */
  ackedTwoHundred(): void {
    this.retransmitTimer?.cancel();
    this.retransmitTimer = undefined;
    if (this.ack2xxKey) this.layer.forget2xxAck(this.ack2xxKey, this);
    this.ack2xxKey = undefined;
  }

  onTimer(id: number): void {
    const { t2 } = this.layer.timing;
    switch (id) {
      case TIMER_TRYING:
        if (this.lastStatus === 0) this.reply(100);
        return;
      case TIMER_G:
      case TIMER_2XX:
        if (!this.lastBytes || (id === TIMER_G && this.state !== 'completed') || (id === TIMER_2XX && this.state !== 'accepted')) return;
        this.layer.transport.resend(this.lastBytes, this.destination);
        this.interval = Math.min(2 * this.interval, t2);
        this.retransmitTimer = this.layer.timers.schedule(this.interval, this, id);
        return;
      case TIMER_H:
        this.terminate();
        this.layer.tu.onAckTimeout?.(this);
        return;
      case TIMER_L: {
        const unacked = this.ack2xxKey !== undefined;
        this.terminate();
        if (unacked) this.layer.tu.onAckTimeout?.(this);
        return;
      }
      default: // I, J
        this.terminate();
    }
  }

  /** §17.2.4: a transport failure ends the transaction. */
  onSendError(): void {
    this.terminate();
  }

  /**
   * Lets go of the request but what identifies it (see SipRequest.identity) and of the last
   * response object (its bytes stay, for replays). Done here when a non-INVITE transaction completes
   * over UDP (it then stays 64*T1 for Timer J only to replay its response); a transaction user does
   * it on an INVITE transaction it is done with (a proxy, once the call is over), which stays for
   * Timer L or H only to absorb retransmissions. At a few hundred calls a second, whole messages
   * kept that long were most of the heap and of the scavenger's copying (chosen for speed).
   */
  release(): void {
    if (this.state === 'terminated') return;
    this.req = this.req.identity();
    this.lastResponse = undefined;
    // Accepted replays nothing unless this layer retransmits the 2xx itself
    if (this.state === 'accepted' && this.ack2xxKey === undefined) this.lastBytes = undefined;
    else if (this.lastBytes) this.lastBytes = ownBytes(this.lastBytes);
  }

  /** Ends the transaction now, cancelling its timers. */
  terminate(): void {
    if (this.state === 'terminated') return;
    this.state = 'terminated';
    this.retransmitTimer?.cancel();
    this.endTimer?.cancel();
    this.layer.clearTryingTimer(this);
    if (this.ack2xxKey) this.layer.forget2xxAck(this.ack2xxKey, this);
    this.layer.removeServer(this);
  }
}

/**
 * A client transaction (§17.1). Created by {@link TransactionLayer.sendRequest}.
 */
export class ClientTransaction implements TimerTarget, SendErrorListener {
  state: ClientState;
  /** The last response received. */
  lastResponse: SipResponse | undefined;
  private bytes: Buffer | undefined;
  private interval: number;
  private retransmitTimer: TimerHandle | undefined;
  private timeoutTimer: TimerHandle | undefined;
  private endTimer: TimerHandle | undefined;
  private ackBytes: Buffer | undefined;
  private cancelWanted = false;
  private cancelUser: ClientTransactionUser | undefined;
  private cancelTx: ClientTransaction | undefined;

  constructor(
    private readonly layer: TransactionLayer,
    private req: SipRequest,
    readonly destination: SipDestination,
    private usr: ClientTransactionUser,
    readonly key: string,
  ) {
    this.state = req.method === 'INVITE' ? 'calling' : 'trying';
    this.interval = layer.timing.t1;
  }

  /**
   * The request; after release(), only what identifies it (see SipRequest.identity): once a
   * non-INVITE transaction over UDP has its final response, or its user released it.
   */
  get request(): SipRequest {
    return this.req;
  }

  /** Who gets the responses (a no-op once a non-INVITE transaction over UDP has its final response). */
  get user(): ClientTransactionUser {
    return this.usr;
  }

  get isInvite(): boolean {
    return this.req.method === 'INVITE';
  }

  /** The branch of the Via this transaction added. */
  get branch(): string {
    return this.request.via.branch!;
  }

  /** @internal */
  start(): void {
    const { t1 } = this.layer.timing;
    this.bytes = this.layer.transport.send(this.request, this.destination, this);
    if (this.destination.transport === 'udp') this.retransmitTimer = this.layer.timers.schedule(t1, this, TIMER_AE);
    this.timeoutTimer = this.layer.timers.schedule(64 * t1, this, TIMER_BF);
  }

  /**
   * Cancels a pending INVITE (§9.1): sends CANCEL once a provisional response has arrived (at
   * once if one has), nothing if a final response already came. The CANCEL's own responses go
   * to `user` (default: ignored).
   */
  cancel(user?: ClientTransactionUser): void {
    if (!this.isInvite || this.cancelTx || this.state === 'completed' || this.state === 'accepted' || this.state === 'terminated') return;
    if (this.state === 'calling') {
      this.cancelWanted = true;
      this.cancelUser = user;
      return;
    }
    this.cancelTx = this.layer.sendRequest(createCancel(this.request), this.destination, user ?? IGNORE, { keepVia: true });
  }

  /** @internal */
  onResponse(res: SipResponse): void {
    const status = res.status;
    const s = this.state;
    if (s === 'terminated') return;
    if (status < 200) {
      if (s !== 'calling' && s !== 'trying' && s !== 'proceeding') return;
      this.state = 'proceeding';
      if (this.isInvite) {
        // §17.1.1.2: no retransmission (A) and no timeout (B) once a provisional arrived
        this.retransmitTimer?.cancel();
        this.timeoutTimer?.cancel();
      }
      this.lastResponse = res;
      this.user.onResponse(this, res);
      if (this.cancelWanted) {
        this.cancelWanted = false;
        this.cancel(this.cancelUser);
      }
      return;
    }
    if (this.isInvite) {
      if (status < 300) {
        if (s === 'calling' || s === 'proceeding') {
          this.stopTimers();
          this.state = 'accepted';
          this.endTimer = this.layer.timers.schedule(64 * this.layer.timing.t1, this, TIMER_M);
        } else if (s !== 'accepted') return;
        // every 2xx (retransmissions, forks) goes to the TU, which ACKs them (§13.2.2.4)
        this.lastResponse = res;
        this.user.onResponse(this, res);
        return;
      }
      if (s === 'completed') {
        if (this.ackBytes) this.layer.transport.resend(this.ackBytes, this.destination);
        return;
      }
      if (s === 'accepted') return;
      this.stopTimers();
      this.state = 'completed';
      this.ackBytes = ownBytes(this.layer.transport.send(createAckForFailure(this.request, res), this.destination));
      this.endTimer = this.layer.timers.schedule(this.destination.transport === 'udp' ? 32_000 : 0, this, TIMER_DK);
      this.lastResponse = res;
      this.user.onResponse(this, res);
      return;
    }
    if (s === 'completed') return;
    this.stopTimers();
    this.state = 'completed';
    const unreliable = this.destination.transport === 'udp';
    this.endTimer = this.layer.timers.schedule(unreliable ? this.layer.timing.t4 : 0, this, TIMER_DK);
    this.lastResponse = res;
    this.user.onResponse(this, res);
    // Completed for Timer K only to absorb retransmissions of the response: nothing else is needed
    if (unreliable && this.state === 'completed') {
      this.release();
      this.usr = IGNORE;
    }
  }

  /**
   * Lets go of the request but what identifies it (see SipRequest.identity), of the last response
   * and, once a final response came, of the request's bytes. See ServerTransaction.release.
   */
  release(): void {
    if (this.state === 'terminated') return;
    this.req = this.req.identity();
    this.lastResponse = undefined;
    if (this.state === 'completed' || this.state === 'accepted') this.bytes = undefined;
  }

  onTimer(id: number): void {
    const { t2 } = this.layer.timing;
    if (id === TIMER_AE) {
      if (!this.bytes || (this.state !== 'calling' && this.state !== 'trying' && this.state !== 'proceeding')) return;
      this.layer.transport.resend(this.bytes, this.destination);
      // §17.1.1.2 timer A doubles without bound; §17.1.2.2 timer E caps at T2 (at once in Proceeding)
      if (this.isInvite) this.interval *= 2;
      else this.interval = this.state === 'proceeding' ? t2 : Math.min(2 * this.interval, t2);
      this.retransmitTimer = this.layer.timers.schedule(this.interval, this, TIMER_AE);
      return;
    }
    if (id === TIMER_BF) {
      if (this.state === 'calling' || this.state === 'trying' || this.state === 'proceeding') {
        this.terminate();
        this.user.onTimeout?.(this);
      }
      return;
    }
    this.terminate(); // D, K, M
  }

  onSendError(err: Error): void {
    if (this.state === 'terminated' || this.state === 'completed' || this.state === 'accepted') return;
    this.terminate();
    this.user.onTransportError?.(this, err);
  }

  /** Ends the transaction now, cancelling its timers. */
  terminate(): void {
    if (this.state === 'terminated') return;
    this.state = 'terminated';
    this.stopTimers();
    this.endTimer?.cancel();
    this.layer.removeClient(this);
  }

  private stopTimers(): void {
    this.retransmitTimer?.cancel();
    this.timeoutTimer?.cancel();
  }
}

const IGNORE: ClientTransactionUser = { onResponse: () => undefined };

/** Options of {@link TransactionLayer.sendRequest}. */
export interface SendRequestOptions {
  /** Branch of the Via to add (default: a new random one; a proxy may embed its loop hash). */
  branch?: string;
  /** The request already carries its topmost Via (CANCEL copies the INVITE's); add none. */
  keepVia?: boolean;
}

/**
 * The transaction layer: sits on a {@link SipTransport}, matches requests and responses to
 * transactions and hands new requests to the {@link TransactionUser}.
 *
 * @example
 * const layer = new TransactionLayer(transport, core, { t1: 500 }, timers);
 * await transport.start(layer);
 * const tx = layer.sendRequest(invite, { transport: 'udp', host: '10.0.0.5', port: 5060 }, proxyCore);
 * tx.cancel();
 */
export class TransactionLayer implements SipTransportUser {
  readonly timing: { t1: number; t2: number; t4: number };
  readonly retransmit2xx: boolean;
  readonly forceRport: boolean;
  private readonly trying: 'immediate' | 'delayed';
  private readonly servers = new Map<string, ServerTransaction>();
  private readonly clients = new Map<string, ClientTransaction>();
  /** §8.2.2.2 merged-request detection: From tag + Call-ID + CSeq of pending requests without To tag. */
  private readonly pendingByDialogless = new Map<string, ServerTransaction>();
  private readonly awaiting2xxAck = new Map<string, ServerTransaction>();
  private readonly tryingTimers = new Map<ServerTransaction, TimerHandle>();

  constructor(
    readonly transport: TransactionTransport,
    readonly tu: TransactionUser,
    options: TransactionOptions = {},
    readonly timers: SipTimers = realTimers,
  ) {
    this.timing = { t1: options.t1 ?? 500, t2: options.t2 ?? 4000, t4: options.t4 ?? 5000 };
    this.retransmit2xx = options.retransmit2xx ?? true;
    this.forceRport = options.forceRport ?? true;
    this.trying = options.trying ?? 'immediate';
  }

  /** Live server and client transactions. */
  get size(): { server: number; client: number } {
    return { server: this.servers.size, client: this.clients.size };
  }

  /** The server transaction of the INVITE that `req` (an ACK or CANCEL) refers to. */
  findInvite(req: SipRequest): ServerTransaction | undefined {
    return this.servers.get(serverKey(req, 'INVITE'));
  }

  onRequest(req: SipRequest, src: SipSource): void {
    if (req.method === 'ACK') {
      const tx = this.servers.get(serverKey(req, 'INVITE'));
      if (tx) return tx.onAck(req, src);
      const awaiting = this.awaiting2xxAck.get(ackKey(req.callId, req.cseq.seq, req.to.tag));
      awaiting?.ackedTwoHundred();
      this.tu.onAck(req, src, awaiting);
      return;
    }
    const key = serverKey(req, req.method);
    const existing = this.servers.get(key);
    if (existing) return existing.onRetransmission();
    let merged: ServerTransaction | undefined;
    let mergeKey: string | undefined;
    if (req.to.tag === undefined && req.method !== 'CANCEL') {
      mergeKey = `${req.from.tag ?? ''}|${req.callId}|${req.cseq.seq}|${req.method}`;
      merged = this.pendingByDialogless.get(mergeKey);
    }
    // Stored keys are copied: built from slices of the datagram, they would keep its whole text for
    // the transaction's lifetime (up to 64*T1)
    const tx = new ServerTransaction(this, req, src, detached(key), merged, mergeKey && !merged ? detached(mergeKey) : undefined);
    this.servers.set(tx.key, tx);
    if (tx.mergeKey) this.pendingByDialogless.set(tx.mergeKey, tx);
    if (req.method === 'CANCEL') return this.onCancel(tx);
    if (req.method !== 'INVITE') return this.tu.onRequest(tx);
    if (this.trying === 'delayed') this.tryingTimers.set(tx, this.timers.schedule(200, tx, TIMER_TRYING));
    this.tu.onRequest(tx);
    // After the TU, so an INVITE it refused at once (503 while overloaded, a cheap 4xx) costs one
    // datagram, not two; one it is still working on gets its 100 in this same turn
    if (this.trying === 'immediate' && tx.lastStatus === 0 && tx.state === 'proceeding') tx.reply(100);
  }

  onResponse(res: SipResponse, src: SipSource): void {
    const tx = this.clients.get(`${res.via.branch ?? ''}|${res.cseq.method}`);
    if (tx) tx.onResponse(res);
    else this.tu.onStrayResponse(res, src);
  }

  onParseError(err: SipParseError, src: SipSource): void {
    this.tu.onParseError(err, src);
  }

  /**
   * Sends a request in a new client transaction. Adds the topmost Via (this element's sent-by
   * for the destination transport, a new branch, `rport`) unless `opts.keepVia`.
   */
  sendRequest(req: SipRequest, dest: SipDestination, user: ClientTransactionUser, opts: SendRequestOptions = {}): ClientTransaction {
    if (!opts.keepVia) req.headers.prepend('Via', this.localVia(dest, opts.branch ?? newBranch()));
    const key = `${req.via.branch ?? ''}|${req.cseq.method}`;
    const tx = new ClientTransaction(this, req, dest, user, key);
    this.clients.set(key, tx);
    tx.start();
    return tx;
  }

  /**
   * Sends a request outside any transaction: the ACK of a 2xx (§13.2.2.4) or a stateless
   * forward. Adds a Via like {@link sendRequest} unless `opts.keepVia`.
   */
  sendStateless(req: SipRequest, dest: SipDestination, opts: SendRequestOptions = {}): void {
    if (!opts.keepVia) req.headers.prepend('Via', this.localVia(dest, opts.branch ?? newBranch()));
    this.transport.send(req, dest);
  }

  /** A Via value for this element on `dest.transport` (sent-by = advertised host and listening port). */
  localVia(dest: SipDestination, branch: string): string {
    return formatVia({
      transport: dest.transport,
      host: this.transport.advertisedHost,
      port: this.transport.advertisedPort(dest.transport),
      branch,
      params: [['rport', null]],
    });
  }

  /** Cancels every timer and forgets every transaction (shutdown). */
  close(): void {
    for (const tx of [...this.servers.values()]) tx.terminate();
    for (const tx of [...this.clients.values()]) tx.terminate();
  }

  private onCancel(cancelTx: ServerTransaction): void {
    const invite = this.servers.get(serverKey(cancelTx.request, 'INVITE'));
    if (!invite || invite.state === 'terminated') {
      cancelTx.reply(481);
      return;
    }
    // §9.2: 200 to the CANCEL, with the To tag of the INVITE's responses (after which the
    // transaction keeps only the CANCEL's identity: the TU gets the whole request)
    const cancel = cancelTx.request;
    cancelTx.reply(200, { toTag: invite.toTag });
    if (!invite.finalSent && !invite.cancelled) {
      invite.cancelled = true;
      this.tu.onCancel(invite, cancel);
    }
  }

  /** @internal */
  removeServer(tx: ServerTransaction): void {
    if (this.servers.get(tx.key) === tx) this.servers.delete(tx.key);
    if (tx.mergeKey && this.pendingByDialogless.get(tx.mergeKey) === tx) this.pendingByDialogless.delete(tx.mergeKey);
  }

  /** @internal */
  removeClient(tx: ClientTransaction): void {
    if (this.clients.get(tx.key) === tx) this.clients.delete(tx.key);
  }

  /** @internal */
  await2xxAck(key: string, tx: ServerTransaction): void {
    this.awaiting2xxAck.set(key, tx);
  }

  /** @internal */
  forget2xxAck(key: string, tx: ServerTransaction): void {
    if (this.awaiting2xxAck.get(key) === tx) this.awaiting2xxAck.delete(key);
  }

  /** @internal */
  clearTryingTimer(tx: ServerTransaction): void {
    const t = this.tryingTimers.get(tx);
    if (t) {
      t.cancel();
      this.tryingTimers.delete(tx);
    }
  }
}
