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
    auth::{
        api_key::{ApiKey, KeyHash, random_id, valid_account_id},
        principal::ALL_SCOPES,
        store::{KeyRecord, KeyStatus},
    },
    context::{Backend, Context, Effects},
    error::ApiError,
    http::{HttpRequest, HttpResponse},
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

/// Checks the admin token; every `/admin/*` route passes here first. Without
/// `ADMIN_TOKEN` the admin routes do not exist.
pub fn authorize<B>(
    req: &HttpRequest,
    cx: &Context<'_, B>,
    fx: &mut Effects,
) -> Result<(), ApiError> {
    let configured = cx.config.admin_token.as_deref().ok_or(ApiError::NotFound)?;
    fx.principal_kind = "admin";
    let presented = req
        .header("authorization")
        .and_then(|h| h.strip_prefix("Bearer "))
        .unwrap_or("");
    if !admin_token_matches(presented.trim(), configured) {
        fx.principal_kind = "invalid_credentials";
        return Err(ApiError::AdminToken);
    }
    Ok(())
}

/// `POST /admin/keys`: mints a key and shows it once.
pub async fn mint<B: Backend>(
    req: &HttpRequest,
    cx: &Context<'_, B>,
    fx: &mut Effects,
) -> Result<HttpResponse, ApiError> {
    authorize(req, cx, fx)?;
    let m: MintRequest = serde_json::from_slice(&req.body)
        .map_err(|e| ApiError::BadRequest(format!("invalid body: {e}")))?;
    let scopes = mint_scopes(cx, &m)?;
    let account = match m.account {
        Some(a) if valid_account_id(&a) => a,
        Some(_) => {
            return Err(ApiError::BadRequest(
                "account must look like acct_ followed by 1-64 letters, digits or _".to_owned(),
            ));
        }
        None => random_id("acct_").map_err(|_| ApiError::random("mint"))?,
    };
    let expires_at = match m.expires_in_days {
        Some(0) | Some(3651..) => {
            return Err(ApiError::BadRequest(
                "expires_in_days must be between 1 and 3650".to_owned(),
            ));
        }
        Some(d) => Some(cx.now_ms + d * 86_400_000),
        None => None,
    };
    let key = ApiKey::generate(!m.test).map_err(|_| ApiError::random("mint"))?;
    let hash = key.hash();
    let record = KeyRecord {
        account: account.clone(),
        plan: m.plan.clone(),
        scopes: scopes.clone(),
        status: KeyStatus::Active,
        expires_at,
    };
    cx.backend
        .put_key(&hash, &record, &m.label, cx.now_ms)
        .await
        .map_err(|e| ApiError::store("mint", e))?;
    Ok(no_store(HttpResponse::json(
        201,
        &json!({
            "key": key.expose(),
            "key_hash": hash.0,
            "account": account,
            "plan": m.plan,
            "scopes": scopes,
            "expires_at": expires_at,
        }),
    )))
}

/// The plan, scopes and label of a mint request, checked; the scopes to grant.
fn mint_scopes<B>(cx: &Context<'_, B>, m: &MintRequest) -> Result<Vec<String>, ApiError> {
    if cx.config.plan(&m.plan).is_none() {
        let known: Vec<&str> = cx.config.plans.iter().map(|p| p.id.as_str()).collect();
        return Err(ApiError::BadRequest(format!(
            "unknown plan {:?}; plans: {}",
            m.plan,
            known.join(", ")
        )));
    }
    let scopes = m
        .scopes
        .clone()
        .unwrap_or_else(|| ALL_SCOPES.iter().map(|s| (*s).to_owned()).collect());
    if let Some(bad) = scopes.iter().find(|s| !ALL_SCOPES.contains(&s.as_str())) {
        return Err(ApiError::BadRequest(format!(
            "unknown scope {bad:?}; scopes: {}",
            ALL_SCOPES.join(" ")
        )));
    }
    if m.label.len() > 200 {
        return Err(ApiError::BadRequest(
            "label is limited to 200 bytes".to_owned(),
        ));
    }
    Ok(scopes)
}

fn no_store(resp: HttpResponse) -> HttpResponse {
    resp.with_header("cache-control", "no-store")
}

/// `POST /admin/keys/revoke`: revokes one key, by hash or by the key itself.
pub async fn revoke<B: Backend>(
    req: &HttpRequest,
    cx: &Context<'_, B>,
    fx: &mut Effects,
) -> Result<HttpResponse, ApiError> {
    authorize(req, cx, fx)?;
    let r: RevokeRequest = serde_json::from_slice(&req.body)
        .map_err(|e| ApiError::BadRequest(format!("invalid body: {e}")))?;
    let bad = |m: &str| ApiError::BadRequest(m.to_owned());
    let hash = match (r.key_hash, r.key) {
        (Some(h), None) if h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()) => {
            KeyHash(h.to_ascii_lowercase())
        }
        (None, Some(k)) => ApiKey::parse(&k)
            .ok_or_else(|| bad("key is not a well-formed API key"))?
            .hash(),
        _ => return Err(bad("give exactly one of key_hash (64 hex digits) or key")),
    };
    let rec = cx
        .backend
        .revoke_key(&hash, cx.now_ms)
        .await
        .map_err(|e| ApiError::store("revoke", e))?
        .ok_or(ApiError::NotFound)?;
    Ok(no_store(HttpResponse::json(
        200,
        &json!({ "revoked": hash.0, "account": rec.account }),
    )))
}

/// `GET /admin/keys?account=…`: an account's keys (hashes, never keys).
pub async fn list<B: Backend>(
    req: &HttpRequest,
    cx: &Context<'_, B>,
    fx: &mut Effects,
) -> Result<HttpResponse, ApiError> {
    authorize(req, cx, fx)?;
    let account = req
        .query_param("account")
        .filter(|a| valid_account_id(a))
        .ok_or_else(|| ApiError::BadRequest("give ?account=acct_…".to_owned()))?;
    let keys = cx
        .backend
        .list_keys(&account)
        .await
        .map_err(|e| ApiError::store("list keys", e))?;
    Ok(no_store(HttpResponse::json(
        200,
        &json!({ "account": account, "keys": keys }),
    )))
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
}
