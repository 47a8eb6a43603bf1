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

/// Categories of [`Error`] that go away by themselves: the API server was unreachable,
/// overloaded or restarting, or the object changed under a write.
pub const TRANSIENT: &[&str] = &["conflict", "throttled", "server", "transport"];

impl Error {
    /// A short, bounded label for metrics.
    pub fn category(&self) -> &'static str {
        match self {
            Error::Kube(kube::Error::Api(status)) => match status.code {
                409 => "conflict",
                429 => "throttled",
                408 | 500..=599 => "server",
                _ => "api",
            },
            Error::Kube(kube::Error::HyperError(_) | kube::Error::Service(_) | kube::Error::ReadEvents(_)) => {
                "transport"
            }
            Error::Kube(kube::Error::SerdeError(_)) => "decode",
            Error::Kube(_) => "client",
            Error::Serialize { .. } => "serialize",
            Error::MissingObjectKey(_) => "object",
        }
    }

    /// Whether retrying soon is likely to succeed (see [`TRANSIENT`]).
    pub fn is_transient(&self) -> bool {
        TRANSIENT.contains(&self.category())
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    fn api(code: u16) -> Error {
        let status = kube::core::Status::failure("x", "y").with_code(code);
        Error::Kube(kube::Error::Api(Box::new(status)))
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
}
