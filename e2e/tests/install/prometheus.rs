//! Debian's `prometheus` package, cached by e2e/prometheus/install.sh: promtool, the chart's
//! alert rules as a plain rules file, and a Prometheus server on loopback that scrapes an
//! operator and evaluates them.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::Value;
use sluice_e2e::cluster::{artifacts_dir, repo_root};

use super::tools::{Output, of_kind, render, run};

/// The directory holding `prometheus` and `promtool`, installed once per test process.
pub fn bin_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let script = repo_root().join("e2e/prometheus/install.sh");
        let out = run(Path::new("bash"), &[script.to_str().expect("utf-8 path")], None);
        assert!(out.ok, "e2e/prometheus/install.sh failed:\n{}", out.stderr);
        PathBuf::from(out.stdout.trim())
    })
}

/// Runs promtool with `args` and `stdin`.
pub fn promtool(args: &[&str], stdin: Option<&str>) -> Output {
    run(&bin_dir().join("promtool"), args, stdin)
}

/// Renders the chart's PrometheusRule (release `sluice` in `sluice-system`, with `sets`) and
/// writes its `spec.groups` as a plain rules file, `<dir>/rules.yaml`.
pub fn write_rules(dir: &Path, sets: &[&str]) -> PathBuf {
    let mut all = vec!["metrics.prometheusRule.enabled=true", "--api-versions=monitoring.coreos.com/v1/PrometheusRule"];
    all.extend_from_slice(sets);
    let docs = render("sluice", "sluice-system", &all);
    let rule = of_kind(&docs, "PrometheusRule");
    assert_eq!(rule.len(), 1, "one PrometheusRule rendered");
    let file = serde_json::json!({"groups": rule[0]["spec"]["groups"]});
    let path = dir.join("rules.yaml");
    std::fs::create_dir_all(dir).expect("rules dir");
    std::fs::write(&path, serde_yaml::to_string(&file).expect("YAML")).expect("write rules");
    path
}

/// A Prometheus server on loopback, killed when dropped.
pub struct Server {
    child: Child,
    /// Its listen address (host:port).
    pub addr: String,
}

impl Server {
    /// Starts Prometheus with the rules in `dir/rules.yaml`, scraping `target` (host:port, its
    /// /metrics) as job `sluice` with `honor_labels` like the chart's ServiceMonitor, and
    /// scraping and evaluating every `interval`.
    pub fn start(dir: &Path, target: &str, interval: &str) -> Self {
        let config = format!(
            "global: {{scrape_interval: {interval}, evaluation_interval: {interval}}}\n\
             rule_files: [rules.yaml]\n\
             scrape_configs:\n\
             - job_name: sluice\n  honor_labels: true\n  static_configs: [{{targets: ['{target}']}}]\n"
        );
        std::fs::write(dir.join("prometheus.yml"), config).expect("write config");
        let addr = format!("127.0.0.1:{}", sluice_e2e::operator::free_port());
        let log = std::fs::File::create(artifacts_dir().join("prometheus.log")).expect("log");
        let mut command = Command::new(bin_dir().join("prometheus"));
        command
            .arg(format!("--config.file={}", dir.join("prometheus.yml").display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address={addr}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log);
        sluice_e2e::process::die_with_parent(&mut command, libc::SIGKILL);
        Self { child: command.spawn().expect("prometheus runs"), addr }
    }

    /// Waits until the server answers /-/ready.
    pub async fn wait_ready(&self) {
        let ready = || async { get(&self.addr, "/-/ready").await.is_ok_and(|(code, _)| code == 200) };
        if sluice_e2e::wait::settle(Duration::from_secs(30), Duration::from_millis(200), ready, |ok| *ok).await {
            return;
        }
        panic!("prometheus at {} not ready in 30s; see target/e2e/prometheus.log", self.addr);
    }

    /// The `data` of an API answer, e.g. `/api/v1/alerts` or `/api/v1/query?query=up`.
    pub async fn api(&self, path: &str) -> Value {
        let (code, body) = get(&self.addr, path).await.expect("GET prometheus");
        let answer: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"));
        assert!(code == 200 && answer["status"] == "success", "{path}: {code} {body}");
        answer["data"].clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP/1.0 GET (no chunked answer to decode): (status code, body).
async fn get(addr: &str, path: &str) -> std::io::Result<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    stream.write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes()).await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    let code = response.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Ok((code, body))
}
