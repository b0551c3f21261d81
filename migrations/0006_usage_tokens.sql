-- Calls to tools that call an upstream model: a call may be cancelled by the client while
-- it runs (status 'cancelled': not billed, not an error), and records the tokens it spent
-- and the provider that served it (NULL for every other tool and for the rows before).
-- SQLite cannot change a CHECK constraint in place, so the table is rebuilt: created
-- anew, every row copied, the old table dropped (with its index), the new one renamed
-- and the index made again. https://www.sqlite.org/lang_altertable.html#otheralter
CREATE TABLE tool_call_logs_0006 (
  request_id    TEXT PRIMARY KEY,
  principal     TEXT NOT NULL,          -- "anon:<bucket>", "acct:<id>"
  principal_kind TEXT NOT NULL,         -- anonymous | api_key | oauth
  method        TEXT NOT NULL,          -- tools/call, ...
  tool          TEXT,                   -- tool name for tools/call
  input_bytes   INTEGER NOT NULL,
  output_bytes  INTEGER NOT NULL,
  duration_ms   INTEGER NOT NULL,
  status        TEXT NOT NULL CHECK (status IN ('success', 'error', 'rate_limited', 'unauthorized', 'cancelled')),
  error         TEXT,
  created_at    INTEGER NOT NULL,       -- unix milliseconds
  input_tokens  INTEGER,                -- upstream model tokens sent, when the tool calls one
  output_tokens INTEGER,                -- upstream model tokens received
  provider      TEXT                    -- the upstream provider's configured name
);
INSERT INTO tool_call_logs_0006 (request_id, principal, principal_kind, method, tool,
  input_bytes, output_bytes, duration_ms, status, error, created_at)
SELECT request_id, principal, principal_kind, method, tool,
  input_bytes, output_bytes, duration_ms, status, error, created_at
FROM tool_call_logs;
DROP TABLE tool_call_logs;
ALTER TABLE tool_call_logs_0006 RENAME TO tool_call_logs;
CREATE INDEX IF NOT EXISTS tool_call_logs_principal_time ON tool_call_logs (principal, created_at);
