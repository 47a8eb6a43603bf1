//! The benchmark table: every Sluice figure beside its peer, measured in the same run, with the
//! ratio and the target. Printed as it grows and written to `target/bench/` as JSON and
//! Markdown after every row, so an interrupted run keeps what it measured.

use std::path::PathBuf;
use std::sync::Mutex;

use serde::Serialize;

/// One figure and its peer.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    /// What is measured, e.g. "fan-in launch p99 (s)".
    pub metric: String,
    /// Scale, e.g. "N=1000".
    pub scale: String,
    pub sluice: f64,
    /// What the figure is compared with, e.g. "CronJob controller" or "L".
    pub peer_name: String,
    pub peer: f64,
    /// sluice / peer.
    pub ratio: f64,
    /// The target, in words ("ratio <= 0.5").
    pub target: String,
    /// Whether the target is met; `None` when the row has none.
    pub met: Option<bool>,
}

impl Row {
    /// A row whose target is a bound on the ratio: `at_most` (Some(true)) or `at_least`.
    pub fn ratio(metric: &str, scale: &str, sluice: f64, peer_name: &str, peer: f64) -> Self {
        Self {
            metric: metric.to_string(),
            scale: scale.to_string(),
            sluice,
            peer_name: peer_name.to_string(),
            peer,
            ratio: sluice / peer,
            target: String::new(),
            met: None,
        }
    }

    /// Sets the target: the ratio at most `bound`.
    pub fn ratio_at_most(mut self, bound: f64) -> Self {
        self.target = format!("ratio <= {bound}");
        self.met = Some(self.ratio <= bound);
        self
    }

    /// Sets the target: the ratio at least `bound`.
    pub fn ratio_at_least(mut self, bound: f64) -> Self {
        self.target = format!("ratio >= {bound}");
        self.met = Some(self.ratio >= bound);
        self
    }

    /// Sets the target: Sluice's figure at most the peer (the peer is the bound itself).
    pub fn within_peer(mut self) -> Self {
        self.target = format!("<= {}", self.peer_name);
        self.met = Some(self.sluice <= self.peer);
        self
    }
}

static ROWS: Mutex<Vec<Row>> = Mutex::new(Vec::new());

/// Where the table goes: `SLUICE_BENCH_OUT`, else `target/bench` in the repository.
pub fn out_dir() -> PathBuf {
    std::env::var_os("SLUICE_BENCH_OUT")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::cluster::repo_root().join("target/bench"))
}

/// Adds a row: prints it and rewrites the JSON and Markdown files.
pub fn add(row: Row) {
    println!("{}", line(&row));
    let mut rows = ROWS.lock().unwrap_or_else(|e| e.into_inner());
    rows.push(row);
    let dir = out_dir();
    std::fs::create_dir_all(&dir).expect("bench output directory");
    let json = serde_json::json!({"date": jiff::Timestamp::now().to_string(), "machine": machine(), "rows": *rows});
    std::fs::write(dir.join("results.json"), serde_json::to_string_pretty(&json).expect("json")).expect("write json");
    std::fs::write(dir.join("results.md"), markdown(&rows)).expect("write markdown");
}

/// A copy of the rows so far.
pub fn rows() -> Vec<Row> {
    ROWS.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

fn fmt(v: f64) -> String {
    if !v.is_finite() {
        return format!("{v}");
    }
    if v.abs() >= 100.0 { format!("{v:.0}") } else { format!("{v:.3}") }
}

fn verdict(met: Option<bool>) -> &'static str {
    match met {
        Some(true) => "met",
        Some(false) => "MISSED",
        None => "",
    }
}

fn line(row: &Row) -> String {
    format!(
        "{:<46} {:<10} sluice {:>9}  {:<22} {:>9}  ratio {:>7}  {} {}",
        row.metric,
        row.scale,
        fmt(row.sluice),
        row.peer_name,
        fmt(row.peer),
        fmt(row.ratio),
        row.target,
        verdict(row.met)
    )
}

/// The machine, for the table's heading: CPUs and model, memory, kernel.
pub fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model =
        cpuinfo.lines().find_map(|l| l.strip_prefix("model name")).map(|m| m.trim_start_matches([' ', '\t', ':']));
    let cpus = cpuinfo.lines().filter(|l| l.starts_with("processor")).count();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_gib = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|m| m.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0 / 1024.0);
    format!("{cpus} CPU ({}), {mem_gib:.1} GiB", model.unwrap_or("unknown"))
}

/// The table as Markdown.
pub fn markdown(rows: &[Row]) -> String {
    let mut out = format!("Measured {} on {}.\n\n", jiff::Timestamp::now().strftime("%Y-%m-%d %H:%M UTC"), machine());
    out.push_str(
        "| metric | scale | Sluice | peer | peer value | ratio | target | |\n|---|---|---:|---|---:|---:|---|---|\n",
    );
    for r in rows {
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} |\n",
            r.metric,
            r.scale,
            fmt(r.sluice),
            r.peer_name,
            fmt(r.peer),
            fmt(r.ratio),
            r.target,
            verdict(r.met)
        ));
    }
    out
}
