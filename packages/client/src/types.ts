import type { TokenAlg } from './token.js';

/** Returns a bearer token for the next request; called before each one, so cache inside if minting is costly. */
export type TokenProvider = () => string | Promise<string>;

interface HandoffClientSettings {
  /** The service's root URL, e.g. `http://127.0.0.1:8080` (a trailing `/telephony/v1` is tolerated). */
  baseUrl: string;
  /** The org ID (15 or 18 chars): the tokens' `iss`. */
  orgId: string;
  /** Tokens' `sub`: a call center API name or channel developer name of the org; omit it if you are not a call center. */
  subject?: string | undefined;
  /** Tokens' `kid` header, when the key was registered with one. */
  keyId?: string | undefined;
  /** Inferred from the key (RSA: RS256, EC P-256: ES256); when given it must match. */
  alg?: TokenAlg | undefined;
  /** Lifetime of the minted tokens, 1 to 86400 seconds; default 3600. */
  tokenTtlSeconds?: number | undefined;
  /** Sent as `Telephony-Provider-Name` on every request (recorded on the VoiceCall). */
  telephonyProviderName?: string | undefined;
  /** Time allowed for one attempt (connect, send, read the whole answer); default 5000 ms. */
  timeoutMs?: number | undefined;
  /** The fetch implementation; default the global one. */
  fetch?: typeof fetch | undefined;
}

interface PrivateKeyAuth {
  /** The org's private key as PEM (PKCS#8, PKCS#1 `RSA PRIVATE KEY` or SEC1 `EC PRIVATE KEY`): the client mints and caches its tokens. */
  privateKeyPem: string;
  tokenProvider?: undefined;
}

interface TokenProviderAuth {
  /** Ready tokens instead of a key (e.g. an agent runtime's bearer secret). */
  tokenProvider: TokenProvider;
  privateKeyPem?: undefined;
}

/** Client options: a private key to mint tokens from, or a provider of ready tokens. */
export type HandoffClientOptions = HandoffClientSettings & (PrivateKeyAuth | TokenProviderAuth);

export interface VoiceCallParticipant {
  participantKey?: string;
  type?: string;
  [field: string]: unknown;
}

/** `POST /voiceCalls`. Dates may be given as `Date` (sent as ISO 8601). */
export interface CreateVoiceCallInput {
  /** The call's key in the telephony system; a repeated key returns the existing record. */
  vendorCallKey: string;
  /** The number the customer dialled, E.164 (or a `tel:` URI). */
  to: string;
  /** The customer's number, E.164 (or a `tel:` URI). */
  from: string;
  callCenterApiName?: string;
  /** Default `Inbound`; `Transfer` needs `parentVoiceCallId`. */
  initiationMethod?: 'Inbound' | 'Outbound' | 'Transfer' | 'Callback';
  parentVoiceCallId?: string;
  startTime?: string | Date;
  participants?: VoiceCallParticipant[];
  /** A JSON object as a string, as documented; an object is accepted too. */
  callAttributes?: string | Record<string, unknown>;
  callOrigin?: string;
  queue?: string;
  callSubtype?: string;
}

/** `PATCH /voiceCalls/{id}`: only the given fields change; `callAttributes` are merged field by field. */
export interface UpdateVoiceCallInput {
  to?: string;
  from?: string;
  startTime?: string | Date;
  endTime?: string | Date;
  isActiveCall?: boolean;
  disconnectReason?: string;
  callAttributes?: string | Record<string, unknown>;
  callOrigin?: string;
  queue?: string;
  callSubtype?: string;
  participants?: VoiceCallParticipant[];
}

export interface CreatedVoiceCall {
  /** The 18-char VoiceCall ID. */
  voiceCallId: string;
  /** false when a VoiceCall with this vendorCallKey already existed (HTTP 200 instead of 201). */
  created: boolean;
}

/** A VoiceCall as `GET /voiceCalls/{id}` returns it. */
export interface VoiceCallRecord {
  voiceCallId: string;
  vendorCallKey: string | null;
  callCenterApiName: string | null;
  to: string | null;
  from: string | null;
  initiationMethod: string;
  parentVoiceCallId: string | null;
  startTime: string | null;
  endTime: string | null;
  isActiveCall: boolean | null;
  disconnectReason: string | null;
  /** The JSON string as sent. */
  callAttributes: string | null;
  callOrigin: string | null;
  queue: string | null;
  callSubtype: string | null;
  participants: VoiceCallParticipant[];
  telephonyProviderName: string | null;
  status: string | null;
  /** How this leg was handed off (path, lease, transactionId...). */
  handoff: Record<string, unknown> | null;
  /** The escalation outcome, once the agent gave the call back. */
  escalation: Escalation | null;
  createdAt: string;
  updatedAt: string;
  /** The hand-off legs (VoiceCalls whose parent is this one). */
  legs?: VoiceCallRecord[];
  /** How many legs the call has in all (`legs` shows the newest, 100 by default). */
  legsTotal?: number;
}

/** `POST /voiceCalls/reserveRoutableNumber`. */
export interface ReserveRoutableNumberInput {
  /** ISO 3166-1 alpha-2 country of the number pool, e.g. `US`. */
  countryCode: string;
  /** The caller's number, E.164: the call must arrive from it. */
  fromNumber: string;
  /** The channel (virtual number) the call is for, E.164. */
  toNumber: string;
  /** The org's scrt2Domain. */
  scrt2Domain: string;
  /** The partner's VoiceCall (VC1). */
  callId?: string;
  /** Idempotency key; a random UUID when omitted. Reuse it to get the same handle back. */
  transactionId?: string;
  originalFromNumber?: string;
}

export interface ReserveOptions {
  /** Total time for every attempt and wait; default 15000 ms. */
  deadlineMs?: number;
}

/** The lease: forward the call to `routableNumber` from `fromNumber` before `expiresAt`. */
export interface ReservedNumber {
  routableNumber: string;
  /** Unique, opaque lease ID. */
  uid: string;
  /** ISO 8601 UTC. */
  expiresAt: string;
  /** The transactionId the lease is held under (the generated one when none was given). */
  transactionId: string;
}

/** `POST /voiceCalls/{id}/escalate`. */
export interface EscalateInput {
  /** Why the agent gives the call back. */
  reason: string;
  summary?: string;
  /** The queue the partner's post-flow should route the call to. */
  targetQueue?: string;
}

/** An escalation outcome, as stored on the AI leg and on the partner's VoiceCall. */
export interface Escalation {
  reason: string;
  summary: string | null;
  targetQueue: string | null;
  /** The agent that gave the call back. */
  agent: string;
  /** The AI leg (VC2). */
  aiVoiceCallId: string;
  /** ISO 8601 UTC. */
  escalatedAt: string;
}

export interface EscalationResult {
  status: 'escalated';
  /** The AI leg that was escalated. */
  voiceCallId: string;
  /** The partner's VoiceCall (VC1), when the AI leg has one. */
  partnerVoiceCallId: string | null;
  /** True when the service ended the AI leg by BYE through its SIP proxy. */
  aiLegEnded: boolean;
  escalation: Escalation;
}
