//! Cron expression and time zone front end: parsing and every window computation never panic,
//! and ticks keep their order. Input: 8 bytes of Unix seconds, then `<cron>\n<time zone>`.
#![no_main]

use jiff::{SignedDuration, Timestamp};
use libfuzzer_sys::fuzz_target;
use sluice::schedule::{Schedule, WindowRule};

fuzz_target!(|data: &[u8]| {
    let Some((seconds, text)) = data.split_first_chunk::<8>() else { return };
    let Ok(text) = std::str::from_utf8(text) else { return };
    let (expr, tz) = match text.split_once('\n') {
        Some((expr, tz)) => (expr, Some(tz)),
        None => (text, None),
    };
    let range = Timestamp::MIN.as_second()..=Timestamp::MAX.as_second();
    let seconds = i64::from_le_bytes(*seconds).rem_euclid(range.end() - range.start()) + range.start();
    let Ok(t) = Timestamp::from_second(seconds) else { return };
    let Ok(schedule) = Schedule::parse(expr, tz) else { return };
    if let Some(next) = schedule.next_after(t) {
        assert!(next > t);
    }
    let rule = WindowRule {
        size: Some(SignedDuration::from_secs(seconds % 100_000)),
        offset: SignedDuration::from_secs(seconds % 7_200),
    };
    if let Some(latest) = schedule.latest_at_or_before(t) {
        assert!(latest <= t);
        let _ = schedule.window_at(latest, rule);
        let _ = schedule.window_at(latest, WindowRule::default());
    }
    let until = t.checked_add(SignedDuration::from_hours(72)).unwrap_or(t);
    let (ticks, _) = schedule.due_ticks(t, until, 8);
    assert!(ticks.windows(2).all(|w| w[0] > w[1]));
    let _ = schedule.windows_between(t, until, rule, 8);
});
