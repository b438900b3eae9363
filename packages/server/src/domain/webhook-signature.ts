import { createHmac, timingSafeEqual } from 'node:crypto';

/**
 * The webhook wire contract: the event types, the body every delivery carries, the URLs it may go
 * to, and the `Handoff-Signature` header that signs it (Stripe-style: HMAC-SHA256 over "<t>.<raw body>").
 */

/** Every event type a subscription can ask for, in the order a call usually produces them. */
export const WEBHOOK_EVENT_TYPES = [
  'voiceCall.created',
  'lease.reserved',
  'lease.consumed',
  'lease.expired',
  'call.routed',
  'call.answered',
  'call.escalated',
  'call.ended',
] as const;

export type WebhookEventType = (typeof WEBHOOK_EVENT_TYPES)[number];

/** The JSON body of a delivery; the same bytes on every attempt and for every subscription. */
export interface WebhookEvent {
  /** UUID; receivers de-duplicate on it (delivery is at least once). */
  id: string;
  type: WebhookEventType;
  /** ISO 8601 instant the event was emitted. */
  createdAt: string;
  /** 18-character org ID. */
  orgId: string;
  /** 18-character VoiceCall ID, or null for events about no call. */
  voiceCallId: string | null;
  data: Record<string, unknown>;
}

/**
 * Why a URL cannot be a webhook endpoint, or null when it can: an absolute http or https URL.
 * Operators configure these URLs; nothing else restricts where deliveries go.
 *
 * @example
 * webhookUrlProblem('ftp://x'); // 'must be an http or https URL'
 */
export function webhookUrlProblem(url: string): string | null {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return 'must be an absolute http or https URL';
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') return 'must be an http or https URL';
  if (url.length > 2048) return 'must be at most 2048 characters';
  return null;
}

export const SIGNATURE_HEADER = 'handoff-signature';
/** How far a signature's timestamp may be from the receiver's clock, by default (seconds). */
export const DEFAULT_TOLERANCE_SECONDS = 300;

/** Hex HMAC-SHA256 of "<t>.<body>" with the subscription secret. */
function signaturePayloadHmac(secret: string, t: number, body: string): string {
  return createHmac('sha256', secret).update(`${t}.${body}`).digest('hex');
}

/**
 * The `Handoff-Signature` header value for a body sent at `nowMs`.
 *
 * @example
 * signWebhook('whsec-0123456789abcdef', '{"id":"…"}', Date.UTC(2026, 0, 1));
 * // 't=1767225600,v1=5f2b…'
 */
export function signWebhook(secret: string, body: string, nowMs: number): string {
  const t = Math.floor(nowMs / 1000);
  return `t=${t},v1=${signaturePayloadHmac(secret, t, body)}`;
}

/** The timestamp and the v1 signatures of a header (several v1 entries are allowed, for rotation). */
export function parseSignatureHeader(header: string): { t: number; v1: string[] } | null {
  let t: number | null = null;
  const v1: string[] = [];
  for (const part of header.split(',')) {
    const eq = part.indexOf('=');
    if (eq < 0) continue;
    const key = part.slice(0, eq).trim();
    const value = part.slice(eq + 1).trim();
    if (key === 't' && /^\d{1,12}$/.test(value)) t = Number(value);
    else if (key === 'v1' && /^[0-9a-f]{64}$/.test(value)) v1.push(value);
  }
  return t === null || v1.length === 0 ? null : { t, v1 };
}

/**
 * Checks a delivery the way a receiver should: a v1 signature matches the raw body (compared in
 * constant time) and the timestamp is within `toleranceSeconds` of `nowMs`, which bounds replays.
 *
 * @example
 * verifyWebhookSignature(req.headers['handoff-signature'], rawBody, secret, { nowMs: Date.now() }); // true | false
 */
export function verifyWebhookSignature(
  header: string | undefined,
  body: string,
  secret: string,
  opts: { nowMs: number; toleranceSeconds?: number },
): boolean {
  const parsed = header === undefined ? null : parseSignatureHeader(header);
  if (!parsed) return false;
  if (Math.abs(opts.nowMs / 1000 - parsed.t) > (opts.toleranceSeconds ?? DEFAULT_TOLERANCE_SECONDS)) return false;
  const expected = Buffer.from(signaturePayloadHmac(secret, parsed.t, body), 'hex');
  return parsed.v1.some((sig) => timingSafeEqual(Buffer.from(sig, 'hex'), expected));
}
