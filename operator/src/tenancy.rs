//! Who a step's pods may run as. A step names a ServiceAccount (`serviceAccountName`, or the
//! deprecated `serviceAccount` when that is unset, as the API server reads a pod spec) only when
//! the namespace allows that account for Sluice steps: the ServiceAccount carries the label
//! `sluice.dev/steps-allowed: "true"`. A step that names none, or `default`, runs under the
//! namespace's `default` account (without a token unless its template asks for one, see
//! `jobs::build`). Labelling a ServiceAccount needs `patch` on it, which only roles that may
//! already act as it hold (`edit`, `admin`: they may create pods and impersonate ServiceAccounts
//! there), so the label lets nobody do more than the labeller could.
//!
//! The same rule is checked at apply time by the chart's ValidatingAdmissionPolicy and at
//! reconcile time by the operator (this module's `refused`). Pure.

use k8s_openapi::api::core::v1::PodTemplateSpec;

use crate::api::StepSpec;

/// The label that allows a ServiceAccount for Sluice steps, and its value.
pub const ALLOW_LABEL: &str = "sluice.dev/steps-allowed";
pub const ALLOW_VALUE: &str = "true";

/// The account every pod may run as, allowed without a label.
pub const DEFAULT_ACCOUNT: &str = "default";

/// The phrase that marks a problem as a refused ServiceAccount (see `is_refusal`); the
/// admission policy's message says the same.
const NOT_ALLOWED: &str = "is not allowed for Sluice steps";

/// A step whose account the namespace does not allow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refused {
    pub step: String,
    pub account: String,
}

/// The ServiceAccount a step's pods run as when it is not the namespace default: the pod
/// spec's `serviceAccountName`, else its deprecated `serviceAccount` (the API server's reading).
pub fn account(template: &PodTemplateSpec) -> Option<&str> {
    let spec = template.spec.as_ref()?;
    let name = spec.service_account_name.as_deref().filter(|n| !n.is_empty());
    let name = name.or(spec.service_account.as_deref().filter(|n| !n.is_empty()))?;
    (name != DEFAULT_ACCOUNT).then_some(name)
}

/// The steps whose account `allowed` (is this ServiceAccount of the namespace labelled?) refuses.
pub fn refused<'a>(steps: impl IntoIterator<Item = &'a StepSpec>, allowed: impl Fn(&str) -> bool) -> Vec<Refused> {
    steps
        .into_iter()
        .filter_map(|step| {
            let account = account(&step.template)?;
            (!allowed(account)).then(|| Refused { step: step.name.clone(), account: account.to_string() })
        })
        .collect()
}

/// The problem for a refused step, as `Ready` and the Warning Event show it.
pub fn problem(refused: &Refused, namespace: &str) -> String {
    format!(
        "spec.steps[{}]: ServiceAccount {:?} {NOT_ALLOWED} in namespace {namespace:?}; the namespace owner allows \
         it with the label {ALLOW_LABEL}={ALLOW_VALUE} on the ServiceAccount (a step without serviceAccountName runs \
         as default, with no token)",
        refused.step, refused.account
    )
}

/// Whether a problem says that a step's ServiceAccount is not allowed.
pub fn is_refusal(problem: &str) -> bool {
    problem.contains(NOT_ALLOWED)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(name: &str, pod: serde_json::Value) -> StepSpec {
        let mut spec = serde_json::json!({"containers": [{"name": "main", "image": "busybox"}]});
        spec.as_object_mut().unwrap().extend(pod.as_object().unwrap().clone());
        serde_json::from_value(serde_json::json!({
            "name": name, "kind": "Extract", "template": {"spec": spec}
        }))
        .unwrap()
    }

    #[test]
    fn the_account_is_read_as_the_api_server_reads_it() {
        assert_eq!(account(&step("a", serde_json::json!({})).template), None);
        assert_eq!(account(&step("a", serde_json::json!({"serviceAccountName": "default"})).template), None);
        assert_eq!(account(&step("a", serde_json::json!({"serviceAccountName": ""})).template), None);
        assert_eq!(account(&step("a", serde_json::json!({"serviceAccountName": "etl"})).template), Some("etl"));
        assert_eq!(account(&step("a", serde_json::json!({"serviceAccount": "old"})).template), Some("old"));
        let both = step("a", serde_json::json!({"serviceAccountName": "etl", "serviceAccount": "old"}));
        assert_eq!(account(&both.template), Some("etl"), "serviceAccountName wins");
        let empty_name = step("a", serde_json::json!({"serviceAccountName": "", "serviceAccount": "old"}));
        assert_eq!(account(&empty_name.template), Some("old"));
        let no_spec: StepSpec =
            serde_json::from_value(serde_json::json!({"name": "a", "kind": "Extract", "template": {}})).unwrap();
        assert_eq!(account(&no_spec.template), None);
    }

    #[test]
    fn only_unlabelled_accounts_are_refused() {
        let steps = [
            step("plain", serde_json::json!({})),
            step("ok", serde_json::json!({"serviceAccountName": "etl-allowed"})),
            step("bad", serde_json::json!({"serviceAccountName": "db-admin"})),
            step("old", serde_json::json!({"serviceAccount": "db-admin"})),
        ];
        let refused = refused(&steps, |sa| sa == "etl-allowed");
        assert_eq!(
            refused,
            vec![
                Refused { step: "bad".into(), account: "db-admin".into() },
                Refused { step: "old".into(), account: "db-admin".into() },
            ]
        );
        let message = problem(&refused[0], "team-a");
        assert!(message.starts_with("spec.steps[bad]: ServiceAccount \"db-admin\" is not allowed"), "{message}");
        assert!(message.contains("sluice.dev/steps-allowed=true"), "{message}");
        assert!(is_refusal(&message));
        assert!(!is_refusal("spec.schedule: bad"));
    }
}
