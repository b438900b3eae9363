/**
 * A small SIP core: transports + transactions + the request checks every RFC 3261 element makes
 * (§8.2 UAS behaviour, parts of §16.3 for requests the application forwards), with a handler per
 * method. The hand-off logic (path A/B, proxying to agents) is built on top of this.
 */
import { isHandoffError } from '../domain/errors.js';
import { SipCounters } from './counters.js';
import { mediaType, parseVia, type Via } from './header-values.js';
import { sanitizeHeaderText } from './headers.js';
import { MAGIC_COOKIE, digest16, randomToken } from './ids.js';
import { KNOWN_METHODS, createResponse, type SipRequest, type SipResponse, type TransportName } from './message.js';
import type { SipParseError } from './parser.js';
import {
  SipTransport,
  responseDestination,
  type SipDestination,
  type SipSource,
  type SipTransportOptions,
} from './transport.js';
import {
  TransactionLayer,
  type ClientTransaction,
  type ClientTransactionUser,
  type SendRequestOptions,
  type ServerTransaction,
  type TransactionOptions,
  type TransactionUser,
} from './transactions.js';
import { bareHost, type SipUri } from './uri.js';
import { realTimers, type SipTimers } from './timers.js';

/** Handles one request; may answer later (return a promise, or keep `tx` and reply when ready). */
export type RequestHandler = (tx: ServerTransaction) => void | Promise<void>;

/**
 * An error a handler throws to answer with a given status. A thrown `HandoffError` is answered
 * with its `sipStatus` the same way; anything else with 500.
 *
 * @example
 * throw new SipError(404, { warning: 'no live lease for this caller' });
 */
export class SipError extends Error {
  constructor(
    readonly status: number,
    readonly options: { reason?: string; warning?: string; headers?: Array<readonly [string, string]> } = {},
  ) {
    super(options.warning ?? options.reason ?? `SIP ${status}`);
    this.name = 'SipError';
  }
}

export interface SipServerOptions extends SipTransportOptions {
  transaction?: TransactionOptions;
  /** Timer source of the transaction layer and rate limiter (default real timers). */
  timers?: SipTimers;
  /** Option tags this element supports: advertised in Supported, checked against Require (420). */
  supported?: string[];
  /** Body media types accepted (415 with Accept otherwise; default `application/sdp`). */
  accept?: string[];
  /** Request-URI schemes served (416 otherwise; default sip, sips, tel). */
  uriSchemes?: string[];
  /**
   * Methods the application forwards (proxy role). For these, Max-Forwards 0 is answered 483
   * (§16.3 step 3), Proxy-Require is checked instead of Require (420), loops are answered 482
   * (§16.3 step 4) and the body type is not checked.
   */
  forwardedMethods?: string[];
  /** Answer 482 to merged requests (§8.2.2.2; default true). */
  detectMergedRequests?: boolean;
  /** `Server` header value of the responses this core builds (default none). */
  serverName?: string;
}

const DEFAULT_PORT: Record<TransportName, number> = { udp: 5060, tcp: 5060, tls: 5061 };

/** Quotes text for a Warning header (RFC 3261 §20.43), CR/LF/NUL removed. */
function warningValue(host: string, text: string): string {
  return `399 ${host} "${sanitizeHeaderText(text).replace(/[\\"]/g, (c) => '\\' + c)}"`;
}

/**
 * The destination of a SIP/SIPS URI without DNS SRV/NAPTR (RFC 3263 is left to the caller):
 * `maddr` or host, the port or the transport's default, the `transport` parameter (`sips:` → TLS).
 *
 * @example
 * destinationForUri(parseUri('sip:agent@10.0.0.5:5080;transport=tcp') as SipUri);
 * // { transport: 'tcp', host: '10.0.0.5', port: 5080 }
 */
export function destinationForUri(uri: SipUri): SipDestination {
  const param = uri.params.get('transport')?.toLowerCase();
  const transport: TransportName = uri.scheme === 'sips' || param === 'tls' ? 'tls' : param === 'tcp' ? 'tcp' : 'udp';
  const host = uri.params.get('maddr') ?? uri.host;
  return { transport, host: bareHost(host), port: uri.port ?? DEFAULT_PORT[transport] };
}

/**
 * A SIP endpoint core. Registers handlers by method; everything else gets the RFC 3261 answer:
 * OPTIONS → 200 (Allow, Accept, Supported), other known methods → 405 with Allow, unknown
 * methods → 501 with Allow, unsupported URI scheme → 416, unsupported Require → 420 with
 * Unsupported, unsupported body type → 415 with Accept, merged requests → 482, CANCEL → 200 and
 * 487 to the INVITE. Malformed requests are answered statelessly (400/505/501/513); malformed
 * responses dropped; every case counted in {@link SipServer.counters}.
 *
 * @example
 * const server = new SipServer({ udp: { host: '127.0.0.1', port: 0 }, tcp: { host: '127.0.0.1', port: 0 } });
 * server.onRequest('INVITE', (tx) => { tx.reply(486); });
 * await server.start();
 * console.log(server.addresses().udp?.port);
 */
export class SipServer {
  readonly transport: SipTransport;
  readonly transactions: TransactionLayer;
  readonly counters: SipCounters;
  private readonly handlers = new Map<string, RequestHandler>();
  private readonly opts: SipServerOptions;
  private readonly supported: Set<string>;
  private readonly accept: Set<string>;
  private readonly schemes: Set<string>;
  private readonly forwarded: Set<string>;
  private ackHandler: ((ack: SipRequest, src: SipSource, invite: ServerTransaction | undefined) => void) | undefined;
  private cancelHandler: ((invite: ServerTransaction, cancel: SipRequest) => void) | undefined;
  private strayHandler: ((res: SipResponse, src: SipSource) => void) | undefined;
  private ackTimeoutHandler: ((tx: ServerTransaction) => void) | undefined;

  constructor(options: SipServerOptions) {
    this.opts = options;
    this.counters = options.counters ?? new SipCounters();
    const timers = options.timers ?? realTimers;
    this.transport = new SipTransport({ ...options, counters: this.counters, timers });
    const core: TransactionUser = {
      onRequest: (tx) => this.dispatch(tx),
      onAck: (ack, src, invite) => this.handleAck(ack, src, invite),
      onCancel: (invite, cancel) => this.handleCancel(invite, cancel),
      onStrayResponse: (res, src) => this.handleStray(res, src),
      onAckTimeout: (tx) => this.ackTimeoutHandler?.(tx),
      onParseError: (err, src) => this.answerParseError(err, src),
    };
    this.transactions = new TransactionLayer(
      this.transport,
      core,
      { forceRport: options.forceRport, ...options.transaction },
      timers,
    );
    this.supported = new Set((options.supported ?? []).map((t) => t.toLowerCase()));
    this.accept = new Set((options.accept ?? ['application/sdp']).map((t) => t.toLowerCase()));
    this.schemes = new Set((options.uriSchemes ?? ['sip', 'sips', 'tel']).map((s) => s.toLowerCase()));
    this.forwarded = new Set(options.forwardedMethods ?? []);
  }

  /** Handles requests of `method` (replacing the default for OPTIONS). */
  onRequest(method: string, handler: RequestHandler): this {
    this.handlers.set(method, handler);
    return this;
  }

  /** Receives the ACKs of 2xx responses (dialog layer). Default: ignored. */
  onAck(handler: (ack: SipRequest, src: SipSource, invite: ServerTransaction | undefined) => void): this {
    this.ackHandler = handler;
    return this;
  }

  /**
   * Receives CANCELs of pending INVITEs (200 already sent to the CANCEL). Default: answer 487
   * to the INVITE (§9.2). A proxy forwards the CANCEL instead and relays the 487 it gets back.
   */
  onCancel(handler: (invite: ServerTransaction, cancel: SipRequest) => void): this {
    this.cancelHandler = handler;
    return this;
  }

  /** Receives responses that match no client transaction. Default: dropped. */
  onStrayResponse(handler: (res: SipResponse, src: SipSource) => void): this {
    this.strayHandler = handler;
    return this;
  }

  /** Told when a final response to an INVITE was never acknowledged. */
  onAckTimeout(handler: (tx: ServerTransaction) => void): this {
    this.ackTimeoutHandler = handler;
    return this;
  }

  async start(): Promise<void> {
    await this.transport.start(this.transactions);
  }

  async close(): Promise<void> {
    this.transactions.close();
    await this.transport.close();
  }

  /** Bound address and port of each listener. */
  addresses(): ReturnType<SipTransport['addresses']> {
    return this.transport.addresses();
  }

  /** The Allow header value: the methods with a handler, plus OPTIONS, ACK and CANCEL. */
  get allow(): string {
    const m = new Set(['OPTIONS', ...this.handlers.keys()]);
    if (m.has('INVITE')) m.add('ACK').add('CANCEL');
    return [...m].join(', ');
  }

  /** Allow, Accept and Supported headers, as a default OPTIONS answer carries (§11.2). */
  capabilityHeaders(): Array<[string, string]> {
    const h: Array<[string, string]> = [['Allow', this.allow], ['Accept', [...this.accept].join(', ')]];
    if (this.supported.size > 0) h.push(['Supported', [...this.supported].join(', ')]);
    return h;
  }

  /** Sends a request in a client transaction (adds this element's Via). */
  sendRequest(req: SipRequest, dest: SipDestination, user: ClientTransactionUser, opts?: SendRequestOptions): ClientTransaction {
    return this.transactions.sendRequest(req, dest, user, opts);
  }

  /** Sends a response outside a transaction (a proxy forwarding a 2xx statelessly, §16.7). */
  sendResponse(res: SipResponse, dest: SipDestination): void {
    this.transport.send(res, dest);
  }

  /**
   * Where a response to a request with this topmost Via, received from `src`, goes (§18.2.2): for
   * a proxy forwarding a response after removing its own Via.
   */
  responseDestination(topVia: Via, src: SipSource): SipDestination {
    return responseDestination(topVia, src, this.opts.forceRport ?? true);
  }

  /** True when `via` was written by this element (its sent-by is ours). */
  isOwnVia(via: Via): boolean {
    const t = via.transport.toLowerCase() as TransportName;
    const port = via.port ?? DEFAULT_PORT[t] ?? 5060;
    return bareHost(via.host) === bareHost(this.transport.advertisedHost) && port === this.transport.advertisedPort(t);
  }

  /**
   * The loop-detection part of a branch (§16.6 step 8): a digest of what identifies the request
   * as received, before any retargeting (Request-URI, From/To tags, Call-ID, CSeq number,
   * Proxy-Require, Proxy-Authorization).
   */
  loopHash(req: SipRequest): string {
    return digest16([
      req.uri,
      req.from.tag ?? '',
      req.to.tag ?? '',
      req.callId,
      String(req.cseq.seq),
      req.headers.getLines('proxy-require').join(','),
      req.headers.getLines('proxy-authorization').join(','),
    ]);
  }

  /** A branch for forwarding `req` that embeds its loop hash: pass as `sendRequest(..., { branch })`. */
  loopBranch(req: SipRequest): string {
    return `${MAGIC_COOKIE}${this.loopHash(req)}.${randomToken(10)}`;
  }

  /**
   * §16.3 step 4: the request carries a Via of ours whose branch holds the hash this request
   * would get now, so it has looped (a spiral, with a retargeted Request-URI, gets another hash).
   */
  isLooped(req: SipRequest): boolean {
    let prefix: string | undefined;
    for (const via of req.vias) {
      if (!this.isOwnVia(via)) continue;
      prefix ??= `${MAGIC_COOKIE}${this.loopHash(req)}.`;
      if (via.branch?.startsWith(prefix)) return true;
    }
    return false;
  }

  /**
   * A Record-Route value for this element on `transport` (§16.6 step 4), with `lr`.
   *
   * @example
   * fwd.headers.prepend('Record-Route', server.recordRoute('udp'));
   */
  recordRoute(transport: TransportName, params: Iterable<readonly [string, string]> = []): string {
    let uri = `sip:${this.transport.advertisedHost}:${this.transport.advertisedPort(transport)}`;
    if (transport !== 'udp') uri += `;transport=${transport}`;
    for (const [k, v] of params) uri += `;${k}=${v}`;
    return `<${uri};lr>`;
  }

  // --- internals ---

  private dispatch(tx: ServerTransaction): void {
    const req = tx.request;
    const method = req.method;
    const reject = this.check(tx);
    if (reject) return;
    const handler = this.handlers.get(method) ?? (method === 'OPTIONS' ? this.defaultOptions : undefined);
    if (!handler) return; // check() answered 405/501
    try {
      const p = handler(tx);
      if (p && typeof (p as Promise<void>).then === 'function') (p as Promise<void>).catch((err: unknown) => this.answerError(tx, err));
    } catch (err) {
      this.answerError(tx, err);
    }
  }

  private handleAck(ack: SipRequest, src: SipSource, invite: ServerTransaction | undefined): void {
    if (this.ackHandler) this.ackHandler(ack, src, invite);
    else if (!invite) this.counters.dropped('stray-ack');
  }

  private handleCancel(invite: ServerTransaction, cancel: SipRequest): void {
    if (this.cancelHandler) this.cancelHandler(invite, cancel);
    else invite.reply(487);
  }

  private handleStray(res: SipResponse, src: SipSource): void {
    if (this.strayHandler) this.strayHandler(res, src);
    else this.counters.dropped('stray-response');
  }

  /** Answers a malformed request statelessly when it can be answered; counts the rest. */
  private answerParseError(err: SipParseError, src: SipSource): void {
    const req = err.request;
    const viaText = req?.headers.get('via');
    if (err.status === 0 || !req || viaText === undefined || req.method === 'ACK') {
      this.counters.dropped(err.status === 513 ? 'oversize' : err.kind === 'garbage' ? 'garbage' : 'malformed');
      return;
    }
    const headers: Array<[string, string]> = [['Warning', warningValue(this.transport.advertisedHost, err.reason)]];
    if (err.status === 501 || err.status === 405) headers.push(['Allow', this.allow]);
    if (this.opts.serverName) headers.push(['Server', this.opts.serverName]);
    const res = createResponse(req, err.status, { headers });
    this.transport.send(res, responseDestination(parseVia(viaText), src, this.opts.forceRport ?? true));
  }

  private readonly defaultOptions: RequestHandler = (tx) => {
    tx.reply(200, { headers: this.capabilityHeaders() });
  };

  /** §8.2.1-8.2.3 and §16.3: answers and returns true when the request is refused. */
  private check(tx: ServerTransaction): boolean {
    const req = tx.request;
    const method = req.method;
    if (tx.mergedWith && (this.opts.detectMergedRequests ?? true)) return this.refuse(tx, 482, 'merged request');
    if (!this.handlers.has(method) && method !== 'OPTIONS') {
      // §8.2.1: 405 for a method we know but do not serve here, 501 for one we do not know
      return this.refuse(tx, KNOWN_METHODS.has(method) ? 405 : 501, undefined, [['Allow', this.allow]]);
    }
    // §8.2.2.1: never fall back on the To header for an unknown scheme (RFC 4475 unkscm)
    if (!this.schemes.has(req.requestUri.scheme)) return this.refuse(tx, 416);
    const forwarded = this.forwarded.has(method);
    if (forwarded && req.maxForwards === 0) return this.refuse(tx, 483);
    if (forwarded && this.isLooped(req)) return this.refuse(tx, 482);
    // §16.3 step 5: a proxy checks Proxy-Require only; Require is for the UAS it forwards to
    const tags = forwarded ? req.optionTags('Proxy-Require') : req.optionTags('Require');
    const unsupported = tags.filter((t) => !this.supported.has(t.toLowerCase()));
    if (unsupported.length > 0) return this.refuse(tx, 420, undefined, [['Unsupported', unsupported.join(', ')]]);
    if (!forwarded && req.body.length > 0) {
      const ct = req.headers.get('content-type');
      if (ct === undefined || !this.accept.has(mediaType(ct))) {
        return this.refuse(tx, 415, undefined, [['Accept', [...this.accept].join(', ')]]);
      }
    }
    return false;
  }

  private refuse(tx: ServerTransaction, status: number, warning?: string, headers: Array<[string, string]> = []): true {
    if (warning) headers.push(['Warning', warningValue(this.transport.advertisedHost, warning)]);
    if (this.opts.serverName) headers.push(['Server', this.opts.serverName]);
    tx.reply(status, { headers });
    tx.release(); // no handler will see it: only the identity and the answer wait for the ACK
    return true;
  }

  private answerError(tx: ServerTransaction, err: unknown): void {
    if (tx.finalSent || tx.state === 'terminated') return;
    if (err instanceof SipError) {
      const headers: Array<[string, string]> = (err.options.headers ?? []).map(([k, v]) => [k, v]);
      if (err.options.warning) headers.push(['Warning', warningValue(this.transport.advertisedHost, err.options.warning)]);
      tx.reply(err.status, { reason: err.options.reason, headers });
    } else if (isHandoffError(err)) {
      const headers: Array<[string, string]> = [['Warning', warningValue(this.transport.advertisedHost, err.message)]];
      if (err.retryAfter !== undefined) headers.push(['Retry-After', String(err.retryAfter)]);
      tx.reply(err.sipStatus, { headers });
    } else {
      tx.reply(500);
    }
  }
}
