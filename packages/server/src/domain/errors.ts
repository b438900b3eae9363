/**
 * Every stable error code Handoff emits, with the HTTP status and the SIP status it maps to.
 * Codes are part of the wire contract: partners branch on them, so never rename one.
 *
 * @example
 * throw new HandoffError('VOICE_CALL_NOT_FOUND', 'No VoiceCall 0LQ... for this org');
 */
export const ERROR_CODES = {
  INVALID_REQUEST: { http: 400, sip: 400 },
  INVALID_FIELD: { http: 400, sip: 400 },
  MISSING_FIELD: { http: 400, sip: 400 },
  UNSUPPORTED_COUNTRY: { http: 400, sip: 400 },
  INVALID_UUI: { http: 400, sip: 400 },
  INVALID_TOKEN: { http: 401, sip: 403 },
  FEATURE_NOT_ENABLED: { http: 403, sip: 403 },
  FORBIDDEN: { http: 403, sip: 403 },
  NOT_FOUND: { http: 404, sip: 404 },
  ORG_NOT_FOUND: { http: 404, sip: 404 },
  VOICE_CALL_NOT_FOUND: { http: 404, sip: 404 },
  CHANNEL_NOT_FOUND: { http: 404, sip: 404 },
  LEASE_NOT_FOUND: { http: 404, sip: 404 },
  METHOD_NOT_ALLOWED: { http: 405, sip: 405 },
  NOT_ACCEPTABLE: { http: 406, sip: 406 },
  CONFLICT: { http: 409, sip: 409 },
  LEASE_NOT_LIVE: { http: 409, sip: 404 },
  PAYLOAD_TOO_LARGE: { http: 413, sip: 513 },
  UNSUPPORTED_MEDIA_TYPE: { http: 415, sip: 415 },
  IDEMPOTENCY_MISMATCH: { http: 422, sip: 400 },
  QUOTA_EXCEEDED: { http: 429, sip: 503 },
  RATE_LIMITED: { http: 429, sip: 503 },
  INTERNAL_ERROR: { http: 500, sip: 500 },
  POOL_EXHAUSTED: { http: 503, sip: 503 },
  NOT_READY: { http: 503, sip: 503 },
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;

export interface HandoffErrorOptions {
  /** Seconds a client should wait before retrying (429/503). */
  retryAfter?: number;
  /** Extra machine-readable fields merged into the error entry (e.g. the original lease handle). */
  details?: Record<string, unknown>;
  cause?: unknown;
}

/** The one error base class: a stable code, a human message safe to show the caller. */
export class HandoffError extends Error {
  readonly code: ErrorCode;
  readonly retryAfter: number | undefined;
  readonly details: Record<string, unknown> | undefined;

  constructor(code: ErrorCode, message: string, options: HandoffErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'HandoffError';
    this.code = code;
    this.retryAfter = options.retryAfter;
    this.details = options.details;
  }

  get httpStatus(): number {
    return ERROR_CODES[this.code].http;
  }

  get sipStatus(): number {
    return ERROR_CODES[this.code].sip;
  }
}

export function isHandoffError(e: unknown): e is HandoffError {
  return e instanceof HandoffError;
}
