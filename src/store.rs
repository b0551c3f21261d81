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
