//! A paid remote MCP server on Cloudflare Workers.
//!
//! The crate is a library of pure request handling ([`app::handle`] over
//! [`http::HttpRequest`]) plus thin worker glue (`entry` and `adapters`, wasm32 only), so
//! that host `cargo test` covers everything but the bindings.
//!
//! Dependency rule (a module imports only modules to its right):
//! entry → adapters, app → routes → context, error, pages, http → mcp → billing, oauth →
//! auth, quota, usage → store, config → upstream.

#[cfg(target_arch = "wasm32")]
mod adapters;
pub mod app;
pub mod auth;
pub mod billing;
pub mod config;
pub mod context;
#[cfg(target_arch = "wasm32")]
mod entry;
pub mod error;
pub mod form;
pub mod http;
pub mod mcp;
pub mod oauth;
pub mod pages;
pub mod quota;
pub mod routes;
pub mod store;
pub mod upstream;
pub mod usage;
