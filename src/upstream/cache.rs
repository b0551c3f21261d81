//! Cache keys for tool results: equal calls get equal keys, whatever the order of their
//! arguments' object keys, and results meant for one principal never share a key with
//! another principal's or with public ones.
//!
//! The key is SHA-256 over a domain-separation prefix and three length-prefixed parts:
//! the tool name, the arguments in canonical JSON, and the scope. Length prefixes keep
//! parts from running into each other (`"ab" + "c"` never hashes like `"a" + "bc"`).

use serde_json::Value;
use sha2::{Digest, Sha256};

/// Bumped whenever the key layout changes, so old entries are simply never hit again.
const DOMAIN: &[u8] = b"paid-mcp-worker/upstream-cache/v1\0";

/// Whom a cached result may be served to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum CacheScope {
    /// Anyone: the result depends on the arguments alone.
    Public,
    /// Only this principal (an account or key id): the result may reveal their data.
    Principal(String),
}

impl CacheScope {
    fn as_bytes(&self) -> Vec<u8> {
        match self {
            Self::Public => b"public".to_vec(),
            Self::Principal(id) => [b"principal:".as_slice(), id.as_bytes()].concat(),
        }
    }
}

/// The cache key of a call: 64 lower-case hex digits.
pub fn cache_key(tool: &str, args: &Value, scope: CacheScope) -> String {
    let args = canonical_json(args);
    let scope = scope.as_bytes();
    let mut hash = Sha256::new();
    hash.update(DOMAIN);
    for part in [tool.as_bytes(), args.as_bytes(), &scope] {
        hash.update((part.len() as u64).to_be_bytes());
        hash.update(part);
    }
    hex::encode(hash.finalize())
}

/// `value` as compact JSON with every object's keys sorted (by UTF-8 bytes, which is
/// code point order), recursively; array order is kept.
///
/// Strings are escaped as `serde_json` escapes them and numbers are written as
/// `serde_json` writes them, so `1` and `1.0` stay distinct. This is close to, but not,
/// RFC 8785 (JCS), which orders keys by UTF-16 units and formats numbers as JavaScript
/// does; a cache key needs determinism only.
pub fn canonical_json(value: &Value) -> String {
    let mut out = String::new();
    write_value(&mut out, value);
    out
}

fn write_value(out: &mut String, value: &Value) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::String(s) => write_string(out, s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(out, item);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(out, key);
                out.push(':');
                write_value(out, item);
            }
            out.push('}');
        }
    }
}

fn write_string(out: &mut String, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if u32::from(c) < 0x20 => {
                let b = u32::from(c) as usize;
                out.push_str("\\u00");
                out.push(char::from(HEX[b >> 4]));
                out.push(char::from(HEX[b & 0xF]));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn object_keys_are_sorted_recursively_and_arrays_keep_their_order() {
        let v: Value = serde_json::from_str(
            r#"{ "b": [3, {"z": 1, "a": [ {"y": null, "x": true} ]}, "s"],
                 "a": {"d": 1.5, "c": -2},
                 "B": false, "": 0 }"#,
        )
        .unwrap();
        assert_eq!(
            canonical_json(&v),
            r#"{"":0,"B":false,"a":{"c":-2,"d":1.5},"b":[3,{"a":[{"x":true,"y":null}],"z":1},"s"]}"#
        );
        assert_eq!(canonical_json(&json!([[2, 1], [1, 2]])), "[[2,1],[1,2]]");
        assert_eq!(canonical_json(&json!({})), "{}");
        assert_eq!(canonical_json(&json!([])), "[]");
        assert_eq!(canonical_json(&json!("x")), "\"x\"");
    }

    #[test]
    fn keys_sort_by_code_point_not_by_insertion() {
        let v = json!({"é": 1, "z": 2, "Z": 3, "aa": 4, "a": 5, "\u{1F600}": 6, "\u{FF61}": 7});
        assert_eq!(
            canonical_json(&v),
            "{\"Z\":3,\"a\":5,\"aa\":4,\"z\":2,\"é\":1,\"\u{FF61}\":7,\"\u{1F600}\":6}"
        );
    }

    #[test]
    fn strings_and_numbers_are_written_as_serde_json_writes_them() {
        let samples = [
            json!("quote \" backslash \\ slash / tab \t nl \n cr \r"),
            json!("\u{0}\u{1}\u{8}\u{c}\u{1f}\u{7f} é \u{2028} \u{1F600}"),
            json!(0),
            json!(-0.0),
            json!(1.0),
            json!(1e300),
            json!(u64::MAX),
            json!(i64::MIN),
            json!(0.1),
        ];
        for v in samples {
            assert_eq!(
                canonical_json(&v),
                serde_json::to_string(&v).unwrap(),
                "{v}"
            );
        }
        assert_ne!(canonical_json(&json!(1)), canonical_json(&json!(1.0)));
    }

    #[test]
    fn canonical_json_round_trips() {
        let v =
            json!({"q": "why?\n", "opts": {"n": [1, 2.5, null, {"k": "v"}], "deep": {"x": {}}}});
        let back: Value = serde_json::from_str(&canonical_json(&v)).unwrap();
        assert_eq!(back, v);
    }

    #[test]
    fn equal_calls_share_a_key_whatever_their_key_order() {
        let a: Value =
            serde_json::from_str(r#"{"q":"hi","opts":{"x":1,"y":[1,{"b":2,"a":1}]}}"#).unwrap();
        let b: Value =
            serde_json::from_str(r#"{"opts":{"y":[1,{"a":1,"b":2}],"x":1},"q":"hi"}"#).unwrap();
        assert_eq!(
            cache_key("ask", &a, CacheScope::Public),
            cache_key("ask", &b, CacheScope::Public)
        );
        let key = cache_key("ask", &a, CacheScope::Public);
        assert_eq!(key.len(), 64);
        assert!(
            key.bytes()
                .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
        );
    }

    #[test]
    fn tool_arguments_and_scope_all_change_the_key() {
        let args = json!({"q": "hi"});
        let keys = [
            cache_key("ask", &args, CacheScope::Public),
            cache_key("ask2", &args, CacheScope::Public),
            cache_key("ask", &json!({"q": "hi "}), CacheScope::Public),
            cache_key("ask", &json!({"q": ["hi"]}), CacheScope::Public),
            cache_key("ask", &args, CacheScope::Principal("alice".to_owned())),
            cache_key("ask", &args, CacheScope::Principal("bob".to_owned())),
            cache_key("ask", &args, CacheScope::Principal(String::new())),
            cache_key("ask", &args, CacheScope::Principal("public".to_owned())),
        ];
        for (i, a) in keys.iter().enumerate() {
            for b in &keys[i + 1..] {
                assert_ne!(a, b);
            }
        }
    }

    #[test]
    fn parts_cannot_run_into_each_other() {
        // Without length prefixes each pair would hash the same bytes.
        assert_ne!(
            cache_key("a1", &json!(2), CacheScope::Public),
            cache_key("a", &json!(12), CacheScope::Public)
        );
        assert_ne!(
            cache_key("t", &json!("x"), CacheScope::Principal("y".to_owned())),
            cache_key("t", &json!("x\"principal:y"), CacheScope::Public)
        );
    }

    #[test]
    fn the_key_layout_is_pinned() {
        // Computed independently: sha256(DOMAIN || be64(3) "ask" || be64(8) {"q":"hi"}
        // || be64(15) "principal:alice").
        assert_eq!(
            cache_key(
                "ask",
                &json!({"q": "hi"}),
                CacheScope::Principal("alice".to_owned())
            ),
            PINNED
        );
    }

    const PINNED: &str = "9d169b0deca878f06a11e49020316691c995dc6516283839d24809f01e547ea4";
}
