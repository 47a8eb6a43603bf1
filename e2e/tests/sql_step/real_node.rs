//! The SQL step as a real container on the real node: the examples' extract (image
//! localhost/sluice-sql-step:dev, its Secrets, its SQL ConfigMap) run by the operator for one
//! window, twice (two Backfills, the second with `reprocess: All`). The second run rewrites the
//! window and the row count stays what the shop holds; the report reaches the Dataset. Skipped,
//! saying why, on a cluster without a real node (`SLUICE_REAL_NODE=0`).

use std::time::Duration;

use kube::api::DynamicObject;
use serde_json::{Value, json};
use sluice_e2e::cluster::repo_root;
use sluice_e2e::postgres::Server;
use sluice_e2e::real_node::{self, RealNode};
use sluice_e2e::{wait, yaml};

use crate::fixture::{self, END, START};

const TIMEOUT: Duration = Duration::from_secs(240);

/// The first document named `name` in an example file.
fn example(file: &str, name: &str) -> Value {
    let text = std::fs::read_to_string(repo_root().join("manifests/examples").join(file)).expect("example");
    yaml::documents(&text).into_iter().find(|d| d["metadata"]["name"] == name).expect("example object")
}

/// The orders-ingest example, suspended (only the Backfills run it), its step on the real node.
fn extract_pipeline(node: &RealNode) -> Value {
    let mut p = example("pipeline-orders-ingest.yaml", "orders-ingest");
    p["spec"]["suspend"] = json!(true);
    let spec = &mut p["spec"]["steps"][0]["template"]["spec"];
    spec["nodeSelector"] = json!({&node.label: "true"});
    spec["tolerations"] = json!([{"key": &node.label, "operator": "Exists", "effect": "NoSchedule"}]);
    p
}

/// The connection Secrets the example reads; pods reach PostgreSQL at the node's address.
fn secrets(pg: &Server, node: &RealNode) -> [Value; 2] {
    let warehouse = json!({"PGHOST": &node.ip, "PGPORT": &pg.env["PGPORT"], "PGDATABASE": "warehouse",
                           "PGUSER": &pg.env["PGUSER"], "PGPASSWORD": &pg.env["PGPASSWORD"]});
    [
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "warehouse"}, "stringData": warehouse}),
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "shop"},
               "stringData": {"url": pg.url(&node.ip, "shop")}}),
    ]
}

fn backfill(name: &str) -> Value {
    json!({"apiVersion": "sluice.dev/v1alpha1", "kind": "Backfill", "metadata": {"name": name},
           "spec": {"pipelineRef": {"name": "orders-ingest"}, "range": {"start": START, "end": END},
                    "reprocess": "All"}})
}

/// Waits for the Backfill to finish with its one partition succeeded, and prints how long it
/// took from now (the window's Job created, its pod started on the real node, psql ran, the
/// operator read the report): a figure for the reader, not an assertion.
async fn complete(ns: &sluice_e2e::TestNamespace, name: &str) -> Value {
    let started = std::time::Instant::now();
    let api = yaml::sluice_api(&ns.client, &ns.name, "Backfill");
    let done = |b: &DynamicObject| {
        let v = serde_json::to_value(b).unwrap();
        wait::condition(&v, "Complete").is_some_and(|(s, _, _)| s == "True")
            || wait::condition(&v, "Failed").is_some_and(|(s, _, _)| s == "True")
    };
    let b = serde_json::to_value(wait::until(&api, name, TIMEOUT, "Complete or Failed", done).await).unwrap();
    assert_eq!(b["status"]["partitions"]["succeeded"], 1, "backfill {name}: {:#}", b["status"]);
    println!("backfill {name}: one window on the real node, Complete in {:.1}s", started.elapsed().as_secs_f64());
    b
}

/// The newest transaction id among raw.orders' rows: a run that rewrote the window raises it.
fn newest_write(pg: &Server) -> i64 {
    pg.psql("warehouse", "SELECT max(xmin::text::bigint) FROM raw.orders").parse().expect("xid")
}

#[tokio::test]
async fn a_re_run_window_leaves_the_row_count_unchanged() {
    let Some(node) = real_node::or_skip("a_re_run_window_leaves_the_row_count_unchanged") else { return };
    let pg = Server::start("real-node", Some(&node.ip));
    fixture::databases(&pg);
    let image = std::process::Command::new("bash")
        .arg(repo_root().join("images/build.sh"))
        .arg("sluice-sql-step")
        .output()
        .expect("bash runs images/build.sh");
    assert!(image.status.success(), "images/build.sh: {}", String::from_utf8_lossy(&image.stderr));
    sluice_e2e::in_namespace("sql-real", |ns| async move {
        for doc in secrets(&pg, &node) {
            ns.apply(&doc).await;
        }
        ns.apply(&example("sql-orders.yaml", "orders-sql")).await;
        ns.apply(&example("datasets.yaml", "orders")).await;
        ns.apply(&extract_pipeline(&node)).await;
        let expected = fixture::source_rows_in_window(&pg);

        ns.apply(&backfill("first")).await;
        complete(&ns, "first").await;
        let count = || pg.psql("warehouse", "SELECT count(*) FROM raw.orders").parse::<i64>().expect("count");
        assert_eq!(count(), expected, "the window's orders are in raw.orders");
        let written = newest_write(&pg);

        ns.apply(&backfill("again")).await;
        complete(&ns, "again").await;
        assert!(newest_write(&pg) > written, "the second run rewrote the window");
        assert_eq!(count(), expected, "re-running the window leaves the row count unchanged");

        // The container's report reached the Dataset: rows, the newest order, the schema.
        let datasets = yaml::sluice_api(&ns.client, &ns.name, "Dataset");
        let reported = |d: &DynamicObject| serde_json::to_value(d).unwrap()["status"]["rowsWritten"] == expected;
        let d = serde_json::to_value(wait::until(&datasets, "orders", TIMEOUT, "rowsWritten", reported).await).unwrap();
        let types: Vec<_> =
            d["status"]["observedSchema"].as_array().expect("schema").iter().map(|c| c["type"].clone()).collect();
        assert_eq!(types, ["bigint", "bigint", "timestamp with time zone", "numeric(12,2)", "character varying(3)"]);
        assert_eq!(wait::condition(&d, "SchemaConformant").map(|c| c.0).as_deref(), Some("True"), "{:#}", d["status"]);
    })
    .await;
}
