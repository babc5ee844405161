//! `fondo demo`: the notebook, cell by cell.

use crate::{CliResult, DemoArgs};

/// Runs the demo.
pub fn run(_args: &DemoArgs) -> CliResult {
    Err("demo not written yet".into())
}
