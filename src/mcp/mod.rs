//! MCP over Streamable HTTP: one stateless code path for every protocol version a 2026
//! client sends (spec: <https://modelcontextprotocol.io/specification>).
//!
//! - [`transport`]: the HTTP layer at `/mcp` (origin, media types, body, batches).
//! - [`jsonrpc`]: the JSON-RPC 2.0 envelope and error codes.
//! - [`version`]: which protocol version a message speaks and whether its headers agree.
//! - [`methods`]: the MCP methods themselves.
//! - [`tools`]: the tool registry.

#[cfg(feature = "conformance")]
pub mod fixtures;
pub mod jsonrpc;
pub mod methods;
pub mod tools;
pub mod transport;
pub mod version;
