//! Schedules: cron expressions evaluated in an IANA time zone. Pure: times are passed in.

pub(crate) mod count;
mod window;

pub use window::{Window, WindowRule, compact_duration, rule_from, window_rule};

use std::str::FromStr;

use croner::Cron;
use jiff::tz::TimeZone;
use jiff::{Timestamp, Zoned};

/// A parsed cron schedule in a time zone.
#[derive(Clone, Debug)]
pub struct Schedule {
    cron: Cron,
    tz: TimeZone,
}

/// Why a schedule cannot be used; messages name the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("spec.schedule {expr:?} is not a valid cron expression: {reason}")]
    Cron { expr: String, reason: String },
    #[error("spec.timeZone {name:?} is not a known IANA time zone (for example \"Europe/Berlin\")")]
    TimeZone { name: String },
}

/// Resolves an IANA time zone name from the bundled tz database.
pub fn time_zone(name: &str) -> Result<TimeZone, ScheduleError> {
    TimeZone::get(name).map_err(|_| ScheduleError::TimeZone { name: name.to_string() })
}

impl Schedule {
    /// Parses `expr` (five fields, or six with seconds; macros such as `@daily`) in time zone `tz`
    /// (UTC when `None`).
    pub fn parse(expr: &str, tz: Option<&str>) -> Result<Self, ScheduleError> {
        let tz = match tz {
            Some(name) => time_zone(name)?,
            None => TimeZone::UTC,
        };
        let cron =
            Cron::from_str(expr).map_err(|e| ScheduleError::Cron { expr: expr.to_string(), reason: e.to_string() })?;
        Ok(Self { cron, tz })
    }

    /// The first tick strictly after `t`, if the schedule has one.
    pub fn next_after(&self, t: Timestamp) -> Option<Timestamp> {
        let zoned = Zoned::new(t, self.tz.clone());
        self.cron.find_next_occurrence(&zoned, false).ok().map(|z| z.timestamp())
    }

    /// The last tick at or before `t`, if the schedule has one.
    pub fn latest_at_or_before(&self, t: Timestamp) -> Option<Timestamp> {
        let zoned = Zoned::new(t, self.tz.clone());
        self.cron.find_previous_occurrence(&zoned, true).ok().map(|z| z.timestamp())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn hourly_next_tick() {
        let s = Schedule::parse("0 * * * *", None).unwrap();
        assert_eq!(s.next_after(ts("2026-11-24T10:15:00Z")), Some(ts("2026-11-24T11:00:00Z")));
        assert_eq!(s.next_after(ts("2026-11-24T11:00:00Z")), Some(ts("2026-11-24T12:00:00Z")));
        assert_eq!(s.latest_at_or_before(ts("2026-11-24T11:00:00Z")), Some(ts("2026-11-24T11:00:00Z")));
    }

    #[test]
    fn daily_in_time_zone() {
        let s = Schedule::parse("0 2 * * *", Some("Europe/Berlin")).unwrap();
        // 02:00 in Berlin (UTC+1 in November) is 01:00 UTC.
        assert_eq!(s.next_after(ts("2026-11-24T00:00:00Z")), Some(ts("2026-11-24T01:00:00Z")));
    }

    #[test]
    fn invalid_inputs_name_the_field() {
        let err = Schedule::parse("61 * * * *", None).unwrap_err();
        assert!(err.to_string().starts_with("spec.schedule \"61 * * * *\""), "{err}");
        let err = Schedule::parse("0 * * * *", Some("Mars/Olympus")).unwrap_err();
        assert!(err.to_string().contains("spec.timeZone"), "{err}");
    }
}
