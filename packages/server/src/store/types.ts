import type { KeyAlg } from '../domain/token.js';

/** Records as the rest of the code sees them: camelCase, times in epoch ms, JSON already parsed. */

export interface OrgFeatures {
  numberPool: boolean;
}

export interface OrgQuotas {
  /** Live leases the org may hold at once; null means unlimited. */
  maxLiveLeases: number | null;
  /** Partner API requests per second; null means unlimited. */
  requestsPerSecond: number | null;
}

export interface Org {
  /** Canonical 15-char org ID. */
  id: string;
  name: string;
  /** The org's scrt2Domain, normalised: lower-case host, no scheme, no path. */
  domain: string;
  features: OrgFeatures;
  quotas: OrgQuotas;
  createdAt: number;
  updatedAt: number;
}

/** Defined once, in the domain: the algorithm a registered key signs with. */
export type { KeyAlg };

export interface OrgKey {
  /** Operator-chosen stable name of the key, unique across the install. */
  id: string;
  orgId: string;
  kid: string | null;
  alg: KeyAlg;
  /** SPKI public key PEM or X.509 certificate PEM, as registered. */
  pem: string;
  expiresAt: number | null;
  revokedAt: number | null;
  createdAt: number;
}

export interface CallCenter {
  orgId: string;
  apiName: string;
  name: string;
  createdAt: number;
}

export interface Channel {
  orgId: string;
  devName: string;
  /** The channel's SIP address / virtual number in E.164 (the partner's `toNumber`). */
  number: string;
  callCenterApiName: string | null;
  flowName: string | null;
  createdAt: number;
  updatedAt: number;
}

export interface Flow {
  orgId: string;
  name: string;
  /** The flow definition (see domain/flow.ts); stored as JSON. */
  definition: unknown;
  updatedAt: number;
}

export interface Agent {
  name: string;
  /** Owning org, or null for an operator-wide agent any org's flow may use. */
  orgId: string | null;
  sipUri: string;
  webhookUrl: string | null;
  maxConcurrentCalls: number;
  /** SHA-256 (hex) of the agent runtime's bearer secret, or null when it has none. */
  tokenHash: string | null;
  createdAt: number;
  updatedAt: number;
}

export type PoolNumberState = 'active' | 'draining';

export interface PoolNumber {
  number: string;
  country: string;
  state: PoolNumberState;
  lastLeasedAt: number;
  createdAt: number;
}

export interface PoolSummary {
  country: string;
  numbers: number;
  active: number;
  draining: number;
}

export interface VoiceCall {
  /** Canonical 15-char ID; the API shows the 18-char form. */
  id: string;
  orgId: string;
  vendorCallKey: string | null;
  callCenterApiName: string | null;
  toNumber: string | null;
  fromNumber: string | null;
  initiationMethod: string;
  parentVoiceCallId: string | null;
  startTime: string | null;
  endTime: string | null;
  isActiveCall: boolean | null;
  disconnectReason: string | null;
  /** The callAttributes JSON string exactly as the partner sent it (objects are stringified). */
  callAttributes: string | null;
  callOrigin: string | null;
  queue: string | null;
  callSubtype: string | null;
  participants: unknown[] | null;
  telephonyProviderName: string | null;
  status: string | null;
  /** How this leg was handed off (path, lease, transactionId...): set by the pool and SIP layers. */
  handoff: Record<string, unknown> | null;
  /** The escalation outcome, once the agent gave the call back. */
  escalation: Record<string, unknown> | null;
  createdAt: number;
  updatedAt: number;
}

/** Fields a PATCH may change. Absent keys are left alone; null clears a field. */
export type VoiceCallPatch = Partial<
  Pick<
    VoiceCall,
    | 'toNumber'
    | 'fromNumber'
    | 'startTime'
    | 'endTime'
    | 'isActiveCall'
    | 'disconnectReason'
    | 'callAttributes'
    | 'callOrigin'
    | 'queue'
    | 'callSubtype'
    | 'participants'
    | 'status'
    | 'handoff'
    | 'escalation'
    | 'telephonyProviderName'
  >
>;
