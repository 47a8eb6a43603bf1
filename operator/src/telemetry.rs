//! Logging setup: `tracing` with an env filter (`RUST_LOG`), text or JSON lines.

use tracing_subscriber::{EnvFilter, fmt, prelude::*};

/// Log line format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Installs the global subscriber. `RUST_LOG` overrides the default `info` level.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,kube=warn"));
    let registry = tracing_subscriber::registry().with(filter);
    match format {
        LogFormat::Text => registry.with(fmt::layer()).init(),
        LogFormat::Json => registry.with(fmt::layer().json().flatten_event(true)).init(),
    }
}

/// The `User-Agent` of the operator's API requests: `sluice-operator/<version>`, with the replica
/// name (the pod name) when known, so that an API server audit log tells replicas apart.
pub fn user_agent(instance: Option<&str>) -> String {
    let version = env!("CARGO_PKG_VERSION");
    match instance.map(str::trim).filter(|i| !i.is_empty()) {
        Some(instance) => format!("sluice-operator/{version} ({instance})"),
        None => format!("sluice-operator/{version}"),
    }
}

#[cfg(test)]
mod tests {
    use super::user_agent;

    #[test]
    fn the_user_agent_names_the_replica() {
        let version = env!("CARGO_PKG_VERSION");
        assert_eq!(user_agent(Some("sluice-7d9-abcde")), format!("sluice-operator/{version} (sluice-7d9-abcde)"));
        assert_eq!(user_agent(None), format!("sluice-operator/{version}"));
        assert_eq!(user_agent(Some(" ")), format!("sluice-operator/{version}"));
    }
}
