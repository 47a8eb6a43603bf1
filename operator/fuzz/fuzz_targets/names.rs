//! Name and label shortening: for any object name, step name, window and attempt, the Job name
//! is a DNS subdomain and label value of at most 63 characters (a DNS label when the Pipeline
//! name has no dot), deterministic; label values are valid and at most 63 characters.
#![no_main]

use jiff::{SignedDuration, Timestamp};
use libfuzzer_sys::fuzz_target;
use sluice::jobs;
use sluice::schedule::Window;

/// Maps bytes onto a valid name: DNS-1123 labels (of `alphabet`) joined by dots when `dots`.
fn name(bytes: &[u8], max: usize, dots: bool) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789-.";
    let span = if dots { ALPHABET.len() } else { ALPHABET.len() - 1 };
    let raw: String = bytes.iter().take(max).map(|b| ALPHABET[*b as usize % span] as char).collect();
    let labels: Vec<String> = raw
        .split('.')
        .map(|l| l.trim_matches('-').chars().take(63).collect::<String>())
        .map(|l| l.trim_end_matches('-').to_string())
        .filter(|l| !l.is_empty())
        .collect();
    let joined = labels.join(".");
    if joined.is_empty() { "a".into() } else { joined }
}

fn dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn label_value(s: &str) -> bool {
    s.is_empty()
        || (s.len() <= 63
            && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
            && s.as_bytes()[0].is_ascii_alphanumeric()
            && s.as_bytes()[s.len() - 1].is_ascii_alphanumeric())
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 16 {
        return;
    }
    let (head, rest) = data.split_at(16);
    let seconds = i64::from_le_bytes(head[..8].try_into().unwrap()).rem_euclid(4_000_000_000);
    let hours = i64::from(u16::from_le_bytes([head[8], head[9]])) + 1;
    let attempt = u32::from_le_bytes(head[10..14].try_into().unwrap());
    let split = (head[14] as usize).min(rest.len());
    let pipeline = name(&rest[..split], 253, true);
    let step = name(&rest[split..], 40, false);
    let start = Timestamp::from_second(seconds).unwrap();
    let run_id = Window { start, end: start + SignedDuration::from_hours(hours) }.run_id();
    let job = jobs::job_name(&pipeline, &step, &run_id, attempt);
    assert!(job.len() <= jobs::MAX_JOB_NAME, "{job}");
    assert!(job.split('.').all(dns_label) && label_value(&job), "{job}");
    if !pipeline.contains('.') {
        assert!(dns_label(&job), "{job}");
    }
    assert_eq!(job, jobs::job_name(&pipeline, &step, &run_id, attempt));
    let label = jobs::label_value(&pipeline);
    assert!(label_value(&label), "{pipeline} -> {label}");
    assert_eq!(label, jobs::label_value(&pipeline));
});
