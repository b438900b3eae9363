/**
 * UDP, TCP and TLS transports (RFC 3261 §18): listeners, connection management and reuse,
 * Content-Length framing on streams, Via `received`/`rport` stamping (§18.2.1, RFC 3581),
 * response routing (§18.2.2), and the protections that keep hostile input from crashing or
 * stalling the listener (size limits, slow senders, idle and max connections, rate limit).
 */
import dgram from 'node:dgram';
import dns from 'node:dns';
import net from 'node:net';
import tls from 'node:tls';
import { SipCounters, type DropReason } from './counters.js';
import type { Via } from './header-values.js';
import { createResponse, type SipMessage, type SipRequest, type SipResponse, type TransportName } from './message.js';
import { DEFAULT_PARSER_LIMITS, KEEPALIVE_PING, SipParseError, SipStreamParser, parseDatagram, type ParserLimits } from './parser.js';
import { RateLimiter, type RateLimitOptions } from './rate-limit.js';
import { serialize } from './serializer.js';
import { realTimers, type SipTimers } from './timers.js';

/** Where a message came from. */
export interface SipSource {
  readonly transport: TransportName;
  readonly remoteAddress: string;
  readonly remotePort: number;
  readonly localAddress: string;
  readonly localPort: number;
  /** The stream connection it arrived on (0 for UDP): responses go back on it (§18.2.2). */
  readonly connectionId: number;
  /** Arrived on the front's UDP socket (SIP workers): responses leave from it (RFC 3581 §4). */
  readonly front?: true;
}

/**
 * Where to send a message. For TCP/TLS, `connectionId` names an existing connection to use
 * first; `host`/`port` are where to connect otherwise (an open connection to the same
 * address is reused).
 */
export interface SipDestination {
  readonly transport: TransportName;
  readonly host: string;
  readonly port: number;
  readonly connectionId?: number;
  /** UDP: send from the front's socket (a response to a request that arrived there). */
  readonly front?: true;
}

/** Told when a message could not be sent (connect failure or timeout, socket error). */
export interface SendErrorListener {
  onSendError(error: Error): void;
}

/** The consumer of incoming messages (the transaction layer). */
export interface SipTransportUser {
  onRequest(req: SipRequest, src: SipSource): void;
  onResponse(res: SipResponse, src: SipSource): void;
  /**
   * A malformed message. Answer it (statelessly) if `err.status` is non-zero and it has a Via;
   * on a stream with `err.fatal`, the transport closes the connection right after this returns.
   */
  onParseError(err: SipParseError, src: SipSource): void;
}

export interface ListenOptions {
  /** Address to bind (e.g. '127.0.0.1', '0.0.0.0', '::'). */
  host: string;
  /** Port; 0 picks a free one (see {@link SipTransport.addresses}). */
  port: number;
}

export interface TlsListenOptions extends ListenOptions {
  /** PEM certificate chain and private key. */
  cert: string | Buffer;
  key: string | Buffer;
}

export interface SipTransportOptions {
  udp?: ListenOptions;
  tcp?: ListenOptions;
  tls?: TlsListenOptions;
  /** Host written in Via sent-by and Record-Route (default: the bound address, 127.0.0.1 for a wildcard). */
  advertisedHost?: string;
  limits?: Partial<ParserLimits>;
  /** Close a stream connection with no traffic for this long (default 120 s). */
  idleTimeoutMs?: number;
  /** A message must complete within this long of its first byte (default 10 s). */
  messageTimeoutMs?: number;
  /** Open stream connections at most, inbound and outbound (default 1,000). */
  maxConnections?: number;
  /** Bytes buffered per connection at most, read or write side (default 256 KiB). */
  maxBufferedBytes?: number;
  /** Outbound TCP/TLS connect timeout (default 5 s). */
  connectTimeoutMs?: number;
  /**
   * Send UDP responses to the packet's source port even when the client did not ask with
   * `;rport` (RFC 3581 behaviour for every request, as NAT-facing servers do; default true).
   * False: strict RFC 3261 §18.2.2 (Via sent-by port, `maddr` honoured).
   */
  forceRport?: boolean;
  /** Per-source request rate limit, checked on the start line before parsing the rest. */
  rateLimit?: RateLimitOptions;
  /** Outbound TLS: verify the peer (default true) and extra CAs. */
  tlsClient?: { rejectUnauthorized?: boolean; ca?: string | Buffer };
  counters?: SipCounters;
  /** Clock for the rate limiter (default: real time). */
  timers?: SipTimers;
  /**
   * A SIP worker's front (see workers.ts): the public UDP socket is read by another thread, which
   * hands this transport its datagrams ({@link SipTransport.inject}); responses to them are given
   * back to `send` so they leave from the address they were sent to.
   */
  front?: { address: string; port: number; send(data: Buffer, port: number, host: string): void };
}

const DEFAULT_PORT: Record<TransportName, number> = { udp: 5060, tcp: 5060, tls: 5061 };

/** Destinations a response or request must never be sent to (RFC 4475 bcast). */
function isForbiddenTarget(host: string): boolean {
  return host === '255.255.255.255' || host === '0.0.0.0' || host === '::' || /^2(2[4-9]|3[0-9])\./.test(host);
}

/**
 * Where a response to a request from `src` goes (RFC 3261 §18.2.2, RFC 3581 §4): the same
 * connection for streams (falling back to the source address and the Via port); for UDP the
 * source address, at the source port when `rport` was asked for (or `forceRport`), else the Via
 * sent-by port; `maddr` when set and not forcing rport.
 */
export function responseDestination(topVia: Via | null, src: SipSource, forceRport: boolean): SipDestination {
  const { transport } = src;
  if (transport !== 'udp') {
    return { transport, host: src.remoteAddress, port: topVia?.port ?? DEFAULT_PORT[transport], connectionId: src.connectionId };
  }
  const front = src.front ? ({ front: true } as const) : {};
  if (!forceRport && topVia?.maddr) return { transport, host: topVia.maddr, port: topVia.port ?? 5060, ...front };
  if (forceRport || !topVia || topVia.rport !== undefined) return { transport, host: src.remoteAddress, port: src.remotePort, ...front };
  return { transport, host: src.remoteAddress, port: topVia.port ?? 5060, ...front };
}

/**
 * RFC 3261 §18.2.1 / RFC 3581 §4: stamps `received` (when the sent-by host is not the source
 * address) and fills an empty `rport`, rewriting the topmost Via of a received request.
 */
function stampVia(req: SipRequest, src: SipSource): void {
  const via = req.via;
  const hostDiffers = via.host.replace(/^\[|\]$/g, '').toLowerCase() !== src.remoteAddress.toLowerCase();
  if (!hostDiffers && via.rport !== null) return;
  let text = req.headers.get('via')!;
  if (via.rport === null) text = text.replace(/;\s*rport(?=\s*(;|$))/i, `;rport=${src.remotePort}`);
  if (via.received !== undefined) text = text.replace(/;\s*received\s*=\s*[^;\s]*/i, '');
  text += `;received=${src.remoteAddress}`;
  req.headers.replaceFirst('via', text);
}

/** Start line begins with "SIP/": a response (never rate limited: it answers our request). */
export function isResponseStart(buf: Uint8Array): boolean {
  return buf.length >= 4 && buf[0] === 0x53 && buf[1] === 0x49 && buf[2] === 0x50 && buf[3] === 0x2f;
}

let nextConnectionId = 1;

class Connection {
  readonly id = nextConnectionId++;
  readonly parser: SipStreamParser;
  lastActivity = Date.now();
  /** When the first byte of the incomplete message arrived; 0 when none is pending. */
  partialSince = 0;
  connected: boolean;
  closing = false;
  /** Waiting for the outbound connect to finish. */
  listeners: SendErrorListener[] = [];
  readonly src: SipSource;

  constructor(
    readonly socket: net.Socket,
    readonly transport: 'tcp' | 'tls',
    readonly key: string,
    limits: ParserLimits,
    connected: boolean,
    remote: { address: string; port: number },
    localPort: number,
  ) {
    this.parser = new SipStreamParser(limits);
    this.connected = connected;
    this.src = {
      transport,
      remoteAddress: remote.address,
      remotePort: remote.port,
      localAddress: socket.localAddress ?? '',
      localPort,
      connectionId: this.id,
    };
  }
}

/**
 * The UDP socket's resolver: an IP literal (every destination but a configured agent host name) is
 * its own address. dns.lookup answers literals too, but a tick later, for every datagram sent.
 */
export function lookupLiteral(host: string, options: dns.LookupOneOptions, callback: (err: NodeJS.ErrnoException | null, address: string, family: number) => void): void {
  const family = net.isIP(host);
  if (family) callback(null, host, family);
  else dns.lookup(host, options, callback);
}

/**
 * The SIP transport layer: one object for every listener, delivering parsed messages with their
 * source to a {@link SipTransportUser} and sending messages to destinations.
 *
 * @example
 * const t = new SipTransport({ udp: { host: '127.0.0.1', port: 0 }, tcp: { host: '127.0.0.1', port: 0 } });
 * await t.start(user);
 * t.addresses().udp?.port; // the bound port
 * t.send(createResponse(req, 200), responseDestination(req.via, src, true));
 */
export class SipTransport {
  readonly counters: SipCounters;
  private readonly limits: ParserLimits;
  private readonly opts: SipTransportOptions;
  private readonly limiter: RateLimiter | undefined;
  private user: SipTransportUser | undefined;
  private udp: dgram.Socket | undefined;
  private tcpServer: net.Server | undefined;
  private tlsServer: tls.Server | undefined;
  private readonly connections = new Map<number, Connection>();
  private readonly byAddress = new Map<string, Connection>();
  private sweepTimer: NodeJS.Timeout | undefined;
  private readonly bound: Partial<Record<TransportName, { address: string; port: number }>> = {};

  constructor(options: SipTransportOptions) {
    this.opts = options;
    this.limits = { ...DEFAULT_PARSER_LIMITS, ...options.limits };
    this.counters = options.counters ?? new SipCounters();
    this.limiter = options.rateLimit ? new RateLimiter(options.rateLimit, options.timers ?? realTimers) : undefined;
  }

  /** Binds every configured listener. */
  async start(user: SipTransportUser): Promise<void> {
    this.user = user;
    const { udp, tcp, tls: tlsOpts } = this.opts;
    if (udp) await this.startUdp(udp);
    if (tcp) {
      this.tcpServer = net.createServer({ noDelay: true }, (s) => this.accept(s, 'tcp'));
      await this.listen(this.tcpServer, tcp, 'tcp');
    }
    if (tlsOpts) {
      this.tlsServer = tls.createServer({ cert: tlsOpts.cert, key: tlsOpts.key }, (s) => this.accept(s, 'tls'));
      // handshake failures of hostile clients must not surface as unhandled errors
      this.tlsServer.on('tlsClientError', () => this.counters.dropped('garbage'));
      await this.listen(this.tlsServer, tlsOpts, 'tls');
    }
    const sweepMs = Math.min(1000, Math.max(20, Math.min(this.idleTimeout, this.messageTimeout) / 4));
    this.sweepTimer = setInterval(() => this.sweep(), sweepMs);
    this.sweepTimer.unref();
  }

  /** Bound address and port of each listener (the real port when 0 was asked). */
  addresses(): Partial<Record<TransportName, { address: string; port: number }>> {
    return { ...this.bound };
  }

  /** Every address that reaches this transport: its listeners and the front it is handed datagrams from. */
  localAddresses(): Array<{ address: string; port: number }> {
    const out = Object.values(this.bound);
    if (this.opts.front) out.push(this.opts.front);
    return out;
  }

  /** Host for Via sent-by / Record-Route. */
  get advertisedHost(): string {
    if (this.opts.advertisedHost) return this.opts.advertisedHost;
    const any = this.bound.udp ?? this.bound.tcp ?? this.bound.tls;
    const a = any?.address ?? '127.0.0.1';
    if (a === '0.0.0.0' || a === '::') return '127.0.0.1';
    return a.includes(':') ? `[${a}]` : a;
  }

  /** Port for Via sent-by on `transport` (its listening port, §18.1.1). */
  advertisedPort(transport: TransportName): number {
    return this.bound[transport]?.port ?? DEFAULT_PORT[transport];
  }

  /** Number of open stream connections. */
  get connectionCount(): number {
    return this.connections.size;
  }

  /**
   * Serializes and sends a message; returns the octets (kept by transactions for
   * retransmission). `listener` hears about failures that happen after this returns.
   */
  send(msg: SipMessage, dest: SipDestination, listener?: SendErrorListener): Buffer {
    const data = serialize(msg);
    if (msg.kind === 'request') this.counters.sentRequest(msg.method);
    else this.counters.sentResponse(msg.status);
    this.sendBytes(data, dest, listener);
    return data;
  }

  /** Sends octets already serialized (a retransmission). */
  resend(data: Buffer, dest: SipDestination, listener?: SendErrorListener): void {
    this.counters.retransmissions++;
    this.sendBytes(data, dest, listener);
  }

  /** Closes listeners and connections. */
  async close(): Promise<void> {
    if (this.sweepTimer) clearInterval(this.sweepTimer);
    for (const c of this.connections.values()) c.socket.destroy();
    this.connections.clear();
    this.byAddress.clear();
    const closing: Promise<void>[] = [];
    if (this.udp) {
      const u = this.udp;
      closing.push(new Promise((r) => u.close(() => r())));
    }
    for (const s of [this.tcpServer, this.tlsServer]) if (s) closing.push(new Promise((r) => s.close(() => r())));
    await Promise.all(closing);
    this.udp = this.tcpServer = this.tlsServer = undefined;
  }

  private get idleTimeout(): number {
    return this.opts.idleTimeoutMs ?? 120_000;
  }
  private get messageTimeout(): number {
    return this.opts.messageTimeoutMs ?? 10_000;
  }
  private get maxBuffered(): number {
    return this.opts.maxBufferedBytes ?? 256 * 1024;
  }

  private async startUdp(o: ListenOptions): Promise<void> {
    const sock = dgram.createSocket({ type: net.isIPv6(o.host) ? 'udp6' : 'udp4', lookup: lookupLiteral });
    sock.on('error', () => this.counters.dropped('send-failed'));
    sock.on('message', (buf, rinfo) => this.onDatagram(buf, rinfo));
    await new Promise<void>((resolve, reject) => {
      sock.once('error', reject);
      sock.bind(o.port, o.host, () => {
        sock.off('error', reject);
        resolve();
      });
    });
    try {
      sock.setRecvBufferSize(4 * 1024 * 1024); // the kernel caps it to its maximum
    } catch {
      // not fatal: the default buffer only makes bursts drop sooner
    }
    const a = sock.address();
    this.bound.udp = { address: a.address, port: a.port };
    this.udp = sock;
  }

  private async listen(server: net.Server, o: ListenOptions, t: 'tcp' | 'tls'): Promise<void> {
    server.on('error', () => this.counters.dropped('send-failed'));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(o.port, o.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    const a = server.address() as net.AddressInfo;
    this.bound[t] = { address: a.address, port: a.port };
  }


  /**
   * A datagram the front read on its socket (already rate limited there): handled as if it had
   * arrived on this transport, and answered through the front.
   */
  inject(buf: Buffer, remoteAddress: string, remotePort: number): void {
    const front = this.opts.front;
    if (!front || !this.user) return;
    this.receive(buf, { transport: 'udp', remoteAddress, remotePort, localAddress: front.address, localPort: front.port, connectionId: 0, front: true }, false);
  }

  private onDatagram(buf: Buffer, rinfo: dgram.RemoteInfo): void {
    const src: SipSource = {
      transport: 'udp',
      remoteAddress: rinfo.address,
      remotePort: rinfo.port,
      localAddress: this.bound.udp?.address ?? '',
      localPort: this.bound.udp?.port ?? 0,
      connectionId: 0,
    };
    let limited = false;
    if (this.limiter && !isResponseStart(buf) && !this.limiter.allow(rinfo.address)) {
      if (this.limiter.options.action === 'drop') {
        this.counters.dropped('rate-limited');
        return;
      }
      limited = true;
    }
    this.receive(buf, src, limited);
  }

  /** Parses a datagram and delivers it (or its parse error). */
  private receive(buf: Buffer, src: SipSource, limited: boolean): void {
    let out;
    try {
      out = parseDatagram(buf, this.limits);
    } catch {
      out = new SipParseError(0, 'parser failure', undefined, true, 'garbage'); // defensive: never let input crash the listener
    }
    this.deliver(out, src, limited);
  }

  private deliver(out: ReturnType<typeof parseDatagram>, src: SipSource, limited: boolean): void {
    if (out === null) return;
    try {
      this.dispatch(out, src, limited);
    } catch {
      // a bug in a handler must not take the listener (or the process) down with it
      this.counters.dropped('internal-error');
    }
  }

  private dispatch(out: SipMessage | SipParseError, src: SipSource, limited: boolean): void {
    const user = this.user!;
    if (out instanceof SipParseError) {
      this.counters.parseErrors++;
      user.onParseError(out, src);
      return;
    }
    if (out.kind === 'response') {
      this.counters.receivedResponse(out.status);
      user.onResponse(out, src);
      return;
    }
    if (limited) {
      this.counters.dropped('rate-limited');
      if (out.method !== 'ACK') this.answerRateLimited(out, src);
      return;
    }
    this.counters.receivedRequest(out.method);
    stampVia(out, src);
    user.onRequest(out, src);
  }

  private answerRateLimited(req: SipRequest, src: SipSource): void {
    const res = createResponse(req, 503, { headers: [['Retry-After', String(this.limiter!.options.retryAfter ?? 5)]] });
    this.send(res, responseDestination(req.via, src, this.opts.forceRport ?? true));
  }

  private accept(socket: net.Socket, transport: 'tcp' | 'tls'): void {
    if (this.connections.size >= (this.opts.maxConnections ?? 1000)) {
      this.counters.dropped('max-connections');
      socket.destroy();
      return;
    }
    const remote = { address: socket.remoteAddress ?? '', port: socket.remotePort ?? 0 };
    const key = `${transport}:${remote.address}:${remote.port}`;
    const c = new Connection(socket, transport, key, this.limits, true, remote, this.bound[transport]?.port ?? 0);
    this.register(c);
  }

  private register(c: Connection): void {
    this.connections.set(c.id, c);
    this.byAddress.set(c.key, c);
    const s = c.socket;
    s.on('data', (chunk: Buffer) => this.onData(c, chunk));
    s.on('error', (err) => this.fail(c, err));
    s.on('close', () => this.forget(c));
  }

  private onData(c: Connection, chunk: Buffer): void {
    if (c.closing) return;
    c.lastActivity = Date.now();
    const p = c.parser;
    p.push(chunk);
    for (;;) {
      let out;
      try {
        out = p.next();
      } catch {
        out = new SipParseError(0, 'parser failure', undefined, true, 'garbage');
      }
      if (out === null) break;
      if (out === KEEPALIVE_PING) {
        c.socket.write('\r\n'); // RFC 5626 §4.4.1 pong
        continue;
      }
      let limited = false;
      if (this.limiter && !(out instanceof SipParseError) && out.kind === 'request' && !this.limiter.allow(c.src.remoteAddress)) {
        if (this.limiter.options.action === 'drop') {
          this.counters.dropped('rate-limited');
          continue;
        }
        limited = true;
      }
      this.deliver(out, c.src, limited);
      if (out instanceof SipParseError && out.fatal) break;
      if (c.closing || c.socket.destroyed) return;
    }
    if (p.failed) {
      this.counters.dropped('framing-lost');
      this.closeGracefully(c);
      return;
    }
    if (p.buffered === 0) c.partialSince = 0;
    else if (c.partialSince === 0) c.partialSince = c.lastActivity;
    if (p.buffered > this.maxBuffered) {
      this.counters.dropped('buffer-overflow');
      c.socket.destroy();
    }
  }

  /** Lets pending writes (an error response) flush, then closes. */
  private closeGracefully(c: Connection): void {
    c.closing = true;
    c.lastActivity = Date.now();
    c.socket.end();
  }

  private fail(c: Connection, err: Error): void {
    for (const l of c.listeners) l.onSendError(err);
    c.listeners = [];
    c.socket.destroy();
  }

  private forget(c: Connection): void {
    for (const l of c.listeners) l.onSendError(new Error('connection closed'));
    c.listeners = [];
    this.connections.delete(c.id);
    if (this.byAddress.get(c.key) === c) this.byAddress.delete(c.key);
  }

  private sweep(): void {
    const now = Date.now();
    for (const c of this.connections.values()) {
      let reason: DropReason | undefined;
      if (c.closing) {
        if (now - c.lastActivity > 2000) c.socket.destroy();
        continue;
      }
      if (c.partialSince !== 0 && now - c.partialSince > this.messageTimeout) reason = 'slow-sender';
      else if (now - c.lastActivity > this.idleTimeout) reason = 'idle';
      if (reason) {
        this.counters.dropped(reason);
        c.socket.destroy();
      }
    }
  }

  private sendBytes(data: Buffer, dest: SipDestination, listener?: SendErrorListener): void {
    if (isForbiddenTarget(dest.host)) {
      this.counters.dropped('send-failed');
      listener?.onSendError(new Error(`refusing to send to ${dest.host}`));
      return;
    }
    if (dest.transport === 'udp') {
      const host = dest.host.charCodeAt(0) === 0x5b ? dest.host.slice(1, -1) : dest.host;
      if (dest.front && this.opts.front) {
        this.opts.front.send(data, dest.port, host);
        return;
      }
      const u = this.udp;
      if (!u) {
        this.counters.dropped('send-failed');
        listener?.onSendError(new Error('no UDP listener'));
        return;
      }
      if (listener) u.send(data, dest.port, host, (err) => err && listener.onSendError(err));
      else u.send(data, dest.port, host);
      return;
    }
    let c = dest.connectionId ? this.connections.get(dest.connectionId) : undefined;
    if (!c || c.closing || c.socket.destroyed) c = this.byAddress.get(`${dest.transport}:${dest.host}:${dest.port}`);
    if (!c || c.closing || c.socket.destroyed) c = this.connect(dest);
    if (!c) {
      this.counters.dropped('send-failed');
      listener?.onSendError(new Error('too many connections'));
      return;
    }
    if (listener && !c.connected) c.listeners.push(listener);
    c.lastActivity = Date.now();
    c.socket.write(data);
    if (c.socket.writableLength > this.maxBuffered) {
      this.counters.dropped('buffer-overflow');
      this.fail(c, new Error('peer is not reading'));
    }
  }

  private connect(dest: SipDestination): Connection | undefined {
    if (this.connections.size >= (this.opts.maxConnections ?? 1000)) return undefined;
    const host = dest.host.charCodeAt(0) === 0x5b ? dest.host.slice(1, -1) : dest.host;
    const socket =
      dest.transport === 'tls'
        ? tls.connect({
            host,
            port: dest.port,
            servername: net.isIP(host) ? undefined : host,
            rejectUnauthorized: this.opts.tlsClient?.rejectUnauthorized ?? true,
            ca: this.opts.tlsClient?.ca,
          })
        : net.connect({ host, port: dest.port, noDelay: true });
    const key = `${dest.transport}:${dest.host}:${dest.port}`;
    const c = new Connection(socket, dest.transport as 'tcp' | 'tls', key, this.limits, false, { address: host, port: dest.port }, this.bound[dest.transport]?.port ?? 0);
    const timeout = setTimeout(() => {
      if (!c.connected) this.fail(c, new Error(`connect timeout to ${dest.host}:${dest.port}`));
    }, this.opts.connectTimeoutMs ?? 5000);
    timeout.unref();
    socket.once(dest.transport === 'tls' ? 'secureConnect' : 'connect', () => {
      clearTimeout(timeout);
      c.connected = true;
      c.listeners = [];
    });
    socket.once('close', () => clearTimeout(timeout));
    this.register(c);
    return c;
  }
}

