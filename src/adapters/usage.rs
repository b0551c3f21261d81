//! `UsageLog`: rows are appended to a [`super::buffer::UsageBuffer`] object, which writes
//! them to D1 `tool_call_logs` (and `api_keys.last_used_at`) in batches; totals are read
//! from D1.

use super::{WorkerBackend, js, num};
use crate::{
    store::StoreError,
    usage::{UsageLog, UsageRecord, UsageRow},
};

impl UsageLog for WorkerBackend {
    async fn usage(&self, principal: &str, since_ms: u64) -> Result<Vec<UsageRow>, StoreError> {
        Ok(self.db()?
            .prepare(
                "SELECT tool, status, COUNT(*) AS calls, AVG(duration_ms) AS avg_duration_ms, \
                 COALESCE(SUM(input_tokens), 0) AS input_tokens, COALESCE(SUM(output_tokens), 0) AS output_tokens \
                 FROM tool_call_logs \
                 WHERE principal = ?1 AND created_at >= ?2 GROUP BY tool, status ORDER BY tool, status",
            )
            .bind(&[principal.into(), num(since_ms)])?
            .all()
            .await?
            .results()?)
    }

    async fn write_usage(&self, records: &[UsageRecord]) -> Result<(), StoreError> {
        let Some(first) = records.first() else {
            return Ok(());
        };
        let rows = serde_json::to_string(records).map_err(|e| StoreError(e.to_string()))?;
        self.append_rows(&first.request_id, &rows).await
    }
}

impl WorkerBackend {
    /// Appends a JSON array of usage rows to the buffer object `by` picks (a request or
    /// counter id: the same one always picks the same buffer).
    pub(super) async fn append_rows(&self, by: &str, rows: &str) -> Result<(), StoreError> {
        js::call_object(
            self.usage_buffer()?,
            &shard(by),
            "append",
            rows,
            self.object_timeout_ms,
        )
        .await?;
        Ok(())
    }
}

/// Buffer objects the rows are spread over (see [`super::buffer`]); each takes a few
/// thousand appends a second.
pub(super) const SHARDS: u32 = 4;

/// The buffer object of a request's (or counter's) rows: `usage:<n>`, `n` from its id.
fn shard(id: &str) -> String {
    let n = id
        .bytes()
        .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
    format!("usage:{}", n % SHARDS)
}
