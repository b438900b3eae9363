import type { Clock } from '../domain/clock.js';
import type { Store } from '../store/store.js';
import type { Agent, Channel, Flow, Org } from '../store/types.js';

/**
 * Read-through cache of the reference data every partner request or SIP hand-off reads (orgs,
 * channels by number, pool countries, flows, agents), so the hot path does not pay a query for each. Entries live `ttlMs`; changes made
 * through this process invalidate at once, changes made by another instance are seen within `ttlMs`.
 * A ttlMs of 0 disables caching.
 */
export class ReferenceCache {
  private readonly orgs = new Map<string, { at: number; value: Org | null }>();
  private readonly channels = new Map<string, { at: number; value: Channel | null }>();
  private countries: { at: number; value: string[] } | null = null;
  private readonly flows = new Map<string, { at: number; value: Flow | null }>();
  private readonly agents = new Map<string, { at: number; value: Agent | null }>();

  constructor(
    private readonly store: Store,
    private readonly clock: Clock,
    private readonly ttlMs: number,
  ) {}

  private fresh(at: number): boolean {
    return this.ttlMs > 0 && this.clock.now() - at < this.ttlMs;
  }

  async org(id: string): Promise<Org | null> {
    const hit = this.orgs.get(id);
    if (hit && this.fresh(hit.at)) return hit.value;
    const value = await this.store.getOrg(id);
    if (this.ttlMs > 0) this.orgs.set(id, { at: this.clock.now(), value });
    return value;
  }

  async channelByNumber(number: string): Promise<Channel | null> {
    const hit = this.channels.get(number);
    if (hit && this.fresh(hit.at)) return hit.value;
    const value = await this.store.getChannelByNumber(number);
    if (this.ttlMs > 0) {
      // Bounded: unknown numbers are cached too (cheap refusals), so a scan cannot grow it forever.
      if (this.channels.size >= 10_000) this.channels.clear();
      this.channels.set(number, { at: this.clock.now(), value });
    }
    return value;
  }

  async poolCountries(): Promise<string[]> {
    if (this.countries && this.fresh(this.countries.at)) return this.countries.value;
    const value = await this.store.listPoolCountries();
    if (this.ttlMs > 0) this.countries = { at: this.clock.now(), value };
    return value;
  }

  async flow(orgId: string, name: string): Promise<Flow | null> {
    const key = `${orgId}/${name}`;
    const hit = this.flows.get(key);
    if (hit && this.fresh(hit.at)) return hit.value;
    const value = await this.store.getFlow(orgId, name);
    if (this.ttlMs > 0) {
      if (this.flows.size >= 10_000) this.flows.clear();
      this.flows.set(key, { at: this.clock.now(), value });
    }
    return value;
  }

  async agent(name: string): Promise<Agent | null> {
    const hit = this.agents.get(name);
    if (hit && this.fresh(hit.at)) return hit.value;
    const value = await this.store.getAgent(name);
    if (this.ttlMs > 0) {
      if (this.agents.size >= 10_000) this.agents.clear();
      this.agents.set(name, { at: this.clock.now(), value });
    }
    return value;
  }

  /** Forget everything (after provisioning or an admin change in this process). */
  clear(): void {
    this.orgs.clear();
    this.channels.clear();
    this.countries = null;
    this.flows.clear();
    this.agents.clear();
  }
}
