//! Operator configuration, read from the worker's `[vars]` (wrangler.toml) and secrets.
//!
//! Parsing takes a lookup function so that the host tests can feed it a map.

/// Largest request body accepted anywhere, unless `MAX_BODY_BYTES` says otherwise.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;

/// What the operator configured.
#[derive(Debug, Clone)]
pub struct Config {
    /// Name shown to clients in `serverInfo` and on the landing page.
    pub server_name: String,
    /// The public base URL (`https://mcp.example.com`); when unset, the request's own origin.
    pub public_url: Option<String>,
    /// Browser origins allowed to call `/mcp` besides the server's own (`*` allows any).
    pub allowed_origins: Vec<String>,
    /// Request bodies larger than this get 413.
    pub max_body_bytes: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            server_name: "paid-mcp-worker".to_owned(),
            public_url: None,
            allowed_origins: Vec::new(),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
        }
    }
}

impl Config {
    /// Builds the configuration from variable lookups; unset or empty variables keep defaults.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Self {
        let get = |name: &str| {
            get(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let defaults = Self::default();
        Self {
            server_name: get("SERVER_NAME").unwrap_or(defaults.server_name),
            public_url: get("PUBLIC_URL").map(|u| u.trim_end_matches('/').to_owned()),
            allowed_origins: get("ALLOWED_ORIGINS")
                .map(|v| {
                    v.split(',')
                        .map(|o| o.trim().trim_end_matches('/').to_owned())
                        .filter(|o| !o.is_empty())
                        .collect()
                })
                .unwrap_or_default(),
            max_body_bytes: get("MAX_BODY_BYTES")
                .and_then(|v| v.parse().ok())
                .unwrap_or(defaults.max_body_bytes),
        }
    }

    /// The base URL the server is reached at, without a trailing slash.
    pub fn base_url<'a>(&'a self, request_origin: &'a str) -> &'a str {
        self.public_url.as_deref().unwrap_or(request_origin)
    }

    /// Whether a browser `Origin` may call the server (DNS-rebinding and cross-site protection).
    ///
    /// The request's own host is not trusted for this: under DNS rebinding it is the
    /// attacker's name. Allowed are loopback origins (local tools such as the Inspector),
    /// `PUBLIC_URL`, and `ALLOWED_ORIGINS`.
    pub fn origin_allowed(&self, origin: &str) -> bool {
        let origin = origin.trim_end_matches('/');
        is_loopback_origin(origin)
            || self
                .public_url
                .as_deref()
                .is_some_and(|u| origin.eq_ignore_ascii_case(u))
            || self
                .allowed_origins
                .iter()
                .any(|o| o == "*" || o.eq_ignore_ascii_case(origin))
    }
}

/// `http(s)://localhost`, `127.0.0.1` or `[::1]`, with any port.
fn is_loopback_origin(origin: &str) -> bool {
    let Some(rest) = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
    else {
        return false;
    };
    let host = match rest.strip_prefix("[::1]") {
        Some(after) => {
            return after.is_empty()
                || after
                    .strip_prefix(':')
                    .is_some_and(|p| p.parse::<u16>().is_ok());
        }
        None => rest,
    };
    let (name, port) = host.split_once(':').unwrap_or((host, ""));
    (name.eq_ignore_ascii_case("localhost") || name == "127.0.0.1")
        && (port.is_empty() || port.parse::<u16>().is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(vars: &[(&str, &str)]) -> Config {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Config::from_lookup(|name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()))
    }

    #[test]
    fn unset_and_empty_variables_keep_defaults() {
        let c = config(&[("SERVER_NAME", "  "), ("MAX_BODY_BYTES", "lots")]);
        assert_eq!(c.server_name, "paid-mcp-worker");
        assert_eq!(c.max_body_bytes, DEFAULT_MAX_BODY_BYTES);
        assert!(c.allowed_origins.is_empty());
    }

    #[test]
    fn origins_are_matched_exactly_apart_from_case_and_trailing_slash() {
        let c = config(&[(
            "ALLOWED_ORIGINS",
            "http://localhost:6274, https://App.example/",
        )]);
        assert!(c.origin_allowed("http://localhost:6274"));
        assert!(c.origin_allowed("https://app.example"));
        assert!(!c.origin_allowed("https://evil.example"));
        assert!(!c.origin_allowed("null"));
        assert!(!c.origin_allowed("https://app.example.evil.example"));
    }

    #[test]
    fn loopback_origins_are_allowed_with_any_port_and_look_alikes_are_not() {
        let c = config(&[]);
        for ok in [
            "http://localhost",
            "http://127.0.0.1:8787",
            "https://[::1]:3000",
            "http://LOCALHOST:1",
        ] {
            assert!(c.origin_allowed(ok), "{ok}");
        }
        for bad in [
            "http://localhost.evil.example",
            "http://127.0.0.1.nip.io",
            "http://[::1].evil",
            "http://localhost:99999",
            "file://localhost",
        ] {
            assert!(!c.origin_allowed(bad), "{bad}");
        }
    }

    #[test]
    fn public_url_is_the_base_url_when_set() {
        let c = config(&[("PUBLIC_URL", "https://mcp.example.com/")]);
        assert_eq!(
            c.base_url("http://127.0.0.1:8787"),
            "https://mcp.example.com"
        );
        assert!(c.origin_allowed("https://mcp.example.com"));
    }
}
