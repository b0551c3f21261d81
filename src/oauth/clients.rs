//! OAuth clients: Dynamic Client Registration (RFC 7591) for public clients, and Client ID
//! Metadata Documents (a `client_id` that is an https URL naming a JSON document that
//! describes the client).

use serde::{Deserialize, Serialize};

/// Redirect URIs one client may register.
pub const MAX_REDIRECT_URIS: usize = 10;
/// Longest redirect URI accepted.
pub const MAX_URI_LEN: usize = 2000;
/// Longest client name kept (longer names are cut).
pub const MAX_NAME_LEN: usize = 100;
/// Largest metadata document fetched.
pub const MAX_DOCUMENT_BYTES: usize = 16 * 1024;
/// How long a fetched metadata document is trusted before it is fetched again.
pub const DOCUMENT_TTL_MS: u64 = 3_600_000;

/// A client as stored (D1 `oauth_clients`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientRecord {
    pub client_id: String,
    pub client_name: String,
    pub redirect_uris: Vec<String>,
    pub created_at: u64,
    /// Set for metadata-document clients: when the document was fetched.
    #[serde(default)]
    pub fetched_at: Option<u64>,
}

/// The part of a registration request (or metadata document) this server reads.
#[derive(Debug, Deserialize)]
pub struct ClientMetadata {
    #[serde(default)]
    pub client_id: Option<String>,
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    #[serde(default)]
    pub client_name: Option<String>,
    #[serde(default)]
    pub token_endpoint_auth_method: Option<String>,
    #[serde(default)]
    pub grant_types: Option<Vec<String>>,
    #[serde(default)]
    pub response_types: Option<Vec<String>>,
}

/// An RFC 7591 error (`invalid_redirect_uri`, `invalid_client_metadata`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetadataError {
    pub code: &'static str,
    pub description: String,
}

fn bad(code: &'static str, description: impl Into<String>) -> MetadataError {
    MetadataError {
        code,
        description: description.into(),
    }
}

/// Whether a redirect URI may be registered: `https` with a host, `http` on a loopback
/// host with any port (RFC 8252 §7.3), or a native application's private-use scheme
/// (RFC 8252 §7.1, reverse-domain schemes or application authorities); never with a fragment, user info,
/// whitespace or non-ASCII text (a `Location` header carries it as is).
pub fn valid_redirect_uri(uri: &str) -> bool {
    if uri.len() > MAX_URI_LEN
        || uri.contains(['#', '\\'])
        || !uri.is_ascii()
        || uri.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return false;
    }
    let Some((scheme, _)) = uri.split_once(':') else {
        return false;
    };
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "https" && scheme != "http" {
        return valid_private_use_uri(&scheme, uri);
    }
    let Some((scheme, rest)) = uri.split_once("://") else {
        return false;
    };
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    if authority.is_empty() || authority.contains('@') {
        return false;
    }
    let host = if let Some(v6) = authority.strip_prefix('[') {
        match v6.split_once(']') {
            Some((h, port)) if port.is_empty() || valid_port(port) => h,
            _ => return false,
        }
    } else {
        match authority.split_once(':') {
            Some((h, port)) if valid_port(&format!(":{port}")) => h,
            Some(_) => return false,
            None => authority,
        }
    };
    match scheme {
        "https" => !host.is_empty(),
        "http" => matches!(
            host.to_ascii_lowercase().as_str(),
            "127.0.0.1" | "::1" | "localhost"
        ),
        _ => false,
    }
}

/// Schemes that are never a native application's callback: they run script, read
/// local files, or belong to the browser or the network.
const REFUSED_SCHEMES: [&str; 18] = [
    "javascript",
    "data",
    "file",
    "blob",
    "about",
    "vbscript",
    "filesystem",
    "ftp",
    "ws",
    "wss",
    "mailto",
    "tel",
    "sms",
    "intent",
    "chrome",
    "chrome-extension",
    "view-source",
    "jar",
];

/// A private-use scheme redirect (RFC 8252 §7.1), for public clients bound by PKCE. The
/// scheme is in reverse-domain form (`com.example.app:/callback`), or the URI names a
/// reverse-domain style application authority, as Cursor and VS Code register
/// (`cursor://anysphere.cursor-mcp/oauth/callback`). It is matched exactly later on.
fn valid_private_use_uri(scheme: &str, uri: &str) -> bool {
    let well_formed = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
    if !well_formed || REFUSED_SCHEMES.contains(&scheme) || scheme.starts_with("web+") {
        return false;
    }
    let rest = &uri[scheme.len() + 1..];
    if scheme.contains('.') {
        return !rest.is_empty();
    }
    let Some(after) = rest.strip_prefix("//") else {
        return false;
    };
    let authority = after.split(['/', '?']).next().unwrap_or_default();
    let labels: Vec<&str> = authority.split('.').collect();
    labels.len() >= 2
        && labels
            .iter()
            .all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
}

/// Whether `presented` is the registered redirect URI `registered`: the same text, or for
/// a loopback redirect (`http://127.0.0.1`, `[::1]`, `localhost`) the same but for the
/// port, which native apps pick when they start (RFC 8252 §7.3).
pub fn redirect_matches(registered: &str, presented: &str) -> bool {
    if super::grants::same(registered, presented) {
        return true;
    }
    match (loopback_parts(registered), loopback_parts(presented)) {
        (Some((host_a, rest_a)), Some((host_b, rest_b))) => host_a == host_b && rest_a == rest_b,
        _ => false,
    }
}

/// Whether a redirect URI is a valid `http` loopback one (the user's own machine).
pub fn is_loopback_redirect(uri: &str) -> bool {
    loopback_parts(uri).is_some()
}

/// A valid loopback redirect URI's host and what follows its port.
fn loopback_parts(uri: &str) -> Option<(&str, &str)> {
    if !valid_redirect_uri(uri) {
        return None;
    }
    let rest = uri.strip_prefix("http://")?;
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let host = match authority.strip_prefix('[') {
        Some(v6) => &authority[..v6.find(']')? + 2],
        None => authority.split(':').next()?,
    };
    matches!(host, "127.0.0.1" | "[::1]" | "localhost").then_some((host, tail))
}

fn valid_port(p: &str) -> bool {
    p.strip_prefix(':')
        .is_some_and(|n| !n.is_empty() && n.parse::<u16>().is_ok())
}

/// Characters that reorder or hide text (bidi controls, zero-width characters): in a
/// client's name they could make the consent page read as another application.
fn invisible(c: char) -> bool {
    matches!(c,
        '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2064}'
        | '\u{2066}'..='\u{2069}' | '\u{061C}' | '\u{FEFF}' | '\u{00AD}' | '\u{180E}')
}

/// The name the consent page shows: without control, bidi or zero-width characters, at
/// most [`MAX_NAME_LEN`] characters.
fn display_name(name: Option<&str>) -> String {
    name.map(|n| {
        let visible: String = n
            .chars()
            .filter(|c| !c.is_control() && !invisible(*c))
            .collect();
        visible
            .trim()
            .chars()
            .take(MAX_NAME_LEN)
            .collect::<String>()
    })
    .filter(|n| !n.is_empty())
    .unwrap_or_else(|| "Unnamed client".to_owned())
}

/// A registration request's client, checked: public (`none` authentication), the
/// authorization-code flow, valid redirect URIs.
pub fn registration(meta: &ClientMetadata) -> Result<(String, Vec<String>), MetadataError> {
    if meta.redirect_uris.is_empty() {
        return Err(bad("invalid_redirect_uri", "redirect_uris is required"));
    }
    if meta.redirect_uris.len() > MAX_REDIRECT_URIS {
        return Err(bad(
            "invalid_redirect_uri",
            format!("at most {MAX_REDIRECT_URIS} redirect_uris"),
        ));
    }
    if let Some(bad_uri) = meta.redirect_uris.iter().find(|u| !valid_redirect_uri(u)) {
        return Err(bad(
            "invalid_redirect_uri",
            format!(
                "redirect URIs must be https, http on a loopback address, or a native application's private-use scheme: {}",
                bad_uri.chars().take(100).collect::<String>()
            ),
        ));
    }
    if meta
        .token_endpoint_auth_method
        .as_deref()
        .is_some_and(|m| m != "none")
    {
        return Err(bad(
            "invalid_client_metadata",
            "only public clients (token_endpoint_auth_method \"none\") can register",
        ));
    }
    if meta.grant_types.as_ref().is_some_and(|g| {
        g.iter()
            .any(|t| t != "authorization_code" && t != "refresh_token")
    }) {
        return Err(bad(
            "invalid_client_metadata",
            "grant_types may be authorization_code and refresh_token",
        ));
    }
    if meta
        .response_types
        .as_ref()
        .is_some_and(|r| r.iter().any(|t| t != "code"))
    {
        return Err(bad("invalid_client_metadata", "response_types may be code"));
    }
    let name = display_name(meta.client_name.as_deref());
    Ok((name, meta.redirect_uris.clone()))
}

/// Whether a `client_id` names a metadata document: an https URL with a path.
pub fn is_document_url(client_id: &str, allow_loopback_http: bool) -> bool {
    let ok_scheme = client_id.starts_with("https://")
        || (allow_loopback_http
            && (client_id.starts_with("http://127.0.0.1:")
                || client_id.starts_with("http://localhost:")));
    // No user info (`user@host`) and no backslashes, which parsers read differently.
    ok_scheme
        && client_id.len() <= MAX_URI_LEN
        && !client_id.contains(['#', '@', '\\'])
        && client_id.split_once("://").is_some_and(|(_, rest)| {
            rest.split_once('/')
                .is_some_and(|(host, path)| !host.is_empty() && !path.is_empty())
        })
}

/// A fetched metadata document, checked against the URL it came from.
pub fn document(client_id: &str, body: &[u8], now_ms: u64) -> Result<ClientRecord, MetadataError> {
    if body.len() > MAX_DOCUMENT_BYTES {
        return Err(bad("invalid_client", "client metadata document too large"));
    }
    // Fixed reasons only: serde's messages quote the document, which is the fetched
    // party's text and must not reach the sign-in page.
    let meta: ClientMetadata = serde_json::from_slice(body).map_err(|_| {
        bad(
            "invalid_client",
            "client metadata document is not a valid metadata object",
        )
    })?;
    if meta.client_id.as_deref() != Some(client_id) {
        return Err(bad(
            "invalid_client",
            "the client metadata document names another client_id",
        ));
    }
    let (client_name, redirect_uris) = registration(&meta).map_err(|e| {
        let what = match e.code {
            "invalid_redirect_uri" => "lists a redirect URI this server does not accept",
            _ => "describes a client this server does not accept",
        };
        bad(
            "invalid_client",
            format!("the client metadata document {what}"),
        )
    })?;
    Ok(ClientRecord {
        client_id: client_id.to_owned(),
        client_name,
        redirect_uris,
        created_at: now_ms,
        fetched_at: Some(now_ms),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_redirects_match_whatever_their_port() {
        let registered = "http://127.0.0.1/callback";
        assert!(redirect_matches(
            registered,
            "http://127.0.0.1:53114/callback"
        ));
        assert!(redirect_matches(
            "http://127.0.0.1:8000/callback",
            "http://127.0.0.1:9/callback"
        ));
        assert!(redirect_matches(
            "http://[::1]:1/cb?x=1",
            "http://[::1]:2/cb?x=1"
        ));
        for other in [
            "http://127.0.0.1:53114/other",
            "http://localhost:53114/callback",
            "http://127.0.0.1:53114/callback?extra=1",
            "https://127.0.0.1:53114/callback",
        ] {
            assert!(!redirect_matches(registered, other), "{other}");
        }
        assert!(!redirect_matches(
            "https://app.example/cb",
            "https://app.example:444/cb"
        ));
    }

    #[test]
    fn redirect_uris_are_https_or_loopback_http() {
        for ok in [
            "https://claude.ai/api/mcp/auth_callback",
            "http://127.0.0.1:33418/callback",
            "http://localhost:6274/oauth/callback",
            "http://[::1]:8080/cb",
            "http://127.0.0.1/cb",
            "https://app.example.com:8443/cb?x=1",
            "cursor://anysphere.cursor-mcp/oauth/callback",
            "vscode://vscode.github-authentication/did-authenticate",
            "com.example.app:/oauth2redirect",
        ] {
            assert!(valid_redirect_uri(ok), "{ok}");
        }
        for bad in [
            "http://example.com/cb",
            "http://127.0.0.1.evil.com/cb",
            "http://localhost.evil.com:80/cb",
            "https://app.example.com/cb#frag",
            "https://user@app.example.com/cb",
            "javascript:alert(1)",
            "javascript://a.example/%0aalert(1)",
            "data://x.y/text/html,hi",
            "file://share.example/c$/x",
            "cursor://anysphere/cb",
            "cursor:/cb",
            "cursor://user@anysphere.cursor-mcp/cb",
            "cursor://anysphere.cursor-mcp/cb#f",
            "1app://a.b/cb",
            "https://bücher.example/cb",
            "https:///cb",
            "http://127.0.0.1:99999/cb",
            "https://app.example.com/ cb",
            "",
        ] {
            assert!(!valid_redirect_uri(bad), "{bad}");
        }
    }

    fn meta(json: &str) -> ClientMetadata {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn registrations_are_public_code_flow_clients() {
        let (name, uris) = registration(&meta(r#"{"redirect_uris":["http://127.0.0.1:1/cb"],"client_name":"  Claude Code  ","token_endpoint_auth_method":"none","grant_types":["authorization_code","refresh_token"]}"#)).unwrap();
        assert_eq!((name.as_str(), uris.len()), ("Claude Code", 1));
        for bad in [
            r#"{}"#,
            r#"{"redirect_uris":["http://evil.example/cb"]}"#,
            r#"{"redirect_uris":["https://a.example/cb"],"token_endpoint_auth_method":"client_secret_basic"}"#,
            r#"{"redirect_uris":["https://a.example/cb"],"grant_types":["client_credentials"]}"#,
            r#"{"redirect_uris":["https://a.example/cb"],"response_types":["token"]}"#,
        ] {
            assert!(registration(&meta(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_metadata_document_must_name_its_own_url() {
        let url = "https://client.example/oauth/metadata.json";
        assert!(is_document_url(url, false));
        assert!(!is_document_url("https://client.example", false));
        assert!(!is_document_url("http://client.example/m.json", false));
        assert!(!is_document_url("http://127.0.0.1:9/m.json", false));
        assert!(is_document_url("http://127.0.0.1:9/m.json", true));
        assert!(!is_document_url("mcpc_123", true));
        let good = format!(
            r#"{{"client_id":"{url}","client_name":"Doc","redirect_uris":["https://client.example/cb"]}}"#
        );
        assert_eq!(
            document(url, good.as_bytes(), 1).unwrap().client_name,
            "Doc"
        );
        let lying = r#"{"client_id":"https://other.example/m.json","redirect_uris":["https://client.example/cb"]}"#;
        assert_eq!(
            document(url, lying.as_bytes(), 1).unwrap_err().code,
            "invalid_client"
        );
        assert!(document(url, b"not json", 1).is_err());
        assert!(document(url, &vec![b' '; MAX_DOCUMENT_BYTES + 1], 1).is_err());
    }
}
