import { HandoffApiError } from './errors.js';

export type FetchFunction = typeof fetch;

export interface HttpRequest {
  method: 'GET' | 'POST' | 'PATCH';
  url: string;
  headers: Record<string, string>;
  body?: string | undefined;
}

export interface HttpResponse {
  status: number;
  body: Record<string, unknown>;
}

/**
 * One attempt: sends the request and reads the whole answer within `timeoutMs`. Anything but a 2xx
 * JSON object becomes a {@link HandoffApiError}: the server's error entry, or a client-side code.
 */
export async function sendOnce(fetchFn: FetchFunction, request: HttpRequest, timeoutMs: number): Promise<HttpResponse> {
  const what = `${request.method} ${new URL(request.url).pathname}`;
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), timeoutMs);
  let status: number;
  let retryAfterHeader: string | null;
  let text: string;
  try {
    const response = await fetchFn(request.url, { method: request.method, headers: request.headers, body: request.body, signal: controller.signal });
    status = response.status;
    retryAfterHeader = response.headers.get('retry-after');
    // Still under the timer: an answer that stalls mid-body is a timeout too.
    text = await response.text();
  } catch (err) {
    if (controller.signal.aborted) {
      throw new HandoffApiError({ status: 0, errorCode: 'TIMEOUT', message: `${what}: no complete response within ${timeoutMs} ms`, cause: err });
    }
    throw new HandoffApiError({ status: 0, errorCode: 'NETWORK_ERROR', message: `${what}: ${describeFailure(err)}`, cause: err });
  } finally {
    clearTimeout(timer);
  }

  const parsed = parseJson(text);
  if (status >= 200 && status < 300) {
    if (isObject(parsed)) return { status, body: parsed };
    throw new HandoffApiError({ status, errorCode: 'UNEXPECTED_RESPONSE', message: `${what}: HTTP ${status} without a JSON object body`, details: { body: text.slice(0, 500) } });
  }
  const retryAfter = retryAfterHeader !== null && /^\s*\d+\s*$/.test(retryAfterHeader) ? Number(retryAfterHeader) : undefined;
  const entry = isObject(parsed) && Array.isArray(parsed.errors) ? parsed.errors[0] : undefined;
  if (isObject(entry) && typeof entry.errorCode === 'string') {
    const { errorCode, message, ...details } = entry;
    throw new HandoffApiError({ status, errorCode, message: typeof message === 'string' ? message : errorCode, retryAfter, details });
  }
  throw new HandoffApiError({
    status,
    errorCode: 'UNEXPECTED_RESPONSE',
    message: `${what}: HTTP ${status} without a Handoff error body`,
    retryAfter,
    details: { body: text.slice(0, 500) },
  });
}

/** A string field of a success body, or UNEXPECTED_RESPONSE: callers rely on these being there. */
export function stringField(response: HttpResponse, path: string, value: unknown): string {
  if (typeof value === 'string') return value;
  throw new HandoffApiError({ status: response.status, errorCode: 'UNEXPECTED_RESPONSE', message: `The answer has no string ${path}`, details: { body: response.body } });
}

export function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/** fetch reports "fetch failed"; the useful part (ECONNREFUSED, "other side closed"...) is its cause. */
function describeFailure(err: unknown): string {
  const message = err instanceof Error ? err.message : String(err);
  const cause = err instanceof Error ? (err.cause as { code?: unknown; message?: unknown } | undefined) : undefined;
  const detail = typeof cause?.code === 'string' ? cause.code : typeof cause?.message === 'string' ? cause.message : undefined;
  return detail === undefined ? message : `${message} (${detail})`;
}
