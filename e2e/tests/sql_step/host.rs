//! The entry script on the host against a PostgreSQL of the test's own: the window's rows land
//! once however often the window runs, the report says what was written in the operator's own
//! format, and a failing run changes nothing.

use sluice::report;
use sluice_e2e::postgres::Server;

use crate::fixture::{self, END, START};

fn count(pg: &Server, table: &str) -> i64 {
    pg.psql("warehouse", &format!("SELECT count(*) FROM {table}")).parse().expect("count")
}

fn parsed(run: &fixture::Run) -> report::Report {
    assert!(run.ok, "the step failed:\n{}", run.log);
    report::parse(&run.report).unwrap_or_else(|e| panic!("{e}: {}", run.report)).expect("a report")
}

#[test]
fn the_extract_loads_its_window_once_and_reports_it() {
    let pg = Server::start("extract", None);
    fixture::databases(&pg);
    let work = pg.dir().join("work");
    let sql = fixture::sql_files(&work.join("sql"));
    let expected = fixture::source_rows_in_window(&pg);
    assert!(expected > 100, "the fixture puts rows in the window: {expected}");
    let newest = pg.psql(
        "shop",
        &format!("SELECT to_char(max(ordered_at) AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') FROM orders WHERE ordered_at < '{END}'"),
    );
    let first = parsed(&fixture::extract(&pg, &work, &sql));
    assert_eq!(count(&pg, "raw.orders"), expected, "raw holds the window's rows");
    assert_eq!(first.rows_written, Some(expected));
    assert_eq!(first.watermark, Some(newest.parse().expect("a time")), "the newest order of the window");
    let schema = first.schema.clone().expect("a schema");
    let names: Vec<_> = schema.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["order_id", "customer_id", "ordered_at", "amount", "currency"]);
    assert_eq!(report::contract_violations(&fixture::contract("orders"), &schema), Vec::<String>::new());

    // Run again (a retry, a re-run, a Backfill): the window is replaced, not added to.
    let second = parsed(&fixture::extract(&pg, &work, &sql));
    assert_eq!(count(&pg, "raw.orders"), expected, "a re-run leaves the row count unchanged");
    assert_eq!(second, first, "the same window reports the same");
    let outside = pg.psql(
        "warehouse",
        &format!("SELECT count(*) FROM raw.orders WHERE ordered_at < '{START}' OR ordered_at >= '{END}'"),
    );
    assert_eq!(outside, "0", "only the window is loaded");
}

#[test]
fn the_transforms_rebuild_staging_and_the_mart_idempotently() {
    let pg = Server::start("transform", None);
    fixture::databases(&pg);
    let work = pg.dir().join("work");
    let sql = fixture::sql_files(&work.join("sql"));
    parsed(&fixture::extract(&pg, &work, &sql));
    let stage = || fixture::transform(&pg, &work, &sql, "stage-orders.sql", "staging.orders", "ordered_at");
    let curate = || fixture::transform(&pg, &work, &sql, "hourly-revenue.sql", "mart.hourly_revenue", "last_order_at");
    let staged = parsed(&stage());
    let curated = parsed(&curate());
    let expected = fixture::source_rows_in_window(&pg);
    assert_eq!(staged.rows_written, Some(expected));
    assert_eq!(
        report::contract_violations(&fixture::contract("stg-orders"), &staged.schema.unwrap()),
        Vec::<String>::new()
    );
    assert_eq!(
        report::contract_violations(&fixture::contract("hourly-revenue"), &curated.schema.clone().unwrap()),
        Vec::<String>::new()
    );
    let mart = "SELECT currency, orders, revenue FROM mart.hourly_revenue ORDER BY 1";
    let built = pg.psql("warehouse", mart);
    // The mart says what the shop says: orders and revenue of the hour per currency.
    let truth = pg.psql(
        "shop",
        &format!("SELECT upper(currency), count(*), sum(amount) FROM orders WHERE ordered_at >= '{START}' AND ordered_at < '{END}' GROUP BY 1 ORDER BY 1"),
    );
    assert_eq!(built, truth);
    assert_eq!(curated.rows_written, Some(truth.lines().count() as i64));

    for _ in 0..2 {
        assert_eq!(
            parsed(&stage()),
            parsed(&fixture::transform(&pg, &work, &sql, "stage-orders.sql", "staging.orders", "ordered_at"))
        );
        parsed(&curate());
    }
    assert_eq!(count(&pg, "staging.orders"), expected, "re-runs leave staging unchanged");
    assert_eq!(pg.psql("warehouse", mart), built, "re-runs leave the mart unchanged");
}

#[test]
fn a_failed_run_changes_nothing_and_a_changed_source_type_breaks_the_contract() {
    let pg = Server::start("drift", None);
    fixture::databases(&pg);
    let work = pg.dir().join("work");
    let sql = fixture::sql_files(&work.join("sql"));
    parsed(&fixture::extract(&pg, &work, &sql));
    let before = count(&pg, "raw.orders");

    // A transform that deletes its window and then fails: the transaction takes the delete back.
    std::fs::write(
        sql.join("broken.sql"),
        "DELETE FROM raw.orders WHERE ordered_at >= :'start' AND ordered_at < :'end';\nSELECT 1 / 0;\n",
    )
    .expect("write");
    let broken = fixture::transform(&pg, &work, &sql, "broken.sql", "raw.orders", "ordered_at");
    assert!(!broken.ok, "division by zero fails the step");
    assert!(broken.report.is_empty(), "a failed run reports nothing: {}", broken.report);
    assert_eq!(count(&pg, "raw.orders"), before, "a failed run leaves the window as it was");

    // The shop changes a column's type: raw follows it, and the report no longer meets the
    // contract of `orders`, which is what makes the operator hold orders-transform.
    pg.psql("shop", "ALTER TABLE orders ALTER COLUMN amount TYPE double precision");
    let drifted = parsed(&fixture::extract(&pg, &work, &sql));
    assert_eq!(count(&pg, "raw.orders"), before, "the re-run replaced the window");
    assert_eq!(
        report::contract_violations(&fixture::contract("orders"), &drifted.schema.unwrap()),
        ["column \"amount\" changed type from numeric(12,2) to double precision"]
    );
    pg.psql("shop", "ALTER TABLE orders ALTER COLUMN amount TYPE numeric(12,2)");
    let fixed = parsed(&fixture::extract(&pg, &work, &sql));
    assert_eq!(report::contract_violations(&fixture::contract("orders"), &fixed.schema.unwrap()), Vec::<String>::new());
}

/// The image's own root filesystem (`images/sluice-sql-step/rootfs.sh`: busybox's shell, psql
/// and its libraries) runs the extract as user 10001 under chroot, as the container will. Needs
/// root.
#[test]
fn the_image_root_filesystem_runs_the_extract() {
    if unsafe { libc::geteuid() } != 0 {
        println!("skipped: chroot needs root");
        return;
    }
    let pg = Server::start("rootfs", None);
    fixture::databases(&pg);
    let root = pg.dir().join("rootfs");
    let built = std::process::Command::new("bash")
        .arg(sluice_e2e::cluster::repo_root().join("images/sluice-sql-step/rootfs.sh"))
        .arg(&root)
        .output()
        .expect("bash runs rootfs.sh");
    assert!(built.status.success(), "rootfs.sh: {}", String::from_utf8_lossy(&built.stderr));
    fixture::sql_files(&root.join("sql"));
    let out = std::process::Command::new("chroot")
        .args(["--userspec=10001:10001"])
        .arg(&root)
        .arg("/usr/local/bin/sql-step")
        .env_clear()
        // Also where the host keeps chroot (it is looked up with this PATH).
        .env("PATH", "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin")
        .envs(&pg.env)
        .env("PGDATABASE", "warehouse")
        .envs([("SLUICE_PARTITION_START", START), ("SLUICE_PARTITION_END", END)])
        .env("SQL_SOURCE_URL", pg.url("127.0.0.1", "shop"))
        .envs([("SQL_SOURCE_FILE", "/sql/extract-orders.sql"), ("SQL_TABLE", "raw.orders")])
        .envs([("SQL_TIME_COLUMN", "ordered_at"), ("SQL_REPORT_FILE", "/tmp/report")])
        .output()
        .expect("chroot runs");
    let log = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the image's entrypoint failed:\n{log}");
    let run = fixture::Run { ok: true, log, report: std::fs::read_to_string(root.join("tmp/report")).expect("report") };
    assert_eq!(parsed(&run).rows_written, Some(fixture::source_rows_in_window(&pg)));
    assert_eq!(count(&pg, "raw.orders"), fixture::source_rows_in_window(&pg));
}
