//! Admitting a backfill's Jobs one at a time against its [`Budget`]: the rule in the module
//! notes of [`crate::quota`], what is short when a Job does not fit now ([`Refusal`]), and why
//! one can never fit ([`NeverFits`]). Pure.

use super::{Amounts, Budget, Charge, Milli, PodDemand, quantity};

/// Not enough room for one Job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shortfall {
    pub key: String,
    pub needed: Milli,
    pub free: Milli,
}

impl Shortfall {
    /// For example "requests.cpu needed 1, free 0.5".
    pub fn describe(&self) -> String {
        format!(
            "{} needed {}, free {}",
            self.key,
            quantity::format(&self.key, self.needed),
            quantity::format(&self.key, self.free)
        )
    }
}

/// Why a Job is not admitted now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The quota has no headroom beyond the reserve for it.
    Quota(Shortfall),
    /// The backfill's own `limits` are used up.
    Limit(Shortfall),
}

/// Why a Job can never be admitted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NeverFits {
    /// Its charge exceeds `hard - reserve`; `free` holds that ceiling.
    Quota(Shortfall),
    /// Its charge exceeds the backfill's own `limits`; `free` holds the limit.
    Limit(Shortfall),
    /// The quota tracks this key, and the pod sets no value for it (nor does a LimitRange).
    Unspecified { key: String },
}

impl NeverFits {
    /// A message for the `QuotaNeverFits` condition.
    pub fn describe(&self, quota: &str) -> String {
        match self {
            NeverFits::Quota(s) => format!(
                "{} needed {}, but ResourceQuota {quota} allows at most {} beyond the reserve",
                s.key,
                quantity::format(&s.key, s.needed),
                quantity::format(&s.key, s.free)
            ),
            NeverFits::Limit(s) => format!(
                "{} needed {}, but spec.budget.limits allows {}",
                s.key,
                quantity::format(&s.key, s.needed),
                quantity::format(&s.key, s.free)
            ),
            NeverFits::Unspecified { key } => format!(
                "ResourceQuota {quota} tracks {key}, which a container sets no value for and no LimitRange defaults: the API server would refuse the pod"
            ),
        }
    }
}

/// The admissions of one decision: every admitted Job is charged against the budget, so the
/// next one sees what is left.
#[derive(Clone, Debug)]
pub struct Admission<'a> {
    budget: &'a Budget,
    taken: Amounts,
}

impl<'a> Admission<'a> {
    pub fn new(budget: &'a Budget) -> Self {
        Self { budget, taken: Amounts::new() }
    }

    /// Whether a Job with `demand` can never be admitted, whatever else runs.
    pub fn never_fits(&self, demand: &PodDemand) -> Option<NeverFits> {
        if let Some(quota) = &self.budget.quota {
            for key in quota.state.hard.keys() {
                match demand.charge(key) {
                    Charge::Unspecified => return Some(NeverFits::Unspecified { key: key.clone() }),
                    Charge::Amount(needed) if needed > quota.ceiling(key) => {
                        return Some(NeverFits::Quota(Shortfall {
                            key: key.clone(),
                            needed,
                            free: quota.ceiling(key),
                        }));
                    }
                    Charge::Amount(_) => {}
                }
            }
        }
        for (key, limit) in self.budget.limits.iter().flatten() {
            let needed = demand.amount(key);
            if needed > *limit {
                return Some(NeverFits::Limit(Shortfall { key: key.clone(), needed, free: *limit }));
            }
        }
        None
    }

    /// Headroom left for `key` under the quota (beyond the reserve) after this decision's
    /// admissions; `None` when no quota tracks it.
    pub fn quota_free(&self, key: &str) -> Option<Milli> {
        let quota = self.budget.quota.as_ref()?;
        quota.state.hard.contains_key(key).then(|| quota.free(key) - self.taken(key))
    }

    fn taken(&self, key: &str) -> Milli {
        self.taken.get(key).copied().unwrap_or(0)
    }

    /// Admits a Job with `demand` if it fits, charging it; otherwise says why not.
    pub fn try_admit(&mut self, demand: &PodDemand) -> Result<(), Refusal> {
        if let Some(quota) = &self.budget.quota {
            for key in quota.state.hard.keys() {
                let needed = demand.amount(key);
                let free = quota.free(key) - self.taken(key);
                if needed > 0 && needed > free {
                    return Err(Refusal::Quota(Shortfall { key: key.clone(), needed, free }));
                }
            }
        }
        for (key, limit) in self.budget.limits.iter().flatten() {
            let needed = demand.amount(key);
            let own = self.budget.own_in_use.get(key).copied().unwrap_or(0);
            let free = limit - own - self.taken(key);
            if needed > 0 && needed > free {
                return Err(Refusal::Limit(Shortfall { key: key.clone(), needed, free }));
            }
        }
        let keys = self
            .budget
            .quota
            .iter()
            .flat_map(|q| q.state.hard.keys())
            .chain(self.budget.limits.iter().flat_map(|l| l.keys()));
        let keys: std::collections::BTreeSet<String> = keys.cloned().collect();
        for key in keys {
            *self.taken.entry(key.clone()).or_insert(0) += demand.amount(&key);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quota::*;

    const CPU: &str = "requests.cpu";

    fn amounts(pairs: &[(&str, Milli)]) -> Amounts {
        pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }

    /// A pod requesting `millicores`.
    fn pod(millicores: Milli) -> PodDemand {
        PodDemand { requests: amounts(&[("cpu", millicores), ("memory", 1 << 30)]), ..Default::default() }
    }

    fn budget(hard: Milli, used: Milli, reserve: Milli, uncounted: Milli) -> Budget {
        Budget {
            quota: Some(QuotaBudget {
                state: QuotaState { name: "q".into(), hard: amounts(&[(CPU, hard)]), used: amounts(&[(CPU, used)]) },
                reserve: amounts(&[(CPU, reserve)]),
                uncounted: amounts(&[(CPU, uncounted)]),
                committed: Amounts::new(),
            }),
            ..Default::default()
        }
    }

    /// How many 1-CPU Jobs one decision admits.
    fn admitted(budget: &Budget) -> usize {
        let mut admission = Admission::new(budget);
        (0..100).take_while(|_| admission.try_admit(&pod(1000)).is_ok()).count()
    }

    #[test]
    fn the_issue_example_admits_three_and_keeps_one_cpu_for_scheduled_runs() {
        // Quota 4 CPU, reserve 1 CPU, steps of 1 CPU: three at a time.
        let b = budget(4000, 0, 1000, 0);
        assert_eq!(admitted(&b), 3);
        let mut admission = Admission::new(&b);
        for _ in 0..3 {
            admission.try_admit(&pod(1000)).unwrap();
        }
        assert_eq!(
            admission.try_admit(&pod(1000)),
            Err(Refusal::Quota(Shortfall { key: CPU.into(), needed: 1000, free: 0 }))
        );
        assert_eq!(admission.quota_free(CPU), Some(0));
    }

    #[test]
    fn scheduled_runs_keep_the_reserve_whatever_the_backfill_admits() {
        // For every state, after the backfill admitted all it could, what is left for others
        // (hard - used - uncounted - admitted) is at least the reserve, or the backfill admitted
        // nothing because others had already gone beyond it.
        for hard in [2000, 4000, 16000] {
            for reserve in [0, 500, 1000, 3000] {
                for used in (0..=hard).step_by(500) {
                    for uncounted in [0, 500, 1000] {
                        let b = budget(hard, used, reserve, uncounted);
                        let n = admitted(&b) as Milli;
                        let left = hard - used - uncounted - n * 1000;
                        assert!(
                            left >= reserve || n == 0,
                            "hard {hard} used {used} uncounted {uncounted} reserve {reserve}: admitted {n}, left {left}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn the_backfill_progresses_whenever_there_is_headroom_beyond_the_reserve() {
        // Headroom beyond the reserve of at least one Job means at least one admission, no matter
        // who fills `used` (the backfill itself or scheduled runs).
        for used in (0..=4000).step_by(250) {
            let b = budget(4000, used, 1000, 0);
            let beyond = 4000 - used - 1000;
            assert_eq!(admitted(&b) as Milli, (beyond / 1000).max(0), "used {used}");
        }
        // Scheduled runs using more than the reserve: the backfill waits, then resumes.
        assert_eq!(admitted(&budget(4000, 3500, 1000, 0)), 0);
        assert_eq!(admitted(&budget(4000, 2000, 1000, 0)), 1);
    }

    #[test]
    fn pods_not_yet_counted_by_the_quota_are_charged() {
        assert_eq!(admitted(&budget(4000, 0, 1000, 2000)), 1);
        let pods = [pod(1000), pod(500)];
        let hard = amounts(&[(CPU, 4000), ("pods", 10_000), ("count/jobs.batch", 10_000)]);
        let u = uncounted(&pods, &hard);
        assert_eq!(u[CPU], 1500);
        assert_eq!(u["pods"], 2000);
        assert_eq!(u["count/jobs.batch"], 0, "Jobs are counted when they are created");
    }

    #[test]
    fn a_quota_count_that_lags_behind_sluice_pods_does_not_open_the_reserve() {
        // Three 1-CPU Sluice pods run, but the quota controller recomputed `used` before it saw
        // the newest one: `used` says 2. Sluice's own count of its unfinished Jobs holds.
        let mut b = budget(4000, 2000, 1000, 0);
        b.quota.as_mut().unwrap().committed = amounts(&[(CPU, 3000)]);
        assert_eq!(admitted(&b), 0);
        // Once one of them finished, one more fits, whichever count is behind.
        b.quota.as_mut().unwrap().committed = amounts(&[(CPU, 2000)]);
        assert_eq!(admitted(&b), 1);
        let committed = uncounted(&[pod(1000), pod(1000)], &amounts(&[(CPU, 0), ("count/jobs.batch", 0)]));
        assert_eq!(committed["count/jobs.batch"], 0);
    }

    #[test]
    fn a_job_larger_than_hard_minus_reserve_never_fits() {
        let b = budget(4000, 0, 1000, 0);
        let admission = Admission::new(&b);
        assert_eq!(admission.never_fits(&pod(3000)), None);
        let never = admission.never_fits(&pod(3500)).unwrap();
        assert_eq!(never, NeverFits::Quota(Shortfall { key: CPU.into(), needed: 3500, free: 3000 }));
        assert_eq!(
            never.describe("compute"),
            "requests.cpu needed 3.5, but ResourceQuota compute allows at most 3 beyond the reserve"
        );
        let bare = PodDemand { missing_requests: ["cpu".to_string()].into(), ..Default::default() };
        assert_eq!(admission.never_fits(&bare), Some(NeverFits::Unspecified { key: CPU.into() }));
    }

    #[test]
    fn own_limits_bound_the_backfill_share() {
        let b = Budget { quota: None, limits: Some(amounts(&[(CPU, 2500)])), own_in_use: amounts(&[(CPU, 1000)]) };
        let mut admission = Admission::new(&b);
        assert!(admission.try_admit(&pod(1000)).is_ok());
        assert_eq!(
            admission.try_admit(&pod(1000)),
            Err(Refusal::Limit(Shortfall { key: CPU.into(), needed: 1000, free: 500 }))
        );
        assert_eq!(
            admission.never_fits(&pod(3000)),
            Some(NeverFits::Limit(Shortfall { key: CPU.into(), needed: 3000, free: 2500 }))
        );
        // No quota and no limits: only parallelism bounds the backfill.
        let unbounded = Budget::default();
        assert_eq!(admitted(&unbounded), 100);
    }

    #[test]
    fn quota_state_takes_the_lower_hard_and_canonical_keys() {
        let q: ResourceQuota = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "compute"},
            "spec": {"hard": {"cpu": "8", "requests.memory": "16Gi", "count/jobs.batch": "200"}},
            "status": {"hard": {"requests.cpu": "6", "requests.memory": "16Gi"}, "used": {"requests.cpu": "1500m"}}
        }))
        .unwrap();
        let s = quota_state(&q);
        assert_eq!(s.name, "compute");
        assert_eq!(s.hard[CPU], 6000);
        assert_eq!(s.hard["count/jobs.batch"], 200_000);
        assert_eq!(s.used[CPU], 1500);
        let reserve = parse_amounts(&[("cpu".to_string(), Quantity("1".into()))].into(), Round::Up).unwrap();
        assert_eq!(reserve[CPU], 1000);
        assert!(parse_amounts(&[("cpu".to_string(), Quantity("lots".into()))].into(), Round::Up).is_err());
        assert_eq!(total(&[pod(250), pod(250)], &amounts(&[(CPU, 0)]))[CPU], 500);
    }
}
