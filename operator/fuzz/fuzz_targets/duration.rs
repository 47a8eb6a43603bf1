//! Duration front end (`spec.partition`, `spec.freshness`): never panics, never negative, and a
//! parsed duration written back in Go syntax parses to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice::duration;

fuzz_target!(|text: &str| {
    if let Ok(d) = duration::parse(text) {
        assert!(!d.is_negative());
        let written = format!("{}s{}ns", d.as_secs(), d.subsec_nanos());
        assert_eq!(duration::parse(&written), Ok(d), "{text:?} -> {written:?}");
    }
});
