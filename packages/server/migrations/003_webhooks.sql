-- Webhooks (SPEC §7): subscriptions per org and the durable outbox they are delivered from.
-- Same conventions as 001/002: epoch-ms BIGINT, TEXT, portable SQL.

-- One row per (org, subscription). events is a JSON array of event types; ["*"] means every type,
-- including types added later. The secret is stored as given: it is needed to sign every delivery.
CREATE TABLE webhook_subscriptions (
  org_id TEXT NOT NULL REFERENCES orgs(id),
  id TEXT NOT NULL,
  url TEXT NOT NULL,
  secret TEXT NOT NULL,
  events TEXT NOT NULL,
  created_at BIGINT NOT NULL,
  updated_at BIGINT NOT NULL,
  PRIMARY KEY (org_id, id)
);

-- The outbox: one row per (event, matching subscription), written in the transaction of the state
-- change it reports. payload is the exact body sent on every attempt. seq orders emissions (a later
-- transaction always gets a larger seq than the ones it saw committed); deliveries of one
-- (subscription, voice call) are attempted in (seq, event_id) order. locked_until/locked_by is the
-- claim of the instance attempting the row. No foreign key to the subscription: deleting one keeps
-- the history of its deliveries.
CREATE TABLE webhook_deliveries (
  event_id TEXT NOT NULL,
  subscription_id TEXT NOT NULL,
  org_id TEXT NOT NULL,
  seq BIGINT NOT NULL,
  event_type TEXT NOT NULL,
  voice_call_id TEXT,
  payload TEXT NOT NULL,
  status TEXT NOT NULL,
  attempts INTEGER NOT NULL,
  next_attempt_at BIGINT NOT NULL,
  locked_until BIGINT,
  locked_by TEXT,
  last_status_code INTEGER,
  last_error TEXT,
  created_at BIGINT NOT NULL,
  updated_at BIGINT NOT NULL,
  completed_at BIGINT,
  PRIMARY KEY (event_id, subscription_id)
);
-- Emission takes max(seq) + 1; the admin listing walks seq backwards.
CREATE INDEX webhook_deliveries_seq ON webhook_deliveries(seq);
-- The dispatcher's scans only ever look at pending rows: due ones, and earlier ones of the same call.
CREATE INDEX webhook_deliveries_due ON webhook_deliveries(next_attempt_at) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_call ON webhook_deliveries(org_id, subscription_id, voice_call_id, seq) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_org ON webhook_deliveries(org_id, status, seq);

-- lease.expired is emitted once per lease that expired unconsumed: the scan marks the lease here in
-- the transaction that writes the event.
ALTER TABLE leases ADD COLUMN expiry_notified_at BIGINT;
CREATE INDEX leases_expiry_unnotified ON leases(expires_at) WHERE consumed_at IS NULL AND expiry_notified_at IS NULL;
