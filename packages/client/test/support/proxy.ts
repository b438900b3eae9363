import { createServer, request as httpRequest, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * What the proxy does with one request:
 * - `forward`: relays it to the service and the answer back;
 * - `drop`: relays it to the service, waits for the whole answer, then destroys the client's socket
 *   instead of relaying it (the answer is lost after the service acted);
 * - `delay`: relays it, and the answer back only after `ms`;
 * - `reply`: answers itself; the service never sees the request.
 */
export type ProxyAction =
  | { kind: 'forward' }
  | { kind: 'drop' }
  | { kind: 'delay'; ms: number }
  | { kind: 'reply'; status: number; headers?: Record<string, string>; body: string };

export interface ProxiedRequest {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  body: string;
  action: ProxyAction['kind'];
  /** Status the service answered, when the request reached it. */
  upstreamStatus?: number;
}

export interface TestProxy {
  url: string;
  /** Every request seen, in arrival order. */
  requests: ProxiedRequest[];
  close(): Promise<void>;
}

/** A Handoff error body, as the service writes it. */
export function errorBody(errorCode: string, message: string): string {
  return JSON.stringify({ errors: [{ errorCode, message }] });
}

/**
 * A real HTTP proxy (node:http) in front of the service at `target`; `decide` picks the action for
 * each request from the request and how many came before it.
 */
export async function startProxy(target: string, decide: (request: ProxiedRequest, index: number) => ProxyAction): Promise<TestProxy> {
  const upstream = new URL(target);
  const requests: ProxiedRequest[] = [];
  const server = createServer(async (req, res) => {
    const body = await readBody(req);
    const record: ProxiedRequest = { method: req.method ?? 'GET', url: req.url ?? '/', headers: req.headers, body, action: 'forward' };
    const action = decide(record, requests.length);
    record.action = action.kind;
    requests.push(record);
    if (action.kind === 'reply') {
      res.writeHead(action.status, { 'content-type': 'application/json', ...action.headers }).end(action.body);
      return;
    }
    let answer: UpstreamAnswer;
    try {
      answer = await forward(upstream, record);
    } catch {
      res.destroy();
      return;
    }
    record.upstreamStatus = answer.status;
    if (action.kind === 'drop') {
      req.socket.destroy();
      return;
    }
    if (action.kind === 'delay') await new Promise((r) => setTimeout(r, action.ms));
    relay(res, answer);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

interface UpstreamAnswer {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

function forward(upstream: URL, record: ProxiedRequest): Promise<UpstreamAnswer> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      { host: upstream.hostname, port: upstream.port, method: record.method, path: record.url, headers: { ...record.headers, host: upstream.host } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 502, headers: res.headers, body: Buffer.concat(chunks) }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(record.body);
  });
}

function relay(res: ServerResponse, answer: UpstreamAnswer): void {
  const headers = { ...answer.headers };
  delete headers['transfer-encoding'];
  delete headers.connection;
  headers['content-length'] = String(answer.body.length);
  res.writeHead(answer.status, headers).end(answer.body);
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

/** The URL of a local port nobody listens on (it was free a moment ago). */
export async function closedPortUrl(): Promise<string> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return `http://127.0.0.1:${port}`;
}
