-- OAuth clients: registered ones (Dynamic Client Registration) and cached Client ID
-- Metadata Documents (fetched_at set). Codes and refresh tokens live in the account's
-- Durable Object, hashed.
CREATE TABLE IF NOT EXISTS oauth_clients (
  client_id      TEXT PRIMARY KEY,         -- mcpc_<hex>, or the document's https URL
  client_name    TEXT NOT NULL,
  redirect_uris  TEXT NOT NULL,            -- JSON array
  created_at     INTEGER NOT NULL,         -- unix milliseconds
  fetched_at     INTEGER                   -- metadata documents: when fetched
);
