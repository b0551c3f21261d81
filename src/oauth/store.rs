//! OAuth storage.

use super::{
    clients::ClientRecord,
    grants::{CodeRecord, ExchangeRequest, Granted, RefreshRequest, Refused},
};
use crate::store::StoreError;

/// OAuth storage: clients in D1; codes and refresh tokens (hashed) in the account's
/// Durable Object, where one request at a time decides a code's single use or a token's
/// rotation.
#[allow(async_fn_in_trait)]
pub trait OAuthStore {
    /// A registered or cached client.
    async fn client(&self, client_id: &str) -> Result<Option<ClientRecord>, StoreError>;
    /// Stores (or refreshes the cache of) a client.
    async fn put_client(&self, client: &ClientRecord) -> Result<(), StoreError>;
    /// Stores an approved authorization's code.
    async fn put_code(&self, account: &str, code: &CodeRecord) -> Result<(), StoreError>;
    /// Exchanges a code: checks it, marks it used and issues the family's first refresh
    /// token, or refuses (revoking the family on replay).
    async fn exchange_code(
        &self,
        account: &str,
        req: &ExchangeRequest,
    ) -> Result<Result<Granted, Refused>, StoreError>;
    /// Rotates a refresh token, or refuses (revoking the family on reuse).
    async fn refresh_token(
        &self,
        account: &str,
        req: &RefreshRequest,
    ) -> Result<Result<Granted, Refused>, StoreError>;
    /// Revokes the family of a refresh token (unknown tokens are ignored).
    async fn revoke_token(&self, account: &str, token_hash: &str) -> Result<(), StoreError>;
}
