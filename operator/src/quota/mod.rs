//! ResourceQuota headroom arithmetic for backfills. Pure: quotas, Jobs and LimitRanges are
//! passed in.
//!
//! # The admission rule
//! A backfill admits a Job (one pod) only when, for every resource `k` the referenced
//! ResourceQuota tracks,
//!
//! ```text
//! charge(k) <= hard(k) - reserve(k) - max(used(k) + uncounted(k), committed(k)) - admitted(k)
//! ```
//!
//! - `used` is the quota's `status.used`, read after the Job cache;
//! - `uncounted` are the charges of Sluice Jobs whose pods the quota has not counted yet (see
//!   [`in_flight`]);
//! - `committed` are the charges of every Sluice Job of the namespace whose pod has not finished,
//!   counted by the quota or not. `used` can briefly miss pods that exist: the quota controller
//!   recomputes it from its informer caches, which may not show a pod admitted a moment ago, and
//!   overwrites the count the admission had made. Sluice's own view of its Jobs bounds that;
//! - `admitted` is what this decision already admitted, and `reserve` the Backfill's
//!   `spec.budget.reserve`.
//!
//! With explicit `spec.budget.limits`, also `own(k) + charge(k) <= limits(k)`, where `own` is
//! what the backfill's unfinished Jobs request.
//!
//! The reserve rule that follows:
//! - **Scheduled runs keep the reserve**: a backfill never takes the last `reserve` of the quota.
//!   Whatever it admits, `hard - used - uncounted >= reserve` still holds afterwards (unless
//!   others already exceeded it), so scheduled runs that together request at most the reserve
//!   are never refused. (Pods in the namespace that are not Sluice's are known only through
//!   `used`; the reserve is also their margin while `used` lags.)
//! - **A backfill progresses whenever there is headroom beyond the reserve**: the rule does not
//!   ask whose pods fill `used`. Scheduled runs may use more than the reserve; the backfill then
//!   waits, and admits again as soon as `hard - used - uncounted - reserve` covers a Job.
//! - A Job whose charge exceeds `hard - reserve` (or `limits`) can never be admitted:
//!   [`NeverFits`], reported as `QuotaNeverFits`. So is a pod that lacks a request or limit the
//!   quota tracks, which the API server would refuse.

mod admission;
pub mod demand;
pub mod in_flight;
pub mod quantity;

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ResourceQuota;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

pub use admission::{Admission, NeverFits, Refusal, Shortfall};
pub use demand::{Charge, ContainerDefaults, PodDemand, canonical_key, pod_demand};
pub use in_flight::{InFlight, Launch, PodCharge, pod_charge};
pub use quantity::{Milli, Round};

/// Amounts by canonical quota key (`requests.cpu`, `limits.memory`, `pods`, ...).
pub type Amounts = BTreeMap<String, Milli>;

/// Object counts that the API server charges when the object is created, so a Job is never
/// "uncounted" for them.
const COUNTED_AT_CREATION: [&str; 1] = ["count/jobs.batch"];

/// Parses a map of quantities into canonical keys; the error names the first invalid entry.
pub fn parse_amounts(map: &BTreeMap<String, Quantity>, round: Round) -> Result<Amounts, String> {
    let mut out = Amounts::new();
    for (key, q) in map {
        let v = quantity::parse(&q.0, round).ok_or_else(|| format!("{key}: {:?} is not a quantity", q.0))?;
        *out.entry(canonical_key(key)).or_insert(0) += v;
    }
    Ok(out)
}

/// What a ResourceQuota enforces and has counted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QuotaState {
    pub name: String,
    /// The lower of `spec.hard` and `status.hard` per key (the quota controller syncs the
    /// latter, and until it has, the former is what will be enforced).
    pub hard: Amounts,
    pub used: Amounts,
}

/// The state of a ResourceQuota object. Hard limits are rounded down and usage up.
pub fn quota_state(quota: &ResourceQuota) -> QuotaState {
    let parse = |m: Option<&BTreeMap<String, Quantity>>, round| {
        let mut out = Amounts::new();
        for (key, q) in m.into_iter().flatten() {
            if let Some(v) = quantity::parse(&q.0, round) {
                out.insert(canonical_key(key), v);
            }
        }
        out
    };
    let spec_hard = parse(quota.spec.as_ref().and_then(|s| s.hard.as_ref()), Round::Down);
    let status = quota.status.as_ref();
    let status_hard = parse(status.and_then(|s| s.hard.as_ref()), Round::Down);
    let mut hard = spec_hard;
    for (key, v) in status_hard {
        let entry = hard.entry(key).or_insert(v);
        *entry = (*entry).min(v);
    }
    QuotaState {
        name: quota.metadata.name.clone().unwrap_or_default(),
        hard,
        used: parse(status.and_then(|s| s.used.as_ref()), Round::Up),
    }
}

/// The charges of `pods` for the keys of `hard`, leaving out object counts that the API server
/// charges when the object is created: what pods not counted yet (or not known to be counted)
/// will add to `used`.
pub fn uncounted<'a>(pods: impl IntoIterator<Item = &'a PodDemand>, hard: &Amounts) -> Amounts {
    let mut out: Amounts = hard.keys().map(|k| (k.clone(), 0)).collect();
    for pod in pods {
        for (key, sum) in out.iter_mut() {
            if !COUNTED_AT_CREATION.contains(&key.as_str()) {
                *sum += pod.amount(key);
            }
        }
    }
    out
}

/// The sum of the charges of `pods` for the keys of `keys`.
pub fn total<'a>(pods: impl IntoIterator<Item = &'a PodDemand>, keys: &Amounts) -> Amounts {
    let mut out: Amounts = keys.keys().map(|k| (k.clone(), 0)).collect();
    for pod in pods {
        for (key, sum) in out.iter_mut() {
            *sum += pod.amount(key);
        }
    }
    out
}

/// The quota side of a backfill's budget.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QuotaBudget {
    pub state: QuotaState,
    /// `spec.budget.reserve`, rounded up.
    pub reserve: Amounts,
    /// Charges of Sluice Jobs whose pods the quota has not counted yet.
    pub uncounted: Amounts,
    /// Charges of every Sluice Job of the namespace whose pod has not finished.
    pub committed: Amounts,
}

impl QuotaBudget {
    /// Headroom beyond the reserve for `key`:
    /// `hard - reserve - max(used + uncounted, committed)`.
    pub fn free(&self, key: &str) -> Milli {
        let get = |m: &Amounts| m.get(key).copied().unwrap_or(0);
        let taken = (get(&self.state.used) + get(&self.uncounted)).max(get(&self.committed));
        get(&self.state.hard) - get(&self.reserve) - taken
    }

    /// The most a single Job may ever be charged for `key`: `hard - reserve`.
    pub fn ceiling(&self, key: &str) -> Milli {
        self.state.hard.get(key).copied().unwrap_or(0) - self.reserve.get(key).copied().unwrap_or(0)
    }
}

/// Everything that bounds a backfill's admissions besides parallelism.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Budget {
    /// The referenced ResourceQuota, if any.
    pub quota: Option<QuotaBudget>,
    /// `spec.budget.limits`, rounded down.
    pub limits: Option<Amounts>,
    /// What the backfill's unfinished Jobs are charged, for the keys of `limits`.
    pub own_in_use: Amounts,
}
