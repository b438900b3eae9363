import { createHash, timingSafeEqual } from 'node:crypto';
import { HandoffError } from '../domain/errors.js';

/** SHA-256 hex of a bearer secret, the form secrets are stored and looked up in. */
export function hashSecret(secret: string): string {
  return createHash('sha256').update(secret).digest('hex');
}

/** The bearer secret of an `Authorization: Bearer ...` header, or null. */
export function bearerSecret(header: string | undefined): string | null {
  const m = header === undefined ? null : /^Bearer[ ]+(\S+)\s*$/i.exec(header);
  return m?.[1] ?? null;
}

/**
 * The operator credential (admin API, HTTP resolver): one bearer secret, compared in constant time.
 * Partner JWTs never open operator endpoints, and the operator secret never opens partner ones.
 */
export class OperatorAuth {
  private readonly digest: Buffer;

  constructor(secret: string) {
    this.digest = createHash('sha256').update(secret).digest();
  }

  check(header: string | undefined): void {
    const secret = bearerSecret(header);
    if (secret === null) throw new HandoffError('INVALID_TOKEN', 'An operator bearer token is required', { details: { reason: 'missing' } });
    const given = createHash('sha256').update(secret).digest();
    if (!timingSafeEqual(given, this.digest)) throw new HandoffError('INVALID_TOKEN', 'The operator token is not valid', { details: { reason: 'bad_operator_token' } });
  }
}
