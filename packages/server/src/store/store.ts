import type {
  Agent,
  CallCenter,
  Channel,
  Flow,
  Org,
  OrgKey,
  PoolNumber,
  PoolNumberState,
  PoolSummary,
  VoiceCall,
  VoiceCallPatch,
} from './types.js';

export type Dialect = 'sqlite' | 'postgres';

export type OrgInput = Omit<Org, 'createdAt' | 'updatedAt'>;
export type OrgKeyInput = Omit<OrgKey, 'createdAt' | 'revokedAt'>;
export type CallCenterInput = Omit<CallCenter, 'createdAt'>;
export type ChannelInput = Omit<Channel, 'createdAt' | 'updatedAt'>;
export type FlowInput = Omit<Flow, 'updatedAt'>;
export type AgentInput = Omit<Agent, 'createdAt' | 'updatedAt'>;
export type VoiceCallInput = Omit<VoiceCall, 'createdAt' | 'updatedAt'>;
export type PartnerCall = Pick<VoiceCall, 'id' | 'callAttributes' | 'telephonyProviderName'>;

/**
 * The one storage interface the services depend on. Upserts are no-ops when nothing differs (so
 * re-provisioning the same file changes nothing) and report whether they wrote.
 */
export interface Store {
  readonly dialect: Dialect;
  migrate(): Promise<string[]>;
  close(): Promise<void>;
  ping(): Promise<void>;
  /** Runs fn in one database transaction; fn gets a Store bound to it. Nested calls reuse it. */
  transaction<T>(fn: (tx: Store) => Promise<T>): Promise<T>;

  upsertOrg(org: OrgInput, now: number): Promise<boolean>;
  getOrg(id: string): Promise<Org | null>;
  listOrgs(): Promise<Org[]>;

  upsertKey(key: OrgKeyInput, now: number): Promise<boolean>;
  listKeys(orgId: string): Promise<OrgKey[]>;
  getKey(id: string): Promise<OrgKey | null>;
  revokeKey(id: string, now: number): Promise<boolean>;

  upsertCallCenter(cc: CallCenterInput, now: number): Promise<boolean>;
  getCallCenter(orgId: string, apiName: string): Promise<CallCenter | null>;
  listCallCenters(orgId: string): Promise<CallCenter[]>;

  upsertChannel(ch: ChannelInput, now: number): Promise<boolean>;
  getChannel(orgId: string, devName: string): Promise<Channel | null>;
  getChannelByNumber(number: string): Promise<Channel | null>;
  /** A channel whose number is one of `numbers` (any, when several are), or null. */
  channelAmong(numbers: readonly string[]): Promise<Channel | null>;
  listChannels(orgId: string): Promise<Channel[]>;

  upsertFlow(flow: FlowInput, now: number): Promise<boolean>;
  getFlow(orgId: string, name: string): Promise<Flow | null>;

  upsertAgent(agent: AgentInput, now: number): Promise<boolean>;
  getAgent(name: string): Promise<Agent | null>;
  getAgentByTokenHash(tokenHash: string): Promise<Agent | null>;
  listAgents(): Promise<Agent[]>;

  ensurePool(country: string, now: number): Promise<boolean>;
  /**
   * Adds numbers to a pool (created when missing); returns how many were new. Outside a transaction a
   * large list is committed in chunks: if one fails, the chunks before it stay (adding is idempotent:
   * the same call again adds the rest).
   */
  addPoolNumbers(country: string, numbers: string[], now: number): Promise<number>;
  setPoolNumberState(number: string, state: PoolNumberState): Promise<boolean>;
  getPoolNumber(number: string): Promise<PoolNumber | null>;
  /** Deletes a number from its pool; live leases on it still resolve (they live in their own table). */
  removePoolNumber(number: string): Promise<boolean>;
  listPools(): Promise<PoolSummary[]>;
  /** Countries that have a pool (cheap: no number counting). */
  listPoolCountries(): Promise<string[]>;

  /** Inserts a VoiceCall; when the org already has one with the same vendorCallKey, returns that instead. */
  insertVoiceCall(call: VoiceCallInput, now: number): Promise<{ created: boolean; call: VoiceCall }>;
  getVoiceCall(orgId: string, id: string): Promise<VoiceCall | null>;
  /** What a hand-off copies from the partner's VoiceCall (read on every transferred call: three columns, not the record). */
  getPartnerCall(orgId: string, id: string): Promise<PartnerCall | null>;
  /** By ID alone, for callers that are not an org (agent runtimes); IDs are unique across orgs. */
  getVoiceCallAnyOrg(id: string): Promise<VoiceCall | null>;
  getVoiceCallByVendorKey(orgId: string, vendorCallKey: string): Promise<VoiceCall | null>;
  updateVoiceCall(orgId: string, id: string, patch: VoiceCallPatch, now: number): Promise<VoiceCall | null>;
  /**
   * {@link updateVoiceCall} without reading the record back (the SIP hot path); false when there is no
   * such call. A `status` in the patch is not applied while the record's status is one of `keepStatus`
   * (an escalated call stays Escalated when its legs end).
   */
  patchVoiceCall(orgId: string, id: string, patch: VoiceCallPatch, now: number, keepStatus?: readonly string[]): Promise<boolean>;
  /** The calls whose parent is `parentId`, oldest first; with `limit`, only the newest `limit` of them. */
  listChildCalls(orgId: string, parentId: string, limit?: number): Promise<VoiceCall[]>;
  countChildCalls(orgId: string, parentId: string): Promise<number>;
  /** The most recently created calls, newest first, of one org or of all. */
  listRecentCalls(orgId: string | null, limit: number): Promise<VoiceCall[]>;

  /** Records a token's jti until expiresAt; false when it is already recorded and not yet expired. */
  claimJti(orgId: string, jti: string, expiresAt: number, now: number): Promise<boolean>;
  purgeExpiredJtis(now: number): Promise<number>;
}
