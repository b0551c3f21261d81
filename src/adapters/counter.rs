//! `QuotaStore` over the `QuotaCounter` Durable Object, and every client call to it: the
//! one place that names its routes (`/consume`, `/revoke`, `/account`,
//! `/oauth/*`; see [`super::durable`]).

use serde::{Serialize, de::DeserializeOwned};

use super::{WorkerBackend, js};
use crate::{
    billing::store::AccountPlan,
    oauth::grants::{CodeRecord, ExchangeRequest, GrantOutcome, RefreshRequest},
    quota::{ConsumeRequest, ConsumeResponse, QuotaStore},
    store::StoreError,
};

/// The counter bucket of an account.
fn account_bucket(account: &str) -> String {
    format!("acct:{account}")
}

impl WorkerBackend {
    /// POSTs `body` as JSON to route `op` of `bucket`'s object and reads its JSON answer.
    async fn call_counter<T: Serialize, R: DeserializeOwned>(
        &self,
        bucket: &str,
        op: &str,
        body: &T,
    ) -> Result<R, StoreError> {
        let body = serde_json::to_string(body).map_err(|e| StoreError(e.to_string()))?;
        let text =
            js::call_object(self.quota()?, bucket, op, &body, self.object_timeout_ms).await?;
        serde_json::from_str(&text).map_err(|e| StoreError(format!("counter answer: {e}")))
    }

    /// Adds a key to the account's revoked list (`/revoke`).
    pub(super) async fn counter_revoke_key(
        &self,
        account: &str,
        key_hash: &str,
    ) -> Result<(), StoreError> {
        let _: serde_json::Value = self
            .call_counter(&account_bucket(account), "revoke", &key_hash)
            .await?;
        Ok(())
    }

    /// Stores the account's plan in force unless it holds a newer one (`/account`).
    pub(super) async fn counter_set_plan(
        &self,
        account: &str,
        plan: &AccountPlan,
    ) -> Result<(), StoreError> {
        let _: serde_json::Value = self
            .call_counter(&account_bucket(account), "account", plan)
            .await?;
        Ok(())
    }

    /// Stores an authorization code (`/oauth/code`).
    pub(super) async fn counter_put_code(
        &self,
        account: &str,
        code: &CodeRecord,
    ) -> Result<(), StoreError> {
        let _: serde_json::Value = self
            .call_counter(&account_bucket(account), "oauth/code", code)
            .await?;
        Ok(())
    }

    /// Exchanges a code (`/oauth/exchange`).
    pub(super) async fn counter_exchange(
        &self,
        account: &str,
        req: &ExchangeRequest,
    ) -> Result<GrantOutcome, StoreError> {
        self.call_counter(&account_bucket(account), "oauth/exchange", req)
            .await
    }

    /// Rotates a refresh token (`/oauth/refresh`).
    pub(super) async fn counter_refresh(
        &self,
        account: &str,
        req: &RefreshRequest,
    ) -> Result<GrantOutcome, StoreError> {
        self.call_counter(&account_bucket(account), "oauth/refresh", req)
            .await
    }

    /// Revokes a refresh token's family (`/oauth/revoke`).
    pub(super) async fn counter_revoke_family(
        &self,
        account: &str,
        token_hash: &str,
    ) -> Result<(), StoreError> {
        let _: serde_json::Value = self
            .call_counter(&account_bucket(account), "oauth/revoke", &token_hash)
            .await?;
        Ok(())
    }
}

impl QuotaStore for WorkerBackend {
    async fn consume(
        &self,
        bucket: &str,
        req: &ConsumeRequest,
    ) -> Result<ConsumeResponse, StoreError> {
        self.call_counter(bucket, "consume", req).await
    }
}
