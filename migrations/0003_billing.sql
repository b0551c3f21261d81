-- Billing: accounts' Stripe customers, Checkout Sessions, subscription state and the
-- webhook events already processed.
ALTER TABLE accounts ADD COLUMN stripe_customer TEXT;
CREATE UNIQUE INDEX IF NOT EXISTS accounts_stripe_customer ON accounts (stripe_customer);

CREATE TABLE IF NOT EXISTS checkout_sessions (
  id            TEXT PRIMARY KEY,          -- cs_…
  plan          TEXT NOT NULL,
  reference     TEXT NOT NULL,             -- client_reference_id: the account it is for
  created_at    INTEGER NOT NULL,          -- unix milliseconds
  account_id    TEXT,
  key_hash      TEXT,                      -- hex SHA-256 of the key minted for it
  completed_at  INTEGER,
  claimed_at    INTEGER                    -- when the claim page showed the key
);

CREATE TABLE IF NOT EXISTS subscriptions (
  id           TEXT PRIMARY KEY,           -- sub_…
  account_id   TEXT NOT NULL,
  customer     TEXT NOT NULL,
  plan         TEXT NOT NULL,
  status       TEXT NOT NULL,
  grace_until  INTEGER,                    -- unix milliseconds (past due)
  state_at     INTEGER NOT NULL,           -- unix seconds of the event this state is from
  updated_at   INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS subscriptions_account ON subscriptions (account_id);

CREATE TABLE IF NOT EXISTS stripe_events (
  id          TEXT PRIMARY KEY,            -- evt_…
  type        TEXT NOT NULL,
  created     INTEGER NOT NULL,            -- the event's own time, unix seconds
  status      TEXT NOT NULL,               -- processing | done
  claimed_at  INTEGER NOT NULL,            -- unix milliseconds
  done_at     INTEGER
);
