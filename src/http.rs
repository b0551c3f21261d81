//! Plain HTTP request and response values the app works on.
//!
//! The worker glue (`entry.rs`) converts the runtime's request into [`HttpRequest`] and
//! [`HttpResponse`] back into the runtime's response, so everything else runs (and is
//! tested) on the host without a JavaScript runtime.

use serde::Serialize;

pub use crate::form::{form_value, percent_decode, percent_encode};

/// An HTTP request with its body already read (and bounded by the size limit).
#[derive(Debug, Clone, Default)]
pub struct HttpRequest {
    /// Upper-case method, e.g. `POST`.
    pub method: String,
    /// The URL's origin, `scheme://host[:port]`, as the client addressed this server.
    pub origin: String,
    /// The path, always starting with `/`.
    pub path: String,
    /// The raw query string without `?`, empty when absent.
    pub query: String,
    /// Header names in lower case, in arrival order.
    pub headers: Vec<(String, String)>,
    /// The raw body.
    pub body: Vec<u8>,
}

impl HttpRequest {
    /// The first value of a header, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// A query parameter's percent-decoded value.
    pub fn query_param(&self, name: &str) -> Option<String> {
        form_value(&self.query, name)
    }

    /// A field of the body, when it is a form (`application/x-www-form-urlencoded`) or a
    /// JSON object (string, number or boolean values).
    pub fn body_field(&self, name: &str) -> Option<String> {
        let content_type = self.header("content-type").unwrap_or_default();
        if content_type.starts_with("application/json") {
            let v: serde_json::Value = serde_json::from_slice(&self.body).ok()?;
            return match v.get(name)? {
                serde_json::Value::String(s) => Some(s.clone()),
                serde_json::Value::Number(n) => Some(n.to_string()),
                serde_json::Value::Bool(b) => Some(b.to_string()),
                _ => None,
            };
        }
        form_value(std::str::from_utf8(&self.body).ok()?, name)
    }
}

/// An HTTP response the worker glue sends as is.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// An empty response with a status.
    pub fn empty(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// A JSON response.
    pub fn json(status: u16, value: &impl Serialize) -> Self {
        // Serialising our own response types cannot fail (no maps with non-string keys).
        let body = serde_json::to_vec(value).unwrap_or_else(|_| b"null".to_vec());
        Self::empty(status)
            .with_header("content-type", "application/json")
            .with_body(body)
    }

    /// A UTF-8 HTML page.
    pub fn html(status: u16, html: String) -> Self {
        Self::empty(status)
            .with_header("content-type", "text/html; charset=utf-8")
            .with_header("x-content-type-options", "nosniff")
            .with_header(
                "content-security-policy",
                "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
            )
            .with_body(html.into_bytes())
    }

    /// A plain-text response.
    pub fn text(status: u16, text: &str) -> Self {
        Self::empty(status)
            .with_header("content-type", "text/plain; charset=utf-8")
            .with_body(text.as_bytes().to_vec())
    }

    /// Sets a header, replacing any of the same name (so that a page's own policy
    /// overrides a default instead of being sent beside it).
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        let name = name.to_ascii_lowercase();
        self.headers.retain(|(n, _)| *n != name);
        self.headers.push((name, value.to_owned()));
        self
    }

    /// Adds a header beside any of the same name (`set-cookie`, `vary`).
    pub fn append_header(mut self, name: &str, value: &str) -> Self {
        self.headers
            .push((name.to_ascii_lowercase(), value.to_owned()));
        self
    }

    /// Replaces the body.
    pub fn with_body(mut self, body: Vec<u8>) -> Self {
        self.body = body;
        self
    }

    /// The first value of a header, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_params_are_percent_decoded() {
        let req = HttpRequest {
            query: "a=1&session_id=cs%5Ftest+x&b".into(),
            ..Default::default()
        };
        assert_eq!(req.query_param("session_id").as_deref(), Some("cs_test x"));
        assert_eq!(req.query_param("b").as_deref(), Some(""));
        assert_eq!(req.query_param("c"), None);
    }

    #[test]
    fn with_header_replaces_and_append_header_adds() {
        let r = HttpResponse::html(200, String::new())
            .with_header("Content-Security-Policy", "default-src 'self'")
            .append_header("set-cookie", "a=1")
            .append_header("set-cookie", "b=2");
        let csp: Vec<_> = r
            .headers
            .iter()
            .filter(|(n, _)| n == "content-security-policy")
            .collect();
        assert_eq!(csp.len(), 1);
        assert_eq!(csp[0].1, "default-src 'self'");
        assert_eq!(
            r.headers.iter().filter(|(n, _)| n == "set-cookie").count(),
            2
        );
    }
}
