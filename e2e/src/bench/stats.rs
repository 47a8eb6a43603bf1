//! Order statistics of a sample of durations (seconds).

use serde::Serialize;

/// p50, p99, max and count of a sample; the max is also "the last of N" for arrival lags.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Summary {
    pub count: usize,
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

/// The nearest-rank quantile `q` of sorted `values` (NaN when empty).
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Summarises `values` (any order).
pub fn summarize(values: &[f64]) -> Summary {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    Summary {
        count: sorted.len(),
        p50: quantile(&sorted, 0.5),
        p99: quantile(&sorted, 0.99),
        max: sorted.last().copied().unwrap_or(f64::NAN),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_quantiles() {
        let values: Vec<f64> = (1..=100).rev().map(f64::from).collect();
        let s = summarize(&values);
        assert_eq!((s.count, s.p50, s.p99, s.max), (100, 50.0, 99.0, 100.0));
        assert!(summarize(&[]).p50.is_nan());
        assert_eq!(summarize(&[3.0]).p99, 3.0);
    }
}
