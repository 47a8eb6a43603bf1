//! Late passes (`spec.lateness`): which earlier windows a scheduled run re-runs, under which
//! run ids, with which steps. Pure.
//!
//! The run due at tick T re-runs window W-d (d = 1 .. N windows before T's window) as run
//! `<run id of W-d>-late<d>`: the same (window, d) always gives the same id, so its Jobs have
//! deterministic names (`<pipeline>-<step>-<run id>`, hashed to 63 characters like every Job
//! name) that never collide with the window's own run (`<run id>`), a manual run
//! (`-manual-<hash>`) or a Backfill's (`-b<hash>`).

use jiff::{SignedDuration, Timestamp};

use crate::api::{LatenessSpec, PipelineSpec, StepSpec};
use crate::schedule::{Schedule, Window, WindowRule};

/// Most earlier windows one scheduled run re-runs (`lookback` is at most this, and `duration`
/// is cut at this many windows).
pub const MAX_LOOKBACK: u32 = 24;

/// The run-id marker of a late pass: `<run id>-late<d>`.
const MARKER: &str = "-late";

/// The run id of the late pass `distance` windows before its scheduled window, of `window`.
pub fn run_id(window: &Window, distance: u32) -> String {
    format!("{}{MARKER}{distance}", window.run_id())
}

/// The distance of a late pass from its run id, `None` for any other run.
pub fn pass_of(run_id: &str) -> Option<u32> {
    let (_, digits) = run_id.rsplit_once(MARKER)?;
    let distance: u32 = digits.parse().ok().filter(|d| (1..=MAX_LOOKBACK).contains(d))?;
    (digits == distance.to_string()).then_some(distance)
}

/// The steps a late pass runs: those with `lateRerun: true`.
pub fn steps(spec: &PipelineSpec) -> Vec<&StepSpec> {
    spec.steps.iter().filter(|s| s.late_rerun).collect()
}

/// How far back the late passes of the window starting at `start` go.
enum Reach {
    Windows(u32),
    Since(Timestamp),
}

fn reach(lateness: &LatenessSpec, start: Timestamp) -> Option<Reach> {
    if let Some(n) = lateness.lookback {
        return Some(Reach::Windows((n.max(1) as u32).min(MAX_LOOKBACK)));
    }
    let d: SignedDuration = crate::duration::parse(lateness.duration.as_deref()?).ok()?;
    start.checked_sub(d).ok().map(Reach::Since)
}

/// The earlier windows that the scheduled run of `window` (due at `tick`) re-runs, with their
/// distance, nearest first: the previous ticks' windows, while their tick is after `created`
/// (windows from before the Pipeline existed were never its to run) and within the reach.
pub fn windows(
    spec: &PipelineSpec,
    schedule: &Schedule,
    rule: WindowRule,
    tick: Timestamp,
    window: &Window,
    created: Timestamp,
) -> Vec<(u32, Window)> {
    let Some(reach) = spec.lateness.as_ref().and_then(|l| reach(l, window.start)) else { return Vec::new() };
    if steps(spec).is_empty() {
        return Vec::new();
    }
    let mut out = Vec::new();
    let mut cursor = schedule.previous_before(tick);
    for distance in 1..=MAX_LOOKBACK {
        let Some(t) = cursor.filter(|t| *t > created) else { break };
        let Some(w) = schedule.window_at(t, rule) else { break };
        let within = match reach {
            Reach::Windows(n) => distance <= n,
            Reach::Since(since) => w.start >= since,
        };
        if !within {
            break;
        }
        out.push((distance, w));
        cursor = schedule.previous_before(t);
    }
    out
}

/// The horizon a Backfill may work up to when the Pipeline's schedule has handled its ticks up
/// to `horizon`: the tick before the oldest window that the next tick's late passes would
/// re-run, so a Backfill never starts a window a late pass may still start (and the late pass
/// of a window a Backfill runs is never due). `None` without lateness (or with no late window
/// ahead): the horizon itself.
pub fn backfill_horizon(spec: &PipelineSpec, horizon: Timestamp, created: Timestamp) -> Option<Timestamp> {
    spec.lateness.as_ref()?;
    let schedule = Schedule::parse(spec.schedule.as_deref()?, spec.time_zone.as_deref()).ok()?;
    let rule = crate::schedule::window_rule(spec);
    let next = schedule.next_after(horizon)?;
    let window = schedule.window_at(next, rule)?;
    let (distance, _) = *windows(spec, &schedule, rule, next, &window, created).last()?;
    let mut tick = next;
    for _ in 0..distance {
        tick = schedule.previous_before(tick)?;
    }
    Some(schedule.previous_before(tick).unwrap_or(created).min(horizon))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn spec(lateness: serde_json::Value) -> PipelineSpec {
        serde_json::from_value(serde_json::json!({
            "schedule": "0 * * * *", "lateness": lateness,
            "steps": [
                {"name": "extract", "kind": "Extract", "template": {"spec": {"containers": []}}},
                {"name": "merge", "kind": "Transform", "dependsOn": ["extract"], "lateRerun": true,
                 "template": {"spec": {"containers": []}}}
            ]
        }))
        .unwrap()
    }

    fn hourly(spec: &PipelineSpec, tick: &str, created: &str) -> Vec<(u32, String)> {
        let schedule = Schedule::parse("0 * * * *", None).unwrap();
        let rule = crate::schedule::window_rule(spec);
        let tick = ts(tick);
        let window = schedule.window_at(tick, rule).unwrap();
        windows(spec, &schedule, rule, tick, &window, ts(created))
            .into_iter()
            .map(|(d, w)| (d, run_id(&w, d)))
            .collect()
    }

    #[test]
    fn lookback_re_runs_the_previous_windows_under_distinct_names() {
        let s = spec(serde_json::json!({"lookback": 3}));
        assert_eq!(
            hourly(&s, "2026-11-24T10:00:00Z", "2026-11-01T00:00:00Z"),
            [
                (1, "20261124-0800-1h-late1".into()),
                (2, "20261124-0700-1h-late2".into()),
                (3, "20261124-0600-1h-late3".into())
            ]
        );
        assert_eq!(steps(&s).iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), ["merge"]);
    }

    #[test]
    fn windows_from_before_the_pipeline_existed_are_not_re_run() {
        let s = spec(serde_json::json!({"lookback": 3}));
        // Created at 07:30: the 08:00 tick is its first, so the 10:00 run re-runs two windows.
        let got = hourly(&s, "2026-11-24T10:00:00Z", "2026-11-24T07:30:00Z");
        assert_eq!(got.iter().map(|(d, _)| *d).collect::<Vec<_>>(), [1, 2]);
        assert!(hourly(&s, "2026-11-24T08:00:00Z", "2026-11-24T07:30:00Z").is_empty(), "the first tick");
    }

    #[test]
    fn a_duration_reaches_back_from_the_window_start_and_is_capped() {
        let s = spec(serde_json::json!({"duration": "2h"}));
        // Window [09:00, 10:00): windows starting at or after 07:00.
        let got = hourly(&s, "2026-11-24T10:00:00Z", "2026-11-01T00:00:00Z");
        assert_eq!(got, [(1, "20261124-0800-1h-late1".into()), (2, "20261124-0700-1h-late2".into())]);
        let long = spec(serde_json::json!({"duration": "240h"}));
        assert_eq!(hourly(&long, "2026-11-24T10:00:00Z", "2026-11-01T00:00:00Z").len(), MAX_LOOKBACK as usize);
    }

    #[test]
    fn no_opted_in_step_or_no_lateness_means_no_late_pass() {
        let mut s = spec(serde_json::json!({"lookback": 2}));
        s.steps[1].late_rerun = false;
        assert!(hourly(&s, "2026-11-24T10:00:00Z", "2026-11-01T00:00:00Z").is_empty());
        s.lateness = None;
        assert!(hourly(&s, "2026-11-24T10:00:00Z", "2026-11-01T00:00:00Z").is_empty());
    }

    #[test]
    fn backfills_stay_behind_the_windows_the_next_late_passes_reach() {
        let s = spec(serde_json::json!({"lookback": 2}));
        let created = ts("2026-11-01T00:00:00Z");
        // Handled up to 10:00: the 11:00 tick re-runs the windows of the 10:00 and 09:00 ticks,
        // so a Backfill works up to the 08:00 tick (window [07:00, 08:00)).
        assert_eq!(backfill_horizon(&s, ts("2026-11-24T10:00:00Z"), created), Some(ts("2026-11-24T08:00:00Z")));
        let mut none = s.clone();
        none.lateness = None;
        assert_eq!(backfill_horizon(&none, ts("2026-11-24T10:00:00Z"), created), None);
        // Nothing to reach before the Pipeline existed: the horizon itself.
        let h = ts("2026-11-24T10:00:00Z");
        assert_eq!(backfill_horizon(&s, h, ts("2026-11-24T10:30:00Z")), None);
    }

    #[test]
    fn the_pass_is_read_back_from_the_run_id_only_for_late_passes() {
        let w = Window { start: ts("2026-11-24T08:00:00Z"), end: ts("2026-11-24T09:00:00Z") };
        assert_eq!(pass_of(&run_id(&w, 3)), Some(3));
        assert_eq!(pass_of("20261124-0800-1h"), None);
        assert_eq!(pass_of("20261124-0800-1h-manual-abc123"), None);
        assert_eq!(pass_of("20261124-0800-1h-late03"), None);
        assert_eq!(pass_of("20261124-0800-1h-late99"), None);
        assert_eq!(pass_of("20261124-0800-1h-b1a2b3c"), None);
    }

    #[test]
    fn late_pass_job_names_stay_within_63_characters_and_distinct() {
        let w = Window { start: ts("2026-11-24T08:00:00Z"), end: ts("2026-11-24T09:00:00Z") };
        let long = "a-pipeline-with-quite-a-long-name";
        let names: std::collections::BTreeSet<String> =
            (1..=MAX_LOOKBACK).map(|d| crate::jobs::job_name(long, "merge-orders", &run_id(&w, d), 0)).collect();
        assert_eq!(names.len(), MAX_LOOKBACK as usize);
        assert!(names.iter().all(|n| n.len() <= 63), "{names:?}");
        assert!(!names.contains(&crate::jobs::job_name(long, "merge-orders", &w.run_id(), 0)));
    }
}
