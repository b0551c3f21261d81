//! Quotas: pure decisions in [`policy`], the counter's admission rule ([`admit`]), and the
//! messages to the `QuotaCounter` Durable Object that counts exactly (`adapters::durable`,
//! wasm32 only).

pub mod policy;

use serde::{Deserialize, Serialize};

use crate::{store::StoreError, usage::UsageRecord};

/// A check-and-increment request to a bucket's counter.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ConsumeRequest {
    /// `(window key, limit)` pairs; the call is admitted only if every window has room.
    pub windows: Vec<(String, u64)>,
    pub cost: u64,
    /// Per-window costs, in the order of `windows`, when they differ (a call counted in
    /// its call windows and only checked in its token windows); empty: `cost` for each.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub costs: Vec<u64>,
    /// The API key making the call: refused if the account's object has it revoked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_hash: Option<String>,
    /// The plan the caller's credentials name (accounts only). When the account's object
    /// holds a different plan in force (a subscription changed since the credentials were
    /// read), nothing is counted and the answer names that plan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<String>,
    /// Gives `cost` back instead of taking it: each window's count drops by `cost`, never
    /// below zero, whatever the limits, the key's revocation or the plan in force (the
    /// server's own correction of a call it counted but will not charge, see [`refund`]).
    /// Never refused.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub refund: bool,
    /// The usage row of a call that has already run (a tool that may run before it is
    /// counted): when the call is admitted, the counter keeps the row with the count, in
    /// the same write, and passes it on to the usage log; no other write is needed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep: Option<UsageRecord>,
}

/// What the counter answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsumeResponse {
    pub admitted: bool,
    /// Calls counted per window after the attempt (unchanged when refused).
    pub used: Vec<u64>,
    /// The key was revoked (authoritative, unlike the eventually consistent KV record).
    #[serde(default)]
    pub revoked: bool,
    /// The plan in force, when it differs from the one asked with (nothing was counted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<String>,
    /// The account's Stripe customer, for metered billing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer: Option<String>,
    /// The counter kept the request's usage row ([`ConsumeRequest::keep`]).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub kept: bool,
}

/// What a bucket's counter knows when a consume request arrives.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CounterState {
    /// The calling key is on the account's revoked list.
    pub key_revoked: bool,
    /// The plan in force for the account, when the webhook ever wrote one.
    pub plan_in_force: Option<String>,
    /// The account's Stripe customer, for metered billing.
    pub customer: Option<String>,
    /// The current counts of the request's windows, in order.
    pub used: Vec<u64>,
}

/// The counter's admission rule, pure: the `QuotaCounter` Durable Object and the host
/// tests' in-memory counter both decide with it. A revoked key is refused; credentials
/// naming another plan than the one in force count nothing and learn the plan in force;
/// else the call is admitted only if every window has room for its cost. When admitted,
/// `used` holds the counts to store. A refund ([`ConsumeRequest::refund`]) is always
/// admitted, with every count lowered by its cost (never below zero).
impl ConsumeRequest {
    /// The cost in window `i`.
    pub fn cost_of(&self, i: usize) -> u64 {
        self.costs.get(i).copied().unwrap_or(self.cost)
    }

    /// Whether an admitted request changes any count.
    pub fn costs_anything(&self) -> bool {
        (0..self.windows.len()).any(|i| self.cost_of(i) > 0)
    }
}

pub fn admit(req: &ConsumeRequest, state: CounterState) -> ConsumeResponse {
    if req.refund {
        return give_back(req, state);
    }
    let refused = |revoked, plan, customer| ConsumeResponse {
        admitted: false,
        used: Vec::new(),
        revoked,
        plan,
        customer,
        kept: false,
    };
    if state.key_revoked {
        return refused(true, None, None);
    }
    if let (Some(asked), Some(in_force)) = (&req.plan, &state.plan_in_force)
        && asked != in_force
    {
        return refused(false, Some(in_force.clone()), state.customer);
    }
    let admitted = req
        .windows
        .iter()
        .zip(&state.used)
        .enumerate()
        .all(|(i, ((_, limit), used))| used.saturating_add(req.cost_of(i)) <= *limit);
    let used = if admitted {
        state
            .used
            .iter()
            .enumerate()
            .map(|(i, u)| u.saturating_add(req.cost_of(i)))
            .collect()
    } else {
        state.used
    };
    ConsumeResponse {
        admitted,
        used,
        revoked: false,
        plan: None,
        customer: state.customer,
        kept: false,
    }
}

/// A refund, pure: every window's count less `cost`, floored at zero, always "admitted"
/// (`used` holds the counts to store). Limits, a revoked key and the plan in force are
/// ignored: the refund corrects the server's own count, so it is neither refused nor
/// reported as a revocation or a stale plan.
fn give_back(req: &ConsumeRequest, state: CounterState) -> ConsumeResponse {
    ConsumeResponse {
        admitted: true,
        used: state
            .used
            .iter()
            .map(|u| u.saturating_sub(req.cost))
            .collect(),
        revoked: false,
        plan: None,
        customer: state.customer,
        kept: false,
    }
}

/// The counters: one Durable Object per principal bucket.
#[allow(async_fn_in_trait)] // Workers are single-threaded; futures need not be Send.
pub trait QuotaStore {
    /// Check-and-increment in the bucket's counter (Durable Object; atomic).
    async fn consume(
        &self,
        bucket: &str,
        req: &ConsumeRequest,
    ) -> Result<ConsumeResponse, StoreError>;
}

/// Counts one use of an allowance kept in `counter` over `windows`: `Ok(None)` when
/// admitted, else the seconds until the binding window resets.
pub async fn allowance<S: QuotaStore>(
    store: &S,
    counter: &str,
    windows: &[policy::Window],
    now_s: u64,
) -> Result<Option<u64>, StoreError> {
    let req = ConsumeRequest {
        windows: windows.iter().map(|w| (w.key.clone(), w.limit)).collect(),
        cost: 1,
        ..ConsumeRequest::default()
    };
    let usage = store.consume(counter, &req).await?;
    Ok((!usage.admitted).then(|| {
        policy::binding_window(windows, &usage.used).map_or(1, |(w, _)| w.reset_in(now_s).max(1))
    }))
}

/// Gives back `cost` counted in `bucket`'s counter over `windows` (`(window key, limit)`
/// pairs, as counted: the windows of the call's own time), e.g. for a call cancelled
/// before it was charged. Counts never drop below zero; limits, key revocation and plan
/// changes do not stop it. Returns the windows' counts after. A refund that fails leaves
/// the call counted, and is not retried here: retrying one that reached the counter
/// would give back twice.
pub async fn refund<S: QuotaStore>(
    store: &S,
    bucket: &str,
    windows: &[(String, u64)],
    cost: u64,
) -> Result<Vec<u64>, StoreError> {
    let req = ConsumeRequest {
        windows: windows.to_vec(),
        cost,
        refund: true,
        ..ConsumeRequest::default()
    };
    Ok(store.consume(bucket, &req).await?.used)
}

/// Adds `cost` to each of `windows` whatever their limits (what a call used, known only
/// once it ended: its tokens). Returns the counts after.
pub async fn charge<S: QuotaStore>(
    store: &S,
    bucket: &str,
    windows: &[String],
    cost: u64,
) -> Result<Vec<u64>, StoreError> {
    let req = ConsumeRequest {
        windows: windows.iter().map(|k| (k.clone(), u64::MAX)).collect(),
        cost,
        ..ConsumeRequest::default()
    };
    Ok(store.consume(bucket, &req).await?.used)
}

/// Counts one use of a per-address daily allowance of `kind` (registrations, document
/// fetches, anonymous checkouts): the caller's address bucket gets `limit` a day and its
/// network (`address`: bucket, network) `limit × factor`, both counted in the network's
/// counter. Callers without a known address share `<kind>:unknown`.
pub async fn address_allowance<S: QuotaStore>(
    store: &S,
    kind: &str,
    address: Option<(&str, &str)>,
    limit: u64,
    factor: u64,
    now_ms: u64,
) -> Result<Option<u64>, StoreError> {
    let now_s = now_ms / 1000;
    let (counter, windows) = match address {
        Some((bucket, network)) => (
            format!("{kind}:{network}"),
            policy::address_windows(Some(limit), factor, bucket, now_s),
        ),
        None => (
            format!("{kind}:unknown"),
            policy::windows(Some(limit), None, now_s),
        ),
    };
    allowance(store, &counter, &windows, now_s).await
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn req(limits: &[u64], plan: Option<&str>) -> ConsumeRequest {
        ConsumeRequest {
            windows: limits
                .iter()
                .enumerate()
                .map(|(i, l)| (format!("w{i}"), *l))
                .collect(),
            cost: 1,
            plan: plan.map(str::to_owned),
            ..ConsumeRequest::default()
        }
    }

    #[test]
    fn a_call_is_admitted_only_while_every_window_has_room() {
        let state = |used: Vec<u64>| CounterState {
            used,
            ..CounterState::default()
        };
        let ok = admit(&req(&[10, 100], None), state(vec![9, 50]));
        assert!(ok.admitted);
        assert_eq!(ok.used, [10, 51]);
        let full = admit(&req(&[10, 100], None), state(vec![10, 50]));
        assert!(!full.admitted);
        assert_eq!(full.used, [10, 50], "a refused call is not counted");
        let look = ConsumeRequest {
            cost: 0,
            ..req(&[10, 100], None)
        };
        let read = admit(&look, state(vec![10, 50]));
        assert_eq!(
            (read.admitted, read.used),
            (true, vec![10, 50]),
            "a zero-cost look"
        );
    }

    #[test]
    fn per_window_costs_count_calls_and_only_check_tokens() {
        let state = |used: Vec<u64>| CounterState {
            used,
            ..CounterState::default()
        };
        // A call window (limit 10, cost 1) and a token window checked for room: 30 tokens
        // allowed, sent as 29 at cost 0.
        let call = ConsumeRequest {
            costs: vec![1, 0],
            ..req(&[10, 29], None)
        };
        let ok = admit(&call, state(vec![3, 29]));
        assert_eq!(
            (ok.admitted, ok.used),
            (true, vec![4, 29]),
            "tokens left: 1"
        );
        assert!(call.costs_anything());
        let spent = admit(&call, state(vec![3, 30]));
        assert_eq!(
            (spent.admitted, spent.used),
            (false, vec![3, 30]),
            "no tokens left"
        );
        let look = ConsumeRequest {
            cost: 0,
            costs: vec![0, 0],
            ..req(&[10, 29], None)
        };
        assert!(!look.costs_anything());
        // Tokens are added when the call ends, whatever the limit.
        let charge = ConsumeRequest {
            cost: 20,
            ..req(&[u64::MAX], None)
        };
        assert_eq!(admit(&charge, state(vec![25])).used, [45]);
    }

    #[test]
    fn revoked_keys_and_stale_plans_count_nothing() {
        let revoked = admit(
            &req(&[10], None),
            CounterState {
                key_revoked: true,
                used: vec![0],
                ..CounterState::default()
            },
        );
        assert!(revoked.revoked && !revoked.admitted && revoked.used.is_empty());
        let state = CounterState {
            plan_in_force: Some("team".into()),
            customer: Some("cus_1".into()),
            used: vec![0],
            ..CounterState::default()
        };
        let stale = admit(&req(&[10], Some("pro")), state.clone());
        assert_eq!(
            (stale.admitted, stale.plan.as_deref()),
            (false, Some("team"))
        );
        let current = admit(&req(&[10], Some("team")), state);
        assert!(current.admitted);
        assert_eq!(current.customer.as_deref(), Some("cus_1"));
    }

    #[test]
    fn a_refund_lowers_every_window_never_below_zero_and_is_never_refused() {
        let refund = |cost| ConsumeRequest {
            cost,
            refund: true,
            ..req(&[10, 100], Some("pro"))
        };
        let state = |used: Vec<u64>| CounterState {
            used,
            customer: Some("cus_1".into()),
            ..CounterState::default()
        };
        let back = admit(&refund(1), state(vec![10, 51]));
        assert!(back.admitted && !back.revoked);
        assert_eq!(back.used, [9, 50]);
        assert_eq!(back.customer.as_deref(), Some("cus_1"));
        assert_eq!(
            admit(&refund(3), state(vec![2, 0])).used,
            [0, 0],
            "floored at zero"
        );
        let over = admit(&refund(1), state(vec![40, 500]));
        assert_eq!(over.used, [39, 499], "limits do not apply");
        let revoked_and_stale = CounterState {
            key_revoked: true,
            plan_in_force: Some("team".into()),
            ..state(vec![5, 5])
        };
        let back = admit(&refund(1), revoked_and_stale);
        assert_eq!(
            (back.admitted, back.revoked, back.plan, back.used),
            (true, false, None, vec![4, 4]),
            "a refund is the server's own correction"
        );
    }

    #[test]
    fn only_refunds_carry_the_refund_flag_on_the_wire() {
        let plain = serde_json::to_value(req(&[1], None)).unwrap();
        assert!(plain.get("refund").is_none());
        let parsed: ConsumeRequest =
            serde_json::from_value(json!({ "windows": [["w0", 1]], "cost": 1 })).unwrap();
        assert!(!parsed.refund);
        let back = ConsumeRequest {
            refund: true,
            ..req(&[1], None)
        };
        assert_eq!(serde_json::to_value(back).unwrap()["refund"], true);
    }
}
