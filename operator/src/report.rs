//! What a step reports through its container termination message (at most 4 KiB of JSON), and
//! the comparison of a reported schema with a dataset's contract. Pure.
//!
//! `{"rowsWritten": 1234, "watermark": "2026-11-24T10:00:00Z",
//!   "schema": [{"name": "id", "type": "bigint", "nullable": false}]}` — every field optional.

use jiff::Timestamp;
use serde::Deserialize;

use crate::api::{ColumnSpec, ContractSpec};

/// Longest report accepted, as the kubelet limits termination messages to 4096 bytes.
pub const MAX_REPORT_BYTES: usize = 4096;

/// A step's report.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Report {
    pub rows_written: Option<i64>,
    pub watermark: Option<Timestamp>,
    pub schema: Option<Vec<ColumnSpec>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawReport {
    rows_written: Option<i64>,
    watermark: Option<String>,
    schema: Option<Vec<RawColumn>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawColumn {
    name: String,
    #[serde(rename = "type")]
    type_: String,
    #[serde(default = "yes")]
    nullable: bool,
}

fn yes() -> bool {
    true
}

/// Parses a termination message. An empty message is no report (`Ok(None)`); anything else that
/// is not a valid report is an error whose text says why.
pub fn parse(message: &str) -> Result<Option<Report>, String> {
    let text = message.trim();
    if text.is_empty() {
        return Ok(None);
    }
    if text.len() > MAX_REPORT_BYTES {
        return Err(format!("report is {} bytes, more than {MAX_REPORT_BYTES}", text.len()));
    }
    let raw: RawReport =
        serde_json::from_str(text).map_err(|e| format!("report is not valid JSON of the expected shape: {e}"))?;
    if raw.rows_written.is_some_and(|r| r < 0) {
        return Err("report rowsWritten is negative".into());
    }
    let watermark = match raw.watermark {
        None => None,
        Some(w) => {
            Some(w.parse::<Timestamp>().map_err(|e| format!("report watermark {w:?} is not an RFC 3339 time: {e}"))?)
        }
    };
    let schema = raw.schema.map(|cols| {
        cols.into_iter().map(|c| ColumnSpec { name: c.name, type_: c.type_, nullable: c.nullable }).collect()
    });
    Ok(Some(Report { rows_written: raw.rows_written, watermark, schema }))
}

/// Differences between a contract and a reported schema, one message per difference; empty when
/// the schema conforms.
pub fn contract_violations(contract: &ContractSpec, schema: &[ColumnSpec]) -> Vec<String> {
    let mut out = Vec::new();
    for expected in &contract.columns {
        match schema.iter().find(|c| c.name == expected.name) {
            None => out.push(format!("column {:?} is missing", expected.name)),
            Some(actual) => {
                if !actual.type_.trim().eq_ignore_ascii_case(expected.type_.trim()) {
                    out.push(format!(
                        "column {:?} changed type from {} to {}",
                        expected.name, expected.type_, actual.type_
                    ));
                }
                if !expected.nullable && actual.nullable {
                    out.push(format!("column {:?} became nullable", expected.name));
                }
            }
        }
    }
    if contract.strict {
        for actual in schema {
            if !contract.columns.iter().any(|c| c.name == actual.name) {
                out.push(format!("unexpected column {:?} (contract is strict)", actual.name));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::DriftPolicy;

    fn col(name: &str, type_: &str, nullable: bool) -> ColumnSpec {
        ColumnSpec { name: name.into(), type_: type_.into(), nullable }
    }

    #[test]
    fn parses_a_full_report() {
        let r = parse(r#"{"rowsWritten": 12, "watermark": "2026-11-24T10:00:00Z", "schema": [{"name": "id", "type": "bigint", "nullable": false}]}"#)
            .unwrap()
            .unwrap();
        assert_eq!(r.rows_written, Some(12));
        assert_eq!(r.watermark, Some("2026-11-24T10:00:00Z".parse().unwrap()));
        assert_eq!(r.schema.unwrap(), [col("id", "bigint", false)]);
    }

    #[test]
    fn empty_is_no_report_and_garbage_is_an_error() {
        assert_eq!(parse("  "), Ok(None));
        assert!(parse("rows=12").unwrap_err().contains("not valid JSON"));
        assert!(parse(r#"{"rowsWritten": "twelve"}"#).is_err());
        assert!(parse(r#"{"watermark": "yesterday"}"#).unwrap_err().contains("RFC 3339"));
        assert!(parse(r#"{"rowsWritten": -1}"#).is_err());
        assert!(parse(&format!("{{\"x\": \"{}\"}}", "a".repeat(5000))).unwrap_err().contains("bytes"));
    }

    #[test]
    fn contract_differences_are_named() {
        let contract = ContractSpec {
            columns: vec![
                col("id", "bigint", false),
                col("amount", "decimal(12,2)", true),
                col("currency", "varchar(3)", true),
            ],
            strict: true,
            policy: DriftPolicy::Block,
        };
        let schema = vec![col("id", "BIGINT", true), col("amount", "double", true), col("extra", "text", true)];
        assert_eq!(
            contract_violations(&contract, &schema),
            [
                "column \"id\" became nullable",
                "column \"amount\" changed type from decimal(12,2) to double",
                "column \"currency\" is missing",
                "unexpected column \"extra\" (contract is strict)",
            ]
        );
        let ok = vec![
            col("id", "bigint", false),
            col("amount", "Decimal(12,2)", false),
            col("currency", "varchar(3)", true),
        ];
        assert!(contract_violations(&contract, &ok).is_empty());
    }
}
