//! Operator routes for keys without Stripe (local development, support, comped accounts),
//! behind `Authorization: Bearer <ADMIN_TOKEN>`:
//!
//! - `POST /admin/keys` `{"plan": "pro", "label": "…", "account": "acct_…"?, "scopes": […]?,
//!   "expires_in_days": 30?, "test": false?}` mints a key and shows it once;
//! - `POST /admin/keys/revoke` `{"key_hash": "…"}` (or `{"key": "mcp_…"}`) revokes one;
//! - `GET /admin/keys?account=acct_…` lists an account's keys (hashes, never keys).

use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::{
    app::{self, AppContext, Handled},
    auth::{
        api_key::{ApiKey, KeyHash, random_id},
        principal::ALL_SCOPES,
    },
    http::{HttpRequest, HttpResponse},
    store::{Backend, KeyRecord, KeyStatus},
};

/// Whether the presented admin token is the configured one, in constant time (both sides
/// are hashed first so that their lengths do not show either).
pub fn admin_token_matches(presented: &str, configured: &str) -> bool {
    Sha256::digest(presented.as_bytes())
        .ct_eq(&Sha256::digest(configured.as_bytes()))
        .into()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MintRequest {
    plan: String,
    #[serde(default)]
    label: String,
    #[serde(default)]
    account: Option<String>,
    #[serde(default)]
    scopes: Option<Vec<String>>,
    #[serde(default)]
    expires_in_days: Option<u64>,
    #[serde(default)]
    test: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RevokeRequest {
    #[serde(default)]
    key_hash: Option<String>,
    #[serde(default)]
    key: Option<String>,
}

/// Handles `/admin/*`.
pub async fn handle<B: Backend>(
    req: &HttpRequest,
    cx: &AppContext<'_, B>,
    out: &mut Handled,
) -> HttpResponse {
    let Some(configured) = cx.config.admin_token.as_deref() else {
        // Without ADMIN_TOKEN the admin routes do not exist.
        return app::error(404, "not_found", "no such route");
    };
    out.principal_kind = "admin";
    let presented = req
        .header("authorization")
        .and_then(|h| h.strip_prefix("Bearer "))
        .unwrap_or("");
    if !admin_token_matches(presented.trim(), configured) {
        out.principal_kind = "invalid_credentials";
        return app::error(
            401,
            "unauthorized",
            "admin routes need Authorization: Bearer <ADMIN_TOKEN>",
        )
        .with_header("www-authenticate", "Bearer realm=\"admin\"");
    }
    let resp = match (req.method.as_str(), req.path.as_str()) {
        ("POST", "/admin/keys") => mint(req, cx).await,
        ("GET", "/admin/keys") => list(req, cx).await,
        ("POST", "/admin/keys/revoke") => revoke(req, cx).await,
        (_, "/admin/keys") => app::method_not_allowed("GET, POST"),
        (_, "/admin/keys/revoke") => app::method_not_allowed("POST"),
        _ => app::error(404, "not_found", "no such route"),
    };
    resp.with_header("cache-control", "no-store")
}

fn store_failed(e: impl std::fmt::Display) -> HttpResponse {
    // Details go to the log line through the caller; the client gets a fixed message.
    let _ = e;
    app::error(503, "unavailable", "storage is unavailable; try again")
        .with_header("retry-after", "5")
}

async fn mint<B: Backend>(req: &HttpRequest, cx: &AppContext<'_, B>) -> HttpResponse {
    let m: MintRequest = match serde_json::from_slice(&req.body) {
        Ok(m) => m,
        Err(e) => return app::bad_request(&format!("invalid body: {e}")),
    };
    if cx.config.plan(&m.plan).is_none() {
        let known: Vec<&str> = cx.config.plans.iter().map(|p| p.id.as_str()).collect();
        return app::bad_request(&format!(
            "unknown plan {:?}; plans: {}",
            m.plan,
            known.join(", ")
        ));
    }
    let scopes = m
        .scopes
        .unwrap_or_else(|| ALL_SCOPES.iter().map(|s| (*s).to_owned()).collect());
    if let Some(bad) = scopes.iter().find(|s| !ALL_SCOPES.contains(&s.as_str())) {
        return app::bad_request(&format!(
            "unknown scope {bad:?}; scopes: {}",
            ALL_SCOPES.join(" ")
        ));
    }
    if m.label.len() > 200 {
        return app::bad_request("label is limited to 200 bytes");
    }
    let account = match m.account {
        Some(a) if valid_account_id(&a) => a,
        Some(_) => {
            return app::bad_request(
                "account must look like acct_ followed by 1-64 letters, digits or _",
            );
        }
        None => match random_id("acct_") {
            Ok(a) => a,
            Err(e) => return store_failed(e),
        },
    };
    let expires_at = match m.expires_in_days {
        Some(0) | Some(3651..) => {
            return app::bad_request("expires_in_days must be between 1 and 3650");
        }
        Some(d) => Some(cx.now_ms + d * 86_400_000),
        None => None,
    };
    let key = match ApiKey::generate(!m.test) {
        Ok(k) => k,
        Err(e) => return store_failed(e),
    };
    let hash = key.hash();
    let record = KeyRecord {
        account: account.clone(),
        plan: m.plan.clone(),
        scopes: scopes.clone(),
        status: KeyStatus::Active,
        expires_at,
    };
    if let Err(e) = cx
        .backend
        .put_key(&hash, &record, &m.label, cx.now_ms)
        .await
    {
        return store_failed(e);
    }
    HttpResponse::json(
        201,
        &json!({
            "key": key.expose(),
            "key_hash": hash.0,
            "account": account,
            "plan": m.plan,
            "scopes": scopes,
            "expires_at": expires_at,
        }),
    )
}

pub fn valid_account_id(a: &str) -> bool {
    a.strip_prefix("acct_").is_some_and(|r| {
        (1..=64).contains(&r.len()) && r.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    })
}

async fn revoke<B: Backend>(req: &HttpRequest, cx: &AppContext<'_, B>) -> HttpResponse {
    let r: RevokeRequest = match serde_json::from_slice(&req.body) {
        Ok(r) => r,
        Err(e) => return app::bad_request(&format!("invalid body: {e}")),
    };
    let hash = match (r.key_hash, r.key) {
        (Some(h), None) if h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()) => {
            KeyHash(h.to_ascii_lowercase())
        }
        (None, Some(k)) => match ApiKey::parse(&k) {
            Some(key) => key.hash(),
            None => return app::bad_request("key is not a well-formed API key"),
        },
        _ => return app::bad_request("give exactly one of key_hash (64 hex digits) or key"),
    };
    match cx.backend.revoke_key(&hash, cx.now_ms).await {
        Ok(Some(rec)) => {
            HttpResponse::json(200, &json!({ "revoked": hash.0, "account": rec.account }))
        }
        Ok(None) => app::error(404, "not_found", "no key with that hash"),
        Err(e) => store_failed(e),
    }
}

async fn list<B: Backend>(req: &HttpRequest, cx: &AppContext<'_, B>) -> HttpResponse {
    let Some(account) = req.query_param("account").filter(|a| valid_account_id(a)) else {
        return app::bad_request("give ?account=acct_…");
    };
    match cx.backend.list_keys(&account).await {
        Ok(keys) => HttpResponse::json(200, &json!({ "account": account, "keys": keys })),
        Err(e) => store_failed(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_tokens_match_only_exactly() {
        assert!(admin_token_matches("s3cret-token", "s3cret-token"));
        assert!(!admin_token_matches("s3cret-toke", "s3cret-token"));
        assert!(!admin_token_matches("", "s3cret-token"));
        assert!(!admin_token_matches("S3cret-token", "s3cret-token"));
    }

    #[test]
    fn account_ids_are_checked() {
        assert!(valid_account_id("acct_abc_123"));
        assert!(!valid_account_id("acct_"));
        assert!(!valid_account_id("acct_a'b"));
        assert!(!valid_account_id("user_1"));
    }
}
