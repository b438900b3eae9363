-- The leases table again, for the reservation path's write cost (chosen for speed):
-- * no index on uid: it is random, so every reservation dirtied one more page of it, and nothing
--   needs it (the idempotency record joins its lease through the pair; expiry scans and sweeps find
--   rows by expiry). Uids stay unique by construction (64 random bits per number and second).
-- * leases_pair_hold replaces leases_pair: a pair's leases ordered by hold rather than expiry. The
--   hold is what a reservation checks (on SQLite the pair's hold is read from its leases: no
--   pair_holds row is written there) and orders a pair's leases (holds never overlap; expiry can
--   misorder them when a lease consumed early is followed by one with a shorter TTL).
CREATE TABLE leases_rebuilt (
  uid TEXT NOT NULL,
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
  hold_until BIGINT NOT NULL,
  expiry_notified_at BIGINT
);
INSERT INTO leases_rebuilt (uid, org_id, country, routable_number, from_number, to_number, call_id, transaction_id, provider,
  created_at, expires_at, consumed_at, hold_until, expiry_notified_at)
SELECT uid, org_id, country, routable_number, from_number, to_number, call_id, transaction_id, provider,
  created_at, expires_at, consumed_at, hold_until, expiry_notified_at
FROM leases;
DROP TABLE leases;
ALTER TABLE leases_rebuilt RENAME TO leases;
CREATE INDEX leases_pair_hold ON leases(routable_number, from_number, hold_until);
CREATE INDEX leases_number_live ON leases(routable_number, consumed_at, expires_at);
CREATE INDEX leases_org_live ON leases(org_id, consumed_at, expires_at);
CREATE INDEX leases_expiry ON leases(expires_at);
CREATE INDEX leases_expiry_unnotified ON leases(expires_at) WHERE consumed_at IS NULL AND expiry_notified_at IS NULL;
