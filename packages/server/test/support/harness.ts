import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { validateProvisioning } from '../../src/config.js';
import { systemClock, type Clock } from '../../src/domain/clock.js';
import { generateKeyPair, mintToken, type MintTokenOptions } from '../../src/domain/token-mint.js';
import { buildApp } from '../../src/http/app.js';
import { Metrics } from '../../src/metrics.js';
import { createServices, type ServiceOptions, type Services } from '../../src/services/index.js';
import { applyProvisioning } from '../../src/services/provisioning.js';
import type { KyselyStore } from '../../src/store/kysely-store.js';
import { makeBackend, type Backend } from './backends.js';

/** Two orgs: A has the number pool, B does not. Their keys are generated per harness. */
export const ORG_A = '00Dxx0000004CFG';
export const ORG_A18 = '00Dxx0000004CFGEA2';
export const ORG_B = '00Dxx0000008BBB';
export const CC_A = 'AcmeCallCenter';
export const CC_A2 = 'AcmeSecondCenter';
export const CHANNEL_A = '+14155550100';
export const CHANNEL_B = '+14155550200';
export const OPERATOR_TOKEN = 'operator-secret-for-tests-0123456789';
export const AGENT_TOKEN = 'agent-secret-of-bot-0123456789abcdef';
export const OTHER_AGENT_TOKEN = 'agent-secret-of-other-bot-0123456789';

export interface Harness {
  backend: Backend;
  store: KyselyStore;
  services: Services;
  metrics: Metrics;
  app: FastifyInstance;
  keys: { a: string; a2: string; aEc: string; b: string };
  token(org: 'a' | 'a2' | 'aEc' | 'b', opts?: Partial<MintTokenOptions>): Promise<string>;
  close(): Promise<void>;
}

export function provisioningDoc(pub: { a: string; a2: string; aEc: string; b: string }) {
  return {
    orgs: [
      {
        id: ORG_A,
        name: 'Acme',
        domain: 'acme.my.example.com',
        features: { numberPool: true },
        keys: [
          { id: 'acme-1', publicKey: pub.a },
          { id: 'acme-2', kid: 'rot-2', publicKey: pub.a2 },
          { id: 'acme-ec', publicKey: pub.aEc },
        ],
        callCenters: [{ apiName: CC_A, name: 'Acme CC' }, { apiName: CC_A2 }],
        flows: [
          { name: 'main', rules: [{ agent: 'bot' }], fallback: { reject: { status: 503 } } },
          {
            name: 'byDept',
            rules: [
              { name: 'billing', when: { attributes: { Department__c: ['Billing'] } }, agent: 'bot', set: { callSubtype: 'Billing' } },
              { name: 'transfers', when: { path: ['uui'] }, agent: 'bot' },
            ],
            fallback: { queue: 'Humans' },
          },
          { name: 'rejecting', rules: [], fallback: { reject: { status: 486, reason: 'Busy here' } } },
        ],
        channels: [{ devName: 'Acme_AI', number: CHANNEL_A, callCenter: CC_A, flow: 'main' }],
      },
      {
        id: ORG_B,
        name: 'Bravo',
        domain: 'bravo.my.example.com',
        keys: [{ id: 'bravo-1', publicKey: pub.b }],
        callCenters: [{ apiName: 'BravoCC' }],
        channels: [{ devName: 'Bravo_AI', number: CHANNEL_B, callCenter: 'BravoCC' }],
      },
    ],
    pools: [{ country: 'US', ranges: [{ from: '+12125550100', to: '+12125550104' }] }],
    agents: [
      { name: 'bot', sipUri: 'sip:bot@127.0.0.1:5099', maxConcurrentCalls: 2, token: AGENT_TOKEN },
      { name: 'other-bot', sipUri: 'sip:other@127.0.0.1:5098', token: OTHER_AGENT_TOKEN },
    ],
  };
}

export async function makeHarness(
  name: 'sqlite' | 'postgres',
  opts: { clock?: Clock; bodyLimit?: number; services?: ServiceOptions; logger?: Logger } = {},
): Promise<Harness> {
  const clock = opts.clock ?? systemClock;
  const backend = await makeBackend(name);
  const store = await backend.open();
  await store.migrate();
  const [a, a2, aEc, b] = await Promise.all([generateKeyPair('RS256'), generateKeyPair('RS256'), generateKeyPair('ES256'), generateKeyPair('RS256')]);
  const pub = { a: a!.publicKeyPem, a2: a2!.publicKeyPem, aEc: aEc!.publicKeyPem, b: b!.publicKeyPem };
  await applyProvisioning(store, validateProvisioning(provisioningDoc(pub), 'test', '.'), clock.now());
  const metrics = new Metrics({ defaultMetrics: false });
  // Tests change orgs straight in the store, so reference caching is off here (it has its own test).
  const services = createServices(store, clock, { metrics, operatorToken: OPERATOR_TOKEN, referenceCacheMs: 0, ...(opts.services ?? {}) });
  const app = await buildApp({ services, logger: opts.logger ?? false, bodyLimit: opts.bodyLimit ?? 64 * 1024, isReady: () => true });
  const keys = { a: a!.privateKeyPem, a2: a2!.privateKeyPem, aEc: aEc!.privateKeyPem, b: b!.privateKeyPem };
  return {
    backend,
    store,
    services,
    metrics,
    app,
    keys,
    token: (org, o = {}) =>
      mintToken({
        privateKeyPem: keys[org],
        iss: org === 'b' ? ORG_B : ORG_A,
        now: clock.now(),
        ...(org === 'a2' ? { kid: 'rot-2' } : {}),
        ...o,
      }),
    close: async () => {
      await app.close();
      await store.close();
      await backend.cleanup();
    },
  };
}
