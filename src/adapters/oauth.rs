//! `OAuthStore`: clients in D1 `oauth_clients`; codes and refresh tokens in the account's
//! `QuotaCounter` Durable Object (through [`super::counter`]).

use super::{WorkerBackend, num, opt};
use crate::{
    oauth::{
        clients::ClientRecord,
        grants::{CodeRecord, ExchangeRequest, Granted, RefreshRequest, Refused},
        store::OAuthStore,
    },
    store::StoreError,
};

#[derive(serde::Deserialize)]
struct ClientRow {
    client_id: String,
    client_name: String,
    redirect_uris: String,
    created_at: f64,
    fetched_at: Option<f64>,
}

impl OAuthStore for WorkerBackend {
    async fn client(&self, client_id: &str) -> Result<Option<ClientRecord>, StoreError> {
        let row: Option<ClientRow> = self.db()?
            .prepare("SELECT client_id, client_name, redirect_uris, created_at, fetched_at FROM oauth_clients WHERE client_id = ?1")
            .bind(&[client_id.into()])?
            .first(None)
            .await?;
        Ok(row.map(|r| ClientRecord {
            client_id: r.client_id,
            client_name: r.client_name,
            redirect_uris: serde_json::from_str(&r.redirect_uris).unwrap_or_default(),
            created_at: r.created_at as u64,
            fetched_at: r.fetched_at.map(|t| t as u64),
        }))
    }

    async fn put_client(&self, c: &ClientRecord) -> Result<(), StoreError> {
        let uris =
            serde_json::to_string(&c.redirect_uris).map_err(|e| StoreError(e.to_string()))?;
        self.db()?
            .prepare(
                "INSERT INTO oauth_clients (client_id, client_name, redirect_uris, created_at, fetched_at) VALUES (?1, ?2, ?3, ?4, ?5) \
                 ON CONFLICT(client_id) DO UPDATE SET client_name = excluded.client_name, redirect_uris = excluded.redirect_uris, \
                 fetched_at = excluded.fetched_at",
            )
            .bind(&[
                c.client_id.as_str().into(),
                c.client_name.as_str().into(),
                uris.into(),
                num(c.created_at),
                opt(c.fetched_at),
            ])?
            .run()
            .await?;
        Ok(())
    }

    async fn put_code(&self, account: &str, code: &CodeRecord) -> Result<(), StoreError> {
        self.counter_put_code(account, code).await
    }

    async fn exchange_code(
        &self,
        account: &str,
        req: &ExchangeRequest,
    ) -> Result<Result<Granted, Refused>, StoreError> {
        Ok(self.counter_exchange(account, req).await?.into())
    }

    async fn refresh_token(
        &self,
        account: &str,
        req: &RefreshRequest,
    ) -> Result<Result<Granted, Refused>, StoreError> {
        Ok(self.counter_refresh(account, req).await?.into())
    }

    async fn revoke_token(&self, account: &str, token_hash: &str) -> Result<(), StoreError> {
        self.counter_revoke_family(account, token_hash).await
    }
}
