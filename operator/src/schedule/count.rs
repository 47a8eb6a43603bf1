//! Counting the ticks of a schedule in a time range without visiting them one by one. Pure.
//!
//! Method: between two UTC-offset changes of the time zone the wall clock is the UTC clock shifted
//! by a constant, so a tick is exactly a wall-clock second that the cron pattern matches. Those are
//! counted per calendar day: a day the pattern's date fields accept contributes the number of
//! matching times of day in the part of the day that is in range, computed from the hour, minute
//! and second fields without listing them. Within one shift (`|new offset - old offset|`) of an
//! offset change the cron library's daylight-saving rules apply (a fixed-time run skipped by a gap
//! runs after it, a repeated hour runs once or twice), so there the ticks are walked with the same
//! calls that produce them. The cost is one step per calendar day in the range plus the ticks
//! within an hour or so of each offset change, never one step per tick: a week of per-second ticks
//! is seven steps, or about 7200 across a DST change.

use croner::Weekday;
use jiff::civil::Date;
use jiff::tz::Offset;
use jiff::{SignedDuration, Timestamp};

use super::Schedule;

const DAY: i64 = 86_400;

#[cfg(test)]
thread_local! {
    /// Steps taken by counts on this thread (days counted plus ticks walked), so tests can check
    /// the cost in steps rather than in time.
    pub static STEPS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

fn step() {
    #[cfg(test)]
    STEPS.with(|s| s.set(s.get() + 1));
}

/// The times of day a pattern accepts, as membership tables for fast counting.
struct TimesOfDay {
    hours: [bool; 24],
    minutes: [bool; 60],
    seconds: [bool; 60],
}

impl TimesOfDay {
    fn of(schedule: &Schedule) -> Self {
        let pattern = &schedule.cron.pattern;
        Self {
            hours: std::array::from_fn(|h| pattern.hour_match(h as u32).unwrap_or(false)),
            minutes: std::array::from_fn(|m| pattern.minute_match(m as u32).unwrap_or(false)),
            seconds: std::array::from_fn(|s| pattern.second_match(s as u32).unwrap_or(false)),
        }
    }

    /// Matching times of day at or before second `x` of the day (`-1` counts none).
    fn up_to(&self, x: i64) -> u64 {
        if x < 0 {
            return 0;
        }
        let (h, m, s) = ((x / 3600) as usize, (x % 3600 / 60) as usize, (x % 60) as usize);
        let set = |table: &[bool]| table.iter().filter(|b| **b).count() as u64;
        let (n_m, n_s) = (set(&self.minutes), set(&self.seconds));
        let mut n = set(&self.hours[..h]) * n_m * n_s;
        if self.hours[h] {
            n += set(&self.minutes[..m]) * n_s;
            if self.minutes[m] {
                n += set(&self.seconds[..=s]);
            }
        }
        n
    }
}

/// Whole seconds of a timestamp, rounded down (ticks fall on whole seconds).
fn floor_second(t: Timestamp) -> i64 {
    t.as_second() - i64::from(t.subsec_nanosecond() < 0)
}

fn at(second: i64) -> Option<Timestamp> {
    Timestamp::from_second(second).ok()
}

impl Schedule {
    /// The number of ticks in `(after, until]`, exact, at a cost of one step per calendar day in
    /// the range plus the ticks near each UTC-offset change (see the module notes).
    pub fn count_ticks(&self, after: Timestamp, until: Timestamp) -> u64 {
        let (mut from, to) = (floor_second(after), floor_second(until));
        let times = TimesOfDay::of(self);
        let mut count = 0;
        while from < to {
            let Some((walk_from, walk_to)) = self.next_shift(from, to) else {
                return count + self.count_at_offset(&times, from, to);
            };
            count += self.count_at_offset(&times, from, walk_from);
            count += self.walk_count(walk_from, walk_to);
            from = walk_to;
        }
        count
    }

    /// The next stretch `(start, end]` within `(from, to]` where an offset change is close enough
    /// for daylight-saving rules to matter: from one shift before the change to one after,
    /// overlapping stretches merged.
    fn next_shift(&self, from: i64, to: i64) -> Option<(i64, i64)> {
        // Shifts are at most a day or so; start early enough to see a change just behind `from`.
        let mut changes = self.tz.following(at(from - 2 * DAY)?).filter_map(|transition| {
            let tau = transition.timestamp();
            let before = self.tz.to_offset(tau.checked_sub(SignedDuration::from_nanos(1)).ok()?);
            let shift = i64::from((transition.offset().seconds() - before.seconds()).abs());
            let second = floor_second(tau);
            (shift > 0).then_some((second - shift - 1, second + shift))
        });
        let (mut start, mut end) = changes.by_ref().find(|(_, end)| *end > from)?;
        if start >= to {
            return None;
        }
        for (next_start, next_end) in changes {
            if next_start >= end || next_start >= to {
                break;
            }
            end = end.max(next_end);
        }
        start = start.max(from);
        Some((start, end.min(to)))
    }

    /// Ticks in `(from, to]` where the offset is the same throughout: wall-clock seconds that the
    /// pattern matches, counted per day.
    fn count_at_offset(&self, times: &TimesOfDay, from: i64, to: i64) -> u64 {
        if from >= to {
            return 0;
        }
        let offset = at(to).map(|t| self.tz.to_offset(t)).unwrap_or(Offset::UTC);
        let shift = i64::from(offset.seconds());
        self.count_wall_clock(times, from + shift, to + shift)
    }

    /// Wall-clock seconds in `(from, to]` (seconds since 1970-01-01T00:00 on the wall clock) that
    /// the pattern matches.
    fn count_wall_clock(&self, times: &TimesOfDay, from: i64, to: i64) -> u64 {
        let (first, last) = ((from + 1).div_euclid(DAY), to.div_euclid(DAY));
        let Some(mut date) = Date::new(1970, 1, 1).ok().and_then(|d| d.checked_add(jiff::Span::new().days(first)).ok())
        else {
            return 0;
        };
        let mut count = 0;
        for day in first..=last {
            step();
            if self.date_matches(date) {
                let start = day * DAY;
                let (lo, hi) = ((from + 1 - start).max(0), (to - start).min(DAY - 1));
                count += times.up_to(hi) - times.up_to(lo - 1);
            }
            match date.tomorrow() {
                Ok(next) => date = next,
                Err(_) => break,
            }
        }
        count
    }

    /// Whether the pattern's year, month, day-of-month and weekday fields accept `date`.
    fn date_matches(&self, date: Date) -> bool {
        let pattern = &self.cron.pattern;
        let (year, month, day) = (i32::from(date.year()), date.month() as u32, date.day() as u32);
        let weekday = Weekday::from_days_from_sunday(date.weekday().to_sunday_zero_offset() as u32);
        pattern.day_match(year, month, day, weekday).unwrap_or(false)
            && pattern.month_match(month).unwrap_or(false)
            && pattern.year_match(year).unwrap_or(false)
    }

    /// Ticks in `(from, to]`, walked one by one with the calls that produce them.
    fn walk_count(&self, from: i64, to: i64) -> u64 {
        let (Some(from), Some(to)) = (at(from), at(to)) else { return 0 };
        let mut n = 0;
        let mut cursor = self.latest_at_or_before(to);
        while let Some(tick) = cursor.filter(|t| *t > from) {
            step();
            n += 1;
            cursor = self.previous_before(tick);
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    /// Exact against a one-by-one walk, for many patterns, zones (30-minute DST on Lord Howe,
    /// changes at midnight in Santiago and Havana, no DST in Kolkata) and ranges that start and
    /// end inside, just before and just after each change.
    #[test]
    fn counts_match_a_walk_around_offset_changes() {
        let patterns = [
            "*/5 * * * *",
            "0 * * * *",
            "30 * * * *",
            "0 */2 * * *",
            "30 1 * * *",
            "30 2 * * *",
            "0 0 * * *",
            "15 0,1,2,3 * * *",
            "0 9 * * 1-5",
            "0 0 L * *",
            "0 12 * * 5#2",
            "*/20 * * * * *",
            "0 30 2 * * *",
            "45 23 * * 6",
        ];
        let zones = [
            None,
            Some("Europe/Berlin"),
            Some("America/New_York"),
            Some("Australia/Lord_Howe"),
            Some("America/Santiago"),
            Some("America/Havana"),
            Some("Asia/Kolkata"),
        ];
        for zone in zones {
            let tz = zone.map(|z| super::super::time_zone(z).unwrap()).unwrap_or(jiff::tz::TimeZone::UTC);
            let changes: Vec<Timestamp> =
                tz.following(ts("2026-01-01T00:00:00Z")).take(2).map(|t| t.timestamp()).collect();
            let mut anchors = changes.clone();
            anchors.push(ts("2026-06-15T12:34:56Z"));
            for pattern in patterns {
                let s = Schedule::parse(pattern, zone).unwrap();
                for anchor in &anchors {
                    for (back, ahead) in
                        [(0, 1), (1, 0), (1800, 1800), (3601, 7199), (86_400 * 3, 5400), (5400, 86_400 * 3)]
                    {
                        if pattern.starts_with("*/20") && back + ahead > 86_400 {
                            continue; // too many ticks to walk in a debug build
                        }
                        let after = *anchor - SignedDuration::from_secs(back);
                        let until = *anchor + SignedDuration::from_secs(ahead);
                        let walked = s.walk_count(floor_second(after), floor_second(until));
                        assert_eq!(s.count_ticks(after, until), walked, "{pattern} in {zone:?}, ({after}, {until}]");
                    }
                }
                // Both changes of the year, and the months between them.
                let (after, until) = (ts("2026-01-02T00:00:00.5Z"), ts("2026-12-30T23:59:59Z"));
                // (Walking a year of hourly or finer ticks is slow in debug builds.)
                if !pattern.starts_with('*') && !pattern.contains(" * * * *") && !pattern.contains("*/2") {
                    let walked = s.walk_count(floor_second(after), floor_second(until));
                    assert_eq!(s.count_ticks(after, until), walked, "{pattern} in {zone:?} over 2026");
                }
            }
        }
    }

    #[test]
    fn empty_and_reversed_ranges_count_nothing() {
        let s = Schedule::parse("* * * * *", None).unwrap();
        let t = ts("2026-11-24T10:00:00Z");
        assert_eq!(s.count_ticks(t, t), 0);
        assert_eq!(s.count_ticks(t, t - SignedDuration::from_hours(1)), 0);
        assert_eq!(s.count_ticks(t - SignedDuration::from_nanos(1), t), 1);
    }

    /// A week of per-second ticks, across Berlin's fall-back hour, is counted in seven day steps
    /// plus the two hours around the change, not 604 800 steps.
    #[test]
    fn a_week_of_seconds_is_cheap() {
        let s = Schedule::parse("* * * * * *", Some("Europe/Berlin")).unwrap();
        let (after, until) = (ts("2026-10-21T00:00:00Z"), ts("2026-10-28T00:00:00Z"));
        STEPS.with(|s| s.set(0));
        assert_eq!(s.count_ticks(after, until), 7 * 86_400);
        let steps = STEPS.with(|s| s.get());
        // Eight day steps (the range ends at a midnight) plus two hours of walked seconds
        // around the change.
        assert!(steps <= 8 + 2 * 3600 + 10, "{steps} steps");
    }
}
