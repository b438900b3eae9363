import { ConfigError, expandPoolNumbers, type Provisioning } from '../config.js';
import { isHandoffError } from '../domain/errors.js';
import { normalizeDomain } from '../domain/org-domain.js';
import { describeKey } from '../domain/token.js';
import type { Store } from '../store/store.js';
import { WebhookStore } from '../store/webhook-store.js';
import { hashSecret } from './operator-auth.js';

export interface ProvisioningResult {
  /** How many records were created or changed; 0 when the file matched the database already. */
  changed: number;
  /** Orgs whose keys, call centers or channels changed (their cached token checks must go). */
  touchedOrgs: string[];
}

/**
 * Applies a validated provisioning document in one transaction. Idempotent: applying the same
 * document twice changes nothing the second time. Records absent from the document are left as
 * they are (the admin API may have added them).
 */
export async function applyProvisioning(store: Store, p: Provisioning, now: number): Promise<ProvisioningResult> {
  return store.transaction(async (tx) => {
    let changed = 0;
    const touched = new Set<string>();
    const count = (wrote: boolean | number, orgId?: string) => {
      const n = typeof wrote === 'number' ? wrote : wrote ? 1 : 0;
      changed += n;
      if (n > 0 && orgId) touched.add(orgId);
    };

    for (const [i, org] of (p.orgs ?? []).entries()) {
      const orgId = org.id.slice(0, 15);
      const domain = normalizeDomain(org.domain);
      if (domain === null) throw new ConfigError(`orgs.${i}.domain: "${org.domain}" is not a valid host name`);
      count(
        await tx.upsertOrg(
          {
            id: orgId,
            name: org.name,
            domain,
            features: { numberPool: org.features?.numberPool ?? false },
            quotas: { maxLiveLeases: org.quotas?.maxLiveLeases ?? null, requestsPerSecond: org.quotas?.requestsPerSecond ?? null },
          },
          now,
        ),
      );
      for (const [j, k] of (org.keys ?? []).entries()) {
        const pem = (k.publicKey ?? k.certificate ?? '').trim() + '\n';
        let desc;
        try {
          desc = describeKey(pem);
        } catch (e) {
          throw new ConfigError(`orgs.${i}.keys.${j}: ${isHandoffError(e) ? e.message : String(e)}`);
        }
        const expiresAt = k.expiresAt ? Date.parse(k.expiresAt) : desc.certificateExpiresAt;
        count(await tx.upsertKey({ id: k.id, orgId, kid: k.kid ?? null, alg: desc.alg, pem, expiresAt }, now), orgId);
      }
      for (const cc of org.callCenters ?? []) {
        count(await tx.upsertCallCenter({ orgId, apiName: cc.apiName, name: cc.name ?? cc.apiName }, now), orgId);
      }
      for (const f of org.flows ?? []) {
        count(await tx.upsertFlow({ orgId, name: f.name, definition: { rules: f.rules, fallback: f.fallback } }, now));
      }
      for (const [j, ch] of (org.channels ?? []).entries()) {
        const holder = await tx.getChannelByNumber(ch.number);
        if (holder && (holder.orgId !== orgId || holder.devName !== ch.devName)) {
          throw new ConfigError(`orgs.${i}.channels.${j}.number: ${ch.number} already belongs to channel ${holder.devName}`);
        }
        const pooled = await tx.getPoolNumber(ch.number);
        if (pooled) throw new ConfigError(`orgs.${i}.channels.${j}.number: ${ch.number} is a number of the ${pooled.country} pool; a channel number cannot be leased`);
        count(
          await tx.upsertChannel({ orgId, devName: ch.devName, number: ch.number, callCenterApiName: ch.callCenter ?? null, flowName: ch.flow ?? null }, now),
          orgId,
        );
      }
      for (const w of org.webhooks ?? []) {
        // validateProvisioning has inlined secretFile into secret.
        count(await WebhookStore.of(tx).upsertSubscription({ orgId, id: w.id, url: w.url, secret: w.secret!, events: w.events ?? ['*'] }, now));
      }
    }
    for (const a of p.agents ?? []) {
      count(
        await tx.upsertAgent(
          {
            name: a.name,
            orgId: a.org?.slice(0, 15) ?? null,
            sipUri: a.sipUri,
            webhookUrl: a.webhookUrl ?? null,
            maxConcurrentCalls: a.maxConcurrentCalls ?? 10,
            tokenHash: a.token === undefined ? null : hashSecret(a.token),
          },
          now,
        ),
      );
    }
    for (const [i, pool] of (p.pools ?? []).entries()) {
      const numbers = expandPoolNumbers(pool);
      const clash = await tx.channelAmong(numbers);
      if (clash) throw new ConfigError(`pools.${i}: ${clash.number} is the address of channel ${clash.devName}; a channel number cannot be leased`);
      count(await tx.ensurePool(pool.country, now));
      count(await tx.addPoolNumbers(pool.country, numbers, now));
    }
    return { changed, touchedOrgs: [...touched] };
  });
}
