/**
 * Stable error codes. The server's codes are listed for autocompletion; any other code the server
 * sends passes through unchanged. The SDK's own codes, for failures without a usable HTTP answer:
 *
 * - `NETWORK_ERROR`: the request failed before a response arrived (refused, reset, DNS...);
 * - `TIMEOUT`: no complete response within `timeoutMs`;
 * - `DEADLINE_EXCEEDED`: `reserveRoutableNumber` gave up retrying (its `cause` is the last failure);
 * - `INVALID_UUI`: `buildUui` refused its input, as the server would;
 * - `UNEXPECTED_RESPONSE`: an answer that is not Handoff's JSON (e.g. a load balancer's error page).
 */
export type HandoffErrorCode =
  | 'INVALID_REQUEST'
  | 'INVALID_FIELD'
  | 'MISSING_FIELD'
  | 'UNSUPPORTED_COUNTRY'
  | 'INVALID_UUI'
  | 'INVALID_TOKEN'
  | 'FEATURE_NOT_ENABLED'
  | 'FORBIDDEN'
  | 'NOT_FOUND'
  | 'ORG_NOT_FOUND'
  | 'VOICE_CALL_NOT_FOUND'
  | 'CHANNEL_NOT_FOUND'
  | 'LEASE_NOT_FOUND'
  | 'METHOD_NOT_ALLOWED'
  | 'NOT_ACCEPTABLE'
  | 'CONFLICT'
  | 'LEASE_NOT_LIVE'
  | 'PAYLOAD_TOO_LARGE'
  | 'UNSUPPORTED_MEDIA_TYPE'
  | 'IDEMPOTENCY_MISMATCH'
  | 'QUOTA_EXCEEDED'
  | 'RATE_LIMITED'
  | 'INTERNAL_ERROR'
  | 'POOL_EXHAUSTED'
  | 'NOT_READY'
  | 'NETWORK_ERROR'
  | 'TIMEOUT'
  | 'DEADLINE_EXCEEDED'
  | 'UNEXPECTED_RESPONSE'
  // Keeps the union open (future server codes) without losing autocompletion of the known ones.
  | (string & {});

export interface HandoffApiErrorInit {
  status: number;
  errorCode: HandoffErrorCode;
  message: string;
  retryAfter?: number | undefined;
  details?: Record<string, unknown>;
  cause?: unknown;
}

/**
 * Every failure of the SDK: a server error entry (`{"errors":[{"errorCode":...}]}`) or a client-side
 * one. Branch on `errorCode`, which is stable; `message` is for humans.
 *
 * @example
 * try {
 *   await client.reserveRoutableNumber({ countryCode: 'US', fromNumber, toNumber, scrt2Domain });
 * } catch (err) {
 *   if (isHandoffApiError(err) && err.errorCode === 'LEASE_NOT_LIVE') {
 *     console.log('already used:', err.details.handle);
 *   } else throw err;
 * }
 */
export class HandoffApiError extends Error {
  override readonly name = 'HandoffApiError';
  /** HTTP status of the answer; 0 when there was none (the SDK's own codes). */
  readonly status: number;
  readonly errorCode: HandoffErrorCode;
  /** Seconds to wait before retrying, from the `Retry-After` header (429, 503). */
  readonly retryAfter: number | undefined;
  /** The rest of the error entry, e.g. `field`, `supportedCountries`, or the original `handle` of a 409. */
  readonly details: Readonly<Record<string, unknown>>;

  constructor(init: HandoffApiErrorInit) {
    super(init.message, init.cause === undefined ? undefined : { cause: init.cause });
    this.status = init.status;
    this.errorCode = init.errorCode;
    this.retryAfter = init.retryAfter;
    this.details = init.details ?? {};
  }
}

/**
 * Narrows an unknown caught value to a {@link HandoffApiError}.
 *
 * @example
 * catch (err) { if (isHandoffApiError(err) && err.status === 401) refreshKeys(); }
 */
export function isHandoffApiError(value: unknown): value is HandoffApiError {
  return value instanceof HandoffApiError;
}
