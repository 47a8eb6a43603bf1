//! Partition windows and run identities. Pure: times are passed in.
//!
//! The run due at tick `T` covers `[T - offset - size, T - offset)`, where `size` defaults to the
//! time since the previous tick. A run id is derived from the window alone, so the same window
//! always has the same id, across restarts and replicas.

use jiff::{SignedDuration, Timestamp};

use super::Schedule;

/// A partition window `[start, end)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Window {
    pub start: Timestamp,
    pub end: Timestamp,
}

impl Window {
    /// The run id of this window: its start in UTC to the minute (seconds when not whole minutes)
    /// and its length, for example `20261124-1000-1h`. Lowercase, a valid DNS label part.
    pub fn run_id(&self) -> String {
        let start = self.start.strftime(if self.start.as_second() % 60 == 0 { "%Y%m%d-%H%M" } else { "%Y%m%d-%H%M%S" });
        format!("{start}-{}", compact_duration(self.end.duration_since(self.start)))
    }
}

/// A duration as the shortest of `<n>d`, `<n>h`, `<n>m`, `<n>s` that is exact.
pub fn compact_duration(d: SignedDuration) -> String {
    let secs = d.as_secs();
    if secs > 0 && secs % 86400 == 0 {
        format!("{}d", secs / 86400)
    } else if secs > 0 && secs % 3600 == 0 {
        format!("{}h", secs / 3600)
    } else if secs > 0 && secs % 60 == 0 {
        format!("{}m", secs / 60)
    } else {
        format!("{secs}s")
    }
}

/// How the window of a tick is derived.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WindowRule {
    /// Fixed window length; `None` means "since the previous tick".
    pub size: Option<SignedDuration>,
    /// Shift of the window before the tick.
    pub offset: SignedDuration,
}

impl Schedule {
    /// The window of the run due at `tick`.
    pub fn window_at(&self, tick: Timestamp, rule: WindowRule) -> Option<Window> {
        let end = tick.checked_sub(rule.offset).ok()?;
        let start = match rule.size {
            Some(size) => end.checked_sub(size).ok()?,
            None => self.previous_before(tick)?.checked_sub(rule.offset).ok()?,
        };
        Some(Window { start, end })
    }

    /// The last tick strictly before `t`.
    pub fn previous_before(&self, t: Timestamp) -> Option<Timestamp> {
        self.latest_at_or_before(t.checked_sub(SignedDuration::from_secs(1)).ok()?).filter(|p| *p < t)
    }

    /// The ticks in `(after, until]`: the newest `limit` of them, newest first, walked back from
    /// `until`, and the exact number of older ones, counted without walking them (see
    /// [`Schedule::count_ticks`]), so a long outage costs `limit` steps plus one per day.
    pub fn due_ticks(&self, after: Timestamp, until: Timestamp, limit: usize) -> (Vec<Timestamp>, u64) {
        let mut ticks = Vec::new();
        let mut cursor = self.latest_at_or_before(until);
        while let Some(tick) = cursor.filter(|t| *t > after) {
            if ticks.len() == limit {
                return (ticks, self.count_ticks(after, tick));
            }
            ticks.push(tick);
            cursor = self.previous_before(tick);
        }
        (ticks, 0)
    }

    /// Every window whose tick falls in `[from, to)`, oldest first, at most `limit`.
    pub fn windows_between(&self, from: Timestamp, to: Timestamp, rule: WindowRule, limit: usize) -> Vec<Window> {
        let mut out = Vec::new();
        let mut cursor = self.latest_at_or_before(from).filter(|t| *t == from).or_else(|| self.next_after(from));
        while let Some(tick) = cursor {
            if tick >= to || out.len() == limit {
                break;
            }
            if let Some(window) = self.window_at(tick, rule) {
                out.push(window);
            }
            cursor = self.next_after(tick);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn default_window_is_previous_tick_to_this_one() {
        let s = Schedule::parse("0 * * * *", None).unwrap();
        let w = s.window_at(ts("2026-11-24T11:00:00Z"), WindowRule::default()).unwrap();
        assert_eq!(w, Window { start: ts("2026-11-24T10:00:00Z"), end: ts("2026-11-24T11:00:00Z") });
        assert_eq!(w.run_id(), "20261124-1000-1h");
    }

    #[test]
    fn size_and_offset_shift_the_window() {
        let s = Schedule::parse("5 * * * *", None).unwrap();
        let rule = WindowRule { size: Some(SignedDuration::from_hours(1)), offset: SignedDuration::from_mins(5) };
        let w = s.window_at(ts("2026-11-24T11:05:00Z"), rule).unwrap();
        assert_eq!(w, Window { start: ts("2026-11-24T10:00:00Z"), end: ts("2026-11-24T11:00:00Z") });
    }

    #[test]
    fn run_id_is_stable_and_distinguishes_lengths() {
        let a = Window { start: ts("2026-11-24T10:00:00Z"), end: ts("2026-11-25T10:00:00Z") };
        let b = Window { start: ts("2026-11-24T10:00:00Z"), end: ts("2026-11-24T10:15:00Z") };
        assert_eq!(a.run_id(), "20261124-1000-1d");
        assert_eq!(b.run_id(), "20261124-1000-15m");
        assert_eq!(a.run_id(), a.clone().run_id());
    }

    #[test]
    fn due_ticks_are_bounded_after_a_long_outage() {
        let s = Schedule::parse("* * * * *", None).unwrap();
        // A week of minutely ticks missed: 10080 due, only the newest 5 are walked.
        let (ticks, older) = s.due_ticks(ts("2026-11-17T00:00:00Z"), ts("2026-11-24T00:00:30Z"), 5);
        assert_eq!(ticks.len(), 5);
        assert_eq!(older, 10080 - 5);
        assert_eq!(ticks[0], ts("2026-11-24T00:00:00Z"));
        assert_eq!(ticks[4], ts("2026-11-23T23:56:00Z"));
        let (ticks, older) = s.due_ticks(ts("2026-11-23T23:58:00Z"), ts("2026-11-24T00:00:30Z"), 5);
        assert_eq!(ticks, [ts("2026-11-24T00:00:00Z"), ts("2026-11-23T23:59:00Z")]);
        assert_eq!(older, 0);
    }

    /// America/New_York falls back on 2026-11-01: 01:00-02:00 local happens twice. A daily run at
    /// 01:30 runs once that day (at the first 01:30, EDT), and the windows stay contiguous.
    #[test]
    fn fall_back_repeated_time_runs_once() {
        let s = Schedule::parse("30 1 * * *", Some("America/New_York")).unwrap();
        let (ticks, _) = s.due_ticks(ts("2026-10-31T12:00:00Z"), ts("2026-11-02T12:00:00Z"), 10);
        assert_eq!(ticks, [ts("2026-11-02T06:30:00Z"), ts("2026-11-01T05:30:00Z")]);
        let w = s.window_at(ts("2026-11-02T06:30:00Z"), WindowRule::default()).unwrap();
        // The day of the change is 25 hours long.
        assert_eq!(w.end.duration_since(w.start), SignedDuration::from_hours(25));
    }

    /// An hourly schedule across fall-back ticks every real hour: 01:00 EDT and 01:00 EST are
    /// both hours of data, so both run, with distinct run ids (UTC-based).
    #[test]
    fn fall_back_hourly_keeps_every_hour() {
        let s = Schedule::parse("0 * * * *", Some("America/New_York")).unwrap();
        let (ticks, _) = s.due_ticks(ts("2026-11-01T04:30:00Z"), ts("2026-11-01T07:30:00Z"), 10);
        let ids: Vec<_> = ticks.iter().map(|t| s.window_at(*t, WindowRule::default()).unwrap().run_id()).collect();
        assert_eq!(ticks.len(), 3, "{ticks:?}");
        let mut unique = ids.clone();
        unique.dedup();
        assert_eq!(unique.len(), 3, "{ids:?}");
    }

    /// America/New_York springs forward on 2026-03-08: 02:00-03:00 local does not exist. Rule: a
    /// run scheduled in the skipped hour runs at the first instant after the gap (03:00 EDT), like
    /// Vixie cron; the daily window that ends then is 23 hours long.
    #[test]
    fn spring_forward_skipped_time_runs_after_the_gap() {
        let s = Schedule::parse("30 2 * * *", Some("America/New_York")).unwrap();
        let (ticks, _) = s.due_ticks(ts("2026-03-07T12:00:00Z"), ts("2026-03-09T12:00:00Z"), 10);
        assert_eq!(ticks.len(), 2, "{ticks:?}");
        assert_eq!(ticks[0], ts("2026-03-09T06:30:00Z"));
        assert_eq!(ticks[1], ts("2026-03-08T07:00:00Z"));
    }

    /// Every tick in `(after, until]`, one by one: the reference the counts are checked against.
    fn brute_force(s: &Schedule, after: Timestamp, until: Timestamp) -> u64 {
        let mut n = 0;
        let mut cursor = s.latest_at_or_before(until);
        while let Some(tick) = cursor.filter(|t| *t > after) {
            n += 1;
            cursor = s.previous_before(tick);
        }
        n
    }

    /// All ticks due in `(after, until]` as `due_ticks` reports them: returned plus counted.
    fn total_due(s: &Schedule, after: Timestamp, until: Timestamp, limit: usize) -> u64 {
        let (ticks, older) = s.due_ticks(after, until, limit);
        ticks.len() as u64 + older
    }

    #[test]
    fn week_outage_every_five_minutes_is_counted_exactly() {
        let s = Schedule::parse("*/5 * * * *", None).unwrap();
        let (after, until) = (ts("2026-11-17T00:00:00Z"), ts("2026-11-24T00:00:30Z"));
        assert_eq!(brute_force(&s, after, until), 7 * 24 * 12);
        assert_eq!(total_due(&s, after, until, 10), 7 * 24 * 12);
    }

    /// Weekdays at 09:00 in Berlin over three weeks that contain the spring-forward Sunday
    /// (2026-03-29) and over the fall-back one (2026-10-25).
    #[test]
    fn weekday_outage_across_dst_is_counted_exactly() {
        let s = Schedule::parse("0 9 * * 1-5", Some("Europe/Berlin")).unwrap();
        for (after, until) in [
            (ts("2026-03-20T08:30:00Z"), ts("2026-04-10T07:00:00Z")),
            (ts("2026-10-16T07:00:01Z"), ts("2026-11-06T08:00:00Z")),
        ] {
            let expected = brute_force(&s, after, until);
            assert_eq!(expected, 15, "{after}..{until}");
            assert_eq!(total_due(&s, after, until, 3), expected, "{after}..{until}");
        }
    }

    #[test]
    fn seconds_schedule_over_a_day_is_counted_exactly() {
        let s = Schedule::parse("*/2 * * * * *", None).unwrap();
        let (after, until) = (ts("2026-11-23T00:00:01Z"), ts("2026-11-24T00:00:01.5Z"));
        let expected = brute_force(&s, after, until);
        assert_eq!(expected, 43200);
        assert_eq!(total_due(&s, after, until, 10), expected);
    }

    #[test]
    fn windows_between_lists_a_range() {
        let s = Schedule::parse("0 * * * *", None).unwrap();
        let ws = s.windows_between(ts("2026-10-01T00:00:00Z"), ts("2026-10-01T05:00:00Z"), WindowRule::default(), 100);
        assert_eq!(ws.len(), 5);
        assert_eq!(ws[0].end, ts("2026-10-01T00:00:00Z"));
    }
}
