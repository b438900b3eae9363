/** Socket helpers for the SIP tests: bounded in time, ephemeral ports on 127.0.0.1 only. */
import dgram from 'node:dgram';
import net from 'node:net';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { SipServer, type SipServerOptions } from '../../src/sip/index.js';

const here = path.dirname(fileURLToPath(import.meta.url));

/** The RFC 4475 corpus: /work/shared beside the repo; tests run from packages/server/dist/test/sip. */
export function tortureDir(): string | undefined {
  for (const up of ['../../../../../../shared/conformance/sip-torture', '../../../../../shared/conformance/sip-torture']) {
    const dir = path.resolve(here, up);
    if (existsSync(path.join(dir, 'manifest.json'))) return dir;
  }
  return undefined;
}

export const LOCAL = '127.0.0.1';

export async function startServer(opts: Partial<SipServerOptions> = {}): Promise<SipServer> {
  const server = new SipServer({
    udp: { host: LOCAL, port: 0 },
    tcp: { host: LOCAL, port: 0 },
    ...opts,
  });
  await server.start();
  return server;
}

/** Status codes of every SIP response found in `text` (raw: our 400s echo malformed headers). */
export function statuses(text: string): number[] {
  return [...text.matchAll(/(?:^|\r\n)SIP\/2\.0 (\d{3}) /g)].map((m) => Number(m[1]));
}

/**
 * Sends one datagram from a fresh socket and collects what comes back: for `ms`, or until
 * `done(received)` holds (then at most `ms` is waited, so a loaded machine does not fail it).
 */
export async function udpExchange(port: number, data: Buffer, ms = 150, done?: (got: Buffer[]) => boolean): Promise<Buffer[]> {
  const sock = dgram.createSocket('udp4');
  const got: Buffer[] = [];
  sock.on('message', (m) => got.push(m));
  await new Promise<void>((r) => sock.bind(0, LOCAL, () => r()));
  sock.send(data, port, LOCAL);
  const end = Date.now() + ms;
  while (Date.now() < end && !(done && done(got))) await new Promise((r) => setTimeout(r, 5));
  sock.close();
  return got;
}

/** True once a final (>= 200) response is among the datagrams. */
export function hasFinal(got: Buffer[]): boolean {
  return got.some((b) => statuses(b.toString('latin1')).some((s) => s >= 200));
}

/** A TCP client collecting everything it receives. */
export class TcpClient {
  readonly socket: net.Socket;
  data = Buffer.alloc(0);
  closed = false;
  private readonly closedPromise: Promise<void>;

  private constructor(socket: net.Socket) {
    this.socket = socket;
    socket.on('data', (d) => (this.data = Buffer.concat([this.data, d])));
    socket.on('error', () => undefined);
    this.closedPromise = new Promise((r) => socket.on('close', () => ((this.closed = true), r())));
  }

  static async connect(port: number): Promise<TcpClient> {
    const s = net.connect({ host: LOCAL, port });
    await new Promise<void>((resolve, reject) => {
      s.once('connect', resolve);
      s.once('error', reject);
    });
    return new TcpClient(s);
  }

  get text(): string {
    return this.data.toString('latin1');
  }

  /** Waits until `pred` holds or `ms` pass; returns whether it held. */
  async waitFor(pred: () => boolean, ms: number): Promise<boolean> {
    const end = Date.now() + ms;
    while (!pred() && Date.now() < end) await new Promise((r) => setTimeout(r, 10));
    return pred();
  }

  async waitClosed(ms: number): Promise<boolean> {
    await Promise.race([this.closedPromise, new Promise((r) => setTimeout(r, ms))]);
    return this.closed;
  }

  close(): void {
    this.socket.destroy();
  }
}

let seq = 0;

/** A well-formed OPTIONS request (unique Call-ID and branch) as sent over `transport`. */
export function optionsRequest(transport = 'UDP', extra: string[] = []): Buffer {
  seq++;
  return Buffer.from(
    [
      'OPTIONS sip:probe@127.0.0.1 SIP/2.0',
      `Via: SIP/2.0/${transport} 127.0.0.1:9;branch=z9hG4bKprobe${seq}x${Date.now()};rport`,
      'Max-Forwards: 70',
      'To: <sip:probe@127.0.0.1>',
      `From: <sip:tester@127.0.0.1>;tag=t${seq}`,
      `Call-ID: probe-${seq}-${Date.now()}@127.0.0.1`,
      'CSeq: 1 OPTIONS',
      ...extra,
      'Content-Length: 0',
      '',
      '',
    ].join('\r\n'),
  );
}

/** Asserts-free probe: does the server answer an OPTIONS over UDP with 200? */
export async function answersOptions(port: number): Promise<boolean> {
  const got = await udpExchange(port, optionsRequest(), 2000, hasFinal);
  return got.some((b) => statuses(b.toString('latin1')).includes(200));
}
