//! What directories and clients read before they connect, built from the configuration
//! alone (no storage): the server card, the MCP Registry's `server.json`, and the domain's
//! AI catalog pointing at the card.
//!
//! The card and `server.json` share one description of the server ([`detail`]): name
//! (`<META_PREFIX>/<SERVER_NAME>`, the registry's `namespace/name` form), title,
//! description, version and the streamable-http remote with the `Authorization` header it
//! accepts. The card adds, under the server's own `_meta` prefix, each tool with its scope,
//! whether it is paid and the plans (with prices) that include it, the plans' limits, the
//! authorization server and the protocol versions.

use serde_json::{Map, Value, json};

use super::{tools, version::SUPPORTED};
use crate::config::Config;

/// The MCP Registry schema `server.json` follows.
pub const SERVER_JSON_SCHEMA: &str =
    "https://static.modelcontextprotocol.io/schemas/2025-12-11/server.schema.json";
/// The server card draft's schema.
pub const SERVER_CARD_SCHEMA: &str =
    "https://static.modelcontextprotocol.io/schemas/v2/server-card.schema.json";
/// The media type of a server card.
pub const SERVER_CARD_TYPE: &str = "application/mcp-server-card+json";

/// The registry name: the `_meta` prefix (reverse DNS) and the server's name.
fn name(config: &Config) -> String {
    let clean: String = config
        .server_name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect();
    format!("{}/{clean}", config.meta_prefix)
}

/// The fields the card and `server.json` share.
fn detail(config: &Config, base_url: &str, schema: &str) -> Map<String, Value> {
    let mut d = Map::new();
    d.insert("$schema".into(), schema.into());
    d.insert("name".into(), name(config).into());
    d.insert("title".into(), config.server_name.clone().into());
    d.insert(
        "description".into(),
        config.server_description.clone().into(),
    );
    d.insert("version".into(), env!("CARGO_PKG_VERSION").into());
    d.insert("websiteUrl".into(), format!("{base_url}/").into());
    d.insert(
        "remotes".into(),
        json!([{
            "type": "streamable-http",
            "url": format!("{base_url}/mcp"),
            "headers": [{
                "name": "Authorization",
                "description": "Bearer API key (mcp_live_…) or OAuth access token; without it, the anonymous free tier",
                "isRequired": false,
                "isSecret": true,
            }],
        }]),
    );
    d
}

/// The MCP Registry's `server.json` (schema [`SERVER_JSON_SCHEMA`]).
pub fn server_json(config: &Config, base_url: &str) -> Value {
    Value::Object(detail(config, base_url, SERVER_JSON_SCHEMA))
}

/// The server card (media type [`SERVER_CARD_TYPE`]).
pub fn server_card(config: &Config, base_url: &str) -> Value {
    let mut card = detail(config, base_url, SERVER_CARD_SCHEMA);
    let key = |k: &str| format!("{}/{k}", config.meta_prefix);
    let tools: Vec<Value> = tools::registry()
        .tools()
        .filter(|t| t.offered(config))
        .map(|t| {
            let mut tool =
                json!({ "name": t.name, "title": t.title, "description": t.description });
            if let Some(obj) = tool.as_object_mut() {
                obj.extend(t.meta(config));
            }
            tool
        })
        .collect();
    let plans: Vec<Value> = config
        .plans
        .iter()
        .map(|p| json!({ "plan": p.id, "price": p.price, "daily": p.daily, "monthly": p.monthly }))
        .collect();
    let auth_server = config
        .authorization_server
        .clone()
        .unwrap_or_else(|| base_url.to_owned());
    let mut meta = Map::new();
    meta.insert(key("tools"), tools.into());
    meta.insert(key("plans"), plans.into());
    meta.insert(key("authorization_servers"), json!([auth_server]));
    meta.insert(key("protocol_versions"), json!(SUPPORTED));
    card.insert("_meta".into(), meta.into());
    Value::Object(card)
}

/// The domain's AI catalog: one entry, this server, pointing at its card.
pub fn ai_catalog(config: &Config, base_url: &str) -> Value {
    json!({
        "entries": [{
            "type": "mcp-server",
            "name": name(config),
            "description": config.server_description,
            "url": format!("{base_url}/mcp"),
            "serverCard": format!("{base_url}/mcp/server-card"),
            "mediaType": SERVER_CARD_TYPE,
        }],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn card_and_server_json_share_the_description_and_the_card_lists_every_tool() {
        let config = Config::from_lookup(|k| {
            (k == "PUBLIC_URL").then(|| "https://mcp.example.com".to_owned())
        });
        let base = "https://mcp.example.com";
        let card = server_card(&config, base);
        let reg = server_json(&config, base);
        for field in ["name", "title", "description", "version", "remotes"] {
            assert_eq!(card[field], reg[field], "{field}");
        }
        assert_eq!(reg["name"], "com.example.mcp/paid-mcp-worker");
        assert_eq!(reg["remotes"][0]["url"], "https://mcp.example.com/mcp");
        let tools = card["_meta"]["com.example.mcp/tools"].as_array().unwrap();
        let offered = tools::registry().tools().filter(|t| t.offered(&config));
        assert_eq!(tools.len(), offered.count());
        assert!(
            tools.iter().all(|t| t["name"] != "ask"),
            "ask is offered only with providers"
        );
        assert!(
            tools
                .iter()
                .all(|t| t.get("com.example.mcp/paid").is_some())
        );
        assert_eq!(
            card["_meta"]["com.example.mcp/authorization_servers"][0],
            "https://mcp.example.com"
        );
    }

    #[test]
    fn a_name_with_spaces_or_slashes_still_makes_a_registry_name() {
        let config =
            Config::from_lookup(|k| (k == "SERVER_NAME").then(|| "My Server/v2".to_owned()));
        let n = name(&config);
        let (ns, server) = n.split_once('/').unwrap();
        assert!(
            !ns.is_empty()
                && ns
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || ".-".contains(c)),
            "{n}"
        );
        assert_eq!(server, "My-Server-v2");
    }
}
