//! The OpenLineage `RunEvent` of a step Job, built from plain data. Pure.
//!
//! Sent fields: `eventType`, `eventTime`, `producer`, `schemaURL`; `run.runId` (UUID v5 of the
//! Job's UID) with the facets `parent` (the pipeline run: job `<pipeline>`, runId a UUID v5 of the
//! namespace, pipeline and run id), `nominalTime` (the partition window) and, on `FAIL`,
//! `errorMessage`; `job.namespace` (the prefix and the Kubernetes namespace), `job.name`
//! (`<pipeline>.<step>`) with the `jobType` facet (BATCH, integration SLUICE, EXTRACT or
//! TRANSFORM); `inputs` and `outputs` (namespace and name from each Dataset's `spec.location`),
//! outputs with the `schema` facet and the `outputStatistics` output facet (`rowCount`) from the
//! step's report when it has them.

use jiff::Timestamp;
use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::transition::Kind;
use crate::api::ColumnSpec;
use crate::report::Report;
use crate::schedule::Window;

/// The event's `producer`: this operator, at its version.
pub const PRODUCER: &str = concat!("https://github.com/sluice-dev/sluice/tree/v", env!("CARGO_PKG_VERSION"));
const SPEC: &str = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent";
const NOMINAL_TIME: &str =
    "https://openlineage.io/spec/facets/1-0-1/NominalTimeRunFacet.json#/$defs/NominalTimeRunFacet";
const PARENT: &str = "https://openlineage.io/spec/facets/1-2-0/ParentRunFacet.json#/$defs/ParentRunFacet";
const ERROR_MESSAGE: &str =
    "https://openlineage.io/spec/facets/1-0-1/ErrorMessageRunFacet.json#/$defs/ErrorMessageRunFacet";
const JOB_TYPE: &str = "https://openlineage.io/spec/facets/2-0-4/JobTypeJobFacet.json#/$defs/JobTypeJobFacet";
const SCHEMA: &str = "https://openlineage.io/spec/facets/1-2-0/SchemaDatasetFacet.json#/$defs/SchemaDatasetFacet";
const OUTPUT_STATISTICS: &str = "https://openlineage.io/spec/facets/1-0-2/OutputStatisticsOutputDatasetFacet.json#/$defs/OutputStatisticsOutputDatasetFacet";

/// The UUID namespace of Sluice's run ids (itself a v5 UUID of a URL Sluice owns).
fn sluice_uuid_namespace() -> Uuid {
    Uuid::new_v5(&Uuid::NAMESPACE_URL, b"https://sluice.dev/openlineage")
}

/// The `runId` of the step Job with this UID: the same on every replica and restart.
pub fn job_run_id(job_uid: &str) -> Uuid {
    Uuid::new_v5(&sluice_uuid_namespace(), format!("job/{job_uid}").as_bytes())
}

/// The `runId` of a pipeline run (the parent of its step Jobs' runs).
pub fn pipeline_run_id(namespace: &str, pipeline: &str, run_id: &str) -> Uuid {
    Uuid::new_v5(&sluice_uuid_namespace(), format!("pipeline-run/{namespace}/{pipeline}/{run_id}").as_bytes())
}

/// A dataset as OpenLineage names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DatasetName {
    pub namespace: String,
    pub name: String,
}

/// The OpenLineage name of a Dataset: from `spec.location` when it is a URI
/// (`s3://lake/raw/orders/` is namespace `s3://lake`, name `raw/orders`), the location itself in
/// the job's namespace when it is a plain name (`warehouse.marts.revenue`), and the Dataset's own
/// name there when it has no location.
pub fn dataset_name(location: Option<&str>, dataset: &str, job_namespace: &str) -> DatasetName {
    let in_job_namespace = |name: &str| DatasetName { namespace: job_namespace.to_string(), name: name.to_string() };
    let Some(location) = location.map(str::trim).filter(|l| !l.is_empty()) else {
        return in_job_namespace(dataset);
    };
    let Some((scheme, rest)) = location.split_once("://") else {
        return in_job_namespace(location);
    };
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let path = path.trim_matches('/');
    DatasetName {
        namespace: format!("{scheme}://{authority}"),
        name: if path.is_empty() { dataset.to_string() } else { path.to_string() },
    }
}

/// Everything the event of one step Job says.
#[derive(Clone, Debug)]
pub struct RunFacts {
    pub kind: Kind,
    pub event_time: Timestamp,
    pub job_uid: String,
    /// The OpenLineage namespace of the pipeline's jobs.
    pub namespace: String,
    /// The Kubernetes namespace.
    pub kube_namespace: String,
    pub pipeline: String,
    pub step: String,
    /// `EXTRACT` or `TRANSFORM`, when the step is known.
    pub step_kind: Option<&'static str>,
    pub run_id: String,
    pub window: Window,
    pub inputs: Vec<DatasetName>,
    pub outputs: Vec<DatasetName>,
    pub report: Option<Report>,
    /// Why it failed (`FAIL` only).
    pub error: Option<String>,
}

fn facet(schema_url: &str, mut body: Value) -> Value {
    body["_producer"] = json!(PRODUCER);
    body["_schemaURL"] = json!(schema_url);
    body
}

/// The event as JSON.
pub fn run_event(f: &RunFacts) -> Value {
    let mut run_facets = Map::new();
    run_facets.insert(
        "parent".into(),
        facet(
            PARENT,
            json!({"run": {"runId": pipeline_run_id(&f.kube_namespace, &f.pipeline, &f.run_id).to_string()},
                   "job": {"namespace": f.namespace, "name": f.pipeline}}),
        ),
    );
    run_facets.insert(
        "nominalTime".into(),
        facet(
            NOMINAL_TIME,
            json!({"nominalStartTime": f.window.start.to_string(), "nominalEndTime": f.window.end.to_string()}),
        ),
    );
    if let (Kind::Fail, Some(error)) = (f.kind, &f.error) {
        run_facets.insert(
            "errorMessage".into(),
            facet(ERROR_MESSAGE, json!({"message": error, "programmingLanguage": "unknown"})),
        );
    }
    let mut job_facets = Map::new();
    if let Some(step_kind) = f.step_kind {
        job_facets.insert(
            "jobType".into(),
            facet(JOB_TYPE, json!({"processingType": "BATCH", "integration": "SLUICE", "jobType": step_kind})),
        );
    }
    json!({
        "eventType": f.kind.as_str(),
        "eventTime": f.event_time.to_string(),
        "producer": PRODUCER,
        "schemaURL": SPEC,
        "run": {"runId": job_run_id(&f.job_uid).to_string(), "facets": run_facets},
        "job": {"namespace": f.namespace, "name": format!("{}.{}", f.pipeline, f.step), "facets": job_facets},
        "inputs": f.inputs.iter().map(|d| json!({"namespace": d.namespace, "name": d.name, "facets": {}})).collect::<Vec<_>>(),
        "outputs": f.outputs.iter().map(|d| output(d, f.report.as_ref())).collect::<Vec<_>>(),
    })
}

fn output(d: &DatasetName, report: Option<&Report>) -> Value {
    let mut facets = Map::new();
    let mut output_facets = Map::new();
    if let Some(schema) = report.and_then(|r| r.schema.as_deref()) {
        facets.insert("schema".into(), facet(SCHEMA, json!({"fields": schema.iter().map(field).collect::<Vec<_>>()})));
    }
    if let Some(rows) = report.and_then(|r| r.rows_written) {
        output_facets.insert("outputStatistics".into(), facet(OUTPUT_STATISTICS, json!({"rowCount": rows})));
    }
    json!({"namespace": d.namespace, "name": d.name, "facets": facets, "outputFacets": output_facets})
}

fn field(column: &ColumnSpec) -> Value {
    json!({"name": column.name, "type": column.type_})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(kind: Kind) -> RunFacts {
        RunFacts {
            kind,
            event_time: "2026-11-24T11:00:05Z".parse().unwrap(),
            job_uid: "0b4c3b1e-uid".into(),
            namespace: "sluice/team-a".into(),
            kube_namespace: "team-a".into(),
            pipeline: "orders".into(),
            step: "curate".into(),
            step_kind: Some("TRANSFORM"),
            run_id: "20261124-1000-1h".into(),
            window: Window {
                start: "2026-11-24T10:00:00Z".parse().unwrap(),
                end: "2026-11-24T11:00:00Z".parse().unwrap(),
            },
            inputs: vec![dataset_name(Some("s3://lake/raw/orders/"), "orders", "sluice/team-a")],
            outputs: vec![dataset_name(Some("warehouse.marts.revenue"), "revenue", "sluice/team-a")],
            report: Some(
                crate::report::parse(r#"{"rowsWritten": 42, "schema": [{"name": "id", "type": "bigint"}]}"#)
                    .unwrap()
                    .unwrap(),
            ),
            error: Some("BackoffLimitExceeded".into()),
        }
    }

    #[test]
    fn run_ids_are_stable_uuids_and_differ_per_job_and_run() {
        assert_eq!(job_run_id("a"), job_run_id("a"));
        assert_ne!(job_run_id("a"), job_run_id("b"));
        assert_eq!(job_run_id("a").get_version_num(), 5);
        assert_ne!(pipeline_run_id("ns", "p", "r1"), pipeline_run_id("ns", "p", "r2"));
        assert_ne!(pipeline_run_id("ns", "p", "r1"), pipeline_run_id("other", "p", "r1"));
    }

    #[test]
    fn dataset_names_come_from_the_location() {
        let name = |l: Option<&str>| dataset_name(l, "orders", "sluice/team-a");
        let pair = |n: DatasetName| (n.namespace, n.name);
        assert_eq!(pair(name(Some("s3://lake/raw/orders/"))), ("s3://lake".into(), "raw/orders".into()));
        assert_eq!(
            pair(name(Some("postgres://db:5432/shop.public.orders"))),
            ("postgres://db:5432".into(), "shop.public.orders".into())
        );
        assert_eq!(pair(name(Some("bigquery://"))), ("bigquery://".into(), "orders".into()));
        assert_eq!(
            pair(name(Some("warehouse.staging.orders"))),
            ("sluice/team-a".into(), "warehouse.staging.orders".into())
        );
        assert_eq!(pair(name(None)), ("sluice/team-a".into(), "orders".into()));
    }

    #[test]
    fn a_complete_event_carries_the_window_parent_datasets_and_report() {
        let event = run_event(&facts(Kind::Complete));
        assert_eq!(event["eventType"], "COMPLETE");
        assert_eq!(event["eventTime"], "2026-11-24T11:00:05Z");
        assert_eq!(event["run"]["runId"], job_run_id("0b4c3b1e-uid").to_string());
        assert_eq!(event["job"]["name"], "orders.curate");
        assert_eq!(event["job"]["namespace"], "sluice/team-a");
        assert_eq!(event["job"]["facets"]["jobType"]["jobType"], "TRANSFORM");
        let facets = &event["run"]["facets"];
        assert_eq!(facets["nominalTime"]["nominalStartTime"], "2026-11-24T10:00:00Z");
        assert_eq!(facets["nominalTime"]["nominalEndTime"], "2026-11-24T11:00:00Z");
        assert_eq!(facets["parent"]["job"]["name"], "orders");
        assert_eq!(
            facets["parent"]["run"]["runId"],
            pipeline_run_id("team-a", "orders", "20261124-1000-1h").to_string()
        );
        assert!(facets.get("errorMessage").is_none(), "no error on success");
        assert_eq!(event["inputs"][0]["namespace"], "s3://lake");
        let out = &event["outputs"][0];
        assert_eq!(out["name"], "warehouse.marts.revenue");
        assert_eq!(out["facets"]["schema"]["fields"][0], json!({"name": "id", "type": "bigint"}));
        assert_eq!(out["outputFacets"]["outputStatistics"]["rowCount"], 42);
        assert_eq!(out["facets"]["schema"]["_producer"], PRODUCER);
    }

    #[test]
    fn a_fail_event_says_why_and_a_start_without_report_has_no_statistics() {
        let event = run_event(&facts(Kind::Fail));
        assert_eq!(event["run"]["facets"]["errorMessage"]["message"], "BackoffLimitExceeded");
        let mut start = facts(Kind::Start);
        start.report = None;
        let event = run_event(&start);
        assert_eq!(event["eventType"], "START");
        assert_eq!(event["outputs"][0]["outputFacets"], json!({}));
        assert!(event["run"]["facets"].get("errorMessage").is_none());
    }
}
