//! Sets of partition windows as compact ranges, the form in which a Backfill's status records
//! any number of partitions in a few entries. Pure.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::api::WindowRange;
use crate::schedule::Window;

/// One range: from the start of its first window to the end of its last, holding `count`
/// windows of the set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    pub start: Timestamp,
    pub end: Timestamp,
    pub count: i64,
}

impl Span {
    /// Whether `window` lies inside this range.
    pub fn contains(&self, window: &Window) -> bool {
        self.start <= window.start && window.end <= self.end
    }
}

/// A set of windows as ranges sorted by start, each a run of consecutive windows of the
/// schedule. Windows are ordered by start and by end alike, so a window is in the set exactly
/// when the last range starting at or before it ends at or after it. (Ranges of windows longer
/// than twice the schedule's interval may overlap in time; they stay separate.)
///
/// Exact sets (`processedRanges`) merge two ranges only when no window of the schedule lies
/// between them, which `next_start` tells: the start of the window that follows the window
/// ending at a given time. Bounded sets (`succeededRanges`, `failedRanges`) may in addition be
/// coarsened with [`RangeSet::bound`]; their counts stay exact.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RangeSet {
    spans: Vec<Span>,
}

impl RangeSet {
    /// The set recorded in a status list. Invalid entries (empty, reversed, non-positive
    /// count) and repeated ones are dropped.
    pub fn from_status(ranges: &[WindowRange]) -> Self {
        let mut spans: Vec<Span> = ranges
            .iter()
            .filter(|r| r.start.0 < r.end.0 && r.count > 0)
            .map(|r| Span { start: r.start.0, end: r.end.0, count: r.count })
            .collect();
        spans.sort_by_key(|s| (s.start, s.end));
        spans.dedup_by_key(|s| s.start);
        Self { spans }
    }

    /// The set as a status list.
    pub fn to_status(&self) -> Vec<WindowRange> {
        self.spans.iter().map(|s| WindowRange { start: Time(s.start), end: Time(s.end), count: s.count }).collect()
    }

    pub fn spans(&self) -> &[Span] {
        &self.spans
    }

    /// Windows in the set.
    pub fn count(&self) -> i64 {
        self.spans.iter().map(|s| s.count).sum()
    }

    pub fn len(&self) -> usize {
        self.spans.len()
    }

    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// The range that holds `window`, if any.
    pub fn containing(&self, window: &Window) -> Option<&Span> {
        let i = self.spans.partition_point(|s| s.start <= window.start);
        i.checked_sub(1).map(|i| &self.spans[i]).filter(|s| s.contains(window))
    }

    pub fn contains(&self, window: &Window) -> bool {
        self.containing(window).is_some()
    }

    /// Adds `window`, merging it with the neighbouring ranges it is adjacent to. Returns false
    /// (and changes nothing) when the window is already in the set.
    pub fn insert(&mut self, window: Window, next_start: impl Fn(Timestamp) -> Option<Timestamp>) -> bool {
        if self.contains(&window) {
            return false;
        }
        let i = self.spans.partition_point(|s| s.start < window.start);
        let joins_previous = i > 0 && adjacent(self.spans[i - 1].end, window.start, &next_start);
        let joins_next = i < self.spans.len() && adjacent(window.end, self.spans[i].start, &next_start);
        match (joins_previous, joins_next) {
            (true, true) => {
                let next = self.spans.remove(i);
                let previous = &mut self.spans[i - 1];
                previous.end = next.end;
                previous.count += next.count + 1;
            }
            (true, false) => {
                let previous = &mut self.spans[i - 1];
                previous.end = previous.end.max(window.end);
                previous.count += 1;
            }
            (false, true) => {
                let next = &mut self.spans[i];
                next.start = window.start;
                next.count += 1;
            }
            (false, false) => self.spans.insert(i, Span { start: window.start, end: window.end, count: 1 }),
        }
        true
    }

    /// Adds `window`, which the caller knows is not in the set yet (the exact set it is a
    /// subset of did not hold it), to a set that may be coarsened: a coarsened range that spans
    /// the window counts one more. ([`insert`](Self::insert) would take the window for one the
    /// range already holds and count nothing.)
    pub fn insert_new(&mut self, window: Window, next_start: impl Fn(Timestamp) -> Option<Timestamp>) {
        let i = self.spans.partition_point(|s| s.start <= window.start);
        match i.checked_sub(1).map(|i| &mut self.spans[i]).filter(|s| s.contains(&window)) {
            Some(span) => span.count += 1,
            None => {
                self.insert(window, next_start);
            }
        }
    }

    /// Coarsens the set to at most `max` ranges by merging the neighbours with the smallest gap
    /// between them; counts are kept, so a merged range says how many of its windows are in the
    /// set.
    pub fn bound(&mut self, max: usize) {
        while self.spans.len() > max.max(1) {
            let Some(i) =
                (1..self.spans.len()).min_by_key(|&i| self.spans[i].start.duration_since(self.spans[i - 1].end))
            else {
                return;
            };
            let next = self.spans.remove(i);
            let previous = &mut self.spans[i - 1];
            previous.end = previous.end.max(next.end);
            previous.count += next.count;
        }
    }
}

fn adjacent(end: Timestamp, start: Timestamp, next_start: &impl Fn(Timestamp) -> Option<Timestamp>) -> bool {
    next_start(end) == Some(start)
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::SignedDuration;

    fn t0() -> Timestamp {
        "2026-10-01T00:00:00Z".parse().unwrap()
    }

    /// Hour `h` as a window.
    fn hour(h: i64) -> Window {
        let start = t0() + SignedDuration::from_hours(h);
        Window { start, end: start + SignedDuration::from_hours(1) }
    }

    /// Contiguous hourly windows: the next one starts where the last ended.
    fn contiguous(end: Timestamp) -> Option<Timestamp> {
        Some(end)
    }

    #[test]
    fn windows_finishing_out_of_order_end_in_one_range() {
        let mut set = RangeSet::default();
        for h in [0, 2, 1, 4, 3] {
            assert!(set.insert(hour(h), contiguous));
        }
        assert!(!set.insert(hour(2), contiguous), "already in the set");
        assert_eq!(set.len(), 1);
        assert_eq!(set.count(), 5);
        assert_eq!(set.spans()[0], Span { start: hour(0).start, end: hour(4).end, count: 5 });
        assert!(set.contains(&hour(3)));
        assert!(!set.contains(&hour(5)));
    }

    #[test]
    fn gaps_are_kept_until_filled() {
        let mut set = RangeSet::default();
        for h in [0, 1, 5, 6, 3] {
            set.insert(hour(h), contiguous);
        }
        assert_eq!(set.len(), 3);
        assert!(!set.contains(&hour(2)) && !set.contains(&hour(4)));
        assert_eq!(set.containing(&hour(6)).map(|s| s.count), Some(2));
    }

    #[test]
    fn non_contiguous_windows_merge_when_no_window_lies_between() {
        // Daily 1-hour windows at 04:00: the window after one ending at 05:00 starts 23 h later.
        let daily = |h: i64| {
            let start = t0() + SignedDuration::from_hours(24 * h + 4);
            Window { start, end: start + SignedDuration::from_hours(1) }
        };
        let next_start = |end: Timestamp| Some(end + SignedDuration::from_hours(23));
        let mut set = RangeSet::default();
        for d in [0, 1, 2, 4] {
            set.insert(daily(d), next_start);
        }
        assert_eq!(set.len(), 2);
        assert_eq!(set.count(), 4);
        assert!(set.contains(&daily(1)));
        assert!(!set.contains(&daily(3)));
    }

    #[test]
    fn overlapping_windows_stay_apart_unless_consecutive() {
        // Daily ticks, 72-hour windows: window d covers days [d, d + 3).
        let window = |d: i64| {
            let start = t0() + SignedDuration::from_hours(24 * d);
            Window { start, end: start + SignedDuration::from_hours(72) }
        };
        let next_start = |end: Timestamp| Some(end - SignedDuration::from_hours(48));
        let mut set = RangeSet::default();
        set.insert(window(0), next_start);
        set.insert(window(2), next_start);
        assert_eq!(set.len(), 2, "window 1 lies between them");
        assert!(!set.contains(&window(1)));
        assert!(set.contains(&window(2)));
        set.insert(window(1), next_start);
        assert_eq!(set.len(), 1);
        assert_eq!(set.count(), 3);
        assert!(!set.contains(&window(3)));
    }

    #[test]
    fn bound_merges_the_closest_ranges_and_keeps_counts() {
        let mut set = RangeSet::default();
        for h in [0, 2, 3, 10, 20] {
            set.insert(hour(h), contiguous);
        }
        assert_eq!(set.len(), 4);
        set.bound(2);
        assert_eq!(set.len(), 2);
        assert_eq!(set.count(), 5);
        assert_eq!(set.spans()[0], Span { start: hour(0).start, end: hour(10).end, count: 4 });
    }

    #[test]
    fn a_new_window_inside_a_coarsened_range_is_counted() {
        let mut set = RangeSet::default();
        for h in [0, 2, 3, 10, 20] {
            set.insert(hour(h), contiguous);
        }
        set.bound(2);
        assert!(!set.insert(hour(5), contiguous), "insert takes hour 5 for one the coarse range holds");
        set.insert_new(hour(5), contiguous);
        assert_eq!((set.len(), set.count()), (2, 6));
        set.insert_new(hour(30), contiguous);
        assert_eq!((set.len(), set.count()), (3, 7), "outside every range: a range of its own");
    }

    #[test]
    fn status_round_trip_drops_garbage() {
        let mut set = RangeSet::default();
        for h in [0, 1, 7] {
            set.insert(hour(h), contiguous);
        }
        let mut listed = set.to_status();
        assert_eq!(RangeSet::from_status(&listed), set);
        listed.push(WindowRange { start: Time(hour(9).end), end: Time(hour(9).start), count: 1 });
        listed.push(WindowRange { start: Time(hour(12).start), end: Time(hour(12).end), count: 0 });
        assert_eq!(RangeSet::from_status(&listed), set);
    }
}
