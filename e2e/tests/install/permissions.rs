//! RBAC bookkeeping for the least-privilege check: which permission each API request of the
//! operator needs (read from its request log), and which permissions the chart's rules grant.

use std::collections::BTreeSet;

use serde_json::Value;

/// One permission as RBAC sees it: verb on `resource` (with `/subresource`) of an API group.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Permission {
    pub group: String,
    pub resource: String,
    pub verb: String,
}

impl std::fmt::Display for Permission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let group = if self.group.is_empty() { "core" } else { &self.group };
        write!(f, "{} {}/{}", self.verb, group, self.resource)
    }
}

/// A request of the operator, or the end of its response: the permission it needs and the object
/// name, if any.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Request {
    pub permission: Permission,
    pub namespace: Option<String>,
    pub name: Option<String>,
    /// `None` for the request itself; the HTTP status for the end of its response.
    pub status: Option<u16>,
}

/// Maps an HTTP request to the permission it needs; `None` for non-resource URLs (`/version`).
pub fn permission_of(method: &str, url: &str) -> Option<(Permission, Option<String>, Option<String>)> {
    let path_and_query = url_path(url);
    let (path, query) = path_and_query.split_once('?').unwrap_or((path_and_query, ""));
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let (group, rest) = match segments.as_slice() {
        ["api", _version, rest @ ..] => ("", rest),
        ["apis", group, _version, rest @ ..] => (*group, rest),
        _ => return None,
    };
    let (namespace, rest) = match rest {
        ["namespaces", ns, rest @ ..] if !rest.is_empty() => (Some(ns.to_string()), rest),
        _ => (None, rest),
    };
    let (resource, name, subresource) = match rest {
        [resource] => (*resource, None, None),
        [resource, name] => (*resource, Some(name.to_string()), None),
        [resource, name, sub] => (*resource, Some(name.to_string()), Some(*sub)),
        _ => return None,
    };
    let watch = query.split('&').any(|kv| kv == "watch=true" || kv == "watch=1");
    let verb = match (method, name.is_some()) {
        ("GET", true) => "get",
        ("GET", false) if watch => "watch",
        ("GET", false) => "list",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", true) => "delete",
        ("DELETE", false) => "deletecollection",
        _ => return None,
    };
    let resource = match subresource {
        Some(sub) => format!("{resource}/{sub}"),
        None => resource.to_string(),
    };
    Some((Permission { group: group.to_string(), resource, verb: verb.to_string() }, namespace, name))
}

/// The path and query of an absolute or relative URL, without the leading slash.
fn url_path(url: &str) -> &str {
    match url.split_once("://") {
        Some((_, rest)) => rest.split_once('/').map(|(_, p)| p).unwrap_or(""),
        None => url.trim_start_matches('/'),
    }
}

/// The API requests in an operator log: kube's `HTTP` span at debug level (target
/// `kube_client::client::builder`), one "requesting" event per request and "stream closed" with
/// the status when the response ends. Returns both, in log order.
pub fn requests_in_log(log: &str) -> Vec<Request> {
    let mut requests = Vec::new();
    for line in log.lines() {
        let Ok(entry) = serde_json::from_str::<Value>(line) else { continue };
        let span = &entry["span"];
        if span["name"] != "HTTP" {
            continue;
        }
        let (Some(method), Some(url)) = (span["http.method"].as_str(), span["http.url"].as_str()) else { continue };
        let Some((permission, namespace, name)) = permission_of(method, url) else { continue };
        let status = match entry["message"].as_str() {
            Some("requesting") => None,
            Some("stream closed") => span["http.status_code"].as_u64().map(|s| s as u16),
            _ => continue,
        };
        requests.push(Request { permission, namespace, name, status });
    }
    requests
}

/// One granted permission from a rule, with the names it is limited to (empty: any name).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    pub permission: Permission,
    pub names: BTreeSet<String>,
}

/// Expands RBAC `rules` into one grant per group, resource and verb.
pub fn grants(rules: &Value) -> Vec<Grant> {
    let strings = |v: &Value| -> Vec<String> {
        v.as_array().map(|a| a.iter().filter_map(|s| s.as_str().map(String::from)).collect()).unwrap_or_default()
    };
    let mut out = Vec::new();
    for rule in rules.as_array().expect("rules") {
        let names: BTreeSet<String> = strings(&rule["resourceNames"]).into_iter().collect();
        for group in strings(&rule["apiGroups"]) {
            for resource in strings(&rule["resources"]) {
                for verb in strings(&rule["verbs"]) {
                    out.push(Grant {
                        permission: Permission { group: group.clone(), resource: resource.clone(), verb },
                        names: names.clone(),
                    });
                }
            }
        }
    }
    out
}

/// Whether `grants` allow `request` (RBAC: resourceNames never cover list, watch or create of a
/// collection).
pub fn allows(grants: &[Grant], request: &Request) -> bool {
    grants.iter().any(|g| {
        g.permission == request.permission
            && (g.names.is_empty() || request.name.as_ref().is_some_and(|n| g.names.contains(n)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(group: &str, resource: &str, verb: &str) -> Permission {
        Permission { group: group.into(), resource: resource.into(), verb: verb.into() }
    }

    #[test]
    fn maps_requests_to_permissions() {
        let base = "https://127.0.0.1:6443";
        let cases = [
            ("GET", "/apis/sluice.dev/v1alpha1/pipelines?&limit=500", p("sluice.dev", "pipelines", "list"), None),
            (
                "GET",
                "/apis/sluice.dev/v1alpha1/namespaces/a/pipelines?&watch=true&timeoutSeconds=290",
                p("sluice.dev", "pipelines", "watch"),
                None,
            ),
            (
                "PATCH",
                "/apis/sluice.dev/v1alpha1/namespaces/a/pipelines/p/status?&force=true&fieldManager=x",
                p("sluice.dev", "pipelines/status", "patch"),
                Some("p"),
            ),
            ("POST", "/apis/batch/v1/namespaces/a/jobs?", p("batch", "jobs", "create"), None),
            ("DELETE", "/apis/batch/v1/namespaces/a/jobs/j", p("batch", "jobs", "delete"), Some("j")),
            ("GET", "/api/v1/resourcequotas?&limit=500", p("", "resourcequotas", "list"), None),
            (
                "GET",
                "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/pipelines.sluice.dev",
                p("apiextensions.k8s.io", "customresourcedefinitions", "get"),
                Some("pipelines.sluice.dev"),
            ),
        ];
        for (method, path, want, name) in cases {
            let (got, _, got_name) = permission_of(method, &format!("{base}{path}")).expect(path);
            assert_eq!(got, want, "{method} {path}");
            assert_eq!(got_name.as_deref(), name, "{method} {path}");
        }
        assert_eq!(permission_of("GET", "https://h/version"), None);
        // A namespace itself is a cluster-scoped resource.
        assert_eq!(permission_of("GET", "https://h/api/v1/namespaces/a").unwrap().0, p("", "namespaces", "get"));
    }

    #[test]
    fn resource_names_limit_named_requests_only() {
        let rules = serde_json::json!([
            {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
            {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "resourceNames": ["l"], "verbs": ["get", "patch"]}
        ]);
        let grants = grants(&rules);
        assert_eq!(grants.len(), 3);
        let request = |verb: &str, name: Option<&str>| Request {
            permission: p("coordination.k8s.io", "leases", verb),
            namespace: Some("ns".into()),
            name: name.map(String::from),
            status: None,
        };
        assert!(allows(&grants, &request("get", Some("l"))));
        assert!(!allows(&grants, &request("get", Some("other"))));
        assert!(allows(&grants, &request("create", None)));
        assert!(!allows(&grants, &request("list", None)));
    }
}
