//! A PostgreSQL server of a test's own (`e2e/postgres/server.sh`: Debian's package, a temporary
//! data directory, a free port), stopped when dropped, and `psql` against it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::cluster::repo_root;

/// A running server; stopped (and its directory removed) on drop.
pub struct Server {
    dir: PathBuf,
    /// libpq's variables for its superuser: PGHOST, PGPORT, PGDATABASE, PGUSER, PGPASSWORD.
    pub env: BTreeMap<String, String>,
}

impl Server {
    /// Starts a server in a fresh directory named after `name`, listening on 127.0.0.1 and, when
    /// given, on `extra_address` too (where pods on the real node reach the host).
    pub fn start(name: &str, extra_address: Option<&str>) -> Server {
        let dir = std::env::temp_dir().join(format!("sluice-pg-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let port = crate::operator::free_port().to_string();
        let mut args = vec!["start".to_string(), dir.display().to_string(), port];
        args.extend(extra_address.map(str::to_string));
        let out = script(&args);
        assert!(out.status.success(), "starting PostgreSQL: {}", String::from_utf8_lossy(&out.stderr));
        let env = std::fs::read_to_string(dir.join("env"))
            .expect("server env")
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Server { dir, env }
    }

    /// Runs `sql` with psql in `database` (unaligned, tuples only, stopping at the first error)
    /// and returns its output, panicking when it fails.
    pub fn psql(&self, database: &str, sql: &str) -> String {
        let out = Command::new("psql")
            .envs(&self.env)
            .args(["-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-d", database, "-c", sql])
            .output()
            .expect("psql runs");
        assert!(out.status.success(), "psql {sql:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).expect("utf-8").trim_end().to_string()
    }

    /// A libpq URL of `database` for the superuser, as seen from `host`.
    pub fn url(&self, host: &str, database: &str) -> String {
        format!(
            "postgresql://{}:{}@{host}:{}/{database}",
            self.env["PGUSER"], self.env["PGPASSWORD"], self.env["PGPORT"]
        )
    }

    /// The server's directory (data, log, env).
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = script(&["stop".to_string(), self.dir.display().to_string()]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn script(args: &[String]) -> Output {
    Command::new("bash")
        .arg(repo_root().join("e2e/postgres/server.sh"))
        .args(args)
        .output()
        .expect("bash runs e2e/postgres/server.sh")
}
