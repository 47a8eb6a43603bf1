//! The bad-input corpus: every manifest under `e2e/testdata/invalid/` must be refused, at
//! `kubectl apply --server-side` (the CRD schema or a CEL rule) or by the operator (`Ready=False`
//! with reason `InvalidSpec` and a Warning Event), with a message containing the fragment that
//! the file declares on its first line:
//!
//! - `# expect: apply: <fragment>`: the last document is refused at apply (with strict field
//!   validation, as kubectl does); the documents before it are accepted (for immutability cases).
//! - `# expect: ready: <fragment>`: every document is accepted and the operator marks the last
//!   one `Ready=False`, reason `InvalidSpec`, with a Warning Event about it.
//! - `# expect: event: <object>: <fragment>`: every document is accepted and a Warning Event
//!   about `<object>` says so (for what only a run shows, such as an oversized step report).
//!
//! Each file runs in a fresh namespace, all files concurrently.

use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::StreamExt;
use kube::api::{DynamicObject, Patch, PatchParams};
use serde_json::Value;
use sluice_e2e::{TestNamespace, wait, yaml};

/// How many files the corpus must hold at least.
const MIN_CASES: usize = 60;
/// How long the operator may take to report a case.
const OPERATOR_TIMEOUT: Duration = Duration::from_secs(90);

#[derive(Debug)]
enum Expect {
    Apply(String),
    Ready(String),
    Event { object: String, fragment: String },
}

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/invalid")
}

fn expectation(text: &str) -> Result<Expect, String> {
    let line = text.lines().next().unwrap_or_default();
    let rest = line.strip_prefix("# expect: ").ok_or("the first line must be `# expect: <where>: <fragment>`")?;
    let (place, fragment) = rest.split_once(": ").ok_or("missing `: <fragment>`")?;
    let fragment = fragment.trim().to_string();
    match place {
        "apply" => Ok(Expect::Apply(fragment)),
        "ready" => Ok(Expect::Ready(fragment)),
        "event" => {
            let (object, fragment) = fragment.split_once(": ").ok_or("event needs `<object>: <fragment>`")?;
            Ok(Expect::Event { object: object.to_string(), fragment: fragment.to_string() })
        }
        other => Err(format!("unknown expectation {other:?}")),
    }
}

/// Server-side applies `doc` as `kubectl apply --server-side` does (strict field validation).
async fn apply(client: &kube::Client, ns: &str, doc: &Value) -> Result<DynamicObject, String> {
    let kind = doc["kind"].as_str().ok_or("document without kind")?;
    let name = doc["metadata"]["name"].as_str().ok_or("document without metadata.name")?;
    let params = PatchParams::apply("sluice-e2e").force().validation_strict();
    match yaml::sluice_api(client, ns, kind).patch(name, &params, &Patch::Apply(doc)).await {
        Ok(obj) => Ok(obj),
        Err(kube::Error::Api(status)) => Err(status.message),
        Err(other) => Err(format!("request failed: {other}")),
    }
}

/// Polls until `check` gives a verdict or the operator timeout passes.
async fn poll<F, Fut>(what: &str, check: F) -> Result<(), String>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Option<Result<(), String>>>,
{
    wait::poll_every(OPERATOR_TIMEOUT, Duration::from_millis(250), check)
        .await
        .unwrap_or_else(|| Err(format!("timed out after {OPERATOR_TIMEOUT:?} waiting for {what}")))
}

/// A Warning Event about `object` whose note contains `fragment`, with that reason if given.
async fn warned(client: &kube::Client, ns: &str, object: &str, reason: Option<&str>, fragment: &str) -> bool {
    wait::events(client, ns).await.iter().any(|e| {
        e.type_.as_deref() == Some("Warning")
            && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(object)
            && reason.is_none_or(|r| e.reason.as_deref() == Some(r))
            && e.note.as_deref().is_some_and(|n| n.contains(fragment))
    })
}

async fn ready_false(client: &kube::Client, ns: &str, doc: &Value, fragment: &str) -> Result<(), String> {
    let kind = doc["kind"].as_str().unwrap_or_default();
    let name = doc["metadata"]["name"].as_str().unwrap_or_default();
    let api = yaml::sluice_api(client, ns, kind);
    poll("Ready=False with reason InvalidSpec", || async {
        let obj = serde_json::to_value(api.get(name).await.ok()?).ok()?;
        match wait::condition(&obj, "Ready")? {
            (status, _, message) if status == "True" => Some(Err(format!("accepted silently: Ready=True ({message})"))),
            (_, reason, message) if reason == "InvalidSpec" => Some(if message.contains(fragment) {
                Ok(())
            } else {
                Err(format!("Ready message {message:?} lacks {fragment:?}"))
            }),
            _ => None,
        }
    })
    .await?;
    poll("a Warning Event InvalidSpec", || async {
        warned(client, ns, name, Some("InvalidSpec"), fragment).await.then_some(Ok(()))
    })
    .await
}

/// Runs one file in a fresh namespace; `Err` says how it failed.
async fn run_case(client: kube::Client, index: usize, path: PathBuf) -> Result<(), String> {
    let text = std::fs::read_to_string(&path).map_err(|e| e.to_string())?;
    let expect = expectation(&text)?;
    let docs = yaml::documents(&text);
    let (last, before) = docs.split_last().ok_or("no documents")?;
    // The index in the prefix keeps the names of namespaces created in the same instant apart.
    let ns = TestNamespace::create(&client, &format!("invalid{index}")).await;
    let result = async {
        for doc in before {
            apply(&client, &ns.name, doc).await.map_err(|e| format!("an earlier document was refused: {e}"))?;
        }
        let applied = apply(&client, &ns.name, last).await;
        match (&expect, applied) {
            (Expect::Apply(fragment), Err(message)) if message.contains(fragment.as_str()) => Ok(()),
            (Expect::Apply(fragment), Err(message)) => Err(format!("refused with {message:?}, lacking {fragment:?}")),
            (Expect::Apply(_), Ok(_)) => Err("accepted silently by the API server".into()),
            (_, Err(message)) => Err(format!("refused at apply, but the file expects the operator: {message}")),
            (Expect::Ready(fragment), Ok(_)) => ready_false(&client, &ns.name, last, fragment).await,
            (Expect::Event { object, fragment }, Ok(_)) => {
                poll("a Warning Event", || async {
                    warned(&client, &ns.name, object, None, fragment).await.then_some(Ok(()))
                })
                .await
            }
        }
    }
    .await;
    ns.delete().await;
    result
}

#[tokio::test]
async fn every_invalid_manifest_is_refused_with_its_message() {
    let client = sluice_e2e::setup().await;
    let mut files: Vec<PathBuf> = std::fs::read_dir(corpus_dir())
        .expect("e2e/testdata/invalid")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= MIN_CASES, "the corpus has {} files, fewer than {MIN_CASES}", files.len());
    let started = std::time::Instant::now();
    let results: Vec<(PathBuf, Result<(), String>)> = futures::stream::iter(files.into_iter().enumerate())
        .map(|(index, path)| {
            let client = client.clone();
            async move { (path.clone(), run_case(client, index, path).await) }
        })
        .buffer_unordered(24)
        .collect()
        .await;
    let failures: Vec<String> = results
        .iter()
        .filter_map(|(path, r)| {
            r.as_ref().err().map(|e| format!("{}: {e}", path.file_name().unwrap().to_string_lossy()))
        })
        .collect();
    println!("{} cases in {:?}", results.len(), started.elapsed());
    assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), results.len(), failures.join("\n"));
}

#[test]
fn every_file_declares_what_it_must_produce() {
    for entry in std::fs::read_dir(corpus_dir()).expect("corpus") {
        let path = entry.expect("entry").path();
        let text = std::fs::read_to_string(&path).expect("read");
        expectation(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(!yaml::documents(&text).is_empty(), "{}: no documents", path.display());
    }
}
