//! What the SQL step tests share: a shop database with orders, a warehouse with its layers, the
//! examples' SQL files, and running the entry script on the host.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use sluice::api::ContractSpec;
use sluice_e2e::cluster::repo_root;
use sluice_e2e::postgres::Server;
use sluice_e2e::yaml;

/// The hour the tests load, and orders every 7 s from half an hour before it to half an hour
/// after it, so that rows outside the window exist and must be left alone.
pub const START: &str = "2026-11-24T10:00:00Z";
pub const END: &str = "2026-11-24T11:00:00Z";

/// Creates `shop` (with its orders) and `warehouse` (schemas raw, staging, mart).
pub fn databases(pg: &Server) {
    pg.psql("postgres", "CREATE DATABASE shop");
    pg.psql("postgres", "CREATE DATABASE warehouse");
    pg.psql("warehouse", "CREATE SCHEMA raw; CREATE SCHEMA staging; CREATE SCHEMA mart");
    pg.psql(
        "shop",
        "CREATE TABLE orders (order_id bigserial PRIMARY KEY, customer_id bigint NOT NULL, \
         ordered_at timestamptz NOT NULL, amount numeric(12,2) NOT NULL, currency varchar(3) NOT NULL);
         INSERT INTO orders (customer_id, ordered_at, amount, currency)
         SELECT g % 50, '2026-11-24T09:30:00Z'::timestamptz + g * interval '7 seconds',
                (g % 100) + 0.99, CASE WHEN g % 3 = 0 THEN 'EUR' ELSE 'usd' END
         FROM generate_series(0, 1028) g",
    );
}

/// The examples' SQL files (the `orders-sql` ConfigMap), written into `dir`.
pub fn sql_files(dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(repo_root().join("manifests/examples/sql-orders.yaml")).expect("sql-orders");
    let doc = yaml::documents(&text).into_iter().find(|d| d["kind"] == "ConfigMap").expect("the ConfigMap");
    std::fs::create_dir_all(dir).expect("sql dir");
    for (name, body) in doc["data"].as_object().expect("data") {
        std::fs::write(dir.join(name), body.as_str().expect("text")).expect("write sql");
    }
    dir.to_path_buf()
}

/// The contract of an example Dataset (`manifests/examples/datasets.yaml`).
pub fn contract(dataset: &str) -> ContractSpec {
    let text = std::fs::read_to_string(repo_root().join("manifests/examples/datasets.yaml")).expect("datasets");
    let doc = yaml::documents(&text).into_iter().find(|d| d["metadata"]["name"] == dataset).expect("dataset");
    serde_json::from_value(doc["spec"]["contract"].clone()).expect("contract")
}

/// One run of the entry script: its exit status, output and the report it wrote.
pub struct Run {
    pub ok: bool,
    pub log: String,
    pub report: String,
}

/// Runs `images/sluice-sql-step/sql-step.sh` under the host's `sh` for [START, END), against the
/// warehouse, with the step's own variables in `vars`.
pub fn run_step(pg: &Server, work: &Path, step: &str, vars: &[(&str, String)]) -> Run {
    let report = work.join(format!("{step}.report"));
    let _ = std::fs::remove_file(&report);
    let mut env: BTreeMap<String, String> = pg.env.clone();
    env.insert("PGDATABASE".into(), "warehouse".into());
    let out = Command::new("sh")
        .arg(repo_root().join("images/sluice-sql-step/sql-step.sh"))
        .envs(&env)
        .envs([
            ("SLUICE_PIPELINE", "orders"),
            ("SLUICE_STEP", step),
            ("SLUICE_RUN_ID", "20261124-1000-1h"),
            ("SLUICE_PARTITION_START", START),
            ("SLUICE_PARTITION_END", END),
        ])
        .env("SQL_REPORT_FILE", &report)
        .envs(vars.iter().map(|(k, v)| (k, v)))
        .output()
        .expect("sh runs the entry script");
    let log = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    Run { ok: out.status.success(), log, report: std::fs::read_to_string(&report).unwrap_or_default() }
}

/// The extract of the examples: shop.orders of the window into raw.orders.
pub fn extract(pg: &Server, work: &Path, sql: &Path) -> Run {
    run_step(
        pg,
        work,
        "extract",
        &[
            ("SQL_SOURCE_URL", pg.url("127.0.0.1", "shop")),
            ("SQL_SOURCE_FILE", sql.join("extract-orders.sql").display().to_string()),
            ("SQL_TABLE", "raw.orders".into()),
            ("SQL_TIME_COLUMN", "ordered_at".into()),
        ],
    )
}

/// A transform of the examples: `file` run on the warehouse, reporting `table`.
pub fn transform(pg: &Server, work: &Path, sql: &Path, file: &str, table: &str, time_column: &str) -> Run {
    run_step(
        pg,
        work,
        file.trim_end_matches(".sql"),
        &[
            ("SQL_FILE", sql.join(file).display().to_string()),
            ("SQL_TABLE", table.into()),
            ("SQL_TIME_COLUMN", time_column.into()),
        ],
    )
}

/// The count of rows of the shop in the window, asked of the shop itself.
pub fn source_rows_in_window(pg: &Server) -> i64 {
    pg.psql("shop", &format!("SELECT count(*) FROM orders WHERE ordered_at >= '{START}' AND ordered_at < '{END}'"))
        .parse()
        .expect("count")
}
