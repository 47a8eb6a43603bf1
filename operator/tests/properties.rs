//! Property tests of the front ends that read user input and step output: they never panic on
//! any input, round-trip where a formatter exists, and the names they make are always valid.
//! The cargo-fuzz targets under `operator/fuzz/` check the same properties for longer.

use jiff::{SignedDuration, Timestamp};
use proptest::prelude::*;
use sluice::quota::quantity::{self, Round};
use sluice::schedule::compact_duration;
use sluice::schedule::{Schedule, WindowRule};
use sluice::{duration, jobs, report};

/// Text close to what the front ends expect, so that the properties reach deep into them.
fn cron_like() -> impl Strategy<Value = String> {
    prop_oneof![
        "[0-9*/,-]{1,6}( [0-9*/,A-Za-z?LW#-]{1,6}){4,6}",
        "@(yearly|annually|monthly|weekly|daily|midnight|hourly|fortnightly)",
        ".{0,40}",
    ]
}

fn time_zone() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        Just(None),
        Just(Some("Europe/Berlin".to_string())),
        Just(Some("America/St_Johns".to_string())),
        Just(Some("Australia/Lord_Howe".to_string())),
        "[A-Za-z_/+-]{0,20}".prop_map(Some),
    ]
}

fn timestamp() -> impl Strategy<Value = Timestamp> {
    // Seconds across the whole range jiff supports, plus a dense band around now.
    prop_oneof![(Timestamp::MIN.as_second()..=Timestamp::MAX.as_second()), (1_700_000_000i64..1_900_000_000i64),]
        .prop_map(|s| Timestamp::from_second(s).expect("in range"))
}

fn signed_duration() -> impl Strategy<Value = SignedDuration> {
    prop_oneof![(-100_000_000i64..100_000_000i64), any::<i64>()].prop_map(SignedDuration::from_secs)
}

/// A DNS-1123 label of 1 to `max` characters.
fn dns_label(max: usize) -> impl Strategy<Value = String> {
    proptest::string::string_regex(&format!("[a-z0-9]([-a-z0-9]{{0,{}}}[a-z0-9])?", max.saturating_sub(2)))
        .expect("regex")
        .prop_filter("length", move |s| s.len() <= max)
}

/// An object name: a DNS-1123 subdomain of at most 253 characters.
fn object_name() -> impl Strategy<Value = String> {
    proptest::collection::vec(dns_label(63), 1..5)
        .prop_map(|labels| labels.join("."))
        .prop_filter("length", |s| s.len() <= 253)
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns_label)
}

fn is_label_value(s: &str) -> bool {
    let edge_ok = |b: u8| b.is_ascii_alphanumeric();
    s.is_empty()
        || (s.len() <= 63
            && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
            && edge_ok(s.as_bytes()[0])
            && edge_ok(s.as_bytes()[s.len() - 1]))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn schedules_and_windows_never_panic(
        expr in cron_like(),
        tz in time_zone(),
        t in timestamp(),
        size in proptest::option::of(signed_duration()),
        offset in signed_duration(),
    ) {
        if let Ok(schedule) = Schedule::parse(&expr, tz.as_deref()) {
            let next = schedule.next_after(t);
            if let Some(next) = next {
                prop_assert!(next > t);
            }
            if let Some(latest) = schedule.latest_at_or_before(t) {
                prop_assert!(latest <= t);
                let _ = schedule.window_at(latest, WindowRule { size, offset });
            }
            let until = t.checked_add(SignedDuration::from_hours(48)).unwrap_or(t);
            let (ticks, _) = schedule.due_ticks(t, until, 5);
            prop_assert!(ticks.len() <= 5);
            // Newest first, all in (t, until].
            prop_assert!(ticks.windows(2).all(|w| w[0] > w[1]));
            prop_assert!(ticks.iter().all(|tick| *tick > t && *tick <= until));
            let _ = schedule.windows_between(t, until, WindowRule { size, offset }, 5);
        }
    }

    #[test]
    fn durations_never_panic(text in "[-+]?([0-9]{0,25}(\\.[0-9]{0,25})?(ns|us|µs|ms|s|m|h|d|x)?){0,4}|.{0,30}") {
        if let Ok(d) = duration::parse(&text) {
            prop_assert!(!d.is_negative());
        }
    }

    #[test]
    fn durations_written_in_go_syntax_parse_to_their_value(
        h in 0i64..2_000_000, m in 0i64..10_000, s in 0i64..100_000, ms in 0i64..100_000, tenths in 0i64..10,
    ) {
        let text = format!("{h}h{m}m{s}.{tenths}s{ms}ms");
        let expected = SignedDuration::from_millis(((h * 60 + m) * 60 + s) * 1000 + tenths * 100 + ms);
        prop_assert_eq!(duration::parse(&text), Ok(expected));
    }

    /// Run ids spell the window's length in whole units; days are not Go syntax, the rest is.
    #[test]
    fn compact_durations_below_a_day_parse_back(secs in 1i64..86_400) {
        let d = SignedDuration::from_secs(secs);
        prop_assert_eq!(duration::parse(&compact_duration(d)), Ok(d));
    }

    #[test]
    fn quantities_never_panic(text in "[-+]?[0-9]{0,40}(\\.[0-9]{0,40})?([eE][-+]?[0-9]{0,5})?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei|n|u)?|.{0,30}") {
        let up = quantity::parse(&text, Round::Up);
        let down = quantity::parse(&text, Round::Down);
        prop_assert_eq!(up.is_some(), down.is_some());
        if let (Some(up), Some(down)) = (up, down) {
            prop_assert!(down <= up && up - down <= 1, "{text}: {down} {up}");
        }
    }

    #[test]
    fn quantities_round_trip_through_the_formatter(
        key in prop_oneof![Just("cpu"), Just("requests.memory"), Just("pods"), Just("requests.storage")],
        value in prop_oneof![(-1i128 << 70)..(1i128 << 70), (-10_000i128..10_000)],
    ) {
        let text = quantity::format(key, value);
        prop_assert_eq!(quantity::parse(&text, Round::Up), Some(value), "{}", text);
    }

    #[test]
    fn reports_never_panic(text in ".{0,300}") {
        let _ = report::parse(&text);
    }

    #[test]
    fn report_shaped_text_never_panics(
        rows in any::<i64>(),
        watermark in ".{0,40}",
        columns in proptest::collection::vec(("[a-z_]{0,12}", "[a-z]{0,8}", any::<bool>()), 0..8),
    ) {
        let schema: Vec<_> = columns.iter().map(|(n, t, nullable)| serde_json::json!({"name": n, "type": t, "nullable": nullable})).collect();
        let text = serde_json::json!({"rowsWritten": rows, "watermark": watermark, "schema": schema}).to_string();
        let _ = report::parse(&text);
    }

    #[test]
    fn a_report_over_four_kib_is_always_rejected(padding in 4097usize..20_000, valid in any::<bool>()) {
        let text = if valid {
            format!("{{\"rowsWritten\": 1{}}}", " ".repeat(padding))
        } else {
            "x".repeat(padding)
        };
        let trimmed_len = text.trim().len();
        prop_assume!(trimmed_len > report::MAX_REPORT_BYTES);
        prop_assert!(report::parse(&text).is_err());
    }

    #[test]
    fn job_names_are_dns_labels_and_deterministic(
        pipeline in object_name(),
        step in dns_label(40),
        secs in 0i64..4_000_000_000,
        hours in 1i64..10_000,
        attempt in any::<u32>(),
    ) {
        let start = Timestamp::from_second(secs).expect("in range");
        let window = sluice::schedule::Window { start, end: start + SignedDuration::from_hours(hours) };
        let run_id = window.run_id();
        let name = jobs::job_name(&pipeline, &step, &run_id, attempt);
        prop_assert!(is_dns_subdomain(&name) && is_label_value(&name), "{name}");
        prop_assert!(name.len() <= jobs::MAX_JOB_NAME);
        prop_assert_eq!(&name, &jobs::job_name(&pipeline, &step, &run_id, attempt));
        if !pipeline.contains('.') {
            prop_assert!(is_dns_label(&name), "{name}");
        }
    }

    #[test]
    fn late_pass_names_are_valid_distinct_and_read_back(
        pipeline in object_name(),
        step in dns_label(40),
        secs in 0i64..4_000_000_000,
        hours in 1i64..10_000,
        d in 1u32..=sluice::plan::late::MAX_LOOKBACK,
        e in 1u32..=sluice::plan::late::MAX_LOOKBACK,
    ) {
        let start = Timestamp::from_second(secs).expect("in range");
        let window = sluice::schedule::Window { start, end: start + SignedDuration::from_hours(hours) };
        let run_id = sluice::plan::late::run_id(&window, d);
        prop_assert!(is_label_value(&run_id), "{run_id}");
        prop_assert_eq!(sluice::plan::late::pass_of(&run_id), Some(d));
        prop_assert_eq!(sluice::plan::late::pass_of(&window.run_id()), None);
        let name = jobs::job_name(&pipeline, &step, &run_id, 0);
        prop_assert!(is_dns_subdomain(&name) && name.len() <= jobs::MAX_JOB_NAME, "{name}");
        // Distinct from the window's own Job and from every other pass of it.
        prop_assert_ne!(&name, &jobs::job_name(&pipeline, &step, &window.run_id(), 0));
        if d != e {
            prop_assert_ne!(&name, &jobs::job_name(&pipeline, &step, &sluice::plan::late::run_id(&window, e), 0));
        }
    }

    #[test]
    fn label_values_are_valid_and_deterministic(value in object_name()) {
        let label = jobs::label_value(&value);
        prop_assert!(is_label_value(&label), "{label}");
        prop_assert_eq!(&label, &jobs::label_value(&value));
        if value.len() <= 63 {
            prop_assert_eq!(&label, &value);
        }
    }
}
