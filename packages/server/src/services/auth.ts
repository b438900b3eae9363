import type { Clock } from '../domain/clock.js';
import { HandoffError } from '../domain/errors.js';
import { TokenVerifier, type VerifiedToken } from '../domain/token.js';
import type { Store } from '../store/store.js';
import type { ReferenceCache } from './reference-cache.js';

export interface AuthOptions {
  acceptedAudiences?: string[];
}

/**
 * Partner authentication: the domain TokenVerifier wired to the store (keys, subjects, jti replay
 * store), plus a per-org requests-per-second limit. Used by HTTP and by SIP (UUI tokens).
 */
export class AuthService {
  readonly verifier: TokenVerifier;
  private readonly buckets = new Map<string, { tokens: number; at: number }>();

  constructor(
    store: Store,
    private readonly clock: Clock,
    private readonly refs: ReferenceCache,
    opts: AuthOptions = {},
  ) {
    this.verifier = new TokenVerifier({
      clock,
      acceptedAudiences: opts.acceptedAudiences ?? [],
      // Key revocations made by the CLI or another instance take effect within this.
      maxCacheAgeSeconds: 30,
      loadKeys: async (orgId) => {
        const keys = await store.listKeys(orgId);
        return keys.map((k) => ({ id: k.id, orgId: k.orgId, kid: k.kid, pem: k.pem, expiresAt: k.expiresAt, revoked: k.revokedAt !== null }));
      },
      subjectExists: async (orgId, sub) =>
        (await store.getCallCenter(orgId, sub)) !== null || (await store.getChannel(orgId, sub)) !== null,
      claimJti: (orgId, jti, expMs) => store.claimJti(orgId, jti, expMs, clock.now()),
    });
  }

  /** Verifies a bare JWT; rejects with INVALID_TOKEN. */
  verify(token: string): Promise<VerifiedToken> {
    return this.verifier.verify(token);
  }

  /**
   * Verifies an `Authorization` header value (`Bearer <jwt>`).
   * Throws INVALID_TOKEN with reason `missing` when there is no bearer credential.
   */
  async authenticate(header: string | undefined): Promise<VerifiedToken> {
    const m = header === undefined ? null : /^Bearer[ ]+([^\s]+)\s*$/i.exec(header);
    if (!m?.[1]) throw new HandoffError('INVALID_TOKEN', 'A bearer token is required', { details: { reason: 'missing' } });
    return this.verify(m[1]);
  }

  /**
   * Per-org token bucket of `requestsPerSecond` (burst of one second's worth), per instance.
   * Throws RATE_LIMITED with Retry-After when the org is over its rate.
   */
  async checkRate(orgId: string): Promise<void> {
    const org = await this.refs.org(orgId);
    const rps = org?.quotas.requestsPerSecond ?? null;
    if (rps === null) return;
    const now = this.clock.now();
    const b = this.buckets.get(orgId) ?? { tokens: rps, at: now };
    b.tokens = Math.min(rps, b.tokens + ((now - b.at) / 1000) * rps);
    b.at = now;
    this.buckets.set(orgId, b);
    if (b.tokens < 1) {
      throw new HandoffError('RATE_LIMITED', `This org is limited to ${rps} requests per second`, {
        retryAfter: Math.max(1, Math.ceil((1 - b.tokens) / rps)),
      });
    }
    b.tokens -= 1;
  }

  /** Drops cached verifications of an org after its keys or subjects changed. */
  invalidateOrg(orgId: string): void {
    this.verifier.invalidateOrg(orgId);
  }
}
