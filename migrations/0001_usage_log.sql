-- One row per counted MCP call, written after the response (never on its critical path).
CREATE TABLE IF NOT EXISTS tool_call_logs (
  request_id    TEXT PRIMARY KEY,
  principal     TEXT NOT NULL,          -- "anon:<bucket>", "account:<id>"
  principal_kind TEXT NOT NULL,         -- anonymous | api_key | oauth
  method        TEXT NOT NULL,          -- tools/call, ...
  tool          TEXT,                   -- tool name for tools/call
  input_bytes   INTEGER NOT NULL,
  output_bytes  INTEGER NOT NULL,
  duration_ms   INTEGER NOT NULL,
  status        TEXT NOT NULL CHECK (status IN ('success', 'error', 'rate_limited', 'unauthorized')),
  error         TEXT,
  created_at    INTEGER NOT NULL        -- unix milliseconds
);
CREATE INDEX IF NOT EXISTS tool_call_logs_principal_time ON tool_call_logs (principal, created_at);
