//! `spec.pauseWhen.datasetsStale`: protected Datasets whose freshness pauses a backfill's
//! admissions. A protected Dataset holds the backfill while its `Fresh` condition (as the
//! Dataset controller writes it, `plan::dataset`) says `Stale` or `Warning`, and while no Dataset
//! of that name exists: a misspelt or deleted name must not silently switch the protection off,
//! so it pauses with its own reason until the name is fixed or the Dataset exists. A Dataset
//! never produced (`Unknown`) or without an objective holds nothing. Pure.

use crate::api::conditions::{self, types};
use crate::api::{DatasetStatus, FreshnessState, Throttle};

use super::summary::{reasons, throttle};

/// Why a protected Dataset holds the backfill.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Hold {
    /// `Stale` or `Warning`, with the `Fresh` condition's reason and message.
    Stale { state: String, message: String },
    /// No Dataset of that name in the namespace.
    Missing,
}

/// A protected Dataset that holds the backfill.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProtectedHold {
    pub dataset: String,
    pub hold: Hold,
}

/// Whether protected Dataset `name` holds the backfill: `found` is false when no Dataset of
/// that name exists; `status` is its status when it has one.
pub fn hold(name: &str, found: bool, status: Option<&DatasetStatus>) -> Option<ProtectedHold> {
    if !found {
        return Some(ProtectedHold { dataset: name.to_string(), hold: Hold::Missing });
    }
    let status = status?;
    let fresh = conditions::find(&status.conditions, types::FRESH);
    let state = match fresh.map(|c| c.reason.as_str()) {
        Some(r @ ("Stale" | "Warning")) => r.to_string(),
        Some(_) => return None,
        // No condition yet: the freshness state the same controller writes beside it.
        None => match status.freshness.as_ref().map(|f| f.state) {
            Some(FreshnessState::Stale) => "Stale".into(),
            Some(FreshnessState::Warning) => "Warning".into(),
            _ => return None,
        },
    };
    let message = fresh.map(|c| c.message.clone()).unwrap_or_default();
    Some(ProtectedHold { dataset: name.to_string(), hold: Hold::Stale { state, message } })
}

/// The throttle for the protected Datasets that hold the backfill (not empty), naming each:
/// `ProtectedDatasetStale` when one is Stale or Warning, else `ProtectedDatasetMissing`.
pub fn throttle_for(holds: &[ProtectedHold]) -> Throttle {
    let stale: Vec<String> = holds
        .iter()
        .filter_map(|h| match &h.hold {
            Hold::Stale { state, message } if message.is_empty() => Some(format!("Dataset {} is {state}", h.dataset)),
            Hold::Stale { state, message } => Some(format!("Dataset {} is {state} ({message})", h.dataset)),
            Hold::Missing => None,
        })
        .collect();
    let missing: Vec<&str> = holds.iter().filter(|h| h.hold == Hold::Missing).map(|h| h.dataset.as_str()).collect();
    let mut parts = stale.clone();
    if !missing.is_empty() {
        parts.push(format!("no Dataset named {} exists", missing.join(", ")));
    }
    let reason = if stale.is_empty() { reasons::PROTECTED_DATASET_MISSING } else { reasons::PROTECTED_DATASET_STALE };
    throttle(
        reason,
        format!("{}: spec.pauseWhen.datasetsStale holds new partitions; running ones continue", parts.join("; ")),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(reason: Option<&str>, state: Option<&str>) -> DatasetStatus {
        let mut s = serde_json::json!({});
        if let Some(reason) = reason {
            let ok = if reason == "Stale" { "False" } else { "True" };
            s["conditions"] = serde_json::json!([{"type": "Fresh", "status": ok, "reason": reason,
                "message": format!("data is {reason}"), "lastTransitionTime": "2026-11-24T12:00:00Z"}]);
        }
        if let Some(state) = state {
            s["freshness"] = serde_json::json!({"state": state});
        }
        serde_json::from_value(s).unwrap()
    }

    #[test]
    fn stale_and_warning_hold_fresh_unknown_and_no_objective_do_not() {
        let held = |reason, state| hold("orders", true, Some(&status(reason, state))).map(|h| h.hold);
        assert_eq!(
            held(Some("Stale"), Some("Stale")),
            Some(Hold::Stale { state: "Stale".into(), message: "data is Stale".into() })
        );
        assert_eq!(
            held(Some("Warning"), Some("Warning")),
            Some(Hold::Stale { state: "Warning".into(), message: "data is Warning".into() })
        );
        assert_eq!(held(Some("Fresh"), Some("Fresh")), None);
        assert_eq!(held(Some("NoObjective"), Some("Fresh")), None);
        assert_eq!(held(Some("NeverProduced"), Some("Unknown")), None);
        // Only the state written so far: it decides.
        assert!(matches!(held(None, Some("Stale")), Some(Hold::Stale { .. })));
        assert_eq!(held(None, None), None);
        assert_eq!(hold("orders", true, None), None, "a Dataset without status yet holds nothing");
    }

    #[test]
    fn a_missing_dataset_holds_with_its_own_reason() {
        let h = hold("ordres", false, None).unwrap();
        assert_eq!(h.hold, Hold::Missing);
        let t = throttle_for(&[h]);
        assert_eq!(t.reason, "ProtectedDatasetMissing");
        assert!(t.message.unwrap().contains("no Dataset named ordres exists"));
    }

    #[test]
    fn the_throttle_names_every_holding_dataset() {
        let holds = [
            hold("orders", true, Some(&status(Some("Stale"), None))).unwrap(),
            hold("users", true, Some(&status(Some("Warning"), None))).unwrap(),
            hold("gone", false, None).unwrap(),
        ];
        let t = throttle_for(&holds);
        assert_eq!(t.reason, "ProtectedDatasetStale", "a stale one wins over a missing one");
        let m = t.message.unwrap();
        for part in ["Dataset orders is Stale (data is Stale)", "Dataset users is Warning", "no Dataset named gone"] {
            assert!(m.contains(part), "{part} in {m}");
        }
    }
}
