//! Errors of the reconcilers, naming the operation that failed, with a category that labels
//! metrics and Events.

/// A reconcile failure. User input never causes one: invalid specs are reported in status.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request outside the operations below.
    #[error("Kubernetes API request failed: {0}")]
    Kube(#[from] kube::Error),
    #[error("creating Job {name} failed: {source}")]
    CreateJob { name: String, source: kube::Error },
    #[error("deleting Job {name} failed: {source}")]
    DeleteJob { name: String, source: kube::Error },
    #[error("reading Job {name} failed: {source}")]
    GetJob { name: String, source: kube::Error },
    #[error("reading ResourceQuota {name} failed: {source}")]
    GetQuota { name: String, source: kube::Error },
    #[error("reading {kind} {name} failed: {source}")]
    GetObject { kind: &'static str, name: String, source: kube::Error },
    #[error("writing the status of {kind} {name} failed: {source}")]
    PatchStatus { kind: String, name: String, source: kube::Error },
    #[error("could not serialize {what}: {source}")]
    Serialize { what: &'static str, source: serde_json::Error },
    #[error("object has no {0}")]
    MissingObjectKey(&'static str),
}

/// Categories of [`Error`] that go away by themselves: the API server was unreachable,
/// overloaded or restarting, or the object changed under a write.
pub const TRANSIENT: &[&str] = &["conflict", "throttled", "server", "transport"];

impl Error {
    /// A short, bounded label for metrics: what kind of failure, whatever the operation.
    pub fn category(&self) -> &'static str {
        match self {
            Error::Serialize { .. } => "serialize",
            Error::MissingObjectKey(_) => "object",
            _ => self.kube_error().map_or("client", kube_category),
        }
    }

    /// The operation that failed, bounded (for logs and Event reasons).
    pub fn operation(&self) -> &'static str {
        match self {
            Error::Kube(_) => "Request",
            Error::CreateJob { .. } => "CreateJob",
            Error::DeleteJob { .. } => "DeleteJob",
            Error::GetJob { .. } => "GetJob",
            Error::GetQuota { .. } => "GetQuota",
            Error::GetObject { .. } => "GetObject",
            Error::PatchStatus { .. } => "PatchStatus",
            Error::Serialize { .. } => "Serialize",
            Error::MissingObjectKey(_) => "ReadObject",
        }
    }

    /// Whether retrying soon is likely to succeed (see [`TRANSIENT`]).
    pub fn is_transient(&self) -> bool {
        TRANSIENT.contains(&self.category())
    }

    /// The API server's error behind this one, if any.
    fn kube_error(&self) -> Option<&kube::Error> {
        match self {
            Error::Kube(source)
            | Error::CreateJob { source, .. }
            | Error::DeleteJob { source, .. }
            | Error::GetJob { source, .. }
            | Error::GetQuota { source, .. }
            | Error::GetObject { source, .. }
            | Error::PatchStatus { source, .. } => Some(source),
            Error::Serialize { .. } | Error::MissingObjectKey(_) => None,
        }
    }
}

/// The category of an error of the Kubernetes client.
fn kube_category(error: &kube::Error) -> &'static str {
    match error {
        kube::Error::Api(status) => match status.code {
            409 => "conflict",
            429 => "throttled",
            408 | 500..=599 => "server",
            _ => "api",
        },
        kube::Error::HyperError(_) | kube::Error::Service(_) | kube::Error::ReadEvents(_) => "transport",
        kube::Error::SerdeError(_) => "decode",
        _ => "client",
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: u16) -> kube::Error {
        let status = kube::core::Status::failure("x", "y").with_code(code);
        kube::Error::Api(Box::new(status))
    }

    fn api(code: u16) -> Error {
        Error::Kube(status(code))
    }

    #[test]
    fn server_errors_throttling_and_conflicts_are_transient() {
        for code in [409, 429, 408, 500, 503, 504] {
            assert!(api(code).is_transient(), "{code}");
        }
        for code in [400, 403, 404, 422] {
            assert!(!api(code).is_transient(), "{code}");
        }
        assert!(!Error::MissingObjectKey("namespace").is_transient());
        let decode = serde_json::from_str::<u8>("x").unwrap_err();
        assert_eq!(Error::Kube(kube::Error::SerdeError(decode)).category(), "decode");
    }

    #[test]
    fn an_operation_keeps_the_category_of_its_cause_and_names_itself() {
        let create = Error::CreateJob { name: "orders-extract-1".into(), source: status(503) };
        assert_eq!((create.category(), create.is_transient(), create.operation()), ("server", true, "CreateJob"));
        assert!(create.to_string().starts_with("creating Job orders-extract-1 failed"), "{create}");
        let patch = Error::PatchStatus { kind: "Backfill".into(), name: "oct".into(), source: status(403) };
        assert_eq!((patch.category(), patch.is_transient()), ("api", false));
        assert!(patch.to_string().contains("status of Backfill oct"), "{patch}");
        let quota = Error::GetQuota { name: "team".into(), source: status(429) };
        assert_eq!(quota.category(), "throttled");
    }
}
