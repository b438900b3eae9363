import { createHmac, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

/** One request the receiver got, whatever it answered. */
export interface Hit {
  path: string;
  eventId: string;
  type: string;
  voiceCallId: string | null;
  body: Record<string, unknown>;
  raw: string;
  headers: IncomingMessage['headers'];
  /** The answer it gave (400 when the signature did not verify). */
  status: number;
  at: number;
}

/**
 * Chooses the status of an answer; `attempt` counts this event's requests on this path, from 1.
 * 0 leaves the request unanswered (a receiver that hangs).
 */
export type Responder = (hit: Omit<Hit, 'status' | 'at'>, attempt: number) => number;

/**
 * The verification the README documents, written out here independently of the service's code:
 * HMAC-SHA256 of "<t>.<raw body>" with the secret, hex, compared in constant time, t within 5 min.
 */
export function verifySignature(header: string | undefined, raw: string, secret: string): boolean {
  const parts = Object.fromEntries((header ?? '').split(',').map((p) => p.split('=') as [string, string]));
  const t = Number(parts.t);
  if (!parts.v1 || !Number.isInteger(t) || Math.abs(Date.now() / 1000 - t) > 300) return false;
  const expected = createHmac('sha256', secret).update(`${t}.${raw}`).digest();
  const given = Buffer.from(parts.v1, 'hex');
  return given.length === expected.length && timingSafeEqual(given, expected);
}

/**
 * A real HTTP receiver on 127.0.0.1: every path is its own endpoint with its own secret and
 * responder (default 200). Requests with a bad signature are answered 400 and recorded.
 */
export class WebhookReceiver {
  readonly hits: Hit[] = [];
  private readonly server: Server;
  private readonly routes = new Map<string, { secret: string; respond: Responder }>();
  private waiters: (() => void)[] = [];
  url = '';

  constructor() {
    this.server = createServer((req, res) => {
      let raw = '';
      req.setEncoding('utf8');
      req.on('data', (c: string) => (raw += c));
      req.on('end', () => {
        const path = req.url ?? '/';
        const route = this.routes.get(path);
        const body = JSON.parse(raw) as Record<string, unknown>;
        const hit = {
          path,
          eventId: String(body.id),
          type: String(body.type),
          voiceCallId: (body.voiceCallId as string | null) ?? null,
          body,
          raw,
          headers: req.headers,
        };
        let status = 404;
        if (route) {
          const attempt = this.hits.filter((h) => h.path === path && h.eventId === hit.eventId).length + 1;
          status = verifySignature(req.headers['handoff-signature'] as string | undefined, raw, route.secret) ? route.respond(hit, attempt) : 400;
        }
        this.hits.push({ ...hit, status, at: Date.now() });
        if (status !== 0) res.writeHead(status, { 'content-type': 'text/plain' }).end(String(status));
        const waiters = this.waiters;
        this.waiters = [];
        for (const w of waiters) w();
      });
    });
  }

  async start(): Promise<this> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
    return this;
  }

  /** Serves `path` (starting with '/'); returns its full URL. */
  route(path: string, secret: string, respond: Responder = () => 200): string {
    this.routes.set(path, { secret, respond });
    return this.url + path;
  }

  /** Changes how `path` answers from now on. */
  respond(path: string, respond: Responder): void {
    this.routes.get(path)!.respond = respond;
  }

  /** Hits of a path (optionally only the accepted ones, 2xx), in arrival order. */
  on(path: string, accepted = false): Hit[] {
    return this.hits.filter((h) => h.path === path && (!accepted || (h.status >= 200 && h.status < 300)));
  }

  /** Resolves once `done()` holds, checked after every request; rejects after `timeoutMs`. */
  async waitFor(done: () => boolean, timeoutMs = 15_000, what = 'webhook deliveries'): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!done()) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for ${what}; got ${this.hits.length} requests: ${this.hits.map((h) => `${h.path} ${h.type} ${h.status}`).join(', ')}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.min(left, 250));
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
