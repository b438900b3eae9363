import * as crypto from 'node:crypto';
import { isE164 } from '../domain/e164.js';
import { HandoffError } from '../domain/errors.js';
import { normalizeSfId, VOICE_CALL_PREFIX } from '../domain/ids.js';
import { normalizeDomain } from '../domain/org-domain.js';
import type { Store } from '../store/store.js';
import type { LeaseService, ReserveResult } from './lease-service.js';
import type { ReferenceCache } from './reference-cache.js';

/** The documented body shapes, merged: flat fields, or `context` with `countryCode` or `country`. */
export interface ReservationBody {
  countryCode?: string;
  country?: string;
  fromNumber?: string;
  scrt2Domain?: string;
  toNumber?: string;
  callId?: string;
  transactionId?: string;
  originalFromNumber?: string;
  context?: {
    scrt2Domain?: string;
    toNumber?: string;
    callId?: string;
    transactionId?: string;
    originalFromNumber?: string;
  };
}

function invalid(field: string, message: string): never {
  throw new HandoffError('INVALID_FIELD', `${field}: ${message}`, { details: { field } });
}

function missing(field: string): never {
  throw new HandoffError('MISSING_FIELD', `${field}: is required`, { details: { field } });
}

/** A field given flat, in `context`, or both (then they must agree). */
function pick(body: ReservationBody, field: keyof NonNullable<ReservationBody['context']>): string | undefined {
  const flat = body[field];
  const nested = body.context?.[field];
  if (flat !== undefined && nested !== undefined && flat !== nested) invalid(field, `given twice with different values (flat and context.${field})`);
  return flat ?? nested;
}

/** crypto.hash (Node 20.12+) hashes a string in one call, without a Hash object per request. */
const oneShotHash = (crypto as { hash?: (algorithm: string, data: string) => string }).hash;

/**
 * requestHash() (domain/lease-policy.ts) of the semantic reservation, built directly: the canonical
 * JSON of these six fields (keys sorted, null members left out) without walking and sorting a
 * generic object on every request (chosen for speed). Must equal
 * `requestHash({ country, fromNumber, toNumber, scrt2Domain, callId, originalFromNumber })`.
 */
export function reservationHash(
  country: string,
  fromNumber: string,
  toNumber: string,
  scrt2Domain: string,
  callId: string | null,
  originalFromNumber: string | null,
): string {
  const q = JSON.stringify;
  let s = callId === null ? '{' : `{"callId":${q(callId)},`;
  s += `"country":${q(country)},"fromNumber":${q(fromNumber)},`;
  if (originalFromNumber !== null) s += `"originalFromNumber":${q(originalFromNumber)},`;
  s += `"scrt2Domain":${q(scrt2Domain)},"toNumber":${q(toNumber)}}`;
  return oneShotHash ? oneShotHash('sha256', s) : crypto.createHash('sha256').update(s).digest('hex');
}

/** normalizeDomain results: partners send the same few domains on every request. */
const domains = new Map<string, string | null>();

function domainOf(raw: string): string | null {
  let d = domains.get(raw);
  if (d === undefined) {
    d = normalizeDomain(raw);
    if (domains.size >= 1000) domains.clear();
    domains.set(raw, d);
  }
  return d;
}

/**
 * reserveRoutableNumber's request rules (SPEC §5), checked cheapest first, then the lease engine.
 * Shared by HTTP and the CLI.
 */
export class ReservationService {
  constructor(
    private readonly store: Store,
    private readonly leases: LeaseService,
    private readonly refs: ReferenceCache,
  ) {}

  async reserve(orgId: string, body: ReservationBody, opts: { idempotencyKey: string | null; provider: string | null }): Promise<ReserveResult> {
    // 1. Shape, no I/O.
    if (body.countryCode !== undefined && body.country !== undefined && body.countryCode.toUpperCase() !== body.country.toUpperCase()) {
      invalid('countryCode', 'countryCode and country differ');
    }
    const countryRaw = body.countryCode ?? body.country ?? missing('countryCode');
    if (!/^[A-Za-z]{2}$/.test(countryRaw)) invalid('countryCode', 'must be an ISO 3166-1 alpha-2 code such as GB');
    const country = countryRaw.toUpperCase();
    const fromNumber = body.fromNumber ?? missing('fromNumber');
    if (!isE164(fromNumber)) invalid('fromNumber', 'must be an E.164 number such as +14155551234');
    const toNumber = pick(body, 'toNumber') ?? missing('toNumber');
    if (!isE164(toNumber)) invalid('toNumber', 'must be an E.164 number such as +14155551234');
    const domainRaw = pick(body, 'scrt2Domain') ?? missing('scrt2Domain');
    const domain = domainOf(domainRaw);
    if (domain === null) invalid('scrt2Domain', 'must be a domain such as https://acme.my.example.com');
    const originalFromNumber = pick(body, 'originalFromNumber');
    if (originalFromNumber !== undefined && !isE164(originalFromNumber)) invalid('originalFromNumber', 'must be an E.164 number');
    const callIdRaw = pick(body, 'callId');
    const callId = callIdRaw === undefined ? null : normalizeSfId(callIdRaw, VOICE_CALL_PREFIX);
    if (callIdRaw !== undefined && callId === null) invalid('callId', 'must be a 15- or 18-character VoiceCall ID');
    // An empty transactionId is no key, as an empty Idempotency-Key header is (else every request sending
    // one would replay or contradict the org's first).
    const bodyTx = pick(body, 'transactionId') || undefined;
    if (bodyTx !== undefined && opts.idempotencyKey !== null && bodyTx !== opts.idempotencyKey) {
      invalid('transactionId', 'differs from the Idempotency-Key header');
    }
    const transactionId = bodyTx ?? opts.idempotencyKey;

    // 2. The org and its references.
    const org = await this.refs.org(orgId);
    if (!org) throw new HandoffError('ORG_NOT_FOUND', 'The token names no known org');
    if (!org.features.numberPool) throw new HandoffError('FEATURE_NOT_ENABLED', 'This org does not have the numberPool feature');
    if (domain !== org.domain) invalid('scrt2Domain', "is not this org's domain");
    const countries = await this.refs.poolCountries();
    if (!countries.includes(country)) {
      const supported = countries;
      throw new HandoffError('UNSUPPORTED_COUNTRY', `countryCode: no number pool for ${country}; supported: ${supported.join(', ') || 'none'}`, {
        details: { field: 'countryCode', supportedCountries: supported },
      });
    }
    const channel = await this.refs.channelByNumber(toNumber);
    if (!channel || channel.orgId !== orgId) throw new HandoffError('CHANNEL_NOT_FOUND', 'toNumber: no channel of this org has that number', { details: { field: 'toNumber' } });
    if (callId !== null && !(await this.store.getVoiceCall(orgId, callId))) {
      throw new HandoffError('VOICE_CALL_NOT_FOUND', 'callId: no VoiceCall with that ID in this org', { details: { field: 'callId' } });
    }

    // 3. The lease, idempotent by transactionId.
    return this.leases.reserve({
      orgId,
      country,
      fromNumber,
      toNumber,
      callId,
      transactionId,
      provider: opts.provider,
      requestHash: reservationHash(country, fromNumber, toNumber, domain, callId, originalFromNumber ?? null),
      maxLiveLeases: org.quotas.maxLiveLeases,
    });
  }
}
