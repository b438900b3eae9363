/**
 * SIP workers (HANDOFF_SIP_WORKERS > 1): the SIP side of one instance spread over several threads,
 * so it can use more than one core.
 *
 * - The public UDP port is read by the main thread (the front). It rate-limits by source and hands
 *   each datagram to the worker chosen by a hash of its Call-ID, so an INVITE, its retransmissions,
 *   its CANCEL and the ACK of a failure reach the thread that holds its transaction. Responses to
 *   those requests are given back to the front and leave from the public port (RFC 3581 §4).
 * - Each worker listens on ports of its own (HANDOFF_SIP_WORKER_PORT + 2k for UDP and TCP, + 2k + 1
 *   for TLS) and names them in its Via and Record-Route, so the agent's responses and both parties'
 *   in-dialog requests (ACK, BYE) go to it straight, without the front. Worker 0 also serves the
 *   public TCP and TLS ports (stream connections are not spread).
 * - Each worker is a hand-off with services of its own on the same database, as separate instances
 *   on one database are; agents' concurrent-call counts are one shared table
 *   ({@link SharedAgentSlots}), escalation reaches every worker, and /metrics adds up the workers'.
 */
import dgram from 'node:dgram';
import net from 'node:net';
import { Worker } from 'node:worker_threads';
import type { Logger } from 'pino';
import type { Settings } from '../config.js';
import type { PeerMetrics, Metrics } from '../metrics.js';
import type { CallControl } from '../services/escalation.js';
import { SharedAgentSlots } from './agent-slots.js';
import { SipCounters } from './counters.js';
import { ingressRateLimit, RateLimiter } from './rate-limit.js';
import { realTimers } from './timers.js';
import { isResponseStart, lookupLiteral, type SipTransportOptions } from './transport.js';

/** What a worker thread is started with (structured-cloned). */
export interface SipWorkerData {
  index: number;
  settings: Settings;
  /** Trunk allow-lists by 15-char org ID, as written in the provisioning. */
  trunks: Array<[string, string[]]>;
  slots: SharedArrayBuffer;
  /** The SQLite write lock of the process (store/write-lock.ts). */
  writeLock: SharedArrayBuffer;
  /** The public UDP address the front reads. */
  front: { address: string; port: number };
}

/** Datagrams with their peers (the source of received ones, the destination of ones to send). */
export interface DatagramBatch {
  data: Uint8Array[];
  hosts: string[];
  ports: number[];
}

/** Main thread → worker. */
export type ToWorker =
  | ({ t: 'dgrams' } & DatagramBatch)
  | { t: 'end'; id: number; voiceCallId: string; reason: string }
  | { t: 'metrics'; id: number }
  | { t: 'close' };

/** Worker → main thread. */
export type FromWorker =
  | { t: 'ready'; addresses: Addresses }
  | { t: 'failed'; message: string }
  | ({ t: 'send' } & DatagramBatch)
  | { t: 'ended'; id: number; ended: boolean }
  | { t: 'metrics'; id: number; metrics: PeerMetrics }
  | { t: 'closed' };

type Addresses = Partial<Record<'udp' | 'tcp' | 'tls', { address: string; port: number }>>;

/**
 * A SIP worker's front (SipTransport's `front` option): datagrams to send from it go to `queue` as
 * copies, since the original stays with its transaction for retransmissions. One function builds it
 * for the worker and for its warm-up, so both have objects of the same shape and call the same code.
 */
export function frontOption(address: string, port: number, queue: DatagramQueue): NonNullable<SipTransportOptions['front']> {
  return { address, port, send: (bytes, toPort, toHost) => queue.push(new Uint8Array(bytes), toHost, toPort) };
}

/**
 * Datagrams gathered during one turn of the event loop and posted as one message when it ends (a
 * message between threads costs far more than copying a datagram). Each datagram must own its
 * ArrayBuffer: it is transferred.
 */
export class DatagramQueue {
  private batch: DatagramBatch = { data: [], hosts: [], ports: [] };
  private scheduled = false;

  constructor(private readonly post: (batch: DatagramBatch, transfer: ArrayBuffer[]) => void) {}

  push(data: Uint8Array, host: string, port: number): void {
    const b = this.batch;
    b.data.push(data);
    b.hosts.push(host);
    b.ports.push(port);
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(this.flush);
    }
  }

  private readonly flush = (): void => {
    const b = this.batch;
    this.batch = { data: [], hosts: [], ports: [] };
    this.scheduled = false;
    this.post(b, b.data.map((d) => d.buffer as ArrayBuffer));
  };
}

/** Worker k's own ports: UDP and TCP on base + 2k, TLS on base + 2k + 1 (base 0: free ports). */
export function workerPorts(base: number, index: number): { udp: number; tls: number } {
  return base === 0 ? { udp: 0, tls: 0 } : { udp: base + 2 * index, tls: base + 2 * index + 1 };
}

/**
 * The Call-ID of a SIP message as raw text (long or compact name, any case, surrounding blanks
 * removed), or null when it has none. Only for choosing a worker: the worker parses the message.
 */
export function callIdOf(buf: Buffer): string | null {
  const end = Math.min(buf.length, 8192);
  let i = buf.indexOf(0x0a);
  while (i >= 0 && i + 1 < end) {
    const start = i + 1;
    const c = buf[start]! | 0x20;
    if (buf[start] === 0x0d || buf[start] === 0x0a) return null; // end of the headers
    let nameEnd = -1;
    if (c === 0x69 /* i */) {
      // "i" or "Call-ID" need a look; other headers are skipped
      let j = start + 1;
      while (j < end && (buf[j] === 0x20 || buf[j] === 0x09)) j++;
      if (buf[j] === 0x3a) nameEnd = j;
    } else if (c === 0x63 /* c */ && end - start > 8 && buf.toString('latin1', start, start + 7).toLowerCase() === 'call-id') {
      let j = start + 7;
      while (j < end && (buf[j] === 0x20 || buf[j] === 0x09)) j++;
      if (buf[j] === 0x3a) nameEnd = j;
    }
    const next = buf.indexOf(0x0a, start);
    if (nameEnd >= 0) return buf.toString('latin1', nameEnd + 1, next < 0 ? end : next).trim() || null;
    i = next;
  }
  return null;
}

/** FNV-1a of a string's UTF-16 units: which worker a Call-ID belongs to. */
export function workerFor(callId: string | null, count: number): number {
  if (callId === null) return 0;
  let h = 0x811c9dc5;
  for (let i = 0; i < callId.length; i++) h = Math.imul(h ^ callId.charCodeAt(i), 0x01000193);
  return (h >>> 0) % count;
}

export interface SipWorkerPoolOptions {
  settings: Settings;
  logger: Logger;
  /** The main thread's metrics: the workers' are added to them at each scrape. */
  metrics: Metrics;
  trunks: Array<[string, string[]]>;
  /** The main thread's SQLite write lock, shared with the workers' connections. */
  writeLock: SharedArrayBuffer;
}

/**
 * The main thread's side of the SIP workers: starts them, runs the front, and offers what the rest
 * of the service needs of the SIP ingress (addresses, escalation, agents' counts, close).
 *
 * @example
 * const sip = new SipWorkerPool({ settings, logger, metrics: services.metrics, trunks: [], writeLock });
 * await sip.start();                       // settings.sip.workers threads, the front on HANDOFF_SIP_PORT
 * services.escalation.callControl = sip;   // endCall asks every worker
 * await sip.close();
 */
export class SipWorkerPool implements CallControl {
  private readonly opts: SipWorkerPoolOptions;
  private readonly slots = new SharedAgentSlots();
  private readonly workers: Worker[] = [];
  private readonly exited = new Set<Worker>();
  /** Datagrams read in this turn, per worker. */
  private queues: DatagramQueue[] = [];
  private readonly counters = new SipCounters();
  private readonly limiter: RateLimiter | undefined;
  private socket: dgram.Socket | undefined;
  private frontAddress: { address: string; port: number } | undefined;
  private streams: Addresses = {};
  private nextId = 1;
  private readonly waiting = new Map<number, { left: number; results: unknown[]; done: (results: unknown[]) => void }>();
  private closing = false;

  constructor(opts: SipWorkerPoolOptions) {
    this.opts = opts;
    const limit = ingressRateLimit(opts.settings.sip.rateLimit);
    this.limiter = limit ? new RateLimiter(limit, realTimers) : undefined;
  }

  async start(): Promise<void> {
    const { settings, logger } = this.opts;
    const host = settings.sipHost;
    const sock = dgram.createSocket({ type: net.isIPv6(host) ? 'udp6' : 'udp4', lookup: lookupLiteral });
    await new Promise<void>((resolve, reject) => {
      sock.once('error', reject);
      sock.bind(settings.sipPort, host, () => {
        sock.off('error', reject);
        resolve();
      });
    });
    sock.on('error', () => this.counters.dropped('send-failed'));
    try {
      sock.setRecvBufferSize(4 * 1024 * 1024);
    } catch {
      // the kernel caps it
    }
    this.socket = sock;
    const a = sock.address();
    this.frontAddress = { address: a.address, port: a.port };
    this.opts.metrics.watchSip(() => this.counters.snapshot());
    this.opts.metrics.addPeer(() => this.collect());

    const count = settings.sip.workers;
    try {
      const ready = [];
      for (let index = 0; index < count; index++) {
        const data: SipWorkerData = { index, settings, trunks: this.opts.trunks, slots: this.slots.buffer, writeLock: this.opts.writeLock, front: this.frontAddress };
        const w = new Worker(new URL('./sip-worker.js', import.meta.url), { workerData: data });
        this.workers.push(w);
        w.once('exit', () => this.exited.add(w));
        ready.push(
          new Promise<Addresses>((resolve, reject) => {
            const onMessage = (m: FromWorker) => {
              if (m.t === 'ready') resolve(m.addresses);
              else if (m.t === 'failed') reject(new Error(`SIP worker ${index}: ${m.message}`));
              else return;
              w.off('message', onMessage);
            };
            w.on('message', onMessage);
            w.once('error', reject);
            w.once('exit', (code) => reject(new Error(`SIP worker ${index} exited with ${code} while starting`)));
          }),
        );
      }
      const { tcp, tls } = (await Promise.all(ready))[0]!;
      this.streams = { ...(tcp ? { tcp } : {}), ...(tls ? { tls } : {}) };
    } catch (err) {
      await this.close();
      throw err;
    }
    this.workers.forEach((w, index) => {
      w.on('message', (m: FromWorker) => this.onWorkerMessage(m));
      w.removeAllListeners('error');
      w.removeAllListeners('exit');
      w.on('error', (err) => this.fail(index, err));
      w.on('exit', (code) => {
        this.exited.add(w);
        if (!this.closing) this.fail(index, new Error(`exited with code ${code}`));
      });
    });
    this.queues = this.workers.map((w) => new DatagramQueue((batch, transfer) => w.postMessage({ t: 'dgrams', ...batch } satisfies ToWorker, transfer)));
    sock.on('message', (buf, rinfo) => this.onDatagram(buf, rinfo));
    logger.info({ workers: count, front: this.frontAddress }, 'SIP workers ready');
  }

  /** UDP: the front; TCP and TLS: worker 0's public listeners. */
  addresses(): Addresses {
    return { ...(this.frontAddress ? { udp: this.frontAddress } : {}), ...this.streams };
  }

  /** Calls proxied to `agent` by all workers and not yet ended. */
  activeCalls(agent: string): number {
    return this.slots.count(agent);
  }

  /** Ends the call wherever a worker holds it (see SipHandoff.endCall). */
  async endCall(voiceCallId: string, reason: string): Promise<boolean> {
    const results = await this.ask((id) => ({ t: 'end', id, voiceCallId, reason }));
    return results.some((r) => r === true);
  }

  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    // The workers finish first: in-flight INVITEs still get their final responses through the front
    await Promise.all(
      this.workers.map(
        (w) =>
          new Promise<void>((resolve) => {
            if (this.exited.has(w)) return resolve();
            w.once('exit', () => resolve());
            w.on('message', (m: FromWorker) => {
              if (m.t === 'closed') void w.terminate();
            });
            w.postMessage({ t: 'close' } satisfies ToWorker);
          }),
      ),
    );
    for (const { done, results } of this.waiting.values()) done(results);
    this.waiting.clear();
    const s = this.socket;
    this.socket = undefined;
    if (s) await new Promise<void>((r) => s.close(() => r()));
  }

  private onDatagram(buf: Buffer, rinfo: dgram.RemoteInfo): void {
    if (this.limiter && !isResponseStart(buf) && !this.limiter.allow(rinfo.address)) {
      this.counters.dropped('rate-limited');
      return;
    }
    // A datagram's Buffer usually owns its memory: moved to the worker, not copied
    const own = buf.byteOffset === 0 && buf.byteLength === buf.buffer.byteLength;
    this.queues[workerFor(callIdOf(buf), this.queues.length)]!.push(own ? buf : new Uint8Array(buf), rinfo.address, rinfo.port);
  }

  private onWorkerMessage(m: FromWorker): void {
    switch (m.t) {
      case 'send': {
        const s = this.socket;
        for (let i = 0; i < m.data.length; i++) {
          if (s) s.send(m.data[i]!, m.ports[i]!, m.hosts[i]!);
          else this.counters.dropped('send-failed');
        }
        return;
      }
      case 'ended':
        this.answered(m.id, m.ended);
        return;
      case 'metrics':
        this.answered(m.id, m.metrics);
        return;
      default:
        return;
    }
  }

  /** Sends a request to every worker and waits for each one's answer. */
  private ask(make: (id: number) => ToWorker): Promise<unknown[]> {
    if (this.closing || this.workers.length === 0) return Promise.resolve([]);
    const id = this.nextId++;
    return new Promise((done) => {
      this.waiting.set(id, { left: this.workers.length, results: [], done });
      for (const w of this.workers) w.postMessage(make(id));
    });
  }

  private answered(id: number, result: unknown): void {
    const q = this.waiting.get(id);
    if (!q) return;
    q.results.push(result);
    if (--q.left === 0) {
      this.waiting.delete(id);
      q.done(q.results);
    }
  }

  private async collect(): Promise<PeerMetrics> {
    // Metrics.render groups series by name over all lists, so the workers' lists can be one
    return ((await this.ask((id) => ({ t: 'metrics', id }))) as PeerMetrics[]).flat();
  }

  /** A worker that died leaves its calls in an unknown state: like an uncaught exception, it stops the process. */
  private fail(index: number, err: Error): void {
    this.opts.logger.fatal({ err, worker: index }, 'SIP worker failed');
    setImmediate(() => {
      throw err;
    });
  }
}
