//! MCP over Streamable HTTP: one stateless code path for every protocol version a 2026
//! client sends (spec: <https://modelcontextprotocol.io/specification>).
//!
//! - [`jsonrpc`]: the JSON-RPC 2.0 envelope and error codes.
//! - [`version`]: which protocol version a message speaks and whether its headers agree.
//! - [`methods`]: the MCP methods themselves; [`call`]: one admitted tool call, run.
//! - [`tasks`]: calls that outlive their request (the tasks extension).
//! - [`tools`]: the tool registry (and, in the conformance build, the suite's fixtures).
//!
//! The HTTP side (origin, media types, body, replies as JSON or an event stream) is
//! `routes::mcp`.

pub mod call;
pub mod cancel;
pub mod discovery;
pub mod jsonrpc;
pub mod methods;
pub mod params;
pub mod tasks;
pub mod tools;
pub mod version;
