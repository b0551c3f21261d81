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
        let rows = records
            .iter()
            .map(|r| {
                let mut row = serde_json::to_value(r).map_err(|e| StoreError(e.to_string()))?;
                row["key_hash"] = r.key_hash.clone().into();
                Ok(row)
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let rows = serde_json::to_string(&rows).map_err(|e| StoreError(e.to_string()))?;
        js::call_object(
            self.usage_buffer()?,
            &shard(&first.request_id),
            "append",
            &rows,
            self.object_timeout_ms,
        )
        .await?;
        Ok(())
    }
}

/// Buffer objects the rows are spread over (see [`super::buffer`]); each takes a few
/// thousand appends a second.
pub(super) const SHARDS: u32 = 4;

/// The buffer object of a request's rows: `usage:<n>`, `n` from its id.
fn shard(request_id: &str) -> String {
    let n = request_id
        .bytes()
        .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
    format!("usage:{}", n % SHARDS)
}
