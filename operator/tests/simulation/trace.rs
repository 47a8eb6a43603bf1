//! The trace of one run: every step (API call, cache delivery, Job controller action, clock
//! step, fault), printed when an invariant fails.

use std::fmt::Write;

#[derive(Debug, Default)]
pub struct Trace {
    lines: Vec<String>,
    /// The random-phase step the next lines belong to.
    pub step: usize,
}

impl Trace {
    pub fn push(&mut self, line: impl Into<String>) {
        self.lines.push(format!("{:>4} {}", self.step, line.into()));
    }

    pub fn len(&self) -> usize {
        self.lines.len()
    }

    /// The trace, at most `max` lines (the first and the last ones when longer).
    pub fn render(&self, max: usize) -> String {
        let mut out = String::new();
        let n = self.lines.len();
        for (i, line) in self.lines.iter().enumerate() {
            if n > max && i == max / 4 {
                let _ = writeln!(out, "     ... {} lines left out ...", n - max);
            }
            if n <= max || i < max / 4 || i >= n - (max - max / 4) {
                let _ = writeln!(out, "{line}");
            }
        }
        out
    }
}
