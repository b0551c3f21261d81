//! Building blocks for calling an upstream LLM from a tool: provider configuration and
//! requests, the streamed answer's decoding, retry and circuit-breaker decisions, and
//! result cache keys.
//!
//! Everything here is pure and synchronous: time arrives as `now_ms` (unix milliseconds)
//! and randomness as a number, so the host tests drive every decision and the same code
//! runs on wasm32. Sending the requests and keeping state between requests is the
//! caller's part.

pub mod breaker;
pub mod cache;
pub mod provider;
pub mod retry;
pub mod sse;

pub use breaker::{Breaker, Breakers, State as BreakerState};
pub use cache::{CacheScope, cache_key, canonical_json};
pub use provider::{
    Provider, ProviderError, ProviderKind, UpstreamRequest, parse_providers, parse_providers_json,
};
pub use retry::{Backoff, FailureClass, classify, parse_retry_after};
pub use sse::{Delta, SseDecoder, SseError, SseEvent, StreamParser};
