import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { HandoffError, isHandoffError, type ErrorCode } from '../domain/errors.js';
import { negotiateResponseFormat, RESPONSE_CONTENT_TYPE, toXml, type BodyFormat } from './body-codec.js';

declare module 'fastify' {
  interface FastifyRequest {
    /** Response format chosen from Accept and Content-Type; JSON until negotiated. */
    responseFormat: BodyFormat;
  }
}

/** Negotiates once per request; NOT_ACCEPTABLE itself is answered in JSON. */
export function negotiate(request: FastifyRequest): void {
  request.responseFormat = 'json';
  request.responseFormat = negotiateResponseFormat(request.headers['content-type'], request.headers.accept);
}

/** Sends `body` in the negotiated format (XML root element `<response>`). */
export function send(request: FastifyRequest, reply: FastifyReply, status: number, body: Record<string, unknown>): FastifyReply {
  reply.code(status);
  if (request.responseFormat === 'xml') {
    return reply.type(RESPONSE_CONTENT_TYPE.xml).send(toXml('response', body));
  }
  return reply.type(RESPONSE_CONTENT_TYPE.json).send(JSON.stringify(body));
}

export function errorBody(code: ErrorCode, message: string, details?: Record<string, unknown>): Record<string, unknown> {
  return { errors: [{ errorCode: code, message, ...(details ?? {}) }] };
}

/** Fields of error details that are safe and useful to show the caller (others go to logs only). */
const PUBLIC_DETAILS = new Set(['field', 'handle', 'supportedCountries', 'resolution']);

/** Maps Fastify's own errors (body parsing, validation, limits) to stable Handoff errors. */
export function toHandoffError(err: FastifyError | Error): HandoffError {
  if (isHandoffError(err)) return err;
  const fe = err as FastifyError & { validation?: { keyword: string; instancePath: string; message?: string; params?: Record<string, unknown> }[] };
  if (fe.validation && fe.validation.length > 0) {
    const v = fe.validation[0]!;
    const base = v.instancePath.replace(/^\//, '').replace(/\//g, '.');
    if (v.keyword === 'required') {
      const missing = String(v.params?.missingProperty ?? '');
      const field = base ? `${base}.${missing}` : missing;
      return new HandoffError('MISSING_FIELD', `${field}: is required`, { details: { field } });
    }
    const field = base || (fe.validationContext ?? 'body');
    return new HandoffError('INVALID_FIELD', `${field}: ${v.message ?? 'is invalid'}`, { details: { field } });
  }
  switch (fe.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return new HandoffError('PAYLOAD_TOO_LARGE', 'The request body is too large');
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
    case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH':
      return new HandoffError('UNSUPPORTED_MEDIA_TYPE', 'Content-Type must be application/json or application/xml');
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return new HandoffError('INVALID_REQUEST', 'The request body is empty');
    case 'FST_ERR_BAD_URL':
      return new HandoffError('INVALID_REQUEST', 'The URL is not valid (a malformed percent-encoding)');
    case 'FST_ERR_MAX_PARAM_LENGTH':
      return new HandoffError('INVALID_REQUEST', 'A path parameter of the URL is too long');
  }
  if (fe.statusCode === 400) return new HandoffError('INVALID_REQUEST', `The request body is not valid: ${fe.message}`);
  if (fe.statusCode === 413) return new HandoffError('PAYLOAD_TOO_LARGE', 'The request body is too large');
  if (fe.statusCode === 415) return new HandoffError('UNSUPPORTED_MEDIA_TYPE', 'Content-Type must be application/json or application/xml');
  return new HandoffError('INTERNAL_ERROR', 'Internal error', { cause: err });
}

export function sendError(request: FastifyRequest, reply: FastifyReply, err: FastifyError | Error): FastifyReply {
  const e = toHandoffError(err);
  if (e.code === 'INTERNAL_ERROR') request.log.error({ err }, 'request failed');
  else request.log.info({ errorCode: e.code, reason: e.details?.['reason'] }, e.message);
  if (e.retryAfter !== undefined) reply.header('retry-after', String(e.retryAfter));
  if (e.code === 'INVALID_TOKEN') {
    const missing = e.details?.['reason'] === 'missing';
    reply.header('www-authenticate', missing ? 'Bearer realm="handoff"' : `Bearer realm="handoff", error="invalid_token", error_description="${e.message.replace(/["\\]/g, '')}"`);
  }
  const details = Object.fromEntries(Object.entries(e.details ?? {}).filter(([k]) => PUBLIC_DETAILS.has(k)));
  return send(request, reply, e.httpStatus, errorBody(e.code, e.message, details));
}
