//! Header-mapped tool parameters (MCP 2026-07-28, Streamable HTTP, SEP-2243): an input
//! property marked `"x-mcp-header": "Name"` is mirrored by the client into the header
//! `Mcp-Param-Name`, so that intermediaries can route on it without reading the body.
//! The server checks that header and body agree: a value present in one and not the
//! other, or two values that differ, is refused (400, `-32020` HeaderMismatch).
//!
//! Header values are plain ASCII text, or `=?base64?…?=` wrapping the UTF-8 of a value
//! that is not (non-ASCII, control characters, leading or trailing whitespace). A value
//! without both the prefix and the suffix is literal text.

use base64::{Engine, engine::general_purpose::STANDARD};
use rmcp::model::ErrorData;
use serde_json::{Map, Value};

use super::jsonrpc::header_mismatch;

/// The header-mapped properties of an input schema: `(property, header name)`.
pub fn mapped(input_schema: &Value) -> Vec<(&str, &str)> {
    input_schema
        .get("properties")
        .and_then(Value::as_object)
        .map(|props| {
            props
                .iter()
                .filter_map(|(name, schema)| {
                    Some((name.as_str(), schema.get("x-mcp-header")?.as_str()?))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A header value as the text it stands for: Base64 unwrapped, else as sent (trimmed of
/// the optional whitespace HTTP allows around field values). `None` when the Base64 is
/// not valid (bad alphabet or padding, or not UTF-8).
pub fn decode(header: &str) -> Option<String> {
    let header = header.trim_matches([' ', '\t']);
    match header
        .strip_prefix("=?base64?")
        .and_then(|rest| rest.strip_suffix("?="))
    {
        Some(encoded) => String::from_utf8(STANDARD.decode(encoded).ok()?).ok(),
        None => Some(header.to_owned()),
    }
}

/// A body value as its header text: strings as they are, numbers and booleans as JSON
/// writes them; `None` for null (the client omits the header).
fn text_of(value: &Value) -> Option<String> {
    match value {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// Checks every header-mapped property of a call against its `Mcp-Param-*` header.
/// `header` looks a header up by name, case-insensitively.
pub fn check<'h>(
    input_schema: &Value,
    arguments: Option<&Map<String, Value>>,
    header: impl Fn(&str) -> Option<&'h str>,
) -> Result<(), ErrorData> {
    for (property, name) in mapped(input_schema) {
        let body = arguments.and_then(|a| a.get(property)).and_then(text_of);
        let sent = header(&format!("mcp-param-{name}"));
        match (body, sent) {
            (None, None) => {}
            (Some(_), None) => {
                return Err(header_mismatch(format!(
                    "the Mcp-Param-{name} header is missing; the body sets {property}"
                )));
            }
            (None, Some(_)) => {
                return Err(header_mismatch(format!(
                    "the Mcp-Param-{name} header is set; the body does not set {property}"
                )));
            }
            (Some(body), Some(sent)) => {
                let decoded = decode(sent).ok_or_else(|| {
                    header_mismatch(format!("the Mcp-Param-{name} header is not valid Base64"))
                })?;
                if decoded != body {
                    return Err(header_mismatch(format!(
                        "the Mcp-Param-{name} header does not match {property} in the body"
                    )));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn schema() -> Value {
        json!({ "type": "object", "properties": {
            "region": { "type": "string", "x-mcp-header": "Region" },
            "count": { "type": "integer", "x-mcp-header": "Count" },
            "query": { "type": "string" }
        } })
    }

    fn args(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    fn run(body: Value, headers: &[(&str, &str)]) -> Result<(), ErrorData> {
        let a = args(body);
        check(&schema(), Some(&a), |n| {
            headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(n))
                .map(|(_, v)| *v)
        })
    }

    #[test]
    fn headers_must_agree_with_the_body() {
        let body = json!({ "region": "eu-west", "count": 3, "query": "x" });
        assert!(
            run(
                body.clone(),
                &[("Mcp-Param-Region", "eu-west"), ("mcp-param-count", "3")]
            )
            .is_ok()
        );
        assert!(
            run(
                body.clone(),
                &[("Mcp-Param-Region", " eu-west\t"), ("Mcp-Param-Count", "3")]
            )
            .is_ok()
        );
        for bad in [
            vec![("Mcp-Param-Region", "us-east"), ("Mcp-Param-Count", "3")],
            vec![("Mcp-Param-Count", "3")],
            vec![("Mcp-Param-Region", "eu-west"), ("Mcp-Param-Count", "4")],
        ] {
            let e = run(body.clone(), &bad).unwrap_err();
            assert_eq!(e.code.0, -32020, "{bad:?}");
        }
        // Null or absent in the body: the header must be absent too.
        assert!(
            run(
                json!({ "count": 1, "region": null }),
                &[("Mcp-Param-Count", "1")]
            )
            .is_ok()
        );
        assert!(
            run(
                json!({ "count": 1 }),
                &[("Mcp-Param-Count", "1"), ("Mcp-Param-Region", "x")]
            )
            .is_err()
        );
    }

    #[test]
    fn base64_is_unwrapped_only_when_whole_and_valid() {
        assert_eq!(decode("=?base64?SGVsbG8=?=").as_deref(), Some("Hello"));
        assert_eq!(decode("=?base64?w6l0w6k=?=").as_deref(), Some("été"));
        assert_eq!(decode("=?base64?SGVsbG8?="), None, "padding");
        assert_eq!(decode("=?base64?SGVs!!!bG8=?="), None, "alphabet");
        assert_eq!(decode("=?base64?/w==?="), None, "not UTF-8");
        assert_eq!(
            decode("SGVsbG8=").as_deref(),
            Some("SGVsbG8="),
            "no prefix: literal"
        );
        assert_eq!(
            decode("=?base64?SGVsbG8=").as_deref(),
            Some("=?base64?SGVsbG8="),
            "no suffix"
        );
        let e = run(
            json!({ "region": "Hello" }),
            &[("Mcp-Param-Region", "=?base64?SGVsbG8?=")],
        )
        .unwrap_err();
        assert_eq!(e.code.0, -32020);
        assert!(
            run(
                json!({ "region": "Hello" }),
                &[("Mcp-Param-Region", "=?base64?SGVsbG8=?=")]
            )
            .is_ok()
        );
    }

    #[test]
    fn only_marked_properties_are_mapped() {
        assert_eq!(
            mapped(&schema()),
            [("region", "Region"), ("count", "Count")]
        );
        assert!(mapped(&json!({ "type": "object" })).is_empty());
    }
}
