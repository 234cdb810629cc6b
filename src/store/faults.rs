//! Fault rules as both backends store them: the rule as JSON text, and the requests a counted
//! rule has left in a column of its own, which every process or replica decrements atomically.

use crate::domain::fault::{FaultLimit, FaultRule};
use crate::domain::ports::StoreError;

/// The stored text of a rule.
pub(crate) fn encode(rule: &FaultRule) -> Result<String, StoreError> {
    serde_json::to_string(rule).map_err(|e| StoreError::Corrupt(format!("fault rule {}: {e}", rule.id)))
}

/// A rule from its stored text.
pub(crate) fn decode(text: &str) -> Result<FaultRule, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("fault rule: {e}")))
}

/// What the `remaining` column starts at: the count of a counted rule, else nothing.
pub(crate) fn initial_remaining(rule: &FaultRule) -> Option<i64> {
    match rule.limit {
        FaultLimit::Requests { count } => Some(i64::from(count)),
        _ => None,
    }
}
