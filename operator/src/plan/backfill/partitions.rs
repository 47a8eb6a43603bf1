//! The partitions of a backfill: the windows of the Pipeline's schedule inside `spec.range`,
//! walked lazily in `spec.order`, so that 100,000 partitions cost a few steps per decision, not
//! 100,000. Pure.

use std::collections::BTreeSet;

use jiff::{SignedDuration, Timestamp};

use super::ranges::{RangeSet, Span};
use crate::api::{BackfillOrder, PartitionBasis, PipelineSpec};
use crate::schedule::{Schedule, Window, WindowRule, compact_duration};

/// Most ticks walked to find the first window starting at or after a time (windows much longer
/// than the schedule's interval need a few).
const MAX_WALK: usize = 10_000;

/// The windows of a schedule inside a range, in an order.
#[derive(Clone, Debug)]
pub struct Partitions<'a> {
    schedule: &'a Schedule,
    rule: WindowRule,
    range: Window,
    order: BackfillOrder,
}

impl<'a> Partitions<'a> {
    /// Windows of `schedule` (derived by `rule`) that lie inside `range` (start inclusive, end
    /// exclusive), walked in `order`.
    pub fn new(schedule: &'a Schedule, rule: WindowRule, range: Window, order: BackfillOrder) -> Self {
        Self { schedule, rule, range, order }
    }

    /// The tick at which the schedule runs `window`.
    pub fn tick_of(&self, window: &Window) -> Option<Timestamp> {
        window.end.checked_add(self.rule.offset).ok()
    }

    fn window(&self, tick: Timestamp) -> Option<Window> {
        self.schedule.window_at(tick, self.rule)
    }

    fn inside(&self, window: &Window) -> bool {
        self.range.start <= window.start && window.end <= self.range.end
    }

    fn tick_at_or_after(&self, t: Timestamp) -> Option<Timestamp> {
        self.schedule.latest_at_or_before(t).filter(|x| *x == t).or_else(|| self.schedule.next_after(t))
    }

    /// The oldest window (anywhere) starting at or after `t`.
    fn oldest_from(&self, t: Timestamp) -> Option<Window> {
        let lead = self.rule.offset.checked_add(self.rule.size.unwrap_or(SignedDuration::ZERO))?;
        let mut tick = self.tick_at_or_after(t.checked_add(lead).ok()?)?;
        for _ in 0..MAX_WALK {
            if let Some(window) = self.window(tick).filter(|w| w.start >= t) {
                return Some(window);
            }
            tick = self.schedule.next_after(tick)?;
        }
        None
    }

    /// The newest window (anywhere) ending at or before `t`.
    fn newest_until(&self, t: Timestamp) -> Option<Window> {
        self.window(self.schedule.latest_at_or_before(t.checked_add(self.rule.offset).ok()?)?)
    }

    /// The first partition in order.
    pub fn first(&self) -> Option<Window> {
        match self.order {
            BackfillOrder::OldestFirst => self.oldest_from(self.range.start),
            BackfillOrder::NewestFirst => self.newest_until(self.range.end),
        }
        .filter(|w| self.inside(w))
    }

    /// The first partition in order whose tick is at or before `horizon` (the schedule has
    /// handled it).
    pub fn first_due(&self, horizon: Timestamp) -> Option<Window> {
        match self.order {
            BackfillOrder::OldestFirst => self.first(),
            BackfillOrder::NewestFirst => {
                let until = horizon.checked_sub(self.rule.offset).ok()?.min(self.range.end);
                self.newest_until(until).filter(|w| self.inside(w))
            }
        }
    }

    /// The partition after `window` in order.
    pub fn after(&self, window: &Window) -> Option<Window> {
        let tick = self.tick_of(window)?;
        let next = match self.order {
            BackfillOrder::OldestFirst => self.schedule.next_after(tick)?,
            BackfillOrder::NewestFirst => self.schedule.previous_before(tick)?,
        };
        self.window(next).filter(|w| self.inside(w))
    }

    /// The first partition in order beyond the windows of `span` (a run of consecutive
    /// windows).
    pub fn past(&self, span: &Span) -> Option<Window> {
        match self.order {
            BackfillOrder::OldestFirst => {
                let last =
                    self.window(self.schedule.latest_at_or_before(span.end.checked_add(self.rule.offset).ok()?)?)?;
                self.after(&last)
            }
            BackfillOrder::NewestFirst => self.after(&self.oldest_from(span.start)?),
        }
    }

    /// The start of the window that follows (oldest first) the window ending at `end`: what
    /// tells whether two ranges of windows are adjacent.
    pub fn next_start(&self, end: Timestamp) -> Option<Timestamp> {
        let tick = end.checked_add(self.rule.offset).ok()?;
        self.window(self.schedule.next_after(tick)?).map(|w| w.start)
    }

    /// How many partitions there are, counting at most `limit + 1`.
    pub fn count(&self, limit: u64) -> u64 {
        let mut n = 0;
        let mut cursor = self.first();
        while let Some(w) = cursor {
            n += 1;
            if n > limit {
                break;
            }
            cursor = self.after(&w);
        }
        n
    }
}

/// The schedule and partition settings of a Pipeline, if it has a schedule.
pub fn basis_of(spec: &PipelineSpec) -> Option<PartitionBasis> {
    let partition = spec.partition.as_ref();
    Some(PartitionBasis {
        schedule: spec.schedule.clone()?,
        time_zone: spec.time_zone.clone(),
        size: partition.and_then(|p| p.size.clone()),
        offset: partition.and_then(|p| p.offset.clone()),
    })
}

/// The window rule of a basis, derived as `schedule::window_rule` derives a Pipeline's.
pub fn rule_of(basis: &PartitionBasis) -> WindowRule {
    crate::schedule::rule_from(basis.size.as_deref(), basis.offset.as_deref())
}

/// The basis a backfill's windows follow: the one pinned in its status once it has `started`
/// (a partition started or a window judged), the Pipeline's current one until then. A
/// backfill that started before bases were pinned pins the Pipeline's current one.
pub fn pinned_basis(
    pinned: Option<&PartitionBasis>,
    started: bool,
    pipeline: Option<&PipelineSpec>,
) -> Option<PartitionBasis> {
    match pinned {
        Some(p) if started => Some(p.clone()),
        _ => pipeline.and_then(basis_of),
    }
}

/// A short description of a schedule's windows, recorded in status next to the basis:
/// "0 * * * * UTC, window 1h, offset 0s".
pub fn describe(cron: &str, time_zone: Option<&str>, rule: WindowRule) -> String {
    let size = rule.size.map_or_else(|| "since previous tick".to_string(), compact_duration);
    format!("{cron} {}, window {size}, offset {}", time_zone.unwrap_or("UTC"), compact_duration(rule.offset))
}

/// How `judge` sees a window that is neither done nor running here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Run it.
    Select,
    /// Not selected by `reprocess`: done with it.
    Skip,
    /// A run of it is in progress elsewhere: look again later.
    Busy,
    /// A Job name it needs is held by another owner: it waits (the reason is shown).
    Held,
}

/// What one walk over the partitions found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Scan {
    /// Windows to start, in order.
    pub selected: Vec<Window>,
    /// Windows not selected by `reprocess`.
    pub skipped: Vec<Window>,
    /// Windows passed over because a run of them is in progress elsewhere.
    pub busy: usize,
    /// Windows passed over because a Job name they need is held by another owner.
    pub held: usize,
    /// The first window not yet handled by the schedule, when the walk reached one.
    pub waiting: Option<Window>,
    /// The walk stopped at its step budget before the end.
    pub exhausted: bool,
}

/// Walks the partitions in order from the first due one, over the processed ranges and the
/// running windows, asking `judge` about the others, until `want` are selected, the schedule's
/// `horizon` (windows whose tick is later are not due), the end, or `max_steps`.
pub fn scan(
    partitions: &Partitions<'_>,
    horizon: Timestamp,
    processed: &RangeSet,
    running: &BTreeSet<Window>,
    want: usize,
    max_steps: usize,
    mut judge: impl FnMut(&Window) -> Verdict,
) -> Scan {
    let mut out = Scan::default();
    if want == 0 {
        return out;
    }
    if let Some(first) = partitions.first().filter(|w| partitions.tick_of(w).is_none_or(|t| t > horizon)) {
        out.waiting = Some(first);
    }
    let mut cursor = partitions.first_due(horizon);
    let mut steps = 0;
    while let Some(window) = cursor {
        if steps == max_steps {
            out.exhausted = true;
            break;
        }
        steps += 1;
        if partitions.tick_of(&window).is_none_or(|t| t > horizon) {
            out.waiting = Some(window);
            break;
        }
        if let Some(span) = processed.containing(&window) {
            cursor = partitions.past(span);
            continue;
        }
        if !running.contains(&window) {
            match judge(&window) {
                Verdict::Select => {
                    out.selected.push(window);
                    if out.selected.len() == want {
                        break;
                    }
                }
                Verdict::Skip => out.skipped.push(window),
                Verdict::Busy => out.busy += 1,
                Verdict::Held => out.held += 1,
            }
        }
        cursor = partitions.after(&window);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn hourly() -> Schedule {
        Schedule::parse("0 * * * *", None).unwrap()
    }

    fn day() -> Window {
        Window { start: ts("2026-10-01T00:00:00Z"), end: ts("2026-10-02T00:00:00Z") }
    }

    fn all(p: &Partitions<'_>) -> Vec<Window> {
        std::iter::successors(p.first(), |w| p.after(w)).collect()
    }

    #[test]
    fn a_day_of_hourly_windows_in_both_orders() {
        let s = hourly();
        let oldest = Partitions::new(&s, WindowRule::default(), day(), BackfillOrder::OldestFirst);
        let windows = all(&oldest);
        assert_eq!(windows.len(), 24);
        assert_eq!(windows[0], Window { start: ts("2026-10-01T00:00:00Z"), end: ts("2026-10-01T01:00:00Z") });
        assert_eq!(windows[23].end, ts("2026-10-02T00:00:00Z"));
        assert_eq!(oldest.count(1000), 24);
        assert_eq!(oldest.count(10), 11, "counting stops past the limit");
        let newest = Partitions::new(&s, WindowRule::default(), day(), BackfillOrder::NewestFirst);
        let mut reversed = all(&newest);
        reversed.reverse();
        assert_eq!(reversed, windows);
    }

    #[test]
    fn offset_windows_and_partial_windows_at_the_edges() {
        // The example pipeline: minute 5, 1h windows ending 5 minutes before the tick.
        let s = Schedule::parse("5 * * * *", Some("Europe/Berlin")).unwrap();
        let rule = WindowRule { size: Some(SignedDuration::from_hours(1)), offset: SignedDuration::from_mins(5) };
        let p = Partitions::new(&s, rule, day(), BackfillOrder::OldestFirst);
        let windows = all(&p);
        assert_eq!(windows.len(), 24);
        assert_eq!(windows[0].start, ts("2026-10-01T00:00:00Z"));
        assert_eq!(p.tick_of(&windows[0]), Some(ts("2026-10-01T01:05:00Z")));
        // A range that cuts windows in half holds only the whole ones.
        let cut = Window { start: ts("2026-10-01T00:30:00Z"), end: ts("2026-10-01T03:30:00Z") };
        let p = Partitions::new(&s, rule, cut, BackfillOrder::OldestFirst);
        assert_eq!(all(&p).len(), 2);
        let empty = Window { start: ts("2026-10-01T00:10:00Z"), end: ts("2026-10-01T00:50:00Z") };
        assert_eq!(Partitions::new(&s, rule, empty, BackfillOrder::NewestFirst).first(), None);
    }

    #[test]
    fn skipping_a_span_lands_on_the_next_window_in_order() {
        let s = hourly();
        let span = Span { start: ts("2026-10-01T03:00:00Z"), end: ts("2026-10-01T06:00:00Z"), count: 3 };
        let oldest = Partitions::new(&s, WindowRule::default(), day(), BackfillOrder::OldestFirst);
        assert_eq!(oldest.past(&span).map(|w| w.start), Some(ts("2026-10-01T06:00:00Z")));
        let newest = Partitions::new(&s, WindowRule::default(), day(), BackfillOrder::NewestFirst);
        assert_eq!(newest.past(&span).map(|w| w.start), Some(ts("2026-10-01T02:00:00Z")));
        assert_eq!(oldest.next_start(ts("2026-10-01T06:00:00Z")), Some(ts("2026-10-01T06:00:00Z")));
    }

    fn select_all(_: &Window) -> Verdict {
        Verdict::Select
    }

    #[test]
    fn scan_passes_over_processed_and_running_windows() {
        let s = hourly();
        let p = Partitions::new(&s, WindowRule::default(), day(), BackfillOrder::OldestFirst);
        let windows = all(&p);
        let mut processed = RangeSet::default();
        for w in &windows[0..5] {
            processed.insert(*w, |e| p.next_start(e));
        }
        let running = BTreeSet::from([windows[5], windows[7]]);
        let horizon = ts("2026-11-01T00:00:00Z");
        let scan = scan(&p, horizon, &processed, &running, 3, 100, select_all);
        assert_eq!(scan.selected, vec![windows[6], windows[8], windows[9]]);
        assert!(scan.waiting.is_none() && !scan.exhausted);
    }

    #[test]
    fn scan_records_skips_and_busy_windows_and_stops_at_the_budget() {
        let s = hourly();
        let p = Partitions::new(&s, WindowRule::default(), day(), BackfillOrder::NewestFirst);
        let windows = all(&p);
        let horizon = ts("2026-11-01T00:00:00Z");
        let judge = |w: &Window| match w.start.as_second() / 3600 % 3 {
            0 => Verdict::Skip,
            1 => Verdict::Busy,
            _ => Verdict::Select,
        };
        let result = scan(&p, horizon, &RangeSet::default(), &BTreeSet::new(), 2, 100, judge);
        assert_eq!(result.selected.len(), 2);
        assert!(result.selected[0] > result.selected[1], "newest first");
        assert!(!result.skipped.is_empty() && result.busy > 0);
        let short = scan(&p, horizon, &RangeSet::default(), &BTreeSet::new(), 100, 5, |_| Verdict::Skip);
        assert_eq!(short.skipped, windows[..5]);
        assert!(short.exhausted);
        assert!(scan(&p, horizon, &RangeSet::default(), &BTreeSet::new(), 0, 100, select_all).selected.is_empty());
    }

    #[test]
    fn windows_the_schedule_has_not_handled_are_not_due() {
        let s = hourly();
        // The schedule handled ticks up to 06:00: windows ending after 06:00 wait.
        let horizon = ts("2026-10-01T06:00:00Z");
        let oldest = Partitions::new(&s, WindowRule::default(), day(), BackfillOrder::OldestFirst);
        let result = scan(&oldest, horizon, &RangeSet::default(), &BTreeSet::new(), 100, 1000, select_all);
        assert_eq!(result.selected.len(), 6);
        assert_eq!(result.waiting.map(|w| w.start), Some(ts("2026-10-01T06:00:00Z")));
        let newest = Partitions::new(&s, WindowRule::default(), day(), BackfillOrder::NewestFirst);
        let result = scan(&newest, horizon, &RangeSet::default(), &BTreeSet::new(), 100, 1000, select_all);
        assert_eq!(result.selected.len(), 6);
        assert_eq!(result.selected[0].end, horizon, "newest first starts at the newest due window");
        assert!(result.waiting.is_some());
    }

    #[test]
    fn a_year_of_hourly_windows_is_counted_quickly_and_walked_lazily() {
        let s = hourly();
        let year = Window { start: ts("2025-01-01T00:00:00Z"), end: ts("2026-01-01T00:00:00Z") };
        let p = Partitions::new(&s, WindowRule::default(), year, BackfillOrder::OldestFirst);
        crate::schedule::count::STEPS.with(|s| s.set(0));
        assert_eq!(p.count(1_000_000), 8760);
        let steps = crate::schedule::count::STEPS.with(|s| s.get());
        // One span covering the first 8000 windows is passed over in one step.
        let span = Span { start: year.start, end: ts("2025-12-01T08:00:00Z"), count: 8000 };
        let mut processed = RangeSet::default();
        processed.insert(Window { start: span.start, end: span.end }, Some);
        let result = scan(&p, ts("2026-06-01T00:00:00Z"), &processed, &BTreeSet::new(), 1, 3, select_all);
        assert_eq!(result.selected.first().map(|w| w.start), Some(span.end));
        assert!(steps <= 366, "counting 8760 windows took {steps} steps, more than one a day");
    }

    #[test]
    fn a_basis_has_the_pipelines_window_rule_and_is_pinned_once_started() {
        let mut spec: PipelineSpec = serde_json::from_value(serde_json::json!({
            "schedule": "5 * * * *", "timeZone": "Europe/Berlin",
            "partition": {"size": "1h", "offset": "5m"}, "steps": []
        }))
        .unwrap();
        let basis = basis_of(&spec).unwrap();
        assert_eq!(rule_of(&basis), crate::schedule::window_rule(&spec));
        spec.partition = None;
        assert_eq!(rule_of(&basis_of(&spec).unwrap()), crate::schedule::window_rule(&spec));
        // Started: the pinned basis holds, whatever the Pipeline says now.
        assert_eq!(pinned_basis(Some(&basis), true, Some(&spec)), Some(basis.clone()));
        assert_eq!(pinned_basis(Some(&basis), true, None), Some(basis.clone()));
        // Not started yet (or started before bases were pinned): the Pipeline's.
        assert_eq!(pinned_basis(Some(&basis), false, Some(&spec)), basis_of(&spec));
        assert_eq!(pinned_basis(None, true, Some(&spec)), basis_of(&spec));
        spec.schedule = None;
        assert_eq!(pinned_basis(None, false, Some(&spec)), None);
    }

    #[test]
    fn describe_names_schedule_and_window() {
        let rule = WindowRule { size: Some(SignedDuration::from_hours(1)), offset: SignedDuration::from_mins(5) };
        assert_eq!(describe("5 * * * *", Some("Europe/Berlin"), rule), "5 * * * * Europe/Berlin, window 1h, offset 5m");
        assert_eq!(
            describe("0 * * * *", None, WindowRule::default()),
            "0 * * * * UTC, window since previous tick, offset 0s"
        );
    }
}
