import { setTimeout as sleep } from 'node:timers/promises';
import { HandoffApiError, isHandoffApiError } from './errors.js';

const BASE_DELAY_MS = 250;
const MAX_DELAY_MS = 4000;

/**
 * Worth another attempt: no answer (network error, timeout), or a server that is overloaded or
 * failing (429, 5xx). Any other 4xx would fail the same way again.
 */
export function isRetryable(err: HandoffApiError): boolean {
  return err.errorCode === 'NETWORK_ERROR' || err.errorCode === 'TIMEOUT' || err.status === 429 || err.status >= 500;
}

/**
 * Exponential back-off with "equal jitter" (half fixed, half random): clients that failed together
 * spread out, and no retry collapses to an immediate one.
 *
 * @example
 * backoffMs(1); // 125–250
 * backoffMs(3); // 500–1000
 */
export function backoffMs(attempt: number, random: () => number = Math.random): number {
  const ceiling = Math.min(MAX_DELAY_MS, BASE_DELAY_MS * 2 ** (attempt - 1));
  return ceiling / 2 + random() * (ceiling / 2);
}

export interface RetryOptions {
  /** Total time allowed for every attempt and wait, in ms. */
  deadlineMs: number;
  /** Names the operation in the DEADLINE_EXCEEDED message. */
  operation: string;
  /** Added to the DEADLINE_EXCEEDED details (e.g. the transactionId to retry with later). */
  details: Record<string, unknown>;
}

/**
 * Runs `attempt` (given the time left, to cap its own timeout) until it succeeds, fails for good, or
 * the deadline leaves no room: waits honour `retryAfter`, else {@link backoffMs}, and a wait that
 * would end past the deadline is not started; DEADLINE_EXCEEDED is thrown instead, its `cause` the
 * last failure.
 */
export async function withRetries<T>(attempt: (remainingMs: number) => Promise<T>, options: RetryOptions): Promise<T> {
  const started = Date.now();
  const deadline = started + options.deadlineMs;
  for (let n = 1; ; n++) {
    try {
      return await attempt(Math.max(1, deadline - Date.now()));
    } catch (err) {
      if (!isHandoffApiError(err) || !isRetryable(err)) throw err;
      const waitMs = err.retryAfter !== undefined ? err.retryAfter * 1000 : backoffMs(n);
      if (Date.now() + waitMs >= deadline) {
        throw new HandoffApiError({
          status: 0,
          errorCode: 'DEADLINE_EXCEEDED',
          message: `${options.operation} gave up after ${n} attempt(s) in ${Date.now() - started} ms: ${err.errorCode}: ${err.message}`,
          retryAfter: err.retryAfter,
          details: { ...options.details, attempts: n, lastErrorCode: err.errorCode, lastStatus: err.status },
          cause: err,
        });
      }
      await sleep(waitMs);
    }
  }
}
