import { createPrivateKey, createPublicKey, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync, chmodSync } from 'node:fs';
import { join } from 'node:path';
import type { Provisioning } from '../config.js';
import { generateKeyPair } from '../domain/token-mint.js';
import { toId18 } from '../domain/ids.js';

/** The demo tenant a fresh start creates. Numbers are fictional (NANP 555-01XX, Ofcom drama ranges). */
export const DEMO = {
  orgId: '00Dxx0000001DMO',
  orgName: 'Handoff Demo',
  domain: 'demo.my.example.com',
  callCenterApiName: 'DemoCallCenter',
  channelDevName: 'Demo_AI_Agent',
  channelNumber: '+14155550100',
  flowName: 'demo_flow',
  agentName: 'demo-agent',
  keyId: 'demo-key',
  pools: {
    US: { from: '+12125550100', to: '+12125550199' },
    GB: { from: '+442079460000', to: '+442079460099' },
  },
} as const;

export interface DemoInfo {
  orgId: string;
  orgId18: string;
  domain: string;
  callCenterApiName: string;
  channelDevName: string;
  channelNumber: string;
  privateKeyPath: string;
  publicKeyPath: string;
  keyId: string;
  countries: string[];
  agentName: string;
  httpUrl: string;
  sipHost: string;
  /** The SIP ingress's UDP port (bound: the real one when HANDOFF_SIP_PORT is 0). */
  sipPort: number;
  /** Every bound SIP port: UDP and TCP share HANDOFF_SIP_PORT unless it is 0; TLS when configured. */
  sipPorts: { udp: number; tcp: number; tls: number | null };
  /** The built-in demo agent's SIP URI (the demo agent record's sipUri). */
  demoAgentUri: string;
  /** The generated operator secret's file, when HANDOFF_OPERATOR_TOKEN is not set. */
  operatorTokenPath: string | null;
  /** The demo agent's generated bearer secret (escalation), mode 0600. */
  agentTokenPath: string;
}

/**
 * Loads the demo key pair from the data dir, creating it on first start (private key mode 0600),
 * so restarts keep the same key and previously minted tokens stay valid.
 */
export async function ensureDemoKeys(
  dataDir: string,
): Promise<{ privateKeyPath: string; publicKeyPath: string; publicKeyPem: string; agentTokenPath: string; agentToken: string }> {
  mkdirSync(dataDir, { recursive: true });
  const privateKeyPath = join(dataDir, 'demo-private-key.pem');
  const publicKeyPath = join(dataDir, 'demo-public-key.pem');
  if (!existsSync(privateKeyPath)) {
    const pair = await generateKeyPair('RS256');
    writeFileSync(privateKeyPath, pair.privateKeyPem, { mode: 0o600 });
  }
  chmodSync(privateKeyPath, 0o600);
  const publicKeyPem = createPublicKey(createPrivateKey(readFileSync(privateKeyPath, 'utf8'))).export({ type: 'spki', format: 'pem' }).toString();
  writeFileSync(publicKeyPath, publicKeyPem);
  return { privateKeyPath, publicKeyPath, publicKeyPem, ...ensureDemoAgentToken(dataDir) };
}

/** The demo agent's bearer secret (escalation): generated once into the data dir (0600) and reused. */
export function ensureDemoAgentToken(dataDir: string): { agentTokenPath: string; agentToken: string } {
  const agentTokenPath = join(dataDir, 'demo-agent-token');
  mkdirSync(dataDir, { recursive: true });
  if (!existsSync(agentTokenPath)) writeFileSync(agentTokenPath, randomBytes(32).toString('base64url') + '\n', { mode: 0o600 });
  chmodSync(agentTokenPath, 0o600);
  return { agentTokenPath, agentToken: readFileSync(agentTokenPath, 'utf8').trim() };
}

/** The demo tenant as a provisioning document, applied through the same path as a config file. */
export function demoProvisioning(publicKeyPem: string, agentSipUri: string, agentToken?: string): Provisioning {
  return {
    orgs: [
      {
        id: DEMO.orgId,
        name: DEMO.orgName,
        domain: DEMO.domain,
        features: { numberPool: true },
        keys: [{ id: DEMO.keyId, publicKey: publicKeyPem }],
        callCenters: [{ apiName: DEMO.callCenterApiName, name: 'Demo Call Center' }],
        flows: [
          {
            name: DEMO.flowName,
            rules: [{ name: 'everything to the demo agent', agent: DEMO.agentName }],
            fallback: { reject: { status: 503, reason: 'No agent available' } },
          },
        ],
        channels: [{ devName: DEMO.channelDevName, number: DEMO.channelNumber, callCenter: DEMO.callCenterApiName, flow: DEMO.flowName }],
      },
    ],
    pools: Object.entries(DEMO.pools).map(([country, range]) => ({ country, ranges: [range] })),
    agents: [{ name: DEMO.agentName, sipUri: agentSipUri, maxConcurrentCalls: 50, ...(agentToken !== undefined ? { token: agentToken } : {}) }],
  };
}

export function writeDemoInfo(dataDir: string, info: DemoInfo): string {
  const path = join(dataDir, 'demo.json');
  writeFileSync(path, JSON.stringify(info, null, 2) + '\n');
  return path;
}

export function demoInfo(args: {
  dataDir: string;
  httpUrl: string;
  sipHost: string;
  sipPort: number;
  sipPorts: DemoInfo['sipPorts'];
  demoAgentUri: string;
  privateKeyPath: string;
  publicKeyPath: string;
  operatorTokenPath: string | null;
  agentTokenPath: string;
}): DemoInfo {
  return {
    orgId: DEMO.orgId,
    orgId18: toId18(DEMO.orgId),
    domain: DEMO.domain,
    callCenterApiName: DEMO.callCenterApiName,
    channelDevName: DEMO.channelDevName,
    channelNumber: DEMO.channelNumber,
    privateKeyPath: args.privateKeyPath,
    publicKeyPath: args.publicKeyPath,
    keyId: DEMO.keyId,
    countries: Object.keys(DEMO.pools),
    agentName: DEMO.agentName,
    httpUrl: args.httpUrl,
    sipHost: args.sipHost,
    sipPort: args.sipPort,
    sipPorts: args.sipPorts,
    demoAgentUri: args.demoAgentUri,
    operatorTokenPath: args.operatorTokenPath,
    agentTokenPath: args.agentTokenPath,
  };
}
