//! `hash`: cryptographic digests of text, which language models cannot compute themselves.

use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256, Sha384, Sha512};

use crate::auth::principal::SCOPE_TOOLS;

use super::{
    Encoding, Hints, TaskSupport, ToolContext, ToolDef, ToolFuture, ToolOutcome, parse_args,
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Args {
    text: String,
    #[serde(default)]
    algorithm: Algorithm,
    #[serde(default)]
    encoding: Encoding,
}

#[derive(Deserialize, Default, Clone, Copy)]
#[serde(rename_all = "kebab-case")]
enum Algorithm {
    #[default]
    Sha256,
    Sha384,
    Sha512,
}

pub(super) fn def() -> ToolDef {
    ToolDef {
        name: "hash",
        title: "Hash text",
        description: "Computes the SHA-256, SHA-384 or SHA-512 digest of a UTF-8 text, as hex or base64. \
                      Use it to checksum content, compare texts, or build cache keys.",
        input_schema: json!({
            "type": "object",
            "properties": {
                "text": { "type": "string", "description": "the text to hash, as UTF-8 bytes" },
                "algorithm": {
                    "type": "string", "enum": ["sha256", "sha384", "sha512"], "default": "sha256",
                    // Mirrored as Mcp-Param-Algorithm (2026-07-28): gateways can route or
                    // price by it without reading the body.
                    "x-mcp-header": "Algorithm"
                },
                "encoding": { "type": "string", "enum": ["hex", "base64"], "default": "hex" }
            },
            "required": ["text"],
            "additionalProperties": false
        }),
        output_schema: Some(json!({
            "type": "object",
            "properties": {
                "algorithm": { "type": "string" },
                "encoding": { "type": "string" },
                "digest": { "type": "string" },
                "bytes": { "type": "integer", "description": "length of the input in bytes" }
            },
            "required": ["algorithm", "encoding", "digest", "bytes"]
        })),
        hints: Hints {
            read_only: true,
            idempotent: true,
            ..Hints::default()
        },
        // The basic tools scope, which the anonymous free tier holds too.
        scope: Some(SCOPE_TOOLS),
        paid: false,
        offered_if: None,
        outbound: false,
        cache: None,
        task: TaskSupport::Forbidden,
        asks_first: None,
        pure: true,
        handler: call,
    }
}

fn call<'a>(cx: &'a ToolContext<'a>, args: serde_json::Map<String, Value>) -> ToolFuture<'a> {
    Box::pin(async move {
        let args: Args = match parse_args(args) {
            Ok(a) => a,
            Err(e) => return e,
        };
        let result = digest(&args.text, args.algorithm, args.encoding);
        cx.log(
            "debug",
            json!({ "hashed_bytes": args.text.len(), "algorithm": result["algorithm"] }),
        );
        ToolOutcome::Structured(result)
    })
}

fn digest(text: &str, algorithm: Algorithm, encoding: Encoding) -> Value {
    let (name, bytes) = match algorithm {
        Algorithm::Sha256 => ("sha256", Sha256::digest(text).to_vec()),
        Algorithm::Sha384 => ("sha384", Sha384::digest(text).to_vec()),
        Algorithm::Sha512 => ("sha512", Sha512::digest(text).to_vec()),
    };
    let (encoding, digest) = encoding.encode(&bytes);
    json!({ "algorithm": name, "encoding": encoding, "digest": digest, "bytes": text.len() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_match_published_test_vectors() {
        // FIPS 180-2 "abc" vectors.
        let d = digest("abc", Algorithm::Sha256, Encoding::Hex);
        assert_eq!(
            d["digest"],
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let d = digest("abc", Algorithm::Sha512, Encoding::Hex);
        assert!(
            d["digest"]
                .as_str()
                .unwrap()
                .starts_with("ddaf35a193617aba")
        );
        let d = digest("", Algorithm::Sha256, Encoding::Base64);
        assert_eq!(d["digest"], "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=");
        assert_eq!(d["bytes"], 0);
    }
}
