/** Kysely table types of migrations/002_leases.sql (leases as rebuilt by 005); use as `Kysely<Database & LeaseTables>`. */

export interface LeasesTable {
  uid: string;
  org_id: string;
  country: string;
  routable_number: string;
  from_number: string;
  to_number: string;
  call_id: string | null;
  transaction_id: string | null;
  provider: string | null;
  created_at: number;
  expires_at: number;
  consumed_at: number | null;
  hold_until: number;
}

export interface PairHoldsTable {
  routable_number: string;
  from_number: string;
  lease_uid: string;
  hold_until: number;
}

export interface IdempotencyKeysTable {
  org_id: string;
  key: string;
  request_hash: string;
  lease_uid: string | null;
  routable_number: string | null;
  lease_expires_at: number | null;
  created_at: number;
  expires_at: number;
}

export interface LeaseTables {
  leases: LeasesTable;
  pair_holds: PairHoldsTable;
  idempotency_keys: IdempotencyKeysTable;
}
