-- leases_number_live also holds the country, so the pool statistics (live leases and busy numbers per
-- country, read at each /metrics scrape) are counted from this index alone, without reading each live
-- lease's row.
DROP INDEX leases_number_live;
CREATE INDEX leases_number_live ON leases(routable_number, consumed_at, expires_at, country);
