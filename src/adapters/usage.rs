//! `UsageLog` over D1 `tool_call_logs` (and `api_keys.last_used_at`, written with it).

use wasm_bindgen::JsValue;
use worker::D1PreparedStatement;

use super::{WorkerBackend, num};
use crate::{
    store::StoreError,
    usage::{UsageLog, UsageRecord, UsageRow},
};

impl WorkerBackend {
    /// The `tool_call_logs` row of a record.
    fn usage_row(&self, r: &UsageRecord) -> Result<D1PreparedStatement, StoreError> {
        Ok(self.db()?
            .prepare(
                "INSERT INTO tool_call_logs (request_id, principal, principal_kind, method, tool, input_bytes, \
                 output_bytes, duration_ms, status, error, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            )
            .bind(&[
                r.request_id.as_str().into(),
                r.principal.as_str().into(),
                r.principal_kind.into(),
                r.method.as_str().into(),
                r.tool.as_deref().map_or(JsValue::NULL, JsValue::from_str),
                num(r.input_bytes),
                num(r.output_bytes),
                num(r.duration_ms),
                r.status.into(),
                r.error.as_deref().map_or(JsValue::NULL, JsValue::from_str),
                num(r.created_at),
            ])?)
    }
}

impl UsageLog for WorkerBackend {
    async fn usage(&self, principal: &str, since_ms: u64) -> Result<Vec<UsageRow>, StoreError> {
        Ok(self.db()?
            .prepare(
                "SELECT tool, status, COUNT(*) AS calls, AVG(duration_ms) AS avg_duration_ms FROM tool_call_logs \
                 WHERE principal = ?1 AND created_at >= ?2 GROUP BY tool, status ORDER BY tool, status",
            )
            .bind(&[principal.into(), num(since_ms)])?
            .all()
            .await?
            .results()?)
    }

    async fn write_usage(&self, records: &[UsageRecord]) -> Result<(), StoreError> {
        let mut statements = Vec::with_capacity(records.len() * 2);
        for r in records {
            statements.push(self.usage_row(r)?);
            if let Some(hash) = &r.key_hash {
                statements.push(
                    self.db()?
                        .prepare("UPDATE api_keys SET last_used_at = ?1 WHERE key_hash = ?2")
                        .bind(&[num(r.created_at), hash.as_str().into()])?,
                );
            }
        }
        if !statements.is_empty() {
            self.db()?.batch(statements).await?;
        }
        Ok(())
    }
}
