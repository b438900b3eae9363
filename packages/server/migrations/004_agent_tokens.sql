-- Agent runtimes authenticate with their own bearer secret (escalation); only its SHA-256 is kept.
ALTER TABLE agents ADD COLUMN token_hash TEXT;
CREATE UNIQUE INDEX agents_token_hash ON agents(token_hash);
