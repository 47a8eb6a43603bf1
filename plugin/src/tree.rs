//! What `status` and `backfill` print: a view of Pipelines (recent runs, their steps with phase,
//! duration and cost) and Datasets (freshness), as JSON for `-o json|yaml` and as a text tree.
//! Pure.

use serde_json::{Value, json};
use sluice::api::{Dataset, Pipeline};

/// Recent runs shown per Pipeline.
const RUNS: usize = 5;

/// The view of `pipelines` and the `datasets` they produce or read.
pub fn view(pipelines: &[Pipeline], datasets: &[Dataset]) -> Value {
    let names: Vec<&str> = pipelines.iter().filter_map(|p| p.metadata.name.as_deref()).collect();
    let pipelines: Vec<Value> = pipelines.iter().map(pipeline).collect();
    let datasets: Vec<Value> = datasets
        .iter()
        .filter(|d| {
            let s = d.status.as_ref();
            let related =
                |list: Option<&Vec<String>>| list.is_some_and(|l| l.iter().any(|p| names.contains(&p.as_str())));
            related(s.map(|s| &s.producers)) || related(s.map(|s| &s.consumers))
        })
        .map(|d| {
            let s = d.status.as_ref();
            json!({
                "name": d.metadata.name,
                "freshness": s.and_then(|s| s.freshness.as_ref()).map(|f| format!("{:?}", f.state)),
                "watermark": s.and_then(|s| s.watermark.as_ref()).map(|t| t.0.to_string()),
                "cost": s.and_then(|s| s.cost.as_ref()),
            })
        })
        .collect();
    json!({"pipelines": pipelines, "datasets": datasets})
}

fn pipeline(p: &Pipeline) -> Value {
    let status = p.status.clone().unwrap_or_default();
    let runs: Vec<Value> = status
        .active_runs
        .iter()
        .chain(status.recent_runs.iter().take(RUNS))
        .map(|r| {
            let duration = r.started.as_ref().zip(r.finished.as_ref()).map(|(s, f)| f.0.duration_since(s.0).as_secs());
            let steps: Vec<Value> = r.cost.as_ref().map_or(Vec::new(), |c| {
                c.steps
                    .iter()
                    .map(|s| {
                        json!({"name": s.name, "phase": s.phase, "seconds": s.seconds,
                                    "attempts": s.attempts, "cost": s.cost})
                    })
                    .collect()
            });
            json!({"id": r.id, "phase": format!("{:?}", r.phase), "seconds": duration,
                   "cost": r.cost.as_ref().map(|c| &c.total), "steps": steps})
        })
        .collect();
    json!({
        "name": p.metadata.name,
        "suspended": p.spec.suspend,
        "schedule": p.spec.schedule,
        "successRatio": status.success_ratio,
        "cost": status.cost,
        "runs": runs,
    })
}

fn cost_text(cost: &Value) -> String {
    let cpu = cost["cpuSeconds"].as_f64().unwrap_or(0.0);
    let gib = cost["memoryByteSeconds"].as_f64().unwrap_or(0.0) / (1u64 << 30) as f64;
    let price = match (cost["price"].as_f64(), cost["currency"].as_str()) {
        (Some(p), Some(c)) => format!(", {p:.4} {c}"),
        _ => String::new(),
    };
    format!("{cpu:.1} CPU-s, {gib:.2} GiB-s{price}")
}

/// The view as a tree.
pub fn render(view: &Value) -> String {
    let mut out = String::new();
    for p in view["pipelines"].as_array().into_iter().flatten() {
        let suspended = if p["suspended"] == true { " (suspended)" } else { "" };
        out.push_str(&format!("pipeline/{}{suspended}", p["name"].as_str().unwrap_or("?")));
        if p["cost"].is_object() {
            out.push_str(&format!("  [{} runs: {}]", p["cost"]["runs"], cost_text(&p["cost"]["total"])));
        }
        out.push('\n');
        for r in p["runs"].as_array().into_iter().flatten() {
            let secs = r["seconds"].as_i64().map(|s| format!(" {s}s")).unwrap_or_default();
            let cost = if r["cost"].is_object() { format!("  {}", cost_text(&r["cost"])) } else { String::new() };
            out.push_str(&format!(
                "├── {} {}{secs}{cost}\n",
                r["id"].as_str().unwrap_or("?"),
                r["phase"].as_str().unwrap_or("?")
            ));
            for s in r["steps"].as_array().into_iter().flatten() {
                out.push_str(&format!(
                    "│   └── {} {} {}s x{}  {}\n",
                    s["name"].as_str().unwrap_or("?"),
                    s["phase"].as_str().unwrap_or("?"),
                    s["seconds"],
                    s["attempts"],
                    cost_text(&s["cost"])
                ));
            }
        }
    }
    for d in view["datasets"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "dataset/{} {} watermark {}\n",
            d["name"].as_str().unwrap_or("?"),
            d["freshness"].as_str().unwrap_or("Unknown"),
            d["watermark"].as_str().unwrap_or("-")
        ));
    }
    out
}

/// A dry-run plan as text.
pub fn plan(name: &str, plan: &Value) -> String {
    let mut out = format!("backfill/{name} plan: {} windows, {} Jobs\n", plan["windows"], plan["jobs"]);
    for s in plan["steps"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "  step {}: {} CPU, {:.0} MiB, {}s ({})\n",
            s["name"].as_str().unwrap_or("?"),
            s["cpu"],
            s["memoryBytes"].as_f64().unwrap_or(0.0) / 1048576.0,
            s["seconds"],
            s["durationBasis"].as_str().unwrap_or("?")
        ));
    }
    let price = match (plan["price"].as_f64(), plan["currency"].as_str()) {
        (Some(p), Some(c)) => format!(", about {p:.2} {c}"),
        _ => String::new(),
    };
    out.push_str(&format!(
        "  estimate: {} CPU-hours, {} GiB-hours{price}\n  wall time: about {}s, {} partition(s) at once (limited by {})\n",
        plan["cpuHours"], plan["memoryGibHours"], plan["estimatedSeconds"], plan["concurrency"],
        plan["limitedBy"].as_str().unwrap_or("?")
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tree_shows_runs_steps_and_cost() {
        let p: Pipeline = serde_json::from_value(json!({
            "apiVersion": "sluice.dev/v1alpha1", "kind": "Pipeline", "metadata": {"name": "orders"},
            "spec": {"schedule": "0 * * * *", "steps": [{"name": "extract", "kind": "Extract",
                     "template": {"spec": {"containers": [{"name": "m", "image": "x"}]}}}]},
            "status": {"recentRuns": [{"id": "r1", "phase": "Succeeded",
                "window": {"start": "2026-11-24T10:00:00Z", "end": "2026-11-24T11:00:00Z"},
                "started": "2026-11-24T11:00:01Z", "finished": "2026-11-24T11:00:31Z",
                "cost": {"total": {"cpuSeconds": 30.0, "memoryByteSeconds": 0.0},
                         "steps": [{"name": "extract", "phase": "Succeeded", "attempts": 1, "seconds": 30,
                                    "cost": {"cpuSeconds": 30.0, "memoryByteSeconds": 0.0}}]}}]}
        }))
        .unwrap();
        let v = view(&[p], &[]);
        assert_eq!(v["pipelines"][0]["runs"][0]["seconds"], 30);
        let text = render(&v);
        assert!(text.contains("├── r1 Succeeded 30s  30.0 CPU-s"), "{text}");
        assert!(text.contains("└── extract Succeeded 30s x1"), "{text}");
    }
}
