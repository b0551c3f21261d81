-- Accounts and their API keys. Only SHA-256 hashes of keys are stored.
CREATE TABLE IF NOT EXISTS accounts (
  id          TEXT PRIMARY KEY,            -- acct_<hex>
  plan        TEXT NOT NULL,
  created_at  INTEGER NOT NULL             -- unix milliseconds
);

CREATE TABLE IF NOT EXISTS api_keys (
  key_hash     TEXT PRIMARY KEY,           -- hex SHA-256 of the key
  account_id   TEXT NOT NULL REFERENCES accounts(id),
  label        TEXT NOT NULL DEFAULT '',
  plan         TEXT NOT NULL,
  scopes       TEXT NOT NULL,              -- space-separated
  created_at   INTEGER NOT NULL,
  last_used_at INTEGER,
  revoked_at   INTEGER,
  expires_at   INTEGER
);
CREATE INDEX IF NOT EXISTS api_keys_account ON api_keys (account_id, created_at);
