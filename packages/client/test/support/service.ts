import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadSettings, startServer, type RunningServer } from '@handoff/server/dist/src/index.js';

/** A real Handoff service running in this process on a free port, with its own data directory. */
export interface Service {
  url: string;
  dataDir: string;
  operatorToken: string;
  server: RunningServer;
  close(): Promise<void>;
}

export type DemoTenant = NonNullable<RunningServer['demo']> & { privateKeyPem: string };

export interface DemoService extends Service {
  demo: DemoTenant;
}

/** A lease as `GET /admin/v1/leases` lists it. */
export interface LeaseView {
  uid: string;
  orgId: string;
  routableNumber: string;
  fromNumber: string;
  toNumber: string;
  voiceCallId: string | null;
  transactionId: string | null;
  expiresAt: string;
  secondsLeft: number;
}

async function start(env: Record<string, string>): Promise<{ server: RunningServer; dataDir: string }> {
  const dataDir = mkdtempSync(join(tmpdir(), 'handoff-client-test-'));
  const settings = loadSettings({ HANDOFF_DATA_DIR: dataDir, HANDOFF_HTTP_PORT: '0', HANDOFF_SIP_PORT: '0', HANDOFF_LOG_LEVEL: 'silent', ...env });
  try {
    return { server: await startServer(settings), dataDir };
  } catch (err) {
    rmSync(dataDir, { recursive: true, force: true });
    throw err;
  }
}

function closer(server: RunningServer, dataDir: string): () => Promise<void> {
  return async () => {
    await server.close();
    rmSync(dataDir, { recursive: true, force: true });
  };
}

/** The service on a fresh data directory: the demo tenant, as `npm start` creates it (demo.json). */
export async function startDemoService(env: Record<string, string> = {}): Promise<DemoService> {
  const { server, dataDir } = await start(env);
  const info = JSON.parse(readFileSync(join(dataDir, 'demo.json'), 'utf8')) as NonNullable<RunningServer['demo']>;
  if (info.operatorTokenPath === null) throw new Error('demo.json names no operator token file');
  return {
    url: server.httpUrl,
    dataDir,
    operatorToken: readFileSync(info.operatorTokenPath, 'utf8').trim(),
    server,
    demo: { ...info, privateKeyPem: readFileSync(info.privateKeyPath, 'utf8') },
    close: closer(server, dataDir),
  };
}

/** The service provisioned from a JSON file (HANDOFF_CONFIG) holding `provisioning`. */
export async function startProvisionedService(provisioning: object, env: Record<string, string> = {}): Promise<Service> {
  const configDir = mkdtempSync(join(tmpdir(), 'handoff-client-config-'));
  const configFile = join(configDir, 'handoff.json');
  writeFileSync(configFile, JSON.stringify(provisioning));
  const operatorToken = 'client-sdk-tests-operator-token-0123456789';
  try {
    const { server, dataDir } = await start({ HANDOFF_CONFIG: configFile, HANDOFF_OPERATOR_TOKEN: operatorToken, ...env });
    return { url: server.httpUrl, dataDir, operatorToken, server, close: closer(server, dataDir) };
  } finally {
    rmSync(configDir, { recursive: true, force: true });
  }
}

/** Operator API call, e.g. the live leases or the resolver. */
export async function operator<T>(svc: Service, method: 'GET' | 'POST', path: string, body?: unknown): Promise<{ status: number; body: T }> {
  const res = await fetch(svc.url + path, {
    method,
    headers: { authorization: `Bearer ${svc.operatorToken}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: res.status, body: (await res.json()) as T };
}

/** The live leases of an org, as the service holds them. */
export async function liveLeases(svc: Service, orgId: string): Promise<LeaseView[]> {
  const res = await operator<{ leases: LeaseView[] }>(svc, 'GET', `/admin/v1/leases?orgId=${orgId}`);
  if (res.status !== 200) throw new Error(`GET /admin/v1/leases: ${res.status}`);
  return res.body.leases;
}
