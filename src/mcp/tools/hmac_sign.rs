//! `hmac`: HMAC signatures of messages (webhook payloads, signed URLs), which language
//! models cannot compute themselves. A paid tool: callers on a free plan get a result
//! explaining which plan includes it and how to subscribe.

use hmac::{Hmac, Mac};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Sha256, Sha512};

use crate::auth::principal::SCOPE_TOOLS;

use super::{
    Encoding, Hints, TaskSupport, ToolContext, ToolDef, ToolFuture, ToolOutcome, parse_args,
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Args {
    key: String,
    message: String,
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
    Sha512,
}

pub(super) fn def() -> ToolDef {
    ToolDef {
        name: "hmac",
        title: "HMAC signature",
        description: "Computes the HMAC-SHA256 or HMAC-SHA512 of a UTF-8 message under a UTF-8 key, as hex or \
                      base64. Use it to sign or check webhook payloads and signed URLs.",
        input_schema: json!({
            "type": "object",
            "properties": {
                "key": { "type": "string", "description": "the secret key, as UTF-8 bytes" },
                "message": { "type": "string", "description": "the message, as UTF-8 bytes" },
                "algorithm": { "type": "string", "enum": ["sha256", "sha512"], "default": "sha256" },
                "encoding": { "type": "string", "enum": ["hex", "base64"], "default": "hex" }
            },
            "required": ["key", "message"],
            "additionalProperties": false
        }),
        output_schema: Some(json!({
            "type": "object",
            "properties": {
                "algorithm": { "type": "string" },
                "encoding": { "type": "string" },
                "signature": { "type": "string" }
            },
            "required": ["algorithm", "encoding", "signature"]
        })),
        hints: Hints {
            read_only: true,
            idempotent: true,
            ..Hints::default()
        },
        scope: Some(SCOPE_TOOLS),
        paid: true,
        offered_if: None,
        outbound: false,
        cache: None,
        task: TaskSupport::Forbidden,
        asks_first: None,
        pure: true,
        handler: call,
    }
}

fn call<'a>(_cx: &'a ToolContext<'a>, args: serde_json::Map<String, Value>) -> ToolFuture<'a> {
    Box::pin(async move {
        let args: Args = match parse_args(args) {
            Ok(a) => a,
            Err(e) => return e,
        };
        match sign(&args.key, &args.message, args.algorithm, args.encoding) {
            Some(v) => ToolOutcome::Structured(v),
            None => ToolOutcome::Error("could not compute the HMAC".to_owned()),
        }
    })
}

fn sign(key: &str, message: &str, algorithm: Algorithm, encoding: Encoding) -> Option<Value> {
    // HMAC accepts keys of any length, so `new_from_slice` does not fail in practice.
    let (name, bytes) = match algorithm {
        Algorithm::Sha256 => {
            let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).ok()?;
            mac.update(message.as_bytes());
            ("hmac-sha256", mac.finalize().into_bytes().to_vec())
        }
        Algorithm::Sha512 => {
            let mut mac = Hmac::<Sha512>::new_from_slice(key.as_bytes()).ok()?;
            mac.update(message.as_bytes());
            ("hmac-sha512", mac.finalize().into_bytes().to_vec())
        }
    };
    let (encoding, signature) = encoding.encode(&bytes);
    Some(json!({ "algorithm": name, "encoding": encoding, "signature": signature }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_match_rfc_4231_test_case_2() {
        let s = sign(
            "Jefe",
            "what do ya want for nothing?",
            Algorithm::Sha256,
            Encoding::Hex,
        )
        .unwrap();
        assert_eq!(
            s["signature"],
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        let s = sign(
            "Jefe",
            "what do ya want for nothing?",
            Algorithm::Sha512,
            Encoding::Hex,
        )
        .unwrap();
        assert!(
            s["signature"]
                .as_str()
                .unwrap()
                .starts_with("164b7a7bfcf819e2")
        );
    }
}
