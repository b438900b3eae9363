/**
 * A real service (`startServer`, the composition root) with a provisioning file made for the SIP
 * hand-off tests: three orgs, channels whose flows exercise every routing outcome, a number pool,
 * and agents at ports where each test starts its sipp UAS.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { loadSettings } from '../../src/config.js';
import { generateKeyPair, mintToken, type MintTokenOptions } from '../../src/domain/token-mint.js';
import { encodeUui } from '../../src/domain/uui.js';
import { startServer, type RunningServer } from '../../src/server.js';
import type { VoiceCall } from '../../src/store/types.js';
import type { KyselyStore } from '../../src/store/kysely-store.js';
import { makeBackend, type Backend } from '../support/backends.js';
import { WebhookReceiver } from '../support/webhook-receiver.js';
import { freePort } from './sipp.js';

export const ORG_A = '00Dxx0000004CFG';
export const ORG_B = '00Dxx0000008BBB';
export const ORG_C = '00Dxx0000009CCC';
export const DOMAIN_A = 'acme.my.example.com';
export const DOMAIN_B = 'bravo.my.example.com';
export const DOMAIN_C = 'charlie.my.example.com';
/** Channels of org A, by what their flow does. */
export const CH = {
  main: '+14155550100', // agent bot
  small: '+14155550101', // agent small-bot (1 call), fallback agent spare-bot
  tiny: '+14155550102', // agent tiny-bot (1 call), fallback rejects 503
  busy: '+14155550103', // the flow rejects: 486
  queued: '+14155550104', // the flow only names a queue
  tcp: '+14155550105', // agent tcp-bot over TCP
  b: '+14155550200', // org B's channel, agent bot
  c: '+14155550300', // org C: trunk allow-list without 127.0.0.1
} as const;
/** Appended to suite names when the suite runs on SIP worker threads (workers.test.ts). */
export const WORKERS_LABEL = process.env.HANDOFF_TEST_SIP_WORKERS ? ` (${process.env.HANDOFF_TEST_SIP_WORKERS} SIP workers)` : '';
export const POOL = { from: '+12125550100', to: '+12125550109' };
export const BOT_TOKEN = 'bot-runtime-secret-0123456789abcdef';
export const OPERATOR_TOKEN = 'operator-secret-for-sip-tests-0123456789';

export type AgentName = 'bot' | 'small' | 'spare' | 'tiny' | 'tcp';

export interface Fixture {
  server: RunningServer;
  /** Receives org A's webhooks at `/events`. */
  hooks: WebhookReceiver;
  dir: string;
  /** Agent name → the port its sipp UAS must listen on (UDP; `tcp` is a TCP port). */
  agents: Record<AgentName, number>;
  sip: { udp: number; tcp: number; tls: number | null };
  token(org: 'a' | 'b' | 'c', opts?: Partial<MintTokenOptions>): Promise<string>;
  /** A UUI header value for org A's context (hex without parameters, so it fits a sipp -inf row). */
  uui(fields: Record<string, unknown>): string;
  api(method: string, url: string, body?: unknown, token?: string): Promise<{ status: number; json: any }>;
  /** Creates a VoiceCall (VC1) for org A and returns its 18-char ID. */
  createCall(from?: string): Promise<string>;
  /** Reserves a routable number for `from`; returns the number. */
  reserve(from: string, callId: string, transactionId: string): Promise<string>;
  /** Every VoiceCall the SIP hand-off created (initiationMethod Transfer with a handoff context). */
  handoffCalls(): Promise<VoiceCall[]>;
  /** Stops the service (as on SIGTERM), keeping the data directory. */
  stopServer(): Promise<void>;
  close(): Promise<void>;
}

/** A self-signed certificate for 127.0.0.1, by openssl. */
export function selfSignedCert(dir: string): { cert: string; key: string } {
  const cert = path.join(dir, 'sip-cert.pem');
  const key = path.join(dir, 'sip-key.pem');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=127.0.0.1'], { stdio: 'ignore' });
  return { cert, key };
}

export async function startFixture(
  opts: { backend?: 'sqlite' | 'postgres'; env?: Record<string, string>; tls?: boolean; /** org A's webhook subscription (default true) */ webhooks?: boolean } = {},
): Promise<Fixture> {
  const backend: Backend = await makeBackend(opts.backend ?? 'sqlite');
  const hooks = await new WebhookReceiver().start();
  const hookUrl = hooks.route('/events', 'sip-tests-webhook-secret');
  const dir = mkdtempSync(path.join(tmpdir(), 'handoff-sip-'));
  const [a, b, c] = await Promise.all([generateKeyPair('RS256'), generateKeyPair('RS256'), generateKeyPair('RS256')]);
  const agents: Record<AgentName, number> = {
    bot: await freePort('udp'),
    small: await freePort('udp'),
    spare: await freePort('udp'),
    tiny: await freePort('udp'),
    tcp: await freePort('tcp'),
  };
  const sipUri = (name: AgentName) => `sip:${name}@127.0.0.1:${agents[name]}${name === 'tcp' ? ';transport=tcp' : ''}`;
  const provisioning = {
    orgs: [
      {
        id: ORG_A,
        name: 'Acme',
        domain: DOMAIN_A,
        features: { numberPool: true },
        keys: [{ id: 'acme-1', publicKey: a!.publicKeyPem }],
        callCenters: [{ apiName: 'AcmeCC' }],
        flows: [
          { name: 'main', rules: [{ name: 'to the bot', agent: 'bot' }], fallback: { reject: { status: 503, reason: 'No agent' } } },
          { name: 'small', rules: [{ agent: 'small-bot' }], fallback: { agent: 'spare-bot' } },
          { name: 'tiny', rules: [{ agent: 'tiny-bot' }], fallback: { reject: { status: 503, reason: 'No agent' } } },
          { name: 'busy', rules: [], fallback: { reject: { status: 486, reason: 'Busy here' } } },
          { name: 'queued', rules: [], fallback: { queue: 'Humans' } },
          { name: 'tcp', rules: [{ agent: 'tcp-bot' }], fallback: { reject: { status: 503 } } },
        ],
        channels: [
          { devName: 'Acme_AI', number: CH.main, callCenter: 'AcmeCC', flow: 'main' },
          { devName: 'Acme_Small', number: CH.small, flow: 'small' },
          { devName: 'Acme_Tiny', number: CH.tiny, flow: 'tiny' },
          { devName: 'Acme_Busy', number: CH.busy, flow: 'busy' },
          { devName: 'Acme_Queue', number: CH.queued, flow: 'queued' },
          { devName: 'Acme_Tcp', number: CH.tcp, flow: 'tcp' },
        ],
        ...(opts.webhooks === false ? {} : { webhooks: [{ id: 'events', url: hookUrl, secret: 'sip-tests-webhook-secret', events: ['call.routed', 'call.answered', 'call.ended'] }] }),
      },
      {
        id: ORG_B,
        name: 'Bravo',
        domain: DOMAIN_B,
        keys: [{ id: 'bravo-1', publicKey: b!.publicKeyPem }],
        flows: [{ name: 'main', rules: [{ agent: 'bot' }], fallback: { reject: { status: 503 } } }],
        channels: [{ devName: 'Bravo_AI', number: CH.b, flow: 'main' }],
      },
      {
        id: ORG_C,
        name: 'Charlie',
        domain: DOMAIN_C,
        keys: [{ id: 'charlie-1', publicKey: c!.publicKeyPem }],
        flows: [{ name: 'main', rules: [{ agent: 'bot' }], fallback: { reject: { status: 503 } } }],
        channels: [{ devName: 'Charlie_AI', number: CH.c, flow: 'main' }],
        trunks: { allowFrom: ['10.0.0.0/8', '192.0.2.1'] },
      },
    ],
    pools: [{ country: 'US', ranges: [POOL] }],
    agents: [
      { name: 'bot', sipUri: sipUri('bot'), maxConcurrentCalls: 10, token: BOT_TOKEN },
      { name: 'small-bot', sipUri: sipUri('small'), maxConcurrentCalls: 1 },
      { name: 'spare-bot', sipUri: sipUri('spare'), maxConcurrentCalls: 5 },
      { name: 'tiny-bot', sipUri: sipUri('tiny'), maxConcurrentCalls: 1 },
      { name: 'tcp-bot', sipUri: sipUri('tcp'), maxConcurrentCalls: 5 },
    ],
  };
  const configFile = path.join(dir, 'handoff.json');
  writeFileSync(configFile, JSON.stringify(provisioning));
  const tls = opts.tls ? selfSignedCert(dir) : null;
  const settings = loadSettings({
    HANDOFF_DATA_DIR: dir,
    HANDOFF_HTTP_PORT: '0',
    HANDOFF_SIP_PORT: '0',
    HANDOFF_LOG_LEVEL: process.env.HANDOFF_TEST_LOG_LEVEL ?? 'silent',
    HANDOFF_CONFIG: configFile,
    // the whole suite can run on SIP worker threads (npm test runs workers.test.ts that way)
    ...(process.env.HANDOFF_TEST_SIP_WORKERS ? { HANDOFF_SIP_WORKERS: process.env.HANDOFF_TEST_SIP_WORKERS } : {}),
    HANDOFF_OPERATOR_TOKEN: OPERATOR_TOKEN,
    ...(tls ? { HANDOFF_SIP_TLS_PORT: '0', HANDOFF_SIP_TLS_CERT: tls.cert, HANDOFF_SIP_TLS_KEY: tls.key } : {}),
    ...(backend.name === 'postgres' ? backend.env : {}),
    ...opts.env,
  });
  let server: RunningServer;
  try {
    server = await startServer(settings);
  } catch (err) {
    await hooks.close();
    await backend.cleanup();
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  const keys = { a: a!.privateKeyPem, b: b!.privateKeyPem, c: c!.privateKeyPem };
  const iss = { a: ORG_A, b: ORG_B, c: ORG_C };
  const token = (org: 'a' | 'b' | 'c', o: Partial<MintTokenOptions> = {}) => mintToken({ privateKeyPem: keys[org], iss: iss[org], now: Date.now(), ...o });
  const partner = await token('a', { ttlSeconds: 3600 });
  const api = async (method: string, url: string, body?: unknown, bearer = partner) => {
    const res = await fetch(`${server.httpUrl}${url}`, {
      method,
      headers: { authorization: `Bearer ${bearer}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    const text = await res.text();
    return { status: res.status, json: text ? JSON.parse(text) : null };
  };
  let vc = 0;
  let stopped = false;
  return {
    server,
    hooks,
    dir,
    agents,
    sip: server.sipPorts,
    token,
    uui: (fields) => encodeUui(fields).replace(/;encoding=hex$/, ''),
    api,
    createCall: async (from = '+14155559000') => {
      const r = await api('POST', '/telephony/v1/voiceCalls', {
        vendorCallKey: `vc1-${process.pid}-${++vc}-${Date.now()}`,
        to: CH.main,
        from,
        callAttributes: '{"Department__c":"Support"}',
      });
      if (r.status !== 201) throw new Error(`createCall: ${r.status} ${JSON.stringify(r.json)}`);
      return r.json.voiceCallId as string;
    },
    reserve: async (from, callId, transactionId) => {
      const r = await api('POST', '/telephony/v1/voiceCalls/reserveRoutableNumber', {
        countryCode: 'US',
        fromNumber: from,
        scrt2Domain: DOMAIN_A,
        toNumber: CH.main,
        callId,
        transactionId,
      });
      if (r.status !== 200) throw new Error(`reserve: ${r.status} ${JSON.stringify(r.json)}`);
      return r.json.handle.routableNumber as string;
    },
    handoffCalls: async () => {
      const store = server.store as KyselyStore;
      const rows = await store.executor.selectFrom('voice_calls').select(['id', 'org_id']).where('initiation_method', '=', 'Transfer').execute();
      const calls = await Promise.all(rows.map((r) => store.getVoiceCall(r.org_id, r.id)));
      return calls.filter((c): c is VoiceCall => c !== null && c.handoff !== null && typeof c.handoff['sipCallId'] === 'string');
    },
    stopServer: async () => {
      if (!stopped) await server.close();
      stopped = true;
    },
    close: async () => {
      if (!stopped) await server.close();
      stopped = true;
      await hooks.close();
      await backend.cleanup();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** The first captured number of `re` in the service's /metrics (0 when absent). */
export async function metric(f: Fixture, re: RegExp): Promise<number> {
  const text = await (await fetch(`${f.server.httpUrl}/metrics`)).text();
  const m = text.match(re);
  return m ? Number(m[1]) : 0;
}

/** Polls `pred` every 20 ms for at most `ms`; returns its last value. */
export async function waitFor<T>(pred: () => Promise<T> | T, ms = 5000): Promise<T> {
  const end = Date.now() + ms;
  let v = await pred();
  while (!v && Date.now() < end) {
    await new Promise((r) => setTimeout(r, 20));
    v = await pred();
  }
  return v;
}
