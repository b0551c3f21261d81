//! Upstream LLM providers: their configuration and the streaming request each one takes.
//!
//! Two wire formats are spoken: OpenAI's Chat Completions (which many other services and
//! local servers copy) and Anthropic's Messages API. The configuration is a JSON array, in
//! order of preference; the API keys themselves stay in Worker secrets, which each entry
//! names. See <https://platform.openai.com/docs/api-reference/chat/create> and
//! <https://docs.anthropic.com/en/api/messages-streaming>.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

/// The `anthropic-version` header value the request and stream parser are written for.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";

/// Longest provider name accepted.
pub const MAX_NAME_LEN: usize = 64;

/// The wire format a provider speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProviderKind {
    /// OpenAI's Chat Completions (`POST {base_url}/chat/completions`), also spoken by
    /// many compatible services.
    OpenAi,
    /// Anthropic's Messages API (`POST {base_url}/v1/messages`).
    Anthropic,
}

impl ProviderKind {
    /// The kind's name in configuration: `openai` or `anthropic`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OpenAi => "openai",
            Self::Anthropic => "anthropic",
        }
    }

    /// The kind named in configuration (case-insensitive).
    pub fn parse(text: &str) -> Option<Self> {
        if text.eq_ignore_ascii_case("openai") {
            Some(Self::OpenAi)
        } else if text.eq_ignore_ascii_case("anthropic") {
            Some(Self::Anthropic)
        } else {
            None
        }
    }
}

/// One configured upstream provider.
///
/// In configuration: `{"name": "primary", "kind": "openai", "base_url":
/// "https://api.openai.com/v1", "model": "gpt-4o-mini", "key_secret": "OPENAI_API_KEY",
/// "timeout_ms": 30000}`. An OpenAI base URL includes the version path (`/v1`); an
/// Anthropic one does not (`https://api.anthropic.com`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provider {
    /// Unique name, used in logs and to key its circuit breaker (ASCII letters, digits,
    /// `-`, `_` and `.`, at most [`MAX_NAME_LEN`] bytes).
    pub name: String,
    /// The wire format.
    pub kind: ProviderKind,
    /// `http(s)://host[:port][/path]`, without a trailing slash.
    pub base_url: String,
    /// Model id sent with each request.
    pub model: String,
    /// Name of the Worker secret holding the API key (not the key itself).
    pub key_secret: String,
    /// Give up on a request after this long; `None` leaves the choice to the caller.
    pub timeout_ms: Option<u64>,
}

/// A request ready to send: always `POST` with a JSON body, answered as Server-Sent Events.
///
/// `Debug` hides the API key.
#[derive(Clone, PartialEq, Eq)]
pub struct UpstreamRequest {
    /// The endpoint.
    pub url: String,
    /// Request headers, credentials included.
    pub headers: Vec<(String, String)>,
    /// The JSON body.
    pub body: String,
}

impl std::fmt::Debug for UpstreamRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let headers: Vec<(&str, &str)> = self
            .headers
            .iter()
            .map(|(k, v)| {
                let secret =
                    k.eq_ignore_ascii_case("authorization") || k.eq_ignore_ascii_case("x-api-key");
                (k.as_str(), if secret { "[redacted]" } else { v.as_str() })
            })
            .collect();
        f.debug_struct("UpstreamRequest")
            .field("url", &self.url)
            .field("headers", &headers)
            .field("body", &self.body)
            .finish()
    }
}

/// Why the provider configuration was refused. Messages never repeat a `base_url`, which
/// could hold credentials. `index` is the entry's position in the list, from 0.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    /// The text is not JSON at all.
    #[error("upstream providers are not valid JSON: {0}")]
    Json(String),
    /// The value is not an array.
    #[error("upstream providers must be a JSON array of provider objects")]
    NotArray,
    /// The array has no entries.
    #[error("upstream providers list is empty")]
    Empty,
    /// An entry is not a JSON object.
    #[error("provider {index}: not a JSON object")]
    NotObject {
        /// The entry's position.
        index: usize,
    },
    /// An entry has a field this crate does not know (often a typo).
    #[error("provider {index}: unknown field `{field}`")]
    UnknownField {
        /// The entry's position.
        index: usize,
        /// The unknown field's name.
        field: String,
    },
    /// A required field is missing, null or empty.
    #[error("provider {index}: missing `{field}`")]
    MissingField {
        /// The entry's position.
        index: usize,
        /// The missing field's name.
        field: &'static str,
    },
    /// A field has the wrong JSON type.
    #[error("provider {index}: `{field}` must be {expected}")]
    WrongType {
        /// The entry's position.
        index: usize,
        /// The field's name.
        field: &'static str,
        /// The type it must have (`a string`).
        expected: &'static str,
    },
    /// The name has characters other than ASCII letters, digits, `-`, `_` and `.`, or is
    /// too long.
    #[error(
        "provider {index}: `name` may hold only ASCII letters, digits, `-`, `_` and `.` (at most {MAX_NAME_LEN})"
    )]
    BadName {
        /// The entry's position.
        index: usize,
    },
    /// `kind` is neither `openai` nor `anthropic`.
    #[error("provider {index}: unknown kind `{kind}` (expected `openai` or `anthropic`)")]
    UnknownKind {
        /// The entry's position.
        index: usize,
        /// The kind given.
        kind: String,
    },
    /// `base_url` is not `http://` or `https://`.
    #[error("provider {index}: `base_url` must start with http:// or https://")]
    BadScheme {
        /// The entry's position.
        index: usize,
    },
    /// `base_url` carries a user name or password; keys belong in `key_secret`.
    #[error(
        "provider {index}: `base_url` must not contain user info; name a secret in `key_secret`"
    )]
    Userinfo {
        /// The entry's position.
        index: usize,
    },
    /// `base_url` is malformed in some other way.
    #[error("provider {index}: `base_url` {reason}")]
    BadUrl {
        /// The entry's position.
        index: usize,
        /// What is wrong, as the end of a sentence (`has no host`).
        reason: &'static str,
    },
    /// `timeout_ms` is zero, negative, fractional or not a number.
    #[error("provider {index}: `timeout_ms` must be a positive integer")]
    BadTimeout {
        /// The entry's position.
        index: usize,
    },
    /// Two entries share a name.
    #[error("duplicate provider name `{0}`")]
    DuplicateName(String),
}

const FIELDS: [&str; 6] = [
    "name",
    "kind",
    "base_url",
    "model",
    "key_secret",
    "timeout_ms",
];

/// Parses the provider list from its JSON text.
pub fn parse_providers_json(text: &str) -> Result<Vec<Provider>, ProviderError> {
    let value: Value =
        serde_json::from_str(text).map_err(|e| ProviderError::Json(e.to_string()))?;
    parse_providers(&value)
}

/// Parses the provider list: a non-empty JSON array of provider objects, in order of
/// preference, with unique names.
pub fn parse_providers(value: &Value) -> Result<Vec<Provider>, ProviderError> {
    let Value::Array(entries) = value else {
        return Err(ProviderError::NotArray);
    };
    if entries.is_empty() {
        return Err(ProviderError::Empty);
    }
    let mut names = BTreeSet::new();
    let mut out = Vec::with_capacity(entries.len());
    for (index, entry) in entries.iter().enumerate() {
        let provider = parse_entry(index, entry)?;
        if !names.insert(provider.name.clone()) {
            return Err(ProviderError::DuplicateName(provider.name));
        }
        out.push(provider);
    }
    Ok(out)
}

fn parse_entry(index: usize, entry: &Value) -> Result<Provider, ProviderError> {
    let Value::Object(map) = entry else {
        return Err(ProviderError::NotObject { index });
    };
    if let Some(field) = map.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(ProviderError::UnknownField {
            index,
            field: field.clone(),
        });
    }
    let name = required(map, index, "name")?;
    let valid_name = name.len() <= MAX_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if !valid_name {
        return Err(ProviderError::BadName { index });
    }
    let kind_text = required(map, index, "kind")?;
    let kind = ProviderKind::parse(kind_text).ok_or_else(|| ProviderError::UnknownKind {
        index,
        kind: kind_text.to_owned(),
    })?;
    let base_url = normalize_base_url(index, required(map, index, "base_url")?)?;
    let model = required(map, index, "model")?.to_owned();
    let key_secret = required(map, index, "key_secret")?.to_owned();
    let timeout_ms = match map.get("timeout_ms") {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_u64() {
            Some(0) => return Err(ProviderError::BadTimeout { index }),
            Some(ms) => Some(ms),
            None => return Err(ProviderError::BadTimeout { index }),
        },
    };
    Ok(Provider {
        name: name.to_owned(),
        kind,
        base_url,
        model,
        key_secret,
        timeout_ms,
    })
}

/// A required non-empty string field, trimmed.
fn required<'a>(
    map: &'a Map<String, Value>,
    index: usize,
    field: &'static str,
) -> Result<&'a str, ProviderError> {
    match map.get(field) {
        None | Some(Value::Null) => Err(ProviderError::MissingField { index, field }),
        Some(Value::String(s)) if s.trim().is_empty() => {
            Err(ProviderError::MissingField { index, field })
        }
        Some(Value::String(s)) => Ok(s.trim()),
        Some(_) => Err(ProviderError::WrongType {
            index,
            field,
            expected: "a string",
        }),
    }
}

/// Checks a base URL and returns it with a lower-case scheme and no trailing slash.
///
/// This is a deliberately narrow check, not a URL parser: it refuses anything the
/// request builder could not append a path to safely.
fn normalize_base_url(index: usize, url: &str) -> Result<String, ProviderError> {
    let bad = |reason| ProviderError::BadUrl { index, reason };
    let (scheme, rest) = url
        .split_once("://")
        .ok_or(ProviderError::BadScheme { index })?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return Err(ProviderError::BadScheme { index });
    }
    if rest
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == '\\')
    {
        return Err(bad(
            "contains whitespace, control characters or backslashes",
        ));
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    // Userinfo is checked before anything else about the authority so that a URL with
    // credentials is always reported as such.
    if authority.contains('@') {
        return Err(ProviderError::Userinfo { index });
    }
    if rest.contains(['?', '#']) {
        return Err(bad("must not have a query or fragment"));
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (inner, after) = v6
            .split_once(']')
            .ok_or_else(|| bad("has an unclosed IPv6 bracket"))?;
        if inner.is_empty() || !inner.bytes().all(|b| b.is_ascii_hexdigit() || b == b':') {
            return Err(bad("has an invalid IPv6 address"));
        }
        match after {
            "" => (inner, None),
            _ => match after.strip_prefix(':') {
                Some(p) => (inner, Some(p)),
                None => return Err(bad("has text after the IPv6 address")),
            },
        }
    } else {
        match authority.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err(bad("has no host"));
    }
    if let Some(p) = port
        && (p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) || p.parse::<u16>().is_err())
    {
        return Err(bad("has an invalid port"));
    }
    Ok(format!("{scheme}://{}", rest.trim_end_matches('/')))
}

/// The user turn: the question, preceded by the context in tags when there is any.
///
/// Context goes into the user turn rather than a system prompt because it comes from the
/// caller and must not gain a system prompt's authority.
fn user_text(question: &str, context: Option<&str>) -> String {
    match context.filter(|c| !c.trim().is_empty()) {
        Some(c) => format!("<context>\n{c}\n</context>\n\n{question}"),
        None => question.to_owned(),
    }
}

impl Provider {
    /// The streaming request asking `question`, with optional `context`, for at most
    /// `max_tokens` output tokens (at least 1). An empty `api_key` sends no credential
    /// header (local servers that need none).
    pub fn request(
        &self,
        question: &str,
        context: Option<&str>,
        max_tokens: u32,
        api_key: &str,
    ) -> UpstreamRequest {
        let base = self.base_url.trim_end_matches('/');
        let max_tokens = max_tokens.max(1);
        let messages = json!([{ "role": "user", "content": user_text(question, context) }]);
        let mut headers = vec![
            ("content-type".to_owned(), "application/json".to_owned()),
            ("accept".to_owned(), "text/event-stream".to_owned()),
        ];
        let (url, body) = match self.kind {
            ProviderKind::OpenAi => {
                if !api_key.is_empty() {
                    headers.push(("authorization".to_owned(), format!("Bearer {api_key}")));
                }
                let body = json!({
                    "model": self.model,
                    "messages": messages,
                    "max_tokens": max_tokens,
                    "stream": true,
                    // Without it the stream carries no token counts.
                    "stream_options": { "include_usage": true },
                });
                (format!("{base}/chat/completions"), body)
            }
            ProviderKind::Anthropic => {
                if !api_key.is_empty() {
                    headers.push(("x-api-key".to_owned(), api_key.to_owned()));
                }
                headers.push(("anthropic-version".to_owned(), ANTHROPIC_VERSION.to_owned()));
                let body = json!({
                    "model": self.model,
                    "max_tokens": max_tokens,
                    "messages": messages,
                    "stream": true,
                });
                (format!("{base}/v1/messages"), body)
            }
        };
        UpstreamRequest {
            url,
            headers,
            body: body.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(overrides: Value) -> Value {
        let mut base = json!({
            "name": "primary",
            "kind": "openai",
            "base_url": "https://api.openai.com/v1",
            "model": "gpt-4o-mini",
            "key_secret": "OPENAI_API_KEY",
        });
        if let (Value::Object(b), Value::Object(o)) = (&mut base, overrides) {
            for (k, v) in o {
                b.insert(k, v);
            }
        }
        base
    }

    fn err(value: Value) -> ProviderError {
        parse_providers(&value).unwrap_err()
    }

    fn header<'a>(req: &'a UpstreamRequest, name: &str) -> Option<&'a str> {
        req.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn providers_parse_in_order_with_normalised_urls() {
        let list = parse_providers_json(
            r#"[
                {"name":"primary","kind":"anthropic","base_url":"HTTPS://api.anthropic.com/",
                 "model":"claude-haiku-4-5","key_secret":"ANTHROPIC_API_KEY","timeout_ms":20000},
                {"name":"local.llm","kind":"OpenAI","base_url":"http://[::1]:11434/v1//",
                 "model":"llama3","key_secret":"NONE","timeout_ms":null}
            ]"#,
        )
        .unwrap();
        assert_eq!(list.len(), 2);
        assert_eq!(list[0].name, "primary");
        assert_eq!(list[0].kind, ProviderKind::Anthropic);
        assert_eq!(list[0].base_url, "https://api.anthropic.com");
        assert_eq!(list[0].timeout_ms, Some(20_000));
        assert_eq!(list[1].kind, ProviderKind::OpenAi);
        assert_eq!(list[1].base_url, "http://[::1]:11434/v1");
        assert_eq!(list[1].timeout_ms, None);
    }

    #[test]
    fn the_list_must_be_a_non_empty_array_of_objects() {
        assert_eq!(err(json!({"name": "x"})), ProviderError::NotArray);
        assert_eq!(err(json!("[]")), ProviderError::NotArray);
        assert_eq!(err(json!([])), ProviderError::Empty);
        assert_eq!(
            err(json!([entry(json!({})), 3])),
            ProviderError::NotObject { index: 1 }
        );
        assert!(matches!(
            parse_providers_json("[{"),
            Err(ProviderError::Json(_))
        ));
    }

    #[test]
    fn missing_or_mistyped_fields_are_named() {
        for field in ["name", "kind", "base_url", "model", "key_secret"] {
            let mut e = entry(json!({}));
            e.as_object_mut().unwrap().remove(field);
            assert_eq!(
                err(json!([e])),
                ProviderError::MissingField { index: 0, field },
                "{field}"
            );
            let e = entry(json!({ field: "  " }));
            assert_eq!(
                err(json!([e])),
                ProviderError::MissingField { index: 0, field },
                "{field} blank"
            );
        }
        assert_eq!(
            err(json!([entry(json!({"model": 4}))])),
            ProviderError::WrongType {
                index: 0,
                field: "model",
                expected: "a string"
            }
        );
        assert_eq!(
            err(json!([entry(json!({"baseurl": "https://x"}))])),
            ProviderError::UnknownField {
                index: 0,
                field: "baseurl".to_owned()
            }
        );
        assert_eq!(
            err(json!([entry(json!({"kind": "gemini"}))])),
            ProviderError::UnknownKind {
                index: 0,
                kind: "gemini".to_owned()
            }
        );
        for bad in [json!(0), json!(-5), json!(1.5), json!("100")] {
            assert_eq!(
                err(json!([entry(json!({ "timeout_ms": bad }))])),
                ProviderError::BadTimeout { index: 0 }
            );
        }
        for bad in ["has space", "", "ünï", &"x".repeat(MAX_NAME_LEN + 1)] {
            let e = err(json!([entry(json!({ "name": bad }))]));
            assert!(
                matches!(
                    e,
                    ProviderError::BadName { index: 0 }
                        | ProviderError::MissingField { index: 0, .. }
                ),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn base_urls_must_be_plain_http_or_https() {
        for bad in [
            "ftp://example.com",
            "example.com/v1",
            "javascript://x",
            "file:///etc/passwd",
        ] {
            assert_eq!(
                err(json!([entry(json!({ "base_url": bad }))])),
                ProviderError::BadScheme { index: 0 },
                "{bad}"
            );
        }
        for bad in [
            "https://",
            "https:///v1",
            "https://host:99999",
            "https://host:",
            "https://host:8o",
            "https://host/v1?key=1",
            "https://host/v1#frag",
            "https://ho st",
            "https://host\\@evil",
            "https://[::1",
            "https://[zz]",
            "https://[::1]x",
        ] {
            assert!(
                matches!(
                    err(json!([entry(json!({ "base_url": bad }))])),
                    ProviderError::BadUrl { index: 0, .. }
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn user_info_in_a_base_url_is_refused_without_echoing_it() {
        for bad in [
            "https://user:sk-secret@api.example.com/v1",
            "https://sk-secret@api.example.com",
            "http://a@b@c",
        ] {
            let e = err(json!([entry(json!({ "base_url": bad }))]));
            assert_eq!(e, ProviderError::Userinfo { index: 0 }, "{bad}");
            assert!(!e.to_string().contains("sk-secret"));
        }
        // An `@` in the path is not user info.
        let ok = parse_providers(&json!([entry(
            json!({"base_url": "https://h.example/@team"})
        )]));
        assert_eq!(ok.unwrap()[0].base_url, "https://h.example/@team");
    }

    #[test]
    fn duplicate_names_are_refused() {
        let list = json!([
            entry(json!({})),
            entry(json!({"name": "backup"})),
            entry(json!({"kind": "anthropic"}))
        ]);
        assert_eq!(
            err(list),
            ProviderError::DuplicateName("primary".to_owned())
        );
    }

    fn provider(kind: ProviderKind, base_url: &str) -> Provider {
        Provider {
            name: "p".to_owned(),
            kind,
            base_url: base_url.to_owned(),
            model: "m-1".to_owned(),
            key_secret: "KEY".to_owned(),
            timeout_ms: None,
        }
    }

    #[test]
    fn openai_requests_stream_with_usage_and_a_bearer_key() {
        let req = provider(ProviderKind::OpenAi, "https://api.openai.com/v1/")
            .request("Why?", None, 256, "sk-test");
        assert_eq!(req.url, "https://api.openai.com/v1/chat/completions");
        assert_eq!(header(&req, "authorization"), Some("Bearer sk-test"));
        assert_eq!(header(&req, "content-type"), Some("application/json"));
        assert_eq!(header(&req, "x-api-key"), None);
        let body: Value = serde_json::from_str(&req.body).unwrap();
        assert_eq!(
            body,
            json!({
                "model": "m-1",
                "messages": [{"role": "user", "content": "Why?"}],
                "max_tokens": 256,
                "stream": true,
                "stream_options": {"include_usage": true}
            })
        );
    }

    #[test]
    fn anthropic_requests_carry_the_key_version_and_max_tokens() {
        let req = provider(ProviderKind::Anthropic, "https://api.anthropic.com").request(
            "Why?",
            Some("Sky is blue."),
            0,
            "sk-ant",
        );
        assert_eq!(req.url, "https://api.anthropic.com/v1/messages");
        assert_eq!(header(&req, "x-api-key"), Some("sk-ant"));
        assert_eq!(header(&req, "anthropic-version"), Some("2023-06-01"));
        assert_eq!(header(&req, "authorization"), None);
        let body: Value = serde_json::from_str(&req.body).unwrap();
        assert_eq!(body["max_tokens"], 1, "zero is raised to the minimum");
        assert_eq!(body["stream"], true);
        assert_eq!(body["model"], "m-1");
        assert_eq!(
            body["messages"][0]["content"],
            "<context>\nSky is blue.\n</context>\n\nWhy?"
        );
        assert!(body.get("stream_options").is_none());
    }

    #[test]
    fn an_empty_key_sends_no_credentials_and_debug_hides_keys() {
        let req = provider(ProviderKind::OpenAi, "http://127.0.0.1:11434/v1").request(
            "q",
            Some("   "),
            10,
            "",
        );
        assert_eq!(header(&req, "authorization"), None);
        let body: Value = serde_json::from_str(&req.body).unwrap();
        assert_eq!(body["messages"][0]["content"], "q");
        for kind in [ProviderKind::OpenAi, ProviderKind::Anthropic] {
            let req = provider(kind, "https://x.example").request("q", None, 10, "sk-live-123");
            let shown = format!("{req:?}");
            assert!(!shown.contains("sk-live-123"), "{shown}");
            assert!(shown.contains("[redacted]"));
        }
    }
}
