//! `fondo bench`: the figures of DESIGN.md, measured side by side.

use crate::{BenchArgs, CliResult};

/// Runs the benchmarks.
pub fn run(_args: &BenchArgs) -> CliResult {
    Err("bench not written yet".into())
}
