-- Number-pool leases (SPEC §5). Same conventions as 001: epoch-ms BIGINT, TEXT, portable SQL.
-- No foreign keys on purpose: lease history must outlive a removed pool number, and an FK probe on
-- every reservation buys nothing (the service only writes numbers it just read).

-- One row per reservation. "Live" = consumed_at IS NULL AND expires_at > now, decided on every read.
-- hold_until is when the (routable_number, from_number) pair becomes free again: expires_at + cool-down,
-- or consumed_at + cool-down once consumed.
CREATE TABLE leases (
  uid TEXT PRIMARY KEY,
  org_id TEXT NOT NULL,
  country TEXT NOT NULL,
  routable_number TEXT NOT NULL,
  from_number TEXT NOT NULL,
  to_number TEXT NOT NULL,
  call_id TEXT,
  transaction_id TEXT,
  provider TEXT,
  created_at BIGINT NOT NULL,
  expires_at BIGINT NOT NULL,
  consumed_at BIGINT,
  hold_until BIGINT NOT NULL
);
-- Resolve (live lease of a pair) and "latest lease of a pair" (a pair's leases never overlap, so the
-- latest expiry is the latest lease).
CREATE INDEX leases_pair ON leases(routable_number, from_number, expires_at);
-- Live leases per number and per org are index range scans: consumed_at IS NULL is an equality prefix.
CREATE INDEX leases_number_live ON leases(routable_number, consumed_at, expires_at);
CREATE INDEX leases_org_live ON leases(org_id, consumed_at, expires_at);
-- Sweeping, listing and counting all live leases without a table scan.
CREATE INDEX leases_expiry ON leases(expires_at);

-- The single row per (number, caller) pair that makes "held by at most one live lease, across all
-- orgs, at any instant" atomic: a reservation claims it with an upsert that only overwrites a row whose
-- hold_until has passed.
CREATE TABLE pair_holds (
  routable_number TEXT NOT NULL,
  from_number TEXT NOT NULL,
  lease_uid TEXT NOT NULL,
  hold_until BIGINT NOT NULL,
  PRIMARY KEY (routable_number, from_number)
);
CREATE INDEX pair_holds_expiry ON pair_holds(hold_until);

-- transactionId / Idempotency-Key per org. The handle (uid, number, expiry) is copied here so a 409
-- can still carry it after the lease row itself has been swept.
CREATE TABLE idempotency_keys (
  org_id TEXT NOT NULL,
  key TEXT NOT NULL,
  request_hash TEXT NOT NULL,
  lease_uid TEXT,
  routable_number TEXT,
  lease_expires_at BIGINT,
  created_at BIGINT NOT NULL,
  expires_at BIGINT NOT NULL,
  PRIMARY KEY (org_id, key)
);
CREATE INDEX idempotency_keys_expiry ON idempotency_keys(expires_at);

-- Allocation walks a pool's active numbers least recently used first; with this index that walk stops
-- after a few dozen entries whatever the pool size.
CREATE INDEX pool_numbers_lru ON pool_numbers(country, state, last_leased_at, number);
