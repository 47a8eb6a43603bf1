//! Quantity front end (quota arithmetic, budgets, requests): never panics, rounding brackets the
//! value, and what the formatter writes parses back exactly.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice::quota::quantity::{self, Round};

fuzz_target!(|text: &str| {
    let (up, down) = (quantity::parse(text, Round::Up), quantity::parse(text, Round::Down));
    assert_eq!(up.is_some(), down.is_some(), "{text:?}");
    if let (Some(up), Some(down)) = (up, down) {
        assert!(down <= up && up - down <= 1, "{text:?}");
        for key in ["cpu", "requests.memory"] {
            let written = quantity::format(key, up);
            assert_eq!(quantity::parse(&written, Round::Up), Some(up), "{text:?} -> {written:?}");
        }
    }
});
