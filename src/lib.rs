//! A paid remote MCP server on Cloudflare Workers.
//!
//! The crate is a library of pure request handling ([`app::handle`] over
//! [`http::HttpRequest`]) plus thin worker glue (`entry`, wasm32 only), so that host
//! `cargo test` covers everything but the bindings.

#[cfg(target_arch = "wasm32")]
mod adapters;
pub mod admin;
pub mod app;
pub mod auth;
pub mod billing;
pub mod config;
#[cfg(target_arch = "wasm32")]
mod entry;
pub mod http;
pub mod mcp;
pub mod oauth;
pub mod pages;
pub mod quota;
pub mod store;
pub mod usage;
