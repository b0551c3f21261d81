-- Same-second Stripe events. A subscription's state is ordered by the event's `created`
-- second, then the rank of its status in Stripe's life cycle, then the event id
-- (billing::store::status_rank, SubscriptionState::order): a same-second cancellation is
-- never overwritten by an update, nor an activation by the creation's `incomplete`.
ALTER TABLE subscriptions ADD COLUMN state_rank INTEGER NOT NULL DEFAULT 2;
ALTER TABLE subscriptions ADD COLUMN state_event TEXT NOT NULL DEFAULT '';
-- Rows stored before: the rank of their status (the same rule as status_rank).
UPDATE subscriptions SET state_rank = CASE status
  WHEN 'incomplete' THEN 0
  WHEN 'trialing' THEN 1
  WHEN 'incomplete_expired' THEN 3
  WHEN 'canceled' THEN 4
  ELSE 2 END;

-- The version of each account's billing state: drawn (at least the time in unix
-- milliseconds, above any drawn before) in the same batch that reads the account's
-- subscriptions to compute its plan. The plan carries it (AccountPlan.state_at), so the
-- account's Durable Object and accounts.plan keep the plan of the latest read.
CREATE TABLE IF NOT EXISTS account_billing (
  account_id  TEXT PRIMARY KEY,
  version     INTEGER NOT NULL
);
