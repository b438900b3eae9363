import assert from 'node:assert/strict';
import { isHandoffApiError, type HandoffApiError } from '../../src/index.js';

/** Asserts that `promise` rejects with a HandoffApiError of this status and errorCode, and returns it. */
export async function rejectsWith(promise: Promise<unknown>, status: number, errorCode: string): Promise<HandoffApiError> {
  const err = await promise.then(
    () => assert.fail(`expected ${errorCode}, got a success`),
    (e: unknown) => e,
  );
  assert.ok(isHandoffApiError(err), `a HandoffApiError, got ${String(err)}`);
  assert.equal(err.errorCode, errorCode, err.message);
  assert.equal(err.status, status);
  return err;
}
