import { randomUUID } from 'node:crypto';
import { isObject, sendOnce, stringField, type FetchFunction, type HttpRequest, type HttpResponse } from './http.js';
import { withRetries } from './retry.js';
import { readSigningKey, signToken, TokenCache, tokenTtl } from './token.js';
import type {
  CreatedVoiceCall,
  CreateVoiceCallInput,
  EscalateInput,
  EscalationResult,
  HandoffClientOptions,
  ReservedNumber,
  ReserveOptions,
  ReserveRoutableNumberInput,
  UpdateVoiceCallInput,
  VoiceCallRecord,
} from './types.js';

const DEFAULT_TIMEOUT_MS = 5000;
const DEFAULT_RESERVE_DEADLINE_MS = 15_000;

/**
 * A partner's client of Handoff's `/telephony/v1` API. It mints the bearer tokens itself from the
 * org's private key (one signature per token lifetime), or takes them from a `tokenProvider`.
 *
 * Each request is one attempt bounded by `timeoutMs`, except {@link reserveRoutableNumber}, which
 * is idempotent by `transactionId` and therefore retried. Every failure is a {@link HandoffApiError}.
 *
 * @example
 * import { readFileSync } from 'node:fs';
 * import { HandoffClient } from '@handoff/client';
 *
 * const client = new HandoffClient({
 *   baseUrl: 'http://127.0.0.1:8080',
 *   orgId: '00Dxx0000001DMO',
 *   subject: 'DemoCallCenter',
 *   privateKeyPem: readFileSync('data/demo-private-key.pem', 'utf8'),
 * });
 * const { voiceCallId } = await client.createVoiceCall({ vendorCallKey: 'conv-42', to: '+14155550100', from: '+14155551234' });
 * const lease = await client.reserveRoutableNumber({
 *   countryCode: 'US', fromNumber: '+14155551234', toNumber: '+14155550100',
 *   scrt2Domain: 'demo.my.example.com', callId: voiceCallId,
 * });
 * // forward the call to lease.routableNumber before lease.expiresAt
 */
export class HandoffClient {
  /** The org the client acts for (the tokens' `iss`). */
  readonly orgId: string;
  private readonly apiUrl: string;
  private readonly timeoutMs: number;
  private readonly fetchFn: FetchFunction;
  private readonly providerName: string | undefined;
  private readonly nextToken: () => string | Promise<string>;

  /** @throws TypeError or RangeError for unusable options (unreadable key, bad URL, TTL out of range). */
  constructor(options: HandoffClientOptions) {
    if (!/^https?:\/\/[^/]/i.test(options.baseUrl ?? '')) throw new TypeError(`baseUrl must be an http(s) URL (got ${options.baseUrl})`);
    if (typeof options.orgId !== 'string' || options.orgId.length === 0) throw new TypeError('orgId is required');
    this.orgId = options.orgId;
    this.apiUrl = `${options.baseUrl.replace(/\/+$/, '').replace(/\/telephony\/v1$/, '')}/telephony/v1`;
    this.timeoutMs = positive('timeoutMs', options.timeoutMs ?? DEFAULT_TIMEOUT_MS);
    this.fetchFn = options.fetch ?? globalThis.fetch;
    this.providerName = options.telephonyProviderName;

    if ((options.privateKeyPem === undefined) === (options.tokenProvider === undefined)) {
      throw new TypeError('give exactly one of privateKeyPem and tokenProvider');
    }
    if (options.tokenProvider !== undefined) {
      this.nextToken = options.tokenProvider;
    } else {
      const signer = readSigningKey(options.privateKeyPem, options.alg);
      const ttlSeconds = tokenTtl(options.tokenTtlSeconds);
      const claims = { orgId: options.orgId, subject: options.subject, keyId: options.keyId, ttlSeconds };
      const cache = new TokenCache((now) => signToken(signer, { ...claims, now }));
      this.nextToken = () => cache.get();
    }
  }

  /**
   * The bearer token the next request would carry (cached until shortly before it expires), e.g.
   * for the `token` of a UUI.
   *
   * @example
   * const uui = buildUui({ scrt2Domain, token: await client.getToken(), callId });
   */
  async getToken(): Promise<string> {
    const token = await this.nextToken();
    if (typeof token !== 'string' || token.length === 0) throw new TypeError('tokenProvider returned no token');
    return token;
  }

  /**
   * Creates a VoiceCall; a repeated `vendorCallKey` returns the existing one with `created: false`.
   *
   * @example
   * const { voiceCallId, created } = await client.createVoiceCall({
   *   vendorCallKey: conversationId, to: '+14155550100', from: ani,
   *   callAttributes: { Department__c: 'Support' },
   * });
   */
  async createVoiceCall(input: CreateVoiceCallInput): Promise<CreatedVoiceCall> {
    const response = await this.request('POST', '/voiceCalls', input);
    return { voiceCallId: stringField(response, 'voiceCallId', response.body.voiceCallId), created: response.status === 201 };
  }

  /**
   * Updates a VoiceCall, by ID or vendorCallKey; the change is durable when this resolves.
   *
   * @example
   * await client.updateVoiceCall(voiceCallId, { isActiveCall: false, endTime: new Date(), disconnectReason: 'Customer' });
   */
  async updateVoiceCall(idOrVendorCallKey: string, patch: UpdateVoiceCallInput): Promise<void> {
    await this.request('PATCH', `/voiceCalls/${encodeURIComponent(idOrVendorCallKey)}`, patch);
  }

  /**
   * Reads a VoiceCall (by ID or vendorCallKey) with its hand-off legs, context and escalation outcome.
   *
   * @example
   * const call = await client.getVoiceCall(voiceCallId);
   * if (call.escalation) console.log('given back:', call.escalation);
   */
  async getVoiceCall(idOrVendorCallKey: string): Promise<VoiceCallRecord> {
    const response = await this.request('GET', `/voiceCalls/${encodeURIComponent(idOrVendorCallKey)}`);
    stringField(response, 'voiceCallId', response.body.voiceCallId);
    return response.body as unknown as VoiceCallRecord;
  }

  /**
   * Leases a routable number for the call from `fromNumber` to `toNumber` (path A of the hand-off).
   *
   * Safe to retry, so it retries: network errors, timeouts, 5xx and 429 are tried again with the
   * same `transactionId` (generated when not given), so a lost answer yields the same lease, not a
   * second one. Waits honour `Retry-After`, else back off exponentially with jitter, and stop at
   * `deadlineMs` (default 15 s) with `DEADLINE_EXCEEDED`, whose `details.transactionId` lets a
   * later call pick the lease up. Other 4xx are thrown at once; a 409 `LEASE_NOT_LIVE` carries the
   * original `details.handle`.
   *
   * @example
   * const lease = await client.reserveRoutableNumber(
   *   { countryCode: 'US', fromNumber: ani, toNumber: '+14155550100', scrt2Domain: 'demo.my.example.com', callId },
   *   { deadlineMs: 5000 },
   * );
   * transferTo(lease.routableNumber);
   */
  async reserveRoutableNumber(input: ReserveRoutableNumberInput, options: ReserveOptions = {}): Promise<ReservedNumber> {
    const deadlineMs = positive('deadlineMs', options.deadlineMs ?? DEFAULT_RESERVE_DEADLINE_MS);
    const transactionId = input.transactionId ?? randomUUID();
    const body = { ...input, transactionId };
    const response = await withRetries(
      (remainingMs) => this.request('POST', '/voiceCalls/reserveRoutableNumber', body, Math.min(this.timeoutMs, remainingMs)),
      { deadlineMs, operation: 'reserveRoutableNumber', details: { transactionId } },
    );
    const handle = isObject(response.body.handle) ? response.body.handle : {};
    return {
      routableNumber: stringField(response, 'handle.routableNumber', handle.routableNumber),
      uid: stringField(response, 'handle.uid', handle.uid),
      expiresAt: stringField(response, 'handle.expiresAt', handle.expiresAt),
      transactionId,
    };
  }

  /**
   * Gives a call back to a human: the outcome is stored on both calls, the AI leg ends, and the
   * partner's post-flow takes over. For the AI agent's runtime, which authenticates with its own
   * bearer secret (pass it as `tokenProvider`), not a partner JWT. `voiceCallId` is the AI leg
   * (`X-Handoff-Voice-Call-Id`) or the partner's call.
   *
   * @example
   * const agent = new HandoffClient({ baseUrl, orgId, tokenProvider: () => process.env.AGENT_TOKEN! });
   * await agent.escalate(aiLegId, { reason: 'caller asked for a human', summary: 'Billing dispute', targetQueue: 'Billing' });
   */
  async escalate(voiceCallId: string, input: EscalateInput): Promise<EscalationResult> {
    const response = await this.request('POST', `/voiceCalls/${encodeURIComponent(voiceCallId)}/escalate`, input);
    stringField(response, 'voiceCallId', response.body.voiceCallId);
    return response.body as unknown as EscalationResult;
  }

  private async request(method: HttpRequest['method'], path: string, body?: unknown, timeoutMs = this.timeoutMs): Promise<HttpResponse> {
    const headers: Record<string, string> = { accept: 'application/json', authorization: `Bearer ${await this.getToken()}` };
    if (body !== undefined) headers['content-type'] = 'application/json';
    if (this.providerName !== undefined) headers['telephony-provider-name'] = this.providerName;
    return sendOnce(this.fetchFn, { method, url: this.apiUrl + path, headers, body: body === undefined ? undefined : JSON.stringify(body) }, timeoutMs);
  }
}

function positive(name: string, value: number): number {
  if (!Number.isFinite(value) || value <= 0) throw new RangeError(`${name} must be a positive number of milliseconds (got ${value})`);
  return value;
}
