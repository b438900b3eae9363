/** Kysely table types; they mirror migrations/*.sql (snake_case, epoch-ms BIGINTs, JSON as TEXT). */

export interface OrgsTable {
  id: string;
  name: string;
  domain: string;
  features: string;
  max_live_leases: number | null;
  requests_per_second: number | null;
  created_at: number;
  updated_at: number;
}

export interface OrgKeysTable {
  id: string;
  org_id: string;
  kid: string | null;
  alg: string;
  pem: string;
  expires_at: number | null;
  revoked_at: number | null;
  created_at: number;
}

export interface CallCentersTable {
  org_id: string;
  api_name: string;
  name: string;
  created_at: number;
}

export interface FlowsTable {
  org_id: string;
  name: string;
  definition: string;
  updated_at: number;
}

export interface ChannelsTable {
  org_id: string;
  dev_name: string;
  number: string;
  call_center_api_name: string | null;
  flow_name: string | null;
  created_at: number;
  updated_at: number;
}

export interface AgentsTable {
  name: string;
  org_id: string | null;
  sip_uri: string;
  webhook_url: string | null;
  max_concurrent_calls: number;
  token_hash: string | null;
  created_at: number;
  updated_at: number;
}

export interface PoolsTable {
  country: string;
  created_at: number;
}

export interface PoolNumbersTable {
  number: string;
  country: string;
  state: string;
  last_leased_at: number;
  created_at: number;
}

export interface VoiceCallsTable {
  id: string;
  org_id: string;
  vendor_call_key: string | null;
  call_center_api_name: string | null;
  to_number: string | null;
  from_number: string | null;
  initiation_method: string;
  parent_voice_call_id: string | null;
  start_time: string | null;
  end_time: string | null;
  is_active_call: number | null;
  disconnect_reason: string | null;
  call_attributes: string | null;
  call_origin: string | null;
  queue: string | null;
  call_subtype: string | null;
  participants: string | null;
  telephony_provider_name: string | null;
  status: string | null;
  handoff: string | null;
  escalation: string | null;
  created_at: number;
  updated_at: number;
}

export interface UsedJtisTable {
  org_id: string;
  jti: string;
  expires_at: number;
}

export interface MigrationsTable {
  version: string;
  applied_at: number;
}

export interface Database {
  orgs: OrgsTable;
  org_keys: OrgKeysTable;
  call_centers: CallCentersTable;
  flows: FlowsTable;
  channels: ChannelsTable;
  agents: AgentsTable;
  pools: PoolsTable;
  pool_numbers: PoolNumbersTable;
  voice_calls: VoiceCallsTable;
  used_jtis: UsedJtisTable;
  handoff_migrations: MigrationsTable;
}
