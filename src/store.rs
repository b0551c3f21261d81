//! The leaf of the crate: what every storage port fails with, and the outbound request
//! port (Stripe's API, client metadata documents) that several domains share. Each
//! domain's own storage port sits next to it (`auth::store`, `quota`, `usage`,
//! `billing::store`, `oauth::store`); `adapters/` implements them over the bindings.

/// A storage failure. Generally transient; the request is answered 503.
#[derive(Debug, thiserror::Error)]
#[error("storage failed: {0}")]
pub struct StoreError(pub String);

/// A request to a service outside the worker (Stripe's API).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundRequest {
    pub method: &'static str,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<String>,
    /// Larger answers are refused without being read whole.
    pub max_response_bytes: usize,
    /// Give up after this long.
    pub timeout_ms: u64,
}

/// Its answer: status and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundResponse {
    pub status: u16,
    /// The `Content-Type` the answer declared.
    pub content_type: Option<String>,
    pub body: Vec<u8>,
}

/// Requests to services outside the worker.
#[allow(async_fn_in_trait)] // Workers are single-threaded; futures need not be Send.
pub trait Outbound {
    /// Sends a request to an outside service (Stripe, a client's metadata document).
    async fn outbound(&self, req: &OutboundRequest) -> Result<OutboundResponse, StoreError>;
}

/// Records read from storage, kept for a while by the isolate that read them, so that a
/// caller's next requests skip the read (API-key records: one KV read per key and isolate
/// every `ttl_ms`, not per request). Bounded: when full, expired entries go first, then all.
/// Only what a read found is kept; a miss is never remembered (guesses cannot fill it).
pub struct Recent<V> {
    ttl_ms: u64,
    capacity: usize,
    entries: std::collections::HashMap<String, (u64, V)>,
}

impl<V: Clone> Recent<V> {
    pub fn new(ttl_ms: u64, capacity: usize) -> Self {
        Self {
            ttl_ms,
            capacity,
            entries: std::collections::HashMap::new(),
        }
    }

    /// The value kept for `key`, unless it was read `ttl_ms` or more before `now_ms`.
    pub fn get(&self, key: &str, now_ms: u64) -> Option<V> {
        self.entries
            .get(key)
            .filter(|(at, _)| now_ms.saturating_sub(*at) < self.ttl_ms)
            .map(|(_, v)| v.clone())
    }

    /// Replaces the value kept for `key`, if any, with `value` (written at `now_ms`): a
    /// write keeps the copy current without adding one.
    pub fn update(&mut self, key: &str, value: V, now_ms: u64) {
        if let Some(kept) = self.entries.get_mut(key) {
            *kept = (now_ms, value);
        }
    }

    /// Keeps `value`, read at `now_ms`.
    pub fn put(&mut self, key: &str, value: V, now_ms: u64) {
        if self.entries.len() >= self.capacity && !self.entries.contains_key(key) {
            let ttl = self.ttl_ms;
            self.entries
                .retain(|_, (at, _)| now_ms.saturating_sub(*at) < ttl);
            if self.entries.len() >= self.capacity {
                self.entries.clear();
            }
        }
        self.entries.insert(key.to_owned(), (now_ms, value));
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::Recent;

    #[test]
    fn a_kept_value_is_served_until_its_time_is_up() {
        let mut recent = Recent::new(1_000, 4);
        assert_eq!(recent.get("a", 0), None);
        recent.put("a", 1, 10_000);
        assert_eq!(recent.get("a", 10_000), Some(1));
        assert_eq!(recent.get("a", 10_999), Some(1));
        assert_eq!(
            recent.get("a", 11_000),
            None,
            "read 1,000 ms ago: read again"
        );
        recent.put("a", 2, 11_000);
        assert_eq!(
            recent.get("a", 11_000),
            Some(2),
            "a newer value replaces it"
        );
    }

    #[test]
    fn a_full_cache_drops_expired_entries_first_then_all() {
        let mut recent = Recent::new(1_000, 3);
        recent.put("old", 0, 0);
        recent.put("b", 1, 900);
        recent.put("c", 2, 900);
        recent.put("d", 3, 1_500);
        assert_eq!(recent.len(), 3, "the expired entry made room");
        assert_eq!(recent.get("old", 1_500), None);
        assert_eq!(recent.get("b", 1_500), Some(1));
        recent.put("e", 4, 1_600);
        assert_eq!(
            recent.len(),
            1,
            "nothing had expired: the cache starts over"
        );
        assert_eq!(recent.get("e", 1_600), Some(4));
        recent.put("e", 5, 1_700);
        assert_eq!(recent.len(), 1, "replacing a key never evicts");
    }

    #[test]
    fn an_update_replaces_a_kept_value_and_adds_none() {
        let mut recent = Recent::new(1_000, 4);
        recent.update("a", 1, 0);
        assert_eq!(
            recent.get("a", 0),
            None,
            "nothing was kept: nothing is added"
        );
        recent.put("a", 1, 0);
        recent.update("a", 2, 500);
        assert_eq!(
            recent.get("a", 1_400),
            Some(2),
            "replaced, and kept from its write"
        );
    }
}
