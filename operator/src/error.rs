//! Errors of the reconcilers, with a category that labels metrics and Events.

/// A reconcile failure. User input never causes one: invalid specs are reported in status.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API request failed: {0}")]
    Kube(#[from] kube::Error),
    #[error("could not serialize {what}: {source}")]
    Serialize { what: &'static str, source: serde_json::Error },
    #[error("object has no {0}")]
    MissingObjectKey(&'static str),
}

impl Error {
    /// A short, bounded label for metrics.
    pub fn category(&self) -> &'static str {
        match self {
            Error::Kube(kube::Error::Api(status)) if status.code == 409 => "conflict",
            Error::Kube(kube::Error::Api(_)) => "api",
            Error::Kube(_) => "transport",
            Error::Serialize { .. } => "serialize",
            Error::MissingObjectKey(_) => "object",
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
