//! Partition windows and run identities. Pure: times are passed in.
//!
//! The run due at tick `T` covers `[T - offset - size, T - offset)`, where `size` defaults to the
//! time since the previous tick. A `size` equal to the schedule's wall-clock period (24h for a
//! daily schedule) follows the ticks across UTC-offset changes instead, so windows stay contiguous
//! on 23- and 25-hour days. A run id is derived from the window alone, so the same window
//! always has the same id, across restarts and replicas.

use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp, Zoned};

use super::Schedule;
use crate::api::PipelineSpec;
use crate::duration;

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

/// The window rule of a spec (validated durations; invalid ones fall back to defaults).
pub fn window_rule(spec: &PipelineSpec) -> WindowRule {
    let partition = spec.partition.as_ref();
    rule_from(partition.and_then(|p| p.size.as_deref()), partition.and_then(|p| p.offset.as_deref()))
}

/// The window rule of a partition size and offset as written (invalid ones fall back to
/// defaults: the time between ticks, no offset).
pub fn rule_from(size: Option<&str>, offset: Option<&str>) -> WindowRule {
    let parse = |v: Option<&str>| v.and_then(|d| duration::parse(d).ok());
    WindowRule { size: parse(size).filter(|d| !d.is_zero()), offset: parse(offset).unwrap_or(SignedDuration::ZERO) }
}

impl Schedule {
    /// The window of the run due at `tick`.
    pub fn window_at(&self, tick: Timestamp, rule: WindowRule) -> Option<Window> {
        let end = tick.checked_sub(rule.offset).ok()?;
        let start = match rule.size {
            Some(size) => match self.previous_if_period(tick, size) {
                Some(previous) => previous.checked_sub(rule.offset).ok()?,
                None => end.checked_sub(size).ok()?,
            },
            None => self.previous_before(tick)?.checked_sub(rule.offset).ok()?,
        };
        Some(Window { start, end })
    }

    /// The previous tick when `size` is the schedule's period at `tick` on the wall clock but not
    /// in real time: across a UTC-offset change (a 23- or 25-hour day for a daily schedule with
    /// `size: 24h`), where `tick - size` would overlap the previous window or leave a gap. A
    /// window that starts at the previous tick keeps the windows contiguous; everywhere else the
    /// two are the same instant, and a size that is not the period stays an exact duration.
    fn previous_if_period(&self, tick: Timestamp, size: SignedDuration) -> Option<Timestamp> {
        if self.tz.to_fixed_offset().is_ok() {
            return None;
        }
        let previous = self.previous_before(tick)?;
        if tick.duration_since(previous) == size {
            return None;
        }
        (self.wall_clock_period(tick)? == size).then_some(previous)
    }

    /// The time from the scheduled wall-clock time of `tick` back to the one before it, as the
    /// cron pattern reads the wall clock (without daylight saving). The scheduled time of a tick
    /// carried past a spring-forward gap is the skipped time, not the instant it ran.
    fn wall_clock_period(&self, tick: Timestamp) -> Option<SignedDuration> {
        let wall = Zoned::new(tick, self.tz.clone()).datetime().to_zoned(TimeZone::UTC).ok()?;
        let scheduled = self.cron.find_previous_occurrence(&wall, true).ok()?;
        let before = self.cron.find_previous_occurrence(&scheduled, false).ok()?;
        Some(scheduled.timestamp().duration_since(before.timestamp()))
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

    /// The windows of every tick in `[from, to)`, checked to tile: each ends where the next starts.
    fn assert_tiles(s: &Schedule, rule: WindowRule, from: &str, to: &str) -> Vec<Window> {
        let windows = s.windows_between(ts(from), ts(to), rule, 1000);
        assert!(windows.len() > 1, "{windows:?}");
        for pair in windows.windows(2) {
            assert_eq!(pair[0].end, pair[1].start, "gap or overlap between {:?} and {:?}", pair[0], pair[1]);
        }
        windows
    }

    fn sized(size: &str, offset: &str) -> WindowRule {
        let parse = |d: &str| crate::duration::parse(d).unwrap();
        WindowRule { size: Some(parse(size)), offset: parse(offset) }
    }

    /// Daily at midnight in Berlin with `size: 24h`: the spring-forward day (2026-03-29) has 23
    /// hours and the fall-back day (2026-10-25) 25; the windows follow the days and tile.
    #[test]
    fn daily_size_equal_to_the_period_tiles_across_both_dst_changes() {
        let s = Schedule::parse("0 0 * * *", Some("Europe/Berlin")).unwrap();
        let rule = sized("24h", "0s");
        let spring = assert_tiles(&s, rule, "2026-03-27T00:00:00Z", "2026-04-01T00:00:00Z");
        let day = |w: &Window| w.end.duration_since(w.start).as_hours();
        assert_eq!(spring.iter().map(day).collect::<Vec<_>>(), [24, 24, 23, 24, 24]);
        assert_eq!(spring[2].start, ts("2026-03-28T23:00:00Z"));
        assert_eq!(spring[2].run_id(), "20260328-2300-23h");
        let fall = assert_tiles(&s, rule, "2026-10-23T00:00:00Z", "2026-10-28T00:00:00Z");
        assert_eq!(fall.iter().map(day).collect::<Vec<_>>(), [24, 24, 25, 24, 24]);
        // Lord Howe shifts by 30 minutes (2026-04-05 and 2026-10-04).
        let s = Schedule::parse("0 0 * * *", Some("Australia/Lord_Howe")).unwrap();
        assert_tiles(&s, rule, "2026-04-02T00:00:00Z", "2026-04-08T00:00:00Z");
        assert_tiles(&s, rule, "2026-10-01T00:00:00Z", "2026-10-07T00:00:00Z");
    }

    /// The orders-ingest example: hourly at minute 5, `size: 1h`, `offset: 5m`, in Berlin.
    #[test]
    fn hourly_with_offset_tiles_across_both_dst_changes() {
        let s = Schedule::parse("5 * * * *", Some("Europe/Berlin")).unwrap();
        let rule = sized("1h", "5m");
        for (from, to) in
            [("2026-03-28T22:00:00Z", "2026-03-29T04:00:00Z"), ("2026-10-24T22:00:00Z", "2026-10-25T04:00:00Z")]
        {
            let windows = assert_tiles(&s, rule, from, to);
            assert!(
                windows.iter().all(|w| w.end.duration_since(w.start) == SignedDuration::from_hours(1)),
                "{windows:?}"
            );
        }
    }

    /// A daily run at 02:30 in New York is carried to 03:00 EDT on 2026-03-08 (02:30 does not
    /// exist that day); with `size: 24h` the windows around it still tile.
    #[test]
    fn carried_tick_in_the_gap_still_tiles() {
        let s = Schedule::parse("30 2 * * *", Some("America/New_York")).unwrap();
        assert_tiles(&s, sized("24h", "0s"), "2026-03-06T00:00:00Z", "2026-03-11T00:00:00Z");
        assert_tiles(&s, sized("24h", "0s"), "2026-10-30T00:00:00Z", "2026-11-04T00:00:00Z");
    }

    /// Every two hours in New York: at spring-forward 02:00 does not exist, so 00:00 EST is
    /// followed by 04:00 EDT, three real hours later; the window covers all three.
    #[test]
    fn interval_schedule_skipping_a_tick_in_the_gap_still_tiles() {
        let s = Schedule::parse("0 */2 * * *", Some("America/New_York")).unwrap();
        assert_tiles(&s, sized("2h", "0s"), "2026-03-07T20:00:00Z", "2026-03-08T14:00:00Z");
        assert_tiles(&s, sized("2h", "0s"), "2026-10-31T20:00:00Z", "2026-11-01T14:00:00Z");
        let h = Schedule::parse("0 * * * *", Some("America/New_York")).unwrap();
        assert_tiles(&h, sized("1h", "0s"), "2026-03-08T03:00:00Z", "2026-03-08T10:00:00Z");
        assert_tiles(&h, sized("1h", "0s"), "2026-11-01T03:00:00Z", "2026-11-01T10:00:00Z");
    }

    /// A size that is not the schedule's spacing is a rolling window of exactly that length,
    /// DST or not: weekdays at 09:00 looking back 24 real hours, hourly looking back a day.
    #[test]
    fn other_sizes_stay_exact_durations() {
        let s = Schedule::parse("0 9 * * 1-5", Some("Europe/Berlin")).unwrap();
        // Monday 2026-03-30 09:00 CEST, after the spring-forward Sunday.
        let w = s.window_at(ts("2026-03-30T07:00:00Z"), sized("24h", "0s")).unwrap();
        assert_eq!(w, Window { start: ts("2026-03-29T07:00:00Z"), end: ts("2026-03-30T07:00:00Z") });
        let h = Schedule::parse("0 * * * *", Some("Europe/Berlin")).unwrap();
        let w = h.window_at(ts("2026-03-29T02:00:00Z"), sized("24h", "0s")).unwrap();
        assert_eq!(w.end.duration_since(w.start), SignedDuration::from_hours(24));
    }

    #[test]
    fn windows_between_lists_a_range() {
        let s = Schedule::parse("0 * * * *", None).unwrap();
        let ws = s.windows_between(ts("2026-10-01T00:00:00Z"), ts("2026-10-01T05:00:00Z"), WindowRule::default(), 100);
        assert_eq!(ws.len(), 5);
        assert_eq!(ws[0].end, ts("2026-10-01T00:00:00Z"));
    }
}
