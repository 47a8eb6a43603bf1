//! Termination-report front end and contract check: never panics, a report over 4 KiB is always
//! rejected, and checking a parsed schema against a contract never panics either.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice::report;

fuzz_target!(|text: &str| {
    let parsed = report::parse(text);
    if text.trim().len() > report::MAX_REPORT_BYTES {
        assert!(parsed.is_err());
    }
    if let Ok(Some(report)) = parsed
        && let Some(schema) = report.schema
    {
        let contract = serde_json::from_value(serde_json::json!({"columns": [
            {"name": "id", "type": "bigint"}, {"name": "amount", "type": "numeric", "nullable": true}],
            "strict": schema.len() % 2 == 0}))
        .expect("contract");
        let _ = report::contract_violations(&contract, &schema);
    }
});
