//! What one pod asks of a ResourceQuota: the effective pod requests and limits computed the way
//! the API server charges them, with the namespace LimitRange defaults filled in for containers
//! that set none. Pure.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{Container, LimitRangeSpec, PodSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::quantity::{self, Milli, ONE, Round};

/// Resources whose requests and limits a ResourceQuota makes mandatory on every container when
/// it tracks them (the API server refuses a pod whose container sets neither value nor default).
const CONSTRAINED: [&str; 2] = ["cpu", "memory"];

/// Per-container defaults of the namespace's LimitRanges (`type: Container` items).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContainerDefaults {
    /// `defaultRequest` (falling back to `default`, as the API server defaults it), per resource.
    pub requests: BTreeMap<String, Milli>,
    /// `default` limits per resource.
    pub limits: BTreeMap<String, Milli>,
}

impl ContainerDefaults {
    /// The defaults of all LimitRanges together. With several LimitRanges the API server applies
    /// the first one that sets a value; which one is first is not specified, so the largest value
    /// is taken: requests are then never underestimated.
    pub fn from_limit_ranges<'a>(specs: impl IntoIterator<Item = &'a LimitRangeSpec>) -> Self {
        let mut out = Self::default();
        for item in specs.into_iter().flat_map(|s| s.limits.iter()).filter(|i| i.type_ == "Container") {
            let default = item.default.as_ref();
            let default_request = item.default_request.as_ref();
            for (name, q) in default.into_iter().flatten() {
                raise(&mut out.limits, name, q);
            }
            let mut names: BTreeSet<&String> = default.into_iter().flat_map(|m| m.keys()).collect();
            names.extend(default_request.into_iter().flat_map(|m| m.keys()));
            for name in names {
                if let Some(q) = default_request.and_then(|m| m.get(name)).or_else(|| default.and_then(|m| m.get(name)))
                {
                    raise(&mut out.requests, name, q);
                }
            }
        }
        out
    }
}

fn raise(map: &mut BTreeMap<String, Milli>, name: &str, q: &Quantity) {
    if let Some(v) = quantity::parse(&q.0, Round::Up) {
        let entry = map.entry(name.to_string()).or_insert(v);
        *entry = (*entry).max(v);
    }
}

/// What one pod is charged, per resource name (`cpu`, `memory`, `nvidia.com/gpu`, ...).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodDemand {
    /// Effective pod requests: max(sum of app containers and sidecars, largest init container
    /// plus sidecars) plus pod overhead; pod-level requests win where set.
    pub requests: BTreeMap<String, Milli>,
    /// Effective pod limits, computed the same way.
    pub limits: BTreeMap<String, Milli>,
    /// `cpu`/`memory` for which some container has neither a request nor a default.
    pub missing_requests: BTreeSet<String>,
    /// `cpu`/`memory` for which some container has neither a limit nor a default.
    pub missing_limits: BTreeSet<String>,
}

/// What a pod is charged against one quota key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Charge {
    /// This much (0 for keys a pod is not charged against, such as `services`).
    Amount(Milli),
    /// The quota tracks a value the pod does not set: the API server would refuse the pod.
    Unspecified,
}

impl PodDemand {
    /// The charge against quota key `key` (canonical, see [`canonical_key`]). Each Job has one
    /// pod (`pods`), and is one `count/jobs.batch`.
    pub fn charge(&self, key: &str) -> Charge {
        let key = canonical_key(key);
        if key == "pods" || key == "count/jobs.batch" {
            return Charge::Amount(ONE);
        }
        let (values, missing, name) = if let Some(name) = key.strip_prefix("requests.") {
            (&self.requests, &self.missing_requests, name)
        } else if let Some(name) = key.strip_prefix("limits.") {
            (&self.limits, &self.missing_limits, name)
        } else {
            return Charge::Amount(0);
        };
        if missing.contains(name) {
            Charge::Unspecified
        } else {
            Charge::Amount(values.get(name).copied().unwrap_or(0))
        }
    }

    /// The charge as an amount, counting an unspecified value as 0 (for own-usage sums, where the
    /// quota's refusal is reported separately).
    pub fn amount(&self, key: &str) -> Milli {
        match self.charge(key) {
            Charge::Amount(v) => v,
            Charge::Unspecified => 0,
        }
    }
}

/// The quota key a name stands for: `cpu`, `memory` and `ephemeral-storage` mean their
/// `requests.` form, `count/pods` means `pods`.
pub fn canonical_key(key: &str) -> String {
    match key {
        "cpu" | "memory" | "ephemeral-storage" => format!("requests.{key}"),
        "count/pods" => "pods".to_string(),
        other => other.to_string(),
    }
}

/// The demand of a pod with `spec`, as the quota admission would charge it after the LimitRange
/// admission filled in `defaults`.
pub fn pod_demand(spec: &PodSpec, defaults: &ContainerDefaults) -> PodDemand {
    let mut demand = PodDemand::default();
    let inits = spec.init_containers.as_deref().unwrap_or_default();
    let all = spec.containers.iter().chain(inits.iter());
    let pod_level = spec.resources.as_ref();
    for (kind, explicit_pod) in [
        (Kind::Request, pod_level.and_then(|r| r.requests.as_ref())),
        (Kind::Limit, pod_level.and_then(|r| r.limits.as_ref())),
    ] {
        let mut names: BTreeSet<String> = CONSTRAINED.iter().map(|s| s.to_string()).collect();
        for c in all.clone() {
            names.extend(container_values(c, kind, defaults).into_keys());
        }
        names.extend(kind.defaults(defaults).keys().cloned());
        for name in names {
            let pod_value = explicit_pod.and_then(|m| m.get(&name)).and_then(|q| quantity::parse(&q.0, Round::Up));
            let (value, missing) = match pod_value {
                Some(v) => (v, false),
                None => effective(spec, &name, kind, defaults),
            };
            let overhead =
                spec.overhead.as_ref().and_then(|o| o.get(&name)).and_then(|q| quantity::parse(&q.0, Round::Up));
            let total = value + overhead.unwrap_or(0);
            let (values, missing_set) = match kind {
                Kind::Request => (&mut demand.requests, &mut demand.missing_requests),
                Kind::Limit => (&mut demand.limits, &mut demand.missing_limits),
            };
            if total != 0 {
                values.insert(name.clone(), total);
            }
            if missing && CONSTRAINED.contains(&name.as_str()) {
                missing_set.insert(name);
            }
        }
    }
    demand
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Request,
    Limit,
}

impl Kind {
    fn defaults(self, defaults: &ContainerDefaults) -> &BTreeMap<String, Milli> {
        match self {
            Kind::Request => &defaults.requests,
            Kind::Limit => &defaults.limits,
        }
    }
}

/// One container's values of `kind`: requests fall back to the container's limits (API
/// defaulting) and then to the LimitRange default; limits fall back to the LimitRange default.
/// Unparseable quantities are left out (and so count as missing).
fn container_values(c: &Container, kind: Kind, defaults: &ContainerDefaults) -> BTreeMap<String, Milli> {
    let resources = c.resources.as_ref();
    let requests = resources.and_then(|r| r.requests.as_ref());
    let limits = resources.and_then(|r| r.limits.as_ref());
    let mut out: BTreeMap<String, Milli> = kind.defaults(defaults).clone();
    let layers: Vec<&BTreeMap<String, Quantity>> = match kind {
        Kind::Request => limits.into_iter().chain(requests).collect(),
        Kind::Limit => limits.into_iter().collect(),
    };
    for layer in layers {
        for (name, q) in layer {
            match quantity::parse(&q.0, Round::Up) {
                Some(v) => out.insert(name.clone(), v),
                None => out.remove(name),
            };
        }
    }
    out
}

/// The pod's effective value of resource `name` and whether some container lacks it.
fn effective(spec: &PodSpec, name: &str, kind: Kind, defaults: &ContainerDefaults) -> (Milli, bool) {
    let mut missing = false;
    let mut value_of = |c: &Container| -> Milli {
        let v = container_values(c, kind, defaults).get(name).copied();
        missing |= v.is_none();
        v.unwrap_or(0)
    };
    let app: Milli = spec.containers.iter().map(&mut value_of).sum();
    let inits = spec.init_containers.as_deref().unwrap_or_default();
    let is_sidecar = |c: &&Container| c.restart_policy.as_deref() == Some("Always");
    let sidecars: Milli = inits.iter().filter(is_sidecar).map(&mut value_of).sum();
    let largest_init: Milli = inits.iter().filter(|c| !is_sidecar(c)).map(&mut value_of).max().unwrap_or(0);
    ((app + sidecars).max(largest_init + sidecars), missing)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(value: serde_json::Value) -> PodSpec {
        serde_json::from_value(value).unwrap()
    }

    fn limit_range(value: serde_json::Value) -> LimitRangeSpec {
        serde_json::from_value(value).unwrap()
    }

    const GI: Milli = (1 << 30) * ONE;

    #[test]
    fn containers_are_summed_and_init_containers_take_the_max() {
        let spec = pod(serde_json::json!({
            "initContainers": [
                {"name": "migrate", "image": "x", "resources": {"requests": {"cpu": "3", "memory": "1Gi"}}},
                {"name": "proxy", "image": "x", "restartPolicy": "Always", "resources": {"requests": {"cpu": "100m", "memory": "1Gi"}}}
            ],
            "containers": [
                {"name": "a", "image": "x", "resources": {"requests": {"cpu": "1", "memory": "2Gi"}}},
                {"name": "b", "image": "x", "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}}}
            ]
        }));
        let d = pod_demand(&spec, &ContainerDefaults::default());
        // cpu: max(1.5 + 0.1, 3 + 0.1); memory: max(3 + 1, 1 + 1) Gi.
        assert_eq!(d.requests["cpu"], 3100);
        assert_eq!(d.requests["memory"], 4 * GI);
        assert_eq!(d.charge("requests.cpu"), Charge::Amount(3100));
        assert_eq!(d.charge("cpu"), Charge::Amount(3100));
        assert_eq!(d.charge("pods"), Charge::Amount(ONE));
        assert_eq!(d.charge("count/jobs.batch"), Charge::Amount(ONE));
        assert_eq!(d.charge("services"), Charge::Amount(0));
        assert!(d.missing_requests.is_empty());
        assert_eq!(d.missing_limits, BTreeSet::from(["cpu".to_string(), "memory".to_string()]));
        assert_eq!(d.charge("limits.cpu"), Charge::Unspecified);
    }

    #[test]
    fn limit_range_defaults_fill_containers_without_requests() {
        let defaults = ContainerDefaults::from_limit_ranges(&[limit_range(serde_json::json!({"limits": [
            {"type": "Container", "defaultRequest": {"cpu": "100m"}, "default": {"cpu": "1", "memory": "512Mi"}},
            {"type": "Pod", "max": {"cpu": "64"}}
        ]}))]);
        // defaultRequest where set, else `default` (as the API server defaults a LimitRange).
        assert_eq!(defaults.requests["cpu"], 100);
        assert_eq!(defaults.requests["memory"], GI / 2);
        assert_eq!(defaults.limits["cpu"], 1000);
        let spec = pod(serde_json::json!({"containers": [
            {"name": "bare", "image": "x"},
            {"name": "limited", "image": "x", "resources": {"limits": {"cpu": "2"}}},
            {"name": "explicit", "image": "x", "resources": {"requests": {"cpu": "250m", "memory": "1Gi"}}}
        ]}));
        let d = pod_demand(&spec, &defaults);
        // bare: default 100m; limited: request = its limit 2; explicit: 250m.
        assert_eq!(d.requests["cpu"], 2350);
        assert_eq!(d.requests["memory"], GI / 2 + GI / 2 + GI);
        assert_eq!(d.limits["cpu"], 1000 + 2000 + 1000);
        assert!(d.missing_requests.is_empty() && d.missing_limits.is_empty());
    }

    #[test]
    fn several_limit_ranges_take_the_largest_default() {
        let defaults = ContainerDefaults::from_limit_ranges(&[
            limit_range(serde_json::json!({"limits": [{"type": "Container", "defaultRequest": {"cpu": "100m"}}]})),
            limit_range(serde_json::json!({"limits": [{"type": "Container", "defaultRequest": {"cpu": "300m"}}]})),
        ]);
        assert_eq!(defaults.requests["cpu"], 300);
    }

    #[test]
    fn missing_requests_without_defaults_are_unspecified() {
        let spec = pod(serde_json::json!({"containers": [
            {"name": "a", "image": "x", "resources": {"requests": {"cpu": "1"}}},
            {"name": "b", "image": "x"}
        ]}));
        let d = pod_demand(&spec, &ContainerDefaults::default());
        assert_eq!(d.requests["cpu"], 1000);
        assert_eq!(d.charge("requests.cpu"), Charge::Unspecified);
        assert_eq!(d.amount("requests.cpu"), 0);
        assert_eq!(d.charge("requests.memory"), Charge::Unspecified);
        // Extended resources are charged only when requested.
        assert_eq!(d.charge("requests.nvidia.com/gpu"), Charge::Amount(0));
    }

    #[test]
    fn pod_level_resources_and_overhead() {
        let spec = pod(serde_json::json!({
            "resources": {"requests": {"cpu": "2"}},
            "overhead": {"cpu": "250m"},
            "containers": [{"name": "a", "image": "x", "resources": {"requests": {"memory": "1Gi"}}}]
        }));
        let d = pod_demand(&spec, &ContainerDefaults::default());
        assert_eq!(d.requests["cpu"], 2250);
        assert!(!d.missing_requests.contains("cpu"));
        assert_eq!(d.requests["memory"], GI);
    }

    #[test]
    fn canonical_keys() {
        assert_eq!(canonical_key("cpu"), "requests.cpu");
        assert_eq!(canonical_key("memory"), "requests.memory");
        assert_eq!(canonical_key("count/pods"), "pods");
        assert_eq!(canonical_key("limits.cpu"), "limits.cpu");
    }
}
