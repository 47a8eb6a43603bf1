//! The mocked-API tier: the real reconcilers (`controller::backfill`, `controller::pipeline`)
//! over a `kube::Client` whose transport is `tower_test`'s mock service, answered by a small
//! in-memory API server ([`FakeServer`]) that records every request. The tests pin down the
//! orders of calls the exactly-once rules depend on, as the HTTP requests the operator sends.

mod backfill;
mod errors;
mod pipeline;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use http::{Request, Response};
use k8s_openapi::api::batch::v1::Job;
use kube::Client;
use kube::client::Body;
use kube::core::DeserializeGuard;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, store::Writer};
use kube::runtime::watcher;
use serde_json::{Value, json};

use super::context::{Caches, Context};
use super::guard::ValidStore;
use super::job_cache::JobCaps;
use crate::api::{Backfill, Dataset, Pipeline};

/// One request as the fake API server received it.
#[derive(Clone, Debug)]
pub struct Call {
    pub method: String,
    /// The path below the group and version, e.g. `backfills/fill/status` or `jobs`.
    pub resource: String,
    pub body: Value,
    /// The status code answered.
    pub code: u16,
}

impl Call {
    /// `METHOD resource`, for comparing orders.
    pub fn short(&self) -> String {
        format!("{} {}", self.method, self.resource)
    }

    /// The `metadata.resourceVersion` a write was conditioned on.
    pub fn precondition(&self) -> Option<&str> {
        self.body.pointer("/metadata/resourceVersion").and_then(Value::as_str)
    }
}

/// An API server holding objects by resource path (`backfills/fill`, `jobs/x`) in one
/// namespace: GET, POST (409 `AlreadyExists` on a taken name), PATCH of `…/status` (409 when
/// the patch's `resourceVersion` is not the stored one), DELETE; Events are accepted and kept
/// apart.
#[derive(Default)]
pub struct FakeServer {
    objects: BTreeMap<String, Value>,
    version: u64,
    pub calls: Vec<Call>,
    pub events: Vec<Value>,
}

impl FakeServer {
    /// Stores `obj` under `plural/name` at a new resourceVersion.
    pub fn put(&mut self, plural: &str, mut obj: Value) {
        self.version += 1;
        obj["metadata"]["resourceVersion"] = json!(self.version.to_string());
        let name = obj["metadata"]["name"].as_str().unwrap_or_default().to_string();
        self.objects.insert(format!("{plural}/{name}"), obj);
    }

    pub fn get(&self, path: &str) -> Option<&Value> {
        self.objects.get(path)
    }

    fn answer(&mut self, method: &str, resource: &str, body: &Value) -> (u16, Value) {
        let parts: Vec<&str> = resource.split('/').collect();
        match (method, parts.as_slice()) {
            ("POST", ["events"]) => {
                self.events.push(body.clone());
                (201, body.clone())
            }
            ("GET", [plural, name]) => self.read(&format!("{plural}/{name}")),
            ("POST", [plural]) => self.create(plural, body),
            ("PATCH", [plural, name, "status"]) => self.patch_status(&format!("{plural}/{name}"), body),
            ("DELETE", [plural, name]) => match self.objects.remove(&format!("{plural}/{name}")) {
                Some(_) => (200, json!({"kind": "Status", "apiVersion": "v1", "status": "Success"})),
                None => status(404, "NotFound"),
            },
            _ => status(405, "MethodNotAllowed"),
        }
    }

    fn read(&self, path: &str) -> (u16, Value) {
        self.objects.get(path).map_or_else(|| status(404, "NotFound"), |o| (200, o.clone()))
    }

    fn create(&mut self, plural: &str, body: &Value) -> (u16, Value) {
        let path = format!("{plural}/{}", body["metadata"]["name"].as_str().unwrap_or_default());
        if self.objects.contains_key(&path) {
            return status(409, "AlreadyExists");
        }
        self.put(plural, body.clone());
        (201, self.objects[&path].clone())
    }

    fn patch_status(&mut self, path: &str, body: &Value) -> (u16, Value) {
        let Some(current) = self.objects.get(path).cloned() else { return status(404, "NotFound") };
        let wanted = body.pointer("/metadata/resourceVersion");
        if wanted.is_some() && wanted != current.pointer("/metadata/resourceVersion") {
            return status(409, "Conflict");
        }
        let mut updated = current;
        updated["status"] = body["status"].clone();
        let plural = path.split('/').next().unwrap_or_default().to_string();
        self.put(&plural, updated);
        self.read(path)
    }
}

fn status(code: u16, reason: &str) -> (u16, Value) {
    let body = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": reason,
                      "message": format!("fake API server: {reason}"), "code": code});
    (code, body)
}

/// A client whose requests `server` answers, on a task of the test's runtime.
pub fn client(server: Arc<Mutex<FakeServer>>) -> Client {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    tokio::spawn(async move {
        while let Some((request, send)) = handle.next_request().await {
            let (parts, body) = request.into_parts();
            let bytes = body.collect_bytes().await.unwrap_or_default();
            let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            let resource = resource_path(parts.uri.path());
            let method = parts.method.to_string();
            let (code, answer) = {
                let mut server = server.lock().unwrap();
                let (code, answer) = server.answer(&method, &resource, &body);
                if resource != "events" {
                    server.calls.push(Call { method, resource, body, code });
                }
                (code, answer)
            };
            let response = Response::builder().status(code).body(Body::from(serde_json::to_vec(&answer).unwrap()));
            send.send_response(response.unwrap());
        }
    });
    Client::new(service, "ns")
}

/// `/apis/<group>/<version>/namespaces/ns/<rest>` (or `/api/v1/...`) -> `<rest>`.
fn resource_path(path: &str) -> String {
    path.split_once("/namespaces/ns/").map_or(path, |(_, rest)| rest).to_string()
}

/// The operator's caches, with their writers for the test to fill.
pub struct Cluster {
    pub pipelines: Writer<DeserializeGuard<Pipeline>>,
    pub jobs: Writer<Job>,
    caches: Caches,
}

impl Cluster {
    pub fn new() -> Self {
        let (pipeline_store, pipelines) = reflector::store();
        let (job_store, jobs) = reflector::store();
        let caches = Caches {
            pipelines: ValidStore::new(pipeline_store),
            datasets: ValidStore::new(reflector::store::<DeserializeGuard<Dataset>>().0),
            backfills: ValidStore::new(reflector::store::<DeserializeGuard<Backfill>>().0),
            quotas: reflector::store().0,
            jobs: job_store,
            job_index: Default::default(),
            pods: reflector::store().0,
            limit_ranges: reflector::store().0,
            allowed_accounts: reflector::store().0,
        };
        Self { pipelines, jobs, caches }
    }

    /// Shows `pipeline` in the Pipeline cache.
    pub fn cache_pipeline(&mut self, pipeline: Pipeline) {
        self.pipelines.apply_watcher_event(&watcher::Event::Apply(DeserializeGuard(Ok(pipeline))));
    }

    /// Shows `job` in the Job cache.
    pub fn cache_job(&mut self, job: Job) {
        self.job_event(watcher::Event::Apply(job));
    }

    /// Applies `event` to the Job cache and its index, in the order of the Job watch.
    pub fn job_event(&mut self, event: watcher::Event<Job>) {
        self.caches.job_index.before(&event);
        self.jobs.apply_watcher_event(&event);
        self.caches.job_index.after(&event);
    }

    /// The controllers' context over `client`.
    pub fn context(&self, client: Client) -> Arc<Context> {
        let reporter = Reporter { controller: "sluice-operator".into(), instance: None };
        let recorder = Recorder::new(client.clone(), reporter);
        let metrics = crate::metrics::Metrics::new();
        Context::new(client, recorder, metrics, self.caches.clone(), JobCaps::default(), Default::default())
    }
}

/// A fake API server, the operator's caches and the controllers' context over both.
pub struct World {
    pub server: Arc<Mutex<FakeServer>>,
    pub cluster: Cluster,
    pub ctx: Arc<Context>,
}

impl World {
    /// A world whose server holds `obj` under `plural`.
    pub fn new(plural: &str, obj: Value) -> Self {
        let mut server = FakeServer::default();
        server.put(plural, obj);
        let cluster = Cluster::new();
        let server = Arc::new(Mutex::new(server));
        let ctx = cluster.context(client(Arc::clone(&server)));
        Self { server, cluster, ctx }
    }

    /// The object the server holds under `path`.
    pub fn object(&self, path: &str) -> Value {
        self.server.lock().unwrap().get(path).cloned().unwrap_or(Value::Null)
    }

    /// The requests since the first `before`.
    pub fn calls_since(&self, before: usize) -> Vec<Call> {
        self.server.lock().unwrap().calls[before..].to_vec()
    }

    pub fn call_count(&self) -> usize {
        self.server.lock().unwrap().calls.len()
    }

    /// The Jobs created so far, as posted.
    pub fn jobs(&self) -> Vec<Value> {
        let server = self.server.lock().unwrap();
        server.calls.iter().filter(|c| c.method == "POST" && c.code == 201).map(|c| c.body.clone()).collect()
    }

    /// The Events published so far.
    pub fn events(&self) -> Vec<Value> {
        self.server.lock().unwrap().events.clone()
    }

    /// The Events once one has `reason` (they are published in the background), or after 2 s.
    pub async fn events_with(&self, reason: &str) -> Vec<Value> {
        for _ in 0..100 {
            let events = self.events();
            if events.iter().any(|e| e["reason"] == reason) {
                return events;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        self.events()
    }
}

/// `METHOD resource` of each call.
pub fn shorts(calls: &[Call]) -> Vec<String> {
    calls.iter().map(Call::short).collect()
}

/// Marks a Job (as created) Complete.
pub fn completed(job: &Value) -> Job {
    let mut job: Job = serde_json::from_value(job.clone()).unwrap();
    job.status = Some(
        serde_json::from_value(json!({"succeeded": 1, "conditions": [{"type": "Complete", "status": "True",
            "lastTransitionTime": jiff::Timestamp::now()}], "completionTime": jiff::Timestamp::now()}))
        .unwrap(),
    );
    job
}
