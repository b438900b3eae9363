-- Foundation schema. Portable between SQLite and PostgreSQL: times are epoch milliseconds (BIGINT),
-- booleans are SMALLINT 0/1 and JSON documents are TEXT, so one file serves both dialects.

CREATE TABLE orgs (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  domain TEXT NOT NULL UNIQUE,
  features TEXT NOT NULL,
  max_live_leases INTEGER,
  requests_per_second INTEGER,
  created_at BIGINT NOT NULL,
  updated_at BIGINT NOT NULL
);

CREATE TABLE org_keys (
  id TEXT PRIMARY KEY,
  org_id TEXT NOT NULL REFERENCES orgs(id),
  kid TEXT,
  alg TEXT NOT NULL,
  pem TEXT NOT NULL,
  expires_at BIGINT,
  revoked_at BIGINT,
  created_at BIGINT NOT NULL
);
CREATE INDEX org_keys_org ON org_keys(org_id);

CREATE TABLE call_centers (
  org_id TEXT NOT NULL REFERENCES orgs(id),
  api_name TEXT NOT NULL,
  name TEXT NOT NULL,
  created_at BIGINT NOT NULL,
  PRIMARY KEY (org_id, api_name)
);

CREATE TABLE flows (
  org_id TEXT NOT NULL REFERENCES orgs(id),
  name TEXT NOT NULL,
  definition TEXT NOT NULL,
  updated_at BIGINT NOT NULL,
  PRIMARY KEY (org_id, name)
);

CREATE TABLE channels (
  org_id TEXT NOT NULL REFERENCES orgs(id),
  dev_name TEXT NOT NULL,
  number TEXT NOT NULL UNIQUE,
  call_center_api_name TEXT,
  flow_name TEXT,
  created_at BIGINT NOT NULL,
  updated_at BIGINT NOT NULL,
  PRIMARY KEY (org_id, dev_name)
);

CREATE TABLE agents (
  name TEXT PRIMARY KEY,
  org_id TEXT REFERENCES orgs(id),
  sip_uri TEXT NOT NULL,
  webhook_url TEXT,
  max_concurrent_calls INTEGER NOT NULL,
  created_at BIGINT NOT NULL,
  updated_at BIGINT NOT NULL
);

CREATE TABLE pools (
  country TEXT PRIMARY KEY,
  created_at BIGINT NOT NULL
);

CREATE TABLE pool_numbers (
  number TEXT PRIMARY KEY,
  country TEXT NOT NULL REFERENCES pools(country),
  state TEXT NOT NULL,
  last_leased_at BIGINT NOT NULL,
  created_at BIGINT NOT NULL
);
CREATE INDEX pool_numbers_country ON pool_numbers(country, state);

CREATE TABLE voice_calls (
  id TEXT PRIMARY KEY,
  org_id TEXT NOT NULL REFERENCES orgs(id),
  vendor_call_key TEXT,
  call_center_api_name TEXT,
  to_number TEXT,
  from_number TEXT,
  initiation_method TEXT NOT NULL,
  parent_voice_call_id TEXT,
  start_time TEXT,
  end_time TEXT,
  is_active_call SMALLINT,
  disconnect_reason TEXT,
  call_attributes TEXT,
  call_origin TEXT,
  queue TEXT,
  call_subtype TEXT,
  participants TEXT,
  telephony_provider_name TEXT,
  status TEXT,
  handoff TEXT,
  escalation TEXT,
  created_at BIGINT NOT NULL,
  updated_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX voice_calls_vendor_call_key ON voice_calls(org_id, vendor_call_key);
CREATE INDEX voice_calls_parent ON voice_calls(parent_voice_call_id);

CREATE TABLE used_jtis (
  org_id TEXT NOT NULL,
  jti TEXT NOT NULL,
  expires_at BIGINT NOT NULL,
  PRIMARY KEY (org_id, jti)
);
CREATE INDEX used_jtis_expiry ON used_jtis(expires_at);
